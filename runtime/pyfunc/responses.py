"""Turn what a handler returned into an HTTP response.

Two sets of rules, chosen once per handler at startup:

* HTTP handlers follow Flask's return conventions (str/bytes, dict/list → JSON,
  ``(body, status)``, ``(body, status, headers)``, ``flask.Response``), plus ``None`` → an
  empty 200 as in 0.1.0, and dataclasses / pydantic models → JSON.
* CloudEvent handlers reply with an event: ``(attributes, data)``, an attributes-only dict,
  or an SDK event object. Nothing (``None`` or another falsy value) means "accepted, no
  reply": 202 with an empty body and no ``ce-`` headers, which is what the Knative eventing
  data plane expects.
"""

from __future__ import annotations

import dataclasses
import json
import re
from http import HTTPStatus
from typing import Any, Iterable, Optional, Union

from . import codec
from .errors import InvalidReply

Headers = list[tuple[str, str]]
Body = Union[bytes, Iterable[bytes]]

STATUS_LINES = {s.value: f"{s.value} {s.phrase}" for s in HTTPStatus}
HTML = "text/html; charset=utf-8"
JSON = "application/json"
PROBLEM_JSON = "application/problem+json"


class Response:
    """A status, a header list and a body: all a WSGI server needs, nothing more."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: Headers, body: Body = b"") -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def status_line(self) -> str:
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


def http_response(result: Any) -> Any:
    """Flask's ``make_response`` rules without Flask; a werkzeug Response is returned as is."""
    if is_werkzeug_response(result):
        return result
    status, extra_headers = 200, None
    if isinstance(result, tuple):
        if len(result) == 3:
            result, status, extra_headers = result
        elif len(result) == 2:
            if isinstance(result[1], (dict, list)) or type(result[1]).__name__ == "Headers":
                result, extra_headers = result
            else:
                result, status = result
        else:
            raise InvalidReply(
                "a tuple return must be (body, status), (body, headers) or (body, status, headers)"
            )
        if is_werkzeug_response(result):
            result.status_code = _status_code(status)
            for name, value in _header_items(extra_headers):
                result.headers[name] = value
            return result
    response = _body_response(result)
    response.status = _status_code(status)
    if extra_headers:
        _merge_headers(response.headers, _header_items(extra_headers))
    return response


def _body_response(result: Any) -> Response:
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
    raise InvalidReply(
        f"the handler returned a {type(result).__name__}; an HTTP handler may return str, bytes, "
        f"dict, list, a (body, status[, headers]) tuple, a flask.Response or None"
    )


def _is_model(value: Any) -> bool:
    return (dataclasses.is_dataclass(value) and not isinstance(value, type)) or callable(
        getattr(value, "model_dump", None)
    )


def _encoded_chunks(chunks: Iterable[Any]) -> Iterable[bytes]:
    for chunk in chunks:
        yield chunk.encode("utf-8") if isinstance(chunk, str) else bytes(chunk)


def _status_code(status: Any) -> int:
    if isinstance(status, int) and 100 <= status <= 599:
        return status
    if isinstance(status, str) and status[:3].isdigit():
        return int(status[:3])
    raise InvalidReply(f"invalid HTTP status {status!r}")


# RFC 9110 §5.1 field name (a token) and §5.5 field value (visible ASCII, SP, HTAB and obs-text).
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*\Z")


def _header_items(headers: Any) -> Headers:
    if headers is None:
        return []
    items = headers.items() if hasattr(headers, "items") else headers
    checked = []
    for name, value in items:
        name, value = str(name), str(value)
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
    from .events import reply_from_sdk

    return reply_from_sdk(result)
