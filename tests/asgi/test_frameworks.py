"""Starlette, FastAPI and func-python's CloudEvents template (SDK 2.x) served by pyfunc: what the
differential corpus cannot show (a stream's chunks arriving as sent), and pyfunc's own tools."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys

import requests

from conftest import APPS, FUNCTIONS, pyfunc_server
from pyfunc.testing import FunctionClient


def test_a_starlette_stream_reaches_the_client_as_sent(logs_dir):
    """One worker thread; the app produces its second event only after the client has read the
    first and called /open: a buffered response would never show the first one."""
    served = pyfunc_server(APPS, logs_dir / "gated.log", handler="starlette_app:app",
                           env={"PYFUNC_THREADS": "1", "PYFUNC_MAX_THREADS": "1"})
    try:
        connection = http.client.HTTPConnection("127.0.0.1", int(served.url.rsplit(":", 1)[1]), timeout=30)
        connection.request("GET", "/gated")
        response = connection.getresponse()
        assert response.status == 200 and response.getheader("Content-Type").startswith("text/event-stream")
        assert response.read1() == b"data: first\n\n"
        assert requests.get(served.url + "/open", timeout=30).text == "open"
        assert response.read() == b"data: second\n\n"
        connection.close()
    finally:
        assert served.stop() == 0


def test_fastapi_through_pyfunc_testing():
    with FunctionClient(APPS, handler="fastapi_app:app") as client:
        assert client.get("/items/7?q=z").json == {"item_id": 7, "q": "z", "started": True}
        assert client.post("/items", json={"name": "pen"}).status == 422
        assert client.get("/nope").status == 404


def test_func_python_cloudevents_template_through_pyfunc_testing():
    from cloudevents.core.v1.event import CloudEvent

    with FunctionClient(FUNCTIONS / "events") as client:
        reply = client.event({"n": 1}, id="x-1", type="t.in")
        assert reply.status == 200
        event = reply.cloudevent(CloudEvent)
        assert event.get_id() == "response-x-1"
        assert event.get_data() == {"message": "OK", "received": {"n": 1}, "type": "t.in"}


def test_check_names_the_kind():
    for directory, handler, kind in ((APPS, "starlette_app:app", "asgi"),
                                     (FUNCTIONS / "events", None, "func-python cloudevent")):
        command = [sys.executable, "-m", "pyfunc", "check", "--json", str(directory)]
        if handler:
            command += ["--handler", handler]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["kind"] == kind
