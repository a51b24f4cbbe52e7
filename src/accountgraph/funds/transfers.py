"""F3-F6: allocation, reclamation, the transfer book, and credit lines and limits.

Each operation locks the master and the member (ascending ids), checks the link again
under the locks, checks its rule in the order DOMAIN.md lists it, writes one balanced
entry (ledger.py), and asserts the rule again after.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.accounts import public as accounts
from accountgraph.domain import ZERO, DomainError, ErrorCode, Principal
from accountgraph.funds.kinds import Bucket, DisbursementMethod, TransferDirection
from accountgraph.funds.ledger import Ledger
from accountgraph.funds.models import allocations

TRANSFER_PERMISSIONS = ("SYNC_CREDIT_CONTROL", "VIEW_FINANCE")


@dataclass(frozen=True, slots=True)
class Pair:
    """A master and a member joined by an ACTIVE link the principal may act on."""

    master_id: int
    member_id: int
    trusteeship: bool


async def _pair(
    conn: AsyncConnection, principal: Principal, master_id: int, member_id: int
) -> Pair:
    """F3: the master's own users (or an operator), an ACTIVE link, both permissions."""
    link = await accounts.member_link(conn, principal, master_id, member_id)
    missing = [p for p in TRANSFER_PERMISSIONS if p not in link.permissions]
    if missing:
        raise DomainError(
            ErrorCode.PERMISSION_NOT_GRANTED,
            f"The member has not granted {', '.join(missing)}.",
            ["memberId"],
        )
    return Pair(master_id, member_id, link.type == "TRUSTEESHIP")


async def _lock_pair(
    conn: AsyncConnection, principal: Principal, master_id: int, member_id: int
) -> tuple[Pair, Ledger]:
    pair = await _pair(conn, principal, master_id, member_id)
    ledger = await Ledger.lock(
        conn, [master_id, member_id], frozen=[member_id] if pair.trusteeship else []
    )
    # The link may have changed while we waited for the locks: check it again under them.
    pair = await _pair(conn, principal, master_id, member_id)
    return pair, ledger


def enterprise_available_credit(ledger: Ledger, master_id: int) -> Decimal:
    """F6: the master's own credit limit (line - Σ member limits, kept materialised) minus
    the master's outstanding fees (credit it already uses). Credit it was itself given as a
    member (transferred credit, kept after a dissociation, U5) is consumption-only (F3)."""
    master = ledger.before[master_id]
    return (
        master[Bucket.CREDIT_LIMIT]
        - master[Bucket.TRANSFERRED_CREDIT]
        - master[Bucket.OUTSTANDING_FEES]
    )


async def allocate(
    conn: AsyncConnection,
    principal: Principal,
    *,
    master_id: int,
    member_id: int,
    amount: Decimal,
    method: DisbursementMethod,
    idempotency_key: str | None,
) -> int:
    """F3: move ``amount`` to the member; returns the transfer id."""
    pair, ledger = await _lock_pair(conn, principal, master_id, member_id)
    if method is DisbursementMethod.CASH:
        # F3: cash the master was itself allocated as a member (kept after a dissociation,
        # U5) may only be consumed, never passed on.
        if amount > ledger.before[master_id].withdrawable_cash:
            raise DomainError(
                ErrorCode.INSUFFICIENT_FUNDS,
                "The master's cash balance is lower than the amount.",
                ["amount"],
            )
        ledger.move(Bucket.CASH, master_id, member_id, amount)
        ledger.move(Bucket.TRANSFERRED_CASH, None, member_id, amount)
    else:
        if amount > enterprise_available_credit(ledger, master_id):
            raise DomainError(
                ErrorCode.CREDIT_EXCEEDS_AVAILABLE,
                "The enterprise's available credit is lower than the amount.",
                ["amount"],
            )
        ledger.move(Bucket.CREDIT_LIMIT, master_id, member_id, amount)
        ledger.move(Bucket.TRANSFERRED_CREDIT, None, member_id, amount)
    return await _transfer(
        ledger, principal, pair, method, TransferDirection.ALLOCATE, amount, idempotency_key
    )


async def reclaim(
    conn: AsyncConnection,
    principal: Principal,
    *,
    master_id: int,
    member_id: int,
    amount: Decimal,
    method: DisbursementMethod,
    idempotency_key: str | None,
) -> int:
    """F4: take back at most the net allocated by this method and at most what is unspent."""
    pair, ledger = await _lock_pair(conn, principal, master_id, member_id)
    net = await _net_allocated(conn, master_id, member_id, method)
    if amount > net:
        raise DomainError(
            ErrorCode.EXCEEDS_NET_ALLOCATED,
            f"Only {net} was allocated by {method} and not reclaimed.",
            ["amount"],
        )
    member = ledger.before[member_id]
    if method is DisbursementMethod.CASH:
        unspent = member[Bucket.TRANSFERRED_CASH]
    else:
        # The unused credit, and of it only what the master gave and still gives: a limit
        # lowered by F6 gave part of the allocation back already, and a credit line of the
        # member's own (set while it stood alone, U5, then brought back) is not the master's.
        unused = max(ZERO, member[Bucket.CREDIT_LIMIT] - member[Bucket.OUTSTANDING_FEES])
        unspent = min(unused, member[Bucket.TRANSFERRED_CREDIT])
    if amount > unspent:
        raise DomainError(
            ErrorCode.EXCEEDS_UNSPENT, f"Only {unspent} of it is still unspent.", ["amount"]
        )
    if method is DisbursementMethod.CASH:
        ledger.move(Bucket.CASH, member_id, master_id, amount)
        ledger.move(Bucket.TRANSFERRED_CASH, member_id, None, amount)
    else:
        ledger.move(Bucket.CREDIT_LIMIT, member_id, master_id, amount)
        ledger.move(Bucket.TRANSFERRED_CREDIT, member_id, None, amount)
    return await _transfer(
        ledger, principal, pair, method, TransferDirection.RECLAIM, amount, idempotency_key
    )


async def _net_allocated(
    conn: AsyncConnection, master_id: int, member_id: int, method: DisbursementMethod
) -> Decimal:
    row = (
        await conn.execute(
            select(allocations.c.allocated, allocations.c.reclaimed).where(
                allocations.c.master_id == master_id,
                allocations.c.member_id == member_id,
                allocations.c.method == method,
            )
        )
    ).one_or_none()
    return ZERO if row is None else row.allocated - row.reclaimed


async def _transfer(
    ledger: Ledger,
    principal: Principal,
    pair: Pair,
    method: DisbursementMethod,
    direction: TransferDirection,
    amount: Decimal,
    idempotency_key: str | None,
) -> int:
    """F5: the transfer book record, the per-method totals, and the entry."""
    entry_id = await ledger.commit(direction, principal.actor)
    # The per-method totals and the book record, in one round trip. A reclamation is an
    # UPDATE, not an upsert: PostgreSQL checks CHECK constraints on the proposed insert row
    # before ON CONFLICT, and (allocated 0, reclaimed x) breaks reclaimed <= allocated. Its
    # row exists (net > 0); the statement returns no transfer if it did not.
    statement = _ALLOCATED if direction is TransferDirection.ALLOCATE else _RECLAIMED
    transfer_id: int = (
        await ledger.conn.exec_driver_sql(
            statement,
            (
                pair.master_id,
                pair.member_id,
                method.value,
                amount,
                direction.value,
                principal.actor,
                idempotency_key,
                entry_id,
            ),
        )
    ).scalar_one()
    after = ledger.after()
    # Pair assertions (TigerBeetle style): what the constraints also refuse.
    assert after[pair.member_id][Bucket.TRANSFERRED_CASH] <= after[pair.member_id][Bucket.CASH]
    assert (
        after[pair.master_id][Bucket.CASH] >= 0 and after[pair.master_id][Bucket.CREDIT_LIMIT] >= 0
    )
    return transfer_id


async def set_credit_line(
    conn: AsyncConnection, principal: Principal, *, master_id: int, amount: Decimal
) -> None:
    """F6 (operators): the enterprise credit line; the master keeps line - Σ member limits."""
    await accounts.account_access(conn, principal, master_id, ["masterId"])
    if await accounts.is_member(conn, master_id):
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "A credit line is set on a master or standalone account.",
            ["masterId"],
        )
    ledger = await Ledger.lock(conn, [master_id])
    delta = amount - ledger.before[master_id][Bucket.CREDIT_LINE]
    master = ledger.before[master_id]
    if master[Bucket.CREDIT_LIMIT] - master[Bucket.TRANSFERRED_CREDIT] + delta < 0:
        raise DomainError(
            ErrorCode.CREDIT_EXCEEDS_AVAILABLE,
            "Members already hold more credit than this line.",
            ["amount"],
        )
    ledger.move(Bucket.CREDIT_LINE, None, master_id, delta)
    ledger.move(Bucket.CREDIT_LIMIT, None, master_id, delta)
    if ledger.lines:
        await ledger.commit("CREDIT_LINE", principal.actor)


async def set_credit_limit(
    conn: AsyncConnection, principal: Principal, *, master_id: int, member_id: int, limit: Decimal
) -> None:
    """F6: Δ > 0 within the enterprise's available credit; Δ < 0 leaves the member's
    available quota > 0."""
    _, ledger = await _lock_pair(conn, principal, master_id, member_id)
    delta = limit - ledger.before[member_id][Bucket.CREDIT_LIMIT]
    if delta > 0 and delta > enterprise_available_credit(ledger, master_id):
        raise DomainError(
            ErrorCode.CREDIT_EXCEEDS_AVAILABLE,
            "The enterprise's available credit is lower than the increase.",
            ["limit"],
        )
    given = ledger.before[member_id][Bucket.TRANSFERRED_CREDIT]
    if delta < 0 and -delta > given:
        # F6 holds a member's limit to what its master gave; an account that brought a
        # credit line of its own into the association keeps that part (DOMAIN.md is
        # silent: the master can take back only what it gave, as F4 says of reclaims).
        raise DomainError(
            ErrorCode.EXCEEDS_NET_ALLOCATED,
            f"The master can lower this member's credit limit only by the credit it gave "
            f"({given}); the rest is the member's own.",
            ["limit"],
        )
    if delta < 0 and ledger.before[member_id].available_quota + delta <= 0:
        raise DomainError(
            ErrorCode.QUOTA_WOULD_BE_NON_POSITIVE,
            "The member's available quota would not stay above zero.",
            ["limit"],
        )
    ledger.move(Bucket.CREDIT_LIMIT, master_id, member_id, delta)
    ledger.move(Bucket.TRANSFERRED_CREDIT, None, member_id, delta)
    if ledger.lines:
        await ledger.commit("CREDIT_LIMIT", principal.actor)
        assert ledger.after()[member_id][Bucket.CREDIT_LIMIT] == limit


_BOOK = """
INSERT INTO transfers (master_id, member_id, method, direction, amount, actor,
                       idempotency_key, entry_id)
SELECT $1::bigint, $2::bigint, $3::text, $5::text, $4::numeric, $6::text, $7::text, $8::bigint
FROM total
RETURNING id
"""
_ALLOCATED = (
    """
WITH total AS (
  INSERT INTO allocations (master_id, member_id, method, allocated)
  VALUES ($1::bigint, $2::bigint, $3::text, $4::numeric)
  ON CONFLICT (master_id, member_id, method)
  DO UPDATE SET allocated = allocations.allocated + excluded.allocated
  RETURNING 1
)"""
    + _BOOK
)
_RECLAIMED = (
    """
WITH total AS (
  UPDATE allocations SET reclaimed = reclaimed + $4::numeric
  WHERE master_id = $1::bigint AND member_id = $2::bigint AND method = $3::text
  RETURNING 1
)"""
    + _BOOK
)
