"""Each parameter binding rule, through a real server and the real cloudevents SDK as the client."""

from __future__ import annotations

import json

import pytest
import requests

from support import LEGACY, legacy, make_event, send

# The handler echoes what each parameter received, as JSON, in the reply data.
INTROSPECT = legacy("""
import flask
from cloudevents.http import CloudEvent
from cloudevents.sdk.event.base import BaseEvent
from cloudevents.sdk.event import v1

def handler(event, data, payload, attributes, req, request, body, headers):
    attributes["mutated"] = "yes"
    return {"type": "introspect", "source": "/t", "datacontenttype": "application/json"}, {
        "event_type": type(event).__module__ + "." + type(event).__name__,
        "event_id": event["id"],
        "event_has_mutation": "mutated" in event,
        "data": data,
        "payload_is_data": payload == data,
        "attributes": sorted(attributes),
        "req_is_flask": isinstance(req, flask.Request),
        "request_is_req": request is req,
        "body": body.decode(),
        "header": headers.get("Ce-Id"),
    }
""")


@pytest.fixture(scope="module")
def introspect(serve_module):
    return serve_module(INTROSPECT)


def test_every_name_binds(introspect):
    response = send(introspect.url, make_event({"k": "v"}, myext="ext-value"))
    assert response.status_code == 200, response.text
    got = response.json()
    assert got["event_type"] == f"{LEGACY}.http.event.CloudEvent"
    assert got["event_id"] == "evt-1"
    assert got["data"] == {"k": "v"}
    assert got["payload_is_data"] is True
    # attributes: every context attribute incl. extensions, not data; a copy
    assert "myext" in got["attributes"] and "data" not in got["attributes"]
    assert got["event_has_mutation"] is False
    assert got["req_is_flask"] is True and got["request_is_req"] is True
    assert json.loads(got["body"]) == {"k": "v"}
    assert got["header"] == "evt-1"


def test_sdk_time_is_not_invented(introspect):
    """0.1.0 (via the SDK) added a `time` the sender never sent; attributes must be exactly what came."""
    headers = {"ce-id": "1", "ce-source": "/s", "ce-type": "t", "ce-specversion": "1.0"}
    response = requests.post(introspect.url, headers=headers, timeout=10)
    assert response.status_code == 200
    assert response.json()["attributes"] == ["id", "mutated", "source", "specversion", "type"]


TYPES = legacy("""
from __future__ import annotations
import flask
from cloudevents.http import CloudEvent
from cloudevents.sdk.event.base import BaseEvent
from cloudevents.sdk.event import v1
from cloudevents.abstract import CloudEvent as AnyCloudEvent

def handler(a: BaseEvent, b: v1.Event, c: CloudEvent, d: AnyCloudEvent, r: flask.Request):
    return {"type": "types", "source": "/t"}, {
        "a": type(a).__name__, "a_id": a["id"],
        "b": type(b).__name__, "b_id": b.EventID(), "b_data": b.Data(), "b_ext": b.Extensions(),
        "c": type(c).__name__, "d": type(d).__name__,
        "r": isinstance(r, flask.Request),
    }
""")


def test_type_rules_with_string_annotations(serve):
    server = serve(TYPES)
    response = send(server.url, make_event([1, 2], myext="x"))
    assert response.status_code == 200, response.text
    got = response.json()
    assert got["a"] == "CloudEvent" and got["a_id"] == "evt-1"  # 0.1.0: BaseEvent gets http.CloudEvent
    assert got["b"] == "Event" and got["b_id"] == "evt-1" and got["b_data"] == [1, 2]
    assert got["b_ext"] == {"myext": "x"}
    assert got["c"] == "CloudEvent" and got["d"] == "CloudEvent"
    assert got["r"] is True


def test_name_wins_over_type(serve):
    server = serve("""
        import flask
        def handler(data: flask.Request):
            return {"type": "r", "source": "/s"}, {"got": data}
    """)
    response = send(server.url, make_event({"x": 1}))
    assert response.json() == {"got": {"x": 1}}


def test_zero_argument_handler(serve):
    server = serve("""
        calls = 0
        def handler():
            global calls
            calls += 1
            return f"call {calls}"
    """)
    assert requests.get(server.url, timeout=5).text == "call 1"
    assert requests.post(server.url, data=b"x", timeout=5).text == "call 2"


def test_defaults_keyword_only_and_varargs(serve):
    server = serve("""
        def handler(body, *args, flag=3, **kwargs):
            return {"body": body.decode(), "flag": flag, "args": list(args), "kwargs": kwargs}
    """)
    assert requests.post(server.url, data=b"hi", timeout=5).json() == {
        "body": "hi", "flag": 3, "args": [], "kwargs": {}}


def test_keyword_only_and_positional_only(serve):
    server = serve("""
        def handler(body, /, unused=None, *, headers):
            return {"body": body.decode(), "ua": headers.get("X-Test")}
    """)
    response = requests.post(server.url, data=b"abc", headers={"X-Test": "yes"}, timeout=5)
    assert response.json() == {"body": "abc", "ua": "yes"}


def test_unbindable_parameter_is_a_startup_error(tmp_path):
    from support import run_pyfunc, write_function

    write_function(tmp_path, """
        def handler(data, mystery):
            return None
    """)
    result = run_pyfunc(str(tmp_path))
    assert result.returncode != 0
    assert "parameter 'mystery'" in result.stderr
    assert "handler.py:2" in result.stderr


def test_http_handler_never_needs_an_event(serve):
    server = serve("""
        def handler(req):
            return {"method": req.method, "json": req.get_json(silent=True)}
    """)
    assert requests.get(server.url, timeout=5).json() == {"method": "GET", "json": None}
    assert requests.post(server.url, json={"a": 1}, timeout=5).json() == {"method": "POST", "json": {"a": 1}}


def test_flask_globals_work_in_handler_module(serve):
    server = serve("""
        from flask import request, jsonify, abort
        def handler(body):
            if request.args.get("fail"):
                abort(418)
            return jsonify(path=request.path, size=len(body))
    """)
    assert requests.post(server.url, data=b"12345", timeout=5).json() == {"path": "/", "size": 5}
    assert requests.post(server.url + "/?fail=1", timeout=5).status_code == 418


def test_lazy_sibling_import_works(serve):
    server = serve("""
        def handler():
            import helper
            return helper.VALUE
    """, files={"helper.py": "VALUE = 'from sibling'\n"})
    assert requests.get(server.url, timeout=5).text == "from sibling"


def test_dataclass_with_future_annotations_and_classvar(serve):
    """0.1.0 crashed at import here because the module was not in sys.modules."""
    server = serve("""
        from __future__ import annotations
        from dataclasses import dataclass
        from typing import ClassVar

        @dataclass
        class Thing:
            kind: ClassVar[str] = "thing"
            name: str = "x"

        def handler():
            return {"kind": Thing.kind, "name": Thing().name}
    """)
    assert requests.get(server.url, timeout=5).json() == {"kind": "thing", "name": "x"}


def test_req_without_flask_in_the_module_is_pyfuncs_request(serve):
    """No Flask context for a module that never imports Flask: `req` is pyfunc's request, with flask.Request's API."""
    server = serve("""
        def handler(req):
            return {"class": type(req).__module__ + "." + type(req).__name__,
                    "json": req.get_json(silent=True), "args": dict(req.args), "body": req.get_data(as_text=True)}
    """)
    response = requests.post(server.url + "/?a=1", json={"k": "v"}, timeout=5)
    assert response.json() == {"class": "pyfunc._request.light.Request", "json": {"k": "v"}, "args": {"a": "1"},
                               "body": '{"k": "v"}'}


# ---------------------------------------------------------------- a request parameter never read

UNREAD_REQUEST = """
import sys

def handler(req):
    return "flask imported" if "flask" in sys.modules else "no flask"
"""


def test_a_request_parameter_the_handler_never_reads_costs_no_flask(serve) -> None:
    """``def handler(req): return ...`` without touching ``req``: Flask is never imported."""
    server = serve(UNREAD_REQUEST)
    for _ in range(3):
        reply = requests.post(server.url, data=b"x", timeout=5)
        assert (reply.status_code, reply.text) == (200, "no flask")


def test_the_unread_request_stand_in_is_the_real_request_when_reached() -> None:
    import io

    import flask

    from pyfunc._binding import Invocation, LazyRequest

    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/", "QUERY_STRING": "name=Ada", "SERVER_NAME": "x",
               "SERVER_PORT": "80", "wsgi.url_scheme": "http", "CONTENT_TYPE": "application/json",
               "CONTENT_LENGTH": "10", "HTTP_X_TRACE": "t-1", "wsgi.input": io.BytesIO(b"")}
    stand_in = LazyRequest(Invocation(environ, b'{"a": [1]}', None, None))  # body already read by pyfunc
    assert isinstance(stand_in, flask.Request)
    assert stand_in.args["name"] == "Ada" and stand_in.headers["X-Trace"] == "t-1"
    assert stand_in.get_json() == {"a": [1]}


@pytest.mark.parametrize(("source", "never_read"), [
    ("def handler(req):\n    return 'hi'", True),
    ("def handler(req, body):\n    return body", True),
    ("def handler(req):\n    return req.args", False),
    ("def handler(req):\n    def inner():\n        return req\n    return inner()", False),  # a closure
    ("def handler(req):\n    return locals()", False),
    ("def handler(req):\n    return eval('req')", False),
    ("def handler(request):\n    request = 3\n    return request", False),  # rebound: not worth proving
    ("import functools\ndef deco(f):\n    @functools.wraps(f)\n    def wrapper(*a, **k):\n"
     "        return f(*a, **k)\n    return wrapper\n@deco\ndef handler(req):\n    return 'hi'", False),
])
def test_only_a_provably_unread_request_parameter_gets_the_stand_in(source: str, never_read: bool) -> None:
    from pyfunc._binding import compile_binder

    namespace: dict = {}
    exec(compile(source, "<handler>", "exec"), namespace)  # noqa: S102 - test input written above
    binder = compile_binder(namespace["handler"])
    name = "request" if "request" in binder.bound else "req"
    assert ("never read" in binder.bound[name]) is never_read
    assert binder.needs_request is not never_read
