"""Lock files in the buildpack (uv.lock, pylock.toml, poetry.lock) and a function on cloudevents 2.x.

The lock functions (e2e/functions/lock-*) allow ``humanize>=4.0`` and lock 4.9.0, older than the
newest: the image must run, and its SBOM list, exactly the locked version.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from cloudevents.http import CloudEvent, from_http, to_binary

from pyfunc_e2e import HOST_CA, fresh_build, pack_build, running, sh

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(1200),
    pytest.mark.filterwarnings("ignore:to_(binary|structured) is deprecated"),
]

FUNCTIONS = Path(__file__).resolve().parent / "functions"
CERT = "/etc/ssl/certs/ca-certificates.crt"
# The host's CA bundle for every tool that may reach the index: pip, uv, poetry (requests).
CA = ["--volume", f"{HOST_CA}:{CERT}:ro", "--env", f"PIP_CERT={CERT}", "--env", f"SSL_CERT_FILE={CERT}",
      "--env", f"REQUESTS_CA_BUNDLE={CERT}"]
LOCKS = {"lock-uv": "uv.lock", "lock-pylock": "pylock.toml", "lock-poetry": "poetry.lock"}


def copy(name: str, tmp_path: Path) -> Path:
    app = tmp_path / name
    shutil.copytree(FUNCTIONS / name, app)
    return app


def deps_sbom(image: str, tmp_path: Path) -> str:
    sh("pack", "sbom", "download", image, "--output-dir", str(tmp_path / "sbom"))
    return (tmp_path / "sbom/layers/sbom/launch/pyfunc_python-function/deps/sbom.cdx.json").read_text()


@pytest.mark.parametrize("name", sorted(LOCKS))
def test_the_image_runs_the_locked_versions(name, tmp_path):
    build = fresh_build(name, *CA, path=copy(name, tmp_path))
    assert f"Installing dependencies from {LOCKS[name]}" in build.output
    with running(build.image) as fn:
        reply = requests.get(fn.url, timeout=10).json()
    assert reply == {"humanize": "4.9.0", "human": "3.0 kB"}
    assert "pkg:pypi/humanize@4.9.0" in deps_sbom(build.image, tmp_path)


@pytest.mark.parametrize(("name", "message"), [
    ("lock-uv", "needs to be updated"),             # uv's own words
    ("lock-poetry", "changed significantly since poetry.lock"),  # poetry's
])
def test_a_stale_lock_fails_the_build_with_the_tools_message(name, message, tmp_path):
    app = copy(name, tmp_path)
    pyproject = app / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('["humanize>=4.0"]', '["humanize>=4.0", "idna"]'))
    build = fresh_build(name + "-stale", *CA, path=app, check=False)
    assert build.returncode != 0
    assert message in build.output, build.output[-3000:]
    assert f"ERROR: {LOCKS[name]} does not match pyproject.toml" in build.output


def test_the_lock_is_part_of_the_dependency_cache_key(tmp_path):
    app = copy("lock-uv", tmp_path)
    first = fresh_build("lock-uv-cache", *CA, path=app)
    again = pack_build(first.image, app, *CA)
    assert "Reusing cached dependencies layer" in again.output
    lock = app / "uv.lock"
    lock.write_text(lock.read_text() + "\n# edited: a new lock, a new key\n")
    edited = pack_build(first.image, app, *CA)
    assert "Installing dependencies from uv.lock" in edited.output


@pytest.mark.parametrize("name", sorted(LOCKS))
def test_a_locked_function_builds_offline_from_vendored_wheels(name, tmp_path):
    app = copy(name, tmp_path)
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                           "-d", str(app / "vendor"), "humanize==4.9.0"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    build = fresh_build(f"{name}-offline", "--network", "none", path=app)
    with running(build.image) as fn:
        assert requests.get(fn.url, timeout=10).json()["humanize"] == "4.9.0"


def test_a_function_on_cloudevents_2(tmp_path):
    """Its own requirements pin cloudevents 2.2.0 over the runtime's 1.x: the handler binds and
    returns 2.x's CloudEvent, and imports one SDK, its own."""
    build = fresh_build("sdk2-core", *CA, path=copy("sdk2-core", tmp_path))
    assert "The function's own versions replace the runtime's: cloudevents" in build.output
    with running(build.image) as fn:
        headers, body = to_binary(CloudEvent({"type": "com.example.ping", "source": "/e2e"}, {"n": 2}))
        r = requests.post(fn.url, headers=headers, data=body, timeout=10)
    assert r.status_code == 200, r.text
    reply = from_http(r.headers, r.content)
    assert reply["type"] == "com.example.sdk2" and reply["sdkext"] == "two"
    data = reply.data
    assert data["sdk"] == "2.2.0" and data["got"] == {"n": 2} and data["time_is_datetime"] is True
    assert len(data["package_dirs"]) == 1 and data["package_dirs"][0].startswith("/layers/")
    assert len(data["copies"]) == 1 and data["versions"] == ["2.2.0"] and data["has_1x_http"] is False


def test_a_pin_the_runtime_refuses_fails_the_build(tmp_path):
    app = tmp_path / "bad-pin"
    app.mkdir()
    (app / "handler.py").write_text("def handler():\n    return 'x'\n")
    (app / "requirements.txt").write_text("flask==2.3.3\n")  # pyfunc-invoker needs flask>=3
    build = fresh_build("bad-pin", *CA, path=app, check=False)
    assert build.returncode != 0
    assert "conflict with the runtime's" in build.output and "flask" in build.output
