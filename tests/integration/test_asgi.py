"""ASGI applications served by pyfunc (pyfunc._asgi), over real HTTP on loopback.

The apps here are raw ASGI 3 callables (no framework: .venv has none); Starlette, FastAPI and the
comparison with uvicorn and func-python run in tests/asgi (scripts/test-asgi.sh). No assertion
depends on timing: a stream is shown to reach the client chunk by chunk by making the app wait,
after its first chunk, for a second request that the test sends only once it has read that chunk.
"""

from __future__ import annotations

import http.client
import json
import textwrap
from pathlib import Path

import pytest
import requests

from support import run_pyfunc, start_server

APP = '''
import asyncio

started = []
gate = None


async def read_body(receive):
    body, messages = b"", 0
    while True:
        message = await receive()
        messages += 1
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body, messages


async def respond(send, status, body, headers=()):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"), *headers]})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    global gate
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                started.append(True)
                scope["state"]["greeting"] = "hello from lifespan"
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                print("lifespan shutdown ran", flush=True)
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if path == "/echo":
        body, messages = await read_body(receive)
        info = {"method": scope["method"], "path": scope["path"], "raw_path": scope["raw_path"].decode(),
                "query": scope["query_string"].decode(), "length": len(body), "messages": messages,
                "state": scope["state"].get("greeting"), "started": bool(started),
                "content_type": dict(scope["headers"]).get(b"content-type", b"").decode(),
                "http_version": scope["http_version"], "root_path": scope["root_path"]}
        import json
        await respond(send, 200, json.dumps(info).encode(), [(b"x-custom", b"yes")])
    elif path == "/stream":
        gate = asyncio.Event()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": b"data: first\\n\\n", "more_body": True})
        await gate.wait()  # until the test has read the first chunk and called /release
        await send({"type": "http.response.body", "body": b"data: second\\n\\n", "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/release":
        gate.set()
        await respond(send, 200, b"released")
    elif path == "/wait":
        gate = asyncio.Event()
        await gate.wait()
        await respond(send, 200, b"waited")
    elif path == "/raise":
        raise ValueError("the secret database password")
    elif path == "/no-start":
        return
    elif path == "/body-first":
        await send({"type": "http.response.body", "body": b"oops"})
    elif path == "/half":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"", "more_body": True})
    elif path == "/fail-midway":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("broken midway")
    elif path == "/bad-header":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1\\r\\nx-b: 2")]})
        await send({"type": "http.response.body", "body": b"no"})
    elif path == "/sleep":
        await asyncio.sleep(60)
    elif path == "/head":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"11"), (b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else b"hello world"})
    elif path == "/chunks":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one ", b"two ", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/teapot":
        await respond(send, 418, b"short and stout", [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")])
    else:
        await respond(send, 404, b"not found by the app")
'''


def write_app(directory: Path, source: str = APP, name: str = "main.py") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(textwrap.dedent(source))
    return directory


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    directory = write_app(tmp_path_factory.mktemp("asgi") / "app")
    running = start_server(directory, {"PYTHON_HANDLER": "main:app", "PYFUNC_THREADS": "1",
                                       "PYFUNC_MAX_THREADS": "1", "PYFUNC_TIMEOUT": "5"})
    yield running
    running.stop()


def test_scope_body_and_state(server):
    body = b"x" * (300 << 10)  # several 64 KiB http.request messages
    reply = requests.post(server.url + "/echo?a=1&b=%20two", data=body, headers={"Content-Type": "application/x"},
                          timeout=10)
    assert reply.status_code == 200
    assert reply.headers["x-custom"] == "yes"
    info = reply.json()
    assert info == {"method": "POST", "path": "/echo", "raw_path": "/echo", "query": "a=1&b=%20two",
                    "length": len(body), "messages": 5, "state": "hello from lifespan", "started": True,
                    "content_type": "application/x", "http_version": "1.1", "root_path": ""}


def test_chunked_request_body(server):
    reply = requests.post(server.url + "/echo", data=iter([b"ab", b"cde", b"f" * 70000]), timeout=10)
    assert reply.status_code == 200
    assert reply.json()["length"] == 70005


def test_percent_encoded_utf8_path(server):
    reply = requests.get(server.url + "/caf%C3%A9", timeout=5)
    assert reply.status_code == 404 and reply.text == "not found by the app"


def test_the_apps_own_status_and_repeated_headers(server):
    reply = requests.get(server.url + "/teapot", timeout=5)
    assert reply.status_code == 418 and reply.text == "short and stout"
    assert reply.raw.headers.getlist("Set-Cookie") == ["a=1", "b=2"]


def test_head_keeps_the_apps_content_length(server):
    reply = requests.head(server.url + "/head", timeout=5)
    assert reply.status_code == 200 and reply.headers["Content-Length"] == "11"
    assert requests.get(server.url + "/head", timeout=5).text == "hello world"


def test_a_stream_reaches_the_client_as_sent(server):
    """The second chunk is produced only after the client has read the first: were the response
    buffered, the first read would never return (one worker thread: /release also proves no
    worker waits on the parked stream)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", "/stream")
    response = connection.getresponse()
    assert response.status == 200 and response.getheader("Content-Type") == "text/event-stream"
    assert response.getheader("Transfer-Encoding") == "chunked"
    assert response.read1() == b"data: first\n\n"
    assert requests.get(server.url + "/release", timeout=10).text == "released"
    assert response.read() == b"data: second\n\n"
    connection.close()


def test_no_worker_is_held_while_the_app_awaits(server):
    """One worker thread: /wait parks, /release (served meanwhile) lets it finish."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", "/wait")
    import time

    for _ in range(200):  # until /wait has created its gate (a 500 from /release otherwise)
        if requests.get(server.url + "/release", timeout=10).status_code == 200:
            break
        time.sleep(0.05)
    response = connection.getresponse()
    assert response.status == 200 and response.read() == b"waited"


@pytest.mark.parametrize("path, cause", [
    ("/raise", "ValueError"),
    ("/no-start", "returned without sending a response"),
    ("/body-first", "before http.response.start"),
    ("/half", "before its response body was complete"),
    ("/bad-header", "invalid response header"),
])
def test_app_errors_are_a_500_problem_with_the_cause_in_the_log(server, path, cause):
    reply = requests.get(server.url + path, timeout=10)
    assert reply.status_code == 500
    assert reply.headers["Content-Type"] == "application/problem+json"
    assert "secret" not in reply.text and "Traceback" not in reply.text and "ValueError" not in reply.text
    assert cause in server.logs()


def test_a_stream_that_fails_midway_is_cut_not_completed(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", "/fail-midway")
    response = connection.getresponse()
    assert response.status == 200
    with pytest.raises(http.client.IncompleteRead) as caught:
        response.read()
    assert caught.value.partial == b"partial"
    assert "broken midway" in server.logs()


def test_timeout_is_a_504(server):
    reply = requests.get(server.url + "/sleep", timeout=30)
    assert reply.status_code == 504 and reply.json()["reason"] == "timeout"


def test_websocket_is_refused_clearly(server):
    reply = requests.get(server.url + "/ws", headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                                     "Sec-WebSocket-Key": "x", "Sec-WebSocket-Version": "13"},
                         timeout=5)
    assert reply.status_code == 400
    assert reply.json()["reason"] == "websocket-unsupported"


def test_health_paths_are_pyfuncs(server):
    assert requests.get(server.url + "/health/readiness", timeout=5).json()["status"] == "ok"


def test_lifespan_shutdown_runs_on_sigterm(tmp_path):
    running = start_server(write_app(tmp_path / "app"), {"PYTHON_HANDLER": "main:app"})
    assert requests.get(running.url + "/echo", timeout=5).json()["started"] is True
    assert running.stop() == 0
    assert "lifespan shutdown ran" in running.logs()


def test_an_app_without_lifespan_is_served(tmp_path):
    source = '''
    async def app(scope, receive, send):
        assert scope["type"] == "http"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"plain"})
    '''
    running = start_server(write_app(tmp_path / "app", source), {"PYTHON_HANDLER": "main:app"})
    try:
        assert requests.get(running.url + "/", timeout=5).text == "plain"
    finally:
        running.stop()


def test_lifespan_startup_failure_is_a_startup_error(tmp_path):
    source = '''
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.failed", "message": "no database at db:5432"})
            return
    '''
    result = run_pyfunc(str(write_app(tmp_path / "app", source)), env={"PYTHON_HANDLER": "main:app"})
    assert result.returncode == 1
    assert "lifespan startup failed: no database at db:5432" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_object_that_is_not_an_app_is_a_startup_error(tmp_path):
    source = '''
    class NotAnApp:
        pass

    app = NotAnApp()
    '''
    result = run_pyfunc(str(write_app(tmp_path / "app", source)), env={"PYTHON_HANDLER": "main:app"})
    assert result.returncode == 1
    assert "main.py" in result.stderr and "not a function" in result.stderr
    assert "Traceback" not in result.stderr


WSGI = '''
from flask import Flask, abort

app = Flask(__name__)


@app.get("/hello/<name>")
def hello(name):
    return {"hello": name}


@app.get("/gone")
def gone():
    abort(410)


def raw(environ, start_response):
    raise KeyError("the secret key")
'''


def test_a_flask_app_object_is_served_whole(tmp_path):
    running = start_server(write_app(tmp_path / "app", WSGI), {"PYTHON_HANDLER": "main:app"})
    try:
        assert requests.get(running.url + "/hello/ada", timeout=5).json() == {"hello": "ada"}
        assert requests.get(running.url + "/gone", timeout=5).status_code == 410
        missing = requests.get(running.url + "/nowhere", timeout=5)
        assert missing.status_code == 404 and "Not Found" in missing.text  # Flask's own page
        assert requests.get(running.url + "/health/liveness", timeout=5).json()["status"] == "ok"
    finally:
        running.stop()


def test_a_raw_wsgi_app_that_raises_is_a_500_problem(tmp_path):
    running = start_server(write_app(tmp_path / "app", WSGI), {"PYTHON_HANDLER": "main:raw"})
    try:
        reply = requests.get(running.url + "/", timeout=5)
        assert reply.status_code == 500 and reply.json()["reason"] == "function-error"
        assert "secret" not in reply.text
        assert "the secret key" in running.logs()
    finally:
        running.stop()


def test_check_reports_the_app(tmp_path):
    result = run_pyfunc("check", "--json", str(write_app(tmp_path / "app")), env={"PYTHON_HANDLER": "main:app"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["kind"] == "asgi"


def test_pyfunc_testing_serves_the_app_with_its_lifespan(tmp_path):
    """In-process (no waitress, no deferral): the worker waits for the app, a stream comes from a queue."""
    from pyfunc.testing import FunctionClient

    with FunctionClient(write_app(tmp_path / "app"), handler="main:app") as client:
        echo = client.post("/echo?q=1", body=b"abc")
        assert echo.status == 200 and echo.json["state"] == "hello from lifespan" and echo.json["length"] == 3
        assert client.get("/chunks").body == b"one two three"
        failed = client.get("/raise")
        assert failed.status == 500 and "secret" not in failed.text
        assert client.get("/nowhere").status == 404
