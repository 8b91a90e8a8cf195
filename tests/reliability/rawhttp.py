"""A strict HTTP/1.1 response parser and raw-socket helpers for the reliability suite.

Why not ``requests``/``http.client``: they are lenient (they accept bare LF, odd header bytes
and merge what they do not understand), so they would hide exactly the malformed or split
responses these tests look for. Here every byte the server sent is accounted for: a status
line, ``name: value`` header lines of visible ASCII, a blank line, and a body framed by
Content-Length or chunked encoding. Anything else raises :class:`Malformed`.
"""

from __future__ import annotations

import json
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Optional

# RFC 9110 §5.6.2 token characters for header names.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
# RFC 9110 §5.5 field value: visible ASCII, space, tab and obs-text (0x80-0xFF); never a control.
_VALUE = re.compile(rb"[\x20-\x7e\t\x80-\xff]*\Z")
_STATUS = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9]) [\x20-\x7e]*\Z")


class Malformed(AssertionError):
    """The bytes on the wire are not a well-formed HTTP/1.x response."""


@dataclass
class RawResponse:
    """One parsed response: status, headers in wire order, body bytes and the raw head."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    head: bytes = b""
    extra: dict[str, Any] = field(default_factory=dict)

    def header(self, name: str) -> Optional[str]:
        """The first header called ``name`` (case-insensitive), or None."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)


def parse_one(buf: bytes, *, head_request: bool = False, eof: bool = True) -> tuple[RawResponse, bytes]:
    """Parse one response from the front of ``buf``; returns it and the bytes after it.

    Raises :class:`Malformed` for anything not well formed, and :class:`IncompleteError`
    (a subclass) when ``buf`` ends before the response does and ``eof`` is False.
    """
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        raise IncompleteError(f"no end of head in {buf[:200]!r}")
    head, rest = buf[:end], buf[end + 4:]
    lines = head.split(b"\r\n")
    for line in lines:
        if b"\n" in line or b"\r" in line or b"\0" in line:
            raise Malformed(f"bare CR/LF/NUL inside a head line: {line[:200]!r}")
    match = _STATUS.match(lines[0])
    if not match:
        raise Malformed(f"bad status line {lines[0][:200]!r}")
    status = int(match.group(1))
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.match(name):
            raise Malformed(f"bad header line {line[:200]!r}")
        value = value.strip(b" \t")
        if not _VALUE.match(value):
            raise Malformed(f"header {name!r} has a byte outside visible ASCII: {value[:200]!r}")
        headers.append((name.decode("ascii"), value.decode("latin-1")))
    response = RawResponse(status, headers, b"", head)
    lengths = response.all("Content-Length")
    chunked = any("chunked" in v.lower() for v in response.all("Transfer-Encoding"))
    if len(set(lengths)) > 1:
        raise Malformed(f"conflicting Content-Length headers {lengths}")
    if chunked and lengths:
        raise Malformed("both Content-Length and chunked")
    if head_request or status in (204, 304) or 100 <= status < 200:
        return response, rest
    if chunked:
        body = bytearray()
        while True:
            line_end = rest.find(b"\r\n")
            if line_end < 0:
                raise IncompleteError("chunk size line") if not eof else Malformed("truncated chunked body")
            size_text = rest[:line_end].split(b";")[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise Malformed(f"bad chunk size {size_text!r}") from None
            rest = rest[line_end + 2:]
            if size == 0:
                trailer_end = rest.find(b"\r\n")
                if trailer_end < 0:
                    raise IncompleteError("chunk trailer") if not eof else Malformed("truncated trailer")
                rest = rest[trailer_end + 2:]
                break
            if len(rest) < size + 2:
                raise IncompleteError("chunk data") if not eof else Malformed("truncated chunk")
            if rest[size:size + 2] != b"\r\n":
                raise Malformed("chunk not followed by CRLF")
            body += rest[:size]
            rest = rest[size + 2:]
        response.body = bytes(body)
        return response, rest
    if lengths:
        if not lengths[0].isdigit():
            raise Malformed(f"bad Content-Length {lengths[0]!r}")
        length = int(lengths[0])
        if len(rest) < length:
            if eof:
                raise Malformed(f"body shorter ({len(rest)}) than Content-Length {length}")
            raise IncompleteError("body")
        response.body = rest[:length]
        return response, rest[length:]
    if not eof:
        raise IncompleteError("body delimited by close")
    response.body = rest
    return response, b""


class IncompleteError(Malformed):
    """More bytes are needed to finish the response."""


def parse_all(buf: bytes, *, head_request: bool = False) -> list[RawResponse]:
    """Every response in ``buf`` (a whole connection's output, read to EOF); trailing bytes are malformed."""
    responses = []
    while buf:
        response, buf = parse_one(buf, head_request=head_request, eof=True)
        responses.append(response)
    return responses


def connect(port: int, timeout: float = 30) -> socket.socket:
    """A blocking TCP connection to the server on loopback."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_until_close(sock: socket.socket, limit: int = 64 << 20, timeout: float = 30) -> bytes:
    """Everything the server sends until it closes (or ``timeout`` seconds pass: then raise)."""
    deadline = time.monotonic() + timeout
    chunks = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"server did not close within {timeout}s; got {bytes(chunks[:300])!r}")
        sock.settimeout(remaining)
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        chunks += data
        if len(chunks) > limit:
            raise Malformed("response larger than the limit")
    return bytes(chunks)


def read_response(sock: socket.socket, timeout: float = 30, head_request: bool = False) -> RawResponse:
    """Read exactly one response from a keep-alive connection (Content-Length or chunked framed)."""
    deadline = time.monotonic() + timeout
    buf = b""
    while True:
        try:
            response, rest = parse_one(buf, head_request=head_request, eof=False)
            if rest:
                raise Malformed(f"unexpected bytes after the response: {rest[:200]!r}")
            return response
        except IncompleteError:
            pass
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no complete response within {timeout}s; got {buf[:300]!r}")
        sock.settimeout(remaining)
        data = sock.recv(65536)
        if not data:
            response, rest = parse_one(buf, head_request=head_request, eof=True)
            return response
        buf += data


def exchange(port: int, data: bytes, timeout: float = 30) -> list[RawResponse]:
    """Send ``data`` on a fresh connection, half-close, read to EOF, parse every response strictly."""
    with connect(port, timeout) as sock:
        sock.sendall(data)
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        return parse_all(read_until_close(sock, timeout=timeout))


def request_bytes(method: str, path: str = "/", headers: Optional[dict[str, str]] = None, body: bytes = b"",
                  version: str = "HTTP/1.1", close: bool = True) -> bytes:
    """A well-formed request, with Host and Content-Length filled in."""
    all_headers = {"Host": "127.0.0.1"}
    if body or method in ("POST", "PUT"):
        all_headers["Content-Length"] = str(len(body))
    if close:
        all_headers["Connection"] = "close"
    all_headers.update(headers or {})
    head = f"{method} {path} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in all_headers.items()) + "\r\n"
    return head.encode("latin-1") + body


def good_event_request(close: bool = True, event_id: str = "ok-1") -> bytes:
    """A valid binary-mode CloudEvent POST (what the echo handlers answer 200 to)."""
    return request_bytes("POST", "/", {
        "ce-specversion": "1.0", "ce-id": event_id, "ce-source": "/rel", "ce-type": "rel.test",
        "Content-Type": "application/json"}, b'{"n": 1}', close=close)
