"""T1, W1-W3 mutations: tax groups, accounts' default tax groups, stored value cards,
auto-pay and auto top-up. Each converts ids and inputs, calls one service and reports
through ``mutate`` (``api/mutations.py``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.api.auth import IsAuthenticated, IsOperator
from accountgraph.api.errors import UserError
from accountgraph.api.mutations import mutate, row_id
from accountgraph.api.payloads import AccountPayload
from accountgraph.api.scalars import Money, amount
from accountgraph.billing import auto_pay, auto_top_up, stored_value, taxes
from accountgraph.billing.tax_types import TaxGroup
from accountgraph.billing.voucher_mutations import PaymentMethodPayload
from accountgraph.domain import Principal

Info = strawberry.Info[Any, Any]


@strawberry.input
class CreateTaxGroupInput:
    code: str
    name: str
    rate: Money


@strawberry.input(description="taxGroupCode null: no default tax group.")
class SetAccountTaxGroupInput:
    account_id: strawberry.ID
    tax_group_code: str | None = None


@strawberry.input
class IssueStoredValueCardInput:
    account_id: strawberry.ID
    amount: Money
    valid_until: datetime | None = None


@strawberry.input
class SetAutoPayInput:
    payment_method_id: strawberry.ID
    auto_pay: bool


@strawberry.input
class SetAutoTopUpInput:
    account_id: strawberry.ID
    threshold: Money
    amount: Money
    payment_method_id: strawberry.ID
    enabled: bool


@strawberry.type
class TaxGroupPayload:
    tax_group: TaxGroup | None
    user_errors: list[UserError]


@strawberry.type
class TaxMutation:
    @strawberry.mutation(
        permission_classes=[IsOperator],
        description="T1 (operators): a tax group: a unique code (1-32 of letters, digits, "
        "'_' and '-'), a name and a rate in percent (0-100, at most 4 places).",
    )
    async def create_tax_group(self, info: Info, input: CreateTaxGroupInput) -> TaxGroupPayload:
        async def work(conn: AsyncConnection, principal: Principal) -> int:
            return await taxes.create_tax_group(
                conn, principal, code=input.code, name=input.name, rate=input.rate
            )

        return await mutate(info, TaxGroupPayload, work, tax_group="TaxGroup")

    @strawberry.mutation(
        permission_classes=[IsOperator],
        description="T1 (operators): the account's default tax group by code; null: none.",
    )
    async def set_account_tax_group(
        self, info: Info, input: SetAccountTaxGroupInput
    ) -> AccountPayload:
        async def work(conn: AsyncConnection, principal: Principal) -> int:
            account_id = row_id(input.account_id, "Account", ["accountId"])
            await taxes.set_account_tax_group(
                conn, principal, account_id=account_id, code=input.tax_group_code
            )
            return account_id

        return await mutate(info, AccountPayload, work, account="Account")

    @strawberry.mutation(
        permission_classes=[IsOperator],
        description="W1 (operators): a stored value card for an account (not a "
        "trusteeship member while associated).",
    )
    async def issue_stored_value_card(
        self, info: Info, input: IssueStoredValueCardInput
    ) -> AccountPayload:
        async def work(conn: AsyncConnection, principal: Principal) -> int:
            account_id = row_id(input.account_id, "Account", ["accountId"])
            await stored_value.issue_stored_value_card(
                conn,
                principal,
                account_id=account_id,
                amount=amount(input.amount, ["amount"]),
                valid_until=input.valid_until,
            )
            return account_id

        return await mutate(info, AccountPayload, work, account="Account")

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="W2: the method's owner marks it to pay its account's invoices "
        "(and auto top-ups) automatically.",
    )
    async def set_auto_pay(self, info: Info, input: SetAutoPayInput) -> PaymentMethodPayload:
        async def work(conn: AsyncConnection, principal: Principal) -> int:
            return await auto_pay.set_auto_pay(
                conn,
                principal,
                payment_method_id=row_id(
                    input.payment_method_id, "PaymentMethod", ["paymentMethodId"]
                ),
                auto_pay=input.auto_pay,
            )

        return await mutate(info, PaymentMethodPayload, work, payment_method="PaymentMethod")

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="W3: top up the stored value by amount, with an autoPay method of "
        "the account (its own or a managed one), whenever a charge leaves it below "
        "threshold; armed when set, re-armed once back at or above the threshold.",
    )
    async def set_auto_top_up(self, info: Info, input: SetAutoTopUpInput) -> AccountPayload:
        async def work(conn: AsyncConnection, principal: Principal) -> int:
            account_id = row_id(input.account_id, "Account", ["accountId"])
            await auto_top_up.set_auto_top_up(
                conn,
                principal,
                account_id=account_id,
                threshold=amount(input.threshold, ["threshold"]),
                amount=amount(input.amount, ["amount"]),
                payment_method_id=row_id(
                    input.payment_method_id, "PaymentMethod", ["paymentMethodId"]
                ),
                enabled=input.enabled,
            )
            return account_id

        return await mutate(info, AccountPayload, work, account="Account")
