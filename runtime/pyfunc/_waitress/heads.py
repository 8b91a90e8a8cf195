"""Quicker request head parsing and response head building, with waitress's exact results.

waitress parses a head line by line in Python and, for every header seen for the first time,
raises and catches a KeyError; it builds the response head anew on every response and sends it
apart from the body. About 15 % of a small request's instructions, saved here: any request or
response these cannot handle goes to waitress's own code. tests/serving/test_waitress_fast_paths.py
compares both with waitress's own, on a corpus and on generated heads.
"""

from __future__ import annotations

import operator
import re

from waitress.buffers import OverflowableBuffer
from waitress.parser import HTTPRequestParser, crack_first_line, split_uri
from waitress.receiver import FixedStreamReceiver
from waitress.task import WSGITask
from waitress.utilities import build_http_date

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Callable

__all__ = ["ONE_SEND_MAX", "QuickParser", "QuickTask"]

# RFC 9110 5.1/5.5 (RFC 7230 3.2, as waitress's rfc7230 module spells it): a header line is
# ``field-name ":" OWS field-value OWS``; the value is kept without the OWS.
_NAME = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"  # token
_VALUE = rb"(?:[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*)?"  # field-vchars, inner SP/HTAB
_FIELD_LINE = re.compile(rb"(" + _NAME + rb"):[ \t]*(" + _VALUE + rb")[ \t]*\r\n")
# The head after the request line: such lines, then the empty line.
_FIELD_BLOCK = re.compile(rb"(?:" + _NAME + rb":[ \t]*" + _VALUE + rb"[ \t]*\r\n)*\r\n")
_crack_first_line: Callable[[bytes], tuple[bytes, bytes, bytes]] = crack_first_line  # type: ignore[assignment] # stubs say str
# Header name as it arrives -> its CGI key ("content-type" -> "CONTENT_TYPE"), as waitress makes it.
_CGI_KEYS: dict[bytes, str] = {}
_CGI_KEYS_MAX = 4096  # bounded: names are the client's to choose


class QuickParser(HTTPRequestParser):
    """waitress's parser, with a quicker reading of the usual request head.

    The head of a plain HTTP/1.0 or 1.1 request (no ``Transfer-Encoding``, no folded or malformed
    line, a valid ``Content-Length`` if any) is read here with two regular-expression passes
    into exactly the state waitress's ``parse_header`` leaves; any other head, and every error,
    goes to waitress's own.
    """

    adj: Any

    def parse_header(self, header_plus: bytes) -> None:
        if not self._parse_usual_header(header_plus):
            super().parse_header(header_plus)

    def _parse_usual_header(self, header_plus: bytes) -> bool:
        """waitress's ``parse_header`` for a usual head; False, having changed nothing, for any other."""
        index = header_plus.find(b"\r\n")
        if index < 0:
            return False
        first_line = header_plus[:index].rstrip()
        block = header_plus[index + 2:]
        if b"\r" in first_line or b"\n" in first_line or _FIELD_BLOCK.fullmatch(block) is None:
            return False
        try:
            command, uri, version = _crack_first_line(first_line)
            split = split_uri(uri)
        except Exception:  # noqa: BLE001 - waitress's parse_header raises its own error for it
            return False
        if version == b"1.1":
            http11 = True
        elif version == b"1.0":
            http11 = False
        else:
            return False
        headers: dict[str, str] = {}
        keys = _CGI_KEYS
        for name, value in _FIELD_LINE.findall(block):
            key = keys.get(name)
            if key is None:
                if b"_" in name:  # waitress drops these (CGI would confuse them with "-")
                    continue
                key = name.upper().replace(b"-", b"_").decode("latin-1")
                if len(keys) < _CGI_KEYS_MAX:
                    keys[name] = key
            text = value.decode("latin-1")
            if key in headers:  # repeated: joined with ", ", as waitress does
                headers[key] += ", " + text
            else:
                headers[key] = text
        if "TRANSFER_ENCODING" in headers:
            return False
        length = headers.get("CONTENT_LENGTH", "0")
        if not (length.isascii() and length.isdigit()):
            return False
        state: Any = self  # typeshed's stubs type first_line as str
        state.first_line = first_line
        state.headers = headers
        state.request_uri = uri.decode("latin-1")
        state.command = command.decode("latin-1")
        state.version = version.decode("latin-1")
        state.proxy_scheme, state.proxy_netloc, state.path, state.query, state.fragment = split
        state.url_scheme = self.adj.url_scheme
        connection = headers.get("CONNECTION", "").lower()
        if http11:
            if connection == "close":
                state.connection_close = True
            state.expect_continue = headers.get("EXPECT", "").lower() == "100-continue"
        elif connection != "keep-alive":
            state.connection_close = True
        content_length = state.content_length = int(length)
        if content_length > 0:
            state.body_rcv = FixedStreamReceiver(content_length, OverflowableBuffer(self.adj.inbuf_overflow))
        return True


# Response header name as the app gave it -> as waitress sends it ("content-type" -> "Content-Type").
_TITLES: dict[str, str] = {}
_TITLES_MAX = 4096
_by_name = operator.itemgetter(0)
_date_second: tuple[int, str] = (-1, "")


def _http_date(when: float) -> str:
    """waitress's ``build_http_date(when)``, formatted once per second."""
    global _date_second
    second, text = _date_second
    if int(when) != second:
        second = int(when)
        text = build_http_date(second)
        _date_second = (second, text)
    return text


# The largest first body chunk sent in one piece with the response head: copying it is cheaper
# than the second send() (and pass through waitress's output buffers) it saves.
ONE_SEND_MAX = 64 << 10


class QuickTask(WSGITask):
    """waitress's WSGI task, with the response head built as waitress builds it but in half the
    time, and sent in one piece with a first body chunk that fits the Content-Length.

    waitress sends the head as soon as it is built (``send_bytes`` is 1), then the body: two
    ``send()`` calls and two passes through the channel's locked output buffers per response.
    """

    def write(self, data: bytes) -> None:
        content_length = self.content_length
        if (self.wrote_header or not self.complete or not data or len(data) > ONE_SEND_MAX
                or content_length is None or len(data) > content_length - self.content_bytes_written):
            super().write(data)  # waitress's own: later chunks, streams, errors, excess bodies
            return
        head = self.build_response_header()
        self.wrote_header = True
        if not self.has_body or self.chunked_response:  # (no body to send with it, or framed chunks)
            self.channel.write_soon(head)
            super().write(data)
            return
        self.content_bytes_written += len(data)
        self.channel.write_soon(head + data)

    def build_response_header(self) -> bytes:
        """waitress's ``Task.build_response_header``, byte for byte, with what it recomputes on every
        response cached: the capitalised header names and the Date of the current second.
        tests/serving/test_waitress_contract.py compares the two.

        The handler is done with the request body once its answer's head is built, so a body the
        memory budget admitted (refusals.LimitedParser) is given back here. waitress closes the
        request only after the answer is queued, and the channel may send it first: a client that
        sends its next body on seeing the answer, as queue-proxy does at its concurrency limit,
        would otherwise race that close and be shed although the budget was about to be free."""
        request: Any = self.request
        release_body = getattr(request, "release_body", None)
        if release_body is not None:
            release_body()
        connection = request.headers.get("CONNECTION", "").lower()
        headers: list[tuple[str, str]] = []
        content_length = date = server = None
        titles = _TITLES
        for name, value in self.response_headers:
            title = titles.get(name)
            if title is None:
                title = "-".join([part.capitalize() for part in name.split("-")])
                if len(titles) < _TITLES_MAX:
                    titles[name] = title
            if title == "Content-Length":
                if not self.has_body:
                    continue
                content_length = value
            elif title == "Date":
                date = value
            elif title == "Server":
                server = value
            headers.append((title, value))
        self.response_headers = headers
        if content_length is None and self.content_length is not None and self.has_body:
            content_length = str(self.content_length)
            headers.append(("Content-Length", content_length))
        if self.version == "1.0":
            if connection == "keep-alive" and content_length:
                headers.append(("Connection", "Keep-Alive"))
            else:
                self.set_close_on_finish()
        elif self.version == "1.1":
            if connection == "close":
                self.set_close_on_finish()
            if not content_length:
                # RFC 9112 6.1/6.3: no Transfer-Encoding or Content-Length on a 1xx, 204 or 304.
                if self.has_body:
                    headers.append(("Transfer-Encoding", "chunked"))
                    self.chunked_response = True
                if not self.close_on_finish:
                    self.set_close_on_finish()
        else:
            raise AssertionError("neither HTTP/1.0 or HTTP/1.1")
        # set_close_on_finish may have appended to self.response_headers: ``headers`` is that list.
        ident = self.channel.server.adj.ident
        if not server:
            if ident:
                headers.append(("Server", ident))
        else:
            headers.append(("Via", ident or "waitress"))
        if not date:
            headers.append(("Date", _http_date(self.start_time)))
        # A stable sort by name keeps same-named headers in order (RFC 9110 5.3).
        lines = [f"HTTP/{self.version} {self.status}"]
        lines += [f"{name}: {value}" for name, value in sorted(headers, key=_by_name)]
        lines.append("\r\n")
        return "\r\n".join(lines).encode("latin-1")
