"""The lifecycle example: start(cfg) runs when the client opens, stop() when it closes."""

from pathlib import Path

import pytest

from pyfunc.testing import FunctionClient

FUNCTION = Path(__file__).parent


@pytest.fixture
def client():
    with FunctionClient(FUNCTION, env={"GREETING": "Bonjour"}) as client:
        yield client


def test_start_read_the_configuration(client):
    reply = client.post(json={"name": "Ada"})

    assert reply.status == 200
    assert reply.json == {"message": "Bonjour, Ada!", "served": 1}


def test_readiness_comes_from_the_ready_hook(client):
    client.post(json={})

    reply = client.get("/health/readiness")

    assert reply.status == 200
    assert reply.json == {"status": "ok", "message": "served 1 requests"}


def test_liveness_comes_from_the_alive_hook(client):
    assert client.get("/health/liveness").status == 200


def test_stop_runs_when_the_client_closes():
    client = FunctionClient(FUNCTION)
    state = client.app.loaded.module.state
    assert state["ready"] is True

    client.close()

    assert state["ready"] is False
