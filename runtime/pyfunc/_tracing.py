"""Optional OpenTelemetry tracing: one span per invocation, parented on the incoming trace.

Off unless turned on, and free when off: nothing here imports ``opentelemetry`` at import
time, and when tracing is off ``Invoker._call`` is not wrapped at all. It is decided once,
after the ``start()`` hook (which may install a tracer provider of its own):

1. ``OTEL_SDK_DISABLED=true``: off, whatever else is set.
2. A global tracer provider is already installed (by ``opentelemetry-instrument``, a
   ``sitecustomize`` or the handler's ``start()``): on, with that provider. pyfunc only looks
   for one if ``opentelemetry.trace`` is already imported, so this costs nothing otherwise.
3. ``OTEL_TRACES_EXPORTER`` names an exporter other than ``none``, or
   ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set (the exporter
   is then ``otlp``): on; pyfunc installs an SDK ``TracerProvider`` with a
   ``BatchSpanProcessor`` per exporter (loaded by name from the ``opentelemetry_traces_exporter``
   entry points: ``console`` ships with the SDK, ``otlp`` needs ``opentelemetry-exporter-otlp``).
   The resource comes from ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES``;
   ``service.name`` defaults to ``K_SERVICE``, else the function's name. The sampler follows
   ``OTEL_TRACES_SAMPLER``. If the SDK or an exporter is missing, pyfunc logs an error and
   serves without it rather than crash-looping over telemetry.
4. Otherwise: off.

The span (kind SERVER) follows the CloudEvents semantic conventions: named
``CloudEvents Process <type>`` with ``cloudevents.event_*`` attributes, or ``<METHOD> <path>``
for a plain HTTP function. Its parent is the ``traceparent``/``tracestate`` HTTP header (the
caller's span), else a B3 one (``b3``, ``X-B3-*``: _carry.py), else the event's
distributed-tracing extension; when both are there and differ, the extension's context (where
the event was created) becomes a span link.
"""

from __future__ import annotations

import contextlib
import logging
import os

from . import __version__
from . import _carry as carry
from . import _logs as logs

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (ms of a cold start)
if TYPE_CHECKING:
    from typing import Any, Awaitable, Callable, Iterator, Mapping, Optional

logger = logging.getLogger("pyfunc")

EXPORTER_GROUP = "opentelemetry_traces_exporter"


def requested_exporters(environ: Optional[Mapping[str, str]] = None) -> list[str]:
    """The exporters the ``OTEL_*`` variables ask for (empty: none asked for)."""
    environ = os.environ if environ is None else environ
    names = [n.strip() for n in environ.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if names:
        return [] if "none" in names else names
    if environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return ["otlp"]
    return []


def _disabled(environ: Mapping[str, str]) -> bool:
    return environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def _installed_provider() -> Any:
    """The global tracer provider if someone installed a real one; never imports opentelemetry."""
    import sys

    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return None
    return provider


def from_environment(function_name: str) -> Optional[Tracing]:
    """A :class:`Tracing` if tracing is turned on (see the module docstring), else None."""
    if _disabled(os.environ):
        return None
    provider = _installed_provider()
    if provider is not None:
        logger.info("tracing with the installed OpenTelemetry tracer provider")
        return Tracing(provider, owned=False)
    exporters = requested_exporters()
    if not exporters:
        return None
    from ._extras import require

    # Asked for and not installed: a start-up error, not a server that silently traces nothing.
    setting = ("OTEL_TRACES_EXPORTER=" + ",".join(exporters) if os.environ.get("OTEL_TRACES_EXPORTER")
               else "OTEL_EXPORTER_OTLP_ENDPOINT")
    require("opentelemetry.sdk.trace", setting)
    provider = _build_provider(function_name, exporters)
    if provider is None:
        return None
    logger.info("tracing with OpenTelemetry, exporting to %s", ", ".join(exporters))
    return Tracing(provider, owned=True)


def _build_provider(function_name: str, exporters: list[str]) -> Any:
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes = {}
    if not os.environ.get("OTEL_SERVICE_NAME") and "service.name=" not in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    ):
        attributes["service.name"] = os.environ.get("K_SERVICE") or function_name
    processors = []
    for name in exporters:
        exporter_class = _exporter_class(name)
        if exporter_class is None and name == "otlp":
            # The exporter OTEL_EXPORTER_OTLP_ENDPOINT implies, in a package of its own: missing, the
            # spans would go nowhere while the operator believes they are exported.
            from ._config import ConfigError

            raise ConfigError("OTLP tracing (OTEL_TRACES_EXPORTER / OTEL_EXPORTER_OTLP_ENDPOINT) needs the "
                              "opentelemetry-exporter-otlp package, which is not installed: "
                              "pip install opentelemetry-exporter-otlp")
        if exporter_class is None:
            logger.error("OTEL_TRACES_EXPORTER: no span exporter named %r is installed (for otlp: "
                         "pip install opentelemetry-exporter-otlp); not exporting there", name)
            continue
        processors.append(BatchSpanProcessor(exporter_class()))
    if not processors:
        return None
    provider = TracerProvider(resource=Resource.create(attributes))
    for processor in processors:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    return provider


def _exporter_class(name: str) -> Any:
    from importlib.metadata import entry_points

    found = entry_points()
    candidates = (found.select(group=EXPORTER_GROUP, name=name) if hasattr(found, "select")
                  else [ep for ep in found.get(EXPORTER_GROUP, ()) if ep.name == name])
    for entry_point in candidates:
        return entry_point.load()
    return None


class Tracing:
    """Makes the span of each invocation; built only when tracing is on."""

    def __init__(self, provider: Any, owned: bool) -> None:
        from opentelemetry import propagate, trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = provider
        self.owned = owned
        self.tracer = provider.get_tracer("pyfunc", __version__)
        self._trace = trace
        self._extract = propagate.extract
        self._tracecontext = TraceContextTextMapPropagator()

    def wrap(self, call: Callable[..., Any]) -> Callable[..., Any]:
        """``call(inv, ...)`` (``Invoker._call``) inside a span for the invocation it is given."""
        span = self.span

        def traced(inv: Any, *rest: Any) -> Any:
            with span(inv):
                return call(inv, *rest)

        return traced

    def wrap_async(self, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        """``call(inv, ...)`` (``Invoker._acall``, a coroutine function) inside the span of ``inv``,
        opened on the event loop so that the handler's own spans are its children."""
        span = self.span

        async def traced(inv: Any, *rest: Any) -> Any:
            with span(inv):
                return await call(inv, *rest)

        return traced

    @contextlib.contextmanager
    def span(self, inv: Any) -> Iterator[Any]:
        """The current span of one invocation, its log lines joined up with it."""
        trace = self._trace
        tracer = self.tracer
        server = trace.SpanKind.SERVER
        environ = inv.environ
        event = inv.event
        attrs = event.attributes if event is not None else {}
        transport = carry.transport(environ)  # W3C headers, else B3 (single or multi) as W3C
        header = transport[0] if transport is not None else None
        extension = attrs.get("traceparent")
        if transport is not None:
            carrier = {"traceparent": transport[0], "tracestate": transport[1]}
        elif extension:
            carrier = {"traceparent": extension, "tracestate": attrs.get("tracestate", "")}
        else:
            carrier = {}
        if environ.get("HTTP_BAGGAGE"):
            carrier["baggage"] = environ["HTTP_BAGGAGE"]
        parent = self._extract(carrier) if carrier else None
        links = []
        if header and extension and extension != header:
            created = trace.get_current_span(
                self._tracecontext.extract({"traceparent": extension})).get_span_context()
            if created.is_valid:
                links.append(trace.Link(created))
        if event is not None:
            name = f"CloudEvents Process {attrs.get('type')}"
            attributes = {
                "cloudevents.event_id": attrs.get("id"),
                "cloudevents.event_source": attrs.get("source"),
                "cloudevents.event_type": attrs.get("type"),
                "cloudevents.event_spec_version": attrs.get("specversion"),
                "faas.trigger": "pubsub",
            }
            if attrs.get("subject") is not None:
                attributes["cloudevents.event_subject"] = attrs["subject"]
        else:
            name = f"{environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO') or '/'}"
            attributes = {"faas.trigger": "http"}
        attributes["http.request.method"] = environ.get("REQUEST_METHOD")
        with tracer.start_as_current_span(name, context=parent, kind=server, attributes=attributes,
                                          links=links) as span:
            fields = logs.request_fields.get()
            if fields is not None:  # the log lines of this request join up with the span
                context = span.get_span_context()
                fields["trace_id"] = format(context.trace_id, "032x")
                fields["span_id"] = format(context.span_id, "016x")
            yield span

    def shutdown(self) -> None:
        """Export what is still buffered; shut the provider down if pyfunc made it."""
        try:
            if self.owned:
                self.provider.shutdown()
            elif hasattr(self.provider, "force_flush"):
                self.provider.force_flush()
        except Exception:  # noqa: BLE001 - telemetry must not fail the shutdown
            logger.exception("flushing traces failed")
