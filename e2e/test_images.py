"""The base image on its own: contents, user, size, and a plain Dockerfile built FROM it."""

from __future__ import annotations

import pytest
import requests
from cloudevents.http import CloudEvent, from_http, to_structured

from pyfunc_e2e import BASE, EXAMPLES, METRICS, REPO, image_size, mb, running, sh

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(900),
    pytest.mark.filterwarnings("ignore:to_(binary|structured) is deprecated"),
]


def in_base(script: str, image: str = BASE) -> str:
    return sh("docker", "run", "--rm", "--entrypoint", "/bin/sh", image, "-c", script).stdout.strip()


def test_base_image_runs_as_non_root_with_the_runtime():
    config = sh("docker", "image", "inspect", "-f",
                "{{.Config.User}} {{json .Config.Entrypoint}} {{.Config.WorkingDir}}", BASE).stdout
    assert config.split()[0] == "1000:1000"
    assert '["python","-m","pyfunc","/workspace"]' in config
    assert in_base("id -u") == "1000"
    versions = in_base("python -c 'import importlib.metadata as m; "
                       "print(*(m.version(p) for p in (\"pyfunc-invoker\", \"flask\", "
                       "\"cloudevents\", \"waitress\")))'")
    assert len(versions.split()) == 4


def test_base_image_has_no_build_leftovers():
    # Multi-stage: no wheelhouse, no pip, no compilers in the runtime image.
    assert in_base("ls -d /wheelhouse /opt/pip 2>/dev/null; command -v pip pip3 gcc cc; "
                   "python -c 'import pip' 2>/dev/null && echo pip-importable; true") == ""


def test_build_and_run_images_share_the_interpreter():
    script = "readlink -f /opt/pyfunc/bin/python; python -c 'import sys; print(sys.version)'"
    assert in_base(script) == in_base(script, image="pyfunc/build")
    assert in_base("command -v pip", image="pyfunc/build") == "/opt/pip/bin/pip"


def test_base_image_size_budget():
    size = image_size(BASE)
    METRICS["base_image_mb"] = mb(size)
    assert size < 150e6, f"pyfunc/base grew to {mb(size)} MB"


def test_plain_dockerfile_function(tmp_path):
    """Users without buildpacks: FROM pyfunc/base + COPY handler.py."""
    image = "pyfunc-e2e/plain-dockerfile"
    sh("docker", "build", "-q", "-f", str(REPO / "image" / "function.Dockerfile"), "-t", image,
       str(EXAMPLES / "cloudevent-echo"))
    with running(image, "-e", "PORT=9090", "--read-only", "--tmpfs", "/tmp", port=9090) as fn:
        headers, body = to_structured(
            CloudEvent({"type": "com.example.ping", "source": "/plain"}, {"plain": True}))
        r = requests.post(fn.url, headers=headers, data=body, timeout=10)
        assert r.status_code == 200, r.text
        reply = from_http(r.headers, r.content)
        assert reply["type"] == "com.example.reply"
        assert reply.data == {"plain": True}
        METRICS["cold_start_s.plain-dockerfile (run -> first 200)"] = fn.ready_seconds
