"""Logging: the handler's ``logging.info`` visible by default, one access line per request, JSON on demand.

pyfunc installs exactly one handler on the root logger (so nothing is printed twice, unlike
0.1.0 where the first ``logging.info`` doubled every access line). Per-request fields
(request id, CloudEvent id/type/source, W3C trace id) live in a context variable, so the
handler's own log records carry them too.
"""

from __future__ import annotations

import collections
import contextvars
import itertools
import json
import logging
import os
import sys
import time

from ._clock import rfc3339_utc

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Callable, Optional

request_fields: contextvars.ContextVar[Optional[dict[str, Any]]] = contextvars.ContextVar(
    "pyfunc_request_fields", default=None
)

access_logger = logging.getLogger("pyfunc.access")
logger = logging.getLogger("pyfunc")


# Request ids: a random per-process prefix and a counter. Unique across replicas and restarts
# like a uuid4, at a tenth of its cost on every request (itertools.count is atomic under the GIL).
_REQUEST_ID_PREFIX = os.urandom(6).hex()
_request_counter = itertools.count(1)


def next_request_id() -> str:
    """A new id for a request that came without an ``X-Request-Id``."""
    return f"{_REQUEST_ID_PREFIX}-{next(_request_counter):x}"


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message and the request's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": rfc3339_utc(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = request_fields.get()
        if fields:
            entry.update({k: v for k, v in fields.items() if v is not None})
        extra = getattr(record, "access", None)
        if extra:
            entry.update(extra)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(log_format: str = "text", level: str = "INFO") -> None:
    """Route all logging to stderr through one handler; replaces handlers set up before."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    global _access_writer
    _access_writer = _AccessWriter(handler, json_lines=log_format == "json")
    # waitress logs through "waitress": its warnings stay, its INFO chatter goes. "Task queue
    # depth is N" (waitress.queue) is logged for every request that waits for a thread, i.e. on
    # every request once the server is saturated: a flood that costs CPU exactly when there is
    # none to spare, and says nothing latency does not.
    logging.getLogger("waitress").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("waitress.queue").setLevel(max(logging.ERROR, root.level))


def access(
    method: str, path: str, status: int, seconds: float, fields: Optional[dict[str, Any]], level: int = logging.INFO
) -> None:
    """One line per request: method, path, status, latency, CloudEvent id and type."""
    if not access_logger.isEnabledFor(level):
        return
    writer = _access_writer
    if writer is not None:
        if writer.usable():
            writer.write(method, path, status, seconds, fields, level)
            return
        writer.flush()  # lines queued before logging was replaced come first
    millis = seconds * 1000
    extra = {"access": {"method": method, "path": path, "status": status, "duration_ms": round(millis, 3)}}
    args: tuple[object, ...]
    if fields and fields.get("ce_id") is not None:
        message, args = "%s %s %d %.1fms ce-id=%s ce-type=%s", (
            method, path, status, millis, fields.get("ce_id"), fields.get("ce_type"))
    else:
        message, args = "%s %s %d %.1fms", (method, path, status, millis)
    # makeRecord + handle rather than .info(): the caller's file and line are known, and
    # logging's stack walk to find them is a fifth of the cost of an access line.
    access_logger.handle(access_logger.makeRecord(
        access_logger.name, level, "pyfunc/app.py", 0, message, args, None, "access", extra))


class _AccessWriter:
    """The access line written straight to pyfunc's own log handler, exactly as its formatter would.

    Building a LogRecord and running it through the logging machinery cost a fifth of the
    server's CPU per request under load (measured: 40 µs of 220); the line itself is cheap. So
    while the root logger still has only the handler ``configure`` installed (a ``start()`` hook
    may replace it) and the access logger has no handlers or filters of its own, the line is
    formatted here and written under the handler's lock; otherwise it goes through logging.
    """

    def __init__(self, handler: logging.StreamHandler[Any], json_lines: bool) -> None:
        self.handler = handler
        self.json_lines = json_lines
        self._second = -1
        self._prefix = ""
        # Lines waiting for flush(), when the server batches them (see defer_access_lines).
        self.pending: Optional[collections.deque[str]] = None

    def usable(self) -> bool:
        root = logging.root
        return (len(root.handlers) == 1 and root.handlers[0] is self.handler and not access_logger.handlers
                and not access_logger.filters and not self.handler.filters and access_logger.propagate)

    def _asctime(self, now: float) -> str:
        second = int(now)
        if second != self._second:  # the same format as logging.Formatter's default asctime
            self._second, self._prefix = second, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return f"{self._prefix},{int((now - second) * 1000):03d}"

    def write(self, method: str, path: str, status: int, seconds: float,
              fields: Optional[dict[str, Any]], level: int) -> None:
        now = time.time()
        millis = seconds * 1000
        ce_id = fields.get("ce_id") if fields else None
        message = f"{method} {path} {status} {millis:.1f}ms"
        if ce_id is not None:
            message += f" ce-id={ce_id} ce-type={fields.get('ce_type')}"  # type: ignore[union-attr]
        level_name = logging.getLevelName(level)
        if self.json_lines:
            entry: dict[str, Any] = {
                "timestamp": rfc3339_utc(now, 3),
                "level": level_name, "logger": access_logger.name, "message": message,
            }
            if fields:
                entry.update({k: v for k, v in fields.items() if v is not None})
            entry.update(method=method, path=path, status=status, duration_ms=round(millis, 3))
            line = json.dumps(entry, ensure_ascii=False, default=str)
        else:
            line = f"{self._asctime(now)} {level_name} {access_logger.name}: {message}"
        if self.pending is not None:
            self.pending.append(line)
        else:
            self._emit(line)

    def flush(self) -> None:
        """Write the lines waiting, in order, with one write."""
        pending = self.pending
        if pending:
            self._emit("\n".join([pending.popleft() for _ in range(len(pending))]))  # a worker may append meanwhile

    def _emit(self, text: str) -> None:
        handler = self.handler
        with handler.lock:  # type: ignore[union-attr]
            handler.stream.write(text + "\n")
            handler.stream.flush()


def flush_access_lines() -> None:
    """Write any access lines still queued (at shutdown)."""
    if _access_writer is not None:
        _access_writer.flush()


def defer_access_lines() -> Optional[Callable[[], None]]:
    """Batch access lines: workers queue them and the returned ``flush`` writes them at once.

    The server's I/O loop calls ``flush`` before it waits for events: every request wakes the
    loop when it ends, so a line is written within one loop turn (well under a millisecond under
    load), and one write carries all the lines of that turn instead of one system call per
    request, each handing the GIL to another thread. Returns None when access lines do not go
    through pyfunc's writer (``configure`` not called, or logging replaced by a hook).
    """
    writer = _access_writer
    if writer is None or not writer.usable():
        return None
    if writer.pending is None:
        writer.pending = collections.deque()
    return writer.flush


_access_writer: Optional[_AccessWriter] = None
