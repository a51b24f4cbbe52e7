"""Per-request loading of T1-T3 and W1-W3: tax groups, accounts' default tax groups, the
general ledger, stored value cards and sums, auto top-up rules and invoices' automatic
payments, each query filtered by visibility (P2-P4).

Tax groups are the platform's (every principal sees them); an account's default tax
group and its auto top-up rule are account details (``sees_details``); stored value,
the general ledger and invoice payments are finances (``sees_finance``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from strawberry.dataloader import DataLoader

from accountgraph.accounts.public import account_branches, sees_details, sees_finance
from accountgraph.api.batching import AreaLoaders, by_key, grouped
from accountgraph.billing.models import (
    account_tax_groups,
    auto_top_ups,
    invoice_payments,
    invoices,
    stored_value_cards,
    tax_groups,
)
from accountgraph.billing.stored_value import usable
from accountgraph.domain import ZERO, Principal
from accountgraph.funds.public import ledger_postings

Row = Any
MAX_TAX_GROUPS = 1000


@dataclass(frozen=True, slots=True)
class StoredValue:
    """W1: Σ remaining of the cards usable now, and how many they are."""

    amount: Decimal
    cards: int


class TaxLoaders(AreaLoaders):
    def __init__(self, engine: AsyncEngine, principal: Principal) -> None:
        super().__init__(engine, principal)
        self.tax_group_by_id = DataLoader(self._tax_group_by_id)
        self.tax_group_by_account = DataLoader(self._tax_group_by_account)
        self.cards_by_account = DataLoader(self._cards_by_account)
        self.card_by_id = DataLoader(self._card_by_id)
        self.stored_value_by_account = DataLoader(self._stored_value_by_account)
        self.auto_top_up_by_account = DataLoader(self._auto_top_up_by_account)
        self.payment_by_invoice = DataLoader(self._payment_by_invoice)

    # ------------------------------------------------------------ T1 tax groups

    async def tax_groups(self) -> Sequence[Row]:
        return await self._all(select(tax_groups).order_by(tax_groups.c.code).limit(MAX_TAX_GROUPS))

    async def _tax_group_by_id(self, ids: Sequence[int]) -> list[Row | None]:
        query = select(tax_groups).where(tax_groups.c.id.in_(ids))
        return by_key(ids, await self._all(query), lambda row: row.id)

    async def _tax_group_by_account(self, ids: Sequence[int]) -> list[Row | None]:
        query = (
            select(tax_groups, account_tax_groups.c.account_id)
            .join(account_tax_groups, account_tax_groups.c.tax_group_id == tax_groups.c.id)
            .where(
                account_tax_groups.c.account_id.in_(ids),
                sees_details(self.principal, account_tax_groups.c.account_id),
            )
        )
        return by_key(ids, await self._all(query), lambda row: row.account_id)

    # ------------------------------------------------------------ T3 general ledger

    async def general_ledger(
        self, since: datetime, until: datetime, account_id: int | None
    ) -> Sequence[Row]:
        """T3: one aggregate statement over the period's postings on the accounts the
        principal sees the finances of, by branch (the charge's, else the account's),
        account and bucket. ``credit`` sums the postings into the bucket, ``debit`` those
        out of it, ``net`` = credit - debit = Σ of the postings."""
        posting = ledger_postings(since, until)
        account = account_branches("account")
        branch = func.coalesce(posting.c.branch, account.c.branch).label("branch")
        credit = func.sum(case((posting.c.amount > 0, posting.c.amount), else_=ZERO))
        debit = func.sum(case((posting.c.amount < 0, -posting.c.amount), else_=ZERO))
        query = (
            select(
                branch,
                posting.c.account_id,
                posting.c.bucket,
                debit.label("debit"),
                credit.label("credit"),
                func.sum(posting.c.amount).label("net"),
            )
            .select_from(posting.join(account, account.c.id == posting.c.account_id))
            .where(sees_finance(self.principal, posting.c.account_id))
            .group_by(branch, posting.c.account_id, posting.c.bucket)
            .order_by(branch.asc().nulls_last(), posting.c.account_id, posting.c.bucket)
        )
        if account_id is not None:
            query = query.where(posting.c.account_id == account_id)
        return await self._all(query)

    # ------------------------------------------------------------ W1 stored value

    async def _cards_by_account(self, ids: Sequence[int]) -> list[list[Row]]:
        query = (
            select(stored_value_cards)
            .where(
                stored_value_cards.c.account_id.in_(ids),
                sees_finance(self.principal, stored_value_cards.c.account_id),
            )
            .order_by(stored_value_cards.c.account_id, stored_value_cards.c.id)
        )
        return grouped(ids, await self._all(query), lambda row: row.account_id)

    async def _card_by_id(self, ids: Sequence[int]) -> list[Row | None]:
        query = select(stored_value_cards).where(
            stored_value_cards.c.id.in_(ids),
            sees_finance(self.principal, stored_value_cards.c.account_id),
        )
        return by_key(ids, await self._all(query), lambda row: row.id)

    async def _stored_value_by_account(self, ids: Sequence[int]) -> list[StoredValue]:
        """W1: the cards usable now (the finance itself is checked by its parent)."""
        query = (
            select(
                stored_value_cards.c.account_id,
                func.sum(stored_value_cards.c.remaining).label("amount"),
                func.count().label("cards"),
            )
            .where(stored_value_cards.c.account_id.in_(ids), usable(datetime.now(UTC)))
            .group_by(stored_value_cards.c.account_id)
        )
        found = {row.account_id: row for row in await self._all(query)}
        return [
            StoredValue(found[i].amount, found[i].cards) if i in found else StoredValue(ZERO, 0)
            for i in ids
        ]

    # ------------------------------------------------------------ W2, W3

    async def _auto_top_up_by_account(self, ids: Sequence[int]) -> list[Row | None]:
        query = select(auto_top_ups).where(
            auto_top_ups.c.account_id.in_(ids),
            sees_details(self.principal, auto_top_ups.c.account_id),
        )
        return by_key(ids, await self._all(query), lambda row: row.account_id)

    async def _payment_by_invoice(self, ids: Sequence[int]) -> list[Row | None]:
        query = (
            select(invoice_payments)
            .join(invoices, invoices.c.id == invoice_payments.c.invoice_id)
            .where(
                invoice_payments.c.invoice_id.in_(ids),
                sees_finance(self.principal, invoices.c.account_id),
            )
        )
        return by_key(ids, await self._all(query), lambda row: row.invoice_id)
