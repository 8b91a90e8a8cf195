"""``pyfunc.testing.FunctionClient``: in-process calls that behave exactly like the server."""

from __future__ import annotations

import importlib
import importlib.util
import os
import textwrap
from pathlib import Path

import pytest
import requests

from pyfunc._errors import HandlerLoadError
from pyfunc.testing import FunctionClient, make_event

ECHO = """
def handler(data, attributes):
    return {"type": "com.example.reply", "source": "/echo", "ext": attributes.get("partitionkey")}, data
"""


def function(tmp_path: Path, source: str, name: str = "handler.py") -> Path:
    directory = tmp_path / "fn"
    directory.mkdir(exist_ok=True)
    (directory / name).write_text(textwrap.dedent(source))
    return directory


@pytest.fixture
def echo(tmp_path):
    with FunctionClient(function(tmp_path, ECHO)) as client:
        yield client


def test_binary_event(echo):
    reply = echo.event({"a": 1}, type="com.example.ping", partitionkey="k")
    assert reply.status == 200 and reply.ok
    assert reply.mode == "binary"
    assert reply.event["type"] == "com.example.reply"
    assert reply.event["ext"] == "k"
    assert reply.data == {"a": 1}
    assert reply.headers["ce-type"] == "com.example.reply"


def test_structured_event(echo):
    reply = echo.event([1, 2], mode="structured")
    assert reply.mode == "structured"
    assert reply.content_type.startswith("application/cloudevents+json")
    assert reply.data == [1, 2]


def test_text_and_bytes_data(echo):
    assert echo.event("plain words", datacontenttype="text/plain").data == "plain words"
    assert echo.event(b"\x00\xff").data == b"\x00\xff"
    assert echo.event(b"\x00\xff", mode="structured").data == b"\x00\xff"


def test_batch_of_dicts_and_events(echo):
    reply = echo.batch([{"data": 1}, {"type": "x", "data": 2}, make_event(3, id="e3")])
    assert reply.mode == "batch"
    assert reply.event is None
    assert [e.data for e in reply.events] == [1, 2, 3]
    assert all(e.attributes["type"] == "com.example.reply" for e in reply.events)


def test_a_plain_request_to_an_event_function_is_a_400(echo):
    reply = echo.post(json={"a": 1})
    assert reply.status == 400
    assert reply.json["reason"] == "not-a-cloudevent"


def test_http_function_from_a_file_path(tmp_path):
    directory = function(tmp_path, """
        def api(body: dict, headers):
            return {"hello": body["name"], "agent": headers.get("X-Agent")}, 201
        """, name="web.py")
    with FunctionClient(directory / "web.py") as client:
        reply = client.post(json={"name": "Ada"}, headers={"X-Agent": "t"})
        assert reply.status == 201
        assert reply.data == reply.json == {"hello": "Ada", "agent": "t"}
        assert client.get().status == 400  # no JSON body for a dict parameter


def test_handler_selection(tmp_path):
    directory = function(tmp_path, """
        def one(body):
            return "one"

        def two(body):
            return "two"
        """, name="main.py")
    with FunctionClient(directory, "main.two") as client:
        assert client.get().text == "two"
    with FunctionClient(directory / "main.py", "one") as client:
        assert client.get().text == "one"


def test_query_and_raw_body(tmp_path):
    directory = function(tmp_path, """
        def handler(req):
            return {"q": req.args.get("q"), "body": req.get_data(as_text=True)}
        """)
    with FunctionClient(directory) as client:
        assert client.post("/", body="raw", query={"q": "1"}).data == {"q": "1", "body": "raw"}


def test_a_raising_handler_is_a_500_as_on_the_server(tmp_path):
    with FunctionClient(function(tmp_path, "def handler(data):\n    raise ValueError('x')\n")) as client:
        reply = client.event({})
    assert reply.status == 500
    assert reply.json["reason"] == "function-error"


def test_a_broken_handler_raises_the_load_error(tmp_path):
    with pytest.raises(HandlerLoadError, match="SyntaxError"):
        FunctionClient(function(tmp_path, "def handler(:\n"))


def test_hooks_and_env(tmp_path):
    directory = function(tmp_path, """
        import os
        calls = []

        def start(cfg):
            calls.append(("start", cfg.get("PYFUNC_TEST_SETTING"), os.environ.get("PYFUNC_TEST_SETTING")))

        def stop():
            calls.append(("stop",))

        def ready():
            return False, "warming up"

        def handler(body):
            return os.environ.get("PYFUNC_TEST_SETTING", "unset")
        """)
    client = FunctionClient(directory, env={"PYFUNC_TEST_SETTING": "on"})
    calls = client.app.loaded.module.calls
    assert calls == [("start", "on", "on")]
    assert client.get().text == "on"
    readiness = client.get("/health/readiness")
    assert readiness.status == 503 and readiness.json["message"] == "warming up"
    client.close()
    client.close()
    assert calls[-1] == ("stop",) and len(calls) == 2
    assert "PYFUNC_TEST_SETTING" not in os.environ



@pytest.mark.parametrize("source, settings", [
    ("async def handler(body):\n    return 'async'\n", {}),
    ("def handler(body):\n    return 'timed'\n", {"timeout": 5}),
    ("async def app(scope, receive, send):\n"
     "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
     "    await send({'type': 'http.response.body', 'body': b'asgi'})\n", {}),
], ids=["async-handler", "sync-handler-with-timeout", "asgi-app"])
def test_close_ends_the_event_loop_and_call_threads(tmp_path, source, settings):
    """What a client started for its calls ends with it: a test suite making many clients leaks
    no event loop or thread per client."""
    import threading

    def ours() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name in ("pyfunc-async", "pyfunc-call")}

    before = ours()
    client = FunctionClient(function(tmp_path, source), **settings)
    assert client.post(body=b"x").status == 200
    started = ours() - before
    assert started, "the call ran on no pyfunc thread: nothing to check"
    client.close()
    for thread in started:
        thread.join(10)
    assert not any(thread.is_alive() for thread in started)


def test_settings_are_server_settings(tmp_path):
    directory = function(tmp_path, ECHO)
    with FunctionClient(directory, reply_mode="structured") as client:
        assert client.event(1).mode == "structured"


def test_same_reply_as_the_real_server(tmp_path, serve):
    """The client's reply matches, attribute by attribute, what a real server answers."""
    running = serve(ECHO)
    event = make_event({"x": [1, 2]}, type="com.example.ping", id="same-id", partitionkey="p")
    with FunctionClient(function(tmp_path, ECHO)) as client:
        local = client.send(event)
    from pyfunc import _codec as codec

    headers, body = codec.encode_binary(event.attributes, event.data)
    remote = requests.post(running.url, data=body, headers=dict(headers), timeout=10)
    volatile = {"id", "time"}
    remote_attributes = {k[3:]: v for k, v in remote.headers.items() if k.lower().startswith("ce-")}
    assert {k: v for k, v in local.event.items() if k not in volatile | {"datacontenttype"}} == {
        k.lower(): v for k, v in remote_attributes.items() if k.lower() not in volatile
    }
    assert local.body == remote.content
    assert local.content_type == remote.headers["Content-Type"]


# ---------------------------------------------------------------- the installed SDK's own events

SDK2 = importlib.util.find_spec("cloudevents.core") is not None
needs_sdk2 = pytest.mark.skipif(not SDK2, reason="cloudevents 2.x only (scripts/test-sdk2.sh)")
# The 1.x API: top-level on 1.x, 2.x's compat copy under cloudevents.v1 on 2.x.
LEGACY = "cloudevents.v1" if SDK2 else "cloudevents"
SENT = {"type": "com.example.ping", "source": "/sdk", "id": "sdk-1", "myext": "x",
        "datacontenttype": "application/json"}


def _legacy(name: str):
    return importlib.import_module(f"{LEGACY}.{name}")


def _v1_event():
    event = _legacy("sdk.event.v1").Event()
    event.SetEventType(SENT["type"]).SetSource(SENT["source"]).SetEventID(SENT["id"])
    event.SetExtensions({"myext": "x"}).SetContentType("application/json").SetData({"a": 1})
    return event


def _v1_attributes(event) -> dict:
    properties = {k: v for k, v in event.Properties().items() if v is not None}
    data = properties.pop("data", None)
    properties.update(properties.pop("extensions", None) or {})
    return {"attributes": properties, "data": data}


def _abstract_attributes(event) -> dict:
    attributes = {k: v for k, v in event.get_attributes().items() if v is not None}
    return {"attributes": attributes, "data": event.get_data()}


LEGACY_KINDS = {
    # kind: (the SDK class, build one carrying SENT and {"a": 1}, read it back)
    "http": (lambda: _legacy("http").CloudEvent,
             lambda: _legacy("http").CloudEvent(dict(SENT), {"a": 1}), _abstract_attributes),
    "pydantic": (lambda: _legacy("pydantic").CloudEvent,
                 lambda: _legacy("pydantic").CloudEvent.create(dict(SENT), {"a": 1}), _abstract_attributes),
    "v1": (lambda: _legacy("sdk.event.v1").Event, _v1_event, _v1_attributes),
}


@pytest.mark.parametrize("mode", ["binary", "structured", "batch"])
@pytest.mark.parametrize("kind", sorted(LEGACY_KINDS))
def test_legacy_sdk_events_round_trip(tmp_path, kind, mode):
    """1.x's types on 1.x, 2.x's cloudevents.v1.* compat types on 2.x: sent as they are, and
    the echoed reply read back as the same type, attributes as sent (but a fresh `id`)."""
    cls, build, read = (part() if index == 0 else part for index, part in enumerate(LEGACY_KINDS[kind]))
    sent = build()
    with FunctionClient(function(tmp_path, "def handler(event):\n    return event\n")) as client:
        reply = client.send(sent, mode=mode)
    assert reply.status == 200, reply.text
    got = reply.cloudevent(cls) if mode != "batch" else reply.cloudevents(cls)[0]
    assert type(got) is cls
    expected, actual = read(sent), read(got)
    assert actual["data"] == expected["data"] == {"a": 1}
    assert actual["attributes"].pop("id") != SENT["id"]  # same source + id as the event it answers
    if "time" not in expected["attributes"]:  # v1.Event() has none: the reply gets one, as on the server
        assert actual["attributes"].pop("time").endswith("Z")
    assert actual["attributes"] == {k: v for k, v in expected["attributes"].items() if k != "id"}
    if mode != "batch":  # by default, what an unannotated `event` parameter gets
        assert type(reply.cloudevent()) is _legacy("http").CloudEvent


CORE_ECHO = """
from cloudevents.core.v1.event import CloudEvent

def handler(event: CloudEvent):
    assert type(event) is CloudEvent, type(event)
    return event
"""


@needs_sdk2
@pytest.mark.parametrize("mode", ["binary", "structured", "batch"])
def test_core_sdk_events_round_trip(tmp_path, mode):
    """2.x's own CloudEvent goes in through send() and comes back from Reply.cloudevent(),
    its `time` a datetime both ways, and the handler binds it as that type."""
    from datetime import datetime, timezone

    from cloudevents.core.v1.event import CloudEvent

    moment = datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=timezone.utc)
    sent = CloudEvent({**SENT, "time": moment}, {"a": 1})
    with FunctionClient(function(tmp_path, CORE_ECHO)) as client:
        reply = client.send(sent, mode=mode)
        other = client.batch([sent, make_event(2)]) if mode == "batch" else None
    assert reply.status == 200, reply.text
    got = reply.cloudevent(CloudEvent) if mode != "batch" else reply.cloudevents(CloudEvent)[0]
    assert type(got) is CloudEvent
    assert got.get_time() == moment and got.get_data() == {"a": 1}
    assert got.get_extension("myext") == "x" and got.get_id() != SENT["id"]
    assert {k: v for k, v in got.get_attributes().items() if k != "id"} == {
        k: v for k, v in sent.get_attributes().items() if k != "id"}
    if other is not None:  # SDK events and pyfunc Events mix in a batch
        assert [e.get_data() for e in other.cloudevents(CloudEvent)] == [{"a": 1}, 2]


@needs_sdk2
def test_core_protocol_and_compat_types_read_the_reply(tmp_path):
    from cloudevents.core.base import BaseCloudEvent
    from cloudevents.core.v1.event import CloudEvent

    with FunctionClient(function(tmp_path, "def handler(event):\n    return event\n")) as client:
        reply = client.event({"a": 1}, time="2021-02-03T04:05:06Z")
    assert type(reply.cloudevent(BaseCloudEvent)) is CloudEvent  # the protocol: its v1.0 class
    assert reply.cloudevent(CloudEvent).get_time().year == 2021
    assert type(reply.cloudevent()).__module__ == "cloudevents.v1.http.event"


def test_reply_cloudevent_refuses_what_is_not_one(echo):
    with pytest.raises(TypeError, match="not a CloudEvent type"):
        echo.event(1).cloudevent(dict)
    with pytest.raises(Exception, match="batch"):
        echo.batch([{"data": 1}]).cloudevent()
    with pytest.raises(Exception, match="not a CloudEvent"):
        echo.post(json={"a": 1}).cloudevent()
