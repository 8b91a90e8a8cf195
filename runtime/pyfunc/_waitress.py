"""Every use of waitress's internals in pyfunc, in one place, under one contract.

waitress's public API (``create_server``, adjustments, ``run()``) cannot do what pyfunc needs:
an epoll loop (eventloop.py), a drain that finishes in-flight requests, a receive deadline, and
413/431 refusals written as problem+json with an access line. So this module reaches inside
waitress, and nothing else in pyfunc does.

Contract
--------
Tested with waitress 3.0.1 and 3.0.2 (pyproject pins ``>=3.0.1,<3.1``; 3.0.1 is the floor CI
runs with ``scripts/test-waitress-floor.sh``). tests/serving/test_waitress_contract.py fails
when any of this stops being true. Relied on, and why:

- ``BaseWSGIServer.run()`` calls ``self.asyncore.loop(timeout=, map=, use_poll=)``: the
  ``asyncore`` test shim, set per server, is where the epoll loop is installed.
- ``server._map`` (fd -> dispatcher): the sockets the loop watches.
- ``server.readable()`` runs ``server.maintenance(now)`` every ``cleanup_interval``: wrapped to
  re-read every connection after it (it may close any) and to apply the receive deadline.
- Workers call ``server.pull_trigger()`` after every change to a connection: wrapped to note
  which connection changed (see eventloop.py).
- ``server.channel_class(server, sock, addr, adj, map=)`` builds a connection: pyfunc installs
  a subclass of ``HTTPChannel`` that overrides ``service``, ``del_channel``, ``received`` and
  sets ``error_task_class`` / ``parser_class``.
- ``wasyncore.readwrite(obj, flags)`` and the dispatcher's ``_fileno``, ``readable()``,
  ``writable()``, ``accepting``: the loop handles events exactly as waitress's own loop does.
- ``ErrorTask.execute`` reads ``self.request.error`` (``.code``, ``.body``); the parser has
  ``command``, ``path``, ``headers``, ``header_plus``, ``chunked``, ``body_rcv``; a
  ``ChunkedReceiver`` has ``buf``, ``chunk_remainder`` and ``error``.
- Draining: ``active_channels``, a channel's ``requests``, ``request``, ``total_outbufs_len``,
  ``will_close``, ``close_when_flushed``, ``last_activity``, ``creation_time``, ``task_class``,
  ``handle_close()``; ``task_dispatcher.lock/queue/active_count/shutdown()``;
  ``trigger.pull_trigger(thunk)``; ``set_socket_options``, ``fix_addr``, ``del_channel``.

When the loop's part of the contract does not hold at startup, :func:`install_loop` logs one
warning and leaves waitress on its own loop: slower, but serving.
"""

from __future__ import annotations

import copy
import inspect
import logging
import operator
import threading
import time
from typing import Any, Callable, NamedTuple, Optional, Protocol, TypeVar

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.receiver import ChunkedReceiver
from waitress.server import BaseWSGIServer
from waitress.task import ErrorTask, WSGITask
from waitress.utilities import RequestEntityTooLarge

logger = logging.getLogger("pyfunc")

# Tested range (see the contract above and pyproject.toml).
TESTED_VERSIONS = ("3.0.1", "3.0.2")


def _missing(*_args: Any) -> None:
    raise RuntimeError("waitress.wasyncore.readwrite is missing")  # install_loop never installs the loop then


# The loop dispatches an event as waitress's own loop does; bound once, called per event.
readwrite: Callable[[Any, int], None] = getattr(wasyncore, "readwrite", _missing)
# The fd a dispatcher is registered under in the socket map (None once closed).
fileno: Callable[[Any], Optional[int]] = operator.attrgetter("_fileno")


class Loop(Protocol):
    """What :func:`install_loop` needs from a loop (eventloop.EpollLoop)."""

    changed: Any  # a deque of connections a worker changed; appends are thread-safe

    def recompute_everything(self) -> None: ...

    def forget(self, fd: Optional[int]) -> None: ...

    def loop(self, timeout: float = 30.0, map: Any = None, use_poll: bool = False, count: Any = None) -> None: ...


L = TypeVar("L", bound=Loop)


# ------------------------------------------------------------------------------------ contract


def _has(owner: Any, name: str, params: Optional[tuple[str, ...]] = None) -> Optional[str]:
    """None when ``owner.name`` exists (and, for ``params``, starts with those parameters)."""
    value = getattr(owner, name, None)
    label = f"{getattr(owner, '__name__', type(owner).__name__)}.{name}"
    if value is None:
        return f"{label} is missing"
    if params is not None:
        try:
            found = tuple(inspect.signature(value).parameters)
        except (TypeError, ValueError):
            return f"{label} has no signature"
        if found[: len(params)] != params:
            return f"{label}{found} is not {label}{params}"
    return None


def _run_calls_asyncore_loop() -> Optional[str]:
    """``run()`` must reach ``self.asyncore.loop``: the one seam the epoll loop is installed at."""
    try:
        source = inspect.getsource(BaseWSGIServer.run)
    except (OSError, TypeError):
        return "BaseWSGIServer.run has no source to check"
    if "self.asyncore.loop(" not in source:
        return "BaseWSGIServer.run does not call self.asyncore.loop"
    return None


def loop_contract_problems(server: Any) -> list[str]:
    """What the epoll loop relies on and ``server`` (a waitress server) lacks; [] when all holds."""
    checks = [
        _run_calls_asyncore_loop(),
        _has(server, "_map") or (None if isinstance(server._map, dict) else "server._map is not a dict"),
        _has(server, "asyncore"),
        _has(server, "maintenance", ("now",)),
        _has(server, "pull_trigger", ()),
        _has(server, "trigger"),
        _has(server, "channel_class"),
        _has(wasyncore, "readwrite", ("obj", "flags")),
        _has(HTTPChannel, "__init__", ("self", "server", "sock", "addr", "adj", "map")),
        _has(HTTPChannel, "service", ("self",)),
        _has(HTTPChannel, "del_channel", ("self", "map")),
        _has(HTTPChannel, "readable", ("self",)),
        _has(HTTPChannel, "writable", ("self",)),
        _has(server, "accepting"),
        None if hasattr(server, "_fileno") else "dispatcher._fileno is missing",
    ]
    problems = [problem for problem in checks if problem]
    if not problems and getattr(server.trigger, "pull_trigger", None) is None:
        problems.append("trigger.pull_trigger is missing")
    return problems


def refusal_contract_problems() -> list[str]:
    """What the problem+json refusals rely on; [] when all holds (else waitress's text answers stay)."""
    checks = [
        _has(HTTPChannel, "error_task_class"),
        _has(HTTPChannel, "parser_class"),
        _has(ErrorTask, "execute", ("self",)),
        _has(HTTPRequestParser, "parse_header", ("self", "header_plus")),
        _has(ChunkedReceiver, "chunk_remainder"),
        _has(ChunkedReceiver, "received", ("self", "s")),
    ]
    return [problem for problem in checks if problem]


# A connection's state the drain and the receive deadline read (set by HTTPChannel.__init__ or
# class-level defaults); checked on a live connection by the contract tests.
CHANNEL_STATE = ("requests", "request", "last_activity", "creation_time", "total_outbufs_len",
                 "will_close", "close_when_flushed", "task_class", "handle_close", "received")


def drain_contract_problems(server: Any) -> list[str]:
    """What draining and the receive deadline rely on; [] when all holds.

    Not a startup fallback (there is no other way to drain); the contract tests check it.
    """
    dispatcher = getattr(server, "task_dispatcher", None)
    checks = [
        None if isinstance(getattr(server, "active_channels", None), dict) else "server.active_channels is missing",
        _has(server, "socket"),
        _has(server, "effective_port"),
        _has(server, "set_socket_options", ("conn",)),
        _has(server, "fix_addr", ("addr",)),
        _has(server, "del_channel", ("map",)),
        _has(getattr(server, "trigger", None), "pull_trigger", ("thunk",)),
        *(_has(dispatcher, name) for name in ("lock", "queue", "active_count")),
        _has(dispatcher, "shutdown", ("cancel_pending", "timeout")),
        _has(WSGITask, "build_response_header", ("self",)),
        _has(WSGITask, "set_close_on_finish", ("self",)),
        _has(HTTPChannel, "received", ("self", "data")),
    ]
    return [problem for problem in checks if problem]


# ------------------------------------------------------------------------------------ the loop

# The connection a worker thread is serving: what its wake-ups of the loop are about.
_serving = threading.local()


class LoopChannel(HTTPChannel):
    """waitress's HTTP channel, telling the loop which connection a worker's wake-up concerns."""

    def __init__(self, server: Any, sock: Any, addr: Any, adj: Any, map: Any = None) -> None:
        super().__init__(server, sock, addr, adj, map)
        server.event_loop.changed.append(self)  # a new connection: watch it from the next turn

    def service(self) -> None:
        _serving.channel = self
        try:
            super().service()
        finally:
            _serving.channel = None

    def del_channel(self, map: Any = None) -> None:
        looped: Any = self.server  # a server install_loop gave an event_loop
        looped.event_loop.forget(fileno(self))
        super().del_channel(map)


def is_connection(obj: Any) -> bool:
    """A client connection of a looped server (the other dispatchers: the listener, the trigger)."""
    return isinstance(obj, LoopChannel)


def socket_map(server: Any) -> dict[int, Any]:
    """The server's dispatchers by fd: what its loop watches."""
    return server._map  # type: ignore[no-any-return]


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
        channel = getattr(_serving, "channel", None)
        if channel is not None:
            changed.append(channel)
        trigger.pull_trigger()

    server.pull_trigger = pull_trigger
    return loop


def waitress_version() -> str:
    try:
        from importlib.metadata import version

        return version("waitress")
    except Exception:  # noqa: BLE001 - only used in a log line
        return "(unknown version)"


# ------------------------------------------------------------------------------------ refusals


class Refusal(NamedTuple):
    """A request waitress refused before the app saw it (413, 431)."""

    status: int
    method: str  # "-" when the request line was not read (an oversized head)
    path: str
    request_id: Optional[str]  # the client's X-Request-Id, if its headers were read
    limit: int  # the largest size accepted, in bytes
    started: float  # time.perf_counter() when the answer began


# Given a refusal: (status line, headers, body) to send; called on a worker thread.
Answer = Callable[[Refusal], tuple[str, list[tuple[str, str]], bytes]]

REFUSED_CODES = (413, 431)
CHUNK_FRAMING_ALLOWANCE = 64 << 10  # bytes of chunk framing allowed beyond twice the body limit


class _LimitedChunks(ChunkedReceiver):
    """A chunked body limited by its de-chunked size, refused as soon as a chunk *announces* too much.

    waitress counts the bytes received, chunk framing included: a chunk header declaring 4 GB
    followed by a trickle held the connection until the client gave up, then was closed
    without an answer; and a body of exactly the limit, sent chunked, was refused.
    """

    limit = 0  # bytes accepted; set per server
    error: Any
    buf: Any
    chunk_remainder: int

    def received(self, s: bytes) -> int:
        consumed: int = super().received(s)
        if self.error is None and len(self.buf) + self.chunk_remainder > self.limit:
            self.error = RequestEntityTooLarge(f"exceeds max_body of {self.limit + 1}")
            self.all_chunks_received = True
        return consumed


class _LimitedParser(HTTPRequestParser):
    """waitress's parser, with chunked bodies received by :class:`_LimitedChunks`."""

    chunks_class: type = _LimitedChunks
    # The adjustments a chunked request is parsed under: waitress's own (wire bytes) limit
    # raised to leave room for chunk framing, since _LimitedChunks enforces the body limit.
    chunked_adj: Any = None
    body_rcv: Any
    chunked: bool
    adj: Any

    def parse_header(self, header_plus: bytes) -> None:
        super().parse_header(header_plus)
        if self.chunked:  # once per request; plain bodies keep waitress's receiver
            self.body_rcv = self.chunks_class(self.body_rcv.buf)
            self.adj = self.chunked_adj


class _ProblemErrorTask(ErrorTask):
    """waitress's error answer, for 413/431 given by ``answer`` (pyfunc's problem+json)."""

    answer: Optional[Answer] = None  # set per server

    def execute(self) -> None:
        request: Any = self.request
        error = request.error
        answer = self.answer
        if answer is None or getattr(error, "code", None) not in REFUSED_CODES:
            super().execute()
            return
        status = error.code
        limit = self.channel.adj.max_request_body_size if status == 413 else self.channel.adj.max_request_header_size
        if status == 431:  # waitress parsed a stand-in head; the real one may not have been kept
            line, crlf, _ = request.header_plus.partition(b"\r\n")
            first = line.split(b" ") if crlf else []
            method, path = (first[0].decode("latin-1"), first[1].decode("latin-1")) if len(first) == 3 else ("-", "-")
            request_id = None
        else:
            method, path = request.command or "-", request.path or "-"
            request_id = request.headers.get("X_REQUEST_ID")
        status_line, headers, body = answer(Refusal(status, method, path, request_id, limit - 1, time.perf_counter()))
        self.status = status_line  # "413 Content Too Large": waitress adds the HTTP version
        response_headers: Any = self.response_headers  # a list at run time
        response_headers.extend(headers)
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


def install_refusals(server: Any, answer: Answer) -> bool:
    """413/431 answered by ``answer`` (and a chunk announcing more than the limit is a 413 too).

    Returns False, leaving waitress's plain-text answers, when this waitress lacks what it needs.
    """
    problems = refusal_contract_problems()
    if problems:
        logger.warning("waitress %s lacks what pyfunc's 413/431 answers rely on (%s); waitress answers them",
                       waitress_version(), "; ".join(problems))
        return False
    limit = server.adj.max_request_body_size - 1  # waitress refuses sizes >= its setting
    chunks = type("LimitedChunks", (_LimitedChunks,), {"limit": limit})
    chunked_adj = copy.copy(server.adj)
    # Wire bytes still bounded (waitress counts them), with room for framing of chunks >= ~8 bytes.
    chunked_adj.max_request_body_size = 2 * limit + CHUNK_FRAMING_ALLOWANCE + 1
    parser = type("LimitedParser", (_LimitedParser,), {"chunks_class": chunks, "chunked_adj": chunked_adj})
    task = type("ProblemErrorTask", (_ProblemErrorTask,), {"answer": staticmethod(answer)})
    server.channel_class = type("Channel", (server.channel_class,),
                                {"error_task_class": task, "parser_class": parser})
    return True


# ------------------------------------------------------------------------------------ receive deadline


def enforce_receive_deadline(server: Any, seconds: float) -> None:
    """Close connections that take longer than ``seconds`` to send one request (slow-loris).

    waitress's ``channel_timeout`` only counts *silence*: a client trickling one byte a second
    keeps its connection forever. Here each connection notes when a request's first byte
    arrived, and waitress's periodic maintenance also closes those still receiving after the
    deadline. Connections with a request being served are left alone.
    """

    class DeadlineChannel(server.channel_class):  # type: ignore[misc]
        receive_started = 0.0

        def received(self, data: bytes) -> bool:
            if self.request is None and data:
                self.receive_started = time.time()
            return bool(super().received(data))

    waitress_maintenance = server.maintenance

    def maintenance(now: float) -> None:
        waitress_maintenance(now)
        cutoff = now - seconds
        for channel in list(server.active_channels.values()):
            started = getattr(channel, "receive_started", 0.0)
            if channel.request is not None and not channel.requests and started and started < cutoff:
                logger.info("closing a connection that took over %ss to send its request", seconds)
                channel.will_close = True

    server.channel_class = DeadlineChannel
    server.maintenance = maintenance


# ------------------------------------------------------------------------------------ draining
# Each function but run_on_loop and finish_tasks runs on the loop thread (through run_on_loop),
# which owns the sockets.


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
    class ClosingTask(WSGITask):
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
