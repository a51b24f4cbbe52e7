"""The billing area's fields of ``Account`` (payments, coupons, vouchers, payment methods,
invoices, invoice mode, discount, tax group, stored value cards, auto top-up) and of
``FinancialState`` (coupon and voucher counts, stored value);
``schema.py`` composes them into the one type of each (``api/composed.py``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import strawberry

from accountgraph.api.connections import Connection
from accountgraph.api.scalars import Money
from accountgraph.billing import payment_types, tax_types, types, voucher_types
from accountgraph.billing.payment_types import Payment, PaymentMethod
from accountgraph.billing.tax_types import AutoTopUp, StoredValueCard, TaxGroup
from accountgraph.billing.types import Invoice, InvoiceMode
from accountgraph.billing.voucher_types import Coupon, Voucher

Info = strawberry.Info[Any, Any]


@strawberry.type
class BillingAccount:
    row_id: strawberry.Private[int]

    @strawberry.field(
        description="F8, B5: payments made on this account or paid by it, newest first."
    )
    async def payments(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[Payment]:
        return await payment_types.payments_of(info, self.row_id, first=first, after=after)

    @strawberry.field(description="V3: this account's coupons.")
    async def coupons(self, info: Info) -> list[Coupon]:
        return await voucher_types.coupons_of(info, self.row_id)

    @strawberry.field(description="V1: a master's vouchers, and the vouchers naming this account.")
    async def vouchers(self, info: Info) -> list[Voucher]:
        return await voucher_types.vouchers_of(info, self.row_id)

    @strawberry.field(
        description="V1: what is left of the voucher pool (granted - used); "
        "null for members and where the viewer may not see finances."
    )
    async def voucher_pool(self, info: Info) -> Money | None:
        found: Decimal | None = await voucher_types.voucher_pool_of(info, self.row_id)
        return found

    @strawberry.field(description="B5: this account's payment methods, managed ones included.")
    async def payment_methods(self, info: Info) -> list[PaymentMethod]:
        return await payment_types.payment_methods_of(info, self.row_id)

    @strawberry.field(description="B2-B4: invoices issued to this account, newest first.")
    async def invoices(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[Invoice]:
        return await types.invoices_of(info, self.row_id, first=first, after=after)

    @strawberry.field(
        description="B2: how this account's bill cycles issue invoices "
        "(AGGREGATED unless set); null for a managed account (an ACTIVE "
        "trusteeship member, never invoiced itself) and where the viewer does "
        "not see the account's details."
    )
    async def invoice_mode(self, info: Info) -> InvoiceMode | None:
        return await types.invoice_mode_of(info, self.row_id)

    @strawberry.field(
        description="B3: the account-level discount in percent; null if none "
        "or where the viewer may not see finances."
    )
    async def discount_percent(self, info: Info) -> Money | None:
        found: Decimal | None = await types.discount_of(info, self.row_id)
        return found

    @strawberry.field(
        description="T1: the account's default tax group; null if none or where the "
        "viewer does not see the account's details."
    )
    async def tax_group(self, info: Info) -> TaxGroup | None:
        return await tax_types.tax_group_of(info, self.row_id)

    @strawberry.field(description="W1: this account's stored value cards, oldest first.")
    async def stored_value_cards(self, info: Info) -> list[StoredValueCard]:
        return await tax_types.stored_value_cards_of(info, self.row_id)

    @strawberry.field(
        description="W3: the account's auto top-up rule; null if none or where the "
        "viewer does not see the account's details."
    )
    async def auto_top_up(self, info: Info) -> AutoTopUp | None:
        return await tax_types.auto_top_up_of(info, self.row_id)


@strawberry.type
class BillingFinance:
    account_id: strawberry.Private[int]

    @strawberry.field(description="F1, V3: coupons usable now (something left, not expired).")
    async def coupon_count(self, info: Info) -> int:
        return await voucher_types.coupon_count_of(info, self.account_id)

    @strawberry.field(
        description="F1, V1: vouchers usable now (something left, valid now) "
        "that the account created as a master or that name it."
    )
    async def voucher_count(self, info: Info) -> int:
        return await voucher_types.voucher_count_of(info, self.account_id)

    @strawberry.field(
        description="W1: Σ remaining of the stored value cards usable now (not part of "
        "the available quota)."
    )
    async def stored_value(self, info: Info) -> Money:
        found: Decimal = (await tax_types.stored_value_of(info, self.account_id)).amount
        return found

    @strawberry.field(description="W1: stored value cards usable now (something left, valid).")
    async def stored_value_card_count(self, info: Info) -> int:
        return (await tax_types.stored_value_of(info, self.account_id)).cards
