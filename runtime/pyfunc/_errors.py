"""The exceptions pyfunc raises, each mapped to one clear outcome.

Startup problems (:class:`HandlerLoadError`) end the process with a message naming the file
and line; request problems carry an HTTP status and a short machine-readable ``reason`` that
goes into an ``application/problem+json`` body (RFC 9457).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Optional


class PyfuncError(Exception):
    """Base class of everything pyfunc raises on purpose."""


class HandlerLoadError(PyfuncError):
    """The handler cannot be loaded or bound: reported once, at startup, with file and line."""

    def __init__(self, message: str, file: Optional[str] = None, line: Optional[int] = None) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line

    def __str__(self) -> str:
        where = self.file or ""
        if where and self.line:
            where = f"{where}:{self.line}"
        return f"{where}: {self.message}" if where else self.message


class RequestError(PyfuncError):
    """A request pyfunc refuses; ``reason`` is a short kebab-case token for machines."""

    status = 400

    def __init__(self, reason: str, detail: str, status: Optional[int] = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.errors: list[Any] = []  # per-field details, for the problem body's `errors` member
        if status is not None:
            self.status = status


class BadEvent(RequestError):
    """The request is not a valid CloudEvent (HTTP binding or JSON format violated): 400."""


class InvalidData(RequestError):
    """The event data or JSON body does not fit the handler's declared type: 400."""

    def __init__(self, detail: str, errors: Optional[list[Any]] = None) -> None:
        super().__init__("invalid-data", detail)
        self.errors = errors or []


class InvalidReply(PyfuncError):
    """The handler returned something that cannot become a response: a handler bug, 500."""


class InvocationTimeout(Exception):  # noqa: N818 - named for what the operator sees in the log
    """The handler did not finish within ``PYFUNC_TIMEOUT``: 504 (_failures.py)."""
