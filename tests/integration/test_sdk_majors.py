"""Binding and returning the SDK types of whichever cloudevents major is installed.

.venv runs these on 1.x (scripts/locks/test.lock), scripts/test-sdk2.sh on 2.x
(scripts/locks/sdk2.lock). 2.x's own type is ``cloudevents.core.v1.event.CloudEvent`` (``time``
a ``datetime``); its ``cloudevents.v1.*`` modules are 1.x's API, moved.
"""

from __future__ import annotations

import importlib.util

import pytest
import requests

from support import make_event, send

SDK2 = importlib.util.find_spec("cloudevents.core") is not None
# The 1.x-style API: top-level on 1.x, under cloudevents.v1 on 2.x.
LEGACY = "cloudevents.v1" if SDK2 else "cloudevents"

needs_sdk2 = pytest.mark.skipif(not SDK2, reason="cloudevents 2.x only (scripts/test-sdk2.sh)")

LEGACY_TYPES = f"""
from __future__ import annotations
from {LEGACY}.http import CloudEvent
from {LEGACY}.sdk.event.base import BaseEvent
from {LEGACY}.sdk.event import v1
from {LEGACY}.abstract import CloudEvent as AnyCloudEvent
from {LEGACY}.pydantic import CloudEvent as PydanticEvent

def handler(event, a: BaseEvent, b: v1.Event, c: CloudEvent, d: AnyCloudEvent, p: PydanticEvent):
    kind = event.data["reply"]
    if kind == "v1":
        b.SetEventType("r.v1"); b.SetExtensions({{"ext1": "x"}})
        return b
    if kind == "http":
        return CloudEvent({{"type": "r.http", "source": "/r"}}, {{"sdk": "http"}})
    return {{"type": "types", "source": "/t"}}, {{
        "event": type(event).__module__ + "." + type(event).__name__, "event_id": event["id"],
        "a": type(a).__module__, "a_id": a["id"],
        "b": type(b).__module__, "b_id": b.EventID(), "b_ext": b.Extensions(),
        "c": type(c).__module__, "d": type(d).__module__,
        "p": type(p).__module__, "p_id": p.id,
    }}
"""


@pytest.fixture(scope="module")
def legacy(serve_module):
    return serve_module(LEGACY_TYPES)


def test_legacy_types_bind_from_the_installed_major(legacy):
    response = send(legacy.url, make_event({"reply": "types"}, myext="x"))
    assert response.status_code == 200, response.text
    got = response.json()
    # An unannotated `event` gets the 1.x-style CloudEvent on both majors: 0.1.0 handlers run unchanged.
    assert got["event"] == f"{LEGACY}.http.event.CloudEvent" and got["event_id"] == "evt-1"
    assert got["a"] == f"{LEGACY}.http.event" and got["a_id"] == "evt-1"
    assert got["b"] == f"{LEGACY}.sdk.event.v1" and got["b_id"] == "evt-1" and got["b_ext"] == {"myext": "x"}
    assert got["c"] == f"{LEGACY}.http.event" and got["d"] == f"{LEGACY}.http.event"
    assert got["p"].startswith(f"{LEGACY}.pydantic.") and got["p_id"] == "evt-1"


def test_legacy_types_return_from_the_installed_major(legacy):
    response = send(legacy.url, make_event({"reply": "v1"}))
    assert response.headers["ce-type"] == "r.v1" and response.headers["ce-ext1"] == "x"
    assert response.json() == {"reply": "v1"}
    response = send(legacy.url, make_event({"reply": "http"}))
    assert response.headers["ce-type"] == "r.http" and response.json() == {"sdk": "http"}


CORE = """
from __future__ import annotations
from datetime import datetime, timezone
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.v1.event import CloudEvent

def handler(event: CloudEvent, proto: BaseCloudEvent):
    kind = event.get_data()["reply"] if isinstance(event.get_data(), dict) else "echo"
    if kind == "echo":
        return event  # as received: attributes as sent, data (even null) as sent
    if kind == "new":
        return CloudEvent({"type": "r.core", "source": "/r", "myext": "y",
                           "time": datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)}, {"core": True})
    return {"type": "types", "source": "/t"}, {
        "event": type(event).__module__ + "." + type(event).__name__,
        "proto": type(proto).__module__ + "." + type(proto).__name__,
        "id": event.get_id(), "type": event.get_type(), "ext": event.get_extension("myext"),
        "time_is_datetime": isinstance(event.get_time(), datetime),
        "year": event.get_time().year if event.get_time() else None,
        "attributes": sorted(event.get_attributes()),
    }
"""


@pytest.fixture(scope="module")
def core(serve_module):
    return serve_module(CORE)


@needs_sdk2
def test_core_event_binds(core):
    response = send(core.url, make_event({"reply": "types"}, myext="x", time="2021-02-03T04:05:06Z"))
    assert response.status_code == 200, response.text
    got = response.json()
    assert got["event"] == got["proto"] == "cloudevents.core.v1.event.CloudEvent"
    assert got["id"] == "evt-1" and got["type"] == "com.example.test" and got["ext"] == "x"
    assert got["time_is_datetime"] is True and got["year"] == 2021


@needs_sdk2
def test_core_event_attributes_are_not_invented(core):
    """2.x's constructor adds `id` and `time`: the bound event has exactly what the sender sent."""
    headers = {"ce-id": "1", "ce-source": "/s", "ce-type": "t", "ce-specversion": "1.0",
               "content-type": "application/json"}
    response = requests.post(core.url, headers=headers, json={"reply": "types"}, timeout=10)
    assert response.json()["attributes"] == ["datacontenttype", "id", "source", "specversion", "type"]


@needs_sdk2
def test_core_event_echo_keeps_time_and_null_data(core):
    headers = {"ce-id": "1", "ce-source": "/s", "ce-type": "t", "ce-specversion": "1.0",
               "ce-time": "2021-02-03T04:05:06.123Z", "content-type": "application/json"}
    response = requests.post(core.url, headers=headers, data=b"null", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["ce-time"] == "2021-02-03T04:05:06.123000Z"  # a datetime, written back as RFC 3339
    assert response.headers["ce-source"] == "/s" and response.content == b"null"


@needs_sdk2
def test_core_event_returned(core):
    response = send(core.url, make_event({"reply": "new"}), structured=True)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == "r.core" and body["myext"] == "y" and body["data"] == {"core": True}
    assert body["time"] == "2024-05-06T07:08:09Z"


def test_core_types_absent_on_1x():
    """On 1.x the adapter never looks for 2.x modules: annotating with a 1.x type is enough."""
    if SDK2:
        pytest.skip("cloudevents 1.x only")
    from pyfunc._events import converter_for_event_type

    assert converter_for_event_type(int) is None
    assert importlib.util.find_spec("cloudevents.http") is not None
