"""S8, S11: the sharing limit, the master's lock, and the recalculation of effective
sharing.

Every change of an input writes an outbox row ``sharing.recalculate`` for its master in
the same transaction; the job (``recalculate``) computes the master's grant set with one
set-based statement and replaces the stored result, keeping ``since`` of grants that did
not change. Jobs of one master take its ``sharing_state`` row lock one at a time (as every
change of the master's inputs does), and a job also marks done the master's other
pending rows it has covered (coalescing).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph import outbox
from accountgraph.domain import DomainError, ErrorCode
from accountgraph.sharing.compute import GRANTS, MEMBERS_PER_TYPE, SHARING_LIMIT
from accountgraph.sharing.models import sharing_state

TOPIC = outbox.SHARING_RECALCULATE
# The master's recalculation requests not yet done (index ix_outbox_pending_sharing).
PENDING_ROWS = text(f"""
    SELECT id FROM outbox WHERE topic = '{TOPIC}' AND done_at IS NULL
    AND (payload->>'master_id')::bigint = :master""")


async def request_recalculation(conn: AsyncConnection, master_id: int) -> None:
    """S11: recalculate this master's sharing after this transaction commits."""
    await outbox.add(conn, TOPIC, {"master_id": master_id})


async def recalculate(conn: AsyncConnection, master_id: int) -> None:
    """Replace the master's stored grants with the current grant set (idempotent)."""
    await lock_master(conn, master_id)
    covered = (await conn.execute(PENDING_ROWS, {"master": master_id})).scalars().all()
    await conn.execute(
        text(
            "CREATE TEMP TABLE computed_grants "
            "(account_id bigint, resource_id bigint, reason text) "
            "ON COMMIT DROP"
        )
    )
    await conn.execute(
        text("INSERT INTO computed_grants " + str(GRANTS.text)),
        {"master": master_id, "limit": SHARING_LIMIT},
    )
    await conn.execute(
        text("""
        DELETE FROM sharing_grants g WHERE g.master_id = :master AND NOT EXISTS (
          SELECT 1 FROM computed_grants c WHERE c.account_id = g.account_id
          AND c.resource_id = g.resource_id AND c.reason = g.reason)"""),
        {"master": master_id},
    )
    # Only the grants not stored yet (what is left of a pair after the DELETE has the
    # same reason); re-inserting every row with ON CONFLICT DO NOTHING cost a speculative
    # insertion each. Only this job writes the master's grants, under its lock: no
    # conflict can arise (and one would be a bug to fail on, not to ignore).
    await conn.execute(
        text("""
        INSERT INTO sharing_grants (master_id, account_id, resource_id, reason)
        SELECT :master, c.account_id, c.resource_id, c.reason FROM computed_grants c
        WHERE NOT EXISTS (
          SELECT 1 FROM sharing_grants g WHERE g.master_id = :master
          AND g.account_id = c.account_id AND g.resource_id = c.resource_id)"""),
        {"master": master_id},
    )
    # Dropped now, not only at commit: a transaction may recalculate more than once.
    await conn.execute(text("DROP TABLE computed_grants"))
    await conn.execute(
        update(sharing_state)
        .where(sharing_state.c.master_id == master_id)
        .values(calculated_at=func.now())
    )
    if covered:  # rows another job is running right now are left to that job
        await conn.execute(
            text("""
            UPDATE outbox SET done_at = now() WHERE id IN (
              SELECT id FROM outbox WHERE id = ANY(:ids) AND done_at IS NULL
              FOR UPDATE SKIP LOCKED)"""),
            {"ids": list(covered)},
        )


@outbox.handler(TOPIC)
async def _recalculate_job(
    conn: AsyncConnection, payload: dict[str, Any], context: outbox.JobContext
) -> None:
    await recalculate(conn, int(payload["master_id"]))


async def lock_master(conn: AsyncConnection, master_id: int) -> None:
    await conn.execute(
        pg_insert(sharing_state).values(master_id=master_id).on_conflict_do_nothing()
    )
    await conn.execute(
        select(sharing_state.c.master_id)
        .where(sharing_state.c.master_id == master_id)
        .with_for_update()
    )


async def members_per_type(conn: AsyncConnection, master_id: int) -> dict[str, int]:
    rows = (
        await conn.execute(MEMBERS_PER_TYPE, {"master": master_id, "limit": SHARING_LIMIT})
    ).all()
    return {row.type: int(row.members) for row in rows}


async def check_limit(
    conn: AsyncConnection, master_id: int, before: dict[str, int], field: list[str]
) -> None:
    """S8: a change may not take a type past 100 sharing members (nor further past it)."""
    after = await members_per_type(conn, master_id)
    over = [t for t, n in after.items() if n > SHARING_LIMIT and n > before.get(t, 0)]
    if over:
        raise DomainError(
            ErrorCode.SHARING_LIMIT,
            f"At most {SHARING_LIMIT} members may share {', '.join(over)}.",
            field,
        )
