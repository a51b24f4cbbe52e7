"""Shared builders and checks for the money tests (F, U).

Every builder goes through the API (an operator token unless told otherwise). The checks
compare what a refused mutation must leave alone: the finance of every involved account
(as an operator reads it), every ``balances`` and ``allocations`` row, and the row counts
of the money records (``transfers``, ``charges``, ``payments``, ``journal_entries``,
``postings``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from accountgraph.funds.verify import verify
from tests.helpers import OPERATOR_TOKEN, Api

FINANCE_FIELDS = """
fragment Finance on FinancialState {
  cashBalance bankersAcceptanceBill creditLimit creditRefund unsettledAmount outstandingFees
  negativeBill transferredCash transferredCredit transferredAmount frozenCash availableQuota
  creditLine availableCredit
}"""
TRANSFER_FIELDS = """
fragment TransferFields on Transfer {
  id method direction amount actor idempotencyKey createdAt master { id } member { id }
}"""
CHARGE_FIELDS = """
fragment ChargeFields on Charge {
  id amount description occurredAt paidByMaster account { id } site { id }
}"""

FINANCE = (
    """
query($id: ID!) { account(id: $id) { id finance { ...Finance } } }"""
    + FINANCE_FIELDS
)
PAY = (
    """
mutation($input: RecordPaymentInput!) {
  recordPayment(input: $input) { account { id finance { ...Finance } }
    userErrors { code field message } }
}"""
    + FINANCE_FIELDS
)
CHARGE = (
    """
mutation($input: RecordChargeInput!) {
  recordCharge(input: $input) {
    charge { ...ChargeFields } account { id finance { ...Finance } }
    userErrors { code field message }
  }
}"""
    + FINANCE_FIELDS
    + CHARGE_FIELDS
)
ALLOCATE = (
    """
mutation($input: TransferFundsInput!) {
  allocateFunds(input: $input) {
    transfer { ...TransferFields }
    master { id finance { ...Finance } } member { id finance { ...Finance } }
    userErrors { code field message }
  }
}"""
    + FINANCE_FIELDS
    + TRANSFER_FIELDS
)
RECLAIM = (
    """
mutation($input: TransferFundsInput!) {
  reclaimFunds(input: $input) {
    transfer { ...TransferFields }
    master { id finance { ...Finance } } member { id finance { ...Finance } }
    userErrors { code field message }
  }
}"""
    + FINANCE_FIELDS
    + TRANSFER_FIELDS
)
SET_CREDIT_LINE = (
    """
mutation($input: SetCreditLineInput!) {
  setCreditLine(input: $input) { account { id finance { ...Finance } }
    userErrors { code field message } }
}"""
    + FINANCE_FIELDS
)
SET_CREDIT_LIMIT = (
    """
mutation($input: SetCreditLimitInput!) {
  setCreditLimit(input: $input) { account { id finance { ...Finance } }
    userErrors { code field message } }
}"""
    + FINANCE_FIELDS
)
WITHDRAW = (
    """
mutation($input: WithdrawCashInput!) {
  withdrawCash(input: $input) { account { id finance { ...Finance } }
    userErrors { code field message } }
}"""
    + FINANCE_FIELDS
)
ADJUST = (
    """
mutation($input: AdjustBalanceInput!) {
  adjustBalance(input: $input) { account { id finance { ...Finance } }
    userErrors { code field message } }
}"""
    + FINANCE_FIELDS
)

MONEY_TABLES = ("transfers", "charges", "payments", "journal_entries", "postings")
ZERO_FINANCE = {
    "cashBalance": "0.00",
    "bankersAcceptanceBill": "0.00",
    "creditLimit": "0.00",
    "creditRefund": "0.00",
    "unsettledAmount": "0.00",
    "outstandingFees": "0.00",
    "negativeBill": "0.00",
    "transferredCash": "0.00",
    "transferredCredit": "0.00",
    "transferredAmount": "0.00",
    "frozenCash": "0.00",
    "availableQuota": "0.00",
    "creditLine": "0.00",
    "availableCredit": "0.00",
}


# ---------------------------------------------------------------- builders


@dataclass
class Pair:
    """A master and one member joined by an ACTIVE link, with a token for each side."""

    master: str
    member: str
    link: str
    master_token: str
    member_token: str


async def pair(
    api: Api,
    type: str = "TRUSTEESHIP",
    permissions: list[str] | None = None,
    *,
    master: str | None = None,
    name: str = "Member",
) -> Pair:
    """A new member (and, unless given, a new master) linked with ``permissions``
    (default: all)."""
    if master is None:
        master = await api.account("Master")
    member = await api.account(name)
    link = await api.link(master, member, type=type, permissions=permissions)
    return Pair(master, member, link, await api.token(master), await api.token(member))


async def pay(api: Api, account: str, amount: str) -> dict[str, Any]:
    """F8: an operator records a payment; returns the account's finance after it."""
    payload = await api.ok("recordPayment", PAY, {"accountId": account, "amount": amount})
    finance: dict[str, Any] = payload["account"]["finance"]
    return finance


async def charge(
    api: Api, account: str, amount: str, description: str = "compute", **fields: Any
) -> dict[str, Any]:
    """F7: an operator records a charge; returns the payload (charge, account)."""
    return await api.ok(
        "recordCharge",
        CHARGE,
        {"accountId": account, "amount": amount, "description": description, **fields},
    )


async def allocate(
    api: Api,
    master: str,
    member: str,
    amount: str,
    method: str = "CASH",
    token: str = OPERATOR_TOKEN,
    **fields: Any,
) -> dict[str, Any]:
    return await api.ok(
        "allocateFunds",
        ALLOCATE,
        {"masterId": master, "memberId": member, "amount": amount, "method": method, **fields},
        token,
    )


async def reclaim(
    api: Api,
    master: str,
    member: str,
    amount: str,
    method: str = "CASH",
    token: str = OPERATOR_TOKEN,
    **fields: Any,
) -> dict[str, Any]:
    return await api.ok(
        "reclaimFunds",
        RECLAIM,
        {"masterId": master, "memberId": member, "amount": amount, "method": method, **fields},
        token,
    )


async def credit_line(api: Api, master: str, amount: str) -> dict[str, Any]:
    payload = await api.ok("setCreditLine", SET_CREDIT_LINE, {"masterId": master, "amount": amount})
    finance: dict[str, Any] = payload["account"]["finance"]
    return finance


async def credit_limit(
    api: Api, master: str, member: str, limit: str, token: str = OPERATOR_TOKEN
) -> dict[str, Any]:
    payload = await api.ok(
        "setCreditLimit",
        SET_CREDIT_LIMIT,
        {"masterId": master, "memberId": member, "limit": limit},
        token,
    )
    finance: dict[str, Any] = payload["account"]["finance"]
    return finance


async def adjust(
    api: Api, account: str, bucket: str, amount: str, reason: str = "back office"
) -> dict[str, Any]:
    payload = await api.ok(
        "adjustBalance",
        ADJUST,
        {"accountId": account, "bucket": bucket, "amount": amount, "reason": reason},
    )
    finance: dict[str, Any] = payload["account"]["finance"]
    return finance


async def withdraw(api: Api, account: str, amount: str, token: str) -> dict[str, Any]:
    payload = await api.ok(
        "withdrawCash", WITHDRAW, {"accountId": account, "amount": amount}, token
    )
    finance: dict[str, Any] = payload["account"]["finance"]
    return finance


# ---------------------------------------------------------------- reading


async def finance(api: Api, account: str, token: str = OPERATOR_TOKEN) -> dict[str, Any] | None:
    """The account's FinancialState as ``token`` sees it (None: finance hidden)."""
    found = (await api.gql(FINANCE, {"id": account}, token))["account"]
    assert found is not None, "account not visible"
    result: dict[str, Any] | None = found["finance"]
    return result


def assert_finance(actual: dict[str, Any] | None, **expected: str | None) -> None:
    """The named FinancialState fields equal ``expected`` (others are not compared)."""
    assert actual is not None, "finance is hidden"
    assert {name: actual[name] for name in expected} == expected


async def row_counts(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        return {
            table: (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
            for table in MONEY_TABLES
        }


async def money_state(api: Api, accounts: list[str]) -> dict[str, Any]:
    """Everything a refused money mutation must leave as it was."""
    async with api.engine.connect() as conn:
        balances = (
            (await conn.execute(text("SELECT * FROM balances ORDER BY account_id")))
            .mappings()
            .all()
        )
        allocations = (
            await conn.execute(
                text("SELECT * FROM allocations ORDER BY master_id, member_id, method")
            )
        ).all()
    return {
        "finance": {account: await finance(api, account) for account in accounts},
        "balances": [{k: v for k, v in row.items() if k != "updated_at"} for row in balances],
        "allocations": [tuple(row) for row in allocations],
        "counts": await row_counts(api.engine),
    }


async def assert_sound(engine: AsyncEngine) -> None:
    """F9: every balance is the sum of its postings and every entry balances."""
    async with engine.connect() as conn:
        assert [str(d) for d in await verify(conn)] == []


# ---------------------------------------------------------------- refusals


async def refused(
    api: Api,
    name: str,
    query: str,
    input: dict[str, Any],
    *,
    code: str,
    field: list[str] | None,
    accounts: list[str],
    token: str = OPERATOR_TOKEN,
) -> dict[str, Any]:
    """The mutation answers exactly one user error ``code`` at ``field``, its payload
    holds nothing else, and no money, balance or record changed."""
    before = await money_state(api, accounts)
    payload = await api.mutate(name, query, input, token)
    errors = payload["userErrors"]
    assert [(e["code"], e["field"]) for e in errors] == [(code, field)], errors
    assert errors[0]["message"]
    assert all(value is None for key, value in payload.items() if key != "userErrors"), payload
    assert await money_state(api, accounts) == before
    await assert_sound(api.engine)
    return payload


async def forbidden(
    api: Api, query: str, input: dict[str, Any], *, token: str, accounts: list[str]
) -> None:
    """An operator-only mutation called by an account's user: top-level FORBIDDEN, no data,
    nothing changed."""
    before = await money_state(api, accounts)
    body = await api.raw(query, {"input": input}, token)
    assert body["data"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"], body["errors"]
    assert await money_state(api, accounts) == before
