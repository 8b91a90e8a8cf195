"""Conversions between pyfunc's lean :class:`~pyfunc._codec.Event` and the cloudevents SDK's types.

The SDK is imported here and only here, lazily, so a handler that never touches the SDK
types never pays for importing it.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from ._codec import JSON_NULL, Event

# Set on an SDK event built from an event whose data was an explicit JSON null: the SDK's
# ``data`` is None for "null" and for "no data" alike (see codec.Event), so this marker is
# how an event echoed back keeps its ``"data": null``.
_NULL_DATA_MARK = "_pyfunc_null_data"


def to_http_cloudevent(event: Event) -> Any:
    """A ``cloudevents.http.CloudEvent`` with exactly the attributes the sender sent.

    Built without calling ``__init__``, which would invent a ``time`` the sender never sent.
    """
    from cloudevents.http import CloudEvent

    sdk_event = CloudEvent.__new__(CloudEvent)
    sdk_event._attributes = dict(event.attributes)
    sdk_event.data = event.data
    if event.null_data:
        setattr(sdk_event, _NULL_DATA_MARK, True)
    return sdk_event


def to_v1_event(event: Event) -> Any:
    """A ``cloudevents.sdk.event.v1.Event`` (the type the seed README names)."""
    from cloudevents.sdk.event import v1

    event_class: Any = v1.Event  # the SDK's v1 module is untyped
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
    from cloudevents import abstract
    from cloudevents.sdk.event import base, v1

    if issubclass(annotation, v1.Event):
        return to_v1_event
    if issubclass(annotation, abstract.CloudEvent):
        if annotation.__module__.startswith("cloudevents.pydantic"):
            return to_pydantic_cloudevent(annotation)
        return to_http_cloudevent
    if annotation is base.BaseEvent:
        # 0.1.0 matched exactly BaseEvent and passed a cloudevents.http.CloudEvent: kept.
        return to_http_cloudevent
    return None


def reply_from_sdk(result: Any) -> Optional[tuple[dict[str, Any], Any]]:
    """``(attributes, data)`` of an SDK event a handler returned, or None if it is not one."""
    module = type(result).__module__
    if not module.startswith("cloudevents"):
        return None
    from cloudevents import abstract
    from cloudevents.sdk.event import base

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
