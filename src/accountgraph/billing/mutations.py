"""Billing mutations (B2-B4, I2-I3, U4): convert ids and inputs, call one service, report.

Each runs through ``mutate`` (``api/mutations.py``) but the two batches and the bill
cycle, whose payloads are lists (``_changed``, ``_invoices``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.api import ids, node
from accountgraph.api.auth import IsAuthenticated, IsOperator, principal_of
from accountgraph.api.errors import UserError
from accountgraph.api.mutations import mutate, perform, row_id
from accountgraph.api.payloads import AccountPayload, AccountsPayload, mutate_accounts
from accountgraph.api.scalars import Money, amount
from accountgraph.billing import cycles, invoice_info, terms
from accountgraph.billing.types import Invoice, InvoiceMode
from accountgraph.domain import DomainError, Principal

Info = strawberry.Info[Any, Any]
Batch = tuple[list[int], list[DomainError]]
"""A batch's work: the accounts it changed, and the refusals it reports per member."""


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


async def _invoices(
    info: Info, work: Callable[[AsyncConnection, Principal], Awaitable[list[int]]]
) -> RunBillCyclePayload:
    """B2: not one object by id but the invoices the cycle issued (none after a refusal)."""
    principal = principal_of(info)
    invoice_ids, errors = await perform(info, lambda conn: work(conn, principal))
    invoices = [] if not invoice_ids else await node.load_many(info, "Invoice", invoice_ids)
    return RunBillCyclePayload(invoices=invoices, user_errors=errors)


@strawberry.type
class BillingMutation:
    @strawberry.mutation(
        permission_classes=[IsOperator],
        description="B3 (operators): an account-level discount in percent "
        "(0-100, at most 2 places); null removes it.",
    )
    async def set_discount(self, info: Info, input: SetDiscountInput) -> AccountPayload:
        async def work(conn: AsyncConnection, principal: Principal) -> int:
            account_id = row_id(input.account_id, "Account", ["accountId"])
            percent = (
                None
                if input.percent is None
                else amount(input.percent, ["percent"], allow_zero=True)
            )
            await terms.set_discount(conn, principal, account_id=account_id, percent=percent)
            return account_id

        return await mutate(info, AccountPayload, work, account="Account")

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def set_invoice_mode(self, info: Info, input: SetInvoiceModeInput) -> AccountPayload:
        async def work(conn: AsyncConnection, principal: Principal) -> int:
            account_id = row_id(input.account_id, "Account", ["accountId"])
            await terms.set_invoice_mode(
                conn, principal, account_id=account_id, mode=input.mode.value
            )
            return account_id

        return await mutate(info, AccountPayload, work, account="Account")

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="B2: issue the account's invoices for the period (both "
        "dates inclusive, UTC); running it again for the same period issues "
        "nothing.",
    )
    async def run_bill_cycle(self, info: Info, input: RunBillCycleInput) -> RunBillCyclePayload:
        async def work(conn: AsyncConnection, principal: Principal) -> list[int]:
            account_id = row_id(input.account_id, "Account", ["accountId"])
            bill_to_id = (
                None
                if input.bill_to_id is None
                else row_id(input.bill_to_id, "BillTo", ["billToId"])
            )
            return await cycles.run_bill_cycle(
                conn,
                principal,
                account_id=account_id,
                period_start=input.period_start,
                period_end=input.period_end,
                bill_to_id=bill_to_id,
            )

        return await _invoices(info, work)

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="I2: invoice information of many members at once; members "
        "that refuse are reported per index, the others are updated.",
    )
    async def set_member_invoice_info(
        self, info: Info, input: SetMemberInvoiceInfoInput
    ) -> AccountsPayload:
        fields = {
            "invoice_title": input.invoice_title,
            "tax_id": input.tax_id,
            "address": input.address,
            "email": input.email,
        }

        async def work(conn: AsyncConnection, principal: Principal) -> Batch:
            return await invoice_info.set_member_invoice_info(
                conn,
                principal,
                master_id=row_id(input.master_id, "Account", ["masterId"]),
                member_ids=[ids.decode_as(m, "Account") for m in input.member_ids],
                fields=fields,
            )

        return await mutate_accounts(info, work)

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="I3: members' primary bill-to follows the master's (read-only) while enabled.",
    )
    async def reference_master_invoice_info(
        self, info: Info, input: ReferenceMasterInvoiceInfoInput
    ) -> AccountsPayload:
        async def work(conn: AsyncConnection, principal: Principal) -> Batch:
            return await invoice_info.reference_master_invoice_info(
                conn,
                principal,
                master_id=row_id(input.master_id, "Account", ["masterId"]),
                member_ids=[ids.decode_as(m, "Account") for m in input.member_ids],
                enabled=input.enabled,
            )

        return await mutate_accounts(info, work)
