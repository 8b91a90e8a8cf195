"""OpenTelemetry: one span per invocation with CloudEvents attributes, parented on the incoming trace.

The in-memory tests let the handler's ``start()`` install an SDK tracer provider with an
``InMemorySpanExporter`` (pyfunc then uses the installed provider) and ``stop()`` write the
finished spans to a file: everything goes through a real server process and a real SIGTERM.
The console test turns tracing on the production way, with ``OTEL_TRACES_EXPORTER``.
"""

from __future__ import annotations

import json
import signal

import pytest
import requests

from support import SPANS_TO_FILE, make_event, send

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
PARENT = f"00-{TRACE_ID}-{PARENT_SPAN}-01"
CREATED_TRACE = "0af7651916cd43dd8448eb211c80319c"
CREATED_SPAN = "b7ad6b7169203331"
CREATED = f"00-{CREATED_TRACE}-{CREATED_SPAN}-01"

IN_MEMORY = SPANS_TO_FILE + """
def handler(event):
    with trace.get_tracer("user").start_as_current_span("user work"):
        if event.data == "fail":
            raise ValueError("failed on purpose")
    return {"type": "com.example.reply"}, event.data
"""


@pytest.fixture(scope="module")
def spans(serve_module):
    """Send a set of events to one traced server, stop it, and return its spans by event id."""
    server = serve_module(IN_MEMORY, env={"PYFUNC_LOG_FORMAT": "json"})
    assert send(server.url, make_event("a", id="header-parent", type="com.example.order", source="/shop",
                                       subject="order-7"),
                headers={"traceparent": PARENT}).status_code == 200
    assert send(server.url, make_event("b", id="extension-parent", traceparent=CREATED),
                structured=True).status_code == 200
    assert send(server.url, make_event("c", id="both", traceparent=CREATED),
                headers={"traceparent": PARENT}).status_code == 200
    assert send(server.url, make_event("d", id="root")).status_code == 200
    assert send(server.url, make_event("fail", id="failing")).status_code == 500
    assert requests.get(server.url + "/health/readiness", timeout=5).status_code == 200
    assert server.stop(signal.SIGTERM) == 0
    found = json.loads((server.directory / "spans.json").read_text())
    logs = [json.loads(line) for line in server.logs().splitlines() if line.strip()]
    return found, logs


def _invocation(found: list[dict], event_id: str) -> dict:
    matches = [s for s in found if s["attributes"].get("cloudevents.event_id") == event_id]
    assert len(matches) == 1, found
    return matches[0]


def test_each_invocation_is_a_span_with_cloudevents_attributes(spans):
    found, _ = spans
    span = _invocation(found, "header-parent")
    assert span["name"] == "CloudEvents Process com.example.order"
    assert span["kind"] == "SpanKind.SERVER"
    assert span["attributes"] == {
        "cloudevents.event_id": "header-parent",
        "cloudevents.event_source": "/shop",
        "cloudevents.event_type": "com.example.order",
        "cloudevents.event_spec_version": "1.0",
        "cloudevents.event_subject": "order-7",
        "faas.trigger": "pubsub",
        "http.request.method": "POST",
    }
    assert span["status"]["status_code"] == "UNSET"
    # 5 invocations and 5 user spans; the health check made none.
    assert sorted(s["name"] for s in found).count("user work") == 5 and len(found) == 10


def test_span_is_parented_on_the_traceparent_header(spans):
    span = _invocation(spans[0], "header-parent")
    assert span["context"]["trace_id"] == "0x" + TRACE_ID
    assert span["parent_id"] == "0x" + PARENT_SPAN
    assert span["links"] == []


def test_span_is_parented_on_the_event_extension_without_a_header(spans):
    span = _invocation(spans[0], "extension-parent")
    assert span["context"]["trace_id"] == "0x" + CREATED_TRACE
    assert span["parent_id"] == "0x" + CREATED_SPAN


def test_with_both_the_header_is_the_parent_and_the_extension_a_link(spans):
    span = _invocation(spans[0], "both")
    assert span["parent_id"] == "0x" + PARENT_SPAN
    assert [(link["context"]["trace_id"], link["context"]["span_id"]) for link in span["links"]] == [
        ("0x" + CREATED_TRACE, "0x" + CREATED_SPAN)]


def test_without_trace_context_the_span_is_a_root(spans):
    span = _invocation(spans[0], "root")
    assert span["parent_id"] is None


def test_user_spans_are_children_of_the_invocation_span(spans):
    found, _ = spans
    invocation = _invocation(found, "header-parent")
    children = [s for s in found if s["name"] == "user work" and s["parent_id"] == invocation["context"]["span_id"]]
    assert len(children) == 1
    assert children[0]["context"]["trace_id"] == invocation["context"]["trace_id"]


def test_a_failing_invocation_is_an_error_span(spans):
    span = _invocation(spans[0], "failing")
    assert span["status"]["status_code"] == "ERROR"
    assert [e["name"] for e in span["events"]] == ["exception"]


def test_json_log_lines_carry_the_span_trace_and_span_ids(spans):
    found, logs = spans
    for event_id in ("header-parent", "extension-parent", "root"):
        span = _invocation(found, event_id)
        access = [r for r in logs if r.get("ce_id") == event_id and r["logger"] == "pyfunc.access"]
        assert len(access) == 1
        assert "0x" + access[0]["trace_id"] == span["context"]["trace_id"]
        assert "0x" + access[0]["span_id"] == span["context"]["span_id"]


def _console_spans(log: str) -> list[dict]:
    """The ConsoleSpanExporter prints each span as indented JSON between the log lines."""
    decoder = json.JSONDecoder()
    lines = log.splitlines()
    found = []
    for i, line in enumerate(lines):
        if line == "{":
            obj, _ = decoder.raw_decode("\n".join(lines[i:]))
            found.append(obj)
    return found


def test_otel_traces_exporter_turns_tracing_on(serve):
    server = serve("""
        def handler(event):
            return None
    """, env={"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "greeter-fn"})
    assert send(server.url, make_event("x", id="console-1"), headers={"traceparent": PARENT}).status_code == 202
    assert server.stop(signal.SIGTERM) == 0  # the batch processor exports at shutdown
    found = _console_spans(server.logs())
    assert len(found) == 1
    span = found[0]
    assert span["name"] == "CloudEvents Process com.example.test"
    assert span["attributes"]["cloudevents.event_id"] == "console-1"
    assert span["parent_id"] == "0x" + PARENT_SPAN
    assert span["resource"]["attributes"]["service.name"] == "greeter-fn"
    assert "tracing with OpenTelemetry, exporting to console" in server.logs()


def test_http_function_span_and_knative_service_name(serve):
    server = serve("""
        def handler(body):
            return "ok"
    """, env={"OTEL_TRACES_EXPORTER": "console", "K_SERVICE": "hello"})
    assert requests.post(server.url, data=b"x", headers={"traceparent": PARENT}, timeout=5).text == "ok"
    assert server.stop(signal.SIGTERM) == 0
    (span,) = _console_spans(server.logs())
    assert span["name"] == "POST /"
    assert span["attributes"] == {"faas.trigger": "http", "http.request.method": "POST"}
    assert span["context"]["trace_id"] == "0x" + TRACE_ID
    assert span["resource"]["attributes"]["service.name"] == "hello"


OTEL_MODULES = """
import sys

def handler(body):
    return sorted(name for name in sys.modules if name.startswith("opentelemetry"))
"""


@pytest.mark.parametrize("env", [{}, {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"},
                                 {"OTEL_TRACES_EXPORTER": "none"}])
def test_tracing_off_imports_no_opentelemetry(serve, env):
    server = serve(OTEL_MODULES, env={**env, "OTEL_SERVICE_NAME": "x"})
    assert requests.post(server.url, data=b"x", timeout=5).json() == []
    assert server.stop(signal.SIGTERM) == 0
    assert "{" not in server.logs().splitlines()


def test_a_missing_exporter_is_reported_and_serving_goes_on(serve):
    server = serve(OTEL_MODULES, env={"OTEL_TRACES_EXPORTER": "no-such-exporter"})
    assert requests.post(server.url, data=b"x", timeout=5).status_code == 200
    assert "no span exporter named 'no-such-exporter' is installed" in server.logs()


def test_an_async_handler_is_traced_while_no_worker_waits_for_it(serve):
    """A deferred async invocation: its span opens on the event loop, the handler's spans are its
    children, and its access line (written when a worker answers) carries the span's ids."""
    source = IN_MEMORY.replace("def handler(event):", "async def handler(event):")
    server = serve(source, env={"PYFUNC_LOG_FORMAT": "json"})
    assert send(server.url, make_event("a", id="async-parent"), headers={"traceparent": PARENT}).status_code == 200
    assert server.stop(signal.SIGTERM) == 0
    found = json.loads((server.directory / "spans.json").read_text())
    invocation = _invocation(found, "async-parent")
    assert invocation["context"]["trace_id"] == "0x" + TRACE_ID
    assert invocation["parent_id"] == "0x" + PARENT_SPAN
    children = [s for s in found if s["name"] == "user work" and s["parent_id"] == invocation["context"]["span_id"]]
    assert len(children) == 1
    logs = [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]
    access = [r for r in logs if r.get("ce_id") == "async-parent" and r["logger"] == "pyfunc.access"]
    assert len(access) == 1
    assert "0x" + access[0]["span_id"] == invocation["context"]["span_id"]
