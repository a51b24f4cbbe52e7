"""Per-request batch loading of billing: discounts, invoice modes, invoices and their lines.

Invoices and discounts are finances: every query is filtered by ``sees_finance`` of the
account (P2: a member's need VIEW_FINANCE); an invoice mode by ``sees_details``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from strawberry.dataloader import DataLoader

from accountgraph.accounts.public import (
    account_ids,
    sees_details,
    sees_finance,
    under_trusteeship,
)
from accountgraph.api import keyset
from accountgraph.api.batching import AreaLoaders, by_key, grouped
from accountgraph.api.keyset import Page
from accountgraph.billing.models import discounts, invoice_lines, invoice_settings, invoices
from accountgraph.billing.terms import DEFAULT_MODE
from accountgraph.domain import Principal

Row = Any


@dataclass(frozen=True, slots=True)
class InvoicesKey:
    account_id: int
    limit: int
    after: int | None


class BillingLoaders(AreaLoaders):
    def __init__(self, engine: AsyncEngine, principal: Principal) -> None:
        super().__init__(engine, principal)
        self.discount_by_account = DataLoader(self._discount_by_account)
        self.invoice_mode_by_account = DataLoader(self._invoice_mode_by_account)
        self.invoices_by_account = DataLoader(self._invoices_by_account)
        self.invoice_by_id = DataLoader(self._invoice_by_id)
        self.lines_by_invoice = DataLoader(self._lines_by_invoice)

    async def _discount_by_account(self, ids: Sequence[int]) -> list[Decimal | None]:
        query = select(discounts.c.account_id, discounts.c.percent).where(
            discounts.c.account_id.in_(ids), sees_finance(self.principal, discounts.c.account_id)
        )
        found = by_key(ids, await self._all(query), lambda row: row.account_id)
        return [None if row is None else row.percent for row in found]

    async def _invoice_mode_by_account(self, ids: Sequence[int]) -> list[str | None]:
        """B1: a managed account (ACTIVE trusteeship member) has none: it is never invoiced;
        every other account has one, AGGREGATED unless set."""
        account = account_ids()
        query = (
            select(account.c.id, func.coalesce(invoice_settings.c.mode, DEFAULT_MODE).label("mode"))
            .select_from(
                account.outerjoin(invoice_settings, invoice_settings.c.account_id == account.c.id)
            )
            .where(
                account.c.id.in_(ids),
                ~under_trusteeship(account.c.id),
                sees_details(self.principal, account.c.id),
            )
        )
        found = by_key(ids, await self._all(query), lambda row: row.id)
        return [None if row is None else row.mode for row in found]

    async def _invoices_by_account(self, keys: Sequence[InvoicesKey]) -> list[Page]:
        """Invoices of each account, newest first."""

        def query(key: InvoicesKey, parents: list[int]) -> Select[Any]:
            return select(invoices, invoices.c.account_id.label("parent_id")).where(
                invoices.c.account_id.in_(parents),
                sees_finance(self.principal, invoices.c.account_id),
            )

        return await keyset.child_pages(self.engine, keys, query)

    async def _invoice_by_id(self, ids: Sequence[int]) -> list[Row | None]:
        query = select(invoices).where(
            invoices.c.id.in_(ids), sees_finance(self.principal, invoices.c.account_id)
        )
        return by_key(ids, await self._all(query), lambda row: row.id)

    async def _lines_by_invoice(self, ids: Sequence[int]) -> list[list[Row]]:
        query = (
            select(invoice_lines)
            .join(invoices, invoices.c.id == invoice_lines.c.invoice_id)
            .where(
                invoice_lines.c.invoice_id.in_(ids),
                sees_finance(self.principal, invoices.c.account_id),
            )
            .order_by(invoice_lines.c.invoice_id, invoice_lines.c.id)
        )
        return grouped(ids, await self._all(query), lambda row: row.invoice_id)
