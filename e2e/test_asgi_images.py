"""A Knative func Python function and a Starlette app, built with `pack build --builder pyfunc/builder`
and run as containers: served unchanged, as pyfunc serves them locally (docs/asgi.md)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from pyfunc_e2e import fresh_build, running

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

ASGI_TESTS = Path(__file__).resolve().parents[1] / "tests" / "asgi"


def test_func_python_function_image(tmp_path):
    app = tmp_path / "echo"
    shutil.copytree(ASGI_TESTS / "functions" / "echo", app)
    (app / "func.yaml").write_text("specVersion: 0.36.0\nname: echo\nruntime: python\n"
                                   "deploy:\n  healthEndpoints:\n    readiness: /ready-now\n")
    build = fresh_build("asgi-func-echo", path=app)
    with running(build.image, "-e", "GREETING=from docker") as fn:
        assert requests.get(fn.url + "/", timeout=10).text == "OK"
        reply = requests.post(fn.url + "/x?y=1", data=b"abc", timeout=10)
        assert reply.status_code == 200 and reply.json()["greeting"] == "from docker"
        assert requests.get(fn.url + "/ready-now", timeout=10).json()["message"] == "Ready"
        streamed = requests.get(fn.url + "/stream", timeout=10)
        assert streamed.text == "".join(f"data: {i}\n\n" for i in range(4))


def test_starlette_app_image(tmp_path):
    app = tmp_path / "starlette"
    app.mkdir()
    shutil.copy(ASGI_TESTS / "apps" / "starlette_app.py", app / "starlette_app.py")
    (app / "requirements.txt").write_text("starlette==0.47.2\n")
    # Starlette and its dependencies as vendored wheels (the host's pip fetches them; the build
    # runs with --network none, as e2e/test_functions.py's vendored build does).
    download = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--python-version", "3.11",
         "--implementation", "cp", "--platform", "manylinux2014_x86_64", "-d", str(app / "vendor"),
         "starlette==0.47.2"], capture_output=True, text=True, timeout=300)
    if download.returncode != 0:
        pytest.fail(f"could not download Starlette's wheels:\n{download.stdout}\n{download.stderr}")
    build = fresh_build("asgi-starlette", "--network", "none", "--env", "BP_PYTHON_HANDLER=starlette_app:app",
                        path=app)
    with running(build.image) as fn:
        reply = requests.post(fn.url + "/echo?a=1", json={"k": 1}, timeout=10)
        assert reply.status_code == 200
        assert reply.json()["greeting"] == "hello from lifespan" and reply.json()["json"] == {"k": 1}
        assert requests.get(fn.url + "/nowhere", timeout=10).status_code == 404
        assert requests.get(fn.url + "/sse?n=2", timeout=10).text == "data: 0\n\ndata: 1\n\n"
