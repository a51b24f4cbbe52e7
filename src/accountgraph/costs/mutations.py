"""C3 in GraphQL: setBudget, removeBudget."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.api.auth import IsAuthenticated
from accountgraph.api.composed import CostTagInputRef
from accountgraph.api.errors import UserError
from accountgraph.api.mutations import Named, mutate, row_id
from accountgraph.api.payloads import AccountPayload
from accountgraph.api.scalars import Money, amount
from accountgraph.costs import budgets
from accountgraph.costs.types import Budget, BudgetBasis, BudgetPeriod
from accountgraph.domain import DomainError, ErrorCode, Principal

Info = strawberry.Info[Any, Any]


@strawberry.input
class BudgetThresholdInput:
    basis: BudgetBasis
    percent: Money


@strawberry.input(
    description="budgetId: change that budget; none: create one. memberId, userGroupId and "
    "tag: at most one."
)
class SetBudgetInput:
    account_id: strawberry.ID
    name: str
    amount: Money
    period: BudgetPeriod
    thresholds: list[BudgetThresholdInput]
    budget_id: strawberry.ID | None = None
    member_id: strawberry.ID | None = None
    user_group_id: strawberry.ID | None = None
    tag: CostTagInputRef | None = None


@strawberry.input
class RemoveBudgetInput:
    budget_id: strawberry.ID


@strawberry.type
class BudgetPayload:
    budget: Budget | None
    user_errors: list[UserError]


def _percent(value: object, field: list[str]) -> Decimal:
    try:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise InvalidOperation
        return Decimal(str(value).strip())
    except InvalidOperation:
        raise DomainError(ErrorCode.INVALID_INPUT, "A percent is a decimal.", field) from None


@strawberry.type
class CostMutation:
    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="C3: create or change a budget (the account's users or operators).",
    )
    async def set_budget(self, info: Info, input: SetBudgetInput) -> BudgetPayload:
        async def work(conn: AsyncConnection, principal: Principal) -> Named:
            account_id = row_id(input.account_id, "Account", ["accountId"])
            budget_id = (
                None if input.budget_id is None else row_id(input.budget_id, "Budget", ["budgetId"])
            )
            member_id = (
                None
                if input.member_id is None
                else row_id(input.member_id, "Account", ["memberId"])
            )
            group_id = (
                None
                if input.user_group_id is None
                else row_id(input.user_group_id, "UserGroup", ["userGroupId"])
            )
            thresholds = [
                budgets.Threshold(
                    t.basis.value, _percent(t.percent, ["thresholds", str(i), "percent"])
                )
                for i, t in enumerate(input.thresholds)
            ]
            return await budgets.set_budget(
                conn,
                principal,
                account_id=account_id,
                budget_id=budget_id,
                name=input.name,
                amount=amount(input.amount, ["amount"]),
                period=input.period.value,
                member_id=member_id,
                user_group_id=group_id,
                tag=None if input.tag is None else (input.tag.key, input.tag.value),
                thresholds=thresholds,
            )

        return await mutate(info, BudgetPayload, work, budget="Budget")

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="C3: remove a budget; answers its account.",
    )
    async def remove_budget(self, info: Info, input: RemoveBudgetInput) -> AccountPayload:
        async def work(conn: AsyncConnection, principal: Principal) -> Named:
            budget_id = row_id(input.budget_id, "Budget", ["budgetId"])
            return await budgets.remove_budget(conn, principal, budget_id)

        return await mutate(info, AccountPayload, work, account="Account")
