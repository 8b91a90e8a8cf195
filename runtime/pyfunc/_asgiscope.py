"""What an ASGI app and waitress say to each other, translated: the ``http`` scope of a WSGI
environ, and a response start's status and headers as WSGI's.

The app's side is ASGI 3 (spec 2.3, HTTP and lifespan); waitress's is PEP 3333. What cannot be
said in WSGI, or would split the response (a status out of range, a header with CR or LF, a
header that is not a pair of bytes), is an :class:`AsgiProtocolError`: the app broke the protocol,
and pyfunc._asgi answers 500 with the cause in the log.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Optional

    from ._types import Environ

__all__ = ["ASGI_VERSION", "AsgiProtocolError", "http_scope", "status_line", "wsgi_headers"]

ASGI_VERSION = {"version": "3.0", "spec_version": "2.3"}
# PEP 3333 forbids these in a WSGI response (waitress asserts): the server frames the message itself.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                        "trailers", "transfer-encoding", "upgrade"})


class AsgiProtocolError(Exception):
    """The app broke the ASGI HTTP protocol (a body before the start, a bad status or header)."""


def http_scope(environ: Environ, state: Optional[dict[str, Any]]) -> dict[str, Any]:
    """The ASGI ``http`` scope of a waitress WSGI environ.

    The path is the URL's, percent-decoded and read as UTF-8 as ASGI servers read it (WSGI
    hands it over as Latin-1); ``raw_path`` is what the client sent. Header names are lower
    case; waitress has joined repeated headers with commas, as WSGI requires.
    """
    path = environ.get("PATH_INFO", "")
    try:
        path = path.encode("latin-1").decode("utf-8")
    except UnicodeError:
        pass
    uri = environ.get("REQUEST_URI") or ""
    raw_path = uri.partition("?")[0] if uri.startswith("/") else environ.get("PATH_INFO", "")
    headers: list[tuple[bytes, bytes]] = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:]
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            name = key
        else:
            continue
        headers.append((name.lower().replace("_", "-").encode("latin-1"), str(value).encode("latin-1")))
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": dict(ASGI_VERSION),
        "http_version": environ.get("SERVER_PROTOCOL", "HTTP/1.1").partition("/")[2] or "1.1",
        "method": environ["REQUEST_METHOD"],
        "scheme": environ.get("wsgi.url_scheme", "http"),
        "path": path,
        "raw_path": raw_path.encode("latin-1", "replace"),
        "query_string": environ.get("QUERY_STRING", "").encode("latin-1", "replace"),
        "root_path": environ.get("SCRIPT_NAME", ""),
        "headers": headers,
        "client": _address(environ.get("REMOTE_ADDR"), environ.get("REMOTE_PORT")),
        "server": _address(environ.get("SERVER_NAME"), environ.get("SERVER_PORT")),
        "extensions": {},
    }
    if state is not None:
        scope["state"] = dict(state)  # a shallow copy per request, as the lifespan spec says
    return scope


def _address(host: Optional[str], port: Optional[str]) -> Optional[tuple[str, int]]:
    if not host:
        return None
    try:
        return host, int(port or 0)
    except ValueError:
        return host, 0


def status_line(status: Any) -> str:
    from http import HTTPStatus

    if type(status) is not int or not 100 <= status <= 599:
        raise AsgiProtocolError(f"http.response.start has status {status!r}, not an int from 100 to 599")
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


def wsgi_headers(raw: Any) -> list[tuple[str, str]]:
    """ASGI's ``[(bytes, bytes)]`` as WSGI's ``[(str, str)]``; refuses what would split the response."""
    headers: list[tuple[str, str]] = []
    for item in raw or ():
        try:
            name, value = item
            name = name.decode("latin-1") if isinstance(name, (bytes, bytearray)) else name
            value = value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else value
        except (TypeError, ValueError):
            raise AsgiProtocolError(f"a response header is not a (name, value) pair of bytes: {item!r}") from None
        if not isinstance(name, str) or not isinstance(value, str):
            raise AsgiProtocolError(f"a response header is not a (name, value) pair of bytes: {item!r}")
        if any(c in name for c in "\r\n:") or not name.strip() or "\r" in value or "\n" in value:
            raise AsgiProtocolError(f"invalid response header {name!r}")
        if name.lower() in HOP_BY_HOP:
            continue  # the server frames the message (waitress sets Connection/Transfer-Encoding itself)
        headers.append((name, value))
    return headers
