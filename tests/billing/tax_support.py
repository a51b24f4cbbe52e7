"""Shared GraphQL text, builders and checks for the tax, general ledger, stored value,
auto-pay and auto top-up tests (T1-T3, W1-W3).

A refusal must leave everything as it was: the money (``tests.funds.support.money_state``)
and every row of this feature's tables, the payment methods and the outbox.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from accountgraph import outbox
from accountgraph.billing import auto_pay, auto_top_up
from tests.billing import voucher_support as vouchers
from tests.helpers import OPERATOR_TOKEN, Api

TABLES = (
    "tax_groups",
    "account_tax_groups",
    "stored_value_cards",
    "stored_value_uses",
    "invoice_payments",
    "auto_top_ups",
    "top_up_orders",
    "payment_methods",
    "sites",
    "outbox",
)
ERRORS = "userErrors { code field message }"
CREATE_TAX_GROUP = f"""
mutation($input: CreateTaxGroupInput!) {{
  createTaxGroup(input: $input) {{ taxGroup {{ id code name rate }} {ERRORS} }}
}}"""
SET_ACCOUNT_TAX_GROUP = f"""
mutation($input: SetAccountTaxGroupInput!) {{
  setAccountTaxGroup(input: $input) {{ account {{ id taxGroup {{ code rate }} }} {ERRORS} }}
}}"""
TAX_GROUPS = "query { taxGroups { id code name rate } }"
ISSUE_CARD = f"""
mutation($input: IssueStoredValueCardInput!) {{
  issueStoredValueCard(input: $input) {{
    account {{ id storedValueCards {{ id amount remaining validUntil origin createdAt }}
      finance {{ storedValue storedValueCardCount availableQuota }} }}
    {ERRORS}
  }}
}}"""
SET_AUTO_PAY = f"""
mutation($input: SetAutoPayInput!) {{
  setAutoPay(input: $input) {{ paymentMethod {{ id autoPay }} {ERRORS} }}
}}"""
SET_AUTO_TOP_UP = f"""
mutation($input: SetAutoTopUpInput!) {{
  setAutoTopUp(input: $input) {{
    account {{ id autoTopUp {{ threshold amount enabled lastTopUpAt lastError
      paymentMethod {{ id }} }} }}
    {ERRORS}
  }}
}}"""
STORED_VALUE = """
query($id: ID!) {
  account(id: $id) {
    id storedValueCards { id amount remaining validUntil origin }
    finance { storedValue storedValueCardCount cashBalance outstandingFees availableQuota }
    autoTopUp { threshold amount enabled lastTopUpAt lastError paymentMethod { id } }
  }
}"""
LEDGER = """
query($since: DateTime!, $until: DateTime!, $accountId: ID) {
  generalLedger(since: $since, until: $until, accountId: $accountId) {
    branch account { id } bucket debit credit net
  }
}"""
ADD_SITE = f"""
mutation($input: AddSiteInput!) {{
  addSite(input: $input) {{ site {{ id taxGroup }} {ERRORS} }}
}}"""
UPDATE_SITE = f"""
mutation($input: UpdateSiteInput!) {{
  updateSite(input: $input) {{ site {{ id taxGroup }} {ERRORS} }}
}}"""


async def tax_group(api: Api, code: str, rate: str, name: str | None = None) -> dict[str, Any]:
    payload = await api.ok(
        "createTaxGroup", CREATE_TAX_GROUP, {"code": code, "name": name or code, "rate": rate}
    )
    found: dict[str, Any] = payload["taxGroup"]
    return found


async def default_tax_group(api: Api, account: str, code: str | None) -> None:
    await api.ok(
        "setAccountTaxGroup", SET_ACCOUNT_TAX_GROUP, {"accountId": account, "taxGroupCode": code}
    )


async def site(
    api: Api, account: str, name: str, bill_to: str, tax_group: str | None = None, **more: Any
) -> str:
    payload = await api.ok(
        "addSite",
        ADD_SITE,
        {"accountId": account, "name": name, "billToId": bill_to, "taxGroup": tax_group, **more},
    )
    site_id: str = payload["site"]["id"]
    return site_id


async def card(
    api: Api, account: str, amount: str, valid_until: str | None = None
) -> dict[str, Any]:
    payload = await api.ok(
        "issueStoredValueCard",
        ISSUE_CARD,
        {"accountId": account, "amount": amount, "validUntil": valid_until},
    )
    found: dict[str, Any] = payload["account"]["storedValueCards"][-1]
    return found


async def set_auto_pay(
    api: Api, method: str, auto_pay: bool = True, token: str = OPERATOR_TOKEN
) -> None:
    await api.ok(
        "setAutoPay", SET_AUTO_PAY, {"paymentMethodId": method, "autoPay": auto_pay}, token
    )


async def stored(api: Api, account: str, token: str = OPERATOR_TOKEN) -> dict[str, Any]:
    found: dict[str, Any] = (await api.gql(STORED_VALUE, {"id": account}, token))["account"]
    return found


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
) -> None:
    """Exactly one user error ``code`` at ``field``, nothing else in the payload, nothing
    of this feature's tables or money changed, and the ledger (stored value included)
    still verifies."""
    await vouchers.refused(
        api,
        name,
        query,
        input,
        code=code,
        field=field,
        accounts=accounts,
        token=token,
        tables=TABLES,
    )


async def forbidden(
    api: Api, query: str, input: dict[str, Any], *, token: str, accounts: list[str]
) -> None:
    await vouchers.forbidden(api, query, input, token=token, accounts=accounts, tables=TABLES)


async def pending_rows(engine: AsyncEngine, topic: str) -> list[tuple[int, dict[str, Any]]]:
    """The outbox rows of ``topic`` not done yet, oldest first."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT id, payload FROM outbox WHERE topic = :topic AND done_at IS NULL "
                    "ORDER BY id"
                ),
                {"topic": topic},
            )
        ).all()
    return [(row.id, dict(row.payload)) for row in rows]


async def run_handler(engine: AsyncEngine, topic: str, payload: dict[str, Any]) -> None:
    """One run of the topic's handler in a transaction of its own, as the worker runs it
    (without marking any outbox row: a redelivered job)."""
    handler = {auto_pay.TOPIC: auto_pay.pay_invoice, auto_top_up.TOPIC: auto_top_up.pay_top_up}
    async with engine.begin() as conn:
        await handler[topic](conn, payload, outbox.JobContext())
