"""S1-S3, S8: resources, the types a master shares and the types its members accept.

Each change locks the master's sharing (``recalculation.lock_master``), checks the limit
of S8 against the counts before it, and requests the master's recalculation (S11).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import delete, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.accounts import public as accounts
from accountgraph.domain import DomainError, ErrorCode, NotFound, Principal
from accountgraph.sharing.models import accepted_resource_types, resources, shared_resource_types
from accountgraph.sharing.recalculation import (
    check_limit,
    lock_master,
    members_per_type,
    request_recalculation,
)

MAX_BATCH = 500


async def master_of(conn: AsyncConnection, account_id: int) -> int:
    """The enterprise an account's sharing belongs to: its ACTIVE master, or itself."""
    link = await accounts.active_link_as_member(conn, account_id)
    return account_id if link is None else int(link.master_id)


async def create_resource(
    conn: AsyncConnection,
    principal: Principal,
    *,
    owner_id: int,
    type: str,
    name: str,
    capacity: Decimal,
    valid_from: datetime,
    valid_until: datetime,
) -> int:
    """S1 (operators): a resource owned by one account."""
    await accounts.account_access(conn, principal, owner_id, ["ownerId"])
    # A time without a zone is UTC (as elsewhere); naive and aware cannot be compared.
    valid_from, valid_until = (
        moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        for moment in (valid_from, valid_until)
    )
    if valid_from >= valid_until:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "validFrom must be before validUntil.", ["validUntil"]
        )
    master_id = await master_of(conn, owner_id)
    await lock_master(conn, master_id)
    before = await members_per_type(conn, master_id)
    resource_id: int = (
        await conn.execute(
            insert(resources)
            .values(
                owner_id=owner_id,
                type=type,
                name=checked_name(name),
                capacity=capacity,
                valid_from=valid_from,
                valid_until=valid_until,
            )
            .returning(resources.c.id)
        )
    ).scalar_one()
    # S8: a master's first resource of a type may bring its sharing members past 100.
    await check_limit(conn, master_id, before, ["type"])
    await request_recalculation(conn, master_id)
    return resource_id


async def set_shared_types(
    conn: AsyncConnection, principal: Principal, *, master_id: int, types: Sequence[str]
) -> None:
    """S2: the types a master shares with its trusteeship members (S8 checked)."""
    await accounts.own_or_operator(conn, principal, master_id, ["masterId"])
    if await accounts.is_member(conn, master_id):
        raise DomainError(
            ErrorCode.INVALID_INPUT, "Members' own resources are never shared (S1).", ["masterId"]
        )
    await lock_master(conn, master_id)
    before = await members_per_type(conn, master_id)
    await conn.execute(
        delete(shared_resource_types).where(shared_resource_types.c.master_id == master_id)
    )
    if types:
        await conn.execute(
            insert(shared_resource_types),
            [{"master_id": master_id, "type": t} for t in sorted(set(types))],
        )
    await check_limit(conn, master_id, before, ["types"])
    await request_recalculation(conn, master_id)


async def set_accepted_types(
    conn: AsyncConnection,
    principal: Principal,
    *,
    member_ids: Sequence[int | None],
    types: Sequence[str],
) -> tuple[list[int], list[DomainError]]:
    """S3: the types each trusteeship member accepts, set by the member itself or by its
    master for many at once. Refused members are reported per index; the others change."""
    if len(member_ids) > MAX_BATCH:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"At most {MAX_BATCH} members at once.", ["memberIds"]
        )
    changed: list[int] = []
    errors: list[DomainError] = []
    masters: set[int] = set()
    for index, member_id in enumerate(member_ids):
        field = ["memberIds", str(index)]
        savepoint = await conn.begin_nested()
        try:
            if member_id is None:
                raise NotFound(field, "account")
            master_id = await trusteeship_master(conn, principal, member_id, field)
            await lock_master(conn, master_id)
            before = await members_per_type(conn, master_id)
            await conn.execute(
                delete(accepted_resource_types).where(
                    accepted_resource_types.c.member_id == member_id
                )
            )
            if types:
                await conn.execute(
                    insert(accepted_resource_types),
                    [{"member_id": member_id, "type": t} for t in sorted(set(types))],
                )
            await check_limit(conn, master_id, before, field)
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


async def trusteeship_master(
    conn: AsyncConnection, principal: Principal, member_id: int, field: list[str]
) -> int:
    """The master of an ACTIVE trusteeship member the principal may set (itself, its
    master, operators); a FINANCIAL member or an unlinked account is NOT_TRUSTEESHIP."""
    await accounts.account_access(conn, principal, member_id, field)
    link = await accounts.active_link_as_member(conn, member_id)
    if link is None or link.type != "TRUSTEESHIP":
        raise DomainError(
            ErrorCode.NOT_TRUSTEESHIP,
            "Only trusteeship members share the master's resources.",
            field,
        )
    return int(link.master_id)


def checked_name(value: str) -> str:
    name = value.strip()
    if not name or len(name) > 200 or "\x00" in name:
        raise DomainError(ErrorCode.INVALID_INPUT, "A name has 1 to 200 characters.", ["name"])
    return name
