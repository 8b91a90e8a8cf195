"""The contract pyfunc._waitress states at its top: these fail when waitress changes under pyfunc.

pyfunc runs on waitress's internals (the epoll loop, draining, the 413/431 answers). A waitress
release that renames one of them, or whose ``run()`` stops reaching the loop pyfunc installed,
would not break loudly: requests would still be served, by waitress's slower loop, or a drain
would fail at shutdown. So these tests run a real server in this process and look inside it:
the installed loop's turns really run and dispatch the requests, the workers' wake-ups really
note the connection they served, and every internal the adapter names is there with the
signature it calls. The startup fallback (one warning, waitress's own loop) is tested through
real server processes with one internal broken before pyfunc starts.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any, Optional

import pytest
import requests

from pyfunc import _eventloop as eventloop
from pyfunc import _waitress
from pyfunc._config import Config
from pyfunc._server import Server, build_app
from support import free_port, pool_size, socket_map, wait_until_up

ECHO = "def handler(body):\n    return body\n"


@pytest.fixture
def in_process(tmp_path: Path) -> Iterator[Server]:
    """A pyfunc Server built in this process (not yet running), closed afterwards."""
    (tmp_path / "handler.py").write_text(ECHO)
    config = Config(directory=str(tmp_path), port=free_port(), host="127.0.0.1", threads=2)
    server = Server(build_app(config), config)
    yield server
    if not server._stopped.is_set():
        server.waitress.close()


def _run(server: Server) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="contract-loop", daemon=True)
    thread.start()
    return thread


def _stop(server: Server, thread: threading.Thread) -> None:
    server.begin_shutdown("test")
    thread.join(20)
    assert not thread.is_alive(), "the server did not stop"


def test_waitress_is_a_version_the_adapter_was_tested_with() -> None:
    """A new waitress release inside the pinned range must be tested and added to the contract."""
    assert version("waitress") in _waitress.TESTED_VERSIONS, (
        f"waitress {version('waitress')} is not in pyfunc._waitress.TESTED_VERSIONS: run the suite on it "
        "(and scripts/test-waitress-floor.sh), then add it")


def test_every_internal_the_adapter_relies_on_is_there(in_process: Server) -> None:
    assert _waitress.loop_contract_problems(in_process.waitress) == []
    assert _waitress.refusal_contract_problems() == []
    assert _waitress.drain_contract_problems(in_process.waitress) == []
    assert in_process.loop is not None, "the epoll loop was not installed"


def test_every_internal_of_deferral_and_the_elastic_pool_is_there(in_process: Server) -> None:
    assert _waitress.deferral_contract_problems(in_process.waitress) == []
    assert _waitress.pool_contract_problems() == []
    assert isinstance(in_process.waitress.task_dispatcher, _waitress.ElasticDispatcher)
    assert pool_size(in_process.waitress) == 2  # the core (threads=2) is started at once


class _Task:
    """A waitress-task stand-in: runs ``work`` in ``service()``."""

    def __init__(self, work: Any) -> None:
        self.work = work

    def service(self) -> None:
        self.work()

    def cancel(self) -> None:
        pass


def _size(pool: _waitress.ElasticDispatcher) -> int:
    with pool.lock:
        return len(pool.threads) - pool.stop_count


def test_the_elastic_pool_grows_for_blocked_workers_and_shrinks_when_idle() -> None:
    pool = _waitress.ElasticDispatcher(core=2, maximum=40, idle_timeout=0.3)
    pool.set_thread_count(2)
    try:
        done = threading.Semaphore(0)
        release = threading.Event()
        for _ in range(30):
            pool.add_task(_Task(lambda: (release.wait(10), done.release())))
        deadline = time.monotonic() + 10
        while _size(pool) < 30 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _size(pool) >= 30, "30 blocked tasks did not get a thread each"
        release.set()
        for _ in range(30):
            assert done.acquire(timeout=10)
        deadline = time.monotonic() + 10
        while _size(pool) > 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _size(pool) == 2, "the extra threads did not end after idling"
    finally:
        assert pool.shutdown(cancel_pending=True, timeout=5)


def test_the_elastic_pool_does_not_grow_for_computing_workers() -> None:
    pool = _waitress.ElasticDispatcher(core=2, maximum=40, idle_timeout=5)
    pool.set_thread_count(2)
    try:
        done = threading.Semaphore(0)

        def compute() -> None:
            sum(range(20_000))
            done.release()

        for _ in range(2000):
            pool.add_task(_Task(compute))
        for _ in range(2000):
            assert done.acquire(timeout=30)
        # Tasks finished all along (and the CPU was busy): the workers were never blocked.
        assert pool.grown == 0
    finally:
        pool.shutdown(cancel_pending=True, timeout=5)


def test_a_burst_after_an_idle_spell_is_not_taken_for_blocked_workers() -> None:
    """"No task finished for half a second" counts from when tasks began to wait: a pool idle for a
    second, then given tasks that each compute longer than a tick, does not grow at once."""
    pool = _waitress.ElasticDispatcher(core=2, maximum=40, idle_timeout=5)
    pool.set_thread_count(2)
    try:
        time.sleep(1)  # idle: the last task (none) finished long ago
        done = threading.Semaphore(0)

        def compute() -> None:
            start = time.thread_time()
            while time.thread_time() - start < 0.03:
                sum(range(1000))
            done.release()

        for _ in range(16):
            pool.add_task(_Task(compute))
        for _ in range(16):
            assert done.acquire(timeout=30)
        assert pool.grown == 0
    finally:
        pool.shutdown(cancel_pending=True, timeout=5)


def test_a_burst_under_busy_loops_on_every_core_is_not_taken_for_blocked_workers() -> None:
    """The idle-spell burst with 3 busy loops per core beside it (this process's cores): a
    computing worker then waits in the run queue for longer than the watcher's looks, which its
    busy time shows only once the wait ends, but its state shows as runnable at once. Read from
    busy time alone, the pool grew by 5 and 12 threads in 2 runs of 3 here."""
    cores = sorted(os.sched_getaffinity(0))[:2]
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(3 * len(cores))]
    try:
        for proc in procs:
            os.sched_setaffinity(proc.pid, cores)
        time.sleep(0.2)
        test_a_burst_after_an_idle_spell_is_not_taken_for_blocked_workers()
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


ASYNC_ECHO = "import asyncio\n\nasync def handler(body):\n    await asyncio.sleep(0.01)\n    return body\n"


def _workers_idle(server: Server, within: float = 10) -> bool:
    """Whether every worker is back waiting for a task, with none queued, within ``within`` s.

    A worker that has just parked its request counts as active until it is back on the queue's
    condition: a moment on a quiet machine, longer on a busy one (CI failed on a single look). A
    worker that waits for an await stays active until the test lets the handler go on."""
    dispatcher = server.waitress.task_dispatcher
    deadline = time.monotonic() + within
    while True:
        with dispatcher.lock:
            if dispatcher.active_count == 0 and not dispatcher.queue:
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def test_an_async_request_is_parked_and_resumed_on_a_live_server(tmp_path: Path) -> None:
    """The deferral on a real server: the handler runs while no worker serves its channel.

    The handlers wait for a gate the test opens only once all 20 requests are parked, so a slow start
    of the clients (a busy machine) cannot let early requests finish before the last ones arrive."""
    (tmp_path / "handler.py").write_text(
        "import asyncio, pathlib, threading\nGATE = pathlib.Path(__file__).parent / 'gate'\n\n"
        "async def handler(body):\n    while not GATE.exists():\n        await asyncio.sleep(0.01)\n"
        "    return str(threading.active_count())\n")
    config = Config(directory=str(tmp_path), port=free_port(), host="127.0.0.1", threads=2)
    server = Server(build_app(config), config)
    assert server.app.defers
    thread = _run(server)
    try:
        answers: list[bytes] = []
        clients = [threading.Thread(target=lambda: answers.append(
            requests.post(f"http://127.0.0.1:{server.port}", data=b"x", timeout=60).content)) for _ in range(20)]
        for client in clients:
            client.start()
        parked: list[Any] = []
        deadline = time.monotonic() + 30
        while len(parked) < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
            parked = [channel for channel in list(server.waitress.active_channels.values()) if channel.pyfunc_work]
        assert len(parked) == 20
        assert _workers_idle(server), "a worker waits for an await"
        assert all(len(channel.requests) == 1 for channel in parked)
        (tmp_path / "gate").touch()
        for client in clients:
            client.join(60)
        assert len(answers) == 20
    finally:
        (tmp_path / "gate").touch()  # parked requests end, so the server can stop whatever failed
        _stop(server, thread)


def test_an_async_stream_is_sent_from_the_event_loop_with_no_worker_waiting(tmp_path: Path) -> None:
    (tmp_path / "handler.py").write_text(
        "import asyncio, pathlib\nHERE = pathlib.Path(__file__).parent\n\n"
        "async def handler(body):\n"
        "    async def chunks():\n"
        "        yield 'first;'\n"
        "        while not (HERE / 'release').exists():\n"
        "            await asyncio.sleep(0.01)\n"
        "        yield 'second'\n"
        "    return chunks()\n")
    config = Config(directory=str(tmp_path), port=free_port(), host="127.0.0.1", threads=2)
    server = Server(build_app(config), config)
    thread = _run(server)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while b"first;" not in data:
                chunk = sock.recv(65536)
                assert chunk, data
                data += chunk
            assert _workers_idle(server), "a worker waits between the items of a stream"
            (tmp_path / "release").write_text("")
            while not data.endswith(b"0\r\n\r\n"):
                chunk = sock.recv(65536)
                assert chunk, data
                data += chunk
            assert data.endswith(b"6\r\nsecond\r\n0\r\n\r\n"), data
    finally:
        (tmp_path / "release").write_text("")  # the stream ends, so the server can stop whatever failed
        _stop(server, thread)


def test_a_live_connection_has_the_state_the_drain_reads(in_process: Server) -> None:
    """The drain and the receive deadline read a connection's state: check it on a real one."""
    thread = _run(in_process)
    try:
        with socket.create_connection(("127.0.0.1", in_process.port), timeout=5) as sock:
            deadline = time.monotonic() + 5
            while not in_process.waitress.active_channels and time.monotonic() < deadline:
                time.sleep(0.01)
            channels = list(in_process.waitress.active_channels.values())
            assert len(channels) == 1
            channel = channels[0]
            missing = [name for name in _waitress.CHANNEL_STATE if not hasattr(channel, name)]
            assert missing == []
            assert isinstance(channel.requests, list) and channel.request is None
            assert channel.last_activity == channel.creation_time  # nothing sent yet: the drain's test
            assert socket_map(in_process.waitress).get(_waitress.fileno(channel)) is channel
            sock.sendall(b"GET /health/liveness HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 200")
    finally:
        _stop(in_process, thread)


def test_run_turns_the_installed_loop_and_it_dispatches_the_requests(
        in_process: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """waitress's ``run()`` must reach pyfunc's loop: count its turns and the events it dispatches.

    With ``run()`` bypassing the loop (calling ``wasyncore.loop`` itself), the requests would
    still be answered, by waitress's own loop: only these counters tell.
    """
    loop = in_process.loop
    assert loop is not None
    counts = {"turns": 0, "events": 0, "notes": 0}
    turn, dispatch = loop.turn, eventloop.readwrite

    def counted_turn(timeout: float) -> None:
        counts["turns"] += 1
        turn(timeout)

    def counted_dispatch(obj: Any, flags: int) -> None:
        counts["events"] += 1
        dispatch(obj, flags)

    wake = in_process.waitress.pull_trigger  # the adapter's: notes the connection, then wakes

    def counted_wake() -> None:
        if getattr(_waitress.loop.serving, "channel", None) is not None:
            counts["notes"] += 1  # a worker's wake-up, about the connection it serves
        wake()

    monkeypatch.setattr(loop, "turn", counted_turn)
    monkeypatch.setattr(eventloop, "readwrite", counted_dispatch)
    monkeypatch.setattr(in_process.waitress, "pull_trigger", counted_wake)
    thread = _run(in_process)
    try:
        requests_sent = 20
        with requests.Session() as session:
            for index in range(requests_sent):
                reply = session.post(f"http://127.0.0.1:{in_process.port}/", data=f"n{index}", timeout=5)
                assert reply.content == f"n{index}".encode()
    finally:
        _stop(in_process, thread)
    assert counts["turns"] >= requests_sent, counts
    assert counts["events"] >= requests_sent, counts  # at least each request's read
    assert counts["notes"] >= requests_sent, counts  # each response's wake-up noted its connection


def test_the_loop_leaves_a_response_to_the_worker_that_sends_it(
        in_process: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """waitress's workers send their own responses (``write_soon``); the loop must not watch
    for writes meanwhile. Under level-triggered epoll that watch spins: every turn finds the
    output buffer locked by the worker (about five write events per request at 8 clients)."""
    loop = in_process.loop
    assert loop is not None
    writes = [0]
    dispatch = eventloop.readwrite

    def counted_dispatch(obj: Any, flags: int) -> None:
        if flags & eventloop.WRITE and _waitress.is_connection(obj):
            writes[0] += 1
        dispatch(obj, flags)

    monkeypatch.setattr(eventloop, "readwrite", counted_dispatch)
    thread = _run(in_process)
    clients, each = 8, 150

    def client(number: int) -> None:
        with requests.Session() as session:
            for index in range(each):
                body = f"{number}-{index}".encode() * 20
                assert session.post(f"http://127.0.0.1:{in_process.port}/", data=body, timeout=10).content == body

    try:
        workers = [threading.Thread(target=client, args=(number,)) for number in range(clients)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
    finally:
        _stop(in_process, thread)
    # A write event is the loop's to handle only when a socket was full (none is here, at 300 B).
    assert writes[0] <= clients * each * 0.05, f"{writes[0]} write events for {clients * each} requests"


# ------------------------------------------------------------------------------------ fallback

# Each breaks one internal the loop relies on, before pyfunc starts.
BREAKS = {
    "an internal is missing": "import waitress.wasyncore as w; del w.readwrite",
    "a signature changed": ("import waitress.server as s\n"
                            "s.BaseWSGIServer.maintenance = lambda self, when, extra=0: None"),
    "run() bypasses the loop": (
        "import waitress.server as s, waitress.wasyncore as w\n"
        "def run(self):\n"
        "    w.loop(timeout=self.adj.asyncore_loop_timeout, map=self._map, use_poll=False)\n"
        "s.BaseWSGIServer.run = run"),
}


def _serve_after_breaks(tmp_path: Path, extra_env: Optional[dict[str, str]] = None) -> tuple[Any, str, Path]:
    """``python -m pyfunc TMP/fn`` started after ``import breaks`` (TMP/breaks.py) has changed waitress."""
    code = ("import runpy, sys; sys.path.insert(0, sys.argv[1]); import breaks; sys.argv = ['pyfunc', sys.argv[2]]; "
            "runpy.run_module('pyfunc', run_name='__main__', alter_sys=True)")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYFUNC_", "K_"))}
    env.update({"PORT": str(port), "PYFUNC_HOST": "127.0.0.1", "PYTHONUNBUFFERED": "1", **(extra_env or {})})
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-c", code, str(tmp_path), str(tmp_path / "fn")],
                                   stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process, log_path)
    except BaseException:
        process.kill()
        raise
    return process, url, log_path


def test_a_broken_deferral_contract_keeps_async_handlers_on_their_worker_with_one_warning(tmp_path: Path) -> None:
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "handler.py").write_text(ASYNC_ECHO)
    # waitress's channel.service catching everything would swallow the signal: pyfunc must notice.
    (tmp_path / "breaks.py").write_text(
        "import waitress.channel as c\n"
        "service = c.HTTPChannel.service\n"
        "def caught(self):\n"
        "    try:\n"
        "        service(self)\n"
        "    except BaseException:\n"
        "        raise\n"
        "c.HTTPChannel.service = caught\n")
    process, url, log_path = _serve_after_breaks(tmp_path)
    try:
        with requests.Session() as session:
            for index in range(5):
                assert session.post(url, data=f"n{index}", timeout=5).content == f"n{index}".encode()
    finally:
        process.terminate()
        assert process.wait(20) == 0
    logs = log_path.read_text()
    warnings = [line for line in logs.splitlines() if "async handlers hold a worker thread" in line]
    assert len(warnings) == 1, logs
    assert "Traceback" not in logs, logs


@pytest.mark.parametrize("broken", list(BREAKS))
def test_a_broken_contract_falls_back_to_waitress_loop_with_one_warning(tmp_path: Path, broken: str) -> None:
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "handler.py").write_text(ECHO)
    # A sitecustomize-like wrapper: break waitress, then start pyfunc exactly as `python -m pyfunc`.
    (tmp_path / "breaks.py").write_text(BREAKS[broken] + "\n")
    process, url, log_path = _serve_after_breaks(tmp_path, {"PYFUNC_MAX_BODY_SIZE": "1K"})
    try:
        with requests.Session() as session:
            for index in range(5):
                assert session.post(url, data=f"n{index}", timeout=5).content == f"n{index}".encode()
        refused = requests.post(url, data=b"x" * 2000, timeout=5)
        assert refused.status_code == 413
        assert refused.headers["Content-Type"] == "application/problem+json"
    finally:
        process.terminate()
        assert process.wait(20) == 0
    logs = log_path.read_text()
    warnings = [line for line in logs.splitlines() if "serving on waitress's own loop" in line]
    assert len(warnings) == 1, logs
    assert " WARNING " in warnings[0]
    assert "Traceback" not in logs, logs
