"""What a worker thread is doing, read from the kernel: the elastic pool's evidence of "blocked".

The pool (see ``ElasticDispatcher`` in pyfunc._waitress.pool) grows only when its workers are blocked
(in ``time.sleep``, a socket, a lock), never when they compute: under the GIL more threads would
only share the same core. Two readings of a worker thread answer "is it computing", each covering
the other's blind spot:

- its busy time, Linux's ``/proc/self/task/<tid>/schedstat``: nanoseconds on a CPU *plus* time
  spent runnable in a run queue. It says a worker ran, or wanted to, whatever share of a core
  the process gets. But the kernel adds a wait to it only when the wait *ends* (when the thread
  gets a CPU): a worker that has been runnable for the whole look, on a loaded machine or in a
  cgroup throttled by its CPU quota, shows no progress at all yet. Two such looks in a row took
  computing workers for blocked ones (the pool grew from 3 to 18 threads on a busy CI machine).
- its state, field 3 of ``/proc/self/task/<tid>/stat``: ``R`` is running or runnable (waiting for
  a CPU, or for its cgroup's quota to refill), ``S``/``D`` asleep in the kernel (a blocking call,
  or the GIL). Read when the busy time says "idle", it sees exactly that waiting worker as
  runnable. It cannot see a worker that computes under the GIL: the reader holds the GIL while
  it reads, so that worker is asleep waiting for it, but the busy time has counted its running.

So a worker is computing when its busy time advanced, or when it is runnable now; blocked
workers are asleep and their busy time stands still, however loaded the machine is. Where there
is no schedstat (CONFIG_SCHED_INFO off) the thread's CPU clock stands in for the busy time; where
threads have no CPU clock (macOS, Windows) there is no reader and the pool uses the process's CPU.
"""

from __future__ import annotations

import os
import threading
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Callable, Iterable, Optional

__all__ = ["ThreadProbe", "busy_reader", "any_runnable"]


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 512)
    finally:
        os.close(fd)


def _schedstat_seconds(path: str) -> float:
    """A thread's schedstat: nanoseconds on a CPU, nanoseconds waiting for one, timeslices."""
    running, waiting = _read(path).split()[:2]
    return (int(running) + int(waiting)) / 1e9


def _state(path: str) -> bytes:
    """A thread's state letter from its ``stat``: after the ``(comm)``, which may hold spaces or ')'."""
    data = _read(path)
    return data[data.rindex(b")") + 2:][:1]


class ThreadProbe:
    """The calling thread's busy time (call it) and whether it is runnable now (:meth:`runnable`).

    Made by the thread itself (:func:`busy_reader`), read by another (the pool's watcher).
    ``waits_counted``: the busy time includes waits for a CPU (schedstat), not just CPU time.
    """

    __slots__ = ("_busy", "_stat", "waits_counted")

    def __init__(self, busy: Callable[[], float], stat: Optional[str], waits_counted: bool) -> None:
        self._busy = busy
        self._stat = stat
        self.waits_counted = waits_counted

    def __call__(self) -> float:
        """Seconds the thread has run (and, with ``waits_counted``, waited to run); raises
        OSError or ValueError once the thread has ended."""
        return self._busy()

    def runnable(self) -> bool:
        """The thread is running or waiting for a CPU now (False once it ended, or unknown)."""
        if self._stat is None:
            return False
        try:
            return _state(self._stat) == b"R"
        except (OSError, ValueError):
            return False


def busy_reader() -> Optional[ThreadProbe]:
    """A probe of the calling thread: schedstat and stat where Linux has them, else its CPU
    clock (no state), else None (no per-thread clock: macOS, Windows)."""
    try:
        task = f"/proc/self/task/{threading.get_native_id()}/"
        _schedstat_seconds(task + "schedstat")
        _state(task + "stat")
        schedstat = task + "schedstat"
        return ThreadProbe(lambda: _schedstat_seconds(schedstat), task + "stat", True)
    except (AttributeError, OSError, ValueError):
        pass
    try:
        clock = time.pthread_getcpuclockid(threading.get_ident())
        time.clock_gettime(clock)
    except (AttributeError, OSError):
        return None
    return ThreadProbe(lambda: time.clock_gettime(clock), None, False)


def any_runnable(probes: Iterable[Callable[[], float]]) -> bool:
    """Some of these threads (probes from :func:`busy_reader`) is running or runnable now."""
    return any(isinstance(probe, ThreadProbe) and probe.runnable() for probe in probes)
