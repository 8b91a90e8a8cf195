"""End-to-end fixtures: real `pack build`s with pyfunc/builder, real containers, real HTTP clients.

They assume scripts/install-tools.sh and scripts/build-images.sh ran (scripts/test.sh runs both):
docker is up, pack is in the cache's tools/bin, and the pyfunc/builder image exists.
Each example is built once per session; figures (sizes, build times, start latency) are printed at
the end of the run and written to $PYFUNC_CACHE/e2e-metrics.json.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import pytest
import requests

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
CACHE = Path(os.environ.get("PYFUNC_CACHE") or Path.home() / ".cache" / "pyfunc")
BUILDER = "pyfunc/builder"
BASE = "pyfunc/base"
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"
PREFIX = "pyfunc-e2e"

ENV = dict(os.environ)
ENV["PATH"] = f"{CACHE / 'tools' / 'bin'}{os.pathsep}{ENV.get('PATH', '')}"
ENV.setdefault("DOCKER_API_VERSION", "1.41")  # Debian 12's engine; a newer client must talk down
ENV.setdefault("PACK_VOLUME_KEY", "pyfunc-local")  # stable build-cache volumes across builds

METRICS: dict[str, object] = {}


def sh(*cmd: str, check: bool = True, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    """Run a command with the e2e environment; on failure, fail the test with its output."""
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def image_size(image: str) -> int:
    return int(sh("docker", "image", "inspect", "-f", "{{.Size}}", image).stdout)


def mb(size: float) -> float:
    return round(size / 1e6, 1)


@dataclass
class Build:
    image: str
    returncode: int
    output: str
    seconds: float

    def layer_sha(self, layer: str) -> Optional[str]:
        """The digest the lifecycle recorded for one of our buildpack's layers in the image."""
        label = sh("docker", "image", "inspect", "-f",
                   '{{index .Config.Labels "io.buildpacks.lifecycle.metadata"}}', self.image).stdout
        for bp in json.loads(label).get("buildpacks", []):
            if bp.get("key") == "pyfunc/python-function":
                return bp.get("layers", {}).get(layer, {}).get("sha")
        return None


def pack_build(image: str, path: Path, *extra: str, check: bool = True) -> Build:
    cmd = ["pack", "build", image, "--builder", BUILDER, "--pull-policy", "never",
           "--trust-builder", "--path", str(path), *extra]
    start = time.monotonic()
    proc = subprocess.run(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=900)
    build = Build(image, proc.returncode, proc.stdout, round(time.monotonic() - start, 2))
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-6000:]}")
    return build


def fresh_build(example: str, *extra: str, path: Optional[Path] = None, check: bool = True) -> Build:
    """A first build: no previous image, no build cache."""
    image = f"{PREFIX}/{example}"
    sh("docker", "rmi", "-f", image, check=False)
    return pack_build(image, path or EXAMPLES / example, "--clear-cache", *extra, check=check)


@dataclass
class Container:
    name: str
    url: str
    ready_seconds: float  # `docker run` issued -> first 200

    def logs(self) -> str:
        proc = sh("docker", "logs", self.name, check=False)
        return proc.stdout + proc.stderr

    def state(self, field: str) -> str:
        return sh("docker", "inspect", "-f", "{{.State.%s}}" % field, self.name).stdout.strip()


def _wait_ready(url: str, name: str, started: float, deadline: float = 60.0) -> float:
    """First 200 on /health/readiness; a runtime without it counts any HTTP answer on /."""
    while time.monotonic() - started < deadline:
        try:
            r = requests.get(f"{url}/health/readiness", timeout=2)
            if r.status_code == 200:
                return time.monotonic() - started
            if r.status_code == 404:
                requests.get(f"{url}/", timeout=2)
                return time.monotonic() - started
        except requests.RequestException:
            pass
        if sh("docker", "inspect", "-f", "{{.State.Running}}", name, check=False).stdout.strip() != "true":
            logs = sh("docker", "logs", name, check=False)
            pytest.fail(f"container {name} exited before it was ready:\n{logs.stdout}{logs.stderr}")
        time.sleep(0.02)
    pytest.fail(f"container {name} not ready after {deadline}s:\n{sh('docker', 'logs', name, check=False).stderr}")


@contextlib.contextmanager
def running(image: str, *docker_args: str, port: int = 8080) -> Iterator[Container]:
    """`docker run -d` IMAGE with a loopback-published port; removed afterwards."""
    name = f"{PREFIX}-{uuid.uuid4().hex[:10]}"
    started = time.monotonic()
    sh("docker", "run", "-d", "--name", name, "-p", f"127.0.0.1::{port}", *docker_args, image)
    try:
        mapping = sh("docker", "port", name, f"{port}/tcp").stdout.split()[0]
        url = f"http://127.0.0.1:{mapping.rsplit(':', 1)[1]}"
        yield Container(name, url, round(_wait_ready(url, name, started), 3))
    finally:
        sh("docker", "rm", "-f", name, check=False)


# ---- session setup -------------------------------------------------------------------------------

@pytest.fixture(scope="session", autouse=True)
def _e2e_prerequisites() -> None:
    if shutil.which("docker", path=ENV["PATH"]) is None:
        pytest.fail("docker not found: run scripts/install-tools.sh first", pytrace=False)
    if sh("docker", "info", check=False, timeout=30).returncode != 0:
        pytest.fail("docker daemon not reachable: run scripts/install-tools.sh (it starts dockerd)",
                    pytrace=False)
    if shutil.which("pack", path=ENV["PATH"]) is None:
        pytest.fail(f"pack not found in {CACHE / 'tools' / 'bin'}: run scripts/install-tools.sh",
                    pytrace=False)
    for image in (BASE, BUILDER):
        if sh("docker", "image", "inspect", image, check=False).returncode != 0:
            pytest.fail(f"image {image} missing: run scripts/install-tools.sh && scripts/build-images.sh "
                        "(scripts/test.sh does both)", pytrace=False)
    METRICS["base_image_mb"] = mb(image_size(BASE))


@pytest.fixture(scope="session")
def echo_build() -> Build:
    build = fresh_build("cloudevent-echo")
    METRICS["first_build_s.cloudevent-echo"] = build.seconds
    METRICS["function_image_added_mb.cloudevent-echo"] = mb(image_size(build.image) - image_size(BASE))
    return build


@pytest.fixture(scope="session")
def http_build() -> Build:
    build = fresh_build("http-json")
    METRICS["first_build_s.http-json"] = build.seconds
    return build


@pytest.fixture(scope="session")
def vendored_build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    """vendored-wheels with its wheel built from greeting-src, then `pack build --network none`."""
    app = tmp_path_factory.mktemp("vendored") / "app"
    shutil.copytree(EXAMPLES / "vendored-wheels", app)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel",
         "--quiet", "--no-deps", "-w", str(app / "vendor"), str(app / "greeting-src")],
        capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.fail(f"could not build the vendored wheel:\n{proc.stdout}\n{proc.stderr}")
    shutil.rmtree(app / "greeting-src")  # only the wheel may provide the module
    build = fresh_build("vendored-wheels", "--network", "none", path=app)
    METRICS["first_build_s.vendored-wheels (offline)"] = build.seconds
    return build


@pytest.fixture(scope="session")
def requirements_builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Build]:
    """with-requirements built three times: first (pip from the registry through the host CA
    bundle), again unchanged, and again after editing only handler.py."""
    app = tmp_path_factory.mktemp("with-requirements") / "app"
    shutil.copytree(EXAMPLES / "with-requirements", app)
    ca = ["--volume", f"{HOST_CA}:/etc/ssl/certs/ca-certificates.crt:ro",
          "--env", "PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
          "--env", "REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt"]
    builds = {"first": fresh_build("with-requirements", *ca, path=app)}
    builds["no_change"] = pack_build(builds["first"].image, app, *ca)
    handler = app / "handler.py"
    handler.write_text(handler.read_text().replace(
        '"human": humanize.naturalsize(size)}',
        '"human": humanize.naturalsize(size), "edited": True}'))
    assert '"edited": True' in handler.read_text()
    builds["handler_only"] = pack_build(builds["first"].image, app, *ca)
    METRICS["first_build_s.with-requirements"] = builds["first"].seconds
    METRICS["rebuild_s.with-requirements.no-change"] = builds["no_change"].seconds
    METRICS["rebuild_s.with-requirements.handler-only"] = builds["handler_only"].seconds
    METRICS["function_image_added_mb.with-requirements"] = mb(
        image_size(builds["first"].image) - image_size(BASE))
    return builds


# ---- report -----------------------------------------------------------------------------------------

def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001
    if not METRICS:
        return
    terminalreporter.section("pyfunc e2e figures")
    for key, value in METRICS.items():
        terminalreporter.write_line(f"{key:52} {value}")
    try:
        CACHE.mkdir(parents=True, exist_ok=True)
        (CACHE / "e2e-metrics.json").write_text(json.dumps(METRICS, indent=2) + "\n")
        terminalreporter.write_line(f"(also in {CACHE / 'e2e-metrics.json'})")
    except OSError:
        pass
