"""Example functions built with `pack build` and spoken to with the real cloudevents SDK."""

from __future__ import annotations

import pytest
import requests
from cloudevents.http import CloudEvent, from_http, to_binary, to_structured

from pyfunc_e2e import EXAMPLES, fresh_build, running

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(1200),
    pytest.mark.filterwarnings("ignore:to_(binary|structured) is deprecated"),
]


@pytest.fixture(scope="module")
def echo(echo_build):
    with running(echo_build.image) as container:
        yield container


def ping(data) -> CloudEvent:
    return CloudEvent({"type": "com.example.ping", "source": "/e2e/tests"}, data)


def test_cloudevent_binary_mode(echo):
    event = ping({"message": "hi", "n": 1})
    headers, body = to_binary(event)
    r = requests.post(echo.url, headers=headers, data=body, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["ce-type"] == "com.example.reply"  # binary reply by default
    reply = from_http(r.headers, r.content)
    assert reply["type"] == "com.example.reply"
    assert reply["source"] == "/echo"
    assert reply["specversion"] == "1.0" and reply["id"] and reply["time"]
    assert reply.data == {"message": "hi", "n": 1}


def test_cloudevent_structured_mode(echo):
    headers, body = to_structured(ping({"message": "structured"}))
    assert headers["content-type"].startswith("application/cloudevents+json")
    r = requests.post(echo.url, headers=headers, data=body, timeout=10)
    assert r.status_code == 200, r.text
    reply = from_http(r.headers, r.content)
    assert reply["type"] == "com.example.reply"
    assert reply.data == {"message": "structured"}


def test_health_endpoints(echo):
    for path in ("/health/liveness", "/health/readiness"):
        assert requests.get(echo.url + path, timeout=5).status_code == 200


def test_http_function(http_build):
    with running(http_build.image) as fn:
        r = requests.post(fn.url, json={"name": "knative"}, timeout=10)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/json")
        assert r.json() == {"hello": "knative", "method": "POST"}
        assert requests.get(fn.url, timeout=10).json() == {"hello": "world", "method": "GET"}


def test_requirements_installed_from_registry(requirements_builds):
    first = requirements_builds["first"]
    assert "Installing dependencies: -r requirements.txt" in first.output
    with running(first.image) as fn:
        headers, body = to_binary(
            CloudEvent({"type": "com.example.measure", "source": "/e2e"}, {"bytes": 3_000_000}))
        r = requests.post(fn.url, headers=headers, data=body, timeout=10)
        assert r.status_code == 200, r.text
        reply = from_http(r.headers, r.content)
        assert reply["type"] == "com.example.size"
        assert reply.data["human"] == "3.0 MB"


def test_vendored_wheels_install_offline(vendored_build):
    # Built with `pack build --network none`: pip could only use vendor/*.whl.
    assert "--no-index --find-links vendor" in vendored_build.output
    with running(vendored_build.image) as fn:
        r = requests.get(fn.url, params={"name": "offline"}, timeout=10)
        assert r.status_code == 200, r.text
        assert r.json()["greeting"] == "Hello, offline!"
        assert r.json()["from"].startswith("/layers/")  # from the dependencies layer, not the app


def test_pyproject_dependencies_install(vendored_build, tmp_path):
    """[project].dependencies of a pyproject.toml, here satisfied offline from vendor/."""
    (tmp_path / "vendor").mkdir()
    for wheel in vendored_build.vendor.glob("*.whl"):
        (tmp_path / "vendor" / wheel.name).write_bytes(wheel.read_bytes())
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "fn"\nversion = "0"\ndependencies = ["pyfunc-example-greeting==1.0.0"]\n')
    (tmp_path / "handler.py").write_text(
        "import pyfunc_example_greeting as g\n\n"
        "def handler(req):\n    return {'greeting': g.greet('pyproject')}\n")
    build = fresh_build("pyproject-deps", "--network", "none", path=tmp_path)
    assert "---> Installing dependencies: -r " in build.output
    with running(build.image) as fn:
        assert requests.get(fn.url, timeout=10).json() == {"greeting": "Hello, pyproject!"}


def test_broken_handler_fails_the_build():
    build = fresh_build("broken-handler", check=False)
    assert build.returncode != 0, build.output
    # The buildpack's check names file, line and problem, as the runtime would at start-up.
    assert "handler.py:6" in build.output, build.output
    assert "No module named 'no_such_module_here'" in build.output, build.output
    assert "pyfunc check failed" in build.output
    assert "Successfully built image" not in build.output


def test_app_without_handler_is_not_detected(tmp_path):
    (tmp_path / "main.py").write_text("def main():\n    return 'hi'\n")
    build = fresh_build("no-handler", path=tmp_path, check=False)
    assert build.returncode != 0
    assert "No buildpack groups passed detection" in build.output, build.output
    assert "pyfunc: no handler.py in the app directory" in build.output  # detect's one-line reason


def test_python_handler_env_selects_module(tmp_path):
    (tmp_path / "func.py").write_text(
        "def main(req):\n    return {'handler': 'func.main'}\n")
    build = fresh_build("custom-handler", "--env", "BP_PYTHON_HANDLER=func.main", path=tmp_path)
    assert "Checking the handler 'func.main'" in build.output
    with running(build.image) as fn:
        assert requests.get(fn.url, timeout=10).json() == {"handler": "func.main"}


def test_examples_exist():
    for name in ("cloudevent-echo", "http-json", "with-requirements", "vendored-wheels", "broken-handler"):
        assert (EXAMPLES / name / "handler.py").is_file()
