"""Serving a function that failed to load, so `pyfunc run --reload` survives a broken edit."""

from __future__ import annotations

from typing import Any, Callable, Iterable

from .config import Config
from .errors import HandlerLoadError
from .responses import problem


class ErrorApp:
    """Answers every request with a 500 naming the load error (file, line, message)."""

    loaded = None
    draining = False

    def __init__(self, error: HandlerLoadError, config: Config) -> None:
        self.error = error
        self.config = config

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        response = problem(
            500, "handler-load-error", str(self.error),
            file=self.error.file, line=self.error.line, message=self.error.message,
        )
        start_response(response.status_line, response.headers)
        return [response.body]  # type: ignore[list-item]
