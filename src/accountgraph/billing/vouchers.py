"""V1, V3, U4: voucher pools, vouchers and coupons (their consumption, V2, is credits.py).

A voucher pool is granted by an operator to a master (or a standalone account that may
become one; never to a member: INVALID_INPUT, as for a credit line, F6). The master's own
users create vouchers from it for named ACTIVE members (trusteeship or financial); what a
voucher takes from the pool is never given back. An operator issues coupons to any account
but a member with an ACTIVE trusteeship link (U4).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.accounts import public as accounts
from accountgraph.billing.models import coupons, voucher_members, voucher_pools, vouchers
from accountgraph.domain import ZERO, DomainError, ErrorCode, NotFound, Principal

MAX_VOUCHER_MEMBERS = 500


def _utc(value: datetime) -> datetime:
    """A time without a zone is UTC (as PostgreSQL would store it)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def grant_voucher_pool(
    conn: AsyncConnection, principal: Principal, *, master_id: int, amount: Decimal
) -> None:
    """V1 (operators): the pool of ``master_id`` grows by ``amount`` (> 0). A member
    account has no pool of its own (INVALID_INPUT)."""
    assert amount > 0
    await accounts.account_access(conn, principal, master_id, ["masterId"])
    if await accounts.is_member(conn, master_id):
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "A voucher pool is granted to a master or standalone account.",
            ["masterId"],
        )
    upsert = pg_insert(voucher_pools).values(master_id=master_id, granted=amount)
    await conn.execute(
        upsert.on_conflict_do_update(
            index_elements=["master_id"], set_={"granted": voucher_pools.c.granted + amount}
        )
    )


async def pool_remaining(conn: AsyncConnection, master_id: int, *, lock: bool = False) -> Decimal:
    """V1: granted - used (0 for an account never granted a pool)."""
    query = select(voucher_pools.c.granted - voucher_pools.c.used).where(
        voucher_pools.c.master_id == master_id
    )
    found: Decimal | None = (
        await conn.execute(query.with_for_update() if lock else query)
    ).scalar_one_or_none()
    return ZERO if found is None else found


async def create_voucher(
    conn: AsyncConnection,
    principal: Principal,
    *,
    master_id: int,
    amount: Decimal,
    valid_from: datetime,
    valid_until: datetime,
    member_ids: Sequence[int | None],
) -> int:
    """V1: the master's own users (or an operator) create a voucher from its pool.

    Checked in this order: the master is the principal's own (NOT_FOUND,
    PERMISSION_NOT_GRANTED); ``valid_from < valid_until`` (INVALID_INPUT at validUntil);
    1 to 500 members, each an ACTIVE member of the master, trusteeship or financial
    (NOT_FOUND at ``["memberIds", i]`` for the first that is not); ``amount`` ≤ what is
    left of the pool (INSUFFICIENT_FUNDS)."""
    assert amount > 0
    await accounts.own_or_operator(conn, principal, master_id, ["masterId"])
    valid_from, valid_until = _utc(valid_from), _utc(valid_until)
    if not valid_from < valid_until:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "A voucher is valid until a time after it becomes valid.",
            ["validUntil"],
        )
    if not 0 < len(member_ids) <= MAX_VOUCHER_MEMBERS:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"Name 1 to {MAX_VOUCHER_MEMBERS} members.", ["memberIds"]
        )
    members: list[int] = []
    for index, member_id in enumerate(member_ids):
        link = None if member_id is None else await accounts.active_link_as_member(conn, member_id)
        if member_id is None or link is None or link.master_id != master_id:
            raise NotFound(["memberIds", str(index)], "member of this master")
        if member_id not in members:
            members.append(member_id)
    remaining = await pool_remaining(conn, master_id, lock=True)
    if amount > remaining:
        raise DomainError(
            ErrorCode.INSUFFICIENT_FUNDS,
            f"Only {remaining} is left in the voucher pool.",
            ["amount"],
        )
    await conn.execute(
        update(voucher_pools)
        .where(voucher_pools.c.master_id == master_id)
        .values(used=voucher_pools.c.used + amount)
    )
    voucher_id: int = (
        await conn.execute(
            insert(vouchers)
            .values(
                master_id=master_id,
                amount=amount,
                remaining=amount,
                valid_from=valid_from,
                valid_until=valid_until,
            )
            .returning(vouchers.c.id)
        )
    ).scalar_one()
    await conn.execute(
        insert(voucher_members),
        [{"voucher_id": voucher_id, "member_id": member} for member in members],
    )
    assert await pool_remaining(conn, master_id) == remaining - amount
    return voucher_id


async def issue_coupon(
    conn: AsyncConnection,
    principal: Principal,
    *,
    account_id: int,
    amount: Decimal,
    valid_until: datetime,
) -> int:
    """V3 (operators): a coupon of ``amount`` (> 0) valid until a future time, to any
    account but a member with an ACTIVE trusteeship link (NOT_ALLOWED_WHILE_ASSOCIATED,
    U4: it uses its master's coupons)."""
    assert amount > 0
    await accounts.account_access(conn, principal, account_id, ["accountId"])
    valid_until = _utc(valid_until)
    if valid_until <= datetime.now(UTC):
        raise DomainError(
            ErrorCode.INVALID_INPUT, "A coupon expires in the future.", ["validUntil"]
        )
    if await accounts.trusteeship_link(conn, account_id) is not None:
        raise DomainError(
            ErrorCode.NOT_ALLOWED_WHILE_ASSOCIATED,
            "No coupons for a member under trusteeship: it uses its master's.",
            ["accountId"],
        )
    coupon_id: int = (
        await conn.execute(
            insert(coupons)
            .values(
                account_id=account_id,
                amount=amount,
                remaining=amount,
                valid_until=valid_until,
            )
            .returning(coupons.c.id)
        )
    ).scalar_one()
    return coupon_id
