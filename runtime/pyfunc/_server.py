"""Serve the app under waitress, with the Knative runtime contract's lifecycle.

Startup: load and bind the handler, run ``start(cfg)``, open the port. Shutdown on SIGTERM or
SIGINT: readiness turns 503, the listening socket is closed (new connections are refused,
connections already accepted are served), in-flight requests finish for up to
``shutdown_timeout`` seconds, ``stop()`` runs, and the process exits 0. Plain waitress would
drop the in-flight requests instead.
"""

from __future__ import annotations

import inspect
import logging
import os
import select
import signal
import socket
import sys
import threading
import time

from . import _logs as logs
from . import _waitress
from ._app import FunctionApp
from ._binding import compile_binder
from ._config import Config
from ._discovery import LoadedFunction, _innermost_frame_in, app_kind, func_python_layout, load_function
from ._errors import HandlerLoadError
from ._refusals import answerer

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Optional, Union

    from ._asgi import AsgiApp
    from ._eventloop import EpollLoop
    from ._reload import ErrorApp
    from ._workers import WorkerLink
    from ._wsgiapp import WsgiApp

    # What the server serves: a plain function's app, an ASGI or WSGI app's (issue 22), or the
    # load error's page (PYFUNC_SERVE_LOAD_ERRORS).
    Served = Union[FunctionApp, AsgiApp, WsgiApp, ErrorApp]

logger = logging.getLogger("pyfunc")


def build_app(config: Config) -> Union[FunctionApp, AsgiApp, WsgiApp]:
    """Load the handler and compile its binder: every check that can fail before the port opens.

    A Knative func Python function (func-python's layout) and a handler target naming an ASGI
    or WSGI application are served whole instead (pyfunc._funcpython, pyfunc._asgi, pyfunc._wsgiapp).
    """
    if func_python_layout(config.directory, config.handler):  # --- ASGI hook (issue 22)
        from ._funcpython import load_func_python

        return load_func_python(config)
    loaded = load_function(config.directory, config.handler)
    kind = app_kind(loaded.function)
    if kind == "asgi":  # --- ASGI hook (issue 22)
        from ._asgi import asgi_loaded

        return asgi_loaded(loaded, config)
    if kind == "wsgi":
        from ._wsgiapp import WsgiApp

        return WsgiApp(loaded, config)
    binder = compile_binder(loaded.function, loaded.file)
    return FunctionApp(loaded, config, binder)


def run_start_hook(loaded: LoadedFunction) -> None:
    """``start(cfg)``: once, before the port opens; ``cfg`` is a dict of the environment."""
    hook = loaded.hooks.get("start")
    if hook is None:
        return
    try:
        takes_cfg = bool(inspect.signature(hook).parameters)
    except (TypeError, ValueError):
        takes_cfg = True
    try:
        _run_to_completion(hook(dict(os.environ)) if takes_cfg else hook())
    except HandlerLoadError:
        raise  # already says what failed (an ASGI app's lifespan startup, pyfunc._asgi)
    except Exception as exc:
        # Where in the function's directory it failed (file:line), else the module's file.
        where = _innermost_frame_in(os.path.dirname(os.path.realpath(loaded.file)), exc) if loaded.file else None
        raise HandlerLoadError(f"start() hook failed: {type(exc).__name__}: {exc}",
                               *(where or (loaded.file, None))) from exc


def _run_to_completion(result: Any) -> None:
    """Run an ``async def`` hook's result to completion (hooks run outside the request loop)."""
    if inspect.isawaitable(result):
        import asyncio

        from ._async import awaited

        asyncio.run(awaited(result))


def run_stop_hook(loaded: LoadedFunction) -> None:
    hook = loaded.hooks.get("stop")
    if hook is None:
        return
    try:
        _run_to_completion(hook())
    except Exception:
        logger.exception("stop() hook raised")


class Server:
    """A waitress server that drains instead of dropping requests when told to stop."""

    def __init__(self, app: Served, config: Config, listener: Optional[socket.socket] = None) -> None:
        """``listener``: a bound socket to serve instead of binding one (a worker of
        ``PYFUNC_WORKERS``, pyfunc._workers); the server then accepts only after :meth:`accept`."""
        from waitress.server import create_server

        self.app = app
        self.config = config
        where: dict[str, Any] = ({"host": config.host, "port": config.port} if listener is None
                                 else {"sockets": [listener], "_start": False})
        self._stopping = threading.Event()
        self._hurry = threading.Event()  # a second signal: stop waiting for in-flight requests
        self._stopped = threading.Event()
        raise_open_files_limit(config.connection_limit)
        make_loop: Any = None
        if hasattr(select, "epoll"):  # Linux; imported before the port opens (create_server), not after
            from ._eventloop import EpollLoop as make_loop
        self.waitress = create_server(
            app,
            # An elastic pool (PYFUNC_MAX_THREADS) or, when it cannot be had, waitress's own.
            _dispatcher=_waitress.thread_pool(config.threads, config.max_threads, config.thread_idle_timeout),
            **where,
            threads=config.threads,
            # waitress counts its listening socket and its wake-up pipe as connections.
            connection_limit=config.connection_limit + WAITRESS_OWN_DISPATCHERS,
            backlog=config.backlog,
            channel_timeout=int(config.channel_timeout) or 1,
            # waitress looks for stale channels every cleanup_interval (30 s by default), so a
            # short channel timeout would otherwise not be enforced for up to 30 s.
            cleanup_interval=max(1, min(30, int(config.channel_timeout / 2),
                                        int(config.receive_timeout / 2) or 30)),
            # waitress refuses a size >= its limit; pyfunc's settings are the largest size accepted.
            max_request_body_size=config.max_body_size + 1,
            max_request_header_size=config.max_header_size + 1,
            ident="pyfunc",
            expose_tracebacks=False,
            asyncore_loop_timeout=1,
            # The function sees the headers it was sent, X-Forwarded-* and Forwarded included
            # (as under pyfunc-invoker 0.1.0); waitress would drop them, since no proxy is trusted.
            clear_untrusted_proxy_headers=False,
        )
        from ._memory import budget_of

        self.body_budget = budget_of(config)  # None: no memory budget (pyfunc._memory)
        installed = _waitress.install(self.waitress, make_loop=make_loop, answer=answerer(config.access_log),
                                      defer=getattr(app, "is_async", False),
                                      receive_timeout=config.receive_timeout, body_budget=self.body_budget)
        self.loop: Optional[EpollLoop] = installed.loop
        if self.loop is not None:
            flush_access_lines = logs.defer_access_lines()
            if flush_access_lines is not None:
                self.loop.before_wait.append(flush_access_lines)
        enable_deferral = getattr(app, "enable_deferral", None)  # not the load error's page
        if installed.defers and enable_deferral is not None:
            # An async handler or an ASGI app (issue 22): parked requests, sinks made by the adapter.
            enable_deferral(_waitress.StreamSink)

    def accept(self) -> None:
        """Start accepting on a ``listener`` given to the constructor (a worker, once all are ready)."""
        if not self._stopping.is_set():
            self.waitress.accept_connections()  # type: ignore[union-attr]  # one socket: never a MultiSocketServer

    @property
    def port(self) -> int:
        return _waitress.port(self.waitress)

    def serve_forever(self) -> None:
        self.waitress.run()
        _waitress.finish_tasks(self.waitress, timeout=1)
        logs.flush_access_lines()
        self._stopped.set()

    def begin_shutdown(self, reason: str = "shutdown") -> None:
        """Start draining on a helper thread; safe to call from a signal handler, once or more.

        A second call (a second Ctrl-C) ends the wait for in-flight requests; ``stop()`` still runs.
        """
        if self._stopping.is_set():
            self._hurry.set()
            return
        self._stopping.set()
        threading.Thread(target=self._drain, args=(reason,), name="pyfunc-drain", daemon=True).start()

    # ------------------------------------------------------------------ draining

    def _drain(self, reason: str) -> None:
        self.app.draining = True
        self._in_loop(lambda: _waitress.answer_with_close(self.waitress))
        limit = self.config.shutdown_timeout
        logger.info("%s: draining in-flight requests (%s)", reason,
                    f"up to {limit}s" if limit else "until they finish; the platform's SIGKILL bounds it")
        if refuse_new_handshakes(_waitress.listener(self.waitress)):
            time.sleep(0.05)  # handshakes already under way complete and land in the accept queue
        self._in_loop(lambda: _waitress.stop_accepting(self.waitress))
        # 0: no limit of pyfunc's own. Knative sends SIGTERM only after queue-proxy has drained and
        # kills at terminationGracePeriodSeconds, which it sets to the revision's timeoutSeconds:
        # every request still in flight is one the platform allows to finish.
        deadline = time.monotonic() + limit if limit else float("inf")
        sweep = lambda: _waitress.sweep(self.waitress, self.config.channel_timeout, NEW_CONNECTION_GRACE)  # noqa: E731
        while self._in_loop(sweep):
            if time.monotonic() >= deadline:
                logger.warning("shutdown timeout reached with requests still in flight; closing them")
                break
            if self._hurry.is_set():
                logger.warning("signalled again: closing the requests still in flight")
                break
            time.sleep(0.02)
        self._in_loop(lambda: _waitress.close_everything(self.waitress))

    def _in_loop(self, thunk: Any) -> Any:
        """Run ``thunk`` on the waitress loop thread, which owns the sockets; wait for its result."""
        done = threading.Event()
        box: list[Any] = [None]

        def run() -> None:
            try:
                box[0] = thunk()
            finally:
                if self.loop is not None:
                    self.loop.recompute_everything()
                done.set()

        _waitress.run_on_loop(self.waitress, run)
        done.wait(5)
        return box[0]


# The entries of waitress's socket map that are not client connections: the listener, the trigger.
WAITRESS_OWN_DISPATCHERS = 2

# Files the process needs open besides its connections: the listener, the trigger's pipe, the
# epoll fd, the asyncio loop's own, logs, the handler's files and clients (some to spare).
OTHER_OPEN_FILES = 128


def raise_open_files_limit(connections: int) -> None:
    """Raise the soft limit on open files so ``connections`` sockets fit (up to the hard limit).

    A container's soft limit is often 1024 (the hard one much higher): with the default
    PYFUNC_CONNECTION_LIMIT of 1024 ``accept()`` would fail with EMFILE before the limit.
    """
    try:
        import resource
    except ImportError:  # not on Windows
        return
    wanted = connections + OTHER_OPEN_FILES
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY or soft >= wanted:
            return
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if target > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < wanted:
            logger.warning("the open files limit (%d) is below PYFUNC_CONNECTION_LIMIT + %d; connections "
                           "beyond about %d will fail", hard, OTHER_OPEN_FILES, target - OTHER_OPEN_FILES)
    except (OSError, ValueError) as exc:
        logger.warning("could not raise the open files limit: %s", exc)

# Seconds a connection accepted before the drain may stay silent before it is closed.
NEW_CONNECTION_GRACE = 2.0


def refuse_new_handshakes(listener: socket.socket) -> bool:
    """Linux: make the listener drop incoming SYNs, so no connection completes between the last
    ``accept()`` and ``close()``; returns whether it did.

    Closing a listening socket resets every connection the kernel completed that nobody
    accepted yet: the client connected, sent its request and gets a reset, indistinguishable
    from a request cut off mid-way. With this classic BPF socket filter (drop a segment whose
    SYN is set and ACK is not) handshakes already under way still complete and are accepted,
    while a late client's SYN is dropped; it retransmits, finds the port closed and gets a
    clean "connection refused", which is always safe to retry.
    """
    if not sys.platform.startswith("linux") or listener.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    try:
        import ctypes
        import struct

        program = struct.pack(
            "HBBI" * 5,
            0x30, 0, 0, 13,          # ldb [13]         TCP flags (the data starts at the TCP header)
            0x54, 0, 0, 0x12,        # and #0x12        SYN|ACK
            0x15, 0, 1, 0x02,        # jeq #0x02, 0, 1  only SYN: a new handshake
            0x06, 0, 0, 0,           # ret #0           drop it
            0x06, 0, 0, 0xFFFFFFFF,  # ret #-1          keep everything else
        )
        buffer = ctypes.create_string_buffer(program, len(program))
        fprog = struct.pack("HP", 5, ctypes.addressof(buffer))
        listener.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_ATTACH_FILTER", 26), fprog)
        return True
    except (OSError, ImportError, ValueError):
        return False


def serve(config: Config, worker: Optional[WorkerLink] = None) -> int:
    """Run the function server until SIGTERM/SIGINT; returns the process exit code.

    ``worker``: this process is one of ``PYFUNC_WORKERS`` (pyfunc._workers), serving its socket."""
    logs.configure(config.log_format, config.log_level)
    if worker is None and config.workers != 1:  # --- workers hook (_workers.py): the supervisor
        from ._workers import supervise

        return supervise(config)
    app: Served
    serving: Optional[Union[FunctionApp, AsgiApp, WsgiApp]] = None  # None: the load error's page
    try:
        app = build_app(config)
        run_start_hook(app.loaded)
        serving = app
    except HandlerLoadError as exc:
        if not config.serve_load_errors:
            print(f"pyfunc: error: {exc}", file=sys.stderr)
            return 1
        from ._reload import ErrorApp

        app = ErrorApp(exc, config)
    if serving is not None:
        # After start(), which may have installed a tracer provider; before the port opens, so
        # that nothing is left between the first connection and its answer.
        serving.enable_tracing()
    try:
        server = Server(app, config, worker.socket if worker is not None else None)
    except (OSError, ValueError) as exc:  # ValueError: waitress found no address for PYFUNC_HOST
        print(f"pyfunc: error: cannot listen on {config.host}:{config.port}: {getattr(exc, 'strerror', None) or exc}",
              file=sys.stderr)
        return 1

    def on_signal(signum: int, _frame: Any) -> None:
        server.begin_shutdown(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    loaded: Optional[LoadedFunction] = getattr(app, "loaded", None)
    if serving is not None:  # a function's app, or an ASGI or WSGI app's (issue 22)
        serving.on_ready()  # eventing hook (_metrics.py): the port is open, the startup time is known
    from ._cgroup import describe

    logger.info(
        "serving %s from %s on http://%s:%d (%d-%d threads; %s%s)",
        loaded.qualname if loaded else "nothing (load error)",
        os.path.abspath(config.directory), config.host, server.port, config.threads,
        max(config.threads, config.max_threads), describe(),
        f", worker {worker.index}" if worker is not None else "",
    )
    if worker is None:
        server.serve_forever()
    elif worker.ready():  # --- workers hook: accept once every worker is ready (False: stopping)
        server.accept()
        server.serve_forever()
    if loaded is not None:
        run_stop_hook(loaded)
    if serving is not None:
        serving.close()  # its event loop and call threads, which stop() may have used
    tracing = getattr(app, "tracing", None)
    if tracing is not None:
        tracing.shutdown()  # after stop(), whose own spans are exported too
    logs.flush_access_lines()  # lines of calls that outlived the drain and ended during stop()
    logger.info("stopped")
    logging.shutdown()
    return 0

