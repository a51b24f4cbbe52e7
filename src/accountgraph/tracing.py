"""Traces (issue 15): OpenTelemetry spans for requests, GraphQL operations, SQL statements,
outbox rows and the jobs that run them, exported over OTLP/HTTP.

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (``configure``): then nothing is
instrumented, no middleware or extension is added, and the hot paths pay one
``enabled()`` check. On, the process gets its own ``TracerProvider`` (never the global
one, so that a test can install an in-memory exporter and take it away again):

- a span per HTTP request (the ASGI middleware; the probes excluded), per GraphQL
  operation (``metrics.OperationTracing``, Strawberry's extension), per SQL statement (the
  SQLAlchemy engine's events), per Redis command in a traced request (redis-py);
- ``outbox.add`` opens a PRODUCER span and stores its W3C trace context in the row's
  payload under ``TRACE_KEY`` (in the same INSERT: no statement more), the relay's send
  and the worker's job (CONSUMER) are its children, so one trace runs from the request
  that committed the row to the job that did the work, across Redis;
- root spans are kept only where work enters the process, a request (SERVER) or a job
  (CONSUMER): the relay's and arq's polling (SQL and Redis with no request around them)
  would otherwise be a trace every few milliseconds.
"""

from __future__ import annotations

import contextlib
import os
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.metrics import NoOpMeter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import Link, Span, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes
from sqlalchemy.ext.asyncio import AsyncEngine

from accountgraph.config import Settings

# The payload key of an outbox row that holds the W3C trace context of the span that
# wrote it ({"traceparent": ..., "tracestate": ...}); handlers never see it.
TRACE_KEY = "_trace"
# Polled by orchestrators and scrapers: no trace each.
EXCLUDED_URLS = "/healthz,/readyz,/metrics"
INSTRUMENTATION = "accountgraph"

_PROPAGATOR = TraceContextTextMapPropagator()
_NO_OP = trace.NoOpTracer()


class EntryPoints(Sampler):
    """Samples a root span only where work enters: a request or a job."""

    def should_sample(
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        if kind in (SpanKind.SERVER, SpanKind.CONSUMER):
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, trace_state)
        return SamplingResult(Decision.DROP, None, trace_state)

    def get_description(self) -> str:
        return "EntryPoints"


SAMPLER = ParentBased(root=EntryPoints())


class _State:
    provider: TracerProvider | None = None
    tracer: Tracer = _NO_OP
    engines: weakref.WeakSet[Any] = weakref.WeakSet()


_state = _State()


def enabled() -> bool:
    """Whether this process traces (``configure`` or ``install`` was called)."""
    return _state.provider is not None


def provider() -> TracerProvider | None:
    return _state.provider


def tracer() -> Tracer:
    """The process's tracer; a no-op one when tracing is off."""
    return _state.tracer


def configure(settings: Settings, *, service: str = "accountgraph") -> bool:
    """Tracing with the OTLP/HTTP exporter when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set
    (``OTEL_SERVICE_NAME`` names the service; ``service`` by default). Once per process:
    later calls, and calls after ``install``, change nothing. Returns ``enabled()``."""
    if enabled() or not settings.otlp_endpoint:
        return enabled()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # The exporter reads OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, headers, timeouts itself; the
    # generic endpoint is given its signal's path, as the SDK does.
    endpoint = None
    if not os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        endpoint = settings.otlp_endpoint.rstrip("/") + "/v1/traces"
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service}
    found = TracerProvider(resource=Resource.create(attributes), sampler=SAMPLER)
    found.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    install(found)
    return True


def install(found: TracerProvider) -> None:
    """Trace with ``found`` (its processors and exporters) from now on, Redis commands
    included; the tests' in-memory exporter comes in here."""
    uninstall()
    _state.provider = found
    _state.tracer = found.get_tracer(INSTRUMENTATION)
    RedisInstrumentor().instrument(tracer_provider=found)


def uninstall() -> TracerProvider | None:
    """Stop tracing (the provider is returned, not shut down)."""
    previous = _state.provider
    if previous is None:
        return None
    RedisInstrumentor().uninstrument()
    EngineTracer.remove_all_event_listeners()  # type: ignore[no-untyped-call]
    _state.engines = weakref.WeakSet()
    _state.provider = None
    _state.tracer = _NO_OP
    return previous


def instrument_engine(engine: AsyncEngine) -> None:
    """A span per SQL statement on ``engine`` (once per engine); nothing when off."""
    found = _state.provider
    if found is None or engine.sync_engine in _state.engines:
        return
    _state.engines.add(engine.sync_engine)
    usage = NoOpMeter(INSTRUMENTATION).create_up_down_counter("db.client.connections.usage")
    EngineTracer(  # type: ignore[no-untyped-call]
        found.get_tracer("opentelemetry.instrumentation.sqlalchemy"), engine.sync_engine, usage
    )


def asgi_middleware_options() -> dict[str, Any]:
    """The keyword arguments of ``OpenTelemetryMiddleware`` (``asgi_middleware``)."""
    return {
        "excluded_urls": EXCLUDED_URLS,
        "tracer_provider": _state.provider,
        "exclude_spans": ["receive", "send"],
    }


asgi_middleware = OpenTelemetryMiddleware


def carry(payload: Mapping[str, Any]) -> dict[str, Any]:
    """``payload`` with the current span's trace context under ``TRACE_KEY`` (a copy;
    unchanged when no span is being recorded)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    found = dict(payload)
    if carrier:
        found[TRACE_KEY] = carrier
    return found


def carried(payload: Mapping[str, Any]) -> otel_context.Context | None:
    """The trace context an outbox payload carries (``carry``), if any."""
    carrier = payload.get(TRACE_KEY)
    if not isinstance(carrier, dict):
        return None
    return _PROPAGATOR.extract({str(k): str(v) for k, v in carrier.items()})


@contextlib.contextmanager
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: otel_context.Context | None = None,
    attributes: Attributes = None,
) -> Iterator[Span]:
    """A span made current for the block (a child of ``parent`` if given, else of the
    current span); exceptions are recorded on it."""
    with _state.tracer.start_as_current_span(
        name, context=parent, kind=kind, attributes=attributes
    ) as found:
        yield found


def trace_id() -> str | None:
    """The current span's trace id (32 hex digits), if a span is being recorded."""
    found = trace.get_current_span().get_span_context()
    return format(found.trace_id, "032x") if found.is_valid else None


def span_id() -> str | None:
    found = trace.get_current_span().get_span_context()
    return format(found.span_id, "016x") if found.is_valid else None


__all__ = [
    "SAMPLER",
    "TRACE_KEY",
    "EntryPoints",
    "asgi_middleware",
    "asgi_middleware_options",
    "carried",
    "carry",
    "configure",
    "enabled",
    "install",
    "instrument_engine",
    "provider",
    "span",
    "span_id",
    "trace_id",
    "tracer",
    "uninstall",
]
