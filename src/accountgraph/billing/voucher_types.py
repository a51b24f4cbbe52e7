"""V1-V3 in GraphQL: Voucher, Coupon and their nodes."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import strawberry

from accountgraph.api import composed, ids, node
from accountgraph.api.composed import AccountRef
from accountgraph.api.node import Node
from accountgraph.api.scalars import Money
from accountgraph.billing.voucher_loaders import VoucherLoaders

Info = strawberry.Info[Any, Any]
Row = Any


def loaders(info: Info) -> VoucherLoaders:
    found: VoucherLoaders = info.context.loaders.vouchers
    return found


@strawberry.type(
    description="V1: an amount from a master's voucher pool that the named "
    "members may use within its validity window."
)
class Voucher(Node):
    id: strawberry.ID
    amount: Money
    remaining: Money
    valid_from: datetime
    valid_until: datetime
    row_id: strawberry.Private[int]

    @strawberry.field(description="The named members the viewer sees.")
    async def members(self, info: Info) -> list[AccountRef]:
        member_ids = await loaders(info).members_by_voucher.load(self.row_id)
        return await composed.accounts(info, member_ids)

    @classmethod
    def from_row(cls, row: Row) -> Voucher:
        return cls(
            id=strawberry.ID(ids.encode("Voucher", row.id)),
            row_id=row.id,
            amount=row.amount,
            remaining=row.remaining,
            valid_from=row.valid_from,
            valid_until=row.valid_until,
        )


@strawberry.type(description="V3: an amount an operator gave an account, usable until it expires.")
class Coupon(Node):
    id: strawberry.ID
    amount: Money
    remaining: Money
    valid_until: datetime

    @classmethod
    def from_row(cls, row: Row) -> Coupon:
        return cls(
            id=strawberry.ID(ids.encode("Coupon", row.id)),
            amount=row.amount,
            remaining=row.remaining,
            valid_until=row.valid_until,
        )


# ---------------------------------------------------------------- for billing.account


async def voucher_pool_of(info: Info, account_id: int) -> Decimal | None:
    found: Decimal | None = await loaders(info).pool_by_account.load(account_id)
    return found


async def vouchers_of(info: Info, account_id: int) -> list[Voucher]:
    return [
        Voucher.from_row(row) for row in await loaders(info).vouchers_by_account.load(account_id)
    ]


async def coupons_of(info: Info, account_id: int) -> list[Coupon]:
    return [Coupon.from_row(row) for row in await loaders(info).coupons_by_account.load(account_id)]


async def coupon_count_of(info: Info, account_id: int) -> int:
    return (await loaders(info).counts_by_account.load(account_id)).coupons


async def voucher_count_of(info: Info, account_id: int) -> int:
    return (await loaders(info).counts_by_account.load(account_id)).vouchers


# ---------------------------------------------------------------- node(id)


async def voucher_node(info: Info, row_id: int) -> Voucher | None:
    row = await loaders(info).voucher_by_id.load(row_id)
    return None if row is None else Voucher.from_row(row)


async def coupon_node(info: Info, row_id: int) -> Coupon | None:
    row = await loaders(info).coupon_by_id.load(row_id)
    return None if row is None else Coupon.from_row(row)


node.register("Voucher", voucher_node)
node.register("Coupon", coupon_node)
