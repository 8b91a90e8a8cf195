"""Helpers for the end-to-end tests: `pack build` with pyfunc/builder, `docker run`, readiness.

(A module of its own, not conftest.py, so the tests can import it without clashing with
tests/conftest.py.)
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
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
    vendor: Optional[Path] = None  # the app's vendor/ dir, when it has one

    def layer_sha(self, layer: str) -> Optional[str]:
        """The digest the lifecycle recorded for one of our buildpack's layers in the image."""
        label = sh("docker", "image", "inspect", "-f",
                   '{{index .Config.Labels "io.buildpacks.lifecycle.metadata"}}', self.image).stdout
        for bp in json.loads(label).get("buildpacks", []):
            if bp.get("key") == "pyfunc/python-function":
                return bp.get("layers", {}).get(layer, {}).get("sha")
        return None


def pack_build(image: str, path: Path, *extra: str, check: bool = True, builder: str = BUILDER) -> Build:
    cmd = ["pack", "build", image, "--builder", builder, "--pull-policy", "never",
           "--trust-builder", "--path", str(path), *extra]
    start = time.monotonic()
    proc = subprocess.run(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=900)
    build = Build(image, proc.returncode, proc.stdout, round(time.monotonic() - start, 2))
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-6000:]}")
    return build


def fresh_build(example: str, *extra: str, path: Optional[Path] = None, check: bool = True,
                builder: str = BUILDER) -> Build:
    """A first build: no previous image, no build cache."""
    image = f"{PREFIX}/{example}"
    sh("docker", "rmi", "-f", image, check=False)
    return pack_build(image, path or EXAMPLES / example, "--clear-cache", *extra, check=check, builder=builder)


@dataclass
class Container:
    name: str
    url: str
    ready_seconds: float  # `docker run` issued -> first 200

    def logs(self) -> str:
        proc = sh("docker", "logs", self.name, check=False)
        return proc.stdout + proc.stderr

    def state(self, field: str) -> str:
        return sh("docker", "inspect", "-f", "{{.State." + field + "}}", self.name).stdout.strip()


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


