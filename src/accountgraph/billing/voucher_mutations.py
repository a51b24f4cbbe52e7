"""Voucher, coupon and payment method mutations: convert ids and inputs, call one service,
report."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.accounts.mutations import AccountPayload
from accountgraph.accounts.queries import account_node
from accountgraph.api import ids
from accountgraph.api.auth import IsAuthenticated, IsOperator, principal_of
from accountgraph.api.errors import UserError
from accountgraph.api.mutations import perform, row_id
from accountgraph.api.scalars import Money, amount
from accountgraph.billing import payment_methods, vouchers
from accountgraph.billing.voucher_types import (
    PaymentMethod,
    Voucher,
    payment_method_node,
    voucher_node,
)

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


async def _account_payload(info: Info, account_id: int | None, errors: list[UserError]
                           ) -> AccountPayload:
    account = None if account_id is None else await account_node(info, account_id)
    return AccountPayload(account=account, user_errors=errors)


async def _method_payload(info: Info, method_id: int | None, errors: list[UserError]
                          ) -> PaymentMethodPayload:
    method = None if method_id is None else await payment_method_node(info, method_id)
    return PaymentMethodPayload(payment_method=method, user_errors=errors)


@strawberry.type
class VoucherMutation:
    @strawberry.mutation(permission_classes=[IsOperator],
                         description="V1: add to a master's voucher pool.")
    async def grant_voucher_pool(self, info: Info, input: GrantVoucherPoolInput
                                 ) -> AccountPayload:
        principal = principal_of(info)

        async def work(conn: AsyncConnection) -> int:
            master_id = row_id(input.master_id, "Account", ["masterId"])
            await vouchers.grant_voucher_pool(conn, principal, master_id=master_id,
                                              amount=amount(input.amount, ["amount"]))
            return master_id

        return await _account_payload(info, *await perform(info, work))

    @strawberry.mutation(permission_classes=[IsAuthenticated],
                         description="V1: a voucher from the master's pool for named members.")
    async def create_voucher(self, info: Info, input: CreateVoucherInput) -> VoucherPayload:
        principal = principal_of(info)

        async def work(conn: AsyncConnection) -> int:
            return await vouchers.create_voucher(
                conn, principal, master_id=row_id(input.master_id, "Account", ["masterId"]),
                amount=amount(input.amount, ["amount"]), valid_from=input.valid_from,
                valid_until=input.valid_until,
                member_ids=[ids.decode_as(member, "Account") for member in input.member_ids])

        voucher_id, errors = await perform(info, work)
        voucher = None if voucher_id is None else await voucher_node(info, voucher_id)
        return VoucherPayload(voucher=voucher, user_errors=errors)

    @strawberry.mutation(permission_classes=[IsOperator],
                         description="V3: a coupon for an account (not a trusteeship member).")
    async def issue_coupon(self, info: Info, input: IssueCouponInput) -> AccountPayload:
        principal = principal_of(info)

        async def work(conn: AsyncConnection) -> int:
            account_id = row_id(input.account_id, "Account", ["accountId"])
            await vouchers.issue_coupon(conn, principal, account_id=account_id,
                                        amount=amount(input.amount, ["amount"]),
                                        valid_until=input.valid_until)
            return account_id

        return await _account_payload(info, *await perform(info, work))

    @strawberry.mutation(permission_classes=[IsAuthenticated],
                         description="B5: a payment method of the account.")
    async def add_payment_method(self, info: Info, input: AddPaymentMethodInput
                                 ) -> PaymentMethodPayload:
        principal = principal_of(info)

        async def work(conn: AsyncConnection) -> int:
            return await payment_methods.add_payment_method(
                conn, principal, account_id=row_id(input.account_id, "Account", ["accountId"]),
                label=input.label)

        return await _method_payload(info, *await perform(info, work))

    @strawberry.mutation(permission_classes=[IsAuthenticated],
                         description="B5: a responsible account's payment method added to one "
                         "of its managed accounts.")
    async def add_managed_payment_method(self, info: Info, input: AddManagedPaymentMethodInput
                                         ) -> PaymentMethodPayload:
        principal = principal_of(info)

        async def work(conn: AsyncConnection) -> int:
            return await payment_methods.add_managed_payment_method(
                conn, principal,
                payment_method_id=row_id(input.payment_method_id, "PaymentMethod",
                                         ["paymentMethodId"]),
                managed_id=row_id(input.managed_id, "Account", ["managedId"]))

        return await _method_payload(info, *await perform(info, work))
