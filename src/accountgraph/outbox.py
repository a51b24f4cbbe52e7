"""Outbox: background work committed with the change that needs it (A5, S11).

A service calls ``add(conn, topic, payload)`` inside its transaction; the row becomes
visible only if that transaction commits (and ``NOTIFY`` is transactional too, so the
relay is woken only then). The relay enqueues each committed row as one arq job whose
``_job_id`` is derived from the row, so a row is never two jobs at once; a sweep
re-enqueues rows that were sent but never finished (Redis lost them). A job runs its
handler and marks the row done in one transaction, so running it twice has one effect.

Traced (``tracing.py``, when on): ``add`` is a PRODUCER span whose trace context rides in
the payload (``tracing.TRACE_KEY``, written by the same INSERT), the relay's send of a row
and the job that runs it are its children; handlers get the payload without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from opentelemetry.trace import SpanKind
from sqlalchemy import (
    BigInteger,
    DateTime,
    Identity,
    Index,
    Integer,
    String,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel import Field, SQLModel

from accountgraph import logs, tracing
from accountgraph.db import table_of

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "accountgraph_outbox"
JOB_FUNCTION = "run_outbox_row"
# Topics written by more than one area (the account graph's link changes end or start
# sharing, S9), and topics whose pending rows this table indexes (C4); each area's other
# topics live with the area.
SHARING_RECALCULATE = "sharing.recalculate"
BUDGETS_EVALUATE = "budgets.evaluate"
RELAY_BATCH = 500


class OutboxRow(SQLModel, table=True):
    """One piece of background work, committed with the change that needs it."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_unsent", "id", postgresql_where=text("sent_at IS NULL")),
        Index(
            "ix_outbox_sent_not_done",
            "sent_at",
            postgresql_where=text("sent_at IS NOT NULL AND done_at IS NULL"),
        ),
        # S11: "is a recalculation pending for this master?" on every sharing read
        # (migration 0003).
        Index(
            "ix_outbox_pending_sharing",
            text("((payload->>'master_id')::bigint)"),
            postgresql_where=text(f"topic = '{SHARING_RECALCULATE}' AND done_at IS NULL"),
        ),
        # C4: "is an evaluation of this account's budgets pending?" on every charge's job
        # (migration 0010).
        Index(
            "ix_outbox_pending_budgets",
            text("((payload->>'account_id')::bigint)"),
            postgresql_where=text(f"topic = '{BUDGETS_EVALUATE}' AND done_at IS NULL"),
        ),
    )

    id: int = Field(primary_key=True, sa_type=BigInteger, sa_column_args=[Identity()])
    topic: str = Field(sa_type=String(100))
    payload: dict[str, Any] = Field(sa_type=JSONB)
    created_at: datetime = Field(
        sa_type=DateTime(timezone=True), sa_column_kwargs={"server_default": func.now()}
    )
    sent_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    send_count: int = Field(sa_type=Integer, sa_column_kwargs={"server_default": text("0")})
    done_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    # Not to be run before this time (retries with backoff); NULL: at once.
    not_before: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


outbox = table_of(OutboxRow)


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a handler may need besides its transaction: settings and the Redis pool."""

    settings: Any = None
    redis: Any = None


Handler = Callable[[AsyncConnection, dict[str, Any], JobContext], Awaitable[None]]
_handlers: dict[str, Handler] = {}


def handler(topic: str) -> Callable[[Handler], Handler]:
    """Register the function that does the work of ``topic`` rows (in the row's transaction)."""

    def register(function: Handler) -> Handler:
        if topic in _handlers and _handlers[topic] is not function:
            raise ValueError(f"outbox topic {topic!r} already has a handler")
        _handlers[topic] = function
        return function

    return register


async def add(
    conn: AsyncConnection, topic: str, payload: dict[str, Any], *, delay_s: float | None = None
) -> int:
    """Record work to do after this transaction commits (not before ``delay_s`` seconds
    from now, if given); returns the row id."""
    if tracing.enabled():
        with tracing.span(
            f"outbox add {topic}",
            kind=SpanKind.PRODUCER,
            attributes={"messaging.system": "accountgraph.outbox", "outbox.topic": topic},
        ) as span:
            row_id = await _insert(conn, topic, tracing.carry(payload), delay_s)
            span.set_attribute("outbox.row_id", row_id)
            return row_id
    return await _insert(conn, topic, payload, delay_s)


async def add_many(conn: AsyncConnection, rows: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """``add`` for many rows, (topic, payload) each: one INSERT and one NOTIFY (set-based
    work, such as the sweep's, writes hundreds at once)."""
    if not rows:
        return
    traced = tracing.enabled()
    span = (
        tracing.span(
            "outbox add",
            kind=SpanKind.PRODUCER,
            attributes={"messaging.system": "accountgraph.outbox", "outbox.rows": len(rows)},
        )
        if traced
        else contextlib.nullcontext()
    )
    with span:
        values = [
            {"topic": topic, "payload": tracing.carry(payload) if traced else payload}
            for topic, payload in rows
        ]
        await conn.execute(outbox.insert().values(values))  # one multi-row INSERT
    await conn.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))


async def _insert(
    conn: AsyncConnection, topic: str, payload: dict[str, Any], delay_s: float | None
) -> int:
    values: dict[str, Any] = {"topic": topic, "payload": payload}
    if delay_s is not None:
        values["not_before"] = func.now() + timedelta(seconds=delay_s)
    row_id: int = (
        await conn.execute(outbox.insert().values(**values).returning(outbox.c.id))
    ).scalar_one()
    await conn.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))
    return row_id


def registered(topic: str | None) -> bool:
    """Whether ``topic`` has a handler in this process."""
    return topic in _handlers


def job_id(row_id: int, queue: str) -> str:
    """The row's arq job id. arq keeps job and result keys per id for the whole Redis
    database, not per queue, and row ids restart in every new database: with the queue in
    the id, two deployments (or test runs) on one Redis database, each with its own queue
    (ACCOUNTGRAPH_QUEUE), never refuse each other's jobs as already there."""
    return f"{queue}:outbox:{row_id}"


async def relay_once(engine: AsyncEngine, redis: Any, *, resend_after_s: float) -> int:
    """Enqueue committed rows not yet sent, and re-send those sent long ago but not done.

    Rows are locked with SKIP LOCKED so several relays can run; a row is marked sent in
    the same transaction, after Redis accepted it: if Redis is down the transaction rolls
    back and the rows wait for the next round. Returns how many rows were enqueued.
    """
    if not _handlers:
        return 0
    traced = tracing.enabled()
    # Traced, each row's trace context comes along, in the same statement.
    columns = (
        [outbox.c.id, outbox.c.topic, outbox.c.payload[tracing.TRACE_KEY].label("trace")]
        if traced
        else [outbox.c.id]
    )
    async with engine.begin() as conn:
        found = (
            await conn.execute(
                select(*columns)
                .where(
                    # Only topics this process can run: rows of a topic whose handler is
                    # not deployed yet wait for it instead of failing.
                    outbox.c.topic.in_(list(_handlers)),
                    outbox.c.not_before.is_(None) | (outbox.c.not_before <= func.now()),
                    (outbox.c.sent_at.is_(None))
                    | (
                        outbox.c.done_at.is_(None)
                        & (
                            outbox.c.sent_at
                            < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, resend_after_s)
                        )
                    ),
                )
                .order_by(outbox.c.id)
                .limit(RELAY_BATCH)
                .with_for_update(skip_locked=True)
            )
        ).all()
        if not found:
            return 0
        rows = [row.id for row in found]
        for row in found:
            # A second enqueue with the same _job_id is refused while the job (or its
            # result) is still in Redis: the sweep never doubles a job Redis still has.
            if traced:
                await _traced_send(redis, row)
            else:
                await redis.enqueue_job(
                    JOB_FUNCTION, row_id=row.id, _job_id=job_id(row.id, redis.default_queue_name)
                )
        await conn.execute(
            update(outbox)
            .where(outbox.c.id.in_(rows))
            .values(sent_at=func.now(), send_count=outbox.c.send_count + 1)
        )
        return len(rows)


async def _traced_send(redis: Any, row: Any) -> None:
    """The relay's enqueue of one row, as a child of the span that added the row."""
    parent = tracing.carried({tracing.TRACE_KEY: row.trace})
    with tracing.span(
        f"outbox send {row.topic}",
        kind=SpanKind.PRODUCER,
        parent=parent,
        attributes={"outbox.topic": row.topic, "outbox.row_id": row.id},
    ):
        await redis.enqueue_job(
            JOB_FUNCTION, row_id=row.id, _job_id=job_id(row.id, redis.default_queue_name)
        )


async def run_row(engine: AsyncEngine, row_id: int, context: JobContext | None = None) -> bool:
    """Do the work of one outbox row exactly once; returns False if it was already done.
    The row's topic goes into the log scope (the job's lines and its metrics say it)."""
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                select(outbox.c.topic, outbox.c.payload, outbox.c.done_at)
                .where(outbox.c.id == row_id)
                .with_for_update()
            )
        ).one_or_none()
        scope = logs.current()
        if scope is not None and row is not None:
            scope.topic = row.topic
        if row is None or row.done_at is not None:
            return False
        function = _handlers.get(row.topic)
        if function is None:
            raise LookupError(f"no outbox handler for topic {row.topic!r}")
        payload = dict(row.payload)
        carrier = payload.pop(tracing.TRACE_KEY, None)  # the handler's input is its own
        if not tracing.enabled():
            await _run(conn, row_id, function, payload, context)
            return True
        with tracing.span(
            f"job {row.topic}",
            kind=SpanKind.CONSUMER,
            parent=tracing.carried({tracing.TRACE_KEY: carrier}),
            attributes={
                "outbox.topic": row.topic,
                "outbox.row_id": row_id,
                "arq.job_id": scope.job_id if scope is not None and scope.job_id else "",
            },
        ):
            if scope is not None:
                scope.trace_id = tracing.trace_id()
            await _run(conn, row_id, function, payload, context)
        return True


async def _run(
    conn: AsyncConnection,
    row_id: int,
    function: Handler,
    payload: dict[str, Any],
    context: JobContext | None,
) -> None:
    await function(conn, payload, context or JobContext())
    await conn.execute(update(outbox).where(outbox.c.id == row_id).values(done_at=func.now()))


async def relay_forever(
    engine: AsyncEngine, redis: Any, *, poll_s: float, resend_after_s: float
) -> None:
    """Run the relay until cancelled: woken by NOTIFY at commit, and every ``poll_s`` anyway
    (which is also the sweep for rows Redis lost). Errors are logged and retried."""
    wake = asyncio.Event()
    listener = await _listen(engine, wake)
    try:
        while True:
            try:
                while await relay_once(engine, redis, resend_after_s=resend_after_s):
                    pass  # a full batch: there may be more
            except Exception as error:  # Redis or PostgreSQL away: the rows wait, none is lost
                log.warning("outbox relay round failed, will retry: %s", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), poll_s)
            wake.clear()
    finally:
        if listener is not None:
            with contextlib.suppress(Exception):
                await listener.close()


async def _listen(engine: AsyncEngine, wake: asyncio.Event) -> Any:
    """A dedicated asyncpg connection LISTENing for commits (the caller closes it); None if
    it cannot (polling alone still moves every row)."""
    driver: Any = None
    try:
        raw = await engine.raw_connection()
        # Out of the pool: the relay closes it itself (asyncpg's close is a coroutine; the
        # pool's sync close path cannot do IO here), and no other user ever gets it back
        # with the listener still on it.
        driver = raw.driver_connection
        raw.detach()
        await driver.add_listener(NOTIFY_CHANNEL, lambda *_: wake.set())
    except Exception as error:
        if driver is not None:
            with contextlib.suppress(Exception):
                await driver.close()
        log.warning("outbox relay cannot LISTEN, polling only: %s", error)
        return None
    return driver
