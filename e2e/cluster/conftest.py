"""Fixtures of the cluster e2e (marker `cluster`): the cluster, a fresh namespace, the functions
built and loaded once per session; the figures written to e2e/results/cluster.json at the end.

Selection: these tests carry both `e2e` (they need docker, pack and the images) and `cluster`.
`-m "not e2e"` leaves them out; scripts/test.sh runs the container e2e as `-m "e2e and not
cluster"` and these, after `scripts/cluster.sh up`, as `-m cluster`. Without a cluster they fail.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Optional

import pytest

from cluster_e2e import (
    FUNCTIONS,
    METRICS,
    NAMESPACE,
    PYFUNC,
    cluster_env,
    funcpy_image,
    kubectl,
    load,
    pyfunc_build,
    redis_image,
)
from pyfunc_e2e import CACHE, PREFIX, REPO, sh

sys.path.insert(0, str(REPO / "scripts"))
from provenance import destination, stamp  # noqa: E402

RESULTS = REPO / "e2e" / "results" / "cluster.json"
EXPECTED = {
    "scale_from_zero_s.pyfunc", "scale_from_zero_s.func-python", "rollout.requests", "rollout.failed",
    "autoscale.max_pods", "autoscale.requests_ok",
}


@pytest.fixture(scope="session")
def cluster() -> dict[str, str]:
    env = cluster_env()
    old = [n["metadata"]["name"] for n in json.loads(kubectl("get", "namespaces", "-o", "json").stdout)["items"]
           if n["metadata"]["name"].startswith("pyfunc-e2e")]
    if old:  # earlier sessions': gone in the background (their pods stop, so no load stays behind)
        kubectl("delete", "namespace", *old, "--wait=false")
    kubectl("create", "namespace", NAMESPACE)
    return env


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cluster")


@pytest.fixture(scope="session")
def hello_dir(workdir: Path) -> Path:
    """The function `pyfunc init --template http` makes, untouched."""
    path = workdir / "hello"
    sh(*PYFUNC, "init", str(path), "--template", "http", "--name", "hello")
    return path


@pytest.fixture(scope="session")
def hello_image(cluster: dict, hello_dir: Path) -> str:
    return pyfunc_build(hello_dir, f"{PREFIX}/cluster-hello")


@pytest.fixture(scope="session")
def funcpy_ref(cluster: dict, workdir: Path) -> str:
    return load(funcpy_image(workdir))


def _function(name: str, workdir: Path, handler: Optional[Path] = None) -> str:
    path = workdir / name
    shutil.copytree(FUNCTIONS / name, path)
    if handler is not None:  # another function's code, with this one's requirements
        shutil.copy(handler, path / "handler.py")
    if (path / "requirements.txt").exists():  # wheels from PyPI through the host's trust store
        sh(sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
           "--only-binary=:all:", "-d", str(path / "vendor"), "-r", str(path / "requirements.txt"), timeout=300)
    return pyfunc_build(path, f"{PREFIX}/cluster-{name}")


@pytest.fixture(scope="session")
def worker_image(cluster: dict, workdir: Path) -> str:
    return _function("worker", workdir)


@pytest.fixture(scope="session")
def events_image(cluster: dict, workdir: Path) -> str:
    return _function("events", workdir)


@pytest.fixture(scope="session")
def recorder_image(cluster: dict, workdir: Path) -> str:
    return _function("recorder", workdir)


@pytest.fixture(scope="session")
def guarded_image(cluster: dict, workdir: Path) -> str:
    """The recorder, built with pyfunc's `oidc` extra (functions/guarded/requirements.txt)."""
    return _function("guarded", workdir, handler=FUNCTIONS / "recorder" / "handler.py")


@pytest.fixture(scope="session")
def redis_ref(cluster: dict, workdir: Path) -> str:
    return load(redis_image(workdir))


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001
    if not METRICS:
        return
    terminalreporter.section("pyfunc cluster e2e figures")
    for key, value in METRICS.items():
        terminalreporter.write_line(f"{key:52} {value}")
    missing = EXPECTED - METRICS.keys()
    if exitstatus != 0 or missing:
        why = f"exit status {exitstatus}" if exitstatus != 0 else f"not measured: {', '.join(sorted(missing))}"
        terminalreporter.write_line(f"({RESULTS.relative_to(REPO)} left alone: {why})")
        return
    versions = dict(line.split("=", 1) for line in (REPO / "scripts" / "versions.env").read_text().splitlines()
                    if "=" in line and not line.startswith("#"))
    up = CACHE / "cluster" / "state" / "up-seconds"  # scripts/cluster.sh up's last (re)start
    if up.exists():
        METRICS["last_up_s"] = int(up.read_text())
    path = destination(RESULTS)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**stamp(), "kubernetes": versions.get("K8S_VERSION"),
                                "knative_serving": versions.get("KNATIVE_SERVING_VERSION"),
                                "knative_eventing": versions.get("KNATIVE_EVENTING_VERSION"),
                                "ingress": f"traefik {versions.get('TRAEFIK_VERSION')}",
                                **METRICS}, indent=2) + "\n")
    terminalreporter.write_line(f"(written to {path})")
