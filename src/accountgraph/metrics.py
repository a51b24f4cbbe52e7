"""Prometheus metrics: requests and latency per operation, queue depth, job outcomes."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import Counter, Gauge, Histogram
from strawberry.extensions import SchemaExtension

OPERATIONS = Counter(
    "accountgraph_graphql_operations_total",
    "GraphQL operations by name, type and outcome",
    ["operation", "type", "outcome"],
)
LATENCY = Histogram(
    "accountgraph_graphql_operation_seconds",
    "GraphQL operation latency by name and type",
    ["operation", "type"],
)
QUEUE_DEPTH = Gauge("accountgraph_queue_depth", "Jobs waiting in the arq queue")
OUTBOX_PENDING = Gauge("accountgraph_outbox_pending", "Outbox rows not yet done")
JOBS = Counter("accountgraph_jobs_total", "Background jobs by function and outcome",
               ["function", "outcome"])


class OperationMetrics(SchemaExtension):
    """Counts and times every operation; the name is the client's operationName."""

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        yield
        context = self.execution_context
        name = (context.operation_name or "anonymous")[:64]
        try:
            kind = context.operation_type.value
        except RuntimeError:  # the document did not parse: there is no operation
            kind = "invalid"
        outcome = "error" if context.result is None or context.result.errors else "ok"
        OPERATIONS.labels(name, kind, outcome).inc()
        LATENCY.labels(name, kind).observe(time.perf_counter() - started)
