"""F1, F2: reading an account's balances and quota, for other areas (U1 outstanding fees,
A2 quota) through ``funds.public``."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Subquery, case, func, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.expression import FromClause

from accountgraph.accounts.public import under_trusteeship
from accountgraph.domain import ZERO
from accountgraph.funds.models import BUCKETS, balances


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
    return func.coalesce(select(_quota(b, account_id)).scalar_subquery(), ZERO)


def available_quotas(name: str = "available_quota") -> Subquery:
    """F2 as SQL for every account that has balances: ``(account_id, available_quota)``
    (an account with no row has never had money: its quota is 0)."""
    quota = _quota(balances, balances.c.account_id)
    return select(balances.c.account_id, quota.label("available_quota")).subquery(name)


def _quota(b: FromClause, account_id: ColumnElement[int]) -> ColumnElement[Decimal]:
    """F2 over the balances ``b`` of ``account_id``."""
    return quota_sql(lambda bucket: b.c[BUCKETS[bucket]], under_trusteeship(account_id))


def quota_sql(
    bucket: Callable[[str], ColumnElement[Any]], frozen: ColumnElement[bool]
) -> ColumnElement[Decimal]:
    """F2 as SQL over an account's buckets (``bucket("CASH")`` …): a frozen (U3) account
    counts only the cash it was transferred. The one SQL twin of ``ledger.available_quota``
    (the sweep and the read compiler use it)."""
    usable_cash = case((frozen, bucket("TRANSFERRED_CASH")), else_=bucket("CASH"))
    quota: ColumnElement[Decimal] = (
        usable_cash
        + bucket("BANKERS_ACCEPTANCE_BILL")
        + bucket("CREDIT_LIMIT")
        + bucket("CREDIT_REFUND")
        - bucket("UNSETTLED_AMOUNT")
        - (bucket("OUTSTANDING_FEES") - bucket("NEGATIVE_BILL"))
    )
    return quota


async def available_quota(conn: AsyncConnection, account_id: int) -> Decimal:
    found: Decimal = (
        await conn.execute(select(available_quota_of(literal(account_id))))
    ).scalar_one()
    return found
