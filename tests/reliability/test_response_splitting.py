"""Response splitting: hostile attribute values a handler returns never break the HTTP framing.

Policy (binding §3.1.3.2): in binary mode every ``ce-`` attribute and extension value is
percent-encoded (space, ``"``, ``%``, CR, LF, NUL, every byte outside U+0021..U+007E, as UTF-8), so
any string goes out intact and comes back with one round of percent-decoding. (Binary is forced
here with PYFUNC_REPLY_MODE=binary; under auto such a reply goes out structured instead, see
test_auto_replies_with_encodable_values_go_structured.) What cannot be
encoded is rejected with a 500 ``invalid-reply``: an attribute *name* that is not lower-case
letters and digits, a ``datacontenttype`` (sent as the plain Content-Type header) with a byte
outside printable ASCII, and an HTTP handler's header with CR, LF or NUL. In structured and
batch mode the values are JSON strings, escaped by the JSON encoder.

Every response is read from a raw socket and parsed strictly (rawhttp): a split or malformed
response fails the test even where a client library would have papered over it.
"""

from __future__ import annotations

import json
from typing import Callable
from urllib.parse import unquote_to_bytes

import pytest
import rawhttp
from reliability_support import assert_no_traceback, assert_serving

VALUES = {
    "crlf": "a\r\nSet-Cookie: evil=1",
    "lf": "a\nX-Injected: 1",
    "cr": "a\rb",
    "nul": "a\x00b",
    "split": "\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    "controls": "".join(chr(i) for i in range(32)) + "\x7f",
    "non-ascii": "café ☕ \U0001f600 \u2028",
    "latin1": "\x80\xff\xa0",
    "surrogate-free-long": "é" * 50_000,
    "long": "x" * 200_000,
    "percent-quote": '100% "quoted" %41 value',
}

HANDLER = """
import json
VALUES = json.loads(VALUES_JSON)

def handler(event):
    case, where = event.data["case"], event.data["where"]
    value = VALUES[case]
    attributes = {"type": "rel.reply", "source": "/rel"}
    if where == "subject":
        attributes["subject"] = value
    elif where == "extension":
        attributes["relext"] = value
    elif where == "type":
        attributes["type"] = value
    elif where == "source":
        attributes["source"] = value
    elif where == "datacontenttype":
        attributes["datacontenttype"] = value
        return attributes, "text body"
    elif where == "extension-name":
        attributes["rel" + value] = "v"
    return attributes, {"ok": True}
""".replace("VALUES_JSON", repr(json.dumps(VALUES)))

HTTP_HANDLER = """
def handler(request, body):
    import json
    spec = json.loads(body)
    return "ok", 200, {spec["name"]: spec["value"]}
"""

WHERE = {"subject": "ce-subject", "extension": "ce-relext", "type": "ce-type", "source": "ce-source"}


@pytest.fixture(scope="module")
def server(serve_module: Callable[..., object]) -> object:
    return serve_module(HANDLER, env={"PYFUNC_REPLY_MODE": "binary"})


@pytest.fixture(scope="module")
def auto_server(serve_module: Callable[..., object]) -> object:
    return serve_module(HANDLER)


def _binary(case: str, where: str) -> bytes:
    return rawhttp.request_bytes("POST", "/", {
        "ce-specversion": "1.0", "ce-id": "s-1", "ce-source": "/rel", "ce-type": "rel.test",
        "Content-Type": "application/json"}, json.dumps({"case": case, "where": where}).encode())


def _structured(case: str, where: str, batch: bool = False) -> bytes:
    event = {"specversion": "1.0", "id": "s-1", "source": "/rel", "type": "rel.test",
             "data": {"case": case, "where": where}}
    body = json.dumps([event] if batch else event).encode()
    content_type = "application/cloudevents-batch+json" if batch else "application/cloudevents+json"
    return rawhttp.request_bytes("POST", "/", {"Content-Type": content_type}, body)


def _one(port: int, request: bytes) -> rawhttp.RawResponse:
    """Exactly one strictly well-formed response on the connection: no split, nothing after it."""
    responses = rawhttp.exchange(port, request)
    assert len(responses) == 1, [r.head for r in responses]
    response = responses[0]
    assert not response.all("Set-Cookie") and not response.all("X-Injected")
    assert_no_traceback(response.body)
    return response


@pytest.mark.parametrize("case", sorted(VALUES))
@pytest.mark.parametrize("where", sorted(WHERE))
def test_binary_values_are_percent_encoded(server, case: str, where: str) -> None:
    response = _one(server.port, _binary(case, where))
    assert response.status == 200, response.body[:300]
    raw = response.all(WHERE[where])
    assert len(raw) == 1 and raw[0].isascii()
    assert unquote_to_bytes(raw[0]).decode("utf-8") == VALUES[case]
    assert response.json() == {"ok": True}


@pytest.mark.parametrize("case", sorted(VALUES))
@pytest.mark.parametrize("where", sorted(WHERE))
def test_auto_replies_with_encodable_values_go_structured(auto_server, case: str, where: str) -> None:
    """Non-decoding consumers (sdk-go, sdk-javascript) read a structured reply's values exactly."""
    response = _one(auto_server.port, _binary(case, where))
    assert response.status == 200, response.body[:300]
    if all("!" <= c <= "~" and c not in '"%' for c in VALUES[case]):  # e.g. "long": nothing to encode
        assert response.all(WHERE[where]) == [VALUES[case]]
        return
    assert response.header("Content-Type").startswith("application/cloudevents+json")
    assert not response.all(WHERE[where])
    event = response.json()
    assert event[WHERE[where][3:]] == VALUES[case]
    assert event["data"] == {"ok": True}


def test_auto_replies_with_plain_values_stay_binary(auto_server) -> None:
    response = _one(auto_server.port, _binary("crlf", "none"))
    assert response.status == 200 and response.header("ce-type") == "rel.reply"
    assert response.json() == {"ok": True}


@pytest.mark.parametrize("case", sorted(VALUES))
@pytest.mark.parametrize("batch", [False, True], ids=["structured", "batch"])
def test_structured_values_are_json_escaped(auto_server, case: str, batch: bool) -> None:
    response = _one(auto_server.port, _structured(case, "extension", batch))
    assert response.status == 200, response.body[:300]
    event = response.json()[0] if batch else response.json()
    assert event["relext"] == VALUES[case]


@pytest.mark.parametrize("case", sorted(VALUES))
def test_datacontenttype_is_printable_or_rejected(server, case: str) -> None:
    """datacontenttype becomes the plain Content-Type header: printable ASCII goes out, anything else is a 500."""
    response = _one(server.port, _binary(case, "datacontenttype"))
    value = VALUES[case]
    if all(" " <= c <= "~" for c in value):
        assert response.status == 200
        assert response.header("Content-Type") == value.strip()
    else:
        assert response.status == 500
        assert response.json()["reason"] == "invalid-reply"


@pytest.mark.parametrize("case", ["crlf", "lf", "nul", "split", "non-ascii"])
def test_bad_extension_names_are_rejected(server, case: str) -> None:
    response = _one(server.port, _binary(case, "extension-name"))
    assert response.status == 500
    assert response.json()["reason"] == "invalid-reply"
    assert _one(server.port, _binary("crlf", "subject")).status == 200  # still serving


@pytest.mark.parametrize("name,value", [
    ("X-Ok", "a\r\nSet-Cookie: evil=1"),
    ("X-Ok", "a\nX-Injected: 1"),
    ("X-Ok", "a\x00b"),
    ("X-Bad\r\nSet-Cookie", "evil"),
    ("X-Bad:Name", "v"),
    ("X Bad", "v"),
    ("X-Ok", "caf\u00e9"),
    ("X-Ok", "\u2603 snowman"),
    ("X-Ok", "x" * 100_000),
])
def test_http_handler_headers(serve_module: Callable[..., object], name: str, value: str) -> None:
    """An HTTP handler's own headers: sent intact if they are a valid field, else a 500 with a JSON body.

    Regression: a name with a space went out as is (a malformed field) and a value with a character
    above U+00FF made waitress fail with a text/plain 500; both are now a JSON invalid-reply 500.
    """
    server = _http_server(serve_module)
    request = rawhttp.request_bytes("POST", "/", {"Content-Type": "application/json"},
                                    json.dumps({"name": name, "value": value}).encode())
    responses = rawhttp.exchange(server.port, request)
    assert len(responses) == 1
    response = responses[0]
    assert not response.all("Set-Cookie") and not response.all("X-Injected")
    assert_no_traceback(response.body)
    if response.status == 200:
        assert response.header(name) == value
    else:
        assert response.status == 500, (response.status, response.body[:300])
        assert response.header("Content-Type") in ("application/problem+json", "application/json")
        assert response.json()["reason"] == "invalid-reply"
    assert_serving(_echo_port(serve_module))


_servers: dict[str, object] = {}


def _http_server(serve_module: Callable[..., object]) -> object:
    if "http" not in _servers:
        _servers["http"] = serve_module(HTTP_HANDLER)
    return _servers["http"]


def _echo_port(serve_module: Callable[..., object]) -> int:
    if "echo" not in _servers:
        from reliability_support import ECHO

        _servers["echo"] = serve_module(ECHO)
    return _servers["echo"].port
