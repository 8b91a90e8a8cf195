"""What a request's context carries into everything it causes: its trace and its RequestReply correlation.

**Trace context.** A request's trace is, in order: the W3C ``traceparent``/``tracestate`` HTTP
headers; else B3, as one ``b3`` header or as ``X-B3-TraceId``/``X-B3-SpanId``/``X-B3-Sampled``/
``X-B3-Flags`` (Zipkin's formats: Knative sent only B3 before 1.21, and Istio's sidecars still
propagate it); else the event's distributed-tracing extension (where the event was created). B3
is turned into the W3C form (a 64-bit trace id padded to 128 bits, the sampling decision into
the flags), so the access line and log context (``trace_id``), the OpenTelemetry span's parent
and the reply event's ``traceparent`` extension all name the same trace, whichever style came in.

**RequestReply** (Knative Eventing 1.20+, ``eventing.knative.dev/v1alpha1``): the RequestReply
resource stamps each request event with a correlation attribute (``correlationid`` unless its
``spec.correlationAttribute`` says otherwise), ``<original id>:<encrypted id>``, and takes as the
reply the event whose reply attribute (``replyid``, ``spec.replyAttribute``) holds that value
unchanged (knative/eventing ``pkg/requestreply/correlation_id.go``; the defaults in
``pkg/apis/eventing/v1alpha1/requestreply_defaults.go``). So a reply to an event that has
``correlationid`` carries ``replyid`` = that value, and ``correlationid`` itself too, so that a
chain of functions can pass it on. A handler whose reply is an intermediate step returns
``replyid: None``; one whose RequestReply uses other attribute names sets them itself.
Whatever the handler sets wins; the reply's ``id`` stays its own (codec.complete_reply).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Mapping, Optional

__all__ = ["CORRELATION", "REPLY", "carried", "incoming", "trace_id"]

CORRELATION = "correlationid"  # RequestReply's default spec.correlationAttribute
REPLY = "replyid"  # and spec.replyAttribute
_HEX = frozenset("0123456789abcdef")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


def _hex(text: str, length: int) -> bool:
    return len(text) == length and _HEX.issuperset(text)


def valid_traceparent(value: Any) -> Optional[str]:
    """The trace id of a W3C ``traceparent`` (``vv-<32 hex>-<16 hex>-<2 hex>``), or None if it is not one."""
    if not isinstance(value, str):
        return None
    parts = value.strip().split("-")
    if (len(parts) < 4 or not _hex(parts[0], 2) or parts[0] == "ff" or not _hex(parts[1], 32)
            or not _hex(parts[2], 16) or not _hex(parts[3], 2) or parts[1] == _ZERO_TRACE or parts[2] == _ZERO_SPAN):
        return None
    if parts[0] == "00" and len(parts) != 4:
        return None
    return parts[1]


def _from_b3(trace: str, span: str, sampled: Optional[str], flags: Optional[str] = None) -> Optional[str]:
    trace, span = trace.strip().lower(), span.strip().lower()
    if _hex(trace, 16):
        trace = trace.rjust(32, "0")  # a 64-bit B3 trace id: the W3C form left-pads it
    if not _hex(trace, 32) or not _hex(span, 16) or trace == _ZERO_TRACE or span == _ZERO_SPAN:
        return None
    decided = (sampled or "").strip().lower() in ("1", "d", "true") or (flags or "").strip() == "1"
    return f"00-{trace}-{span}-{'01' if decided else '00'}"


def _b3(environ: Mapping[str, Any]) -> Optional[str]:
    """A B3 context (single ``b3`` header first, then the ``X-B3-*`` headers) as a W3C traceparent."""
    single = environ.get("HTTP_B3")
    if single:
        parts = single.split("-")
        if len(parts) >= 2:  # {TraceId}-{SpanId}[-{SamplingState}[-{ParentSpanId}]]; "0", "1", "d" alone carry no ids
            return _from_b3(parts[0], parts[1], parts[2] if len(parts) > 2 else None)
        return None
    trace = environ.get("HTTP_X_B3_TRACEID")
    span = environ.get("HTTP_X_B3_SPANID")
    if trace and span:
        return _from_b3(trace, span, environ.get("HTTP_X_B3_SAMPLED"), environ.get("HTTP_X_B3_FLAGS"))
    return None


def transport(environ: Mapping[str, Any]) -> Optional[tuple[str, str]]:
    """The HTTP request's own trace context, ``(traceparent, tracestate)``: W3C, else B3; None without one."""
    header = environ.get("HTTP_TRACEPARENT")
    if header and valid_traceparent(header):
        return header.strip(), environ.get("HTTP_TRACESTATE", "")
    if "HTTP_B3" in environ or "HTTP_X_B3_TRACEID" in environ:
        converted = _b3(environ)
        if converted is not None:
            return converted, ""
    return None


def incoming(environ: Mapping[str, Any], attributes: Optional[Mapping[str, Any]] = None) -> Optional[tuple[str, str]]:
    """The request's trace context (module docstring): the transport's, else the event's extension."""
    found = transport(environ)
    if found is not None:
        return found
    if attributes:
        extension = attributes.get("traceparent")
        if isinstance(extension, str) and valid_traceparent(extension):
            state = attributes.get("tracestate")
            return extension.strip(), state if isinstance(state, str) else ""
    return None


def trace_id(environ: Mapping[str, Any], attributes: Optional[Mapping[str, Any]] = None) -> Optional[str]:
    """The trace id of the request (for the log context and the access line), or None."""
    if not ("HTTP_TRACEPARENT" in environ or "HTTP_B3" in environ or "HTTP_X_B3_TRACEID" in environ
            or (attributes and "traceparent" in attributes)):
        return None  # the common case, with no parsing
    found = incoming(environ, attributes)
    return found[0].split("-")[1] if found is not None else None


def carried(handler_attributes: Mapping[str, Any], event_attributes: Mapping[str, Any],
            environ: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes a reply gets from its request, short of those the handler set (even to None)."""
    extra: dict[str, Any] = {}
    correlation = event_attributes.get(CORRELATION)
    found = incoming(environ, event_attributes)
    if found is None and correlation is None:
        return extra
    handler_attributes = {name.lower() if isinstance(name, str) else name: None for name in handler_attributes}
    if found is not None and "traceparent" not in handler_attributes:
        extra["traceparent"] = found[0]
        if found[1] and "tracestate" not in handler_attributes:
            extra["tracestate"] = found[1]
    if correlation is not None:
        if CORRELATION not in handler_attributes:
            extra[CORRELATION] = correlation
        if REPLY not in handler_attributes:
            extra[REPLY] = correlation
    return extra
