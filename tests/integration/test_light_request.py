"""The request an unannotated ``req`` gets (pyfunc._request): flask.Request's answers, without Flask.

The differential part runs in-process: every request shape below is read through pyfunc's
request and through a real ``flask.Request`` built over an identical environ, and every
attribute, method and error (its exception type and pyfunc's HTTP answer to it) must agree.
The server part checks, over real HTTP, that a function reading ``req.args``, ``req.get_json()``
and ``req.headers`` never imports Flask or werkzeug, that the rest falls back to Flask, and that
``req: flask.Request`` still gets Flask's.
"""

from __future__ import annotations

import io
import json
from typing import Any, Callable

import pytest
import requests

# ---------------------------------------------------------------- request shapes

MULTIPART_BODY = (b'--XyZ\r\nContent-Disposition: form-data; name="field"\r\n\r\nvalue 1\r\n'
                  b'--XyZ\r\nContent-Disposition: form-data; name="upload"; filename="a.txt"\r\n'
                  b'Content-Type: text/plain\r\n\r\nfile body\r\n--XyZ--\r\n')


def _shape(method: str = "GET", path: str = "/", query: str = "", body: bytes = b"", headers: Any = None,
           terminated: bool = True, **extra: Any) -> dict[str, Any]:
    """A WSGI environ as waitress builds it (latin-1 strings; body with CONTENT_LENGTH; input terminated)."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "REMOTE_HOST": "127.0.0.1", "REMOTE_PORT": "50000",
        "wsgi.url_scheme": "http", "wsgi.version": (1, 0), "wsgi.multithread": True,
        "wsgi.multiprocess": False, "wsgi.run_once": False, "HTTP_HOST": "127.0.0.1:8080",
        "_body": body,
    }
    if terminated:
        environ["wsgi.input_terminated"] = True
    if body:
        environ["CONTENT_LENGTH"] = str(len(body))
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key] = value
    environ.update(extra)
    return environ


def _latin1(text: str) -> str:
    """A str as waitress puts it in the environ: its UTF-8 bytes decoded as latin-1."""
    return text.encode().decode("latin1")


SHAPES: dict[str, dict[str, Any]] = {
    "get-plain": _shape(),
    "query-repeats-blank": _shape(query="a=1&a=2&b=&c&=x&a=3"),
    "query-percent-unicode": _shape(query="q=%E2%9C%93&x=a%20b+c&n=42&f=1.5&neg=-3&sp=+"),
    "query-invalid-utf8-escapes": _shape(query="bad=%FF%FE&ok=1"),
    "query-raw-unicode": _shape(query=_latin1("name=Zoë&city=Łódź")),
    "query-separators": _shape(query="a=1;b=2&&c=3&d==4"),
    "path-unicode-spaces": _shape(path=_latin1("/café/x y/%41")),
    "path-double-slash": _shape(path="//a//b/"),
    "script-root": _shape(path="/hello", query="x=1", SCRIPT_NAME="/app/"),
    "https-443": _shape(headers={"Host": "example.com:443"}, **{"wsgi.url_scheme": "https"}),
    "host-port": _shape(headers={"Host": "Example.COM:8080"}),
    "no-host-header": _shape(HTTP_HOST=None),
    "invalid-host": _shape(headers={"Host": "bad host!"}),
    "ipv6-host": _shape(headers={"Host": "[::1]:9000"}),
    "idna-host": _shape(headers={"Host": "xn--caf-dma.example"}, query="a=%C3%A9"),
    "json": _shape("POST", body=b'{"k": "v", "n": [1, 2.5, null]}', headers={"Content-Type": "application/json"}),
    "json-charset": _shape("POST", body='{"name": "Zoë"}'.encode(),
                           headers={"Content-Type": "Application/JSON; charset=UTF-8"}),
    "json-suffix": _shape("PATCH", body=b"[1, 2]", headers={"Content-Type": "application/vnd.api+json"}),
    "json-as-text-plain": _shape("POST", body=b'{"k": 1}', headers={"Content-Type": "text/plain"}),
    "json-invalid": _shape("POST", body=b'{"k": ', headers={"Content-Type": "application/json"}),
    "json-empty-body": _shape("POST", headers={"Content-Type": "application/json"}),
    "json-no-content-type": _shape("POST", body=b'{"k": 2}'),
    "json-invalid-utf8": _shape("POST", body=b'"\xff"', headers={"Content-Type": "application/json"}),
    "form-urlencoded": _shape("POST", body=b"a=1&b=two+words&a=3",
                              headers={"Content-Type": "application/x-www-form-urlencoded"}),
    "form-multipart": _shape("POST", body=MULTIPART_BODY,
                             headers={"Content-Type": 'multipart/form-data; boundary="XyZ"'}),
    "text-invalid-utf8": _shape("PUT", body=b"caf\xe9 \xff", headers={"Content-Type": "text/plain; charset=latin-1"}),
    "odd-headers": _shape(headers={
        "X-Custom": "a, b", "x-EMPTY": "", "Accept": "text/html;q=0.9, application/json",
        "Content-Type": "multipart/mixed; boundary=\"a\\\"b\"; charset*=utf-8''%e2%82%ac; q*0=a; q*1=b",
        "User-Agent": "curl/8.0", "X-Number": "12", "Authorization": "Bearer abc", "Referer": "http://r/",
        "X-Forwarded-For": "1.2.3.4, 5.6.7.8"}),
    "cookies": _shape(headers={"Cookie": 'a=1; b="quo\\"ted\\303\\251"; a=2; bad; c=; d = spaced ;=x; e=f=g'}),
    "head": _shape("HEAD", query="x=1"),
    "chunked": _shape("POST", body=b'{"chunked": true}',
                      headers={"Content-Type": "application/json", "Transfer-Encoding": "gzip, Chunked"}),
    "unterminated-content-length": _shape("POST", body=b"hello world", terminated=False,
                                          headers={"Content-Type": "text/plain"}),
    "unterminated-bad-content-length": _shape("POST", body=b"hello", terminated=False, CONTENT_LENGTH="abc"),
    "unterminated-no-content-length": _shape("POST", body=b"lost", terminated=False, CONTENT_LENGTH=None),
    "lowercase-method": _shape("post", body=b"x", headers={"Content-Type": "text/plain"}),
}


def _environ(shape: dict[str, Any]) -> dict[str, Any]:
    environ = {k: v for k, v in shape.items() if v is not None and k != "_body"}
    environ["wsgi.input"] = io.BytesIO(shape["_body"])
    return environ


# ---------------------------------------------------------------- what is compared


def _normal(value: Any) -> Any:
    """A comparable form: multi-dicts and headers as their full item lists, generators as lists."""
    if hasattr(value, "getlist") and hasattr(value, "lists"):
        return ("multidict", list(value.items(multi=True)))
    if hasattr(value, "getlist") and hasattr(value, "to_wsgi_list"):
        return ("headers", list(value))
    if isinstance(value, (list, tuple)) or type(value).__name__ in ("generator", "dict_keys"):
        return [_normal(v) for v in value]
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    return value


def _outcome(op: Callable[[Any], Any], request: Any) -> Any:
    """What ``op(request)`` gives: its value, or what it raised and pyfunc's HTTP answer to that."""
    from pyfunc._failures import http_exception_response as _http_exception_response

    try:
        return "ok", _normal(op(request))
    except Exception as exc:  # noqa: BLE001 - the exception is the result compared
        response = _http_exception_response(exc)
        answer = (response.status_code, response.get_data()) if response is not None else None
        return "raised", answer, isinstance(exc, KeyError), answer or type(exc).__name__


def _steps(*ops: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Several reads in order on one request: each one's outcome."""
    return lambda r: [_outcome(op, r) for op in ops]


OPS: dict[str, Callable[[Any], Any]] = {
    # URL, method
    "method": lambda r: r.method, "path": lambda r: r.path, "full_path": lambda r: r.full_path,
    "script_root": lambda r: r.script_root, "root_path": lambda r: r.root_path, "url": lambda r: r.url,
    "base_url": lambda r: r.base_url, "host_url": lambda r: r.host_url, "url_root": lambda r: r.url_root,
    "root_url": lambda r: r.root_url, "host": lambda r: r.host, "scheme": lambda r: r.scheme,
    "is_secure": lambda r: r.is_secure, "server": lambda r: r.server, "query_string": lambda r: r.query_string,
    "remote_addr": lambda r: r.remote_addr, "repr": repr,
    # args
    "args": lambda r: r.args, "args-dict": lambda r: dict(r.args), "args-json": lambda r: json.dumps(r.args),
    "args-to_dict": lambda r: r.args.to_dict(), "args-to_dict-lists": lambda r: r.args.to_dict(flat=False),
    "args-len": lambda r: len(r.args), "args-iter": lambda r: list(r.args), "args-keys": lambda r: list(r.args.keys()),
    "args-values": lambda r: list(r.args.values()), "args-items": lambda r: list(r.args.items()),
    "args-lists": lambda r: list(r.args.lists()), "args-get": lambda r: r.args.get("a"),
    "args-get-default": lambda r: r.args.get("missing", "dflt"), "args-get-int": lambda r: r.args.get("a", type=int),
    "args-get-int-fails": lambda r: r.args.get("x", -1, type=int),
    "args-get-float": lambda r: r.args.get("f", type=float),
    "args-getlist": lambda r: r.args.getlist("a"), "args-getlist-int": lambda r: r.args.getlist("a", type=int),
    "args-getlist-missing": lambda r: r.args.getlist("nope"), "args-item": lambda r: r.args["a"],
    "args-item-missing": lambda r: r.args["missing"], "args-in": lambda r: ("a" in r.args, "zz" in r.args),
    "args-immutable": lambda r: r.args.__setitem__("a", "1"), "args-copy": lambda r: r.args.copy(),
    "args-eq-dict": lambda r: r.args == {k: r.args.getlist(k) for k in r.args},
    "args-bool": lambda r: bool(r.args),
    # headers
    "headers": lambda r: r.headers, "headers-len": lambda r: len(r.headers),
    "headers-items": lambda r: list(r.headers.items()),
    "headers-items-lower": lambda r: list(r.headers.items(lower=True)),
    "headers-keys": lambda r: list(r.headers.keys()), "headers-values": lambda r: list(r.headers.values()),
    "headers-get": lambda r: (r.headers.get("content-type"), r.headers.get("X-CUSTOM"), r.headers.get("x-empty"),
                              r.headers.get("Host"), r.headers.get("missing"), r.headers.get("missing", "d")),
    "headers-get-int": lambda r: (r.headers.get("X-Number", type=int), r.headers.get("X-Custom", -1, type=int),
                                  r.headers.get("Content-Length", type=int)),
    "headers-item": lambda r: r.headers["user-agent"], "headers-item-missing": lambda r: r.headers["X-Missing"],
    "headers-item-content-type": lambda r: r.headers["Content-Type"],
    "headers-in": lambda r: ("x-custom" in r.headers, "X-Missing" in r.headers, "content-length" in r.headers),
    "headers-getlist": lambda r: (r.headers.getlist("x-custom"), r.headers.getlist("X-Number", type=int),
                                  r.headers.getlist("nope")),
    "headers-get_all": lambda r: r.headers.get_all("Cookie"), "headers-str": lambda r: str(r.headers),
    "headers-wsgi-list": lambda r: r.headers.to_wsgi_list(), "headers-bool": lambda r: bool(r.headers),
    # content headers
    "content_type": lambda r: r.content_type, "mimetype": lambda r: r.mimetype,
    "mimetype_params": lambda r: r.mimetype_params, "content_length": lambda r: r.content_length,
    "is_json": lambda r: r.is_json, "referrer": lambda r: r.referrer, "origin": lambda r: r.origin,
    "content_encoding": lambda r: r.content_encoding,
    # cookies
    "cookies": lambda r: r.cookies, "cookies-to_dict": lambda r: r.cookies.to_dict(),
    "cookies-getlist": lambda r: r.cookies.getlist("a"), "cookies-item-missing": lambda r: r.cookies["zz"],
    "cookies-get": lambda r: r.cookies.get("b"),
    # body
    "get_data": lambda r: r.get_data(), "get_data-text": lambda r: r.get_data(as_text=True),
    "data": lambda r: r.data, "get_data-form": lambda r: r.get_data(parse_form_data=True),
    "get_data-nocache-twice": _steps(lambda r: r.get_data(cache=False), lambda r: r.get_data()),
    "get_data-twice": _steps(lambda r: r.get_data(), lambda r: r.get_data(as_text=True)),
    "json": lambda r: r.json, "get_json": lambda r: r.get_json(), "get_json-silent": lambda r: r.get_json(silent=True),
    "get_json-force": lambda r: r.get_json(force=True),
    "get_json-force-silent": lambda r: r.get_json(force=True, silent=True),
    "get_json-nocache": lambda r: r.get_json(cache=False),
    "get_json-silent-then-loud": _steps(lambda r: r.get_json(silent=True), lambda r: r.get_json(),
                                        lambda r: r.get_json(force=True)),
    "get_json-loud-then-silent": _steps(lambda r: r.get_json(), lambda r: r.get_json(silent=True),
                                        lambda r: r.get_json(force=True, silent=True)),
    "get_json-then-data": _steps(lambda r: r.get_json(force=True, silent=True), lambda r: r.get_data()),
    # the fallback to flask.Request, alone and after the body was read natively
    "form": lambda r: r.form, "files": lambda r: {k: (f.filename, f.read()) for k, f in r.files.items()},
    "values": lambda r: r.values.to_dict(flat=False),
    "get_data-then-form": _steps(lambda r: r.get_data(), lambda r: r.form, lambda r: r.get_data()),
    "data-then-form": _steps(lambda r: r.data, lambda r: r.form, lambda r: r.get_json(silent=True)),
    "form-then-get_data": _steps(lambda r: r.form, lambda r: r.get_data(), lambda r: r.data),
    "user_agent": lambda r: str(r.user_agent), "access_route": lambda r: list(r.access_route),
    "authorization": lambda r: r.authorization and r.authorization.token,
    "accept_mimetypes": lambda r: r.accept_mimetypes.best, "is_multithread": lambda r: r.is_multithread,
    "unknown-attribute": lambda r: r.no_such_attribute,
    "set-attribute": _steps(lambda r: setattr(r, "custom", 5), lambda r: r.custom),
    "max_content_length-then-form": _steps(lambda r: setattr(r, "max_content_length", 3), lambda r: r.form,
                                           lambda r: r.get_data()),
}


def _pair(shape: dict[str, Any]) -> tuple[Any, Any]:
    from flask import Request as FlaskRequest

    from pyfunc._request import Request

    return Request(_environ(shape)), FlaskRequest(_environ(shape))


@pytest.mark.parametrize("shape", SHAPES)
def test_every_read_matches_flask(shape: str) -> None:
    """Each op on a fresh pyfunc request and a fresh flask.Request over the same environ: same outcome."""
    mismatches = []
    for name, op in OPS.items():
        light, real = _pair(SHAPES[shape])
        got, want = _outcome(op, light), _outcome(op, real)
        if got != want:
            mismatches.append(f"{name}: pyfunc {got!r} != flask {want!r}")
    assert not mismatches, "\n".join(mismatches)


@pytest.mark.parametrize("shape", [s for s, e in SHAPES.items() if e["_body"]])
def test_reads_after_pyfunc_read_the_body_match_flask(shape: str) -> None:
    """pyfunc reads the body first when ``body`` is bound too (get_data(cache=True)): nothing changes."""
    mismatches = []
    for name, op in OPS.items():
        light, real = _pair(SHAPES[shape])
        light.get_data(cache=True), real.get_data(cache=True)
        got, want = _outcome(op, light), _outcome(op, real)
        if got != want:
            mismatches.append(f"{name}: pyfunc {got!r} != flask {want!r}")
    assert not mismatches, "\n".join(mismatches)


# Reads that build Flask's request by design (and data / get_data(parse_form_data=True) on a form body).
FALLBACK_OPS = ("form", "files", "values", "get_data-then-form", "data-then-form", "form-then-get_data",
                "user_agent", "access_route", "authorization", "accept_mimetypes", "is_multithread",
                "unknown-attribute", "max_content_length-then-form", "args-copy")


def test_native_reads_import_neither_flask_nor_werkzeug() -> None:
    """In a fresh interpreter that cannot import flask or werkzeug: every native read that Flask answers
    without an error (errors import werkzeug.exceptions, on purpose) works on every shape."""
    import subprocess
    import sys
    from pathlib import Path

    pairs = []
    for shape, environ in SHAPES.items():
        form = str(environ.get("CONTENT_TYPE", "")).startswith(("multipart/", "application/x-www-form"))
        for name, op in OPS.items():
            if name in FALLBACK_OPS or (form and name in ("data", "get_data-form")):
                continue
            _, real = _pair(environ)
            outcome = _outcome(op, real)
            if outcome[0] == "ok" and "raised" not in repr(outcome[1]):
                pairs.append((shape, name))
    assert len(pairs) > 1500
    code = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("flask", "werkzeug"):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_light_request import SHAPES, OPS, _environ
from pyfunc._request import Request
for shape, name in {pairs!r}:
    OPS[name](Request(_environ(SHAPES[shape])))
print("clean", "flask" in sys.modules, "werkzeug" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "clean False False", done.stderr[-3000:]


def test_a_missing_arg_is_a_400_like_werkzeugs() -> None:
    from werkzeug.exceptions import BadRequestKeyError as WerkzeugKeyError

    from pyfunc._request import BadRequestKeyError, Request

    request = Request(_environ(SHAPES["get-plain"]))
    with pytest.raises(BadRequestKeyError) as raised:
        request.args["name"]
    assert isinstance(raised.value, KeyError) and raised.value.args == ("name",)
    assert str(raised.value) == str(WerkzeugKeyError("name"))


# ---------------------------------------------------------------- real servers

READS_REQ = """
import sys

def handler(req):
    return {
        "name": req.args.get("name", "World"), "ids": req.args.getlist("id", type=int),
        "json": req.get_json(silent=True), "trace": req.headers.get("x-trace"), "method": req.method,
        "path": req.path, "url": req.url, "ctype": req.mimetype, "cookies": req.cookies.to_dict(),
        "class": type(req).__module__ + "." + type(req).__name__,
        "imported": sorted(m for m in ("flask", "werkzeug") if m in sys.modules),
    }
"""


def test_a_function_reading_args_json_and_headers_never_imports_flask(serve) -> None:
    server = serve(READS_REQ)
    for _ in range(2):
        reply = requests.post(server.url + "/p/q?name=Ada&id=1&id=x&id=3", json={"k": [1]},
                              headers={"X-Trace": "t-1", "Cookie": "s=abc"}, timeout=5)
        assert reply.status_code == 200, reply.text
        got = reply.json()
        assert got == {"name": "Ada", "ids": [1, 3], "json": {"k": [1]}, "trace": "t-1", "method": "POST",
                       "path": "/p/q", "url": server.url + "/p/q?name=Ada&id=1&id=x&id=3",
                       "ctype": "application/json", "cookies": {"s": "abc"}, "class": "pyfunc._request.light.Request",
                       "imported": []}


READS_HEADERS = """
import sys

def handler(headers):
    return {
        "trace": headers.get("x-trace"), "trace_title": headers["X-Trace"], "ctype": headers.get("Content-Type"),
        "missing": headers.get("x-none", "default"), "n": headers.get("x-n", type=int), "in": "x-trace" in headers,
        "listed": headers.getlist("X-Trace"), "names": sorted(k for k, _ in headers if k.startswith("X-")),
        "imported": sorted(m for m in ("flask", "werkzeug") if m in sys.modules),
    }
"""


def test_a_function_taking_headers_gets_werkzeugs_api_without_importing_it(serve) -> None:
    server = serve(READS_HEADERS)
    reply = requests.post(server.url, data=b"x", headers={"X-Trace": "t-1", "X-N": "7", "Content-Type": "text/plain"},
                          timeout=5)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"trace": "t-1", "trace_title": "t-1", "ctype": "text/plain", "missing": "default",
                            "n": 7, "in": True, "listed": ["t-1"], "names": ["X-N", "X-Trace"], "imported": []}


ERRORS = """
import sys

def handler(req):
    what = req.args["what"]
    if what == "json":
        return {"json": req.get_json()}
    return {"imported": sorted(m for m in ("flask", "werkzeug") if m in sys.modules)}
"""

ERRORS_IN_FLASK = """
import flask

def handler(req: flask.Request):
    what = req.args["what"]
    if what == "json":
        return {"json": req.get_json()}
    return {}
"""


@pytest.mark.parametrize(("query", "kwargs"), [
    ("", {}),  # args["what"] missing: werkzeug's BadRequestKeyError, 400
    ("?what=json", {"data": b'{"k": ', "headers": {"Content-Type": "application/json"}}),  # 400
    ("?what=json", {"data": b'{"k": 1}', "headers": {"Content-Type": "text/plain"}}),  # 415
    ("?what=json", {"data": b"", "headers": {"Content-Type": "application/json"}}),  # 400
    ("?what=json", {"json": {"k": 1}}),  # 200
])
def test_errors_get_the_same_http_answer_as_with_flask(serve_module, query: str, kwargs: dict) -> None:
    light, flask_server = _error_servers(serve_module)
    got = requests.post(light.url + query, timeout=5, **kwargs)
    want = requests.post(flask_server.url + query, timeout=5, **kwargs)
    assert (got.status_code, got.headers.get("Content-Type"), got.content) == \
           (want.status_code, want.headers.get("Content-Type"), want.content)
    assert got.status_code in (200, 400, 415)


_SERVERS: dict[int, Any] = {}


def _error_servers(serve_module) -> tuple[Any, Any]:
    key = id(serve_module)
    if key not in _SERVERS:
        _SERVERS[key] = (serve_module(ERRORS), serve_module(ERRORS_IN_FLASK))
    return _SERVERS[key]


FALLBACK = """
import sys

def handler(req, body):
    before = "flask" in sys.modules
    return {"form": req.form.to_dict(flat=False), "files": {k: f.read().decode() for k, f in req.files.items()},
            "data": req.get_data(as_text=True) if not req.files else "", "body_len": len(body),
            "flask_before": before, "flask_after": "flask" in sys.modules}
"""


def test_a_fallback_attribute_builds_flasks_request_and_gives_its_answer(serve) -> None:
    server = serve(FALLBACK)
    reply = requests.post(server.url, data={"a": ["1", "3"], "b": "two words"}, timeout=5)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"form": {"a": ["1", "3"], "b": ["two words"]}, "files": {},
                            "data": "a=1&a=3&b=two+words", "body_len": 19, "flask_before": False,
                            "flask_after": True}
    reply = requests.post(server.url, data={"f": "v"}, files={"up": ("a.txt", b"file body")}, timeout=5)
    assert reply.status_code == 200, reply.text
    got = reply.json()
    assert got["form"] == {"f": ["v"]} and got["files"] == {"up": "file body"} and got["flask_after"] is True


def test_an_annotated_flask_request_is_flasks(serve) -> None:
    """Without Flask's globals (werkzeug's annotation): a bare flask.Request, for every request parameter."""
    server = serve("""
        import werkzeug.wrappers

        def handler(req: werkzeug.wrappers.Request, request):
            return type(request).__module__ + "." + type(request).__name__ + " " + str(request is req)
    """)
    assert requests.get(server.url, timeout=5).text == "flask.wrappers.Request True"
    server = serve("""
        import flask

        def handler(req: flask.Request):
            same = req is flask.request._get_current_object()
            return type(req).__module__ + "." + type(req).__name__ + " " + str(same)
    """)
    assert requests.get(server.url, timeout=5).text == "flask.wrappers.Request True"


def test_binding_rules() -> None:
    import flask

    from pyfunc._binding import compile_binder

    def light(req):  # noqa: ANN001, ANN202
        return req.args

    def annotated(req):  # noqa: ANN001, ANN202
        return req.args

    def mixed(req, other):  # noqa: ANN001, ANN202
        return req, other

    annotated.__annotations__ = {"req": flask.Request}  # this module's annotations are strings
    mixed.__annotations__ = {"other": flask.Request}

    assert (compile_binder(light).needs_request, compile_binder(light).needs_flask_request) == (True, False)
    assert compile_binder(annotated).needs_flask_request is True
    assert compile_binder(mixed).needs_flask_request is True
    assert "flask.Request's API" in compile_binder(light).bound["req"]
    assert compile_binder(annotated).bound["req"] == "the flask.Request"
