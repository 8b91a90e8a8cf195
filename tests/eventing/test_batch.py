"""Batches (application/cloudevents-batch+json): each event on its own; a redelivered batch with dedup on
runs only the events that did not complete (docs/delivery.md, "Batches")."""

from __future__ import annotations

import signal

import pytest
import requests

from support import start_server, write_function

HANDLER = """
import os
import pyfunc

CALLS = os.environ["CALLS"]

def handler(event):
    with open(CALLS, "a") as f:
        f.write(event["id"] + "\\n")
    data = event.data or {}
    if data.get("fail") and not os.path.exists(CALLS + ".fixed"):
        raise RuntimeError("the third event fails until the fix")
    if data.get("drop"):
        raise pyfunc.Drop("bad event")
    if data.get("silent"):
        return None
    return {"type": "reply", "source": "/t"}, {"echo": event["id"]}
"""
# The same handler as async def: it runs on the event loop with no worker waiting (deferred),
# a path of its own through the app.
ASYNC_HANDLER = HANDLER.replace("def handler(event):", "async def handler(event):")
BATCH = "application/cloudevents-batch+json"


def batch(*items):
    return [{"specversion": "1.0", "id": f"e{i}", "source": "/batch", "type": "t", "data": data}
            for i, data in enumerate(items, 1)]


def post(url, events):
    return requests.post(url, json=events, headers={"Content-Type": BATCH}, timeout=20)


@pytest.fixture(params=["memory-sync", "redis-sync", "memory-async", "redis-async"])
def server(request, tmp_path):
    store, kind = request.param.split("-")
    env = {"CALLS": str(tmp_path / "calls"), "PYFUNC_DEDUPE": "memory"}
    if store == "redis":
        env["PYFUNC_DEDUPE"] = request.getfixturevalue("redis_server").url
    source = HANDLER if kind == "sync" else ASYNC_HANDLER
    running = start_server(write_function(tmp_path / "fn", source), env)
    yield running
    running.stop(signal.SIGKILL)


def test_a_redelivered_batch_runs_only_what_did_not_complete(server, tmp_path):
    events = batch({}, {"silent": True}, {"fail": True}, {}, {})
    first = post(server.url, events)
    # Event 3 failed: the batch is answered 500 (retriable: Knative redelivers it), no replies,
    # and each event's status is listed; the others ran and are done.
    assert first.status_code == 500
    body = first.json()
    assert body["reason"] == "batch-incomplete"
    assert [(e["id"], e["status"]) for e in body["events"]] == [
        ("e1", 200), ("e2", 202), ("e3", 500), ("e4", 200), ("e5", 200)]
    assert (tmp_path / "calls").read_text().split() == ["e1", "e2", "e3", "e4", "e5"]

    (tmp_path / "calls.fixed").touch()
    second = post(server.url, events)
    assert second.status_code == 200
    assert second.headers["Content-Type"].startswith(BATCH)
    # Every reply, in order, e2 (no reply) left out: e1, e4, e5 replayed from the store.
    assert [reply["data"]["echo"] for reply in second.json()] == ["e1", "e3", "e4", "e5"]
    assert (tmp_path / "calls").read_text().split() == ["e1", "e2", "e3", "e4", "e5", "e3"]

    third = post(server.url, events)  # the whole batch is done: the same replies, nothing runs
    assert third.status_code == 200 and third.json() == second.json()
    assert len((tmp_path / "calls").read_text().split()) == 6


def test_only_drops_make_the_batch_422(server, tmp_path):
    events = batch({}, {"drop": True})
    response = post(server.url, events)
    assert response.status_code == 422  # not retried: the broker dead-letters the batch
    assert response.json()["reason"] == "batch-dropped"
    assert post(server.url, events).status_code == 422
    # e1 succeeded the first time and is not run again; the dropped e2 is never marked done.
    assert (tmp_path / "calls").read_text().split() == ["e1", "e2", "e2"]


@pytest.mark.parametrize("source", [HANDLER, ASYNC_HANDLER], ids=["sync", "async"])
def test_without_dedup_every_event_still_runs_on_its_own(serve, tmp_path, source):
    running = serve(source, env={"CALLS": str(tmp_path / "calls")})
    response = post(running.url, batch({}, {"fail": True}, {}))
    assert response.status_code == 500
    assert [e["status"] for e in response.json()["events"]] == [200, 500, 200]
    assert (tmp_path / "calls").read_text().split() == ["e1", "e2", "e3"]
    (tmp_path / "calls.fixed").touch()
    assert post(running.url, batch({}, {"fail": True}, {})).status_code == 200  # at least once: all run again
    assert len((tmp_path / "calls").read_text().split()) == 6


UNENCODABLE = """
def handler(event):
    if (event.data or {}).get("odd"):
        return {"type": "reply", "source": "/t"}, {"value": object()}  # no JSON form
    if (event.data or {}).get("silent"):
        return None
    return {"type": "reply", "source": "/t", "n": event["id"]}, {"echo": event["id"]}
"""


@pytest.mark.parametrize("source", [UNENCODABLE, UNENCODABLE.replace("def handler", "async def handler")],
                         ids=["sync", "async"])
def test_without_dedup_a_reply_that_cannot_be_encoded_fails_only_its_event(serve, source):
    """Without dedup the batch's replies are encoded together: one that has no JSON form still
    fails alone (a 500 for its event), as when each reply was encoded on its own."""
    running = serve(source)
    whole = post(running.url, batch({}, {"silent": True}, {}))
    assert whole.status_code == 200
    assert whole.headers["Content-Type"] == BATCH
    assert [(e["n"], e["data"]) for e in whole.json()] == [("e1", {"echo": "e1"}), ("e3", {"echo": "e3"})]
    assert all(e["specversion"] == "1.0" and e["id"] and e["time"] for e in whole.json())
    partial = post(running.url, batch({}, {"odd": True}, {}))
    assert partial.status_code == 500
    assert [e["status"] for e in partial.json()["events"]] == [200, 500, 200]
    assert "object" not in partial.text  # no exception text or type names leak into the answer


MIXED = """
import pyfunc

class Unserialisable:
    pass

def handler(event):
    data = event.data or {}
    kind = data.get("kind")
    if kind == "raise":
        raise RuntimeError("boom")
    if kind == "retry":
        raise pyfunc.Retry("later", after=7)
    if kind == "none":
        return None
    if kind == "bad-shape":
        return 42
    if kind == "bad-data":
        return {"type": "r", "source": "/t"}, {"x": Unserialisable()}
    if kind == "attrs-only":
        return {"type": "only-attrs", "source": "/t"}
    return {"type": "r", "source": "/t"}, {"echo": event["id"]}
"""


def _comparable(response: requests.Response):
    body = response.json()
    if isinstance(body, list):  # replies: ids and times are new per reply
        return response.status_code, [{k: v for k, v in e.items() if k not in ("id", "time")} for e in body]
    return response.status_code, body, response.headers.get("Retry-After")


@pytest.mark.parametrize("kinds", [
    ["ok", "ok", "attrs-only", "none", "ok"],
    ["ok", "raise", "none", "ok"],
    ["ok", "retry", "bad-shape", "ok"],
    ["ok", "bad-data", "ok"],
    ["bad-shape", "none"],
])
def test_the_batch_lane_answers_as_the_general_path(serve, kinds):
    """Plain pyfunc answers these batches through the batch lane (_batchlane.py); with metrics on
    the lane is off and the general path answers: the same statuses, bodies and headers."""
    lane = serve(MIXED)
    general = serve(MIXED, env={"PYFUNC_METRICS": "true"})
    events = batch(*({"kind": kind} for kind in kinds))
    assert _comparable(post(lane.url, events)) == _comparable(post(general.url, events))
