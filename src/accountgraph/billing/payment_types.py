"""F8, B5 in GraphQL: Payment and PaymentMethod, their nodes and connection."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from accountgraph.api import composed, ids, node
from accountgraph.api.composed import AccountRef
from accountgraph.api.connections import Connection, connection, page
from accountgraph.api.node import Node
from accountgraph.api.scalars import Money
from accountgraph.billing.voucher_loaders import PaymentsKey
from accountgraph.billing.voucher_types import loaders

Info = strawberry.Info[Any, Any]
Row = Any


@strawberry.type
class PaymentMethod(Node):
    id: strawberry.ID
    label: str
    auto_pay: bool = strawberry.field(
        description="W2: pays its account's invoices (and W3 top-ups) automatically."
    )
    managed_from_account_id: strawberry.Private[int | None]

    @strawberry.field(
        description="B5: for a managed payment method, the responsible account whose method it is."
    )
    async def managed_from(self, info: Info) -> AccountRef | None:
        if self.managed_from_account_id is None:
            return None
        return await composed.account(info, self.managed_from_account_id)

    @classmethod
    def from_row(cls, row: Row) -> PaymentMethod:
        return cls(
            id=strawberry.ID(ids.encode("PaymentMethod", row.id)),
            label=row.label,
            auto_pay=row.auto_pay,
            managed_from_account_id=row.managed_from_account_id,
        )


@strawberry.type
class Payment(Node):
    id: strawberry.ID
    amount: Money
    created_at: datetime
    account_id: strawberry.Private[int]
    payer_id: strawberry.Private[int]
    payment_method_id: strawberry.Private[int | None]

    @strawberry.field
    async def account(self, info: Info) -> AccountRef:
        return await composed.seen_account(info, self.account_id)

    @strawberry.field
    async def payment_method(self, info: Info) -> PaymentMethod | None:
        if self.payment_method_id is None:
            return None
        row = await loaders(info).payment_method_by_id.load(self.payment_method_id)
        return None if row is None else PaymentMethod.from_row(row)

    @strawberry.field(
        description="The account whose money it is: the responsible account "
        "for a managed payment method (B5)."
    )
    async def payer(self, info: Info) -> AccountRef:
        return await composed.seen_account(info, self.payer_id)

    @classmethod
    def from_row(cls, row: Row) -> Payment:
        return cls(
            id=strawberry.ID(ids.encode("Payment", row.id)),
            amount=row.amount,
            created_at=row.created_at,
            account_id=row.account_id,
            payer_id=row.payer_id,
            payment_method_id=row.payment_method_id,
        )


async def payment_methods_of(info: Info, account_id: int) -> list[PaymentMethod]:
    rows = await loaders(info).payment_methods_by_account.load(account_id)
    return [PaymentMethod.from_row(row) for row in rows]


async def payments_of(
    info: Info, account_id: int, *, first: int | None, after: str | None
) -> Connection[Payment]:
    request = page(first, after)
    found = await loaders(info).payments_by_account.load(
        PaymentsKey(account_id, request.limit, request.after)
    )
    nodes = [Payment.from_row(row) for row in found.rows]
    return connection(nodes, [row.id for row in found.rows], request, found.total)


async def payment_method_node(info: Info, row_id: int) -> PaymentMethod | None:
    row = await loaders(info).payment_method_by_id.load(row_id)
    return None if row is None else PaymentMethod.from_row(row)


async def payment_node(info: Info, row_id: int) -> Payment | None:
    row = await loaders(info).payment_by_id.load(row_id)
    return None if row is None else Payment.from_row(row)


node.register("PaymentMethod", payment_method_node)
node.register("Payment", payment_node)
