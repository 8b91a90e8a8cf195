"""What an invocation that raised answers: a table keyed by exception class.

Like Starlette's ``_exception_handlers``: the raised exception's class is looked up along its
MRO, so ``pyfunc.Retry`` finds its own entry before :class:`Outcome`'s, and anything not in
the table is a function error (500) whose body names no exception (it could carry internals
to whoever sent the request; the traceback goes to the log, and PYFUNC_DEBUG puts the class
and message in the body for local use). Each entry returns the outcome (docs/delivery.md)
and the response.
"""

from __future__ import annotations

import logging
import sys

from ._errors import InvalidReply, InvocationTimeout, RequestError
from ._outcomes import Drop, Outcome, Retry, outcome_of_status
from ._responses import Response, problem

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Callable

    Handler = Callable[[BaseException], tuple[str, Any]]

__all__ = ["Failures", "answers_itself", "exception_text", "http_exception_response", "outcome_of_response"]

logger = logging.getLogger("pyfunc")


class Failures:
    """The outcome and response of an invocation that raised (or of a request refused before it)."""

    def __init__(self, qualname: str, timeout: float, debug: bool) -> None:
        self.qualname = qualname
        self.timeout = timeout
        self.debug = debug
        self.handlers: dict[type[BaseException], Handler] = {
            Retry: self._retry,
            Drop: self._drop,
            Outcome: self._outcome,
            RequestError: self._rejected,
            InvocationTimeout: self._timeout,
            InvalidReply: self._invalid_reply,
        }

    def register(self, exc_class: type[BaseException], handler: Handler) -> None:
        """Answer ``exc_class`` (and its subclasses without an entry of their own) with ``handler``."""
        self.handlers[exc_class] = handler

    def __call__(self, exc: BaseException) -> tuple[str, Any]:
        handlers = self.handlers
        for cls in type(exc).__mro__:
            handler = handlers.get(cls)
            if handler is not None:
                return handler(exc)
        http_exception = http_exception_response(exc)
        if http_exception is not None:
            return outcome_of_response(http_exception), http_exception
        return self._function_error(exc)

    def response(self, exc: BaseException) -> Any:
        """Only the response (a request refused before any call)."""
        return self(exc)[1]

    def _retry(self, exc: Any) -> tuple[str, Any]:
        logger.warning("%s asked for a retry%s: %s", self.qualname,
                       f" after {exc.after}s" if exc.after is not None else "", exc.reason or "no reason given")
        response = problem(exc.status, exc.problem, exc.reason or "the function asked for the event to be retried")
        if exc.retry_after is not None:
            response.headers.append(("Retry-After", exc.retry_after))
        return "retry", response

    def _drop(self, exc: Any) -> tuple[str, Any]:
        logger.warning("%s dropped the event: %s", self.qualname, exc.reason or "no reason given")
        return "drop", problem(exc.status, exc.problem, exc.reason or "the function dropped the event")

    def _outcome(self, exc: Any) -> tuple[str, Any]:
        """Another ``pyfunc`` outcome: WARNING, no traceback (_outcomes.py)."""
        logger.warning("%s raised %s: %s", self.qualname, type(exc).__name__, exc.reason)
        return "error", problem(exc.status, exc.problem, exc.reason)

    def _rejected(self, exc: Any) -> tuple[str, Any]:
        logger.info("rejected request: %s: %s", exc.reason, exc.detail)
        extra: dict[str, Any] = {"errors": exc.errors} if exc.errors else {}
        return "rejected", problem(exc.status, exc.reason, exc.detail, **extra)

    def _timeout(self, exc: BaseException) -> tuple[str, Any]:
        logger.error("invocation timed out after %ss", self.timeout)
        return "timeout", problem(504, "timeout", f"the function did not finish within {self.timeout}s")

    def _invalid_reply(self, exc: BaseException) -> tuple[str, Any]:
        # The detail is pyfunc's own description of the reply's shape; the exception behind it
        # (say, json's TypeError) goes only to the log, and to the body with PYFUNC_DEBUG.
        cause = exc.__cause__
        logger.error("invalid reply from %s: %s%s", self.qualname, exc,
                     f" ({exception_text(cause)})" if cause is not None else "")
        extra = {"exception": exception_text(cause)} if self.debug and cause is not None else {}
        return "error", problem(500, "invalid-reply", str(exc), **extra)

    def _function_error(self, exc: BaseException) -> tuple[str, Any]:
        # Even GeneratorExit: the app is no generator, so it can only come from the handler, and
        # re-raised it left the connection hanging with no response (waitress only logs it).
        logger.error("%s raised %s", self.qualname, type(exc).__name__, exc_info=exc)
        if self.debug:
            return "error", problem(500, "function-error",
                                    f"the function raised {exception_text(exc)}; the traceback is in the log",
                                    exception=exception_text(exc))
        return "error", problem(500, "function-error", "the function raised an exception; the traceback is in the log")


# Exceptions that are their own HTTP answer, like werkzeug's HTTPException: ``exc.get_response()``.
# The light request (pyfunc._request) adds its BadRequestKeyError when it is imported.
HTTP_EXCEPTIONS: list[type[BaseException]] = []


def answers_itself(exc_class: type[BaseException]) -> None:
    """Answer ``exc_class`` with its own ``get_response()``, as werkzeug's HTTP exceptions are."""
    HTTP_EXCEPTIONS.append(exc_class)


def http_exception_response(exc: BaseException) -> Any:
    """The response an exception is its own answer with (``flask.abort(404)``, a key missing from
    the light request's ``args``), or None. werkzeug is looked up only if something loaded it:
    none of its exceptions can have been raised otherwise."""
    for exc_class in HTTP_EXCEPTIONS:
        if isinstance(exc, exc_class):
            return exc.get_response()  # type: ignore[attr-defined]
    if "werkzeug.exceptions" not in sys.modules:
        return None
    from werkzeug.exceptions import HTTPException

    if isinstance(exc, HTTPException):
        return exc.get_response()
    return None


def exception_text(exc: BaseException) -> str:
    """``ValueError: message`` (the class alone when the message is empty), for the log and PYFUNC_DEBUG."""
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def outcome_of_response(response: Any) -> str:
    """The outcome (docs/delivery.md) a response stands for: pyfunc's, or a werkzeug one."""
    if isinstance(response, Response):
        return outcome_of_status(response.status, bool(response.body))
    return outcome_of_status(getattr(response, "status_code", 200), True)
