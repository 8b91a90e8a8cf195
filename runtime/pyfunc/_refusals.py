"""The requests waitress refuses before the app sees them (413, 431, and 503 when the bodies in
flight would exceed the memory budget), answered as pyfunc answers.

waitress reads the head and the body on its I/O loop and refuses an oversized one itself, in
plain text, with no access line: a client got a different error shape than for every other
refusal, and the operator saw nothing. pyfunc._waitress routes those refusals here.
"""

from __future__ import annotations

import time

from . import _logs as logs
from ._responses import problem
from ._waitress import Refusal

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Callable

# status -> (reason, what was too large, the setting that sets the limit)
_REFUSALS = {
    413: ("body-too-large", "the request body is", "PYFUNC_MAX_BODY_SIZE"),
    431: ("headers-too-large", "the request line and headers are", "PYFUNC_MAX_HEADER_SIZE"),
    # The body would take the bodies in flight past the memory budget (pyfunc._memory): shed.
    503: ("memory-budget", "the request bodies in flight would be", "PYFUNC_MAX_BODY_BYTES_IN_FLIGHT"),
}


def answerer(access_log: bool) -> Callable[[Refusal], tuple[str, list[tuple[str, str]], bytes]]:
    """The answer to a refusal: a problem+json body (the shape of errors.py's problems), logged."""

    def answer(refusal: Refusal) -> tuple[str, list[tuple[str, str]], bytes]:
        reason, what, setting = _REFUSALS[refusal.status]
        response = problem(refusal.status, reason, f"{what} over {refusal.limit} bytes ({setting})")
        if access_log:
            fields = {"request_id": refusal.request_id or logs.next_request_id()}
            logs.access(refusal.method, refusal.path, refusal.status, time.perf_counter() - refusal.started, fields)
        body = response.body if isinstance(response.body, bytes) else b"".join(response.body)
        headers = list(response.headers)
        if refusal.status == 503:
            from ._memory import RETRY_AFTER

            headers.append(("Retry-After", str(RETRY_AFTER)))
        return response.status_line, headers, body

    return answer
