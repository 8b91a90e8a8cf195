"""pyfunc._waitress's quicker request head parsing and response head building, against waitress's own.

The adapter reads the usual request head with two regular-expression passes instead of waitress's
line-by-line ``parse_header``, and builds the response head with its header names and Date cached.
Both must leave exactly the state (and send exactly the bytes) waitress's code does; these tests
compare the two on a corpus of heads (usual ones, which must take the quick path, and unusual or
invalid ones, which must be left to waitress) and on generated heads and responses. A waitress
release that changes its parser or its response head fails here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from waitress.adjustments import Adjustments
from waitress.parser import HTTPRequestParser
from waitress.task import WSGITask

from pyfunc import _waitress
from pyfunc._config import Config
from pyfunc._server import Server, build_app
from pyfunc._waitress.heads import QuickParser
from support import free_port

ADJ = Adjustments(max_request_body_size=1 << 20, max_request_header_size=4096)
# The adapter's quick head parsing alone (refusals.LimitedParser adds the chunked body limits,
# tested in tests/serving/test_limits.py).


def parsed(cls: type, request: bytes) -> dict[str, Any]:
    """The parser's state after it received ``request``, in comparable form."""
    parser = cls(ADJ)
    try:
        consumed = parser.received(request)
        if parser.headers_finished and not parser.completed and consumed < len(request):
            parser.received(request[consumed:])
    except Exception as error:  # noqa: BLE001 - waitress raises some (a URI urlsplit refuses): so must the adapter
        return {"raised": (type(error).__name__, str(error))}
    state = {k: v for k, v in vars(parser).items() if k not in ("adj", "body_rcv", "error")}
    state["consumed"] = consumed
    error = parser.error
    state["error"] = None if error is None else (type(error).__name__, error.code, error.body)
    state["body_receiver"] = type(parser.body_rcv).__name__
    state["body"] = parser.get_body_stream().read() if parser.completed and error is None else None
    return state


def assert_same_parse(request: bytes) -> None:
    assert parsed(QuickParser, request) == parsed(HTTPRequestParser, request), request


USUAL = [
    b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",
    b"GET /a/b%20c?x=1&y=%C3%A9#frag HTTP/1.1\r\nHost: h\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nce-specversion: 1.0\r\n"
    b"ce-id: 1\r\nce-source: /s\r\nce-type: t\r\nContent-Length: 11\r\n\r\n{\"a\": true}",
    b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: 000012\r\n\r\nhello world!",
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
    b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
    b"GET / HTTP/1.1\r\nConnection: CLOSE\r\n\r\n",
    b"POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\nabc",
    b"GET / HTTP/1.1\r\nX-Dup: a\r\nx-dup: b\r\nX-DUP:c\r\n\r\n",  # joined with ", "
    b"GET / HTTP/1.1\r\nX_Under: dropped\r\nX-Kept: 1\r\n\r\n",  # an underscore name is dropped
    b"GET / HTTP/1.1\r\nX-Spaces:   a  b \t \r\nX-Empty:\r\nX-Blank:  \t\r\n\r\n",
    b"GET / HTTP/1.1\r\nX-Obs-Text: caf\xe9 \xff\r\n\r\n",
    b"GET //double/slash?q HTTP/1.1\r\n\r\n",
    b"GET http://example.com:8080/p?q=1 HTTP/1.1\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\n\r\n",
    b"\r\n\r\nGET / HTTP/1.1\r\n\r\n",  # blank lines before a request (RFC 9112 2.2)
    b"GET / HTTP/1.1  \r\nHost: h\r\n\r\n",  # trailing whitespace on the request line
    b"POST / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n",  # over the body limit: received()'s 413
    b"DELETE /x HTTP/1.1\r\nTraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n",
]

UNUSUAL = [
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\nab",
    b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello",
    b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nhello",
    b"POST / HTTP/1.1\r\nContent-Length: \xb2\r\n\r\nhi",  # a digit to str.isdigit(), not to HTTP
    b"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n",
    b"get / HTTP/1.1\r\n\r\n",  # a lower-case method
    b"GET / HTTP/2.0\r\n\r\n",
    b"GET /\r\n\r\n",
    b"GET\r\n\r\n",
    b"GET / HTTP/1.1\r\nX-Folded: a\r\n  b\r\n\r\n",  # obs-fold
    b"GET / HTTP/1.1\r\n folded-first: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nX-Bare-LF: a\nb\r\n\r\n",
    b"GET / HTTP/1.1\r\nX-Bare-CR: a\rb\r\n\r\n",
    b"GET / HTTP/1.1\r\nX-Del: a\x7fb\r\n\r\n",
    b"GET / HTTP/1.1\r\nX-Nul: a\x00b\r\n\r\n",
    b"GET / HTTP/1.1\r\nX-Space-Before-Colon : a\r\n\r\n",
    b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
    b"GET / HTTP/1.1\r\n: no name\r\n\r\n",
    b"GET / HTTP/1.1\r\nX(bad): a\r\n\r\n",
    b"GET /a\rb HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: " + b"h" * 5000 + b"\r\n\r\n",  # over the head limit: 431
    b"GET http://[::1 HTTP/1.1\r\n\r\n",  # a URI urlsplit refuses
]


@pytest.mark.parametrize("request_bytes", USUAL, ids=range(len(USUAL)))
def test_a_usual_head_takes_the_quick_path_to_waitress_state(request_bytes: bytes) -> None:
    parser = QuickParser(ADJ)
    head = request_bytes.lstrip()
    assert parser._parse_usual_header(head[: head.index(b"\r\n\r\n") + 4]), "the quick path refused a usual head"
    assert_same_parse(request_bytes)


@pytest.mark.parametrize("request_bytes", UNUSUAL, ids=range(len(UNUSUAL)))
def test_an_unusual_or_invalid_head_is_left_to_waitress(request_bytes: bytes) -> None:
    parser = QuickParser(ADJ)
    end = request_bytes.find(b"\r\n\r\n")
    if end >= 0 and end < ADJ.max_request_header_size:
        before = dict(vars(parser))
        assert not parser._parse_usual_header(request_bytes[: end + 4])
        assert vars(parser) == before, "the quick path changed the parser before giving up"
    assert_same_parse(request_bytes)


# Generated heads: request lines and header lines from parts chosen to reach every branch, joined
# with the separators and whitespace clients get wrong. Most lines are well-formed, so that about
# half the heads take the quick path and the rest reach waitress's errors and unusual cases.
_good_names = st.sampled_from([b"Host", b"X-Dup", b"x-dup", b"X_Under", b"Ce-Id", b"Content-Type", b"X-A"] * 3
                              + [b"Content-Length", b"content-length", b"Connection", b"Expect", b"Transfer-Encoding"])
_odd_names = st.sampled_from([b"", b"X Y", b"X(", b"\xe9", b" X", b"X\x00"])
_good_values = st.one_of(
    st.sampled_from([b"", b"0", b"5", b"12", b"+1", b"close", b"keep-alive", b"chunked", b"gzip, chunked",
                     b"100-continue", b"a  b", b"\xe9", b"  pad \t", b"007", b"5,5"]),
    st.text(alphabet=" \t!~az09,;=\x80\xff", max_size=10).map(lambda s: s.encode("latin-1")),
)
_odd_values = st.binary(max_size=12)
_good_separators = st.sampled_from([b":", b": ", b":\t", b":  "])
_good_line = st.tuples(_good_names, _good_separators, _good_values, st.just(b"\r\n"))
_odd_line = st.tuples(st.one_of(_good_names, _odd_names), st.sampled_from([b":", b" :", b""]),
                      st.one_of(_good_values, _odd_values), st.sampled_from([b"\r\n", b"\n", b"\r\n ", b"\r\n\t"]))
# Well-formed lines, with at most one odd line put in among them.
_lines = st.builds(lambda lines, odd, at: lines[:at] + [odd] + lines[at:] if odd else lines,
                   st.lists(_good_line, max_size=6), st.one_of(st.none(), _odd_line), st.integers(0, 6))
_methods = st.sampled_from([b"GET"] * 4 + [b"POST"] * 3 + [b"PUT", b"M-SEARCH", b"get", b"G\xe9T"])
_uris = st.sampled_from([b"/"] * 4 + [b"/a?b=c", b"//x", b"http://h/p", b"/%41%zz", b"*", b"/a#f", b"", b"/ /"])
_versions = st.sampled_from([b" HTTP/1.1"] * 4 + [b" HTTP/1.0"] * 2 + [b" HTTP/2.0", b"", b" HTTP/1.1 ", b" http/1.1"])
_bodies = st.sampled_from([b"", b"hello", b"5\r\nhello\r\n0\r\n\r\n", b"0\r\n\r\n"])


@settings(max_examples=1500, deadline=None)
@given(method=_methods, uri=_uris, version=_versions, lines=_lines, body=_bodies)
def test_generated_heads_parse_as_waitress_parses_them(
    method: bytes, uri: bytes, version: bytes, lines: list[tuple[bytes, bytes, bytes, bytes]], body: bytes,
) -> None:
    head = method + b" " + uri + version + b"\r\n"
    head += b"".join(name + sep + value + end for name, sep, value, end in lines)
    assert_same_parse(head + b"\r\n" + body)


# ------------------------------------------------------------------------------------ response head


class _Server:
    def __init__(self, ident: str) -> None:
        self.adj = Adjustments(ident=ident)


class _Channel:
    """What a task uses of its channel to build and send a response: the server's ident, and
    ``write_soon`` (recorded here: what would go out, in the pieces given)."""

    pyfunc_task = None

    def __init__(self, ident: str = "waitress") -> None:
        self.server = _Server(ident)
        self.sent: list[bytes] = []

    def write_soon(self, data: bytes) -> int:
        self.sent.append(bytes(data))
        return len(data)


def built(cls: type, version: str, connection: str, status: str, headers: list[tuple[str, str]],
          content_length: int | None, ident: str, start_time: float) -> tuple[Any, ...]:
    request = HTTPRequestParser(ADJ)
    request.received(f"GET / HTTP/{version}\r\n".encode()
                     + (f"Connection: {connection}\r\n".encode() if connection else b"") + b"\r\n")
    task = cls(_Channel(ident), request)
    task.status, task.response_headers = status, list(headers)
    task.content_length, task.start_time = content_length, start_time
    try:
        head: Any = task.build_response_header()
    except AssertionError as error:
        head = ("AssertionError", str(error))
    return head, task.response_headers, task.close_on_finish, task.chunked_response


def assert_same_head(*args: Any) -> None:
    assert built(_waitress.QuickTask, *args) == built(WSGITask, *args), args


def test_a_usual_response_head_is_the_one_waitress_builds() -> None:
    headers = [("Content-Type", "application/json"), ("ce-id", "1"), ("ce-source", "/s"), ("Content-Length", "2")]
    for version in ("1.0", "1.1"):
        for connection in ("", "close", "keep-alive"):
            assert_same_head(version, connection, "200 OK", headers, 2, "waitress", 1_700_000_000.25)


def test_the_date_is_the_current_second_each_time() -> None:
    first = built(_waitress.QuickTask, "1.1", "", "200 OK", [], 0, "w", 1_700_000_000.9)[0]
    second = built(_waitress.QuickTask, "1.1", "", "200 OK", [], 0, "w", 1_700_000_001.0)[0]
    assert b"Date: Tue, 14 Nov 2023 22:13:20 GMT" in first
    assert b"Date: Tue, 14 Nov 2023 22:13:21 GMT" in second


def sent(cls: type, status: str, content_length: int | None, chunks: list[bytes]) -> tuple[Any, ...]:
    """What a task sends for a response of ``chunks`` (each given to ``write``), and its state after."""
    request = HTTPRequestParser(ADJ)
    request.received(b"GET / HTTP/1.1\r\n\r\n")
    channel = _Channel()
    task = cls(channel, request)
    task.start_time, task.complete, task.status, task.content_length = 1_700_000_000, True, status, content_length
    for chunk in chunks:
        task.write(chunk)
    task.finish()
    state = (task.content_bytes_written, task.wrote_header, task.close_on_finish, task.chunked_response,
             task.logged_write_excess, task.logged_write_no_body)
    return b"".join(channel.sent), state, len(channel.sent)


def test_a_small_response_goes_out_in_one_piece() -> None:
    body = b'{"ok": true}'
    quick = sent(_waitress.QuickTask, "200 OK", len(body), [body])
    waitress = sent(WSGITask, "200 OK", len(body), [body])
    assert quick[:2] == waitress[:2]
    assert (quick[2], waitress[2]) == (1, 2), "the head and the body were not sent in one piece"
    large = b"x" * (_waitress.ONE_SEND_MAX + 1)
    assert sent(_waitress.QuickTask, "200 OK", len(large), [large])[2] == 2  # no copy of a large body


@settings(max_examples=500, deadline=None)
@given(status=st.sampled_from(["200 OK", "204 No Content", "304 Not Modified", "404 Not Found"]),
       content_length=st.one_of(st.none(), st.sampled_from([0, 1, 5, 12, 70_000])),
       chunks=st.lists(st.sampled_from([b"", b"a", b"hello", b"hello world!", b"x" * 70_000]), max_size=3))
def test_generated_responses_send_the_bytes_waitress_sends(
    status: str, content_length: int | None, chunks: list[bytes],
) -> None:
    args = (status, content_length, chunks)
    assert sent(_waitress.QuickTask, *args)[:2] == sent(WSGITask, *args)[:2]


_header_names = st.sampled_from(["Content-Type", "content-length", "CONTENT-LENGTH", "Date", "server", "Server",
                                 "ce-id", "Ce-Id", "x-a-b", "X--Y", "-x", "connection", "Transfer-Encoding", "a"])
_header_values = st.sampled_from(["", "0", "2", "text/plain", "close", "Keep-Alive", "w/1", "Mon, 01 Jan 2001"])


@settings(max_examples=1500, deadline=None)
@given(version=st.sampled_from(["1.0", "1.1", "2.0"]),
       connection=st.sampled_from(["", "close", "keep-alive", "Keep-Alive", "upgrade"]),
       status=st.sampled_from(["200 OK", "204 No Content", "304 Not Modified", "101 Switching Protocols",
                               "404 Not Found", "500 Internal Server Error"]),
       headers=st.lists(st.tuples(_header_names, _header_values), max_size=6),
       content_length=st.one_of(st.none(), st.integers(0, 99)),
       ident=st.sampled_from(["waitress", ""]),
       start_time=st.floats(0, 4e9))
def test_generated_responses_get_the_head_waitress_builds(
    version: str, connection: str, status: str, headers: list[tuple[str, str]], content_length: int | None,
    ident: str, start_time: float,
) -> None:
    assert_same_head(version, connection, status, headers, content_length, ident, start_time)


@pytest.mark.parametrize("handler", ["def handler(body):\n    return body\n",
                                     "async def handler(body):\n    return body\n"], ids=["sync", "async"])
def test_a_server_reads_and_answers_with_the_quick_paths(tmp_path: Path, handler: str) -> None:
    (tmp_path / "handler.py").write_text(handler)
    config = Config(directory=str(tmp_path), port=free_port(), host="127.0.0.1", threads=2)
    server = Server(build_app(config), config)
    try:
        channel_class = server.waitress.channel_class
        assert issubclass(channel_class.parser_class, QuickParser)
        assert issubclass(channel_class.task_class, _waitress.QuickTask)
    finally:
        server.waitress.close()
