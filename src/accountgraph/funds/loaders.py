"""Per-request batch loading of money: balances, transfers and charges, each query filtered
by ``sees_finance`` (P2: a member's finances need VIEW_FINANCE)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from strawberry.dataloader import DataLoader

from accountgraph.accounts.public import (
    account_ids,
    has_active_master,
    sees_association_costs,
    sees_finance,
    sees_name,
    under_trusteeship,
)
from accountgraph.api import keyset
from accountgraph.api.batching import AreaLoaders
from accountgraph.api.keyset import Page
from accountgraph.db import reading
from accountgraph.domain import Principal
from accountgraph.funds.ledger import Balance, balance_of
from accountgraph.funds.models import BUCKETS, balances, charges, transfers

Row = Any


@dataclass(frozen=True, slots=True)
class Finance:
    balance: Balance
    is_member: bool


@dataclass(frozen=True, slots=True)
class TransfersKey:
    account_id: int
    member_id: int | None
    direction: str | None
    since: datetime | None
    until: datetime | None
    limit: int
    after: int | None


@dataclass(frozen=True, slots=True)
class ChargesKey:
    account_id: int
    since: datetime | None
    until: datetime | None
    limit: int
    after: int | None


class FundsLoaders(AreaLoaders):
    def __init__(self, engine: AsyncEngine, principal: Principal) -> None:
        super().__init__(engine, principal)
        self.finance_by_account = DataLoader(self._finance_by_account)
        self.transfers_by_account = DataLoader(self._transfers_by_account)
        self.charges_by_account = DataLoader(self._charges_by_account)
        by_id = FundsNodeLoaders(engine, principal)
        self.transfer_by_id = DataLoader(by_id.transfers)
        self.charge_by_id = DataLoader(by_id.charges)

    async def _finance_by_account(self, ids: Sequence[int]) -> list[Finance | None]:
        """An account that never had money has all-zero balances (no row yet)."""
        account = account_ids()
        query = (
            select(
                account.c.id.label("account_id"),
                *(
                    func.coalesce(balances.c[column], 0).label(column)
                    for column in BUCKETS.values()
                ),
                under_trusteeship(account.c.id).label("frozen"),
                has_active_master(account.c.id).label("is_member"),
            )
            .select_from(account.outerjoin(balances, balances.c.account_id == account.c.id))
            .where(account.c.id.in_(ids), sees_finance(self.principal, account.c.id))
        )
        async with reading(self.engine) as conn:
            rows = (await conn.execute(query)).all()
        found = {
            row.account_id: Finance(balance_of(row, frozen=row.frozen), row.is_member)
            for row in rows
        }
        return [found.get(account_id) for account_id in ids]

    async def _transfers_by_account(self, keys: Sequence[TransfersKey]) -> list[Page]:
        """A master's book (as master) or a member's (as member), newest first."""

        def query(key: TransfersKey, parents: list[int]) -> Select[Any]:
            book = (
                select(transfers, transfers.c.master_id.label("parent_id"))
                .where(transfers.c.master_id.in_(parents))
                .union_all(
                    select(transfers, transfers.c.member_id.label("parent_id")).where(
                        transfers.c.member_id.in_(parents)
                    )
                )
                .subquery()
            )
            conditions = [
                sees_finance(self.principal, book.c.parent_id),
                _sees_both_ends(self.principal, book),
            ]
            if key.member_id is not None:
                conditions.append(book.c.member_id == key.member_id)
            if key.direction is not None:
                conditions.append(book.c.direction == key.direction)
            if key.since is not None:
                conditions.append(book.c.created_at >= key.since)
            if key.until is not None:
                conditions.append(book.c.created_at < key.until)
            return select(book).where(*conditions)

        return await keyset.child_pages(self.engine, keys, query)

    async def _charges_by_account(self, keys: Sequence[ChargesKey]) -> list[Page]:
        """Charges newest first. U5: after dissociation a member no longer sees the costs
        generated during the association (its master settled them)."""

        def query(key: ChargesKey, parents: list[int]) -> Select[Any]:
            conditions = [
                charges.c.account_id.in_(parents),
                sees_finance(self.principal, charges.c.account_id),
                _not_hidden_by_dissociation(self.principal),
            ]
            if key.since is not None:
                conditions.append(charges.c.occurred_at >= key.since)
            if key.until is not None:
                conditions.append(charges.c.occurred_at < key.until)
            return select(charges, charges.c.account_id.label("parent_id")).where(*conditions)

        return await keyset.child_pages(self.engine, keys, query)


def _not_hidden_by_dissociation(principal: Principal) -> Any:
    """U5: a member no longer sees the charges of a trusteeship association that ended."""
    return sees_association_costs(principal, charges.c.account_id, charges.c.occurred_at)


def _sees_both_ends(principal: Principal, table: Any) -> Any:
    """A transfer shows its master and member (both non-null), so it exists only for who
    sees both: P3/U5, a former master sees nothing of a dissociated member."""
    return sees_name(principal, table.c.master_id) & sees_name(principal, table.c.member_id)


class FundsNodeLoaders:
    """Transfers and charges by id, for ``node(id)`` and mutation payloads."""

    def __init__(self, engine: AsyncEngine, principal: Principal) -> None:
        self.engine = engine
        self.principal = principal

    async def transfers(self, ids: Sequence[int]) -> list[Row | None]:
        query = select(transfers).where(
            transfers.c.id.in_(ids),
            sees_finance(self.principal, transfers.c.master_id)
            | sees_finance(self.principal, transfers.c.member_id),
            _sees_both_ends(self.principal, transfers),
        )
        return await self._by_id(query, ids)

    async def charges(self, ids: Sequence[int]) -> list[Row | None]:
        query = select(charges).where(
            charges.c.id.in_(ids),
            sees_finance(self.principal, charges.c.account_id),
            _not_hidden_by_dissociation(self.principal),
        )
        return await self._by_id(query, ids)

    async def _by_id(self, query: Any, ids: Sequence[int]) -> list[Row | None]:
        async with reading(self.engine) as conn:
            found = {row.id: row for row in (await conn.execute(query)).all()}
        return [found.get(i) for i in ids]
