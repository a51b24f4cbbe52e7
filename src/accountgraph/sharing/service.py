"""S1-S9, S11: the sharing inputs, their rules, and the recalculation of effective sharing.

Every change of an input writes an outbox row ``sharing.recalculate`` for its master in
the same transaction; the job (``recalculate``) computes the master's grant set with one
set-based statement and replaces the stored result, keeping ``since`` of grants that did
not change. Jobs of one master take its ``sharing_state`` row lock one at a time, and a
job also marks done the master's other pending rows it has covered (coalescing).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph import outbox
from accountgraph.accounts import service as accounts
from accountgraph.domain import DomainError, ErrorCode, NotFound, Principal
from accountgraph.sharing.compute import GRANTS, MEMBERS_PER_TYPE, SHARING_LIMIT
from accountgraph.sharing.models import (
    accepted_resource_types,
    resource_groups,
    resources,
    shared_resource_types,
    sharing_state,
    user_group_members,
    user_groups,
)

TOPIC = outbox.SHARING_RECALCULATE
# The master's recalculation requests not yet done (index ix_outbox_pending_sharing).
PENDING_ROWS = text(f"""
    SELECT id FROM outbox WHERE topic = '{TOPIC}' AND done_at IS NULL
    AND (payload->>'master_id')::bigint = :master""")
MAX_BATCH = 500


async def request_recalculation(conn: AsyncConnection, master_id: int) -> None:
    """S11: recalculate this master's sharing after this transaction commits."""
    await outbox.add(conn, TOPIC, {"master_id": master_id})


async def master_of(conn: AsyncConnection, account_id: int) -> int:
    """The enterprise an account's sharing belongs to: its ACTIVE master, or itself."""
    link = await accounts.active_link_as_member(conn, account_id)
    return account_id if link is None else int(link.master_id)


# ---------------------------------------------------------------- inputs (S1-S5)


async def create_resource(
    conn: AsyncConnection, principal: Principal, *, owner_id: int, type: str, name: str,
    capacity: Decimal, valid_from: datetime, valid_until: datetime,
) -> int:
    """S1 (operators): a resource owned by one account."""
    await accounts.account_access(conn, principal, owner_id, ["ownerId"])
    # A time without a zone is UTC (as elsewhere); naive and aware cannot be compared.
    valid_from, valid_until = (moment if moment.tzinfo is not None
                               else moment.replace(tzinfo=UTC)
                               for moment in (valid_from, valid_until))
    if valid_from >= valid_until:
        raise DomainError(ErrorCode.INVALID_INPUT, "validFrom must be before validUntil.",
                          ["validUntil"])
    master_id = await master_of(conn, owner_id)
    await _lock_master(conn, master_id)
    before = await _members_per_type(conn, master_id)
    resource_id: int = (await conn.execute(insert(resources).values(
        owner_id=owner_id, type=type, name=_name(name), capacity=capacity,
        valid_from=valid_from, valid_until=valid_until,
    ).returning(resources.c.id))).scalar_one()
    # S8: a master's first resource of a type may bring its sharing members past 100.
    await _check_limit(conn, master_id, before, ["type"])
    await request_recalculation(conn, master_id)
    return resource_id


async def set_shared_types(
    conn: AsyncConnection, principal: Principal, *, master_id: int, types: Sequence[str]
) -> None:
    """S2: the types a master shares with its trusteeship members (S8 checked)."""
    await accounts.own_or_operator(conn, principal, master_id, ["masterId"])
    if await accounts.is_member(conn, master_id):
        raise DomainError(ErrorCode.INVALID_INPUT,
                          "Members' own resources are never shared (S1).", ["masterId"])
    await _lock_master(conn, master_id)
    before = await _members_per_type(conn, master_id)
    await conn.execute(delete(shared_resource_types)
                       .where(shared_resource_types.c.master_id == master_id))
    if types:
        await conn.execute(insert(shared_resource_types),
                           [{"master_id": master_id, "type": t} for t in sorted(set(types))])
    await _check_limit(conn, master_id, before, ["types"])
    await request_recalculation(conn, master_id)


async def set_accepted_types(
    conn: AsyncConnection, principal: Principal, *, member_ids: Sequence[int | None],
    types: Sequence[str],
) -> tuple[list[int], list[DomainError]]:
    """S3: the types each trusteeship member accepts, set by the member itself or by its
    master for many at once. Refused members are reported per index; the others change."""
    if len(member_ids) > MAX_BATCH:
        raise DomainError(ErrorCode.INVALID_INPUT, f"At most {MAX_BATCH} members at once.",
                          ["memberIds"])
    changed: list[int] = []
    errors: list[DomainError] = []
    masters: set[int] = set()
    for index, member_id in enumerate(member_ids):
        field = ["memberIds", str(index)]
        savepoint = await conn.begin_nested()
        try:
            if member_id is None:
                raise NotFound(field, "account")
            master_id = await _trusteeship_master(conn, principal, member_id, field)
            await _lock_master(conn, master_id)
            before = await _members_per_type(conn, master_id)
            await conn.execute(delete(accepted_resource_types)
                               .where(accepted_resource_types.c.member_id == member_id))
            if types:
                await conn.execute(insert(accepted_resource_types), [
                    {"member_id": member_id, "type": t} for t in sorted(set(types))])
            await _check_limit(conn, master_id, before, field)
        except DomainError as error:
            await savepoint.rollback()
            errors.append(error)
            continue
        await savepoint.commit()
        changed.append(member_id)
        masters.add(master_id)
    for master_id in sorted(masters):
        await request_recalculation(conn, master_id)
    return changed, errors


async def create_user_group(
    conn: AsyncConnection, principal: Principal, *, master_id: int, name: str
) -> int:
    """S4: a user group of a master's trusteeship members (names unique per master)."""
    await accounts.own_or_operator(conn, principal, master_id, ["masterId"])
    if await accounts.is_member(conn, master_id):
        raise DomainError(ErrorCode.INVALID_INPUT, "Only a master has user groups.",
                          ["masterId"])
    savepoint = await conn.begin_nested()
    try:
        group_id: int = (await conn.execute(insert(user_groups).values(
            master_id=master_id, name=_name(name)).returning(user_groups.c.id))).scalar_one()
    except IntegrityError:
        await savepoint.rollback()
        raise DomainError(ErrorCode.CONFLICT, "The master has a group of that name.",
                          ["name"]) from None
    await savepoint.commit()
    return group_id


async def set_user_group_members(
    conn: AsyncConnection, principal: Principal, *, group_id: int, member_ids: Sequence[int | None]
) -> None:
    """S4, S7: the group's members become exactly these trusteeship members; a member
    that was in another group leaves it (a member is in at most one group)."""
    master_id = await _group_master(conn, principal, group_id)
    if len(member_ids) > MAX_BATCH:
        raise DomainError(ErrorCode.INVALID_INPUT, f"At most {MAX_BATCH} members at once.",
                          ["memberIds"])
    wanted: list[int] = []
    for index, member_id in enumerate(member_ids):
        field = ["memberIds", str(index)]
        if member_id is None:
            raise NotFound(field, "account")
        if await _trusteeship_master(conn, principal, member_id, field) != master_id:
            raise NotFound(field, "member of this group's master")
        wanted.append(member_id)
    await _lock_master(conn, master_id)
    before = await _members_per_type(conn, master_id)
    await conn.execute(delete(user_group_members).where(
        (user_group_members.c.group_id == group_id)
        | user_group_members.c.member_id.in_(wanted)))
    if wanted:
        await conn.execute(insert(user_group_members), [
            {"group_id": group_id, "member_id": m} for m in sorted(set(wanted))])
    await _check_limit(conn, master_id, before, ["memberIds"])
    await request_recalculation(conn, master_id)


async def share_resource_with_groups(
    conn: AsyncConnection, principal: Principal, *, resource_id: int,
    group_ids: Sequence[int | None],
) -> None:
    """S5: the resource becomes usable only by members of these groups (none: S6 again)."""
    if len(group_ids) > MAX_BATCH:
        raise DomainError(ErrorCode.INVALID_INPUT, f"At most {MAX_BATCH} groups at once.",
                          ["groupIds"])
    row = (await conn.execute(select(resources.c.owner_id)
                              .where(resources.c.id == resource_id))).one_or_none()
    if row is None:
        raise NotFound(["resourceId"], "resource")
    await accounts.own_or_operator(conn, principal, row.owner_id, ["resourceId"])
    if await accounts.is_member(conn, row.owner_id):
        raise DomainError(ErrorCode.INVALID_INPUT,
                          "Members' own resources are never shared (S1).", ["resourceId"])
    wanted = {group_id for group_id in group_ids if group_id is not None}
    owned = set((await conn.execute(
        select(user_groups.c.id).where(user_groups.c.id.in_(wanted),
                                       user_groups.c.master_id == row.owner_id))).scalars())
    for index, group_id in enumerate(group_ids):
        if group_id not in owned:
            raise NotFound(["groupIds", str(index)], "user group of the resource's owner")
    groups = [int(group_id) for group_id in group_ids if group_id is not None]
    await _lock_master(conn, row.owner_id)
    before = await _members_per_type(conn, row.owner_id)
    await conn.execute(delete(resource_groups).where(resource_groups.c.resource_id == resource_id))
    if groups:
        await conn.execute(insert(resource_groups), [
            {"resource_id": resource_id, "group_id": g} for g in sorted(set(groups))])
    await _check_limit(conn, row.owner_id, before, ["groupIds"])
    await request_recalculation(conn, row.owner_id)


# ---------------------------------------------------------------- recalculation (S11)


async def recalculate(conn: AsyncConnection, master_id: int) -> None:
    """Replace the master's stored grants with the current grant set (idempotent)."""
    await _lock_master(conn, master_id)
    covered = (await conn.execute(PENDING_ROWS, {"master": master_id})).scalars().all()
    await conn.execute(text("CREATE TEMP TABLE computed_grants "
                            "(account_id bigint, resource_id bigint, reason text) "
                            "ON COMMIT DROP"))
    await conn.execute(text("INSERT INTO computed_grants " + str(GRANTS.text)),
                       {"master": master_id, "limit": SHARING_LIMIT})
    await conn.execute(text("""
        DELETE FROM sharing_grants g WHERE g.master_id = :master AND NOT EXISTS (
          SELECT 1 FROM computed_grants c WHERE c.account_id = g.account_id
          AND c.resource_id = g.resource_id AND c.reason = g.reason)"""), {"master": master_id})
    # Only the grants not stored yet (what is left of a pair after the DELETE has the
    # same reason); re-inserting every row with ON CONFLICT DO NOTHING cost a speculative
    # insertion each. Only this job writes the master's grants, under its lock: no
    # conflict can arise (and one would be a bug to fail on, not to ignore).
    await conn.execute(text("""
        INSERT INTO sharing_grants (master_id, account_id, resource_id, reason)
        SELECT :master, c.account_id, c.resource_id, c.reason FROM computed_grants c
        WHERE NOT EXISTS (
          SELECT 1 FROM sharing_grants g WHERE g.master_id = :master
          AND g.account_id = c.account_id AND g.resource_id = c.resource_id)"""),
        {"master": master_id})
    # Dropped now, not only at commit: a transaction may recalculate more than once.
    await conn.execute(text("DROP TABLE computed_grants"))
    await conn.execute(update(sharing_state).where(sharing_state.c.master_id == master_id)
                       .values(calculated_at=func.now()))
    if covered:  # rows another job is running right now are left to that job
        await conn.execute(text("""
            UPDATE outbox SET done_at = now() WHERE id IN (
              SELECT id FROM outbox WHERE id = ANY(:ids) AND done_at IS NULL
              FOR UPDATE SKIP LOCKED)"""), {"ids": list(covered)})


@outbox.handler(TOPIC)
async def _recalculate_job(conn: AsyncConnection, payload: dict[str, Any],
                           context: outbox.JobContext) -> None:
    await recalculate(conn, int(payload["master_id"]))


# ---------------------------------------------------------------- helpers


async def _lock_master(conn: AsyncConnection, master_id: int) -> None:
    await conn.execute(pg_insert(sharing_state).values(master_id=master_id)
                       .on_conflict_do_nothing())
    await conn.execute(select(sharing_state.c.master_id)
                       .where(sharing_state.c.master_id == master_id).with_for_update())


async def _members_per_type(conn: AsyncConnection, master_id: int) -> dict[str, int]:
    rows = (await conn.execute(MEMBERS_PER_TYPE, {"master": master_id,
                                                  "limit": SHARING_LIMIT})).all()
    return {row.type: int(row.members) for row in rows}


async def _check_limit(conn: AsyncConnection, master_id: int, before: dict[str, int],
                       field: list[str]) -> None:
    """S8: a change may not take a type past 100 sharing members (nor further past it)."""
    after = await _members_per_type(conn, master_id)
    over = [t for t, n in after.items() if n > SHARING_LIMIT and n > before.get(t, 0)]
    if over:
        raise DomainError(ErrorCode.SHARING_LIMIT,
                          f"At most {SHARING_LIMIT} members may share {', '.join(over)}.", field)


async def _trusteeship_master(conn: AsyncConnection, principal: Principal, member_id: int,
                              field: list[str]) -> int:
    """The master of an ACTIVE trusteeship member the principal may set (itself, its
    master, operators); a FINANCIAL member or an unlinked account is NOT_TRUSTEESHIP."""
    await accounts.account_access(conn, principal, member_id, field)
    link = await accounts.active_link_as_member(conn, member_id)
    if link is None or link.type != "TRUSTEESHIP":
        raise DomainError(ErrorCode.NOT_TRUSTEESHIP,
                          "Only trusteeship members share the master's resources.", field)
    return int(link.master_id)


async def _group_master(conn: AsyncConnection, principal: Principal, group_id: int) -> int:
    row = (await conn.execute(select(user_groups.c.master_id)
                              .where(user_groups.c.id == group_id))).one_or_none()
    if row is None:
        raise NotFound(["groupId"], "user group")
    await accounts.own_or_operator(conn, principal, row.master_id, ["groupId"])
    return int(row.master_id)


def _name(value: str) -> str:
    name = value.strip()
    if not name or len(name) > 200 or "\x00" in name:
        raise DomainError(ErrorCode.INVALID_INPUT, "A name has 1 to 200 characters.", ["name"])
    return name
