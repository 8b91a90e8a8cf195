"""Redelivery dedup on CloudEvents ``source`` + ``id`` (``PYFUNC_DEDUPE``).

Knative eventing delivers at least once: a sender that saw no answer (a timeout, a reset, a
5xx) sends the same event again, and brokers redeliver after a restart. CloudEvents says
``source`` + ``id`` identify an event, so "consumers MAY assume that events with identical
source and id are duplicates" (spec §3.1.1 id). With dedup on, pyfunc remembers each event it
finished and answers a redelivery with the reply it stored instead of running the handler again.

The guarantee is *effectively once per dedup window*, not exactly once:

* an event is marked done only after the handler returned successfully (a 2xx): a failure, a
  ``Retry``, a ``Drop``, a timeout or a process that stops mid-call leaves it not done, so
  the redelivery runs it again;
* while it runs, a duplicate is answered ``409`` with ``Retry-After`` (see ``IN_FLIGHT_STATUS``);
* a done event is remembered for ``PYFUNC_DEDUPE_TTL`` seconds (and, in memory, while it is
  among the ``PYFUNC_DEDUPE_SIZE`` most recent); a duplicate after that runs again;
* a handler that succeeded but whose process died before the mark was written, or a claim
  whose lease ran out while the handler still ran, can run twice. Side effects that must never
  repeat still need their own idempotency key (the event id is a good one).

The stores: ``memory`` (one process; a bounded LRU) and ``redis://host:port/db`` (shared by
every pod of the service). When Redis cannot be reached pyfunc *fails open*: the event runs
without dedup (Knative's own at-least-once, no worse than dedup off) and a warning is logged,
at most every 10 s. A 503 instead would turn a Redis outage into an outage of the function and,
after the retries, dead-lettered events. Timeouts are short and a failure skips Redis for a
second, so an outage costs no request more than one connect timeout.
"""

from __future__ import annotations

import atexit
import itertools
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

if TYPE_CHECKING:
    from ._types import Environ

logger = logging.getLogger("pyfunc")

# A duplicate of an event still running: 409 Conflict with Retry-After. The Knative eventing
# data-plane contract (specs/eventing/data-plane.md, "Event Acknowledgement and Delivery Retry")
# defines 409 as "Conflict / Processing in progress", retried like 429 and 5xx, so the broker
# redelivers it with backoff, by when the first delivery is done and the retry gets its reply.
# Not 429 (that says "overloaded", which PYFUNC_MAX_CONCURRENCY answers) nor 503 (pyfunc.Retry's):
# metrics and logs tell the three apart.
IN_FLIGHT_STATUS = 409
IN_FLIGHT_RETRY_AFTER = "1"
# Seconds a failing Redis is skipped, and between two warnings about it.
REDIS_BACKOFF = 1.0
WARN_EVERY = 10.0
REDIS_TIMEOUT = 0.25


class Record:
    """A reply as it went out: status, headers and body (what a duplicate gets back)."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def dumps(self) -> bytes:
        head = json.dumps(self.headers, separators=(",", ":")).encode()  # JSON escapes newlines
        return b"R%d\n%s\n%s" % (self.status, head, self.body)

    @classmethod
    def loads(cls, raw: bytes) -> Record:
        status, head, body = raw[1:].split(b"\n", 2)
        return cls(int(status), [(str(k), str(v)) for k, v in json.loads(head)], body)


# A reply larger than PYFUNC_DEDUPE_MAX_REPLY is remembered as this: a duplicate gets 202 (no
# reply event) but still does not run the handler again.
TOO_LARGE = Record(202, [], b"")


class InFlight:
    """The event is claimed by an invocation still running (here or, with Redis, in another pod)."""


IN_FLIGHT = InFlight()
Lookup = Union[Record, InFlight, None]  # None: claimed for this caller (or unchecked: fail open)


class Claim:
    """This invocation's hold on an event: ``done(record)`` after success, else ``release()``."""

    __slots__ = ("dedup", "key", "token", "settled")

    def __init__(self, dedup: Dedup, key: str, token: str) -> None:
        self.dedup = dedup
        self.key = key
        self.token = token
        self.settled = False

    def done(self, record: Record) -> None:
        if not self.settled:
            self.settled = True
            self.dedup.finish(self, record)

    def release(self) -> None:
        if not self.settled:
            self.settled = True
            self.dedup.release(self)


class Store:
    """Where claims and records live; ``claim`` is atomic per key."""

    def key(self, namespace: str, source: Any, event_id: Any) -> str:
        """One process, one function: source and id as they are (no hashlib: 4 MB of OpenSSL)."""
        return f"{source}\0{event_id}"

    def claim(self, key: str, token: str, lease: float) -> Lookup:
        raise NotImplementedError

    def finish(self, key: str, record: Record, ttl: float) -> None:
        raise NotImplementedError

    def release(self, key: str, token: str) -> None:
        raise NotImplementedError

    def claim_many(self, items: list[tuple[str, str]], lease: float) -> list[Lookup]:
        """``claim`` for each ``(key, token)`` of a batch (Redis: one round trip)."""
        return [self.claim(key, token, lease) for key, token in items]

    def finish_many(self, items: list[tuple[str, Record]], ttl: float) -> None:
        for key, record in items:
            self.finish(key, record, ttl)

    def close(self) -> None:
        pass


class MemoryStore(Store):
    """A bounded LRU in this process: at most ``size`` events and ``budget`` bytes of replies.

    A reply is kept serialized (one bytes object: status, headers and body) rather than as a
    :class:`Record` with its header tuples: a third of the memory, and a duplicate is rare
    enough to pay for parsing it.
    """

    def __init__(self, size: int, budget: int) -> None:
        self.size = size
        self.budget = budget
        self.bytes = 0
        self._entries: OrderedDict[str, tuple[float, Union[bytes, str]]] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, key: str, token: str, lease: float) -> Lookup:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                expires, value = entry
                if expires > now:
                    if isinstance(value, bytes):
                        self._entries.move_to_end(key)
                        return Record.loads(value)
                    return IN_FLIGHT
                self._drop(key)
            self._entries[key] = (now + lease, token)
            self._evict(now)
            return None

    def finish(self, key: str, record: Record, ttl: float) -> None:
        raw = record.dumps()
        with self._lock:
            if key in self._entries:
                self._drop(key)
            self._entries[key] = (time.monotonic() + ttl, raw)
            self.bytes += len(raw)
            self._evict(time.monotonic())

    def release(self, key: str, token: str) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[1] == token:
                self._drop(key)

    def __len__(self) -> int:
        return len(self._entries)

    def _drop(self, key: str) -> None:
        _, value = self._entries.pop(key)
        if isinstance(value, bytes):
            self.bytes -= len(value)

    def _evict(self, now: float) -> None:
        entries = self._entries
        while entries and (len(entries) > self.size or self.bytes > self.budget
                           or next(iter(entries.values()))[0] <= now):
            self._drop(next(iter(entries)))


# Atomic claim in one round trip: the stored value if there is one, else claim it for `lease` ms.
_CLAIM = """
local value = redis.call('GET', KEYS[1])
if value then return value end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""
# Release only our own claim: after a lease ran out the key may be another pod's.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisStore(Store):
    """Claims and records in Redis, shared by every pod: ``redis://host:port/db``.

    Values: ``~<token>`` for a claim (expires after the lease, so a pod killed mid-call does not
    hold the event for ever), else a serialized :class:`Record` (expires after the TTL).
    """

    def __init__(self, url: str, on_error: Optional[Callable[[], None]] = None) -> None:
        from ._extras import require

        # Only with PYFUNC_DEDUPE=redis://…: the optional extra pyfunc-invoker[redis].
        redis: Any = require("redis", "PYFUNC_DEDUPE=redis://…")

        self.url = url
        self._redis = redis.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT,
            health_check_interval=0, retry_on_timeout=False,
        )
        self._error_types: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._claim = self._redis.register_script(_CLAIM)
        self._release = self._redis.register_script(_RELEASE)
        self._skip_until = 0.0
        self._warned = 0.0
        self.on_error = on_error
        import hashlib  # the redis client loads OpenSSL anyway

        self._sha256 = hashlib.sha256

    def key(self, namespace: str, source: Any, event_id: Any) -> str:
        # Hashed: ids and sources are sender-chosen strings of any length. The namespace keeps
        # two functions sharing one Redis (two Triggers on one Broker) from deduping each other.
        digest = self._sha256(f"{source}\0{event_id}".encode()).hexdigest()[:40]
        return f"pyfunc:dedup:{namespace}:{digest}"

    def claim(self, key: str, token: str, lease: float) -> Lookup:
        return self._lookup(self._do(lambda: self._claim(keys=[key], args=["~" + token, max(1, int(lease * 1000))])))

    @staticmethod
    def _lookup(raw: Any) -> Lookup:
        if raw is None or raw is _FAILED:
            return None
        if isinstance(raw, bytes) and raw.startswith(b"R"):
            try:
                return Record.loads(raw)
            except ValueError:
                return None
        return IN_FLIGHT

    def finish(self, key: str, record: Record, ttl: float) -> None:
        self._do(lambda: self._redis.set(key, record.dumps(), px=max(1, int(ttl * 1000))))

    def claim_many(self, items: list[tuple[str, str]], lease: float) -> list[Lookup]:
        def claims() -> Any:
            pipe = self._redis.pipeline(transaction=False)
            for key, token in items:
                self._claim(keys=[key], args=["~" + token, max(1, int(lease * 1000))], client=pipe)
            return pipe.execute()

        found = self._do(claims)
        if found is _FAILED:
            return [None] * len(items)
        return [self._lookup(raw) for raw in found]

    def finish_many(self, items: list[tuple[str, Record]], ttl: float) -> None:
        def finishes() -> Any:
            pipe = self._redis.pipeline(transaction=False)
            for key, record in items:
                pipe.set(key, record.dumps(), px=max(1, int(ttl * 1000)))
            return pipe.execute()

        if items:
            self._do(finishes)

    def release(self, key: str, token: str) -> None:
        self._do(lambda: self._release(keys=[key], args=["~" + token]))

    def close(self) -> None:
        try:
            self._redis.close()
        except Exception:  # noqa: S110 - closing at exit: nothing left to tell
            pass

    def _do(self, command: Callable[[], Any]) -> Any:
        """Run a command, or fail open: a warning (every 10 s at most), then Redis is skipped for 1 s."""
        now = time.monotonic()
        if now < self._skip_until:
            return _FAILED
        try:
            return command()
        except self._error_types as exc:
            self._skip_until = time.monotonic() + REDIS_BACKOFF
            if self.on_error is not None:
                self.on_error()
            if now - self._warned >= WARN_EVERY:
                self._warned = now
                logger.warning("dedup: Redis at %s failed (%s: %s); events run without dedup until it is back",
                               _redacted(self.url), type(exc).__name__, exc)
            return _FAILED


_FAILED = object()
# Claim tokens: a random per-process prefix and a counter (itertools.count is atomic under the
# GIL). Unique across pods like a uuid4, which matters for Redis' compare-and-delete, for less.
_TOKEN_PREFIX = os.urandom(8).hex() + "-"
_tokens = itertools.count(1)


class Dedup:
    """Claims events by ``source`` + ``id`` in a store; see the module docstring for the guarantee."""

    def __init__(self, store: Store, namespace: str, ttl: float, lease: float, max_reply: int) -> None:
        self.store = store
        self.namespace = namespace
        self.ttl = ttl
        self.lease = lease
        self.max_reply = max_reply
        self._held: dict[str, Claim] = {}
        self._lock = threading.Lock()
        self._closed = False
        atexit.register(self.close)

    def claim(self, attributes: dict[str, Any]) -> tuple[Optional[Claim], Lookup]:
        """``(claim, None)`` to run the event, ``(None, record)`` to replay, ``(None, IN_FLIGHT)``."""
        return self.claim_all([attributes])[0]

    def claim_all(self, events: list[dict[str, Any]]) -> list[tuple[Optional[Claim], Lookup]]:
        """``claim`` for every event of a batch at once (one Redis round trip)."""
        if self._closed:
            return [(None, None)] * len(events)
        key_of = self.store.key
        items = [(key_of(self.namespace, a.get("source"), a.get("id")), f"{_TOKEN_PREFIX}{next(_tokens):x}")
                 for a in events]
        found = self.store.claim_many(items, self.lease)
        answers: list[tuple[Optional[Claim], Lookup]] = []
        for (key, token), lookup in zip(items, found):
            if lookup is not None:
                answers.append((None, lookup))
                continue
            claim = Claim(self, key, token)
            with self._lock:
                self._held[token] = claim
            answers.append((claim, None))
        return answers

    def finish_all(self, done: list[tuple[Claim, Record]]) -> None:
        """Mark the succeeded events of a batch done together (one Redis round trip)."""
        with self._lock:
            if self._closed:
                return
            for claim, _ in done:
                claim.settled = True
                self._held.pop(claim.token, None)
        self.store.finish_many([(claim.key, self._bounded(record)) for claim, record in done], self.ttl)

    def finish(self, claim: Claim, record: Record) -> None:
        with self._lock:
            if self._closed:  # the process is exiting: its late results are not marked done
                return
            self._held.pop(claim.token, None)
        self.store.finish(claim.key, self._bounded(record), self.ttl)

    def _bounded(self, record: Record) -> Record:
        """The record, or the 202 marker when its body is above PYFUNC_DEDUPE_MAX_REPLY."""
        return TOO_LARGE if not isinstance(record.body, bytes) or len(record.body) > self.max_reply else record

    def release(self, claim: Claim) -> None:
        with self._lock:
            if self._closed:  # close() released every claim still held, and closed the store
                return
            self._held.pop(claim.token, None)
        self.store.release(claim.key, claim.token)

    def close(self) -> None:
        """At exit: release the claims of invocations still running, so a redelivery to another
        pod runs them at once instead of waiting out the lease (they are not done)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            held, self._held = list(self._held.values()), {}
        for claim in held:
            self.store.release(claim.key, claim.token)
        self.store.close()


def from_config(config: Any, qualname: str, on_redis_error: Optional[Callable[[], None]] = None) -> Optional[Dedup]:
    """The :class:`Dedup` that ``PYFUNC_DEDUPE`` asks for, or None when it is off."""
    where = config.dedupe
    if where == "off":
        return None
    namespace = config.dedupe_namespace or os.environ.get("K_SERVICE") or qualname
    lease = config.dedupe_lease or ((config.timeout + 30.0) if config.timeout else 600.0)
    store: Store
    if where == "memory":
        store = MemoryStore(config.dedupe_size, config.dedupe_memory)
    else:
        store = RedisStore(where, on_redis_error)
    logger.info("dedup on (%s): events remembered for %ss by source + id", _redacted(where), config.dedupe_ttl)
    return Dedup(store, namespace, config.dedupe_ttl, lease, config.dedupe_max_reply)


def _redacted(url: str) -> str:
    """The URL without a password (redis://:secret@host)."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"



class Deduplicated:
    """An invoker (_invocation.Invoker) whose redelivered events are answered without a call.

    It claims each event when the request is prepared: a duplicate is answered with its first
    reply again, or 409 while the first still runs, and only the other events are called. Each
    event is marked done when it concluded with a 2xx, else let go to run again; a request
    nobody is left to answer lets go of all. See the module docstring for the guarantee.
    """

    def __init__(self, inner: Any, dedup: Dedup, observer: Any) -> None:
        from ._codec import STRUCTURED

        self.inner = inner
        self.dedup = dedup
        self.observer = observer
        self.timeout = inner.timeout
        self.failures = inner.failures
        # Each reply encoded on its own, what a record keeps; a batch is then their JSON array.
        inner.replies.item_mode = STRUCTURED
        # The steps dedup leaves as they are.
        self.runner = inner.runner
        self.iterate = inner.iterate
        self.close = inner.close
        self.trace = inner.trace
        self.refuse = inner.refuse
        self.runnable = inner.runnable
        self.call = inner.call
        self.acall_each = inner.acall_each

    def prepare(self, environ: Environ, body: bytes, request: Any, fields: dict[str, Any]) -> Any:
        prepared = self.inner.prepare(environ, body, request, fields)
        if prepared.mode is None:
            return prepared  # an HTTP request: no event to remember
        events = prepared.events
        claims = prepared.claims = self.dedup.claim_all([event.attributes for event in events])
        if any(found is not None for _, found in claims):
            prepared.answers = [None if found is None else self._duplicate(found, event)
                                for (_, found), event in zip(claims, events)]
        return prepared

    def conclude(self, prepared: Any, results: list[Any]) -> Any:
        responses = self.inner.respond(prepared, results)
        claims = prepared.claims
        if claims is not None:
            from ._codec import BATCH

            done: Optional[list[tuple[Claim, Record]]] = [] if prepared.mode == BATCH else None
            for (claim, _), response in zip(claims, responses):
                if claim is not None:
                    _settle(claim, response, done)
            if done is not None:
                self.dedup.finish_all(done)
        return self.inner.assemble(prepared, responses)

    def abandon(self, prepared: Any) -> None:
        for claim, _ in prepared.claims or ():  # no answer went out, so not done
            if claim is not None:
                claim.release()

    def invoke(self, environ: Environ, body: bytes, request: Any, fields: dict[str, Any],
               defer: Optional[Callable[[Any, list[Any]], None]] = None) -> Any:
        """The inner invoker's steps 1-3, with this one's prepare and conclude (_invocation.invoke)."""
        from ._invocation import invoke

        return invoke(self, environ, body, request, fields, defer)

    def _duplicate(self, found: Lookup, event: Any) -> Any:
        """A redelivery (same source + id): its first reply again, or 409 while the first still runs."""
        from ._responses import Response, problem

        attrs = event.attributes
        if found is IN_FLIGHT:
            self.observer.duplicate("in_flight")
            logger.info("duplicate of event %s from %s, still in progress: %d", attrs.get("id"), attrs.get("source"),
                        IN_FLIGHT_STATUS)
            # Knative's data-plane contract: 409 "Conflict / Processing in progress", retried with backoff.
            response = problem(IN_FLIGHT_STATUS, "duplicate-in-flight",
                               "an event with this source and id is being processed; retry later")
            response.headers.append(("Retry-After", IN_FLIGHT_RETRY_AFTER))
            return response
        assert isinstance(found, Record)
        self.observer.duplicate("replayed")
        logger.info("duplicate of event %s from %s, done before: its reply again", attrs.get("id"),
                    attrs.get("source"))
        return Response(found.status, list(found.headers), found.body)


def _settle(claim: Claim, response: Any, done: Optional[list[tuple[Claim, Record]]]) -> None:
    """Mark the event done with its reply after a success (a 2xx), else let it run again.

    With ``done`` (a batch), the success is added to it, to be marked with the others."""
    from ._replies import status_of
    from ._responses import Response

    status = status_of(response)
    if 200 <= status < 300:
        body = response.body if isinstance(response, Response) else None
        record = Record(status, list(response.headers), body) if isinstance(body, bytes) else TOO_LARGE
        if done is not None:
            done.append((claim, record))
        else:
            claim.done(record)
    else:
        claim.release()
