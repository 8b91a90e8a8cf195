"""The WSGI application: routing, health probes, ``/metrics``, admission and sending.

It is a small WSGI callable of its own rather than a Flask route, because on the hot path a
Flask request object, context and response cost more than the whole CloudEvent echo. Flask
is still there for handlers that want it: a handler that takes a ``flask.Request`` (or whose
module uses Flask) runs inside a real Flask request context, built only for it.

The invocation itself (decode, bind, call, conclude) is _invocation.Invoker's; the async
machinery is _async.py's; the app talks to the server only through _deferred.py.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
import time

from . import _codec as codec
from . import _logs as logs
from . import _request
from ._binding import Binder, compile_binder
from ._config import Config
from ._deferred import RESUMED, Deferred
from ._discovery import LoadedFunction
from ._failures import Failures, exception_text
from ._invocation import Invoker, Observer
from ._replies import Replies, status_of
from ._responses import AsyncChunks, Response, problem

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Optional

    from ._async import AsyncInvocation
    from ._deferred import MakeSink
    from ._invocation import Call, Prepared, Steps
    from ._metrics import Metrics
    from ._tracing import Tracing
    from ._types import Environ, StartResponse

__all__ = ["FunctionApp", "default_source", "health_answer"]

logger = logging.getLogger("pyfunc")

LIVENESS_PATHS = ("/health/liveness", "/health/live")
READINESS_PATHS = ("/health/readiness", "/health/ready")
ALLOW = "GET, HEAD, POST, OPTIONS"
METRICS_PATH = "/metrics"  # pyfunc's only with PYFUNC_METRICS=true; the function's otherwise
# The access-log status of a request whose client hung up before its answer (nginx's usage).
CLIENT_CLOSED = 499


class FunctionApp:
    """The WSGI callable serving one user function."""

    def __init__(self, loaded: LoadedFunction, config: Config, binder: Optional[Binder] = None) -> None:
        self.loaded = loaded
        self.config = config
        self.binder = binder = binder or compile_binder(loaded.function, loaded.file)
        function = loaded.function
        self.is_async = inspect.iscoroutinefunction(inspect.unwrap(function)) or (
            inspect.iscoroutinefunction(getattr(function, "__call__", None))  # noqa: B004
        )
        self.draining = False
        self.access_log = config.access_log
        self.debug = config.debug
        self._slots = threading.BoundedSemaphore(config.max_concurrency) if config.max_concurrency > 0 else None
        self.tracing: Optional[Tracing] = None  # set by enable_tracing() when tracing is turned on
        # Set by the server when it can park a request (enable_deferral): an async handler then
        # holds no worker while it awaits. A handler in a Flask request context keeps its worker:
        # the context is the worker thread's.
        self.defers = False
        self._make_sink: Optional[MakeSink] = None
        # --- eventing (docs/delivery.md): metrics (_metrics.py) observe the invocations and dedup
        # (_dedup.py) wraps the invoker. Neither module (nor prometheus_client, redis) is imported when off.
        self.metrics: Optional[Metrics] = None
        self.metrics_path: Optional[str] = None
        observer = Observer()
        if config.metrics:
            from ._metrics import Metrics, MetricsObserver

            self.metrics, self.metrics_path = Metrics(), METRICS_PATH
            observer = MetricsObserver(self.metrics)
        self.observer = observer
        failures = Failures(loaded.qualname, config.timeout, config.debug)
        reply_mode = None if config.reply_mode == "auto" else config.reply_mode
        invoker = Invoker(function, binder, self.is_async, config.timeout or None, reply_mode,
                          Replies(default_source(loaded), reply_mode, failures, self._iterate), failures, observer)
        self.invoker: Steps = invoker
        if config.dedupe != "off":
            from . import _dedup

            dedup = _dedup.from_config(config, loaded.qualname, observer.dedup_error)
            if dedup is not None:
                self.invoker = _dedup.Deduplicated(invoker, dedup, observer)
        # The request handlers get (none, pyfunc's light one, Flask's, or a Flask context), chosen now.
        self.requests = _request.for_binder(binder)
        # --- authenticated delivery (_oidc.py): None when PYFUNC_OIDC_AUDIENCE is empty, and then
        # neither _oidc nor PyJWT is imported (tests/cli/test_cold_start.py).
        self.oidc: Any = None
        if config.oidc_audience:
            from . import _oidc

            self.oidc = _oidc.from_config(config)

    def _iterate(self, iterator: Any) -> Any:
        return self.invoker.iterate(iterator)

    def on_ready(self) -> None:
        """The server listens (called by ``serve``): the startup time metric."""
        self.observer.ready()

    def close(self) -> None:
        """Release the handler's event loop and call threads; after the ``stop()`` hook ran."""
        self.invoker.close()

    def enable_deferral(self, make_sink: MakeSink) -> bool:
        """Answer ``async def`` invocations without a worker waiting (the server parks them, and
        makes the sinks streams are sent to); returns whether they will be."""
        self.defers = self.is_async and not self.binder.needs_flask_context
        self._make_sink = make_sink
        return self.defers

    def enable_tracing(self) -> bool:
        """Wrap each invocation in an OpenTelemetry span if tracing is turned on (see ``tracing``).

        Called by the server after ``start()``, which may install a tracer provider itself. When
        tracing is off nothing is wrapped, so the hot path does not pay for it.
        """
        from . import _tracing as tracing

        self.tracing = tracing.from_environment(self.loaded.qualname)
        if self.tracing is not None:
            self.invoker.trace(self.tracing)
        return self.tracing is not None

    # ------------------------------------------------------------------ WSGI entry point

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        resumed = environ.get(RESUMED)
        if resumed is not None:
            return self._resume(resumed, environ, start_response)
        started = time.perf_counter()
        fields = {"request_id": environ.get("HTTP_X_REQUEST_ID") or logs.next_request_id()}
        token = logs.request_fields.set(fields)
        try:
            method = environ["REQUEST_METHOD"]
            path = environ.get("PATH_INFO", "")
            if path in LIVENESS_PATHS or path in READINESS_PATHS:
                response = self.health("alive" if path in LIVENESS_PATHS else "ready")
                if response.status == 200:
                    # Knative probes every second (every 25 ms while starting): a passing probe
                    # is logged at DEBUG so the access log shows traffic, not the platform.
                    return self._send_quietly(response, environ, start_response, started, fields)
            elif path == self.metrics_path and method in ("GET", "HEAD"):
                assert self.metrics is not None  # a scrape is logged at DEBUG, like a passing probe
                return self._send_quietly(self.metrics.response(), environ, start_response, started, fields)
            elif self.oidc is not None and (refusal := self.oidc.refuse(environ)) is not None:
                response = refusal  # --- oidc hook (_oidc.py): no valid token, nothing invoked
            # Every other path is the function's: Knative routes all of them to the container, and
            # a Trigger's subscriber URI may carry one. HTTP functions read it from req.path.
            elif method in ("POST", "GET", "HEAD"):
                response = self.invoke(environ, fields, started)
            elif method == "OPTIONS":
                response = Response(200, [("Allow", ALLOW)], b"")
            else:
                response = problem(405, "method-not-allowed", f"{method} is not allowed")
                response.headers.append(("Allow", ALLOW))
            result = self._send(response, environ, start_response)
            if self.access_log:
                logs.access(method, path, status_of(response), time.perf_counter() - started, fields)
            return result
        finally:
            logs.request_fields.reset(token)

    def _send_quietly(self, response: Response, environ: Environ, start_response: StartResponse, started: float,
                      fields: dict[str, Any]) -> Iterable[bytes]:
        result = self._send(response, environ, start_response)
        if self.access_log:
            logs.access(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), 200,
                        time.perf_counter() - started, fields, logging.DEBUG)
        return result

    def _resume(self, work: AsyncInvocation, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        """Answer a deferred invocation whose handler finished, as ``__call__`` answers the others."""
        fields = work.fields
        token = logs.request_fields.set(fields)
        try:
            work.release()
            response = self.invoker.conclude(work.prepared, work.finished_results())
            streamed = isinstance(response, Response) and isinstance(response.body, AsyncChunks)
            if not streamed:
                result = self._send(response, environ, start_response)
            if self.access_log:  # like a sync generator's: when the stream begins
                logs.access(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), status_of(response),
                            time.perf_counter() - work.started, fields)
            if streamed:
                self._stream(response, environ, start_response)  # raises Deferred
            return result
        finally:
            logs.request_fields.reset(token)

    def _stream(self, response: Response, environ: Environ, start_response: StartResponse) -> None:
        """Send an async generator's items from the event loop: no worker waits between them.

        The head is sent now; then the request is parked again (Deferred) while the loop sends
        each item, and a worker comes back only to end the response (_deferred.Sink).
        """
        from ._async import AsyncStream

        body = response.body
        assert isinstance(body, AsyncChunks) and self._make_sink is not None
        write = start_response(response.status_line, response.headers)
        write(b"")  # the head: status and headers go out before the first item is produced
        sink = self._make_sink(write)
        raise Deferred(AsyncStream(self.invoker.runner(), self.loaded.qualname, environ, sink, body))

    def _send(self, response: Any, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if not isinstance(response, Response):  # a werkzeug/flask Response: it is a WSGI app
            iterable: Iterable[bytes] = response(environ, start_response)
            return iterable
        body = response.body
        if isinstance(body, bytes):  # never carries a Content-Length of its own (responses._merge_headers)
            start_response(response.status_line, [*response.headers, ("Content-Length", str(len(body)))])
            return (body,)
        start_response(response.status_line, response.headers)
        return body

    # ------------------------------------------------------------------ health

    def health(self, which: str) -> Response:
        return health_answer(self.loaded.hooks, which, self.draining, self.debug,
                             lambda awaitable: self.invoker.runner().run(awaitable, 5.0))

    # ------------------------------------------------------------------ admission

    def invoke(self, environ: Environ, fields: dict[str, Any], started: float = 0.0) -> Any:
        """The function's answer to a request, within ``PYFUNC_MAX_CONCURRENCY``; raises Deferred
        when an async handler's calls go to the event loop (which then holds the slot)."""
        slots = self._slots
        if slots is not None and not slots.acquire(blocking=False):
            self.observer.rejected()  # counted, though nothing was invoked
            return problem(429, "too-many-requests",
                           f"more than {self.config.max_concurrency} invocations in progress")
        observer, counted = self.observer, True
        observer.entered()
        invoke, defer = self.invoker.invoke, None
        if self.defers:
            def defer(prepared: Prepared, calls: list[Call]) -> None:
                self._defer(prepared, calls, fields, started)  # raises Deferred
        try:
            return self.requests.serve(environ, invoke, fields, defer)
        except Deferred as deferred:
            work: Any = deferred.work
            work.slots, slots = slots, None  # the slot is the invocation's until it is answered
            work.observer, counted = observer, False  # and so is its place in the in-flight count
            raise
        finally:
            if counted:
                observer.left()
            if slots is not None:
                slots.release()

    def _defer(self, prepared: Prepared, calls: list[Call], fields: dict[str, Any], started: float) -> None:
        """Hand the calls to the event loop: raise Deferred (the server parks the request)."""
        from ._async import AsyncInvocation

        raise Deferred(AsyncInvocation(self.invoker, prepared, calls, fields, started, self._abandoned))

    def _abandoned(self, work: AsyncInvocation) -> None:
        """The access line of a deferred request whose client hung up before its answer."""
        if self.access_log:
            token = logs.request_fields.set(work.fields)
            try:
                logs.access(work.environ["REQUEST_METHOD"], work.environ.get("PATH_INFO", ""), CLIENT_CLOSED,
                            time.perf_counter() - work.started, work.fields)
            finally:
                logs.request_fields.reset(token)


def default_source(loaded: LoadedFunction) -> str:
    """A reply's ``source`` when the handler gives none: the Knative service, else the function."""
    service = os.environ.get("K_SERVICE")
    if service:
        revision = os.environ.get("K_REVISION")
        return f"/apis/serving.knative.dev/v1/services/{service}" + (f"/revisions/{revision}" if revision else "")
    return f"/pyfunc/{loaded.qualname}"


def health_answer(hooks: dict[str, Callable[..., Any]], which: str, draining: bool, debug: bool,
                  run: Callable[[Any], Any]) -> Response:
    """``/health/liveness`` (``which`` "alive") or ``/health/readiness`` ("ready") from the hook of
    that name: 503 while draining or when it says no. ``run`` waits for an ``async def`` hook's
    awaitable. Shared by every app the server can serve (FunctionApp, pyfunc._asgi, pyfunc._wsgiapp).
    """
    if which == "ready" and draining:
        return _health_response(False, "draining")
    hook = hooks.get(which)
    if hook is None:
        return _health_response(True, "ok")
    try:
        result = hook()
        if inspect.isawaitable(result):
            result = run(result)
    except Exception as exc:
        logger.exception("the %s() hook raised", which)
        # The probe body is public like a 500's: it names the exception only with PYFUNC_DEBUG.
        return _health_response(False, f"{which}() raised {exception_text(exc)}" if debug
                                else f"{which}() raised an exception; the traceback is in the log")
    if isinstance(result, tuple):
        ok, message = bool(result[0]), str(result[1]) if len(result) > 1 else ""
    else:
        ok, message = bool(result), ""
    return _health_response(ok, message or ("ok" if ok else "not " + which))


def _health_response(ok: bool, message: str) -> Response:
    body = codec.dump_json({"status": "ok" if ok else "unavailable", "message": message})
    return Response(200 if ok else 503, [("Content-Type", "application/json"), ("Cache-Control", "no-store")], body)
