"""The typed-data example: good data becomes a dataclass, bad data a 400 naming the field."""

from pathlib import Path

import pytest

from pyfunc.testing import FunctionClient


@pytest.fixture
def client():
    with FunctionClient(Path(__file__).parent) as client:
        yield client


ORDER = {
    "order_id": "A-17",
    "lines": [{"sku": "pen", "quantity": 3, "unit_price": 1.5}, {"sku": "pad", "quantity": 1, "unit_price": 4.0}],
}


def test_an_order_becomes_an_invoice(client):
    reply = client.event(type="com.example.order", data=ORDER)

    assert reply.status == 200
    assert reply.event["type"] == "com.example.invoice"
    assert reply.event["subject"] == "A-17"
    assert reply.data == {"order_id": "A-17", "total": 8.5, "discounts": []}


def test_a_coupon_is_applied(client):
    reply = client.event(data={**ORDER, "coupon": "TENOFF"}, mode="structured")

    assert reply.data["total"] == 7.65
    assert reply.data["discounts"] == ["TENOFF: 10%"]


def test_a_wrong_type_is_a_400_naming_the_field(client):
    bad = {**ORDER, "lines": [{"sku": "pen", "quantity": "three", "unit_price": 1.5}]}

    reply = client.event(data=bad)

    assert reply.status == 400
    assert reply.json["reason"] == "invalid-data"
    assert "quantity" in reply.json["detail"]


def test_a_missing_field_is_a_400(client):
    reply = client.event(data={"lines": []})

    assert reply.status == 400
    assert "order_id" in reply.json["detail"]
