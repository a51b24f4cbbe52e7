"""H1, H2, H5, U1, U5 (link side): invitations, answers, dissociation and their history.

A master invites any account by id (INVITED); only the invitee answers, accepting with
its permission grants (ACTIVE) or declining (DECLINED); either side or an operator ends
an ACTIVE link (DISSOCIATED). Every change is a ``Link.history`` event with its actor and
time. Every refusal is checked against the database: no link, status or event changed.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from accountgraph.accounts.models import accounts, api_tokens, bill_tos, link_events, links, sites
from accountgraph.api import ids
from tests.helpers import ALL_PERMISSIONS, Api, enterprise

LINK_FIELDS = """
fragment LinkFields on Link {
  id type status permissions invitedAt activatedAt endedAt
  master { id name } member { id name }
  history { status permissions actor at }
}"""
NODE_LINK = (
    """
query($id: ID!) { node(id: $id) { ...LinkFields } }"""
    + LINK_FIELDS
)
INVITE = (
    """
mutation($input: InviteMemberInput!) {
  inviteMember(input: $input) { link { ...LinkFields } userErrors { code field message } }
}"""
    + LINK_FIELDS
)
RESPOND = (
    """
mutation($input: RespondToInvitationInput!) {
  respondToInvitation(input: $input) {
    link { ...LinkFields } userErrors { code field message }
  }
}"""
    + LINK_FIELDS
)
DISSOCIATE = (
    """
mutation($input: DissociateMemberInput!) {
  dissociateMember(input: $input) { link { ...LinkFields } userErrors { code field message } }
}"""
    + LINK_FIELDS
)
ROLE = """
query($id: ID!) { account(id: $id) { id role link { id status } } }"""
MY_INVITATIONS = """
{ viewer { account { id invitations { id status type master { id name } member { id } } } } }"""
MEMBERS = """
query($id: ID!, $status: LinkStatus) {
  account(id: $id) { members(status: $status) { totalCount edges { node { id } } } }
}"""
SETTINGS = "{ settings { billingHierarchyEnabled } }"
UPDATE_SETTINGS = """
mutation($input: UpdateSettingsInput!) {
  updateSettings(input: $input) {
    settings { billingHierarchyEnabled } userErrors { code field message }
  }
}"""

OPERATOR_ACTOR = "operator:env"
SOON = timedelta(seconds=30)  # the database clock and ours run on the same host


# ---------------------------------------------------------------- helpers


async def graph_state(engine: AsyncEngine) -> dict[str, list[Any]]:
    """Every row of the account graph's tables: a refusal must leave them all equal."""
    async with engine.connect() as conn:
        return {
            table.name: list((await conn.execute(select(table).order_by(table.c.id))).all())
            for table in (accounts, links, link_events, bill_tos, sites, api_tokens)
        }


async def table_counts(engine: AsyncEngine) -> tuple[int, int]:
    async with engine.connect() as conn:
        link_count = (await conn.execute(select(func.count()).select_from(links))).scalar_one()
        events = (await conn.execute(select(func.count()).select_from(link_events))).scalar_one()
    return link_count, events


async def read_link(api: Api, link_id: str) -> dict[str, Any]:
    """The link as an operator sees it (operators see every link, P4)."""
    link: dict[str, Any] = (await api.gql(NODE_LINK, {"id": link_id}))["node"]
    assert link is not None
    return link


async def role_of(api: Api, account_id: str) -> str:
    account: dict[str, Any] = (await api.gql(ROLE, {"id": account_id}))["account"]
    role: str = account["role"]
    return role


async def invite(
    api: Api, master: str, member: str, type: str = "TRUSTEESHIP", token: str | None = None
) -> dict[str, Any]:
    kwargs = {} if token is None else {"token": token}
    payload = await api.ok(
        "inviteMember", INVITE, {"masterId": master, "memberId": member, "type": type}, **kwargs
    )
    link: dict[str, Any] = payload["link"]
    return link


async def respond(
    api: Api,
    link_id: str,
    *,
    accept: bool,
    permissions: list[str] | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    kwargs = {} if token is None else {"token": token}
    payload: dict[str, Any] = await api.ok(
        "respondToInvitation",
        RESPOND,
        {"linkId": link_id, "accept": accept, "permissions": permissions},
        **kwargs,
    )
    return payload


async def dissociate(api: Api, link_id: str, token: str | None = None) -> dict[str, Any]:
    kwargs = {} if token is None else {"token": token}
    payload: dict[str, Any] = await api.ok(
        "dissociateMember", DISSOCIATE, {"linkId": link_id}, **kwargs
    )
    return payload


async def refused(
    api: Api,
    name: str,
    query: str,
    input: dict[str, Any],
    code: str,
    field: list[str] | None,
    token: str | None = None,
) -> None:
    """The mutation answers exactly one user error ``code`` at ``field``, returns no link,
    and changes nothing in the database."""
    kwargs = {} if token is None else {"token": token}
    before = await graph_state(api.engine)
    payload = await api.mutate(name, query, input, **kwargs)
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [(code, field)], payload
    assert payload["link"] is None
    assert await graph_state(api.engine) == before


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def recent(value: str, since: datetime) -> bool:
    return since - SOON <= at(value) <= datetime.now(UTC) + SOON


def events(link: dict[str, Any]) -> list[tuple[str, list[str], str]]:
    return [(e["status"], e["permissions"], e["actor"]) for e in link["history"]]


def missing(type_name: str) -> str:
    """A well-formed id of ``type_name`` that names no row."""
    return ids.encode(type_name, 987_654_321)


async def pending(api: Api) -> tuple[str, str, str, str, str]:
    """A master and an account it invited (TRUSTEESHIP); tokens of both; the link id."""
    master = await api.account("Master")
    member = await api.account("Invitee")
    link = await invite(api, master, member)
    return master, member, await api.token(master), await api.token(member), link["id"]


async def link_in_state(api: Api, state: str) -> tuple[str, str, str, str, str]:
    """Like ``pending`` with the link moved to ``state`` by the operator."""
    master, member, master_token, member_token, link_id = await pending(api)
    if state in ("ACTIVE", "DISSOCIATED"):
        await respond(api, link_id, accept=True, permissions=ALL_PERMISSIONS)
    if state == "DECLINED":
        await respond(api, link_id, accept=False)
    if state == "DISSOCIATED":
        await dissociate(api, link_id)
    assert (await read_link(api, link_id))["status"] == state
    return master, member, master_token, member_token, link_id


# ---------------------------------------------------------------- invite and answer (U1, H2)


@pytest.mark.parametrize("link_type", ["TRUSTEESHIP", "FINANCIAL"])
async def test_u1_invitation_is_invited_and_seen_by_the_invitee(api: Api, link_type: str) -> None:
    # given
    master = await api.account("Master")
    member = await api.account("Invitee")
    master_token, member_token = await api.token(master), await api.token(member)
    started = datetime.now(UTC)

    # when
    link = await invite(api, master, member, link_type, token=master_token)

    # then
    assert link["type"] == link_type
    assert link["status"] == "INVITED"
    assert link["permissions"] == []
    assert recent(link["invitedAt"], started)
    assert link["activatedAt"] is None and link["endedAt"] is None
    assert link["master"] == {"id": master, "name": "Master"}
    assert link["member"] == {"id": member, "name": "Invitee"}
    assert events(link) == [("INVITED", [], "Master:test")]
    assert recent(link["history"][0]["at"], started)
    seen = (await api.gql(MY_INVITATIONS, token=member_token))["viewer"]["account"]
    assert seen["invitations"] == [
        {
            "id": link["id"],
            "status": "INVITED",
            "type": link_type,
            "master": {"id": master, "name": "Master"},
            "member": {"id": member},
        }
    ]
    sent = (await api.gql(MY_INVITATIONS, token=master_token))["viewer"]["account"]
    assert [i["id"] for i in sent["invitations"]] == [link["id"]]
    # H1: an open invitation makes nobody a master or a member yet
    assert await role_of(api, master) == "STANDALONE"
    assert await role_of(api, member) == "STANDALONE"
    assert await table_counts(api.engine) == (1, 1)


@pytest.mark.parametrize(
    ("granted", "expected"),
    [
        ([], []),
        (["VIEW_FINANCE"], ["VIEW_FINANCE"]),
        (["MANAGE_INVOICES", "SYNC_CREDIT_CONTROL"], ["SYNC_CREDIT_CONTROL", "MANAGE_INVOICES"]),
        (
            ["MANAGE_INVOICES", "VIEW_FINANCE", "SYNC_CREDIT_CONTROL", "VIEW_FINANCE"],
            ALL_PERMISSIONS,
        ),
    ],
    ids=["none", "view-finance", "two", "all-with-duplicate"],
)
async def test_u1_accept_activates_the_link_with_the_granted_permissions(
    api: Api, granted: list[str], expected: list[str]
) -> None:
    # given
    master, member, _, member_token, link_id = await pending(api)
    started = datetime.now(UTC)

    # when
    payload = await respond(api, link_id, accept=True, permissions=granted, token=member_token)

    # then
    link = payload["link"]
    assert link["status"] == "ACTIVE"
    assert link["permissions"] == expected
    assert recent(link["activatedAt"], started)
    assert at(link["activatedAt"]) >= at(link["invitedAt"])
    assert link["endedAt"] is None
    assert events(link) == [("INVITED", [], "operator:env"), ("ACTIVE", expected, "Invitee:test")]
    assert recent(link["history"][1]["at"], started)
    assert await read_link(api, link_id) == link
    # H1: the master is a master, the invitee its member; the invitation is no longer open
    assert await role_of(api, master) == "MASTER"
    assert await role_of(api, member) == "MEMBER"
    assert (await api.gql(ROLE, {"id": member}))["account"]["link"] == {
        "id": link_id,
        "status": "ACTIVE",
    }
    seen = (await api.gql(MY_INVITATIONS, token=member_token))["viewer"]["account"]
    assert seen["invitations"] == []
    assert await table_counts(api.engine) == (1, 2)


async def test_u1_decline_ends_the_invitation(api: Api) -> None:
    # given
    master, member, master_token, member_token, link_id = await pending(api)
    started = datetime.now(UTC)

    # when
    payload = await respond(
        api, link_id, accept=False, permissions=["VIEW_FINANCE"], token=member_token
    )

    # then
    link = payload["link"]
    assert link["status"] == "DECLINED"
    assert link["permissions"] == []
    assert link["activatedAt"] is None
    assert recent(link["endedAt"], started)
    assert events(link) == [("INVITED", [], "operator:env"), ("DECLINED", [], "Invitee:test")]
    assert await role_of(api, master) == "STANDALONE"
    assert await role_of(api, member) == "STANDALONE"
    # Account.link is "any status but DECLINED"
    assert (await api.gql(ROLE, {"id": member}))["account"]["link"] is None
    assert (await api.gql(MY_INVITATIONS, token=member_token))["viewer"]["account"][
        "invitations"
    ] == []
    # the master still sees how its invitation ended
    seen = (await api.gql(NODE_LINK, {"id": link_id}, token=master_token))["node"]
    assert seen["status"] == "DECLINED"
    assert await table_counts(api.engine) == (1, 2)


# ---------------------------------------------------------------- dissociation (U5, H2)


@pytest.mark.parametrize("by", ["master", "member", "operator"])
async def test_u5_either_side_or_an_operator_dissociates(api: Api, by: str) -> None:
    # given
    master, member, master_token, member_token, link_id = await link_in_state(api, "ACTIVE")
    token = {"master": master_token, "member": member_token, "operator": None}[by]
    actor = {"master": "Master:test", "member": "Invitee:test", "operator": OPERATOR_ACTOR}[by]
    started = datetime.now(UTC)

    # when
    payload = await dissociate(api, link_id, token=token)

    # then
    if by == "master":
        # U5/P3: a dissociated link and its member are invisible to the former master, so
        # its own payload cannot show the link any more.
        assert payload["link"] is None
    else:
        assert payload["link"]["status"] == "DISSOCIATED"
    link = await read_link(api, link_id)
    assert link["status"] == "DISSOCIATED"
    assert recent(link["endedAt"], started)
    assert link["activatedAt"] is not None
    assert link["permissions"] == ALL_PERMISSIONS
    assert events(link) == [
        ("INVITED", [], OPERATOR_ACTOR),
        ("ACTIVE", ALL_PERMISSIONS, OPERATOR_ACTOR),
        ("DISSOCIATED", ALL_PERMISSIONS, actor),
    ]
    assert recent(link["history"][2]["at"], started)
    assert await role_of(api, master) == "STANDALONE"
    assert await role_of(api, member) == "STANDALONE"
    # the member still has its (ended) link
    own = (await api.gql(ROLE, {"id": member}, token=member_token))["account"]
    assert own["link"] == {"id": link_id, "status": "DISSOCIATED"}
    assert await table_counts(api.engine) == (1, 3)


async def test_h2_every_change_is_recorded_with_actor_and_time(api: Api) -> None:
    # given
    master = await api.account("Master")
    member = await api.account("Member")
    master_token, member_token = await api.token(master, "alice"), await api.token(member, "bob")

    # when
    link = await invite(api, master, member, "FINANCIAL", token=master_token)
    await respond(api, link["id"], accept=True, permissions=["VIEW_FINANCE"], token=member_token)
    await dissociate(api, link["id"])

    # then
    seen = (await api.gql(NODE_LINK, {"id": link["id"]}, token=member_token))["node"]
    assert events(seen) == [
        ("INVITED", [], "Master:alice"),
        ("ACTIVE", ["VIEW_FINANCE"], "Member:bob"),
        ("DISSOCIATED", ["VIEW_FINANCE"], OPERATOR_ACTOR),
    ]
    times = [at(event["at"]) for event in seen["history"]]
    assert times == sorted(times)
    assert at(seen["invitedAt"]) <= times[0] + SOON
    async with api.engine.connect() as conn:
        stored = (
            await conn.execute(
                select(link_events.c.status, link_events.c.actor).order_by(link_events.c.id)
            )
        ).all()
    assert [tuple(row) for row in stored] == [
        ("INVITED", "Master:alice"),
        ("ACTIVE", "Member:bob"),
        ("DISSOCIATED", OPERATOR_ACTOR),
    ]


# ---------------------------------------------------------------- roles and one master (H1)


async def test_h1_roles_are_master_member_or_standalone(api: Api) -> None:
    # given
    given = await enterprise(api, 2)
    stranger = await api.account("Stranger")
    invited_only = await api.account("Inviter")
    await invite(api, invited_only, stranger)

    # then
    assert await role_of(api, given.master) == "MASTER"
    assert [await role_of(api, member) for member in given.members] == ["MEMBER", "MEMBER"]
    assert await role_of(api, stranger) == "STANDALONE"
    assert await role_of(api, invited_only) == "STANDALONE"

    # when every member leaves, the master is standalone again
    for link_id in given.links:
        await dissociate(api, link_id)
    assert await role_of(api, given.master) == "STANDALONE"
    assert [await role_of(api, member) for member in given.members] == ["STANDALONE", "STANDALONE"]


async def test_h1_after_dissociation_a_member_can_join_another_master(api: Api) -> None:
    # given
    first, second = await api.account("First"), await api.account("Second")
    member = await api.account("Member")
    first_link = await api.link(first, member)
    member_token = await api.token(member)
    await refused(
        api,
        "inviteMember",
        INVITE,
        {"masterId": second, "memberId": member, "type": "FINANCIAL"},
        "ALREADY_A_MEMBER",
        ["memberId"],
    )

    # when
    await dissociate(api, first_link, token=member_token)
    second_link = await invite(api, second, member, "FINANCIAL")
    await respond(api, second_link["id"], accept=True, token=member_token)

    # then
    assert (await read_link(api, second_link["id"]))["status"] == "ACTIVE"
    assert (await read_link(api, first_link))["status"] == "DISSOCIATED"
    own = (await api.gql(ROLE, {"id": member}, token=member_token))["account"]
    assert own == {
        "id": member,
        "role": "MEMBER",
        "link": {"id": second_link["id"], "status": "ACTIVE"},
    }
    assert await role_of(api, first) == "STANDALONE"
    assert await role_of(api, second) == "MASTER"


async def test_h1_the_former_master_may_invite_again_after_dissociation(api: Api) -> None:
    # given
    master, member = await api.account("Master"), await api.account("Member")
    old = await api.link(master, member)
    await dissociate(api, old)

    # when
    again = await invite(api, master, member)
    await respond(api, again["id"], accept=True, permissions=["VIEW_FINANCE"])

    # then
    assert again["id"] != old
    assert (await read_link(api, again["id"]))["status"] == "ACTIVE"
    assert await role_of(api, member) == "MEMBER"


async def test_h1_member_link_is_its_active_link_despite_a_later_invitation(api: Api) -> None:
    """An invitation another master sent before the account joined stays open (it can only
    be declined now); ``Account.link`` is still the ACTIVE link to its master."""
    # given
    first, second = await api.account("First"), await api.account("Second")
    member = await api.account("Member")
    member_token = await api.token(member)
    first_link = await invite(api, first, member)
    second_link = await invite(api, second, member)

    # when
    await respond(api, first_link["id"], accept=True, token=member_token)

    # then
    own = (await api.gql(ROLE, {"id": member}, token=member_token))["account"]
    assert own["link"] == {"id": first_link["id"], "status": "ACTIVE"}
    seen = (await api.gql(MY_INVITATIONS, token=member_token))["viewer"]["account"]
    assert [i["id"] for i in seen["invitations"]] == [second_link["id"]]


async def test_h1_concurrent_accepts_make_the_account_a_member_of_one_master(api: Api) -> None:
    # given
    masters = [await api.account(f"Master-{n}") for n in range(4)]
    member = await api.account("Member")
    member_token = await api.token(member)
    link_ids = [(await invite(api, master, member))["id"] for master in masters]

    # when
    payloads = await asyncio.gather(
        *(
            api.mutate(
                "respondToInvitation",
                RESPOND,
                {"linkId": link_id, "accept": True, "permissions": []},
                member_token,
            )
            for link_id in link_ids
        )
    )

    # then
    accepted = [p for p in payloads if not p["userErrors"]]
    assert len(accepted) == 1
    assert (
        sorted(p["userErrors"][0]["code"] for p in payloads if p["userErrors"])
        == ["ALREADY_A_MEMBER"] * 3
    )
    statuses = [(await read_link(api, link_id))["status"] for link_id in link_ids]
    assert sorted(statuses) == ["ACTIVE", "INVITED", "INVITED", "INVITED"]
    async with api.engine.connect() as conn:
        active = (
            await conn.execute(
                select(func.count()).where(
                    links.c.member_id == ids.decode_as(member, "Account"),
                    links.c.status == "ACTIVE",
                )
            )
        ).scalar_one()
    assert active == 1


# ---------------------------------------------------------------- ALREADY_A_MEMBER (H1)


async def test_h1_inviting_a_member_of_another_master_is_refused(api: Api) -> None:
    # given
    given = await enterprise(api, 1)
    other = await api.account("Other")
    other_token = await api.token(other)

    # when / then
    for link_type in ("TRUSTEESHIP", "FINANCIAL"):
        await refused(
            api,
            "inviteMember",
            INVITE,
            {"masterId": other, "memberId": given.members[0], "type": link_type},
            "ALREADY_A_MEMBER",
            ["memberId"],
            token=other_token,
        )
    # the same master cannot invite its own member again either
    await refused(
        api,
        "inviteMember",
        INVITE,
        {"masterId": given.master, "memberId": given.members[0], "type": "FINANCIAL"},
        "ALREADY_A_MEMBER",
        ["memberId"],
        token=given.master_token,
    )
    assert [(await read_link(api, link))["status"] for link in given.links] == ["ACTIVE"]


async def test_h1_inviting_an_account_that_has_members_is_refused(api: Api) -> None:
    # given
    given = await enterprise(api, 1)
    other = await api.account("Other")
    other_token = await api.token(other)

    # when / then
    await refused(
        api,
        "inviteMember",
        INVITE,
        {"masterId": other, "memberId": given.master, "type": "TRUSTEESHIP"},
        "ALREADY_A_MEMBER",
        ["memberId"],
        token=other_token,
    )
    assert await role_of(api, given.master) == "MASTER"


@pytest.mark.parametrize("by", ["member", "operator"])
async def test_h1_a_member_cannot_invite_members_of_its_own(api: Api, by: str) -> None:
    # given
    given = await enterprise(api, 1)
    standalone = await api.account("Standalone")
    token = given.member_tokens[0] if by == "member" else None

    # when / then
    await refused(
        api,
        "inviteMember",
        INVITE,
        {"masterId": given.members[0], "memberId": standalone, "type": "FINANCIAL"},
        "ALREADY_A_MEMBER",
        ["masterId"],
        token=token,
    )


async def test_h1_accepting_after_joining_another_master_is_refused(api: Api) -> None:
    # given: two open invitations; the account joins the second master
    first, second = await api.account("First"), await api.account("Second")
    member = await api.account("Member")
    member_token = await api.token(member)
    first_link = await invite(api, first, member)
    second_link = await invite(api, second, member, "FINANCIAL")
    await respond(api, second_link["id"], accept=True, token=member_token)

    # when / then
    await refused(
        api,
        "respondToInvitation",
        RESPOND,
        {"linkId": first_link["id"], "accept": True, "permissions": ALL_PERMISSIONS},
        "ALREADY_A_MEMBER",
        ["linkId"],
        token=member_token,
    )
    assert (await read_link(api, first_link["id"]))["status"] == "INVITED"
    assert len((await read_link(api, first_link["id"]))["history"]) == 1

    # declining the stale invitation is still possible
    await respond(api, first_link["id"], accept=False, token=member_token)
    assert (await read_link(api, first_link["id"]))["status"] == "DECLINED"
    assert (await read_link(api, second_link["id"]))["status"] == "ACTIVE"


async def test_h1_accepting_after_becoming_a_master_is_refused(api: Api) -> None:
    # given: X is invited by M, then gets a member of its own
    master, account, its_member = (
        await api.account("M"),
        await api.account("X"),
        await api.account("Y"),
    )
    link = await invite(api, master, account)
    await api.link(account, its_member)

    # when / then
    await refused(
        api,
        "respondToInvitation",
        RESPOND,
        {"linkId": link["id"], "accept": True, "permissions": []},
        "ALREADY_A_MEMBER",
        ["linkId"],
        token=await api.token(account),
    )
    assert (await read_link(api, link["id"]))["status"] == "INVITED"


async def test_h1_accepting_when_the_inviter_became_a_member_is_refused(api: Api) -> None:
    # given: A invites X, then A itself joins B
    inviter, account, top = (await api.account("A"), await api.account("X"), await api.account("B"))
    link = await invite(api, inviter, account)
    await api.link(top, inviter)

    # when / then
    await refused(
        api,
        "respondToInvitation",
        RESPOND,
        {"linkId": link["id"], "accept": True, "permissions": []},
        "ALREADY_A_MEMBER",
        ["linkId"],
        token=await api.token(account),
    )
    assert (await read_link(api, link["id"]))["status"] == "INVITED"
    assert await role_of(api, account) == "STANDALONE"


# ---------------------------------------------------------------- H5


async def test_h5_disabled_hierarchy_refuses_new_trusteeship_links_only(api: Api) -> None:
    # given
    given = await enterprise(api, 1)
    candidate = await api.account("Candidate")
    pending_link = await invite(api, given.master, candidate)  # TRUSTEESHIP, still INVITED
    newcomer = await api.account("Newcomer")

    # when
    payload = await api.ok("updateSettings", UPDATE_SETTINGS, {"billingHierarchyEnabled": False})

    # then
    assert payload["settings"] == {"billingHierarchyEnabled": False}
    assert (await api.gql(SETTINGS, token=given.master_token))["settings"] == {
        "billingHierarchyEnabled": False
    }
    await refused(
        api,
        "inviteMember",
        INVITE,
        {"masterId": given.master, "memberId": newcomer, "type": "TRUSTEESHIP"},
        "HIERARCHY_DISABLED",
        ["type"],
        token=given.master_token,
    )
    # accepting an earlier TRUSTEESHIP invitation would create one too
    await refused(
        api,
        "respondToInvitation",
        RESPOND,
        {"linkId": pending_link["id"], "accept": True, "permissions": []},
        "HIERARCHY_DISABLED",
        ["linkId"],
        token=await api.token(candidate),
    )
    # FINANCIAL links are still made
    financial = await invite(api, given.master, newcomer, "FINANCIAL", token=given.master_token)
    await respond(api, financial["id"], accept=True, token=await api.token(newcomer))
    assert (await read_link(api, financial["id"]))["status"] == "ACTIVE"
    # the existing TRUSTEESHIP link stays in place
    existing = await read_link(api, given.links[0])
    assert (existing["type"], existing["status"]) == ("TRUSTEESHIP", "ACTIVE")
    assert len(existing["history"]) == 2
    assert await role_of(api, given.members[0]) == "MEMBER"
    members = await api.gql(MEMBERS, {"id": given.master}, token=given.master_token)
    assert members["account"]["members"]["totalCount"] == 2


async def test_h5_enabling_the_hierarchy_again_allows_trusteeship(api: Api) -> None:
    # given
    master, member = await api.account("Master"), await api.account("Member")
    await api.ok("updateSettings", UPDATE_SETTINGS, {"billingHierarchyEnabled": False})

    # when
    payload = await api.ok("updateSettings", UPDATE_SETTINGS, {"billingHierarchyEnabled": True})

    # then
    assert payload["settings"] == {"billingHierarchyEnabled": True}
    assert (await invite(api, master, member))["status"] == "INVITED"


# ---------------------------------------------------------------- CONFLICT (H2)


@pytest.mark.parametrize("second_type", ["TRUSTEESHIP", "FINANCIAL"])
async def test_h2_a_second_open_invitation_conflicts(api: Api, second_type: str) -> None:
    # given
    master, member, master_token, _, link_id = await pending(api)

    # when / then
    await refused(
        api,
        "inviteMember",
        INVITE,
        {"masterId": master, "memberId": member, "type": second_type},
        "CONFLICT",
        ["memberId"],
        token=master_token,
    )
    assert (await read_link(api, link_id))["status"] == "INVITED"
    assert await table_counts(api.engine) == (1, 1)


async def test_h2_two_masters_may_invite_the_same_account(api: Api) -> None:
    # given
    first, second = await api.account("First"), await api.account("Second")
    member = await api.account("Member")

    # when
    one = await invite(api, first, member)
    two = await invite(api, second, member)

    # then
    seen = (await api.gql(MY_INVITATIONS, token=await api.token(member)))["viewer"]["account"]
    assert [i["id"] for i in seen["invitations"]] == [one["id"], two["id"]]


@pytest.mark.parametrize("state", ["ACTIVE", "DECLINED", "DISSOCIATED"])
@pytest.mark.parametrize("accept", [True, False], ids=["accept", "decline"])
async def test_h2_answering_a_link_that_is_not_invited_conflicts(
    api: Api, state: str, accept: bool
) -> None:
    # given
    _, _, _, member_token, link_id = await link_in_state(api, state)
    history = len((await read_link(api, link_id))["history"])

    # when / then
    await refused(
        api,
        "respondToInvitation",
        RESPOND,
        {"linkId": link_id, "accept": accept, "permissions": ["VIEW_FINANCE"]},
        "CONFLICT",
        ["linkId"],
        token=member_token,
    )
    link = await read_link(api, link_id)
    assert link["status"] == state
    assert len(link["history"]) == history


# ---------------------------------------------------------------- LINK_NOT_ACTIVE (U5)


@pytest.mark.parametrize(
    ("state", "by", "code"),
    [
        ("INVITED", "master", "LINK_NOT_ACTIVE"),
        ("INVITED", "member", "LINK_NOT_ACTIVE"),
        ("INVITED", "operator", "LINK_NOT_ACTIVE"),
        ("DECLINED", "master", "LINK_NOT_ACTIVE"),
        ("DECLINED", "member", "LINK_NOT_ACTIVE"),
        ("DECLINED", "operator", "LINK_NOT_ACTIVE"),
        ("DISSOCIATED", "member", "LINK_NOT_ACTIVE"),
        ("DISSOCIATED", "operator", "LINK_NOT_ACTIVE"),
        # U5: the former master no longer sees the link at all
        ("DISSOCIATED", "master", "NOT_FOUND"),
    ],
)
async def test_u5_dissociating_a_link_that_is_not_active_is_refused(
    api: Api, state: str, by: str, code: str
) -> None:
    # given
    _, _, master_token, member_token, link_id = await link_in_state(api, state)
    token = {"master": master_token, "member": member_token, "operator": None}[by]

    # when / then
    await refused(
        api, "dissociateMember", DISSOCIATE, {"linkId": link_id}, code, ["linkId"], token=token
    )
    assert (await read_link(api, link_id))["status"] == state


# ---------------------------------------------------------------- who answers (U1)


@pytest.mark.parametrize("accept", [True, False], ids=["accept", "decline"])
async def test_u1_the_master_cannot_answer_for_the_invitee(api: Api, accept: bool) -> None:
    # given
    _, _, master_token, _, link_id = await pending(api)

    # when / then
    await refused(
        api,
        "respondToInvitation",
        RESPOND,
        {"linkId": link_id, "accept": accept, "permissions": ALL_PERMISSIONS},
        "PERMISSION_NOT_GRANTED",
        ["linkId"],
        token=master_token,
    )
    assert (await read_link(api, link_id))["status"] == "INVITED"


async def test_u1_a_master_cannot_invite_in_the_name_of_its_member(api: Api) -> None:
    # given
    given = await enterprise(api, 1)
    standalone = await api.account("Standalone")

    # when / then: the member is visible to the master, but inviting is its own users' act
    await refused(
        api,
        "inviteMember",
        INVITE,
        {"masterId": given.members[0], "memberId": standalone, "type": "FINANCIAL"},
        "PERMISSION_NOT_GRANTED",
        ["masterId"],
        token=given.master_token,
    )


# ---------------------------------------------------------------- INVALID_INPUT (H1)


@pytest.mark.parametrize("by", ["account", "operator"])
async def test_h1_an_account_cannot_invite_itself(api: Api, by: str) -> None:
    # given
    account = await api.account("Lonely")
    token = await api.token(account) if by == "account" else None

    # when / then
    await refused(
        api,
        "inviteMember",
        INVITE,
        {"masterId": account, "memberId": account, "type": "TRUSTEESHIP"},
        "INVALID_INPUT",
        ["memberId"],
        token=token,
    )
    assert await table_counts(api.engine) == (0, 0)


# ---------------------------------------------------------------- NOT_FOUND


async def test_h2_ids_that_name_no_account_or_link_are_not_found(api: Api) -> None:
    # given
    master, member, master_token, member_token, link_id = await pending(api)
    wrong_ids = [
        "garbage",
        "",
        "!!!",
        missing("Account"),
        missing("Link"),
        missing("Site"),
        link_id,
        master,
    ]

    # when / then
    for wrong in wrong_ids:
        if wrong != master:
            await refused(
                api,
                "inviteMember",
                INVITE,
                {"masterId": master, "memberId": wrong, "type": "FINANCIAL"},
                "NOT_FOUND",
                ["memberId"],
                token=master_token,
            )
            await refused(
                api,
                "inviteMember",
                INVITE,
                {"masterId": wrong, "memberId": member, "type": "FINANCIAL"},
                "NOT_FOUND",
                ["masterId"],
            )
        if wrong != link_id:
            await refused(
                api,
                "respondToInvitation",
                RESPOND,
                {"linkId": wrong, "accept": True},
                "NOT_FOUND",
                ["linkId"],
                token=member_token,
            )
            await refused(
                api, "dissociateMember", DISSOCIATE, {"linkId": wrong}, "NOT_FOUND", ["linkId"]
            )
    assert (await read_link(api, link_id))["status"] == "INVITED"


async def test_h2_links_the_caller_cannot_see_are_not_found(api: Api) -> None:
    # given: an enterprise of two members, an outsider, and an invitation to another account
    given = await enterprise(api, 2)
    outsider = await api.account("Outsider")
    outsider_token = await api.token(outsider)
    invitee = await api.account("Invitee")
    invitation = (await invite(api, given.master, invitee))["id"]
    sibling_link = given.links[1]

    # when / then: a sibling's link, the master's invitation to someone else
    for token, link_id in [
        (given.member_tokens[0], sibling_link),
        (given.member_tokens[0], invitation),
        (outsider_token, given.links[0]),
        (outsider_token, invitation),
    ]:
        await refused(
            api,
            "dissociateMember",
            DISSOCIATE,
            {"linkId": link_id},
            "NOT_FOUND",
            ["linkId"],
            token=token,
        )
        await refused(
            api,
            "respondToInvitation",
            RESPOND,
            {"linkId": link_id, "accept": True, "permissions": []},
            "NOT_FOUND",
            ["linkId"],
            token=token,
        )
        assert (await api.gql(NODE_LINK, {"id": link_id}, token=token))["node"] is None

    # inviting in the name of an account the caller cannot see
    await refused(
        api,
        "inviteMember",
        INVITE,
        {"masterId": given.master, "memberId": outsider, "type": "FINANCIAL"},
        "NOT_FOUND",
        ["masterId"],
        token=given.member_tokens[0],
    )
    await refused(
        api,
        "inviteMember",
        INVITE,
        {"masterId": given.master, "memberId": outsider, "type": "FINANCIAL"},
        "NOT_FOUND",
        ["masterId"],
        token=outsider_token,
    )
    assert [(await read_link(api, link))["status"] for link in given.links] == ["ACTIVE", "ACTIVE"]
    assert (await read_link(api, invitation))["status"] == "INVITED"


async def test_h2_hidden_and_missing_links_answer_the_same(api: Api) -> None:
    """NOT_FOUND never leaks: a link that exists but is hidden answers exactly like one
    that does not exist."""
    # given
    given = await enterprise(api, 2)
    token = given.member_tokens[0]

    # when
    hidden = await api.mutate("dissociateMember", DISSOCIATE, {"linkId": given.links[1]}, token)
    absent = await api.mutate("dissociateMember", DISSOCIATE, {"linkId": missing("Link")}, token)

    # then
    assert hidden == absent
    assert hidden["userErrors"][0]["code"] == "NOT_FOUND"
