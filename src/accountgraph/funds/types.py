"""F1, F2, F5, F7 in GraphQL: FinancialState, Transfer, Charge and their connections."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from accountgraph.api import ids
from accountgraph.api.connections import Connection, connection, page
from accountgraph.api.node import Node
from accountgraph.api.scalars import Money
from accountgraph.funds.loaders import ChargesKey, Finance, FundsLoaders, TransfersKey

if TYPE_CHECKING:
    from accountgraph.accounts.types import Account

AccountRef = Annotated["Account", strawberry.lazy("accountgraph.accounts.types")]
Info = strawberry.Info[Any, Any]
Row = Any


@strawberry.enum
class DisbursementMethod(enum.Enum):
    CASH = "CASH"
    CREDIT = "CREDIT"


@strawberry.enum
class TransferDirection(enum.Enum):
    ALLOCATE = "ALLOCATE"
    RECLAIM = "RECLAIM"


@strawberry.enum
class BalanceBucket(enum.Enum):
    BANKERS_ACCEPTANCE_BILL = "BANKERS_ACCEPTANCE_BILL"
    CREDIT_REFUND = "CREDIT_REFUND"
    UNSETTLED_AMOUNT = "UNSETTLED_AMOUNT"
    NEGATIVE_BILL = "NEGATIVE_BILL"


def loaders(info: Info) -> FundsLoaders:
    found: FundsLoaders = info.context.loaders.funds
    return found


@strawberry.type
class FinancialState:
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
        description="Masters only: credit line and what of it is still available (F6).")
    available_credit: Money | None
    account_id: strawberry.Private[int]

    @strawberry.field(description="F1, V3: coupons usable now (something left, not expired).")
    async def coupon_count(self, info: Info) -> int:
        from accountgraph.billing.voucher_types import coupon_count_of

        return await coupon_count_of(info, self.account_id)

    @strawberry.field(description="F1, V1: vouchers usable now (something left, valid now) "
                      "that the account created as a master or that name it.")
    async def voucher_count(self, info: Info) -> int:
        from accountgraph.billing.voucher_types import voucher_count_of

        return await voucher_count_of(info, self.account_id)

    @classmethod
    def of(cls, finance: Finance) -> FinancialState:
        b = finance.balance
        master_side = not finance.is_member
        return cls(
            account_id=b.account_id,
            cash_balance=b["CASH"], bankers_acceptance_bill=b["BANKERS_ACCEPTANCE_BILL"],
            credit_limit=b["CREDIT_LIMIT"], credit_refund=b["CREDIT_REFUND"],
            unsettled_amount=b["UNSETTLED_AMOUNT"], outstanding_fees=b["OUTSTANDING_FEES"],
            negative_bill=b["NEGATIVE_BILL"], transferred_cash=b["TRANSFERRED_CASH"],
            transferred_credit=b["TRANSFERRED_CREDIT"],
            transferred_amount=b["TRANSFERRED_CASH"] + b["TRANSFERRED_CREDIT"],
            frozen_cash=b.frozen_cash, available_quota=b.available_quota,
            credit_line=b["CREDIT_LINE"] if master_side else None,
            available_credit=(b["CREDIT_LIMIT"] - b["TRANSFERRED_CREDIT"] - b["OUTSTANDING_FEES"])
            if master_side else None,
        )


async def _account(info: Info, account_id: int) -> Account:
    from accountgraph.accounts.queries import account_node

    found = await account_node(info, account_id)
    if found is None:  # pragma: no cover - whoever sees the money sees its accounts
        raise LookupError("account not visible")
    return found


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
        return await _account(info, self.master_id)

    @strawberry.field
    async def member(self, info: Info) -> AccountRef:
        return await _account(info, self.member_id)

    @classmethod
    def from_row(cls, row: Row) -> Transfer:
        return cls(
            id=strawberry.ID(ids.encode("Transfer", row.id)), master_id=row.master_id,
            member_id=row.member_id, method=DisbursementMethod(row.method),
            direction=TransferDirection(row.direction), amount=row.amount,
            created_at=row.created_at, actor=row.actor, idempotency_key=row.idempotency_key,
        )


@strawberry.type
class Charge(Node):
    id: strawberry.ID
    amount: Money
    description: str
    occurred_at: datetime
    paid_by_master: Money
    account_id: strawberry.Private[int]
    site_id: strawberry.Private[int | None]

    @strawberry.field
    async def account(self, info: Info) -> AccountRef:
        return await _account(info, self.account_id)

    @strawberry.field
    async def site(self, info: Info) -> Annotated[
        Site, strawberry.lazy("accountgraph.accounts.types")
    ] | None:
        from accountgraph.accounts.queries import site_node

        return None if self.site_id is None else await site_node(info, self.site_id)

    @classmethod
    def from_row(cls, row: Row) -> Charge:
        return cls(
            id=strawberry.ID(ids.encode("Charge", row.id)), account_id=row.account_id,
            site_id=row.site_id, amount=row.amount, description=row.description,
            occurred_at=row.occurred_at, paid_by_master=row.paid_by_master,
        )


if TYPE_CHECKING:
    from accountgraph.accounts.types import Site


async def finance_of(info: Info, account_id: int) -> FinancialState | None:
    found = await loaders(info).finance_by_account.load(account_id)
    return None if found is None else FinancialState.of(found)


async def transfers_of(
    info: Info, account_id: int, *, first: int | None, after: str | None,
    member_id: strawberry.ID | None, direction: TransferDirection | None,
    since: datetime | None, until: datetime | None,
) -> Connection[Transfer]:
    request = page(first, after)
    member = None
    if member_id is not None:
        member = ids.decode_as(member_id, "Account") or -1  # unknown: matches nothing
    key = TransfersKey(account_id, member, direction.value if direction else None, since,
                       until, request.limit, request.after)
    found = await loaders(info).transfers_by_account.load(key)
    nodes = [Transfer.from_row(row) for row in found.rows]
    return connection(nodes, [row.id for row in found.rows], request, found.total)


async def charges_of(
    info: Info, account_id: int, *, first: int | None, after: str | None,
    since: datetime | None, until: datetime | None,
) -> Connection[Charge]:
    request = page(first, after)
    key = ChargesKey(account_id, since, until, request.limit, request.after)
    found = await loaders(info).charges_by_account.load(key)
    nodes = [Charge.from_row(row) for row in found.rows]
    return connection(nodes, [row.id for row in found.rows], request, found.total)
