"""S5-S7, S10, S11: the three worked configurations of seed 001, through the real API and a
real worker, give exactly DOMAIN.md's usable sets, with the reasons of the other pairs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from tests.helpers import Api

CREATE_RESOURCE = """mutation($input: CreateResourceInput!) { createResource(input: $input) {
  resource { id name } userErrors { code field message } } }"""
SHARED_TYPES = """mutation($input: SetSharedResourceTypesInput!) {
  setSharedResourceTypes(input: $input) { account { id } userErrors { code field } } }"""
ACCEPTED_TYPES = """mutation($input: SetAcceptedResourceTypesInput!) {
  setAcceptedResourceTypes(input: $input) { accounts { id } userErrors { code field } } }"""
CREATE_GROUP = """mutation($input: CreateUserGroupInput!) { createUserGroup(input: $input) {
  userGroup { id name } userErrors { code field } } }"""
GROUP_MEMBERS = """mutation($input: SetUserGroupMembersInput!) {
  setUserGroupMembers(input: $input) { userGroup { id } userErrors { code field } } }"""
SHARE_WITH_GROUPS = """mutation($input: ShareResourceWithGroupsInput!) {
  shareResourceWithGroups(input: $input) { resource { id } userErrors { code field } } }"""
OVERVIEW = """query($master: ID!) { sharing(masterId: $master) {
  state calculatedAt
  byAccount { account { name } resources { resource { name } reason since } }
  byGroup { group { name } resources { name } }
  details(first: 500) { totalCount edges { node {
    account { name } resource { name } shared reason since } } }
} }"""

RI = "RESERVED_INSTANCE"


@dataclass
class Enterprise:
    master: str
    subs: dict[str, str]
    resources: dict[str, str]


async def seed_001(api: Api) -> Enterprise:
    """Account-M with trusteeship members sub1..sub5; RI1-RI4 of M, RI5-RI6 of sub1, RI7
    of sub2."""
    master = await api.account("Account-M")
    subs = {}
    for number in range(1, 6):
        sub = await api.account(f"Account-sub{number}")
        await api.link(master, sub)
        subs[f"sub{number}"] = sub
    owners = {
        "RI1": master,
        "RI2": master,
        "RI3": master,
        "RI4": master,
        "RI5": subs["sub1"],
        "RI6": subs["sub1"],
        "RI7": subs["sub2"],
    }
    resources = {}
    for name, owner in owners.items():
        payload = await api.ok(
            "createResource",
            CREATE_RESOURCE,
            {
                "ownerId": owner,
                "type": RI,
                "name": name,
                "capacity": "10",
                "validFrom": "2026-01-01T00:00:00Z",
                "validUntil": "2027-01-01T00:00:00Z",
            },
        )
        resources[name] = payload["resource"]["id"]
    return Enterprise(master, subs, resources)


async def groups_of_config_2(api: Api, given: Enterprise) -> None:
    """G1 = {sub1, sub3}, G2 = {sub2, sub4}; RI1 -> G1, G2; RI2 -> G2."""
    group_ids = {}
    for name, members in (("G1", ["sub1", "sub3"]), ("G2", ["sub2", "sub4"])):
        payload = await api.ok(
            "createUserGroup", CREATE_GROUP, {"masterId": given.master, "name": name}
        )
        group_ids[name] = payload["userGroup"]["id"]
        await api.ok(
            "setUserGroupMembers",
            GROUP_MEMBERS,
            {"groupId": group_ids[name], "memberIds": [given.subs[m] for m in members]},
        )
    await api.ok(
        "shareResourceWithGroups",
        SHARE_WITH_GROUPS,
        {"resourceId": given.resources["RI1"], "groupIds": [group_ids["G1"], group_ids["G2"]]},
    )
    await api.ok(
        "shareResourceWithGroups",
        SHARE_WITH_GROUPS,
        {"resourceId": given.resources["RI2"], "groupIds": [group_ids["G2"]]},
    )


async def account_settings(api: Api, given: Enterprise, accepting: list[str]) -> None:
    await api.ok("setSharedResourceTypes", SHARED_TYPES, {"masterId": given.master, "types": [RI]})
    await api.ok(
        "setAcceptedResourceTypes",
        ACCEPTED_TYPES,
        {"memberIds": [given.subs[s] for s in accepting], "types": [RI]},
    )


def usable(overview: dict) -> dict[str, set[str]]:  # type: ignore[type-arg]
    return {
        entry["account"]["name"].removeprefix("Account-"): {
            grant["resource"]["name"] for grant in entry["resources"]
        }
        for entry in overview["byAccount"]
    }


def reasons(overview: dict) -> dict[tuple[str, str], tuple[bool, str]]:  # type: ignore[type-arg]
    return {
        (
            edge["node"]["account"]["name"].removeprefix("Account-"),
            edge["node"]["resource"]["name"],
        ): (edge["node"]["shared"], edge["node"]["reason"])
        for edge in overview["details"]["edges"]
    }


def ri(*numbers: int) -> set[str]:
    return {f"RI{n}" for n in numbers}


Configure = Callable[[Api, Enterprise], Awaitable[None]]


async def by_account_only(api: Api, given: Enterprise) -> None:
    await account_settings(api, given, ["sub1", "sub4"])


async def by_resource_only(api: Api, given: Enterprise) -> None:
    await groups_of_config_2(api, given)


async def both(api: Api, given: Enterprise) -> None:
    await account_settings(api, given, ["sub1", "sub5"])
    await groups_of_config_2(api, given)


CONFIGURATIONS = {
    "by account only": (
        by_account_only,
        {
            "sub1": ri(1, 2, 3, 4, 5, 6),
            "sub2": ri(7),
            "sub3": set(),
            "sub4": ri(1, 2, 3, 4),
            "sub5": set(),
        },
    ),
    "by resource only": (
        by_resource_only,
        {"sub1": ri(1, 5, 6), "sub2": ri(1, 2, 7), "sub3": ri(1), "sub4": ri(1, 2), "sub5": set()},
    ),
    "both": (
        both,
        {
            "sub1": ri(1, 5, 6),
            "sub2": ri(1, 2, 7),
            "sub3": ri(1),
            "sub4": ri(1, 2),
            "sub5": ri(3, 4),
        },
    ),
}

# The reasons of some not-shared pairs, per configuration (S10).
NOT_SHARED = {
    "by account only": {("sub2", "RI1"): "TYPE_NOT_ACCEPTED", ("sub3", "RI4"): "TYPE_NOT_ACCEPTED"},
    "by resource only": {
        ("sub5", "RI3"): "TYPE_NOT_SHARED",
        ("sub3", "RI2"): "RESTRICTED_TO_GROUPS",
        ("sub5", "RI1"): "RESTRICTED_TO_GROUPS",
        ("sub1", "RI3"): "TYPE_NOT_SHARED",
    },
    "both": {
        ("sub1", "RI3"): "GROUP_HAS_RESOURCES",
        ("sub5", "RI1"): "RESTRICTED_TO_GROUPS",
        ("sub3", "RI4"): "TYPE_NOT_ACCEPTED",
        ("sub4", "RI3"): "TYPE_NOT_ACCEPTED",
    },
}


@pytest.mark.parametrize("name", list(CONFIGURATIONS))
async def test_s5_s6_s7_seed_001_configurations(
    api: Api, run_jobs: Callable[[], Awaitable[None]], name: str
) -> None:
    configure, expected = CONFIGURATIONS[name]
    given = await seed_001(api)
    await configure(api, given)

    pending = (await api.gql(OVERVIEW, {"master": given.master}))["sharing"]
    await run_jobs()
    current = (await api.gql(OVERVIEW, {"master": given.master}))["sharing"]

    assert pending["state"] == "PENDING"
    assert current["state"] == "CURRENT" and current["calculatedAt"] is not None
    found = usable(current)
    assert found["M"] == ri(1, 2, 3, 4)  # the master always uses its own
    assert {sub: found[sub] for sub in expected} == expected
    explained = reasons(current)
    for pair, reason in NOT_SHARED[name].items():
        assert explained[pair] == (False, reason)
    for sub, names in expected.items():
        for resource in names:
            assert explained[(sub, resource)][0] is True
