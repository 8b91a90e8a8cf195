"""``GET /metrics`` in the Prometheus text format (``PYFUNC_METRICS=true``).

Off by default: prometheus_client (the optional extra ``pyfunc-invoker[metrics]``) takes
55-110 ms and several MB to import, against a pyfunc that starts in ~75 ms and idles at ~18 MB,
so it is imported only when metrics are turned on (this module is imported only then too).

Every invocation is counted once by outcome (see docs/delivery.md) and CloudEvent type:

    reply      2xx with a reply (an event, or an HTTP function's body)
    no-reply   2xx without one (202 for an event function)
    retry      pyfunc.Retry, or an HTTP function's own 404/408/409/429/503: Knative retries it
    drop       pyfunc.Drop (422), or an HTTP function's own other 4xx: dead-lettered
    error      the handler raised (500) or returned an invalid reply
    timeout    PYFUNC_TIMEOUT ran out (504)
    rejected   refused before the handler ran: not a CloudEvent, bad data, over
               PYFUNC_MAX_CONCURRENCY; nothing was invoked, so it carries no type

In a batch each event is one invocation. A dedup hit (a duplicate answered from the store, or
refused while its first delivery still runs) does not invoke the handler: it is counted in
``pyfunc_dedup_hits_total`` instead.
"""

from __future__ import annotations

import os
import time
from typing import Any, Optional

from ._failures import outcome_of_response
from ._invocation import Observer
from ._responses import Response

OUTCOMES = ("reply", "no-reply", "retry", "drop", "error", "timeout", "rejected")
# CloudEvent types are sender-chosen strings: past this many distinct ones, the rest are counted
# as "other" so that a sender cannot grow the scrape (and Prometheus' series) without bound.
MAX_TYPES = 100
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


class Metrics:
    """The pyfunc metrics in a registry of their own, plus the process collector (RSS, CPU, fds)."""

    def __init__(self) -> None:
        from ._extras import require

        require("prometheus_client", "PYFUNC_METRICS=true")  # the optional extra pyfunc-invoker[metrics]
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            ProcessCollector,
            disable_created_metrics,
        )

        # The *_created series (a timestamp per labelled child) double the scrape for nothing a
        # query uses; the process is pyfunc's own, so turning them off globally harms no one.
        disable_created_metrics()  # type: ignore[no-untyped-call]

        self.registry = CollectorRegistry(auto_describe=True)
        # PYFUNC_WORKERS above 1 (pyfunc._workers sets the directory): every worker writes its
        # values to files there and a scrape sums them over all workers (prometheus_client's
        # multiprocess mode). The process_* series would be the scraped worker's alone: left out.
        self.multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        if self.multiprocess_dir is None:
            ProcessCollector(registry=self.registry)
        self.invocations = Counter("pyfunc_invocations", "Handler invocations (one per event of a batch) by outcome "
                                   "and CloudEvent type", ("outcome", "type"), registry=self.registry)
        self.duration = Histogram("pyfunc_invocation_duration_seconds", "Time from the handler call to its outcome",
                                  ("outcome",), buckets=DURATION_BUCKETS, registry=self.registry)
        self.in_flight = Gauge("pyfunc_in_flight_requests", "Requests to the function being handled now",
                               registry=self.registry, multiprocess_mode="livesum")
        self.dedup_hits = Counter("pyfunc_dedup_hits", "Duplicates (same source + id) answered without invoking: "
                                  "replayed (done before) or in_flight (still running)", ("result",),
                                  registry=self.registry)
        self.dedup_errors = Counter("pyfunc_dedup_errors", "Dedup store (Redis) failures; the event ran "
                                    "without dedup", registry=self.registry)
        self.batch_events = Histogram("pyfunc_batch_events", "Events per batch request", buckets=BATCH_BUCKETS,
                                      registry=self.registry)
        self.startup = Gauge("pyfunc_startup_seconds", "Process start to ready for the first request",
                             registry=self.registry, multiprocess_mode="livemax")
        self._types: set[str] = set()
        for outcome in OUTCOMES:  # every outcome shows (at 0) from the first scrape: rate() needs a base
            self.invocations.labels(outcome, "")
            self.duration.labels(outcome)
        for result in ("replayed", "in_flight"):
            self.dedup_hits.labels(result)
        self._generate: Any = None

    def invocation(self, outcome: str, ce_type: Optional[str], seconds: Optional[float]) -> None:
        label = ce_type if isinstance(ce_type, str) else ""
        if label and label not in self._types:
            if len(self._types) >= MAX_TYPES:
                label = "other"
            else:
                self._types.add(label)
        self.invocations.labels(outcome, label).inc()
        if seconds is not None:
            self.duration.labels(outcome).observe(seconds)

    def ready(self) -> None:
        """The server listens: record how long it took since the process started."""
        started = process_start_time()
        if started is not None:
            self.startup.set(max(0.0, time.time() - started))

    def response(self) -> Response:
        if self._generate is None:
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

            self._generate = generate_latest
            self._content_type = CONTENT_TYPE_LATEST
            self._scraped = self.registry
            if self.multiprocess_dir is not None:
                from prometheus_client import CollectorRegistry, multiprocess

                self._scraped = CollectorRegistry()
                multiprocess.MultiProcessCollector(self._scraped, self.multiprocess_dir)  # type: ignore[no-untyped-call]
        body: bytes = self._generate(self._scraped)
        return Response(200, [("Content-Type", self._content_type), ("Cache-Control", "no-store")], body)


def process_start_time() -> Optional[float]:
    """When this process started (Unix time), from /proc: field 22 of /proc/self/stat, in clock
    ticks after boot. None where there is no /proc."""
    try:
        with open("/proc/self/stat") as stat:
            ticks = float(stat.read().rpartition(")")[2].split()[19])
        with open("/proc/stat") as system:
            boot = next(float(line.split()[1]) for line in system if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None



class MetricsObserver(Observer):
    """The invocation steps' reports (_invocation.Observer), counted in :class:`Metrics`."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._in_flight = metrics.in_flight

    def entered(self) -> None:
        self._in_flight.inc()

    def left(self) -> None:
        self._in_flight.dec()

    def rejected(self) -> None:
        self.metrics.invocation("rejected", None, None)  # nothing was invoked

    def invoked(self, outcome: Optional[str], response: Any, ce_type: Optional[str], seconds: float) -> None:
        if outcome is None:
            outcome = outcome_of_response(response)
        self.metrics.invocation(outcome, ce_type, None if outcome == "rejected" else seconds)

    def batch(self, size: int) -> None:
        self.metrics.batch_events.observe(size)

    def duplicate(self, kind: str) -> None:
        self.metrics.dedup_hits.labels(kind).inc()

    def dedup_error(self) -> None:
        self.metrics.dedup_errors.inc()

    def ready(self) -> None:
        self.metrics.ready()
