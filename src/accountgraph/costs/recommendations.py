"""C5: cost recommendations, recomputed on every read.

- ``SHARE_IDLE_RESOURCE_TYPE``: the account owns valid resources of a type it does not
  share (S2) while it has ACTIVE trusteeship members, who could use them (S6).
- ``BUDGET_OVERRUN_FORECAST``: a budget whose forecast exceeds its amount (C3), with the
  expected overrun.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.accounts import public as accounts
from accountgraph.costs.budgets import spend
from accountgraph.costs.models import budgets
from accountgraph.costs.reports import visible
from accountgraph.domain import Principal
from accountgraph.sharing import public as sharing

TYPE_NAMES = {
    "RESERVED_INSTANCE": "reserved instances",
    "SAVINGS_PLAN": "savings plans",
    "STORAGE_CAPACITY_UNIT": "storage capacity units",
}


@dataclass(frozen=True, slots=True)
class Recommendation:
    kind: str
    message: str
    estimated_amount: Decimal | None = None
    resource_type: str | None = None
    budget_id: int | None = None


async def recommendations(
    conn: AsyncConnection, principal: Principal, account_id: int, now: datetime | None = None
) -> list[Recommendation]:
    """C5 for an account whose finances the viewer sees, with cost center on; else none."""
    if not await visible(conn, principal, account_id):
        return []
    now = now or datetime.now(UTC)
    found: list[Recommendation] = []
    association = accounts.active_associations()
    members = (
        await conn.execute(
            select(func.count()).where(
                association.c.master_id == account_id, association.c.type == "TRUSTEESHIP"
            )
        )
    ).scalar_one()
    if members:
        idle = sharing.unshared_resource_types(now)
        for row in (
            await conn.execute(
                select(idle.c.type, idle.c.resources)
                .where(idle.c.owner_id == account_id)
                .order_by(idle.c.type)
            )
        ).all():
            found.append(
                Recommendation(
                    "SHARE_IDLE_RESOURCE_TYPE",
                    f"Share {TYPE_NAMES.get(row.type, row.type)}: you own {row.resources} valid "
                    f"and {members} trusteeship member{'s' if members != 1 else ''} could use "
                    "them.",
                    resource_type=row.type,
                )
            )
    spends = await spend(conn, account_id, now)
    names: dict[int, Any] = {
        int(row.id): row
        for row in (
            await conn.execute(
                select(budgets.c.id, budgets.c.name, budgets.c.amount)
                .where(budgets.c.account_id == account_id)
                .order_by(budgets.c.id)
            )
        ).all()
    }
    for budget_id, row in names.items():
        expected = spends[budget_id].forecast if budget_id in spends else None
        if expected is not None and expected > row.amount:
            found.append(
                Recommendation(
                    "BUDGET_OVERRUN_FORECAST",
                    f"Budget {row.name!r} is forecast to exceed its amount {row.amount} by "
                    f"{expected - row.amount}.",
                    estimated_amount=expected - row.amount,
                    budget_id=budget_id,
                )
            )
    return found
