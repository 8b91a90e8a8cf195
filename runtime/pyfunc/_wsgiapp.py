"""Serve a WSGI application object (a Flask ``app``, any ``app(environ, start_response)``) as a function.

``PYTHON_HANDLER=module:app`` naming a WSGI app serves it whole: its own routing, error pages and
404s. pyfunc keeps what every function gets around it: the health paths (503 while draining),
``/metrics`` with PYFUNC_METRICS, PYFUNC_MAX_CONCURRENCY, the access log, the drain, and the
module's ``start``/``stop``/``alive``/``ready`` hooks. An exception the app lets escape before it
starts its response is pyfunc's 500 problem body (the traceback in the log), never a traceback
page. The app runs in the waitress worker (WSGI is synchronous): PYFUNC_TIMEOUT cannot stop it.
"""

from __future__ import annotations

import logging
import threading
import time

from . import _logs as logs
from ._app import LIVENESS_PATHS, METRICS_PATH, READINESS_PATHS, health_answer
from ._config import Config
from ._discovery import LoadedFunction
from ._outcomes import outcome_of_status
from ._responses import problem

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable

    from ._deferred import MakeSink
    from ._types import Environ, StartResponse

__all__ = ["WsgiApp"]

logger = logging.getLogger("pyfunc")


class WsgiApp:
    """The WSGI callable around the user's WSGI application."""

    is_async = False

    def __init__(self, loaded: LoadedFunction, config: Config) -> None:
        self.loaded = loaded
        self.config = config
        self.app: Callable[..., Iterable[bytes]] = loaded.function
        self.qualname = loaded.qualname
        self.access_log = config.access_log
        self.draining = False
        self.tracing: Any = None
        self.kind = "wsgi"
        self._async: Any = None
        self._slots = threading.BoundedSemaphore(config.max_concurrency) if config.max_concurrency > 0 else None
        self.metrics: Any = None
        if config.metrics:
            from ._metrics import Metrics

            self.metrics = Metrics()

    def enable_tracing(self) -> bool:
        return False

    def enable_deferral(self, make_sink: MakeSink) -> bool:
        return False  # a WSGI app answers in its worker

    def on_ready(self) -> None:
        if self.metrics is not None:
            self.metrics.ready()

    def close(self) -> None:
        """Nothing to release: the WSGI app runs on waitress's own threads."""

    def health(self, which: str) -> Any:
        return health_answer(self.loaded.hooks, which, self.draining, self.config.debug, _run_to_completion)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        fields = {"request_id": environ.get("HTTP_X_REQUEST_ID") or logs.next_request_id()}
        token = logs.request_fields.set(fields)
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        status_box = [0]

        def recording_start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            status_box[0] = int(status.split(" ", 1)[0])
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        try:
            level = logging.INFO
            if path in LIVENESS_PATHS or path in READINESS_PATHS:
                response = self.health("alive" if path in LIVENESS_PATHS else "ready")
                level = logging.DEBUG if response.status == 200 else logging.INFO
            elif self.metrics is not None and path == METRICS_PATH and method in ("GET", "HEAD"):
                response, level = self.metrics.response(), logging.DEBUG
            else:
                return self._invoke(environ, recording_start_response, status_box, fields, started)
            start_response(response.status_line, _with_length(response))
            if self.access_log:
                logs.access(method, path, response.status, time.perf_counter() - started, fields, level)
            return (response.body,)
        finally:
            logs.request_fields.reset(token)

    def _invoke(self, environ: Environ, start_response: StartResponse, status_box: list[int],
                fields: dict[str, Any], started: float) -> Iterable[bytes]:
        slots = self._slots
        if slots is not None and not slots.acquire(blocking=False):
            response = problem(429, "too-many-requests",
                               f"more than {self.config.max_concurrency} invocations in progress")
            status_box[0] = 429
            start_response(response.status_line, _with_length(response))
            result: Iterable[bytes] = (_body(response),)
        else:
            try:
                result = self.app(environ, start_response)
            except Exception as exc:  # noqa: BLE001 - the app's own error pages are its business; this escaped
                logger.error("%s raised %s", self.qualname, type(exc).__name__, exc_info=exc)
                response = problem(500, "function-error",
                                   "the function raised an exception; the traceback is in the log")
                status_box[0] = 500
                start_response(response.status_line, _with_length(response), (type(exc), exc, exc.__traceback__))
                result = (_body(response),)
            finally:
                if slots is not None:
                    slots.release()
        seconds = time.perf_counter() - started
        if self.metrics is not None:
            self.metrics.invocation(outcome_of_status(status_box[0], True), None, seconds)
        if self.access_log:
            logs.access(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), status_box[0], seconds, fields)
        return result


def _run_to_completion(awaitable: Any) -> Any:
    """An ``async def`` health hook's result: no event loop runs beside a WSGI app, so a new one."""
    import asyncio

    from ._async import awaited

    return asyncio.run(awaited(awaitable))


def _body(response: Any) -> bytes:
    body = response.body
    assert isinstance(body, bytes)
    return body


def _with_length(response: Any) -> list[tuple[str, str]]:
    return [*response.headers, ("Content-Length", str(len(_body(response))))]
