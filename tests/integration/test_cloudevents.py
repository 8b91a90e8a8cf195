"""CloudEvents HTTP binding v1.0.2 through a real server: content modes, encoding, status codes."""

from __future__ import annotations

import base64
import json

import pytest
import requests

from support import from_http, legacy, make_event, send, to_structured

ECHO = """
def handler(data, attributes):
    reply = {"type": "echo.reply", "source": "/echo"}
    for name in ("datacontenttype", "traceparent", "myext"):
        if name in attributes:
            reply[name] = attributes[name]
    return reply, data
"""

BINARY_HEADERS = {"ce-id": "1", "ce-source": "/s", "ce-type": "t", "ce-specversion": "1.0"}


@pytest.fixture(scope="module")
def echo(serve_module):
    return serve_module(ECHO)


def test_binary_in_binary_out(echo):
    response = send(echo.url, make_event({"hello": "world"}, myext="e"))
    assert response.status_code == 200
    assert response.headers["ce-type"] == "echo.reply"
    assert response.headers["ce-myext"] == "e"
    assert "ce-datacontenttype" not in response.headers  # binding §3.1.1
    assert response.headers["content-type"] == "application/json"
    reply = from_http(response.headers, response.content)
    assert reply["type"] == "echo.reply" and reply.data == {"hello": "world"}


def test_structured_in_structured_out(echo):
    response = send(echo.url, make_event({"n": 1}), structured=True)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/cloudevents+json")
    assert not any(h.lower().startswith("ce-") for h in response.headers)
    body = response.json()
    assert body["type"] == "echo.reply" and body["data"] == {"n": 1} and body["specversion"] == "1.0"
    reply = from_http(response.headers, response.content)
    assert reply.data == {"n": 1}


def test_batch_in_batch_out(echo):
    events = [
        {"specversion": "1.0", "id": str(i), "source": "/b", "type": "t", "data": {"i": i}} for i in range(3)
    ]
    response = requests.post(echo.url, data=json.dumps(events),
                             headers={"Content-Type": "application/cloudevents-batch+json"}, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/cloudevents-batch+json")
    replies = response.json()
    assert [r["data"] for r in replies] == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert all(r["type"] == "echo.reply" for r in replies)
    assert len({r["id"] for r in replies}) == 3


def test_empty_batch_is_accepted(echo):
    response = requests.post(echo.url, data="[]", headers={"Content-Type": "application/cloudevents-batch+json"},
                             timeout=10)
    assert response.status_code == 200 and response.json() == []


def test_batch_calls_handler_once_per_event_in_order(serve):
    server = serve("""
        seen = []
        def handler(data):
            seen.append(data)
            return {"type": "r", "source": "/s"}, list(seen)
    """)
    events = [{"specversion": "1.0", "id": str(i), "source": "/b", "type": "t", "data": i} for i in range(4)]
    response = requests.post(server.url, json=events,
                             headers={"Content-Type": "application/cloudevents-batch+json"}, timeout=10)
    assert [r["data"] for r in response.json()] == [[0], [0, 1], [0, 1, 2], [0, 1, 2, 3]]


def test_text_data_is_str_and_goes_out_raw(echo):
    response = requests.post(echo.url, data="héllo wörld".encode(),
                             headers={**BINARY_HEADERS, "Content-Type": "text/plain; charset=utf-8"}, timeout=10)
    assert response.status_code == 200
    assert response.content == "héllo wörld".encode()  # not JSON-quoted
    assert response.headers["content-type"] == "text/plain; charset=utf-8"


def test_binary_data_is_bytes_both_ways(echo):
    payload = bytes(range(256))
    response = requests.post(echo.url, data=payload,
                             headers={**BINARY_HEADERS, "Content-Type": "application/octet-stream"}, timeout=10)
    assert response.content == payload
    assert response.headers["content-type"] == "application/octet-stream"


def test_data_base64_in_structured_becomes_bytes(serve):
    server = serve("""
        def handler(data):
            return {"type": "r", "source": "/s", "datacontenttype": "application/json"}, {
                "type": type(data).__name__, "len": len(data)}
    """)
    event = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t",
             "datacontenttype": "image/png", "data_base64": base64.b64encode(b"\x89PNG\x00").decode()}
    response = requests.post(server.url, json=event, headers={"Content-Type": "application/cloudevents+json"},
                             timeout=10)
    assert response.json()["data"] == {"type": "bytes", "len": 5}


def test_bytes_reply_in_structured_mode_uses_data_base64(serve):
    server = serve("""
        def handler(data):
            return {"type": "r", "source": "/s", "datacontenttype": "application/octet-stream"}, b"\\x00\\x01"
    """)
    response = send(server.url, make_event({"a": 1}), structured=True)
    body = response.json()
    assert base64.b64decode(body["data_base64"]) == b"\x00\x01" and "data" not in body


def test_reply_mode_can_be_forced(serve):
    server = serve(ECHO, env={"PYFUNC_REPLY_MODE": "structured"})
    response = send(server.url, make_event({"a": 1}))
    assert response.headers["content-type"].startswith("application/cloudevents+json")
    assert response.json()["data"] == {"a": 1}


# ---------------------------------------------------------------- percent-encoding (binding §3.1.3.2)


def test_header_values_are_percent_decoded_on_input(serve):
    server = serve("""
        def handler(attributes):
            return {"type": "r", "source": "/s"}, {"ext": attributes["myext"], "quoted": attributes.get("quoted")}
    """)
    headers = {**BINARY_HEADERS, "ce-myext": "Euro%20%E2%82%AC%20%F0%9F%98%80", "ce-quoted": '"a \\"b\\" c"',
               "Content-Type": "application/json"}
    response = requests.post(server.url, headers=headers, data="null", timeout=10)
    assert response.json() == {"ext": "Euro € 😀", "quoted": 'a "b" c'}


def test_header_values_are_percent_encoded_on_output(serve):
    server = serve("""
        def handler(data):
            return {"type": "r", "source": "/s", "note": 'Euro € 😀 "q" 100%', "crlf": "a\\r\\nInjected: yes"}, None
    """, env={"PYFUNC_REPLY_MODE": "binary"})
    response = send(server.url, make_event())
    assert response.status_code == 200
    raw = response.raw._original_response.msg  # the headers exactly as sent
    assert raw["ce-note"] == "Euro%20%E2%82%AC%20%F0%9F%98%80%20%22q%22%20100%25"
    assert raw["ce-crlf"] == "a%0D%0AInjected:%20yes"
    assert "Injected" not in response.headers


def test_auto_reply_with_values_that_need_encoding_is_structured(serve):
    server = serve("""
        def handler(data):
            return {"type": "r", "source": "/s", "subject": "a subject", "note": "héllo wörld", "pct": "100%"}, {"k": 1}
    """)
    response = send(server.url, make_event())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/cloudevents+json")
    event = from_http(response.headers, response.content)
    assert (event["subject"], event["note"], event["pct"], event.data) == ("a subject", "héllo wörld", "100%", {"k": 1})


def test_invalid_utf8_percent_sequence_is_400(echo):
    headers = {**BINARY_HEADERS, "ce-myext": "%C0%A0"}  # overlong encoding: MUST be rejected
    response = requests.post(echo.url, headers=headers, timeout=10)
    assert response.status_code == 400
    assert response.json()["reason"] == "invalid-header-encoding"


# ---------------------------------------------------------------- 400s


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        ({}, b"", "not-a-cloudevent"),
        ({"ce-specversion": "1.0", "ce-source": "/s", "ce-type": "t"}, b"", "missing-attribute"),
        ({"ce-specversion": "1.0", "ce-id": "1", "ce-type": "t"}, b"", "missing-attribute"),
        ({"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s"}, b"", "missing-attribute"),
        ({"ce-specversion": "2.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t"}, b"", "unsupported-specversion"),
        ({**BINARY_HEADERS, "Content-Type": "application/json"}, b"{not json", "malformed-json"),
        ({"Content-Type": "application/cloudevents+json"}, b"{not json", "malformed-json"),
        ({"Content-Type": "application/cloudevents+json"}, b"", "empty-body"),
        ({"Content-Type": "application/cloudevents+json"}, b"[1]", "invalid-event"),
        ({"Content-Type": "application/cloudevents+json"},
         b'{"specversion":"1.0","id":"1","source":"/s"}', "missing-attribute"),
        ({"Content-Type": "application/cloudevents+json"},
         b'{"specversion":"1.0","id":"1","source":"/s","type":"t","Bad_Name":1}', "invalid-attribute-name"),
        ({"Content-Type": "application/cloudevents+json"},
         b'{"specversion":"1.0","id":1,"source":"/s","type":"t"}', "invalid-attribute"),
        ({"Content-Type": "application/cloudevents+xml"}, b"<e/>", "unsupported-event-format"),
        ({"Content-Type": "application/cloudevents-batch+json"}, b"{}", "invalid-batch"),
        ({"Content-Type": "application/cloudevents-batch+json"},
         b'[{"specversion":"1.0","id":"1","source":"/s","type":"t"},{"id":"2"}]', "missing-attribute"),
    ],
)
def test_bad_events_are_400_problem_json(echo, headers, body, reason):
    response = requests.post(echo.url, headers=headers, data=body, timeout=10)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["reason"] == reason and problem["status"] == 400 and problem["detail"]


def test_server_keeps_serving_after_bad_events(echo):
    for _ in range(20):
        requests.post(echo.url, data=b"garbage", headers={"Content-Type": "application/cloudevents+json"}, timeout=10)
    assert send(echo.url, make_event({"still": "alive"})).status_code == 200


# ---------------------------------------------------------------- return rules


RETURNS = legacy("""
from cloudevents.http import CloudEvent
from cloudevents.sdk.event import v1
import flask

def handler(data):
    kind = data["kind"]
    if kind == "tuple":
        return {"type": "r.tuple", "source": "/r"}, {"x": 1}
    if kind == "one-tuple":
        return ({"type": "r.one", "source": "/r"},)
    if kind == "attributes":
        return {"type": "r.attrs", "source": "/r"}
    if kind == "cloudevent":
        return CloudEvent({"type": "r.ce", "source": "/r"}, {"sdk": True})
    if kind == "v1":
        e = v1.Event(); e.SetEventType("r.v1"); e.SetSource("/r"); e.SetEventID("v1-id"); e.SetData({"v1": 1})
        e.SetExtensions({"ext1": "x"})
        return e
    if kind == "response":
        return flask.Response("custom", status=201, headers={"X-Custom": "1"})
    if kind == "none":
        return None
    if kind == "empty-string":
        return ""
    if kind == "no-source":
        return {"type": "r.nosource"}, "d"
    if kind == "reuse":
        return {"type": "r.reuse", "source": "/tests", "id": "evt-1"}, None
    if kind == "str":
        return "just a string"
    if kind == "three":
        return {"type": "r", "source": "/r"}, 1, 2
    if kind == "no-type":
        return {"source": "/r"}, 1
    if kind == "unencodable":
        return {"type": "r", "source": "/r"}, {1, 2}
    if kind == "bad-name":
        return {"type": "r", "source": "/r", "bad\\r\\nname": "x"}, None
    if kind == "raise":
        raise ValueError("secret internal detail")
    if kind == "exit":
        raise SystemExit(3)
""")


@pytest.fixture(scope="module")
def returns(serve_module):
    return serve_module(RETURNS)


def call(server, kind: str) -> requests.Response:
    return send(server.url, make_event({"kind": kind}))


def test_return_tuple(returns):
    response = call(returns, "tuple")
    assert response.status_code == 200 and response.headers["ce-type"] == "r.tuple"
    assert response.json() == {"x": 1}
    assert response.headers["ce-specversion"] == "1.0" and response.headers["ce-id"] and response.headers["ce-time"]


def test_return_one_tuple_and_attributes_dict(returns):
    for kind, type_ in (("one-tuple", "r.one"), ("attributes", "r.attrs")):
        response = call(returns, kind)
        assert response.status_code == 200 and response.headers["ce-type"] == type_
        assert response.content == b""


def test_return_sdk_events(returns):
    response = call(returns, "cloudevent")
    assert response.headers["ce-type"] == "r.ce" and response.json() == {"sdk": True}
    response = call(returns, "v1")
    assert response.headers["ce-type"] == "r.v1" and response.headers["ce-id"] == "v1-id"
    assert response.headers["ce-ext1"] == "x" and response.json() == {"v1": 1}


def test_return_flask_response_passes_through(returns):
    response = call(returns, "response")
    assert response.status_code == 201 and response.text == "custom" and response.headers["X-Custom"] == "1"


def test_return_nothing_is_202_empty_without_ce_headers(returns):
    for kind in ("none", "empty-string"):
        response = call(returns, kind)
        assert response.status_code == 202 and response.content == b""
        assert not any(h.lower().startswith("ce-") for h in response.headers)


def test_reply_source_defaults(returns, serve):
    response = call(returns, "no-source")
    assert response.headers["ce-source"] == "/pyfunc/handler.handler"
    knative = serve(RETURNS, env={"K_SERVICE": "echo", "K_REVISION": "echo-00001"})
    response = call(knative, "no-source")
    assert response.headers["ce-source"] == "/apis/serving.knative.dev/v1/services/echo/revisions/echo-00001"


def test_reply_reusing_incoming_id_and_source_gets_fresh_id(returns):
    response = call(returns, "reuse")
    assert response.headers["ce-source"] == "/tests" and response.headers["ce-id"] != "evt-1"


@pytest.mark.parametrize("kind", ["str", "three", "no-type", "unencodable", "bad-name"])
def test_invalid_replies_are_500_problem_json(returns, kind):
    response = call(returns, kind)
    assert response.status_code == 500
    assert response.json()["reason"] == "invalid-reply"
    assert not any(h.lower().startswith("ce-") for h in response.headers)


def test_exceptions_are_500_without_traceback_and_logged(returns):
    for kind in ("raise", "exit"):
        response = call(returns, kind)
        assert response.status_code == 500
        problem = response.json()
        assert problem["reason"] == "function-error"
        assert "secret internal detail" not in response.text and "Traceback" not in response.text
    assert "Traceback" in returns.logs() and "secret internal detail" in returns.logs()
    assert call(returns, "tuple").status_code == 200  # still serving


def test_structured_reply_matches_sdk_reading(returns):
    headers, body = to_structured(make_event({"kind": "tuple"}))
    response = requests.post(returns.url, headers=headers, data=body, timeout=10)
    reply = from_http(response.headers, response.content)
    assert reply["type"] == "r.tuple" and reply.data == {"x": 1}


def test_an_event_posted_to_any_path_reaches_the_function(echo):
    # A Trigger's subscriber URI may carry a path; Knative routes every path to the container.
    response = requests.post(echo.url + "/some/path?x=1", json={"k": "v"}, headers=BINARY_HEADERS, timeout=10)
    assert response.status_code == 200 and response.json() == {"k": "v"}
    assert requests.get(echo.url + "/health/readiness", timeout=10).status_code == 200
