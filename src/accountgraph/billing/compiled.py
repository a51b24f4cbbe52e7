"""B2, B3 in the read compiler: ``Account.invoiceMode`` and ``Account.discountPercent``
as SQL building JSON.

The twins of ``BillingLoaders._invoice_mode_by_account`` and ``_discount_by_account``:
the same rows and visibility (a managed account has no invoice mode; the mode needs the
account's details, P3; the discount its finances, P2), formatted as the scalars are.

Billing's other fields of ``Account`` and ``FinancialState`` (payments, coupons,
vouchers, invoices, stored value) have no compiler yet: a selection with them is the
resolvers' to answer.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.sql.expression import FromClause

from accountgraph.accounts.public import account_ids, sees_details, sees_finance, under_trusteeship
from accountgraph.api import sqljson
from accountgraph.api.compiler import Compilation, Selected, field
from accountgraph.billing.models import discounts, invoice_settings
from accountgraph.billing.terms import DEFAULT_MODE

Json = ColumnElement[Any]


@field("Account", "invoiceMode")
def _invoice_mode(compilation: Compilation, selected: Selected, row: FromClause) -> Json:
    """B1: a managed account (ACTIVE trusteeship member) has none; else AGGREGATED unless
    set."""
    account = account_ids(compilation.name("mode_account"))
    setting = invoice_settings.alias(compilation.name("invoice_setting"))
    return (
        select(func.coalesce(setting.c.mode, DEFAULT_MODE))
        .select_from(account.outerjoin(setting, setting.c.account_id == account.c.id))
        .where(
            account.c.id == row.c.id,
            ~under_trusteeship(account.c.id),
            sees_details(compilation.principal, account.c.id),
        )
        .scalar_subquery()
    )


@field("Account", "discountPercent")
def _discount_percent(compilation: Compilation, selected: Selected, row: FromClause) -> Json:
    discount = discounts.alias(compilation.name("discount"))
    return (
        select(sqljson.money(discount.c.percent))
        .where(
            discount.c.account_id == row.c.id,
            sees_finance(compilation.principal, discount.c.account_id),
        )
        .scalar_subquery()
    )
