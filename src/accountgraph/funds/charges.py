"""F7, V2, U2-U4: recording a charge from metering, and paying it in the rule's order.

Coupons and vouchers are billing's; funds reaches them through the charge-instruments
port (``ports.py``) that billing registers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, String, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph import outbox
from accountgraph.accounts import public as accounts
from accountgraph.domain import ZERO, DomainError, ErrorCode, NotFound, Principal
from accountgraph.funds import ports
from accountgraph.funds.kinds import Bucket
from accountgraph.funds.ledger import Ledger
from accountgraph.funds.models import charges

# C4: one row per committed charge; the cost center evaluates the budgets it touches.
CHARGE_TOPIC = "charge.recorded"
MAX_TAGS = 10
_TAG_KEY = re.compile(r"[A-Za-z0-9_.:/-]{1,64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def cost_labels(
    product: str | None, tags: Sequence[tuple[str, str]] | None
) -> tuple[str | None, dict[str, str]]:
    """C1: a charge's product (1-64 characters) and up to 10 cost tags (key: 1-64 of
    letters, digits and ``_.:/-``, unique in the charge; value: 0-256 characters, no
    control characters), or INVALID_INPUT at the field at fault."""
    if product is not None and (not 1 <= len(product) <= 64 or _CONTROL.search(product)):
        raise DomainError(ErrorCode.INVALID_INPUT, "A product has 1 to 64 characters.", ["product"])
    found: dict[str, str] = {}
    for index, (key, value) in enumerate(tags or ()):
        if index >= MAX_TAGS:
            raise DomainError(ErrorCode.INVALID_INPUT, f"At most {MAX_TAGS} tags.", ["tags"])
        field = ["tags", str(index)]
        if not _TAG_KEY.fullmatch(key):
            raise DomainError(
                ErrorCode.INVALID_INPUT,
                "A tag key has 1 to 64 letters, digits or _.:/-",
                [*field, "key"],
            )
        if key in found:
            raise DomainError(ErrorCode.INVALID_INPUT, "Tag keys are unique.", [*field, "key"])
        if len(value) > 256 or _CONTROL.search(value):
            raise DomainError(
                ErrorCode.INVALID_INPUT,
                "A tag value has at most 256 characters, none of them control characters.",
                [*field, "value"],
            )
        found[key] = value
    return product, found


async def record_charge(
    conn: AsyncConnection,
    principal: Principal,
    *,
    account_id: int,
    amount: Decimal,
    description: str,
    site_id: int | None,
    occurred_at: datetime | None,
    product: str | None = None,
    tags: Sequence[tuple[str, str]] | None = None,
) -> int:
    """F7, V2 (operators): a fact from metering, never refused. Paid in this order:

    1. the charged account's coupons valid at ``occurred_at`` — for a trusteeship member
       only when the charge is dated before the association (U2) — earliest expiry first;
    2. the vouchers naming the charged account valid then, earliest expiry first;
    3. its stored value cards valid then, earliest expiry first (W1);
    4. its transferred cash;
    5. a trusteeship member's charge dated in the association: the rest is the part its
       master settles (``paid_by_master``, U4): the master's coupons, then vouchers naming
       the master, then the master's stored value cards (W1), then the master's cash, then
       the master's credit (outstanding fees);
       any other charge (standalone, financial member, U2): its own cash (a trusteeship
       member's frozen cash only pays charges from before the association), then credit.

    Coupons, vouchers and stored value move no balance (billing's charge instruments); a
    charge they cover entirely has no journal entry. T3: the charge records the branch of
    its site, else of its account."""
    instruments = ports.charge_instruments()
    product, labels = cost_labels(product, tags)
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
        product=product,
        tags=labels,
        branch=await accounts.branch_of(conn, account_id, site_id),
    )
    await instruments.record(conn, charge_id, uses)
    # C4: the transaction's id lets the cost center's job see whether an evaluation that
    # began after this commit already counted the charge (and skip a second one).
    xid = (await conn.execute(select(func.pg_current_xact_id().cast(String)))).scalar_one()
    await outbox.add(
        conn, CHARGE_TOPIC, {"charge_id": charge_id, "account_id": account_id, "xid": xid}
    )
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
