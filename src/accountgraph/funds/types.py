"""F1, F2, F5, F7 in GraphQL: FinancialState, Transfer, Charge, their connections, and the
funds area's fields of ``Account`` (finance, transfers, charges)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from accountgraph.api import composed, ids
from accountgraph.api.composed import AccountRef, FinancialStateRef, SiteRef
from accountgraph.api.connections import Connection, connection, page
from accountgraph.api.node import Node
from accountgraph.api.scalars import Money
from accountgraph.funds.kinds import BalanceBucket, DisbursementMethod, TransferDirection
from accountgraph.funds.loaders import ChargesKey, Finance, FundsLoaders, TransfersKey

Info = strawberry.Info[Any, Any]
Row = Any


# The GraphQL enums are the funds area's own (``kinds.py``), registered as they are: the
# schema, resolvers and services speak the same members, whose values are the DB strings.
strawberry.enum(DisbursementMethod)
strawberry.enum(TransferDirection)
strawberry.enum(BalanceBucket)


def loaders(info: Info) -> FundsLoaders:
    found: FundsLoaders = info.context.loaders.funds
    return found


@strawberry.type(name="FinancialState")
class FinancialStateCore:
    """Funds' part of ``FinancialState``; billing adds the coupon and voucher counts."""

    cash_balance: Money
    bankers_acceptance_bill: Money
    credit_limit: Money
    credit_refund: Money
    unsettled_amount: Money
    outstanding_fees: Money
    negative_bill: Money
    transferred_cash: Money
    transferred_credit: Money
    transferred_amount: Money
    frozen_cash: Money
    available_quota: Money
    credit_line: Money | None = strawberry.field(
        description="Masters only: credit line and what of it is still available (F6)."
    )
    available_credit: Money | None
    account_id: strawberry.Private[int]

    @classmethod
    def of(cls, finance: Finance) -> FinancialStateCore:
        b = finance.balance
        master_side = not finance.is_member
        return cls(
            account_id=b.account_id,
            cash_balance=b["CASH"],
            bankers_acceptance_bill=b["BANKERS_ACCEPTANCE_BILL"],
            credit_limit=b["CREDIT_LIMIT"],
            credit_refund=b["CREDIT_REFUND"],
            unsettled_amount=b["UNSETTLED_AMOUNT"],
            outstanding_fees=b["OUTSTANDING_FEES"],
            negative_bill=b["NEGATIVE_BILL"],
            transferred_cash=b["TRANSFERRED_CASH"],
            transferred_credit=b["TRANSFERRED_CREDIT"],
            transferred_amount=b["TRANSFERRED_CASH"] + b["TRANSFERRED_CREDIT"],
            frozen_cash=b.frozen_cash,
            available_quota=b.available_quota,
            credit_line=b["CREDIT_LINE"] if master_side else None,
            available_credit=(b["CREDIT_LIMIT"] - b["TRANSFERRED_CREDIT"] - b["OUTSTANDING_FEES"])
            if master_side
            else None,
        )


@strawberry.type
class Transfer(Node):
    id: strawberry.ID
    method: DisbursementMethod
    direction: TransferDirection
    amount: Money
    created_at: datetime
    actor: str
    idempotency_key: str | None
    master_id: strawberry.Private[int]
    member_id: strawberry.Private[int]

    @strawberry.field
    async def master(self, info: Info) -> AccountRef:
        return await composed.seen_account(info, self.master_id)

    @strawberry.field
    async def member(self, info: Info) -> AccountRef:
        return await composed.seen_account(info, self.member_id)

    @classmethod
    def from_row(cls, row: Row) -> Transfer:
        return cls(
            id=strawberry.ID(ids.encode("Transfer", row.id)),
            master_id=row.master_id,
            member_id=row.member_id,
            method=DisbursementMethod(row.method),
            direction=TransferDirection(row.direction),
            amount=row.amount,
            created_at=row.created_at,
            actor=row.actor,
            idempotency_key=row.idempotency_key,
        )


@strawberry.type(description="C1: a cost tag of a charge (or a budget's scope, C3).")
class CostTag:
    key: str
    value: str


def cost_tags(tags: dict[str, str] | None) -> list[CostTag]:
    """C1: a charge's tags, by key."""
    return [CostTag(key=key, value=value) for key, value in sorted((tags or {}).items())]


@strawberry.type
class Charge(Node):
    id: strawberry.ID
    amount: Money
    description: str
    occurred_at: datetime
    paid_by_master: Money
    product: str | None
    tags: list[CostTag]
    branch: str | None = strawberry.field(
        description="T3: the branch its journal entry records: its site's, else its account's."
    )
    account_id: strawberry.Private[int]
    site_id: strawberry.Private[int | None]

    @strawberry.field
    async def account(self, info: Info) -> AccountRef:
        return await composed.seen_account(info, self.account_id)

    @strawberry.field
    async def site(self, info: Info) -> SiteRef | None:
        return None if self.site_id is None else await composed.site(info, self.site_id)

    @classmethod
    def from_row(cls, row: Row) -> Charge:
        return cls(
            id=strawberry.ID(ids.encode("Charge", row.id)),
            account_id=row.account_id,
            site_id=row.site_id,
            amount=row.amount,
            description=row.description,
            occurred_at=row.occurred_at,
            paid_by_master=row.paid_by_master,
            product=row.product,
            tags=cost_tags(row.tags),
            branch=row.branch,
        )


async def finance_of(info: Info, account_id: int) -> FinancialStateCore | None:
    found = await loaders(info).finance_by_account.load(account_id)
    return None if found is None else FinancialStateCore.of(found)


async def transfers_of(
    info: Info,
    account_id: int,
    *,
    first: int | None,
    after: str | None,
    member_id: strawberry.ID | None,
    direction: TransferDirection | None,
    since: datetime | None,
    until: datetime | None,
) -> Connection[Transfer]:
    request = page(first, after)
    member = None
    if member_id is not None:
        member = ids.decode_as(member_id, "Account") or -1  # unknown: matches nothing
    key = TransfersKey(
        account_id,
        member,
        direction.value if direction else None,
        since,
        until,
        request.limit,
        request.after,
    )
    found = await loaders(info).transfers_by_account.load(key)
    nodes = [Transfer.from_row(row) for row in found.rows]
    return connection(nodes, [row.id for row in found.rows], request, found.total)


async def charges_of(
    info: Info,
    account_id: int,
    *,
    first: int | None,
    after: str | None,
    since: datetime | None,
    until: datetime | None,
) -> Connection[Charge]:
    request = page(first, after)
    key = ChargesKey(account_id, since, until, request.limit, request.after)
    found = await loaders(info).charges_by_account.load(key)
    nodes = [Charge.from_row(row) for row in found.rows]
    return connection(nodes, [row.id for row in found.rows], request, found.total)


@strawberry.type
class FundsAccount:
    """The funds area's fields of ``Account``."""

    row_id: strawberry.Private[int]

    @strawberry.field(description="Null where the viewer may not see finances (P2).")
    async def finance(self, info: Info) -> FinancialStateRef | None:
        return await finance_of(info, self.row_id)

    @strawberry.field(
        description="F5: the transfer book, newest first: a master's "
        "allocations and reclamations, or those a member received."
    )
    async def transfers(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        member_id: strawberry.ID | None = None,
        direction: TransferDirection | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Connection[Transfer]:
        return await transfers_of(
            info,
            self.row_id,
            first=first,
            after=after,
            member_id=member_id,
            direction=direction,
            since=since,
            until=until,
        )

    @strawberry.field(description="F7: charges on this account, newest first.")
    async def charges(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Connection[Charge]:
        return await charges_of(
            info, self.row_id, first=first, after=after, since=since, until=until
        )
