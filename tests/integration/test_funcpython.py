"""Knative func Python functions (func-python's layout) served by pyfunc with no configuration.

The HTTP function is func's own template (knative/func templates/python/http/function/func.py),
in substance; the CloudEvents one answers with the SDK the venv has (1.x here: scope["event"] is
``cloudevents.http.CloudEvent``; tests/asgi runs 2.x's template against func-python itself).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import requests

from support import from_http, make_event, run_pyfunc, send, start_server, wait_until_up

HTTP_FUNCTION = '''
import logging

log = []


def new():
    return Function()


class Function:
    def __init__(self):
        self.config = None

    async def handle(self, scope, receive, send):
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] == "/raise":
            raise RuntimeError("the secret token")
        text = f"{scope['method']} {scope['path']} {scope['query_string'].decode()} {len(body)} " \\
               f"{self.config.get('GREETING')}"
        await send({"type": "http.response.start", "status": 200, "headers": [[b"content-type", b"text/plain"]]})
        await send({"type": "http.response.body", "body": text.encode()})

    def start(self, cfg):
        assert isinstance(cfg, dict)
        self.config = cfg
        logging.info("Function starting")

    def stop(self):
        print("Function stopping", flush=True)

    def alive(self):
        return True, "Alive"

    def ready(self):
        return self.config.get("READY", "yes") == "yes", "Ready"
'''

EVENT_FUNCTION = '''
try:  # SDK 2.x: scope["event"] is its own type, as in func's template
    from cloudevents.core.v1.event import CloudEvent

    def make(attributes, data):
        return CloudEvent(attributes=attributes, data=data)
except ImportError:  # only 1.x installed: its cloudevents.http.CloudEvent
    from cloudevents.http import CloudEvent

    def make(attributes, data):
        return CloudEvent(attributes, data)


def new():
    return Function()


class Function:
    async def handle(self, scope, receive, send):
        event = scope["event"]
        assert type(event) is CloudEvent, type(event)
        attributes = event.get_attributes()
        reply = make({"type": "function.response", "source": "function", "id": "r-" + attributes["id"]},
                     {"echo": event.get_data(), "type": attributes["type"]})
        if scope["path"] == "/binary":
            await send.binary(reply)
        else:
            await send(reply)
'''


def function_dir(directory: Path, source: str, func_yaml: str = "") -> Path:
    package = directory / "function"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("from .func import new\n")
    (package / "func.py").write_text(textwrap.dedent(source))
    (directory / "pyproject.toml").write_text('[project]\nname = "function"\nversion = "0.1.0"\n')
    if func_yaml:
        (directory / "func.yaml").write_text(func_yaml)
    return directory


@pytest.fixture(scope="module")
def http_function(tmp_path_factory):
    running = start_server(function_dir(tmp_path_factory.mktemp("fp") / "f", HTTP_FUNCTION),
                           {"GREETING": "hi"})
    yield running
    running.stop()


def test_http_function_with_start_config(http_function):
    reply = requests.post(http_function.url + "/some/path?x=1", data=b"12345", timeout=5)
    assert reply.status_code == 200 and reply.headers["Content-Type"] == "text/plain"
    assert reply.text == "POST /some/path x=1 5 hi"


def test_health_from_the_instance(http_function):
    live = requests.get(http_function.url + "/health/liveness", timeout=5)
    assert live.status_code == 200 and live.json() == {"status": "ok", "message": "Alive"}
    assert requests.get(http_function.url + "/health/readiness", timeout=5).json()["message"] == "Ready"


def test_an_exception_in_handle_is_a_500_problem(http_function):
    reply = requests.get(http_function.url + "/raise", timeout=5)
    assert reply.status_code == 500 and reply.json()["reason"] == "function-error"
    assert "secret" not in reply.text
    assert "the secret token" in http_function.logs()


def test_not_ready_is_503_and_stop_runs_after_the_drain(tmp_path):
    running = start_server(function_dir(tmp_path / "f", HTTP_FUNCTION), {"READY": "no"}, wait=False)
    wait_until_up(running.url, running.process, running.log_path)
    try:
        reply = requests.get(running.url + "/health/readiness", timeout=5)
        assert reply.status_code == 503 and reply.json()["status"] == "unavailable"
    finally:
        assert running.stop() == 0
    logs = running.logs()
    assert "Function starting" in logs and "Function stopping" in logs
    assert logs.index("draining") < logs.index("Function stopping")


def test_check_and_testing_client(tmp_path):
    directory = function_dir(tmp_path / "f", HTTP_FUNCTION)
    result = run_pyfunc("check", str(directory))
    assert result.returncode == 0, result.stderr
    assert "func-python http" in result.stdout
    from pyfunc.testing import FunctionClient

    with FunctionClient(directory, env={"GREETING": "from the client"}) as client:
        reply = client.post("/x", body=b"abc")
        assert reply.status == 200 and reply.text == "POST /x  3 from the client"


@pytest.mark.parametrize("source, message", [
    ("def new():\n    raise ValueError('no config')\n", "new() raised ValueError: no config"),
    ("def new():\n    return object()\n", "has no handle method"),
    ("class F:\n    def handle(self, scope, receive, send):\n        pass\n\n\ndef new():\n    return F()\n",
     "handle must be 'async def handle(self, scope, receive, send)'"),
    ("class F:\n    async def handle(self, scope, receive, send):\n        pass\n\n"
     "    def start(self, cfg):\n        raise KeyError('API_KEY')\n\n\ndef new():\n    return F()\n",
     "start() hook failed: KeyError: 'API_KEY'"),
    ("import nonexistent_module\n", "No module named 'nonexistent_module'"),
])
def test_bad_functions_are_startup_errors_with_file_and_line(tmp_path, source, message):
    directory = function_dir(tmp_path / "f", source)
    result = run_pyfunc(str(directory))
    assert result.returncode == 1
    assert message in result.stderr
    assert "func.py:" in result.stderr  # file:line
    assert "Traceback" not in result.stderr


def test_a_package_exporting_neither_is_a_startup_error(tmp_path):
    directory = function_dir(tmp_path / "f", "x = 1\n")
    (directory / "function" / "__init__.py").write_text("from .func import x\n")
    result = run_pyfunc(str(directory))
    assert result.returncode == 1 and "exports neither 'new'" in result.stderr


FUNC_YAML = "specVersion: 0.36.0\nname: f\nruntime: python\ninvoke: cloudevent\n"


@pytest.fixture(scope="module")
def event_function(tmp_path_factory):
    running = start_server(function_dir(tmp_path_factory.mktemp("fp") / "f", EVENT_FUNCTION, FUNC_YAML))
    yield running
    running.stop()


@pytest.mark.parametrize("structured", [False, True])
def test_cloudevent_in_either_mode_answered_structured(event_function, structured):
    reply = send(event_function.url + "/", make_event({"n": 1}, id="e-1", type="t.in"), structured=structured)
    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("application/cloudevents+json")
    event = from_http(reply.headers, reply.content)
    assert event["id"] == "r-e-1" and event["type"] == "function.response"
    assert event.data == {"echo": {"n": 1}, "type": "t.in"}


def test_send_binary_answers_in_binary_mode(event_function):
    reply = send(event_function.url + "/binary", make_event({"n": 2}, id="e-2"))
    assert reply.status_code == 200
    assert reply.headers["ce-id"] == "r-e-2" and reply.headers["Content-Type"] == "application/json"
    assert reply.json()["echo"] == {"n": 2}


def test_a_request_that_is_not_an_event_is_a_400(event_function):
    reply = requests.post(event_function.url + "/", json={"plain": "json"}, timeout=5)
    assert reply.status_code == 400
    assert reply.headers["Content-Type"] == "application/problem+json"


HEALTH_YAML = """\
specVersion: 0.36.0
name: f
runtime: python
build:
  builder: pack
deploy:
  namespace: default
  healthEndpoints:
    liveness: /custom/live   # what func deploy gives the liveness probe
    readiness: "/custom/ready"
  options:
    scale:
      min: 0
"""


def test_func_yaml_health_endpoints_are_answered(tmp_path):
    from pyfunc._funcpython import health_endpoints

    directory = function_dir(tmp_path / "f", HTTP_FUNCTION, HEALTH_YAML)
    assert health_endpoints(str(directory)) == {"/custom/live": "alive", "/custom/ready": "ready"}
    running = start_server(directory, {"READY": "no"})
    try:
        live = requests.get(running.url + "/custom/live", timeout=5)
        assert live.status_code == 200 and live.json()["message"] == "Alive"
        assert requests.get(running.url + "/custom/ready", timeout=5).status_code == 503
        assert requests.get(running.url + "/health/readiness", timeout=5).status_code == 503
    finally:
        running.stop()
