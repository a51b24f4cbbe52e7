"""F1: reading an account's balances; a leaf module other areas may call (U1)."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.funds.models import balances

ZERO = Decimal("0.00")


async def outstanding_fees(conn: AsyncConnection, account_id: int) -> Decimal:
    """U1: what the account owes (0 for an account that never had money)."""
    found: Decimal | None = (
        await conn.execute(
            select(balances.c.outstanding_fees).where(balances.c.account_id == account_id)
        )
    ).scalar_one_or_none()
    return ZERO if found is None else found
