"""Issue 15, traces: one mutation's trace from the HTTP request through its GraphQL
operation, its SQL statements and its outbox rows to the worker's jobs, in one trace with
the right parents; the log lines carry its trace id; off, nothing is traced or carried."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import httpx
import pytest
from arq.connections import ArqRedis
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from accountgraph import logs, outbox, tracing
from accountgraph.app import create_app
from accountgraph.config import Settings
from tests.conftest import serving
from tests.helpers import ALL_PERMISSIONS, OPERATOR_TOKEN, Api, json_log_lines

ACCEPT = """mutation Accept($input: RespondToInvitationInput!) {
  respondToInvitation(input: $input) { link { id status } userErrors { code field } } }"""
TOPIC = outbox.SHARING_RECALCULATE


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """The SDK in this process with an in-memory exporter, as configure() sets it up with
    OTLP (the same sampler); taken away afterwards."""
    found = InMemorySpanExporter()
    provider = TracerProvider(sampler=tracing.SAMPLER)
    provider.add_span_processor(SimpleSpanProcessor(found))
    tracing.install(provider)
    try:
        yield found
    finally:
        tracing.uninstall()
        provider.shutdown()


@pytest.fixture
async def traced_api(
    exporter: InMemorySpanExporter,
    settings: Settings,
    engine: AsyncEngine,
    redis: ArqRedis,
    clean: None,
) -> AsyncIterator[Api]:
    """A gateway made while tracing is on (its middleware and engine traced)."""
    async with (
        serving(create_app(settings, engine, redis)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        yield Api(client, engine)


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    with json_log_lines() as stream:
        yield stream


def _one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    [found] = [span for span in spans if span.name == name]
    return found


def _parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def _id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def _trace(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.trace_id)


def _row_id(span: ReadableSpan) -> int:
    return int(str((span.attributes or {})["outbox.row_id"]))


def _statement(span: ReadableSpan) -> str:
    attributes = span.attributes or {}
    return str(attributes.get("db.statement") or attributes.get("db.query.text") or "")


async def test_a_mutation_is_one_trace_from_the_request_to_its_jobs(
    traced_api: Api,
    exporter: InMemorySpanExporter,
    engine: AsyncEngine,
    run_jobs: Any,
    settings: Settings,
    json_lines: io.StringIO,
) -> None:
    api = traced_api
    master, member = await api.account("Traced master"), await api.account("Traced member")
    link = await api.invite(master, member)
    exporter.clear()

    response = await api.client.post(
        "/graphql",
        json={
            "query": ACCEPT,
            "variables": {
                "input": {"linkId": link, "accept": True, "permissions": ALL_PERMISSIONS}
            },
        },
        headers={"Authorization": f"Bearer {OPERATOR_TOKEN}", "X-Request-Id": "traced-1"},
    )
    assert response.json()["data"]["respondToInvitation"]["userErrors"] == []
    await run_jobs()

    spans = list(exporter.get_finished_spans())
    operation = _one(spans, "GraphQL Accept")
    trace_id = _trace(operation)
    in_trace = [span for span in spans if _trace(span) == trace_id]

    # The request: the ASGI server span is the root, the operation its child.
    [request] = [span for span in in_trace if span.kind is SpanKind.SERVER and span.parent is None]
    assert request.name == "POST /graphql"
    assert _parent_id(operation) == _id(request)
    assert (operation.attributes or {})["graphql.operation.type"] == "mutation"
    # The operation's SQL statements are its children (the link's UPDATE among them).
    statements = [
        span
        for span in in_trace
        if span.kind is SpanKind.CLIENT and _parent_id(span) == _id(operation)
    ]
    assert any("UPDATE links" in _statement(span) for span in statements), [
        _statement(span) for span in statements
    ]
    # Two outbox rows (S1: both enterprises are recalculated), each added in its own
    # PRODUCER span under the operation, its INSERT inside.
    added = [span for span in in_trace if span.name == f"outbox add {TOPIC}"]
    assert len(added) == 2
    for span in added:
        assert span.kind is SpanKind.PRODUCER and _parent_id(span) == _id(operation)
        [insert] = [s for s in in_trace if _parent_id(s) == _id(span) and "INSERT" in _statement(s)]
        assert "outbox" in _statement(insert)
    rows = {_row_id(span): span for span in added}

    # Across Redis: the relay's send and the worker's job are children of the row's span.
    sent = [span for span in in_trace if span.name == f"outbox send {TOPIC}"]
    jobs = [span for span in in_trace if span.name == f"job {TOPIC}"]
    assert len(sent) == 2 and len(jobs) == 2
    for span in sent + jobs:
        assert _parent_id(span) == _id(rows[_row_id(span)])
    for job in jobs:
        assert job.kind is SpanKind.CONSUMER
        assert (job.attributes or {})["arq.job_id"] == outbox.job_id(
            _row_id(job), settings.queue_name
        )
        # The job's own statements (the handler's, the row marked done) are its children.
        assert any(
            "UPDATE outbox" in _statement(span) for span in in_trace if _parent_id(span) == _id(job)
        )

    # The rows carry the context in their payload (written by the INSERT itself).
    async with engine.connect() as conn:
        payloads = (
            (
                await conn.execute(
                    select(outbox.outbox.c.payload).where(outbox.outbox.c.id.in_(rows))
                )
            )
            .scalars()
            .all()
        )
    hex_trace = format(trace_id, "032x")
    assert all(hex_trace in payload[tracing.TRACE_KEY]["traceparent"] for payload in payloads)

    # The logs say the same trace: the request's line and the worker's job lines.
    lines = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    [request_line] = [line for line in lines if line.get("request_id") == "traced-1"]
    assert request_line["trace_id"] == hex_trace
    done = [line for line in lines if line["message"] == "job done" and line.get("topic") == TOPIC]
    assert {line["outbox_row_id"] for line in done} == set(rows)
    for line in done:
        assert line["trace_id"] == hex_trace
        assert line["job_id"] == outbox.job_id(line["outbox_row_id"], settings.queue_name)


async def test_work_with_no_request_around_it_is_not_a_trace(
    exporter: InMemorySpanExporter, engine: AsyncEngine, settings: Settings, redis: ArqRedis
) -> None:
    """The relay's and arq's polling would be a trace every few ms: statements outside a
    request or a job are not recorded."""
    create_app(settings, engine, redis)  # instruments the engine
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    assert exporter.get_finished_spans() == ()


async def test_off_nothing_is_traced_or_carried(
    engine: AsyncEngine, settings: Settings, redis: ArqRedis, clean: None
) -> None:
    assert not tracing.enabled()
    app = create_app(settings, engine, redis)
    assert all(
        cast(object, item.cls) is not tracing.asgi_middleware for item in app.user_middleware
    )
    async with engine.begin() as conn:
        row_id = await outbox.add(conn, TOPIC, {"master_id": 1})
        payload = (
            await conn.execute(select(outbox.outbox.c.payload).where(outbox.outbox.c.id == row_id))
        ).scalar_one()
    assert payload == {"master_id": 1}
    assert logs.current() is None and tracing.trace_id() is None
