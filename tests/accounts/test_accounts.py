"""H1 accounts, H5 platform settings, P4 operators, and the root ``accounts`` list (P2, P3)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from accountgraph.accounts.models import accounts, platform_settings
from tests.helpers import INVITE, Api, enterprise

CREATE_ACCOUNT = """
mutation($input: CreateAccountInput!) {
  createAccount(input: $input) {
    account { id name displayName branch terms salesperson status role costCenterEnabled }
    userErrors { code field message }
  }
}"""
UPDATE_ACCOUNT = """
mutation($input: UpdateAccountInput!) {
  updateAccount(input: $input) {
    account { id name displayName branch terms salesperson costCenterEnabled }
    userErrors { code field message }
  }
}"""
ACCOUNT = """
query($id: ID!) {
  account(id: $id) { id name displayName branch terms salesperson status role }
}"""
SETTINGS = "{ settings { billingHierarchyEnabled } }"
UPDATE_SETTINGS = """
mutation($input: UpdateSettingsInput!) {
  updateSettings(input: $input) {
    settings { billingHierarchyEnabled } userErrors { code field message }
  }
}"""
SEARCH = """
query($search: String) {
  accounts(search: $search) { totalCount edges { node { name displayName } } }
}"""
ACCOUNTS = "{ accounts { totalCount edges { node { id name role } } } }"
MEMBER_VIEW_OF_MASTER = """
{ viewer { account { link { master { name displayName branch terms salesperson } } } } }"""
DISSOCIATE = """
mutation($input: DissociateMemberInput!) {
  dissociateMember(input: $input) { userErrors { code field message } }
}"""


def codes(payload: dict[str, Any]) -> list[tuple[str, list[str] | None]]:
    return [(error["code"], error["field"]) for error in payload["userErrors"]]


def error_codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors") or []]


async def db_accounts(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(accounts).order_by(accounts.c.id))
        return [dict(row._mapping) for row in rows]


async def db_hierarchy_enabled(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        value: bool = (
            await conn.execute(select(platform_settings.c.billing_hierarchy_enabled))
        ).scalar_one()
        return value


async def update_account(
    api: Api, account_id: str, token: str | None = None, **fields: Any
) -> dict[str, Any]:
    kwargs = {} if token is None else {"token": token}
    return await api.mutate(
        "updateAccount", UPDATE_ACCOUNT, {"accountId": account_id, **fields}, **kwargs
    )


# ---------------------------------------------------------------- createAccount (H1, P4)


async def test_h1_create_account_is_active_standalone_with_display_name_from_name(
    api: Api,
) -> None:
    # given an operator
    # when it creates an account with only a name
    payload = await api.ok("createAccount", CREATE_ACCOUNT, {"name": "Acme"})

    # then the account is ACTIVE, STANDALONE, and its display name is its name
    account = payload["account"]
    assert account == {
        "id": account["id"],
        "name": "Acme",
        "displayName": "Acme",
        "branch": None,
        "terms": None,
        "salesperson": None,
        "status": "ACTIVE",
        "role": "STANDALONE",
        "costCenterEnabled": False,
    }
    assert (await api.gql(ACCOUNT, {"id": account["id"]}))["account"]["displayName"] == "Acme"


async def test_h1_create_account_stores_every_field(api: Api) -> None:
    # given an operator
    # when it creates an account with every field
    payload = await api.ok(
        "createAccount",
        CREATE_ACCOUNT,
        {
            "name": "acme-prod",
            "displayName": "Acme Production",
            "branch": "Berlin",
            "terms": "NET30",
            "salesperson": "Dana",
        },
    )

    # then each field is read back, by the operator and by the account's own users
    account = payload["account"]
    expected = {
        "id": account["id"],
        "name": "acme-prod",
        "displayName": "Acme Production",
        "branch": "Berlin",
        "terms": "NET30",
        "salesperson": "Dana",
        "status": "ACTIVE",
        "role": "STANDALONE",
    }
    assert (await api.gql(ACCOUNT, {"id": account["id"]}))["account"] == expected
    token = await api.token(account["id"])
    assert (await api.gql(ACCOUNT, {"id": account["id"]}, token=token))["account"] == expected


@pytest.mark.parametrize("display_name", ["", "   "])
async def test_h1_empty_display_name_on_create_defaults_to_name(
    api: Api, display_name: str
) -> None:
    # when an account is created with an empty display name
    payload = await api.ok(
        "createAccount", CREATE_ACCOUNT, {"name": "Acme", "displayName": display_name}
    )

    # then its display name is its name
    assert payload["account"]["displayName"] == "Acme"


@pytest.mark.parametrize("name", ["", "   "])
async def test_h1_empty_name_is_invalid_input(api: Api, name: str) -> None:
    # given one account
    await api.account("Existing")
    before = await db_accounts(api.engine)

    # when an account is created with an empty name
    payload = await api.mutate("createAccount", CREATE_ACCOUNT, {"name": name})

    # then it is INVALID_INPUT at ["name"] and nothing was created
    assert codes(payload) == [("INVALID_INPUT", ["name"])]
    assert payload["account"] is None
    assert await db_accounts(api.engine) == before


@pytest.mark.parametrize(
    ("field", "length"),
    [
        ("name", 201),
        ("displayName", 201),
        ("branch", 201),
        ("salesperson", 201),
        ("terms", 201),
        ("terms", 51),
    ],
)
async def test_h1_over_long_text_is_invalid_input(api: Api, field: str, length: int) -> None:
    """Text is at most 200 characters, and terms at most their column's 50."""
    # given an account
    account = await api.account("Acme")
    before = await db_accounts(api.engine)

    # when an account is created, or updated, with an over-long field
    created = await api.raw(CREATE_ACCOUNT, {"input": {"name": "New", field: "t" * length}})
    changes = {} if field == "name" else {field: "t" * length}
    updated = await api.raw(UPDATE_ACCOUNT, {"input": {"accountId": account, **changes}})

    # then it is an INVALID_INPUT user error (no GraphQL error) and nothing changed
    assert "errors" not in created and "errors" not in updated, (created, updated)
    assert codes(created["data"]["createAccount"]) == [("INVALID_INPUT", [field])]
    if changes:
        assert codes(updated["data"]["updateAccount"]) == [("INVALID_INPUT", [field])]
    assert await db_accounts(api.engine) == before


async def test_p4_only_operators_create_accounts(api: Api) -> None:
    # given an account user
    account = await api.account("Acme")
    token = await api.token(account)
    before = await db_accounts(api.engine)

    # when it creates an account
    body = await api.raw(CREATE_ACCOUNT, {"input": {"name": "Rogue"}}, token=token)

    # then it is a top-level FORBIDDEN error and nothing was created
    assert error_codes(body) == ["FORBIDDEN"]
    assert body["data"] is None
    assert await db_accounts(api.engine) == before


async def test_p4_no_token_is_unauthenticated(api: Api) -> None:
    # when createAccount and accounts are called without a token
    created = await api.raw(CREATE_ACCOUNT, {"input": {"name": "Rogue"}}, token=None)
    listed = await api.raw(ACCOUNTS, token=None)

    # then both are UNAUTHENTICATED and nothing was created
    assert error_codes(created) == ["UNAUTHENTICATED"]
    assert error_codes(listed) == ["UNAUTHENTICATED"]
    assert await db_accounts(api.engine) == []


# ---------------------------------------------------------------- updateAccount (H1, P2-P4)


async def test_h1_account_users_update_their_own_account(api: Api) -> None:
    # given an account and a token of its users
    account = await api.account("Acme", terms="NET30")
    token = await api.token(account)

    # when they change display name, branch, terms, salesperson and cost center
    payload = await api.ok(
        "updateAccount",
        UPDATE_ACCOUNT,
        {
            "accountId": account,
            "displayName": "Acme Inc",
            "branch": "Paris",
            "terms": "NET60",
            "salesperson": "Lee",
            "costCenterEnabled": True,
        },
        token=token,
    )

    # then each changed, and the name did not
    assert payload["account"] == {
        "id": account,
        "name": "Acme",
        "displayName": "Acme Inc",
        "branch": "Paris",
        "terms": "NET60",
        "salesperson": "Lee",
        "costCenterEnabled": True,
    }


async def test_h1_update_keeps_what_is_not_given(api: Api) -> None:
    # given an account with every field set
    account = await api.account(
        "Acme", displayName="Acme Inc", branch="Paris", terms="NET30", salesperson="Lee"
    )

    # when only the terms change
    payload = await api.ok(
        "updateAccount", UPDATE_ACCOUNT, {"accountId": account, "terms": "NET45"}
    )

    # then the rest is as it was
    assert payload["account"] == {
        "id": account,
        "name": "Acme",
        "displayName": "Acme Inc",
        "branch": "Paris",
        "terms": "NET45",
        "salesperson": "Lee",
        "costCenterEnabled": False,
    }


async def test_h1_master_updates_its_active_member(api: Api) -> None:
    # given a master and a member that granted nothing
    master = await api.account("Master")
    member = await api.account("Member")
    await api.link(master, member, permissions=[])
    token = await api.token(master)

    # when the master changes the member's details
    payload = await api.ok(
        "updateAccount",
        UPDATE_ACCOUNT,
        {"accountId": member, "branch": "Lyon", "salesperson": "Kim"},
        token=token,
    )

    # then they changed
    assert payload["account"]["branch"] == "Lyon"
    assert payload["account"]["salesperson"] == "Kim"


async def test_p4_operator_updates_any_account(api: Api) -> None:
    # given an account
    account = await api.account("Acme")

    # when the operator changes it
    payload = await api.ok(
        "updateAccount",
        UPDATE_ACCOUNT,
        {"accountId": account, "displayName": "ACME", "terms": "NET10"},
    )

    # then it changed
    assert payload["account"]["displayName"] == "ACME"
    assert payload["account"]["terms"] == "NET10"


@pytest.mark.parametrize(
    "who", ["stranger", "sibling", "member_on_master", "invited_master", "former_master"]
)
async def test_h1_update_by_anyone_else_is_not_found(api: Api, who: str) -> None:
    # given an enterprise of two members, a stranger, an invitation and a dissociation
    given = await enterprise(api, 2)
    stranger_token = await api.token(await api.account("Stranger"))
    invitee = await api.account("Invitee")
    await api.invite(given.master, invitee)
    former = await api.account("Former")
    former_link = await api.link(given.master, former)
    await api.ok("dissociateMember", DISSOCIATE, {"linkId": former_link})
    target, token = {
        "stranger": (given.members[0], stranger_token),
        "sibling": (given.members[0], given.member_tokens[1]),
        "member_on_master": (given.master, given.member_tokens[0]),
        "invited_master": (invitee, given.master_token),
        "former_master": (former, given.master_token),
    }[who]
    before = await db_accounts(api.engine)

    # when they update the target account
    payload = await update_account(api, target, token=token, displayName="Hijacked")

    # then it is NOT_FOUND and nothing changed
    assert codes(payload) == [("NOT_FOUND", ["accountId"])]
    assert payload["account"] is None
    assert await db_accounts(api.engine) == before


@pytest.mark.parametrize("account_id", ["garbage", "QmlsbFRvOjE"])  # "BillTo:1"
async def test_h1_update_of_an_id_that_is_no_account_is_not_found(
    api: Api, account_id: str
) -> None:
    # when an update names garbage or an id of another type
    payload = await update_account(api, account_id, displayName="X")

    # then it is NOT_FOUND at accountId
    assert codes(payload) == [("NOT_FOUND", ["accountId"])]


@pytest.mark.parametrize("display_name", ["", "  "])
async def test_h1_empty_display_name_on_update_is_invalid_input(
    api: Api, display_name: str
) -> None:
    # given an account
    account = await api.account("Acme")
    before = await db_accounts(api.engine)

    # when its display name is set empty
    payload = await update_account(api, account, displayName=display_name, branch="X")

    # then it is INVALID_INPUT at ["displayName"] and nothing changed
    assert codes(payload) == [("INVALID_INPUT", ["displayName"])]
    assert await db_accounts(api.engine) == before


async def test_p3_member_sees_only_name_fields_of_its_master(api: Api) -> None:
    # given a master with every field set and a member
    master = await api.account(
        "Master", displayName="Master Corp", branch="Rome", terms="NET30", salesperson="Ann"
    )
    member = await api.account("Member")
    await api.link(master, member)
    token = await api.token(member)

    # when the member reads its master through its link, and directly
    through_link = await api.gql(MEMBER_VIEW_OF_MASTER, token=token)
    direct = await api.gql(ACCOUNT, {"id": master}, token=token)

    # then it sees the name fields only, both ways (P3)
    assert through_link["viewer"]["account"]["link"]["master"] == {
        "name": "Master",
        "displayName": "Master Corp",
        "branch": None,
        "terms": None,
        "salesperson": None,
    }
    assert direct["account"] == {
        "id": master,
        "name": "Master",
        "displayName": "Master Corp",
        "branch": None,
        "terms": None,
        "salesperson": None,
        "status": "ACTIVE",
        "role": "MASTER",
    }


# ---------------------------------------------------------------- roles (H1)


async def test_h1_roles_follow_active_links(api: Api) -> None:
    # given a master with one active member, an invited account and a standalone one
    master = await api.account("Master")
    member = await api.account("Member")
    await api.link(master, member)
    invitee = await api.account("Invitee")
    await api.invite(master, invitee)
    await api.account("Alone")

    # when the operator lists accounts
    data = await api.gql(ACCOUNTS)

    # then roles are MASTER, MEMBER, STANDALONE (an invitation is no membership)
    roles = {e["node"]["name"]: e["node"]["role"] for e in data["accounts"]["edges"]}
    assert roles == {
        "Master": "MASTER",
        "Member": "MEMBER",
        "Invitee": "STANDALONE",
        "Alone": "STANDALONE",
    }


# ---------------------------------------------------------------- settings (H5, P4)


async def test_h5_billing_hierarchy_is_enabled_by_default(api: Api) -> None:
    # given a fresh platform and an account user
    token = await api.token(await api.account("Acme"))

    # when operator and account user read the settings
    # then both see billingHierarchyEnabled: true
    assert await api.gql(SETTINGS) == {"settings": {"billingHierarchyEnabled": True}}
    assert await api.gql(SETTINGS, token=token) == {"settings": {"billingHierarchyEnabled": True}}


async def test_h5_operator_changes_the_setting(api: Api) -> None:
    # when the operator turns the hierarchy off
    off = await api.ok("updateSettings", UPDATE_SETTINGS, {"billingHierarchyEnabled": False})

    # then it is off, as read and as stored
    assert off["settings"] == {"billingHierarchyEnabled": False}
    assert await api.gql(SETTINGS) == {"settings": {"billingHierarchyEnabled": False}}
    assert await db_hierarchy_enabled(api.engine) is False

    # and an update without a value leaves it as it is
    same = await api.ok("updateSettings", UPDATE_SETTINGS, {})
    assert same["settings"] == {"billingHierarchyEnabled": False}

    # and turning it on again works
    on = await api.ok("updateSettings", UPDATE_SETTINGS, {"billingHierarchyEnabled": True})
    assert on["settings"] == {"billingHierarchyEnabled": True}
    assert await db_hierarchy_enabled(api.engine) is True


async def test_p4_only_operators_change_settings(api: Api) -> None:
    # given a master's user and a member's user
    given = await enterprise(api, 1)

    for token in (given.master_token, given.member_tokens[0]):
        # when they turn the hierarchy off
        body = await api.raw(
            UPDATE_SETTINGS, {"input": {"billingHierarchyEnabled": False}}, token=token
        )

        # then it is a top-level FORBIDDEN error and the setting stays on
        assert error_codes(body) == ["FORBIDDEN"]
        assert body["data"] is None
        assert await db_hierarchy_enabled(api.engine) is True


async def test_h5_disabled_hierarchy_refuses_new_trusteeship_keeps_existing(api: Api) -> None:
    # given an active trusteeship link, then the hierarchy turned off
    given = await enterprise(api, 1)
    await api.ok("updateSettings", UPDATE_SETTINGS, {"billingHierarchyEnabled": False})
    newcomer = await api.account("Newcomer")

    # when the master invites another account as trusteeship and as financial member
    trusteeship = await api.mutate(
        "inviteMember",
        INVITE,
        {"masterId": given.master, "memberId": newcomer, "type": "TRUSTEESHIP"},
    )
    financial = await api.mutate(
        "inviteMember",
        INVITE,
        {"masterId": given.master, "memberId": newcomer, "type": "FINANCIAL"},
    )

    # then trusteeship is HIERARCHY_DISABLED, financial is invited,
    # and the existing member is still ACTIVE
    assert codes(trusteeship) == [("HIERARCHY_DISABLED", ["type"])]
    assert codes(financial) == []
    members = await api.gql(
        "query($id: ID!) { account(id: $id) { members { edges { node { id } } } } }",
        {"id": given.master},
    )
    assert [e["node"]["id"] for e in members["account"]["members"]["edges"]] == given.members


# ---------------------------------------------------------------- accounts list (P2-P4)


@pytest.mark.parametrize(
    ("search", "found"),
    [
        ("acme", ["Acme", "acme-eu"]),
        ("ACME", ["Acme", "acme-eu"]),
        ("globex", ["gx-1"]),  # by display name only
        ("GLOB", ["gx-1"]),
        ("rnd", ["rnd_lab"]),
        ("_", ["rnd_lab"]),  # LIKE wildcards are literal
        ("%", ["100% Co"]),
        ("nothing", []),
        ("", ["Acme", "acme-eu", "gx-1", "rnd_lab", "100% Co"]),
    ],
)
async def test_p4_accounts_search_by_name_or_display_name_case_insensitively(
    api: Api, search: str, found: list[str]
) -> None:
    # given accounts with names and display names
    await api.account("Acme")
    await api.account("acme-eu", displayName="Acme Europe")
    await api.account("gx-1", displayName="Globex Corporation")
    await api.account("rnd_lab", displayName="Research")
    await api.account("100% Co")

    # when the operator searches
    data = await api.gql(SEARCH, {"search": search})

    # then it finds those whose name or display name contains the text, any case
    assert [e["node"]["name"] for e in data["accounts"]["edges"]] == found
    assert data["accounts"]["totalCount"] == len(found)


async def test_p2_master_lists_itself_and_its_active_members_only(api: Api) -> None:
    # given a master with two active members, an invitee, a declined, a dissociated
    # member, and another enterprise
    given = await enterprise(api, 2)
    invitee = await api.account("Invitee")
    await api.invite(given.master, invitee)
    former = await api.account("Former")
    await api.ok("dissociateMember", DISSOCIATE, {"linkId": await api.link(given.master, former)})
    await enterprise(api, 1)
    await api.account("Stranger")

    # when the master's user lists accounts
    data = await api.gql(ACCOUNTS, token=given.master_token)

    # then it sees its own account and its ACTIVE members
    listed = [e["node"]["id"] for e in data["accounts"]["edges"]]
    assert listed == [given.master, *given.members]
    assert data["accounts"]["totalCount"] == 3

    # and searching does not widen that
    searched = await api.gql(SEARCH, {"search": "e"}, token=given.master_token)
    assert sorted(e["node"]["name"] for e in searched["accounts"]["edges"]) == [
        "Master",
        "Member-1",
        "Member-2",
    ]


async def test_p3_member_lists_only_its_own_account(api: Api) -> None:
    # given a member of a master with another member
    given = await enterprise(api, 2)

    # when the member's user lists accounts (also searching for the master's name)
    data = await api.gql(ACCOUNTS, token=given.member_tokens[0])
    searched = await api.gql(SEARCH, {"search": "Master"}, token=given.member_tokens[0])

    # then it sees its own account only (never its master's details or a sibling)
    assert [e["node"]["id"] for e in data["accounts"]["edges"]] == [given.members[0]]
    assert data["accounts"]["totalCount"] == 1
    assert searched["accounts"] == {"totalCount": 0, "edges": []}


async def test_p4_operator_lists_every_account(api: Api) -> None:
    # given an enterprise and a standalone account
    given = await enterprise(api, 2)
    alone = await api.account("Alone")

    # when the operator lists accounts
    data = await api.gql(ACCOUNTS)

    # then every account is listed, in creation (id) order
    assert [e["node"]["id"] for e in data["accounts"]["edges"]] == [
        given.master,
        *given.members,
        alone,
    ]
    async with api.engine.connect() as conn:
        total = (await conn.execute(select(func.count()).select_from(accounts))).scalar_one()
    assert data["accounts"]["totalCount"] == total == 4


@pytest.mark.parametrize("field", ["name", "displayName", "branch", "terms", "salesperson"])
async def test_h1_nul_character_is_invalid_input(api: Api, field: str) -> None:
    """PostgreSQL text cannot hold NUL: refused as input, not a server error."""
    # when an account is created with a NUL in a field
    body = await api.raw(CREATE_ACCOUNT, {"input": {"name": "Acme", field: "a\x00b"}})

    # then it is an INVALID_INPUT user error and nothing was created
    assert "errors" not in body, body
    assert codes(body["data"]["createAccount"]) == [("INVALID_INPUT", [field])]
    assert await db_accounts(api.engine) == []
