"""S1-S11 (and P2-P4 for sharing), each both ways, through the real API over HTTP and a
real arq worker (``run_jobs``). A refusal is checked with its exact code and field, and
by reading the input tables (and the outbox) before and after: nothing changed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from accountgraph import outbox
from accountgraph.api import ids
from accountgraph.sharing import recalculation
from accountgraph.sharing.compute import GRANTS, SHARING_LIMIT
from tests.helpers import DISSOCIATE, Api
from tests.sharing.test_configurations import (
    ACCEPTED_TYPES,
    CREATE_GROUP,
    CREATE_RESOURCE,
    GROUP_MEMBERS,
    OVERVIEW,
    RI,
    SHARE_WITH_GROUPS,
    SHARED_TYPES,
    Enterprise,
    account_settings,
    both,
    by_account_only,
    reasons,
    ri,
    seed_001,
    usable,
)

Jobs = Callable[[], Awaitable[None]]
SP = "SAVINGS_PLAN"
SCU = "STORAGE_CAPACITY_UNIT"

ACCOUNT_SHARING = """query($id: ID!) { account(id: $id) {
  name sharedResourceTypes acceptedResourceTypes userGroup { name }
  usableResources { resource { name } reason since } } }"""
MY_SHARING = """query { viewer { account { name
  usableResources { resource { name owner { name } } reason since }
  userGroup { name members { name } resources { name } } } } }"""
NODE = """query($id: ID!) { node(id: $id) { id
  ... on Resource { name owner { name } }
  ... on UserGroup { name members { name } resources { name } } } }"""
SHARING_NULL = """query($master: ID!) { sharing(masterId: $master) { state } }"""
GROUPS = """query($id: ID!) { account(id: $id) {
  userGroups { name members { name } resources { name } } } }"""
DETAILS = """query($master: ID!, $first: Int, $after: String, $account: ID, $resource: ID,
                  $shared: Boolean) { sharing(masterId: $master) {
  details(first: $first, after: $after, accountId: $account, resourceId: $resource,
          shared: $shared) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { cursor node { account { name } resource { name } shared reason since } } } } }"""
STATE = """query($master: ID!) { sharing(masterId: $master) { state calculatedAt } }"""

INPUT_TABLES = (
    "resources",
    "shared_resource_types",
    "accepted_resource_types",
    "user_groups",
    "user_group_members",
    "resource_groups",
)


# ---------------------------------------------------------------- helpers


def row(global_id: str, type_name: str = "Account") -> int:
    found = ids.decode_as(global_id, type_name)
    assert found is not None, global_id
    return found


async def inputs(engine: AsyncEngine) -> dict[str, Any]:
    """Every sharing input table, in a stable order, and the sharing outbox rows."""
    snapshot: dict[str, Any] = {}
    async with engine.connect() as conn:
        for table in INPUT_TABLES:
            rows = (await conn.execute(text(f"SELECT * FROM {table}"))).all()
            snapshot[table] = sorted(tuple(str(value) for value in r) for r in rows)
        snapshot["outbox"] = (
            await conn.execute(
                text("SELECT count(*) FROM outbox WHERE topic = 'sharing.recalculate'")
            )
        ).scalar_one()
    return snapshot


async def stored_grants(engine: AsyncEngine, master: str) -> dict[tuple[str, str], tuple[str, Any]]:
    """The stored result (S11): (account name, resource name) -> (reason, since)."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text("""
            SELECT a.name AS account, r.name AS resource, g.reason, g.since
            FROM sharing_grants g JOIN accounts a ON a.id = g.account_id
            JOIN resources r ON r.id = g.resource_id WHERE g.master_id = :master"""),
                {"master": row(master)},
            )
        ).all()
    return {(r.account.removeprefix("Account-"), r.resource): (r.reason, r.since) for r in rows}


async def computed_grants(engine: AsyncEngine, master: str) -> dict[tuple[str, str], str]:
    """What one clean recalculation gives right now: the GRANTS statement, not stored."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(f"""
            SELECT a.name AS account, r.name AS resource, c.reason
            FROM ({GRANTS.text}) c JOIN accounts a ON a.id = c.account_id
            JOIN resources r ON r.id = c.resource_id"""),
                {"master": row(master), "limit": SHARING_LIMIT},
            )
        ).all()
    return {(r.account.removeprefix("Account-"), r.resource): r.reason for r in rows}


def reasons_only(grants: dict[tuple[str, str], tuple[str, Any]]) -> dict[tuple[str, str], str]:
    return {pair: reason for pair, (reason, _) in grants.items()}


async def pending_rows(engine: AsyncEngine, master: str) -> list[int]:
    async with engine.connect() as conn:
        found = (await conn.execute(recalculation.PENDING_ROWS, {"master": row(master)})).scalars()
        return sorted(found.all())


async def overview(api: Api, master: str, token: str | None = None) -> dict[str, Any]:
    kwargs = {} if token is None else {"token": token}
    found: dict[str, Any] = (await api.gql(OVERVIEW, {"master": master}, **kwargs))["sharing"]
    return found


async def details(api: Api, master: str, **arguments: Any) -> dict[str, Any]:
    found: dict[str, Any] = (await api.gql(DETAILS, {"master": master, **arguments}))["sharing"][
        "details"
    ]
    return found


def detail_pairs(connection: dict[str, Any]) -> list[tuple[str, str, bool, str]]:
    return [
        (
            edge["node"]["account"]["name"].removeprefix("Account-"),
            edge["node"]["resource"]["name"],
            edge["node"]["shared"],
            edge["node"]["reason"],
        )
        for edge in connection["edges"]
    ]


async def account_sharing(api: Api, account: str, token: str | None = None) -> dict[str, Any]:
    kwargs = {} if token is None else {"token": token}
    found: dict[str, Any] = (await api.gql(ACCOUNT_SHARING, {"id": account}, **kwargs))["account"]
    return found


def names(grants: list[dict[str, Any]]) -> set[str]:
    return {grant["resource"]["name"] for grant in grants}


async def create_resource(api: Api, owner: str, name: str, type: str = RI) -> str:
    payload = await api.ok(
        "createResource",
        CREATE_RESOURCE,
        {
            "ownerId": owner,
            "type": type,
            "name": name,
            "capacity": "10",
            "validFrom": "2026-01-01T00:00:00Z",
            "validUntil": "2027-01-01T00:00:00Z",
        },
    )
    resource_id: str = payload["resource"]["id"]
    return resource_id


async def create_group(
    api: Api, master: str, name: str, members: list[str], token: str | None = None
) -> str:
    kwargs = {} if token is None else {"token": token}
    payload = await api.ok(
        "createUserGroup", CREATE_GROUP, {"masterId": master, "name": name}, **kwargs
    )
    group_id: str = payload["userGroup"]["id"]
    await api.ok(
        "setUserGroupMembers", GROUP_MEMBERS, {"groupId": group_id, "memberIds": members}, **kwargs
    )
    return group_id


async def groups_of(api: Api, master: str) -> dict[str, tuple[set[str], set[str]]]:
    found = (await api.gql(GROUPS, {"id": master}))["account"]["userGroups"]
    return {
        group["name"]: (
            {m["name"].removeprefix("Account-") for m in group["members"]},
            {r["name"] for r in group["resources"]},
        )
        for group in found
    }


async def group_ids_of(api: Api, master: str) -> dict[str, str]:
    found = (
        await api.gql(
            """query($id: ID!) { account(id: $id) { userGroups { id name } } }""", {"id": master}
        )
    )["account"]["userGroups"]
    return {group["name"]: group["id"] for group in found}


async def bulk_members(api: Api, master: str, count: int, prefix: str = "Bulk") -> list[str]:
    """``count`` ACTIVE trusteeship members of ``master`` written with bulk SQL (for S8),
    in account id order."""
    async with api.engine.begin() as conn:
        created = (
            (
                await conn.execute(
                    text("""
            WITH m AS (
              INSERT INTO accounts (name, display_name)
              SELECT format('%s-%s', CAST(:prefix AS text), lpad(g::text, 3, '0')),
                     format('%s %s', CAST(:prefix AS text), g)
              FROM generate_series(1, :count) AS g ORDER BY g RETURNING id)
            INSERT INTO links (master_id, member_id, type, status, permissions, activated_at)
            SELECT :master, m.id, 'TRUSTEESHIP', 'ACTIVE',
                   ARRAY['SYNC_CREDIT_CONTROL', 'VIEW_FINANCE', 'MANAGE_INVOICES'], now()
            FROM m ORDER BY m.id RETURNING member_id"""),
                    {"prefix": prefix, "count": count, "master": row(master)},
                )
            )
            .scalars()
            .all()
        )
    return [ids.encode("Account", member) for member in sorted(created)]


async def bulk_accept(api: Api, members: list[str], type: str = RI) -> None:
    """S3 acceptances written straight into the table (no outbox row, no S8 check)."""
    async with api.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO accepted_resource_types (member_id, type) "
                "SELECT unnest(CAST(:ids AS bigint[])), :type"
            ),
            {"ids": [row(m) for m in members], "type": type},
        )


def errors(payload: dict[str, Any]) -> list[tuple[str, list[str] | None]]:
    return [(error["code"], error["field"]) for error in payload["userErrors"]]


# ---------------------------------------------------------------- S1


async def test_s1_members_own_resources_are_used_by_their_owner_only(
    api: Api, run_jobs: Jobs
) -> None:
    """Every member accepts RI and the master shares RI: the members' own resources (RI5,
    RI6 of sub1, RI7 of sub2) still go to their owner only, and the master's to all."""
    given = await seed_001(api)
    await account_settings(api, given, list(given.subs))
    await run_jobs()

    current = await overview(api, given.master)
    found = usable(current)
    assert found["M"] == ri(1, 2, 3, 4)
    assert found["sub1"] == ri(1, 2, 3, 4, 5, 6)
    assert found["sub2"] == ri(1, 2, 3, 4, 7)
    for sub in ("sub3", "sub4", "sub5"):
        assert found[sub] == ri(1, 2, 3, 4)
    explained = reasons(current)
    assert explained[("sub1", "RI5")] == (True, "OWNER")
    assert explained[("sub2", "RI7")] == (True, "OWNER")
    # A member's own resource has no pair with anyone else: it is not even a candidate.
    assert not {pair for pair in explained if pair[1] in ri(5, 6) and pair[0] != "sub1"}
    assert not {pair for pair in explained if pair[1] == "RI7" and pair[0] != "sub2"}
    assert set(reasons_only(await stored_grants(api.engine, given.master))) == {
        (account, resource) for account, resources in found.items() for resource in resources
    }


async def test_s1_a_members_resource_cannot_be_shared_with_groups(api: Api, run_jobs: Jobs) -> None:
    given = await seed_001(api)
    group = await create_group(api, given.master, "G1", [given.subs["sub1"], given.subs["sub2"]])
    sub1_token = await api.token(given.subs["sub1"])
    master_token = await api.token(given.master)
    await run_jobs()
    before = await inputs(api.engine)

    by_operator = await api.mutate(
        "shareResourceWithGroups",
        SHARE_WITH_GROUPS,
        {"resourceId": given.resources["RI5"], "groupIds": [group]},
    )
    by_owner = await api.mutate(
        "shareResourceWithGroups",
        SHARE_WITH_GROUPS,
        {"resourceId": given.resources["RI5"], "groupIds": []},
        token=sub1_token,
    )
    # The master sees sub1 but may not act as sub1.
    by_master = await api.mutate(
        "shareResourceWithGroups",
        SHARE_WITH_GROUPS,
        {"resourceId": given.resources["RI5"], "groupIds": [group]},
        token=master_token,
    )
    # S2 likewise: a member has no shared types of its own.
    types_by_operator = await api.mutate(
        "setSharedResourceTypes", SHARED_TYPES, {"masterId": given.subs["sub1"], "types": [RI]}
    )
    types_by_owner = await api.mutate(
        "setSharedResourceTypes",
        SHARED_TYPES,
        {"masterId": given.subs["sub1"], "types": [RI]},
        token=sub1_token,
    )

    assert errors(by_operator) == [("INVALID_INPUT", ["resourceId"])]
    assert by_operator["resource"] is None
    assert errors(by_owner) == [("INVALID_INPUT", ["resourceId"])]
    assert errors(by_master) == [("PERMISSION_NOT_GRANTED", ["resourceId"])]
    assert errors(types_by_operator) == [("INVALID_INPUT", ["masterId"])]
    assert errors(types_by_owner) == [("INVALID_INPUT", ["masterId"])]
    assert await inputs(api.engine) == before
    assert await pending_rows(api.engine, given.master) == []

    # The other way: the master's own resource is shared with the group, and only its
    # members (sub1, sub2) use it.
    await api.ok(
        "shareResourceWithGroups",
        SHARE_WITH_GROUPS,
        {"resourceId": given.resources["RI1"], "groupIds": [group]},
        token=master_token,
    )
    await run_jobs()
    found = usable(await overview(api, given.master))
    assert found["sub1"] == ri(1, 5, 6) and found["sub2"] == ri(1, 7)
    assert found["sub3"] == found["sub4"] == found["sub5"] == set()


async def test_s1_s9_an_owner_uses_its_own_resources_before_during_and_after_association(
    api: Api, run_jobs: Jobs
) -> None:
    """OWNER follows the account: a standalone account uses its resource, then as a member
    (once, under its master), and again after the link ended."""
    master = await api.account("Account-M")
    owner = await api.account("Account-X")
    await create_resource(api, owner, "RX")
    await run_jobs()
    owner_token = await api.token(owner)

    async def mine() -> list[tuple[str, str]]:
        found = (await api.gql(MY_SHARING, token=owner_token))["viewer"]["account"]
        return [(grant["resource"]["name"], grant["reason"]) for grant in found["usableResources"]]

    assert await mine() == [("RX", "OWNER")]
    link = await api.link(master, owner)
    await run_jobs()
    assert await mine() == [("RX", "OWNER")]
    assert usable(await overview(api, master))["X"] == {"RX"}
    await api.ok("dissociateMember", DISSOCIATE, {"linkId": link})
    await run_jobs()
    assert await mine() == [("RX", "OWNER")]
    assert "X" not in usable(await overview(api, master))


# ---------------------------------------------------------------- S2, S3


async def test_s2_s3_by_default_nothing_is_shared(api: Api, run_jobs: Jobs) -> None:
    given = await seed_001(api)
    await run_jobs()

    master = await account_sharing(api, given.master)
    assert master["sharedResourceTypes"] == []
    for sub in given.subs.values():
        assert (await account_sharing(api, sub))["acceptedResourceTypes"] == []
    current = await overview(api, given.master)
    assert current["state"] == "CURRENT"
    assert usable(current) == {
        "M": ri(1, 2, 3, 4),
        "sub1": ri(5, 6),
        "sub2": ri(7),
        "sub3": set(),
        "sub4": set(),
        "sub5": set(),
    }
    explained = reasons(current)
    assert {explained[(sub, f"RI{n}")] for sub in given.subs for n in range(1, 5)} == {
        (False, "TYPE_NOT_SHARED")
    }


async def test_s2_s3_both_settings_are_needed(api: Api, run_jobs: Jobs) -> None:
    """S2 without S3 and S3 without S2 share nothing; both share the type's resources."""
    given = await seed_001(api)
    sub3_token = await api.token(given.subs["sub3"])
    master_token = await api.token(given.master)
    # A member accepts, the master does not share.
    await api.ok(
        "setAcceptedResourceTypes",
        ACCEPTED_TYPES,
        {"memberIds": [given.subs["sub3"]], "types": [RI]},
        token=sub3_token,
    )
    await run_jobs()
    assert reasons(await overview(api, given.master))[("sub3", "RI1")] == (False, "TYPE_NOT_SHARED")
    # The master shares, another member does not accept.
    await api.ok(
        "setSharedResourceTypes",
        SHARED_TYPES,
        {"masterId": given.master, "types": [RI, SP]},
        token=master_token,
    )
    await run_jobs()
    current = await overview(api, given.master)
    assert reasons(current)[("sub4", "RI1")] == (False, "TYPE_NOT_ACCEPTED")
    assert usable(current)["sub3"] == ri(1, 2, 3, 4)
    assert usable(current)["sub4"] == set()
    assert {
        grant["reason"]
        for grant in (await account_sharing(api, given.subs["sub3"]))["usableResources"]
    } == {"ACCOUNT_SETTING"}
    assert (await account_sharing(api, given.master))["sharedResourceTypes"] == [RI, SP]
    # The master sets it for a member (S3) and withdraws it again (S2: nothing shared).
    await api.ok(
        "setAcceptedResourceTypes",
        ACCEPTED_TYPES,
        {"memberIds": [given.subs["sub4"]], "types": [RI]},
        token=master_token,
    )
    await run_jobs()
    assert usable(await overview(api, given.master))["sub4"] == ri(1, 2, 3, 4)
    await api.ok(
        "setSharedResourceTypes",
        SHARED_TYPES,
        {"masterId": given.master, "types": [SP]},
        token=master_token,
    )
    await run_jobs()
    found = usable(await overview(api, given.master))
    assert found["sub3"] == found["sub4"] == set()


async def test_s2_only_the_masters_users_or_operators_set_its_shared_types(
    api: Api, run_jobs: Jobs
) -> None:
    given = await seed_001(api)
    other = await api.account("Account-Other")
    await run_jobs()
    before = await inputs(api.engine)

    by_member = await api.mutate(
        "setSharedResourceTypes",
        SHARED_TYPES,
        {"masterId": given.master, "types": [RI]},
        token=await api.token(given.subs["sub1"]),
    )
    by_stranger = await api.mutate(
        "setSharedResourceTypes",
        SHARED_TYPES,
        {"masterId": given.master, "types": [RI]},
        token=await api.token(other),
    )
    garbage = await api.mutate(
        "setSharedResourceTypes", SHARED_TYPES, {"masterId": "garbage", "types": [RI]}
    )

    assert errors(by_member) == [("NOT_FOUND", ["masterId"])]
    assert errors(by_stranger) == [("NOT_FOUND", ["masterId"])]
    assert errors(garbage) == [("NOT_FOUND", ["masterId"])]
    assert await inputs(api.engine) == before


async def test_s3_batch_reports_refused_members_per_index_and_changes_the_others(
    api: Api, run_jobs: Jobs
) -> None:
    master = await api.account("Account-M")
    subs = [await api.account(f"Account-sub{n}") for n in (1, 2, 3)]
    for sub in subs:
        await api.link(master, sub)
    financial = await api.account("Account-fin")
    await api.link(master, financial, "FINANCIAL")
    standalone = await api.account("Account-alone")
    other_master = await api.account("Account-M2")
    stranger = await api.account("Account-o1")
    await api.link(other_master, stranger)
    ended = await api.account("Account-ended")
    await api.ok("dissociateMember", DISSOCIATE, {"linkId": await api.link(master, ended)})
    master_token = await api.token(master)
    await run_jobs()
    before = await inputs(api.engine)

    payload = await api.mutate(
        "setAcceptedResourceTypes",
        ACCEPTED_TYPES,
        {
            "memberIds": [
                subs[0],
                "garbage",
                financial,
                standalone,
                subs[2],
                stranger,
                master,
                ended,
                ids.encode("Account", 999_999),
                subs[1],
            ],
            "types": [RI, SP, RI],
        },
        token=master_token,
    )

    assert errors(payload) == [
        ("NOT_FOUND", ["memberIds", "1"]),
        ("NOT_TRUSTEESHIP", ["memberIds", "2"]),
        ("NOT_FOUND", ["memberIds", "3"]),  # invisible to the master (P2)
        ("NOT_FOUND", ["memberIds", "5"]),  # another enterprise's member
        ("NOT_TRUSTEESHIP", ["memberIds", "6"]),  # the master itself has no master
        ("NOT_FOUND", ["memberIds", "7"]),  # dissociated: invisible (U5)
        ("NOT_FOUND", ["memberIds", "8"]),
    ]
    assert {account["id"] for account in payload["accounts"]} == {subs[0], subs[2], subs[1]}
    after = await inputs(api.engine)
    assert after["accepted_resource_types"] == sorted(
        (str(row(sub)), type) for sub in subs for type in (RI, SP)
    )
    assert after["outbox"] == before["outbox"] + 1  # one recalculation for the master
    for sub in subs:
        assert (await account_sharing(api, sub))["acceptedResourceTypes"] == [RI, SP]

    # The operator sees every account: the standalone one is NOT_TRUSTEESHIP, the other
    # enterprise's member changes; an all-refused batch changes nothing at all.
    mixed = await api.mutate(
        "setAcceptedResourceTypes",
        ACCEPTED_TYPES,
        {"memberIds": [standalone, stranger], "types": [SCU]},
    )
    assert errors(mixed) == [("NOT_TRUSTEESHIP", ["memberIds", "0"])]
    assert [account["id"] for account in mixed["accounts"]] == [stranger]
    before = await inputs(api.engine)
    refused = await api.mutate(
        "setAcceptedResourceTypes",
        ACCEPTED_TYPES,
        {"memberIds": [financial, "garbage"], "types": [SCU]},
    )
    assert errors(refused) == [
        ("NOT_TRUSTEESHIP", ["memberIds", "0"]),
        ("NOT_FOUND", ["memberIds", "1"]),
    ]
    assert refused["accounts"] == []
    assert await inputs(api.engine) == before

    # A member sets its own and not a sibling's; an empty list clears.
    sub_token = await api.token(subs[0])
    own = await api.mutate(
        "setAcceptedResourceTypes",
        ACCEPTED_TYPES,
        {"memberIds": [subs[0], subs[1]], "types": []},
        token=sub_token,
    )
    assert errors(own) == [("NOT_FOUND", ["memberIds", "1"])]
    assert (await account_sharing(api, subs[0]))["acceptedResourceTypes"] == []
    assert (await account_sharing(api, subs[1]))["acceptedResourceTypes"] == [RI, SP]


# ---------------------------------------------------------------- S4


async def test_s4_a_member_is_in_at_most_one_group_and_moves(api: Api, run_jobs: Jobs) -> None:
    given = await seed_001(api)
    sub = given.subs
    master_token = await api.token(given.master)
    g1 = await create_group(api, given.master, "G1", [sub["sub1"], sub["sub2"]], token=master_token)
    g2 = await create_group(api, given.master, "G2", [sub["sub3"]], token=master_token)
    await api.ok(
        "shareResourceWithGroups",
        SHARE_WITH_GROUPS,
        {"resourceId": given.resources["RI1"], "groupIds": [g1]},
    )
    await api.ok(
        "shareResourceWithGroups",
        SHARE_WITH_GROUPS,
        {"resourceId": given.resources["RI2"], "groupIds": [g2]},
    )
    await run_jobs()
    assert usable(await overview(api, given.master))["sub1"] == ri(1, 5, 6)

    # sub1 joins G2 (twice in the list): it leaves G1.
    await api.ok(
        "setUserGroupMembers",
        GROUP_MEMBERS,
        {"groupId": g2, "memberIds": [sub["sub3"], sub["sub1"], sub["sub1"]]},
        token=master_token,
    )
    assert await groups_of(api, given.master) == {
        "G1": ({"sub2"}, {"RI1"}),
        "G2": ({"sub1", "sub3"}, {"RI2"}),
    }
    assert (await account_sharing(api, sub["sub1"]))["userGroup"] == {"name": "G2"}
    assert (await account_sharing(api, sub["sub1"], master_token))["userGroup"] == {"name": "G2"}
    async with api.engine.connect() as conn:
        memberships = (
            await conn.execute(
                text("SELECT count(*) FROM user_group_members WHERE member_id = :m"),
                {"m": row(sub["sub1"])},
            )
        ).scalar_one()
    assert memberships == 1
    await run_jobs()
    found = usable(await overview(api, given.master))
    assert found["sub1"] == ri(2, 5, 6) and found["sub2"] == ri(1, 7) and found["sub3"] == ri(2)

    # A group emptied: its former members are in no group.
    await api.ok("setUserGroupMembers", GROUP_MEMBERS, {"groupId": g1, "memberIds": []})
    assert (await account_sharing(api, sub["sub2"]))["userGroup"] is None


async def test_s4_groups_hold_only_the_masters_active_trusteeship_members(
    api: Api, run_jobs: Jobs
) -> None:
    given = await seed_001(api)
    financial = await api.account("Account-fin")
    await api.link(given.master, financial, "FINANCIAL")
    other_master = await api.account("Account-M2")
    stranger = await api.account("Account-o1")
    await api.link(other_master, stranger)
    other_group = await create_group(api, other_master, "G", [stranger])
    ended = await api.account("Account-ended")
    await api.ok("dissociateMember", DISSOCIATE, {"linkId": await api.link(given.master, ended)})
    master_token = await api.token(given.master)
    group = await create_group(api, given.master, "G1", [given.subs["sub1"]], token=master_token)
    await run_jobs()
    before = await inputs(api.engine)

    async def refused(
        member_ids: list[str], token: str | None = master_token, group_id: str = group
    ) -> list[tuple[str, list[str] | None]]:
        kwargs = {} if token is None else {"token": token}
        payload = await api.mutate(
            "setUserGroupMembers",
            GROUP_MEMBERS,
            {"groupId": group_id, "memberIds": member_ids},
            **kwargs,
        )
        return errors(payload)

    sub1, sub2 = given.subs["sub1"], given.subs["sub2"]
    assert await refused([sub2, financial]) == [("NOT_TRUSTEESHIP", ["memberIds", "1"])]
    assert await refused([sub2, "garbage"]) == [("NOT_FOUND", ["memberIds", "1"])]
    assert await refused([stranger]) == [("NOT_FOUND", ["memberIds", "0"])]
    assert await refused([ended]) == [("NOT_FOUND", ["memberIds", "0"])]
    assert await refused([sub2, given.master]) == [("NOT_TRUSTEESHIP", ["memberIds", "1"])]
    # The operator sees the other enterprise's member: still not this master's.
    assert await refused([sub2, stranger], token=None) == [("NOT_FOUND", ["memberIds", "1"])]
    # Another master's group, a member's token, a duplicate name, a member's "group".
    assert await refused([sub2], group_id=other_group) == [("NOT_FOUND", ["groupId"])]
    assert await refused([sub1], token=await api.token(sub1)) == [("NOT_FOUND", ["groupId"])]
    duplicate = await api.mutate(
        "createUserGroup", CREATE_GROUP, {"masterId": given.master, "name": " G1 "}
    )
    assert errors(duplicate) == [("CONFLICT", ["name"])]
    of_member = await api.mutate(
        "createUserGroup", CREATE_GROUP, {"masterId": sub1, "name": "Mine"}
    )
    assert errors(of_member) == [("INVALID_INPUT", ["masterId"])]
    foreign = await api.mutate(
        "shareResourceWithGroups",
        SHARE_WITH_GROUPS,
        {"resourceId": given.resources["RI1"], "groupIds": [group, other_group]},
    )
    assert errors(foreign) == [("NOT_FOUND", ["groupIds", "1"])]
    assert await inputs(api.engine) == before
    assert await pending_rows(api.engine, given.master) == []
    assert (await groups_of(api, given.master))["G1"] == ({"sub1"}, set())


# ---------------------------------------------------------------- S5, S6, S7


async def test_s5_s7_leaving_a_group_restores_s6_after_the_recalculation(
    api: Api, run_jobs: Jobs
) -> None:
    given = await seed_001(api)
    await account_settings(api, given, ["sub1", "sub2"])
    group = await create_group(api, given.master, "G1", [given.subs["sub1"]])
    await api.ok(
        "shareResourceWithGroups",
        SHARE_WITH_GROUPS,
        {"resourceId": given.resources["RI1"], "groupIds": [group]},
    )
    await run_jobs()

    current = await overview(api, given.master)
    assert usable(current)["sub1"] == ri(1, 5, 6)  # S7: the group's only
    assert usable(current)["sub2"] == ri(2, 3, 4, 7)  # S5: RI1 is the group's
    explained = reasons(current)
    assert explained[("sub1", "RI1")] == (True, "USER_GROUP")
    assert explained[("sub1", "RI3")] == (False, "GROUP_HAS_RESOURCES")
    assert explained[("sub2", "RI1")] == (False, "RESTRICTED_TO_GROUPS")
    assert explained[("sub2", "RI3")] == (True, "ACCOUNT_SETTING")

    # sub1 leaves the group: until the job ran the stored result is read (PENDING) ...
    await api.ok("setUserGroupMembers", GROUP_MEMBERS, {"groupId": group, "memberIds": []})
    pending = await overview(api, given.master)
    assert pending["state"] == "PENDING"
    assert usable(pending)["sub1"] == ri(1, 5, 6)
    # ... and right after it, S6 applies again and the group's resource is gone.
    await run_jobs()
    current = await overview(api, given.master)
    assert current["state"] == "CURRENT"
    assert usable(current)["sub1"] == ri(2, 3, 4, 5, 6)
    explained = reasons(current)
    assert explained[("sub1", "RI1")] == (False, "RESTRICTED_TO_GROUPS")
    assert explained[("sub1", "RI3")] == (True, "ACCOUNT_SETTING")


async def test_s5_s6_a_group_without_resources_and_an_unshared_resource(
    api: Api, run_jobs: Jobs
) -> None:
    """A member of a group with no resources keeps S6; a resource shared with no group
    (again) is S6's; S7 takes away every type, not only the group resource's."""
    given = await seed_001(api)
    await create_resource(api, given.master, "SP1", SP)
    await api.ok(
        "setSharedResourceTypes", SHARED_TYPES, {"masterId": given.master, "types": [RI, SP]}
    )
    await api.ok(
        "setAcceptedResourceTypes",
        ACCEPTED_TYPES,
        {"memberIds": [given.subs["sub1"], given.subs["sub2"]], "types": [RI, SP]},
    )
    await create_group(api, given.master, "Idle", [given.subs["sub2"]])  # no resources
    busy = await create_group(api, given.master, "Busy", [given.subs["sub1"]])
    await api.ok(
        "shareResourceWithGroups",
        SHARE_WITH_GROUPS,
        {"resourceId": given.resources["RI1"], "groupIds": [busy]},
    )
    await run_jobs()
    found = usable(await overview(api, given.master))
    assert found["sub2"] == ri(2, 3, 4, 7) | {"SP1"}
    assert found["sub1"] == ri(1, 5, 6)

    await api.ok(
        "shareResourceWithGroups",
        SHARE_WITH_GROUPS,
        {"resourceId": given.resources["RI1"], "groupIds": []},
    )
    await run_jobs()
    current = await overview(api, given.master)
    assert usable(current)["sub1"] == ri(1, 2, 3, 4, 5, 6) | {"SP1"}
    assert usable(current)["sub2"] == ri(1, 2, 3, 4, 7) | {"SP1"}
    assert (await groups_of(api, given.master))["Busy"] == ({"sub1"}, set())


async def test_s6_financial_members_never_share(api: Api, run_jobs: Jobs) -> None:
    master = await api.account("Account-M")
    financial = await api.account("Account-fin")
    await api.link(master, financial, "FINANCIAL")
    await create_resource(api, master, "RI1")
    await api.ok("setSharedResourceTypes", SHARED_TYPES, {"masterId": master, "types": [RI]})
    refused = await api.mutate(
        "setAcceptedResourceTypes", ACCEPTED_TYPES, {"memberIds": [financial], "types": [RI]}
    )
    assert errors(refused) == [("NOT_TRUSTEESHIP", ["memberIds", "0"])]
    await bulk_accept(api, [financial])  # even with the setting written behind its back
    await run_jobs()
    current = await overview(api, master)
    assert usable(current)["fin"] == set()
    assert reasons(current)[("fin", "RI1")] == (False, "NOT_TRUSTEESHIP")


# ---------------------------------------------------------------- S8


async def s8_master(api: Api, members: int, accepting: int) -> tuple[str, list[str], str]:
    """A master sharing RI with one RI resource, ``members`` bulk members of which the
    first ``accepting`` accept RI (bulk SQL); recalculated."""
    master = await api.account("Account-M")
    resource = await create_resource(api, master, "RI1")
    await api.ok("setSharedResourceTypes", SHARED_TYPES, {"masterId": master, "types": [RI]})
    bulk = await bulk_members(api, master, members)
    await bulk_accept(api, bulk[:accepting])
    return master, bulk, resource


async def test_s8_the_100th_member_may_share_a_type_the_101st_may_not(
    api: Api, run_jobs: Jobs
) -> None:
    master, bulk, _ = await s8_master(api, 101, 99)
    master_token = await api.token(master)
    hundredth = await api.mutate(
        "setAcceptedResourceTypes",
        ACCEPTED_TYPES,
        {"memberIds": [bulk[99]], "types": [RI]},
        token=master_token,
    )
    assert errors(hundredth) == []
    await run_jobs()
    before = await inputs(api.engine)

    # The 101st is refused, per index; the other member of the batch (already counted)
    # changes; types under the limit (SP) are not affected.
    payload = await api.mutate(
        "setAcceptedResourceTypes",
        ACCEPTED_TYPES,
        {"memberIds": [bulk[100], bulk[0]], "types": [RI, SP]},
        token=master_token,
    )
    assert errors(payload) == [("SHARING_LIMIT", ["memberIds", "0"])]
    assert [account["id"] for account in payload["accounts"]] == [bulk[0]]
    after = await inputs(api.engine)
    assert after["accepted_resource_types"] == sorted(
        [*before["accepted_resource_types"], (str(row(bulk[0])), SP)]
    )
    only_101st = await api.mutate(
        "setAcceptedResourceTypes", ACCEPTED_TYPES, {"memberIds": [bulk[100]], "types": [RI]}
    )
    assert errors(only_101st) == [("SHARING_LIMIT", ["memberIds", "0"])]
    assert only_101st["accounts"] == []
    assert await inputs(api.engine) == after

    # The other way: one leaves, then the 101st fits.
    await api.ok(
        "setAcceptedResourceTypes",
        ACCEPTED_TYPES,
        {"memberIds": [bulk[0]], "types": []},
        token=master_token,
    )
    await api.ok(
        "setAcceptedResourceTypes",
        ACCEPTED_TYPES,
        {"memberIds": [bulk[100]], "types": [RI]},
        token=master_token,
    )
    await run_jobs()
    shared = await details(api, master, shared=True, first=0)
    assert shared["totalCount"] == 100 + 1  # 100 members and the master (OWNER)


async def test_s8_shared_types_group_members_and_group_sharing_respect_the_limit(
    api: Api, run_jobs: Jobs
) -> None:
    master, bulk, _ = await s8_master(api, 101, 100)
    group = await create_group(api, master, "G", [])
    second = await create_resource(api, master, "RI2")
    await run_jobs()

    # A group gets an RI resource: a group member not counted yet would be the 101st.
    await api.ok("setUserGroupMembers", GROUP_MEMBERS, {"groupId": group, "memberIds": [bulk[100]]})
    with_member = await inputs(api.engine)
    to_group = await api.mutate(
        "shareResourceWithGroups", SHARE_WITH_GROUPS, {"resourceId": second, "groupIds": [group]}
    )
    assert errors(to_group) == [("SHARING_LIMIT", ["groupIds"])]
    assert await inputs(api.engine) == with_member
    # The same the other way round: the group has the resource, the 101st joins it.
    await api.ok("setUserGroupMembers", GROUP_MEMBERS, {"groupId": group, "memberIds": []})
    await api.ok(
        "shareResourceWithGroups", SHARE_WITH_GROUPS, {"resourceId": second, "groupIds": [group]}
    )
    with_resource = await inputs(api.engine)
    joining = await api.mutate(
        "setUserGroupMembers", GROUP_MEMBERS, {"groupId": group, "memberIds": [bulk[50], bulk[100]]}
    )
    assert errors(joining) == [("SHARING_LIMIT", ["memberIds"])]
    assert await inputs(api.engine) == with_resource
    # A member already counted moves from S6 to the group: still 100.
    await api.ok("setUserGroupMembers", GROUP_MEMBERS, {"groupId": group, "memberIds": [bulk[50]]})

    # S2: the master stops sharing RI (allowed), a 101st acceptance is written behind the
    # API's back, and sharing RI again would take the type to 101.
    await api.ok("setSharedResourceTypes", SHARED_TYPES, {"masterId": master, "types": []})
    await bulk_accept(api, [bulk[100]])
    unshared = await inputs(api.engine)
    again = await api.mutate(
        "setSharedResourceTypes", SHARED_TYPES, {"masterId": master, "types": [RI, SP]}
    )
    assert errors(again) == [("SHARING_LIMIT", ["types"])]
    assert await inputs(api.engine) == unshared
    ok = await api.mutate(
        "setSharedResourceTypes", SHARED_TYPES, {"masterId": master, "types": [SP]}
    )
    assert errors(ok) == []


async def test_s8_recalculation_over_data_past_the_limit_gives_limit_reached(
    api: Api, run_jobs: Jobs
) -> None:
    """Data past the limit (written without the API's check) is recalculated: the first
    100 members by account id share, the 101st is LIMIT_REACHED; a change that does not
    take the type further past the limit is allowed, one that does is not."""
    master, bulk, resource = await s8_master(api, 102, 101)
    await create_resource(api, master, "RI2")  # operators' resources are not checked
    await run_jobs()

    last = await details(api, master, account=bulk[100])
    assert detail_pairs(last) == [
        ("Bulk-101", "RI1", False, "LIMIT_REACHED"),
        ("Bulk-101", "RI2", False, "LIMIT_REACHED"),
    ]
    assert all(edge["node"]["since"] is None for edge in last["edges"])
    first = await details(api, master, account=bulk[99])
    assert detail_pairs(first) == [
        ("Bulk-100", "RI1", True, "ACCOUNT_SETTING"),
        ("Bulk-100", "RI2", True, "ACCOUNT_SETTING"),
    ]
    assert (await details(api, master, resource=resource, shared=True, first=0))[
        "totalCount"
    ] == 101
    async with api.engine.connect() as conn:
        sharing = (
            await conn.execute(
                text(
                    "SELECT count(DISTINCT account_id) FROM sharing_grants "
                    "WHERE master_id = :m AND reason = 'ACCOUNT_SETTING'"
                ),
                {"m": row(master)},
            )
        ).scalar_one()
    assert sharing == SHARING_LIMIT

    # At 101: re-setting a counted member keeps 101 (allowed); a 102nd is refused.
    same = await api.mutate(
        "setAcceptedResourceTypes",
        ACCEPTED_TYPES,
        {"memberIds": [bulk[3], bulk[101]], "types": [RI]},
    )
    assert errors(same) == [("SHARING_LIMIT", ["memberIds", "1"])]
    # One of the first 100 leaves: the 101st now shares after the recalculation.
    await api.ok("setAcceptedResourceTypes", ACCEPTED_TYPES, {"memberIds": [bulk[0]], "types": []})
    await run_jobs()
    assert detail_pairs(await details(api, master, account=bulk[100], resource=resource)) == [
        ("Bulk-101", "RI1", True, "ACCOUNT_SETTING")
    ]


# ---------------------------------------------------------------- S9


async def test_s9_dissociation_ends_the_members_sharing(api: Api, run_jobs: Jobs) -> None:
    given = await seed_001(api)
    links = {}
    async with api.engine.connect() as conn:
        for name, sub in given.subs.items():
            link_row = (
                await conn.execute(
                    text("SELECT id FROM links WHERE member_id = :m AND status = 'ACTIVE'"),
                    {"m": row(sub)},
                )
            ).scalar_one()
            links[name] = ids.encode("Link", link_row)
    await both(api, given)
    await run_jobs()
    sub5_token = await api.token(given.subs["sub5"])
    sub1_token = await api.token(given.subs["sub1"])
    assert names(
        (await account_sharing(api, given.subs["sub5"], sub5_token))["usableResources"]
    ) == ri(3, 4)

    # sub5 (account setting) ends the link itself; the master ends sub1's (group).
    await api.ok("dissociateMember", DISSOCIATE, {"linkId": links["sub5"]}, token=sub5_token)
    await api.ok(
        "dissociateMember",
        DISSOCIATE,
        {"linkId": links["sub1"]},
        token=await api.token(given.master),
    )
    pending = await overview(api, given.master)
    assert pending["state"] == "PENDING"
    assert ("sub5", "RI3") in await stored_grants(api.engine, given.master)
    await run_jobs()

    current = await overview(api, given.master)
    assert current["state"] == "CURRENT"
    assert usable(current) == {
        "M": ri(1, 2, 3, 4),
        "sub2": ri(1, 2, 7),
        "sub3": ri(1),
        "sub4": ri(1, 2),
    }
    stored = await stored_grants(api.engine, given.master)
    assert not {pair for pair in stored if pair[0] in ("sub1", "sub5")}
    assert (await details(api, given.master, account=given.subs["sub5"]))["totalCount"] == 0
    assert (await groups_of(api, given.master))["G1"] == ({"sub3"}, {"RI1"})
    # The former members use none of the master's resources, and cannot see them.
    assert names(
        (await account_sharing(api, given.subs["sub5"], sub5_token))["usableResources"]
    ) <= ri(5, 6, 7)
    assert not names(
        (await account_sharing(api, given.subs["sub1"], sub1_token))["usableResources"]
    ) & ri(1, 2, 3, 4)
    for name in ("RI1", "RI3"):
        assert (await api.gql(NODE, {"id": given.resources[name]}, token=sub5_token))[
            "node"
        ] is None
    assert (await api.gql(NODE, {"id": given.resources["RI1"]}, token=sub1_token))["node"] is None

    # Associated again, sub1 is in no group: the master's old grouping does not return.
    await api.link(given.master, given.subs["sub1"])
    await run_jobs()
    assert (await account_sharing(api, given.subs["sub1"]))["userGroup"] is None
    rejoined = reasons(await overview(api, given.master))
    assert rejoined[("sub1", "RI1")] == (False, "RESTRICTED_TO_GROUPS")


# ---------------------------------------------------------------- S10


async def test_s10_views_by_account_by_group_and_details(api: Api, run_jobs: Jobs) -> None:
    given = await seed_001(api)
    await both(api, given)
    await run_jobs()
    current = await overview(api, given.master)

    by_account = {
        entry["account"]["name"].removeprefix("Account-"): {
            grant["resource"]["name"]: grant["reason"] for grant in entry["resources"]
        }
        for entry in current["byAccount"]
    }
    assert by_account == {
        "M": dict.fromkeys(ri(1, 2, 3, 4), "OWNER"),
        "sub1": {"RI1": "USER_GROUP", "RI5": "OWNER", "RI6": "OWNER"},
        "sub2": {"RI1": "USER_GROUP", "RI2": "USER_GROUP", "RI7": "OWNER"},
        "sub3": {"RI1": "USER_GROUP"},
        "sub4": {"RI1": "USER_GROUP", "RI2": "USER_GROUP"},
        "sub5": {"RI3": "ACCOUNT_SETTING", "RI4": "ACCOUNT_SETTING"},
    }
    assert [
        (g["group"]["name"], [r["name"] for r in g["resources"]]) for g in current["byGroup"]
    ] == [("G1", ["RI1"]), ("G2", ["RI1", "RI2"])]

    # Details: every pair (6 accounts x 4 of the master's + 3 own), ordered by
    # (account, resource); since is set exactly on the shared ones.
    everything = await details(api, given.master, first=500)
    pairs = detail_pairs(everything)
    assert everything["totalCount"] == len(pairs) == 27
    assert not everything["pageInfo"]["hasNextPage"]
    shared = {(a, r): reason for a, r, is_shared, reason in pairs if is_shared}
    assert shared == {
        (a, r): reason for a, grants in by_account.items() for r, reason in grants.items()
    }
    assert all(
        (edge["node"]["since"] is not None) == edge["node"]["shared"]
        for edge in everything["edges"]
    )
    stored = await stored_grants(api.engine, given.master)
    for edge in everything["edges"]:
        node = edge["node"]
        if node["shared"]:
            pair = (node["account"]["name"].removeprefix("Account-"), node["resource"]["name"])
            assert node["since"] == stored[pair][1].isoformat()

    # Filters, alone and together.
    sub5 = await details(api, given.master, account=given.subs["sub5"])
    assert detail_pairs(sub5) == [
        ("sub5", "RI1", False, "RESTRICTED_TO_GROUPS"),
        ("sub5", "RI2", False, "RESTRICTED_TO_GROUPS"),
        ("sub5", "RI3", True, "ACCOUNT_SETTING"),
        ("sub5", "RI4", True, "ACCOUNT_SETTING"),
    ]
    assert sub5["totalCount"] == 4
    ri1 = await details(api, given.master, resource=given.resources["RI1"])
    assert ri1["totalCount"] == 6
    assert {a for a, _, s, _ in detail_pairs(ri1) if s} == {"M", "sub1", "sub2", "sub3", "sub4"}
    assert (await details(api, given.master, shared=True))["totalCount"] == 15
    assert (await details(api, given.master, shared=False))["totalCount"] == 12
    assert detail_pairs(
        await details(api, given.master, account=given.subs["sub1"], shared=False)
    ) == [
        ("sub1", "RI2", False, "RESTRICTED_TO_GROUPS"),
        ("sub1", "RI3", False, "GROUP_HAS_RESOURCES"),
        ("sub1", "RI4", False, "GROUP_HAS_RESOURCES"),
    ]
    assert (
        await details(
            api, given.master, account=given.subs["sub2"], resource=given.resources["RI7"]
        )
    )["totalCount"] == 1
    assert (
        await details(
            api, given.master, account=given.subs["sub3"], resource=given.resources["RI7"]
        )
    )["totalCount"] == 0
    assert (await details(api, given.master, account="garbage"))["totalCount"] == 0

    # Keyset pages of 4 (and of 5 with a filter): the same pairs in the same order.
    for arguments, expected in (({}, pairs), ({"shared": True}, [p for p in pairs if p[2]])):
        pages: list[tuple[str, str, bool, str]] = []
        after = None
        while True:
            page = await details(api, given.master, first=4, after=after, **arguments)
            assert page["totalCount"] == len(expected)
            pages.extend(detail_pairs(page))
            assert page["pageInfo"]["endCursor"] == (
                page["edges"][-1]["cursor"] if page["edges"] else None
            )
            if not page["pageInfo"]["hasNextPage"]:
                break
            assert len(page["edges"]) == 4
            after = page["pageInfo"]["endCursor"]
        assert pages == expected
    last = everything["edges"][-1]["cursor"]
    beyond = await details(api, given.master, first=4, after=last)
    assert beyond["edges"] == [] and not beyond["pageInfo"]["hasNextPage"]
    assert beyond["pageInfo"]["endCursor"] is None

    for bad in ({"after": "not-a-cursor"}, {"first": 501}, {"first": -1}):
        body = await api.raw(DETAILS, {"master": given.master, **bad})
        assert body["errors"][0]["extensions"]["code"] == "INVALID_INPUT"


# ---------------------------------------------------------------- S11


async def test_s11_pending_then_current_and_since_kept_across_recalculations(
    api: Api, run_jobs: Jobs
) -> None:
    given = await seed_001(api)
    fresh = (await api.gql(STATE, {"master": given.master}))["sharing"]
    assert fresh["state"] == "PENDING"  # the resources' creation is not recalculated yet
    await run_jobs()
    await by_account_only(api, given)
    assert (await api.gql(STATE, {"master": given.master}))["sharing"]["state"] == "PENDING"
    await run_jobs()
    first = (await api.gql(STATE, {"master": given.master}))["sharing"]
    assert first["state"] == "CURRENT" and first["calculatedAt"] is not None
    kept = await stored_grants(api.engine, given.master)

    # An unrelated change (a resource of a type nobody shares) is recalculated: every
    # grant that did not change keeps its since, the new one starts now.
    await create_resource(api, given.master, "SP1", SP)
    await run_jobs()
    second = (await api.gql(STATE, {"master": given.master}))["sharing"]
    assert second["state"] == "CURRENT" and second["calculatedAt"] > first["calculatedAt"]
    now = await stored_grants(api.engine, given.master)
    assert {pair: now[pair] for pair in kept} == kept
    assert set(now) - set(kept) == {("M", "SP1")}
    assert now[("M", "SP1")][1] > max(since for _, since in kept.values())

    # A changed reason is a new grant: sub4 uses RI1 through a group from now on.
    group = await create_group(api, given.master, "G", [given.subs["sub4"]])
    await api.ok(
        "shareResourceWithGroups",
        SHARE_WITH_GROUPS,
        {"resourceId": given.resources["RI1"], "groupIds": [group]},
    )
    await run_jobs()
    later = await stored_grants(api.engine, given.master)
    assert later[("sub4", "RI1")][0] == "USER_GROUP"
    assert later[("sub4", "RI1")][1] > kept[("sub4", "RI1")][1]
    assert later[("sub1", "RI5")] == kept[("sub1", "RI5")]


async def test_s11_a_job_run_twice_gives_the_same_grants(api: Api, run_jobs: Jobs) -> None:
    given = await seed_001(api)
    await run_jobs()
    await by_account_only(api, given)
    rows = await pending_rows(api.engine, given.master)
    assert len(rows) == 2

    assert await outbox.run_row(api.engine, rows[0]) is True
    once = await stored_grants(api.engine, given.master)
    # The covered row was marked done by the first job; each row runs once.
    assert await pending_rows(api.engine, given.master) == []
    assert await outbox.run_row(api.engine, rows[0]) is False
    assert await outbox.run_row(api.engine, rows[1]) is False
    assert await stored_grants(api.engine, given.master) == once

    for _ in range(2):
        async with api.engine.begin() as conn:
            await recalculation.recalculate(conn, row(given.master))
        assert await stored_grants(api.engine, given.master) == once
    # Twice in one transaction too.
    async with api.engine.begin() as conn:
        await recalculation.recalculate(conn, row(given.master))
        await recalculation.recalculate(conn, row(given.master))
    assert await stored_grants(api.engine, given.master) == once
    assert reasons_only(once) == await computed_grants(api.engine, given.master)
    await run_jobs()
    assert usable(await overview(api, given.master))["sub4"] == ri(1, 2, 3, 4)


async def test_s11_a_crashed_recalculation_leaves_the_previous_result_and_blocks_no_one(
    api: Api, run_jobs: Jobs
) -> None:
    given = await seed_001(api)
    await by_account_only(api, given)
    other = await api.account("Account-Other")
    await create_resource(api, other, "Other-RI")
    await run_jobs()
    previous = await stored_grants(api.engine, given.master)
    previous_state = (await api.gql(STATE, {"master": given.master}))["sharing"]

    await api.ok(
        "setAcceptedResourceTypes",
        ACCEPTED_TYPES,
        {"memberIds": [given.subs["sub3"]], "types": [RI]},
    )
    [pending] = await pending_rows(api.engine, given.master)

    # The job runs in a transaction that dies before it commits ...
    async with api.engine.connect() as conn:
        transaction = await conn.begin()
        await recalculation.recalculate(conn, row(given.master))
        # ... while it holds the master's lock, reads are served (the previous result,
        # PENDING) and another master's change and recalculation go through.
        during = await asyncio.wait_for(overview(api, given.master), 10)
        assert during["state"] == "PENDING"
        assert reasons_only(await stored_grants(api.engine, given.master)) == reasons_only(previous)
        await asyncio.wait_for(
            api.ok("setSharedResourceTypes", SHARED_TYPES, {"masterId": other, "types": [RI]}), 10
        )
        [other_row] = await pending_rows(api.engine, other)
        assert await asyncio.wait_for(outbox.run_row(api.engine, other_row), 10) is True
        await transaction.rollback()

    assert await stored_grants(api.engine, given.master) == previous
    assert await pending_rows(api.engine, given.master) == [pending]
    state = (await api.gql(STATE, {"master": given.master}))["sharing"]
    assert state == {"state": "PENDING", "calculatedAt": previous_state["calculatedAt"]}

    await run_jobs()
    after = await stored_grants(api.engine, given.master)
    assert reasons_only(after) == await computed_grants(api.engine, given.master)
    assert reasons_only(after) == {
        **reasons_only(previous),
        **{("sub3", f"RI{n}"): "ACCOUNT_SETTING" for n in range(1, 5)},
    }
    assert {pair: after[pair] for pair in previous} == previous  # since kept
    assert await pending_rows(api.engine, given.master) == []
    assert (await api.gql(STATE, {"master": given.master}))["sharing"]["state"] == "CURRENT"


async def test_s11_five_changes_one_worker_run(api: Api, run_jobs: Jobs) -> None:
    given = await seed_001(api)
    await run_jobs()
    await api.ok("setSharedResourceTypes", SHARED_TYPES, {"masterId": given.master, "types": [RI]})
    await api.ok(
        "setAcceptedResourceTypes",
        ACCEPTED_TYPES,
        {"memberIds": [given.subs["sub1"], given.subs["sub5"]], "types": [RI]},
    )
    group = await create_group(api, given.master, "G1", [given.subs["sub1"], given.subs["sub3"]])
    await api.ok(
        "shareResourceWithGroups",
        SHARE_WITH_GROUPS,
        {"resourceId": given.resources["RI1"], "groupIds": [group]},
    )
    await create_resource(api, given.master, "RI8")
    rows = await pending_rows(api.engine, given.master)
    assert len(rows) == 5  # createUserGroup changes no sharing: it writes no row
    assert (await api.gql(STATE, {"master": given.master}))["sharing"]["state"] == "PENDING"

    await run_jobs()
    async with api.engine.connect() as conn:
        done = (
            await conn.execute(
                text("SELECT count(*) FROM outbox WHERE id = ANY(:ids) AND done_at IS NOT NULL"),
                {"ids": rows},
            )
        ).scalar_one()
    assert done == 5
    current = await overview(api, given.master)
    assert current["state"] == "CURRENT"
    assert usable(current) == {
        "M": ri(1, 2, 3, 4, 8),
        "sub1": ri(1, 5, 6),
        "sub2": ri(7),
        "sub3": ri(1),
        "sub4": set(),
        "sub5": ri(2, 3, 4, 8),
    }
    assert reasons_only(await stored_grants(api.engine, given.master)) == (
        await computed_grants(api.engine, given.master)
    )


# ---------------------------------------------------------------- P2-P4


async def test_p3_a_member_sees_what_it_uses_but_not_the_masters_sharing(
    api: Api, run_jobs: Jobs
) -> None:
    given = await seed_001(api)
    await both(api, given)
    await run_jobs()
    sub1_token = await api.token(given.subs["sub1"])
    sub5_token = await api.token(given.subs["sub5"])

    mine = (await api.gql(MY_SHARING, token=sub5_token))["viewer"]["account"]
    assert [
        (g["resource"]["name"], g["resource"]["owner"]["name"], g["reason"])
        for g in mine["usableResources"]
    ] == [("RI3", "Account-M", "ACCOUNT_SETTING"), ("RI4", "Account-M", "ACCOUNT_SETTING")]
    mine = (await api.gql(MY_SHARING, token=sub1_token))["viewer"]["account"]
    assert [(g["resource"]["name"], g["reason"]) for g in mine["usableResources"]] == [
        ("RI1", "USER_GROUP"),
        ("RI5", "OWNER"),
        ("RI6", "OWNER"),
    ]
    # Its own group, with itself as the only member it sees (never siblings).
    assert mine["userGroup"] == {
        "name": "G1",
        "members": [{"name": "Account-sub1"}],
        "resources": [{"name": "RI1"}],
    }

    for token in (sub1_token, sub5_token):
        assert (await api.gql(SHARING_NULL, {"master": given.master}, token=token))[
            "sharing"
        ] is None
    # Nodes: what it uses, yes; the master's others, a sibling's, another group: no.
    assert (await api.gql(NODE, {"id": given.resources["RI1"]}, token=sub1_token))["node"][
        "name"
    ] == "RI1"
    for name in ("RI2", "RI3", "RI7"):
        assert (await api.gql(NODE, {"id": given.resources[name]}, token=sub1_token))[
            "node"
        ] is None
    group_ids = await group_ids_of(api, given.master)
    assert (await api.gql(NODE, {"id": group_ids["G1"]}, token=sub1_token))["node"] == {
        "id": group_ids["G1"],
        "name": "G1",
        "members": [{"name": "Account-sub1"}],
        "resources": [{"name": "RI1"}],
    }
    assert (await api.gql(NODE, {"id": group_ids["G2"]}, token=sub1_token))["node"] is None
    assert (await api.gql(NODE, {"id": group_ids["G1"]}, token=sub5_token))["node"] is None
    # The master sees the whole of it.
    master_view = await overview(api, given.master, await api.token(given.master))
    assert usable(master_view)["sub5"] == ri(3, 4)


async def test_p2_another_enterprise_sees_nothing(api: Api, run_jobs: Jobs) -> None:
    given: Enterprise = await seed_001(api)
    await both(api, given)
    other = await api.account("Account-Other")
    other_member = await api.account("Account-Other-sub")
    await api.link(other, other_member)
    await run_jobs()
    groups = await group_ids_of(api, given.master)

    for token in (await api.token(other), await api.token(other_member)):
        assert (await api.gql(SHARING_NULL, {"master": given.master}, token=token))[
            "sharing"
        ] is None
        for resource in given.resources.values():
            assert (await api.gql(NODE, {"id": resource}, token=token))["node"] is None
        for group in groups.values():
            assert (await api.gql(NODE, {"id": group}, token=token))["node"] is None
        assert (await api.gql(ACCOUNT_SHARING, {"id": given.master}, token=token))[
            "account"
        ] is None
    # No token at all: an error, not data.
    body = await api.raw(SHARING_NULL, {"master": given.master}, token=None)
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    # The operator sees it (P4).
    assert (await api.gql(SHARING_NULL, {"master": given.master}))["sharing"] == {
        "state": "CURRENT"
    }
