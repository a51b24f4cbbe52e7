"""Builders for the cost center tests: charges with products and tags, reports, budgets."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tests.helpers import OPERATOR_TOKEN, Api

UPDATE_ACCOUNT = """
mutation($input: UpdateAccountInput!) {
  updateAccount(input: $input) { account { id } userErrors { code } }
}"""
CHARGE = """
mutation($input: RecordChargeInput!) {
  recordCharge(input: $input) {
    charge { id amount product tags { key value } }
    userErrors { code field message }
  }
}"""
COSTS = """
query($id: ID!, $since: DateTime!, $until: DateTime!, $groupBy: [CostDimension!]!,
      $tagKey: String, $memberIds: [ID!]) {
  account(id: $id) {
    costs(since: $since, until: $until, groupBy: $groupBy, tagKey: $tagKey,
          memberIds: $memberIds) {
      since until groupBy total chartUrl
      groups { keys amount charges member { id } site { id } }
    }
  }
}"""
BUDGET_FIELDS = """
  id name amount period spent forecast periodStart periodEnd
  account { id } member { id } userGroup { id } tag { key value }
  thresholds { basis percent firedAt }
"""
SET_BUDGET = (
    """
mutation($input: SetBudgetInput!) {
  setBudget(input: $input) { budget {"""
    + BUDGET_FIELDS
    + """} userErrors { code field message } }
}"""
)
REMOVE_BUDGET = """
mutation($input: RemoveBudgetInput!) {
  removeBudget(input: $input) { account { id } userErrors { code field message } }
}"""
BUDGETS = (
    """
query($id: ID!) { account(id: $id) { budgets {"""
    + BUDGET_FIELDS
    + """} } }"""
)
NOTIFICATIONS = """
query($id: ID!) {
  account(id: $id) {
    notifications(first: 50) {
      edges { node { kind threshold spent forecast budget { id name } } }
    }
  }
}"""


async def enable(api: Api, account: str, enabled: bool = True) -> None:
    await api.ok(
        "updateAccount", UPDATE_ACCOUNT, {"accountId": account, "costCenterEnabled": enabled}
    )


async def charge(
    api: Api,
    account: str,
    amount: str,
    *,
    at: datetime | None = None,
    product: str | None = None,
    tags: dict[str, str] | None = None,
    site: str | None = None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {"accountId": account, "amount": amount, "description": "use"}
    if at is not None:
        payload["occurredAt"] = at.isoformat()
    if product is not None:
        payload["product"] = product
    if tags is not None:
        payload["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
    if site is not None:
        payload["siteId"] = site
    found: dict[str, Any] = (await api.ok("recordCharge", CHARGE, payload))["charge"]
    return found


async def costs(
    api: Api,
    account: str,
    since: datetime,
    until: datetime,
    group_by: list[str],
    *,
    token: str | None = OPERATOR_TOKEN,
    tag_key: str | None = None,
    member_ids: list[str] | None = None,
) -> dict[str, Any] | None:
    data = await api.gql(
        COSTS,
        {
            "id": account,
            "since": since.isoformat(),
            "until": until.isoformat(),
            "groupBy": group_by,
            "tagKey": tag_key,
            "memberIds": member_ids,
        },
        token,
    )
    if data["account"] is None:
        return None
    found: dict[str, Any] | None = data["account"]["costs"]
    return found


async def notifications(api: Api, account: str) -> list[dict[str, Any]]:
    data = await api.gql(NOTIFICATIONS, {"id": account})
    edges = data["account"]["notifications"]["edges"]
    return [edge["node"] for edge in edges]
