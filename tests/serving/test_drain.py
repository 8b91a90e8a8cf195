"""Graceful shutdown under load: SIGTERM refuses new connections, finishes in-flight requests, runs stop()."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import threading
import time

import requests

SLOW_ECHO = """
import pathlib
import time

def handler(body: bytes, headers):
    if headers.get("X-Slow"):
        time.sleep(float(headers["X-Slow"]))
    if headers.get("X-Wait-For"):  # block until the test creates that file
        flag = pathlib.Path(__file__).parent / headers["X-Wait-For"]
        while not flag.exists():
            time.sleep(0.01)
    return body

def stop():
    (pathlib.Path(__file__).parent / "stopped").write_text("yes")
"""


class Outcome:
    """What the clients saw: every request is completed, refused, or a failure (cut off)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.completed: list[tuple[float, float, bool]] = []  # (sent at, answered at, slow)
        self.refused = 0
        self.failures: list[str] = []

    def one_request(self, port: int, ident: str, slow: bool) -> bool:
        """One POST on a fresh connection; False once the server refuses connections."""
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.connect()
        except ConnectionRefusedError:
            with self.lock:
                self.refused += 1
            return False
        sent = time.monotonic()
        try:
            headers = {"Connection": "close", "Content-Type": "text/plain"}
            if slow:
                headers["X-Slow"] = "0.8"
            conn.request("POST", "/", body=ident.encode(), headers=headers)
            response = conn.getresponse()
            body = response.read()
            if response.status == 200 and body == ident.encode():
                with self.lock:
                    self.completed.append((sent, time.monotonic(), slow))
            else:
                with self.lock:
                    self.failures.append(f"{ident}: {response.status} {body[:100]!r}")
        except Exception as exc:  # anything but a full, right answer is a request cut off
            with self.lock:
                self.failures.append(f"{ident}: {type(exc).__name__}: {exc}")
        finally:
            conn.close()
        return True


def test_sigterm_under_load_completes_or_refuses_every_request(serve):
    server = serve(SLOW_ECHO, env={"PYFUNC_THREADS": "16"})
    outcome = Outcome()
    done = threading.Event()

    def client(number: int) -> None:
        i = 0
        while not done.is_set():
            i += 1
            if not outcome.one_request(server.port, f"c{number}-r{i}", slow=((i + number) % 4 == 0)):
                if server.process.poll() is not None:
                    return
                time.sleep(0.05)

    clients = [threading.Thread(target=client, args=(n,)) for n in range(6)]
    for thread in clients:
        thread.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # wait for a steady load with slow requests in it
            with outcome.lock:
                if len(outcome.completed) >= 60 and sum(slow for *_, slow in outcome.completed) >= 6:
                    break
            time.sleep(0.05)
        time.sleep(0.3)  # let new slow requests get under way
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        exit_code = server.process.wait(30)
    finally:
        done.set()
        for thread in clients:
            thread.join(40)

    assert outcome.failures == [], outcome.failures
    assert exit_code == 0, server.logs()
    spanning = [c for c in outcome.completed if c[0] < signalled < c[1]]
    assert any(slow for *_, slow in spanning), "no slow request was in flight across SIGTERM"
    assert outcome.refused >= 1
    assert (server.directory / "stopped").read_text() == "yes"
    log = server.logs()
    assert "SIGTERM: draining" in log and "stopped" in log


def test_new_connections_are_refused_while_in_flight_requests_finish(serve):
    server = serve(SLOW_ECHO)
    result: dict = {}

    def slow_request() -> None:
        try:
            result["response"] = requests.post(server.url, data=b"in-flight",
                                               headers={"X-Wait-For": "release"}, timeout=30)
        except Exception as exc:  # noqa: BLE001 - reported below
            result["error"] = exc

    thread = threading.Thread(target=slow_request)
    thread.start()
    time.sleep(0.5)  # the request is in the handler
    server.process.send_signal(signal.SIGTERM)
    _wait_for_log(server, "SIGTERM: draining")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the listener closes: new connections are refused
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
        except ConnectionRefusedError:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("new connections were still accepted while draining")
    assert server.process.poll() is None  # still draining the in-flight request
    (server.directory / "release").write_text("")
    thread.join(30)
    assert "error" not in result, result
    assert result["response"].status_code == 200 and result["response"].content == b"in-flight"
    assert server.process.wait(30) == 0
    assert (server.directory / "stopped").exists()


def test_readiness_turns_503_while_draining(serve):
    """A connection opened before SIGTERM asks for readiness after draining began: 503."""
    server = serve(SLOW_ECHO)
    in_flight = threading.Thread(target=requests.post, args=(server.url,),
                                 kwargs={"data": b"x", "headers": {"X-Wait-For": "release"}, "timeout": 30})
    in_flight.start()
    early = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    time.sleep(0.3)
    assert requests.get(server.url + "/health/readiness", timeout=5).status_code == 200  # not draining yet
    server.process.send_signal(signal.SIGTERM)
    _wait_for_log(server, "SIGTERM: draining")
    early.sendall(b"GET /health/readiness HTTP/1.1\r\nHost: x\r\n\r\n")
    raw = _read_until_closed(early)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503"), raw
    assert b"connection: close" in head.lower()
    assert json.loads(body) == {"status": "unavailable", "message": "draining"}
    (server.directory / "release").write_text("")
    in_flight.join(30)
    assert server.process.wait(30) == 0


def test_sigint_drains_too_and_shutdown_timeout_bounds_the_wait(serve):
    server = serve(SLOW_ECHO, env={"PYFUNC_SHUTDOWN_TIMEOUT": "0.5"})
    result: dict = {}

    def stuck_request() -> None:
        try:
            requests.post(server.url, data=b"stuck", headers={"X-Wait-For": "never"}, timeout=30)
        except requests.RequestException as exc:
            result["error"] = exc

    thread = threading.Thread(target=stuck_request)
    thread.start()
    time.sleep(0.5)
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(30) == 0
    thread.join(30)
    assert "error" in result  # cut off, but only after the shutdown timeout
    log = server.logs()
    assert "SIGINT: draining" in log and "shutdown timeout reached" in log
    assert (server.directory / "stopped").exists()


def _wait_for_log(server, text: str, present: bool = True, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (text in server.logs()) == present:
            return
        time.sleep(0.02)
    raise AssertionError(f"log {'never showed' if present else 'showed'} {text!r}:\n{server.logs()}")


def _read_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def test_a_second_signal_stops_waiting_for_in_flight_requests(serve):
    server = serve(SLOW_ECHO, env={"PYFUNC_SHUTDOWN_TIMEOUT": "600"})
    stuck = threading.Thread(target=_ignore_errors(requests.post), args=(server.url,),
                             kwargs={"data": b"x", "headers": {"X-Wait-For": "never"}, "timeout": 60})
    stuck.start()
    time.sleep(0.5)
    server.process.send_signal(signal.SIGINT)
    _wait_for_log(server, "SIGINT: draining")
    assert server.process.poll() is None  # waiting for the stuck request
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(60) == 0
    stuck.join(60)
    assert "signalled again" in server.logs()
    assert (server.directory / "stopped").exists()


def _ignore_errors(function):
    def call(*args, **kwargs):
        try:
            function(*args, **kwargs)
        except requests.RequestException:
            pass

    return call
