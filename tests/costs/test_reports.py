"""C1 (products and tags on charges) and C2 (cost analysis), with U5/U6/P2 visibility."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.costs.support import CHARGE, COSTS, UPDATE_ACCOUNT, charge, costs, enable
from tests.funds.support import refused
from tests.helpers import (
    CREATE_ACCOUNT,
    DISSOCIATE,
    INVITE,
    OPERATOR_TOKEN,
    RESPOND,
    Api,
)

DAY = timedelta(days=1)


def window() -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    return now - DAY, now + 2 * DAY


# ---------------------------------------------------------------- C1


async def test_c1_a_charge_keeps_its_product_and_tags(api: Api) -> None:
    account = await api.account("A")
    found = await charge(
        api, account, "3.50", product="ECS", tags={"team": "web", "env:stage": "", "a/b-c.d_e": "x"}
    )
    assert found["product"] == "ECS"
    assert found["tags"] == [
        {"key": "a/b-c.d_e", "value": "x"},
        {"key": "env:stage", "value": ""},
        {"key": "team", "value": "web"},
    ]
    plain = await charge(api, account, "1.00")
    assert plain["product"] is None and plain["tags"] == []


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"product": ""}, ["product"]),
        ({"product": "x" * 65}, ["product"]),
        ({"tags": [{"key": f"k{i}", "value": "v"} for i in range(11)]}, ["tags"]),
        (
            {"tags": [{"key": "a", "value": ""}] * 1 + [{"key": "b", "value": ""}] * 2},
            ["tags", "2", "key"],
        ),
        (
            {
                "tags": [{"key": f"k{i}", "value": ""} for i in range(3)]
                + [{"key": "", "value": ""}]
            },
            ["tags", "3", "key"],
        ),
        ({"tags": [{"key": "bad key", "value": ""}]}, ["tags", "0", "key"]),
        ({"tags": [{"key": "trailing\n", "value": ""}]}, ["tags", "0", "key"]),
        ({"tags": [{"key": "k" * 65, "value": ""}]}, ["tags", "0", "key"]),
        ({"tags": [{"key": "k", "value": "v" * 257}]}, ["tags", "0", "value"]),
        ({"tags": [{"key": "k", "value": "line\nbreak"}]}, ["tags", "0", "value"]),
    ],
)
async def test_c1_a_bad_product_or_tag_is_refused_and_nothing_is_recorded(
    api: Api, extra: dict[str, Any], field: list[str]
) -> None:
    account = await api.account("A")
    await refused(
        api,
        "recordCharge",
        CHARGE,
        {"accountId": account, "amount": "1.00", "description": "use", **extra},
        code="INVALID_INPUT",
        field=field,
        accounts=[account],
    )


# ---------------------------------------------------------------- C2: grouping


async def test_c2_groups_by_day_product_and_tag_exactly_and_in_key_order(api: Api) -> None:
    account = await api.account("A")
    await enable(api, account)
    base = datetime(2026, 3, 2, 10, tzinfo=UTC)  # a Monday
    await charge(api, account, "0.10", at=base, product="ECS", tags={"team": "web"})
    await charge(api, account, "0.20", at=base + timedelta(hours=13), product="ECS")
    await charge(api, account, "0.30", at=base + 8 * DAY, product="OSS", tags={"team": "db"})
    await charge(api, account, "0.40", at=base - DAY, tags={"team": "web"})  # Sunday
    since, until = base - 2 * DAY, base + 30 * DAY
    by_day = await costs(api, account, since, until, ["DAY", "PRODUCT"])
    assert by_day is not None
    assert by_day["total"] == "1.00"
    assert [(g["keys"], g["amount"], g["charges"]) for g in by_day["groups"]] == [
        (["2026-03-01", None], "0.40", 1),
        (["2026-03-02", "ECS"], "0.30", 2),  # 10:00 and 23:00 UTC: one day
        (["2026-03-10", "OSS"], "0.30", 1),
    ]
    by_week = await costs(api, account, since, until, ["WEEK"])
    assert by_week is not None
    assert [(g["keys"], g["amount"]) for g in by_week["groups"]] == [
        (["2026-02-23"], "0.40"),
        (["2026-03-02"], "0.30"),
        (["2026-03-09"], "0.30"),
    ]
    by_tag = await costs(api, account, since, until, ["TAG", "MONTH"], tag_key="team")
    assert by_tag is not None
    assert [(g["keys"], g["amount"]) for g in by_tag["groups"]] == [
        (["db", "2026-03-01"], "0.30"),
        (["web", "2026-03-01"], "0.50"),
        ([None, "2026-03-01"], "0.20"),
    ]
    by_member = await costs(api, account, since, until, ["MEMBER"])
    assert by_member is not None
    assert by_member["groups"] == [
        {"keys": [account], "amount": "1.00", "charges": 4, "member": {"id": account}, "site": None}
    ]


@pytest.mark.parametrize(
    ("group_by", "tag_key", "days"),
    [
        (["TAG"], None, 1),
        (["DAY", "MEMBER", "PRODUCT"], None, 1),
        (["DAY", "WEEK"], None, 1),
        ([], None, 1),
        (["MEMBER", "MEMBER"], None, 1),
        (["DAY"], None, 0),
        (["DAY"], None, -1),
        (["DAY"], None, 401),
    ],
)
async def test_c2_bad_arguments_are_a_graphql_error_invalid_input(
    api: Api, group_by: list[str], tag_key: str | None, days: int
) -> None:
    account = await api.account("A")
    await enable(api, account)
    since = datetime(2026, 1, 1, tzinfo=UTC)
    body = await api.raw(
        "query($id: ID!, $s: DateTime!, $u: DateTime!, $g: [CostDimension!]!, $t: String) {"
        " account(id: $id) { costs(since: $s, until: $u, groupBy: $g, tagKey: $t) { total } } }",
        {
            "id": account,
            "s": since.isoformat(),
            "u": (since + days * DAY).isoformat(),
            "g": group_by,
            "t": tag_key,
        },
    )
    assert [e["extensions"]["code"] for e in body["errors"]] == ["INVALID_INPUT"], body


async def test_c2_400_days_is_allowed_and_cost_center_off_is_null(api: Api) -> None:
    account = await api.account("A")
    since = datetime(2026, 1, 1, tzinfo=UTC)
    assert await costs(api, account, since, since + 400 * DAY, ["MONTH"]) is None
    await enable(api, account)
    report = await costs(api, account, since, since + 400 * DAY, ["MONTH"])
    assert report == {
        "since": "2026-01-01T00:00:00+00:00",
        "until": report["until"] if report else None,
        "groupBy": ["MONTH"],
        "total": "0.00",
        "chartUrl": report["chartUrl"] if report else None,
        "groups": [],
    }


# ---------------------------------------------------------------- C2: who sees what


async def _enterprise(api: Api) -> dict[str, Any]:
    """A master with cost center on, a trusteeship member, financial members with and
    without VIEW_FINANCE, a dissociated member, a stranger; charges of each, today."""
    master = await api.account("Master")
    await enable(api, master)
    names = ["trustee", "viewer", "blind", "gone", "stranger"]
    acc = {name: await api.account(name) for name in names}
    acc["master"] = master
    await api.link(master, acc["trustee"])
    await api.link(master, acc["viewer"], "FINANCIAL", ["VIEW_FINANCE"])
    await api.link(master, acc["blind"], "FINANCIAL", [])
    gone_link = await api.link(master, acc["gone"])
    await enable(api, acc["stranger"])
    # the dissociated member's charge during the association, then after it
    await charge(api, acc["gone"], "50.00", product="during")
    await api.ok("dissociateMember", DISSOCIATE, {"linkId": gone_link})
    await charge(api, acc["gone"], "5.00", product="after")
    amounts = {"master": "1.00", "trustee": "2.00", "viewer": "4.00", "blind": "8.00"}
    for name, amount in amounts.items():
        await charge(api, acc[name], amount, product=name)
    await charge(api, acc["stranger"], "16.00", product="stranger")
    tokens = {name: await api.token(acc[name]) for name in [*names, "master"]}
    return {"accounts": acc, "tokens": tokens}


def _by_member(report: dict[str, Any] | None) -> dict[str, str] | None:
    if report is None:
        return None
    return {g["keys"][0]: g["amount"] for g in report["groups"]}


async def test_c2_p2_u5_each_principal_sees_the_report_it_may(api: Api) -> None:
    world = await _enterprise(api)
    acc, tok = world["accounts"], world["tokens"]
    since, until = window()

    async def seen(account: str, token: str = OPERATOR_TOKEN) -> dict[str, str] | None:
        return _by_member(await costs(api, acc[account], since, until, ["MEMBER"], token=token))

    master_report = {
        acc["master"]: "1.00",
        acc["trustee"]: "2.00",
        acc["viewer"]: "4.00",  # financial member with VIEW_FINANCE
    }  # not the blind financial member's, not the dissociated one's (P3, U5)
    assert await seen("master") == master_report  # operator
    assert await seen("master", tok["master"]) == master_report
    # members: their own only; never the master's report
    assert await seen("trustee", tok["trustee"]) == {acc["trustee"]: "2.00"}
    assert await seen("master", tok["trustee"]) is None
    assert await seen("blind", tok["blind"]) == {acc["blind"]: "8.00"}
    assert await seen("viewer", tok["viewer"]) == {acc["viewer"]: "4.00"}
    # the master sees a member's report only with VIEW_FINANCE (P2)
    assert await seen("viewer", tok["master"]) == {acc["viewer"]: "4.00"}
    assert await seen("blind", tok["master"]) is None
    assert await seen("trustee", tok["master"]) == {acc["trustee"]: "2.00"}
    # U5: the dissociated member no longer sees its association-period costs; its former
    # master sees nothing of it; operators see all
    assert await seen("gone", tok["gone"]) == {acc["gone"]: "5.00"}
    assert await seen("gone", tok["master"]) is None
    assert await seen("gone") == {acc["gone"]: "55.00"}
    # a stranger: nothing of the enterprise; its own
    assert await seen("master", tok["stranger"]) is None
    assert await seen("stranger", tok["stranger"]) == {acc["stranger"]: "16.00"}
    assert await seen("stranger", tok["master"]) is None
    # memberIds narrows a master's report
    narrowed = await costs(
        api, acc["master"], since, until, ["MEMBER"], member_ids=[acc["trustee"], acc["blind"]]
    )
    assert _by_member(narrowed) == {acc["trustee"]: "2.00"}


# ---------------------------------------------------------------- C2: the property


charges_strategy = st.lists(
    st.tuples(
        st.integers(0, 3),  # whose: 0 master, 1..3 members
        st.integers(1, 5000),  # cents
        st.integers(0, 20 * 24 - 1),  # hours after the start
        st.sampled_from([None, "ECS", "OSS"]),
        st.sampled_from([None, "web", "db"]),  # the value of tag "team"
    ),
    min_size=0,
    max_size=25,
)
DIMENSION_PAIRS = [
    ["DAY"],
    ["WEEK", "MEMBER"],
    ["MONTH", "PRODUCT"],
    ["MEMBER", "TAG"],
    ["PRODUCT", "DAY"],
    ["TAG", "WEEK"],
    ["SITE", "MEMBER"],
]


def _direct(
    recorded: list[tuple[str, Decimal, datetime, str | None, str | None]], group_by: list[str]
) -> dict[tuple[str | None, ...], tuple[Decimal, int]]:
    """The expected groups, straight from the recorded inputs."""
    found: dict[tuple[str | None, ...], list[Any]] = defaultdict(lambda: [Decimal(0), 0])
    for member, amount, at, product, team in recorded:
        keys: list[str | None] = []
        for dimension in group_by:
            day = at.date()
            if dimension == "DAY":
                keys.append(day.isoformat())
            elif dimension == "WEEK":
                keys.append((day - timedelta(days=day.weekday())).isoformat())
            elif dimension == "MONTH":
                keys.append(day.replace(day=1).isoformat())
            elif dimension == "MEMBER":
                keys.append(member)
            elif dimension == "SITE":
                keys.append(None)
            elif dimension == "PRODUCT":
                keys.append(product)
            else:
                keys.append(team)
        found[tuple(keys)][0] += amount
        found[tuple(keys)][1] += 1
    return {k: (v[0], v[1]) for k, v in found.items()}


class SyncApi:
    """The API over plain HTTP from hypothesis' thread (it cannot drive the test's loop)."""

    def __init__(self, base_url: str) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=30)

    def gql(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        response = self.client.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
        )
        body = response.json()
        assert not body.get("errors"), body
        data: dict[str, Any] = body["data"]
        return data

    def ok(self, name: str, query: str, input: dict[str, Any]) -> dict[str, Any]:
        payload: dict[str, Any] = self.gql(query, {"input": input})[name]
        assert payload["userErrors"] == [], payload
        return payload


def property_check(base_url: str) -> None:
    sync = SyncApi(base_url)

    def account(name: str) -> str:
        found: str = sync.ok("createAccount", CREATE_ACCOUNT, {"name": name})["account"]["id"]
        return found

    master = account("Master")
    sync.ok("updateAccount", UPDATE_ACCOUNT, {"accountId": master, "costCenterEnabled": True})
    members = [account(f"M{i}") for i in range(3)]
    for member in members:
        link = sync.ok(
            "inviteMember", INVITE, {"masterId": master, "memberId": member, "type": "TRUSTEESHIP"}
        )["link"]["id"]
        sync.ok("respondToInvitation", RESPOND, {"linkId": link, "accept": True, "permissions": []})
    whose = [master, *members]
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    window_days = [0]

    @settings(
        max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(charges_strategy, st.sampled_from(DIMENSION_PAIRS))
    def check(
        drawn: list[tuple[int, int, int, str | None, str | None]], group_by: list[str]
    ) -> None:
        # each example in a window of its own, so that earlier examples' charges stay out
        since = start + timedelta(days=30 * window_days[0])
        window_days[0] += 1
        recorded = []
        for who, cents, hours, product, team in drawn:
            amount = Decimal(cents) / 100
            at = since + timedelta(hours=hours)
            input: dict[str, Any] = {
                "accountId": whose[who],
                "amount": str(amount),
                "description": "use",
                "occurredAt": at.isoformat(),
            }
            if product is not None:
                input["product"] = product
            if team is not None:
                input["tags"] = [{"key": "team", "value": team}]
            sync.ok("recordCharge", CHARGE, input)
            recorded.append((whose[who], amount, at, product, team))
        report = sync.gql(
            COSTS,
            {
                "id": master,
                "since": since.isoformat(),
                "until": (since + 21 * DAY).isoformat(),
                "groupBy": group_by,
                "tagKey": "team",
                "memberIds": None,
            },
        )["account"]["costs"]
        groups = {tuple(g["keys"]): (Decimal(g["amount"]), g["charges"]) for g in report["groups"]}
        assert len(groups) == len(report["groups"])  # no key twice
        assert sum((a for a, _ in groups.values()), Decimal(0)) == Decimal(report["total"])
        assert Decimal(report["total"]) == sum((r[1] for r in recorded), Decimal(0))
        assert groups == _direct(recorded, group_by)
        keys = [tuple((k is None, k) for k in g["keys"]) for g in report["groups"]]
        if all(d in ("DAY", "WEEK", "MONTH", "PRODUCT", "TAG") for d in group_by):
            assert keys == sorted(keys)  # ordered by the keys

    check()
    assert window_days[0] >= 12, window_days  # every example ran against the API


async def test_c2_property_groups_sum_to_the_total_and_each_is_a_direct_filter(
    api: Api, base_url: str
) -> None:
    """For random charges of a master and its members and any grouping: Σ groups = total
    = Σ charges, and every group is the direct filter of the recorded charges."""
    await asyncio.to_thread(property_check, base_url)
