"""U6: a master with cost center enabled enables it for every member on association."""

from __future__ import annotations

import pytest

from tests.helpers import DISSOCIATE, RESPOND, Api

UPDATE_ACCOUNT = """
mutation($input: UpdateAccountInput!) {
  updateAccount(input: $input) { account { id costCenterEnabled } userErrors { code } }
}"""
COST_CENTER = "query($id: ID!) { account(id: $id) { costCenterEnabled } }"


async def cost_center(api: Api, account: str) -> bool:
    enabled: bool = (await api.gql(COST_CENTER, {"id": account}))["account"]["costCenterEnabled"]
    return enabled


async def enable(api: Api, account: str, enabled: bool = True) -> None:
    await api.ok(
        "updateAccount", UPDATE_ACCOUNT, {"accountId": account, "costCenterEnabled": enabled}
    )


@pytest.mark.parametrize("type", ["TRUSTEESHIP", "FINANCIAL"])
async def test_u6_a_masters_cost_center_is_enabled_for_a_member_on_association(
    api: Api, type: str
) -> None:
    master = await api.account("Master")
    await enable(api, master)
    member = await api.account("Member")
    link = await api.invite(master, member, type)
    assert await cost_center(api, member) is False  # an invitation is not an association
    await api.ok(
        "respondToInvitation", RESPOND, {"linkId": link, "accept": True, "permissions": []}
    )
    assert await cost_center(api, member) is True
    # The member may turn it off later, and it stays as it is after dissociation.
    await enable(api, member, False)
    assert await cost_center(api, member) is False
    await enable(api, member)
    await api.ok("dissociateMember", DISSOCIATE, {"linkId": link})
    assert await cost_center(api, member) is True


async def test_u6_a_master_without_cost_center_changes_nothing(api: Api) -> None:
    master = await api.account("Master")
    plain, enabled, declined = (
        await api.account("Plain"),
        await api.account("Enabled"),
        await api.account("Declined"),
    )
    await enable(api, enabled)
    await api.link(master, plain)
    await api.link(master, enabled)
    assert [await cost_center(api, a) for a in (master, plain, enabled)] == [False, False, True]
    # Declining an invitation of a master with cost center enables nothing.
    other = await api.account("Other master")
    await enable(api, other)
    link = await api.invite(other, declined)
    await api.ok("respondToInvitation", RESPOND, {"linkId": link, "accept": False})
    assert await cost_center(api, declined) is False
