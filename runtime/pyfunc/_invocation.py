"""One invocation in three steps, shared by every way pyfunc serves: prepare → call → conclude.

The seam
--------
A serving path (the WSGI app under waitress, in a worker or parked on the event loop; an ASGI
path) drives an :class:`Invoker` through these steps and owns only its transport:

1. ``prepared = invoker.prepare(environ, body, request, fields)`` decodes the request (one
   CloudEvent, a batch, or a plain HTTP request) and binds each call's arguments. It raises
   :class:`~pyfunc._errors.RequestError` for a request that is no CloudEvent the handler can
   take (answer ``invoker.refuse(exc)``); a binding failure is kept in its :class:`Call` and
   fails that call only (one event of a batch). ``invoker.runnable(prepared)`` are the calls
   to make: a wrapper (dedup) may have answered some events already.
2. Each call, in order: ``invoker.call(call)`` on a thread (a coroutine is run on the shared
   event loop and waited for), or ``await invoker.acall_each(calls, results)`` on an event
   loop. Both give one :data:`Result` per call: ``(ok, value or exception, seconds)``.
3. ``invoker.conclude(prepared, results)`` is the response (pyfunc's :class:`Response`, or a
   werkzeug one for Flask handlers): replies encoded, failures mapped (_failures.py), each
   call counted. It never raises. ``invoker.abandon(prepared)`` instead, when nobody is left
   to answer (the client hung up).

``invoker.invoke(...)`` is steps 1-3 in the calling thread. The environ is a WSGI environ
(PEP 3333); an ASGI path builds one from its scope (the request's headers as ``HTTP_*``, its
``PATH_INFO``, ``QUERY_STRING``, ``CONTENT_TYPE``) and sends the Response it gets back.

Metrics observe (:class:`Observer`; _metrics.MetricsObserver when ``PYFUNC_METRICS`` is on)
and dedup wraps the invoker (_dedup.Deduplicated), so neither shows up as a branch here. A batch
that nothing observes or wraps takes the batch lane (_batchlane.py: steps 2 and 3 per event in
one loop, the general conclusion for any outcome but a reply).
"""

from __future__ import annotations

import inspect
import threading
import time

from . import _codec as codec
from ._binding import Invocation
from ._carry import trace_id
from ._codec import BATCH
from ._errors import RequestError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Callable, Optional, Protocol

    from ._async import AsyncRunner, CallRunner
    from ._binding import Binder
    from ._codec import Event
    from ._failures import Failures
    from ._replies import Replies
    from ._tracing import Tracing
    from ._types import Environ

    # (ok, the call's result or the exception it raised, seconds it took)
    Result = tuple[bool, Any, float]

__all__ = ["Call", "Invoker", "Observer", "Prepared", "decode", "invoke"]

# What handlers return most: no isawaitable() (an ABC check) for them.
_NEVER_AWAITABLE = frozenset({tuple, dict, list, str, bytes, type(None), int, float, bool})


class Call:
    """One call of the handler: what it can draw on and its bound arguments (or why binding failed)."""

    __slots__ = ("inv", "args", "kwargs", "error")

    def __init__(self, inv: Invocation, binder: Binder) -> None:
        self.inv = inv
        self.args: tuple[Any, ...] = ()
        self.kwargs: dict[str, Any] = {}
        self.error: Optional[BaseException] = None
        try:
            args, self.kwargs = binder.arguments(inv)
            self.args = tuple(args)
        except BaseException as exc:  # noqa: B036 - raised by the call, so concluded like its own
            self.error = exc


class Prepared:
    """A request decoded and bound: what the call and conclude steps work from."""

    __slots__ = ("environ", "mode", "events", "calls", "answers", "claims")

    def __init__(self, environ: Environ, mode: Optional[str], events: list[Event], calls: list[Call]) -> None:
        self.environ = environ
        self.mode = mode  # the request's content mode; None: an HTTP handler
        self.events = events
        self.calls = calls  # one per event (one for an HTTP request), in order
        # Per event, a response given before any call (dedup: a duplicate), or None; None: all run.
        self.answers: Optional[list[Any]] = None
        self.claims: Optional[list[Any]] = None  # what a wrapper holds per event (dedup's claims)


class Observer:
    """What an invocation reports as it goes; this one ignores it all (metrics off).

    _metrics.MetricsObserver counts. Each is called on the thread the step runs on.
    """

    def entered(self) -> None:
        """A request to the function began (the in-flight count)."""

    def left(self) -> None:
        """... and was answered."""

    def rejected(self) -> None:
        """Refused before any call: no CloudEvent, or over ``PYFUNC_MAX_CONCURRENCY``."""

    def invoked(self, outcome: Optional[str], response: Any, ce_type: Optional[str], seconds: float) -> None:
        """One call concluded; ``outcome`` None: read it from ``response`` (an HTTP handler's)."""

    def batch(self, size: int) -> None:
        """A batch of ``size`` events was concluded."""

    def duplicate(self, kind: str) -> None:
        """A redelivery answered without a call: ``in_flight`` or ``replayed``."""

    def dedup_error(self) -> None:
        """The dedup store failed; the event ran anyway."""

    def ready(self) -> None:
        """The server listens: the startup time is known."""


class Invoker:
    """prepare → call → conclude for one handler (see the module's docstring)."""

    def __init__(self, function: Callable[..., Any], binder: Binder, is_async: bool, timeout: Optional[float],
                 reply_mode: Optional[str], replies: Replies, failures: Failures, observer: Observer) -> None:
        self.function = function
        self.binder = binder
        self.timeout = timeout
        self.reply_mode = reply_mode
        self.replies = replies
        self.failures = failures
        self.observer = observer
        self._runner: Optional[AsyncRunner] = None
        self._executor: Optional[CallRunner] = None
        self._coroutines = is_async  # the handler returns coroutines: run them on the loop
        if is_async or timeout:
            from ._async import AsyncRunner, CallRunner

            if is_async:
                self._runner = AsyncRunner()
            else:  # a sync call then runs on a thread the request can stop waiting for
                self._executor = CallRunner()
        self._runner_lock = threading.Lock()
        self.traced = False  # calls wrapped in spans (trace()): no batch lane then

    def runner(self) -> AsyncRunner:
        """The event loop of this handler's coroutines, started on first use."""
        if self._runner is None:
            with self._runner_lock:
                if self._runner is None:
                    from ._async import AsyncRunner

                    self._runner = AsyncRunner()
        return self._runner

    def iterate(self, iterator: Any) -> Any:
        """An async iterator a handler returned, as a streamed body (see AsyncRunner.iterate)."""
        return self.runner().iterate(iterator)

    def close(self) -> None:
        """Stop the event loop and the call threads (after the ``stop()`` hook, which may use them)."""
        if self._runner is not None:
            self._runner.close()
        if self._executor is not None:
            self._executor.close()

    def trace(self, tracing: Tracing) -> None:
        """Wrap each call in an OpenTelemetry span (_tracing.Tracing)."""
        self.traced = True
        self._call = tracing.wrap(self._call)  # type: ignore[method-assign]
        self._acall = tracing.wrap_async(self._acall)  # type: ignore[method-assign, assignment]

    # ------------------------------------------------------------------ 1. prepare

    def prepare(self, environ: Environ, body: bytes, request: Any, fields: dict[str, Any]) -> Prepared:
        """Decode and bind; raises RequestError when the request is no CloudEvent (``fields``: the log's)."""
        binder = self.binder
        if not binder.needs_event:
            fields["trace_id"] = trace_id(environ)
            return Prepared(environ, None, [], [Call(Invocation(environ, body, None, request), binder)])
        mode, events = decode(environ, body, fields)
        return Prepared(environ, mode, events, [Call(Invocation(environ, body, event, request), binder)
                                                 for event in events])

    def refuse(self, exc: RequestError) -> Any:
        """The answer to a request :meth:`prepare` refused."""
        self.observer.rejected()
        return self.failures.response(exc)

    def runnable(self, prepared: Prepared) -> list[Call]:
        """The calls to make: those of events no wrapper answered."""
        answers = prepared.answers
        if answers is None:
            return prepared.calls
        return [call for call, answer in zip(prepared.calls, answers) if answer is None]

    # ------------------------------------------------------------------ 2. call

    def call(self, call: Call) -> Result:
        """One call on this thread (a coroutine it returns is awaited on the loop); never raises."""
        started = time.perf_counter()
        try:
            return True, self._call(call.inv, call), time.perf_counter() - started
        except BaseException as exc:  # noqa: B036 - a handler's SystemExit must not end the server
            return False, exc, time.perf_counter() - started

    def _call(self, inv: Invocation, call: Call) -> Any:
        if call.error is not None:
            raise call.error
        if self._coroutines:
            return self.runner().run(self.function(*call.args, **call.kwargs), self.timeout)
        if self._executor is not None:
            result = self._executor.call(self.timeout, self.function, *call.args, **call.kwargs)
        else:
            result = self.function(*call.args, **call.kwargs)
        if type(result) not in _NEVER_AWAITABLE and inspect.isawaitable(result):  # a sync wrapper around a coroutine
            return self.runner().run(result, self.timeout)
        return result

    async def acall_each(self, calls: list[Call], results: list[Result]) -> list[Result]:
        """Each call in order, on the event loop: one for a request, one per event of a batch.

        Each call's result goes into ``results`` as it ends: an event of a batch that fails does
        not stop the others (docs/delivery.md, "Batches"). A cancel (PYFUNC_TIMEOUT, a client
        hanging up) still ends the rest.
        """
        for call in calls:
            started = time.perf_counter()
            try:
                results.append((True, await self._acall(call.inv, call), time.perf_counter() - started))
            except Exception as exc:  # noqa: BLE001 - concluded like a worker's
                results.append((False, exc, time.perf_counter() - started))
        return results

    async def _acall(self, inv: Invocation, call: Call) -> Any:
        if call.error is not None:
            raise call.error
        result = self.function(*call.args, **call.kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

    # ------------------------------------------------------------------ 3. conclude

    def conclude(self, prepared: Prepared, results: list[Result]) -> Any:
        """The response to a prepared request whose runnable calls gave ``results``, in order."""
        responses = self.respond(prepared, results)
        return responses[0] if prepared.mode != BATCH else self.assemble(prepared, responses)

    def respond(self, prepared: Prepared, results: list[Result]) -> list[Any]:
        """Each event's response (one for an HTTP request), each call counted."""
        environ, observer = prepared.environ, self.observer
        if prepared.mode is None:
            ok, value, seconds = results[0]
            outcome, response = self.replies.conclude(environ, None, None, ok, value)
            observer.invoked(outcome, response, None, seconds)
            return [response]
        mode = self.replies.item_mode if prepared.mode == BATCH else self.reply_mode or prepared.mode
        answers = prepared.answers or [None] * len(prepared.events)
        remaining = iter(results)
        responses = []
        for event, answer in zip(prepared.events, answers):
            if answer is not None:
                responses.append(answer)
                continue
            ok, value, seconds = next(remaining)
            outcome, response = self.replies.conclude(environ, event, mode, ok, value)
            observer.invoked(outcome, response, event.attributes.get("type"), seconds)
            responses.append(response)
        return responses

    def assemble(self, prepared: Prepared, responses: list[Any]) -> Any:
        """The request's response from its events' (a batch's, docs/delivery.md "Batches")."""
        if prepared.mode != BATCH:
            return responses[0]
        self.observer.batch(len(prepared.events))
        return self.replies.batch(prepared.events, responses)

    def abandon(self, prepared: Prepared) -> None:
        """Nobody is left to answer (the client hung up); a wrapper lets go of what it holds."""

    # ------------------------------------------------------------------ all three

    def invoke(self, environ: Environ, body: bytes, request: Any, fields: dict[str, Any],
               defer: Optional[Callable[[Prepared, list[Call]], None]] = None) -> Any:
        """Steps 1-3 on this thread (see :func:`invoke`); a batch may take the batch lane."""
        if defer is not None or not self.binder.needs_event:  # an async handler, an HTTP one
            return invoke(self, environ, body, request, fields, defer)
        try:
            prepared = self.prepare(environ, body, request, fields)
        except RequestError as exc:
            return self.refuse(exc)
        if prepared.mode == BATCH:  # --- batch lane hook (_batchlane.py): steps 2-3 fused per event
            from . import _batchlane

            if _batchlane.eligible(self):
                return _batchlane.answer(self, prepared)
        return self.conclude(prepared, [self.call(call) for call in prepared.calls])


def invoke(invoker: Steps, environ: Environ, body: bytes, request: Any, fields: dict[str, Any],
           defer: Optional[Callable[[Prepared, list[Call]], None]] = None) -> Any:
    """prepare → call → conclude on this thread; never raises, but ``defer`` may.

    With ``defer``, a request with calls to make is handed to it after preparing (it raises
    _deferred.Deferred: the calls run on the event loop, and ``conclude`` is called later).
    """
    try:
        prepared = invoker.prepare(environ, body, request, fields)
    except RequestError as exc:
        return invoker.refuse(exc)
    calls = invoker.runnable(prepared)
    if defer is not None and any(call.error is None for call in calls):
        defer(prepared, calls)
    return invoker.conclude(prepared, [invoker.call(call) for call in calls])


def decode(environ: Environ, body: bytes, fields: dict[str, Any]) -> tuple[str, list[Event]]:
    """The request's content mode and events, its log fields set (trace id, ``ce_*``); raises
    RequestError when it is no CloudEvent. Step 1's decoding, for serving paths without a
    binder too (pyfunc._funcpython's CloudEvents flavour)."""
    fields["trace_id"] = trace_id(environ)  # W3C or B3 (_carry.py); set before decoding: 400s too
    mode, events = codec.decode_request(environ, body)
    if mode != BATCH:
        attrs = events[0].attributes
        fields.update(ce_id=attrs.get("id"), ce_type=attrs.get("type"), ce_source=attrs.get("source"))
        if fields["trace_id"] is None:  # the transport's trace context (the caller) wins, as for the span
            fields["trace_id"] = trace_id({}, attrs)
    return mode, events


if TYPE_CHECKING:
    class Steps(Protocol):
        """What a serving path drives: :class:`Invoker`, or a wrapper of it (_dedup.Deduplicated)."""

        timeout: Optional[float]
        failures: Failures

        def runner(self) -> AsyncRunner: ...

        def iterate(self, iterator: Any) -> Any: ...

        def close(self) -> None: ...

        def trace(self, tracing: Tracing) -> None: ...

        def prepare(self, environ: Environ, body: bytes, request: Any, fields: dict[str, Any]) -> Prepared: ...

        def refuse(self, exc: RequestError) -> Any: ...

        def runnable(self, prepared: Prepared) -> list[Call]: ...

        def call(self, call: Call) -> Result: ...

        async def acall_each(self, calls: list[Call], results: list[Result]) -> list[Result]: ...

        def conclude(self, prepared: Prepared, results: list[Result]) -> Any: ...

        def abandon(self, prepared: Prepared) -> None: ...

        def invoke(self, environ: Environ, body: bytes, request: Any, fields: dict[str, Any],
                   defer: Optional[Callable[[Prepared, list[Call]], None]] = None) -> Any: ...
