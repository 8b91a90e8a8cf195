"""Lifecycle hooks (start/stop/alive/ready), health endpoints, OPTIONS, reply defaults on Knative."""

from __future__ import annotations

import json
import signal

import pytest
import requests

from support import free_port, make_event, run_pyfunc, send, write_function

HOOKS = """
import json
import os
import pathlib
import socket

HERE = pathlib.Path(__file__).parent
CALLS = HERE / "calls.jsonl"

def record(what, **extra):
    with CALLS.open("a") as f:
        f.write(json.dumps({"hook": what, **extra}) + "\\n")

def start(cfg):
    try:  # the port must not be open yet
        socket.create_connection(("127.0.0.1", int(cfg["PORT"])), timeout=2).close()
        port_open = True
    except ConnectionRefusedError:
        port_open = False
    record("start", port_open=port_open, cfg_is_dict=type(cfg) is dict, greeting=cfg.get("GREETING"))

def stop():
    record("stop")

def state():
    return (HERE / "state").read_text().strip() if (HERE / "state").exists() else "ok"

def alive():
    s = state()
    if s == "dead":
        return False
    if s == "alive-raises":
        raise RuntimeError("boom")
    return True

def ready():
    s = state()
    if s == "not-ready":
        return (False, "warming up the cache")
    if s == "ready-message":
        return (True, "all good")
    return True

def handler(body):
    record("call")
    return "called"
"""


@pytest.fixture(scope="module")
def hooks_server(serve_module):
    """One hooks server for the module's health tests (they only change its state file)."""
    return serve_module(HOOKS)


def _calls(server) -> list[dict]:
    path = server.directory / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_hooks_are_called_once_in_order(serve):
    server = serve(HOOKS, env={"GREETING": "hi"})
    assert requests.post(server.url, data=b"x", timeout=5).text == "called"
    assert server.stop(signal.SIGTERM) == 0
    calls = _calls(server)
    assert [c["hook"] for c in calls] == ["start", "call", "stop"]
    assert calls[0] == {"hook": "start", "port_open": False, "cfg_is_dict": True, "greeting": "hi"}


@pytest.mark.parametrize("state, liveness, readiness", [
    ("ok", (200, "ok"), (200, "ok")),
    ("dead", (503, "not alive"), (200, "ok")),
    ("alive-raises", (503, "alive() raised an exception; the traceback is in the log"), (200, "ok")),
    ("not-ready", (200, "ok"), (503, "warming up the cache")),
    ("ready-message", (200, "ok"), (200, "all good")),
])
def test_health_answers_from_the_hooks(hooks_server, state, liveness, readiness):
    server = hooks_server
    (server.directory / "state").write_text(state)
    for paths, (status, message) in (
        (("/health/liveness", "/health/live"), liveness),
        (("/health/readiness", "/health/ready"), readiness),
    ):
        for path in paths:
            response = requests.get(server.url + path, timeout=5)
            assert response.status_code == status, (path, response.text)
            assert response.headers["Content-Type"] == "application/json"
            assert response.json() == {"status": "ok" if status == 200 else "unavailable", "message": message}
    assert not any(c["hook"] == "call" for c in _calls(server)), "a health check reached the function"


def test_health_without_hooks_is_ok_and_never_reaches_a_cloudevent_function(serve):
    server = serve("""
        import pathlib
        def handler(event):
            (pathlib.Path(__file__).parent / "called").write_text("yes")
    """)
    for path in ("/health/liveness", "/health/live", "/health/readiness", "/health/ready"):
        assert requests.get(server.url + path, timeout=5).status_code == 200
        assert requests.head(server.url + path, timeout=5).status_code == 200
    assert not (server.directory / "called").exists()


def test_options_lists_post(hooks_server):
    server = hooks_server
    response = requests.options(server.url + "/", timeout=5)
    assert response.status_code == 200
    assert "POST" in [m.strip() for m in response.headers["Allow"].split(",")]


def test_start_hook_failure_is_a_clear_startup_error(tmp_path):
    directory = write_function(tmp_path / "fn", """
        def start(cfg):
            raise ValueError("no database configured")

        def handler(body):
            return "never"
    """)
    result = run_pyfunc(str(directory), env={"PORT": str(free_port()), "PYFUNC_HOST": "127.0.0.1"})
    assert result.returncode != 0
    assert "start() hook failed: ValueError: no database configured" in result.stderr
    assert "Traceback" not in result.stderr


def test_stop_hook_failure_is_logged_and_exit_is_still_clean(serve):
    server = serve("""
        def stop():
            raise RuntimeError("could not flush")

        def handler(body):
            return "ok"
    """)
    assert server.stop(signal.SIGTERM) == 0
    assert "stop() hook raised" in server.logs() and "could not flush" in server.logs()


def test_async_hooks_are_awaited(serve):
    server = serve("""
        import asyncio, pathlib
        HERE = pathlib.Path(__file__).parent

        async def start(cfg):
            await asyncio.sleep(0)
            (HERE / "started").write_text("yes")

        async def ready():
            await asyncio.sleep(0)
            return (False, "async says no")

        async def stop():
            (HERE / "stopped").write_text("yes")

        def handler(body):
            return "ok"
    """)
    assert (server.directory / "started").exists()
    response = requests.get(server.url + "/health/readiness", timeout=5)
    assert response.status_code == 503 and response.json()["message"] == "async says no"
    assert server.stop(signal.SIGTERM) == 0
    assert (server.directory / "stopped").exists()


ECHO_EVENT = """
def handler(event):
    return {"type": "com.example.reply"}, {"ok": True}
"""


@pytest.mark.parametrize("env, source", [
    ({"K_SERVICE": "greeter", "K_REVISION": "greeter-00002"},
     "/apis/serving.knative.dev/v1/services/greeter/revisions/greeter-00002"),
    ({"K_SERVICE": "greeter"}, "/apis/serving.knative.dev/v1/services/greeter"),
    ({}, "/pyfunc/handler.handler"),
])
def test_reply_source_defaults_from_knative_environment(serve, env, source):
    server = serve(ECHO_EVENT, env=env)
    response = send(server.url, make_event({"x": 1}))
    assert response.status_code == 200, response.text
    assert response.headers["ce-source"] == source
    assert response.headers["ce-type"] == "com.example.reply"
