"""The elastic thread pool: waitress's dispatcher, grown when its workers are blocked."""

from __future__ import annotations

import inspect
import threading
import time

from waitress.task import ThreadedTaskDispatcher

from .. import _threadstate
from .contract import _has, logger, waitress_version

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Callable, Optional

__all__ = ["ElasticDispatcher", "pool_contract_problems", "thread_pool"]

STARVATION_TICK = 0.01  # seconds between looks at a queue that waits for a worker
# The workers' busy time (see _busy_reader) advanced, summed, by at least this share of the
# starved ticks: they are computing, not blocked. Blocked workers' stand still: measured, at most
# 0.4% of a tick for all of them together (each wakes for a few µs at most). A computing pool's
# GIL holder is always running or waiting for a CPU, so with Linux's run-queue wait counted the
# sum is about the whole tick whatever else loads the machine (with CPU clocks alone, where there
# is no schedstat, it is the share of a core the holder gets: a median of 20-40% of each tick
# with 3-4 busy loops on top of a loaded CI machine's jobs on 2 cores, and under 5% at worst).
# The share is taken over the whole run of starved ticks, which the decision to grow rests on.
WORKERS_BUSY = 0.05
CPU_BUSY = 0.5  # without per-thread clocks: the process used at least this share of a core
STARVED = 0.5  # seconds with tasks waiting and none finished: grow even if the workers look busy
STRIKES = 2  # consecutive starved ticks before the pool grows (one can be a scheduling hiccup)
BUSY_TICK = 0.1  # the longest look interval, reached while the workers keep finishing tasks


# The workers' busy-time and state readers (pyfunc._threadstate): one per worker thread.
_busy_reader = _threadstate.busy_reader


class ElasticDispatcher(ThreadedTaskDispatcher):
    """waitress's thread pool, grown when its workers are *blocked* and shrunk when they idle.

    ``core`` threads are always there; beyond them up to ``maximum`` are started when tasks
    wait and the workers are stuck (in ``time.sleep``, a socket, a lock), and each extra
    thread ends after ``idle_timeout`` seconds without work.

    Growth is decided like .NET's thread pool, by starvation: a watcher looks at the queue
    every ``STARVATION_TICK`` while it holds tasks no idle worker will take, and starts
    threads for all of them at once when, for ``STRIKES`` ticks in a row, no task finished
    *and* the workers did not compute, while the watcher itself got the CPU on time (a late
    wake-up means a CPU-starved process, not blocked workers). Half a second of tasks waiting
    without any finishing grows the pool regardless (counted from when they began to wait, not
    from a task that finished before an idle spell), unless the workers' busy time counts their
    wait for a CPU and says they are busy: on a machine so loaded that a task takes longer.
    While tasks keep finishing, the watcher looks less and less often (up to every
    ``BUSY_TICK``), and once nothing waits it sleeps until :meth:`add_task` wakes it. Workers
    that compute keep finishing tasks or stay busy, so a CPU-bound load never grows the pool:
    under the GIL more threads would only share the same core. A load that blocks leaves the
    workers idle with tasks waiting, and gets a thread per waiting task within a tick or two.

    Whether the workers computed is read from their own busy time (each worker finds its reader
    once, when it starts: Linux's per-thread schedstat, CPU time plus time waiting for a CPU, or
    else its CPU clock): summed, it advances by ``WORKERS_BUSY`` of the run of starved ticks or
    more (see there for the threshold). Why not the process's CPU time (``time.process_time``),
    as before: it asks whether the *process* got half a core, and a process whose workers compute
    gets less than that when other processes load the machine, so it looked blocked and the pool
    grew for nothing; it also counted the event loop's and other threads' work. A thread's busy
    time only says whether *it* ran or wanted to: a blocked worker's stands still whatever the
    machine does, and a computing worker's advances by the whole tick with the run-queue wait
    counted (by whatever share of a core it gets, with its CPU clock alone). Under the GIL one
    busy worker runs at a time and the others wait for it (asleep, not runnable), their
    clocks still; the sum over the workers is the GIL holder's time, so a pool waiting for the
    GIL counts as computing, as it should (more threads would only wait too). Idle workers wait
    on the queue with their clocks still, so the watcher reads every worker's clock and need not
    know which ones are busy: the per-task path pays nothing for it (and when the watcher ticks,
    tasks wait for a worker, so nearly all of them are busy anyway). A worker that ends during a
    run of ticks is left out (its clock raises), one that starts is counted from the next run.
    Where threads have no CPU clock (macOS, Windows) the process rule is used, chosen once here.
    A run whose busy time stood still still counts as computing when a worker is runnable at its
    end: the kernel adds a wait for a CPU to the busy time only when it ends (pyfunc._threadstate).
    """

    def __init__(self, core: int, maximum: int, idle_timeout: float) -> None:
        super().__init__()
        self.core = core
        self.maximum = max(core, maximum)
        self.idle_timeout = idle_timeout
        self.last_done = time.monotonic()  # when a worker last finished a task
        self.grown = 0  # threads started by the watcher (for tests and logs)
        self._watcher_cv = threading.Condition(self.lock)
        self._watcher: Optional[threading.Thread] = None
        self._watching = False  # the watcher ticks (else it waits for add_task to wake it)
        self._closing = False
        self._clocks: dict[int, _threadstate.ThreadProbe] = {}  # thread number -> its busy-time reader (under the lock)
        reader = _busy_reader()
        self._thread_clocks = reader is not None
        # With the run-queue wait counted, busy time cannot be fooled by a loaded machine: then
        # even tasks that wait half a second grow the pool only if the workers are not busy.
        self._waits_counted = reader is not None and reader.waits_counted
        # Starts a measure of the workers' CPU; what it returns tells, later, whether they computed since.
        self._cpu_meter = self._workers_meter if self._thread_clocks else self._process_meter

    def start_new_thread(self, target: Any, thread_no: int) -> None:
        threading.Thread(target=target, name=f"pyfunc-worker-{thread_no}", args=(thread_no,), daemon=True).start()

    def _idle(self) -> int:
        return len(self.threads) - self.stop_count - self.active_count

    def _starving(self) -> bool:
        queued = len(self.queue)
        return (not self._closing and queued > 0 and queued > self._idle()
                and len(self.threads) - self.stop_count < self.maximum)

    def handler_thread(self, thread_no: int) -> None:
        if self._thread_clocks:
            clock = _busy_reader()  # once per thread: the per-task loop below reads nothing
            if clock is not None:
                with self.lock:
                    self._clocks[thread_no] = clock
        while True:
            with self.lock:
                while not self.queue and self.stop_count == 0:
                    self.active_count -= 1
                    # Only a thread beyond the core retires; the core ones wait without a timeout.
                    woken = self.queue_cv.wait(self.idle_timeout if len(self.threads) > self.core else None)
                    self.active_count += 1
                    if (not woken and not self.queue and self.stop_count == 0
                            and len(self.threads) > self.core):
                        self.active_count -= 1  # retire: an extra thread idle for idle_timeout
                        self.threads.discard(thread_no)
                        self._clocks.pop(thread_no, None)
                        self.thread_exit_cv.notify()
                        return
                if self.stop_count > 0:
                    self.active_count -= 1
                    self.stop_count -= 1
                    self.threads.discard(thread_no)
                    self._clocks.pop(thread_no, None)
                    self.thread_exit_cv.notify()
                    return
                task = self.queue.popleft()
            try:
                task.service()
            except BaseException:
                self.logger.exception("Exception when servicing %r", task)
            self.last_done = time.monotonic()
            del task

    def add_task(self, task: Any) -> None:
        with self.lock:
            self.queue.append(task)
            self.queue_cv.notify()
            # The watcher is told only when it sleeps on the condition (not while it ticks), so a
            # steadily busy pool pays one comparison per task here.
            if not self._watching and self._starving():
                self._watching = True
                if self._watcher is None:
                    self._watcher = threading.Thread(target=self._watch, name="pyfunc-pool", daemon=True)
                    self._watcher.start()
                else:
                    self._watcher_cv.notify()

    def _workers_meter(self) -> Callable[[float], bool]:
        """Read every worker's busy time now; the result tells, given the seconds since, whether
        they were busy ``WORKERS_BUSY`` of them (summed) until it is called."""
        with self.lock:
            clocks = list(self._clocks.values())
        start: list[tuple[_threadstate.ThreadProbe, float]] = []
        for clock in clocks:
            try:
                start.append((clock, clock()))
            except (OSError, ValueError):  # the thread has just ended
                pass

        def computing(elapsed: float) -> bool:
            used = 0.0
            for clock, then in start:
                try:
                    used += clock() - then
                except (OSError, ValueError):  # the thread ended during the tick: left out
                    pass
            # Busy time counts a wait for a CPU only once it ends: a worker runnable all along
            # (a loaded machine, a throttled CPU quota) shows none yet, but its state does.
            return used >= WORKERS_BUSY * elapsed or _threadstate.any_runnable(clock for clock, _ in start)

        return computing

    def _process_meter(self) -> Callable[[float], bool]:
        """The fallback without per-thread clocks: did the process use ``CPU_BUSY`` of a core."""
        cpu = time.process_time()
        return lambda elapsed: time.process_time() - cpu >= CPU_BUSY * elapsed

    def _watch(self) -> None:
        strikes = 0  # consecutive ticks that looked starved
        tick = STARVATION_TICK
        waiting_since = time.monotonic()  # tasks wait for a worker since then (add_task started the watcher)
        computing = self._cpu_meter()  # measures a run of starved ticks: started anew when one begins
        run_start = waiting_since
        while True:
            with self.lock:
                while not self._starving():
                    strikes, tick = 0, STARVATION_TICK
                    if self._closing:
                        return
                    self._watching = False
                    self._watcher_cv.wait()
                    waiting_since = time.monotonic()  # add_task woke it: tasks wait again
                self._watching = True
            if strikes == 0:  # a new run of starved ticks: the workers' CPU is measured over all of it
                computing, run_start = self._cpu_meter(), time.monotonic()
            wall, slept = time.monotonic(), tick
            time.sleep(slept)
            with self.lock:
                now = time.monotonic()
                if not self._starving():
                    strikes, waiting_since = 0, now  # any task that waits from now on waits anew
                    continue
                if now - self.last_done < slept:
                    # Tasks finish: a busy pool, whose queue is normal. Look less often while it
                    # stays so (a load that turns to blocking is seen within BUSY_TICK).
                    strikes, tick = 0, min(BUSY_TICK, tick * 2)
                    continue
                tick = STARVATION_TICK
                if now - max(self.last_done, waiting_since) >= STARVED and not (
                        self._waits_counted and computing(now - run_start)):
                    strikes = STRIKES  # blocked for long, whatever the CPU says (a CPU clock can miss a busy pool)
                elif now - wall > 2 * slept:
                    # The watcher itself woke late: the process is short of CPU (a busy machine, a
                    # CPU quota), which stalls computing workers too. Not a sign of blocked ones.
                    strikes = 0
                    continue
                elif computing(now - run_start):
                    strikes = 0  # computing
                    continue
                strikes += 1
                if strikes >= STRIKES:
                    strikes = 0
                    self._grow(len(self.queue) - self._idle())

    def _grow(self, count: int) -> None:
        """Start ``count`` threads, up to ``maximum``; called with the lock held."""
        threads = self.threads
        thread_no = 0
        for _ in range(min(count, self.maximum - (len(threads) - self.stop_count))):
            while thread_no in threads:
                thread_no += 1
            threads.add(thread_no)
            self.active_count += 1
            self.grown += 1
            self.start_new_thread(self.handler_thread, thread_no)

    def shutdown(self, cancel_pending: bool = True, timeout: float = 5) -> bool:
        with self.lock:
            self._closing = True
            self._watcher_cv.notify_all()  # a waiting watcher returns
        return bool(super().shutdown(cancel_pending=cancel_pending, timeout=timeout))  # type: ignore[arg-type]


def pool_contract_problems() -> list[str]:
    """What :class:`ElasticDispatcher` relies on in waitress's dispatcher; [] when all holds."""
    probe = ThreadedTaskDispatcher()
    checks = [
        *(None if hasattr(probe, name) else f"ThreadedTaskDispatcher.{name} is missing"
          for name in ("threads", "queue", "lock", "queue_cv", "thread_exit_cv", "active_count", "stop_count")),
        _has(ThreadedTaskDispatcher, "set_thread_count", ("self", "count")),
        _has(ThreadedTaskDispatcher, "shutdown", ("self", "cancel_pending", "timeout")),
        _has(ThreadedTaskDispatcher, "start_new_thread", ("self", "target", "thread_no")),
        None if "_dispatcher" in inspect.signature(_create_server()).parameters
        else "create_server(_dispatcher=) is missing",
    ]
    return [problem for problem in checks if problem]


def _create_server() -> Callable[..., Any]:
    from waitress.server import create_server

    return create_server


def thread_pool(core: int, maximum: int, idle_timeout: float) -> Optional[ThreadedTaskDispatcher]:
    """The dispatcher to give ``create_server(_dispatcher=)``: an elastic one, or None (waitress's
    fixed pool of ``core`` threads) after one warning when waitress lacks what it relies on."""
    if maximum <= core:
        return None
    problems = pool_contract_problems()
    if problems:
        logger.warning("waitress %s lacks what pyfunc's elastic thread pool relies on (%s); serving with "
                       "a fixed pool of %d threads", waitress_version(), "; ".join(problems), core)
        return None
    dispatcher = ElasticDispatcher(core, maximum, idle_timeout)
    dispatcher.set_thread_count(core)  # create_server sets the count only of a dispatcher it makes
    return dispatcher
