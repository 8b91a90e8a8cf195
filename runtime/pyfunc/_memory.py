"""Request bodies in flight, bounded: a pod sheds load with a 503 before the kernel OOM-kills it.

waitress receives a whole body before the app sees it: up to 512 KiB in memory, the rest in a
file under ``/tmp``, which in a read-only pod is a memory-backed ``emptyDir`` (tmpfs) counted in
the container's memory limit. Then the app reads it into memory again. Bounded only by
``PYFUNC_CONNECTION_LIMIT`` × ``PYFUNC_MAX_BODY_SIZE`` (1024 × 10 MiB), a burst of large bodies
took a 128 MiB pod far past its limit: the kernel killed it, every request in it was lost, and
Knative restarted it into the same burst.

So each body's announced size (``Content-Length``) is reserved when its head arrives, before any
of it is read, and released when its request ends (or its connection goes, whichever first). A
head whose body would take the bytes in flight past ``PYFUNC_MAX_BODY_BYTES_IN_FLIGHT`` is answered
``503`` with ``Retry-After`` at once, its body never read: the client (or Knative's queue-proxy,
or the broker) retries later, or on another pod. One body is always admitted when none is in
flight, so a body the budget cannot hold (larger than it, within ``PYFUNC_MAX_BODY_SIZE``) is
served alone rather than never. Chunked bodies announce no size and are not counted: their size is
bounded by ``PYFUNC_MAX_BODY_SIZE`` alone.

The default budget is derived from the cgroup memory limit (pyfunc._cgroup); without a limit
there is none. See docs/serving.md, "Sizing a pod", for the measurements behind the fraction.
"""

from __future__ import annotations

import threading
import weakref

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Callable, Optional

__all__ = ["BodyBudget", "budget_of", "default_budget", "RETRY_AFTER", "BUDGET_SHARE", "BASELINE"]

# Retry-After of a shed request, in seconds: a body in flight is usually received and served
# within a second or two; Knative eventing honours it (delivery.retryAfterMax caps it).
RETRY_AFTER = 1
# What the process needs besides bodies. An idle server after its first request is charged about
# 12 MiB in its container (e2e/results/pod_sizing.json, "Sizing a pod" in docs/serving.md); the
# rest is room for the handler's own imports and work, which pyfunc cannot know.
BASELINE = 48 << 20
# The share of the rest that bodies in flight may take. A body held by its handler is charged
# about twice its size (measured, ibid.: 1 MiB -> 2.2 MiB, 10 MiB -> 20.2 MiB: the /tmp copy on
# tmpfs and the copy the app reads), and the handler's own use of the body comes on top: a third.
# 128 MiB: 26.7 MiB of bodies (measured: 52 bodies of 1 MiB held at once fit before the OOM kill).
BUDGET_SHARE = 1 / 3


def default_budget(memory_limit: Optional[int]) -> int:
    """Bytes of request bodies in flight for a container limited to ``memory_limit`` (0: no budget)."""
    if not memory_limit:
        return 0
    return max(1 << 20, int((memory_limit - BASELINE) * BUDGET_SHARE))


def budget_of(config: Any) -> Optional[BodyBudget]:
    """The budget ``PYFUNC_MAX_BODY_BYTES_IN_FLIGHT`` asks for (``auto``: from the cgroup limit)."""
    setting = config.max_body_bytes_in_flight
    if setting == "auto":
        from ._cgroup import limits

        setting = default_budget(limits().memory)
    return BodyBudget(int(setting)) if setting else None


class BodyBudget:
    """Bytes of announced request bodies in flight, at most ``limit`` (but always one body)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self.shed = 0  # requests refused so far (for tests and logs)
        self._lock = threading.Lock()

    def reserve(self, owner: Any, size: int) -> Optional[Callable[[], Any]]:
        """Reserve ``size`` bytes for ``owner`` (a request parser); the returned callable releases
        them (once; also when ``owner`` is collected, e.g. a connection dropped mid-body). None:
        refused, nothing reserved."""
        with self._lock:
            if self.in_flight and self.in_flight + size > self.limit:
                self.shed += 1
                return None
            self.in_flight += size
        return weakref.finalize(owner, self._release, size)

    def _release(self, size: int) -> None:
        with self._lock:
            self.in_flight -= size
