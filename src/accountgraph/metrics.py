"""Prometheus metrics: requests and latency per operation, queue depth, job outcomes."""

from __future__ import annotations

import re
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
JOBS = Counter(
    "accountgraph_jobs_total", "Background jobs by function and outcome", ["function", "outcome"]
)


# Labels come from a bounded set, never straight from a client: the names of operations
# in documents that a client with a token registered as persisted queries (the first
# ``MAX_NAMED`` of them in this process), the playground's, or ``other``.
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
    return name if name is not None and name in NAMED_OPERATIONS else "other"


class OperationMetrics(SchemaExtension):
    """Counts and times every operation, labelled by a name from the bounded set above."""

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        yield
        context = self.execution_context
        name = label_of(context.operation_name)
        try:
            kind = context.operation_type.value
        except RuntimeError:  # the document did not parse: there is no operation
            kind = "invalid"
        outcome = "error" if context.result is None or context.result.errors else "ok"
        OPERATIONS.labels(name, kind, outcome).inc()
        LATENCY.labels(name, kind).observe(time.perf_counter() - started)
