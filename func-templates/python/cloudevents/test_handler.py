"""Tests for the function, run in-process through the same code the server uses.

    pytest
"""

from pathlib import Path

import pytest

from pyfunc.testing import FunctionClient

FUNCTION = Path(__file__).parent


@pytest.fixture
def client():
    with FunctionClient(FUNCTION) as client:
        yield client


def test_replies_with_an_event(client):
    reply = client.event(type="com.example.ping", data={"message": "hello"})

    assert reply.status == 200
    assert reply.event["type"] == "com.example.reply"
    assert reply.data == {"received": {"message": "hello"}}


def test_structured_mode_is_answered_in_structured_mode(client):
    reply = client.event(data={"n": 1}, mode="structured")

    assert reply.mode == "structured"
    assert reply.data == {"received": {"n": 1}}


def test_a_batch_gets_one_reply_per_event(client):
    reply = client.batch([{"data": 1}, {"data": 2}])

    assert [event.data for event in reply.events] == [{"received": 1}, {"received": 2}]


def test_a_request_that_is_not_an_event_is_refused(client):
    reply = client.post(json={"message": "hello"})

    assert reply.status == 400
    assert reply.json["reason"] == "not-a-cloudevent"
