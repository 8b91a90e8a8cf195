"""The batch lane: the events of a batch called and answered as a batch, without per-event detours.

A batch (binding §3.3) is one call per event. Through the general steps (_invocation.invoke)
each event pays for what a single request needs once: two clock reads and the timeout/async
dispatch of ``Invoker.call``, the outcome dispatch of ``Replies.conclude``, an observer call and
a ``Response`` object per reply. For a batch of 10 that was most of pyfunc's distance to the
raw-waitress limit (bench/instructions.py, batch: the app's instructions per request).

This lane runs when none of that applies (no dedup, no metrics, no tracing, no timeout, a
synchronous handler, replies answered as a batch: :func:`eligible`) and only for the common
outcome: the handler returned normally and its reply encodes. Everything else, event by event,
goes through the general code (``Replies.conclude``, ``Replies.batch``) with what the handler
already returned or raised, so answers, logs and status codes are the general path's and the
handler never runs twice.
"""

from __future__ import annotations

import inspect

from . import _codec as codec
from ._errors import InvalidReply
from ._invocation import _NEVER_AWAITABLE, Observer
from ._replies import BATCH_ITEM, NO_REPLY, _BatchReply
from ._responses import Response, reply_event

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any

    from ._invocation import Invoker, Prepared

__all__ = ["answer", "eligible"]


def eligible(invoker: Invoker) -> bool:
    """Whether ``invoker``'s batches may take the lane: nothing observes or wraps a call, and the
    replies are encoded together (not so with dedup, which keeps each reply on its own)."""
    return (not invoker.traced and not invoker._coroutines and invoker._executor is None
            and type(invoker.observer) is Observer and invoker.replies.item_mode == BATCH_ITEM)


def answer(invoker: Invoker, prepared: Prepared) -> Any:
    """The response to a prepared batch: each of its calls made, in order, and concluded."""
    function = invoker.function
    replies = invoker.replies
    complete = replies.complete
    to_json = codec.event_to_json
    environ = prepared.environ
    items: list[Any] = []  # per event: its reply's JSON object, NO_REPLY, or a general-path response
    general = False
    for call, event in zip(prepared.calls, prepared.events):
        try:
            if call.error is not None:
                raise call.error
            result = function(*call.args, **call.kwargs)
            if type(result) not in _NEVER_AWAITABLE and inspect.isawaitable(result):
                result = invoker.runner().run(result, invoker.timeout)  # a sync wrapper around a coroutine
        except BaseException as exc:  # noqa: B036 - concluded as the general path does (the failure table)
            items.append(replies.conclude(environ, event, BATCH_ITEM, False, exc)[1])
            general = True
            continue
        try:
            reply = result if (type(result) is tuple and len(result) == 2 and type(result[0]) is dict) \
                else reply_event(result)
            if reply is None:
                items.append(NO_REPLY)
                continue
            items.append(to_json(complete(reply[0], event, environ), reply[1]))
        except Exception:  # noqa: BLE001 - a werkzeug response or an invalid reply: the general path's
            items.append(replies.conclude(environ, event, BATCH_ITEM, True, result)[1])
            general = True
    if not general:
        try:
            return Response(200, [("Content-Type", codec.BATCH_CONTENT_TYPE)],
                            codec.dump_json([item for item in items if item is not NO_REPLY]))
        except InvalidReply:
            pass  # a reply's data cannot be encoded: the general answer names the event
    return replies.batch(prepared.events, [_BatchReply(item) if type(item) is dict else item for item in items])
