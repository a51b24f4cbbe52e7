"""F1, F2: reading an account's balances and quota; a leaf module other areas may call
(U1 outstanding fees, A2 quota)."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import ColumnElement, case, exists, func, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.accounts.models import links
from accountgraph.domain import ZERO
from accountgraph.funds.models import balances


async def outstanding_fees(conn: AsyncConnection, account_id: int) -> Decimal:
    """U1: what the account owes (0 for an account that never had money)."""
    found: Decimal | None = (
        await conn.execute(
            select(balances.c.outstanding_fees).where(balances.c.account_id == account_id)
        )
    ).scalar_one_or_none()
    return ZERO if found is None else found


def available_quota_of(account_id: ColumnElement[int]) -> ColumnElement[Decimal]:
    """F2 as SQL for the account ``account_id`` (0 for one that never had money): the same
    formula as ``ledger.available_quota``, frozen cash (U3) left out."""
    b = select(balances).where(balances.c.account_id == account_id).subquery()
    frozen = exists().where(links.c.member_id == account_id, links.c.status == "ACTIVE",
                            links.c.type == "TRUSTEESHIP")
    usable_cash = case((frozen, b.c.transferred_cash), else_=b.c.cash_balance)
    quota = (usable_cash + b.c.bankers_acceptance_bill + b.c.credit_limit + b.c.credit_refund
             - b.c.unsettled_amount - (b.c.outstanding_fees - b.c.negative_bill))
    return func.coalesce(select(quota).scalar_subquery(), ZERO)


async def available_quota(conn: AsyncConnection, account_id: int) -> Decimal:
    found: Decimal = (await conn.execute(
        select(available_quota_of(literal(account_id))))).scalar_one()
    return found
