"""The asynchronous machinery: an event loop for coroutines, threads for abandonable calls,
and the two kinds of work a parked request waits for (see _deferred.py).

Imported only when a handler needs it (an ``async def`` handler, an awaitable hook or reply,
``PYFUNC_TIMEOUT``): asyncio is a fifth of a cold start otherwise.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
import time

from ._deferred import RESUMED, StreamCancelled
from ._errors import InvocationTimeout

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Callable, Iterator, Optional

    from ._deferred import Sink
    from ._invocation import Call, Observer, Prepared, Result, Steps
    from ._responses import AsyncChunks
    from ._types import Environ

__all__ = ["AsyncInvocation", "AsyncRunner", "AsyncStream", "CallRunner", "awaited", "room_in"]

logger = logging.getLogger("pyfunc")


class AsyncRunner:
    """One event loop on a daemon thread, shared by every ``async def`` invocation.

    Worker threads hand coroutines over and wait for their results, so a slow ``await`` in
    one request never blocks another.
    """

    def __init__(self) -> None:
        import asyncio

        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="pyfunc-async", daemon=True)
        self._thread.start()

    def close(self, wait: float = 5.0) -> None:
        """Stop the loop and close it once its thread has left (within ``wait`` seconds; a
        coroutine that blocks the loop keeps it, and the daemon thread ends with the process)."""
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(wait)
        if not self._thread.is_alive():
            self.loop.close()

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

        The worker waits for each item (the loop never blocks on the client: the server's
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


class CallRunner:
    """Runs synchronous calls on daemon threads so that a request can stop waiting (``PYFUNC_TIMEOUT``).

    Not a ``ThreadPoolExecutor``: its threads are joined at interpreter exit, so one abandoned
    call that never returns would keep the process from exiting after SIGTERM; and its fixed
    pool would let abandoned calls starve the new ones. Here an idle thread is reused, else a
    new one is started: at most (worker threads + calls still abandoned) threads.
    """

    def __init__(self) -> None:
        import queue

        self._jobs: Any = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._closed = False

    def close(self) -> None:
        """End the idle threads; a call still running (abandoned) ends its thread when it returns."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, 0
        for _ in range(idle):
            self._jobs.put(None)

    def call(self, timeout: Optional[float], function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``function(*args, **kwargs)`` in the caller's context; :class:`InvocationTimeout` after ``timeout``."""
        done = threading.Event()
        outcome: list[Any] = []
        with self._lock:
            if self._closed:
                raise RuntimeError("the call runner is closed")
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
            job = self._jobs.get()
            if job is None:  # close()
                return
            context, function, args, kwargs, outcome, done = job
            try:
                outcome.append((True, context.run(function, *args, **kwargs)))
            except BaseException as exc:  # noqa: B036 - handed to the waiting request thread
                outcome.append((False, exc))
            done.set()
            del job, context, function, args, kwargs, outcome, done
            with self._lock:
                if self._closed:
                    return
                self._idle += 1


def settle(future: Any, value: Any) -> None:
    """Give an asyncio future its result unless it has one (or there is none yet); on the loop."""
    if future is not None and not future.done():
        future.set_result(value)


def release_parked(request: Any) -> None:
    """What a request parked off its worker (an AsyncInvocation, an ASGI app's AsgiCall) gives
    back once it is over: its ``PYFUNC_MAX_CONCURRENCY`` slot (``slots``) and its place in the
    in-flight count (``observer``), each once; and the environ's reference to it, a cycle."""
    request.environ.pop(RESUMED, None)
    slots, request.slots = request.slots, None
    if slots is not None:
        slots.release()
    observer, request.observer = request.observer, None
    if observer is not None:
        observer.left()


class AsyncInvocation:
    """One request to an ``async def`` handler, run on the event loop while no worker waits for it.

    A worker prepares the request (decode, bind: _invocation.Invoker.prepare), then raises
    ``Deferred(self)`` and is free; the server calls :meth:`start`. The calls run as one
    asyncio task; when it is done, ``wake()`` hands the request back to a worker, which finds
    this object in the environ (``RESUMED``) and concludes :meth:`results` through the same
    code as a synchronous call. ``PYFUNC_TIMEOUT`` and a client hanging up cancel the task:
    the handler sees ``asyncio.CancelledError``.
    """

    __slots__ = ("invoker", "prepared", "environ", "fields", "started", "expected", "calls", "context",
                 "slots", "observer", "outcome", "task", "timer", "timed_out", "cancelled", "wake", "results",
                 "on_abandon")

    def __init__(self, invoker: Steps, prepared: Prepared, calls: list[Call], fields: dict[str, Any],
                 started: float, on_abandon: Callable[[AsyncInvocation], None]) -> None:
        self.invoker = invoker
        self.prepared = prepared
        self.environ = prepared.environ
        self.fields = fields
        self.started = started
        self.expected = len(calls)
        self.calls = calls  # in order: one per event of a batch that runs
        self.context = contextvars.copy_context()  # the request's log fields, as in a worker
        self.slots: Any = None  # the PYFUNC_MAX_CONCURRENCY semaphore this holds a slot of
        self.observer: Optional[Observer] = None  # whose in-flight count this is in until answered
        self.outcome: Optional[tuple[bool, Any]] = None  # the task's: (True, results) or (False, exception)
        self.task: Any = None
        self.timer: Any = None
        self.timed_out = False
        self.cancelled = False
        self.wake: Optional[Callable[[], None]] = None
        # Each call's (ok, result or exception, seconds) as it ends: after a timeout, the events
        # of a batch that finished before it keep their own outcome.
        self.results: list[Result] = []
        self.on_abandon = on_abandon  # the app's access line for a request nobody is answered

    # On the worker that deferred it, after the server parked the request.
    def start(self, wake: Callable[[], None]) -> None:
        self.wake = wake
        self.environ[RESUMED] = self
        self.invoker.runner().loop.call_soon_threadsafe(self._begin)

    # On the event loop.
    def _begin(self) -> None:
        if self.cancelled:  # the client hung up before the task began
            self._finish((False, None))
            return
        loop = self.invoker.runner().loop
        self.task = self.context.run(loop.create_task, self.invoker.acall_each(self.calls, self.results))
        self.calls = []  # the task holds them now, and lets go of them when it ends
        if self.invoker.timeout:
            self.timer = loop.call_later(self.invoker.timeout, self._time_out)
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

    # Any thread (the server's I/O thread when the connection closes).
    def cancel(self) -> None:
        if self.cancelled or self.outcome is not None:
            return
        self.cancelled = True
        self.invoker.runner().loop.call_soon_threadsafe(self._cancel_task)

    def _cancel_task(self) -> None:
        if self.task is not None:
            self.task.cancel()

    # On the worker that resumes it.
    def finished_results(self) -> list[Result]:
        """Each call's outcome: a timeout (or a cancel) fails the call it interrupted and those not
        begun; the ones that finished before it keep theirs."""
        results = list(self.results)
        outcome = self.outcome
        if outcome is None or not outcome[0]:
            error = outcome[1] if outcome is not None else None
            if error is None:
                import asyncio

                error = asyncio.CancelledError()
            results += [(False, error, time.perf_counter() - self.started)] * (self.expected - len(results))
        return results

    def release(self) -> None:
        """The request is over: see :func:`release_parked`."""
        release_parked(self)

    def abandon(self) -> None:
        if self.slots is None and RESUMED not in self.environ:
            return  # answered already
        self.release()
        self.invoker.abandon(self.prepared)  # no answer went out: dedup lets its events run again
        logger.info("the client closed the connection before the answer; the invocation was %s",
                    "cancelled" if self.cancelled else "finished")
        self.on_abandon(self)


class AsyncStream:
    """An async generator's items, sent from the event loop to a parked connection (FunctionApp._stream).

    Back-pressure: an item is sent only while the connection's buffer is under the server's
    high watermark; otherwise the stream awaits the sink's "room" signal, so a slow client
    slows the generator down without blocking the loop or holding a worker.
    """

    __slots__ = ("runner", "qualname", "environ", "sink", "body", "task", "wake", "cancelled")

    def __init__(self, runner: AsyncRunner, qualname: str, environ: Environ, sink: Sink, body: AsyncChunks) -> None:
        self.runner = runner
        self.qualname = qualname
        self.environ = environ
        self.sink = sink
        self.body = body
        self.task: Any = None
        self.wake: Optional[Callable[[], None]] = None
        self.cancelled = False

    def start(self, wake: Callable[[], None]) -> None:
        self.wake = wake
        self.runner.loop.call_soon_threadsafe(self._begin)

    def _begin(self) -> None:
        self.task = self.runner.loop.create_task(self._pump())
        self.task.add_done_callback(self._done)
        if self.cancelled:
            self.task.cancel()

    async def _pump(self) -> None:
        sink = self.sink
        async for data in self.body.encoded():
            if not data:
                continue
            if not sink.room():
                await room_in(sink)
            sink.send(data)  # raises (waitress's ClientDisconnected) once the client left

    def _done(self, task: Any) -> None:
        self.task = None
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            if type(error).__name__ != "ClientDisconnected":  # the server's: not importable here
                logger.error("the async generator %s returned failed midway", self.qualname, exc_info=error)
            self.sink.error = error
        elif task.cancelled():
            self.sink.error = StreamCancelled("the client hung up")
        wake, self.wake = self.wake, None
        if wake is not None:
            wake()

    def cancel(self) -> None:
        if self.cancelled:
            return
        self.cancelled = True
        self.runner.loop.call_soon_threadsafe(self._cancel_task)

    def _cancel_task(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def abandon(self) -> None:
        pass  # the slot was given back and the access line written when the stream began


async def room_in(sink: Sink) -> None:
    """Wait, on the loop, until ``sink`` has room for a chunk or its client left: the back-pressure
    of every stream sent from the event loop (AsyncStream, pyfunc._asgi's streamed responses)."""
    import asyncio

    loop = asyncio.get_running_loop()
    while sink.open() and not sink.room():
        drained = loop.create_future()

        def room(drained: Any = drained) -> None:  # on the server's I/O thread
            loop.call_soon_threadsafe(_resolve, drained)

        sink.when_room(room)
        if sink.open() and not sink.room():  # else it drained before the callback was set
            await drained


def _resolve(future: Any) -> None:
    if not future.done():
        future.set_result(None)


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
