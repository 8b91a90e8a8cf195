"""Serve an ASGI 3 application (Starlette, FastAPI, a raw ``async def app(scope, receive, send)``,
a Knative func-python instance) under waitress, through pyfunc's event loop and deferral machinery.

waitress speaks WSGI: a worker thread gets the environ of a fully received request. The bridge
turns it into an ASGI ``http`` scope, hands the request to the shared event loop
(:class:`pyfunc._async.AsyncRunner`) and raises :class:`pyfunc._deferred.Deferred`, so no worker
waits while the app awaits. The app's ``send()`` messages are gathered on the loop:

* a complete response (the last ``http.response.body`` has no ``more_body``) wakes the channel,
  and a worker answers it as any pyfunc response (``Content-Length``, access line, metrics);
* a response sent in several messages (``more_body``: SSE, ``StreamingResponse``) wakes the
  channel at its first body message; a worker sends the head and that chunk, then parks the
  request again while the loop writes each later message through the server's
  :class:`pyfunc._deferred.Sink` (``enable_deferral``'s ``make_sink``), with back-pressure
  (_async.room_in), as it is sent. Nothing here imports the waitress adapter.

``receive()`` hands the body over in 64 KiB ``http.request`` messages read from waitress's
buffer (waitress has read the whole body, within PYFUNC_MAX_BODY_SIZE, before the app runs),
then waits for ``http.disconnect``. A client that hangs up cancels the app's task, as it cancels
any pyfunc coroutine; so does ``PYFUNC_TIMEOUT`` until the response starts (a stream then runs
until it ends or its client leaves). Lifespan (pyfunc._lifespan) runs through pyfunc's
``start``/``stop`` hooks: startup before the port opens, shutdown after the drain.

What the app does wrong never reaches the client as a traceback or half a response: an
exception, or returning, before the response is complete is a 500 problem body (the cause in
the log); a body before ``http.response.start``, or a second start, is the same; once a stream
has begun the connection is closed instead of ending the chunked body, so the client sees it
broken. Without deferral (``pyfunc.testing``'s in-process client, or a waitress that lacks what
it needs) the worker waits for the same work and streams from a queue.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import threading
import time

from . import _logs as logs
from ._app import CLIENT_CLOSED, LIVENESS_PATHS, METRICS_PATH, READINESS_PATHS, health_answer
from ._asgiscope import AsgiProtocolError, http_scope, status_line, wsgi_headers
from ._async import AsyncRunner, release_parked, room_in, settle
from ._carry import trace_id
from ._config import Config
from ._deferred import RESUMED, Deferred
from ._discovery import LoadedFunction
from ._errors import InvocationTimeout, RequestError
from ._failures import Failures
from ._invocation import Observer
from ._lifespan import Lifespan
from ._outcomes import outcome_of_status
from ._responses import Response, problem

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Awaitable, Callable, Iterable, Iterator, Optional

    from ._deferred import MakeSink, Sink
    from ._types import Environ, StartResponse

__all__ = ["AsgiApp", "asgi_loaded"]

logger = logging.getLogger("pyfunc")

RECEIVE_CHUNK = 64 << 10  # bytes per http.request message
# Where an AsgiCall is (``phase``).
HEAD, BODY, STREAMING, COMPLETE = "head", "body", "streaming", "complete"


class ClientGone(OSError):
    """Raised by ``send()`` once the client has hung up (ASGI: an ``OSError``)."""


# ---------------------------------------------------------------------- one request


class AsgiCall:
    """One request to the ASGI app: run on the event loop while no worker waits for it.

    A worker builds it and raises ``Deferred(self)`` (or, without deferral, waits for
    :meth:`start`'s wake-up); the channel calls :meth:`start`. ``wake()`` hands the request back
    to a worker (``RESUMED`` in the environ) once the response is complete, failed, or begins
    to stream (:meth:`AsgiApp._resume`).
    """

    def __init__(self, app: AsgiApp, environ: Environ, scope: dict[str, Any], fields: dict[str, Any],
                 started: float, send_wrapper: Optional[Callable[[Any], Any]] = None) -> None:
        self.app = app
        self.environ = environ
        self.scope = scope
        self.fields = fields
        self.started = started
        self.send_wrapper = send_wrapper
        self.context = contextvars.copy_context()  # the request's log fields, as in a worker
        self.slots: Any = None  # the PYFUNC_MAX_CONCURRENCY slot this holds until answered
        self.observer: Optional[Observer] = None  # whose in-flight count this is in until answered
        self.phase = HEAD
        self.status_line = ""
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.chunks: list[bytes] = []
        self.error: Optional[BaseException] = None  # why no response can be sent (before COMPLETE)
        self.task: Any = None
        self.timer: Any = None
        self.timed_out = False
        self.cancelled = False
        self.wake: Optional[Callable[[], None]] = None
        self.answered = False  # wake() called: the worker owns what happens next
        # Streaming: the sink the worker attaches, the future send() waits on until then, and the
        # wake-up of the stream's own parked request (AsgiStream).
        self.sink: Any = None
        self.sink_ready: Any = None
        self.stream_done: Optional[Callable[[], None]] = None
        self.stream_error: Optional[BaseException] = None
        self.disconnected: Any = None  # a loop future: receive() waits on it after the body
        self._body = environ.get("wsgi.input")
        self._remaining: Optional[int] = _content_length(environ)  # None: the body is all received

    # ---- channel side (any thread)

    def start(self, wake: Callable[[], None]) -> None:
        self.wake = wake
        self.environ[RESUMED] = self
        self.app.runner.loop.call_soon_threadsafe(self._begin)

    def cancel(self) -> None:
        if self.cancelled:
            return
        self.cancelled = True
        self.app.runner.loop.call_soon_threadsafe(self._hang_up)

    def abandon(self) -> None:
        if self.slots is None and RESUMED not in self.environ:
            return
        self.release()
        logger.info("the client closed the connection before the answer; the request was %s",
                    "cancelled" if self.cancelled else "finished")
        if self.app.access_log:
            token = logs.request_fields.set(self.fields)
            try:
                logs.access(self.environ["REQUEST_METHOD"], self.environ.get("PATH_INFO", ""), CLIENT_CLOSED,
                            time.perf_counter() - self.started, self.fields)
            finally:
                logs.request_fields.reset(token)

    def release(self) -> None:
        """The request is over: see _async.release_parked."""
        release_parked(self)

    # ---- the event loop

    def _begin(self) -> None:
        loop = self.app.runner.loop
        self.disconnected = loop.create_future()
        if self.cancelled:
            self._hang_up()
            self._answer()
            return
        send: Any = self.send
        if self.send_wrapper is not None:
            send = self.send_wrapper(send)
        self.task = self.context.run(loop.create_task, self._run(send))
        if self.app.timeout:
            self.timer = loop.call_later(self.app.timeout, self._time_out)
        self.task.add_done_callback(self._done)

    async def _run(self, send: Any) -> None:
        await self.app.asgi(self.scope, self.receive, send)

    def _time_out(self) -> None:
        self.timer = None
        if self.phase in (HEAD, BODY) and self.task is not None:
            self.timed_out = True
            self.task.cancel()

    def _hang_up(self) -> None:
        if self.disconnected is not None and not self.disconnected.done():
            self.disconnected.set_result(None)
        if self.sink_ready is not None and not self.sink_ready.done():
            self.sink_ready.set_result(None)
        if self.task is not None and not self.task.done():
            self.task.cancel()

    async def receive(self) -> dict[str, Any]:
        """The body in ``http.request`` messages, then ``http.disconnect`` once the client is gone
        or the response is over."""
        if self._remaining is not None and not self.cancelled:
            size = min(self._remaining, RECEIVE_CHUNK)
            data = self._body.read(size) if size and self._body is not None else b""
            self._remaining = self._remaining - len(data) if data else 0
            more = self._remaining > 0
            if not more:
                self._remaining = None
            return {"type": "http.request", "body": data, "more_body": more}
        if self.disconnected is not None:
            await self.disconnected
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        kind = message.get("type") if isinstance(message, dict) else None
        if self.cancelled:
            raise ClientGone("the client has closed the connection")
        if self.phase == HEAD:
            if kind != "http.response.start":
                raise AsgiProtocolError(f"the app sent {kind!r} before http.response.start")
            self.status_line = status_line(message.get("status"))
            self.status = message["status"]
            self.headers = wsgi_headers(message.get("headers"))
            self.phase = BODY
            return
        if kind != "http.response.body":
            if self.phase == COMPLETE:
                raise RuntimeError(f"the app sent {kind!r} after the response was complete")
            raise AsgiProtocolError(f"the app sent {kind!r} where http.response.body was expected")
        body = message.get("body", b"")
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise AsgiProtocolError(f"http.response.body's body is a {type(body).__name__}, not bytes")
        more = bool(message.get("more_body", False))
        if self.phase == BODY:
            if body:
                self.chunks.append(bytes(body))
            if not more:
                self.phase = COMPLETE
                settle(self.disconnected, None)  # ASGI: receive() now says http.disconnect
                self._answer()
                return
            if not body:
                return  # nothing to stream yet
            # The first chunk of a stream: a worker sends the head and it, then attaches a sink.
            import asyncio

            self.phase = STREAMING
            self.sink_ready = asyncio.get_running_loop().create_future()
            if self.timer is not None:  # PYFUNC_TIMEOUT bounds the time to the response's start
                self.timer.cancel()
                self.timer = None
            self._answer()
            await self.sink_ready
            if self.sink is None:
                raise ClientGone("the client has closed the connection")
            return
        if self.phase == STREAMING:
            if body:
                await self._write(bytes(body))
            if not more:
                self.phase = COMPLETE
                settle(self.disconnected, None)
                self._end_stream()
            return
        raise RuntimeError("the app sent http.response.body after the response was complete")

    async def _write(self, data: bytes) -> None:
        """Write one chunk through the sink, waiting (on the loop) while the client reads slowly."""
        sink = self.sink
        if not sink.room():
            await room_in(sink)
        try:
            sink.send(data)
        except Exception as exc:  # noqa: BLE001 - waitress's ClientDisconnected: the client left
            self.cancelled = True
            raise ClientGone("the client has closed the connection") from exc

    def attach(self, sink: Any, done: Optional[Callable[[], None]]) -> None:
        """On the loop: the worker sent the head and the first chunk; later ones go to ``sink``."""
        self.sink = sink
        self.stream_done = done
        if self.sink_ready is not None and not self.sink_ready.done():
            self.sink_ready.set_result(None)
        if self.task is None or self.task.done():  # the app ended while the head went out
            self._end_stream()

    def _end_stream(self) -> None:
        if self.sink is None:
            return  # attach() ends it
        done, self.stream_done = self.stream_done, None
        if self.stream_error is not None:
            self.sink.error = self.stream_error
        if done is not None:
            done()

    def _done(self, task: Any) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.task = None
        error: Optional[BaseException]
        if task.cancelled():
            import asyncio

            error = InvocationTimeout() if self.timed_out else asyncio.CancelledError()
        else:
            error = task.exception()
        if self.disconnected is not None and not self.disconnected.done():
            self.disconnected.set_result(None)  # the app is over: a late receive() would not wait
        if self.phase == COMPLETE:
            if error is not None and not isinstance(error, ClientGone) and not task.cancelled():
                # After the response (a Starlette background task, say): only the log knows.
                logger.error("%s raised after its response was sent", self.app.qualname, exc_info=error)
            return
        if self.phase == STREAMING:
            if self.cancelled or isinstance(error, ClientGone):
                self.stream_error = ClientGone("the client has closed the connection")
            else:
                if error is None:
                    error = AsgiProtocolError("the app returned in the middle of its streamed response")
                if isinstance(error, AsgiProtocolError):
                    logger.error("%s: %s; the connection is closed", self.app.qualname, error)
                else:
                    logger.error("%s raised during its streamed response; the connection is closed",
                                 self.app.qualname, exc_info=error)
                # The channel's task raises it to close the connection: an Exception, never a
                # CancelledError (a BaseException would escape waitress's worker).
                self.stream_error = error if isinstance(error, Exception) else ClientGone("stream cancelled")
            self._end_stream()
            return
        # HEAD or BODY: no response could be sent yet.
        if error is None:
            error = AsgiProtocolError("the app returned without sending a response" if self.phase == HEAD
                                      else "the app returned before its response body was complete")
        self.error = error
        self._answer()

    def _answer(self) -> None:
        if self.answered:
            return
        self.answered = True
        wake, self.wake = self.wake, None
        if wake is not None:
            wake()

    def _failure(self) -> tuple[str, Response]:
        """The outcome and the 500/504 problem of a request whose app failed before its response
        (the cause logged): the failure table every pyfunc function answers from (_failures.py)."""
        error = self.error if self.error is not None else AsgiProtocolError("the app sent no response")
        outcome, response = self.app.failures(error)
        if not isinstance(response, Response):  # an exception that is its own (werkzeug) answer
            response = problem(500, "function-error", "the function raised an exception; the traceback is in the log")
        return outcome, response


def _content_length(environ: Environ) -> int:
    try:
        return max(0, int(environ.get("CONTENT_LENGTH") or 0))
    except ValueError:
        return 0


class AsgiStream:
    """The parked request of a streamed ASGI response: the loop writes it (AsgiCall.attach)."""

    __slots__ = ("call", "environ", "sink")

    def __init__(self, call: AsgiCall, sink: Sink) -> None:
        self.call = call
        self.environ = call.environ
        self.sink = sink  # the server looks for it (_waitress.deferral): its task ends the stream

    def start(self, wake: Callable[[], None]) -> None:
        self.call.app.runner.loop.call_soon_threadsafe(self.call.attach, self.sink, wake)

    def cancel(self) -> None:
        self.call.cancel()

    def abandon(self) -> None:
        pass  # the slot was given back and the access line written when the stream began


class QueueSink:
    """A stream's chunks handed to a waiting worker (no deferral): what :class:`StreamSink` is to a channel."""

    END = object()

    def __init__(self) -> None:
        import queue

        self.queue: Any = queue.SimpleQueue()
        self.closed = False
        self.error: Optional[BaseException] = None

    def open(self) -> bool:
        return not self.closed

    def room(self) -> bool:
        return True

    def when_room(self, callback: Callable[[], None]) -> None:
        callback()

    def send(self, data: bytes) -> None:
        if self.closed:
            raise ClientGone("the client has closed the connection")
        self.queue.put(data)

    def finish(self) -> None:
        self.queue.put(self.END)

    def chunks(self, call: AsgiCall) -> Iterator[bytes]:
        try:
            while True:
                item = self.queue.get()
                if item is self.END:
                    if self.error is not None:
                        raise ConnectionAbortedError("the app's streamed response failed midway")
                    return
                yield item
        finally:
            if call.phase != COMPLETE or self.error is not None:
                self.closed = True
                call.cancel()


# ---------------------------------------------------------------------- the WSGI app


class AsgiApp:
    """The WSGI callable serving one ASGI application (what FunctionApp is to a plain function).

    ``prepare`` (func-python's CloudEvents flavour, pyfunc._funcpython) may refuse a request
    before the app runs, or add to its scope; ``send_wrapper`` wraps each request's ``send``.
    """

    is_async = True

    def __init__(self, loaded: LoadedFunction, config: Config, asgi: Callable[..., Awaitable[Any]],
                 *, prepare: Optional[Callable[[Environ, dict[str, Any], dict[str, Any]], None]] = None,
                 send_wrapper: Optional[Callable[[Any], Any]] = None, kind: str = "asgi") -> None:
        self.loaded = loaded
        self.config = config
        self.asgi = asgi
        self.prepare = prepare
        self.send_wrapper = send_wrapper
        self.kind = kind
        self.qualname = loaded.qualname
        self.timeout = config.timeout or None
        self.access_log = config.access_log
        self.debug = config.debug
        self.draining = False
        self.defers = False
        self.tracing: Any = None
        self.runner = AsyncRunner()
        self._make_sink: Optional[MakeSink] = None
        self.lifespan: Optional[Lifespan] = None
        # Health paths besides pyfunc's own: func.yaml's deploy.healthEndpoints (pyfunc._funcpython).
        self.health_paths: dict[str, str] = {}
        self._slots = threading.BoundedSemaphore(config.max_concurrency) if config.max_concurrency > 0 else None
        # What every function's invocations answer and report through (_failures.py, _invocation.Observer).
        self.failures = Failures(loaded.qualname, config.timeout, config.debug)
        self.failures.register(AsgiProtocolError, self._protocol_error)
        self.metrics: Any = None
        observer = Observer()
        if config.metrics:
            from ._metrics import Metrics, MetricsObserver

            self.metrics = Metrics()
            observer = MetricsObserver(self.metrics)
        self.observer = observer

    # The server's hooks (pyfunc._server.Server, serve).
    def enable_deferral(self, make_sink: MakeSink) -> bool:
        """Park requests while the app runs; streams go to the sinks ``make_sink`` makes."""
        self.defers = True
        self._make_sink = make_sink
        return True

    def enable_tracing(self) -> bool:
        return False  # spans around ASGI requests: not yet (docs/asgi.md)

    def on_ready(self) -> None:
        self.observer.ready()

    def close(self) -> None:
        """Stop the app's event loop; after the ``stop()`` hook (the lifespan shutdown) ran on it."""
        self.runner.close()

    def _protocol_error(self, exc: BaseException) -> tuple[str, Response]:
        logger.error("%s broke the ASGI protocol: %s", self.qualname, exc)
        return "error", problem(500, "invalid-reply",
                                "the app's response broke the ASGI protocol; the cause is in the log")

    def async_runner(self) -> AsyncRunner:
        return self.runner

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
            level = logging.INFO
            if path in LIVENESS_PATHS or path in READINESS_PATHS or path in self.health_paths:
                which = "alive" if path in LIVENESS_PATHS else self.health_paths.get(path, "ready")
                response = self.health(which)
                if response.status == 200:
                    level = logging.DEBUG  # probes every second: not traffic
            elif self.metrics is not None and path == METRICS_PATH and method in ("GET", "HEAD"):
                response, level = self.metrics.response(), logging.DEBUG
            elif environ.get("HTTP_UPGRADE", "").lower() == "websocket":
                response = problem(400, "websocket-unsupported",
                                   "pyfunc serves HTTP/1.1 requests; WebSocket connections are not supported")
            else:
                response = self.invoke(environ, fields, started, start_response)
                if not isinstance(response, Response):  # answered by _wait (no deferral)
                    answered: Iterable[bytes] = response
                    return answered
            result = _send(response, environ, start_response)
            if self.access_log:
                logs.access(method, path, response.status, time.perf_counter() - started, fields, level)
            return result
        finally:
            logs.request_fields.reset(token)

    def health(self, which: str) -> Response:
        return health_answer(self.loaded.hooks, which, self.draining, self.debug,
                             lambda awaitable: self.runner.run(awaitable, 5.0))

    def invoke(self, environ: Environ, fields: dict[str, Any], started: float, start_response: StartResponse) -> Any:
        """A refusal (a Response), or the answer of :meth:`_wait`; raises Deferred when deferring."""
        slots = self._slots
        if slots is not None and not slots.acquire(blocking=False):
            self.observer.rejected()
            return problem(429, "too-many-requests", f"more than {self.config.max_concurrency} invocations in progress")
        self.observer.entered()
        observer: Optional[Observer] = self.observer
        try:
            scope = http_scope(environ, self.lifespan.state if self.lifespan is not None else None)
            if self.prepare is None:
                fields["trace_id"] = trace_id(environ)
            else:
                try:
                    self.prepare(environ, scope, fields)  # sets the log fields (trace id, ce_*)
                except RequestError as exc:  # as _invocation.Invoker.refuse answers it
                    self.observer.rejected()
                    return self.failures.response(exc)
            call = AsgiCall(self, environ, scope, fields, started, self.send_wrapper)
            call.slots, slots = slots, None
            call.observer, observer = observer, None  # in flight until it is answered
            if self.defers:
                raise Deferred(call)
            return self._wait(call, start_response)
        finally:
            if observer is not None:
                observer.left()
            if slots is not None:
                slots.release()

    def _wait(self, call: AsgiCall, start_response: StartResponse) -> Iterable[bytes]:
        """Without deferral: this worker waits for the call (pyfunc.testing, or no waitress support)."""
        done = threading.Event()
        call.start(done.set)
        done.wait()
        return self._resume(call, call.environ, start_response)

    def _resume(self, call: Any, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        """Answer a call whose response is complete, failed or begins to stream."""
        token = logs.request_fields.set(call.fields)
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        try:
            call.release()
            seconds = time.perf_counter() - call.started
            if call.phase == STREAMING:
                self._count(call.status, seconds)
                if self.access_log:  # like any stream's: when it begins
                    logs.access(method, path, call.status, seconds, call.fields)
                write = start_response(call.status_line, call.headers)
                first = b"".join(call.chunks)
                call.chunks = []
                if self._make_sink is not None:
                    write(first)
                    raise Deferred(AsgiStream(call, self._make_sink(write)))
                sink = QueueSink()
                self.runner.loop.call_soon_threadsafe(call.attach, sink, sink.finish)
                return _chained(first, sink.chunks(call))
            if call.phase == COMPLETE:
                response = Response(call.status, call.headers, b"".join(call.chunks),
                                    call.status_line.partition(" ")[2])
                result = _send(response, environ, start_response, keep_length=method == "HEAD")
                self._count(call.status, seconds)
            else:
                outcome, response = call._failure()
                result = _send(response, environ, start_response)
                self.observer.invoked(outcome, response, None, seconds)
            if self.access_log:
                logs.access(method, path, response.status, seconds, call.fields)
            return result
        finally:
            logs.request_fields.reset(token)

    def _count(self, status: int, seconds: float) -> None:
        self.observer.invoked(outcome_of_status(status, True), None, None, seconds)


def _chained(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest


def _send(response: Response, environ: Environ, start_response: StartResponse,
          keep_length: bool = False) -> Iterable[bytes]:
    """A complete response: its own Content-Length (an app's is kept only for HEAD, whose body is empty)."""
    body = response.body
    assert isinstance(body, bytes)
    headers = response.headers
    has_length = any(name.lower() == "content-length" for name, _ in headers)
    if not (keep_length and has_length):
        headers = [(n, v) for n, v in headers if n.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
    start_response(response.status_line, headers)
    return (body,)


# ---------------------------------------------------------------------- loading


def asgi_loaded(loaded: LoadedFunction, config: Config) -> AsgiApp:
    """The app for ``PYTHON_HANDLER=module:app`` naming an ASGI application; lifespan through the hooks.

    The module's own ``start``/``stop`` hooks (pyfunc's) run after the lifespan startup and before
    its shutdown; ``alive``/``ready`` answer the health paths as for any function.
    """
    app = AsgiApp(loaded, config, loaded.function)
    lifespan = Lifespan(loaded.function, app.runner, loaded.qualname)
    app.lifespan = lifespan
    hooks = dict(loaded.hooks)
    own_start, own_stop = hooks.pop("start", None), hooks.pop("stop", None)

    def start(cfg: dict[str, str]) -> None:
        lifespan.startup()
        if own_start is not None:
            own_start(*([cfg] if _takes_argument(own_start) else []))

    def stop() -> None:
        try:
            if own_stop is not None:
                own_stop()
        finally:
            lifespan.shutdown()

    hooks["start"], hooks["stop"] = start, stop
    loaded.hooks = hooks
    return app


def _takes_argument(function: Callable[..., Any]) -> bool:
    try:
        return bool(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return True
