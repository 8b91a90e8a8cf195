"""Turn what a handler returned into an HTTP response.

Two sets of rules, chosen once per handler at startup:

* HTTP handlers follow Flask's return conventions (``Flask.make_response``), see
  :func:`http_response` for every accepted shape, plus ``None`` → an empty 200 as in 0.1.0,
  and dataclasses / pydantic models → JSON.
* CloudEvent handlers reply with an event: ``(attributes, data)``, an attributes-only dict,
  or an SDK event object. Nothing (``None`` or another falsy value) means "accepted, no
  reply": 202 with an empty body and no ``ce-`` headers, which is what the Knative eventing
  data plane expects.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from http import HTTPStatus

from . import _codec as codec
from ._errors import InvalidReply

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, AsyncIterator, Callable, Iterable, Iterator, Optional, Union

    Body = Union[bytes, Iterable[bytes]]

    from ._types import Environ, StartResponse

Headers = list[tuple[str, str]]

STATUS_LINES = {s.value: f"{s.value} {s.phrase}" for s in HTTPStatus}
HTML = "text/html; charset=utf-8"
JSON = "application/json"
PROBLEM_JSON = "application/problem+json"

logger = logging.getLogger("pyfunc")


class Response:
    """A status, a header list and a body: all a WSGI server needs, nothing more."""

    __slots__ = ("status", "headers", "body", "reason")

    def __init__(self, status: int, headers: Headers, body: Body = b"", reason: Optional[str] = None) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.reason = reason  # a handler's own reason phrase ("299 Custom"), already checked

    @property
    def status_line(self) -> str:
        if self.reason:
            return f"{self.status} {self.reason}"
        return STATUS_LINES.get(self.status) or f"{self.status} Unknown"


def problem(status: int, reason: str, detail: str, **extra: Any) -> Response:
    """An RFC 9457 ``application/problem+json`` response with a machine-readable ``reason``."""
    body = {"type": f"urn:pyfunc:problem:{reason}", "title": HTTPStatus(status).phrase,
            "status": status, "reason": reason, "detail": detail}
    body.update(extra)
    return Response(status, [("Content-Type", PROBLEM_JSON)], json.dumps(body).encode())


# --------------------------------------------------------------------------- HTTP handlers


def is_werkzeug_response(value: Any) -> bool:
    """A flask/werkzeug Response (a WSGI app of its own), told apart without importing werkzeug."""
    return type(value).__module__.startswith(("flask", "werkzeug")) and hasattr(value, "get_wsgi_response")


def http_response(result: Any, iterate_async: Optional[Callable[[Any], Iterable[Any]]] = None) -> Any:
    """An HTTP handler's return value as a response: Flask's ``make_response`` rules, without Flask.

    The return value may be any of:

    ``str``
        The body, encoded as UTF-8; ``Content-Type: text/html; charset=utf-8`` (as Flask).
    ``bytes`` (or ``bytearray``, ``memoryview``)
        The body as is; ``text/html; charset=utf-8`` as well, as in Flask.
    ``dict`` or ``list``
        JSON (``application/json``), as Flask's ``jsonify``.
    a dataclass instance or a pydantic model
        JSON too (not in Flask, whose ``make_response`` refuses them).
    a generator or any other iterator
        Streamed: each ``str`` item is sent UTF-8 encoded, each ``bytes`` item as is.
    an async generator or any other async iterator
        Streamed the same way, each item sent as soon as it is produced; it runs on the
        event loop of ``async def`` handlers (``iterate_async`` turns it into an iterator).
    ``None``
        An empty 200 (0.1.0 did this; Flask raises instead).
    a ``flask.Response`` / ``werkzeug.Response``
        Sent unchanged.
    any other WSGI callable (``app(environ, start_response)``)
        Called as a WSGI application, as Flask's ``force_type`` does.
    a tuple ``(body, status, headers)``, ``(body, status)`` or ``(body, headers)``
        ``body`` is any of the above. ``status`` is an ``int`` (or ``HTTPStatus``), or a
        ``str``/``bytes`` status such as ``"201"`` or ``"299 Custom Reason"``; ``None`` keeps
        the body's status. ``headers`` is a ``dict`` (a list or tuple value gives the header
        once per item), a list or tuple of ``(name, value)`` pairs, or a werkzeug
        ``Headers``; ``None`` or empty adds none. A 2-tuple holds headers when its second
        item is a dict, list, tuple or ``Headers``, else a status: exactly Flask's test.
        Headers replace the body's own headers of the same name; a name given several times
        is sent several times (``Set-Cookie``).

    Anything else, a tuple of another length, a status that is not 100-599, or a header
    with a name that is not an RFC 9110 token or a value holding CR, LF or other controls
    raises :class:`InvalidReply`: a 500 ``invalid-reply`` problem, never a malformed response.
    """
    if is_werkzeug_response(result):
        return result
    status: Any = None
    extra_headers: Any = None
    if isinstance(result, tuple):
        if len(result) == 3:
            result, status, extra_headers = result
        elif len(result) == 2:
            # Flask's own test: a dict, tuple, list or Headers second item is headers.
            if isinstance(result[1], (dict, list, tuple)) or _is_headers(result[1]):
                result, extra_headers = result
            else:
                result, status = result
        else:
            raise InvalidReply(
                "a tuple return must be (body, status), (body, headers) or (body, status, headers)"
            )
        if is_werkzeug_response(result):
            if status is not None:
                code, reason = _status(status)
                result.status = f"{code} {reason}" if reason else code
            items = _header_items(extra_headers)
            for name in {name.lower() for name, _ in items}:
                del result.headers[name]
            for name, value in items:
                result.headers.add(name, value)
            return result
    response = _body_response(result, iterate_async)
    if status is not None:
        response.status, response.reason = _status(status)
    if extra_headers:
        items = _header_items(extra_headers)
        if isinstance(response, Response):
            _merge_headers(response.headers, items)
        else:
            response.headers = items
    return response


def _is_headers(value: Any) -> bool:
    """A werkzeug ``Headers`` (or ``EnvironHeaders``), or the light request's, told apart without importing werkzeug."""
    if getattr(type(value), "light_headers", False):  # pyfunc._request.light.Headers
        return True
    return type(value).__module__.startswith("werkzeug") and hasattr(value, "getlist")


def _body_response(result: Any, iterate_async: Optional[Callable[[Any], Iterable[Any]]] = None) -> Any:
    if result is None:
        return Response(200, [("Content-Type", HTML)], b"")
    if isinstance(result, str):
        return Response(200, [("Content-Type", HTML)], result.encode("utf-8"))
    if isinstance(result, (bytes, bytearray, memoryview)):
        return Response(200, [("Content-Type", HTML)], bytes(result))
    if isinstance(result, (dict, list)) or _is_model(result):
        return Response(200, [("Content-Type", JSON)], codec.dump_json(result))
    if hasattr(result, "__iter__") and hasattr(result, "__next__"):
        return Response(200, [("Content-Type", HTML)], _encoded_chunks(result))
    if iterate_async is not None and hasattr(result, "__aiter__") and hasattr(result, "__anext__"):
        return Response(200, [("Content-Type", HTML)], AsyncChunks(result, iterate_async))
    if callable(result):  # Flask: "the function is called as a WSGI application"
        return WsgiReply(result)
    raise InvalidReply(
        f"the handler returned a {type(result).__name__}; an HTTP handler may return str, bytes, "
        f"dict, list, an iterator, a (body, status[, headers]) tuple, a flask.Response, "
        f"a WSGI callable or None"
    )


class WsgiReply:
    """A WSGI callable a handler returned, with the status and headers of its tuple, if any.

    Called by the app like a werkzeug Response. If the callable fails before it starts its
    response (say a plain function returned by mistake), the answer is a 500 ``invalid-reply``
    problem rather than waitress's bare text 500.
    """

    __slots__ = ("app", "status", "reason", "headers", "status_code")

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.status: Optional[int] = None
        self.reason: Optional[str] = None
        self.headers: Headers = []
        self.status_code = 0  # the status it answered with, for the access log

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        started = False

        def start(status: str, headers: Headers, exc_info: Any = None) -> Any:
            nonlocal started
            started = True
            if self.status is not None:
                status = f"{self.status} {self.reason}" if self.reason else (
                    STATUS_LINES.get(self.status) or f"{self.status} Unknown")
            if self.headers:
                headers = list(headers)
                _merge_headers(headers, self.headers)
            self.status_code = int(status[:3]) if status[:3].isdigit() else 0
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        try:
            return self.app(environ, start)  # type: ignore[no-any-return]
        except Exception as exc:
            if started:
                raise
            logger.error("the WSGI callable the handler returned failed", exc_info=exc)
            failed = problem(500, "invalid-reply",
                             f"the handler returned a {type(self.app).__name__} that failed as a WSGI application")
            assert isinstance(failed.body, bytes)
            self.status_code = 500
            start_response(failed.status_line, [*failed.headers, ("Content-Length", str(len(failed.body)))])
            return [failed.body]


def _is_model(value: Any) -> bool:
    return (dataclasses.is_dataclass(value) and not isinstance(value, type)) or callable(
        getattr(value, "model_dump", None)
    )


class AsyncChunks:
    """A streamed body from an async iterator.

    Iterated (``for``), a worker thread pulls each item from the event loop (``iterate``);
    the app can instead send it from the event loop itself, with :meth:`encoded`, so that no
    worker waits between items (FunctionApp._stream).
    """

    __slots__ = ("iterator", "iterate")

    def __init__(self, iterator: Any, iterate: Callable[[Any], Iterable[Any]]) -> None:
        self.iterator = iterator
        self.iterate = iterate

    def __iter__(self) -> Iterator[bytes]:
        return iter(_encoded_chunks(self.iterate(self.iterator)))

    async def encoded(self) -> AsyncIterator[bytes]:
        """The items as bytes, on the event loop; the iterator is closed however this ends."""
        iterator = self.iterator
        try:
            async for chunk in iterator:
                yield _encoded(chunk)
        finally:
            close = getattr(iterator, "aclose", None)
            if close is not None:
                await close()


def _encoded(chunk: Any) -> bytes:
    if isinstance(chunk, str):
        return chunk.encode("utf-8")
    if isinstance(chunk, (bytes, bytearray, memoryview)):
        return bytes(chunk)
    # bytes(5) would send five NUL bytes: refuse (mid-stream, waitress closes the connection)
    raise InvalidReply(f"a streamed response yielded a {type(chunk).__name__}; yield str or bytes")


def _encoded_chunks(chunks: Iterable[Any]) -> Iterable[bytes]:
    for chunk in chunks:
        if isinstance(chunk, str):
            yield chunk.encode("utf-8")
        elif isinstance(chunk, (bytes, bytearray, memoryview)):
            yield bytes(chunk)
        else:  # bytes(5) would send five NUL bytes: refuse (mid-stream, waitress closes the connection)
            raise InvalidReply(f"a streamed response yielded a {type(chunk).__name__}; yield str or bytes")


# RFC 9112 §4: status-code SP reason-phrase, the phrase being HTAB, SP, VCHAR or obs-text.
_STATUS_TEXT = re.compile(r"([1-5][0-9][0-9])(?: ([\t\x20-\x7e\x80-\xff]*))?\Z")


def _status(status: Any) -> tuple[int, Optional[str]]:
    """``(code, reason phrase or None)`` of a tuple's status: an int, or a str/bytes status line."""
    if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599:
        return int(status), None
    if isinstance(status, (bytes, bytearray)):
        status = bytes(status).decode("latin-1")
    if isinstance(status, str):
        match = _STATUS_TEXT.match(status.strip())
        if match is not None:
            return int(match.group(1)), match.group(2) or None
    raise InvalidReply(f"invalid HTTP status {status!r:.80}")


# RFC 9110 §5.1 field name (a token) and §5.5 field value (visible ASCII, SP, HTAB and obs-text).
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*\Z")


def _header_items(headers: Any) -> Headers:
    """``(name, value)`` pairs from a dict, a list/tuple of pairs or a werkzeug Headers, checked."""
    if headers is None:
        return []
    if isinstance(headers, dict):
        # A list or tuple value is one header per item, as werkzeug's Headers does.
        items: Iterable[Any] = [
            (name, item) for name, value in headers.items()
            for item in (value if isinstance(value, (list, tuple)) else (value,))
        ]
    elif hasattr(headers, "items"):  # werkzeug Headers: every pair, repeated names included
        items = headers.items()
    elif isinstance(headers, (list, tuple)):
        items = headers
    else:
        raise InvalidReply(f"response headers must be a dict, a list of (name, value) pairs or Headers, "
                           f"not a {type(headers).__name__}")
    checked = []
    for pair in items:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise InvalidReply(f"a response header must be a (name, value) pair, not {pair!r:.80}")
        name, value = str(pair[0]), str(pair[1])
        # A CR or LF would split the response, and a name that is not a token or a value with a
        # control or non-latin-1 character would make it malformed: refuse rather than send it.
        if not _FIELD_NAME.match(name) or not _FIELD_VALUE.match(value):
            raise InvalidReply(f"header {name!r} has a forbidden character (a name must be an RFC 9110 token; "
                               f"a value may not hold CR, LF, NUL, other controls or characters above U+00FF)")
        checked.append((name, value))
    return checked


def _merge_headers(headers: Headers, extra: Headers) -> None:
    replaced = {name.lower() for name, _ in extra}
    # Content-Length is the server's to compute from the body it sends: a handler's own could
    # only ever be wrong or a duplicate.
    extra = [h for h in extra if h[0].lower() != "content-length"]
    headers[:] = [h for h in headers if h[0].lower() not in replaced] + extra


# --------------------------------------------------------------------------- CloudEvent handlers


def reply_event(result: Any) -> Optional[tuple[dict[str, Any], Any]]:
    """``(attributes, data)`` of the reply a CloudEvent handler returned, or None for no reply.

    Raises :class:`InvalidReply` for values that are neither, with a hint on what to return.
    """
    if not result:
        return None
    if isinstance(result, tuple):
        if len(result) == 2 and isinstance(result[0], dict):
            return result[0], result[1]
        if len(result) == 1 and isinstance(result[0], dict):
            return result[0], None
        raise InvalidReply(
            f"a CloudEvent handler returned a {len(result)}-tuple; return (attributes, data), "
            f"an attributes dict, a CloudEvent, a flask.Response or None"
        )
    if isinstance(result, dict):
        if "type" not in result:
            raise InvalidReply(
                "a CloudEvent handler returned a dict without 'type'; a dict return is the reply's "
                "attributes: return (attributes, data) to reply with data"
            )
        return result, None
    sdk = _sdk_reply(result)
    if sdk is not None:
        return sdk
    raise InvalidReply(
        f"a CloudEvent handler returned a {type(result).__name__}; return (attributes, data), "
        f"an attributes dict, a CloudEvent, a flask.Response or None"
    )


def _sdk_reply(result: Any) -> Optional[tuple[dict[str, Any], Any]]:
    if not type(result).__module__.startswith("cloudevents"):
        return None
    from ._events import reply_from_sdk

    return reply_from_sdk(result)
