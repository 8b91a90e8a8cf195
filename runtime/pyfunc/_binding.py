"""Bind request values to the handler's parameters, by name or by type.

:func:`compile_binder` reads the signature once, at startup, and produces a :class:`Binder`:
a list of ``(parameter, getter)`` pairs. Per request the binder only calls its getters; no
reflection happens on the hot path.

Rules (0.1.0's contract, extended): a parameter's *name* wins over its *type*.

=============================== =========================================== =================
parameter                       value                                       needs a CloudEvent
=============================== =========================================== =================
``event``                       1.x-style ``CloudEvent`` (see _events)      yes
``data``, ``payload``           event data (typed when annotated)           yes
``attributes``                  new dict of the context attributes          yes
``req``, ``request``            pyfunc's request (``flask.Request``'s API)  no
``body``                        request body ``bytes`` (typed if annotated) no
``headers``                     request headers                             no
annotated ``flask.Request``     ``flask.Request``                           no
annotated with an SDK event     that SDK event type (1.x or 2.x)            yes
=============================== =========================================== =================

An unannotated ``req``/``request`` gets :class:`pyfunc._request.light.Request`: ``flask.Request``'s
common read API (``args``, ``headers``, ``get_json``, ``path``, …) without importing Flask, the
rest delegated to a real ``flask.Request`` built on first use. It is not a ``flask.Request``
(``isinstance`` is False): annotate ``req: flask.Request`` for the real one. When any parameter
is annotated ``flask.Request`` (or werkzeug's), every request parameter gets that real one; a
module that uses Flask's globals runs in a Flask request context and gets Flask's request.
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass, field

from ._codec import Event
from ._errors import HandlerLoadError
from ._events import converter_for_event_type, to_http_cloudevent

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Callable, Optional

    from ._types import Environ

EVENT_NAMES = ("event",)
DATA_NAMES = ("data", "payload")
HTTP_NAMES = ("req", "request", "body", "headers")
KNOWN_NAMES = EVENT_NAMES + DATA_NAMES + ("attributes",) + HTTP_NAMES


class Invocation:
    """What one call of the handler can draw on. Filled by the app, read by the getters."""

    __slots__ = ("environ", "body", "event", "request")

    def __init__(self, environ: Environ, body: bytes, event: Optional[Event], request: Any) -> None:
        self.environ = environ
        self.body = body
        self.event = event
        self.request = request  # the flask.Request, when the handler runs under Flask


if TYPE_CHECKING:
    Getter = Callable[[Invocation], Any]


@dataclass
class Binder:
    """The precompiled call plan for one handler."""

    positional: list[Getter] = field(default_factory=list)
    keywords: list[tuple[str, Getter]] = field(default_factory=list)
    needs_event: bool = False
    needs_request: bool = False  # a parameter receives the request (pyfunc's, or flask.Request)
    needs_flask_request: bool = False  # ... and one is annotated flask.Request: all get the real one
    needs_flask_context: bool = False  # the module uses Flask's globals (flask.request, jsonify, abort)
    needs_body: bool = False
    bound: dict[str, str] = field(default_factory=dict)  # parameter → what it receives, for `check`

    def arguments(self, inv: Invocation) -> tuple[list[Any], dict[str, Any]]:
        return [g(inv) for g in self.positional], {n: g(inv) for n, g in self.keywords}


def _get_data(inv: Invocation) -> Any:
    return inv.event.data  # type: ignore[union-attr]


def _get_attributes(inv: Invocation) -> dict[str, Any]:
    return dict(inv.event.attributes)  # type: ignore[union-attr]


def _get_request(inv: Invocation) -> Any:
    return inv.request


def _get_lazy_request(inv: Invocation) -> Any:
    return LazyRequest(inv)


class LazyRequest:
    """The ``flask.Request`` of a handler that never reads it, built only if it ever is.

    ``compile_binder`` reads the handler's bytecode once: a ``req`` parameter that is never
    loaded (``def handler(req): return "Hello"``) gets this stand-in, so the function neither
    imports Flask (half of its cold start and 14 MB) nor builds a request per call. Anything
    that does reach it (a debugger, ``locals()`` in a callee) gets the real request, built on
    first use; ``isinstance(req, flask.Request)`` holds, as for Flask's own ``request`` proxy.
    """

    __slots__ = ("_inv", "_request")

    def __init__(self, inv: Invocation) -> None:
        self._inv = inv
        self._request: Any = None

    def _real(self) -> Any:
        if self._request is None:
            import io

            from flask import Request

            environ = self._inv.environ
            if self._inv.body:  # the body was read for another parameter: let the request read it too
                environ = {**environ, "wsgi.input": io.BytesIO(self._inv.body)}
            self._request = Request(environ)
        return self._request

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real(), name)

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return type(self._real())

    def __repr__(self) -> str:
        return repr(self._real())


def _never_read(function: Callable[..., Any], name: str) -> bool:
    """True when ``function``'s own bytecode provably never reads its parameter ``name``.

    Conservative: only a plain function (not a wrapper, whose code would not show what the
    wrapped one does), the parameter not captured by a closure, no ``locals()``/``vars()``/
    ``eval``/``exec``/frame access, and no instruction but a store or delete naming it.
    """
    import dis
    import types

    if type(function) is not types.FunctionType or hasattr(function, "__wrapped__"):
        return False
    code = function.__code__
    if name not in code.co_varnames or name in code.co_cellvars:
        return False
    if _INTROSPECTION & set(code.co_names):
        return False
    for instruction in dis.get_instructions(code):
        if instruction.opname in ("STORE_FAST", "DELETE_FAST", "STORE_FAST_STORE_FAST"):
            continue
        argval = instruction.argval
        if argval == name or (isinstance(argval, tuple) and name in argval):
            return False
    return True


_INTROSPECTION = {"locals", "vars", "eval", "exec", "_getframe", "currentframe", "stack", "trace"}


def _get_body(inv: Invocation) -> bytes:
    return inv.body


def _get_event(inv: Invocation) -> Any:
    return to_http_cloudevent(inv.event)  # type: ignore[arg-type]


def _headers_getter() -> Getter:
    """The headers ``req.headers`` gives: Flask's request's when there is one, else the light
    request's (werkzeug's ``EnvironHeaders`` API without importing werkzeug, ~60 ms at start).

    ``Headers`` is imported here, when the handler is bound at start, not on a first request:
    workers importing a submodule for the first time all at once raced on CI's Python 3.9
    (500s on the first concurrent requests of a fresh server).
    """
    from ._request.light import Headers
    from ._request.light import Request as LightRequest

    def get_headers(inv: Invocation) -> Any:
        request = inv.request
        if request is not None and not isinstance(request, LightRequest):  # Flask's: its headers
            return request.headers
        return Headers(inv.environ)

    return get_headers


def _from_event(convert: Callable[[Event], Any]) -> Getter:
    return lambda inv: convert(inv.event)  # type: ignore[arg-type]


def _typed(getter: Getter, convert: Callable[[Any], Any]) -> Getter:
    return lambda inv: convert(getter(inv))


def _default(value: Any) -> Getter:
    return lambda inv: value


def _is_flask_request(annotation: Any) -> bool:
    if not isinstance(annotation, type) or not annotation.__module__.startswith(("flask", "werkzeug")):
        return False
    from werkzeug.wrappers import Request

    return issubclass(annotation, Request)


def resolve_annotations(function: Callable[..., Any]) -> dict[str, Any]:
    """Parameter annotations with string ones (PEP 563) resolved where they can be."""
    target: Callable[..., Any] = function
    if not (inspect.isfunction(function) or inspect.ismethod(function)):
        target = getattr(function, "__call__", function)  # noqa: B004 - callable instances
    if not getattr(inspect.unwrap(target), "__annotations__", None):
        return {}  # what get_type_hints gives (or the fallback below): typing stays unimported
    import typing

    try:
        return typing.get_type_hints(inspect.unwrap(target))
    except Exception:
        # An unresolvable name in one annotation must not hide the others: resolve one by one.
        raw = getattr(inspect.unwrap(target), "__annotations__", {}) or {}
        namespace = getattr(inspect.unwrap(target), "__globals__", {})
        resolved = {}
        for name, ann in raw.items():
            if isinstance(ann, str):
                try:
                    ann = eval(ann, dict(namespace))  # noqa: S307 - the user's own annotation
                except Exception:
                    continue
            resolved[name] = ann
        return resolved


def converter_for(annotation: Any) -> Optional[Callable[[Any], Any]]:
    """_typeddata's converter; it (and typing) is imported only for an annotated parameter."""
    if annotation is inspect.Parameter.empty:
        return None  # what _typeddata gives for it
    from ._typeddata import converter_for as typed_converter

    return typed_converter(annotation)


def _getter_for(name: str, annotation: Any) -> tuple[Optional[Getter], str, bool]:
    """``(getter, description, needs_event)`` for one parameter; getter None if unbindable."""
    if name in EVENT_NAMES:
        convert = converter_for_event_type(annotation)
        return (_from_event(convert) if convert else _get_event), "the CloudEvent", True
    if name in DATA_NAMES:
        convert = converter_for(annotation)
        what = f"event data as {_type_name(annotation)}" if convert else "event data"
        return (_typed(_get_data, convert) if convert else _get_data), what, True
    if name == "attributes":
        return _get_attributes, "event attributes (dict)", True
    if name in ("req", "request"):
        if _is_flask_request(annotation):
            return _get_request, "the flask.Request", False
        return _get_request, "the request (flask.Request's API; Flask imported only for the rest)", False
    if name == "body":
        convert = None if annotation in (bytes, inspect.Parameter.empty) else converter_for(annotation)
        what = f"JSON body as {_type_name(annotation)}" if convert else "request body (bytes)"
        return (_typed(_get_body, convert) if convert else _get_body), what, False
    if name == "headers":
        return _headers_getter(), "request headers", False
    if _is_flask_request(annotation):
        return _get_request, "the flask.Request", False
    convert = converter_for_event_type(annotation)
    if convert is not None:
        return _from_event(convert), f"the CloudEvent as {_type_name(annotation)}", True
    return None, "", False


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation)


def compile_binder(function: Callable[..., Any], file: Optional[str] = None) -> Binder:
    """Read ``function``'s signature once and build its call plan."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError) as exc:
        raise HandlerLoadError(f"cannot read the signature of the handler: {exc}", file) from None
    annotations = resolve_annotations(function)
    binder = Binder()
    pending_positional: list[Getter] = []
    for name, param in signature.parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue  # nothing is passed to *args / **kwargs
        annotation = annotations.get(name, param.annotation)
        getter, what, needs_event = _getter_for(name, annotation)
        if getter is None:
            if param.default is param.empty:
                raise HandlerLoadError(
                    f"parameter '{name}' of {getattr(function, '__name__', 'the handler')}() cannot be "
                    f"bound: give it one of the names {', '.join(KNOWN_NAMES)}, annotate it with "
                    f"flask.Request or a cloudevents event type, or give it a default",
                    file,
                    _first_line_of(function),
                )
            if param.kind == param.POSITIONAL_ONLY:
                pending_positional.append(_default(param.default))
            binder.bound[name] = "its default"
            continue
        if getter is _get_request and _never_read(function, name):
            getter, what = _get_lazy_request, "the flask.Request (never read: built only if reached)"
        binder.bound[name] = what
        binder.needs_event |= needs_event
        binder.needs_request |= getter is _get_request
        binder.needs_flask_request |= getter is _get_request and _is_flask_request(annotation)
        binder.needs_body |= name == "body"
        if param.kind == param.POSITIONAL_ONLY:
            binder.positional.extend(pending_positional)
            pending_positional.clear()
            binder.positional.append(getter)
        else:
            binder.keywords.append((name, getter))
    # A module that imports flask may call flask.request / jsonify / abort anywhere: keep the
    # Flask request context 0.1.0 always had for it. Others get a bare flask.Request, which
    # costs a sixth of pushing a context.
    if "flask" in sys.modules and _module_uses_flask(function):
        binder.needs_flask_context = True
    return binder


def _module_uses_flask(function: Callable[..., Any]) -> bool:
    module = sys.modules.get(getattr(inspect.unwrap(function), "__module__", "") or "")
    if module is None:
        return False
    flask = sys.modules["flask"]
    return any(
        value is flask or str(getattr(value, "__module__", "") or "").startswith("flask")
        for value in vars(module).values()
    )


def _first_line_of(function: Callable[..., Any]) -> Optional[int]:
    code = getattr(inspect.unwrap(function), "__code__", None)
    return code.co_firstlineno if code else None
