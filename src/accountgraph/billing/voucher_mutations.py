"""Voucher, coupon and payment method mutations: convert ids and inputs, call one service,
report (through ``mutate``, ``api/mutations.py``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.api import ids
from accountgraph.api.auth import IsAuthenticated, IsOperator
from accountgraph.api.errors import UserError
from accountgraph.api.mutations import mutate, row_id
from accountgraph.api.payloads import AccountPayload
from accountgraph.api.scalars import Money, amount
from accountgraph.billing import payment_methods, vouchers
from accountgraph.billing.payment_types import PaymentMethod
from accountgraph.billing.voucher_types import Voucher
from accountgraph.domain import Principal

Info = strawberry.Info[Any, Any]


@strawberry.input
class GrantVoucherPoolInput:
    master_id: strawberry.ID
    amount: Money


@strawberry.input
class CreateVoucherInput:
    master_id: strawberry.ID
    amount: Money
    valid_from: datetime
    valid_until: datetime
    member_ids: list[strawberry.ID]


@strawberry.input
class IssueCouponInput:
    account_id: strawberry.ID
    amount: Money
    valid_until: datetime


@strawberry.input
class AddPaymentMethodInput:
    account_id: strawberry.ID
    label: str


@strawberry.input
class AddManagedPaymentMethodInput:
    payment_method_id: strawberry.ID
    managed_id: strawberry.ID


@strawberry.type
class VoucherPayload:
    voucher: Voucher | None
    user_errors: list[UserError]


@strawberry.type
class PaymentMethodPayload:
    payment_method: PaymentMethod | None
    user_errors: list[UserError]


@strawberry.type
class VoucherMutation:
    @strawberry.mutation(
        permission_classes=[IsOperator], description="V1: add to a master's voucher pool."
    )
    async def grant_voucher_pool(self, info: Info, input: GrantVoucherPoolInput) -> AccountPayload:
        async def work(conn: AsyncConnection, principal: Principal) -> int:
            master_id = row_id(input.master_id, "Account", ["masterId"])
            await vouchers.grant_voucher_pool(
                conn, principal, master_id=master_id, amount=amount(input.amount, ["amount"])
            )
            return master_id

        return await mutate(info, AccountPayload, work, account="Account")

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="V1: a voucher from the master's pool for named members.",
    )
    async def create_voucher(self, info: Info, input: CreateVoucherInput) -> VoucherPayload:
        async def work(conn: AsyncConnection, principal: Principal) -> int:
            return await vouchers.create_voucher(
                conn,
                principal,
                master_id=row_id(input.master_id, "Account", ["masterId"]),
                amount=amount(input.amount, ["amount"]),
                valid_from=input.valid_from,
                valid_until=input.valid_until,
                member_ids=[ids.decode_as(member, "Account") for member in input.member_ids],
            )

        return await mutate(info, VoucherPayload, work, voucher="Voucher")

    @strawberry.mutation(
        permission_classes=[IsOperator],
        description="V3: a coupon for an account (not a trusteeship member).",
    )
    async def issue_coupon(self, info: Info, input: IssueCouponInput) -> AccountPayload:
        async def work(conn: AsyncConnection, principal: Principal) -> int:
            account_id = row_id(input.account_id, "Account", ["accountId"])
            await vouchers.issue_coupon(
                conn,
                principal,
                account_id=account_id,
                amount=amount(input.amount, ["amount"]),
                valid_until=input.valid_until,
            )
            return account_id

        return await mutate(info, AccountPayload, work, account="Account")

    @strawberry.mutation(
        permission_classes=[IsAuthenticated], description="B5: a payment method of the account."
    )
    async def add_payment_method(
        self, info: Info, input: AddPaymentMethodInput
    ) -> PaymentMethodPayload:
        async def work(conn: AsyncConnection, principal: Principal) -> int:
            return await payment_methods.add_payment_method(
                conn,
                principal,
                account_id=row_id(input.account_id, "Account", ["accountId"]),
                label=input.label,
            )

        return await mutate(info, PaymentMethodPayload, work, payment_method="PaymentMethod")

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="B5: a responsible account's payment method added to one "
        "of its managed accounts.",
    )
    async def add_managed_payment_method(
        self, info: Info, input: AddManagedPaymentMethodInput
    ) -> PaymentMethodPayload:
        async def work(conn: AsyncConnection, principal: Principal) -> int:
            return await payment_methods.add_managed_payment_method(
                conn,
                principal,
                payment_method_id=row_id(
                    input.payment_method_id, "PaymentMethod", ["paymentMethodId"]
                ),
                managed_id=row_id(input.managed_id, "Account", ["managedId"]),
            )

        return await mutate(info, PaymentMethodPayload, work, payment_method="PaymentMethod")
