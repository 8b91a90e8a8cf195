"""The epoll loop (pyfunc._eventloop) under the conditions where a stale interest would hang a client.

That the running server really turns this loop (and not waitress's) is asserted in
test_waitress_contract.py. A connection whose interest the loop failed to refresh does not fail loudly: the client just
waits. Each test here drives one of the paths that change a connection's interest (a worker
that cannot send its whole response, a new connection on a reused fd, pipelining, the
connection limit) and asserts every byte arrives within a short timeout.
"""

from __future__ import annotations

import hashlib
import select
import socket
import threading
import time

import requests

BIG = """
def handler(body, headers):
    size = int(headers.get("X-Size", "0"))
    return bytes(range(256)) * (size // 256)
"""

HEADERS_ECHO = """
def handler(headers):
    return dict(headers)
"""


class _Responses:
    """Reads HTTP/1.1 responses (with a Content-Length) off a socket, one after another."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buffer = sock, b""

    def next(self, slow: bool = False) -> tuple[bytes, bytes]:
        """The next (head, body); ``slow`` takes the first MB in small sips."""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._recv(65536)
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length"))
        while len(rest) < length:
            sipping = slow and len(rest) < 1 << 20
            rest += self._recv(4096 if sipping else 1 << 20)
            if sipping:
                time.sleep(0.002)
        self.buffer = rest[length:]
        return head, rest[:length]

    def _recv(self, size: int) -> bytes:
        chunk = self.sock.recv(size)
        assert chunk, "connection closed early"
        return chunk


def _read_response(sock: socket.socket, slow: bool = False) -> tuple[bytes, bytes]:
    return _Responses(sock).next(slow)


def test_a_response_larger_than_the_socket_buffer_reaches_a_slow_reader(serve) -> None:
    """The worker cannot send it all: the loop must take over sending the rest."""
    server = serve(BIG)
    size = 8 << 20
    expected = hashlib.sha256(bytes(range(256)) * (size // 256)).hexdigest()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: the window starts small
        sock.settimeout(20)
        sock.connect(("127.0.0.1", server.port))
        for _ in range(2):  # twice on one connection: it must be readable again afterwards
            sock.sendall(f"POST / HTTP/1.1\r\nHost: x\r\nX-Size: {size}\r\nContent-Length: 0\r\n\r\n".encode())
            head, body = _read_response(sock, slow=True)
            assert head.startswith(b"HTTP/1.1 200"), head
            assert hashlib.sha256(body).hexdigest() == expected


def test_connections_on_reused_fds_and_a_keep_alive_one_are_all_served(serve) -> None:
    """Short connections come and go (the kernel hands their fds to the next ones) while a
    keep-alive connection keeps asking: every request is answered."""
    server = serve(BIG)
    failures: list[str] = []
    stop = threading.Event()

    def keep_alive() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                reply = session.post(server.url, headers={"X-Size": "512"}, timeout=5)
                if reply.status_code != 200 or len(reply.content) != 512:
                    failures.append(f"keep-alive: {reply.status_code} {len(reply.content)}")

    worker = threading.Thread(target=keep_alive)
    worker.start()
    try:
        for index in range(300):
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                size = 256 * (index % 7)
                sock.sendall(f"POST / HTTP/1.1\r\nHost: x\r\nX-Size: {size}\r\nContent-Length: 0\r\n\r\n".encode())
                head, body = _read_response(sock)
                if not head.startswith(b"HTTP/1.1 200") or len(body) != size:
                    failures.append(f"connection {index}: {head[:20]!r} {len(body)}")
    finally:
        stop.set()
        worker.join(10)
    assert failures == []


def test_pipelined_requests_behind_a_slow_response_are_all_answered(serve) -> None:
    """A connection is not readable while it has a request in service; the loop must watch it
    again when the worker is done, and then find the requests already buffered."""
    server = serve(BIG)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sizes = [2 << 20, 256, 0, 1024]
        sock.sendall(b"".join(
            f"POST / HTTP/1.1\r\nHost: x\r\nX-Size: {size}\r\nContent-Length: 0\r\n\r\n".encode() for size in sizes
        ))
        responses = _Responses(sock)
        for size in sizes:
            head, body = responses.next()
            assert head.startswith(b"HTTP/1.1 200"), head
            assert len(body) == size


def test_exactly_the_connection_limit_is_served_and_the_next_once_one_closes(serve) -> None:
    """``PYFUNC_CONNECTION_LIMIT`` clients are served at once; the next waits in the backlog (the
    listener is not watched at the limit) and is served as soon as a connection closes."""
    limit = 6
    server = serve(BIG, env={"PYFUNC_CONNECTION_LIMIT": str(limit)})
    clients = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(limit + 1)]
    try:
        for sock in clients:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Size: 256\r\nContent-Length: 0\r\n\r\n")
        time.sleep(1)
        answered, _, _ = select.select(clients, [], [], 0)
        waiting = [sock for sock in clients if sock not in answered]
        assert (len(answered), len(waiting)) == (limit, 1)
        for sock in answered:
            assert _read_response(sock)[0].startswith(b"HTTP/1.1 200")
        answered[0].close()
        head, body = _read_response(waiting[0])
        assert head.startswith(b"HTTP/1.1 200") and len(body) == 256
    finally:
        for sock in clients:
            sock.close()


def test_forwarding_headers_reach_the_function(serve) -> None:
    """waitress drops X-Forwarded-* and Forwarded unless a proxy is trusted; pyfunc passes them
    on as sent (Knative's queue-proxy sets them, and pyfunc-invoker 0.1.0 passed them)."""
    server = serve(HEADERS_ECHO)
    sent = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https", "Forwarded": "for=203.0.113.7"}
    echoed = requests.get(server.url, headers=sent, timeout=5).json()
    assert {name: echoed.get(name) for name in sent} == sent
