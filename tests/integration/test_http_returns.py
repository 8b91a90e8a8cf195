"""An HTTP function may return everything Flask's ``make_response`` accepts (real server, loopback).

Each shape is also checked against Flask itself: the same return value from a Flask view
must give the same status, body and headers.
"""

from __future__ import annotations

import json

import flask
import pytest
import requests

HANDLER = """
from http import HTTPStatus

from werkzeug.datastructures import Headers
import flask

def wsgi_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-From", "wsgi")])
    return [b"from wsgi"]

def not_wsgi():
    return "I take no arguments"

def chunks():
    yield "a"
    yield b"b"

SHAPES = {
    "tuple-of-tuples": lambda: ("hi", (("X-A", "1"),)),
    "list-of-tuples": lambda: ("hi", [("X-A", "1"), ("X-A", "2")]),
    "dict-headers": lambda: ("hi", {"X-A": "1"}),
    "dict-list-value": lambda: ("hi", {"X-A": ["1", "2"]}),
    "werkzeug-headers": lambda: ("hi", Headers([("X-A", "1")])),
    "status": lambda: ("hi", 201),
    "http-status": lambda: ("hi", HTTPStatus.ACCEPTED),
    "status-str": lambda: ("hi", "202"),
    "status-str-reason": lambda: ("hi", "299 Custom Thing"),
    "status-bytes": lambda: ("hi", b"203"),
    "status-headers": lambda: ({"a": 1}, 201, {"X-A": "1"}),
    "status-tuple-headers": lambda: (b"raw", 202, (("X-A", "1"),)),
    "none-status": lambda: ("hi", None, {"X-A": "1"}),
    "none-headers": lambda: ("hi", 201, None),
    "list": lambda: [1, 2],
    "generator": chunks,
    "generator-tuple": lambda: (chunks(), 201, [("X-A", "1")]),
    "response-tuple": lambda: (flask.Response("r", status=200, headers={"X-A": "old"}), 203, {"X-A": "new"}),
    "wsgi": lambda: wsgi_app,
    "wsgi-tuple": lambda: (wsgi_app, 201, {"X-From": "tuple", "X-B": "2"}),
    "header-type-coerced": lambda: ("hi", {"X-N": 5}),
    # invalid shapes
    "four-tuple": lambda: ("hi", 200, {}, 1),
    "bad-status": lambda: ("hi", 999),
    "bad-status-str": lambda: ("hi", "abc"),
    "bad-headers-item": lambda: ("hi", [("X-A", "1", "extra")]),
    "bad-headers-type": lambda: ("hi", 200, 5),
    "crlf-header": lambda: ("hi", {"X-A": "1\\r\\nX-Evil: 1"}),
    "crlf-reason": lambda: ("hi", "200 OK\\r\\nX-Evil: 1"),
    "not-wsgi": lambda: not_wsgi,
    "object": lambda: object(),
}

def handler(req):
    return SHAPES[req.args["shape"]]()
"""


@pytest.fixture(scope="module")
def server(serve_module):
    return serve_module(HANDLER)


def get(server, shape: str) -> requests.Response:
    return requests.get(server.url, params={"shape": shape}, timeout=10)


def flask_reference(shape: str) -> flask.Response:
    """What Flask itself makes of the same return value."""
    namespace: dict = {}
    exec(HANDLER, namespace)  # noqa: S102 - the test's own handler source
    app = flask.Flask("reference")
    with app.test_request_context("/"):
        return app.make_response(namespace["SHAPES"][shape]())


@pytest.mark.parametrize("shape", [
    "tuple-of-tuples", "dict-headers", "werkzeug-headers", "status", "http-status", "status-str",
    "status-headers", "status-tuple-headers", "none-status", "none-headers", "list", "generator",
    "generator-tuple", "response-tuple", "wsgi", "wsgi-tuple", "header-type-coerced",
])
def test_same_answer_as_flask(server, shape):
    response = get(server, shape)
    reference = flask_reference(shape)
    assert response.status_code == reference.status_code, response.text
    if reference.is_json:  # Flask's jsonify ends with a newline; the JSON is what counts
        assert response.json() == reference.get_json()
    else:
        assert response.content == reference.get_data()
    for name, value in reference.headers.items():
        if name.lower() not in ("content-length",):
            assert response.headers.get(name) == value, (name, response.headers)


def test_the_reported_case(server):
    response = get(server, "tuple-of-tuples")
    assert response.status_code == 200 and response.text == "hi" and response.headers["X-A"] == "1"


def test_repeated_header_names_are_all_sent(server):
    for shape in ("list-of-tuples", "dict-list-value"):
        assert get(server, shape).raw.headers.getlist("X-A") == ["1", "2"]


def test_status_string_keeps_its_reason_phrase(server):
    response = get(server, "status-str-reason")
    assert response.status_code == 299 and response.reason == "Custom Thing"
    assert get(server, "status-bytes").status_code == 203


def test_tuple_status_and_headers_apply_to_a_wsgi_callable(server):
    response = get(server, "wsgi-tuple")
    assert response.status_code == 201 and response.text == "from wsgi"
    assert response.headers["X-From"] == "tuple" and response.headers["X-B"] == "2"
    assert response.headers["Content-Type"] == "text/plain"


@pytest.mark.parametrize("shape", [
    "four-tuple", "bad-status", "bad-status-str", "bad-headers-item", "bad-headers-type",
    "crlf-header", "crlf-reason", "not-wsgi", "object",
])
def test_invalid_shapes_are_a_clean_500_invalid_reply(server, shape):
    response = get(server, shape)
    assert response.status_code == 500
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["reason"] == "invalid-reply" and problem["detail"]
    assert "X-Evil" not in response.headers and "Traceback" not in response.text
    assert "TypeError" not in response.text


def test_server_keeps_serving_after_invalid_shapes(server):
    for shape in ("not-wsgi", "crlf-header", "object"):
        get(server, shape)
    assert json.loads(get(server, "list").content) == [1, 2]
