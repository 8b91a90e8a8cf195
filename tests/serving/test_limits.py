"""Limits: invocation timeout (504), concurrency cap (429), body/header size (413/431), slow clients, floods."""

from __future__ import annotations

import signal
import socket
import threading
import time

import requests

from support import make_event, send

BLOCKING = """
import pathlib, time
HERE = pathlib.Path(__file__).parent

def handler(body: bytes):
    if body == b"block":  # until the test creates the file "release"
        while not (HERE / "release").exists():
            time.sleep(0.01)
    if body == b"sleep":
        time.sleep(120)
    return body
"""


def _wait_for(predicate, timeout: float = 15, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_sync_timeout_is_a_504_and_the_abandoned_call_does_not_block_shutdown(serve):
    server = serve(BLOCKING, env={"PYFUNC_TIMEOUT": "0.5"})
    response = requests.post(server.url, data=b"sleep", timeout=30)
    assert response.status_code == 504
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 504 and problem["reason"] == "timeout"
    assert "0.5" in problem["detail"]
    assert "abandoning a synchronous invocation" in server.logs()
    for _ in range(3):  # the server keeps serving, also within the timeout
        assert requests.post(server.url, data=b"fast", timeout=10).content == b"fast"
    # The abandoned call still sleeps (120 s), yet SIGTERM ends the process now, with 0.
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(30) == 0


def test_knative_revision_timeout_is_the_default_invocation_timeout(serve):
    # queue-proxy answers 504 at the revision's timeoutSeconds: pyfunc stops and logs 504 then too.
    server = serve(BLOCKING, env={"REVISION_TIMEOUT_SECONDS": "0.5"})
    response = requests.post(server.url, data=b"sleep", timeout=30)
    assert response.status_code == 504 and response.json()["reason"] == "timeout"
    _wait_for(lambda: " 504 " in server.logs(), what="the access line of the 504")
    # PYFUNC_TIMEOUT, when set, wins.
    explicit = serve(BLOCKING, env={"REVISION_TIMEOUT_SECONDS": "0.5", "PYFUNC_TIMEOUT": "0"})
    assert requests.post(explicit.url, data=b"fast", timeout=10).content == b"fast"
    bad = serve(BLOCKING, env={"REVISION_TIMEOUT_SECONDS": "soon"}, wait=False)
    assert bad.process.wait(30) == 1
    assert "REVISION_TIMEOUT_SECONDS" in bad.logs()


def test_async_timeout_is_a_504_and_cancels_the_coroutine(serve):
    server = serve("""
        import asyncio, pathlib
        HERE = pathlib.Path(__file__).parent

        async def handler(event):
            if event.data == "slow":
                try:
                    await asyncio.sleep(60)
                except asyncio.CancelledError:
                    (HERE / "cancelled").write_text("yes")
                    raise
            return {"type": "com.example.done"}, event.data
    """, env={"PYFUNC_TIMEOUT": "0.5"})
    response = send(server.url, make_event("slow"), timeout=30)
    assert response.status_code == 504
    assert response.json()["reason"] == "timeout"
    assert "ce-id" not in response.headers
    _wait_for(lambda: (server.directory / "cancelled").exists(), what="the coroutine to be cancelled")
    quick = send(server.url, make_event("quick"))
    assert quick.status_code == 200 and quick.headers["ce-type"] == "com.example.done"


def test_concurrency_cap_answers_429_beyond_it(serve):
    server = serve(BLOCKING, env={"PYFUNC_MAX_CONCURRENCY": "2"})
    blocked: list[requests.Response] = []
    threads = [threading.Thread(target=lambda: blocked.append(
        requests.post(server.url, data=b"block", timeout=30))) for _ in range(2)]
    for thread in threads:
        thread.start()
    rejected: list[requests.Response] = []

    def probe_rejected() -> bool:
        response = requests.post(server.url, data=b"probe", timeout=10)
        if response.status_code == 429:
            rejected.append(response)
            return True
        assert response.status_code == 200 and response.content == b"probe"
        return False

    _wait_for(probe_rejected, what="a 429 while two invocations are in progress")
    assert rejected[0].headers["Content-Type"] == "application/problem+json"
    assert rejected[0].json()["reason"] == "too-many-requests"
    # Health checks are not invocations: they are answered at the cap.
    assert requests.get(server.url + "/health/readiness", timeout=5).status_code == 200
    (server.directory / "release").write_text("")
    for thread in threads:
        thread.join(30)
    assert [r.status_code for r in blocked] == [200, 200]
    assert requests.post(server.url, data=b"after", timeout=10).content == b"after"


def test_body_too_large_is_413_and_header_too_large_is_431(serve):
    server = serve(BLOCKING, env={"PYFUNC_MAX_BODY_SIZE": "1K", "PYFUNC_MAX_HEADER_SIZE": "4K"})
    assert requests.post(server.url, data=b"x" * 1024, timeout=10).status_code == 200
    assert requests.post(server.url, data=b"x" * 1025, timeout=10).status_code == 413
    chunked = requests.post(server.url, data=iter([b"x" * 700, b"y" * 700]), timeout=10)
    assert chunked.status_code == 413
    assert requests.post(server.url, data=b"ok", headers={"X-Big": "h" * 8192}, timeout=10).status_code == 431
    assert requests.post(server.url, data=b"ok", timeout=10).content == b"ok"


def test_slow_clients_hold_no_thread_and_are_closed_after_the_channel_timeout(serve):
    server = serve(BLOCKING, env={"PYFUNC_THREADS": "2", "PYFUNC_CHANNEL_TIMEOUT": "1"})
    slow = []
    for _ in range(10):  # more stalled clients than threads, each mid-way through its headers
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=20)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n")
        slow.append(sock)
    for _ in range(5):
        assert requests.post(server.url, data=b"good", timeout=10).content == b"good"
    for sock in slow:  # the server closes each stalled connection (EOF, or a reset)
        try:
            assert sock.recv(1024) == b""
        except ConnectionResetError:
            pass
        sock.close()
    assert requests.post(server.url, data=b"still", timeout=10).content == b"still"


def test_server_keeps_serving_good_requests_through_a_flood_of_bad_ones(serve):
    server = serve("""
        def handler(event):
            return {"type": "com.example.ok"}, event.data
    """, env={"PYFUNC_MAX_BODY_SIZE": "4K", "PYFUNC_MAX_HEADER_SIZE": "4K", "PYFUNC_CHANNEL_TIMEOUT": "2"})
    bad_payloads = [
        b"GARBAGE\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"x" * 5000,
        b"POST / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"h" * 6000 + b"\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/cloudevents+json\r\nContent-Length: 5\r\n\r\n{bad}",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Len",  # and then nothing: stalls
    ]
    stop = threading.Event()
    flood_errors: list[str] = []
    sent = [0]

    def flood() -> None:
        while not stop.is_set():
            for payload in bad_payloads:
                try:
                    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                        sock.sendall(payload)
                        if not payload.endswith(b"Content-Len"):
                            sock.settimeout(5)
                            sock.recv(4096)
                        sent[0] += 1
                except (ConnectionResetError, BrokenPipeError, socket.timeout):
                    pass  # the server may hang up on garbage: that is its right
                except OSError as exc:
                    flood_errors.append(repr(exc))

    flooders = [threading.Thread(target=flood) for _ in range(3)]
    for thread in flooders:
        thread.start()
    try:
        good = []
        for i in range(30):
            response = send(server.url, make_event({"n": i}, id=f"good-{i}"), timeout=10)
            good.append((response.status_code, response.json()))
    finally:
        stop.set()
        for thread in flooders:
            thread.join(30)
    assert good == [(200, {"n": i}) for i in range(30)]
    assert sent[0] > 30 and not flood_errors, flood_errors
    assert send(server.url, make_event({"after": True})).json() == {"after": True}
    assert server.process.poll() is None
