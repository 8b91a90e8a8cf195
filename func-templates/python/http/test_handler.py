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


def test_greets_by_name(client):
    reply = client.post(json={"name": "Ada"})

    assert reply.status == 200
    assert reply.json == {"message": "Hello, Ada!"}


def test_a_missing_name_is_a_400(client):
    reply = client.post(json={})

    assert reply.status == 400
    assert "name" in reply.json["error"]


def test_a_body_that_is_not_json_is_a_400(client):
    reply = client.post(body="not json", headers={"Content-Type": "application/json"})

    assert reply.status == 400
