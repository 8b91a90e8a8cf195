"""Strict, spec-exact CloudEvents input, through a real ``python -m pyfunc`` on loopback.

Reserved attribute names, RFC 3339 ``time``, explicit ``"data": null`` and CloudEvents 0.3
``datacontentencoding``: each is checked in every content mode it can arrive in.
"""

from __future__ import annotations

import base64
import json

import pytest
import requests

from support import from_http, make_event, send, to_structured

# "echo" returns the SDK event it was given; anything else reports what the handler saw.
SEEN = """
def handler(event):
    if event["type"] == "echo":
        return event
    data = event.data
    return {"type": "seen", "source": "/seen"}, {
        "type": type(data).__name__,
        "data": data.hex() if isinstance(data, bytes) else data,
        "time": event.get("time"),
        "attributes": sorted(event.get_attributes()),
    }
"""

BINARY = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t"}
STRUCTURED = {"Content-Type": "application/cloudevents+json"}
BATCH = {"Content-Type": "application/cloudevents-batch+json"}


def event(**members):
    return {"specversion": "1.0", "id": "1", "source": "/s", "type": "t", **members}


def post(server, headers, body=b""):
    return requests.post(server.url, headers=headers, data=body, timeout=10)


def post_json(server, headers, obj):
    return post(server, headers, json.dumps(obj).encode())


def assert_problem(response, reason):
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["reason"] == reason and problem["type"] == f"urn:pyfunc:problem:{reason}"
    assert problem["status"] == 400 and problem["detail"]
    return problem


@pytest.fixture(scope="module")
def seen(serve_module):
    return serve_module(SEEN)


# ---------------------------------------------------------------- 1. "data" is no attribute


def test_ce_data_header_is_400_invalid_attribute(seen):
    problem = assert_problem(post(seen, {**BINARY, "ce-data": "x"}), "invalid-attribute")
    assert "'data'" in problem["detail"]


def test_ce_data_base64_header_is_400(seen):
    # WSGI spells ce-data-base64 and ce-data_base64 alike; either way it is no attribute.
    response = post(seen, {**BINARY, "ce-data-base64": "aGk="})
    assert response.status_code == 400
    assert response.json()["reason"] in ("invalid-attribute", "invalid-attribute-name")


def test_structured_data_and_data_base64_stay_the_data(seen):
    body = post_json(seen, STRUCTURED, event(data_base64=base64.b64encode(b"\x00hi").decode())).json()["data"]
    assert body["type"] == "bytes" and body["data"] == "006869"
    assert "data" not in body["attributes"] and "data_base64" not in body["attributes"]


# ---------------------------------------------------------------- 2. time is RFC 3339


BAD_TIMES = ["yesterday", "2024-02-30T00:00:00Z", "2023-02-29T00:00:00Z", "2024-01-01 00:00:00Z",
             "2024-01-01T00:00:00", "2024-01-01T24:00:00Z", "2024-01-01T00:00Z", "2024-13-01T00:00:00Z",
             "2024-01-01T00:00:00+05", "2024-W01-1T00:00:00Z", "20240101T000000Z"]
GOOD_TIMES = ["2018-04-05T17:31:00Z", "1985-04-12T23:20:50.52Z", "1996-12-19T16:39:57-08:00",
              "1990-12-31T23:59:60Z", "1937-01-01T12:00:27.87+00:20", "2024-02-29t00:00:00z",
              "2024-01-01T00:00:00.123456789+05:30", "2024-01-01T00:00:00-00:00"]


@pytest.mark.parametrize("value", BAD_TIMES)
def test_invalid_time_is_400_in_binary_mode(seen, value):
    problem = assert_problem(post(seen, {**BINARY, "ce-time": value}), "invalid-time")
    assert value in problem["detail"]


@pytest.mark.parametrize("value", [*BAD_TIMES, 1700000000, True, ""])
def test_invalid_time_is_400_in_structured_mode(seen, value):
    assert_problem(post_json(seen, STRUCTURED, event(time=value)), "invalid-time")


def test_invalid_time_is_400_in_batch_mode(seen):
    batch = [event(time="2024-01-01T00:00:00Z"), event(id="2", time="yesterday")]
    problem = assert_problem(post_json(seen, BATCH, batch), "invalid-time")
    assert problem["detail"].startswith("batch[1]: ")


@pytest.mark.parametrize("value", GOOD_TIMES)
def test_every_rfc3339_form_reaches_the_handler_unchanged(seen, value):
    binary = post(seen, {**BINARY, "ce-time": value})
    structured = post_json(seen, STRUCTURED, event(time=value))
    batch = post_json(seen, BATCH, [event(time=value)])
    for response in (binary, structured, batch):
        assert response.status_code == 200, response.text
    assert binary.json()["time"] == value  # binary reply: the body is the data
    assert structured.json()["data"]["time"] == value
    assert batch.json()[0]["data"]["time"] == value


def test_sdk_built_time_is_accepted(seen):
    # The SDK writes datetime.isoformat(): "+00:00" and microseconds.
    response = send(seen.url, make_event({"x": 1}), structured=True)
    assert response.status_code == 200 and response.json()["data"]["time"]


# ---------------------------------------------------------------- 3. "data": null is kept


def test_null_data_reaches_the_handler_as_none(seen):
    body = post_json(seen, STRUCTURED, event(data=None)).json()["data"]
    assert body["type"] == "NoneType" and body["data"] is None


def test_null_data_round_trips_in_structured_mode(seen):
    response = post_json(seen, STRUCTURED, event(type="echo", data=None, datacontenttype="application/json"))
    assert response.status_code == 200
    reply = response.json()
    assert "data" in reply and reply["data"] is None and "data_base64" not in reply
    assert from_http(response.headers, response.content).data is None  # the SDK still reads it


def test_absent_data_stays_absent(seen):
    reply = post_json(seen, STRUCTURED, event(type="echo")).json()
    assert "data" not in reply and "data_base64" not in reply


def test_null_data_round_trips_in_batch_mode(seen):
    response = post_json(seen, BATCH, [event(type="echo", data=None), event(id="2", type="echo")])
    assert response.status_code == 200
    first, second = response.json()
    assert "data" in first and first["data"] is None
    assert "data" not in second


def test_binary_json_null_body_round_trips(seen):
    response = post(seen, {**BINARY, "ce-type": "echo", "Content-Type": "application/json"}, b"null")
    assert response.status_code == 200
    assert response.content == b"null" and response.headers["content-type"] == "application/json"


# ---------------------------------------------------------------- 4. CloudEvents 0.3 datacontentencoding


PAYLOAD = b"\x00\xffbinary"
V03 = {**BINARY, "ce-specversion": "0.3"}


def test_v03_binary_base64_body_is_decoded(seen):
    headers = {**V03, "ce-datacontentencoding": "base64", "Content-Type": "application/octet-stream"}
    body = post(seen, headers, base64.b64encode(PAYLOAD)).json()
    assert body["type"] == "bytes" and body["data"] == PAYLOAD.hex()


def test_v03_binary_base64_json_body_is_decoded_then_parsed(seen):
    headers = {**V03, "ce-datacontentencoding": "base64", "Content-Type": "application/json"}
    body = post(seen, headers, base64.b64encode(b'{"a": 1}')).json()
    assert body["type"] == "dict" and body["data"] == {"a": 1}


def test_v03_structured_base64_data_is_decoded(seen):
    obj = event(specversion="0.3", datacontentencoding="base64", data=base64.b64encode(PAYLOAD).decode())
    body = post_json(seen, STRUCTURED, obj).json()["data"]
    assert body["type"] == "bytes" and body["data"] == PAYLOAD.hex()
    assert "datacontentencoding" in body["attributes"]  # the attributes stay exactly as sent


def test_v03_structured_base64_from_the_sdk(seen):
    # The SDK writes 0.3 binary data as data_base64: that is read as bytes as well.
    headers, body = to_structured(make_event(PAYLOAD, specversion="0.3"))
    reply = requests.post(seen.url, headers=headers, data=body, timeout=10).json()["data"]
    assert reply["type"] == "bytes" and reply["data"] == PAYLOAD.hex()


def test_v03_base64_echo_goes_out_base64_encoded(seen):
    obj = event(specversion="0.3", type="echo", datacontentencoding="base64",
                datacontenttype="application/octet-stream", data=base64.b64encode(PAYLOAD).decode())
    reply = post_json(seen, STRUCTURED, obj).json()
    assert reply["datacontentencoding"] == "base64" and base64.b64decode(reply["data"]) == PAYLOAD
    headers = {**V03, "ce-type": "echo", "ce-datacontentencoding": "base64", "Content-Type": "application/octet-stream"}
    response = post(seen, headers, base64.b64encode(PAYLOAD))
    assert response.headers["ce-datacontentencoding"] == "base64"
    assert base64.b64decode(response.content) == PAYLOAD


@pytest.mark.parametrize("mode", ["binary", "structured"])
@pytest.mark.parametrize("bad", ["not base64!", "aGk", "aGk=\x00"])
def test_v03_invalid_base64_is_400(seen, mode, bad):
    if mode == "binary":
        response = post(seen, {**V03, "ce-datacontentencoding": "base64", "Content-Type": "text/plain"}, bad.encode())
    else:
        response = post_json(seen, STRUCTURED, event(specversion="0.3", datacontentencoding="base64", data=bad))
    problem = assert_problem(response, "invalid-data-encoding")
    assert "base64" in problem["detail"]


def test_v03_unknown_content_encoding_is_400(seen):
    obj = event(specversion="0.3", datacontentencoding="quoted-printable", data="x")
    assert_problem(post_json(seen, STRUCTURED, obj), "unsupported-data-encoding")


def test_v03_base64_data_that_is_not_a_string_is_400(seen):
    obj = event(specversion="0.3", datacontentencoding="base64", data={"a": 1})
    assert_problem(post_json(seen, STRUCTURED, obj), "invalid-data-encoding")


def test_v1_datacontentencoding_is_just_an_extension(seen):
    # 1.0 removed datacontentencoding: there it is an extension attribute with no meaning.
    body = post_json(seen, STRUCTURED, event(datacontentencoding="base64", data="aGk=")).json()["data"]
    assert body["type"] == "str" and body["data"] == "aGk="


def test_server_keeps_serving_after_strict_rejections(seen):
    for headers in ({**BINARY, "ce-data": "x"}, {**BINARY, "ce-time": "yesterday"},
                    {**V03, "ce-datacontentencoding": "base64", "Content-Type": "text/plain"}):
        assert post(seen, headers, b"%%%").status_code == 400
    assert post(seen, BINARY).status_code == 200
