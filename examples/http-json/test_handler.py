"""The HTTP function greets by name, JSON in and JSON out."""

from pathlib import Path

import pytest

from pyfunc.testing import FunctionClient


@pytest.fixture
def client():
    with FunctionClient(Path(__file__).parent) as client:
        yield client


def test_it_greets_the_name_it_is_sent(client):
    reply = client.post("/", json={"name": "Ada"})

    assert reply.status == 200
    assert reply.json == {"hello": "Ada", "method": "POST"}


def test_without_a_body_it_greets_the_world(client):
    assert client.get("/").json == {"hello": "world", "method": "GET"}
