"""H4: a site of an account points at one of that account's bill-tos.

Who may add or change sites: the account's own users, its ACTIVE master, operators;
anyone else gets NOT_FOUND (P2, P3). Refusals are checked in the database.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from accountgraph.accounts.models import sites
from accountgraph.api import ids
from tests.helpers import Api, enterprise

ADD_SITE = """
mutation($input: AddSiteInput!) {
  addSite(input: $input) {
    site { id name address branch taxGroup billTo { id name isPrimary } }
    userErrors { code field message }
  }
}"""
UPDATE_SITE = """
mutation($input: UpdateSiteInput!) {
  updateSite(input: $input) {
    site { id name address branch taxGroup billTo { id name } }
    userErrors { code field message }
  }
}"""
SITES = """
query($id: ID!) {
  account(id: $id) { sites { id name address branch taxGroup billTo { id name } } }
}"""
NODE = """
query($id: ID!) { node(id: $id) { id ... on Site { name billTo { id name } } } }"""


CREATE_TAX_GROUP = """
mutation($input: CreateTaxGroupInput!) { createTaxGroup(input: $input) { userErrors { code } } }"""


def codes(payload: dict[str, Any]) -> list[tuple[str, list[str] | None]]:
    return [(error["code"], error["field"]) for error in payload["userErrors"]]


async def db_sites(engine: AsyncEngine) -> list[dict[str, Any]]:
    """Every site row, straight from the database."""
    async with engine.connect() as conn:
        rows = await conn.execute(select(sites).order_by(sites.c.id))
        return [dict(row._mapping) for row in rows]


async def add_site(
    api: Api,
    account_id: str,
    bill_to_id: str,
    name: str = "Plant",
    token: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    kwargs = {} if token is None else {"token": token}
    return await api.mutate(
        "addSite",
        ADD_SITE,
        {"accountId": account_id, "billToId": bill_to_id, "name": name, **fields},
        **kwargs,
    )


async def update_site(
    api: Api, site_id: str, token: str | None = None, **fields: Any
) -> dict[str, Any]:
    kwargs = {} if token is None else {"token": token}
    return await api.mutate("updateSite", UPDATE_SITE, {"siteId": site_id, **fields}, **kwargs)


async def tax_groups(api: Api) -> None:
    """T1: a site's tax group is the code of a tax group; these tests name TG-7 and TG-9."""
    for code in ("TG-7", "TG-9"):
        await api.ok("createTaxGroup", CREATE_TAX_GROUP, {"code": code, "name": code, "rate": "7"})


async def test_h4_add_site_pointing_at_a_bill_to_of_its_account(api: Api) -> None:
    # given an account with a primary and a second bill-to
    await tax_groups(api)
    account = await api.account("Acme")
    await api.bill_to(account, "Acme AP")
    second = await api.bill_to(account, "Acme Branch")

    # when a site is added pointing at the second, with every field
    payload = await api.ok(
        "addSite",
        ADD_SITE,
        {
            "accountId": account,
            "billToId": second,
            "name": " Plant 1 ",
            "address": "1 Mill Rd",
            "branch": "North",
            "taxGroup": "TG-7",
        },
    )

    # then the site is stored with its fields (trimmed) and resolves its bill-to
    site = payload["site"]
    assert site == {
        "id": site["id"],
        "name": "Plant 1",
        "address": "1 Mill Rd",
        "branch": "North",
        "taxGroup": "TG-7",
        "billTo": {"id": second, "name": "Acme Branch", "isPrimary": False},
    }
    listed = (await api.gql(SITES, {"id": account}))["account"]["sites"]
    assert listed == [
        {
            "id": site["id"],
            "name": "Plant 1",
            "address": "1 Mill Rd",
            "branch": "North",
            "taxGroup": "TG-7",
            "billTo": {"id": second, "name": "Acme Branch"},
        }
    ]
    rows = await db_sites(api.engine)
    assert [(r["account_id"], r["bill_to_id"]) for r in rows] == [
        (ids.decode_as(account, "Account"), ids.decode_as(second, "BillTo"))
    ]


async def test_h4_site_bill_to_resolves_through_node_and_account(api: Api) -> None:
    # given a site of an account
    account = await api.account("Acme")
    bill_to = await api.bill_to(account, "Acme AP")
    site = await api.site(account, "Plant", bill_to)

    # when it is read by node(id) and through the account, as the account's user
    token = await api.token(account)
    node = (await api.gql(NODE, {"id": site}, token=token))["node"]
    listed = (await api.gql(SITES, {"id": account}, token=token))["account"]["sites"]

    # then Site.billTo is the bill-to it points at
    assert node == {"id": site, "name": "Plant", "billTo": {"id": bill_to, "name": "Acme AP"}}
    assert [s["billTo"] for s in listed] == [{"id": bill_to, "name": "Acme AP"}]


async def test_h4_bill_to_of_another_account_is_not_found_and_nothing_created(api: Api) -> None:
    # given two accounts with a bill-to each
    account = await api.account("Acme")
    await api.bill_to(account, "Acme AP")
    other = await api.account("Other")
    foreign = await api.bill_to(other, "Other AP")

    # when a site of the first is added pointing at the other's bill-to (as operator)
    payload = await add_site(api, account, foreign)

    # then it is NOT_FOUND at billToId and no site was created
    assert codes(payload) == [("NOT_FOUND", ["billToId"])]
    assert payload["site"] is None
    assert await db_sites(api.engine) == []


async def test_h4_bill_to_of_a_member_is_not_the_masters(api: Api) -> None:
    # given a master and its member (all permissions), each with a bill-to
    given = await enterprise(api, 1)
    member = given.members[0]
    await api.bill_to(given.master, "Master AP")
    member_bill_to = await api.bill_to(member, "Member AP")

    # when the master adds a site of its own pointing at the member's bill-to
    payload = await add_site(api, given.master, member_bill_to, token=given.master_token)

    # then it is NOT_FOUND at billToId (a bill-to of the same account only)
    assert codes(payload) == [("NOT_FOUND", ["billToId"])]
    assert await db_sites(api.engine) == []


@pytest.mark.parametrize("bill_to", ["garbage", "account"])
async def test_h4_bill_to_id_that_is_no_bill_to_is_not_found(api: Api, bill_to: str) -> None:
    # given an account
    account = await api.account("Acme")
    await api.bill_to(account, "Acme AP")
    named = {"garbage": "nope", "account": account}[bill_to]

    # when a site names garbage, or an id of another type, as its bill-to
    payload = await add_site(api, account, named)

    # then it is NOT_FOUND at billToId
    assert codes(payload) == [("NOT_FOUND", ["billToId"])]
    assert await db_sites(api.engine) == []


async def test_h4_update_site_changes_fields_and_moves_to_another_bill_to(api: Api) -> None:
    # given a site on the primary bill-to of an account that has a second bill-to
    await tax_groups(api)
    account = await api.account("Acme")
    primary = await api.bill_to(account, "Acme AP")
    second = await api.bill_to(account, "Acme Branch")
    site = await api.site(account, "Plant", primary)

    # when its fields change and it moves to the second bill-to
    payload = await api.ok(
        "updateSite",
        UPDATE_SITE,
        {
            "siteId": site,
            "name": "Plant 2",
            "address": "2 Mill Rd",
            "branch": "South",
            "taxGroup": "TG-9",
            "billToId": second,
        },
    )

    # then it has the new fields and points at the second bill-to
    expected = {
        "id": site,
        "name": "Plant 2",
        "address": "2 Mill Rd",
        "branch": "South",
        "taxGroup": "TG-9",
        "billTo": {"id": second, "name": "Acme Branch"},
    }
    assert payload["site"] == expected
    assert (await api.gql(SITES, {"id": account}))["account"]["sites"] == [expected]

    # and the first bill-to, no longer pointed at, can now be removed naming a new primary
    await api.ok(
        "removeBillTo",
        """
        mutation($input: RemoveBillToInput!) {
          removeBillTo(input: $input) { userErrors { code field message } }
        }""",
        {"billToId": primary, "newPrimaryId": second},
    )


async def test_h4_update_site_keeps_what_is_not_given(api: Api) -> None:
    # given a site with every field set
    await tax_groups(api)
    account = await api.account("Acme")
    bill_to = await api.bill_to(account, "Acme AP")
    site = (
        await api.ok(
            "addSite",
            ADD_SITE,
            {
                "accountId": account,
                "billToId": bill_to,
                "name": "Plant",
                "address": "1 Mill Rd",
                "branch": "North",
                "taxGroup": "TG-7",
            },
        )
    )["site"]["id"]

    # when only the branch changes
    payload = await api.ok("updateSite", UPDATE_SITE, {"siteId": site, "branch": "East"})

    # then the rest is as it was
    assert payload["site"] == {
        "id": site,
        "name": "Plant",
        "address": "1 Mill Rd",
        "branch": "East",
        "taxGroup": "TG-7",
        "billTo": {"id": bill_to, "name": "Acme AP"},
    }


async def test_h4_update_site_to_another_accounts_bill_to_is_not_found(api: Api) -> None:
    # given a site of one account and a bill-to of another
    account = await api.account("Acme")
    bill_to = await api.bill_to(account, "Acme AP")
    site = await api.site(account, "Plant", bill_to)
    other = await api.account("Other")
    foreign = await api.bill_to(other, "Other AP")
    before = await db_sites(api.engine)

    # when the site is moved to the other account's bill-to (with a rename)
    payload = await update_site(api, site, billToId=foreign, name="Moved")

    # then it is NOT_FOUND at billToId and nothing changed
    assert codes(payload) == [("NOT_FOUND", ["billToId"])]
    assert await db_sites(api.engine) == before


@pytest.mark.parametrize("name", ["", "  "])
async def test_h4_empty_site_name_is_invalid_input(api: Api, name: str) -> None:
    # given a site
    account = await api.account("Acme")
    bill_to = await api.bill_to(account, "Acme AP")
    site = await api.site(account, "Plant", bill_to)
    before = await db_sites(api.engine)

    # when a site is added, or the site renamed, with an empty name
    added = await add_site(api, account, bill_to, name=name)
    updated = await update_site(api, site, name=name)

    # then both are INVALID_INPUT at ["name"] and nothing changed
    assert codes(added) == [("INVALID_INPUT", ["name"])]
    assert codes(updated) == [("INVALID_INPUT", ["name"])]
    assert await db_sites(api.engine) == before


@pytest.mark.parametrize(
    ("field", "length"),
    [
        ("name", 201),
        ("address", 201),
        ("branch", 201),
        ("taxGroup", 201),
        ("taxGroup", 65),
    ],
)
async def test_h4_over_long_text_is_invalid_input(api: Api, field: str, length: int) -> None:
    """Text is at most 200 characters, and a tax group at most its column's 64."""
    # given a site
    account = await api.account("Acme")
    bill_to = await api.bill_to(account, "Acme AP")
    site = await api.site(account, "Plant", bill_to)
    before = await db_sites(api.engine)

    # when a site is added, or the site updated, with an over-long field
    added = await api.raw(
        ADD_SITE,
        {"input": {"accountId": account, "billToId": bill_to, "name": "New", field: "z" * length}},
    )
    updated = await api.raw(UPDATE_SITE, {"input": {"siteId": site, field: "z" * length}})

    # then both are INVALID_INPUT user errors at that field and nothing changed
    assert "errors" not in added and "errors" not in updated, (added, updated)
    assert codes(added["data"]["addSite"]) == [("INVALID_INPUT", [field])]
    assert codes(updated["data"]["updateSite"]) == [("INVALID_INPUT", [field])]
    assert await db_sites(api.engine) == before


async def test_h4_master_of_an_active_link_adds_and_updates_member_sites(api: Api) -> None:
    # given a master whose member granted nothing, and a bill-to of the member
    master = await api.account("Master")
    member = await api.account("Member")
    await api.link(master, member, permissions=[])
    master_token = await api.token(master)
    first = await api.bill_to(member, "Member AP")
    second = await api.bill_to(member, "Member Branch")

    # when the master adds a site to its member and moves it to the other bill-to
    added = await api.ok(
        "addSite",
        ADD_SITE,
        {"accountId": member, "billToId": first, "name": "Member plant"},
        token=master_token,
    )
    site = added["site"]["id"]
    moved = await api.ok(
        "updateSite", UPDATE_SITE, {"siteId": site, "billToId": second}, token=master_token
    )

    # then the member has the site on its second bill-to, as its own users see it
    assert added["site"]["billTo"]["id"] == first
    assert moved["site"]["billTo"] == {"id": second, "name": "Member Branch"}
    member_token = await api.token(member)
    listed = (await api.gql(SITES, {"id": member}, token=member_token))["account"]["sites"]
    assert [(s["id"], s["billTo"]["id"]) for s in listed] == [(site, second)]


async def test_h4_member_adds_sites_to_itself(api: Api) -> None:
    # given a member of a master
    given = await enterprise(api, 1)
    member, token = given.members[0], given.member_tokens[0]
    bill_to = await api.bill_to(member, "Member AP")

    # when the member's own users add a site
    payload = await api.ok(
        "addSite",
        ADD_SITE,
        {"accountId": member, "billToId": bill_to, "name": "Own plant"},
        token=token,
    )

    # then it is the member's
    assert payload["site"]["billTo"]["id"] == bill_to


async def test_h4_member_cannot_add_a_site_to_its_master_or_sibling(api: Api) -> None:
    # given a master and two members (all permissions), each with a bill-to and a site
    given = await enterprise(api, 2, sites=True)
    master_bill_to = await api.bill_to(given.master, "Master AP")
    master_site = await api.site(given.master, "Master plant", master_bill_to)
    sibling = given.members[1]
    sibling_bill_to = (
        await api.gql(
            "query($id: ID!) { account(id: $id) { primaryBillTo { id } sites { id } } }",
            {"id": sibling},
        )
    )["account"]
    token = given.member_tokens[0]
    before = await db_sites(api.engine)

    # when the first member adds sites to, or changes sites of, its master and its sibling
    to_master = await add_site(api, given.master, master_bill_to, token=token)
    to_sibling = await add_site(api, sibling, sibling_bill_to["primaryBillTo"]["id"], token=token)
    master_update = await update_site(api, master_site, token=token, name="Mine")
    sibling_update = await update_site(
        api, sibling_bill_to["sites"][0]["id"], token=token, name="Mine"
    )
    node = await api.gql(NODE, {"id": master_site}, token=token)

    # then all are NOT_FOUND and nothing changed
    assert codes(to_master) == [("NOT_FOUND", ["accountId"])]
    assert codes(to_sibling) == [("NOT_FOUND", ["accountId"])]
    assert codes(master_update) == [("NOT_FOUND", ["siteId"])]
    assert codes(sibling_update) == [("NOT_FOUND", ["siteId"])]
    assert node == {"node": None}
    assert await db_sites(api.engine) == before


async def test_h4_stranger_and_former_master_get_not_found(api: Api) -> None:
    # given a member with a site, dissociated from its master, and a stranger
    given = await enterprise(api, 1, sites=True)
    member = given.members[0]
    member_sites = (
        await api.gql(
            "query($id: ID!) { account(id: $id) { primaryBillTo { id } sites { id } } }",
            {"id": member},
        )
    )["account"]
    bill_to, site = member_sites["primaryBillTo"]["id"], member_sites["sites"][0]["id"]
    await api.ok(
        "dissociateMember",
        """
        mutation($input: DissociateMemberInput!) {
          dissociateMember(input: $input) { userErrors { code } }
        }""",
        {"linkId": given.links[0]},
    )
    stranger_token = await api.token(await api.account("Stranger"))
    before = await db_sites(api.engine)

    for token in (given.master_token, stranger_token):
        # when the former master or the stranger adds or changes the member's sites
        added = await add_site(api, member, bill_to, token=token)
        updated = await update_site(api, site, token=token, name="Mine")

        # then both are NOT_FOUND
        assert codes(added) == [("NOT_FOUND", ["accountId"])]
        assert codes(updated) == [("NOT_FOUND", ["siteId"])]

    # and nothing changed
    assert await db_sites(api.engine) == before


async def test_h4_nul_character_is_invalid_input(api: Api) -> None:
    """PostgreSQL text cannot hold NUL: refused as input, not a server error."""
    # given an account with a bill-to
    account = await api.account("Acme")
    bill_to = await api.bill_to(account, "Acme AP")

    # when a site is added with a NUL in its name
    body = await api.raw(
        ADD_SITE, {"input": {"accountId": account, "billToId": bill_to, "name": "a\x00b"}}
    )

    # then it is an INVALID_INPUT user error and nothing was created
    assert "errors" not in body, body
    assert codes(body["data"]["addSite"]) == [("INVALID_INPUT", ["name"])]
    assert await db_sites(api.engine) == []
