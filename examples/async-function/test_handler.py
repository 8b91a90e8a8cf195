"""The async example, called in-process through the server's own code path."""

from pathlib import Path

import pytest

from pyfunc.testing import FunctionClient


@pytest.fixture
def client():
    with FunctionClient(Path(__file__).parent) as client:
        yield client


def test_prices_an_order(client):
    reply = client.event(type="com.example.order", subject="order-7", data={"items": ["apple", "bread"]})

    assert reply.status == 200
    assert reply.event["type"] == "com.example.order.priced"
    assert reply.event["subject"] == "order-7"
    assert reply.data == {"items": {"apple": 0.5, "bread": 2.25}, "total": 2.75}


def test_rejects_an_unknown_item(client):
    reply = client.event(data={"items": ["apple", "caviar"]})

    assert reply.event["type"] == "com.example.order.rejected"
    assert reply.data == {"unknown_item": "caviar"}


def test_a_batch_is_priced_event_by_event(client):
    reply = client.batch([{"data": {"items": ["apple"]}}, {"data": {"items": ["cheese", "cheese"]}}])

    assert reply.status == 200
    assert [event.data["total"] for event in reply.events] == [0.5, 8.0]
