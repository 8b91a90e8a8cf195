"""Draining: stop accepting, finish what is in flight, close idle connections, then everything.

Each function but run_on_loop and finish_tasks runs on the loop thread (through run_on_loop),
which owns the sockets.
"""

from __future__ import annotations

import time

from .deferral import ResumableTask

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Callable

__all__ = ["answer_with_close", "close_everything", "finish_tasks", "listener", "port", "run_on_loop",
           "stop_accepting", "sweep"]

def port(server: Any) -> int:
    return int(server.effective_port)


def listener(server: Any) -> Any:
    """The listening socket."""
    return server.socket


def run_on_loop(server: Any, thunk: Callable[[], None]) -> None:
    """Have the loop thread call ``thunk`` on its next turn (waitress's trigger runs thunks)."""
    server.trigger.pull_trigger(thunk)


def finish_tasks(server: Any, timeout: float) -> None:
    """After the loop ended: let the worker threads finish what they hold, for up to ``timeout``."""
    server.task_dispatcher.shutdown(cancel_pending=False, timeout=timeout)


def _closing_task_class() -> type:
    class ClosingTask(ResumableTask):
        """A waitress task whose response closes the connection: sent while draining."""

        def build_response_header(self) -> bytes:
            self.set_close_on_finish()
            header: bytes = super().build_response_header()
            return header

    return ClosingTask


def answer_with_close(server: Any) -> None:
    """Answers from now on say "Connection: close" (a WSGI app may not send that hop-by-hop header)."""
    server.pyfunc_closing_task = task = _closing_task_class()
    for channel in list(server.active_channels.values()):
        channel.task_class = task


def stop_accepting(server: Any) -> None:
    """Accept what the kernel already completed (closing would reset it), then close the listener."""
    server.accepting = False
    listener = server.socket
    listener.setblocking(False)
    task = getattr(server, "pyfunc_closing_task", None)
    while True:
        try:
            conn, addr = listener.accept()
        except OSError:  # BlockingIOError: the queue is empty
            break
        conn.setblocking(False)
        server.set_socket_options(conn)
        channel = server.channel_class(server, conn, server.fix_addr(addr), server.adj, map=server._map)
        if task is not None:
            channel.task_class = task
    server.del_channel()
    listener.close()


def sweep(server: Any, channel_timeout: float, new_connection_grace: float) -> bool:
    """Close connections that hold no request; True while any request is left.

    A connection that has sent nothing yet is given ``new_connection_grace`` seconds (its
    client may be about to send the request it connected for, as in Go's ``Shutdown``), and
    one with a partly received request is kept while it keeps sending (``channel_timeout``).
    Idle keep-alive connections are closed at once; busy ones get ``Connection: close``.
    """
    dispatcher = server.task_dispatcher
    with dispatcher.lock:
        busy = bool(dispatcher.queue) or dispatcher.active_count > 0
    now = time.time()
    for channel in list(server.active_channels.values()):
        if channel.requests or channel.total_outbufs_len:
            busy = True
        elif channel.will_close or channel.close_when_flushed:
            continue
        elif channel.request is not None:  # a request is being received
            if now - channel.last_activity < channel_timeout:
                busy = True
            else:
                channel.will_close = True
        elif channel.last_activity == channel.creation_time:  # connected, nothing sent yet
            if now - channel.creation_time < new_connection_grace:
                busy = True
            else:
                channel.will_close = True
        else:
            channel.will_close = True  # idle keep-alive
    return busy


def close_everything(server: Any) -> None:
    """Close every connection and the server's own dispatchers: the loop then ends."""
    for channel in list(server.active_channels.values()):
        channel.handle_close()
    server.close()
    for fd, obj in list(server._map.items()):
        try:
            obj.close()
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass
        server._map.pop(fd, None)
