"""Billing mutations (B2-B4, I2-I3, U4): convert ids and inputs, call one service, report."""

from __future__ import annotations

from datetime import date
from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.accounts import service as accounts
from accountgraph.accounts.mutations import AccountPayload, AccountsPayload
from accountgraph.accounts.queries import account_node, account_nodes
from accountgraph.api import ids
from accountgraph.api.auth import IsAuthenticated, IsOperator, principal_of
from accountgraph.api.errors import UserError
from accountgraph.api.mutations import perform, row_id
from accountgraph.api.scalars import Money, amount
from accountgraph.billing import service
from accountgraph.billing.types import Invoice, InvoiceMode, invoice_nodes

Info = strawberry.Info[Any, Any]


@strawberry.input
class SetDiscountInput:
    account_id: strawberry.ID
    percent: Money | None = None


@strawberry.input
class SetInvoiceModeInput:
    account_id: strawberry.ID
    mode: InvoiceMode


@strawberry.input
class RunBillCycleInput:
    account_id: strawberry.ID
    period_start: date
    period_end: date
    bill_to_id: strawberry.ID | None = None


@strawberry.input
class SetMemberInvoiceInfoInput:
    master_id: strawberry.ID
    member_ids: list[strawberry.ID]
    invoice_title: str | None = None
    tax_id: str | None = None
    address: str | None = None
    email: str | None = None


@strawberry.input
class ReferenceMasterInvoiceInfoInput:
    master_id: strawberry.ID
    member_ids: list[strawberry.ID]
    enabled: bool


@strawberry.type
class RunBillCyclePayload:
    invoices: list[Invoice]
    user_errors: list[UserError]


async def _account_payload(info: Info, account_id: int | None, errors: list[UserError]
                           ) -> AccountPayload:
    account = None if account_id is None else await account_node(info, account_id)
    return AccountPayload(account=account, user_errors=errors)


Batch = tuple[list[int], list[UserError]]


async def _batch_payload(info: Info, result: Batch | None, errors: list[UserError]
                         ) -> AccountsPayload:
    changed, refused = result if result is not None else ([], [])
    return AccountsPayload(accounts=await account_nodes(info, changed),
                           user_errors=errors + refused)


@strawberry.type
class BillingMutation:
    @strawberry.mutation(permission_classes=[IsOperator],
                         description="B3 (operators): an account-level discount in percent "
                         "(0-100, at most 2 places); null removes it.")
    async def set_discount(self, info: Info, input: SetDiscountInput) -> AccountPayload:
        principal = principal_of(info)

        async def work(conn: AsyncConnection) -> int:
            account_id = row_id(input.account_id, "Account", ["accountId"])
            percent = (None if input.percent is None
                       else amount(input.percent, ["percent"], allow_zero=True))
            await service.set_discount(conn, principal, account_id=account_id, percent=percent)
            return account_id

        account_id, errors = await perform(info, work)
        return await _account_payload(info, account_id, errors)

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def set_invoice_mode(self, info: Info, input: SetInvoiceModeInput) -> AccountPayload:
        principal = principal_of(info)

        async def work(conn: AsyncConnection) -> int:
            account_id = row_id(input.account_id, "Account", ["accountId"])
            await service.set_invoice_mode(conn, principal, account_id=account_id,
                                           mode=input.mode.value)
            return account_id

        account_id, errors = await perform(info, work)
        return await _account_payload(info, account_id, errors)

    @strawberry.mutation(permission_classes=[IsAuthenticated],
                         description="B2: issue the account's invoices for the period (both "
                         "dates inclusive, UTC); running it again for the same period issues "
                         "nothing.")
    async def run_bill_cycle(self, info: Info, input: RunBillCycleInput) -> RunBillCyclePayload:
        principal = principal_of(info)

        async def work(conn: AsyncConnection) -> list[int]:
            account_id = row_id(input.account_id, "Account", ["accountId"])
            bill_to_id = (None if input.bill_to_id is None
                          else row_id(input.bill_to_id, "BillTo", ["billToId"]))
            return await service.run_bill_cycle(
                conn, principal, account_id=account_id, period_start=input.period_start,
                period_end=input.period_end, bill_to_id=bill_to_id)

        invoice_ids, errors = await perform(info, work)
        invoices = [] if not invoice_ids else await invoice_nodes(info, invoice_ids)
        return RunBillCyclePayload(invoices=invoices, user_errors=errors)

    @strawberry.mutation(permission_classes=[IsAuthenticated],
                         description="I2: invoice information of many members at once; members "
                         "that refuse are reported per index, the others are updated.")
    async def set_member_invoice_info(self, info: Info, input: SetMemberInvoiceInfoInput
                                      ) -> AccountsPayload:
        principal = principal_of(info)
        fields = {"invoice_title": input.invoice_title, "tax_id": input.tax_id,
                  "address": input.address, "email": input.email}

        async def work(conn: AsyncConnection) -> Batch:
            changed, refused = await accounts.set_member_invoice_info(
                conn, principal, master_id=row_id(input.master_id, "Account", ["masterId"]),
                member_ids=[ids.decode_as(m, "Account") for m in input.member_ids],
                fields=fields)
            return changed, [UserError.of(error) for error in refused]

        result, errors = await perform(info, work)
        return await _batch_payload(info, result, errors)

    @strawberry.mutation(permission_classes=[IsAuthenticated],
                         description="I3: members' primary bill-to follows the master's "
                         "(read-only) while enabled.")
    async def reference_master_invoice_info(
        self, info: Info, input: ReferenceMasterInvoiceInfoInput
    ) -> AccountsPayload:
        principal = principal_of(info)

        async def work(conn: AsyncConnection) -> Batch:
            changed, refused = await accounts.reference_master_invoice_info(
                conn, principal, master_id=row_id(input.master_id, "Account", ["masterId"]),
                member_ids=[ids.decode_as(m, "Account") for m in input.member_ids],
                enabled=input.enabled)
            return changed, [UserError.of(error) for error in refused]

        result, errors = await perform(info, work)
        return await _batch_payload(info, result, errors)
