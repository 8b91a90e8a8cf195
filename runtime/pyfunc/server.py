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
import signal
import socket
import sys
import threading
import time
from typing import Any, Optional

from . import logs
from .app import FunctionApp
from .binding import compile_binder
from .config import Config
from .discovery import LoadedFunction, load_function
from .errors import HandlerLoadError

logger = logging.getLogger("pyfunc")


def build_app(config: Config) -> FunctionApp:
    """Load the handler and compile its binder: every check that can fail before the port opens."""
    loaded = load_function(config.directory, config.handler)
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
        result = hook(dict(os.environ)) if takes_cfg else hook()
        if inspect.isawaitable(result):
            import asyncio

            asyncio.run(_awaited(result))
    except Exception as exc:
        raise HandlerLoadError(f"start() hook failed: {type(exc).__name__}: {exc}", loaded.file) from exc


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def run_stop_hook(loaded: LoadedFunction) -> None:
    hook = loaded.hooks.get("stop")
    if hook is None:
        return
    try:
        result = hook()
        if inspect.isawaitable(result):
            import asyncio

            asyncio.run(_awaited(result))
    except Exception:
        logger.exception("stop() hook raised")


class Server:
    """A waitress server that drains instead of dropping requests when told to stop."""

    def __init__(self, app: FunctionApp, config: Config) -> None:
        from waitress.server import create_server

        self.app = app
        self.config = config
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self.waitress = create_server(
            app,
            host=config.host,
            port=config.port,
            threads=config.threads,
            connection_limit=config.connection_limit,
            backlog=config.backlog,
            channel_timeout=int(config.channel_timeout) or 1,
            max_request_body_size=config.max_body_size,
            max_request_header_size=config.max_header_size,
            ident="pyfunc",
            expose_tracebacks=False,
            asyncore_loop_timeout=1,
        )

    @property
    def port(self) -> int:
        return int(self.waitress.effective_port)

    def serve_forever(self) -> None:
        self.waitress.run()
        self.waitress.task_dispatcher.shutdown(cancel_pending=False, timeout=1)
        self._stopped.set()

    def begin_shutdown(self, reason: str = "shutdown") -> None:
        """Start draining on a helper thread; safe to call from a signal handler, once or more."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        threading.Thread(target=self._drain, args=(reason,), name="pyfunc-drain", daemon=True).start()

    # ------------------------------------------------------------------ draining

    def _drain(self, reason: str) -> None:
        logger.info("%s: draining in-flight requests (up to %ss)", reason, self.config.shutdown_timeout)
        self.app.draining = True
        self._in_loop(self._stop_accepting)
        deadline = time.monotonic() + self.config.shutdown_timeout
        while not self._idle():
            if time.monotonic() >= deadline:
                logger.warning("shutdown timeout reached with requests still in flight; closing them")
                break
            time.sleep(0.02)
        self._in_loop(self._close_everything)

    def _in_loop(self, thunk: Any) -> None:
        """Run ``thunk`` on the waitress loop thread, which owns the sockets, and wait for it."""
        done = threading.Event()

        def run() -> None:
            try:
                thunk()
            finally:
                done.set()

        self.waitress.trigger.pull_trigger(run)
        done.wait(5)

    def _stop_accepting(self) -> None:
        server = self.waitress
        server.accepting = False
        # Take every connection the kernel already completed, so none is reset by the close.
        listener = server.socket
        listener.setblocking(False)
        while True:
            try:
                conn, addr = listener.accept()
            except (BlockingIOError, InterruptedError, OSError):
                break
            conn.setblocking(False)
            server.set_socket_options(conn)
            server.channel_class(server, conn, server.fix_addr(addr), server.adj, map=server._map)
        server.del_channel()
        listener.close()
        for channel in list(server.active_channels.values()):
            if not channel.requests and not channel.total_outbufs_len:
                channel.will_close = True  # idle keep-alive: no request is in it
        server.trigger.pull_trigger()

    def _idle(self) -> bool:
        dispatcher = self.waitress.task_dispatcher
        with dispatcher.lock:
            busy = bool(dispatcher.queue) or dispatcher.active_count > 0
        if busy:
            return False
        for channel in list(self.waitress.active_channels.values()):
            if channel.requests or channel.total_outbufs_len:
                return False
        return True

    def _close_everything(self) -> None:
        for channel in list(self.waitress.active_channels.values()):
            channel.handle_close()
        self.waitress.close()
        for fd, obj in list(self.waitress._map.items()):
            try:
                obj.close()
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
            self.waitress._map.pop(fd, None)


def serve(config: Config) -> int:
    """Run the function server until SIGTERM/SIGINT; returns the process exit code."""
    logs.configure(config.log_format, config.log_level)
    try:
        app = build_app(config)
        run_start_hook(app.loaded)
    except HandlerLoadError as exc:
        if not config.serve_load_errors:
            print(f"pyfunc: error: {exc}", file=sys.stderr)
            return 1
        from .reload import ErrorApp

        app = ErrorApp(exc, config)  # type: ignore[assignment]
    try:
        server = Server(app, config)
    except OSError as exc:
        print(f"pyfunc: error: cannot listen on {config.host}:{config.port}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1

    def on_signal(signum: int, _frame: Any) -> None:
        server.begin_shutdown(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    loaded: Optional[LoadedFunction] = getattr(app, "loaded", None)
    logger.info(
        "serving %s from %s on http://%s:%d (%d threads)",
        loaded.qualname if loaded else "nothing (load error)",
        os.path.abspath(config.directory), config.host, server.port, config.threads,
    )
    server.serve_forever()
    if loaded is not None:
        run_stop_hook(loaded)
    logger.info("stopped")
    logging.shutdown()
    return 0


def free_port() -> int:
    """An unused TCP port on loopback (for tests and tools)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
