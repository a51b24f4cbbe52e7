"""Relay connections over the account graph: keyset pagination (``first``/``after``, at
most 500), ``totalCount``, the ``members`` filters (H2, P2), and the members loader that
serves many masters with one query."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from arq.connections import ArqRedis
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from accountgraph.config import Settings
from tests.helpers import OPERATOR_TOKEN, Api, enterprise
from tests.test_limits import app_with

ACCOUNTS_PAGE = """
query($first: Int, $after: String) {
  accounts(first: $first, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node { id name } }
  }
}"""
MEMBERS_PAGE = """
query($id: ID!, $first: Int, $after: String, $type: LinkType, $status: LinkStatus) {
  account(id: $id) {
    members(first: $first, after: $after, type: $type, status: $status) {
      totalCount
      pageInfo { hasNextPage endCursor }
      edges { cursor node { id name } }
    }
  }
}"""
MEMBERS_OF_EVERY_ACCOUNT = """
{
  accounts(first: 50) {
    edges { node { name members { totalCount edges { node { name } } } } }
  }
}"""
DISSOCIATE = """
mutation($input: DissociateMemberInput!) {
  dissociateMember(input: $input) { userErrors { code field message } }
}"""
RESPOND = """
mutation($input: RespondToInvitationInput!) {
  respondToInvitation(input: $input) { userErrors { code field message } }
}"""


def error_codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors") or []]


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


async def accounts_page(api: Api, token: str | None = None, **variables: Any) -> dict[str, Any]:
    kwargs = {} if token is None else {"token": token}
    page: dict[str, Any] = (await api.gql(ACCOUNTS_PAGE, variables, **kwargs))["accounts"]
    return page


async def members_page(
    api: Api, master: str, token: str | None = None, **variables: Any
) -> dict[str, Any]:
    kwargs = {} if token is None else {"token": token}
    data = await api.gql(MEMBERS_PAGE, {"id": master, **variables}, **kwargs)
    page: dict[str, Any] = data["account"]["members"]
    return page


async def walk(fetch: Any, first: int) -> tuple[list[str], list[dict[str, Any]]]:
    """Every page from the start, following ``endCursor``: (ids in order, pages)."""
    seen: list[str] = []
    pages: list[dict[str, Any]] = []
    after = None
    while True:
        page = await fetch(first=first, after=after)
        pages.append(page)
        seen.extend(edge["node"]["id"] for edge in page["edges"])
        if not page["pageInfo"]["hasNextPage"]:
            return seen, pages
        assert len(pages) < 100, "pagination does not end"
        after = page["pageInfo"]["endCursor"]


def check_pages(pages: list[dict[str, Any]], first: int, total: int) -> None:
    """Full pages but the last, each endCursor the cursor of its last edge, totals equal."""
    for number, page in enumerate(pages):
        last = number == len(pages) - 1
        assert page["totalCount"] == total
        assert page["pageInfo"]["hasNextPage"] is not last
        if not last:
            assert len(page["edges"]) == first
        if page["edges"]:
            assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]
        else:
            assert page["pageInfo"]["endCursor"] is None


# ---------------------------------------------------------------- accounts


@pytest.mark.parametrize("first", [1, 3, 7, 8, 500])
async def test_accounts_walk_every_item_once_in_id_order(api: Api, first: int) -> None:
    # given seven accounts
    created = [await api.account(f"A{number}") for number in range(7)]

    # when the operator walks every page of `first`
    seen, pages = await walk(lambda **v: accounts_page(api, **v), first)

    # then each account comes once, in id (creation) order, with correct page info
    assert seen == created
    check_pages(pages, first, 7)
    assert len(pages) == -(-7 // first)


async def test_accounts_last_empty_page_keeps_total_count(api: Api) -> None:
    # given six accounts, read in two full pages
    created = [await api.account(f"A{number}") for number in range(6)]
    first = await accounts_page(api, first=3)
    second = await accounts_page(api, first=3, after=first["pageInfo"]["endCursor"])
    assert [e["node"]["id"] for e in first["edges"] + second["edges"]] == created

    # then the second page knows it is the last (no extra round trip needed)
    assert first["pageInfo"]["hasNextPage"] is True
    assert second["pageInfo"]["hasNextPage"] is False

    # and the page after the last is empty but still counts every account
    empty = await accounts_page(api, first=3, after=second["pageInfo"]["endCursor"])
    assert empty == {
        "totalCount": 6,
        "pageInfo": {"hasNextPage": False, "endCursor": None},
        "edges": [],
    }


async def test_accounts_every_edge_cursor_resumes_after_that_edge(api: Api) -> None:
    # given five accounts
    created = [await api.account(f"A{number}") for number in range(5)]
    edges = (await accounts_page(api))["edges"]

    for index, edge in enumerate(edges):
        # when reading after each edge's cursor
        rest = await accounts_page(api, after=edge["cursor"])

        # then the page starts right after it
        assert [e["node"]["id"] for e in rest["edges"]] == created[index + 1 :]


async def test_accounts_first_zero_returns_no_edges_but_the_total(api: Api) -> None:
    # given two accounts
    await api.account("A")
    await api.account("B")

    # when a page of zero is asked for
    page = await accounts_page(api, first=0)

    # then it has no edges, says more exist, and counts both
    assert page == {
        "totalCount": 2,
        "pageInfo": {"hasNextPage": True, "endCursor": None},
        "edges": [],
    }


async def test_accounts_default_page_is_fifty(api: Api) -> None:
    # given 51 accounts
    for number in range(51):
        await api.account(f"A{number}")

    # when a page is read without `first`
    page = await accounts_page(api)

    # then it holds 50 and says there are more
    assert len(page["edges"]) == 50
    assert page["pageInfo"]["hasNextPage"] is True
    assert page["totalCount"] == 51


async def test_accounts_created_during_a_walk_appear_once_at_the_end(api: Api) -> None:
    # given four accounts, the first page of two read
    created = [await api.account(f"A{number}") for number in range(4)]
    page = await accounts_page(api, first=2)

    # when an account is created before the rest is read
    late = await api.account("Late")
    rest, _ = await walk(
        lambda **v: accounts_page(
            api, **(v | {"after": v["after"] or page["pageInfo"]["endCursor"]})
        ),
        2,
    )

    # then the walk sees every account once, the new one last
    assert [e["node"]["id"] for e in page["edges"]] + rest == [*created, late]


async def test_accounts_pages_of_an_account_user_cover_only_what_it_sees(api: Api) -> None:
    # given a master with five members, and another enterprise created in between
    given = await enterprise(api, 3)
    await enterprise(api, 2)
    more = []
    for number in range(2):
        member = await api.account(f"Late-{number}")
        await api.link(given.master, member)
        more.append(member)

    # when the master's user walks its accounts two at a time
    seen, pages = await walk(lambda **v: accounts_page(api, given.master_token, **v), 2)

    # then it sees itself and its members, each once, in id order
    assert seen == [given.master, *given.members, *more]
    check_pages(pages, 2, 6)


# ---------------------------------------------------------------- invalid arguments


@pytest.mark.parametrize("first", [501, -1, 10_000])
async def test_first_out_of_range_is_invalid_input(api: Api, first: int) -> None:
    # given a master with a member
    given = await enterprise(api, 1)

    # when `accounts` or `members` is asked for a page out of 0..500
    listed = await api.raw(ACCOUNTS_PAGE, {"first": first})
    members = await api.raw(MEMBERS_PAGE, {"id": given.master, "first": first})

    # then each is a GraphQL error with code INVALID_INPUT at that field
    assert error_codes(listed) == ["INVALID_INPUT"]
    assert listed["errors"][0]["path"] == ["accounts"]
    assert error_codes(members) == ["INVALID_INPUT"]
    assert members["errors"][0]["path"] == ["account", "members"]


async def test_first_of_500_is_accepted(api: Api) -> None:
    # given a master with a member
    given = await enterprise(api, 1)

    # when both connections are asked for 500
    listed = await accounts_page(api, first=500)
    members = await members_page(api, given.master, first=500)

    # then they answer
    assert listed["totalCount"] == 2
    assert [e["node"]["id"] for e in members["edges"]] == given.members


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "!!!",
        "",
        "a" * 300,
        b64("k:abc"),
        b64("k:-1"),
        b64("x:1"),
        b64("k:"),
        b64("k:" + "9" * 19),
        b64("Account:1"),
        "%%%%",
        b64("k:1") + "!",
    ],
)
async def test_garbage_cursor_is_invalid_input(api: Api, cursor: str) -> None:
    # given a master with a member
    given = await enterprise(api, 1)

    # when `accounts` or `members` gets a cursor that it did not issue
    listed = await api.raw(ACCOUNTS_PAGE, {"after": cursor})
    members = await api.raw(MEMBERS_PAGE, {"id": given.master, "after": cursor})

    # then each is a GraphQL error with code INVALID_INPUT
    assert error_codes(listed) == ["INVALID_INPUT"], listed
    assert error_codes(members) == ["INVALID_INPUT"], members


# ---------------------------------------------------------------- Account.members


@pytest.mark.parametrize("first", [1, 2, 5, 6])
async def test_members_walk_every_item_once_in_id_order(api: Api, first: int) -> None:
    # given two masters whose members were created interleaved
    master = await api.account("Master")
    other = await api.account("Other")
    mine = []
    for number in range(5):
        member = await api.account(f"Mine-{number}")
        await api.link(master, member)
        mine.append(member)
        await api.link(other, await api.account(f"Theirs-{number}"))

    # when the master's user walks its members
    token = await api.token(master)
    seen, pages = await walk(lambda **v: members_page(api, master, token, **v), first)

    # then each of its members comes once, in id order, and none of the other's
    assert seen == mine
    check_pages(pages, first, 5)


async def test_members_last_empty_page_keeps_total_count(api: Api) -> None:
    # given a master with four members, read in two full pages
    given = await enterprise(api, 4)
    first = await members_page(api, given.master, first=2)
    second = await members_page(api, given.master, first=2, after=first["pageInfo"]["endCursor"])
    assert [e["node"]["id"] for e in first["edges"] + second["edges"]] == given.members
    assert second["pageInfo"]["hasNextPage"] is False

    # when the page after the last is read
    empty = await members_page(api, given.master, first=2, after=second["pageInfo"]["endCursor"])

    # then it is empty but counts every member
    assert empty == {
        "totalCount": 4,
        "pageInfo": {"hasNextPage": False, "endCursor": None},
        "edges": [],
    }


async def test_members_of_an_account_without_members_is_empty(api: Api) -> None:
    # given a standalone account
    alone = await api.account("Alone")

    # when its members are read
    page = await members_page(api, alone)

    # then the connection is empty
    assert page == {
        "totalCount": 0,
        "pageInfo": {"hasNextPage": False, "endCursor": None},
        "edges": [],
    }


async def test_h2_members_filter_by_status_and_type(api: Api) -> None:
    # given a master with ACTIVE trusteeship and financial members, invitations of both
    # types, a declined invitation and a dissociated member
    master = await api.account("Master")
    names: dict[str, str] = {}

    async def account(name: str) -> str:
        names[name] = await api.account(name)
        return names[name]

    await api.link(master, await account("T-active"), "TRUSTEESHIP")
    await api.link(master, await account("F-active"), "FINANCIAL")
    await api.invite(master, await account("T-invited"), "TRUSTEESHIP")
    await api.invite(master, await account("F-invited"), "FINANCIAL")
    declined = await api.invite(master, await account("Declined"), "FINANCIAL")
    await api.ok("respondToInvitation", RESPOND, {"linkId": declined, "accept": False})
    gone = await api.link(master, await account("Gone"), "TRUSTEESHIP")
    await api.ok("dissociateMember", DISSOCIATE, {"linkId": gone})
    token = await api.token(master)

    async def listed(**filters: Any) -> list[str]:
        page = await members_page(api, master, token, **filters)
        assert page["totalCount"] == len(page["edges"])
        return [e["node"]["name"] for e in page["edges"]]

    # when the master filters its members
    # then by default it gets the ACTIVE ones, and each filter narrows that
    assert await listed() == ["T-active", "F-active"]
    assert await listed(status="ACTIVE") == ["T-active", "F-active"]
    assert await listed(status="INVITED") == ["T-invited", "F-invited"]
    assert await listed(status="DECLINED") == ["Declined"]
    assert await listed(type="FINANCIAL") == ["F-active"]
    assert await listed(type="TRUSTEESHIP") == ["T-active"]
    assert await listed(type="FINANCIAL", status="INVITED") == ["F-invited"]
    assert await listed(type="TRUSTEESHIP", status="INVITED") == ["T-invited"]

    # and a dissociated member is invisible to its former master (U5), not to operators
    assert await listed(status="DISSOCIATED") == []
    page = await members_page(api, master, status="DISSOCIATED")
    assert [e["node"]["name"] for e in page["edges"]] == ["Gone"]


async def test_h2_invited_members_paginate_too(api: Api) -> None:
    # given a master with one active member and five invitations
    given = await enterprise(api, 1)
    invited = []
    for number in range(5):
        invitee = await api.account(f"Invitee-{number}")
        await api.invite(given.master, invitee)
        invited.append(invitee)

    # when the master walks its INVITED members two at a time
    seen, pages = await walk(
        lambda **v: members_page(api, given.master, given.master_token, status="INVITED", **v), 2
    )

    # then each invitee comes once, in id order
    assert seen == invited
    check_pages(pages, 2, 5)


async def test_p3_members_of_a_master_are_hidden_from_its_member(api: Api) -> None:
    # given a master with three members
    given = await enterprise(api, 3)

    # when a member reads its master's members
    data = await api.gql(
        """
        { viewer { account { link { master { members { totalCount edges { node { id } } } } } } }
        }""",
        token=given.member_tokens[0],
    )

    # then it sees none of them (never siblings, P3)
    assert data["viewer"]["account"]["link"]["master"]["members"] == {"totalCount": 0, "edges": []}


# ---------------------------------------------------------------- batching


async def test_members_of_many_masters_each_get_their_own(api: Api) -> None:
    # given three masters with 1, 2 and 3 members, and a standalone account
    for size in [1, 2, 3]:
        await enterprise(api, size)
    await api.account("Alone")

    # when the operator reads every account's members in one query
    data = await api.gql(MEMBERS_OF_EVERY_ACCOUNT)

    # then each master has exactly its own members, the others none
    got = [
        (
            e["node"]["name"],
            [m["node"]["name"] for m in e["node"]["members"]["edges"]],
            e["node"]["members"]["totalCount"],
        )
        for e in data["accounts"]["edges"]
    ]
    masters = [(names, total) for name, names, total in got if name == "Master"]
    assert masters == [
        (["Member-1"], 1),
        (["Member-1", "Member-2"], 2),
        (["Member-1", "Member-2", "Member-3"], 3),
    ]
    assert all(names == [] and total == 0 for name, names, total in got if name != "Master")


class MembersQueries:
    """Records the members page queries (the only ones with a per-master row_number)
    that the app's engine sends; other statements, such as a background poller's, are
    left out so that the count is exact."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "row_number() OVER (PARTITION BY" in statement and "links" in statement:
            self.count += 1


async def test_members_loader_batches_masters_into_one_query(
    api: Api, settings: Settings, engine: AsyncEngine, redis: ArqRedis
) -> None:
    """However many masters a tree query reaches, their members come from one query. The
    resolvers' way (the read compiler off: ``tests/test_compiled_reads.py`` checks that the
    compiled page of ``accounts`` reads everything in its one statement)."""
    # given three masters with two members each
    for _ in range(3):
        await enterprise(api, 2)
    recorder = MembersQueries()
    event.listen(api.engine.sync_engine, "before_cursor_execute", recorder)
    headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    try:
        async with app_with(settings, engine, redis, read_compiler=False) as resolvers:

            async def every_members() -> dict[str, Any]:
                response = await resolvers.post(
                    "/graphql", json={"query": MEMBERS_OF_EVERY_ACCOUNT}, headers=headers
                )
                answer: dict[str, Any] = response.json()
                assert "errors" not in answer, answer
                data: dict[str, Any] = answer["data"]
                return data

            # when the operator reads every account's members
            first = await every_members()
            with_three = recorder.count

            # and again after three more masters are added
            for _ in range(3):
                await enterprise(api, 2)
            recorder.count = 0
            second = await every_members()
            with_six = recorder.count
    finally:
        event.remove(api.engine.sync_engine, "before_cursor_execute", recorder)

    # then both answered with every master's members, each with one members query
    def member_counts(data: dict[str, Any]) -> list[int]:
        return [e["node"]["members"]["totalCount"] for e in data["accounts"]["edges"]]

    assert member_counts(first) == [2, 0, 0] * 3
    assert member_counts(second) == [2, 0, 0] * 6
    assert (with_three, with_six) == (1, 1)
