"""Explicit outcomes a handler raises: ``pyfunc.Retry`` and ``pyfunc.Drop``.

A handler that fails with an ordinary exception gets a 500, which Knative eventing retries
with backoff and then dead-letters: right for a bug, wrong when the handler *knows* better.
``Retry`` says "not now, try again" (a dependency is down, a rate limit was hit) and ``Drop``
says "never": the event can not be processed, retrying cannot help, so it should go to the
dead-letter sink at once instead of after every retry. See docs/delivery.md.

This module imports nothing: a handler's ``from pyfunc import Retry`` costs no runtime module.
"""

from __future__ import annotations

import math

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Optional

# Knative eventing retries 5xx, 404, 409 and 429 (the data-plane contract's table, "Event
# Acknowledgement and Delivery Retry"; its dispatchers 408 too) with the backoff of the
# Trigger's or Subscription's `delivery` and, with the delivery-retryafter feature, waits at
# least a Retry-After it is sent on 429 and 503 (capped by `delivery.retryAfterMax`).
RETRY_STATUS = 503
# Any other 4xx is not retried: the event goes to the dead-letter sink (or is dropped when
# there is none). 422 "Unprocessable Content": the request was well-formed, its content refused.
DROP_STATUS = 422
# The 4xx Knative retries (every 5xx is retried too); any other 4xx is dead-lettered.
RETRIED_4XX = (404, 408, 409, 429)


class Outcome(Exception):  # noqa: N818 - the public names are Retry and Drop, not *Error
    """Base of the outcomes a handler raises on purpose (logged at WARNING, no traceback)."""

    status = 500
    problem = "function-error"

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


class Retry(Outcome):
    """Fail this event so that it is redelivered: ``503 Service Unavailable``.

    ``after`` (seconds) becomes a ``Retry-After`` header, rounded up to whole seconds as HTTP
    requires; senders that honour it (Knative with ``delivery.retryAfterMax``) wait that long.
    ``raise pyfunc.Retry(after=30, reason="inventory service is down")``.
    """

    status = RETRY_STATUS
    problem = "retry"

    def __init__(self, reason: str = "", *, after: Optional[float] = None) -> None:
        if after is not None and (not isinstance(after, (int, float)) or after < 0 or math.isnan(after)):
            raise ValueError(f"Retry(after=...) must be a non-negative number of seconds, not {after!r}")
        super().__init__(reason)
        self.after = after

    @property
    def retry_after(self) -> Optional[str]:
        """The ``Retry-After`` header value (delay-seconds, RFC 9110 §10.2.3), or None."""
        return None if self.after is None else str(math.ceil(self.after))

    def __repr__(self) -> str:
        return f"Retry(reason={self.reason!r}, after={self.after!r})"


class Drop(Outcome):
    """Refuse this event for good: ``422``, which Knative does not retry but dead-letters.

    ``raise pyfunc.Drop("order 17 references an unknown customer")``: the reason goes into the
    problem+json body (the dead-letter sink's copy of the response names it) and the log.
    """

    status = DROP_STATUS
    problem = "dropped"

    def __repr__(self) -> str:
        return f"Drop({self.reason!r})"


def outcome_of_status(status: int, has_body: bool) -> str:
    """The outcome (docs/delivery.md) of a response the handler made itself: an HTTP function's
    status, a ``flask.abort()``: what Knative will do with it."""
    if status < 400:
        return "reply" if has_body and status != 204 else "no-reply"
    if status in RETRIED_4XX or status == 503:  # Knative retries these with backoff
        return "retry"
    if status == 504:
        return "timeout"
    if status >= 500:
        return "error"
    return "drop"  # every other 4xx goes to the dead-letter sink
