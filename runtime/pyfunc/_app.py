"""The WSGI application: request → decode → bind → call → encode → response.

It is a small WSGI callable of its own rather than a Flask route, because on the hot path a
Flask request object, context and response cost more than the whole CloudEvent echo. Flask
is still there for handlers that want it: a handler that takes a ``flask.Request`` (or whose
module uses Flask) runs inside a real Flask request context, built only for it.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import os
import sys
import threading
import time

from . import _codec as codec
from . import _logs as logs
from ._batchlane import answer_batch
from ._binding import Binder, Invocation, compile_binder
from ._codec import BATCH, STRUCTURED, Event
from ._config import Config
from ._discovery import LoadedFunction
from ._errors import InvalidReply, RequestError
from ._outcomes import RETRIED_4XX, Drop, Outcome, Retry, outcome_of_status
from ._responses import AsyncChunks, Response, http_response, is_werkzeug_response, problem, reply_event
from ._waitress import Deferred, StreamSink

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Iterator, Optional

logger = logging.getLogger("pyfunc")

LIVENESS_PATHS = ("/health/liveness", "/health/live")
READINESS_PATHS = ("/health/readiness", "/health/ready")
ALLOW = "GET, HEAD, POST, OPTIONS"
METRICS_PATH = "/metrics"  # pyfunc's only with PYFUNC_METRICS=true; the function's otherwise
NO_REPLY = Response(202, [], b"")
# The reply mode of one event of a batch answered as a batch without dedup: see _BatchReply.
BATCH_ITEM = "batch-item"
# The environ key of a deferred invocation the worker resumes (see AsyncInvocation).
RESUMED = "pyfunc.resumed"
# The distributed tracing extension's attributes, and the WSGI keys of their HTTP headers.
_TRACE_CONTEXT = (("traceparent", "HTTP_TRACEPARENT"), ("tracestate", "HTTP_TRACESTATE"))
# What handlers return most: no isawaitable() (an ABC check) for them.
_NEVER_AWAITABLE = frozenset({tuple, dict, list, str, bytes, type(None), int, float, bool})
# The access-log status of a request whose client hung up before its answer (nginx's usage).
CLIENT_CLOSED = 499


class InvocationTimeout(Exception):
    pass


class AsyncRunner:
    """One event loop on a daemon thread, shared by every ``async def`` invocation.

    Waitress threads hand coroutines over and wait for their results, so a slow ``await`` in
    one request never blocks another. asyncio is imported only when a handler needs it: it is
    a fifth of a cold start otherwise.
    """

    def __init__(self) -> None:
        import asyncio

        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="pyfunc-async", daemon=True)
        self._thread.start()

    def run(self, awaitable: Any, timeout: Optional[float]) -> Any:
        import asyncio
        import concurrent.futures

        context = contextvars.copy_context()
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        task_box: list[Any] = []

        def start() -> None:
            coro = awaitable if asyncio.iscoroutine(awaitable) else awaited(awaitable)
            task = (
                self.loop.create_task(coro, context=context)
                if sys.version_info >= (3, 11)
                else self.loop.create_task(coro)
            )
            task_box.append(task)
            task.add_done_callback(lambda t: _copy_outcome(t, future))

        self.loop.call_soon_threadsafe(start)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            self.loop.call_soon_threadsafe(lambda: task_box and task_box[0].cancel())
            raise InvocationTimeout() from None

    def iterate(self, iterator: Any) -> Iterator[Any]:
        """An async iterator's items, for a worker thread: each is produced on the loop and
        handed over as it comes, so a streamed response sends it at once.

        The worker waits for each item (the loop never blocks on the client: waitress's
        ``write`` is what waits, in the worker, when the client reads slower than the
        iterator produces). Closed early (the client hung up), it closes the async iterator
        on the loop, so the handler's ``finally`` blocks run.
        """
        import asyncio

        finished = False
        try:
            while True:
                try:
                    item = asyncio.run_coroutine_threadsafe(awaited(iterator.__anext__()), self.loop).result()
                except StopAsyncIteration:
                    finished = True
                    return
                yield item
        finally:
            close = getattr(iterator, "aclose", None)
            if not finished and close is not None:
                try:
                    asyncio.run_coroutine_threadsafe(awaited(close()), self.loop).result(5)
                except Exception:  # noqa: BLE001 - the response is over either way
                    logger.warning("closing a streamed async generator failed", exc_info=True)


class AsyncStream:
    """An async generator's items, sent from the event loop to a parked connection (FunctionApp._stream).

    Back-pressure: an item is sent only while the connection's buffer is under waitress's
    high watermark; otherwise the stream awaits the channel's "drained" signal, so a slow
    client slows the generator down without blocking the loop or holding a worker.
    """

    __slots__ = ("app", "environ", "sink", "body", "task", "wake", "cancelled")

    def __init__(self, app: FunctionApp, environ: dict[str, Any], sink: StreamSink, body: AsyncChunks) -> None:
        self.app = app
        self.environ = environ
        self.sink = sink
        self.body = body
        self.task: Any = None
        self.wake: Optional[Callable[[], None]] = None
        self.cancelled = False

    def start(self, wake: Callable[[], None]) -> None:
        self.wake = wake
        self.app.async_runner().loop.call_soon_threadsafe(self._begin)

    def _begin(self) -> None:
        loop = self.app.async_runner().loop
        self.task = loop.create_task(self._pump())
        self.task.add_done_callback(self._done)
        if self.cancelled:
            self.task.cancel()

    async def _pump(self) -> None:
        import asyncio

        sink = self.sink
        loop = asyncio.get_running_loop()
        async for data in self.body.encoded():
            if not data:
                continue
            while sink.open() and not sink.room():
                drained = loop.create_future()

                def room(drained: Any = drained) -> None:  # on waitress's I/O loop thread
                    loop.call_soon_threadsafe(_resolve, drained)

                sink.when_room(room)
                if sink.open() and not sink.room():  # else it drained before the callback was set
                    await drained
            sink.send(data)  # raises ClientDisconnected once the client left

    def _done(self, task: Any) -> None:
        self.task = None
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            if type(error).__name__ != "ClientDisconnected":
                logger.error("the async generator %s returned failed midway", self.app.loaded.qualname,
                             exc_info=error)
            self.sink.error = error
        elif task.cancelled():
            self.sink.error = InvocationTimeout("stream cancelled")
        wake, self.wake = self.wake, None
        if wake is not None:
            wake()

    def cancel(self) -> None:
        if self.cancelled:
            return
        self.cancelled = True
        self.app.async_runner().loop.call_soon_threadsafe(self._cancel_task)

    def _cancel_task(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def abandon(self) -> None:
        pass  # the slot was given back and the access line written when the stream began


def _resolve(future: Any) -> None:
    if not future.done():
        future.set_result(None)


class AsyncInvocation:
    """One request to an ``async def`` handler, run on the event loop while no worker waits for it.

    A worker decodes and binds the request, then raises ``Deferred(self)`` and is free (see
    pyfunc._waitress); the channel calls :meth:`start`. The handler runs as an asyncio task;
    when it is done, ``wake()`` hands the request back to a worker, which finds this object in
    the environ (``RESUMED``) and answers with the outcome through the same code as a
    synchronous call (:meth:`FunctionApp._resume`). ``PYFUNC_TIMEOUT`` and a client hanging up
    cancel the task: the handler sees ``asyncio.CancelledError``.
    """

    __slots__ = ("app", "environ", "fields", "started", "mode", "events", "calls", "context",
                 "slots", "outcome", "task", "timer", "timed_out", "cancelled", "wake", "claims", "gauge", "results")

    def __init__(self, app: FunctionApp, environ: dict[str, Any], fields: dict[str, Any], started: float,
                 mode: Optional[str], events: list[Event], calls: list[tuple[Invocation, tuple[Any, ...],
                                                                            dict[str, Any]]]) -> None:
        self.app = app
        self.environ = environ
        self.fields = fields
        self.started = started
        self.mode = mode  # the request's content mode (None: an HTTP handler)
        self.events = events
        self.calls = calls  # (invocation, args, kwargs), in order: one per event of a batch
        self.context = contextvars.copy_context()  # the request's log fields, as in a worker
        self.slots: Any = None  # the PYFUNC_MAX_CONCURRENCY semaphore this holds a slot of
        self.outcome: Optional[tuple[bool, Any]] = None  # (True, results) or (False, exception)
        self.task: Any = None
        self.timer: Any = None
        self.timed_out = False
        self.cancelled = False
        self.wake: Optional[Callable[[], None]] = None
        # --- eventing (docs/delivery.md): the dedup claims of its events (one per event, None
        # when dedup is off) and the in-flight gauge it holds until answered (None: metrics off).
        self.claims: Optional[list[tuple[Any, Any]]] = None
        self.gauge: Any = None
        # Each call's (ok, result or exception, seconds) as it ends: after a timeout, the events
        # of a batch that finished before it keep their own outcome.
        self.results: list[tuple[bool, Any, float]] = []

    # On the worker that deferred it, after the channel parked the request.
    def start(self, wake: Callable[[], None]) -> None:
        self.wake = wake
        self.environ[RESUMED] = self
        self.app.async_runner().loop.call_soon_threadsafe(self._begin)

    # On the event loop.
    def _begin(self) -> None:
        if self.cancelled:  # the client hung up before the task began
            self._finish((False, None))
            return
        loop = self.app.async_runner().loop
        self.task = self.context.run(loop.create_task, self.app.await_calls(self.calls, self.results))
        self.calls = []  # the task holds them now, and lets go of them when it ends
        if self.app.timeout:
            self.timer = loop.call_later(self.app.timeout, self._time_out)
        self.task.add_done_callback(self._done)

    def _time_out(self) -> None:
        self.timed_out = True
        if self.task is not None:
            self.task.cancel()

    def _done(self, task: Any) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.task = self.timer = None
        if self.timed_out:  # even if the handler swallowed the CancelledError: the time is up
            self._finish((False, InvocationTimeout()))
        elif task.cancelled():
            import asyncio

            self._finish((False, None if self.cancelled else asyncio.CancelledError()))
        elif task.exception() is not None:
            self._finish((False, task.exception()))
        else:
            self._finish((True, task.result()))

    def _finish(self, outcome: tuple[bool, Any]) -> None:
        self.outcome = outcome
        wake, self.wake = self.wake, None
        if wake is not None:
            wake()

    # Any thread (the loop thread of waitress when the connection closes).
    def cancel(self) -> None:
        if self.cancelled or self.outcome is not None:
            return
        self.cancelled = True
        self.app.async_runner().loop.call_soon_threadsafe(self._cancel_task)

    def _cancel_task(self) -> None:
        if self.task is not None:
            self.task.cancel()

    # On the worker that resumes it.
    def release(self) -> None:
        """Give back the concurrency slot and break the environ's cycle; the request is over."""
        self.environ.pop(RESUMED, None)
        slots, self.slots = self.slots, None
        if slots is not None:
            slots.release()
        gauge, self.gauge = self.gauge, None
        if gauge is not None:
            gauge.dec()

    def abandon(self) -> None:
        if self.slots is None and RESUMED not in self.environ:
            return  # answered already
        self.release()
        for claim, _ in self.claims or ():  # eventing hook: no answer went out, so not done
            if claim is not None:
                claim.release()
        logger.info("the client closed the connection before the answer; the invocation was %s",
                    "cancelled" if self.cancelled else "finished")
        if self.app.access_log:
            token = logs.request_fields.set(self.fields)
            try:
                logs.access(self.environ["REQUEST_METHOD"], self.environ.get("PATH_INFO", ""), CLIENT_CLOSED,
                            time.perf_counter() - self.started, self.fields)
            finally:
                logs.request_fields.reset(token)


async def awaited(awaitable: Any) -> Any:
    """A coroutine for any awaitable (``asyncio.run`` and ``create_task`` take only coroutines)."""
    return await awaitable


def _copy_outcome(task: Any, future: Any) -> None:
    if task.cancelled():
        future.cancel()
    elif task.exception() is not None:
        future.set_exception(task.exception())
    else:
        future.set_result(task.result())


class CallRunner:
    """Runs synchronous calls on daemon threads so that a request can stop waiting (``PYFUNC_TIMEOUT``).

    Not a ``ThreadPoolExecutor``: its threads are joined at interpreter exit, so one abandoned
    call that never returns would keep the process from exiting after SIGTERM; and its fixed
    pool would let abandoned calls starve the new ones. Here an idle thread is reused, else a
    new one is started: at most (waitress threads + calls still abandoned) threads.
    """

    def __init__(self) -> None:
        import queue

        self._jobs: Any = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0

    def call(self, timeout: Optional[float], function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``function(*args, **kwargs)`` in the caller's context; :class:`InvocationTimeout` after ``timeout``."""
        done = threading.Event()
        outcome: list[Any] = []
        with self._lock:
            spawn = self._idle == 0
            if not spawn:
                self._idle -= 1
        self._jobs.put((contextvars.copy_context(), function, args, kwargs, outcome, done))
        if spawn:
            threading.Thread(target=self._work, name="pyfunc-call", daemon=True).start()
        if not done.wait(timeout):
            logger.warning("abandoning a synchronous invocation still running after %ss", timeout)
            raise InvocationTimeout()
        ok, value = outcome[0]
        if ok:
            return value
        raise value

    def _work(self) -> None:
        while True:
            context, function, args, kwargs, outcome, done = self._jobs.get()
            try:
                outcome.append((True, context.run(function, *args, **kwargs)))
            except BaseException as exc:  # noqa: B036 - handed to the waiting request thread
                outcome.append((False, exc))
            done.set()
            del context, function, args, kwargs, outcome, done
            with self._lock:
                self._idle += 1


class FunctionApp:
    """The WSGI callable serving one user function."""

    def __init__(self, loaded: LoadedFunction, config: Config, binder: Optional[Binder] = None) -> None:
        self.loaded = loaded
        self.config = config
        self.function = loaded.function
        self.binder = binder or compile_binder(loaded.function, loaded.file)
        self.is_async = inspect.iscoroutinefunction(inspect.unwrap(self.function)) or (
            inspect.iscoroutinefunction(getattr(self.function, "__call__", None))  # noqa: B004
        )
        self.draining = False
        self.timeout = config.timeout or None
        self._async: Optional[AsyncRunner] = AsyncRunner() if self.is_async else None
        self._async_lock = threading.Lock()
        # Only with a timeout: a sync call then runs on a CallRunner thread the request can stop waiting for.
        self._executor: Optional[CallRunner] = CallRunner() if self.timeout and not self.is_async else None
        self.tracing: Any = None  # a tracing.Tracing once enable_tracing() finds tracing turned on
        self._slots = threading.BoundedSemaphore(config.max_concurrency) if config.max_concurrency > 0 else None
        self._flask_app: Any = None
        self._request_class: Any = None
        if self.binder.needs_flask_context:
            _ = self.flask_app  # built now, not on the first request
        elif self.binder.needs_flask_request:
            from flask import Request

            self._request_class = Request
        elif self.binder.needs_request:  # an unannotated req: flask.Request's API, Flask only if reached
            from ._request import Request as LightRequest

            self._request_class = LightRequest
        self.default_source = default_source(loaded)
        self.reply_mode = None if config.reply_mode == "auto" else config.reply_mode
        self.access_log = config.access_log
        self.debug = config.debug
        # Set by the server when waitress can park a request (pyfunc._waitress.install_deferral):
        # an async handler then holds no worker while it awaits. A handler in a Flask request
        # context keeps its worker: the context is the worker thread's.
        self.defers = False
        # --- eventing (docs/delivery.md): metrics (_metrics.py) and redelivery dedup (_dedup.py).
        # Both None when off, and their modules (and prometheus_client, redis) never imported.
        self.metrics: Any = None
        self.dedup: Any = None
        if config.metrics:
            from ._metrics import Metrics

            self.metrics = Metrics()
        if config.dedupe != "off":
            from . import _dedup

            on_error = self.metrics.dedup_errors.inc if self.metrics is not None else None
            self.dedup = _dedup.from_config(config, loaded.qualname, on_error)

    def on_ready(self) -> None:
        """The server listens (called by ``serve``): the startup time metric."""
        if self.metrics is not None:
            self.metrics.ready()

    def enable_deferral(self) -> bool:
        """Answer ``async def`` invocations without a worker waiting; returns whether they will be."""
        self.defers = self.is_async and not self.binder.needs_flask_context
        return self.defers

    def async_runner(self) -> AsyncRunner:
        """The event loop of this app's coroutines, started on first use."""
        if self._async is None:
            with self._async_lock:
                if self._async is None:
                    self._async = AsyncRunner()
        return self._async

    def enable_tracing(self) -> bool:
        """Wrap each invocation in an OpenTelemetry span if tracing is turned on (see ``tracing``).

        Called by the server after ``start()``, which may install a tracer provider itself. When
        tracing is off nothing is wrapped, so the hot path does not pay for it.
        """
        from . import _tracing as tracing

        self.tracing = tracing.from_environment(self.loaded.qualname)
        if self.tracing is not None:
            self._call = self.tracing.wrap(self._call)  # type: ignore[method-assign]
            self._acall = self.tracing.wrap_async(self._acall)  # type: ignore[method-assign]
        return self.tracing is not None

    # ------------------------------------------------------------------ WSGI entry point

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
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
                    result = self._send(response, environ, start_response)
                    if self.access_log:
                        logs.access(method, path, 200, time.perf_counter() - started, fields, logging.DEBUG)
                    return result
            elif self.metrics is not None and path == METRICS_PATH and method in ("GET", "HEAD"):
                # --- eventing hook (_metrics.py): a scrape is logged at DEBUG, like a passing probe.
                result = self._send(self.metrics.response(), environ, start_response)
                if self.access_log:
                    logs.access(method, path, 200, time.perf_counter() - started, fields, logging.DEBUG)
                return result
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
                logs.access(method, path, _status_of(response), time.perf_counter() - started, fields)
            return result
        finally:
            logs.request_fields.reset(token)

    def _resume(self, work: AsyncInvocation, environ: dict[str, Any],
                start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Answer a deferred invocation whose handler finished, as ``__call__`` answers the others."""
        fields = work.fields
        token = logs.request_fields.set(fields)
        try:
            work.release()
            response = self._answer(work)
            streamed = isinstance(response, Response) and isinstance(response.body, AsyncChunks)
            if not streamed:
                result = self._send(response, environ, start_response)
            if self.access_log:  # like a sync generator's: when the stream begins
                logs.access(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), _status_of(response),
                            time.perf_counter() - work.started, fields)
            if streamed:
                self._stream(response, environ, start_response)  # raises Deferred
            return result
        finally:
            logs.request_fields.reset(token)

    def _stream(self, response: Response, environ: dict[str, Any], start_response: Callable[..., Any]) -> None:
        """Send an async generator's items from the event loop: no worker waits between them.

        The head is sent now; then the request is parked again (Deferred) while the loop sends
        each item, and a worker comes back only to end the response (pyfunc._waitress.StreamSink).
        """
        body = response.body
        assert isinstance(body, AsyncChunks)
        write = start_response(response.status_line, response.headers)
        write(b"")  # the head: status and headers go out before the first item is produced
        raise Deferred(AsyncStream(self, environ, StreamSink(write), body))

    def _send(self, response: Any, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
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
        if which == "ready" and self.draining:
            return _health_response(False, "draining")
        hook = self.loaded.hooks.get(which)
        if hook is None:
            return _health_response(True, "ok")
        try:
            result = hook()
            if inspect.isawaitable(result):
                result = self._run_async(result, 5.0)
        except Exception as exc:
            logger.exception("the %s() hook raised", which)
            # The probe body is public like a 500's: it names the exception only with PYFUNC_DEBUG.
            return _health_response(False, f"{which}() raised {_exception_text(exc)}" if self.debug
                                    else f"{which}() raised an exception; the traceback is in the log")
        if isinstance(result, tuple):
            ok, message = bool(result[0]), str(result[1]) if len(result) > 1 else ""
        else:
            ok, message = bool(result), ""
        return _health_response(ok, message or ("ok" if ok else "not " + which))

    # ------------------------------------------------------------------ invocation

    def invoke(self, environ: dict[str, Any], fields: dict[str, Any], started: float = 0.0) -> Any:
        slots = self._slots
        if slots is not None and not slots.acquire(blocking=False):
            if self.metrics is not None:  # eventing hook: counted, though nothing was invoked
                self.metrics.invocation("rejected", None, None)
            return problem(429, "too-many-requests",
                           f"more than {self.config.max_concurrency} invocations in progress")
        gauge = self.metrics.in_flight if self.metrics is not None else None  # eventing hook
        if gauge is not None:
            gauge.inc()
        try:
            if self.binder.needs_flask_context:
                return self._invoke_in_flask(environ, fields)
            wants_body = self.binder.needs_event or self.binder.needs_body
            request = None
            if self._request_class is not None:
                request = self._request_class(environ)
                body = request.get_data(cache=True) if wants_body else b""
            else:
                body = _read_body(environ) if wants_body else b""
            if self.defers:
                self._defer(environ, body, request, fields, started)  # raises Deferred unless refused
            return self._handle(environ, body, request, fields)
        except Deferred as deferred:
            work: Any = deferred.work
            work.slots, slots = slots, None  # the slot is the invocation's until it is answered
            work.gauge, gauge = gauge, None  # and so is its place in the in-flight gauge
            raise
        finally:
            if gauge is not None:
                gauge.dec()
            if slots is not None:
                slots.release()

    def _invoke_in_flask(self, environ: dict[str, Any], fields: dict[str, Any]) -> Any:
        with self.flask_app.request_context(environ) as ctx:
            request = ctx.request
            body = request.get_data(cache=True) if self.binder.needs_event or self.binder.needs_body else b""
            return self._handle(environ, body, request, fields)

    @property
    def flask_app(self) -> Any:
        if self._flask_app is None:
            import flask

            self._flask_app = flask.Flask("pyfunc")
            self._flask_app.config["MAX_CONTENT_LENGTH"] = None
        return self._flask_app

    def _handle(self, environ: dict[str, Any], body: bytes, request: Any, fields: dict[str, Any]) -> Any:
        fields["trace_id"] = logs.trace_id(environ.get("HTTP_TRACEPARENT"))  # set before decoding: 400s too
        if not self.binder.needs_event:
            return self._one(environ, body, request, None, None)
        try:
            mode, events = codec.decode_request(environ, body)
        except RequestError as exc:
            if self.metrics is not None:  # eventing hook: not a CloudEvent, nothing invoked
                self.metrics.invocation("rejected", None, None)
            return self._failure(exc)[1]
        if mode == BATCH:
            return self._handle_batch(environ, body, request, events)
        event = events[0]
        attrs = event.attributes
        fields.update(ce_id=attrs.get("id"), ce_type=attrs.get("type"), ce_source=attrs.get("source"))
        if fields["trace_id"] is None:  # the transport's traceparent (the caller) wins, as for the span
            fields["trace_id"] = logs.trace_id(attrs.get("traceparent"))
        return self._one(environ, body, request, event, self.reply_mode or mode)

    def _one(self, environ: dict[str, Any], body: bytes, request: Any, event: Optional[Event],
             mode: Optional[str], claimed: Any = None, done: Optional[list[Any]] = None) -> Any:
        """One invocation (an HTTP request, or one event replied to in ``mode``) → its response; never raises.

        With dedup on, a duplicate event is answered before the handler runs, and the event is
        marked done only when the handler succeeded (docs/delivery.md). A batch passes the
        claim it made for the event and a ``done`` list, to mark its events done together.
        """
        claim = None
        if self.dedup is not None and event is not None:  # --- eventing hook: redelivery dedup (_dedup.py)
            claim, found = claimed or self.dedup.claim(event.attributes)
            if found is not None:
                return self._duplicate(found, event)
        started = time.perf_counter()
        try:
            ok, result = True, self._call(Invocation(environ, body, event, request))
        except BaseException as exc:  # noqa: B036 - a handler's SystemExit must not end the server (_failure)
            ok, result = False, exc
        return self._conclude(environ, event, mode, ok, result, time.perf_counter() - started, claim, done)

    def _conclude(self, environ: dict[str, Any], event: Optional[Event], mode: Optional[str], ok: bool,
                  result: Any, seconds: float, claim: Any = None, done: Optional[list[Any]] = None) -> Any:
        """The response to one call that returned ``result`` (``ok``) or raised it, in a worker
        or on the event loop (``_answer``); settles its dedup claim and counts it."""
        try:
            if not ok:
                raise result
            if event is None:
                response = http_response(result, self._iterate)
                outcome = "reply" if self.metrics is None else _outcome_of_response(response)
            elif is_werkzeug_response(result):
                response, outcome = result, _outcome_of_response(result)
            else:
                reply = reply_event(result)
                if reply is None:
                    response, outcome = NO_REPLY, "no-reply"
                elif mode == BATCH_ITEM:
                    response = _BatchReply(codec.event_to_json(self._complete(reply[0], event, environ), reply[1]))
                    outcome = "reply"
                else:
                    response = self._encode(mode or STRUCTURED, [(self._complete(reply[0], event, environ), reply[1])])
                    outcome = "reply"
        except BaseException as exc:  # noqa: B036 - a handler's SystemExit must not end the server (_failure)
            outcome, response = self._failure(exc)
        if claim is not None:
            _settle(claim, response, done)
        if self.metrics is not None:  # --- eventing hook: invocations by outcome and type, duration
            self.metrics.invocation(outcome, event.attributes.get("type") if event is not None else None,
                                    None if outcome == "rejected" else seconds)
        return response

    def _defer(self, environ: dict[str, Any], body: bytes, request: Any, fields: dict[str, Any],
               started: float) -> None:
        """Decode and bind here, then raise Deferred: the handler runs on the event loop.

        Returns (and ``_handle`` answers) when decoding or binding refuses the request.
        """
        fields["trace_id"] = logs.trace_id(environ.get("HTTP_TRACEPARENT"))  # set before decoding: 400s too
        mode: Optional[str] = None
        events: list[Event] = []
        try:
            if not self.binder.needs_event:
                invocations = [Invocation(environ, body, None, request)]
            else:
                mode, events = codec.decode_request(environ, body)
                if mode != BATCH:
                    attrs = events[0].attributes
                    fields.update(ce_id=attrs.get("id"), ce_type=attrs.get("type"), ce_source=attrs.get("source"))
                    if fields["trace_id"] is None:
                        fields["trace_id"] = logs.trace_id(attrs.get("traceparent"))
                invocations = [Invocation(environ, body, event, request) for event in events]
            calls = []
            for inv in invocations:
                args, kwargs = self.binder.arguments(inv)
                calls.append((inv, tuple(args), kwargs))
        except Exception:  # noqa: BLE001 - _handle decodes and binds again, and answers the 400/415/500
            return
        claims = None
        if self.dedup is not None and mode is not None:  # --- eventing hook: redelivery dedup (_dedup.py)
            claims = self.dedup.claim_all([event.attributes for event in events])
            if mode != BATCH and claims[0][1] is not None:
                return  # a duplicate: _handle finds it again and answers it, no loop needed
            # Only the events claimed here run; the duplicates of a batch are answered by _answer.
            calls = [call for call, (_, found) in zip(calls, claims) if found is None]
        work = AsyncInvocation(self, environ, fields, started, mode, events, calls)
        work.claims = claims
        raise Deferred(work)

    def _answer(self, work: AsyncInvocation) -> Any:
        """The response to a deferred invocation, from its outcome: what ``_handle`` would answer.

        Each call's own outcome (``await_calls``) is concluded as a worker concludes it, so a
        batch's events succeed or fail each on its own. A timeout (or a cancel) fails the call
        it interrupted and those not begun; the ones that finished before it keep their outcome.
        """
        claims = work.claims or [(None, None)] * max(1, len(work.events))
        results = list(work.results)
        outcome = work.outcome
        if outcome is None or not outcome[0]:
            error = outcome[1] if outcome is not None else None
            if error is None:
                import asyncio

                error = asyncio.CancelledError()
            expected = sum(1 for _, found in claims if found is None)
            results += [(False, error, time.perf_counter() - work.started)] * (expected - len(results))
        remaining = iter(results)
        environ = work.environ
        if work.mode is None:
            ok, value, seconds = next(remaining)
            return self._conclude(environ, None, None, ok, value, seconds)
        if work.mode != BATCH:
            ok, value, seconds = next(remaining)
            return self._conclude(environ, work.events[0], self.reply_mode or work.mode, ok, value, seconds,
                                  claims[0][0])
        done: list[Any] = []
        responses = []
        for event, (claim, found) in zip(work.events, claims):
            if found is not None:
                responses.append(self._duplicate(found, event))
                continue
            ok, value, seconds = next(remaining)
            mode = BATCH_ITEM if self.dedup is None and (self.reply_mode or BATCH) == BATCH else STRUCTURED
            responses.append(self._conclude(environ, event, mode, ok, value, seconds, claim, done))
        if self.dedup is not None:
            self.dedup.finish_all(done)
        if self.metrics is not None:
            self.metrics.batch_events.observe(len(work.events))
        return self._batch_response(work.events, responses)

    async def await_calls(self, calls: list[tuple[Invocation, tuple[Any, ...], dict[str, Any]]],
                          outcomes: list[tuple[bool, Any, float]]) -> list[tuple[bool, Any, float]]:
        """Each call in order, on the event loop: one for a request, one per event of a batch.

        Each call's outcome goes into ``outcomes`` as it ends, ``(ok, result or exception,
        seconds)``: an event of a batch that fails does not stop the others (docs/delivery.md,
        "Batches"). A cancel (PYFUNC_TIMEOUT, a client hanging up) still ends the rest.
        """
        for inv, args, kwargs in calls:
            started = time.perf_counter()
            try:
                outcomes.append((True, await self._acall(inv, args, kwargs), time.perf_counter() - started))
            except Exception as exc:  # noqa: BLE001 - concluded by _answer, like a worker's
                outcomes.append((False, exc, time.perf_counter() - started))
        return outcomes

    async def _acall(self, inv: Invocation, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        result = self.function(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

    def _failed(self, exc: BaseException) -> Any:
        """The answer to an invocation that raised ``exc`` (or to a request refused before it)."""
        return self._failure(exc)[1]

    def _failure(self, exc: BaseException) -> tuple[str, Any]:
        """The outcome (docs/delivery.md) and response of an invocation that raised."""
        if isinstance(exc, Outcome):
            return self._outcome(exc)
        if isinstance(exc, RequestError):
            logger.info("rejected request: %s: %s", exc.reason, exc.detail)
            extra: dict[str, Any] = {"errors": exc.errors} if exc.errors else {}
            return "rejected", problem(exc.status, exc.reason, exc.detail, **extra)
        if isinstance(exc, InvocationTimeout):
            logger.error("invocation timed out after %ss", self.config.timeout)
            return "timeout", problem(504, "timeout", f"the function did not finish within {self.config.timeout}s")
        if isinstance(exc, InvalidReply):
            # The detail is pyfunc's own description of the reply's shape; the exception behind
            # it (say, json's TypeError) goes only to the log, and to the body with PYFUNC_DEBUG.
            cause = exc.__cause__
            logger.error("invalid reply from %s: %s%s", self.loaded.qualname, exc,
                         f" ({_exception_text(cause)})" if cause is not None else "")
            extra = {"exception": _exception_text(cause)} if self.debug and cause is not None else {}
            return "error", problem(500, "invalid-reply", str(exc), **extra)
        http_exception = _http_exception_response(exc)
        if http_exception is not None:
            return _outcome_of_response(http_exception), http_exception
        # Even GeneratorExit: _handle is no generator, so it can only come from the handler, and
        # re-raised it left the connection hanging with no response (waitress only logs it).
        logger.error("%s raised %s", self.loaded.qualname, type(exc).__name__, exc_info=exc)
        # A 500 body names no exception class or message: either can carry internals (paths,
        # SQL, keys) to whoever sent the request. The log has the traceback; PYFUNC_DEBUG
        # puts class and message in the body for local use.
        if self.debug:
            return "error", problem(500, "function-error",
                                    f"the function raised {_exception_text(exc)}; the traceback is in the log",
                                    exception=_exception_text(exc))
        return "error", problem(500, "function-error", "the function raised an exception; the traceback is in the log")

    def _outcome(self, exc: Outcome) -> tuple[str, Response]:
        """``pyfunc.Retry`` → 503 (+ Retry-After), ``pyfunc.Drop`` → 422: WARNING, no traceback (_outcomes.py)."""
        if isinstance(exc, Retry):
            logger.warning("%s asked for a retry%s: %s", self.loaded.qualname,
                           f" after {exc.after}s" if exc.after is not None else "", exc.reason or "no reason given")
            response = problem(exc.status, exc.problem, exc.reason or "the function asked for the event to be retried")
            if exc.retry_after is not None:
                response.headers.append(("Retry-After", exc.retry_after))
            return "retry", response
        if isinstance(exc, Drop):
            logger.warning("%s dropped the event: %s", self.loaded.qualname, exc.reason or "no reason given")
            return "drop", problem(exc.status, exc.problem, exc.reason or "the function dropped the event")
        logger.warning("%s raised %s: %s", self.loaded.qualname, type(exc).__name__, exc.reason)
        return "error", problem(exc.status, exc.problem, exc.reason)

    def _duplicate(self, found: Any, event: Event) -> Response:
        """A redelivery (same source + id): its first reply again, or 409 while the first still runs."""
        from ._dedup import IN_FLIGHT, IN_FLIGHT_RETRY_AFTER, IN_FLIGHT_STATUS

        attrs = event.attributes
        if found is IN_FLIGHT:
            if self.metrics is not None:
                self.metrics.dedup_hits.labels("in_flight").inc()
            logger.info("duplicate of event %s from %s, still in progress: %d", attrs.get("id"), attrs.get("source"),
                        IN_FLIGHT_STATUS)
            # Knative's data-plane contract: 409 "Conflict / Processing in progress", retried with backoff.
            response = problem(IN_FLIGHT_STATUS, "duplicate-in-flight",
                               "an event with this source and id is being processed; retry later")
            response.headers.append(("Retry-After", IN_FLIGHT_RETRY_AFTER))
            return response
        if self.metrics is not None:
            self.metrics.dedup_hits.labels("replayed").inc()
        logger.info("duplicate of event %s from %s, done before: its reply again", attrs.get("id"),
                    attrs.get("source"))
        return Response(found.status, list(found.headers), found.body)

    def _handle_batch(self, environ: dict[str, Any], body: bytes, request: Any, events: list[Event]) -> Any:
        """binding §3.3: one call per event, in order, each on its own (docs/delivery.md, "Batches")."""
        if self.metrics is not None:  # eventing hook
            self.metrics.batch_events.observe(len(events))
        # With dedup, each reply is encoded structured on its own (what dedup stores) and the batch
        # is their JSON array; without, the replies are encoded together (BATCH_ITEM).
        if self.dedup is None:
            answered = answer_batch(self, environ, body, request, events)  # --- batch lane (_batchlane.py)
            if answered is not None:
                return answered
            mode = BATCH_ITEM if (self.reply_mode or BATCH) == BATCH else STRUCTURED
            results = [self._one(environ, body, request, event, mode) for event in events]
        else:  # --- eventing hook: the batch's events claimed, and later marked done, together
            claims = self.dedup.claim_all([event.attributes for event in events])
            done: list[Any] = []
            results = [self._one(environ, body, request, event, STRUCTURED, claimed, done)
                       for event, claimed in zip(events, claims)]
            self.dedup.finish_all(done)
        return self._batch_response(events, results)

    def _batch_response(self, events: list[Event], results: list[Any]) -> Any:
        """All succeeded: 200 with the batch of replies. Any failed: no replies, a problem body
        listing each event's status, and the status of the first retriable failure (5xx, 409,
        429…: Knative redelivers the whole batch; with dedup only the events not done run
        again), else 422 (only drops: dead-lettered)."""
        if all(isinstance(r, Response) and r.status < 300 for r in results):
            if (self.reply_mode or BATCH) == BATCH and all(type(r) is _BatchReply or r is NO_REPLY for r in results):
                try:
                    body = codec.dump_json([r.event_json for r in results if type(r) is _BatchReply])
                    return Response(200, [("Content-Type", codec.BATCH_CONTENT_TYPE)], body)
                except InvalidReply:
                    # A reply's data cannot be encoded: that event fails, as it would have had
                    # it been encoded on its own, and the batch answers as any partial failure.
                    return _batch_failure(events, [self._encoded(r) for r in results])
            try:
                bodies = [_structured_body(r) for r in results if r.status != 202 and r.body]
                if (self.reply_mode or BATCH) == BATCH:
                    headers = [("Content-Type", codec.BATCH_CONTENT_TYPE)]
                    return Response(200, headers, b"[" + b",".join(bodies) + b"]")
                replies = [(e.attributes, e.data) for e in map(codec.decode_structured, bodies)]
                return self._encode(self.reply_mode or BATCH, replies)
            except (InvalidReply, RequestError) as exc:
                return self._failed(exc)
        return _batch_failure(events, results)

    def _encoded(self, response: Any) -> Any:
        """A batch's reply encoded on its own, or the failure to encode it."""
        if type(response) is not _BatchReply:
            return response
        try:
            return Response(200, response.headers, codec.dump_json(response.event_json))
        except InvalidReply as exc:
            return self._failure(exc)[1]

    def _complete(self, attributes: dict[str, Any], event: Event, environ: dict[str, Any]) -> dict[str, Any]:
        reply = codec.complete_reply(attributes, event, self.default_source)
        # Distributed tracing extension: the reply continues the incoming trace.
        for name, header in _TRACE_CONTEXT:
            if name not in reply:
                value = event.attributes.get(name) or environ.get(header)
                if value:
                    reply[name] = value
        return reply

    def _encode(self, mode: str, replies: list[tuple[dict[str, Any], Any]]) -> Response:
        if mode == BATCH:
            headers, body = codec.encode_batch(replies)
            return Response(200, headers, body)
        if not replies:
            return NO_REPLY
        if len(replies) > 1:
            raise InvalidReply("several replies can only be sent in batch mode")
        attributes, data = replies[0]
        if mode != STRUCTURED:
            # Under auto, a reply that binary mode would percent-encode goes out structured: the
            # Go and JavaScript SDKs (Knative eventing's dispatchers among them) do not
            # percent-decode ce- headers (sdk-go issue 1331), so `héllo wörld` would reach the
            # next consumer as `h%C3%A9llo%20w%C3%B6rld`; JSON carries every value exactly.
            if self.reply_mode is None:
                encoded = codec.encode_binary_plain(attributes, data)
                if encoded is not None:
                    return Response(200, *encoded)
            else:
                return Response(200, *codec.encode_binary(attributes, data))
        headers, body = codec.encode_structured(attributes, data)
        return Response(200, headers, body)

    def _call(self, inv: Invocation) -> Any:
        args, kwargs = self.binder.arguments(inv)
        if self._async is not None:
            return self._async.run(self.function(*args, **kwargs), self.timeout)
        if self._executor is not None:
            result = self._executor.call(self.timeout, self.function, *args, **kwargs)
        else:
            result = self.function(*args, **kwargs)
        if type(result) not in _NEVER_AWAITABLE and inspect.isawaitable(result):  # a sync wrapper around a coroutine
            return self._run_async(result, self.timeout)
        return result

    def _run_async(self, awaitable: Any, timeout: Optional[float]) -> Any:
        return self.async_runner().run(awaitable, timeout)

    def _iterate(self, iterator: Any) -> Iterable[Any]:
        """An async iterator a handler returned, as a streamed body (see AsyncRunner.iterate)."""
        return self.async_runner().iterate(iterator)


# ---------------------------------------------------------------------- helpers


def default_source(loaded: LoadedFunction) -> str:
    """A reply's ``source`` when the handler gives none: the Knative service, else the function."""
    service = os.environ.get("K_SERVICE")
    if service:
        revision = os.environ.get("K_REVISION")
        return f"/apis/serving.knative.dev/v1/services/{service}" + (f"/revisions/{revision}" if revision else "")
    return f"/pyfunc/{loaded.qualname}"


def _read_body(environ: dict[str, Any]) -> bytes:
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    length = environ.get("CONTENT_LENGTH")
    if length:
        try:
            data: bytes = stream.read(int(length))
            return data
        except ValueError:
            return b""
    # waitress de-chunks a chunked body and sets CONTENT_LENGTH; anything else has no body.
    return b""


def _settle(claim: Any, response: Any, done: Optional[list[Any]] = None) -> None:
    """Dedup: mark the event done with its reply after a success (a 2xx), else let it run again.

    With ``done`` (a batch), the success is added to it, to be marked with the others."""
    from ._dedup import TOO_LARGE, Record

    status = _status_of(response)
    if 200 <= status < 300:
        body = response.body if isinstance(response, Response) else None
        record = Record(status, list(response.headers), body) if isinstance(body, bytes) else TOO_LARGE
        if done is not None:
            done.append((claim, record))
        else:
            claim.done(record)
    else:
        claim.release()


def _outcome_of_response(response: Any) -> str:
    if isinstance(response, Response):
        return outcome_of_status(response.status, bool(response.body))
    return outcome_of_status(getattr(response, "status_code", 200), True)


class _BatchReply(Response):
    """One event's reply in a batch, kept as its JSON object (json §3) until the whole batch is
    encoded with one dump: a dump per event cost as much as the event's handler (bench/, batch
    of 10). Only a batch without dedup (which stores each reply encoded) and answered as a batch."""

    __slots__ = ("event_json",)

    def __init__(self, event_json: dict[str, Any]) -> None:
        super().__init__(200, [("Content-Type", codec.STRUCTURED_CONTENT_TYPE)], b"")
        self.event_json = event_json


def _structured_body(response: Response) -> bytes:
    """A reply event as one structured-mode JSON object (a stored binary-mode reply is converted)."""
    headers = dict((name.lower(), value) for name, value in response.headers)
    body = response.body
    assert isinstance(body, bytes)
    content_type = headers.get("content-type")
    if codec.content_mode(content_type) == STRUCTURED:
        return body
    environ = {"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()}
    if content_type is not None:
        environ["CONTENT_TYPE"] = content_type
    event = codec.decode_binary(environ, body)
    return codec.encode_structured(event.attributes, event.data)[1]


def _batch_failure(events: list[Event], results: list[Any]) -> Response:
    """The answer to a batch in which some events failed (docs/delivery.md, "Batches")."""
    import json

    items: list[dict[str, Any]] = []
    first_retriable: Optional[int] = None
    retry_after: Optional[int] = None
    for index, (event, response) in enumerate(zip(events, results)):
        status = _status_of(response)
        item: dict[str, Any] = {"index": index, "id": event.attributes.get("id"),
                                "source": event.attributes.get("source"), "status": status}
        if status >= 300:
            headers = response.headers if isinstance(response, Response) else list(response.headers.items())
            for name, value in headers:
                if name.lower() == "retry-after" and value.isdigit():
                    retry_after = max(retry_after or 0, int(value))
            if isinstance(response, Response) and isinstance(response.body, bytes):
                try:
                    detail = json.loads(response.body)
                    item.update(reason=detail.get("reason"), detail=detail.get("detail"))
                except (ValueError, AttributeError):
                    pass
            # Knative retries 5xx, 404, 408, 409 and 429; every other 4xx is dead-lettered at once.
            if first_retriable is None and (status >= 500 or status in RETRIED_4XX):
                first_retriable = status
        items.append(item)
    failed = sum(1 for item in items if item["status"] >= 300)
    status = first_retriable or 422
    response = problem(
        status, "batch-incomplete" if first_retriable else "batch-dropped",
        f"{failed} of {len(events)} events failed; " + (
            "the batch can be redelivered: with dedup on, only the events not done run again"
            if first_retriable else "none can be retried"),
        events=items)
    if retry_after is not None:
        response.headers.append(("Retry-After", str(retry_after)))
    return response


def _status_of(response: Any) -> int:
    return response.status if isinstance(response, Response) else getattr(response, "status_code", 0)


def _exception_text(exc: BaseException) -> str:
    """``ValueError: message`` (the class alone when the message is empty), for the log and PYFUNC_DEBUG."""
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _http_exception_response(exc: BaseException) -> Any:
    """``flask.abort(404)`` and other werkzeug HTTPExceptions become their own response.

    So does a key missing from the light request's ``args``/``cookies`` (pyfunc._request), as
    werkzeug's ``BadRequestKeyError`` does: its 400 page, werkzeug imported only then."""
    light = sys.modules.get("pyfunc._request")
    if light is not None and isinstance(exc, light.BadRequestKeyError):
        from werkzeug.exceptions import BadRequestKeyError

        return BadRequestKeyError(exc.args[0] if exc.args else None).get_response()
    if "werkzeug.exceptions" not in sys.modules:
        return None
    from werkzeug.exceptions import HTTPException

    if isinstance(exc, HTTPException):
        return exc.get_response()
    return None


def _health_response(ok: bool, message: str) -> Response:
    body = codec.dump_json({"status": "ok" if ok else "unavailable", "message": message})
    return Response(200 if ok else 503, [("Content-Type", "application/json"), ("Cache-Control", "no-store")], body)
