"""CloudEvents HTTP protocol binding v1.0.2: decode requests into events, encode reply events.

This is the hot path, so it works on plain dicts and WSGI environ strings and never builds an
SDK object; `pyfunc._events` turns an :class:`Event` into the SDK's types only for handlers
that ask for them.

Section numbers in comments refer to the HTTP protocol binding (``binding §``) and the JSON
event format (``json §``), both v1.0.2.
"""

from __future__ import annotations

import datetime
import functools
import json
import re
import time
from urllib.parse import unquote_to_bytes

from ._clock import rfc3339_utc
from ._errors import BadEvent, InvalidReply

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Optional

    from ._types import Environ

STRUCTURED = "structured"
BINARY = "binary"
BATCH = "batch"
REPLY_MODES = (BINARY, STRUCTURED, BATCH)

SUPPORTED_SPECVERSIONS = ("1.0", "0.3")
REQUIRED_ATTRIBUTES = ("id", "source", "specversion", "type")
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
# No charset on batches: JSON is UTF-8 by definition (RFC 8259), and sdk-go's cehttp.IsHTTPBatch
# (Knative eventing's Go code) compares the whole Content-Type, so with one a batch goes unseen.
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"

# Spec §"Attribute Naming Convention": lower-case ASCII letters and digits only.
_ATTRIBUTE_NAME = re.compile(r"[a-z0-9]+\Z")
# Names already found valid: the same dozen names arrive on every request, so the regex runs
# once per name, not once per attribute per request. Bounded, so hostile names cannot grow it.
_VALID_NAMES: set[str] = set(REQUIRED_ATTRIBUTES)
_VALID_NAMES_MAX = 1024


def _valid_name(name: str) -> bool:
    if name in _VALID_NAMES:
        return True
    if not _ATTRIBUTE_NAME.match(name):
        return False
    if len(_VALID_NAMES) < _VALID_NAMES_MAX:
        _VALID_NAMES.add(name)
    return True
# binding §3.1.3.2: space, '"', '%' and everything outside U+0021..U+007E MUST be encoded.
_NEEDS_PERCENT = re.compile(r'[^\x21\x23\x24\x26-\x7e]')
# Content-Type is a plain HTTP header, not percent-encoded: printable ASCII and spaces only.
_PRINTABLE_HEADER = re.compile(r"[\x20-\x7e]*\Z")

# Names that can never be context attributes. spec §"Attribute Naming Convention" (v1.0.3-wip):
# "CloudEvent attributes MUST NOT have the name `data`; this name is reserved as it is used in
# some event formats". ``data_base64`` is the JSON format's other data member (json §3.1.2),
# never an attribute either (its underscore already breaks the naming convention).
_RESERVED_NAMES = ("data", "data_base64")

# RFC 3339 §5.6 ``date-time``: full-date "T" partial-time time-offset. The ABNF is
# case-insensitive, and §5.6's note allows a lower-case "t" and "z" explicitly. Field ranges
# (month, day of month, hour...) are checked in _check_time: a regex cannot say "30 February".
_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.\d+)?(?:[Zz]|[+-](\d\d):(\d\d))\Z", re.ASCII
)
_DAYS_IN_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February: leap years checked apart

# CloudEvents 0.3 ``datacontentencoding`` (spec v0.3 §"datacontentencoding", RFC 2045 §6.1):
# "base64" means the data is base64 text of the real bytes; the identity encodings change
# nothing. Values are case-insensitive (RFC 2045 §6.1).
_IDENTITY_ENCODINGS = ("7bit", "8bit", "binary")


class Event:
    """A decoded CloudEvent: its context attributes (exactly as sent) and its data.

    ``null_data`` tells an explicit JSON ``null`` data (``"data": null`` in structured or batch
    mode, a ``null`` body with a JSON Content-Type in binary mode) from no data at all: json
    §3.1.1 keeps them apart, but ``data`` is None for both, and the cloudevents SDK's
    ``CloudEvent`` cannot tell them apart either (its ``data`` is None for both, and it drops
    the member on output). So pyfunc keeps the difference here: the handler sees ``None``, and
    an event echoed back (the SDK object pyfunc handed over, returned with its data still None)
    goes out with ``"data": null`` again. A reply given as ``(attributes, None)`` has no data.
    """

    __slots__ = ("attributes", "data", "null_data")

    def __init__(self, attributes: dict[str, Any], data: Any = None, null_data: bool = False) -> None:
        self.attributes = attributes
        self.data = data
        self.null_data = null_data

    def __repr__(self) -> str:
        null = ", null_data=True" if self.null_data else ""
        return f"Event({self.attributes!r}, data={self.data!r}{null})"


class _JsonNull:
    """The reply data ``JSON_NULL``: an explicit ``"data": null``, not "no data" (None)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "JSON_NULL"


JSON_NULL: Any = _JsonNull()


# --------------------------------------------------------------------------- content types


@functools.lru_cache(maxsize=256)  # the same few content types arrive on every request
def media_type(content_type: Optional[str]) -> str:
    """The media type without parameters, lower-cased (``"Text/Plain; charset=x"`` → ``"text/plain"``)."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def is_json(content_type: Optional[str]) -> bool:
    """json §3.1.1: ``*/json`` or ``*/*+json``; an absent type is treated as application/json."""
    mt = media_type(content_type)
    return not mt or mt.endswith("/json") or mt.endswith("+json")


def is_text(content_type: Optional[str]) -> bool:
    mt = media_type(content_type)
    return mt.startswith("text/") or mt in ("application/xml", "application/x-www-form-urlencoded")


def _charset(content_type: str) -> str:
    for param in content_type.split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip('"') or "utf-8"
    return "utf-8"


def content_mode(content_type: Optional[str]) -> str:
    """binding §3: the receiver tells the three content modes apart by the Content-Type prefix."""
    mt = media_type(content_type)
    if mt.startswith("application/cloudevents-batch"):
        return BATCH
    if mt.startswith("application/cloudevents"):
        return STRUCTURED
    return BINARY


# --------------------------------------------------------------------------- header values


def decode_header_value(raw: str) -> str:
    """binding §3.1.3.2: unescape a quoted-string, then one strict round of percent-decoding.

    ``raw`` is a WSGI environ value, i.e. the header's bytes decoded as latin-1.
    """
    if len(raw) >= 2 and raw[0] == '"' and raw[-1] == '"':
        raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
    if "%" not in raw and raw.isascii():
        return raw
    try:
        return unquote_to_bytes(raw.encode("latin-1")).decode("utf-8")
    except (UnicodeDecodeError, UnicodeEncodeError):
        # "encoded byte sequences which are invalid in UTF-8 MUST be rejected"
        raise BadEvent(
            "invalid-header-encoding",
            f"a ce- header value is not valid percent-encoded UTF-8: {raw[:80]!r}",
        ) from None


def encode_header_value(value: Any, plain_only: bool = False) -> Optional[str]:
    """binding §3.1.3.2: percent-encode the canonical string form (upper-case hex, UTF-8).

    With ``plain_only``, None instead of a value that would be percent-encoded (see
    :func:`encode_binary_plain`)."""
    text = value if type(value) is str else canonical_string(value)
    if not _NEEDS_PERCENT.search(text):
        return text
    return None if plain_only else _percent_encoded(text)


def _percent_encoded(text: str) -> str:
    return "".join(
        "".join(f"%{b:02X}" for b in ch.encode("utf-8")) if _NEEDS_PERCENT.match(ch) else ch
        for ch in text
    )


def canonical_string(value: Any) -> str:
    """The canonical string of a CloudEvents type system value (spec §"Type System")."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (bytes, bytearray)):
        import base64  # here and below: binary data only, not a cost of every start

        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime.datetime):
        moment: datetime.datetime = value if value.tzinfo is not None else value.replace(tzinfo=datetime.timezone.utc)
        return moment.isoformat().replace("+00:00", "Z")
    return str(value)


# --------------------------------------------------------------------------- decoding


def _check_attributes(attributes: dict[str, Any], where: str = "") -> None:
    """Required attributes present and non-empty, a known specversion, valid names."""
    for name in REQUIRED_ATTRIBUTES:
        value = attributes.get(name)
        if value is None or value == "":
            raise BadEvent("missing-attribute", f"{where}required attribute '{name}' is missing")
        if not isinstance(value, str):
            raise BadEvent(
                "invalid-attribute", f"{where}attribute '{name}' must be a string"
            )
    if attributes["specversion"] not in SUPPORTED_SPECVERSIONS:
        raise BadEvent(
            "unsupported-specversion",
            f"{where}specversion {attributes['specversion']!r} is not supported "
            f"(supported: {', '.join(SUPPORTED_SPECVERSIONS)})",
        )
    for name in _RESERVED_NAMES:
        if name in attributes:
            raise BadEvent(
                "invalid-attribute",
                f"{where}{name!r} cannot be a context attribute: the name is reserved for the event data "
                f"(a ce-{name.replace('_', '-')} header is not allowed)",
            )
    valid_names = _VALID_NAMES
    for name, value in attributes.items():
        if name not in valid_names and not _valid_name(name):
            raise BadEvent(
                "invalid-attribute-name",
                f"{where}attribute name {name!r} is not lower-case letters and digits",
            )
        # json §2.2: an attribute is a JSON string, integer or boolean; an array or object made
        # code that reads it as a string (traceparent, the log fields) raise: a 500, not a 400.
        if type(value) is not str and not isinstance(value, (bool, int)):
            raise BadEvent("invalid-attribute", f"{where}attribute {name!r} must be a string, integer or boolean")
    time_value = attributes.get("time")
    if time_value is not None and not _is_rfc3339(time_value):
        # spec §"time": "If present, MUST adhere to the format specified in RFC 3339"; json §2.2
        # maps Timestamp to a JSON string, so a number or boolean is no time either.
        raise BadEvent("invalid-time", f"{where}attribute 'time' is not an RFC 3339 timestamp: {time_value!r:.80}")


def _is_rfc3339(value: Any) -> bool:
    """RFC 3339 §5.6 ``date-time`` with its §5.7 ranges; a regex and a few int compares, no datetime.

    Not ``datetime.fromisoformat``: before Python 3.11 it refuses "Z" and most fraction lengths,
    from 3.11 on it accepts ISO 8601 forms RFC 3339 does not allow (week dates, no seconds, a
    space or no separator), so it would answer differently by Python version.
    """
    match = _RFC3339.match(value) if isinstance(value, str) else None
    if match is None:
        return False
    year, month, day, hour, minute, second, off_hour, off_minute = match.groups()
    # Two ASCII digits each: comparing the strings is comparing the numbers, and cheaper.
    # RFC 3339 §5.7: second 60 is a leap second (its exact validity depends on the UTC table).
    if hour > "23" or minute > "59" or second > "60" or not ("01" <= month <= "12") or day == "00":
        return False
    if off_hour is not None and (off_hour > "23" or off_minute > "59"):
        return False
    d = int(day)
    if d > _DAYS_IN_MONTH[int(month)]:
        return False
    if d == 29 and month == "02":
        y = int(year)
        return not (y % 4 or (y % 100 == 0 and y % 400))
    return True


def decode_data(body: bytes, content_type: Optional[str], *, guess: bool = False) -> Any:
    """Event data from raw bytes, by ``datacontenttype`` (json §3.1.2 rules, applied to binary mode).

    JSON types become Python values, text types ``str``, anything else stays ``bytes``.
    With ``guess`` (binary mode without a Content-Type) JSON is tried and bytes kept if it
    is not JSON, so nothing the sender sent is lost or rejected on a guess.
    """
    if not body:
        return None
    if is_json(content_type):
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as exc:  # RecursionError: too deeply nested
            if guess:
                return body
            raise BadEvent("malformed-json", f"event data is not valid JSON: {exc}") from None
    if is_text(content_type):
        try:
            return body.decode(_charset(content_type or ""))
        except (UnicodeDecodeError, LookupError) as exc:
            raise BadEvent("invalid-data-encoding", f"event data is not valid text: {exc}") from None
    return body


class _HeaderNames(dict[str, str]):
    """WSGI environ key → the attribute its ``ce-`` header carries ("" for any other key).

    The same two dozen keys arrive on every request: each is sliced and lower-cased once, not
    per request. Bounded, so hostile header names cannot grow it.
    """

    def __missing__(self, key: str) -> str:
        name = key[8:].lower() if key[:8] == "HTTP_CE_" else ""
        if len(self) < 4096:
            self[key] = name
        return name


_CE_HEADER_NAMES = _HeaderNames()


def decode_binary(environ: Environ, body: bytes) -> Event:
    """binding §3.1: attributes from ``ce-`` headers, data is the body, Content-Type is datacontenttype."""
    # WSGI spells header "ce-foo" as HTTP_CE_FOO; "-" and "_" both become "_", so an
    # underscore here was a dash on the wire and attribute names never contain either.
    names = _CE_HEADER_NAMES
    attributes: dict[str, Any] = {name: decode_header_value(value) for key, value in environ.items()
                                  if (name := names[key])}
    if "specversion" not in attributes:
        raise BadEvent(
            "not-a-cloudevent",
            "the request carries no CloudEvent: no ce-specversion header "
            "and the Content-Type is not application/cloudevents+json",
        )
    # binding §3.1.1: a ce-datacontenttype header MUST NOT be present; Content-Type is authoritative.
    attributes.pop("datacontenttype", None)
    content_type = environ.get("CONTENT_TYPE")
    if content_type:
        attributes["datacontenttype"] = content_type
    _check_attributes(attributes)
    if "datacontentencoding" in attributes and attributes["specversion"] == "0.3" and body:
        body = _content_decoded(body, attributes["datacontentencoding"], "the body")
    data = decode_data(body, content_type, guess=not content_type)
    # A non-empty body that decodes to None is a JSON null: data present, and null.
    return Event(attributes, data, data is None and bool(body))


def _content_decoded(data: Any, encoding: Any, what: str, where: str = "") -> Any:
    """CloudEvents 0.3 ``datacontentencoding``: the real bytes behind base64-encoded data.

    Without this a 0.3 handler got the base64 text instead of its data (the SDK does the same).
    Only 0.3 defines the attribute; in 1.0 it is an extension with no meaning, left alone.
    """
    if not isinstance(encoding, str):
        raise BadEvent("invalid-attribute", f"{where}attribute 'datacontentencoding' must be a string")
    name = encoding.strip().lower()
    if name in _IDENTITY_ENCODINGS:
        return data
    if name != "base64":
        raise BadEvent(
            "unsupported-data-encoding",
            f"{where}datacontentencoding {encoding!r:.80} is not supported (supported: base64, 7bit, 8bit, binary)",
        )
    if not isinstance(data, (str, bytes)):
        raise BadEvent("invalid-data-encoding", f"{where}datacontentencoding is base64 but the data is not a string")
    try:
        # RFC 4648 §3.3: characters outside the alphabet are rejected, not skipped. Line breaks,
        # which RFC 2045 base64 allows, are removed first.
        text = data.replace("\r", "").replace("\n", "") if isinstance(data, str) else data.translate(None, b"\r\n")
        import base64

        return base64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error, or non-ASCII text
        raise BadEvent(
            "invalid-data-encoding", f"{where}datacontentencoding is base64 but {what} is not valid base64"
        ) from None


def _parse_json(body: bytes, what: str) -> Any:
    if not body:
        raise BadEvent("empty-body", f"{what} body is empty")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: too deeply nested
        raise BadEvent("malformed-json", f"{what} body is not valid JSON: {exc}") from None


def event_from_json(obj: Any, where: str = "") -> Event:
    """json §3: one JSON object → an Event; ``data_base64`` → bytes (json §3.1.2)."""
    if not isinstance(obj, dict):
        raise BadEvent("invalid-event", f"{where}a CloudEvent must be a JSON object")
    attributes = dict(obj)
    has_b64 = "data_base64" in attributes
    has_data = "data" in attributes
    data = attributes.pop("data", None)
    data_b64 = attributes.pop("data_base64", None)
    if has_b64 and "data" in obj:
        raise BadEvent("invalid-event", f"{where}'data' and 'data_base64' are mutually exclusive")
    # json §3: an OPTIONAL attribute MAY be represented as null, meaning "absent".
    for name in [n for n, v in attributes.items() if v is None]:
        del attributes[name]
    _check_attributes(attributes, where)
    if has_b64 and data_b64 is not None:
        if not isinstance(data_b64, str):
            raise BadEvent("invalid-event", f"{where}'data_base64' must be a string")
        import base64

        try:
            data = base64.b64decode(data_b64, validate=True)
        except ValueError:
            raise BadEvent("invalid-event", f"{where}'data_base64' is not valid base64") from None
    elif "datacontentencoding" in attributes and attributes["specversion"] == "0.3" and data is not None:
        # JSON format v0.3 §3.1: with datacontentencoding "base64" the data member is the
        # base64 string of the binary data, as data_base64 is in 1.0.
        data = _content_decoded(data, attributes["datacontentencoding"], "'data'", where)
    elif isinstance(data, str) and not is_json(attributes.get("datacontenttype")):
        pass  # json §3.1.2: a non-JSON type's data member is "an encoded content string"
    # json §3.1.1: an explicit "data": null is data (a JSON null), not its absence: kept apart.
    return Event(attributes, data, has_data and data is None)


def decode_structured(body: bytes) -> Event:
    """binding §3.2 with the JSON event format."""
    return event_from_json(_parse_json(body, "structured CloudEvent"))


def decode_batch(body: bytes) -> list[Event]:
    """binding §3.3 / json §4: a JSON array of events; it MAY be empty; one specversion for all."""
    items = _parse_json(body, "CloudEvents batch")
    if not isinstance(items, list):
        raise BadEvent("invalid-batch", "a CloudEvents batch must be a JSON array")
    events = [event_from_json(item, f"batch[{i}]: ") for i, item in enumerate(items)]
    if len({e.attributes["specversion"] for e in events}) > 1:
        raise BadEvent("invalid-batch", "all events in a batch MUST have the same specversion")
    return events


def decode_request(environ: Environ, body: bytes) -> tuple[str, list[Event]]:
    """Decode any of the three content modes; returns ``(mode, events)``."""
    content_type = environ.get("CONTENT_TYPE")
    mode = content_mode(content_type)
    if mode == BINARY:
        return mode, [decode_binary(environ, body)]
    if mode == STRUCTURED:
        if not media_type(content_type).endswith("+json"):
            raise BadEvent(
                "unsupported-event-format",
                f"structured mode with format {media_type(content_type)!r}; only JSON is supported",
            )
        return mode, [decode_structured(body)]
    return mode, decode_batch(body)


# --------------------------------------------------------------------------- encoding


def now_rfc3339() -> str:
    """The current UTC time in RFC 3339 with microseconds (spec §"time")."""
    return rfc3339_utc(time.time())


def new_event_id() -> str:
    """A random (version 4) UUID string for a reply's ``id`` (spec §"id": unique per source).

    From Python's Mersenne Twister (seeded from the OS, reseeded after fork) rather than
    ``uuid.uuid4()``: ids need to be unique, not unpredictable, and ``os.urandom`` is a system
    call, which on every request releases the GIL to the other threads.
    """
    hexa = "%032x" % (_getrandbits(128) & _UUID4_CLEAR | _UUID4_SET)
    return f"{hexa[:8]}-{hexa[8:12]}-{hexa[12:16]}-{hexa[16:20]}-{hexa[20:]}"


def _first_getrandbits(bits: int) -> int:
    """``random.getrandbits``, imported by the first reply event instead of at every start."""
    global _getrandbits
    import random

    _getrandbits = random.getrandbits
    return _getrandbits(bits)


_getrandbits: Callable[[int], int] = _first_getrandbits


# RFC 4122 §4.4: version 4 in bits 76-79, variant 10 in bits 62-63.
_UUID4_CLEAR = ~((0xF << 76) | (0x3 << 62)) & ((1 << 128) - 1)
_UUID4_SET = (0x4 << 76) | (0x2 << 62)


def complete_reply(
    attributes: dict[str, Any],
    incoming: Optional[Event],
    default_source: str,
) -> dict[str, Any]:
    """Fill the attributes a reply needs (a new dict; the handler's stays untouched).

    ``specversion``, ``id`` and ``time`` are filled when missing, as 0.1.0 (through the SDK)
    did. A reply that reuses the incoming ``source`` + ``id`` gets a fresh ``id``: producers
    MUST keep ``source`` + ``id`` unique per distinct event (spec §"id").
    """
    reply = {}
    valid_names = _VALID_NAMES
    for name, value in attributes.items():
        if name in valid_names:  # the common case: a name seen before, checked then
            key = name
        else:
            key = name.lower() if isinstance(name, str) else name
            if not isinstance(key, str) or not _valid_name(key):
                raise InvalidReply(f"reply attribute name {name!r} is not lower-case letters and digits")
        if key in _RESERVED_NAMES:  # spec §"Attribute Naming Convention", as on input
            raise InvalidReply(f"a reply cannot have an attribute named {key!r}; return (attributes, data)")
        if value is not None:
            reply[key] = value
    reply.setdefault("specversion", "1.0")
    reply.setdefault("source", default_source)
    if "type" not in reply:
        raise InvalidReply("the reply event has no 'type' attribute")
    if reply["specversion"] not in SUPPORTED_SPECVERSIONS:
        raise InvalidReply(f"the reply event has an unsupported specversion {reply['specversion']!r}")
    if "id" not in reply or (
        incoming is not None
        and reply["id"] == incoming.attributes.get("id")
        and reply["source"] == incoming.attributes.get("source")
    ):
        reply["id"] = new_event_id()
    reply.setdefault("time", now_rfc3339())
    return reply


def _data_bytes(data: Any, content_type: Optional[str]) -> tuple[bytes, Optional[str]]:
    """Body bytes for binary mode, and the Content-Type to send (binding §3.1.1, §3.1.2)."""
    if data is None:
        return b"", content_type
    if data is JSON_NULL:  # a JSON null is the body "null"; a non-JSON type has no null: no body
        return (b"null", content_type or "application/json") if is_json(content_type) else (b"", content_type)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data), content_type or "application/octet-stream"
    if isinstance(data, str) and content_type and not is_json(content_type):
        # A text payload goes out as itself, not JSON-quoted (0.1.0 quoted it: a bug).
        return data.encode(_charset(content_type)), content_type
    return dump_json(data), content_type or "application/json"


def dump_json(value: Any) -> bytes:
    try:
        return _json_encode(value).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        # The exception's message stays out of the 500 body (the app logs it as the cause).
        raise InvalidReply("the reply data cannot be encoded as JSON") from exc


def _json_default(value: Any) -> Any:
    """Dataclasses, pydantic models and datetimes in a reply encode as their JSON form."""
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# One encoder for every reply: json.dumps with options builds a JSONEncoder per call (a
# quarter of the cost of a small event's dump). encode() keeps no state: threads share it.
_json_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_json_default).encode


def encode_binary(attributes: dict[str, Any], data: Any) -> tuple[list[tuple[str, str]], bytes]:
    """binding §3.1: ``ce-`` headers plus the data as body; never a ``ce-datacontenttype``."""
    encoded = _encode_binary(attributes, data, plain_only=False)
    assert encoded is not None
    return encoded


def encode_binary_plain(attributes: dict[str, Any], data: Any) -> Optional[tuple[list[tuple[str, str]], bytes]]:
    """:func:`encode_binary`, or None when a ``ce-`` header value would be percent-encoded.

    Only strings can be (the canonical forms of the other types are printable ASCII), and not
    ``datacontenttype``, which binary mode sends as the plain Content-Type header.
    """
    return _encode_binary(attributes, data, plain_only=True)


def _encode_binary(attributes: dict[str, Any], data: Any,
                   plain_only: bool) -> Optional[tuple[list[tuple[str, str]], bytes]]:
    headers = []
    for name, value in attributes.items():
        if name == "datacontenttype":
            continue
        text = encode_header_value(value, plain_only)
        if text is None:
            return None
        headers.append(("ce-" + name, text))
    content_type = attributes.get("datacontenttype")
    body, content_type = _data_bytes(data, content_type)
    if body and _base64_encoded_03(attributes):
        import base64

        body = base64.b64encode(body)  # the reply says its body is base64: make it so
    if content_type:
        if not isinstance(content_type, str) or not _PRINTABLE_HEADER.match(content_type):
            raise InvalidReply(f"datacontenttype {content_type!r} is not a valid Content-Type value")
        headers.append(("Content-Type", content_type))
    return headers, body


def event_to_json(attributes: dict[str, Any], data: Any) -> dict[str, Any]:
    """json §3: attributes as members; bytes → ``data_base64``; JSON data stored as a JSON value."""
    obj: dict[str, Any] = {
        name: value if isinstance(value, (str, int, bool)) else canonical_string(value)
        for name, value in attributes.items()
    }
    if obj.get("specversion") == "0.3" and (
        isinstance(data, (bytes, bytearray, memoryview)) or (data is not None and _base64_encoded_03(obj))
    ):
        # JSON format v0.3 has no data_base64: binary data is a base64 string in "data",
        # flagged by datacontentencoding "base64" (what the decoder above reads back).
        content_type = obj.get("datacontenttype")
        raw = _data_bytes(data, content_type if isinstance(content_type, str) else None)[0]
        import base64

        obj["datacontentencoding"] = "base64"
        obj["data"] = base64.b64encode(raw).decode("ascii")
    elif isinstance(data, (bytes, bytearray, memoryview)):
        import base64

        obj["data_base64"] = base64.b64encode(bytes(data)).decode("ascii")
    elif data is JSON_NULL:
        obj["data"] = None  # json §3.1.1: an explicit null, kept as the sender sent it
    elif data is not None:
        obj["data"] = data
    return obj


def _base64_encoded_03(attributes: dict[str, Any]) -> bool:
    encoding = attributes.get("datacontentencoding")
    return (
        attributes.get("specversion") == "0.3" and isinstance(encoding, str) and encoding.strip().lower() == "base64"
    )


def encode_structured(attributes: dict[str, Any], data: Any) -> tuple[list[tuple[str, str]], bytes]:
    return [("Content-Type", STRUCTURED_CONTENT_TYPE)], dump_json(event_to_json(attributes, data))


def encode_batch(events: Iterable[tuple[dict[str, Any], Any]]) -> tuple[list[tuple[str, str]], bytes]:
    body = dump_json([event_to_json(a, d) for a, d in events])
    return [("Content-Type", BATCH_CONTENT_TYPE)], body
