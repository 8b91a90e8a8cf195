"""Logs: the handler's logging is visible once, one access line per request, text and JSON formats (parsed)."""

from __future__ import annotations

import json
import re
import signal
import time
from datetime import datetime

import requests

from support import make_event, send, to_binary

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
OTHER_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"

LOGGING_EVENT_HANDLER = """
import logging
logging.basicConfig(level=logging.DEBUG)  # what many handlers do: must not double pyfunc's output

log = logging.getLogger("myfunction")

def handler(event):
    logging.info("root says %s", event.data["word"])
    log.warning("named logger says %s", event.data["word"])
    if event.data["word"] == "fail":
        raise ValueError("bad word")
    return {"type": "com.example.reply"}, {"ok": True}
"""

TEXT_LINE = re.compile(
    r"^(?P<date>\d{4}-\d\d-\d\d) (?P<time>\d\d:\d\d:\d\d,\d{3}) (?P<level>[A-Z]+) (?P<logger>[\w.]+): (?P<message>.*)$"
)
ACCESS_MESSAGE = re.compile(
    r"^(?P<method>[A-Z]+) (?P<path>\S*) (?P<status>\d{3}) (?P<ms>\d+\.\d)ms"
    r"(?: ce-id=(?P<ce_id>\S+) ce-type=(?P<ce_type>\S+))?$"
)


def _text_records(log: str) -> list[dict]:
    """Every line of a text log, parsed; continuation lines (tracebacks) attach to their record."""
    records: list[dict] = []
    for line in log.splitlines():
        match = TEXT_LINE.match(line)
        if match:
            records.append(match.groupdict())
        elif records:
            records[-1].setdefault("continuation", []).append(line)
        else:
            raise AssertionError(f"unparsable first line: {line!r}")
    return records


def _json_records(log: str) -> list[dict]:
    """Every line must be one JSON object."""
    return [json.loads(line) for line in log.splitlines() if line.strip()]


def test_text_logs_show_handler_logging_once_and_one_access_line_per_request(serve):
    server = serve(LOGGING_EVENT_HANDLER)
    assert send(server.url, make_event({"word": "hello"}, id="e-1", type="com.example.in")).status_code == 200
    assert send(server.url, make_event({"word": "fail"}, id="e-2")).status_code == 500
    assert requests.get(server.url + "/health/readiness", timeout=5).status_code == 200
    assert server.stop(signal.SIGTERM) == 0
    records = _text_records(server.logs())

    user = [(r["level"], r["logger"], r["message"]) for r in records if r["logger"] in ("root", "myfunction")]
    assert user == [
        ("INFO", "root", "root says hello"),
        ("WARNING", "myfunction", "named logger says hello"),
        ("INFO", "root", "root says fail"),
        ("WARNING", "myfunction", "named logger says fail"),
    ]
    access = [ACCESS_MESSAGE.match(r["message"]).groupdict() for r in records if r["logger"] == "pyfunc.access"]
    # passing health probes (the fixture's start-up check, the readiness GET) are DEBUG: not shown at INFO
    assert [(a["method"], a["path"], a["status"], a["ce_id"], a["ce_type"]) for a in access] == [
        ("POST", "/", "200", "e-1", "com.example.in"),
        ("POST", "/", "500", "e-2", "com.example.test"),
    ]
    error = next(r for r in records if r["level"] == "ERROR")
    assert error["logger"] == "pyfunc" and "raised ValueError" in error["message"]
    assert any("ValueError: bad word" in line for line in error["continuation"])


def test_json_logs_are_one_object_per_line_with_request_event_and_trace_fields(serve):
    server = serve(LOGGING_EVENT_HANDLER, env={"PYFUNC_LOG_FORMAT": "json", "PYFUNC_TIMEOUT": "10"})
    binary = send(server.url, make_event({"word": "binary"}, id="b-1", type="com.example.in", source="/src/b"),
                  headers={"X-Request-Id": "req-123", "traceparent": TRACEPARENT})
    assert binary.status_code == 200
    other_parent = f"00-{OTHER_TRACE_ID}-b7ad6b7169203331-01"
    structured = send(server.url, make_event({"word": "structured"}, id="s-1", traceparent=other_parent),
                      structured=True)
    assert structured.status_code == 200
    assert send(server.url, make_event({"word": "fail"}, id="f-1")).status_code == 500
    rejected = requests.post(server.url, data=b"{}", timeout=5, headers={
        "Content-Type": "application/json", "traceparent": TRACEPARENT, "X-Request-Id": "bad-1"})
    assert rejected.status_code == 400
    assert server.stop(signal.SIGTERM) == 0
    records = _json_records(server.logs())

    for record in records:
        assert {"timestamp", "level", "logger", "message"} <= record.keys()
        assert record["timestamp"].endswith("Z")
        datetime.fromisoformat(record["timestamp"][:-1])

    def of(ce_id: str) -> list[dict]:
        return [r for r in records if r.get("ce_id") == ce_id]

    binary_records = of("b-1")
    assert [(r["logger"], r["message"]) for r in binary_records][:2] == [
        ("root", "root says binary"), ("myfunction", "named logger says binary")]
    for record in binary_records:  # the handler's lines (on the timeout thread) and the access line
        assert record["request_id"] == "req-123"
        assert record["ce_type"] == "com.example.in" and record["ce_source"] == "/src/b"
        assert record["trace_id"] == TRACE_ID
    access = binary_records[-1]
    assert access["logger"] == "pyfunc.access"
    assert (access["method"], access["path"], access["status"]) == ("POST", "/", 200)
    assert isinstance(access["duration_ms"], (int, float)) and access["duration_ms"] >= 0

    structured_records = of("s-1")
    assert len(structured_records) == 3
    assert {r["trace_id"] for r in structured_records} == {OTHER_TRACE_ID}  # from the CE extension
    assert all(re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]+", r["request_id"]) for r in structured_records)  # generated
    assert structured_records[0]["request_id"] != binary_records[0]["request_id"]

    failed = of("f-1")
    error = next(r for r in failed if r["level"] == "ERROR")
    assert "ValueError: bad word" in error["exception"]
    assert failed[-1]["status"] == 500
    bad = [r for r in records if r.get("request_id") == "bad-1"]
    assert [(r["logger"], r.get("status")) for r in bad] == [("pyfunc", None), ("pyfunc.access", 400)]
    assert all(r["trace_id"] == TRACE_ID and "ce_id" not in r for r in bad)
    startup = [r for r in records if r["logger"] == "pyfunc" and r["message"].startswith("serving ")]
    assert len(startup) == 1 and "request_id" not in startup[0]


def test_http_function_logging_and_flask_logger_are_visible_once(serve):
    server = serve("""
        import logging
        import flask

        def handler(req: flask.Request):
            logging.info("plain logging")
            flask.current_app.logger.info("flask logger")
            print("printed", flush=True)
            return "ok"
    """, env={"PYFUNC_LOG_FORMAT": "json"})
    response = requests.post(server.url, data=b"x", headers={"traceparent": TRACEPARENT}, timeout=5)
    assert response.text == "ok"
    assert server.stop(signal.SIGTERM) == 0
    lines = [line for line in server.logs().splitlines() if line.strip()]
    assert lines.count("printed") == 1
    records = [json.loads(line) for line in lines if line != "printed"]
    messages = [r["message"] for r in records]
    assert messages.count("plain logging") == 1 and messages.count("flask logger") == 1
    for record in records:
        if record["message"] in ("plain logging", "flask logger"):
            assert record["trace_id"] == TRACE_ID and "ce_id" not in record


def test_access_log_can_be_turned_off_and_level_raised(serve):
    server = serve(LOGGING_EVENT_HANDLER, env={"PYFUNC_ACCESS_LOG": "false", "PYFUNC_LOG_LEVEL": "warning",
                                              "PYFUNC_LOG_FORMAT": "json"})
    assert send(server.url, make_event({"word": "quiet"})).status_code == 200
    assert server.stop(signal.SIGTERM) == 0
    records = _json_records(server.logs())
    assert [(r["logger"], r["message"]) for r in records] == [("myfunction", "named logger says quiet")]


def test_passing_health_probes_are_debug_failing_ones_info(serve):
    """Knative probes constantly: passing probes stay out of the INFO access log, failing ones do not."""
    source = "def handler(data):\n    return None\n\ndef ready():\n    return False, 'warming up'\n"
    server = serve(source, env={"PYFUNC_LOG_FORMAT": "json"}, wait=False)
    debug = serve(source, env={"PYFUNC_LOG_FORMAT": "json", "PYFUNC_LOG_LEVEL": "debug"}, wait=False)
    for running in (server, debug):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                requests.get(running.url + "/health/liveness", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        assert requests.get(running.url + "/health/readiness", timeout=5).status_code == 503
        assert running.stop(signal.SIGTERM) == 0
    paths = [(r["path"], r["status"]) for r in _json_records(server.logs()) if r["logger"] == "pyfunc.access"]
    assert paths == [("/health/readiness", 503)]
    debug_records = [r for r in _json_records(debug.logs()) if r["logger"] == "pyfunc.access"]
    assert ("/health/liveness", 200, "DEBUG") in [(r["path"], r["status"], r["level"]) for r in debug_records]


ECHO_HANDLER = """
def handler(data):
    return {"type": "com.example.reply"}, data
"""


def test_access_lines_from_concurrent_requests_are_all_written_once_in_order(serve):
    """The server batches access lines per loop turn: none may be lost, doubled or reordered
    within a connection, and those still queued at SIGTERM are written before exit."""
    import threading

    server = serve(ECHO_HANDLER)
    clients, per_client = 8, 60

    def client(number: int) -> None:
        with requests.Session() as session:
            for index in range(per_client):
                headers, body = to_binary(make_event({"n": index}, id=f"c{number}-{index}"))
                assert session.post(server.url, headers=headers, data=body, timeout=10).status_code == 200

    threads = [threading.Thread(target=client, args=(number,)) for number in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert server.stop(signal.SIGTERM) == 0
    ids = [ACCESS_MESSAGE.match(r["message"])["ce_id"]
           for r in _text_records(server.logs()) if r["logger"] == "pyfunc.access"]
    assert sorted(ids) == sorted(f"c{n}-{i}" for n in range(clients) for i in range(per_client))
    for number in range(clients):
        mine = [int(ce_id.split("-")[1]) for ce_id in ids if ce_id.startswith(f"c{number}-")]
        assert mine == list(range(per_client))


def test_an_access_line_is_written_without_waiting_for_more_traffic(serve):
    server = serve(ECHO_HANDLER)
    assert send(server.url, make_event({"n": 1}, id="lonely")).status_code == 200
    deadline = time.monotonic() + 2
    while "ce-id=lonely" not in server.logs():
        assert time.monotonic() < deadline, server.logs()
        time.sleep(0.01)
