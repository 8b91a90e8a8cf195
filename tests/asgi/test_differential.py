"""The same apps and functions served by pyfunc and by the server they run under today, over one
corpus of requests: the same statuses, the headers that matter and the same bodies.

* Starlette and FastAPI apps: pyfunc against uvicorn;
* Knative func Python functions (func-python's layout): pyfunc against func-python 0.8.1 (hypercorn).

Where pyfunc answers differently on purpose, the case says so (``DIFFERENT``) and checks pyfunc's
own answer instead; docs/asgi.md lists the same differences and why.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import pytest
import requests

from conftest import APPS, FUNCTIONS, func_python_server, pyfunc_server, uvicorn_server


@dataclass
class Case:
    name: str
    method: str
    path: str
    body: Any = None  # bytes, a generator factory (chunked), or None
    headers: dict[str, str] = field(default_factory=dict)
    compare_headers: tuple[str, ...] = ("content-type",)
    # The body compared: raw bytes by default, or a normalisation (parsed JSON minus volatile fields).
    normalise: Optional[Callable[[requests.Response], Any]] = None
    different: Optional[str] = None  # a deliberate difference: why (pyfunc's answer is checked by `check`)
    check: Optional[Callable[[requests.Response], None]] = None
    # With ``different``: what the other server does instead, checked on its URL (None: not checked).
    theirs: Optional[Callable[[str, Case], None]] = None


def send(url: str, case: Case) -> requests.Response:
    body = case.body() if callable(case.body) else case.body
    return requests.request(case.method, url + case.path, data=body, headers=case.headers, timeout=30)


def chunks(*parts: bytes) -> Callable[[], Any]:
    return lambda: iter(parts)


BIG = bytes(range(256)) * 8192  # 2 MiB


def as_json(reply: requests.Response) -> Any:
    return reply.json()


def compare(case: Case, ours: requests.Response, theirs: requests.Response) -> None:
    if case.different:
        assert case.check is not None, case.name
        case.check(ours)
        return
    assert ours.status_code == theirs.status_code, (case.name, ours.text, theirs.text)
    for name in case.compare_headers:
        assert header(ours, name) == header(theirs, name), (case.name, name)
    if case.normalise is not None:
        assert case.normalise(ours) == case.normalise(theirs), case.name
    else:
        assert ours.content == theirs.content, case.name


def header(reply: requests.Response, name: str) -> Any:
    value = reply.headers.get(name)
    if name == "allow" and value is not None:  # Starlette builds it from a set: its order varies per process
        return sorted(part.strip() for part in value.split(","))
    return value


def run_corpus(ours_url: str, theirs_url: str, corpus: list[Case]) -> None:
    for case in corpus:
        if case.different:
            compare(case, send(ours_url, case), None)  # type: ignore[arg-type]
            if case.theirs is not None:
                case.theirs(theirs_url, case)
            continue
        compare(case, send(ours_url, case), send(theirs_url, case))


# ---------------------------------------------------------------------- Starlette, FastAPI vs uvicorn

STARLETTE = [
    Case("get", "GET", "/echo", normalise=as_json, compare_headers=("content-type", "x-echo")),
    Case("query", "GET", "/echo?a=1&b=two%20words&c=%C3%A9", normalise=as_json),
    Case("json", "POST", "/echo", b'{"k": [1, 2]}', {"Content-Type": "application/json"}, normalise=as_json),
    Case("large", "PUT", "/echo", BIG, normalise=as_json),
    Case("chunked", "POST", "/echo", chunks(b"ab", b"c" * 100000, b"d"), normalise=as_json),
    Case("delete", "DELETE", "/echo", headers={"X-Thing": "t"}, normalise=as_json),
    Case("patch", "PATCH", "/echo", b"x", normalise=as_json),
    Case("head", "HEAD", "/echo", compare_headers=("content-type", "content-length")),
    Case("sse", "GET", "/sse?n=5", compare_headers=("content-type", "cache-control")),
    Case("its own 404", "GET", "/nowhere"),
    Case("its own 405", "POST", "/sse", compare_headers=("content-type", "allow")),
    Case("its own 500", "GET", "/boom"),
]

FASTAPI = [
    Case("path and query", "GET", "/items/3?q=x", normalise=as_json),
    Case("HTTPException", "GET", "/items/404", normalise=as_json),
    Case("422 on a bad path parameter", "GET", "/items/abc", normalise=as_json),
    Case("validated body", "POST", "/items", b'{"name": "pen", "price": 1.5}',
         {"Content-Type": "application/json"}, normalise=as_json),
    Case("422 on a bad body", "POST", "/items", b'{"name": 1}', {"Content-Type": "application/json"},
         normalise=as_json),
    Case("its own 404", "GET", "/nope", normalise=as_json),
    Case("openapi", "GET", "/openapi.json", normalise=as_json),
    Case("docs page", "GET", "/docs"),
]


@pytest.mark.parametrize("app, corpus", [("starlette_app:app", STARLETTE), ("fastapi_app:app", FASTAPI)],
                         ids=["starlette", "fastapi"])
def test_asgi_apps_answer_as_under_uvicorn(app, corpus, logs_dir):
    ours = pyfunc_server(APPS, logs_dir / f"pyfunc-{app}.log", handler=app)
    theirs = uvicorn_server(APPS, logs_dir / f"uvicorn-{app}.log", app)
    try:
        run_corpus(ours.url, theirs.url, corpus)
    finally:
        assert ours.stop() == 0
        theirs.stop()
    if app.startswith("starlette"):
        assert "starlette lifespan shutdown" in ours.logs()  # lifespan shutdown on SIGTERM
        assert "the secret in starlette" in ours.logs()  # Starlette's own 500: the traceback is logged


# ---------------------------------------------------------------------- func-python functions


def echo_json(reply: requests.Response) -> Any:
    return reply.json()


def problem(status: int, reason: str) -> Callable[[requests.Response], None]:
    def check(reply: requests.Response) -> None:
        assert reply.status_code == status, reply.text
        assert reply.headers["Content-Type"] == "application/problem+json"
        assert reply.json()["reason"] == reason
        assert "secret" not in reply.text

    return check


def cut_off(url: str, case: Case) -> None:
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        send(url, case)


def health(status: int, message: str) -> Callable[[requests.Response], None]:
    def check(reply: requests.Response) -> None:
        assert reply.status_code == status
        assert reply.json()["message"] == message

    return check


FUNC_HTTP = [
    Case("the template's answer", "GET", "/"),
    Case("post", "POST", "/a/b?x=1&y=%20", b"hello", normalise=echo_json,
         compare_headers=("content-type", "x-function")),
    Case("put large", "PUT", "/big", BIG, normalise=echo_json),
    Case("chunked", "POST", "/c", chunks(b"1", b"2" * 70000), normalise=echo_json),
    Case("delete with headers", "DELETE", "/d", headers={"X-One": "1", "X-Two": "2"}, normalise=echo_json),
    Case("its own status", "GET", "/s?status=418", normalise=echo_json),
    Case("streamed", "GET", "/stream"),
    Case("liveness", "GET", "/health/liveness",
         different="pyfunc's health body is JSON ({status, message}); func-python's is the message as text",
         check=health(200, "Alive")),
    Case("an exception in handle", "GET", "/raise",
         different="pyfunc answers a complete 500 problem that does not carry the exception's message; "
                   "func-python 0.8.1's HTTP middleware sends a 500 head, then 'Error: <message>' as a str "
                   "body that hypercorn cannot send: the client gets a response cut off",
         check=problem(500, "function-error"), theirs=lambda url, case: cut_off(url, case)),
]

FUNC_NOT_READY = [
    Case("readiness when not ready", "GET", "/health/readiness",
         different="pyfunc answers 503 (Service Unavailable, what Kubernetes and Knative expect of a "
                   "not-ready probe); func-python answers 500",
         check=health(503, "Ready")),
]


def test_func_python_http_function(logs_dir):
    directory = FUNCTIONS / "echo"
    env = {"GREETING": "hi"}
    ours = pyfunc_server(directory, logs_dir / "pyfunc-echo.log", env=env)
    theirs = func_python_server(directory, logs_dir / "func-python-echo.log", "http", env)
    try:
        run_corpus(ours.url, theirs.url, FUNC_HTTP)
        # Where the two agree on the health paths: the status.
        for path in ("/health/liveness", "/health/readiness"):
            assert requests.get(ours.url + path, timeout=5).status_code == \
                requests.get(theirs.url + path, timeout=5).status_code == 200
    finally:
        assert ours.stop() == 0
        theirs.stop()
    assert "Function stopping" in ours.logs()


def test_func_python_not_ready(logs_dir):
    directory = FUNCTIONS / "echo"
    env = {"READY": "no"}
    ours = pyfunc_server(directory, logs_dir / "pyfunc-notready.log", env=env)
    theirs = func_python_server(directory, logs_dir / "func-python-notready.log", "http", env)
    try:
        run_corpus(ours.url, theirs.url, FUNC_NOT_READY)
        assert requests.get(theirs.url + "/health/readiness", timeout=5).status_code == 500
    finally:
        ours.stop()
        theirs.stop()


def event_of(reply: requests.Response) -> dict[str, Any]:
    """The reply event, whatever its mode, minus what each side generates (time)."""
    content_type = reply.headers.get("Content-Type", "")
    if content_type.startswith("application/cloudevents+json"):
        event = reply.json()
    else:
        event = {k[3:].lower(): v for k, v in reply.headers.items() if k.lower().startswith("ce-")}
        event["datacontenttype"] = content_type
        event["data"] = reply.json()
    event.pop("time", None)
    # The media type, not its parameters: pyfunc adds "; charset=utf-8" to a structured event's type.
    return {"media_type": content_type.partition(";")[0].strip(), **event}


BINARY_EVENT = {"ce-specversion": "1.0", "ce-id": "e-1", "ce-source": "/tests", "ce-type": "t.in",
                "Content-Type": "application/json"}
STRUCTURED_EVENT = json.dumps({"specversion": "1.0", "id": "e-2", "source": "/tests", "type": "t.s",
                               "datacontenttype": "application/json", "data": {"n": 2}}).encode()


def not_an_event(reply: requests.Response) -> None:
    assert reply.status_code == 400
    assert reply.headers["Content-Type"] == "application/problem+json"


FUNC_EVENTS = [
    Case("binary in, structured out", "POST", "/", b'{"n": 1}', BINARY_EVENT, normalise=event_of, compare_headers=()),
    Case("structured in, structured out", "POST", "/", STRUCTURED_EVENT,
         {"Content-Type": "application/cloudevents+json"}, normalise=event_of, compare_headers=()),
    # A named difference within an equal event: func-python's binary reply of JSON data has no
    # Content-Type (the SDK leaves it out without a datacontenttype); pyfunc's says application/json
    # (test_binary_reply_content_type below).
    Case("binary out (send.binary)", "POST", "/binary", b'{"n": 3}', BINARY_EVENT,
         normalise=lambda reply: {k: v for k, v in event_of(reply).items()
                                  if k not in ("media_type", "datacontenttype")}, compare_headers=()),
    Case("not an event", "POST", "/", b'{"plain": true}', {"Content-Type": "application/json"},
         different="both 400; pyfunc's body is a problem naming what is missing, func-python's a fixed text",
         check=not_an_event),
]


def test_func_python_cloudevents_function(logs_dir):
    directory = FUNCTIONS / "events"
    ours = pyfunc_server(directory, logs_dir / "pyfunc-events.log")
    theirs = func_python_server(directory, logs_dir / "func-python-events.log", "cloudevent")
    try:
        run_corpus(ours.url, theirs.url, FUNC_EVENTS)
        assert send(theirs.url, FUNC_EVENTS[-1]).status_code == 400
        binary = next(case for case in FUNC_EVENTS if case.path == "/binary")
        assert send(ours.url, binary).headers["Content-Type"] == "application/json"
        assert "Content-Type" not in send(theirs.url, binary).headers
    finally:
        ours.stop()
        theirs.stop()


def test_corpus_bodies_are_what_was_sent(logs_dir):
    """The corpus itself is not vacuous: pyfunc's echo saw the exact bytes of the large body."""
    ours = pyfunc_server(FUNCTIONS / "echo", logs_dir / "pyfunc-echo2.log")
    try:
        reply = requests.put(ours.url + "/big", data=BIG, timeout=30)
        assert reply.json()["sha"] == hashlib.sha256(BIG).hexdigest()
    finally:
        ours.stop()
