"""C2-C6 in GraphQL: CostReport, CostGroup, Budget, CostRecommendation, and the cost
center's fields of ``Account`` (costs, budgets, costRecommendations)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, cast

import strawberry
from graphql import GraphQLError

from accountgraph.api import composed, ids, node
from accountgraph.api.auth import principal_of
from accountgraph.api.composed import (
    AccountRef,
    CostTagRef,
    ResourceTypeRef,
    SiteRef,
    UserGroupRef,
)
from accountgraph.api.node import Node
from accountgraph.api.scalars import Money
from accountgraph.costs import charts, reports
from accountgraph.costs.budgets import Spend
from accountgraph.costs.loaders import CostLoaders
from accountgraph.costs.recommendations import Recommendation
from accountgraph.domain import DomainError

Info = strawberry.Info[Any, Any]
Row = Any


@strawberry.enum(description="C2: what a cost report groups by (time in UTC).")
class CostDimension(enum.Enum):
    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"
    MEMBER = "MEMBER"
    SITE = "SITE"
    PRODUCT = "PRODUCT"
    TAG = "TAG"


@strawberry.enum
class BudgetPeriod(enum.Enum):
    MONTHLY = "MONTHLY"
    QUARTERLY = "QUARTERLY"
    YEARLY = "YEARLY"


@strawberry.enum
class BudgetBasis(enum.Enum):
    ACTUAL = "ACTUAL"
    FORECASTED = "FORECASTED"


@strawberry.enum
class RecommendationKind(enum.Enum):
    SHARE_IDLE_RESOURCE_TYPE = "SHARE_IDLE_RESOURCE_TYPE"
    BUDGET_OVERRUN_FORECAST = "BUDGET_OVERRUN_FORECAST"


def loaders(info: Info) -> CostLoaders:
    found: CostLoaders = info.context.loaders.costs
    return found


class _Tag:
    """Funds' ``CostTag`` (named through its lazy reference), built from a budget's scope."""

    def __init__(self, key: str, value: str) -> None:
        self.key = key
        self.value = value


def tag_of(key: str | None, value: str | None) -> CostTagRef | None:
    return None if key is None or value is None else cast("CostTagRef", _Tag(key, value))


# ---------------------------------------------------------------- reports (C2, C6)


@strawberry.type
class CostGroup:
    keys: list[str | None] = strawberry.field(
        description="One value per dimension of groupBy, in its order: an ISO date (the "
        "bucket's first day), a global id, a product or a tag value; null where the charge "
        "has none."
    )
    amount: Money
    charges: int
    member_id: strawberry.Private[int | None]
    site_id: strawberry.Private[int | None]

    @strawberry.field
    async def member(self, info: Info) -> AccountRef | None:
        return None if self.member_id is None else await composed.account(info, self.member_id)

    @strawberry.field
    async def site(self, info: Info) -> SiteRef | None:
        return None if self.site_id is None else await composed.site(info, self.site_id)


def _key_text(dimension: str, key: Any) -> str | None:
    if key is None:
        return None
    if dimension in reports.TIME_DIMENSIONS:
        return str(key.isoformat())
    if dimension == "MEMBER":
        return ids.encode("Account", int(key))
    if dimension == "SITE":
        return ids.encode("Site", int(key))
    return str(key)


@strawberry.type
class CostReport:
    since: datetime
    until: datetime
    group_by: list[CostDimension]
    total: Money
    groups: list[CostGroup]
    report: strawberry.Private[reports.Report]

    @strawberry.field(description="A signed link to this report drawn as an SVG chart (C6).")
    def chart_url(self, info: Info) -> str:
        return charts.chart_url(info.context.settings, principal_of(info), self.report.request)

    @classmethod
    def of(cls, report: reports.Report) -> CostReport:
        dims = report.request.group_by
        groups = []
        for group in report.groups:
            by = dict(zip(dims, group.keys, strict=True))
            groups.append(
                CostGroup(
                    keys=[_key_text(d, k) for d, k in zip(dims, group.keys, strict=True)],
                    amount=group.amount,
                    charges=group.charges,
                    member_id=by.get("MEMBER"),
                    site_id=by.get("SITE"),
                )
            )
        return cls(
            since=report.request.since,
            until=report.request.until,
            group_by=[CostDimension(d) for d in dims],
            total=report.total,
            groups=groups,
            report=report,
        )


def invalid(error: DomainError) -> GraphQLError:
    return GraphQLError(error.message, extensions={"code": error.code.value, "field": error.field})


def _member_ids(values: list[strawberry.ID] | None) -> list[int] | None:
    if values is None:
        return None
    found = []
    for index, value in enumerate(values):
        row_id = ids.decode_as(value, "Account")
        if row_id is None:
            raise GraphQLError(
                "Not an account id.",
                extensions={"code": "INVALID_INPUT", "field": ["memberIds", str(index)]},
            )
        found.append(row_id)
    return found


# ---------------------------------------------------------------- budgets (C3, C4)


@strawberry.type
class BudgetThreshold:
    basis: BudgetBasis
    percent: Money
    fired_at: datetime | None


@strawberry.type
class Budget(Node):
    id: strawberry.ID
    name: str
    amount: Money
    period: BudgetPeriod
    row_id: strawberry.Private[int]
    account_id: strawberry.Private[int]
    member_id: strawberry.Private[int | None]
    user_group_id: strawberry.Private[int | None]
    tag_key: strawberry.Private[str | None]
    tag_value: strawberry.Private[str | None]

    @strawberry.field
    async def account(self, info: Info) -> AccountRef:
        return await composed.seen_account(info, self.account_id)

    @strawberry.field(
        description="The scope: at most one of member, userGroup, tag; none: the whole "
        "report of the account."
    )
    async def member(self, info: Info) -> AccountRef | None:
        return None if self.member_id is None else await composed.account(info, self.member_id)

    @strawberry.field
    async def user_group(self, info: Info) -> UserGroupRef | None:
        if self.user_group_id is None:
            return None
        return await composed.user_group(info, self.user_group_id)

    @strawberry.field
    def tag(self) -> CostTagRef | None:
        return tag_of(self.tag_key, self.tag_value)

    @strawberry.field
    async def thresholds(self, info: Info) -> list[BudgetThreshold]:
        found = await loaders(info).thresholds_by_budget.load(self.row_id)
        return [
            BudgetThreshold(basis=BudgetBasis(row.basis), percent=row.percent, fired_at=fired)
            for row, fired in found
        ]

    async def _spend(self, info: Info) -> Spend:
        by_budget = await loaders(info).spend_by_account.load(self.account_id)
        return by_budget[self.row_id]

    @strawberry.field
    async def period_start(self, info: Info) -> datetime:
        return (await self._spend(info)).period_start

    @strawberry.field
    async def period_end(self, info: Info) -> datetime:
        return (await self._spend(info)).period_end

    @strawberry.field
    async def spent(self, info: Info) -> Money:
        return (await self._spend(info)).spent

    @strawberry.field
    async def forecast(self, info: Info) -> Money:
        return (await self._spend(info)).forecast

    @classmethod
    def from_row(cls, row: Row) -> Budget:
        return cls(
            id=strawberry.ID(ids.encode("Budget", row.id)),
            row_id=row.id,
            account_id=row.account_id,
            name=row.name,
            amount=row.amount,
            period=BudgetPeriod(row.period),
            member_id=row.member_id,
            user_group_id=row.user_group_id,
            tag_key=row.tag_key,
            tag_value=row.tag_value,
        )


async def budget_node(info: Info, row_id: int) -> Budget | None:
    row = await loaders(info).budget_by_id.load(row_id)
    return None if row is None else Budget.from_row(row)


node.register("Budget", budget_node)


# ---------------------------------------------------------------- recommendations (C5)


@strawberry.type
class CostRecommendation:
    kind: RecommendationKind
    message: str
    estimated_amount: Money | None
    type_name: strawberry.Private[str | None]
    budget_id: strawberry.Private[int | None]

    @strawberry.field
    def resource_type(self) -> ResourceTypeRef | None:
        if self.type_name is None:
            return None
        return cast("ResourceTypeRef", self.type_name)

    @strawberry.field
    async def budget(self, info: Info) -> Budget | None:
        return None if self.budget_id is None else await budget_node(info, self.budget_id)

    @classmethod
    def of(cls, found: Recommendation) -> CostRecommendation:
        return cls(
            kind=RecommendationKind(found.kind),
            message=found.message,
            estimated_amount=found.estimated_amount,
            type_name=found.resource_type,
            budget_id=found.budget_id,
        )


# ---------------------------------------------------------------- Account


@strawberry.type
class CostsAccount:
    """The cost center's fields of ``Account``."""

    row_id: strawberry.Private[int]

    @strawberry.field(
        description="C2: the account's costs in [since, until), grouped; null where cost "
        "center is off (U6) or the viewer may not see its finances (P2)."
    )
    async def costs(
        self,
        info: Info,
        since: datetime,
        until: datetime,
        group_by: list[CostDimension],
        tag_key: str | None = None,
        member_ids: list[strawberry.ID] | None = None,
    ) -> CostReport | None:
        try:
            wanted = reports.request(
                self.row_id,
                since,
                until,
                [d.value for d in group_by],
                tag_key,
                _member_ids(member_ids),
            )
        except DomainError as error:
            raise invalid(error) from None
        report = await loaders(info).report(wanted)
        return None if report is None else CostReport.of(report)

    @strawberry.field(description="C3: the account's budgets (none where cost center is off).")
    async def budgets(self, info: Info) -> list[Budget]:
        rows = await loaders(info).budgets_by_account.load(self.row_id)
        return [Budget.from_row(row) for row in rows]

    @strawberry.field(description="C5: recommendations, recomputed on read.")
    async def cost_recommendations(self, info: Info) -> list[CostRecommendation]:
        return [CostRecommendation.of(r) for r in await loaders(info).recommendations(self.row_id)]


__all__ = ["Budget", "CostReport", "CostsAccount"]
