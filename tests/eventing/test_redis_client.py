"""pyfunc's own Redis client (pyfunc._resp) and the dedup store on it, against a real redis-server.

The store makes one round trip an event on the request's path (the claim, EVALSHA) and posts
the done mark (SET, its reply read by the next command on the connection): these tests check the
protocol, the order of posted replies, the script reloading, the URL's credentials and db, and the
crash semantics (a process that dies before its done mark leaves a claim: the redelivery runs
again after the lease, never a lost event).
"""

from __future__ import annotations

import signal

import pytest

from pyfunc import _resp
from pyfunc._dedup import IN_FLIGHT, Dedup, Record, RedisStore
from support import make_event, send, start_server, write_function


def test_replies_of_every_type(redis_server):
    pool = _resp.Pool(redis_server.url, 2.0)
    conn = pool.get()
    assert conn.call("SET", "k", b"v\r\nwith CRLF") == b"OK"
    assert conn.call("GET", "k") == b"v\r\nwith CRLF"
    assert conn.call("GET", "missing") is None
    assert conn.call("INCR", "n") == 1
    assert conn.call("RPUSH", "l", "a", "b") == 2
    assert conn.call("LRANGE", "l", 0, -1) == [b"a", b"b"]
    big = b"x" * 300_000  # more than one recv
    conn.call("SET", "big", big)
    assert conn.call("GET", "big") == big
    with pytest.raises(_resp.RespError, match="WRONGTYPE"):
        conn.call("GET", "l")
    pool.put(conn)
    assert pool.get() is conn  # reused, not reconnected
    pool.close()


def test_posted_commands_are_answered_in_order_before_the_next_call(redis_server):
    conn = _resp.Pool(redis_server.url, 2.0).get()
    conn.post(("SET", "a", "1"), ("GET", "l-missing"), ("LPUSH", "a", "x"))  # the last one is refused
    assert conn.pending == 3
    assert conn.call("GET", "a") == b"1"  # the posted replies were read first
    assert conn.pending == 0
    assert len(conn.posted_errors) == 1 and "WRONGTYPE" in str(conn.posted_errors[0])


def test_credentials_and_db_from_the_url(redis_server):
    admin = redis_server.client()
    admin.config_set("requirepass", "s3cret:/@")
    try:
        with pytest.raises(_resp.RespError, match="NOAUTH"):
            _resp.Pool(redis_server.url, 2.0).get().call("PING")
        url = f"redis://:s3cret%3A%2F%40@127.0.0.1:{redis_server.port}/3"
        conn = _resp.Pool(url, 2.0).get()
        conn.call("SET", "in-db-3", "yes")
        admin.execute_command("AUTH", "s3cret:/@")
        admin.execute_command("SELECT", 3)
        assert admin.get("in-db-3") == b"yes"
    finally:
        admin.config_set("requirepass", "")


def test_the_store_claims_replays_and_reloads_its_scripts(redis_server):
    store = RedisStore(redis_server.url)
    dedup = Dedup(store, "ns", ttl=60, lease=60, max_reply=1 << 16)
    claim, found = dedup.claim({"source": "/s", "id": "1"})
    assert claim is not None and found is None
    assert dedup.claim({"source": "/s", "id": "1"}) == (None, IN_FLIGHT)
    redis_server.client().script_flush()  # a Redis restarted or flushed: EVALSHA says NOSCRIPT
    claim.done(Record(200, [("Content-Type", "text/plain")], b"hi"))
    _, replay = dedup.claim({"source": "/s", "id": "1"})
    assert isinstance(replay, Record) and replay.body == b"hi" and replay.status == 200
    dedup.close()


def test_one_claim_and_one_mark_per_event(tmp_path, redis_server):
    directory = write_function(tmp_path / "fn", "def handler(event):\n    return {'type': 'r', 'source': '/t'}, {}\n")
    server = start_server(directory, {"PYFUNC_DEDUPE": redis_server.url})
    try:
        assert send(server.url, make_event({}, id="first")).status_code == 200  # loads the script
        redis_server.client().config_resetstat()
        for number in range(20):
            assert send(server.url, make_event({}, id=f"e{number}")).status_code == 200
        assert send(server.url, make_event({}, id="e0")).status_code == 200  # a replay: a claim only
        stats = redis_server.client().info("commandstats")
        assert stats["cmdstat_evalsha"]["calls"] == 21
        # Each new event: the claim script's own SET (counted by Redis too) and the done mark.
        assert stats["cmdstat_set"]["calls"] == 40
        pyfunc_commands = {name for name in stats if not name.startswith(("cmdstat_hello", "cmdstat_config",
                                                                          "cmdstat_info", "cmdstat_client"))}
        assert pyfunc_commands == {"cmdstat_evalsha", "cmdstat_set", "cmdstat_get"}  # GET: the script's own
    finally:
        server.stop(signal.SIGKILL)


CRASHING = """
import os, signal

def handler(event):
    with open(os.environ["CALLS"], "a") as f:
        f.write(f"{os.getpid()} {event['id']}\\n")
    if (event.data or {}).get("crash") and os.environ.get("CRASH") == "1":
        os.kill(os.getpid(), signal.SIGKILL)  # the process dies: no response, no done mark
    return {"type": "reply", "source": "/t"}, {}
"""


def test_a_crash_before_the_done_mark_runs_the_redelivery_again(tmp_path, redis_server):
    calls = tmp_path / "calls"
    directory = write_function(tmp_path / "fn", CRASHING)
    env = {"PYFUNC_DEDUPE": redis_server.url, "CALLS": str(calls), "PYFUNC_DEDUPE_NAMESPACE": "crash",
           "PYFUNC_DEDUPE_LEASE": "1.5"}
    crashing = start_server(directory, {**env, "CRASH": "1"})
    other = start_server(directory, env)
    try:
        event = make_event({"crash": True}, id="doomed")
        with pytest.raises(Exception):  # noqa: B017, PT011 - the connection dies with the process
            send(crashing.url, event)
        assert crashing.process.wait(10) == -signal.SIGKILL
        assert send(other.url, event).status_code == 409  # still claimed by the dead process
        import time

        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # the lease runs out: the redelivery runs it
            response = send(other.url, event)
            if response.status_code == 200:
                break
            assert response.status_code == 409
            time.sleep(0.2)
        assert response.status_code == 200
        assert [line.split()[1] for line in calls.read_text().splitlines()] == ["doomed", "doomed"]
        assert send(other.url, event).status_code == 200  # and now done: replayed
        assert len(calls.read_text().splitlines()) == 2
    finally:
        crashing.stop(signal.SIGKILL)
        other.stop(signal.SIGKILL)
