"""``pyfunc.testing.FunctionClient``: in-process calls that behave exactly like the server."""

from __future__ import annotations

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
