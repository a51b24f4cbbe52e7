"""V1-V3, B5, F8 in GraphQL: Voucher, Coupon, PaymentMethod, Payment and their nodes."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from accountgraph.api import ids
from accountgraph.api.connections import Connection, connection, page
from accountgraph.api.node import Node
from accountgraph.api.scalars import Money
from accountgraph.billing.voucher_loaders import PaymentsKey, VoucherLoaders

if TYPE_CHECKING:
    from accountgraph.accounts.types import Account

AccountRef = Annotated["Account", strawberry.lazy("accountgraph.accounts.types")]
Info = strawberry.Info[Any, Any]
Row = Any


def loaders(info: Info) -> VoucherLoaders:
    found: VoucherLoaders = info.context.loaders.vouchers
    return found


async def _account(info: Info, account_id: int) -> Account | None:
    from accountgraph.accounts.queries import account_node

    return await account_node(info, account_id)


async def _seen_account(info: Info, account_id: int) -> Account:
    found = await _account(info, account_id)
    if found is None:  # pragma: no cover - the loaders show only what has both ends seen
        raise LookupError("account not visible")
    return found


@strawberry.type(description="V1: an amount from a master's voucher pool that the named "
                 "members may use within its validity window.")
class Voucher(Node):
    id: strawberry.ID
    amount: Money
    remaining: Money
    valid_from: datetime
    valid_until: datetime
    row_id: strawberry.Private[int]

    @strawberry.field(description="The named members the viewer sees.")
    async def members(self, info: Info) -> list[AccountRef]:
        from accountgraph.accounts.queries import account_nodes

        return await account_nodes(info, await loaders(info).members_by_voucher.load(self.row_id))

    @classmethod
    def from_row(cls, row: Row) -> Voucher:
        return cls(id=strawberry.ID(ids.encode("Voucher", row.id)), row_id=row.id,
                   amount=row.amount, remaining=row.remaining, valid_from=row.valid_from,
                   valid_until=row.valid_until)


@strawberry.type(description="V3: an amount an operator gave an account, usable until it "
                 "expires.")
class Coupon(Node):
    id: strawberry.ID
    amount: Money
    remaining: Money
    valid_until: datetime

    @classmethod
    def from_row(cls, row: Row) -> Coupon:
        return cls(id=strawberry.ID(ids.encode("Coupon", row.id)), amount=row.amount,
                   remaining=row.remaining, valid_until=row.valid_until)


@strawberry.type
class PaymentMethod(Node):
    id: strawberry.ID
    label: str
    managed_from_account_id: strawberry.Private[int | None]

    @strawberry.field(description="B5: for a managed payment method, the responsible "
                      "account whose method it is.")
    async def managed_from(self, info: Info) -> AccountRef | None:
        if self.managed_from_account_id is None:
            return None
        return await _account(info, self.managed_from_account_id)

    @classmethod
    def from_row(cls, row: Row) -> PaymentMethod:
        return cls(id=strawberry.ID(ids.encode("PaymentMethod", row.id)), label=row.label,
                   managed_from_account_id=row.managed_from_account_id)


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
        return await _seen_account(info, self.account_id)

    @strawberry.field
    async def payment_method(self, info: Info) -> PaymentMethod | None:
        if self.payment_method_id is None:
            return None
        row = await loaders(info).payment_method_by_id.load(self.payment_method_id)
        return None if row is None else PaymentMethod.from_row(row)

    @strawberry.field(description="The account whose money it is: the responsible account "
                      "for a managed payment method (B5).")
    async def payer(self, info: Info) -> AccountRef:
        return await _seen_account(info, self.payer_id)

    @classmethod
    def from_row(cls, row: Row) -> Payment:
        return cls(id=strawberry.ID(ids.encode("Payment", row.id)), amount=row.amount,
                   created_at=row.created_at, account_id=row.account_id,
                   payer_id=row.payer_id, payment_method_id=row.payment_method_id)


# ---------------------------------------------------------------- Account fields


async def voucher_pool_of(info: Info, account_id: int) -> Decimal | None:
    found: Decimal | None = await loaders(info).pool_by_account.load(account_id)
    return found


async def vouchers_of(info: Info, account_id: int) -> list[Voucher]:
    return [Voucher.from_row(row) for row in await loaders(info).vouchers_by_account.load(
        account_id)]


async def coupons_of(info: Info, account_id: int) -> list[Coupon]:
    return [Coupon.from_row(row) for row in await loaders(info).coupons_by_account.load(
        account_id)]


async def coupon_count_of(info: Info, account_id: int) -> int:
    return (await loaders(info).counts_by_account.load(account_id)).coupons


async def voucher_count_of(info: Info, account_id: int) -> int:
    return (await loaders(info).counts_by_account.load(account_id)).vouchers


async def payment_methods_of(info: Info, account_id: int) -> list[PaymentMethod]:
    rows = await loaders(info).payment_methods_by_account.load(account_id)
    return [PaymentMethod.from_row(row) for row in rows]


async def payments_of(info: Info, account_id: int, *, first: int | None, after: str | None
                      ) -> Connection[Payment]:
    request = page(first, after)
    found = await loaders(info).payments_by_account.load(
        PaymentsKey(account_id, request.limit, request.after))
    nodes = [Payment.from_row(row) for row in found.rows]
    return connection(nodes, [row.id for row in found.rows], request, found.total)


# ---------------------------------------------------------------- node(id)


async def voucher_node(info: Info, row_id: int) -> Voucher | None:
    row = await loaders(info).voucher_by_id.load(row_id)
    return None if row is None else Voucher.from_row(row)


async def coupon_node(info: Info, row_id: int) -> Coupon | None:
    row = await loaders(info).coupon_by_id.load(row_id)
    return None if row is None else Coupon.from_row(row)


async def payment_method_node(info: Info, row_id: int) -> PaymentMethod | None:
    row = await loaders(info).payment_method_by_id.load(row_id)
    return None if row is None else PaymentMethod.from_row(row)


async def payment_node(info: Info, row_id: int) -> Payment | None:
    row = await loaders(info).payment_by_id.load(row_id)
    return None if row is None else Payment.from_row(row)


NODE_RESOLVERS = {"Voucher": voucher_node, "Coupon": coupon_node,
                  "PaymentMethod": payment_method_node, "Payment": payment_node}
