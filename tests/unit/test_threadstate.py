"""pyfunc._threadstate on real threads: a thread asleep is not runnable, one computing outside
the GIL is, and one that ended reads as gone (never as runnable)."""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time

import pytest

from pyfunc import _threadstate

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _probe_of(target) -> tuple[threading.Thread, _threadstate.ThreadProbe]:
    probes: list[_threadstate.ThreadProbe] = []
    ready = threading.Event()

    def run() -> None:
        probe = _threadstate.busy_reader()
        assert probe is not None
        probes.append(probe)
        ready.set()
        target()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(30)
    return thread, probes[0]


def test_a_sleeping_thread_is_not_runnable_and_its_busy_time_stands_still() -> None:
    release = threading.Event()
    thread, probe = _probe_of(lambda: release.wait(60))
    try:
        assert probe.waits_counted
        time.sleep(0.05)
        before = probe()
        time.sleep(0.2)
        assert not probe.runnable()
        assert not _threadstate.any_runnable([probe])
        assert probe() - before < 0.01  # a wake-up or two, never the 0.2 s
    finally:
        release.set()
        thread.join(10)


def test_a_thread_computing_outside_the_gil_is_runnable() -> None:
    """hashlib hashes big buffers with the GIL released: the thread stays running (or, on a
    loaded machine, runnable) while this one reads its state, however busy the machine is."""
    stop = threading.Event()
    data = b"x" * (8 << 20)

    def compute() -> None:
        while not stop.is_set():
            hashlib.sha256(data).digest()

    thread, probe = _probe_of(compute)
    try:
        time.sleep(0.05)
        # Between two hashes it takes the GIL back for a loop turn and may wait for it (asleep).
        seen = [probe.runnable() for _ in range(20)]
        assert seen.count(True) >= 15, seen
    finally:
        stop.set()
        thread.join(30)


def test_an_ended_thread_is_gone_not_runnable() -> None:
    """join() returns before the kernel has reaped the thread (it is still running its exit):
    once its /proc entry is gone, it reads as not runnable and its busy time raises."""
    ids: list[int] = []
    thread, probe = _probe_of(lambda: ids.append(threading.get_native_id()))
    thread.join(10)
    deadline = time.monotonic() + 30
    while os.path.exists(f"/proc/self/task/{ids[0]}") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not probe.runnable()
    with pytest.raises((OSError, ValueError)):
        probe()
