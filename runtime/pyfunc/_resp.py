"""A small Redis client for dedup (``PYFUNC_DEDUPE=redis://…``): RESP2 over a pool of sockets.

Why not redis-py: dedup needs four commands (EVALSHA, SCRIPT LOAD, SET, AUTH/SELECT) and its
cost is per event. redis-py spends tens of microseconds of Python per command (its connection
pool, retry and callback machinery, command and response objects), more than the CloudEvent echo
itself, so Redis dedup ran at a third of plain pyfunc's throughput. This client packs a command
in one ``b"".join`` and parses a reply from one buffer, and it can *post* a command: send it
without waiting for its reply, which the next command on that connection reads first (Redis
answers in order). The dedup done mark is posted (pyfunc._dedup.RedisStore.finish).

One :class:`Pool` per process (per ``RedisStore``): a LIFO stack of idle connections, as many as
threads ever used it at once. A connection that fails (a timeout, a reset, a reply that does not
parse) is closed, never reused.

URLs: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://…`` (TLS, certificates checked
against the system's CAs) and ``unix://[[user]:password@]/path/to/socket[?db=N]``.
"""

from __future__ import annotations

import socket
import threading

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Optional, Union

    Arg = Union[str, bytes, int]

__all__ = ["Connection", "Pool", "ProtocolError", "RespError", "encode"]


class RespError(Exception):
    """An error reply (``-ERR …``, ``-NOSCRIPT …``)."""


class ProtocolError(OSError):
    """The server's bytes are not RESP, or it closed the connection: the connection is unusable."""


def encode(args: tuple[Arg, ...]) -> bytes:
    """One command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else (b"%d" % arg if isinstance(arg, int) else arg)
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class Connection:
    """One socket to Redis. Not thread-safe: a thread takes it from the :class:`Pool` and gives it back."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = b""
        self.pending = 0  # replies of posted commands not read yet
        self.posted_errors: list[RespError] = []  # error replies to posted commands, for the caller to report

    def call(self, *args: Arg) -> Any:
        """Send a command and return its reply (raises :class:`RespError` for an error reply)."""
        self.sock.sendall(encode(args))
        self.settle()
        return self.read()

    def pipeline(self, commands: list[tuple[Arg, ...]]) -> list[Any]:
        """Send commands at once; their replies, in order (an error reply is a RespError in the list)."""
        self.sock.sendall(b"".join(map(encode, commands)))
        self.settle()
        return [self.read(errors=False) for _ in commands]

    def post(self, *commands: tuple[Arg, ...]) -> None:
        """Send commands now; their replies are read (and errors kept in ``posted_errors``) by
        the next call on this connection, or by :meth:`settle`."""
        self.sock.sendall(b"".join(map(encode, commands)))
        self.pending += len(commands)

    def settle(self) -> None:
        """Read the replies of posted commands (Redis answers in order: they come first)."""
        while self.pending:
            self.pending -= 1
            reply = self.read(errors=False)
            if isinstance(reply, RespError):
                self.posted_errors.append(reply)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    # ------------------------------------------------------------------ parsing

    def read(self, errors: bool = True) -> Any:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"$":
            length = int(rest)
            return None if length < 0 else self._exact(length)
        if kind == b"+":
            return rest
        if kind == b":":
            return int(rest)
        if kind == b"-":
            error = RespError(rest.decode(errors="replace"))
            if errors:
                raise error
            return error
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self.read(errors=False) for _ in range(count)]
        raise ProtocolError(f"not a RESP reply: {line[:40]!r}")

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ProtocolError("Redis closed the connection")
        self._buffer += data

    def _line(self) -> bytes:
        while True:
            end = self._buffer.find(b"\r\n")
            if end >= 0:
                line, self._buffer = self._buffer[:end], self._buffer[end + 2:]
                return line
            self._fill()

    def _exact(self, length: int) -> bytes:
        while len(self._buffer) < length + 2:
            self._fill()
        data, self._buffer = self._buffer[:length], self._buffer[length + 2:]
        return data


class Pool:
    """Connections to the Redis of one URL: taken with :meth:`get`, given back with :meth:`put`."""

    def __init__(self, url: str, timeout: float) -> None:
        self.timeout = timeout
        self._target, self._tls_host, self._auth, self._db = _parse(url)
        self._idle: list[Connection] = []
        self._lock = threading.Lock()

    def get(self) -> Connection:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self._connect()

    def put(self, connection: Connection) -> None:
        with self._lock:
            self._idle.append(connection)

    def close(self) -> list[RespError]:
        """Read every posted reply, then close; returns the error replies found."""
        with self._lock:
            idle, self._idle = self._idle, []
        errors: list[RespError] = []
        for connection in idle:
            try:
                connection.settle()
            except OSError:
                pass
            errors += connection.posted_errors
            connection.close()
        return errors

    def _connect(self) -> Connection:
        if isinstance(self._target, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self._target)
            except OSError:
                sock.close()
                raise
        else:
            sock = socket.create_connection(self._target, timeout=self.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._tls_host is not None:
            import ssl

            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=self._tls_host)
        connection = Connection(sock)
        try:
            if self._auth is not None:
                connection.call("AUTH", *self._auth)
            if self._db:
                connection.call("SELECT", self._db)
        except (OSError, RespError):
            connection.close()
            raise
        return connection


def _parse(url: str) -> tuple[Union[str, tuple[str, int]], Optional[str], Optional[tuple[str, ...]], int]:
    """(address or socket path, TLS server name or None, AUTH arguments or None, db)."""
    from urllib.parse import parse_qs, unquote, urlsplit

    parts = urlsplit(url)
    auth: Optional[tuple[str, ...]] = None
    if parts.password is not None:
        password = unquote(parts.password)
        auth = (unquote(parts.username), password) if parts.username else (password,)
    query = parse_qs(parts.query)
    if parts.scheme == "unix":
        return parts.path, None, auth, int(query.get("db", ["0"])[0] or 0)
    host = parts.hostname or "localhost"
    port = parts.port or 6379
    path = parts.path.strip("/")
    db = int(path) if path else int(query.get("db", ["0"])[0] or 0)
    return (host, port), (host if parts.scheme == "rediss" else None), auth, db
