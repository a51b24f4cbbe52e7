"""B2, B3, U4: an account's billing terms: its commercial discount and its invoice mode."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import delete, func
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.accounts import public as accounts
from accountgraph.billing.models import discounts, invoice_settings
from accountgraph.domain import ZERO, DomainError, ErrorCode, Principal

CENT = Decimal("0.01")
HUNDRED = Decimal(100)
MODES = ("AGGREGATED", "PER_MEMBER")
DEFAULT_MODE = "AGGREGATED"
ASSOCIATED = (
    "No commercial discount or invoice setting for a member under a trusteeship "
    "link: its master's apply (U4)."
)


async def set_discount(
    conn: AsyncConnection, principal: Principal, *, account_id: int, percent: Decimal | None
) -> None:
    """B3 (operators): the account-level discount, 0-100 with at most 2 places; None
    removes it. U4: not for a member under an ACTIVE trusteeship link (a discount it had
    before the association stays and applies by B3)."""
    await accounts.account_access(conn, principal, account_id, ["accountId"])
    if percent is not None and not ZERO <= percent <= HUNDRED:
        raise DomainError(ErrorCode.INVALID_AMOUNT, "A percent from 0 to 100.", ["percent"])
    await accounts.lock_accounts(conn, account_id)
    if await accounts.trusteeship_link(conn, account_id) is not None:
        raise DomainError(ErrorCode.NOT_ALLOWED_WHILE_ASSOCIATED, ASSOCIATED, ["accountId"])
    if percent is None:
        await conn.execute(delete(discounts).where(discounts.c.account_id == account_id))
        return
    upsert = pg_insert(discounts).values(account_id=account_id, percent=percent)
    await conn.execute(
        upsert.on_conflict_do_update(
            index_elements=[discounts.c.account_id],
            set_={"percent": upsert.excluded.percent, "set_at": func.now()},
        )
    )


def discounted(amount: Decimal, percent: Decimal) -> Decimal:
    """B3: the discount of a line, rounded half-up to the cent."""
    return (amount * percent / HUNDRED).quantize(CENT, rounding=ROUND_HALF_UP)


async def set_invoice_mode(
    conn: AsyncConnection, principal: Principal, *, account_id: int, mode: str
) -> None:
    """B2: how a responsible account's cycles issue invoices; its own users or operators.
    A managed account is never invoiced (NOT_ALLOWED_WHILE_ASSOCIATED)."""
    assert mode in MODES, mode
    await accounts.own_or_operator(conn, principal, account_id, ["accountId"])
    await accounts.lock_accounts(conn, account_id)
    if await accounts.trusteeship_link(conn, account_id) is not None:
        raise DomainError(ErrorCode.NOT_ALLOWED_WHILE_ASSOCIATED, ASSOCIATED, ["accountId"])
    upsert = pg_insert(invoice_settings).values(account_id=account_id, mode=mode)
    await conn.execute(
        upsert.on_conflict_do_update(
            index_elements=[invoice_settings.c.account_id], set_={"mode": upsert.excluded.mode}
        )
    )
