"""F3-F8, U2-U4: the money operations. Each locks, checks its rule in the order DOMAIN.md
lists it, writes one balanced entry (ledger.py), and asserts the rule again after."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.accounts import service as accounts
from accountgraph.billing import credits, payment_methods
from accountgraph.domain import ZERO, DomainError, ErrorCode, NotFound, Principal
from accountgraph.funds.ledger import Ledger
from accountgraph.funds.models import allocations, charges, payments, transfers

TRANSFER_PERMISSIONS = ("SYNC_CREDIT_CONTROL", "VIEW_FINANCE")
ADJUSTABLE = ("BANKERS_ACCEPTANCE_BILL", "CREDIT_REFUND", "UNSETTLED_AMOUNT", "NEGATIVE_BILL")


@dataclass(frozen=True, slots=True)
class Pair:
    """A master and a member joined by an ACTIVE link the principal may act on."""

    master_id: int
    member_id: int
    trusteeship: bool


async def _pair(conn: AsyncConnection, principal: Principal, master_id: int, member_id: int
                ) -> Pair:
    """F3: the master's own users (or an operator), an ACTIVE link, both permissions."""
    link = await accounts.member_link(conn, principal, master_id, member_id)
    missing = [p for p in TRANSFER_PERMISSIONS if p not in link.permissions]
    if missing:
        raise DomainError(ErrorCode.PERMISSION_NOT_GRANTED,
                          f"The member has not granted {', '.join(missing)}.", ["memberId"])
    return Pair(master_id, member_id, link.type == "TRUSTEESHIP")


async def _lock_pair(conn: AsyncConnection, principal: Principal, master_id: int,
                     member_id: int) -> tuple[Pair, Ledger]:
    pair = await _pair(conn, principal, master_id, member_id)
    ledger = await Ledger.lock(conn, [master_id, member_id],
                               frozen=[member_id] if pair.trusteeship else [])
    # The link may have changed while we waited for the locks: check it again under them.
    pair = await _pair(conn, principal, master_id, member_id)
    return pair, ledger


def enterprise_available_credit(ledger: Ledger, master_id: int) -> Decimal:
    """F6: the master's own credit limit (line - Σ member limits, kept materialised) minus
    the master's outstanding fees (credit it already uses). Credit it was itself given as a
    member (transferred credit, kept after a dissociation, U5) is consumption-only (F3)."""
    master = ledger.before[master_id]
    return master["CREDIT_LIMIT"] - master["TRANSFERRED_CREDIT"] - master["OUTSTANDING_FEES"]


async def allocate(conn: AsyncConnection, principal: Principal, *, master_id: int,
                   member_id: int, amount: Decimal, method: str,
                   idempotency_key: str | None) -> int:
    """F3: move ``amount`` to the member; returns the transfer id."""
    pair, ledger = await _lock_pair(conn, principal, master_id, member_id)
    if method == "CASH":
        # F3: cash the master was itself allocated as a member (kept after a dissociation,
        # U5) may only be consumed, never passed on.
        if amount > ledger.before[master_id].withdrawable_cash:
            raise DomainError(ErrorCode.INSUFFICIENT_FUNDS,
                              "The master's cash balance is lower than the amount.", ["amount"])
        ledger.move("CASH", master_id, member_id, amount)
        ledger.move("TRANSFERRED_CASH", None, member_id, amount)
    else:
        if amount > enterprise_available_credit(ledger, master_id):
            raise DomainError(ErrorCode.CREDIT_EXCEEDS_AVAILABLE,
                              "The enterprise's available credit is lower than the amount.",
                              ["amount"])
        ledger.move("CREDIT_LIMIT", master_id, member_id, amount)
        ledger.move("TRANSFERRED_CREDIT", None, member_id, amount)
    return await _transfer(ledger, principal, pair, method, "ALLOCATE", amount, idempotency_key)


async def reclaim(conn: AsyncConnection, principal: Principal, *, master_id: int,
                  member_id: int, amount: Decimal, method: str,
                  idempotency_key: str | None) -> int:
    """F4: take back at most the net allocated by this method and at most what is unspent."""
    pair, ledger = await _lock_pair(conn, principal, master_id, member_id)
    net = await _net_allocated(conn, master_id, member_id, method)
    if amount > net:
        raise DomainError(ErrorCode.EXCEEDS_NET_ALLOCATED,
                          f"Only {net} was allocated by {method} and not reclaimed.", ["amount"])
    member = ledger.before[member_id]
    if method == "CASH":
        unspent = member["TRANSFERRED_CASH"]
    else:
        unspent = max(ZERO, member["CREDIT_LIMIT"] - member["OUTSTANDING_FEES"])
    if amount > unspent:
        raise DomainError(ErrorCode.EXCEEDS_UNSPENT,
                          f"Only {unspent} of it is still unspent.", ["amount"])
    if method == "CASH":
        ledger.move("CASH", member_id, master_id, amount)
        ledger.move("TRANSFERRED_CASH", member_id, None, amount)
    else:
        ledger.move("CREDIT_LIMIT", member_id, master_id, amount)
        ledger.move("TRANSFERRED_CREDIT", member_id, None, amount)
    return await _transfer(ledger, principal, pair, method, "RECLAIM", amount, idempotency_key)


async def _net_allocated(conn: AsyncConnection, master_id: int, member_id: int, method: str
                         ) -> Decimal:
    row = (await conn.execute(select(allocations.c.allocated, allocations.c.reclaimed).where(
        allocations.c.master_id == master_id, allocations.c.member_id == member_id,
        allocations.c.method == method))).one_or_none()
    return ZERO if row is None else row.allocated - row.reclaimed


async def _transfer(ledger: Ledger, principal: Principal, pair: Pair, method: str,
                    direction: str, amount: Decimal, idempotency_key: str | None) -> int:
    """F5: the transfer book record, the per-method totals, and the entry."""
    entry_id = await ledger.commit(direction, principal.actor)
    if direction == "ALLOCATE":
        upsert = pg_insert(allocations).values(
            master_id=pair.master_id, member_id=pair.member_id, method=method, allocated=amount)
        await ledger.conn.execute(upsert.on_conflict_do_update(
            index_elements=["master_id", "member_id", "method"],
            set_={"allocated": allocations.c.allocated + amount}))
    else:
        # An UPDATE, not an upsert: PostgreSQL checks CHECK constraints on the proposed
        # insert row before ON CONFLICT, and (allocated 0, reclaimed x) breaks
        # reclaimed <= allocated, so every reclamation failed. The row exists (net > 0).
        reclaimed = await ledger.conn.execute(
            update(allocations).where(
                allocations.c.master_id == pair.master_id,
                allocations.c.member_id == pair.member_id, allocations.c.method == method)
            .values(reclaimed=allocations.c.reclaimed + amount))
        assert reclaimed.rowcount == 1
    transfer_id: int = (await ledger.conn.execute(insert(transfers).values(
        master_id=pair.master_id, member_id=pair.member_id, method=method,
        direction=direction, amount=amount, actor=principal.actor,
        idempotency_key=idempotency_key, entry_id=entry_id,
    ).returning(transfers.c.id))).scalar_one()
    after = ledger.after()
    # Pair assertions (TigerBeetle style): what the constraints also refuse.
    assert after[pair.member_id]["TRANSFERRED_CASH"] <= after[pair.member_id]["CASH"]
    assert after[pair.master_id]["CASH"] >= 0 and after[pair.master_id]["CREDIT_LIMIT"] >= 0
    return transfer_id


async def set_credit_line(conn: AsyncConnection, principal: Principal, *, master_id: int,
                          amount: Decimal) -> None:
    """F6 (operators): the enterprise credit line; the master keeps line - Σ member limits."""
    await accounts.account_access(conn, principal, master_id, ["masterId"])
    if await accounts.is_member(conn, master_id):
        raise DomainError(ErrorCode.INVALID_INPUT,
                          "A credit line is set on a master or standalone account.", ["masterId"])
    ledger = await Ledger.lock(conn, [master_id])
    delta = amount - ledger.before[master_id]["CREDIT_LINE"]
    master = ledger.before[master_id]
    if master["CREDIT_LIMIT"] - master["TRANSFERRED_CREDIT"] + delta < 0:
        raise DomainError(ErrorCode.CREDIT_EXCEEDS_AVAILABLE,
                          "Members already hold more credit than this line.", ["amount"])
    ledger.move("CREDIT_LINE", None, master_id, delta)
    ledger.move("CREDIT_LIMIT", None, master_id, delta)
    if ledger.lines:
        await ledger.commit("CREDIT_LINE", principal.actor)


async def set_credit_limit(conn: AsyncConnection, principal: Principal, *, master_id: int,
                           member_id: int, limit: Decimal) -> None:
    """F6: Δ > 0 within the enterprise's available credit; Δ < 0 leaves the member's
    available quota > 0."""
    _, ledger = await _lock_pair(conn, principal, master_id, member_id)
    delta = limit - ledger.before[member_id]["CREDIT_LIMIT"]
    if delta > 0 and delta > enterprise_available_credit(ledger, master_id):
        raise DomainError(ErrorCode.CREDIT_EXCEEDS_AVAILABLE,
                          "The enterprise's available credit is lower than the increase.",
                          ["limit"])
    if delta < 0 and ledger.before[member_id].available_quota + delta <= 0:
        raise DomainError(ErrorCode.QUOTA_WOULD_BE_NON_POSITIVE,
                          "The member's available quota would not stay above zero.", ["limit"])
    ledger.move("CREDIT_LIMIT", master_id, member_id, delta)
    ledger.move("TRANSFERRED_CREDIT", None, member_id, delta)
    if ledger.lines:
        await ledger.commit("CREDIT_LIMIT", principal.actor)
        assert ledger.after()[member_id]["CREDIT_LIMIT"] == limit


async def record_charge(conn: AsyncConnection, principal: Principal, *, account_id: int,
                        amount: Decimal, description: str, site_id: int | None,
                        occurred_at: datetime | None) -> int:
    """F7, V2 (operators): a fact from metering, never refused. Paid in this order:

    1. the charged account's coupons valid at ``occurred_at`` — for a trusteeship member
       only when the charge is dated before the association (U2) — earliest expiry first;
    2. the vouchers naming the charged account valid then, earliest expiry first;
    3. its transferred cash;
    4. a trusteeship member's charge dated in the association: the rest is the part its
       master settles (``paid_by_master``, U4): the master's coupons, then vouchers naming
       the master, then the master's cash, then the master's credit (outstanding fees);
       any other charge (standalone, financial member, U2): its own cash (a trusteeship
       member's frozen cash only pays charges from before the association), then credit.

    Coupons and vouchers move no balance (billing.credits); a charge they cover entirely
    has no journal entry."""
    await accounts.account_access(conn, principal, account_id, ["accountId"])
    if site_id is not None and not await accounts.site_of(conn, site_id, account_id):
        raise NotFound(["siteId"], "site of this account")
    link = await accounts.trusteeship_link(conn, account_id)
    when = occurred_at or datetime.now(UTC)
    if when.tzinfo is None:  # a time without a zone is UTC (as PostgreSQL would store it)
        when = when.replace(tzinfo=UTC)
    master_pays = link is not None and when >= link.activated_at
    ids = [account_id] + ([link.master_id] if link is not None else [])
    ledger = await Ledger.lock(conn, ids, frozen=[account_id] if link is not None else [])
    link_now = await accounts.trusteeship_link(conn, account_id)
    if (link_now is None) != (link is None):  # changed while waiting for the locks
        raise DomainError(ErrorCode.CONFLICT, "The account's link changed; try again.", None)
    account = ledger.before[account_id]
    uses = await credits.consume(conn, account_id=account_id, at=when, amount=amount,
                                 with_coupons=not master_pays)
    rest = amount - credits.covered(uses)
    from_transferred = min(rest, account["TRANSFERRED_CASH"])
    ledger.move("CASH", account_id, None, from_transferred)
    ledger.move("TRANSFERRED_CASH", account_id, None, from_transferred)
    rest -= from_transferred
    paid_by_master = ZERO
    if master_pays:
        assert link is not None
        paid_by_master = rest
        master_uses = await credits.consume(conn, account_id=link.master_id, at=when,
                                            amount=rest)
        uses += master_uses
        rest -= credits.covered(master_uses)
        master = ledger.before[link.master_id]
        from_master_cash = min(rest, master["CASH"])
        ledger.move("CASH", link.master_id, None, from_master_cash)
        ledger.move("OUTSTANDING_FEES", None, link.master_id, rest - from_master_cash)
    else:
        own = min(rest, account["CASH"] - from_transferred)
        ledger.move("CASH", account_id, None, own)
        ledger.move("OUTSTANDING_FEES", None, account_id, rest - own)
    entry_id = (await ledger.commit("CHARGE", principal.actor, reason=description[:500])
                if ledger.lines else None)
    charge_id: int = (await conn.execute(insert(charges).values(
        account_id=account_id, site_id=site_id, amount=amount, description=description,
        occurred_at=when, paid_by_master=paid_by_master, entry_id=entry_id,
    ).returning(charges.c.id))).scalar_one()
    await credits.record(conn, charge_id, uses)
    return charge_id


async def record_payment(conn: AsyncConnection, principal: Principal, *, account_id: int,
                         amount: Decimal, payment_method_id: int | None = None) -> int:
    """F8 (operators): settles outstanding fees first; the rest becomes cash. B5: made with
    a managed payment method, it is the responsible account's money and goes to it (its
    fees, then its cash); the payment stays recorded on the account it was made on."""
    await accounts.account_access(conn, principal, account_id, ["accountId"])
    payer_id = await payment_methods.payer_of(conn, account_id, payment_method_id)
    frozen = [account_id] if await accounts.trusteeship_link(conn, account_id) else []
    ledger = await Ledger.lock(conn, [account_id, payer_id], frozen=frozen)
    if await payment_methods.payer_of(conn, account_id, payment_method_id) != payer_id:
        raise DomainError(ErrorCode.CONFLICT, "The payment method changed; try again.", None)
    settles = min(amount, ledger.before[payer_id]["OUTSTANDING_FEES"])
    ledger.move("OUTSTANDING_FEES", payer_id, None, settles)
    ledger.move("CASH", None, payer_id, amount - settles)
    entry_id = await ledger.commit("PAYMENT", principal.actor)
    payment_id: int = (await conn.execute(insert(payments).values(
        account_id=account_id, payer_id=payer_id, payment_method_id=payment_method_id,
        amount=amount, actor=principal.actor, entry_id=entry_id,
    ).returning(payments.c.id))).scalar_one()
    return payment_id


async def withdraw_cash(conn: AsyncConnection, principal: Principal, *, account_id: int,
                        amount: Decimal) -> None:
    """F8, U3: the account's own users take out withdrawable cash (never allocated cash;
    frozen cash is withdrawable)."""
    await accounts.own_account(conn, principal, account_id, ["accountId"])
    link = await accounts.trusteeship_link(conn, account_id)
    ledger = await Ledger.lock(conn, [account_id], frozen=[account_id] if link else [])
    if amount > ledger.before[account_id].withdrawable_cash:
        raise DomainError(ErrorCode.INSUFFICIENT_FUNDS,
                          "Only cash that was not allocated can be withdrawn.", ["amount"])
    ledger.move("CASH", account_id, None, amount)
    await ledger.commit("WITHDRAWAL", principal.actor)
    assert ledger.after()[account_id].withdrawable_cash >= 0


async def adjust_balance(conn: AsyncConnection, principal: Principal, *, account_id: int,
                         bucket: str, amount: Decimal, reason: str) -> None:
    """F1 (operators): a back-office bucket moves by a signed amount, never below zero."""
    assert bucket in ADJUSTABLE, bucket
    await accounts.account_access(conn, principal, account_id, ["accountId"])
    link = await accounts.trusteeship_link(conn, account_id)
    ledger = await Ledger.lock(conn, [account_id], frozen=[account_id] if link else [])
    if ledger.before[account_id][bucket] + amount < 0:
        raise DomainError(ErrorCode.INSUFFICIENT_FUNDS,
                          f"{bucket} would fall below zero.", ["amount"])
    ledger.move(bucket, None, account_id, amount)
    await ledger.commit("ADJUSTMENT", principal.actor, reason=reason)
