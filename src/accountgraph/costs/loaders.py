"""Per-request batch loading of the cost center: budgets by account and by id (finance
visibility, P2, and cost center on, U6), their thresholds with what fired in the period,
their live spend (one statement per account, C3), and reports (C2) and recommendations
(C5), each on a connection of its own."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncEngine
from strawberry.dataloader import DataLoader

from accountgraph.accounts.public import cost_center_on, sees_finance
from accountgraph.api.batching import AreaLoaders, by_key, grouped
from accountgraph.costs import budgets as budget_rules
from accountgraph.costs import recommendations, reports
from accountgraph.costs.budgets import Spend
from accountgraph.costs.models import budget_firings, budget_thresholds, budgets
from accountgraph.costs.periods import period_bounds
from accountgraph.domain import Principal

Row = Any


class CostLoaders(AreaLoaders):
    def __init__(self, engine: AsyncEngine, principal: Principal) -> None:
        super().__init__(engine, principal)
        self.now = datetime.now(UTC)  # one clock for the request: spend and firedAt agree
        self.budgets_by_account = DataLoader(self._budgets_by_account)
        self.budget_by_id = DataLoader(self._budgets_by_id)
        self.thresholds_by_budget = DataLoader(self._thresholds)
        self.spend_by_account = DataLoader(self._spend)

    def _visible(self) -> Any:
        return and_(
            sees_finance(self.principal, budgets.c.account_id), cost_center_on(budgets.c.account_id)
        )

    async def _budgets_by_account(self, ids: Sequence[int]) -> list[list[Row]]:
        query = (
            select(budgets)
            .where(budgets.c.account_id.in_(ids), self._visible())
            .order_by(budgets.c.account_id, budgets.c.id)
        )
        return grouped(ids, await self._all(query), lambda row: row.account_id)

    async def _budgets_by_id(self, ids: Sequence[int]) -> list[Row | None]:
        query = select(budgets).where(budgets.c.id.in_(ids), self._visible())
        return by_key(ids, await self._all(query), lambda row: row.id)

    async def _thresholds(self, ids: Sequence[int]) -> list[list[Row]]:
        """Each threshold with ``fired_at`` in the current period of its budget, if any."""
        query = (
            select(budget_thresholds, budgets.c.period)
            .join(budgets, budgets.c.id == budget_thresholds.c.budget_id)
            .where(budget_thresholds.c.budget_id.in_(ids))
            .order_by(budget_thresholds.c.budget_id, budget_thresholds.c.position)
        )
        fired_query = select(budget_firings).where(budget_firings.c.budget_id.in_(ids))
        rows = await self._all(query)
        fired = {
            (f.budget_id, f.basis, f.percent, f.period_start): f.fired_at
            for f in await self._all(fired_query)
        }
        found = [
            (
                row,
                fired.get(
                    (
                        row.budget_id,
                        row.basis,
                        row.percent,
                        period_bounds(row.period, self.now)[0],
                    )
                ),
            )
            for row in rows
        ]
        return grouped(ids, found, lambda pair: pair[0].budget_id)

    async def _spend(self, ids: Sequence[int]) -> list[dict[int, Spend]]:
        async with self.engine.connect() as conn:
            return [await budget_rules.spend(conn, account_id, self.now) for account_id in ids]

    async def report(self, wanted: reports.ReportRequest) -> reports.Report | None:
        async with self.engine.connect() as conn:
            return await reports.cost_report(conn, self.principal, wanted)

    async def recommendations(self, account_id: int) -> list[recommendations.Recommendation]:
        async with self.engine.connect() as conn:
            return await recommendations.recommendations(conn, self.principal, account_id, self.now)
