"""P2, P3, U5: who sees what of an enterprise.

What a principal may not see does not exist for it (API.md): ``account(id)`` and
``node(id)`` are null, lists leave it out, and a mutation naming it answers NOT_FOUND,
exactly as for an id that names nothing, and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from accountgraph.accounts.models import accounts, api_tokens, bill_tos, link_events, links, sites
from accountgraph.api import ids
from tests.helpers import Api, enterprise

KINDS = ["Account", "BillTo", "Site", "Link"]
LINK_STATUSES = [None, "ACTIVE", "INVITED", "DECLINED", "DISSOCIATED"]

NODE = """
query($id: ID!) { node(id: $id) { __typename id } }"""
ACCOUNT = """
query($id: ID!) { account(id: $id) { id name } }"""
OBJECTS = """
query($id: ID!) { account(id: $id) { id billTos { id } sites { id } link { id } } }"""
ACCOUNTS = """
query($search: String) { accounts(search: $search) { totalCount edges { node { id } } } }"""
MEMBERS = """
query($id: ID!, $status: LinkStatus) {
  account(id: $id) { members(status: $status) { totalCount edges { node { id } } } }
}"""
MASTER_TREE = """
{
  viewer {
    account {
      id
      members {
        totalCount
        edges { node { id name sites { id billTo { id } } billTos { id } link { id status } } }
      }
    }
  }
}"""
NAME_ONLY_FIELDS = """
fragment NameOnly on Account {
  id name displayName branch terms salesperson role costCenterEnabled
  link { id } sites { id } billTos { id } primaryBillTo { id }
  invitations { id }
  members { totalCount edges { node { id } } }
  active: members(status: ACTIVE) { totalCount }
  invited: members(status: INVITED) { totalCount }
  declined: members(status: DECLINED) { totalCount }
  dissociated: members(status: DISSOCIATED) { totalCount }
}"""
MY_MASTER = (
    """
{ viewer { account { id link { id status master { ...NameOnly } } } } }"""
    + NAME_ONLY_FIELDS
)
ACCOUNT_NAME_ONLY = (
    """
query($id: ID!) { account(id: $id) { ...NameOnly } }"""
    + NAME_ONLY_FIELDS
)
OWN_VIEW = """
query($id: ID!) {
  viewer { account { id } }
  account(id: $id) {
    id name role billTos { id } sites { id } link { id status master { id name } }
  }
}"""
UPDATE_ACCOUNT = """
mutation($input: UpdateAccountInput!) {
  updateAccount(input: $input) { account { id } userErrors { code field message } }
}"""
DISSOCIATE = """
mutation($input: DissociateMemberInput!) {
  dissociateMember(input: $input) { link { id } userErrors { code field message } }
}"""
RESPOND = """
mutation($input: RespondToInvitationInput!) {
  respondToInvitation(input: $input) { link { id } userErrors { code field message } }
}"""
INVITE = """
mutation($input: InviteMemberInput!) {
  inviteMember(input: $input) { link { id } userErrors { code field message } }
}"""

# Every mutation that names an account-graph object: (mutation, input type, payload object).
MUTATIONS = {
    name: f"""
mutation($input: {input_type}!) {{
  {name}(input: $input) {{ {payload} userErrors {{ code field message }} }}
}}"""
    for name, input_type, payload in [
        ("updateAccount", "UpdateAccountInput", "account { id }"),
        ("addBillTo", "AddBillToInput", "billTo { id }"),
        ("updateBillTo", "UpdateBillToInput", "billTo { id }"),
        ("removeBillTo", "RemoveBillToInput", "account { id }"),
        ("addSite", "AddSiteInput", "site { id }"),
        ("updateSite", "UpdateSiteInput", "site { id }"),
        ("dissociateMember", "DissociateMemberInput", "link { id }"),
        ("respondToInvitation", "RespondToInvitationInput", "link { id }"),
        ("inviteMember", "InviteMemberInput", "link { id }"),
        ("createApiToken", "CreateApiTokenInput", "token"),
    ]
}

Objects = dict[str, str]


@dataclass(frozen=True)
class MutationCase:
    """A mutation naming ``other``'s objects (the caller's ``own`` fill the rest)."""

    id: str
    mutation: str
    kinds: tuple[str, ...]  # kinds of ``other`` it names
    field: list[str]

    def input(self, other: Objects, own: Objects) -> dict[str, Any]:
        return BUILDERS[self.id](other, own)


BUILDERS: dict[str, Callable[[Objects, Objects], dict[str, Any]]] = {
    "update-account": lambda o, _: {"accountId": o["Account"], "displayName": "Taken"},
    "add-bill-to": lambda o, _: {"accountId": o["Account"], "name": "Taken"},
    "update-bill-to": lambda o, _: {"billToId": o["BillTo"], "name": "Taken"},
    "promote-bill-to": lambda o, _: {"billToId": o["BillTo"], "isPrimary": True},
    "remove-bill-to": lambda o, _: {"billToId": o["BillTo"]},
    "add-site": lambda o, _: {"accountId": o["Account"], "name": "Taken", "billToId": o["BillTo"]},
    "add-own-site-on-their-bill-to": lambda o, own: {
        "accountId": own["Account"],
        "name": "Taken",
        "billToId": o["BillTo"],
    },
    "update-site": lambda o, _: {"siteId": o["Site"], "name": "Taken"},
    "point-own-site-at-their-bill-to": lambda o, own: {
        "siteId": own["Site"],
        "billToId": o["BillTo"],
    },
    "dissociate": lambda o, _: {"linkId": o["Link"]},
    "accept": lambda o, _: {"linkId": o["Link"], "accept": True, "permissions": []},
    "decline": lambda o, _: {"linkId": o["Link"], "accept": False},
    "invite-as-them": lambda o, own: {
        "masterId": o["Account"],
        "memberId": own["Account"],
        "type": "FINANCIAL",
    },
    "token-for-them": lambda o, _: {"accountId": o["Account"], "name": "stolen"},
}
CASES = [
    MutationCase("update-account", "updateAccount", ("Account",), ["accountId"]),
    MutationCase("add-bill-to", "addBillTo", ("Account",), ["accountId"]),
    MutationCase("update-bill-to", "updateBillTo", ("BillTo",), ["billToId"]),
    MutationCase("promote-bill-to", "updateBillTo", ("BillTo",), ["billToId"]),
    MutationCase("remove-bill-to", "removeBillTo", ("BillTo",), ["billToId"]),
    MutationCase("add-site", "addSite", ("Account", "BillTo"), ["accountId"]),
    MutationCase("add-own-site-on-their-bill-to", "addSite", ("BillTo",), ["billToId"]),
    MutationCase("update-site", "updateSite", ("Site",), ["siteId"]),
    MutationCase("point-own-site-at-their-bill-to", "updateSite", ("BillTo",), ["billToId"]),
    MutationCase("dissociate", "dissociateMember", ("Link",), ["linkId"]),
    MutationCase("accept", "respondToInvitation", ("Link",), ["linkId"]),
    MutationCase("decline", "respondToInvitation", ("Link",), ["linkId"]),
    MutationCase("invite-as-them", "inviteMember", ("Account",), ["masterId"]),
    MutationCase("token-for-them", "createApiToken", ("Account",), ["accountId"]),
]
CASE_IDS = [case.id for case in CASES]


# ---------------------------------------------------------------- the enterprise


@dataclass
class Tree:
    """A master with two ACTIVE members (each with a bill-to, a site and its link), the
    master's own bill-to and site, an account it invited, and an outsider; tokens of all."""

    master: Objects
    members: list[Objects]
    invitee: Objects
    stranger: Objects
    master_token: str
    member_tokens: list[str]
    invitee_token: str
    stranger_token: str


async def objects_of(api: Api, account_id: str) -> Objects:
    """The ids of an account's objects of every kind, as an operator reads them."""
    account = (await api.gql(OBJECTS, {"id": account_id}))["account"]
    found = {"Account": account["id"]}
    if account["billTos"]:
        found["BillTo"] = account["billTos"][0]["id"]
    if account["sites"]:
        found["Site"] = account["sites"][0]["id"]
    if account["link"]:
        found["Link"] = account["link"]["id"]
    return found


async def with_site(api: Api, name: str, **fields: Any) -> str:
    account = await api.account(name, **fields)
    bill_to = await api.bill_to(account, f"{name} AP")
    await api.site(account, f"{name} HQ", bill_to)
    return account


async def tree(api: Api) -> Tree:
    given = await enterprise(api, 2, sites=True)
    await api.ok(
        "updateAccount",
        UPDATE_ACCOUNT,
        {
            "accountId": given.master,
            "branch": "North",
            "terms": "NET30",
            "salesperson": "Sam",
            "costCenterEnabled": True,
        },
    )
    bill_to = await api.bill_to(given.master, "Master AP")
    await api.site(given.master, "Master HQ", bill_to)
    invitee = await with_site(api, "Invitee")
    await api.ok(
        "inviteMember",
        INVITE,
        {"masterId": given.master, "memberId": invitee, "type": "TRUSTEESHIP"},
    )
    stranger = await with_site(api, "Stranger")
    master = await objects_of(api, given.master)
    master["Link"] = given.links[0]  # a master has no link of its own; any of the tree's
    return Tree(
        master=master,
        members=[await objects_of(api, member) for member in given.members],
        invitee=await objects_of(api, invitee),
        stranger=await objects_of(api, stranger),
        master_token=given.master_token,
        member_tokens=given.member_tokens,
        invitee_token=await api.token(invitee),
        stranger_token=await api.token(stranger),
    )


# ---------------------------------------------------------------- helpers


async def graph_state(engine: AsyncEngine) -> dict[str, list[Any]]:
    async with engine.connect() as conn:
        return {
            table.name: list((await conn.execute(select(table).order_by(table.c.id))).all())
            for table in (accounts, links, link_events, bill_tos, sites, api_tokens)
        }


def missing(objects: Objects) -> Objects:
    """Well-formed ids of the same kinds that name no row."""
    return {kind: ids.encode(kind, 987_654_321) for kind in objects}


async def node(api: Api, global_id: str, token: str) -> Any:
    return (await api.gql(NODE, {"id": global_id}, token=token))["node"]


async def listed(api: Api, token: str, search: str | None = None) -> list[str]:
    found = (await api.gql(ACCOUNTS, {"search": search}, token=token))["accounts"]
    assert found["totalCount"] == len(found["edges"])
    return [edge["node"]["id"] for edge in found["edges"]]


async def member_ids(api: Api, master: str, token: str, status: str | None) -> list[str]:
    account = (await api.gql(MEMBERS, {"id": master, "status": status}, token=token))["account"]
    if account is None:
        return []
    members = account["members"]
    assert members["totalCount"] == len(members["edges"])
    return [edge["node"]["id"] for edge in members["edges"]]


async def assert_not_found(
    api: Api, case: MutationCase, other: Objects, own: Objects, token: str
) -> None:
    """The mutation naming ``other`` answers NOT_FOUND, like one naming ids that do not
    exist, and changes nothing."""
    before = await graph_state(api.engine)
    hidden = await api.mutate(
        case.mutation, MUTATIONS[case.mutation], case.input(other, own), token
    )
    assert [(e["code"], e["field"]) for e in hidden["userErrors"]] == [("NOT_FOUND", case.field)], (
        hidden
    )
    assert all(value is None for key, value in hidden.items() if key != "userErrors")
    assert await graph_state(api.engine) == before
    absent = await api.mutate(
        case.mutation, MUTATIONS[case.mutation], case.input(missing(other), own), token
    )
    assert absent == hidden  # nothing reveals whether a hidden id exists


# ---------------------------------------------------------------- P2: the master's view


@pytest.mark.parametrize("kind", KINDS)
async def test_p2_master_sees_every_object_of_its_active_members(api: Api, kind: str) -> None:
    # given
    given = await tree(api)

    # when
    found = [await node(api, member[kind], given.master_token) for member in given.members]

    # then
    assert found == [{"__typename": kind, "id": member[kind]} for member in given.members]


async def test_p2_master_reads_itself_and_its_members(api: Api) -> None:
    # given
    given = await tree(api)
    token = given.master_token
    master, members = given.master["Account"], [m["Account"] for m in given.members]

    # when
    read = [
        (await api.gql(ACCOUNT, {"id": account}, token=token))["account"]
        for account in [master, *members]
    ]
    view = (await api.gql(MASTER_TREE, token=token))["viewer"]["account"]

    # then
    assert [a["id"] for a in read] == [master, *members]
    assert await listed(api, token) == [master, *members]
    assert await listed(api, token, "member-2") == [members[1]]
    assert await member_ids(api, master, token, None) == members
    assert await member_ids(api, master, token, "ACTIVE") == members
    assert view["id"] == master
    assert view["members"]["totalCount"] == 2
    for edge, member in zip(view["members"]["edges"], given.members, strict=True):
        assert edge["node"]["id"] == member["Account"]
        assert edge["node"]["billTos"] == [{"id": member["BillTo"]}]
        assert edge["node"]["sites"] == [{"id": member["Site"], "billTo": {"id": member["BillTo"]}}]
        assert edge["node"]["link"] == {"id": member["Link"], "status": "ACTIVE"}


async def test_p2_master_sees_an_invited_account_by_name_only(api: Api) -> None:
    # given
    given = await tree(api)
    token, invitee = given.master_token, given.invitee

    # when
    seen = (await api.gql(ACCOUNT_NAME_ONLY, {"id": invitee["Account"]}, token=token))["account"]

    # then: the invitation names it, nothing more (it is not a member yet)
    assert seen["name"] == "Invitee"
    assert (seen["sites"], seen["billTos"], seen["primaryBillTo"]) == ([], [], None)
    assert await member_ids(api, given.master["Account"], token, "INVITED") == [invitee["Account"]]
    assert invitee["Account"] not in await listed(api, token)
    assert invitee["Account"] not in await member_ids(api, given.master["Account"], token, None)
    assert await node(api, invitee["BillTo"], token) is None
    assert await node(api, invitee["Site"], token) is None


@pytest.mark.parametrize("kind", ["Account", "BillTo", "Site"])
async def test_p2_master_cannot_read_strangers(api: Api, kind: str) -> None:
    # given
    given = await tree(api)

    # when / then
    assert await node(api, given.stranger[kind], given.master_token) is None
    assert given.stranger["Account"] not in await listed(api, given.master_token)


# ---------------------------------------------------------------- P3: a member's view


@pytest.mark.parametrize("kind", KINDS)
async def test_p3_member_never_reads_a_sibling(api: Api, kind: str) -> None:
    # given
    given = await tree(api)
    own, sibling = given.members
    token = given.member_tokens[0]

    # when
    mine = await node(api, own[kind], token)
    theirs = await node(api, sibling[kind], token)

    # then
    assert mine == {"__typename": kind, "id": own[kind]}
    assert theirs is None
    if kind == "Account":
        assert (await api.gql(ACCOUNT, {"id": sibling["Account"]}, token=token))["account"] is None


async def test_p3_siblings_are_absent_from_every_list(api: Api) -> None:
    # given
    given = await tree(api)
    own = given.members[0]["Account"]
    token = given.member_tokens[0]
    master = given.master["Account"]

    # then
    assert await listed(api, token) == [own]
    assert await listed(api, token, "Member") == [own]
    assert await listed(api, token, "Member-2") == []
    assert await listed(api, token, "Master") == []
    for status in LINK_STATUSES:
        assert await member_ids(api, own, token, status) == []
        assert await member_ids(api, master, token, status) == []


async def test_p3_member_sees_its_master_only_by_name(api: Api) -> None:
    # given
    given = await tree(api)
    token = given.member_tokens[0]
    master = given.master["Account"]

    # when
    own = (await api.gql(MY_MASTER, token=token))["viewer"]["account"]
    direct = (await api.gql(ACCOUNT_NAME_ONLY, {"id": master}, token=token))["account"]

    # then
    assert own["link"]["id"] == given.members[0]["Link"]
    assert own["link"]["master"] == {
        "id": master,
        "name": "Master",
        "displayName": "Master",
        "branch": None,
        "terms": None,
        "salesperson": None,
        "role": "MASTER",
        "costCenterEnabled": False,
        "link": None,
        "sites": [],
        "billTos": [],
        "primaryBillTo": None,
        "invitations": [],
        "members": {"totalCount": 0, "edges": []},
        "active": {"totalCount": 0},
        "invited": {"totalCount": 0},
        "declined": {"totalCount": 0},
        "dissociated": {"totalCount": 0},
    }
    # account(id) of its master shows no more than the link does
    assert direct == own["link"]["master"]
    for kind in ("BillTo", "Site"):
        assert await node(api, given.master[kind], token) is None
    # ... while the master itself sees its details
    full = (await api.gql(ACCOUNT_NAME_ONLY, {"id": master}, token=given.master_token))["account"]
    assert (full["branch"], full["terms"], full["salesperson"]) == ("North", "NET30", "Sam")
    assert full["costCenterEnabled"] is True
    assert len(full["sites"]) == len(full["billTos"]) == 1
    assert full["members"]["totalCount"] == 2
    assert [i["id"] for i in full["invitations"]] != []


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
async def test_p3_mutations_naming_a_siblings_objects_are_not_found(
    api: Api, case: MutationCase
) -> None:
    # given
    given = await tree(api)
    own, sibling = given.members

    # when / then
    await assert_not_found(api, case, sibling, own, given.member_tokens[0])


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if "Link" not in c.kinds],
    ids=[c.id for c in CASES if "Link" not in c.kinds],
)
async def test_p3_mutations_naming_the_masters_objects_are_not_found(
    api: Api, case: MutationCase
) -> None:
    # given
    given = await tree(api)

    # when / then
    await assert_not_found(api, case, given.master, given.members[0], given.member_tokens[0])


# ---------------------------------------------------------------- U5: after dissociation


async def dissociated(api: Api, given: Tree, by: str) -> None:
    token = given.master_token if by == "master" else given.member_tokens[0]
    payload = await api.mutate(
        "dissociateMember", DISSOCIATE, {"linkId": given.members[0]["Link"]}, token
    )
    assert payload["userErrors"] == []


@pytest.mark.parametrize("by", ["master", "member"])
@pytest.mark.parametrize("kind", KINDS)
async def test_u5_former_master_sees_nothing_of_the_member(api: Api, kind: str, by: str) -> None:
    # given
    given = await tree(api)
    former = given.members[0]
    assert await node(api, former[kind], given.master_token) is not None

    # when
    await dissociated(api, given, by)

    # then
    assert await node(api, former[kind], given.master_token) is None
    if kind == "Account":
        assert (await api.gql(ACCOUNT, {"id": former["Account"]}, token=given.master_token))[
            "account"
        ] is None


async def test_u5_former_member_is_absent_from_the_masters_lists(api: Api) -> None:
    # given
    given = await tree(api)
    former, remaining = given.members
    master, token = given.master["Account"], given.master_token

    # when
    await dissociated(api, given, "member")

    # then
    for status in LINK_STATUSES:
        assert former["Account"] not in await member_ids(api, master, token, status)
    assert await member_ids(api, master, token, None) == [remaining["Account"]]
    assert await listed(api, token) == [master, remaining["Account"]]
    assert await listed(api, token, "Member-1") == []
    view = (await api.gql(MASTER_TREE, token=token))["viewer"]["account"]
    assert [edge["node"]["id"] for edge in view["members"]["edges"]] == [remaining["Account"]]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
async def test_u5_former_masters_mutations_on_the_member_are_not_found(
    api: Api, case: MutationCase
) -> None:
    # given
    given = await tree(api)
    await dissociated(api, given, "member")

    # when / then
    await assert_not_found(api, case, given.members[0], given.master, given.master_token)


async def test_u5_dissociated_member_still_sees_its_own_account(api: Api) -> None:
    # given
    given = await tree(api)
    own = given.members[0]
    token = given.member_tokens[0]

    # when
    await dissociated(api, given, "master")

    # then
    data = await api.gql(OWN_VIEW, {"id": own["Account"]}, token=token)
    assert data["viewer"]["account"] == {"id": own["Account"]}
    assert data["account"] == {
        "id": own["Account"],
        "name": "Member-1",
        "role": "STANDALONE",
        "billTos": [{"id": own["BillTo"]}],
        "sites": [{"id": own["Site"]}],
        "link": {
            "id": own["Link"],
            "status": "DISSOCIATED",
            "master": {"id": given.master["Account"], "name": "Master"},
        },
    }
    for kind in KINDS:
        assert await node(api, own[kind], token) == {"__typename": kind, "id": own[kind]}
    assert await listed(api, token) == [own["Account"]]


async def test_u5_former_master_sees_nothing_despite_an_earlier_declined_invitation(
    api: Api,
) -> None:
    """A master may see by name an account that declined its invitation; once that account
    was its member and left, it sees nothing of it (P3), the old invitation included."""
    # given: X declines M, later joins M and leaves
    master = await api.account("Master")
    member = await with_site(api, "X")
    master_token = await api.token(master)
    first = await api.mutate(
        "inviteMember",
        INVITE,
        {"masterId": master, "memberId": member, "type": "FINANCIAL"},
        master_token,
    )
    declined = first["link"]["id"]
    await api.ok("respondToInvitation", RESPOND, {"linkId": declined, "accept": False})
    assert (await api.gql(ACCOUNT, {"id": member}, token=master_token))["account"] is not None
    active = await api.link(master, member)
    await api.ok("dissociateMember", DISSOCIATE, {"linkId": active}, token=await api.token(member))

    # then
    assert (await api.gql(ACCOUNT, {"id": member}, token=master_token))["account"] is None
    for global_id in (member, declined, active):
        assert await node(api, global_id, master_token) is None
    for status in LINK_STATUSES:
        assert await member_ids(api, master, master_token, status) == []


# ---------------------------------------------------------------- strangers


@pytest.mark.parametrize("whose", ["master", "member"])
@pytest.mark.parametrize("kind", KINDS)
async def test_p3_a_stranger_sees_nothing_of_the_enterprise(
    api: Api, kind: str, whose: str
) -> None:
    # given
    given = await tree(api)
    target = given.master if whose == "master" else given.members[0]

    # when / then
    assert await node(api, target[kind], given.stranger_token) is None
    if kind == "Account":
        assert (await api.gql(ACCOUNT, {"id": target["Account"]}, token=given.stranger_token))[
            "account"
        ] is None
        assert await member_ids(api, target["Account"], given.stranger_token, None) == []


async def test_p3_a_stranger_lists_only_itself(api: Api) -> None:
    # given
    given = await tree(api)

    # then
    assert await listed(api, given.stranger_token) == [given.stranger["Account"]]
    assert await listed(api, given.stranger_token, "Master") == []
    assert await listed(api, given.stranger_token, "Member") == []


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
async def test_p3_a_strangers_mutations_on_the_enterprise_are_not_found(
    api: Api, case: MutationCase
) -> None:
    # given
    given = await tree(api)

    # when / then
    await assert_not_found(api, case, given.members[0], given.stranger, given.stranger_token)
