"""Hostile and broken HTTP at the socket level: every case gets a clear 4xx or a clean close.

These are written with raw sockets because a client library would refuse to send most of them
(or would fix them up), and the responses are parsed strictly (rawhttp) so a malformed answer
fails the test. After every case, and during the slow ones, a good request must still be served
on the first try: a runtime on the open edge of a platform cannot let one bad client stall it.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Callable

import pytest
import rawhttp
from reliability_support import ECHO, assert_no_traceback, assert_serving

CHANNEL_TIMEOUT = 2  # seconds; short so stalled clients are cut off quickly in the test
MAX_BODY = 10 << 20  # the default PYFUNC_MAX_BODY_SIZE
CE = {"ce-specversion": "1.0", "ce-id": "h-1", "ce-source": "/rel", "ce-type": "rel.test"}


@pytest.fixture(scope="module")
def server(serve_module: Callable[..., object]) -> object:
    """One echo server for the module, with a short channel timeout (slow-loris, stalled bodies)."""
    return serve_module(ECHO, env={"PYFUNC_CHANNEL_TIMEOUT": str(CHANNEL_TIMEOUT)})


def assert_clean(responses: list[rawhttp.RawResponse], allowed: tuple[int, ...] = ()) -> None:
    """Each response is a well-formed 2xx/4xx (or an explicitly allowed status), never a 5xx or a traceback."""
    for response in responses:
        assert response.status < 500 or response.status in allowed, (response.status, response.body[:300])
        assert_no_traceback(response.body)


class Background:
    """Sends good requests on fresh connections in a thread while a hostile client runs."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.statuses: list[int] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                responses = rawhttp.exchange(self.port, rawhttp.good_event_request(), timeout=30)
                self.statuses.extend(r.status for r in responses)
            except Exception as exc:  # noqa: BLE001 - every failure is recorded and asserted on
                self.errors.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.05)

    def __enter__(self) -> Background:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(40)

    def check(self) -> None:
        assert not self.errors, self.errors[:3]
        assert self.statuses and set(self.statuses) == {200}, self.statuses[:20]


# ---------------------------------------------------------------------------------------- headers


def assert_refusal(response: rawhttp.RawResponse, status: int, reason: str) -> None:
    """A 413/431 that waitress refused before the app: pyfunc's problem+json, closing the connection."""
    assert response.status == status, (response.status, response.body[:300])
    assert response.header("Content-Type") == "application/problem+json"
    assert response.header("Connection") == "close"
    problem = response.json()
    assert (problem["status"], problem["reason"], problem["type"]) == (status, reason, f"urn:pyfunc:problem:{reason}")
    assert "bytes" in problem["detail"]


def test_oversized_header_gets_431(server) -> None:
    responses = rawhttp.exchange(server.port, rawhttp.request_bytes("POST", "/", {**CE, "X-Big": "a" * 70_000}, b"1"))
    assert [r.status for r in responses] == [431]
    assert_refusal(responses[0], 431, "headers-too-large")
    assert_serving(server.port)


def test_huge_number_of_headers(server) -> None:
    """3,000 small headers fit the 64 KiB head limit and are served; 20,000 exceed it and get 431."""
    many = {f"X-H{i}": "v" for i in range(3_000)}
    responses = rawhttp.exchange(server.port, rawhttp.request_bytes("POST", "/", {**many, **CE}, b"1"))
    assert [r.status for r in responses] == [200]
    too_many = {f"X-H{i}": "v" for i in range(20_000)}
    responses = rawhttp.exchange(server.port, rawhttp.request_bytes("POST", "/", {**too_many, **CE}, b"1"))
    assert [r.status for r in responses] == [431]
    assert_serving(server.port)


@pytest.mark.parametrize("line", [
    b"\x00\x01\x02garbage\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nBad Header: v\r\nConnection: close\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nX: a\r\n folded\r\nConnection: close\r\n\r\n",
    b"POST / HTTP/1.1\nHost: x\nConnection: close\n\n",
    b"POST / HTTP/9.9\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"POST " + b"/" * 70_000 + b" HTTP/1.1\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\nConnection: close\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\nConnection: close\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n12",
    b"POST / HTTP/1.1\r\nHost: x\r\nce-id: \xff\xfe%ZZ\r\nce-specversion: 1.0\r\nConnection: close\r\n\r\n",
], ids=["garbage", "space-in-name", "obs-fold", "bare-lf", "bad-version", "huge-target", "cl-text",
        "cl-negative", "cl-twice", "ce-bad-bytes"])
def test_malformed_request_heads(server, line: bytes) -> None:
    """Broken request heads: a 4xx or a clean close (no response at all), and the server goes on."""
    responses = rawhttp.exchange(server.port, line)
    assert len(responses) <= 1
    assert_clean(responses)
    for response in responses:
        assert 400 <= response.status < 500
    assert_serving(server.port)


# ---------------------------------------------------------------------------------------- bodies


@pytest.mark.parametrize("content_type", [
    "application/json", "application/cloudevents+json", "application/cloudevents-batch+json"])
def test_deeply_nested_json_is_a_400(server, content_type: str) -> None:
    """Regression: 100,000 nested arrays used to raise RecursionError, answered as a 500."""
    deep = b"[" * 100_000 + b"]" * 100_000
    if content_type == "application/json":
        headers, body = {**CE, "Content-Type": content_type}, deep
    else:
        event = b'{"specversion":"1.0","id":"1","source":"/s","type":"t","data":' + deep + b"}"
        headers = {"Content-Type": content_type}
        body = event if "batch" not in content_type else b"[" + event + b"]"
    responses = rawhttp.exchange(server.port, rawhttp.request_bytes("POST", "/", headers, body))
    assert [r.status for r in responses] == [400]
    assert responses[0].json()["reason"] == "malformed-json"
    assert_serving(server.port)


def test_100_mb_body_gets_413_without_being_read(server) -> None:
    """A 100 MB Content-Length: the server answers 413 after at most about max_body and closes.

    The client streams until the server stops reading (reset or closed window); the test asserts
    it could not push more than max_body plus socket buffers, i.e. the server did not read it all.
    """
    total = 100 << 20
    with Background(server.port) as background:
        sock = rawhttp.connect(server.port)
        sock.sendall(rawhttp.request_bytes("POST", "/", {**CE, "Content-Type": "application/octet-stream",
                                                         "Content-Length": str(total)}, close=False))
        sent, chunk = 0, b"x" * 65536
        sock.settimeout(1.0)
        deadline = time.monotonic() + 30
        while sent < total and time.monotonic() < deadline:
            try:
                sent += sock.send(chunk)
            except socket.timeout:
                break  # the server stopped reading: the window is full
            except OSError:
                break  # reset: the server answered and closed
        data = rawhttp.read_until_close(sock, timeout=30)
        sock.close()
        time.sleep(0.3)
    responses = rawhttp.parse_all(data)
    assert [r.status for r in responses] == [413]
    assert_refusal(responses[0], 413, "body-too-large")
    assert sent < 3 * MAX_BODY, f"the client pushed {sent} bytes: the server read far beyond the limit"
    background.check()
    assert_serving(server.port)


def test_body_shorter_than_content_length(server) -> None:
    """Half-closed early: a clean close. Stalled: closed after the channel timeout. No response, no 5xx."""
    head = rawhttp.request_bytes("POST", "/", {**CE, "Content-Type": "application/json", "Content-Length": "100"},
                                 close=False)
    responses = rawhttp.exchange(server.port, head + b'{"a"')
    assert_clean(responses)
    assert all(400 <= r.status < 500 for r in responses)
    with Background(server.port) as background:
        sock = rawhttp.connect(server.port)
        sock.sendall(head + b'{"a"')
        started = time.monotonic()
        data = rawhttp.read_until_close(sock, timeout=CHANNEL_TIMEOUT * 10)
        waited = time.monotonic() - started
        sock.close()
    assert_clean(rawhttp.parse_all(data))
    assert waited >= CHANNEL_TIMEOUT * 0.5, "closed before the channel timeout: the stall was not waited for"
    background.check()
    assert_serving(server.port)


def test_body_longer_than_content_length(server) -> None:
    """The extra bytes are the next request on the connection: here not a request, so a 400 and a close."""
    request = rawhttp.request_bytes("POST", "/", {**CE, "Content-Type": "application/json"}, b"{}", close=False)
    responses = rawhttp.exchange(server.port, request + b"GARBAGE-NOT-A-REQUEST\r\n\r\n")
    assert [r.status for r in responses] == [200, 400]
    assert responses[0].body == b"{}"
    assert_clean(responses)
    assert_serving(server.port)


def test_chunked_bodies(server) -> None:
    """Valid chunked → 200 with the de-chunked body; a bad chunk size → 400; an over-limit chunk → 413."""
    head = ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in CE.items()) + "Connection: close\r\n\r\n").encode()
    responses = rawhttp.exchange(server.port, head + b'3\r\n{"a\r\n4\r\n":1}\r\n0\r\n\r\n')
    assert [(r.status, r.body) for r in responses] == [(200, b'{"a":1}')]
    responses = rawhttp.exchange(server.port, head + b"zz\r\nabc\r\n0\r\n\r\n")
    assert [r.status for r in responses] == [400]
    responses = rawhttp.exchange(server.port, head + b"FFFFFFFF\r\n" + b"x" * 1000)
    assert_clean(responses)
    assert [r.status for r in responses] == [413]
    assert_refusal(responses[0], 413, "body-too-large")
    # Content-Length and chunked together (a smuggling shape): chunked wins or a 400, never two requests.
    both = head.replace(b"Transfer-Encoding: chunked\r\n", b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n")
    responses = rawhttp.exchange(server.port, both + b"0\r\n\r\n")
    assert len(responses) <= 1
    assert_clean(responses)
    assert_serving(server.port)


# ---------------------------------------------------------------------------------------- connections


def test_pipelined_requests_answered_in_order(server) -> None:
    bodies = [f'{{"n": {i}}}'.encode() for i in range(5)]
    data = b"".join(
        rawhttp.request_bytes("POST", "/", {**CE, "Content-Type": "application/json"}, body, close=(i == 4))
        for i, body in enumerate(bodies))
    responses = rawhttp.exchange(server.port, data)
    assert [r.status for r in responses] == [200] * 5
    assert [r.json() for r in responses] == [{"n": i} for i in range(5)]
    assert_serving(server.port)


def test_http_1_0_client(server) -> None:
    """HTTP/1.0 without keep-alive: one response, then the server closes (read_until_close would time out)."""
    request = rawhttp.request_bytes("POST", "/", {**CE, "Content-Type": "application/json"}, b"[1]",
                                    version="HTTP/1.0", close=False)
    with rawhttp.connect(server.port) as sock:
        sock.sendall(request)  # no half-close: the server must close by itself
        responses = rawhttp.parse_all(rawhttp.read_until_close(sock, timeout=10))
    assert [(r.status, r.body) for r in responses] == [(200, b"[1]")]
    assert responses[0].head.startswith(b"HTTP/1.0 ") or responses[0].head.startswith(b"HTTP/1.1 ")
    assert_serving(server.port)


def test_slow_loris(server) -> None:
    """One byte a second on 20 connections: good requests are served meanwhile; once they stall they are closed.

    waitress buffers a request head on its I/O loop and hands it to a worker thread only when complete,
    so a trickling client holds a connection slot, not a worker. channel_timeout is an *inactivity*
    timeout; a client that keeps trickling is cut off by PYFUNC_RECEIVE_TIMEOUT (the next test).
    """
    request = rawhttp.good_event_request(close=False)
    lorises = [rawhttp.connect(server.port) for _ in range(20)]
    with Background(server.port) as background:
        for i in range(4):  # 4 bytes, one per second, on every loris
            for sock in lorises:
                sock.sendall(request[i:i + 1])
            time.sleep(1.0)
        started = time.monotonic()
        for sock in lorises:  # now they stall: each must be closed after about channel_timeout
            data = rawhttp.read_until_close(sock, timeout=CHANNEL_TIMEOUT * 10)
            assert_clean(rawhttp.parse_all(data))
            sock.close()
        waited = time.monotonic() - started
    assert waited < CHANNEL_TIMEOUT * 10
    background.check()
    assert_serving(server.port)


def test_trickling_client_is_cut_off_by_the_receive_deadline(serve) -> None:
    """A client that never stops trickling (one byte every 0.2 s) is disconnected after PYFUNC_RECEIVE_TIMEOUT.

    Without the deadline it would hold its connection for as long as it kept sending: at 1 byte a second a
    10 MiB body takes four months.
    """
    server = serve(ECHO, env={"PYFUNC_RECEIVE_TIMEOUT": "2", "PYFUNC_CHANNEL_TIMEOUT": "60"})
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    request = head + b"".join(b"X-Pad-%d: y\r\n" % i for i in range(500))  # would take ~80 s at this rate
    sock = rawhttp.connect(server.port)
    sent = 0
    with Background(server.port) as background:
        try:
            for sent in range(len(request)):  # bounded: the whole head, never more
                sock.sendall(request[sent:sent + 1])
                time.sleep(0.2)
        except OSError:
            pass  # reset or broken pipe: the server closed the connection
        else:
            pytest.fail("the server let a trickling client send its whole head")
        finally:
            sock.close()
    # Cut off after about the 2 s deadline (+ up to 1 s until waitress's next maintenance pass).
    assert sent * 0.2 < 30, f"closed only after {sent} bytes"
    background.check()
    assert_serving(server.port)
    assert "took over 2.0s to send its request" in server.logs()


def test_connect_and_say_nothing_then_go(server) -> None:
    """Connections opened and dropped (with and without a reset) leave nothing behind."""
    for _ in range(50):
        sock = rawhttp.connect(server.port)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # linger 0: a RST
    for _ in range(50):
        rawhttp.connect(server.port).close()
    assert_serving(server.port)


# ---------------------------------------------------------------------------------------- refusals


@pytest.fixture(scope="module")
def small_limits(serve_module: Callable[..., object]) -> object:
    """An echo server with a 1 KiB body and a 4 KiB head limit: refusals are cheap to provoke."""
    return serve_module("def handler(body: bytes):\n    return body\n",
                        env={"PYFUNC_MAX_BODY_SIZE": "1K", "PYFUNC_MAX_HEADER_SIZE": "4K"})


def _chunked(chunks: list[bytes], end: bool = True, path: str = "/") -> bytes:
    head = (b"POST %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n" % path.encode())
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks)
    return head + body + (b"0\r\n\r\n" if end else b"")


def _access_lines(server: object, status: int) -> list[str]:
    return [line for line in server.logs().splitlines() if "pyfunc.access" in line and f" {status} " in line]


def test_refusals_are_problem_json_and_access_lines(small_limits) -> None:
    """413 (Content-Length, chunked) and 431 are answered as every other pyfunc refusal, and logged."""
    server = small_limits
    before = {status: len(_access_lines(server, status)) for status in (413, 431)}
    too_long = rawhttp.request_bytes("POST", "/sized", {"X-Request-Id": "big-1"}, b"x" * 1025)
    cases = [
        (too_long, 413, "body-too-large"),
        (_chunked([b"x" * 600, b"y" * 600], path="/chunked"), 413, "body-too-large"),
        (rawhttp.request_bytes("POST", "/", {"X-Big": "h" * 5000}, b"1"), 431, "headers-too-large"),
    ]
    for data, status, reason in cases:
        responses = rawhttp.exchange(server.port, data)
        assert len(responses) == 1, responses
        assert_refusal(responses[0], status, reason)
    time.sleep(0.3)  # access lines are written by the loop's next turn
    assert len(_access_lines(server, 413)) == before[413] + 2
    assert len(_access_lines(server, 431)) == before[431] + 1
    assert any("POST /sized 413" in line for line in _access_lines(server, 413))
    assert any("POST /chunked 413" in line for line in _access_lines(server, 413))
    # At the limit exactly: served, chunked too (the limit is on the body, not its chunk framing).
    body = b"z" * 1024
    for data in (rawhttp.request_bytes("POST", "/", {}, body), _chunked([body]), _chunked([b"z" * 8] * 128)):
        responses = rawhttp.exchange(server.port, data)
        assert [(r.status, r.body) for r in responses] == [(200, body)]


def test_a_chunk_announcing_more_than_the_limit_is_answered_at_once(small_limits) -> None:
    """The client is still connected and sending: it gets its 413 without closing its side first."""
    with rawhttp.connect(small_limits.port, timeout=10) as sock:
        sock.sendall(_chunked([], end=False) + b"100000\r\n" + b"x" * 100)
        response = rawhttp.read_response(sock, timeout=5)
    assert_refusal(response, 413, "body-too-large")
    assert_serving(small_limits.port)
