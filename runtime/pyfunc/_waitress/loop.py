"""pyfunc's event loop (_eventloop.EpollLoop) installed in a waitress server, and what it reads.

waitress runs its own select loop over its socket map; the loop installed here watches the same
map with epoll, and learns from the workers which connection each wake-up is about.
"""

from __future__ import annotations

import operator
import threading

from waitress import wasyncore
from waitress.channel import HTTPChannel

from .contract import logger, loop_contract_problems, waitress_version

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Callable, Optional, Protocol, TypeVar
else:
    Protocol = object  # the Protocol below is for the type checker: a plain class at run time

__all__ = ["Loop", "LoopChannel", "fileno", "install_loop", "is_connection", "readwrite", "serving",
           "worker_owns_output"]

def _missing(*_args: Any) -> None:
    raise RuntimeError("waitress.wasyncore.readwrite is missing")  # install_loop never installs the loop then


# The loop dispatches an event as waitress's own loop does; bound once, called per event.
readwrite: Callable[[Any, int], None] = getattr(wasyncore, "readwrite", _missing)
# The fd a dispatcher is registered under in the socket map (None once closed).
fileno: Callable[[Any], Optional[int]] = operator.attrgetter("_fileno")


def worker_owns_output(channel: Any) -> bool:
    """A request of ``channel`` is queued or in a worker, which sends its response itself.

    waitress's workers flush what they write (``write_soon``, ``send_bytes`` 1) and wake the loop
    when the socket is full. Until then the loop has nothing to send: asked to, it would only
    find the output buffer locked by the worker (``_flush_some_if_lockable``) and ask again.
    """
    return bool(channel.requests) and not channel.will_close


class Loop(Protocol):
    """What :func:`install_loop` needs from a loop (eventloop.EpollLoop)."""

    changed: Any  # a deque of connections a worker changed; appends are thread-safe

    def recompute_everything(self) -> None: ...

    def forget(self, fd: Optional[int]) -> None: ...

    def loop(self, timeout: float = 30.0, map: Any = None, use_poll: bool = False, count: Any = None) -> None: ...


if TYPE_CHECKING:
    L = TypeVar("L", bound=Loop)


# The connection a worker thread is serving: what its wake-ups of the loop are about.
serving = threading.local()


class LoopChannel(HTTPChannel):
    """waitress's HTTP channel, telling the loop which connection a worker's wake-up concerns."""

    def __init__(self, server: Any, sock: Any, addr: Any, adj: Any, map: Any = None) -> None:
        super().__init__(server, sock, addr, adj, map)
        server.event_loop.changed.append(self)  # a new connection: watch it from the next turn

    def service(self) -> None:
        serving.channel = self
        try:
            super().service()
        finally:
            serving.channel = None

    def del_channel(self, map: Any = None) -> None:
        looped: Any = self.server  # a server install_loop gave an event_loop
        looped.event_loop.forget(fileno(self))
        super().del_channel(map)


def is_connection(obj: Any) -> bool:
    """A client connection of a looped server (the other dispatchers: the listener, the trigger)."""
    return isinstance(obj, LoopChannel)


def install_loop(server: Any, make_loop: Callable[[dict[int, Any]], L]) -> Optional[L]:
    """Run ``server`` on ``make_loop(socket map)`` instead of waitress's select loop.

    Returns None, after one warning line, when this waitress does not hold the loop's contract:
    the server then stays on waitress's own loop. Installs the channel class first: the other
    channel behaviour (refusals, receive deadline) subclasses it.
    """
    problems = loop_contract_problems(server)
    if problems:
        logger.warning("waitress %s lacks what pyfunc's event loop relies on (%s); serving on waitress's own loop",
                       waitress_version(), "; ".join(problems))
        return None
    loop = make_loop(server._map)
    server.event_loop = loop
    server.channel_class = LoopChannel
    waitress_maintenance = server.maintenance

    def maintenance(now: float) -> None:
        waitress_maintenance(now)
        loop.recompute_everything()  # maintenance may have closed any connection

    server.maintenance = maintenance
    server.asyncore = loop  # run() calls its loop()
    trigger, changed = server.trigger, loop.changed

    def pull_trigger() -> None:
        # Every change a worker makes to a connection is followed by a wake-up (waitress's own
        # rule): note the connection first, so the loop that wakes finds the note.
        channel = getattr(serving, "channel", None)
        if channel is not None:
            changed.append(channel)
        trigger.pull_trigger()

    server.pull_trigger = pull_trigger
    return loop
