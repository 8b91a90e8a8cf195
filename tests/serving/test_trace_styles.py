"""Trace context in both styles Knative sends (W3C traceparent since 1.21, B3 before and beside it):
the access line, the handler's log context, the OpenTelemetry span and the reply event all name
the same trace, whichever style the request came with.

One real server, traced with an in-memory OpenTelemetry exporter its ``start()`` installs
(support.SPANS_TO_FILE), JSON logs; its spans are read back after a real SIGTERM.
"""

from __future__ import annotations

import json
import signal

import pytest

from support import SPANS_TO_FILE, from_http, make_event, send

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
SHORT_TRACE = "a3ce929d0e0e4736"  # a 64-bit B3 trace id

TRACED = SPANS_TO_FILE + """
import logging

def handler(event):
    logging.getLogger("user").info("handling %s", event["id"])
    return {"type": "com.example.reply"}, {"n": 1}
"""

# event id -> (headers, the trace id every part must name)
CASES = {
    "w3c": ({"traceparent": f"00-{TRACE}-{SPAN}-01", "tracestate": "rojo=1"}, TRACE),
    "b3-single": ({"b3": f"{TRACE}-{SPAN}-1-05e3ac9a4f6e3b90"}, TRACE),
    "b3-single-64bit": ({"b3": f"{SHORT_TRACE}-{SPAN}-1"}, "0" * 16 + SHORT_TRACE),
    "b3-multi": ({"X-B3-TraceId": TRACE, "X-B3-SpanId": SPAN, "X-B3-Sampled": "1"}, TRACE),
    "b3-multi-debug": ({"X-B3-TraceId": TRACE, "X-B3-SpanId": SPAN, "X-B3-Flags": "1"}, TRACE),
    "both": ({"traceparent": f"00-{TRACE}-{SPAN}-01", "b3": f"{'1' * 32}-{SPAN}-1"}, TRACE),
}


@pytest.fixture(scope="module")
def run(serve_module):
    server = serve_module(TRACED, env={"PYFUNC_LOG_FORMAT": "json"})
    replies = {}
    for event_id, (headers, _) in CASES.items():
        response = send(server.url, make_event({"n": 1}, id=event_id), headers=headers)
        assert response.status_code == 200, response.text
        replies[event_id] = from_http(dict(response.headers), response.content)
    bad = send(server.url, make_event({"n": 1}, id="bad-b3"), headers={"b3": "zz-yy-1", "X-B3-TraceId": "0"})
    assert bad.status_code == 200
    replies["bad-b3"] = from_http(dict(bad.headers), bad.content)
    assert server.stop(signal.SIGTERM) == 0
    spans = json.loads((server.directory / "spans.json").read_text())
    logs = [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]
    return replies, spans, logs


def _span(spans: list[dict], event_id: str) -> dict:
    found = [s for s in spans if s["attributes"].get("cloudevents.event_id") == event_id]
    assert len(found) == 1, spans
    return found[0]


@pytest.mark.parametrize("event_id", list(CASES))
def test_every_part_names_the_same_trace(run, event_id):
    replies, spans, logs = run
    expected = CASES[event_id][1]
    span = _span(spans, event_id)
    assert span["context"]["trace_id"] == "0x" + expected
    assert span["parent_id"] == "0x" + SPAN  # the caller's span, in either style
    access = [line for line in logs if line["logger"] == "pyfunc.access" and line.get("ce_id") == event_id]
    assert len(access) == 1 and access[0]["trace_id"] == expected, access
    own = [line for line in logs if line["logger"] == "user" and line["message"] == f"handling {event_id}"]
    assert len(own) == 1 and own[0]["trace_id"] == expected, own
    traceparent = replies[event_id]["traceparent"]
    assert traceparent.split("-")[1] == expected
    assert traceparent.split("-")[3] == "01"  # sampled upstream: still sampled


def test_w3c_tracestate_is_carried_into_the_reply(run):
    replies, _, _ = run
    assert replies["w3c"]["tracestate"] == "rojo=1"


def test_malformed_b3_starts_a_new_trace_and_the_reply_carries_none(run):
    replies, spans, logs = run
    span = _span(spans, "bad-b3")
    assert span["parent_id"] is None
    assert "traceparent" not in replies["bad-b3"].get_attributes()
    access = [line for line in logs if line["logger"] == "pyfunc.access" and line.get("ce_id") == "bad-b3"]
    assert access[0]["trace_id"] == span["context"]["trace_id"][2:]  # the log follows the span pyfunc began


def test_b3_without_tracing_still_reaches_the_log_and_the_reply(serve):
    server = serve("def handler(event):\n    return {'type': 'r'}, {}\n", env={"PYFUNC_LOG_FORMAT": "json"})
    response = send(server.url, make_event({}, id="plain"), headers={"b3": f"{TRACE}-{SPAN}-0"})
    reply = from_http(dict(response.headers), response.content)
    assert reply["traceparent"] == f"00-{TRACE}-{SPAN}-00"  # not sampled upstream: not sampled here
    server.stop(signal.SIGTERM)
    access = [json.loads(line) for line in server.logs().splitlines() if '"pyfunc.access"' in line]
    assert access[0]["trace_id"] == TRACE
