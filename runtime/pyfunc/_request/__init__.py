"""The request a handler gets, chosen once when it is bound: one strategy per handler.

This module holds only the choice (it is imported for every handler: a cold start pays for no
request parsing it does not use); light.py is the light request, ported.py werkzeug's parsing it
follows.

- :class:`NoRequest`: the handler takes no request; the body is read from ``wsgi.input`` if bound.
- :class:`LightRequests`: an unannotated ``req``: pyfunc's light request (light.py), which
  answers flask.Request's common read API on the standard library and builds Flask only if asked
  for the rest.
- :class:`FlaskRequests`: a parameter annotated ``flask.Request``: every request parameter gets one.
- :class:`FlaskContext`: the handler's module uses Flask's globals (``flask.request``,
  ``jsonify``, ``abort``): the call runs in a real Flask request context.

A request parameter the handler provably never reads gets lazy.LazyRequest instead (the binder
decides that per parameter, _binding.compile_binder).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Callable

    from .._binding import Binder
    from .._types import Environ

    # What the app does with the request: ``invoke(environ, body, request, *rest)`` (the body is
    # ``b""`` unless a parameter is bound to it). Arguments, not a closure: one call fewer a request.
    Invoke = Callable[..., Any]

__all__ = ["BadRequestKeyError", "FlaskContext", "FlaskRequests", "Headers", "LightRequests", "MultiDict",
           "NoRequest", "Request", "for_binder", "read_body"]

# The light request's public names, from light.py when first asked for (PEP 562): importing
# this package costs a handler that takes no request nothing.
_LIGHT = ("BadRequestKeyError", "Headers", "MultiDict", "Request")


def __getattr__(name: str) -> Any:
    if name in _LIGHT:
        from . import light

        return getattr(light, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class NoRequest:
    """No request object: the body alone, when a parameter takes it."""

    __slots__ = ("wants_body",)

    def __init__(self, wants_body: bool) -> None:
        self.wants_body = wants_body

    def serve(self, environ: Environ, invoke: Invoke, *rest: Any) -> Any:
        return invoke(environ, read_body(environ) if self.wants_body else b"", None, *rest)


class LightRequests(NoRequest):
    """Each request as ``request_class(environ)``; the body is read through it (and cached in it)."""

    __slots__ = ("request_class",)

    def __init__(self, wants_body: bool, request_class: Any = None) -> None:
        super().__init__(wants_body)
        if request_class is None:
            from .light import Request as request_class
        self.request_class = request_class

    def serve(self, environ: Environ, invoke: Invoke, *rest: Any) -> Any:
        request = self.request_class(environ)
        return invoke(environ, request.get_data(cache=True) if self.wants_body else b"", request, *rest)


class FlaskRequests(LightRequests):
    """Each request as a real ``flask.Request`` (Flask imported at bind time, not on a first request)."""

    __slots__ = ()

    def __init__(self, wants_body: bool) -> None:
        from flask import Request

        super().__init__(wants_body, Request)


class FlaskContext(NoRequest):
    """Each call inside a Flask request context (the app built at bind time, not on a first request)."""

    __slots__ = ("flask_app",)

    def __init__(self, wants_body: bool) -> None:
        super().__init__(wants_body)
        import flask

        self.flask_app = flask.Flask("pyfunc")
        self.flask_app.config["MAX_CONTENT_LENGTH"] = None

    def serve(self, environ: Environ, invoke: Invoke, *rest: Any) -> Any:
        with self.flask_app.request_context(environ) as ctx:
            request = ctx.request
            return invoke(environ, request.get_data(cache=True) if self.wants_body else b"", request, *rest)


def for_binder(binder: Binder) -> NoRequest:
    """The strategy for a bound handler."""
    wants_body = binder.needs_event or binder.needs_body
    if binder.needs_flask_context:
        return FlaskContext(wants_body)
    if binder.needs_flask_request:
        return FlaskRequests(wants_body)
    if binder.needs_request:  # an unannotated req: flask.Request's API, Flask only if reached
        return LightRequests(wants_body)
    return NoRequest(wants_body)


def read_body(environ: Environ) -> bytes:
    stream = environ.get("wsgi.input")
    length = environ.get("CONTENT_LENGTH")
    if stream is None or not length:
        # waitress de-chunks a chunked body and sets CONTENT_LENGTH; anything else has no body.
        return b""
    try:
        data: bytes = stream.read(int(length))
        return data
    except ValueError:
        return b""
