"""Prometheus metrics (README "Operating it", docs/grafana-dashboard.json): operations and
their latency by name, errors by code, rate-limit refusals, the DB pool, the queue and the
outbox backlog, jobs by topic and outcome, delivery failures by channel. And the GraphQL
operation's span when tracing is on (``OperationTracing``).

Every label comes from a bounded set: operation names as below, codes the server itself
writes (capped), topics with a handler, the channels of A4."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Generator, Iterator
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import Counter, Gauge, Histogram
from strawberry.extensions import LifecycleStep, SchemaExtension
from strawberry.extensions.tracing import OpenTelemetryExtension
from strawberry.types import ExecutionContext

from accountgraph import tracing

OPERATIONS = Counter(
    "accountgraph_graphql_operations_total",
    "GraphQL operations by name, type and outcome",
    ["operation", "type", "outcome"],
)
LATENCY = Histogram(
    "accountgraph_graphql_operation_seconds",
    "GraphQL operation latency by name and type",
    ["operation", "type"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
ERRORS = Counter(
    "accountgraph_graphql_errors_total",
    "Errors answered, by code: in the response's errors (kind=error) or a mutation "
    "payload's userErrors, the refusals of the rules (kind=user_error)",
    ["code", "kind"],
)
RATE_LIMITED = Counter(
    "accountgraph_rate_limit_refusals_total", "Operations refused with RATE_LIMITED"
)
QUEUE_DEPTH = Gauge("accountgraph_queue_depth", "Jobs waiting in the arq queue")
OUTBOX_PENDING = Gauge("accountgraph_outbox_pending", "Outbox rows not yet done")
OUTBOX_UNSENT = Gauge(
    "accountgraph_outbox_unsent", "Outbox rows due to be sent that the relay has not sent yet"
)
OUTBOX_OLDEST_UNSENT_AGE = Gauge(
    "accountgraph_outbox_oldest_unsent_age_seconds",
    "How long the oldest outbox row due to be sent has waited for the relay (0: none)",
)
DB_POOL_IN_USE = Gauge("accountgraph_db_pool_in_use", "Database connections checked out")
DB_POOL_WAITING = Gauge(
    "accountgraph_db_pool_waiting", "Tasks waiting for a database connection from the pool"
)
DB_POOL_LIMIT = Gauge(
    "accountgraph_db_pool_limit", "Database connections the pool may open (size + overflow)"
)
JOBS = Counter(
    "accountgraph_jobs_total",
    "Background jobs by topic (outbox rows) or sweep, and outcome",
    ["topic", "outcome"],
)
JOB_LATENCY = Histogram(
    "accountgraph_job_seconds",
    "Background job duration by topic",
    ["topic"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0, 300.0),
)
# accountgraph_delivery_failures_total is alerts.delivery's (rules load no GraphQL, and
# this module does).


# Labels come from a bounded set, never straight from a client: the names of operations
# in documents that a client with a token registered as persisted queries (the first
# ``MAX_NAMED`` of them in this process), the playground's, or ``other`` (``anonymous``
# for an operation without a name).
MAX_NAMED = 200
NAMED_OPERATIONS: set[str] = {"EnterpriseTree"}
OPERATION_NAME = re.compile(r"\b(?:query|mutation|subscription)\s+([_A-Za-z][_0-9A-Za-z]*)")


def name_operations(document: str) -> None:
    """Let the operations named in ``document`` (a registered persisted query) be labels."""
    for name in OPERATION_NAME.findall(document):
        if len(NAMED_OPERATIONS) >= MAX_NAMED:
            return
        if len(name) <= 64:
            NAMED_OPERATIONS.add(name)


def label_of(name: str | None) -> str:
    if name is None:
        return "anonymous"
    return name if name in NAMED_OPERATIONS else "other"


# Codes are written by the server, not the client; the cap is a guard all the same.
MAX_CODES = 100
CODE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_CODES: set[str] = set()


def code_label(code: object) -> str:
    if not isinstance(code, str) or not CODE.fullmatch(code):
        return "NONE"
    if code not in _CODES:
        if len(_CODES) >= MAX_CODES:
            return "OTHER"
        _CODES.add(code)
    return code


class OperationMetrics(SchemaExtension):
    """Counts and times every operation, labelled by a name from the bounded set above;
    counts its errors by code (and a mutation's userErrors)."""

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:  # also when a refusal while parsing is raised through the hooks
            self._observe(started)

    def _observe(self, started: float) -> None:
        context = self.execution_context
        name = label_of(context.operation_name)
        try:
            kind = context.operation_type.value
        except RuntimeError:  # the document did not parse: there is no operation
            kind = "invalid"
        result = context.result
        outcome = "error" if result is None or result.errors else "ok"
        OPERATIONS.labels(name, kind, outcome).inc()
        LATENCY.labels(name, kind).observe(time.perf_counter() - started)
        if result is None:
            # Refused while parsing (raised through the hooks, answered after them): of
            # those only a rate limit is told apart, by the 429 it set on the answer.
            response = getattr(context.context, "response", None)
            if getattr(response, "status_code", None) == 429:
                ERRORS.labels("RATE_LIMITED", "error").inc()
                RATE_LIMITED.inc()
            return
        for error in result.errors or ():
            code = (error.extensions or {}).get("code")
            ERRORS.labels(code_label(code), "error").inc()
            if code == "RATE_LIMITED":
                RATE_LIMITED.inc()
        if kind == "mutation" and isinstance(result.data, dict):
            for code in _user_error_codes(result.data):
                ERRORS.labels(code_label(code), "user_error").inc()


def _user_error_codes(data: dict[str, Any]) -> Iterator[object]:
    """The codes of the ``userErrors { code }`` of each mutation field that selected them
    (the audit log has every refusal, selected or not)."""
    for payload in data.values():
        errors = payload.get("userErrors") if isinstance(payload, dict) else None
        for item in errors if isinstance(errors, list) else ():
            if isinstance(item, dict):
                yield item.get("code")


class OperationTracing(OpenTelemetryExtension):
    """Strawberry's OpenTelemetry extension (parse and validation spans as it makes them)
    with the operation's span made current while it runs, so that the SQL statements and
    outbox rows of its resolvers are its children. No span per resolver (a tree read has
    thousands of fields) and no document text in the span (a document may spell a secret
    inline). Added per operation only while tracing is on (``schema.Schema``)."""

    resolve = SchemaExtension.resolve  # type: ignore[assignment]

    def __init__(self, *, execution_context: ExecutionContext | None = None) -> None:
        super().__init__(execution_context=execution_context, tracer_provider=tracing.provider())

    def on_operation(self) -> Generator[None, None, None]:
        context = self.execution_context
        span = self._tracer.start_span(_span_name(context.operation_name), kind=SpanKind.INTERNAL)
        span.set_attribute("component", "graphql")
        self._span_holder[LifecycleStep.OPERATION] = span
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            yield
        finally:
            otel_context.detach(token)
            if context.operation_name:  # known after parsing when the client named none
                span.update_name(_span_name(context.operation_name))
                span.set_attribute("graphql.operation.name", context.operation_name[:100])
            with contextlib.suppress(RuntimeError):  # the document did not parse
                span.set_attribute("graphql.operation.type", context.operation_type.value)
            result = context.result
            if result is not None and result.errors:
                span.set_status(Status(StatusCode.ERROR, result.errors[0].message[:200]))
            span.end()


def _span_name(operation: str | None) -> str:
    return f"GraphQL {operation[:100]}" if operation else "GraphQL operation"
