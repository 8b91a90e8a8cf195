"""Redelivery dedup (PYFUNC_DEDUPE): real servers, a real Redis shared by two pyfunc processes, faults."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import requests

from pyfunc._dedup import TOO_LARGE, MemoryStore, Record
from support import make_event, send, start_server, write_function

# Every call appends "<pid> <id>" to $CALLS, so a test counts invocations across processes.
HANDLER = """
import os, time
import pyfunc

CALLS = os.environ["CALLS"]

def calls(event_id):
    try:
        with open(CALLS) as f:
            return sum(1 for line in f if line.split()[1] == event_id)
    except FileNotFoundError:
        return 0

def handler(event):
    data = event.data or {}
    before = calls(event["id"])
    with open(CALLS, "a") as f:
        f.write(f"{os.getpid()} {event['id']}\\n")
    if data.get("sleep"):
        time.sleep(data["sleep"])
    if data.get("fail_first") and before == 0:
        raise RuntimeError("first attempt fails")
    if data.get("drop"):
        raise pyfunc.Drop("never")
    if data.get("big"):
        return {"type": "reply", "source": "/t"}, {"pad": "x" * data["big"]}
    return {"type": "reply", "source": "/t"}, data
"""


# As async def (deferred: the event loop runs it, no worker waits), sleeping without blocking.
ASYNC_HANDLER = (HANDLER.replace("def handler(event):", "async def handler(event):")
                 .replace("time.sleep(data[\"sleep\"])", "await asyncio.sleep(data[\"sleep\"])")
                 .replace("import os, time", "import asyncio, os, time"))


def calls(path: Path, event_id: str | None = None) -> list[str]:
    if not path.exists():
        return []
    lines = [line.split() for line in path.read_text().splitlines()]
    return [pid for pid, eid in lines if event_id is None or eid == event_id]


@pytest.fixture
def calls_file(tmp_path):
    return tmp_path / "calls"


@pytest.fixture(params=["sync", "async"])
def memory_server(request, serve, calls_file):
    source = HANDLER if request.param == "sync" else ASYNC_HANDLER
    return serve(source, env={"PYFUNC_DEDUPE": "memory", "CALLS": str(calls_file)})


def test_a_duplicate_gets_the_same_reply_without_running(memory_server, calls_file):
    event = make_event({"n": 1}, id="dup-1")
    first = send(memory_server.url, event)
    second = send(memory_server.url, event, structured=True)  # any mode: the first reply again
    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert first.headers["ce-id"] == second.headers["ce-id"]
    assert len(calls(calls_file, "dup-1")) == 1
    assert "duplicate of event dup-1 from /tests, done before" in memory_server.logs()


def test_same_id_from_another_source_is_another_event(memory_server, calls_file):
    send(memory_server.url, make_event({}, id="same", source="/a"))
    send(memory_server.url, make_event({}, id="same", source="/b"))
    assert len(calls(calls_file, "same")) == 2


def test_a_failure_is_not_marked_done(memory_server, calls_file):
    event = make_event({"fail_first": True}, id="fails-once")
    assert send(memory_server.url, event).status_code == 500
    assert send(memory_server.url, event).status_code == 200  # redelivery runs it again
    assert send(memory_server.url, event).status_code == 200  # now done: replayed
    assert len(calls(calls_file, "fails-once")) == 2


def test_a_drop_is_not_marked_done(memory_server, calls_file):
    event = make_event({"drop": True}, id="dropped")
    assert send(memory_server.url, event).status_code == 422
    assert send(memory_server.url, event).status_code == 422
    assert len(calls(calls_file, "dropped")) == 2


def test_a_duplicate_while_the_first_runs_is_409(memory_server, calls_file):
    event = make_event({"sleep": 1.5}, id="slow")
    box = {}
    thread = threading.Thread(target=lambda: box.update(first=send(memory_server.url, event)))
    thread.start()
    time.sleep(0.5)
    duplicate = send(memory_server.url, event)
    assert duplicate.status_code == 409  # Knative's "Processing in progress": retried with backoff
    assert duplicate.headers["Retry-After"] == "1"
    assert duplicate.json()["reason"] == "duplicate-in-flight"
    thread.join()
    assert box["first"].status_code == 200
    assert send(memory_server.url, event).content == box["first"].content
    assert len(calls(calls_file, "slow")) == 1


def test_a_reply_above_the_bound_is_remembered_as_202(serve, calls_file):
    server = serve(HANDLER, env={"PYFUNC_DEDUPE": "memory", "PYFUNC_DEDUPE_MAX_REPLY": "1K",
                                 "CALLS": str(calls_file)})
    event = make_event({"big": 4096}, id="big")
    assert send(server.url, event).status_code == 200
    duplicate = send(server.url, event)
    assert duplicate.status_code == 202 and duplicate.content == b""
    assert len(calls(calls_file, "big")) == 1


def test_memory_store_is_bounded_by_size_budget_and_ttl():
    store = MemoryStore(size=3, budget=100)
    record = Record(200, [("ce-id", "x")], b"r" * 10)
    for i in range(5):
        assert store.claim(f"k{i}", "t", 60) is None
        store.finish(f"k{i}", record, 60)
    assert len(store) == 3 and store.claim("k0", "t", 60) is None  # least recently used went first
    store.finish("big", Record(200, [], b"b" * 95), 60)
    assert store.bytes <= 100
    assert store.claim("short", "t", 60) is None
    store.finish("short", record, 0.01)
    time.sleep(0.02)
    assert store.claim("short", "t2", 60) is None  # expired: runs again
    assert Record.loads(record.dumps()).headers == record.headers
    assert Record.loads(TOO_LARGE.dumps()).status == 202


# ----------------------------------------------------------------------------- Redis


def start_pair(tmp_path: Path, redis_url: str, calls_file: Path, source: str = HANDLER, **env: str):
    directory = write_function(tmp_path / "fn", source)
    common = {"PYFUNC_DEDUPE": redis_url, "CALLS": str(calls_file), "PYFUNC_DEDUPE_NAMESPACE": "shared", **env}
    return start_server(directory, common), start_server(directory, common)


@pytest.fixture(params=["sync", "async"])
def pair(request, tmp_path, redis_server, calls_file):
    source = HANDLER if request.param == "sync" else ASYNC_HANDLER
    servers = start_pair(tmp_path, redis_server.url, calls_file, source, PYFUNC_SHUTDOWN_TIMEOUT="1")
    yield servers
    for server in servers:
        server.stop(signal.SIGKILL)


def test_two_processes_share_one_redis(pair, calls_file):
    a, b = pair
    event = make_event({"n": 2}, id="shared-1")
    first = send(a.url, event)
    second = send(b.url, event)
    assert first.status_code == second.status_code == 200 and first.content == second.content
    assert first.headers["ce-id"] == second.headers["ce-id"]
    assert calls(calls_file, "shared-1") == [str(a.process.pid)]


def test_in_flight_in_one_pod_is_409_in_the_other(pair, calls_file):
    a, b = pair
    event = make_event({"sleep": 1.5}, id="shared-slow")
    thread = threading.Thread(target=send, args=(a.url, event))
    thread.start()
    time.sleep(0.5)
    assert send(b.url, event).status_code == 409
    thread.join()
    assert send(b.url, event).status_code == 200
    assert len(calls(calls_file, "shared-slow")) == 1


def test_redis_killed_mid_run_fails_open(pair, redis_server, restart_redis, calls_file):
    a, _ = pair
    assert send(a.url, make_event({}, id="before")).status_code == 200
    redis_server.kill()
    started = time.monotonic()
    for i in range(3):
        assert send(a.url, make_event({}, id=f"down-{i}")).status_code == 200  # runs, without dedup
    assert time.monotonic() - started < 3  # short timeouts: no hang
    assert send(a.url, make_event({}, id="down-0")).status_code == 200
    assert len(calls(calls_file, "down-0")) == 2  # no dedup while Redis is down (documented)
    assert "events run without dedup until it is back" in a.logs()
    assert a.process.poll() is None
    restart_redis(redis_server.port)
    time.sleep(1.2)  # the 1 s backoff after a failure
    event = make_event({}, id="after")
    assert send(a.url, event).status_code == 200
    assert send(a.url, event).status_code == 200
    assert len(calls(calls_file, "after")) == 1  # dedup is back


def test_sigterm_while_in_flight_does_not_mark_it_done(pair, redis_server, calls_file):
    a, b = pair
    event = make_event({"sleep": 4}, id="interrupted")
    thread = threading.Thread(target=lambda: _quietly(send, a.url, event))
    thread.start()
    time.sleep(0.7)
    assert send(b.url, event).status_code == 409  # claimed by A
    a.process.send_signal(signal.SIGTERM)
    assert a.process.wait(15) == 0  # PYFUNC_SHUTDOWN_TIMEOUT=1: A gave up on the call
    thread.join()
    # A released its claim on the way out: B runs the event now instead of waiting out the lease.
    response = send(b.url, make_event({}, id="interrupted"))
    assert response.status_code == 200
    assert calls(calls_file, "interrupted") == [str(a.process.pid), str(b.process.pid)]
    keys = redis_server.client().keys("pyfunc:dedup:shared:*")
    assert len(keys) == 1 and redis_server.client().get(keys[0]).startswith(b"R200")


def _quietly(function, *args):
    try:
        function(*args)
    except requests.RequestException:
        pass


def test_the_namespace_keeps_functions_apart(tmp_path, redis_server, calls_file):
    directory = write_function(tmp_path / "fn", HANDLER)
    env = {"PYFUNC_DEDUPE": redis_server.url, "CALLS": str(calls_file)}
    one = start_server(directory, {**env, "PYFUNC_DEDUPE_NAMESPACE": "one"})
    two = start_server(directory, {**env, "K_SERVICE": "two"})
    try:
        event = make_event({}, id="ns")
        send(one.url, event)
        send(two.url, event)
        assert len(calls(calls_file, "ns")) == 2
    finally:
        one.stop(signal.SIGKILL)
        two.stop(signal.SIGKILL)


def test_an_unreachable_redis_at_startup_does_not_stop_the_server(serve, calls_file):
    port = int(os.environ.get("PYFUNC_TEST_CLOSED_PORT", "1"))  # nothing listens on port 1
    server = serve(HANDLER, env={"PYFUNC_DEDUPE": f"redis://127.0.0.1:{port}/0", "CALLS": str(calls_file)})
    assert send(server.url, make_event({}, id="x")).status_code == 200
