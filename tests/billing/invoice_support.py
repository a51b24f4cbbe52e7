"""Shared GraphQL text and builders for the invoice tests (B1-B4, I1-I3, documents)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.helpers import OPERATOR_TOKEN, Api

INVOICE_FIELDS = """
fragment InvoiceFields on Invoice {
  id number periodStart periodEnd issuedAt subtotal discountTotal total
  account { id } member { id } billTo { id name }
  lines { member { id name } site { id name } description amount discountPercent discount net }
}"""
RUN = (
    """
mutation($input: RunBillCycleInput!) {
  runBillCycle(input: $input) { invoices { ...InvoiceFields } userErrors { code field message } }
}"""
    + INVOICE_FIELDS
)
SET_DISCOUNT = """
mutation($input: SetDiscountInput!) {
  setDiscount(input: $input) { account { id discountPercent } userErrors { code field message } }
}"""
SET_MODE = """
mutation($input: SetInvoiceModeInput!) {
  setInvoiceMode(input: $input) { account { id invoiceMode } userErrors { code field message } }
}"""
CHARGE = """
mutation($input: RecordChargeInput!) {
  recordCharge(input: $input) { charge { id } userErrors { code field message } }
}"""
INVOICES = (
    """
query($id: ID!, $first: Int, $after: String) {
  account(id: $id) {
    id invoiceMode discountPercent
    invoices(first: $first, after: $after) {
      totalCount pageInfo { hasNextPage endCursor }
      edges { cursor node { ...InvoiceFields } }
    }
  }
}"""
    + INVOICE_FIELDS
)
NODE = """
query($id: ID!) { node(id: $id) { id ... on Invoice { total documentUrl } } }"""
BILLING_TABLES = (
    "invoices",
    "invoice_lines",
    "invoiced_charges",
    "bill_cycles",
    "discounts",
    "invoice_settings",
)


async def charge(
    api: Api,
    account: str,
    amount: str,
    occurred_at: str,
    site: str | None = None,
    description: str = "usage",
) -> str:
    payload = await api.ok(
        "recordCharge",
        CHARGE,
        {
            "accountId": account,
            "amount": amount,
            "description": description,
            "occurredAt": occurred_at,
            **({"siteId": site} if site else {}),
        },
    )
    charge_id: str = payload["charge"]["id"]
    return charge_id


async def discount(api: Api, account: str, percent: str | None) -> None:
    await api.ok("setDiscount", SET_DISCOUNT, {"accountId": account, "percent": percent})


async def run(
    api: Api,
    account: str,
    start: str,
    end: str,
    bill_to: str | None = None,
    token: str = OPERATOR_TOKEN,
) -> dict[str, Any]:
    """The runBillCycle payload (invoices and userErrors)."""
    payload = await api.mutate(
        "runBillCycle",
        RUN,
        {
            "accountId": account,
            "periodStart": start,
            "periodEnd": end,
            **({"billToId": bill_to} if bill_to else {}),
        },
        token,
    )
    return payload


async def issued(
    api: Api,
    account: str,
    start: str,
    end: str,
    bill_to: str | None = None,
    token: str = OPERATOR_TOKEN,
) -> list[dict[str, Any]]:
    """The invoices of a cycle that must succeed."""
    payload = await run(api, account, start, end, bill_to, token)
    assert payload["userErrors"] == [], payload["userErrors"]
    invoices: list[dict[str, Any]] = payload["invoices"]
    return invoices


async def counts(engine: AsyncEngine) -> dict[str, int]:
    """Rows of every billing table: a refused mutation changes none of them."""
    async with engine.connect() as conn:
        return {
            table: (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
            for table in BILLING_TABLES
        }


def lines(invoice: dict[str, Any]) -> list[tuple[Any, ...]]:
    """An invoice's lines as (member name, site name, description, amount, percent,
    discount, net), to compare with literals."""
    return [
        (
            (line["member"] or {}).get("name"),
            (line["site"] or {}).get("name"),
            line["description"],
            line["amount"],
            line["discountPercent"],
            line["discount"],
            line["net"],
        )
        for line in invoice["lines"]
    ]


def totals(invoice: dict[str, Any]) -> tuple[str, str, str]:
    return invoice["subtotal"], invoice["discountTotal"], invoice["total"]
