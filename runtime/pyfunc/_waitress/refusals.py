"""413/431 answered as problem+json with an access line, bodies over the memory budget shed
with a 503, and requests too slow to arrive closed.

waitress answers an oversized body or head with a plain-text page of its own, and the app never
sees it; here they are answered by the server's ``answer`` (pyfunc._refusals). A chunked body is
limited by its de-chunked size, a body that would take the bodies in flight past the memory
budget (pyfunc._memory) is read, discarded and answered 503, and a request still arriving after
``PYFUNC_RECEIVE_TIMEOUT`` is closed (slow-loris).
"""

from __future__ import annotations

import collections
import copy
import time

from waitress.receiver import ChunkedReceiver, FixedStreamReceiver
from waitress.task import ErrorTask
from waitress.utilities import Error as WaitressError
from waitress.utilities import RequestEntityTooLarge

from .contract import logger, refusal_contract_problems, waitress_version
from .heads import QuickParser, QuickTask

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Callable, NamedTuple, Optional

__all__ = ["REFUSED_CODES", "Refusal", "enforce_receive_deadline", "install_refusals"]

if TYPE_CHECKING:
    class Refusal(NamedTuple):
        """A request waitress refused before the app saw it (413, 431, 503)."""

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
    Refusal.__doc__ = "A request waitress refused before the app saw it (413, 431, 503)."

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


class LimitedParser(QuickParser):
    """The quick parser (heads.QuickParser), with chunked bodies received by :class:`_LimitedChunks`
    and announced bodies admitted by the memory budget (pyfunc._memory), when there is one."""

    chunks_class: type = _LimitedChunks
    # The adjustments a chunked request is parsed under: waitress's own (wire bytes) limit
    # raised to leave room for chunk framing, since _LimitedChunks enforces the body limit.
    chunked_adj: Any = None
    body_budget: Any = None  # a pyfunc._memory.BodyBudget, or None (no budget); set per server
    _release_body: Any = None
    body_rcv: Any
    chunked: bool

    def parse_header(self, header_plus: bytes) -> None:
        super().parse_header(header_plus)
        if self.chunked:  # once per request; plain bodies keep waitress's receiver
            self.body_rcv = self.chunks_class(self.body_rcv.buf)
            self.adj = self.chunked_adj
        elif self.body_budget is not None and 0 < self.content_length < self.adj.max_request_body_size:
            self._admit_body()

    def _admit_body(self) -> None:
        """Reserve the announced body, or shed it: read and *discard* it (nothing kept), then 503.

        Answering before the body is read would close a connection with unread bytes: Linux
        then resets it, and the client may lose the 503 to the reset (RFC 9112 9.6)."""
        self._release_body = self.body_budget.reserve(self, self.content_length)
        if self._release_body is None:
            self.error = _ServiceUnavailable("request bodies in flight over the memory budget")
            self.body_rcv = FixedStreamReceiver(self.content_length, _Discarded())  # type: ignore[arg-type]

    def release_body(self) -> None:
        """Give back what the body reserved (once; later calls do nothing). QuickTask calls it when
        the answer's head is built, close() when the request ends without one."""
        release, self._release_body = self._release_body, None
        if release is not None:
            release()

    def close(self) -> None:
        super().close()
        self.release_body()


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
    """waitress's error answer, for 413/431/503 given by ``answer`` (pyfunc's problem+json)."""

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
    """413/431 answered by ``answer`` (and a chunk announcing more than the limit is a 413 too);
    with a ``body_budget`` (a pyfunc._memory.BodyBudget), bodies beyond it answered 503.

    The same channel class reads request heads with :class:`heads.QuickParser`'s quick path and
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
    parser = type("LimitedParser", (LimitedParser,), {"chunks_class": chunks, "chunked_adj": chunked_adj,
                                                      "body_budget": body_budget})
    task = type("ProblemErrorTask", (_ProblemErrorTask,), {"answer": staticmethod(answer)})
    server.channel_class = type("Channel", (server.channel_class,),
                                {"error_task_class": task, "parser_class": parser, "task_class": QuickTask})
    return True


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
