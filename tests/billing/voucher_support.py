"""Shared GraphQL text, builders and checks for the voucher, coupon and payment method
tests (V1-V3, B5, U6).

A refusal must leave everything as it was: the money (``tests.funds.support.money_state``)
and every row of the voucher, coupon and payment method tables.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from tests.funds.support import assert_sound, money_state
from tests.helpers import OPERATOR_TOKEN, Api

BILLING_TABLES = (
    "voucher_pools",
    "vouchers",
    "voucher_members",
    "coupons",
    "charge_credits",
    "payment_methods",
)

VOUCHER_FIELDS = """
fragment VoucherFields on Voucher {
  id amount remaining validFrom validUntil members { id }
}"""
GRANT_POOL = """
mutation($input: GrantVoucherPoolInput!) {
  grantVoucherPool(input: $input) { account { id voucherPool } userErrors { code field message } }
}"""
CREATE_VOUCHER = (
    """
mutation($input: CreateVoucherInput!) {
  createVoucher(input: $input) { voucher { ...VoucherFields } userErrors { code field message } }
}"""
    + VOUCHER_FIELDS
)
ISSUE_COUPON = """
mutation($input: IssueCouponInput!) {
  issueCoupon(input: $input) {
    account { id coupons { id amount remaining validUntil } finance { couponCount } }
    userErrors { code field message }
  }
}"""
ADD_METHOD = """
mutation($input: AddPaymentMethodInput!) {
  addPaymentMethod(input: $input) {
    paymentMethod { id label managedFrom { id } } userErrors { code field message }
  }
}"""
ADD_MANAGED_METHOD = """
mutation($input: AddManagedPaymentMethodInput!) {
  addManagedPaymentMethod(input: $input) {
    paymentMethod { id label managedFrom { id } } userErrors { code field message }
  }
}"""
PAYMENT_FIELDS = """
fragment PaymentFields on Payment {
  id amount createdAt account { id } payer { id } paymentMethod { id label managedFrom { id } }
}"""
PAY_WITH = (
    """
mutation($input: RecordPaymentInput!) {
  recordPayment(input: $input) {
    account { id finance { cashBalance outstandingFees } payments(first: 1) {
      edges { node { ...PaymentFields } } } }
    userErrors { code field message }
  }
}"""
    + PAYMENT_FIELDS
)
ACCOUNT_CREDITS = (
    """
query($id: ID!) {
  account(id: $id) {
    id voucherPool
    vouchers { ...VoucherFields }
    coupons { id amount remaining validUntil }
    finance { couponCount voucherCount cashBalance transferredCash outstandingFees }
  }
}"""
    + VOUCHER_FIELDS
)
NODE = """
query($id: ID!) {
  node(id: $id) {
    __typename id
    ... on Voucher { remaining members { id } }
    ... on Coupon { remaining }
    ... on PaymentMethod { label managedFrom { id } }
    ... on Payment { amount account { id } payer { id } }
  }
}"""


def at(**delta: float) -> str:
    """An ISO time relative to now (``at(days=1)``, ``at(hours=-2)``)."""
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


async def grant(api: Api, master: str, amount: str) -> str | None:
    payload = await api.ok("grantVoucherPool", GRANT_POOL, {"masterId": master, "amount": amount})
    pool: str | None = payload["account"]["voucherPool"]
    return pool


async def voucher(
    api: Api,
    master: str,
    amount: str,
    members: list[str],
    *,
    valid_from: str | None = None,
    valid_until: str | None = None,
    token: str = OPERATOR_TOKEN,
) -> dict[str, Any]:
    payload = await api.ok(
        "createVoucher",
        CREATE_VOUCHER,
        {
            "masterId": master,
            "amount": amount,
            "memberIds": members,
            "validFrom": valid_from or at(days=-1),
            "validUntil": valid_until or at(days=30),
        },
        token,
    )
    found: dict[str, Any] = payload["voucher"]
    return found


async def coupon(
    api: Api, account: str, amount: str, valid_until: str | None = None
) -> dict[str, Any]:
    payload = await api.ok(
        "issueCoupon",
        ISSUE_COUPON,
        {"accountId": account, "amount": amount, "validUntil": valid_until or at(days=30)},
    )
    found: dict[str, Any] = payload["account"]["coupons"][-1]
    return found


async def method(api: Api, account: str, label: str = "Card", token: str = OPERATOR_TOKEN) -> str:
    payload = await api.ok(
        "addPaymentMethod", ADD_METHOD, {"accountId": account, "label": label}, token
    )
    method_id: str = payload["paymentMethod"]["id"]
    return method_id


async def credits_of(api: Api, account: str, token: str = OPERATOR_TOKEN) -> dict[str, Any] | None:
    found: dict[str, Any] | None = (await api.gql(ACCOUNT_CREDITS, {"id": account}, token))[
        "account"
    ]
    return found


async def node(api: Api, global_id: str, token: str = OPERATOR_TOKEN) -> dict[str, Any] | None:
    found: dict[str, Any] | None = (await api.gql(NODE, {"id": global_id}, token))["node"]
    return found


async def credit_rows(api: Api) -> list[tuple[Any, ...]]:
    """``charge_credits`` as (charge id, coupon id, voucher id, amount), in order of use."""
    async with api.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT charge_id, coupon_id, voucher_id, amount::text FROM charge_credits "
                    "ORDER BY id"
                )
            )
        ).all()
    return [tuple(row) for row in rows]


async def billing_state(
    api: Api, accounts: list[str], tables: tuple[str, ...] = BILLING_TABLES
) -> dict[str, Any]:
    """Everything a refused mutation of this area must leave as it was: the rows of
    ``tables`` and the money of ``accounts``."""
    found: dict[str, Any] = {}
    async with api.engine.connect() as conn:
        for table in tables:
            rows = (await conn.execute(text(f"SELECT * FROM {table} ORDER BY 1, 2"))).all()
            found[table] = [tuple(row) for row in rows]
    return {"tables": found, "money": await money_state(api, accounts)}


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
    tables: tuple[str, ...] = BILLING_TABLES,
) -> None:
    """Exactly one user error ``code`` at ``field``, nothing else in the payload, no row of
    ``tables`` and no money changed, and the ledger still verifies."""
    before = await billing_state(api, accounts, tables)
    payload = await api.mutate(name, query, input, token)
    errors = payload["userErrors"]
    assert [(e["code"], e["field"]) for e in errors] == [(code, field)], errors
    assert errors[0]["message"]
    assert all(value is None for key, value in payload.items() if key != "userErrors"), payload
    assert await billing_state(api, accounts, tables) == before
    await assert_sound(api.engine)


async def forbidden(
    api: Api,
    query: str,
    input: dict[str, Any],
    *,
    token: str,
    accounts: list[str],
    tables: tuple[str, ...] = BILLING_TABLES,
) -> None:
    """An operator-only mutation called by an account's user: top-level FORBIDDEN."""
    before = await billing_state(api, accounts, tables)
    body = await api.raw(query, {"input": input}, token)
    assert body["data"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"], body["errors"]
    assert await billing_state(api, accounts, tables) == before
