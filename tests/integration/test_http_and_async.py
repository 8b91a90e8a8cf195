"""HTTP handlers' return conventions, async handlers, typed data, through a real server."""

from __future__ import annotations

import concurrent.futures
import json

import pytest
import requests

from support import make_event, send

HTTP_RETURNS = """
import flask
from dataclasses import dataclass

@dataclass
class Point:
    x: int
    y: int

def handler(req):
    kind = req.args.get("kind")
    return {
        "str": lambda: "hello",
        "bytes": lambda: b"raw",
        "dict": lambda: {"a": 1},
        "list": lambda: [1, "two"],
        "status": lambda: ("created", 201),
        "status-headers": lambda: ("teapot", 418, {"X-Extra": "yes"}),
        "headers": lambda: ({"ok": True}, {"X-Only-Headers": "1"}),
        "dict-status": lambda: ({"error": "nope"}, 404),
        "response": lambda: flask.Response("resp", 202, {"X-R": "1"}),
        "none": lambda: None,
        "generator": lambda: (f"chunk{i};" for i in range(3)),
        "dataclass": lambda: Point(1, 2),
        "int": lambda: 5,
        "bad-header": lambda: ("x", 200, {"X-Split": "a\\r\\nInjected: 1"}),
    }[kind]()
"""


@pytest.fixture(scope="module")
def http(serve_module):
    return serve_module(HTTP_RETURNS)


@pytest.mark.parametrize(
    ("kind", "status", "content_type", "body"),
    [
        ("str", 200, "text/html; charset=utf-8", b"hello"),
        ("bytes", 200, "text/html; charset=utf-8", b"raw"),
        ("dict", 200, "application/json", b'{"a":1}'),
        ("list", 200, "application/json", b'[1,"two"]'),
        ("status", 201, "text/html; charset=utf-8", b"created"),
        ("status-headers", 418, "text/html; charset=utf-8", b"teapot"),
        ("headers", 200, "application/json", b'{"ok":true}'),
        ("dict-status", 404, "application/json", b'{"error":"nope"}'),
        ("response", 202, "text/html; charset=utf-8", b"resp"),
        ("none", 200, "text/html; charset=utf-8", b""),
        ("generator", 200, "text/html; charset=utf-8", b"chunk0;chunk1;chunk2;"),
        ("dataclass", 200, "application/json", b'{"x":1,"y":2}'),
    ],
)
def test_http_return_conventions(http, kind, status, content_type, body):
    response = requests.get(http.url, params={"kind": kind}, timeout=10)
    assert response.status_code == status
    assert response.headers["content-type"] == content_type
    assert response.content == body


def test_http_return_headers(http):
    assert requests.get(http.url, params={"kind": "status-headers"}, timeout=10).headers["X-Extra"] == "yes"
    assert requests.get(http.url, params={"kind": "headers"}, timeout=10).headers["X-Only-Headers"] == "1"


@pytest.mark.parametrize("kind", ["int", "bad-header"])
def test_http_invalid_returns_are_500(http, kind):
    response = requests.get(http.url, params={"kind": kind}, timeout=10)
    assert response.status_code == 500 and response.json()["reason"] == "invalid-reply"
    assert "Injected" not in response.headers


def test_routes(http):
    # Every path is the function's (Knative routes them all to the container).
    assert requests.get(http.url + "/some/path", params={"kind": "str"}, timeout=10).status_code == 200
    assert requests.put(http.url, timeout=10).status_code == 405
    assert requests.delete(http.url + "/a/b", timeout=10).status_code == 405
    options = requests.options(http.url, timeout=10)
    assert options.status_code == 200 and "POST" in options.headers["Allow"]
    head = requests.head(http.url, params={"kind": "str"}, timeout=10)
    assert head.status_code == 200 and head.content == b""


# ---------------------------------------------------------------- async


ASYNC = """
import asyncio

inside = 0

async def handler(data, attributes):
    # Every invocation waits until all of them are in flight at once: only possible if the
    # runtime runs them concurrently. Serialised, the first one would give up after 10 s.
    global inside
    inside += 1
    for _ in range(1000):
        if inside >= data["expect"]:
            break
        await asyncio.sleep(0.01)
    return {"type": "async.reply", "source": "/a"}, {"saw": inside}
"""


def test_async_handler_is_awaited_and_does_not_block(serve):
    server = serve(ASYNC, env={"PYFUNC_THREADS": "4"})
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(send, server.url, make_event({"expect": 4}, id=str(i)), timeout=30) for i in range(4)]
        results = [f.result() for f in futures]
    assert all(r.status_code == 200 for r in results)
    assert all(r.json()["saw"] >= 4 for r in results), [r.json() for r in results]


def test_async_http_handler(serve):
    server = serve("""
        async def handler(body):
            return {"len": len(body)}
    """)
    assert requests.post(server.url, data=b"12345", timeout=10).json() == {"len": 5}


def test_async_exception_is_500(serve):
    server = serve("""
        async def handler(data):
            raise RuntimeError("boom")
    """)
    response = send(server.url, make_event({"a": 1}))
    assert response.status_code == 500 and response.json()["reason"] == "function-error"


# ---------------------------------------------------------------- typed data


TYPED = """
from __future__ import annotations
from dataclasses import dataclass, field
from typing import Optional, TypedDict
import pydantic

@dataclass
class Address:
    city: str
    zip: Optional[str] = None

@dataclass
class Order:
    id: int
    items: list[str]
    address: Address
    note: str = ""

class Model(pydantic.BaseModel):
    name: str
    age: int

class Movie(TypedDict):
    title: str
    year: int

def handler(data: Order):
    assert isinstance(data.address, Address)
    return {"type": "typed", "source": "/t"}, {"id": data.id, "city": data.address.city, "n": len(data.items)}
"""


@pytest.fixture(scope="module")
def typed(serve_module):
    return serve_module(TYPED)


def test_dataclass_data_is_parsed(typed):
    response = send(typed.url, make_event({"id": 7, "items": ["a", "b"], "address": {"city": "Oslo"}}))
    assert response.status_code == 200 and response.json() == {"id": 7, "city": "Oslo", "n": 2}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"items": [], "address": {"city": "x"}}, "id"),
        ({"id": "seven", "items": [], "address": {"city": "x"}}, "id"),
        ({"id": 1, "items": [1], "address": {"city": "x"}}, "items[0]"),
        ({"id": 1, "items": [], "address": {}}, "address.city"),
        ([1, 2], None),
    ],
)
def test_dataclass_validation_failure_is_400_naming_the_field(typed, data, field):
    response = send(typed.url, make_event(data))
    assert response.status_code == 400
    problem = response.json()
    assert problem["reason"] == "invalid-data"
    if field:
        assert f"'{field}'" in problem["detail"], problem


@pytest.mark.parametrize(
    ("annotation", "data", "ok", "expected"),
    [
        ("Model", {"name": "Ann", "age": 3}, True, {"name": "Ann", "age": 3}),
        ("Model", {"name": "Ann", "age": "old"}, False, "age"),
        ("Movie", {"title": "T", "year": 1999}, True, {"title": "T", "year": 1999}),
        ("Movie", {"title": "T"}, False, "year"),
        ("dict", {"k": 1}, True, {"k": 1}),
        ("dict", [1], False, None),
        ("list", [1, 2], True, [1, 2]),
        ("str", "text", True, "text"),
        ("str", {"a": 1}, False, None),
        ("bytes", "text", True, "bytes:4"),
    ],
)
def test_typed_data_kinds(serve_module, annotation, data, ok, expected):
    server = serve_module(TYPED.replace("def handler(data: Order):", f"def handler(data: {annotation}):\n    return "
                          "{'type': 't', 'source': '/s'}, (data.model_dump() if hasattr(data, 'model_dump') else "
                          "f'bytes:{len(data)}' if isinstance(data, bytes) else data)\n\ndef _old(data):"))
    response = send(server.url, make_event(data))
    if ok:
        assert response.status_code == 200, response.text
        assert response.json() == expected
    else:
        assert response.status_code == 400 and response.json()["reason"] == "invalid-data"
        if expected:
            assert expected in response.json()["detail"]


def test_typed_http_body(serve):
    server = serve("""
        from dataclasses import dataclass
        @dataclass
        class In:
            a: int
        def handler(body: In):
            return {"doubled": body.a * 2}
    """)
    assert requests.post(server.url, json={"a": 21}, timeout=10).json() == {"doubled": 42}
    bad = requests.post(server.url, data=b"{oops", timeout=10)
    assert bad.status_code == 400 and bad.json()["reason"] == "invalid-data"
    assert json.loads(bad.text)["status"] == 400


def test_http_function_sees_the_real_path(serve):
    server = serve("""
        def handler(req):
            return {"path": req.path, "args": dict(req.args)}
    """)
    response = requests.get(server.url + "/a/b", params={"q": "1"}, timeout=10)
    assert response.status_code == 200 and response.json() == {"path": "/a/b", "args": {"q": "1"}}
