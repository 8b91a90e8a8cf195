"""Knative func's Python functions (func-python's layout and instance contract), served unchanged.

``func create -l python`` writes a package ``function/`` whose ``__init__.py`` exports ``new``
(a factory returning the function instance) or ``handle`` (a bare ASGI handler). The instance
has ``async def handle(self, scope, receive, send)`` and, optionally, ``start(cfg)`` (a dict copy
of the environment, once before the first request), ``stop()``, ``alive()`` and ``ready()``
(``bool`` or ``(bool, message)``). func-python serves it under hypercorn; here the same
instance runs as an ASGI app of pyfunc's (pyfunc._asgi), its hooks as pyfunc's hooks.

The CloudEvents flavour (``invoke: cloudevent`` in func.yaml, as ``func create -t cloudevents``
writes it) decodes the request as every pyfunc function's is (_invocation.decode: the codec, the
log's ``ce_*`` fields, the same 400/415 refusals) before the app runs: ``scope["event"]``
is the SDK's event (``cloudevents.core.v1.event.CloudEvent`` with SDK 2.x, the 1.x
``cloudevents.http.CloudEvent`` where only 1.x is installed), and ``send`` also takes an event:
``await send(event)`` answers in structured mode, ``await send.binary(event)`` in binary mode.

Deliberate differences from func-python 0.8.1 (docs/asgi.md): a failing health hook answers
503 with pyfunc's JSON body (func-python: 500, text); a request that is not a CloudEvent gets
pyfunc's 400/415 problem body naming what is wrong; an exception in ``handle`` gets pyfunc's
500 problem body without the exception's text (func-python sends ``Error: <message>``).
"""

from __future__ import annotations

import inspect
import io
import os
import re

from . import _codec as codec
from ._asgi import AsgiApp
from ._config import Config
from ._discovery import LoadedFunction, _import_module, _innermost_frame_in, _source_line_of
from ._errors import HandlerLoadError, RequestError
from ._invocation import decode

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Callable

    from ._types import Environ

__all__ = ["PACKAGE", "load_func_python", "CloudEventSender"]

PACKAGE = "function"
HOOKS = ("start", "stop", "alive", "ready")
_CLOUDEVENT_INVOKE = re.compile(r"""^invoke:\s*["']?cloudevents?["']?\s*(#.*)?$""", re.MULTILINE)


def is_cloudevent_function(workspace: str) -> bool:
    """func.yaml's ``invoke: cloudevent`` (``func create -t cloudevents``): the CloudEvents flavour."""
    try:
        with open(os.path.join(workspace, "func.yaml"), encoding="utf-8") as file:
            return _CLOUDEVENT_INVOKE.search(file.read()) is not None
    except (OSError, UnicodeError):
        return False


def health_endpoints(workspace: str) -> dict[str, str]:
    """func.yaml's ``deploy.healthEndpoints`` (the paths ``func deploy`` gives the Knative probes):
    ``{path: "alive" | "ready"}`` for the paths other than pyfunc's own.

    Read line by line (no YAML parser among pyfunc's dependencies): the keys ``liveness`` and
    ``readiness`` indented under ``healthEndpoints:`` under ``deploy:``.
    """
    try:
        with open(os.path.join(workspace, "func.yaml"), encoding="utf-8") as file:
            lines = file.read().splitlines()
    except (OSError, UnicodeError):
        return {}
    found: dict[str, str] = {}
    section: list[tuple[int, str]] = []  # (indent, key) of the enclosing mappings
    for line in lines:
        text = line.split("#", 1)[0].rstrip()
        if not text.strip() or text.lstrip().startswith("-"):
            continue
        indent = len(text) - len(text.lstrip())
        key, _, value = text.strip().partition(":")
        while section and section[-1][0] >= indent:
            section.pop()
        value = value.strip().strip("'\"")
        if not value:
            section.append((indent, key))
            continue
        if [name for _, name in section] == ["deploy", "healthEndpoints"] and key in ("liveness", "readiness") \
                and value.startswith("/"):
            found[value] = "alive" if key == "liveness" else "ready"
    return found


def load_func_python(config: Config) -> AsgiApp:
    """Import ``function/``, make the instance (``new()``) and wrap it; every failure is a
    :class:`HandlerLoadError` naming the file and line, before the port opens."""
    workspace = os.path.realpath(config.directory)
    module = _import_module(workspace, PACKAGE)
    file = getattr(module, "__file__", None)
    factory = getattr(module, "new", None)
    bare = getattr(module, "handle", None)
    if callable(factory):
        try:
            instance = factory()
        except Exception as exc:
            where = _innermost_frame_in(workspace, exc) or (inspect.getsourcefile(factory) or file,
                                                            _source_line_of(factory))
            raise HandlerLoadError(f"new() raised {type(exc).__name__}: {exc}", *where) from None
        name = "new"
        origin: Any = factory
    elif callable(bare):
        instance, name, origin = _BareHandle(bare), "handle", bare
    else:
        raise HandlerLoadError(f"package {PACKAGE!r} exports neither 'new' (a factory returning the function "
                               "instance) nor 'handle' (an async ASGI handler)", file)
    handle = getattr(instance, "handle", None)
    where = (inspect.getsourcefile(origin) if inspect.isfunction(origin) else None) or file, _source_line_of(origin)
    if not callable(handle):
        raise HandlerLoadError(f"the instance new() returned ({type(instance).__name__}) has no handle method", *where)
    if not inspect.iscoroutinefunction(inspect.unwrap(handle)):
        raise HandlerLoadError("handle must be 'async def handle(self, scope, receive, send)' (an ASGI handler)",
                               inspect.getsourcefile(handle) if inspect.ismethod(handle) else where[0],
                               _source_line_of(handle))
    hooks = {hook: obj for hook in HOOKS if callable(obj := getattr(instance, hook, None))}
    loaded = LoadedFunction(handle, module, name, file, hooks)
    if is_cloudevent_function(workspace):
        app = AsgiApp(loaded, config, handle, prepare=decode_event, send_wrapper=CloudEventSender,
                      kind="func-python cloudevent")
    else:
        app = AsgiApp(loaded, config, handle, kind="func-python http")
    app.health_paths.update(health_endpoints(workspace))
    return app


class _BareHandle:
    """A module-level ``async def handle(scope, receive, send)``: an instance without hooks."""

    def __init__(self, handle: Callable[..., Any]) -> None:
        self.handle = handle


# ---------------------------------------------------------------------- the CloudEvents flavour


def decode_event(environ: Environ, scope: dict[str, Any], fields: dict[str, Any]) -> None:
    """Put the request's event in ``scope["event"]`` as the SDK's type; raises RequestError if it is
    none (AsgiApp answers it from the failure table, as Invoker.refuse does).

    The body stays readable through ``receive()`` (read here from waitress's buffer, handed back).
    """
    stream = environ.get("wsgi.input")
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body: bytes = stream.read(length) if stream is not None and length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)
    mode, events = decode(environ, body, fields)
    if mode == codec.BATCH:
        raise RequestError("batch-unsupported", "a func-python function takes one event per request, not a batch")
    scope["event"] = sdk_event(events[0])


def sdk_event(event: codec.Event) -> Any:
    """The SDK's event: 2.x's ``cloudevents.core.v1.event.CloudEvent``, else 1.x's ``cloudevents.http.CloudEvent``."""
    import importlib

    from . import _events

    try:  # by name: mypy checks this module against whichever SDK major is installed
        core_event = importlib.import_module("cloudevents.core.v1.event").CloudEvent
    except ImportError:
        return _events.to_http_cloudevent(event)
    return _events.to_core_cloudevent(core_event)(event)


class CloudEventSender:
    """func-python's ``send`` of the CloudEvents flavour: takes an SDK event (either major).

    ``await send(event)`` / ``send.structured(event)``: structured mode; ``send.binary(event)``:
    binary mode; ``send.http(message)``: a raw ASGI message. A raw ASGI message given to
    ``send(...)`` itself goes through unchanged, as in the HTTP flavour.
    """

    def __init__(self, send: Callable[[dict[str, Any]], Any]) -> None:
        self._send = send

    async def __call__(self, event: Any, status: int = 200) -> None:
        if isinstance(event, dict) and str(event.get("type", "")).startswith("http."):
            await self._send(event)
            return
        await self.structured(event, status)

    async def structured(self, event: Any, status: int = 200) -> None:
        await self._respond(*codec.encode_structured(*_attributes_and_data(event)), status)

    async def binary(self, event: Any, status: int = 200) -> None:
        await self._respond(*codec.encode_binary(*_attributes_and_data(event)), status)

    async def http(self, message: dict[str, Any]) -> None:
        await self._send(message)

    async def _respond(self, headers: list[tuple[str, str]], body: bytes, status: int) -> None:
        raw = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]
        raw.append((b"content-length", str(len(body)).encode()))
        await self._send({"type": "http.response.start", "status": status, "headers": raw})
        await self._send({"type": "http.response.body", "body": body})


def _attributes_and_data(event: Any) -> tuple[dict[str, Any], Any]:
    from ._events import reply_from_sdk

    reply = reply_from_sdk(event)
    if reply is None:
        raise TypeError(f"send() takes a cloudevents CloudEvent, not a {type(event).__name__}")
    return reply
