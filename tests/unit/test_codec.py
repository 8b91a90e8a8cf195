"""The CloudEvents HTTP codec as pure functions (the spec's own examples and edge cases)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyfunc import _codec as codec
from pyfunc._errors import BadEvent, InvalidReply


def test_spec_example_percent_encoding():
    # binding §3.1.3.2 example
    assert codec.encode_header_value("Euro € 😀") == "Euro%20%E2%82%AC%20%F0%9F%98%80"
    assert codec.decode_header_value("Euro%20%E2%82%AC%20%F0%9F%98%80") == "Euro € 😀"


def test_decoding_accepts_lower_case_and_unnecessary_encoding():
    assert codec.decode_header_value("%41%62c%e2%82%ac") == "Abc€"


def test_decoding_rejects_invalid_utf8():
    with pytest.raises(BadEvent) as info:
        codec.decode_header_value("%C0%A0")
    assert info.value.reason == "invalid-header-encoding"


def test_quoted_string_is_unescaped_before_percent_decoding():
    assert codec.decode_header_value('"a \\"quoted\\" %20value"') == 'a "quoted"  value'


@given(st.text())
def test_header_values_round_trip(value):
    encoded = codec.encode_header_value(value)
    assert all(0x21 <= ord(c) <= 0x7E and c not in '"%' or c == "%" for c in encoded)
    assert "\r" not in encoded and "\n" not in encoded and " " not in encoded
    assert codec.decode_header_value(encoded) == value


@pytest.mark.parametrize(
    ("content_type", "mode"),
    [
        ("application/cloudevents+json", codec.STRUCTURED),
        ("Application/CloudEvents+JSON; charset=UTF-8", codec.STRUCTURED),
        ("application/cloudevents-batch+json", codec.BATCH),
        ("application/json", codec.BINARY),
        (None, codec.BINARY),
    ],
)
def test_content_mode_by_prefix(content_type, mode):
    assert codec.content_mode(content_type) == mode


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b'{"a":1}', "application/json", {"a": 1}),
        (b'{"a":1}', "application/vnd.foo+json", {"a": 1}),
        (b'"s"', None, "s"),
        (b"not json", None, b"not json"),  # no type: JSON guessed, bytes kept
        (b"caf\xc3\xa9", "text/plain", "café"),
        (b"caf\xe9", "text/plain; charset=latin-1", "café"),
        (b"\x00\x01", "application/octet-stream", b"\x00\x01"),
        (b"", "application/json", None),
    ],
)
def test_decode_data(body, content_type, expected):
    assert codec.decode_data(body, content_type, guess=content_type is None) == expected


def test_decode_data_rejects_declared_json_that_is_not():
    with pytest.raises(BadEvent):
        codec.decode_data(b"{", "application/json")


def test_structured_optional_null_attributes_are_absent():
    event = codec.event_from_json({"specversion": "1.0", "id": "1", "source": "/", "type": "t", "subject": None})
    assert "subject" not in event.attributes


def test_data_and_data_base64_are_exclusive():
    with pytest.raises(BadEvent):
        codec.event_from_json({"specversion": "1.0", "id": "1", "source": "/", "type": "t", "data": 1,
                               "data_base64": "AA=="})


def test_batch_requires_one_specversion():
    body = (b'[{"specversion":"1.0","id":"1","source":"/","type":"t"},'
            b'{"specversion":"0.3","id":"2","source":"/","type":"t"}]')
    with pytest.raises(BadEvent) as info:
        codec.decode_batch(body)
    assert info.value.reason == "invalid-batch"


def test_complete_reply_fills_and_protects_uniqueness():
    incoming = codec.Event({"id": "1", "source": "/in", "specversion": "1.0", "type": "t"})
    reply = codec.complete_reply({"type": "r", "source": "/in", "id": "1"}, incoming, "/default")
    assert reply["id"] != "1" and reply["specversion"] == "1.0" and reply["time"].endswith("Z")
    reply = codec.complete_reply({"type": "r"}, incoming, "/default")
    assert reply["source"] == "/default"
    kept = codec.complete_reply({"type": "r", "id": "mine", "time": "2020-01-01T00:00:00Z"}, incoming, "/d")
    assert kept["id"] == "mine" and kept["time"] == "2020-01-01T00:00:00Z"


@pytest.mark.parametrize(
    "attributes", [{"source": "/s"}, {"type": "t", "Bad-Name": 1}, {"type": "t", "specversion": "9"}]
)
def test_complete_reply_rejects_invalid(attributes):
    with pytest.raises(InvalidReply):
        codec.complete_reply(attributes, None, "/d")


def test_encode_binary_never_sends_ce_datacontenttype():
    headers, body = codec.encode_binary({"type": "t", "datacontenttype": "text/plain", "n": 5, "b": True}, "hi")
    names = dict(headers)
    assert "ce-datacontenttype" not in names and names["Content-Type"] == "text/plain"
    assert names["ce-n"] == "5" and names["ce-b"] == "true" and body == b"hi"


def test_encode_binary_json_default_content_type():
    headers, body = codec.encode_binary({"type": "t"}, {"a": [1]})
    assert dict(headers)["Content-Type"] == "application/json" and body == b'{"a":[1]}'


def test_encode_rejects_unencodable_data():
    with pytest.raises(InvalidReply):
        codec.encode_structured({"type": "t"}, {1, 2})


def test_reply_ids_are_distinct_version_4_uuids() -> None:
    import uuid

    ids = [codec.new_event_id() for _ in range(20000)]
    assert len(set(ids)) == len(ids)
    for text in ids[:500]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_reply_time_is_rfc3339_utc_and_current() -> None:
    import datetime
    import re
    import time

    before = datetime.datetime.now(datetime.timezone.utc)
    stamps = [codec.now_rfc3339() for _ in range(3)]
    time.sleep(1.1)  # across a second boundary: the cached date part must move on
    stamps.append(codec.now_rfc3339())
    after = datetime.datetime.now(datetime.timezone.utc)
    for stamp in stamps:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp), stamp
        parsed = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        assert before - datetime.timedelta(milliseconds=1) <= parsed <= after
    assert stamps[-1] > stamps[0]


def test_reply_attribute_named_data_is_an_invalid_reply():
    with pytest.raises(InvalidReply):
        codec.complete_reply({"type": "t", "data": "x"}, None, "/s")


@pytest.mark.parametrize("value", ["2024-02-29T12:00:00Z", "1990-12-31T23:59:60Z", "2024-01-01t00:00:00.5z",
                                   "1996-12-19T16:39:57-08:00", "2024-01-01T00:00:00-00:00"])
def test_rfc3339_accepts(value):
    assert codec._is_rfc3339(value)


@pytest.mark.parametrize("value", ["yesterday", "2023-02-29T12:00:00Z", "1900-02-29T00:00:00Z", "2024-04-31T00:00:00Z",
                                   "2024-01-01T00:00:00Z\n", "2024-01-01T00:00:00+24:00", "２024-01-01T00:00:00Z",
                                   "2024-01-01T00:00:00.Z", 5, None])
def test_rfc3339_rejects(value):
    assert not codec._is_rfc3339(value)


def test_structured_null_data_is_kept_apart_from_no_data():
    null = codec.event_from_json({"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "data": None})
    absent = codec.event_from_json({"specversion": "1.0", "id": "1", "source": "/s", "type": "t"})
    assert null.data is None and null.null_data and not absent.null_data
    assert codec.event_to_json(null.attributes, codec.JSON_NULL)["data"] is None
    assert "data" not in codec.event_to_json(absent.attributes, None)
