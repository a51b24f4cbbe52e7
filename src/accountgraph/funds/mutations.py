"""Money mutations: validate amounts and ids, run one service under F10, report.

Each runs through ``mutate`` (``api/mutations.py``) with its work wrapped in ``once``
(F10). The work returns the payload's row ids by field (``{"account": id}``): that mapping
is what an idempotency key keeps, so a replay answers the same objects.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.api.auth import IsAuthenticated, IsOperator
from accountgraph.api.composed import AccountRef
from accountgraph.api.errors import UserError
from accountgraph.api.mutations import Named, Work, mutate, row_id
from accountgraph.api.payloads import AccountPayload
from accountgraph.api.scalars import Money, amount
from accountgraph.domain import DomainError, ErrorCode, Principal
from accountgraph.funds import charges, idempotency, payments, transfers
from accountgraph.funds.kinds import BalanceBucket, DisbursementMethod
from accountgraph.funds.types import Charge, Transfer

Info = strawberry.Info[Any, Any]
Ids = dict[str, int | None]
"""A money mutation's result: the row ids of its payload's objects, by payload field."""
MoneyWork = Callable[[AsyncConnection, Principal], Awaitable[Ids]]
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


@strawberry.input(description="C1: a cost tag (or a budget's tag scope, C3).")
class CostTagInput:
    key: str
    value: str


@strawberry.input
class RecordChargeInput:
    account_id: strawberry.ID
    amount: Money
    description: str
    site_id: strawberry.ID | None = None
    occurred_at: datetime | None = None
    idempotency_key: str | None = None
    product: str | None = None
    tags: list[CostTagInput] | None = None


@strawberry.input
class RecordPaymentInput:
    account_id: strawberry.ID
    amount: Money
    payment_method_id: strawberry.ID | None = None
    idempotency_key: str | None = None


@strawberry.input(
    description="Signed amount: positive raises the bucket, negative lowers it; "
    "below zero is refused with INSUFFICIENT_FUNDS."
)
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
    master: AccountRef | None
    member: AccountRef | None
    user_errors: list[UserError]


@strawberry.type
class RecordChargePayload:
    charge: Charge | None
    account: AccountRef | None
    user_errors: list[UserError]


def once(operation: str, input: object, work: MoneyWork) -> Work:
    """F10 around ``work``: the same key with the same input replays the ids the first run
    returned; with another input it is IDEMPOTENCY_CONFLICT; without a key it just runs."""
    key = getattr(input, "idempotency_key", None)
    fingerprint = {
        name: _plain(name, value)
        for name, value in vars(input).items()
        if name != "idempotency_key"
    }

    async def run(conn: AsyncConnection, principal: Principal) -> Named:
        found = await idempotency.once(
            conn, principal, key, operation, fingerprint, lambda: work(conn, principal)
        )
        # Results recorded before the mutation shell (keys live 48 h) named the ids
        # "account_id", "transfer_id", …; the payload fields are the names without "_id".
        return {name.removesuffix("_id"): value for name, value in found.items()}

    return run


def _plain(name: str, value: object) -> object:
    """The input as compared for F10: enums by name, amounts by value ("10" is "10.00")."""
    if name in MONEY_FIELDS:
        try:
            return str(amount(value, [name], allow_zero=True, allow_negative=True))
        except DomainError:
            return value  # the operation itself reports the bad amount
    if isinstance(value, list):  # C1's tags, as key/value pairs
        return [[getattr(item, "key", None), getattr(item, "value", None)] for item in value]
    return getattr(value, "value", value)


def _description(text: str, field: str = "description") -> str:
    value = text.strip()
    if not value or len(value) > 500:
        raise DomainError(ErrorCode.INVALID_INPUT, "Between 1 and 500 characters.", [field])
    if "\x00" in value:  # PostgreSQL text cannot hold NUL: say so at the field
        raise DomainError(ErrorCode.INVALID_INPUT, "Must not contain NUL characters.", [field])
    return value


def _transfer(direction: str) -> Callable[[Info, TransferFundsInput], Awaitable[TransferPayload]]:
    operation = transfers.allocate if direction == "ALLOCATE" else transfers.reclaim

    async def resolve(self: Any, info: Info, input: TransferFundsInput) -> TransferPayload:
        async def work(conn: AsyncConnection, principal: Principal) -> Ids:
            master_id = row_id(input.master_id, "Account", ["masterId"])
            member_id = row_id(input.member_id, "Account", ["memberId"])
            value = amount(input.amount, ["amount"])
            transfer_id = await operation(
                conn,
                principal,
                master_id=master_id,
                member_id=member_id,
                amount=value,
                method=input.method,
                idempotency_key=input.idempotency_key,
            )
            return {"transfer": transfer_id, "master": master_id, "member": member_id}

        return await mutate(
            info,
            TransferPayload,
            once(direction, input, work),
            transfer="Transfer",
            master="Account",
            member="Account",
        )

    return resolve  # type: ignore[return-value]


@strawberry.type
class FundsMutation:
    allocate_funds: TransferPayload = strawberry.mutation(
        resolver=_transfer("ALLOCATE"),
        permission_classes=[IsAuthenticated],
        description="F3: move funds or credit from a master to a member.",
    )
    reclaim_funds: TransferPayload = strawberry.mutation(
        resolver=_transfer("RECLAIM"),
        permission_classes=[IsAuthenticated],
        description="F4: take back allocated, unspent funds or credit.",
    )

    @strawberry.mutation(permission_classes=[IsOperator])
    async def set_credit_line(self, info: Info, input: SetCreditLineInput) -> AccountPayload:
        async def work(conn: AsyncConnection, principal: Principal) -> Ids:
            master_id = row_id(input.master_id, "Account", ["masterId"])
            await transfers.set_credit_line(
                conn,
                principal,
                master_id=master_id,
                amount=amount(input.amount, ["amount"], allow_zero=True),
            )
            return {"account": master_id}

        return await mutate(
            info, AccountPayload, once("CREDIT_LINE", input, work), account="Account"
        )

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def set_credit_limit(self, info: Info, input: SetCreditLimitInput) -> AccountPayload:
        async def work(conn: AsyncConnection, principal: Principal) -> Ids:
            master_id = row_id(input.master_id, "Account", ["masterId"])
            member_id = row_id(input.member_id, "Account", ["memberId"])
            await transfers.set_credit_limit(
                conn,
                principal,
                master_id=master_id,
                member_id=member_id,
                limit=amount(input.limit, ["limit"], allow_zero=True),
            )
            return {"account": member_id}

        return await mutate(
            info, AccountPayload, once("CREDIT_LIMIT", input, work), account="Account"
        )

    @strawberry.mutation(permission_classes=[IsOperator])
    async def record_charge(self, info: Info, input: RecordChargeInput) -> RecordChargePayload:
        async def work(conn: AsyncConnection, principal: Principal) -> Ids:
            account_id = row_id(input.account_id, "Account", ["accountId"])
            site_id = None if input.site_id is None else row_id(input.site_id, "Site", ["siteId"])
            charge_id = await charges.record_charge(
                conn,
                principal,
                account_id=account_id,
                amount=amount(input.amount, ["amount"]),
                description=_description(input.description),
                site_id=site_id,
                occurred_at=input.occurred_at,
                product=input.product,
                tags=None if input.tags is None else [(t.key, t.value) for t in input.tags],
            )
            return {"charge": charge_id, "account": account_id}

        return await mutate(
            info,
            RecordChargePayload,
            once("CHARGE", input, work),
            charge="Charge",
            account="Account",
        )

    @strawberry.mutation(permission_classes=[IsOperator])
    async def record_payment(self, info: Info, input: RecordPaymentInput) -> AccountPayload:
        async def work(conn: AsyncConnection, principal: Principal) -> Ids:
            account_id = row_id(input.account_id, "Account", ["accountId"])
            method_id = (
                None
                if input.payment_method_id is None
                else row_id(input.payment_method_id, "PaymentMethod", ["paymentMethodId"])
            )
            await payments.record_payment(
                conn,
                principal,
                account_id=account_id,
                amount=amount(input.amount, ["amount"]),
                payment_method_id=method_id,
            )
            return {"account": account_id}

        return await mutate(info, AccountPayload, once("PAYMENT", input, work), account="Account")

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def withdraw_cash(self, info: Info, input: WithdrawCashInput) -> AccountPayload:
        async def work(conn: AsyncConnection, principal: Principal) -> Ids:
            account_id = row_id(input.account_id, "Account", ["accountId"])
            await payments.withdraw_cash(
                conn, principal, account_id=account_id, amount=amount(input.amount, ["amount"])
            )
            return {"account": account_id}

        return await mutate(
            info, AccountPayload, once("WITHDRAWAL", input, work), account="Account"
        )

    @strawberry.mutation(permission_classes=[IsOperator])
    async def adjust_balance(self, info: Info, input: AdjustBalanceInput) -> AccountPayload:
        async def work(conn: AsyncConnection, principal: Principal) -> Ids:
            account_id = row_id(input.account_id, "Account", ["accountId"])
            change = amount(input.amount, ["amount"], allow_negative=True)
            await payments.adjust_balance(
                conn,
                principal,
                account_id=account_id,
                bucket=input.bucket,
                amount=change,
                reason=_description(input.reason, "reason"),
            )
            return {"account": account_id}

        return await mutate(
            info, AccountPayload, once("ADJUSTMENT", input, work), account="Account"
        )
