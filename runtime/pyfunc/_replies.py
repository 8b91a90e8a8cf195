"""A call's result → its HTTP response: conclude one call, encode a reply event, answer a batch.

Concluding never raises: whatever the handler returned or raised ends as a response, through
the failure table (_failures.py) when it raised or its reply cannot be encoded.
"""

from __future__ import annotations

from . import _codec as codec
from ._codec import BATCH, STRUCTURED
from ._errors import InvalidReply, RequestError
from ._failures import outcome_of_response
from ._outcomes import RETRIED_4XX
from ._responses import Response, http_response, is_werkzeug_response, problem, reply_event

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Optional

    from ._codec import Event
    from ._failures import Failures
    from ._types import Environ

__all__ = ["BATCH_ITEM", "NO_REPLY", "Replies", "status_of"]

NO_REPLY = Response(202, [], b"")
# The reply mode of one event of a batch answered as a batch without dedup: see _BatchReply.
BATCH_ITEM = "batch-item"
# The distributed tracing extension's attributes, and the WSGI keys of their HTTP headers.
_TRACE_CONTEXT = (("traceparent", "HTTP_TRACEPARENT"), ("tracestate", "HTTP_TRACESTATE"))


class Replies:
    """Encodes what calls returned, in the configured reply mode (``None``: auto)."""

    def __init__(self, default_source: str, reply_mode: Optional[str], failures: Failures,
                 iterate: Callable[[Any], Iterable[Any]]) -> None:
        self.default_source = default_source
        self.reply_mode = reply_mode
        self.failures = failures
        self.iterate = iterate  # an async iterator a handler returned, as a streamed body
        # Each event of a batch is encoded together with the others (BATCH_ITEM) when the batch
        # is answered as a batch; an invoker that keeps each reply (dedup) sets STRUCTURED.
        self.item_mode = BATCH_ITEM if (reply_mode or BATCH) == BATCH else STRUCTURED

    def conclude(self, environ: Environ, event: Optional[Event], mode: Optional[str], ok: bool,
                 result: Any) -> tuple[Optional[str], Any]:
        """The outcome and response of one call that returned ``result`` (``ok``) or raised it.

        The outcome is None for an HTTP handler's response: computed from it only if counted."""
        try:
            if not ok:
                raise result
            if event is None:
                return None, http_response(result, self.iterate)
            if is_werkzeug_response(result):
                return outcome_of_response(result), result
            reply = reply_event(result)
            if reply is None:
                return "no-reply", NO_REPLY
            attributes = self._complete(reply[0], event, environ)
            if mode == BATCH_ITEM:
                return "reply", _BatchReply(codec.event_to_json(attributes, reply[1]))
            return "reply", self.encode(mode or STRUCTURED, [(attributes, reply[1])])
        except BaseException as exc:  # noqa: B036 - a handler's SystemExit must not end the server
            return self.failures(exc)

    def _complete(self, attributes: dict[str, Any], event: Event, environ: Environ) -> dict[str, Any]:
        reply = codec.complete_reply(attributes, event, self.default_source)
        # Distributed tracing extension: the reply continues the incoming trace.
        for name, header in _TRACE_CONTEXT:
            if name not in reply:
                value = event.attributes.get(name) or environ.get(header)
                if value:
                    reply[name] = value
        return reply

    def encode(self, mode: str, replies: list[tuple[dict[str, Any], Any]]) -> Response:
        if mode == BATCH:
            headers, body = codec.encode_batch(replies)
            return Response(200, headers, body)
        if not replies:
            return NO_REPLY
        if len(replies) > 1:
            raise InvalidReply("several replies can only be sent in batch mode")
        attributes, data = replies[0]
        if mode != STRUCTURED:
            # Under auto, a reply that binary mode would percent-encode goes out structured: the
            # Go and JavaScript SDKs (Knative eventing's dispatchers among them) do not
            # percent-decode ce- headers (sdk-go issue 1331), so `héllo wörld` would reach the
            # next consumer as `h%C3%A9llo%20w%C3%B6rld`; JSON carries every value exactly.
            if self.reply_mode is None:
                encoded = codec.encode_binary_plain(attributes, data)
                if encoded is not None:
                    return Response(200, *encoded)
            else:
                return Response(200, *codec.encode_binary(attributes, data))
        headers, body = codec.encode_structured(attributes, data)
        return Response(200, headers, body)

    def batch(self, events: list[Event], results: list[Any]) -> Any:
        """All succeeded: 200 with the batch of replies. Any failed: no replies, a problem body
        listing each event's status, and the status of the first retriable failure (5xx, 409,
        429…: Knative redelivers the whole batch; with dedup only the events not done run
        again), else 422 (only drops: dead-lettered)."""
        if not all(isinstance(r, Response) and r.status < 300 for r in results):
            return _batch_failure(events, results)
        as_batch = (self.reply_mode or BATCH) == BATCH
        if as_batch and all(type(r) is _BatchReply or r is NO_REPLY for r in results):
            try:
                body = codec.dump_json([r.event_json for r in results if type(r) is _BatchReply])
                return Response(200, [("Content-Type", codec.BATCH_CONTENT_TYPE)], body)
            except InvalidReply:
                # A reply's data cannot be encoded: that event fails, as it would have had it
                # been encoded on its own, and the batch answers as any partial failure.
                return _batch_failure(events, [self._encode_alone(r) for r in results])
        try:
            bodies = [_structured_body(r) for r in results if r.status != 202 and r.body]
            if as_batch:
                return Response(200, [("Content-Type", codec.BATCH_CONTENT_TYPE)], b"[" + b",".join(bodies) + b"]")
            replies = [(e.attributes, e.data) for e in map(codec.decode_structured, bodies)]
            return self.encode(self.reply_mode or BATCH, replies)
        except (InvalidReply, RequestError) as exc:
            return self.failures.response(exc)

    def _encode_alone(self, response: Any) -> Any:
        """A batch item's reply encoded on its own, or the failure to encode it."""
        if type(response) is not _BatchReply:
            return response
        try:
            return Response(200, response.headers, codec.dump_json(response.event_json))
        except InvalidReply as exc:
            return self.failures.response(exc)


class _BatchReply(Response):
    """One event's reply in a batch, kept as its JSON object (json §3) until the whole batch is
    encoded with one dump: a dump per event cost as much as the event's handler (bench/, batch
    of 10). Only a batch without dedup (which stores each reply encoded) and answered as a batch."""

    __slots__ = ("event_json",)

    def __init__(self, event_json: dict[str, Any]) -> None:
        super().__init__(200, [("Content-Type", codec.STRUCTURED_CONTENT_TYPE)], b"")
        self.event_json = event_json


def _structured_body(response: Response) -> bytes:
    """A reply event as one structured-mode JSON object (a stored binary-mode reply is converted)."""
    headers = dict((name.lower(), value) for name, value in response.headers)
    body = response.body
    assert isinstance(body, bytes)
    content_type = headers.get("content-type")
    if codec.content_mode(content_type) == STRUCTURED:
        return body
    environ = {"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()}
    if content_type is not None:
        environ["CONTENT_TYPE"] = content_type
    event = codec.decode_binary(environ, body)
    return codec.encode_structured(event.attributes, event.data)[1]


def _batch_failure(events: list[Event], results: list[Any]) -> Response:
    """The answer to a batch in which some events failed (docs/delivery.md, "Batches")."""
    import json

    items: list[dict[str, Any]] = []
    first_retriable: Optional[int] = None
    retry_after: Optional[int] = None
    for index, (event, response) in enumerate(zip(events, results)):
        status = status_of(response)
        item: dict[str, Any] = {"index": index, "id": event.attributes.get("id"),
                                "source": event.attributes.get("source"), "status": status}
        if status >= 300:
            headers = response.headers if isinstance(response, Response) else list(response.headers.items())
            for name, value in headers:
                if name.lower() == "retry-after" and value.isdigit():
                    retry_after = max(retry_after or 0, int(value))
            if isinstance(response, Response) and isinstance(response.body, bytes):
                try:
                    detail = json.loads(response.body)
                    item.update(reason=detail.get("reason"), detail=detail.get("detail"))
                except (ValueError, AttributeError):
                    pass
            # Knative retries 5xx, 404, 408, 409 and 429; every other 4xx is dead-lettered at once.
            if first_retriable is None and (status >= 500 or status in RETRIED_4XX):
                first_retriable = status
        items.append(item)
    failed = sum(1 for item in items if item["status"] >= 300)
    status = first_retriable or 422
    response = problem(
        status, "batch-incomplete" if first_retriable else "batch-dropped",
        f"{failed} of {len(events)} events failed; " + (
            "the batch can be redelivered: with dedup on, only the events not done run again"
            if first_retriable else "none can be retried"),
        events=items)
    if retry_after is not None:
        response.headers.append(("Retry-After", str(retry_after)))
    return response


def status_of(response: Any) -> int:
    """The status of pyfunc's response or of a werkzeug one."""
    return response.status if isinstance(response, Response) else getattr(response, "status_code", 0)
