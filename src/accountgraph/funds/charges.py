"""F7, V2, U2-U4: recording a charge from metering, and paying it in the rule's order.

Coupons and vouchers are billing's; funds reaches them through the charge-instruments
port (``ports.py``) that billing registers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.accounts import public as accounts
from accountgraph.domain import ZERO, DomainError, ErrorCode, NotFound, Principal
from accountgraph.funds import ports
from accountgraph.funds.kinds import Bucket
from accountgraph.funds.ledger import Ledger
from accountgraph.funds.models import charges


async def record_charge(
    conn: AsyncConnection,
    principal: Principal,
    *,
    account_id: int,
    amount: Decimal,
    description: str,
    site_id: int | None,
    occurred_at: datetime | None,
) -> int:
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

    Coupons and vouchers move no balance (billing's charge instruments); a charge they
    cover entirely has no journal entry."""
    instruments = ports.charge_instruments()
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
    uses, paid_by_master = await _settle(
        conn, ledger, instruments, account_id, link, when, amount, master_pays=master_pays
    )
    entry_id = (
        await ledger.commit("CHARGE", principal.actor, reason=description[:500])
        if ledger.lines
        else None
    )
    charge_id = await _insert(
        conn,
        account_id=account_id,
        site_id=site_id,
        amount=amount,
        description=description,
        occurred_at=when,
        paid_by_master=paid_by_master,
        entry_id=entry_id,
    )
    await instruments.record(conn, charge_id, uses)
    return charge_id


async def _settle(
    conn: AsyncConnection,
    ledger: Ledger,
    instruments: ports.ChargeInstruments,
    account_id: int,
    link: Row[Any] | None,
    when: datetime,
    amount: Decimal,
    *,
    master_pays: bool,
) -> tuple[list[Any], Decimal]:
    """F7's order (see ``record_charge``): the ledger moves, the instruments used, and the
    part the master settles."""
    account = ledger.before[account_id]
    uses = list(
        await instruments.consume(
            conn, account_id=account_id, at=when, amount=amount, with_coupons=not master_pays
        )
    )
    rest = amount - ports.covered(uses)
    from_transferred = min(rest, account[Bucket.TRANSFERRED_CASH])
    ledger.move(Bucket.CASH, account_id, None, from_transferred)
    ledger.move(Bucket.TRANSFERRED_CASH, account_id, None, from_transferred)
    rest -= from_transferred
    paid_by_master = ZERO
    if master_pays:
        assert link is not None
        paid_by_master = rest
        master_uses = await instruments.consume(
            conn, account_id=link.master_id, at=when, amount=rest
        )
        uses += master_uses
        rest -= ports.covered(master_uses)
        master = ledger.before[link.master_id]
        from_master_cash = min(rest, master[Bucket.CASH])
        ledger.move(Bucket.CASH, link.master_id, None, from_master_cash)
        ledger.move(Bucket.OUTSTANDING_FEES, None, link.master_id, rest - from_master_cash)
    else:
        own = min(rest, account[Bucket.CASH] - from_transferred)
        ledger.move(Bucket.CASH, account_id, None, own)
        ledger.move(Bucket.OUTSTANDING_FEES, None, account_id, rest - own)
    return uses, paid_by_master


async def _insert(conn: AsyncConnection, **values: Any) -> int:
    """The charge row: immutable, like its amount."""
    charge_id: int = (
        await conn.execute(insert(charges).values(**values).returning(charges.c.id))
    ).scalar_one()
    return charge_id
