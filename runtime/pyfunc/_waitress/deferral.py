"""Deferred invocations: an ``async def`` handler's request parked while no worker waits for it.

An async handler's request is served in two short hops on worker threads, and none in between:

1. A worker runs the app as usual; the app decodes and binds the request, then raises
   Deferred(work). It passes through waitress's task and channel (a BaseException that is not
   an Exception), so nothing is written and the request stays at the head of
   channel.requests: pipelined requests wait behind it, as behind any request in service.
   The channel notes the work, then calls work.start(wake) and the worker is free.
2. When the work is done, wake() (on any thread) dispatches the channel again; its service()
   runs waitress's own service once more, whose task is given the request's environ: the
   app finds the finished work there and answers as it would have at once (same encoding,
   status codes, access line). waitress then pops the request and goes on with the next.

While the request is parked the connection stays readable, so a client that hangs up is seen
at once (EOF or a reset reaches handle_close) and the work is cancelled.

The app raises _deferred.Deferred (waitress-free); this module is the server side of that seam.
"""

from __future__ import annotations

from waitress.channel import HTTPChannel

from .._deferred import Deferred
from .contract import deferral_contract_problems, logger, waitress_version
from .heads import QuickTask
from .loop import serving

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Callable, Optional

    from .._deferred import DeferredWork

__all__ = ["ResumableTask", "StreamSink", "install_deferral"]


class ResumableTask(QuickTask):
    """waitress's WSGI task, given the environ of a request it resumes (the app finds its work in it),
    or the very task of a stream sent from the event loop, come back to finish it."""

    pyfunc_streamed = False  # its stream was sent by a StreamSink: execute() has nothing left to do
    pyfunc_error: Optional[BaseException] = None  # how that stream failed, if it did

    def __new__(cls, channel: Any, request: Any) -> Any:
        task = getattr(channel, "pyfunc_task", None)
        if task is not None:  # waitress's service() makes "a new task": it gets the stream's own
            channel.pyfunc_task = None
            return task
        return super().__new__(cls)

    def __init__(self, channel: Any, request: Any) -> None:
        if not self.pyfunc_streamed:  # a returning stream task keeps its state (headers written)
            super().__init__(channel, request)

    def execute(self) -> None:
        if self.pyfunc_streamed:
            # The stream is sent; finish() ends it (the last chunk) and waitress goes on as after
            # any response. A stream that failed midway closes the connection, as a generator
            # failing under waitress does.
            self.pyfunc_streamed = False
            error, self.pyfunc_error = self.pyfunc_error, None
            if error is not None:
                raise error
            return
        super().execute()

    def get_environment(self) -> Any:
        channel: Any = self.channel
        environ = getattr(channel, "pyfunc_resume", None)  # a channel of install_deferral's
        if environ is not None:
            channel.pyfunc_resume = None
            self.environ = environ
            return environ
        return super().get_environment()


class StreamSink:
    """Sends a streamed body from the event loop thread, through the waitress task that began it.

    The app starts the response in a worker (``write = start_response(...)``, ``write(b"")``
    sends the head), then raises ``Deferred`` with a work holding this sink: the request stays
    parked while the event loop calls :meth:`send` for each chunk. :meth:`send` never blocks
    on the client: the app sends only while :meth:`room` (waitress's ``outbuf_high_watermark``)
    and otherwise waits, on the loop, for :meth:`when_room`'s callback, which the channel calls
    from the I/O loop once it has flushed below the watermark (or the connection closed). When
    the work wakes the channel, its task comes back (``ResumableTask``) to write the last chunk.
    """

    def __init__(self, write: Callable[[bytes], Any]) -> None:
        bound: Any = write  # a waitress Task's bound write method
        self.task: Any = bound.__self__
        self.channel: Any = self.task.channel
        self.high_watermark: int = self.channel.adj.outbuf_high_watermark
        self.error: Optional[BaseException] = None  # set by the app when the stream failed

    def open(self) -> bool:
        return bool(self.channel.connected)

    def room(self) -> bool:
        """Whether a chunk can be sent now without waiting for the client."""
        return bool(self.channel.total_outbufs_len <= self.high_watermark)

    def send(self, data: bytes) -> None:
        """Queue ``data`` (chunk-framed by the task); raises ``ClientDisconnected`` once the client left."""
        serving.channel = self.channel  # the wake-up write_soon may pull notes this connection
        try:
            self.task.write(data)
        finally:
            serving.channel = None

    def when_room(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the I/O loop thread) once :meth:`room` or the connection closed."""
        self.channel.pyfunc_drained = callback
        # The flush may have happened already, or the loop may not be watching for writes now.
        serving.channel = self.channel
        try:
            self.channel.server.pull_trigger()
        finally:
            serving.channel = None


class _DeferringChannel(HTTPChannel):
    """A channel that can park the request at its head while the app's work goes on elsewhere."""

    task_class = ResumableTask
    pyfunc_work: Optional[DeferredWork] = None  # the work the parked request waits for
    pyfunc_resume: Optional[dict[str, Any]] = None  # the environ the next task resumes
    pyfunc_task: Optional[ResumableTask] = None  # the stream task the next service finishes
    pyfunc_drained: Optional[Callable[[], None]] = None  # a StreamSink waiting for room

    def service(self) -> None:
        work = self.pyfunc_work
        if work is not None:  # dispatched again by wake(): the work is done
            self.pyfunc_work = None
            sink: Optional[StreamSink] = getattr(work, "sink", None)
            if sink is not None:  # a stream: its task writes the last chunk
                sink.task.pyfunc_streamed = True
                sink.task.pyfunc_error = sink.error
                self.pyfunc_task = sink.task
            elif self.connected:
                self.pyfunc_resume = work.environ
            else:  # waitress's service only closes up; the app never sees the request again
                work.abandon()
        try:
            super().service()
        except Deferred as deferred:
            self._park(deferred.work)
            return
        if work is not None and (self.pyfunc_resume is not None or self.pyfunc_task is not None):
            # The client hung up between the check above and waitress's own: no task ran.
            self.pyfunc_resume = self.pyfunc_task = None
            work.abandon()

    def _park(self, work: DeferredWork) -> None:
        self.pyfunc_work = work
        # readable() changed (a parked channel watches for a hang-up): wake the loop, noting
        # this connection (install_loop's pull_trigger reads serving.channel).
        serving.channel = self
        try:
            self.server.pull_trigger()
        finally:
            serving.channel = None
        work.start(self._wake)
        if not self.connected:  # hung up before the work was noted: handle_close saw no work
            work.cancel()

    def _wake(self) -> None:
        server: Any = self.server  # add_task takes any object with service() and cancel()
        server.add_task(self)

    def readable(self) -> bool:
        if self.pyfunc_work is not None:
            # Read while parked, so EOF is seen; at most one pipelined request is read ahead.
            return not (self.will_close or self.close_when_flushed or self.total_outbufs_len
                        or len(self.requests) > 1)
        return bool(super().readable())

    def handle_write(self) -> None:
        super().handle_write()
        drained = self.pyfunc_drained
        if drained is not None and (not self.connected or self.total_outbufs_len <= self.adj.outbuf_high_watermark):
            self.pyfunc_drained = None
            drained()

    def handle_close(self) -> None:
        super().handle_close()
        work = self.pyfunc_work  # read after connected became False (see _park)
        if work is not None:
            work.cancel()
        drained, self.pyfunc_drained = self.pyfunc_drained, None
        if drained is not None:
            drained()


def install_deferral(server: Any) -> bool:
    """Let the app release its worker while an ``async def`` handler awaits (raising :class:`Deferred`).

    Returns False, after one warning, when this waitress lacks what that relies on: the app
    must then not raise Deferred (async handlers hold their worker while they await).
    """
    problems = deferral_contract_problems(server)
    if problems:
        logger.warning("waitress %s lacks what pyfunc's deferred async invocations rely on (%s); "
                       "async handlers hold a worker thread while they await", waitress_version(),
                       "; ".join(problems))
        return False
    server.channel_class = type("DeferringChannel", (_DeferringChannel, server.channel_class), {})
    return True
