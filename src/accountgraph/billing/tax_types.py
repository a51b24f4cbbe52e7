"""T1-T3, W1, W3 in GraphQL: TaxGroup, LedgerLine, StoredValueCard and AutoTopUp, and the
resolvers of billing's fields for them (``account.py``, ``tax_queries.py``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from accountgraph.api import composed, ids, node
from accountgraph.api.composed import AccountRef
from accountgraph.api.node import Node
from accountgraph.api.scalars import Exact, Money
from accountgraph.billing.payment_types import PaymentMethod
from accountgraph.billing.tax_loaders import StoredValue, TaxLoaders
from accountgraph.billing.voucher_types import loaders as voucher_loaders

Info = strawberry.Info[Any, Any]
Row = Any


def loaders(info: Info) -> TaxLoaders:
    found: TaxLoaders = info.context.loaders.taxes
    return found


@strawberry.type(
    description="T1: a tax rate in percent (0-100, up to 4 places) by its code; the rate "
    "is shown with every place it has (at least 2: 8.875, 19.00)."
)
class TaxGroup(Node):
    id: strawberry.ID
    code: str
    name: str
    rate: Money

    @classmethod
    def from_row(cls, row: Row) -> TaxGroup:
        return cls(
            id=strawberry.ID(ids.encode("TaxGroup", row.id)),
            code=row.code,
            name=row.name,
            rate=Exact(row.rate),
        )


@strawberry.type(
    description="T3: the postings of a period on one account and bucket for one branch: "
    "credit is what went into the bucket, debit what went out, net = credit - debit."
)
class LedgerLine:
    branch: str | None
    bucket: str
    debit: Money
    credit: Money
    net: Money
    account_id: strawberry.Private[int]

    @strawberry.field
    async def account(self, info: Info) -> AccountRef:
        return await composed.seen_account(info, self.account_id)

    @classmethod
    def from_row(cls, row: Row) -> LedgerLine:
        return cls(
            branch=row.branch,
            account_id=row.account_id,
            bucket=row.bucket,
            debit=row.debit,
            credit=row.credit,
            net=row.net,
        )


@strawberry.type(description="W1: prepaid value, used by charges after coupons and vouchers.")
class StoredValueCard(Node):
    id: strawberry.ID
    amount: Money
    remaining: Money
    valid_until: datetime | None
    origin: str = strawberry.field(
        description="ISSUED by an operator or TOP_UP from an auto top-up order"
    )
    created_at: datetime

    @classmethod
    def from_row(cls, row: Row) -> StoredValueCard:
        return cls(
            id=strawberry.ID(ids.encode("StoredValueCard", row.id)),
            amount=row.amount,
            remaining=row.remaining,
            valid_until=row.valid_until,
            origin=row.origin,
            created_at=row.created_at,
        )


@strawberry.type(
    description="W3: when a charge leaves the stored value below threshold while the "
    "rule is armed, a top-up of amount is paid with paymentMethod."
)
class AutoTopUp:
    threshold: Money
    amount: Money
    enabled: bool
    last_top_up_at: datetime | None
    last_error: str | None
    payment_method_id: strawberry.Private[int]

    @strawberry.field
    async def payment_method(self, info: Info) -> PaymentMethod:
        row = await voucher_loaders(info).payment_method_by_id.load(self.payment_method_id)
        if row is None:  # pragma: no cover - the rule's method is its account's
            raise LookupError("payment method not visible")
        return PaymentMethod.from_row(row)

    @classmethod
    def from_row(cls, row: Row) -> AutoTopUp:
        return cls(
            threshold=row.threshold,
            amount=row.amount,
            enabled=row.enabled,
            last_top_up_at=row.last_top_up_at,
            last_error=row.last_error,
            payment_method_id=row.payment_method_id,
        )


# ---------------------------------------------------------------- for billing.account


async def tax_group_of(info: Info, account_id: int) -> TaxGroup | None:
    row = await loaders(info).tax_group_by_account.load(account_id)
    return None if row is None else TaxGroup.from_row(row)


async def stored_value_cards_of(info: Info, account_id: int) -> list[StoredValueCard]:
    rows = await loaders(info).cards_by_account.load(account_id)
    return [StoredValueCard.from_row(row) for row in rows]


async def stored_value_of(info: Info, account_id: int) -> StoredValue:
    found: StoredValue = await loaders(info).stored_value_by_account.load(account_id)
    return found


async def auto_top_up_of(info: Info, account_id: int) -> AutoTopUp | None:
    row = await loaders(info).auto_top_up_by_account.load(account_id)
    return None if row is None else AutoTopUp.from_row(row)


# ---------------------------------------------------------------- node(id)


async def tax_group_node(info: Info, row_id: int) -> TaxGroup | None:
    row = await loaders(info).tax_group_by_id.load(row_id)
    return None if row is None else TaxGroup.from_row(row)


async def stored_value_card_node(info: Info, row_id: int) -> StoredValueCard | None:
    row = await loaders(info).card_by_id.load(row_id)
    return None if row is None else StoredValueCard.from_row(row)


node.register("TaxGroup", tax_group_node)
node.register("StoredValueCard", stored_value_card_node)
