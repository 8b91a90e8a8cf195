"""500 bodies name no exception: class, message and traceback go to the log only.

``PYFUNC_DEBUG`` puts class and message in the body, for local use. Real servers on loopback.
"""

from __future__ import annotations

import pytest
import requests

from support import make_event, send

SECRET = "postgres://admin:hunter2@db"

FAILING = f"""
def alive():
    raise KeyError({SECRET!r})

def handler(data):
    kind = data["kind"]
    if kind == "raise":
        raise RuntimeError({SECRET!r})
    if kind == "custom":
        class InternalLedgerFault(Exception):
            pass
        raise InternalLedgerFault("ledger row 42")
    if kind == "unencodable":
        return {{"type": "r", "source": "/r"}}, {{"s": {{1, 2}}}}
    return {{"type": "r", "source": "/r"}}, {{"ok": True}}
"""

HTTP_FAILING = f"""
def handler(req):
    raise LookupError({SECRET!r})
"""

LEAKS = ("RuntimeError", "InternalLedgerFault", "KeyError", "LookupError", "TypeError", "hunter2",
         "ledger row", "Traceback", "not JSON serializable", "File \"")


def assert_clean_500(response, reason):
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["reason"] == reason and problem["status"] == 500 and problem["detail"]
    for leak in LEAKS:
        assert leak not in response.text, leak
    assert "exception" not in problem
    return problem


@pytest.fixture(scope="module")
def failing(serve_module):
    return serve_module(FAILING)


@pytest.fixture(scope="module")
def failing_debug(serve_module):
    return serve_module(FAILING, env={"PYFUNC_DEBUG": "1"})


@pytest.mark.parametrize("kind", ["raise", "custom"])
def test_function_error_body_names_no_exception(failing, kind):
    problem = assert_clean_500(send(failing.url, make_event({"kind": kind})), "function-error")
    assert problem["detail"] == "the function raised an exception; the traceback is in the log"


def test_the_log_keeps_class_message_and_traceback(failing):
    send(failing.url, make_event({"kind": "raise"}))
    logs = failing.logs()
    assert "Traceback" in logs and "RuntimeError" in logs and "hunter2" in logs


def test_invalid_reply_body_names_no_exception(failing):
    problem = assert_clean_500(send(failing.url, make_event({"kind": "unencodable"})), "invalid-reply")
    assert "JSON" in problem["detail"]
    assert "not JSON serializable" in failing.logs()  # the cause is logged


def test_health_hook_failure_names_no_exception(failing):
    response = requests.get(failing.url + "/health/liveness", timeout=10)
    assert response.status_code == 503
    for leak in LEAKS:
        assert leak not in response.text, leak
    assert "KeyError" in failing.logs()


def test_http_function_error_body_names_no_exception(serve_module):
    server = serve_module(HTTP_FAILING)
    assert_clean_500(requests.post(server.url, data=b"x", timeout=10), "function-error")


def test_debug_puts_class_and_message_in_the_body(failing_debug):
    problem = send(failing_debug.url, make_event({"kind": "raise"})).json()
    assert problem["reason"] == "function-error"
    assert problem["exception"] == f"RuntimeError: {SECRET}"
    assert "RuntimeError" in problem["detail"] and "Traceback" not in problem["detail"]
    problem = send(failing_debug.url, make_event({"kind": "unencodable"})).json()
    assert problem["reason"] == "invalid-reply" and problem["exception"].startswith("TypeError: ")
    health = requests.get(failing_debug.url + "/health/liveness", timeout=10).json()
    assert "KeyError" in health["message"]


def test_debug_is_off_by_default_and_parsed_as_a_boolean():
    from pyfunc._config import Config, ConfigError

    assert Config.load({}).debug is False
    assert Config.load({"PYFUNC_DEBUG": "on"}).debug is True
    with pytest.raises(ConfigError):
        Config.load({"PYFUNC_DEBUG": "maybe"})
