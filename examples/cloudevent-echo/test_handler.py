"""The echo replies to every CloudEvent with a com.example.reply event carrying the same data."""

from pathlib import Path

import pytest

from pyfunc.testing import FunctionClient


@pytest.fixture
def client():
    with FunctionClient(Path(__file__).parent) as client:
        yield client


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_the_data_comes_back_in_a_reply_event(client, mode):
    reply = client.event(type="com.example.ping", data={"message": "hi"}, mode=mode)

    assert reply.status == 200
    assert reply.event["type"] == "com.example.reply"
    assert reply.event["source"] == "/echo"
    assert reply.data == {"message": "hi"}


def test_a_request_that_is_not_a_cloudevent_is_a_400(client):
    reply = client.post("/", body=b"hello")

    assert reply.status == 400
    assert reply.json["reason"] == "not-a-cloudevent"
