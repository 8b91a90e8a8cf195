"""pyfunc.Retry and pyfunc.Drop: the statuses Knative acts on, through a real server and FunctionClient."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests

import pyfunc
from pyfunc.testing import FunctionClient
from pyfunc.testing import make_event as local_event
from support import make_event, send

HANDLER = """
import pyfunc

def handler(event):
    data = event.data or {}
    if "retry" in data:
        raise pyfunc.Retry(data["retry"], after=data.get("after"))
    if "drop" in data:
        raise pyfunc.Drop(data["drop"])
    return {"type": "reply", "source": "/t"}, data
"""

ASYNC_HANDLER = HANDLER.replace("def handler(event):", "async def handler(event):\n    import asyncio\n"
                                "    await asyncio.sleep(0)")

HTTP_HANDLER = """
import pyfunc

def handler(req):
    if req.path == "/retry":
        raise pyfunc.Retry("later", after=7)
    raise pyfunc.Drop("no")
"""


@pytest.fixture(scope="module", params=["sync", "async"])
def server(request, serve_module):
    return serve_module(HANDLER if request.param == "sync" else ASYNC_HANDLER)


def test_retry_is_a_503_with_retry_after(server):
    response = send(server.url, make_event({"retry": "db down", "after": 2.2}))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "3"  # delay-seconds: whole seconds, rounded up
    assert response.headers["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["reason"] == "retry" and body["detail"] == "db down" and body["status"] == 503


def test_retry_without_after_has_no_retry_after(server):
    response = send(server.url, make_event({"retry": "busy"}))
    assert response.status_code == 503 and "Retry-After" not in response.headers


def test_drop_is_a_422_naming_the_reason(server):
    response = send(server.url, make_event({"drop": "unknown customer 17"}))
    assert response.status_code == 422  # a 4xx Knative does not retry: dead-lettered at once
    body = response.json()
    assert body["reason"] == "dropped" and body["detail"] == "unknown customer 17"


def test_outcomes_are_warnings_without_traceback(server):
    send(server.url, make_event({"retry": "w-retry"}))
    send(server.url, make_event({"drop": "w-drop"}))
    logs = server.logs()
    assert "WARNING pyfunc: handler.handler asked for a retry: w-retry" in logs
    assert "WARNING pyfunc: handler.handler dropped the event: w-drop" in logs
    assert "Traceback" not in logs


def test_outcomes_in_a_batch(server):
    batch = [
        {"specversion": "1.0", "id": "1", "source": "/b", "type": "t", "data": {"ok": 1}},
        {"specversion": "1.0", "id": "2", "source": "/b", "type": "t", "data": {"retry": "r", "after": 4}},
        {"specversion": "1.0", "id": "3", "source": "/b", "type": "t", "data": {"drop": "d"}},
    ]
    response = requests.post(server.url, json=batch,
                             headers={"Content-Type": "application/cloudevents-batch+json"}, timeout=10)
    assert response.status_code == 503 and response.headers["Retry-After"] == "4"
    events = response.json()["events"]
    assert [(e["id"], e["status"]) for e in events] == [("1", 200), ("2", 503), ("3", 422)]
    assert events[2]["reason"] == "dropped" and events[2]["detail"] == "d"


def test_http_functions_raise_them_too(serve_module):
    server = serve_module(HTTP_HANDLER)
    retry = requests.post(server.url + "/retry", timeout=10)
    assert retry.status_code == 503 and retry.headers["Retry-After"] == "7"
    assert requests.post(server.url + "/x", timeout=10).status_code == 422


@pytest.mark.parametrize("source", [HANDLER, ASYNC_HANDLER])
def test_function_client_answers_as_the_server(tmp_path, source, serve_module):
    (tmp_path / "handler.py").write_text(source)
    server = serve_module(source)
    with FunctionClient(tmp_path) as client:
        for data in ({"retry": "x", "after": 1}, {"drop": "y"}):
            local = client.send(local_event(data, id="same", source="/s", type="t"))
            remote = send(server.url, make_event(data, id="same", source="/s", type="t"))
            assert local.status == remote.status_code
            assert local.json == remote.json()
            assert local.headers.get("retry-after") == remote.headers.get("Retry-After")


def test_retry_after_must_be_a_non_negative_number():
    with pytest.raises(ValueError):
        pyfunc.Retry("x", after=-1)
    assert pyfunc.Retry("x", after=0).retry_after == "0"
    assert pyfunc.Retry("x").retry_after is None


def test_outcomes_cost_no_runtime_import():
    code = ("import sys, pyfunc; pyfunc.Retry, pyfunc.Drop; "
            "print(sorted(m for m in sys.modules if m.startswith('pyfunc.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['pyfunc._outcomes']"


def test_function_client_with_dedup(tmp_path):
    (tmp_path / "handler.py").write_text(
        "calls = []\n\ndef handler(event):\n    calls.append(event['id'])\n    return None\n")
    with FunctionClient(tmp_path, dedupe="memory") as client:
        event = local_event({"x": 1}, id="once")
        assert client.send(event).status == 202
        assert client.send(event).status == 202
        assert client.app.loaded.module.calls == ["once"]
