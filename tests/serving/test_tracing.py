"""W3C trace context: traceparent/tracestate of the incoming event are carried into the reply event."""

from __future__ import annotations

import json

import pytest
import requests

from support import from_http, make_event, send

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
STATE = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"

REPLY = """
def handler(event):
    if event.data.get("own"):
        return {"type": "com.example.reply", "traceparent": event.data["own"]}, {"n": event.data.get("n")}
    return {"type": "com.example.reply"}, {"n": event.data.get("n")}
"""


@pytest.fixture(scope="module")
def server(serve_module):
    return serve_module(REPLY)


def _reply(response: requests.Response):
    assert response.status_code == 200, response.text
    return from_http(dict(response.headers), response.content)


def test_binary_traceparent_http_headers_continue_in_the_reply(server):
    response = send(server.url, make_event({"n": 1}), headers={"traceparent": PARENT, "tracestate": STATE})
    reply = _reply(response)
    assert reply["traceparent"] == PARENT and reply["tracestate"] == STATE


def test_binary_trace_extension_continues_in_the_reply(server):
    reply = _reply(send(server.url, make_event({"n": 2}, traceparent=PARENT, tracestate=STATE)))
    assert reply["traceparent"] == PARENT and reply["tracestate"] == STATE


def test_structured_trace_extension_continues_in_the_reply(server):
    response = send(server.url, make_event({"n": 3}, traceparent=PARENT, tracestate=STATE), structured=True)
    assert response.status_code == 200
    body = json.loads(response.content)
    assert body["traceparent"] == PARENT and body["tracestate"] == STATE
    assert body["data"] == {"n": 3}


def test_batch_replies_each_continue_their_own_event(server):
    other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    events = [
        {"specversion": "1.0", "id": "a", "source": "/t", "type": "t", "traceparent": PARENT, "data": {"n": 1}},
        {"specversion": "1.0", "id": "b", "source": "/t", "type": "t", "traceparent": other, "data": {"n": 2}},
        {"specversion": "1.0", "id": "c", "source": "/t", "type": "t", "data": {"n": 3}},
    ]
    response = requests.post(server.url, data=json.dumps(events),
                             headers={"Content-Type": "application/cloudevents-batch+json"}, timeout=10)
    assert response.status_code == 200, response.text
    replies = response.json()
    assert [r.get("traceparent") for r in replies] == [PARENT, other, None]


def test_handler_may_set_its_own_traceparent(server):
    own = "00-11111111111111111111111111111111-2222222222222222-01"
    reply = _reply(send(server.url, make_event({"n": 4, "own": own}), headers={"traceparent": PARENT}))
    assert reply["traceparent"] == own


def test_no_trace_context_in_no_trace_context_out(server):
    response = send(server.url, make_event({"n": 5}))
    assert response.status_code == 200
    assert not any(name.lower() in ("ce-traceparent", "ce-tracestate", "traceparent") for name in response.headers)
