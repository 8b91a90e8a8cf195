"""Real Knative parts in the e2e: the binaries scripts/install-knative.sh builds, and a "pod" made of
containers the way Knative's reconciler specifies it.

`pod_spec(manifest)` asks kn-validate (serving v0.44.0's webhook defaults/validation plus its
reconcilers' MakeConfiguration -> MakeRevision -> MakeDeployment) for the pod Knative would run for a
Service manifest. `pod(...)` then runs that pod with docker: a pause container holding the network
namespace (kn-pause), the function container and the real queue-proxy joined to it
(`--network container:…`), with exactly the env, preStop hook and grace period of that spec. Only
the fieldRef values (pod name/IP, host IP), which the kubelet fills in, are supplied here.
`delete(pod)` does what the kubelet does when a pod is deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tarfile
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import pytest
import requests

from pyfunc_e2e import CACHE, PREFIX, REPO, sh

BIN = CACHE / "tools" / "bin"
MANIFEST = REPO / "deploy" / "service.yaml"
KUBELET_PROBE = {"K-Network-Probe": "queue", "User-Agent": "kube-probe/1.31"}


def tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{path} missing: run scripts/install-knative.sh (scripts/install-tools.sh runs it)",
                    pytrace=False)
    return str(path)


def kn_validate(*files: str, pod: bool = False, check: bool = True):
    return sh(tool("kn-validate"), *(["-pod"] if pod else []), *files, check=check, timeout=60)


def pod_spec(manifest: Path = MANIFEST) -> dict:
    """The Deployment pod spec Knative v0.44.0 makes for the manifest's Service (first document)."""
    out = kn_validate(str(manifest), pod=True).stdout
    return json.loads(out.split("\n---\n", 1)[1])[0]["pod"]


def queue_proxy_image() -> str:
    """An image with only the static queue-proxy and kn-pause binaries (docker import, no base)."""
    stamps = "".join((BIN / f"{b}.stamp").read_text() for b in ("queue-proxy", "kn-pause")
                     if (BIN / f"{b}.stamp").exists())
    tag = f"{PREFIX}/queue-proxy:{hashlib.sha256(stamps.encode()).hexdigest()[:12]}"
    if sh("docker", "image", "inspect", tag, check=False).returncode == 0:
        return tag
    with tempfile.TemporaryDirectory() as tmp:
        tar = Path(tmp) / "rootfs.tar"
        with tarfile.open(tar, "w") as t:
            for b in ("queue-proxy", "kn-pause"):
                info = t.gettarinfo(tool(b), arcname=b)
                info.uid = info.gid = 0
                info.mode = 0o755
                with open(tool(b), "rb") as f:
                    t.addfile(info, f)
        sh("docker", "import", "--change", 'ENTRYPOINT ["/queue-proxy"]', "--change", "USER 65532",
           str(tar), tag)
    return tag


@dataclass
class Pod:
    name: str
    url: str          # queue-proxy's :8012, what the activator / ingress talk to
    admin_url: str    # queue-proxy's :8022 (preStop /wait-for-drain)
    user_url: str     # the function's own port, bypassing queue-proxy
    spec: dict
    ready_dir: Path
    containers: dict[str, str] = field(default_factory=dict)  # role -> docker name

    @property
    def user(self) -> dict:
        return self.spec["containers"][0]

    @property
    def queue(self) -> dict:
        return next(c for c in self.spec["containers"] if c["name"] == "queue-proxy")

    def make_ready(self) -> None:
        (self.ready_dir / "ready").write_text("ok")

    def probe(self) -> Optional[int]:
        """kubelet's readiness probe of the pod (queue-proxy's, on :8012, with its timeoutSeconds):
        the status, or None when it timed out (a failure for the kubelet). Until the user container
        is ready, queue-proxy keeps probing it every 50 ms for up to 10 s before answering 503."""
        timeout = self.queue["readinessProbe"].get("timeoutSeconds", 1)
        try:
            return requests.get(self.url, headers=KUBELET_PROBE, timeout=timeout).status_code
        except requests.Timeout:
            return None

    def wait_ready(self, deadline: float = 60) -> float:
        start = time.monotonic()
        while time.monotonic() - start < deadline:
            with contextlib.suppress(requests.RequestException):
                if self.probe() == 200:
                    return time.monotonic() - start
            time.sleep(0.05)
        pytest.fail(f"pod not ready after {deadline}s:\n{self.logs()}")

    def state(self, role: str, what: str) -> str:
        return sh("docker", "inspect", "-f", "{{.State." + what + "}}", self.containers[role],
                  check=False).stdout.strip()

    def logs(self, role: Optional[str] = None) -> str:
        out = []
        for r, name in self.containers.items():
            if role in (None, r):
                p = sh("docker", "logs", name, check=False)
                out.append(f"--- {r} ---\n{p.stdout[-4000:]}{p.stderr[-4000:]}")
        return "\n".join(out)


def _env(items: list, pod_name: str) -> list[str]:
    """docker -e flags from a container's env; fieldRefs filled in as the kubelet would."""
    field_values = {"metadata.name": pod_name, "status.podIP": "127.0.0.1", "status.hostIP": "127.0.0.1"}
    args = []
    for item in items or []:
        if "valueFrom" in item:
            value = field_values[item["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            value = item.get("value", "")
        args += ["-e", f"{item['name']}={value}"]
    return args


def _security(container: dict) -> list[str]:
    sc = container.get("securityContext") or {}
    args = []
    if sc.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    if "runAsUser" in sc:  # else the image's own (non-root) user, as the kubelet does
        args += ["-u", str(sc["runAsUser"])]
    if sc.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    for cap in (sc.get("capabilities") or {}).get("drop", []):
        args += ["--cap-drop", cap]
    for mount in container.get("volumeMounts") or []:
        args += ["--tmpfs", mount["mountPath"]]  # the manifests' only volume is an emptyDir
    return args


@contextlib.contextmanager
def pod(fn_image: str, manifest: Path = MANIFEST, ready: bool = True) -> Iterator[Pod]:
    """Run the pod Knative makes for `manifest`, with `fn_image` as the user container's image."""
    spec = pod_spec(manifest)
    qp_image = queue_proxy_image()
    name = f"{PREFIX}-pod-{uuid.uuid4().hex[:8]}"
    ready_dir = Path(tempfile.mkdtemp(prefix="pyfunc-ready-"))
    ready_dir.chmod(0o755)
    user_port = spec["containers"][0]["ports"][0]["containerPort"]
    p = Pod(name, "", "", "", spec, ready_dir)
    if ready:
        p.make_ready()
    try:
        p.containers["pause"] = f"{name}-pause"
        sh("docker", "run", "-d", "--name", p.containers["pause"], "-p", "127.0.0.1::8012",
           "-p", "127.0.0.1::8022", "-p", f"127.0.0.1::{user_port}", "--entrypoint", "/kn-pause", qp_image)

        def port(n: int) -> str:
            out = sh("docker", "port", p.containers["pause"], f"{n}/tcp").stdout.split()[0]
            return f"http://127.0.0.1:{out.rsplit(':', 1)[1]}"

        p.url, p.admin_url, p.user_url = port(8012), port(8022), port(user_port)
        net = ["--network", f"container:{p.containers['pause']}"]
        p.containers["user"] = f"{name}-fn"
        sh("docker", "run", "-d", "--name", p.containers["user"], *net, *_env(p.user.get("env"), name),
           *_security(p.user), "-v", f"{ready_dir}:/ready:ro", "-e", "READY_FILE=/ready/ready", fn_image)
        p.containers["queue"] = f"{name}-qp"
        sh("docker", "run", "-d", "--name", p.containers["queue"], *net,
           *_env(p.queue.get("env"), name), *_security(p.queue), qp_image)
        yield p
    finally:
        for c in reversed(list(p.containers.values())):
            sh("docker", "rm", "-f", c, check=False)
        with contextlib.suppress(OSError):
            (ready_dir / "ready").unlink()
            ready_dir.rmdir()


def delete(p: Pod) -> dict:
    """Pod deletion as the kubelet does it: at the same moment the user container's preStop hook
    (queue-proxy's /wait-for-drain) and SIGTERM to queue-proxy (it has no preStop); when the hook
    returns, SIGTERM to the user container; SIGKILL to whatever still runs at
    terminationGracePeriodSeconds. Returns the timings (seconds from the start)."""
    grace = p.spec["terminationGracePeriodSeconds"]
    hook = p.user["lifecycle"]["preStop"]["httpGet"]
    assert hook["port"] == 8022, hook
    t0 = time.monotonic()
    out: dict = {"grace": grace}

    def prestop() -> None:
        r = requests.get(p.admin_url + hook["path"], timeout=grace)
        out["prestop_status"] = r.status_code
        out["prestop_returned"] = time.monotonic() - t0

    hook_thread = threading.Thread(target=prestop)
    hook_thread.start()
    sh("docker", "kill", "-s", "TERM", p.containers["queue"])
    hook_thread.join(timeout=grace)
    sh("docker", "kill", "-s", "TERM", p.containers["user"], check=False)
    out["user_sigterm"] = time.monotonic() - t0
    exited: dict = {}
    while time.monotonic() - t0 < grace and len(exited) < 2:
        for role in ("queue", "user"):
            if role not in exited and p.state(role, "Running") != "true":
                exited[role] = time.monotonic() - t0
        time.sleep(0.2)
    for role in ("queue", "user"):
        if role not in exited:
            sh("docker", "kill", "-s", "KILL", p.containers[role], check=False)
            out[f"{role}_killed"] = True
        out[f"{role}_exited"] = exited.get(role)
        out[f"{role}_exit_code"] = p.state(role, "ExitCode")
    return out
