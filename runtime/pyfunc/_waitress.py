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
  A worker that writes a response flushes it itself (``write_soon``) and calls
  ``pull_trigger()`` when it could not send it all, so the loop does not watch for writes on a
  connection whose ``requests`` are a worker's (see :func:`worker_owns_output`).
- ``ErrorTask.execute`` reads ``self.request.error`` (``.code``, ``.body``); the parser has
  ``command``, ``path``, ``headers``, ``header_plus``, ``chunked``, ``body_rcv``; a
  ``ChunkedReceiver`` has ``buf``, ``chunk_remainder`` and ``error``.
- Quick heads (about 15 % of a small request's instructions): ``HTTPRequestParser.parse_header``
  leaves the state :meth:`_LimitedParser._parse_usual_header` recreates for a usual head, with
  ``crack_first_line``, ``split_uri``, ``FixedStreamReceiver`` and ``OverflowableBuffer``; and
  ``Task.build_response_header`` builds the head :meth:`QuickTask.build_response_header` builds
  (``has_body``, ``set_close_on_finish``, ``build_http_date``, ``adj.ident``).
  tests/serving/test_waitress_fast_paths.py compares both with waitress's own.
- Draining: ``active_channels``, a channel's ``requests``, ``request``, ``total_outbufs_len``,
  ``will_close``, ``close_when_flushed``, ``last_activity``, ``creation_time``, ``task_class``,
  ``handle_close()``; ``task_dispatcher.lock/queue/active_count/shutdown()``;
  ``trigger.pull_trigger(thunk)``; ``set_socket_options``, ``fix_addr``, ``del_channel``.

- Deferred invocations (an ``async def`` handler releases its worker while it awaits):
  ``HTTPChannel.service`` lets a ``BaseException`` that is not an ``Exception`` through before
  it pops ``requests[0]`` or writes anything (it catches ``ClientDisconnected`` and
  ``Exception`` only), and so do ``Task.service`` (``OSError`` only) and ``WSGITask.execute``
  (the app is called before its ``try``); ``WSGITask.get_environment`` returns a cached
  ``self.environ``; ``received`` calls ``server.add_task(channel)`` only when ``requests`` was
  empty, so a channel whose ``requests[0]`` is parked is dispatched by nobody but pyfunc;
  ``readable()``, ``handle_close()`` (also what a read of EOF calls), ``connected``,
  ``server.add_task(task)`` (any object with ``service()`` and ``cancel()``).
- Streams sent from the event loop (``StreamSink``): ``channel.service`` makes its task with
  ``self.task_class(self, request)`` (so ``ResumableTask.__new__`` can hand back the stream's
  own task), ``Task.service`` runs ``start()``, ``execute()``, ``finish()`` (which writes the
  last chunk), ``Task.write(data)`` frames chunks and calls ``channel.write_soon``, which only
  waits when ``total_outbufs_len`` is over ``adj.outbuf_high_watermark`` (the sink sends only
  under it) and flushes at once (``adj.send_bytes`` is 1 unless set); ``handle_write()``
  flushes on the I/O loop.
- The elastic pool: ``ThreadedTaskDispatcher`` keeps ``threads`` (a set of numbers), ``queue``,
  ``lock``, ``queue_cv``, ``thread_exit_cv``, ``active_count``, ``stop_count``;
  ``create_server(_dispatcher=)`` uses the given dispatcher (and leaves its thread count alone);
  ``shutdown()`` calls ``set_thread_count(0)`` and waits on ``thread_exit_cv`` for ``threads``
  to empty.

When the loop's part of the contract does not hold at startup, :func:`install_loop` logs one
warning and leaves waitress on its own loop: slower, but serving. When the deferral's part does
not hold, :func:`install_deferral` logs one warning and ``async def`` handlers hold their worker
while they await, as they used to (the elastic pool then still serves them concurrently).
"""

from __future__ import annotations

import collections
import copy
import inspect
import logging
import operator
import re
import threading
import time

from waitress import wasyncore
from waitress.buffers import OverflowableBuffer
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser, crack_first_line, split_uri
from waitress.receiver import ChunkedReceiver, FixedStreamReceiver
from waitress.server import BaseWSGIServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher, WSGITask
from waitress.utilities import Error as WaitressError
from waitress.utilities import RequestEntityTooLarge, build_http_date

from . import _threadstate

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Callable, NamedTuple, Optional, Protocol, TypeVar
else:
    Protocol = object  # the Protocols below are for the type checker: plain classes at run time

logger = logging.getLogger("pyfunc")

# Tested range (see the contract above and pyproject.toml).
TESTED_VERSIONS = ("3.0.1", "3.0.2")


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
    """``run()`` must reach ``self.asyncore.loop``: the one seam the epoll loop is installed at.

    Read in its bytecode (``self``, then its attribute ``asyncore``, then that one's ``loop``),
    not its source: ``inspect.getsource`` tokenizes waitress/server.py, ms of every cold start.
    """
    import dis

    code = getattr(BaseWSGIServer.run, "__code__", None)
    if code is None:
        return "BaseWSGIServer.run has no code to check"
    steps = [(i.opname, i.argval) for i in dis.get_instructions(code)]
    for (first, owner), (second, seam), (third, method) in zip(steps, steps[1:], steps[2:]):
        if (first.startswith("LOAD_FAST") and owner == "self" and second == "LOAD_ATTR" and seam == "asyncore"
                and third in ("LOAD_ATTR", "LOAD_METHOD") and method == "loop"):
            return None
    return "BaseWSGIServer.run does not call self.asyncore.loop"


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


if TYPE_CHECKING:
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
else:  # the same named tuple, without typing.NamedTuple
    Refusal = collections.namedtuple("Refusal", "status method path request_id limit started")
    Refusal.__doc__ = "A request waitress refused before the app saw it (413, 431)."

REFUSED_CODES = (413, 431, 503)
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


# RFC 9110 5.1/5.5 (RFC 7230 3.2, as waitress's rfc7230 module spells it): a header line is
# ``field-name ":" OWS field-value OWS``; the value is kept without the OWS.
_NAME = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"  # token
_VALUE = rb"(?:[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*)?"  # field-vchars, inner SP/HTAB
_FIELD_LINE = re.compile(rb"(" + _NAME + rb"):[ \t]*(" + _VALUE + rb")[ \t]*\r\n")
# The head after the request line: such lines, then the empty line.
_FIELD_BLOCK = re.compile(rb"(?:" + _NAME + rb":[ \t]*" + _VALUE + rb"[ \t]*\r\n)*\r\n")
_crack_first_line: Callable[[bytes], tuple[bytes, bytes, bytes]] = crack_first_line  # type: ignore[assignment] # stubs say str
# Header name as it arrives -> its CGI key ("content-type" -> "CONTENT_TYPE"), as waitress makes it.
_CGI_KEYS: dict[bytes, str] = {}
_CGI_KEYS_MAX = 4096  # bounded: names are the client's to choose


class _LimitedParser(HTTPRequestParser):
    """waitress's parser, with chunked bodies received by :class:`_LimitedChunks`, and a quicker
    reading of the usual request head.

    waitress parses a head line by line in Python and, for every header seen for the first time,
    raises and catches a KeyError: about 20 µs of the ~130 µs of CPU a small request costs. The
    head of a plain HTTP/1.0 or 1.1 request (no ``Transfer-Encoding``, no folded or malformed
    line, a valid ``Content-Length`` if any) is read here with two regular-expression passes
    into exactly the state waitress's ``parse_header`` leaves; any other head, and every error,
    goes to waitress's own. tests/serving/test_waitress_contract.py compares the two on a corpus
    and on generated heads.
    """

    chunks_class: type = _LimitedChunks
    # The adjustments a chunked request is parsed under: waitress's own (wire bytes) limit
    # raised to leave room for chunk framing, since _LimitedChunks enforces the body limit.
    chunked_adj: Any = None
    body_budget: Any = None  # a pyfunc._memory.BodyBudget, or None (no budget); set per server
    _release_body: Any = None
    body_rcv: Any
    chunked: bool
    adj: Any

    def parse_header(self, header_plus: bytes) -> None:
        if not self._parse_usual_header(header_plus):
            super().parse_header(header_plus)
        if self.chunked:  # once per request; plain bodies keep waitress's receiver
            self.body_rcv = self.chunks_class(self.body_rcv.buf)
            self.adj = self.chunked_adj
        elif self.body_budget is not None and 0 < self.content_length < self.adj.max_request_body_size:
            self._admit_body()

    # --- the memory budget (pyfunc._memory): hook into waitress's parser, begin
    def _admit_body(self) -> None:
        """Reserve the announced body, or shed it: read and *discard* it (nothing kept), then 503.

        Answering before the body is read would close a connection with unread bytes: Linux
        then resets it, and the client may lose the 503 to the reset (RFC 9112 9.6)."""
        self._release_body = self.body_budget.reserve(self, self.content_length)
        if self._release_body is None:
            self.error = _ServiceUnavailable("request bodies in flight over the memory budget")
            self.body_rcv = FixedStreamReceiver(self.content_length, _Discarded())  # type: ignore[arg-type]

    def close(self) -> None:
        super().close()
        release, self._release_body = self._release_body, None
        if release is not None:
            release()
    # --- the memory budget: end

    def _parse_usual_header(self, header_plus: bytes) -> bool:
        """waitress's ``parse_header`` for a usual head; False, having changed nothing, for any other."""
        index = header_plus.find(b"\r\n")
        if index < 0:
            return False
        first_line = header_plus[:index].rstrip()
        block = header_plus[index + 2:]
        if b"\r" in first_line or b"\n" in first_line or _FIELD_BLOCK.fullmatch(block) is None:
            return False
        try:
            command, uri, version = _crack_first_line(first_line)
            split = split_uri(uri)
        except Exception:  # noqa: BLE001 - waitress's parse_header raises its own error for it
            return False
        if version == b"1.1":
            http11 = True
        elif version == b"1.0":
            http11 = False
        else:
            return False
        headers: dict[str, str] = {}
        keys = _CGI_KEYS
        for name, value in _FIELD_LINE.findall(block):
            key = keys.get(name)
            if key is None:
                if b"_" in name:  # waitress drops these (CGI would confuse them with "-")
                    continue
                key = name.upper().replace(b"-", b"_").decode("latin-1")
                if len(keys) < _CGI_KEYS_MAX:
                    keys[name] = key
            text = value.decode("latin-1")
            if key in headers:  # repeated: joined with ", ", as waitress does
                headers[key] += ", " + text
            else:
                headers[key] = text
        if "TRANSFER_ENCODING" in headers:
            return False
        length = headers.get("CONTENT_LENGTH", "0")
        if not (length.isascii() and length.isdigit()):
            return False
        state: Any = self  # typeshed's stubs type first_line as str
        state.first_line = first_line
        state.headers = headers
        state.request_uri = uri.decode("latin-1")
        state.command = command.decode("latin-1")
        state.version = version.decode("latin-1")
        state.proxy_scheme, state.proxy_netloc, state.path, state.query, state.fragment = split
        state.url_scheme = self.adj.url_scheme
        connection = headers.get("CONNECTION", "").lower()
        if http11:
            if connection == "close":
                state.connection_close = True
            state.expect_continue = headers.get("EXPECT", "").lower() == "100-continue"
        elif connection != "keep-alive":
            state.connection_close = True
        content_length = state.content_length = int(length)
        if content_length > 0:
            state.body_rcv = FixedStreamReceiver(content_length, OverflowableBuffer(self.adj.inbuf_overflow))
        return True


class _ServiceUnavailable(WaitressError):
    """A request shed by the memory budget (pyfunc._memory), answered 503 by :class:`_ProblemErrorTask`."""

    code = 503
    reason = "Service Unavailable"


class _Discarded:
    """A body buffer that keeps nothing: a shed request's body is read off the socket and dropped."""

    def __init__(self) -> None:
        self.length = 0

    def append(self, data: bytes) -> None:
        self.length += len(data)

    def __len__(self) -> int:
        return self.length

    def getfile(self) -> Any:
        import io

        return io.BytesIO()

    def close(self) -> None:
        pass


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
        limit = (self.channel.adj.max_request_body_size if status == 413 else self.channel.adj.max_request_header_size
                 if status == 431 else request.body_budget.limit + 1)
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


def install_refusals(server: Any, answer: Answer, body_budget: Any = None) -> bool:
    """413/431 answered by ``answer`` (and a chunk announcing more than the limit is a 413 too).

    The same channel class reads request heads with :class:`_LimitedParser`'s quick path and
    builds response heads with :class:`QuickTask`. Returns False, leaving waitress's plain-text
    answers (and its parser and task), when this waitress lacks what it needs.
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
    parser = type("LimitedParser", (_LimitedParser,), {"chunks_class": chunks, "chunked_adj": chunked_adj,
                                                       "body_budget": body_budget})
    task = type("ProblemErrorTask", (_ProblemErrorTask,), {"answer": staticmethod(answer)})
    server.channel_class = type("Channel", (server.channel_class,),
                                {"error_task_class": task, "parser_class": parser, "task_class": QuickTask})
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


# ------------------------------------------------------------------------------------ deferred invocations
# An async handler's request is served in two short hops on worker threads, and none in between:
#
# 1. A worker runs the app as usual; the app decodes and binds the request, then raises
#    Deferred(work). It passes through waitress's task and channel (a BaseException that is not
#    an Exception), so nothing is written and the request stays at the head of
#    channel.requests: pipelined requests wait behind it, as behind any request in service.
#    The channel notes the work, then calls work.start(wake) and the worker is free.
# 2. When the work is done, wake() (on any thread) dispatches the channel again; its service()
#    runs waitress's own service once more, whose task is given the request's environ: the
#    app finds the finished work there and answers as it would have at once (same encoding,
#    status codes, access line). waitress then pops the request and goes on with the next.
#
# While the request is parked the connection stays readable, so a client that hangs up is seen
# at once (EOF or a reset reaches handle_close) and the work is cancelled.


class DeferredWork(Protocol):
    """What the app hands the channel in :class:`Deferred` (app.AsyncInvocation)."""

    environ: dict[str, Any]

    def start(self, wake: Callable[[], None]) -> None:
        """Begin; call ``wake()`` once, from any thread, when the request can be answered."""

    def cancel(self) -> None:
        """The client went away: stop the work (any thread; idempotent; also after it finished)."""

    def abandon(self) -> None:
        """Finished, but there is nobody to answer: release what the request holds."""


class Deferred(BaseException):  # noqa: N818 - a signal, not an error
    """Raised by the app inside a waitress task: "answer this request later, release the worker".

    A BaseException and not an Exception, so that waitress's ``channel.service`` (which turns an
    Exception into a 500) lets it through before writing anything or popping the request.
    """

    def __init__(self, work: DeferredWork) -> None:
        super().__init__()
        self.work = work


# Response header name as the app gave it -> as waitress sends it ("content-type" -> "Content-Type").
_TITLES: dict[str, str] = {}
_TITLES_MAX = 4096
_by_name = operator.itemgetter(0)
_date_second: tuple[int, str] = (-1, "")


def _http_date(when: float) -> str:
    """waitress's ``build_http_date(when)``, formatted once per second."""
    global _date_second
    second, text = _date_second
    if int(when) != second:
        second = int(when)
        text = build_http_date(second)
        _date_second = (second, text)
    return text


# The largest first body chunk sent in one piece with the response head: copying it is cheaper
# than the second send() (and pass through waitress's output buffers) it saves.
ONE_SEND_MAX = 64 << 10


class QuickTask(WSGITask):
    """waitress's WSGI task, with the response head built as waitress builds it but in half the
    time, and sent in one piece with a first body chunk that fits the Content-Length.

    waitress sends the head as soon as it is built (``send_bytes`` is 1), then the body: two
    ``send()`` calls and two passes through the channel's locked output buffers per response.
    """

    def write(self, data: bytes) -> None:
        content_length = self.content_length
        if (self.wrote_header or not self.complete or not data or len(data) > ONE_SEND_MAX
                or content_length is None or len(data) > content_length - self.content_bytes_written):
            super().write(data)  # waitress's own: later chunks, streams, errors, excess bodies
            return
        head = self.build_response_header()
        self.wrote_header = True
        if not self.has_body or self.chunked_response:  # (no body to send with it, or framed chunks)
            self.channel.write_soon(head)
            super().write(data)
            return
        self.content_bytes_written += len(data)
        self.channel.write_soon(head + data)

    def build_response_header(self) -> bytes:
        """waitress's ``Task.build_response_header``, byte for byte, with what it recomputes on every
        response cached: the capitalised header names and the Date of the current second.
        tests/serving/test_waitress_contract.py compares the two."""
        request: Any = self.request
        connection = request.headers.get("CONNECTION", "").lower()
        headers: list[tuple[str, str]] = []
        content_length = date = server = None
        titles = _TITLES
        for name, value in self.response_headers:
            title = titles.get(name)
            if title is None:
                title = "-".join([part.capitalize() for part in name.split("-")])
                if len(titles) < _TITLES_MAX:
                    titles[name] = title
            if title == "Content-Length":
                if not self.has_body:
                    continue
                content_length = value
            elif title == "Date":
                date = value
            elif title == "Server":
                server = value
            headers.append((title, value))
        self.response_headers = headers
        if content_length is None and self.content_length is not None and self.has_body:
            content_length = str(self.content_length)
            headers.append(("Content-Length", content_length))
        if self.version == "1.0":
            if connection == "keep-alive" and content_length:
                headers.append(("Connection", "Keep-Alive"))
            else:
                self.set_close_on_finish()
        elif self.version == "1.1":
            if connection == "close":
                self.set_close_on_finish()
            if not content_length:
                # RFC 9112 6.1/6.3: no Transfer-Encoding or Content-Length on a 1xx, 204 or 304.
                if self.has_body:
                    headers.append(("Transfer-Encoding", "chunked"))
                    self.chunked_response = True
                if not self.close_on_finish:
                    self.set_close_on_finish()
        else:
            raise AssertionError("neither HTTP/1.0 or HTTP/1.1")
        # set_close_on_finish may have appended to self.response_headers: ``headers`` is that list.
        ident = self.channel.server.adj.ident
        if not server:
            if ident:
                headers.append(("Server", ident))
        else:
            headers.append(("Via", ident or "waitress"))
        if not date:
            headers.append(("Date", _http_date(self.start_time)))
        # A stable sort by name keeps same-named headers in order (RFC 9110 5.3).
        lines = [f"HTTP/{self.version} {self.status}"]
        lines += [f"{name}: {value}" for name, value in sorted(headers, key=_by_name)]
        lines.append("\r\n")
        return "\r\n".join(lines).encode("latin-1")


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
        _serving.channel = self.channel  # the wake-up write_soon may pull notes this connection
        try:
            self.task.write(data)
        finally:
            _serving.channel = None

    def when_room(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the I/O loop thread) once :meth:`room` or the connection closed."""
        self.channel.pyfunc_drained = callback
        # The flush may have happened already, or the loop may not be watching for writes now.
        _serving.channel = self.channel
        try:
            self.channel.server.pull_trigger()
        finally:
            _serving.channel = None


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
        # this connection (install_loop's pull_trigger reads _serving.channel).
        _serving.channel = self
        try:
            self.server.pull_trigger()
        finally:
            _serving.channel = None
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


def _source(function: Any) -> str:
    try:
        return inspect.getsource(function)
    except (OSError, TypeError):
        return ""


def deferral_contract_problems(server: Any) -> list[str]:
    """What deferred invocations rely on (see the contract above); [] when all holds."""
    service = _source(HTTPChannel.service)
    task_service = _source(ErrorTask.service)
    execute = _source(WSGITask.execute)
    environment = _source(WSGITask.get_environment)
    received = _source(HTTPChannel.received)
    checks = [
        _has(HTTPChannel, "service", ("self",)),
        _has(HTTPChannel, "readable", ("self",)),
        _has(HTTPChannel, "handle_close", ("self",)),
        _has(server, "add_task", ("task",)),
        _has(WSGITask, "get_environment", ("self",)),
        None if service and "except Exception" in service and "BaseException" not in service
        and "except:" not in service else "HTTPChannel.service may catch a BaseException",
        None if task_service and "BaseException" not in task_service and "except:" not in task_service
        else "Task.service may catch a BaseException",
        None if "application(environ, start_response)" in execute else "WSGITask.execute does not call the app",
        None if "environ = self.environ" in environment else "WSGITask.get_environment caches no environ",
        None if "len(self.requests) == 1" in received and "add_task(self)" in received
        else "HTTPChannel.received may dispatch a channel whose request is parked",
        # Streams (StreamSink, ResumableTask):
        None if "self.task_class(self, request)" in service else "HTTPChannel.service makes no task_class task",
        None if all(step in task_service for step in ("self.start()", "self.execute()", "self.finish()"))
        else "Task.service does not run start, execute, finish",
        _has(WSGITask, "write", ("self", "data")),
        _has(WSGITask, "finish", ("self",)),
        _has(HTTPChannel, "handle_write", ("self",)),
        _has(HTTPChannel, "write_soon", ("self", "data")),
        None if isinstance(getattr(server.adj, "outbuf_high_watermark", None), int)
        else "adj.outbuf_high_watermark is missing",
    ]
    return [problem for problem in checks if problem]


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


# ------------------------------------------------------------------------------------ the elastic pool

STARVATION_TICK = 0.01  # seconds between looks at a queue that waits for a worker
# The workers' busy time (see _busy_reader) advanced, summed, by at least this share of the
# starved ticks: they are computing, not blocked. Blocked workers' stand still: measured, at most
# 0.4% of a tick for all of them together (each wakes for a few µs at most). A computing pool's
# GIL holder is always running or waiting for a CPU, so with Linux's run-queue wait counted the
# sum is about the whole tick whatever else loads the machine (with CPU clocks alone, where there
# is no schedstat, it is the share of a core the holder gets: a median of 20-40% of each tick
# with 3-4 busy loops on top of a loaded CI machine's jobs on 2 cores, and under 5% at worst).
# The share is taken over the whole run of starved ticks, which the decision to grow rests on.
WORKERS_BUSY = 0.05
CPU_BUSY = 0.5  # without per-thread clocks: the process used at least this share of a core
STARVED = 0.5  # seconds with tasks waiting and none finished: grow even if the workers look busy
STRIKES = 2  # consecutive starved ticks before the pool grows (one can be a scheduling hiccup)
BUSY_TICK = 0.1  # the longest look interval, reached while the workers keep finishing tasks


# The workers' busy-time and state readers (pyfunc._threadstate): one per worker thread.
_busy_reader = _threadstate.busy_reader


class ElasticDispatcher(ThreadedTaskDispatcher):
    """waitress's thread pool, grown when its workers are *blocked* and shrunk when they idle.

    ``core`` threads are always there; beyond them up to ``maximum`` are started when tasks
    wait and the workers are stuck (in ``time.sleep``, a socket, a lock), and each extra
    thread ends after ``idle_timeout`` seconds without work.

    Growth is decided like .NET's thread pool, by starvation: a watcher looks at the queue
    every ``STARVATION_TICK`` while it holds tasks no idle worker will take, and starts
    threads for all of them at once when, for ``STRIKES`` ticks in a row, no task finished
    *and* the workers did not compute, while the watcher itself got the CPU on time (a late
    wake-up means a CPU-starved process, not blocked workers). Half a second of tasks waiting
    without any finishing grows the pool regardless (counted from when they began to wait, not
    from a task that finished before an idle spell), unless the workers' busy time counts their
    wait for a CPU and says they are busy: on a machine so loaded that a task takes longer.
    While tasks keep finishing, the watcher looks less and less often (up to every
    ``BUSY_TICK``), and once nothing waits it sleeps until :meth:`add_task` wakes it. Workers
    that compute keep finishing tasks or stay busy, so a CPU-bound load never grows the pool:
    under the GIL more threads would only share the same core. A load that blocks leaves the
    workers idle with tasks waiting, and gets a thread per waiting task within a tick or two.

    Whether the workers computed is read from their own busy time (each worker finds its reader
    once, when it starts: Linux's per-thread schedstat, CPU time plus time waiting for a CPU, or
    else its CPU clock): summed, it advances by ``WORKERS_BUSY`` of the run of starved ticks or
    more (see there for the threshold). Why not the process's CPU time (``time.process_time``),
    as before: it asks whether the *process* got half a core, and a process whose workers compute
    gets less than that when other processes load the machine, so it looked blocked and the pool
    grew for nothing; it also counted the event loop's and other threads' work. A thread's busy
    time only says whether *it* ran or wanted to: a blocked worker's stands still whatever the
    machine does, and a computing worker's advances by the whole tick with the run-queue wait
    counted (by whatever share of a core it gets, with its CPU clock alone). Under the GIL one
    busy worker runs at a time and the others wait for it (asleep, not runnable), their
    clocks still; the sum over the workers is the GIL holder's time, so a pool waiting for the
    GIL counts as computing, as it should (more threads would only wait too). Idle workers wait
    on the queue with their clocks still, so the watcher reads every worker's clock and need not
    know which ones are busy: the per-task path pays nothing for it (and when the watcher ticks,
    tasks wait for a worker, so nearly all of them are busy anyway). A worker that ends during a
    run of ticks is left out (its clock raises), one that starts is counted from the next run.
    Where threads have no CPU clock (macOS, Windows) the process rule is used, chosen once here.
    A run whose busy time stood still still counts as computing when a worker is runnable at its
    end: the kernel adds a wait for a CPU to the busy time only when it ends (pyfunc._threadstate).
    """

    def __init__(self, core: int, maximum: int, idle_timeout: float) -> None:
        super().__init__()
        self.core = core
        self.maximum = max(core, maximum)
        self.idle_timeout = idle_timeout
        self.last_done = time.monotonic()  # when a worker last finished a task
        self.grown = 0  # threads started by the watcher (for tests and logs)
        self._watcher_cv = threading.Condition(self.lock)
        self._watcher: Optional[threading.Thread] = None
        self._watching = False  # the watcher ticks (else it waits for add_task to wake it)
        self._closing = False
        self._clocks: dict[int, _threadstate.ThreadProbe] = {}  # thread number -> its busy-time reader (under the lock)
        reader = _busy_reader()
        self._thread_clocks = reader is not None
        # With the run-queue wait counted, busy time cannot be fooled by a loaded machine: then
        # even tasks that wait half a second grow the pool only if the workers are not busy.
        self._waits_counted = reader is not None and reader.waits_counted
        # Starts a measure of the workers' CPU; what it returns tells, later, whether they computed since.
        self._cpu_meter = self._workers_meter if self._thread_clocks else self._process_meter

    def start_new_thread(self, target: Any, thread_no: int) -> None:
        threading.Thread(target=target, name=f"pyfunc-worker-{thread_no}", args=(thread_no,), daemon=True).start()

    def _idle(self) -> int:
        return len(self.threads) - self.stop_count - self.active_count

    def _starving(self) -> bool:
        queued = len(self.queue)
        return (not self._closing and queued > 0 and queued > self._idle()
                and len(self.threads) - self.stop_count < self.maximum)

    def handler_thread(self, thread_no: int) -> None:
        if self._thread_clocks:
            clock = _busy_reader()  # once per thread: the per-task loop below reads nothing
            if clock is not None:
                with self.lock:
                    self._clocks[thread_no] = clock
        while True:
            with self.lock:
                while not self.queue and self.stop_count == 0:
                    self.active_count -= 1
                    # Only a thread beyond the core retires; the core ones wait without a timeout.
                    woken = self.queue_cv.wait(self.idle_timeout if len(self.threads) > self.core else None)
                    self.active_count += 1
                    if (not woken and not self.queue and self.stop_count == 0
                            and len(self.threads) > self.core):
                        self.active_count -= 1  # retire: an extra thread idle for idle_timeout
                        self.threads.discard(thread_no)
                        self._clocks.pop(thread_no, None)
                        self.thread_exit_cv.notify()
                        return
                if self.stop_count > 0:
                    self.active_count -= 1
                    self.stop_count -= 1
                    self.threads.discard(thread_no)
                    self._clocks.pop(thread_no, None)
                    self.thread_exit_cv.notify()
                    return
                task = self.queue.popleft()
            try:
                task.service()
            except BaseException:
                self.logger.exception("Exception when servicing %r", task)
            self.last_done = time.monotonic()
            del task

    def add_task(self, task: Any) -> None:
        with self.lock:
            self.queue.append(task)
            self.queue_cv.notify()
            # The watcher is told only when it sleeps on the condition (not while it ticks), so a
            # steadily busy pool pays one comparison per task here.
            if not self._watching and self._starving():
                self._watching = True
                if self._watcher is None:
                    self._watcher = threading.Thread(target=self._watch, name="pyfunc-pool", daemon=True)
                    self._watcher.start()
                else:
                    self._watcher_cv.notify()

    def _workers_meter(self) -> Callable[[float], bool]:
        """Read every worker's busy time now; the result tells, given the seconds since, whether
        they were busy ``WORKERS_BUSY`` of them (summed) until it is called."""
        with self.lock:
            clocks = list(self._clocks.values())
        start: list[tuple[_threadstate.ThreadProbe, float]] = []
        for clock in clocks:
            try:
                start.append((clock, clock()))
            except (OSError, ValueError):  # the thread has just ended
                pass

        def computing(elapsed: float) -> bool:
            used = 0.0
            for clock, then in start:
                try:
                    used += clock() - then
                except (OSError, ValueError):  # the thread ended during the tick: left out
                    pass
            # Busy time counts a wait for a CPU only once it ends: a worker runnable all along
            # (a loaded machine, a throttled CPU quota) shows none yet, but its state does.
            return used >= WORKERS_BUSY * elapsed or _threadstate.any_runnable(clock for clock, _ in start)

        return computing

    def _process_meter(self) -> Callable[[float], bool]:
        """The fallback without per-thread clocks: did the process use ``CPU_BUSY`` of a core."""
        cpu = time.process_time()
        return lambda elapsed: time.process_time() - cpu >= CPU_BUSY * elapsed

    def _watch(self) -> None:
        strikes = 0  # consecutive ticks that looked starved
        tick = STARVATION_TICK
        waiting_since = time.monotonic()  # tasks wait for a worker since then (add_task started the watcher)
        computing = self._cpu_meter()  # measures a run of starved ticks: started anew when one begins
        run_start = waiting_since
        while True:
            with self.lock:
                while not self._starving():
                    strikes, tick = 0, STARVATION_TICK
                    if self._closing:
                        return
                    self._watching = False
                    self._watcher_cv.wait()
                    waiting_since = time.monotonic()  # add_task woke it: tasks wait again
                self._watching = True
            if strikes == 0:  # a new run of starved ticks: the workers' CPU is measured over all of it
                computing, run_start = self._cpu_meter(), time.monotonic()
            wall, slept = time.monotonic(), tick
            time.sleep(slept)
            with self.lock:
                now = time.monotonic()
                if not self._starving():
                    strikes, waiting_since = 0, now  # any task that waits from now on waits anew
                    continue
                if now - self.last_done < slept:
                    # Tasks finish: a busy pool, whose queue is normal. Look less often while it
                    # stays so (a load that turns to blocking is seen within BUSY_TICK).
                    strikes, tick = 0, min(BUSY_TICK, tick * 2)
                    continue
                tick = STARVATION_TICK
                if now - max(self.last_done, waiting_since) >= STARVED and not (
                        self._waits_counted and computing(now - run_start)):
                    strikes = STRIKES  # blocked for long, whatever the CPU says (a CPU clock can miss a busy pool)
                elif now - wall > 2 * slept:
                    # The watcher itself woke late: the process is short of CPU (a busy machine, a
                    # CPU quota), which stalls computing workers too. Not a sign of blocked ones.
                    strikes = 0
                    continue
                elif computing(now - run_start):
                    strikes = 0  # computing
                    continue
                strikes += 1
                if strikes >= STRIKES:
                    strikes = 0
                    self._grow(len(self.queue) - self._idle())

    def _grow(self, count: int) -> None:
        """Start ``count`` threads, up to ``maximum``; called with the lock held."""
        threads = self.threads
        thread_no = 0
        for _ in range(min(count, self.maximum - (len(threads) - self.stop_count))):
            while thread_no in threads:
                thread_no += 1
            threads.add(thread_no)
            self.active_count += 1
            self.grown += 1
            self.start_new_thread(self.handler_thread, thread_no)

    def shutdown(self, cancel_pending: bool = True, timeout: float = 5) -> bool:
        with self.lock:
            self._closing = True
            self._watcher_cv.notify_all()  # a waiting watcher returns
        return bool(super().shutdown(cancel_pending=cancel_pending, timeout=timeout))  # type: ignore[arg-type]


def pool_contract_problems() -> list[str]:
    """What :class:`ElasticDispatcher` relies on in waitress's dispatcher; [] when all holds."""
    probe = ThreadedTaskDispatcher()
    checks = [
        *(None if hasattr(probe, name) else f"ThreadedTaskDispatcher.{name} is missing"
          for name in ("threads", "queue", "lock", "queue_cv", "thread_exit_cv", "active_count", "stop_count")),
        _has(ThreadedTaskDispatcher, "set_thread_count", ("self", "count")),
        _has(ThreadedTaskDispatcher, "shutdown", ("self", "cancel_pending", "timeout")),
        _has(ThreadedTaskDispatcher, "start_new_thread", ("self", "target", "thread_no")),
        None if "_dispatcher" in inspect.signature(_create_server()).parameters
        else "create_server(_dispatcher=) is missing",
    ]
    return [problem for problem in checks if problem]


def _create_server() -> Callable[..., Any]:
    from waitress.server import create_server

    return create_server


def thread_pool(core: int, maximum: int, idle_timeout: float) -> Optional[ThreadedTaskDispatcher]:
    """The dispatcher to give ``create_server(_dispatcher=)``: an elastic one, or None (waitress's
    fixed pool of ``core`` threads) after one warning when waitress lacks what it relies on."""
    if maximum <= core:
        return None
    problems = pool_contract_problems()
    if problems:
        logger.warning("waitress %s lacks what pyfunc's elastic thread pool relies on (%s); serving with "
                       "a fixed pool of %d threads", waitress_version(), "; ".join(problems), core)
        return None
    dispatcher = ElasticDispatcher(core, maximum, idle_timeout)
    dispatcher.set_thread_count(core)  # create_server sets the count only of a dispatcher it makes
    return dispatcher


def pool_size(server: Any) -> int:
    """Threads the server's pool has now."""
    dispatcher = server.task_dispatcher
    with dispatcher.lock:
        return int(len(dispatcher.threads) - dispatcher.stop_count)
