"""PYFUNC_WORKERS: several server processes on one port (pyfunc._workers), as real processes on loopback."""

from __future__ import annotations

import fcntl
import http.client
import os
import signal
import socket
import threading
import time

import pytest
import requests

from support import children, free_port, make_event, run_pyfunc, send, wait_until_up

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or not os.path.isdir("/proc"), reason="Linux")

# A CPU-bound handler (a few ms of Python) that says which process answered. With X-Wait-For it
# first marks that it started (a file per pid), then blocks on a shared lock of the named file
# while the test holds it exclusively (a gate): blocked in the kernel, using no CPU, where threads
# polling for a flag file every 10 ms kept a busy machine busier.
PID_HANDLER = """
import fcntl
import os
import pathlib

HERE = pathlib.Path(__file__).parent

def handler(body: bytes, headers):
    if headers.get("X-Wait-For"):
        (HERE / f"started-{os.getpid()}-{headers['X-Id']}").write_text("")
        with open(HERE / headers["X-Wait-For"], "rb") as gate:
            fcntl.flock(gate, fcntl.LOCK_SH)
    total = 0
    for i in range(50000):
        total += i * i
    return str(os.getpid())

def stop():
    (HERE / f"stopped-{os.getpid()}").write_text("")
"""


def get(port: int, path: str = "/", headers: dict | None = None) -> tuple[int, str]:
    """One request on a fresh connection (so that each one is accepted anew, by either worker)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", path, body=b"x", headers={"Connection": "close", **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_cpu_bound_handler_is_served_by_every_worker(serve):
    server = serve(PID_HANDLER, env={"PYFUNC_WORKERS": "2"})
    workers = children(server.process.pid)
    assert len(workers) == 2
    seen: dict[int, int] = {}
    lock = threading.Lock()

    def client() -> None:
        for _ in range(25):
            status, body = get(server.port)
            assert status == 200
            with lock:
                seen[int(body)] = seen.get(int(body), 0) + 1

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(seen.values()) == 200
    assert set(seen) == workers, seen  # both processes answered; the supervisor serves nothing itself


def test_sigterm_answers_every_in_flight_request_and_runs_stop_in_each_worker(serve):
    # As many threads as requests the loop below may send: none waits for the pool to grow
    # (pool growth is test_pool's), whichever worker the kernel hands the connections to.
    server = serve(PID_HANDLER, env={"PYFUNC_WORKERS": "2", "PYFUNC_THREADS": "64"})
    directory = server.directory
    gate = (directory / "go").open("wb")
    fcntl.flock(gate, fcntl.LOCK_EX)  # requests with X-Wait-For: go block until it is released
    workers = children(server.process.pid)
    answers: list[tuple[int, str]] = []
    lock = threading.Lock()

    def client(number: int) -> None:
        result = get(server.port, headers={"X-Wait-For": "go", "X-Id": str(number)})
        with lock:
            answers.append(result)

    def started_pids() -> set[int]:
        return {int(p.name.split("-")[1]) for p in directory.glob("started-*")}

    threads: list[threading.Thread] = []
    # Requests until both workers hold some (each one blocks until the flag exists).
    while started_pids() != workers and len(threads) < 64:
        thread = threading.Thread(target=client, args=(len(threads),))
        thread.start()
        threads.append(thread)
        wait_for(lambda: len(list(directory.glob("started-*"))) == len(threads), what="the request to start")
    assert started_pids() == workers
    server.process.send_signal(signal.SIGTERM)
    wait_for(lambda: server.logs().count("SIGTERM: draining") == 2, what="both workers to drain")
    with pytest.raises(OSError):  # no new connections while draining
        socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
    gate.close()  # releases the lock: every blocked request goes on
    for thread in threads:
        thread.join(60)
    assert server.process.wait(60) == 0
    assert len(answers) == len(threads)
    assert all(status == 200 for status, _ in answers), answers
    assert {int(body) for _, body in answers} == workers
    assert {int(p.name.split("-")[1]) for p in directory.glob("stopped-*")} == workers


def test_a_killed_worker_is_replaced_and_requests_keep_succeeding(serve):
    server = serve(PID_HANDLER, env={"PYFUNC_WORKERS": "2"})
    first = children(server.process.pid)
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    for _ in range(20):  # served by the survivor (the socket is shared) while the new one starts
        assert get(server.port)[0] == 200
    replaced = wait_for(lambda: (lambda now: now if len(now) == 2 and victim not in now else None)(
        children(server.process.pid)), what="a new worker")
    new = (replaced - first).pop()
    wait_for(lambda: get(server.port)[1] == str(new), what="the new worker to answer")
    assert "was killed by signal 9; starting a new one" in server.logs()
    assert server.process.poll() is None
    assert server.stop() == 0


CRASHY_START = """
import os
import pathlib

HERE = pathlib.Path(__file__).parent

def start(cfg):
    (HERE / f"worker-{cfg['PYFUNC_WORKER']}").write_text(str(os.getpid()))
    if (HERE / "broken").exists():
        raise RuntimeError("cannot start")
    if cfg["PYFUNC_WORKER"] == "1":
        while not (HERE / "go").exists():
            import time
            time.sleep(0.01)

def handler(body: bytes):
    return str(os.getpid())
"""


def test_ready_only_when_every_worker_is(serve):
    server = serve(CRASHY_START, env={"PYFUNC_WORKERS": "2"}, wait=False)
    directory = server.directory
    wait_for(lambda: "worker 0)" in server.logs(), timeout=60, what="worker 0 to be ready")
    wait_for(lambda: (directory / "worker-1").exists(), what="worker 1 to be in its start()")  # waiting for the flag
    with pytest.raises(ConnectionRefusedError):  # bound, not listening: probes get no answer yet
        socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
    (directory / "go").write_text("")
    wait_until_up(server.url, server.process, server.log_path)
    assert requests.get(server.url + "/health/readiness", timeout=10).status_code == 200
    assert "all 2 workers ready" in server.logs()


def test_a_worker_that_crash_loops_at_start_fails_the_server(serve):
    server = serve(CRASHY_START, env={"PYFUNC_WORKERS": "2"}, wait=False)
    (server.directory / "go").write_text("")
    wait_until_up(server.url, server.process, server.log_path)
    (server.directory / "broken").write_text("")
    os.kill(min(children(server.process.pid)), signal.SIGKILL)
    assert server.process.wait(60) == 1
    logs = server.logs()
    assert "before it was ready, 5 times in a row; the server stops" in logs
    assert "Traceback" not in logs.split("pyfunc: error:")[-1]


def test_a_handler_that_cannot_load_fails_once_with_its_error(tmp_path):
    (tmp_path / "handler.py").write_text("def handler(:\n")
    result = run_pyfunc(str(tmp_path), env={"PYFUNC_WORKERS": "2", "PORT": str(free_port()),
                                            "PYFUNC_HOST": "127.0.0.1"})
    assert result.returncode == 1
    assert "pyfunc: error:" in result.stderr
    assert "before it was ready; the server stops" in result.stderr


METRICS_HANDLER = """
import os

def handler(event):
    return {"type": "reply", "source": "/t"}, {"pid": os.getpid()}
"""


def test_metrics_are_summed_over_the_workers(serve):
    server = serve(METRICS_HANDLER, env={"PYFUNC_WORKERS": "2", "PYFUNC_METRICS": "true"})
    pids = set()
    for number in range(40):
        response = send(server.url, make_event({"n": number}, id=f"e{number}", type="t.sum"),
                        headers={"Connection": "close"})
        assert response.status_code == 200
        pids.add(response.json()["pid"])
    for _ in range(10):  # each scrape is answered by either worker: every one sums both
        text = requests.get(server.url + "/metrics", headers={"Connection": "close"}, timeout=10).text
        assert 'pyfunc_invocations_total{outcome="reply",type="t.sum"} 40.0' in text, text
        assert "pyfunc_in_flight_requests 0.0" in text
    assert len(pids) == 2  # both workers counted some of them
    assert server.stop() == 0


def test_workers_setting_is_checked(tmp_path):
    (tmp_path / "handler.py").write_text("def handler():\n    return 'hi'\n")
    result = run_pyfunc(str(tmp_path), env={"PYFUNC_WORKERS": "0"})
    assert result.returncode == 1
    assert "PYFUNC_WORKERS='0' is invalid: must be auto or a whole number of at least 1" in result.stderr
    assert "Traceback" not in result.stderr


def test_auto_is_the_cpus_this_process_may_use():
    from pyfunc._config import Config
    from pyfunc._workers import cpu_limit, worker_count

    assert 1 <= cpu_limit() <= len(os.sched_getaffinity(0))
    assert worker_count(Config.load({"PYFUNC_WORKERS": "auto"})) == cpu_limit()
    assert worker_count(Config.load({"PYFUNC_WORKERS": "3"})) == 3
    assert Config.load({}).workers == 1
