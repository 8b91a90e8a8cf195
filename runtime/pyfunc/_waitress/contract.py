"""The contract: every waitress internal pyfunc relies on, checked at start-up.

waitress's public API (``create_server``, adjustments, ``run()``) cannot do what pyfunc needs:
an epoll loop (_eventloop.py), a drain that finishes in-flight requests, a receive deadline, and
413/431 refusals written as problem+json with an access line. So the pyfunc._waitress package
reaches inside waitress, and nothing else in pyfunc does; this module says what it relies on.

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
  which connection changed (see _eventloop.py).
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
  leaves the state :meth:`heads.QuickParser._parse_usual_header` recreates for a usual head, with
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

import inspect
import logging

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.receiver import ChunkedReceiver
from waitress.server import BaseWSGIServer
from waitress.task import ErrorTask, WSGITask

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Optional

__all__ = ["CHANNEL_STATE", "TESTED_VERSIONS", "deferral_contract_problems", "drain_contract_problems",
           "loop_contract_problems", "refusal_contract_problems", "waitress_version"]

logger = logging.getLogger("pyfunc")

# Tested range (see the contract above and pyproject.toml).
TESTED_VERSIONS = ("3.0.1", "3.0.2")


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


def waitress_version() -> str:
    try:
        from importlib.metadata import version

        return version("waitress")
    except Exception:  # noqa: BLE001 - only used in a log line
        return "(unknown version)"


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
