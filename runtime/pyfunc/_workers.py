"""``PYFUNC_WORKERS=N|auto``: N server processes sharing one port, under a small supervisor.

The GIL lets one process use one core. A CPU-bound handler on a pod with two CPUs gets the
throughput of one unless there are two processes, as gunicorn's workers or ``uvicorn
--workers`` give. This module is that, for pyfunc:

* **One socket, bound once, by the parent** (pre-fork), not ``SO_REUSEPORT`` in each worker. With
  a shared socket there is one accept queue: a worker that dies leaves the connections the kernel
  completed for it in the queue, where the others accept them (with ``SO_REUSEPORT`` each worker
  has its own queue, and its queued connections are reset with it); a port already taken fails
  once, before any worker runs; and the drain's SYN filter (``_server.refuse_new_handshakes``)
  applies to the one socket every worker accepts from.
* **The parent loads nothing of the function.** It forks each worker right after binding, from a
  process that has imported pyfunc's own modules only and runs no thread, so a fork is safe and
  saves each worker the interpreter's start; each worker then loads the handler and runs
  ``start(cfg)`` itself (gunicorn's default, no ``--preload``): a client, thread or connection
  the handler's import or ``start()`` makes is the worker's own, never shared through a fork.
* **Ready only when every worker is.** The socket is bound but not listening until every worker
  has loaded its handler, run ``start()`` and built its server, and said so on a pipe: until then
  a connection (a readiness probe too) is refused, as a single process's port is closed until it
  is ready. The parent then listens and tells every worker to start accepting. A probe is answered
  by whichever worker accepts it, with that worker's ``ready()`` hook.
* **SIGTERM (or SIGINT) drains every worker.** The parent passes the signal on (a second one too:
  it cuts the drain short, as for a single process) and waits for the workers, each of which
  drains its in-flight requests and runs ``stop()`` as a single process does, then exits.
* **A worker that dies is replaced.** One that was serving is restarted at once, then with a
  backoff (0.1 s doubling to 10 s) while replacements keep dying within 10 s of their start. A
  worker that exits before it is ready, while the server starts (a handler that fails to load, a
  ``start()`` that raises), stops the whole server with exit code 1, as a single process would
  exit; later, 5 replacements in a row dying before they are ready do the same.
* **Metrics** (``PYFUNC_METRICS=true``) are summed over the workers: prometheus_client's
  multiprocess mode, in a directory the parent makes (``PROMETHEUS_MULTIPROC_DIR``, unless set)
  and removes at exit. A scrape answered by any worker counts every worker's invocations,
  including the ones of workers that have since died.
* Each worker has its own thread pool (``PYFUNC_THREADS``/``PYFUNC_MAX_THREADS`` are per worker),
  its own ``PYFUNC_DEDUPE=memory`` store (a duplicate reaching another worker runs again: use
  Redis to share it) and its own ``PYFUNC_MAX_CONCURRENCY``. ``PYFUNC_WORKER`` (0…N-1) in the
  worker's environment, and so in ``start(cfg)``'s ``cfg``, says which one it is.

Linux only (``fork``, ``prctl``); a worker whose parent is killed outright (SIGKILL) is sent
SIGTERM by the kernel (``PR_SET_PDEATHSIG``), so it drains and exits instead of lingering.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import select
import signal
import socket
import sys
import time

from ._config import Config

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Optional

__all__ = ["WorkerLink", "cpu_limit", "supervise", "worker_count"]

logger = logging.getLogger("pyfunc")

# Restart backoff: the first replacement at once, then doubling from BACKOFF_MIN up to
# BACKOFF_MAX while replacements keep dying within STABLE seconds of their start.
BACKOFF_MIN = 0.1
BACKOFF_MAX = 10.0
STABLE = 10.0
# Replacements in a row that exit before they are ready: the server gives up.
MAX_START_FAILURES = 5
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
WORKER_ENV = "PYFUNC_WORKER"


def cpu_limit() -> int:
    """CPUs this process may use: the cgroup's CPU quota rounded up (a pod's ``limits.cpu``),
    else the CPUs it may run on (its affinity), else the machine's."""
    try:
        available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        available = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        return max(1, min(available, quota))
    return max(1, available)


def _cgroup_quota() -> Optional[int]:
    """cgroup v2 ``cpu.max`` ("200000 100000": 2 CPUs) or v1's cfs quota/period; None when unlimited."""
    import math

    try:
        with open("/sys/fs/cgroup/cpu.max") as cpu_max:
            quota, _, period = cpu_max.read().strip().partition(" ")
        if quota != "max":
            return math.ceil(int(quota) / int(period or 100000))
        return None
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as q, open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as p:
            quota_us, period_us = int(q.read()), int(p.read())
        return math.ceil(quota_us / period_us) if quota_us > 0 and period_us > 0 else None
    except (OSError, ValueError):
        return None


def worker_count(config: Config) -> int:
    """``PYFUNC_WORKERS`` as a number (``auto``, stored as 0, resolved by :func:`cpu_limit`)."""
    return config.workers or cpu_limit()


class WorkerLink:
    """A worker's end of the supervisor: the shared socket and the two pipes of the start.

    ``_server.serve`` builds its server on :attr:`socket` without accepting, then calls
    :meth:`ready`, which reports to the parent and returns once the parent says every worker is
    ready (or is stopping: the worker then drains at once).
    """

    def __init__(self, index: int, sock: socket.socket, ready_fd: int, go_fd: int) -> None:
        self.index = index
        self.socket = sock
        self._ready_fd = ready_fd
        self._go_fd = go_fd

    def ready(self) -> bool:
        """Report ready; True once told to accept, False when the server stops first."""
        try:
            os.write(self._ready_fd, b"R")
            os.close(self._ready_fd)
        except OSError:
            pass  # the parent is gone: PR_SET_PDEATHSIG ends this worker
        try:
            return os.read(self._go_fd, 1) == b"G"  # EOF: the parent is stopping (or gone)
        except OSError:
            return False
        finally:
            os.close(self._go_fd)


class _Slot:
    """One worker position (0…N-1): its current process and restart bookkeeping."""

    __slots__ = ("index", "pid", "ready_fd", "go_fd", "ready", "started", "backoff", "start_failures",
                 "restart_at")

    def __init__(self, index: int) -> None:
        self.index = index
        self.pid = 0
        self.ready_fd = -1  # the parent's read end of the worker's ready pipe
        self.go_fd = -1  # the parent's write end of its go pipe
        self.ready = False
        self.started = 0.0
        self.backoff = 0.0
        self.start_failures = 0
        self.restart_at: Optional[float] = None


class Supervisor:
    """The parent: binds, forks, gates readiness, forwards signals, restarts, reaps."""

    def __init__(self, config: Config, count: int) -> None:
        self.config = config
        self.slots = [_Slot(index) for index in range(count)]
        self.listening = False
        self.stopping = 0  # signals received
        self.forwarded = 0
        self.failure: Optional[str] = None
        self.exit_codes: list[int] = []
        self.metrics_dir: Optional[str] = None
        self.sock: Optional[socket.socket] = None
        self._wake_r, self._wake_w = os.pipe()

    # ------------------------------------------------------------------ parent

    def run(self) -> int:
        try:
            self.sock = _bind(self.config.host, self.config.port)
        except OSError as exc:
            print(f"pyfunc: error: cannot listen on {self.config.host}:{self.config.port}: {exc.strerror or exc}",
                  file=sys.stderr)
            return 1
        if self.config.metrics and not os.environ.get(MULTIPROC_ENV):
            import tempfile

            self.metrics_dir = tempfile.mkdtemp(prefix="pyfunc-metrics-")
            os.environ[MULTIPROC_ENV] = self.metrics_dir
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake select() through the wakeup fd
        old_wakeup = signal.set_wakeup_fd(self._wake_w)
        try:
            logger.info("starting %d workers", len(self.slots))
            for slot in self.slots:
                self._spawn(slot)
            while self._alive() or (not self.stopping and self.failure is None):
                self._step()
        finally:
            signal.set_wakeup_fd(old_wakeup)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._close_listener()
            if self.metrics_dir is not None:
                import shutil

                shutil.rmtree(self.metrics_dir, ignore_errors=True)
                os.environ.pop(MULTIPROC_ENV, None)
        if self.failure is not None:
            print(f"pyfunc: error: {self.failure}", file=sys.stderr)
            return 1
        logger.info("stopped")
        # A worker still starting when SIGTERM came ends by it (its handler was not installed yet).
        return 0 if all(code in (0, -signal.SIGTERM) for code in self.exit_codes) else 1

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stopping += 1

    def _alive(self) -> bool:
        return any(slot.pid for slot in self.slots)

    def _step(self) -> None:
        now = time.monotonic()
        pending = [slot.restart_at for slot in self.slots if slot.restart_at is not None]
        timeout = max(0.0, min(pending) - now) if pending else 1.0
        readers = [self._wake_r] + [slot.ready_fd for slot in self.slots if slot.ready_fd >= 0]
        try:
            readable, _, _ = select.select(readers, [], [], timeout)
        except InterruptedError:
            readable = []
        if self._wake_r in readable:
            try:
                while os.read(self._wake_r, 512):
                    pass
            except BlockingIOError:
                pass
        if self.stopping > self.forwarded:
            self._forward()
        self._reap()
        for slot in self.slots:
            if slot.ready_fd in readable and slot.ready_fd >= 0:
                self._on_ready(slot)
        if not self.stopping and self.failure is None:
            now = time.monotonic()
            for slot in self.slots:
                if slot.restart_at is not None and slot.restart_at <= now:
                    slot.restart_at = None
                    self._spawn(slot)

    def _forward(self) -> None:
        """SIGTERM (or a second one: hurry) to every worker; no listening, no restarts from now on."""
        first = self.forwarded == 0
        self.forwarded = self.stopping
        if first:
            logger.info("stopping: draining %d workers", sum(1 for slot in self.slots if slot.pid))
            for slot in self.slots:
                slot.restart_at = None
                self._close_go(slot)  # a worker waiting to be told to accept goes on, and drains
            self._close_listener()
        for slot in self.slots:
            if slot.pid:
                _kill(slot.pid, signal.SIGTERM)

    def _fail(self, message: str) -> None:
        """Give up: stop every worker (drained as on SIGTERM) and exit 1 once they are gone."""
        if self.failure is None:
            self.failure = message
            self.stopping += 1
            self._forward()

    def _on_ready(self, slot: _Slot) -> None:
        try:
            data = os.read(slot.ready_fd, 1)
        except OSError:
            data = b""
        os.close(slot.ready_fd)
        slot.ready_fd = -1
        if data != b"R":
            return  # EOF: the worker exited before it was ready; _reap deals with it
        slot.ready = True
        slot.start_failures = 0
        if self.stopping:
            return
        if self.listening:
            self._go(slot)  # a replacement: the others serve, it joins them
        elif all(s.ready for s in self.slots):
            assert self.sock is not None
            self.sock.listen(self.config.backlog)
            self.listening = True
            for each in self.slots:
                self._go(each)
            logger.info("all %d workers ready on http://%s:%d", len(self.slots), self.config.host,
                        self.sock.getsockname()[1])

    def _go(self, slot: _Slot) -> None:
        if slot.go_fd >= 0:
            try:
                os.write(slot.go_fd, b"G")
            except OSError:
                pass
            self._close_go(slot)

    @staticmethod
    def _close_go(slot: _Slot) -> None:
        if slot.go_fd >= 0:
            os.close(slot.go_fd)
            slot.go_fd = -1

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot = next((s for s in self.slots if s.pid == pid), None)
            if slot is None:
                continue
            self._exited(slot, os.waitstatus_to_exitcode(status))

    def _exited(self, slot: _Slot, code: int) -> None:
        pid, slot.pid = slot.pid, 0
        if slot.ready_fd >= 0:
            os.close(slot.ready_fd)
            slot.ready_fd = -1
        self._close_go(slot)
        was_ready, slot.ready = slot.ready, False
        self._forget_metrics(pid)
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        if self.stopping:
            self.exit_codes.append(code)
            logger.debug("worker %d (pid %d) %s", slot.index, pid, how)
            return
        if not was_ready:
            if not self.listening:
                self._fail(f"worker {slot.index} (pid {pid}) {how} before it was ready; the server stops")
                return
            slot.start_failures += 1
            if slot.start_failures >= MAX_START_FAILURES:
                self._fail(f"worker {slot.index} {how} before it was ready, {slot.start_failures} times in "
                           f"a row; the server stops")
                return
        lived = time.monotonic() - slot.started
        slot.backoff = 0.0 if lived >= STABLE else min(BACKOFF_MAX, max(BACKOFF_MIN, slot.backoff * 2))
        logger.warning("worker %d (pid %d) %s; starting a new one%s", slot.index, pid, how,
                       f" in {slot.backoff:g}s" if slot.backoff else "")
        slot.restart_at = time.monotonic() + slot.backoff

    def _forget_metrics(self, pid: int) -> None:
        """prometheus_client's ``mark_process_dead``: a dead worker's live gauges stop counting
        (its counters and histograms stay: totals include the invocations it served)."""
        directory = os.environ.get(MULTIPROC_ENV) if self.config.metrics else None
        if not directory:
            return
        import glob

        for path in glob.glob(os.path.join(directory, f"gauge_live*_{pid}.db")):
            try:
                os.remove(path)
            except OSError:
                pass

    def _spawn(self, slot: _Slot) -> None:
        assert self.sock is not None
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe()
        slot.started = time.monotonic()
        slot.ready = False
        parent = os.getpid()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the supervisor's frames
            code = 1
            try:
                os.close(ready_r)
                os.close(go_w)
                code = self._become_worker(slot.index, parent, ready_w, go_r)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:  # noqa: BLE001 - the worker's last word, then its exit
                import traceback

                traceback.print_exc()
            finally:
                _exit(code)
        os.close(ready_w)
        os.close(go_r)
        slot.pid, slot.ready_fd, slot.go_fd = pid, ready_r, go_w

    def _become_worker(self, index: int, parent: int, ready_fd: int, go_fd: int) -> int:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        for fd in [self._wake_r, self._wake_w] + [fd for s in self.slots for fd in (s.ready_fd, s.go_fd)]:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        _die_with_parent(parent)
        # Its own process group: a terminal's Ctrl-C reaches the parent only, which passes it on
        # once (twice would cut the drain short).
        try:
            os.setpgid(0, 0)
        except OSError:
            pass
        os.environ[WORKER_ENV] = str(index)
        from ._server import serve

        assert self.sock is not None
        return serve(self.config, worker=WorkerLink(index, self.sock, ready_fd, go_fd))

    def _close_listener(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def supervise(config: Config) -> int:
    """Serve ``config`` with :func:`worker_count` workers; returns the exit code."""
    count = worker_count(config)
    if count == 1:
        from ._server import serve

        return serve(dataclasses.replace(config, workers=1))
    if not hasattr(os, "fork"):
        print("pyfunc: error: PYFUNC_WORKERS above 1 needs fork (Linux, macOS)", file=sys.stderr)
        return 1
    return Supervisor(config, count).run()


def _bind(host: str, port: int) -> socket.socket:
    """The shared socket, bound and not yet listening (waitress's options: SO_REUSEADDR)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(False)
    return sock


def _die_with_parent(parent: int) -> None:
    """Linux: SIGTERM to this worker when the supervisor dies (even by SIGKILL)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # it died before the prctl
        os.kill(os.getpid(), signal.SIGTERM)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _exit(code: int) -> None:
    """End a worker: its atexit hooks (dedup releases its claims), its buffered output, then
    ``os._exit``: unwinding would run the supervisor's ``finally`` blocks in the worker."""
    try:
        import atexit

        atexit._run_exitfuncs()
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)
