"""Conversions between pyfunc's lean :class:`~pyfunc._codec.Event` and the cloudevents SDK's types.

The SDK is imported here and only here, lazily, so a handler that never touches the SDK
types never pays for importing it. Both SDK majors are served, whichever is installed:

* 1.x: ``cloudevents.http.CloudEvent``, ``cloudevents.sdk.event.v1.Event``,
  ``cloudevents.pydantic.CloudEvent`` (and their bases in ``cloudevents.abstract`` and
  ``cloudevents.sdk.event.base``);
* 2.x: its own ``cloudevents.core.v1.event.CloudEvent`` (``time`` is a ``datetime``), and the
  1.x types kept under ``cloudevents.v1.*`` (``cloudevents.v1.http.CloudEvent``, ...).

A 2.x compat module is the 1.x module moved under ``cloudevents.v1``: the same code serves
both, rooted at ``cloudevents`` or ``cloudevents.v1`` (:func:`_legacy_root`).
"""

from __future__ import annotations

import functools
import importlib
from datetime import datetime
from types import ModuleType

from ._codec import JSON_NULL, Event

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Callable, Optional

# Set on an SDK event built from an event whose data was an explicit JSON null: the SDK's
# ``data`` is None for "null" and for "no data" alike (see codec.Event), so this marker is
# how an event echoed back keeps its ``"data": null``.
_NULL_DATA_MARK = "_pyfunc_null_data"
_CORE = "cloudevents.core."  # 2.x's own types
_COMPAT = "cloudevents.v1."  # 2.x's copy of the 1.x types


def _legacy_root(module: str) -> str:
    """The package the 1.x-style type in ``module`` lives under: 1.x's or 2.x's compat copy."""
    return "cloudevents.v1" if module.startswith(_COMPAT) else "cloudevents"


def _legacy(root: str, name: str) -> ModuleType:
    return importlib.import_module(f"{root}.{name}")


@functools.cache
def _default_event_class() -> Any:
    """What an unannotated ``event`` parameter receives: ``cloudevents.http.CloudEvent`` (1.x),
    or under 2.x the same class from ``cloudevents.v1.http``, so that a handler written for
    0.1.0 (``event["type"]``, ``event.data``) runs unchanged on either major. Looked up once:
    a failed import is not cached by Python and this runs per request."""
    try:
        return _legacy("cloudevents", "http").CloudEvent
    except ImportError:
        return _legacy("cloudevents.v1", "http").CloudEvent


def to_http_cloudevent(event: Event, cls: Any = None) -> Any:
    """A 1.x-style ``CloudEvent`` (``cls``, default :func:`_default_event_class`) with exactly
    the attributes the sender sent.

    Built without calling ``__init__``, which would invent a ``time`` the sender never sent.
    """
    cls = cls or _default_event_class()
    sdk_event = cls.__new__(cls)
    sdk_event._attributes = dict(event.attributes)
    sdk_event.data = event.data
    if event.null_data:
        setattr(sdk_event, _NULL_DATA_MARK, True)
    return sdk_event


def to_core_cloudevent(cls: Any) -> Callable[[Event], Any]:
    """2.x's ``cloudevents.core.v1.event.CloudEvent`` (or a subclass): attributes as sent,
    except ``time``, which 2.x holds as a ``datetime`` (its own parsers use dateutil's isoparse)."""

    def convert(event: Event) -> Any:
        attributes = dict(event.attributes)
        if isinstance(attributes.get("time"), str):
            isoparse = importlib.import_module("dateutil.parser").isoparse  # a dependency of 2.x

            try:
                attributes["time"] = isoparse(attributes["time"])
            except ValueError:
                pass  # kept as sent: pyfunc does not reject an odd time, and 2.x would
        sdk_event = cls.__new__(cls)  # no __init__: it would invent `time` and `id`
        sdk_event._attributes = attributes
        sdk_event._data = event.data
        if event.null_data:
            setattr(sdk_event, _NULL_DATA_MARK, True)
        return sdk_event

    return convert


def to_v1_event(event: Event, root: str = "cloudevents") -> Any:
    """A ``cloudevents.sdk.event.v1.Event`` (the type the seed README names), from ``root``."""
    event_class: Any = _legacy(root, "sdk.event.v1").Event  # the SDK's v1 module is untyped
    sdk_event = event_class()
    for name, value in event.attributes.items():
        sdk_event.Set(name, value)
    sdk_event.SetData(event.data)
    return sdk_event


def to_pydantic_cloudevent(cls: Any) -> Callable[[Event], Any]:
    def convert(event: Event) -> Any:
        return cls.create(dict(event.attributes), event.data)

    return convert


def converter_for_event_type(annotation: Any) -> Optional[Callable[[Event], Any]]:
    """How to build the SDK object a parameter annotated with ``annotation`` expects, if any."""
    if not isinstance(annotation, type) or not annotation.__module__.startswith("cloudevents"):
        return None
    module = annotation.__module__
    if module.startswith(_CORE):
        # By name, not `from ... import`: mypy checks this module against whichever major is installed.
        core_v1 = importlib.import_module("cloudevents.core.v1.event").CloudEvent
        if annotation is importlib.import_module("cloudevents.core.base").BaseCloudEvent:
            return to_core_cloudevent(core_v1)  # the protocol: its v1.0 implementation
        if issubclass(annotation, core_v1):
            return to_core_cloudevent(annotation)
        return None  # core.v03 and others: pyfunc receives v1.0 events only
    root = _legacy_root(module)
    abstract, base, v1 = (_legacy(root, name) for name in ("abstract", "sdk.event.base", "sdk.event.v1"))
    http_event = _legacy(root, "http").CloudEvent
    if issubclass(annotation, v1.Event):
        return functools.partial(to_v1_event, root=root)
    if issubclass(annotation, abstract.CloudEvent):
        if ".pydantic" in module:
            return to_pydantic_cloudevent(annotation)
        return functools.partial(to_http_cloudevent, cls=http_event)
    if annotation is base.BaseEvent:
        # 0.1.0 matched exactly BaseEvent and passed a cloudevents.http.CloudEvent: kept.
        return functools.partial(to_http_cloudevent, cls=http_event)
    return None


def _rfc3339(value: Any) -> Any:
    """2.x's ``datetime`` attribute values as the spec's strings (``Z`` for UTC, as 2.x writes them)."""
    if not isinstance(value, datetime):
        return value
    text = value.isoformat()
    return text[: -len("+00:00")] + "Z" if text.endswith("+00:00") else text


def reply_from_sdk(result: Any) -> Optional[tuple[dict[str, Any], Any]]:
    """``(attributes, data)`` of an SDK event a handler returned, or None if it is not one."""
    module = type(result).__module__
    if not module.startswith("cloudevents"):
        return None
    if module.startswith(_CORE):
        get_attributes = getattr(result, "get_attributes", None)
        if get_attributes is None:  # core's BaseCloudEvent is a Protocol: duck-typed
            return None
        data = result.get_data()
        if data is None and getattr(result, _NULL_DATA_MARK, False):
            data = JSON_NULL
        return {name: _rfc3339(value) for name, value in get_attributes().items()}, data
    root = _legacy_root(module)
    abstract, base = _legacy(root, "abstract"), _legacy(root, "sdk.event.base")
    if isinstance(result, abstract.CloudEvent):
        data = result.get_data()
        if data is None and getattr(result, _NULL_DATA_MARK, False):
            data = JSON_NULL  # the handler echoed an event whose data was null: still null
        return dict(result.get_attributes()), data
    if isinstance(result, base.BaseEvent):
        attributes = result.Properties()
        data = attributes.pop("data", None)
        attributes.update(attributes.pop("extensions", None) or {})
        return attributes, data
    return None
