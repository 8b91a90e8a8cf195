"""End-to-end fixtures: real `pack build`s with pyfunc/builder, real containers, real HTTP clients.

They assume scripts/install-tools.sh and scripts/build-images.sh ran (scripts/test.sh runs both):
docker is up, pack is in the cache's tools/bin, and the pyfunc/builder image exists.
Each example is built once per session; figures (sizes, build times, start latency) are printed at
the end of the run. A passing run that measured every figure writes them, stamped with the commit,
dirty flag and date, to e2e/results/containers.json (with PYFUNC_RECORD=1; else to the cache),
which README.md and docs/security.md are generated from (scripts/figures.py); a partial or failing
run leaves that file alone.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from pyfunc_e2e import (
    BASE,
    BUILDER,
    CACHE,
    ENV,
    EXAMPLES,
    HOST_CA,
    METRICS,
    REPO,
    Build,
    fresh_build,
    image_size,
    mb,
    pack_build,
    sh,
)

sys.path.insert(0, str(REPO / "scripts"))
from provenance import destination, stamp  # noqa: E402 - commit/dirty/date of every results file

RESULTS = REPO / "e2e" / "results" / "containers.json"
# What a full run measures; only a run that has all of them replaces the results file.
EXPECTED = {
    "base_image_mb", "build_image_mb", "builder_image_mb",
    "first_build_s.cloudevent-echo", "first_build_s.with-requirements",
    "first_build_s.vendored-wheels (offline)", "rebuild_s.with-requirements.no-change",
    "rebuild_s.with-requirements.handler-only", "function_image_added_mb.cloudevent-echo",
    "function_image_added_mb.with-requirements", "cold_start_s.cloudevent-echo median of 3",
    "sigterm_drain_stop_s (3 s request in flight)",
}

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
    METRICS["build_image_mb"] = mb(image_size("pyfunc/build"))
    METRICS["builder_image_mb"] = mb(image_size(BUILDER))


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
def knative_fn_build() -> Build:
    """e2e/knative/fn: the CloudEvent function the real-Knative tests (test_knative_*) run."""
    build = fresh_build("knative-fn", path=REPO / "e2e" / "knative" / "fn")
    METRICS["first_build_s.knative-fn"] = build.seconds
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
    build.vendor = app / "vendor"
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
    missing = EXPECTED - METRICS.keys()
    if exitstatus != 0 or missing:
        why = f"exit status {exitstatus}" if exitstatus != 0 else f"not measured: {', '.join(sorted(missing))}"
        terminalreporter.write_line(f"({RESULTS.relative_to(REPO)} left alone: {why})")
        return
    # Into the repo only for a deliberate measurement run (PYFUNC_RECORD=1), else into the cache.
    path = destination(RESULTS)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**stamp(), **METRICS}, indent=2) + "\n")
    then = "regenerate the docs: python3 scripts/figures.py" if path == RESULTS else "PYFUNC_RECORD=1 writes the repo's"
    terminalreporter.write_line(f"(written to {path}; {then})")
