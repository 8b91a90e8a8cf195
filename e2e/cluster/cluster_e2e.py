"""Helpers of the cluster e2e: the real single-node Kubernetes + Knative cluster of
scripts/cluster.sh, reached through its kubectl and its Knative ingress (Traefik) on loopback.

Functions are built with `pyfunc build` (pack + pyfunc/builder), made runnable in the cluster with
`scripts/cluster.sh load`, deployed as Knative Services and called through the ingress with the
Service URL's host in the Host header, as a client outside the cluster would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
import requests

from pyfunc_e2e import ENV, PREFIX, REPO, sh

CLUSTER = REPO / "scripts" / "cluster.sh"
HERE = Path(__file__).resolve().parent
FUNCTIONS = HERE / "functions"
# A namespace per session: the previous session's may still be terminating (Knative's finalizers).
NAMESPACE = f"pyfunc-e2e-{uuid.uuid4().hex[:6]}"
PYFUNC = [str(Path(sys.executable).with_name("pyfunc"))]  # the CLI (python -m pyfunc only serves)
METRICS: dict[str, Any] = {}


def cluster_env() -> dict[str, str]:
    """KUBECONFIG and PYFUNC_INGRESS of the running cluster; a failure (not a skip) without one."""
    proc = subprocess.run([str(CLUSTER), "env"], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        pytest.fail(f"no cluster ({proc.stderr.strip()}): run scripts/cluster.sh up", pytrace=False)
    env = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value
    ENV.update(env)
    ready = subprocess.run([str(CLUSTER), "kubectl", "get", "--raw", "/readyz"], capture_output=True,
                           text=True, timeout=60)
    if ready.returncode != 0:
        pytest.fail(f"the cluster does not answer ({ready.stderr.strip()[-300:]}): scripts/cluster.sh up",
                    pytrace=False)
    return env


def kubectl(*args: str, input: Optional[str] = None, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess:
    return sh(str(CLUSTER), "kubectl", *args, input=input, check=check, timeout=timeout)


def kjson(*args: str) -> Any:
    return json.loads(kubectl(*args, "-o", "json").stdout)


def apply(obj: dict) -> None:
    kubectl("apply", "-n", NAMESPACE, "-f", "-", input=json.dumps(obj))


def manifest(path: Path) -> dict:
    """A YAML manifest as the object kubectl reads (kubectl converts it: no YAML library needed)."""
    return json.loads(kubectl("create", "--dry-run=client", "-o", "json", "-f", str(path)).stdout)


def load(image: str) -> str:
    """The cluster's reference for a local docker image (scripts/cluster.sh load's last line)."""
    proc = sh(str(CLUSTER), "load", image, timeout=300)
    return proc.stdout.strip().splitlines()[-1]


def pyfunc_build(directory: Path, image: str) -> str:
    sh(*PYFUNC, "build", str(directory), "--image", image, timeout=900)
    return load(image)


def service(name: str, image: str, *, env: Optional[dict[str, str]] = None,
            annotations: Optional[dict[str, str]] = None, base: Optional[dict] = None,
            timeout_seconds: Optional[int] = None) -> dict:
    """A Knative Service: `base` (a manifest, e.g. deploy/service.yaml) or a minimal one, with
    this name, image, env and template annotations."""
    obj = json.loads(json.dumps(base)) if base else {
        "apiVersion": "serving.knative.dev/v1", "kind": "Service",
        "spec": {"template": {"spec": {"containers": [{"name": "function"}]}}}}
    obj["metadata"] = {**obj.get("metadata", {}), "name": name, "namespace": NAMESPACE}
    template = obj["spec"]["template"]
    template.setdefault("metadata", {}).setdefault("annotations", {}).update(annotations or {})
    container = template["spec"]["containers"][0]
    container["image"] = image
    if env:
        values = {e["name"]: e for e in container.get("env", [])}
        values.update({k: {"name": k, "value": v} for k, v in env.items()})
        container["env"] = list(values.values())
    if timeout_seconds:
        template["spec"]["timeoutSeconds"] = timeout_seconds
    return obj


def wait(what: str, check: Callable[[], Any], timeout: float = 300, every: float = 1.0) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (requests.RequestException, subprocess.SubprocessError, KeyError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    pytest.fail(f"{what}: not after {timeout:.0f} s (last: {last!r:.500})")


def resource_ready(kind: str, name: str, timeout: float = 300) -> dict:
    """Wait for a resource with a Ready condition (a Broker, a Trigger) to be Ready; the object."""
    def check() -> Optional[dict]:
        obj = kjson("get", kind, name, "-n", NAMESPACE)
        conds = {c["type"]: c["status"] for c in obj.get("status", {}).get("conditions", [])}
        return obj if conds.get("Ready") == "True" else None
    return wait(f"{kind} {name} Ready", check, timeout=timeout)


def ready(name: str) -> str:
    """Wait for the Knative Service's current spec to be Ready (after an update: its new revision
    serving); its URL's host."""
    def check() -> Optional[str]:
        ksvc = kjson("get", "ksvc", name, "-n", NAMESPACE)
        status = ksvc.get("status", {})
        if status.get("observedGeneration") != ksvc["metadata"]["generation"]:
            return None  # the controller has not seen the latest apply yet: its Ready is the old spec's
        ready_cond = {c["type"]: c for c in status.get("conditions", [])}.get("Ready", {})
        if (ready_cond.get("status") == "True" and status.get("url")
                and status.get("latestReadyRevisionName") == status.get("latestCreatedRevisionName")):
            return status["url"].split("://", 1)[1]
        if ready_cond.get("status") == "False" and "RevisionFailed" in ready_cond.get("reason", ""):
            pytest.fail(f"ksvc {name} failed: {ready_cond}")
        return None
    return wait(f"ksvc {name} Ready", check, timeout=300)


def ingress() -> str:
    return ENV["PYFUNC_INGRESS"]


def call(host: str, *, json_body: Any = None, method: str = "POST", headers: Optional[dict] = None,
         data: Optional[bytes] = None, timeout: float = 120, path: str = "/") -> requests.Response:
    """A request through the Knative ingress for the Service whose URL host is `host`."""
    return requests.request(method, f"http://{ingress()}{path}", json=json_body, data=data,
                            headers={"Host": host, **(headers or {})}, timeout=timeout)


def pods(service_name: str, *, running_only: bool = True) -> list[dict]:
    items = kjson("get", "pods", "-n", NAMESPACE, "-l", f"serving.knative.dev/service={service_name}")["items"]
    if running_only:
        items = [p for p in items
                 if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]
    return items


def scaled_to_zero(service_name: str, timeout: float = 240) -> None:
    """Every revision's Deployment scaled to 0 and no pod left that could serve (a terminating pod
    still drains for up to 30 s, but takes no new request: the next one is a scale from zero)."""
    def zero() -> bool:
        deployments = kjson("get", "deployments", "-n", NAMESPACE, "-l", f"serving.knative.dev/service={service_name}")
        return all(d["spec"].get("replicas") == 0 for d in deployments["items"]) and not pods(service_name)
    wait(f"{service_name} scaled to zero", zero, timeout=timeout, every=2)


def image_from_root(name: str, dockerfile: str, files: dict[str, Path]) -> str:
    """`docker build` of DOCKERFILE with FILES (context path -> host path) as its context."""
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Path(tmp)
        (ctx / "Dockerfile").write_text(dockerfile)
        for rel, src in files.items():
            dest = ctx / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                sh("cp", "-r", str(src), str(dest))
            else:
                dest.write_bytes(src.read_bytes())
        sh("docker", "build", "-q", "-t", name, str(ctx), timeout=900)
    return name


def root_image() -> str:
    """pyfunc/rootfs:bookworm (scripts/lib.sh's root_image: debootstrapped Debian 12 with python3)."""
    proc = sh("bash", "-c", f"source {REPO / 'scripts' / 'lib.sh'} && root_image bookworm", timeout=900)
    return proc.stdout.strip().splitlines()[-1]


def funcpy_image(tmp: Path) -> str:
    """The func-python 0.8.1 function: a plain Python image (the bookworm root) with func-python and
    its dependencies from PyPI (a hashed lock, installed on the host into a site directory)."""
    site = tmp / "site"
    sh(sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
       "--require-hashes", "--only-binary=:all:", "--target", str(site), "--python-version", "3.11",
       "--platform", "manylinux2014_x86_64", "--implementation", "cp",
       "-r", str(HERE / "funcpy" / "requirements.lock"), timeout=600)
    return image_from_root(f"{PREFIX}/cluster-funcpy", f"""FROM {root_image()}
COPY site /opt/site
COPY app /app
ENV PYTHONPATH=/opt/site LISTEN_ADDRESS=0.0.0.0:8080 PYTHONDONTWRITEBYTECODE=1
USER 65532
CMD ["python3", "/app/main.py"]
""", {"site": site, "app/main.py": HERE / "funcpy" / "main.py", "app/function": HERE / "funcpy" / "function"})


def redis_image(tmp: Path) -> str:
    """Debian's redis-server (the host's package) with the libraries it links, FROM scratch."""
    binary = Path("/usr/bin/redis-server")
    if not binary.exists():
        pytest.fail("redis-server missing: apt-get install redis-server (scripts/cluster.sh up does)", pytrace=False)
    libs = [p for p in (part.split("=>")[-1].split("(")[0].strip()
                        for part in sh("ldd", str(binary)).stdout.splitlines()) if p.startswith("/")]
    tar = tmp / "redis.tar"
    with tarfile.open(tar, "w") as t:
        for path in [str(binary), *libs]:
            t.add(Path(path).resolve(), arcname=path.lstrip("/"))
    name = f"{PREFIX}/cluster-redis:latest"
    sh("docker", "import", "--change", 'ENTRYPOINT ["/usr/bin/redis-server"]', "--change", "USER 65532",
       str(tar), name)
    return name
