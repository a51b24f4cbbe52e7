"""Money mutations: validate amounts and ids, run one service under F10, report."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.accounts.mutations import AccountPayload
from accountgraph.accounts.queries import account_node
from accountgraph.accounts.types import Account
from accountgraph.api.auth import IsAuthenticated, IsOperator, principal_of
from accountgraph.api.errors import DomainError, UserError
from accountgraph.api.mutations import perform, row_id
from accountgraph.api.scalars import Money, amount
from accountgraph.funds import idempotency, service
from accountgraph.funds.types import BalanceBucket, Charge, DisbursementMethod, Transfer, loaders

Info = strawberry.Info[Any, Any]
Result = dict[str, Any]
MONEY_FIELDS = {"amount", "limit"}


@strawberry.input
class TransferFundsInput:
    master_id: strawberry.ID
    member_id: strawberry.ID
    amount: Money
    method: DisbursementMethod = DisbursementMethod.CASH
    idempotency_key: str | None = None


@strawberry.input
class SetCreditLineInput:
    master_id: strawberry.ID
    amount: Money


@strawberry.input
class SetCreditLimitInput:
    master_id: strawberry.ID
    member_id: strawberry.ID
    limit: Money
    idempotency_key: str | None = None


@strawberry.input
class RecordChargeInput:
    account_id: strawberry.ID
    amount: Money
    description: str
    site_id: strawberry.ID | None = None
    occurred_at: datetime | None = None
    idempotency_key: str | None = None


@strawberry.input
class RecordPaymentInput:
    account_id: strawberry.ID
    amount: Money
    payment_method_id: strawberry.ID | None = None
    idempotency_key: str | None = None


@strawberry.input(description="Signed amount: positive raises the bucket, negative lowers it; "
                  "below zero is refused with INSUFFICIENT_FUNDS.")
class AdjustBalanceInput:
    account_id: strawberry.ID
    bucket: BalanceBucket
    amount: Money
    reason: str
    idempotency_key: str | None = None


@strawberry.input
class WithdrawCashInput:
    account_id: strawberry.ID
    amount: Money
    idempotency_key: str | None = None


@strawberry.type
class TransferPayload:
    transfer: Transfer | None
    master: Account | None
    member: Account | None
    user_errors: list[UserError]


@strawberry.type
class RecordChargePayload:
    charge: Charge | None
    account: Account | None
    user_errors: list[UserError]


async def _money(info: Info, operation: str, input: object,
                 work: Callable[[AsyncConnection], Awaitable[Result]]
                 ) -> tuple[Result | None, list[UserError]]:
    """One money mutation: a transaction, F10 around the work, rule errors as data."""
    principal = principal_of(info)
    key = getattr(input, "idempotency_key", None)
    fingerprint = {name: _plain(name, value) for name, value in vars(input).items()
                   if name != "idempotency_key"}

    async def run(conn: AsyncConnection) -> Result:
        return await idempotency.once(conn, principal, key, operation, fingerprint,
                                      lambda: work(conn))

    return await perform(info, run)


def _plain(name: str, value: object) -> object:
    """The input as compared for F10: enums by name, amounts by value ("10" is "10.00")."""
    if name in MONEY_FIELDS:
        try:
            return str(amount(value, [name], allow_zero=True, allow_negative=True))
        except DomainError:
            return value  # the operation itself reports the bad amount
    return getattr(value, "value", value)


async def _account_payload(info: Info, result: Result | None, errors: list[UserError]
                           ) -> AccountPayload:
    account = None if result is None else await account_node(info, result["account_id"])
    return AccountPayload(account=account, user_errors=errors)


async def _transfer_payload(info: Info, result: Result | None, errors: list[UserError]
                            ) -> TransferPayload:
    if result is None:
        return TransferPayload(transfer=None, master=None, member=None, user_errors=errors)
    row = await loaders(info).transfer_by_id.load(result["transfer_id"])
    return TransferPayload(
        transfer=None if row is None else Transfer.from_row(row),
        master=await account_node(info, result["master_id"]),
        member=await account_node(info, result["member_id"]),
        user_errors=errors,
    )


def _transfer(direction: str) -> Callable[[Info, TransferFundsInput], Awaitable[TransferPayload]]:
    operation = service.allocate if direction == "ALLOCATE" else service.reclaim

    async def resolve(self: Any, info: Info, input: TransferFundsInput) -> TransferPayload:
        principal = principal_of(info)

        async def work(conn: AsyncConnection) -> Result:
            master_id = row_id(input.master_id, "Account", ["masterId"])
            member_id = row_id(input.member_id, "Account", ["memberId"])
            value = amount(input.amount, ["amount"])
            transfer_id = await operation(conn, principal, master_id=master_id,
                                          member_id=member_id, amount=value,
                                          method=input.method.value,
                                          idempotency_key=input.idempotency_key)
            return {"transfer_id": transfer_id, "master_id": master_id, "member_id": member_id}

        result, errors = await _money(info, direction, input, work)
        return await _transfer_payload(info, result, errors)

    return resolve  # type: ignore[return-value]


@strawberry.type
class FundsMutation:
    allocate_funds: TransferPayload = strawberry.mutation(
        resolver=_transfer("ALLOCATE"), permission_classes=[IsAuthenticated],
        description="F3: move funds or credit from a master to a member.")
    reclaim_funds: TransferPayload = strawberry.mutation(
        resolver=_transfer("RECLAIM"), permission_classes=[IsAuthenticated],
        description="F4: take back allocated, unspent funds or credit.")

    @strawberry.mutation(permission_classes=[IsOperator])
    async def set_credit_line(self, info: Info, input: SetCreditLineInput) -> AccountPayload:
        principal = principal_of(info)

        async def work(conn: AsyncConnection) -> Result:
            master_id = row_id(input.master_id, "Account", ["masterId"])
            await service.set_credit_line(conn, principal, master_id=master_id,
                                          amount=amount(input.amount, ["amount"],
                                                        allow_zero=True))
            return {"account_id": master_id}

        return await _account_payload(info, *await _money(info, "CREDIT_LINE", input, work))

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def set_credit_limit(self, info: Info, input: SetCreditLimitInput) -> AccountPayload:
        principal = principal_of(info)

        async def work(conn: AsyncConnection) -> Result:
            master_id = row_id(input.master_id, "Account", ["masterId"])
            member_id = row_id(input.member_id, "Account", ["memberId"])
            await service.set_credit_limit(conn, principal, master_id=master_id,
                                           member_id=member_id,
                                           limit=amount(input.limit, ["limit"], allow_zero=True))
            return {"account_id": member_id}

        return await _account_payload(info, *await _money(info, "CREDIT_LIMIT", input, work))

    @strawberry.mutation(permission_classes=[IsOperator])
    async def record_charge(self, info: Info, input: RecordChargeInput) -> RecordChargePayload:
        principal = principal_of(info)

        async def work(conn: AsyncConnection) -> Result:
            account_id = row_id(input.account_id, "Account", ["accountId"])
            site_id = (None if input.site_id is None
                       else row_id(input.site_id, "Site", ["siteId"]))
            charge_id = await service.record_charge(
                conn, principal, account_id=account_id,
                amount=amount(input.amount, ["amount"]),
                description=_description(input.description), site_id=site_id,
                occurred_at=input.occurred_at)
            return {"charge_id": charge_id, "account_id": account_id}

        result, errors = await _money(info, "CHARGE", input, work)
        if result is None:
            return RecordChargePayload(charge=None, account=None, user_errors=errors)
        row = await loaders(info).charge_by_id.load(result["charge_id"])
        return RecordChargePayload(charge=None if row is None else Charge.from_row(row),
                                   account=await account_node(info, result["account_id"]),
                                   user_errors=errors)

    @strawberry.mutation(permission_classes=[IsOperator])
    async def record_payment(self, info: Info, input: RecordPaymentInput) -> AccountPayload:
        principal = principal_of(info)

        async def work(conn: AsyncConnection) -> Result:
            account_id = row_id(input.account_id, "Account", ["accountId"])
            method_id = (None if input.payment_method_id is None else
                         row_id(input.payment_method_id, "PaymentMethod", ["paymentMethodId"]))
            await service.record_payment(conn, principal, account_id=account_id,
                                         amount=amount(input.amount, ["amount"]),
                                         payment_method_id=method_id)
            return {"account_id": account_id}

        return await _account_payload(info, *await _money(info, "PAYMENT", input, work))

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def withdraw_cash(self, info: Info, input: WithdrawCashInput) -> AccountPayload:
        principal = principal_of(info)

        async def work(conn: AsyncConnection) -> Result:
            account_id = row_id(input.account_id, "Account", ["accountId"])
            await service.withdraw_cash(conn, principal, account_id=account_id,
                                        amount=amount(input.amount, ["amount"]))
            return {"account_id": account_id}

        return await _account_payload(info, *await _money(info, "WITHDRAWAL", input, work))

    @strawberry.mutation(permission_classes=[IsOperator])
    async def adjust_balance(self, info: Info, input: AdjustBalanceInput) -> AccountPayload:
        principal = principal_of(info)

        async def work(conn: AsyncConnection) -> Result:
            account_id = row_id(input.account_id, "Account", ["accountId"])
            change = amount(input.amount, ["amount"], allow_negative=True)
            await service.adjust_balance(conn, principal, account_id=account_id,
                                         bucket=input.bucket.value, amount=change,
                                         reason=_description(input.reason, "reason"))
            return {"account_id": account_id}

        return await _account_payload(info, *await _money(info, "ADJUSTMENT", input, work))


def _description(text: str, field: str = "description") -> str:
    from accountgraph.api.errors import DomainError, ErrorCode

    value = text.strip()
    if not value or len(value) > 500:
        raise DomainError(ErrorCode.INVALID_INPUT, "Between 1 and 500 characters.", [field])
    return value
