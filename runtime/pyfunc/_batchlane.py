"""The batch lane: the events of a batch answered as a batch, without the per-event detours.

A batch (binding §3.3) is one call per event. Through the general path (``FunctionApp._one``)
each event pays for what a single request needs once: two clock reads, the dedup and metrics
checks, the async/timeout/tracing dispatch of ``_call``, the outcome dispatch of ``_conclude``
and a ``Response`` object per reply. For a batch of 10 that was most of pyfunc's distance to the
raw-waitress limit (bench/instructions.py, batch: the app's instructions per request).

This lane runs when none of that applies (no dedup, no metrics, no tracing, no timeout, a
synchronous handler, replies answered as a batch) and only for the common outcome: the handler
returned normally and its reply encodes. Everything else, event by event, goes through the
general code (``FunctionApp._conclude``, ``_batch_response``) with what the handler already
returned or raised, so answers, logs and status codes are the same as the general path's and
the handler never runs twice.
"""

from __future__ import annotations

import inspect

from . import _codec as codec
from ._binding import Invocation
from ._codec import BATCH, Event
from ._errors import InvalidReply
from ._responses import Response, reply_event

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Optional

__all__ = ["answer_batch"]



def eligible(app: Any) -> bool:
    """Whether ``app``'s batches may take the lane (checked per batch: tracing is enabled late)."""
    return (app.dedup is None and app.metrics is None and app.tracing is None and app._async is None
            and app._executor is None and (app.reply_mode or BATCH) == BATCH)


def answer_batch(app: Any, environ: dict[str, Any], body: bytes, request: Any,
                 events: list[Event]) -> Optional[Response]:
    """The response to a batch, or None when the lane does not apply (the caller's path answers)."""
    if not eligible(app):
        return None
    from ._app import _NEVER_AWAITABLE, BATCH_ITEM, NO_REPLY, _BatchReply

    function = app.function
    arguments = app.binder.arguments
    complete = app._complete
    to_json = codec.event_to_json
    items: list[Any] = []  # per event: its reply's JSON object, NO_REPLY, or a general-path response
    general = False
    for event in events:
        try:
            args, kwargs = arguments(Invocation(environ, body, event, request))
            result = function(*args, **kwargs)
            if type(result) not in _NEVER_AWAITABLE and inspect.isawaitable(result):
                result = app._run_async(result, app.timeout)  # a sync wrapper around a coroutine
        except BaseException as exc:  # noqa: B036 - concluded as the general path does (_failure)
            items.append(app._conclude(environ, event, BATCH_ITEM, False, exc, 0.0))
            general = True
            continue
        try:
            reply = reply_event(result) if type(result) is not tuple or len(result) != 2 \
                or type(result[0]) is not dict else result
            if reply is None:
                items.append(NO_REPLY)
                continue
            items.append(to_json(complete(reply[0], event, environ), reply[1]))
        except Exception:  # noqa: BLE001 - an invalid reply: the general path says why, with the same result
            items.append(app._conclude(environ, event, BATCH_ITEM, True, result, 0.0))
            general = True
    if not general:
        try:
            return Response(200, [("Content-Type", codec.BATCH_CONTENT_TYPE)],
                            codec.dump_json([item for item in items if item is not NO_REPLY]))
        except InvalidReply:
            pass  # a reply's data cannot be encoded: the general answer names the event
    results = [_BatchReply(item) if type(item) is dict else item for item in items]
    response: Response = app._batch_response(events, results)
    return response
