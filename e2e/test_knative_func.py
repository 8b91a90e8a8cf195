"""Knative's `func` CLI (knative.dev/func v0.44.0, built by scripts/install-knative.sh) creates
pyfunc functions from the template repository in func-templates/, offline; the result passes
`pyfunc check` and builds with pack and pyfunc/builder into an image that serves.

`func build` itself is not run: func v0.44 always pulls its builder, run and lifecycle images from a
registry, so with the locally built pyfunc/builder it fails offline (knative/func issue 2516).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests
from cloudevents.http import CloudEvent, from_http, to_binary

from knative_parts import tool
from pyfunc_e2e import ENV, PREFIX, REPO, pack_build, running, sh

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(900),
    pytest.mark.filterwarnings("ignore:to_(binary|structured) is deprecated"),
]


def func_create(tmp_path, template: str):
    app = tmp_path / f"my-{template}"
    env = {**ENV, "HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    proc = subprocess.run(
        [tool("func"), "create", "-l", "python", "-t", template,
         "--repository", f"file://{REPO / 'func-templates'}", str(app)],
        env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return app


@pytest.mark.parametrize("template", ["cloudevents", "http"])
def test_func_create_gives_a_pyfunc_function(tmp_path, template):
    app = func_create(tmp_path, template)
    func_yaml = (app / "func.yaml").read_text()
    assert "runtime: python" in func_yaml
    assert "builderImages:\n    pack: pyfunc/builder" in func_yaml
    assert "readiness: /health/readiness" in func_yaml
    assert ("invoke: cloudevent" in func_yaml) == (template == "cloudevents")
    assert (app / "handler.py").read_text() == (
        REPO / "func-templates" / "python" / template / "handler.py").read_text()
    check = subprocess.run([sys.executable, "-m", "pyfunc", "check", str(app)],
                           env=ENV, capture_output=True, text=True, timeout=60)
    kind = "cloudevent function" if template == "cloudevents" else "http function"
    assert check.returncode == 0 and kind in check.stdout, check.stdout + check.stderr
    # The template's own tests pass (pyfunc.testing, in-process).
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(app)],
                           env=ENV, capture_output=True, text=True, timeout=120, cwd=app)
    assert tests.returncode == 0, tests.stdout[-3000:]


@pytest.mark.parametrize("template", ["cloudevents", "http"])
def test_func_created_function_builds_and_serves(tmp_path, template):
    app = func_create(tmp_path, template)
    image = f"{PREFIX}/func-{template}"
    sh("docker", "rmi", "-f", image, check=False)
    pack_build(image, app)
    try:
        with running(image) as fn:
            if template == "cloudevents":
                headers, body = to_binary(CloudEvent(
                    {"type": "com.example.ping", "source": "/func"}, {"message": "hello"}))
                r = requests.post(fn.url, headers=headers, data=body, timeout=10)
                assert r.status_code == 200, r.text
                reply = from_http(r.headers, r.content)
                assert reply["type"] == "com.example.reply" and reply["source"] == "/function"
                assert reply.data == {"received": {"message": "hello"}}
            else:
                r = requests.post(fn.url, json={"name": "Knative"}, timeout=10)
                assert r.status_code == 200 and r.json() == {"message": "Hello, Knative!"}, r.text
    finally:
        sh("docker", "rmi", "-f", image, check=False)
