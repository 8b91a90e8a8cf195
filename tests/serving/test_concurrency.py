"""Concurrency for I/O-bound functions: a wave of slow requests is served in about one wave.

Knative sends a pod up to its autoscaling target of requests at once (100 by default). An
``async def`` handler must not hold a worker thread while it awaits (its request is parked
and resumed, see pyfunc._waitress), and a blocking sync handler gets an elastic pool that
grows while its workers are blocked. Real servers on loopback, real concurrent clients (raw
sockets on threads); every time bound is generous: a wave that needed 8 workers per batch
would take 32 s, the bounds are a few seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import requests

ASYNC_SLEEP = """
import asyncio

async def handler(body: bytes):
    await asyncio.sleep(float(body or b"1"))
    return body
"""

SYNC_SLEEP = """
import time

def handler(body: bytes):
    time.sleep(float(body or b"1"))
    return body
"""

# Writes a marker file when its await is cancelled (a timeout, a client hanging up).
CANCELLABLE = """
import asyncio, pathlib
HERE = pathlib.Path(__file__).parent

async def handler(body: bytes):
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        (HERE / ("cancelled-" + body.decode())).write_text("")
        raise
    return body
"""


def _post(port: int, body: bytes = b"1", timeout: float = 30) -> tuple[int, bytes]:
    """One POST on a fresh connection: (status, body); (0, b"") when the connection failed."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return 0, b""
    head, _, rest = data.partition(b"\r\n\r\n")
    return (int(head[9:12]) if head[9:12].isdigit() else 0), rest


def _wave(port: int, count: int, body: bytes = b"1") -> tuple[float, list[tuple[int, bytes]]]:
    """``count`` concurrent POSTs: (seconds until the last answer, the answers)."""
    results: list[Optional[tuple[int, bytes]]] = [None] * count

    def one(index: int) -> None:
        results[index] = _post(port, body)

    threads = [threading.Thread(target=one, args=(index,)) for index in range(count)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return time.monotonic() - started, [result or (0, b"") for result in results]


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads: line")


def _wait_for(predicate, timeout: float = 15, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_256_async_requests_that_await_1s_finish_in_about_one_wave(serve):
    server = serve(ASYNC_SLEEP)
    seconds, answers = _wave(server.port, 256)
    assert answers == [(200, b"1")] * 256
    assert seconds < 5, f"256 requests awaiting 1 s took {seconds:.1f}s (8 at a time would take 32 s)"
    assert _threads(server.process.pid) < 64, "async requests must not need a thread each"


def test_100_sync_requests_that_sleep_1s_finish_in_about_one_wave(serve):
    server = serve(SYNC_SLEEP)
    seconds, answers = _wave(server.port, 100)
    assert answers == [(200, b"1")] * 100
    assert seconds < 5, f"100 requests sleeping 1 s took {seconds:.1f}s (8 at a time would take 13 s)"


def test_the_elastic_pool_shrinks_back_when_idle(serve):
    server = serve(SYNC_SLEEP, env={"PYFUNC_THREADS": "4", "PYFUNC_THREAD_IDLE_TIMEOUT": "0.5"})
    pid = server.process.pid
    baseline = _threads(pid)
    peak = [0]

    def watch() -> None:
        for _ in range(60):
            peak[0] = max(peak[0], _threads(pid))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    _, answers = _wave(server.port, 40, b"1")
    watcher.join()
    assert answers == [(200, b"1")] * 40
    assert peak[0] >= baseline + 30, (baseline, peak[0])
    _wait_for(lambda: _threads(pid) <= baseline + 2, 15, f"the pool to shrink back to about {baseline}")


def test_a_cpu_bound_load_does_not_grow_the_pool(serve):
    server = serve("def handler(body: bytes):\n    return sum(range(20000)).to_bytes(8, 'big')\n",
                   env={"PYFUNC_THREADS": "4"})
    baseline = _threads(server.process.pid)
    with requests.Session() as session:
        for _ in range(300):
            assert session.post(server.url, data=b"x", timeout=10).status_code == 200
    # One client at a time: every task finds an idle worker, nothing ever waits for one.
    assert _threads(server.process.pid) <= baseline + 1


def test_max_concurrency_counts_the_async_invocations_that_await(serve):
    server = serve(ASYNC_SLEEP, env={"PYFUNC_MAX_CONCURRENCY": "5"})
    _, answers = _wave(server.port, 20, b"3")
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200] * 5 + [429] * 15, statuses
    # The slots are given back once the invocations are answered.
    assert _post(server.port, b"0")[0] == 200


def test_async_timeout_is_a_504_and_the_handler_sees_the_cancellation(serve):
    server = serve(CANCELLABLE, env={"PYFUNC_TIMEOUT": "0.5"})
    status, body = _post(server.port, b"timeout")
    assert status == 504
    assert json.loads(body)["reason"] == "timeout"
    _wait_for(lambda: (server.directory / "cancelled-timeout").exists(), 10, "the handler to be cancelled")


def test_a_client_that_hangs_up_cancels_its_async_invocation(serve):
    server = serve(CANCELLABLE, env={"PYFUNC_MAX_CONCURRENCY": "1"})
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\ngone")
        time.sleep(0.5)
    _wait_for(lambda: (server.directory / "cancelled-gone").exists(), 10, "the handler to be cancelled")
    _wait_for(lambda: " 499 " in server.logs(), 10, "the access line of the abandoned request")
    # Its concurrency slot came back: a new invocation is not refused with 429.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nnext")
        time.sleep(0.3)
        sock.settimeout(0.3)
        try:
            early = sock.recv(100)
        except socket.timeout:
            early = b""
    assert early == b"", f"the next invocation was answered at once: {early!r}"


def test_drain_completes_200_async_invocations_in_flight(serve):
    server = serve(ASYNC_SLEEP)
    results: list[tuple[int, bytes]] = []
    lock = threading.Lock()

    def one() -> None:
        answer = _post(server.port, b"3")
        with lock:
            results.append(answer)

    threads = [threading.Thread(target=one) for _ in range(200)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)  # all connected and awaiting (each awaits 3 s)
    server.process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(30)
    assert server.process.wait(30) == 0
    assert sorted(results) == [(200, b"3")] * 200


def test_an_async_generator_streams_its_first_chunk_before_it_ends(serve):
    server = serve("""
        import asyncio, pathlib
        HERE = pathlib.Path(__file__).parent

        async def handler(body: bytes):
            async def chunks():
                yield "first;"
                while not (HERE / "release").exists():
                    await asyncio.sleep(0.01)
                yield b"second"
            return chunks()
    """)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while b"first;" not in data:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        assert b"second" not in data
        (server.directory / "release").write_text("")
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding: chunked" in head.lower()
    assert body == b"6\r\nfirst;\r\n6\r\nsecond\r\n0\r\n\r\n"


def test_pipelined_requests_wait_behind_a_parked_one_and_answer_in_order(serve):
    server = serve(ASYNC_SLEEP)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n0.5"
                     b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n0"
                     b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\n0.1")
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    bodies = []
    while data:
        head, _, data = data.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        bodies.append(data[:length])
        data = data[length:]
    assert bodies == [b"0.5", b"0", b"0.1"]


STATS = """
import asyncio, random, threading

async def handler(req):
    if req.args.get("stats"):
        return {"tasks": len(asyncio.all_tasks()) - 1, "threads": threading.active_count()}
    await asyncio.sleep(random.random() * 0.02)
    return "ok"
"""


def test_10000_requests_with_random_disconnects_leak_no_task_or_thread(serve):
    server = serve(STATS)
    stats_url = server.url + "/?stats=1"
    baseline = requests.get(stats_url, timeout=10).json()
    rng = random.Random(7)
    plan = [rng.random() < 0.3 for _ in range(10_000)]  # True: hang up before the answer
    cursor = iter(range(len(plan)))
    lock = threading.Lock()
    answered = [0]

    def client() -> None:
        while True:
            with lock:
                index = next(cursor, None)
            if index is None:
                return
            try:
                with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if plan[index]:
                        time.sleep(rng.random() * 0.005)
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                        continue  # closed (a reset) before the answer
                    if b" 200 " in sock.recv(65536):
                        with lock:
                            answered[0] += 1
            except OSError:
                pass

    clients = [threading.Thread(target=client) for _ in range(32)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(300)
    assert answered[0] >= plan.count(False) * 0.99
    _wait_for(lambda: requests.get(stats_url, timeout=10).json()["tasks"] <= baseline["tasks"], 15,
              "the asyncio tasks to be back to the baseline")
    after = requests.get(stats_url, timeout=10).json()
    # Worker threads beyond the core end after PYFUNC_THREAD_IDLE_TIMEOUT; none is parked per request.
    assert after["threads"] <= baseline["threads"] + 64, (baseline, after)
    logs = server.logs()
    assert "Traceback" not in logs
    assert " 499 " in logs, "no invocation was cut off by its client: the test tested nothing"


def test_an_async_stream_waits_for_a_slow_client_instead_of_buffering_everything(serve):
    """Back-pressure: items are produced only as fast as the client reads (past waitress's buffer)."""
    server = serve("""
        import pathlib
        HERE = pathlib.Path(__file__).parent

        async def handler(body: bytes):
            async def chunks():
                for index in range(48):
                    (HERE / "produced").write_text(str(index + 1))
                    yield b"x" * (1 << 20)
            return chunks()
    """)
    produced = server.directory / "produced"
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = sock.recv(1 << 16)
        assert data.startswith(b"HTTP/1.1 200")
        _wait_for(lambda: produced.exists() and int(produced.read_text() or 0) >= 10, 15, "the stream to start")
        time.sleep(1.0)  # the client reads nothing: the generator must stop at the high watermark (16 MiB)
        paused_at = int(produced.read_text())
        assert paused_at < 40, f"{paused_at} MiB produced for a client that read nothing"
        total = len(data)
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            total += len(chunk)
    assert int(produced.read_text()) == 48
    assert total > 48 << 20


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS: line")


def test_1000_awaiting_requests_fit_in_60_mb(serve):
    """1,000 parked async requests: connections, environs and coroutines, but no thread each."""
    import resource
    import selectors

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        import pytest

        pytest.skip(f"the open files limit ({hard}) is too low for 1,000 client sockets")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2048) if hard == resource.RLIM_INFINITY
                                                else min(hard, max(soft, 2048)), hard))
    server = serve(ASYNC_SLEEP)
    selector = selectors.DefaultSelector()
    request = b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1\r\n\r\n3"
    received: dict[socket.socket, bytes] = {}
    try:
        for _ in range(1000):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(request)
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
            received[sock] = b""
        time.sleep(1.0)  # every request parked (each awaits 3 s)
        rss = _rss_mb(server.process.pid)
        threads = _threads(server.process.pid)
        deadline = time.monotonic() + 60
        open_ = len(received)
        while open_ and time.monotonic() < deadline:
            for key, _ in selector.select(1):
                sock = key.fileobj
                chunk = sock.recv(65536)
                received[sock] += chunk
                if not chunk:
                    selector.unregister(sock)
                    open_ -= 1
    finally:
        for sock in received:
            sock.close()
        selector.close()
    assert sum(1 for data in received.values() if data.startswith(b"HTTP/1.1 200")) == 1000
    assert rss < 60, f"{rss:.1f} MB RSS with 1,000 requests awaiting"
    assert threads < 64, f"{threads} threads for 1,000 awaiting requests"


# ------------------------------------------------------------------- the elastic pool under contention

# Each request computes for about 10 ms of CPU (pure Python, under the GIL), so with two workers
# and sixteen clients most of the watcher's 10 ms ticks see no task finish: it must tell from the
# workers' CPU that they compute. The hogs make the process get well under half a core.
COMPUTE = """
import time

def handler(body: bytes):
    start = time.thread_time()
    while time.thread_time() - start < 0.01:
        sum(range(1000))
    return b"done"
"""


@contextlib.contextmanager
def _cpu_hogs(pid: int, per_core: int = 1) -> Iterator[None]:
    """Busy loops in other processes, ``per_core`` per core the server ``pid`` runs on, all pinned
    to those cores (at most two of them, so a many-core machine is as contended as a two-core
    one): the server's threads get well under half a core, however big the machine is."""
    cores = sorted(os.sched_getaffinity(0))[:2]
    for task in Path(f"/proc/{pid}/task").iterdir():  # every thread of the server, and the threads they start
        os.sched_setaffinity(int(task.name), cores)
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(per_core * len(cores))]
    try:
        for hog in hogs:
            os.sched_setaffinity(hog.pid, cores)
        time.sleep(0.2)  # the hogs are spinning
        yield
    finally:
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait()


def _peak_threads(pid: int, stop: threading.Event, peak: list[int]) -> threading.Thread:
    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _threads(pid))
            time.sleep(0.02)

    thread = threading.Thread(target=watch)
    thread.start()
    return thread


def test_computing_workers_do_not_grow_the_pool_when_other_processes_load_the_cpu(serve):
    """The workers' own CPU clocks say they compute even when the process gets little CPU.

    With the process's CPU time instead (under half a core looked like blocked workers), this
    grew the pool toward one thread per client."""
    server = serve(COMPUTE, env={"PYFUNC_THREADS": "2", "PYFUNC_MAX_THREADS": "64"})
    pid = server.process.pid
    baseline = _threads(pid)
    stop, peak = threading.Event(), [baseline]
    answers: list[int] = []

    def client() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                answers.append(session.post(server.url, data=b"x", timeout=30).status_code)

    with _cpu_hogs(pid):
        watcher = _peak_threads(pid, stop, peak)
        clients = [threading.Thread(target=client) for _ in range(16)]
        for thread in clients:
            thread.start()
        time.sleep(6)
        stop.set()
        for thread in clients + [watcher]:
            thread.join(60)
    assert answers and set(answers) == {200}, sorted(set(answers))
    assert len(answers) >= 20, f"only {len(answers)} requests in 6 s: the test measured nothing"
    # 16 clients and 2 workers: 14 tasks wait all along. Blocked-looking workers would have got
    # a thread for each; computing ones get none (the slack: the pool's watcher, started when tasks first wait).
    assert peak[0] <= baseline + 2, f"the pool grew from {baseline} to {peak[0]} threads for computing workers"


def test_computing_workers_do_not_grow_the_pool_when_many_processes_load_the_cpu(serve):
    """Three busy loops per core: a runnable worker now waits in the run queue longer than the
    watcher's looks, and the kernel adds that wait to its busy time only once it ends. Read from
    busy time alone, such looks saw computing workers as blocked (the pool grew on a busy CI
    machine); the workers' state (runnable) tells them apart (pyfunc._threadstate)."""
    server = serve(COMPUTE, env={"PYFUNC_THREADS": "2", "PYFUNC_MAX_THREADS": "64"})
    baseline = _threads(server.process.pid)
    with _cpu_hogs(server.process.pid, per_core=3):
        answers, peak = _load(server, 16, 6, until=lambda answers: len(answers) >= 20)
    assert answers and set(answers) == {200}, sorted(set(answers))
    assert len(answers) >= 20, f"only {len(answers)} requests: the test measured nothing"
    assert peak <= baseline + 2, f"the pool grew from {baseline} to {peak} threads for computing workers"


def test_blocked_workers_still_grow_the_pool_when_other_processes_load_the_cpu(serve):
    server = serve(SYNC_SLEEP, env={"PYFUNC_THREADS": "2", "PYFUNC_MAX_THREADS": "64"})
    pid = server.process.pid
    baseline = _threads(pid)
    stop, peak = threading.Event(), [baseline]
    with _cpu_hogs(pid):
        watcher = _peak_threads(pid, stop, peak)
        seconds, answers = _wave(server.port, 30, b"1")
        stop.set()
        watcher.join(10)
    assert answers == [(200, b"1")] * 30
    assert peak[0] >= baseline + 20, (baseline, peak[0])
    assert seconds < 6, f"30 requests sleeping 1 s took {seconds:.1f}s on a loaded CPU (2 at a time: 15 s)"


# ------------------------------------------------------------------- the elastic pool under a CPU quota

def _load(server, clients: int, seconds: float, until=lambda answers: True,
          longest: float = 120) -> tuple[list[int], int]:
    """``clients`` keep POSTing for ``seconds``, and on until ``until(answers)`` holds (at most
    ``longest`` seconds: a loaded machine only makes it take longer): (the statuses, the peak thread count)."""
    pid = server.process.pid
    stop, peak = threading.Event(), [_threads(pid)]
    answers: list[int] = []

    def client() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                answers.append(session.post(server.url, data=b"x", timeout=60).status_code)

    watcher = _peak_threads(pid, stop, peak)
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    deadline = time.monotonic() + longest
    while not until(answers) and time.monotonic() < deadline:
        time.sleep(0.2)
    stop.set()
    for thread in threads + [watcher]:
        thread.join(90)
    return answers, peak[0]


def test_computing_workers_do_not_grow_the_pool_under_a_cpu_quota(serve):
    """A Kubernetes CPU limit is a CFS quota: the server's threads are all runnable and none runs
    for most of each period. The workers' busy time shows nothing while they are throttled; their
    state (runnable) says they compute. A real cgroup with 0.1 CPU in 10 ms periods (1 ms each:
    less than one timeslice, so the quota bites however little CPU a loaded machine leaves the
    server), the server moved in; the load goes on until the quota has throttled it many times."""
    from cgroups import cpu_quota

    server = serve(COMPUTE, env={"PYFUNC_THREADS": "2", "PYFUNC_MAX_THREADS": "64"})
    baseline = _threads(server.process.pid)
    with cpu_quota(0.1, period_us=10_000) as cgroup:
        cgroup.add(server.process.pid)
        answers, peak = _load(server, 16, 6, until=lambda answers: len(answers) >= 20
                              and cgroup.throttled_periods() >= 50)
        assert cgroup.throttled_periods() >= 50, "the quota hardly throttled the server: the test measured nothing"
    assert answers and set(answers) == {200}, sorted(set(answers))
    assert len(answers) >= 20, f"only {len(answers)} requests in 6 s: the test measured nothing"
    assert peak <= baseline + 2, f"the pool grew from {baseline} to {peak} threads for computing workers"


def test_computing_workers_do_not_grow_the_pool_under_a_cpu_quota_and_other_processes(serve):
    """Both at once: a 0.5 CPU quota on a machine whose cores two busy loops keep busy."""
    from cgroups import cpu_quota

    server = serve(COMPUTE, env={"PYFUNC_THREADS": "2", "PYFUNC_MAX_THREADS": "64"})
    baseline = _threads(server.process.pid)
    with cpu_quota(0.5) as cgroup, _cpu_hogs(server.process.pid):
        cgroup.add(server.process.pid)
        answers, peak = _load(server, 16, 6, until=lambda answers: len(answers) >= 20)
    assert answers and set(answers) == {200}, sorted(set(answers))
    assert len(answers) >= 20, f"only {len(answers)} requests in 6 s: the test measured nothing"
    assert peak <= baseline + 2, f"the pool grew from {baseline} to {peak} threads for computing workers"


def test_blocked_workers_still_grow_the_pool_under_a_cpu_quota(serve):
    from cgroups import cpu_quota

    server = serve(SYNC_SLEEP, env={"PYFUNC_THREADS": "2", "PYFUNC_MAX_THREADS": "64"})
    pid = server.process.pid
    baseline = _threads(pid)
    stop, peak = threading.Event(), [baseline]
    with cpu_quota(0.3) as cgroup, _cpu_hogs(pid):
        cgroup.add(pid)
        watcher = _peak_threads(pid, stop, peak)
        seconds, answers = _wave(server.port, 30, b"1")
        stop.set()
        watcher.join(10)
    assert answers == [(200, b"1")] * 30, f"{seconds:.1f}s: {answers}"
    assert peak[0] >= baseline + 20, (baseline, peak[0])
