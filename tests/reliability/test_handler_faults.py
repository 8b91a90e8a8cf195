"""Handler faults: whatever the user's function does, the caller gets a clear 500/504 with a JSON body,
the traceback goes to the log (never the body), and the process stays alive and serving.

One server (PYFUNC_TIMEOUT=1) whose handler misbehaves on request: ``{"fault": NAME}`` picks the
fault, anything else is echoed so the same server proves it still serves after each fault.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import pytest
import rawhttp
from reliability_support import assert_no_traceback, assert_serving

HANDLER = """
import threading, time

class Opaque:
    pass

def handler(event):
    data = event.data if isinstance(event.data, dict) else {}
    fault = data.get("fault")
    if fault is None:
        return {"type": "rel.reply", "source": "/rel"}, event.data
    if fault == "raise":
        raise ValueError("boom")
    if fault == "systemexit":
        raise SystemExit(3)
    if fault == "keyboardinterrupt":
        raise KeyboardInterrupt()
    if fault == "generatorexit":
        raise GeneratorExit()
    if fault == "memoryerror":
        raise MemoryError()
    if fault == "recursion":
        def down(n): return down(n + 1)
        return down(0)
    if fault == "hang":
        time.sleep(60)
    if fault == "busy":
        end = time.monotonic() + 3
        while time.monotonic() < end:
            pass
    if fault == "set":
        return {"type": "rel.reply"}, {1, 2, 3}
    if fault == "object":
        return {"type": "rel.reply"}, Opaque()
    if fault == "nested":
        return {"type": "rel.reply"}, {"a": [1, {"b": Opaque()}]}
    if fault == "circular":
        loop = []
        loop.append(loop)
        return {"type": "rel.reply"}, loop
    if fault == "too-deep":
        value = []
        for _ in range(100_000):
            value = [value]
        return {"type": "rel.reply"}, value
    if fault == "bad-return":
        return Opaque()
    if fault == "huge":
        return {"type": "rel.reply", "datacontenttype": "application/octet-stream"}, b"z" * (50 << 20)
    if fault == "leak-thread":
        threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
        return {"type": "rel.reply", "source": "/rel"}, {"leaked": True}
    raise AssertionError("unknown fault " + fault)
"""

FAULTS = {
    # fault: (status, reason, text that must be in the log)
    "raise": (500, "function-error", "ValueError: boom"),
    "systemexit": (500, "function-error", "SystemExit"),
    "keyboardinterrupt": (500, "function-error", "KeyboardInterrupt"),
    # Regression: GeneratorExit was re-raised into waitress, which logged it and never answered.
    "generatorexit": (500, "function-error", "GeneratorExit"),
    "memoryerror": (500, "function-error", "MemoryError"),
    "recursion": (500, "function-error", "RecursionError"),
    "hang": (504, "timeout", "timed out"),
    "busy": (504, "timeout", "timed out"),
    "set": (500, "invalid-reply", "set is not JSON serializable"),
    "object": (500, "invalid-reply", "Opaque is not JSON serializable"),
    "nested": (500, "invalid-reply", "Opaque is not JSON serializable"),
    "circular": (500, "invalid-reply", "Circular reference"),
    "too-deep": (500, "invalid-reply", "recursion"),
    "bad-return": (500, "invalid-reply", "returned a Opaque"),
}


@pytest.fixture(scope="module")
def server(serve_module: Callable[..., object]) -> object:
    return serve_module(HANDLER, env={"PYFUNC_TIMEOUT": "1", "PYFUNC_THREADS": "4"})


def _fault(port: int, fault: str, timeout: float = 30) -> rawhttp.RawResponse:
    request = rawhttp.request_bytes("POST", "/", {
        "ce-specversion": "1.0", "ce-id": f"f-{fault}", "ce-source": "/rel", "ce-type": "rel.test",
        "Content-Type": "application/json"}, json.dumps({"fault": fault}).encode())
    responses = rawhttp.exchange(port, request, timeout=timeout)
    assert len(responses) == 1
    return responses[0]


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_gets_a_clear_json_error(server, fault: str) -> None:
    status, reason, logged = FAULTS[fault]
    response = _fault(server.port, fault)
    assert response.status == status, response.body[:300]
    assert response.header("Content-Type") == "application/problem+json", response.headers
    body = response.json()
    assert body["status"] == status
    if reason:
        assert body["reason"] == reason
    assert_no_traceback(response.body)
    deadline = time.monotonic() + 5
    while logged not in server.logs() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert logged in server.logs()
    assert server.process.poll() is None
    assert_serving(server.port)


def test_raised_exceptions_log_their_traceback(server) -> None:
    _fault(server.port, "raise")
    assert "Traceback (most recent call last)" in server.logs()
    assert 'raise ValueError("boom")' in server.logs()


def test_hangs_do_not_exhaust_the_workers(server) -> None:
    """More hanging calls than waitress threads: each is a 504 after PYFUNC_TIMEOUT and the server serves on."""
    for _ in range(6):  # 4 waitress threads; the abandoned calls keep running on their own threads
        assert _fault(server.port, "hang").status == 504
    assert_serving(server.port)


def test_huge_reply_is_sent_whole(server) -> None:
    response = _fault(server.port, "huge", timeout=60)
    assert response.status == 200
    assert len(response.body) == 50 << 20 and response.body[:1] == b"z"
    assert_serving(server.port)


def test_leaked_threads_do_not_stop_serving(server) -> None:
    threads_before = _threads(server.process.pid)
    for _ in range(30):
        response = _fault(server.port, "leak-thread")
        assert response.status == 200 and response.json() == {"leaked": True}
    assert _threads(server.process.pid) >= threads_before + 30  # they really leaked ...
    assert_serving(server.port)  # ... and the server does not care


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")
