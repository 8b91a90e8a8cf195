"""waitress's I/O loop on epoll, with each connection's interest kept between turns.

waitress's own loop (``wasyncore.poll``) asks *every* connection whether it wants to read or
write, on every turn, then hands the whole list to ``select()``. With 64 keep-alive connections
that is 128 Python calls per turn, and under load a turn serves about one request: at 64
connections the loop cost more than the function. Here a connection's interest is registered
with epoll once and recomputed only when it may have changed:

- after the loop dispatched an event to it (reads, writes and closes happen on the loop thread);
- when a worker thread changed it: waitress's rule is that a worker wakes the loop (its
  trigger) after every change to a connection; here the wake-up first notes the connection
  being served in :attr:`EpollLoop.changed`, so the loop that wakes always finds the note;
- after waitress's periodic maintenance or a thunk run on the loop (they may touch every
  connection), when everything is recomputed.

The dispatchers that are not a connection (the listening socket, whose ``readable()``
runs waitress's maintenance and applies the connection limit, and the trigger) are asked when
the number of connections changed and every ``PERIODIC`` seconds.

A worker sends its own response (waitress's workers do, ``send_bytes`` being 1); the loop
watches a connection for writes only when no worker owns its output (data left after the
response, a close) or after a worker said it found the socket full (its wake-up note): then
the loop sends the rest on the turn it is told, and watches until all is sent. waitress's
loop also watches while the worker is still writing: under level-triggered polling that spins,
each turn finding the output locked by the worker, about five turns per request that cost the
worker's core as much as its response did.

Event handling itself is waitress's (``wasyncore.readwrite``), so a connection behaves as under
the stock loop; only the bookkeeping is cheaper. Measured (bench/, CloudEvent echo, 4 threads):
loop turns per request 2.4 → 0.7 at 8 connections and 0.67 → 0.14 at 64, each turn costing
O(connections that changed) instead of O(all connections).

Every waitress internal this relies on is reached through pyfunc._waitress, which also wires
the loop into a server (``install_loop``) and checks, at startup, that waitress still has them.
"""

from __future__ import annotations

import collections
import select
import time

from ._waitress import fileno, is_connection, readwrite, worker_owns_output

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Callable, Optional

READ = select.EPOLLIN | select.EPOLLPRI
WRITE = select.EPOLLOUT
PERIODIC = 0.5  # seconds between asking the listener (maintenance is due every cleanup_interval >= 1 s)


class EpollLoop:
    """The loop of one waitress server over its socket map; _waitress.install_loop wires it in."""

    def __init__(self, map: dict[int, Any]) -> None:
        self.map = map
        self.epoll = select.epoll()
        self.changed: collections.deque[Any] = collections.deque()  # appends are thread-safe
        self._registered: dict[int, tuple[Any, int]] = {}  # fd -> (dispatcher, mask)
        self._flushing: set[int] = set()  # connections whose worker asked for help: watch writes until sent
        self._touched: list[Any] = []  # dispatchers the last turn sent events to
        self._others: list[Any] = []  # the dispatchers that are not connections: listener, trigger
        self._size = 0  # len(map) when the others were last asked
        self._next_periodic = 0.0
        self._everything = True
        self.before_wait: list[Callable[[], None]] = []  # run on every turn before waiting for events

    def recompute_everything(self) -> None:
        """Ask every dispatcher on the next turn (code on the loop thread may have touched them all)."""
        self._everything = True

    def forget(self, fd: Optional[int]) -> None:
        """A dispatcher leaves the map: drop its registration while its fd is still open."""
        if fd is None:
            return
        self._flushing.discard(fd)
        if self._registered.pop(fd, None) is None:
            return
        try:
            self.epoll.unregister(fd)
        except (OSError, ValueError):
            pass

    def loop(self, timeout: float = 30.0, map: Any = None, use_poll: bool = False, count: Any = None) -> None:
        try:
            while self.map:
                self.turn(timeout)
        finally:
            self.epoll.close()

    def turn(self, timeout: float) -> None:
        """One turn: refresh the interests that may have changed, wait, dispatch."""
        map_ = self.map
        now = time.monotonic()
        if now >= self._next_periodic or len(map_) != self._size:
            # The listener's readable() runs waitress's maintenance (which may ask for everything)
            # and enforces the connection limit, which depends on the number of connections.
            self._next_periodic = now + PERIODIC
            self._size = len(map_)
            for obj in self._others:
                self._refresh(obj)
        if self._everything:
            self._everything = False
            self.changed.clear()  # before reading every connection: later notes stay
            self._refresh_all()
        else:
            for obj in self._touched:
                self._refresh(obj)
            changed = self.changed
            while changed:
                obj = changed.popleft()
                if self._refresh(obj, noted=True) & WRITE:
                    # A worker left a response to send: send it now rather than on the next
                    # turn (the socket is nearly always writable), then watch what is left.
                    readwrite(obj, WRITE)
                    self._refresh(obj)
        for hook in self.before_wait:
            hook()
        touched = []
        for fd, flags in self.epoll.poll(timeout):
            obj = map_.get(fd)
            if obj is None:
                self.forget(fd)
                continue
            readwrite(obj, flags)
            touched.append(obj)
        self._touched = touched

    def _refresh_all(self) -> None:
        everything = list(self.map.values())
        self._others = [obj for obj in everything if not is_connection(obj)]
        self._size = len(everything)
        self._next_periodic = time.monotonic() + PERIODIC
        for obj in everything:
            self._refresh(obj)

    def _refresh(self, obj: Any, noted: bool = False) -> int:
        """Register what ``obj`` waits for now; returns that mask (0 when closed or idle).

        ``noted``: a worker woke the loop about ``obj`` (it may have left output it could not send).
        """
        fd = fileno(obj)
        if fd is None:
            return 0  # closed meanwhile
        current: Any = self.map.get(fd)
        if current is not obj:
            return 0  # closed meanwhile (its fd may serve another connection now)
        mask = 0
        if obj.readable():
            mask = READ
        if obj.writable() and not obj.accepting:
            if noted:
                self._flushing.add(fd)
                mask |= WRITE
            elif fd in self._flushing or not worker_owns_output(obj):
                mask |= WRITE
        else:
            self._flushing.discard(fd)
        known = self._registered.get(fd)
        if known is not None:
            if known[0] is obj:
                if known[1] == mask:
                    return mask
                if mask:
                    try:
                        self.epoll.modify(fd, mask)
                        self._registered[fd] = (obj, mask)
                        return mask
                    except OSError:
                        pass  # the fd was closed behind the loop's back; register it afresh
            # No interest: not watched at all, as under waitress's loop (epoll would still
            # report a hang-up). Or the fd now belongs to another dispatcher.
            self.forget(fd)
        if mask:
            try:
                self.epoll.register(fd, mask)
            except FileExistsError:
                self.epoll.modify(fd, mask)
            self._registered[fd] = (obj, mask)
        return mask
