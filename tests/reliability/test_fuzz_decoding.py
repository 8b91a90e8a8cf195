"""Property fuzzing of CloudEvents HTTP decoding through a real server, in all three content modes.

Property: for any request head and body (within the HTTP framing, which test_hostile_http covers),
the answer is a strictly well-formed 2xx or 4xx, never a 5xx, never a hang (30 s client timeout),
never a traceback in the body. The handler echoes the data back, so the encoder is exercised
on whatever the decoder produced too.

Requests go over one keep-alive raw socket (reopened when the server closes it) so 450 examples
run in seconds. ``derandomize=True`` makes CI runs reproducible; the long form
(``PYFUNC_RELIABILITY_LONG=1``) tries 5,000 per mode. The counts land in results/fuzz*.json.
"""

from __future__ import annotations

import json
import socket
from typing import Any, Callable, Optional

import pytest
import rawhttp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_support import ECHO, LONG, assert_no_traceback, record

EXAMPLES = 5_000 if LONG else 150
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))
TRIED: dict[str, int] = {}
STATUSES: dict[str, dict[int, int]] = {}

# Header text: anything a header line can carry (no CR/LF, which would be framing, not decoding).
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
                      max_size=40)
percentish = st.lists(st.sampled_from(["%", "%2", "%25", "%41", "%C3%A9", "%FF", "%E2%82", "\\", '"', "é", "a"]),
                      max_size=8).map("".join)
header_value = st.one_of(header_text, percentish, st.sampled_from(["", "1.0", "0.3", "2.0", '"1.0"', " 1.0 "]))
attribute_names = st.one_of(
    st.sampled_from(["specversion", "id", "source", "type", "subject", "time", "dataschema", "datacontenttype",
                     "traceparent", "data", "data_base64"]),
    st.text("abcdefghijklmnopqrstuvwxyz0123456789_-.ABC", min_size=1, max_size=12),
)
content_types = st.one_of(
    st.sampled_from(["", "application/json", "text/plain", "text/plain; charset=latin-1", "text/plain; charset=nope",
                     "text/plain; charset=utf-16", "application/octet-stream", "application/xml",
                     "application/cloudevents+json", "application/cloudevents+xml",
                     "application/cloudevents-batch+json", "application/cloudevents; charset=utf-8",
                     "APPLICATION/CloudEvents+JSON; charset=UTF-8", "application/x-www-form-urlencoded",
                     "application/vnd.foo+json", "multipart/form-data; boundary=x"]),
    header_text,
)
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                         st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)
VALID = {"specversion": "1.0", "id": "fz-1", "source": "/fuzz", "type": "fuzz.event"}
# Required attributes: valid most of the time (so the success path is fuzzed too), else anything.
required = {"specversion": st.sampled_from(["1.0", "1.0", "1.0", "0.3", "1.1", ""]) | json_scalars,
            "id": st.text(min_size=1, max_size=10) | json_scalars, "source": st.text(min_size=1, max_size=10),
            "type": st.text(min_size=1, max_size=10) | json_scalars}


def mostly_valid(name: str) -> st.SearchStrategy[Any]:
    """The valid value three times in four, a fuzzed one otherwise."""
    return st.integers(0, 3).flatmap(lambda n: required[name] if n == 0 else st.just(VALID[name]))


@st.composite
def event_objects(draw: Callable[..., Any]) -> Any:
    """Mostly almost-valid JSON events (the interesting region), sometimes anything at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    event = {name: draw(mostly_valid(name)) for name in required if draw(st.integers(0, 15))}
    for name in draw(st.lists(attribute_names, max_size=4)):
        event[name] = draw(json_values)
    if draw(st.booleans()):
        event["data"] = draw(json_values)
    if draw(st.integers(0, 4)) == 0:
        event["data_base64"] = draw(st.one_of(st.text(max_size=12), st.binary(max_size=12).map(
            lambda b: __import__("base64").b64encode(b).decode())))
    return event


bodies = st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode()),
                   st.text(max_size=100).map(lambda t: t.encode("utf-8")))


class Client:
    """One keep-alive connection, reopened when the server closes it; every answer parsed strictly."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: Optional[socket.socket] = None

    def send(self, head: dict[str, str], body: bytes) -> rawhttp.RawResponse:
        lines = "".join(f"{k}: {v}\r\n" for k, v in head.items())
        data = (f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n{lines}\r\n"
                .encode() + body)
        for attempt in (1, 2):
            if self.sock is None:
                self.sock = rawhttp.connect(self.port)
            try:
                self.sock.sendall(data)
                response = rawhttp.read_response(self.sock, timeout=30)
            except (ConnectionError, rawhttp.IncompleteError, BrokenPipeError):
                self.close()  # the server closed an idle keep-alive between requests: retry once
                if attempt == 2:
                    raise
                continue
            if (response.header("Connection") or "").lower() == "close":
                self.close()
            return response
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


@pytest.fixture(scope="module")
def client(serve_module: Callable[..., object], request: pytest.FixtureRequest) -> Client:
    server = serve_module(ECHO)
    client = Client(server.port)
    failed_before = request.session.testsfailed
    yield client
    client.close()
    if request.session.testsfailed != failed_before:
        return  # a results file is a passing run's: a failed fuzz test records nothing
    record("fuzz", {"examples_per_mode": TRIED, "total_examples": sum(TRIED.values()), "statuses": STATUSES,
                    "server_log_5xx": _access_5xx(server.logs())})


def _access_5xx(log: str) -> int:
    """How many access-log lines (``... pyfunc.access: POST / 400 0.3ms``) carry a 5xx status."""
    fields = (line.split() for line in log.splitlines() if "pyfunc.access:" in line)
    return sum(1 for f in fields if len(f) > 6 and f[6].startswith("5"))


def _check(mode: str, response: rawhttp.RawResponse) -> None:
    TRIED[mode] = TRIED.get(mode, 0) + 1
    STATUSES.setdefault(mode, {})
    STATUSES[mode][response.status] = STATUSES[mode].get(response.status, 0) + 1
    assert 200 <= response.status < 300 or 400 <= response.status < 500, (response.status, response.body[:500])
    assert_no_traceback(response.body)


@SETTINGS
@given(headers=st.dictionaries(attribute_names.map(lambda n: "ce-" + n), header_value, max_size=8),
       content_type=content_types, body=bodies,
       base=st.fixed_dictionaries({name: mostly_valid(name) for name in required}),
       drop=st.lists(st.sampled_from(sorted(required)), max_size=2))
def test_binary_mode(client: Client, headers: dict[str, str], content_type: str, body: bytes,
                     base: dict[str, Any], drop: list[str]) -> None:
    head = {"ce-" + name: str(value) for name, value in base.items() if name not in drop and value is not None}
    head.update(headers)
    if content_type:
        head["Content-Type"] = content_type
    _check("binary", client.send(head, body))


@SETTINGS
@given(event=event_objects(), raw=st.one_of(st.none(), bodies),
       content_type=st.sampled_from(["application/cloudevents+json", "application/cloudevents+json; charset=utf-8",
                                     "application/cloudevents+xml", "application/cloudevents"]),
       extra=st.dictionaries(attribute_names.map(lambda n: "ce-" + n), header_value, max_size=3))
def test_structured_mode(client: Client, event: Any, raw: Optional[bytes], content_type: str,
                         extra: dict[str, str]) -> None:
    body = raw if raw is not None else json.dumps(event).encode()
    _check("structured", client.send({"Content-Type": content_type, **extra}, body))


@SETTINGS
@given(events=st.one_of(st.lists(event_objects(), max_size=4), json_values), raw=st.one_of(st.none(), bodies))
def test_batch_mode(client: Client, events: Any, raw: Optional[bytes]) -> None:
    body = raw if raw is not None else json.dumps(events).encode()
    _check("batch", client.send({"Content-Type": "application/cloudevents-batch+json"}, body))


@pytest.mark.parametrize("value", [[None], {"a": 1}, 1.5, [], {}])
@pytest.mark.parametrize("name", ["traceparent", "subject", "relext"])
def test_structured_attribute_of_a_non_cloudevents_type_is_a_400(client: Client, name: str, value: Any) -> None:
    """Regression (found by the long fuzz run): ``"traceparent": [null]`` was a 500 AttributeError."""
    event = {"specversion": "1.0", "id": "fz-1", "source": "/fuzz", "type": "fuzz.event", name: value}
    response = client.send({"Content-Type": "application/cloudevents+json"}, json.dumps(event).encode())
    assert response.status == 400, response.body[:300]
    assert response.json()["reason"] == "invalid-attribute"
