"""The seam between the app and a server that can park a request: waitress-free.

An ``async def`` handler need not hold a worker thread while it awaits. The app decodes and
binds the request on a worker, then raises :class:`Deferred` with the work to do; a server
that can park requests (pyfunc._waitress.deferral) catches it, frees the worker, calls
``work.start(wake)``, and runs the app again on a worker once ``wake()`` is called. The app
finds its finished work in the environ and answers it as it would have answered at once.

A streamed async body goes the same way: the app sends the head from a worker, then hands a
:class:`Sink` (made by the server's ``make_sink`` from the WSGI ``write`` callable) to a work
that sends each chunk from the event loop.

Only these protocols cross the seam: the app imports nothing from the server adapter, and
the in-process test client never loads waitress.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Callable, Optional, Protocol

    from ._types import Environ
else:
    Protocol = object  # the Protocols below are for the type checker: plain classes at run time

__all__ = ["RESUMED", "Deferred", "DeferredWork", "Sink", "StreamCancelled"]

# The environ key of a parked invocation the worker resumes (_async.AsyncInvocation).
RESUMED = "pyfunc.resumed"


class DeferredWork(Protocol):
    """What the app hands the server in :class:`Deferred` (_async.AsyncInvocation, _async.AsyncStream)."""

    environ: Environ

    def start(self, wake: Callable[[], None]) -> None:
        """Begin; call ``wake()`` once, from any thread, when the request can be answered."""

    def cancel(self) -> None:
        """The client went away: stop the work (any thread; idempotent; also after it finished)."""

    def abandon(self) -> None:
        """Finished, but there is nobody to answer: release what the request holds."""


class Sink(Protocol):
    """Where a parked response's chunks go, from the event loop thread (_waitress.deferral.StreamSink)."""

    error: Optional[BaseException]  # set by the app when the stream failed: the server closes the connection

    def open(self) -> bool:
        """Whether the client is still connected."""

    def room(self) -> bool:
        """Whether a chunk can be sent now without waiting for the client."""

    def send(self, data: bytes) -> None:
        """Queue ``data``; raises once the client left."""

    def when_room(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the server's I/O thread) once :meth:`room` or the connection closed."""


if TYPE_CHECKING:
    # The server's sink for the ``write`` callable its ``start_response`` returned.
    MakeSink = Callable[[Callable[[bytes], Any]], Sink]


class Deferred(BaseException):  # noqa: N818 - a signal, not an error
    """Raised by the app inside a server's task: "answer this request later, release the worker".

    A BaseException and not an Exception, so that a WSGI server's request handling (which
    turns an Exception into a 500) lets it through before writing anything.
    """

    def __init__(self, work: DeferredWork) -> None:
        super().__init__()
        self.work = work


class StreamCancelled(Exception):  # noqa: N818 - the stream's end, recorded on its sink
    """A stream sent from the event loop was cancelled: the client hung up (not a timeout)."""
