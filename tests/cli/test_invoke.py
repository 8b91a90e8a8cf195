"""``pyfunc invoke`` against real servers: every content mode, plain HTTP, and its errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

PYFUNC = str(Path(sys.executable).with_name("pyfunc"))

ECHO = """
def handler(data, attributes):
    reply = {"type": "com.example.reply", "source": "/test/echo",
             "gottype": attributes["type"], "gotsource": attributes["source"], "gotid": attributes["id"],
             "gotmode": attributes.get("partitionkey", "")}
    if attributes.get("datacontenttype", "").startswith("text/"):
        reply["datacontenttype"] = "text/plain"
    return reply, data
"""

HTTP = """
def handler(req):
    if req.path != "/":
        return "nope", 404
    return {"method": req.method, "json": req.get_json(silent=True), "text": req.get_data(as_text=True),
            "type": req.content_type, "custom": req.headers.get("X-Custom")}
"""

FAILING = """
def handler(data):
    raise RuntimeError("boom")
"""


def invoke(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYFUNC_", "PYTHON_HANDLER"))}
    return subprocess.run([PYFUNC, "invoke", *args], capture_output=True, text=True, input=stdin,
                          env=env, timeout=60)


def as_json(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def echo(serve_module):
    return serve_module(ECHO)


@pytest.fixture(scope="module")
def http(serve_module):
    return serve_module(HTTP)


def test_default_event_is_binary_with_json_data(echo):
    reply = as_json(invoke(echo.url, "--json"))
    assert reply["status"] == 200
    assert reply["mode"] == "binary"
    [event] = reply["events"]
    assert event["attributes"]["type"] == "com.example.reply"
    assert event["attributes"]["gottype"] == "dev.pyfunc.invoke"
    assert event["attributes"]["gotsource"] == "/pyfunc/invoke"
    assert reply["data"] == {"message": "Hello from pyfunc invoke"}


def test_attributes_from_flags(echo):
    reply = as_json(invoke(echo.url, "--json", "--type", "com.example.ping", "--source", "/me", "--id", "e-1",
                           "--extension", "partitionkey=k1", "--data", '{"n": 1}'))
    attributes = reply["events"][0]["attributes"]
    assert (attributes["gottype"], attributes["gotsource"], attributes["gotid"]) == ("com.example.ping", "/me", "e-1")
    assert attributes["gotmode"] == "k1"
    assert reply["data"] == {"n": 1}


def test_structured_mode(echo):
    reply = as_json(invoke(echo.url, "--json", "--mode", "structured", "--data", "[1, 2]"))
    assert reply["mode"] == "structured"
    assert reply["headers"]["content-type"].startswith("application/cloudevents+json")
    assert reply["data"] == [1, 2]


def test_batch_mode_sends_one_event_per_data(echo):
    reply = as_json(invoke(echo.url, "--json", "--mode", "batch", "--id", "b", "-d", '{"n": 1}', "-d", '{"n": 2}'))
    assert reply["mode"] == "batch"
    assert [e["data"] for e in reply["events"]] == [{"n": 1}, {"n": 2}]
    assert [e["attributes"]["gotid"] for e in reply["events"]] == ["b-1", "b-2"]


def test_text_data_with_a_content_type(echo):
    reply = as_json(invoke(echo.url, "--json", "--content-type", "text/plain", "--data", "just words"))
    assert reply["data"] == "just words"
    assert reply["headers"]["content-type"].startswith("text/plain")


def test_data_from_a_file_and_from_stdin(echo, tmp_path):
    path = tmp_path / "data.json"
    path.write_text('{"from": "file"}')
    assert as_json(invoke(echo.url, "--json", "--data", f"@{path}"))["data"] == {"from": "file"}
    assert as_json(invoke(echo.url, "--json", "--data", "@-", stdin='{"from": "stdin"}'))["data"] == {"from": "stdin"}


def test_human_output_shows_status_attributes_and_data(echo):
    result = invoke(echo.url, "--data", '{"hello": "world"}')
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "HTTP 200 OK · CloudEvent (binary mode)"
    assert any(line.split() == ["type", "com.example.reply"] for line in lines)
    assert '  "hello": "world"' in lines


def test_a_bare_port_means_localhost(echo):
    assert as_json(invoke(str(echo.port), "--json"))["status"] == 200


def test_plain_http_post_and_get(http):
    reply = as_json(invoke(http.url, "--http", "--json", "--data", '{"name": "Ada"}', "-H", "X-Custom=yes"))
    assert reply["status"] == 200
    assert reply["mode"] is None
    assert reply["data"] == {"method": "POST", "json": {"name": "Ada"}, "text": '{"name":"Ada"}',
                             "type": "application/json", "custom": "yes"}
    reply = as_json(invoke(http.url, "--http", "--json", "-H", "X-Custom: colon form"))
    assert reply["data"]["method"] == "GET"
    assert reply["data"]["custom"] == "colon form"


def test_plain_http_text_body(http):
    reply = as_json(invoke(http.url, "--http", "--json", "--content-type", "text/plain", "-d", "hi"))
    assert reply["data"]["method"] == "POST"
    assert reply["data"]["type"] == "text/plain"
    assert reply["data"]["text"] == "hi"


def test_method_flag(http):
    result = invoke(http.url, "--http", "-X", "PUT")
    assert result.returncode == 1
    assert result.stdout.startswith("HTTP 405 Method Not Allowed")
    reply = as_json(invoke(http.url, "--http", "--json", "-X", "post"))
    assert reply["data"]["method"] == "POST"


def test_non_2xx_exits_1_and_still_shows_the_reply(http, serve):
    result = invoke(http.url + "/elsewhere", "--http")
    assert result.returncode == 1
    assert result.stdout.startswith("HTTP 404")
    assert "pyfunc: error: the function answered 404" in result.stderr
    failing = serve(FAILING)
    result = invoke(failing.url)
    assert result.returncode == 1
    assert "function-error" in result.stdout


def test_an_event_sent_to_an_http_function_that_rejects_it(serve):
    running = serve("def handler(data):\n    return None\n")
    result = invoke(running.url, "--http", "--data", "{}")
    assert result.returncode == 1
    assert "not-a-cloudevent" in result.stdout


def test_no_reply_event_is_a_202(serve):
    running = serve("def handler(data):\n    return None\n")
    result = invoke(running.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "HTTP 202 Accepted · accepted, no reply event"


def free_closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["http://127.0.0.1:{port}"], "cannot reach http://127.0.0.1:{port}: Connection refused"),
        (["--data", "{not json"], "--data is not valid JSON"),
        (["--data", "@/no/such/file.json"], "cannot read '/no/such/file.json'"),
        (["ftp://example.com"], "is not an http:// or https:// URL"),
        (["http://localhost:port"], "has an invalid port"),
        (["-d", "1", "-d", "2"], "several --data values need --mode batch"),
        (["-e", "Bad_Name=1"], "must be lower-case letters and digits"),
        (["-H", "novalue"], "should look like NAME=VALUE"),
        (["--method", "PUT"], "--method only applies to --http"),
    ],
)
def test_errors_are_one_clear_line(args, message):
    port = free_closed_port()
    args = [a.replace("{port}", str(port)) for a in args]
    if not args[0].startswith(("http", "ftp")):
        args = [f"http://127.0.0.1:{port}", *args]
    result = invoke(*args)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("pyfunc: error: ")
    assert message.replace("{port}", str(port)) in line
