"""C5 (cost recommendations) and C6 (the report drawn as an SVG chart at a signed link)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from tests.costs.support import charge, costs, enable
from tests.costs.test_budgets import ACTUAL_50, set_budget
from tests.helpers import Api

SVG = "{http://www.w3.org/2000/svg}"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
RECOMMENDATIONS = """
query($id: ID!) {
  account(id: $id) {
    costRecommendations { kind message estimatedAmount resourceType budget { id } }
  }
}"""
CREATE_RESOURCE = """
mutation($input: CreateResourceInput!) {
  createResource(input: $input) { resource { id } userErrors { code field } }
}"""
SHARE_TYPES = """
mutation($input: SetSharedResourceTypesInput!) {
  setSharedResourceTypes(input: $input) { account { id } userErrors { code field } }
}"""


# ---------------------------------------------------------------- C5


async def recommendations(api: Api, account: str, token: str | None = None) -> Any:
    kwargs = {} if token is None else {"token": token}
    data = await api.gql(RECOMMENDATIONS, {"id": account}, **kwargs)
    return None if data["account"] is None else data["account"]["costRecommendations"]


async def test_c5_idle_resource_types_and_forecast_overruns_are_recommended(api: Api) -> None:
    master = await api.account("Master")
    await enable(api, master)
    members = [await api.account(f"M{i}") for i in range(2)]
    for member in members:
        await api.link(master, member)
    assert await recommendations(api, master) == []
    now = datetime.now(UTC)
    await api.ok(
        "createResource",
        CREATE_RESOURCE,
        {
            "ownerId": master,
            "type": "RESERVED_INSTANCE",
            "name": "RI1",
            "capacity": "10",
            "validFrom": (now - timedelta(days=1)).isoformat(),
            "validUntil": (now + timedelta(days=30)).isoformat(),
        },
    )
    await api.ok(  # expired: not idle, just gone
        "createResource",
        CREATE_RESOURCE,
        {
            "ownerId": master,
            "type": "SAVINGS_PLAN",
            "name": "old",
            "capacity": "10",
            "validFrom": (now - timedelta(days=30)).isoformat(),
            "validUntil": (now - timedelta(days=1)).isoformat(),
        },
    )
    found = await recommendations(api, master)
    assert [(r["kind"], r["resourceType"], r["budget"]) for r in found] == [
        ("SHARE_IDLE_RESOURCE_TYPE", "RESERVED_INSTANCE", None)
    ]
    assert "2 trusteeship members" in found[0]["message"]
    await api.ok(
        "setSharedResourceTypes", SHARE_TYPES, {"masterId": master, "types": ["RESERVED_INSTANCE"]}
    )
    assert await recommendations(api, master) == []
    budget = await set_budget(
        api, accountId=master, name="Tight", amount="1", period="YEARLY", thresholds=ACTUAL_50
    )
    await set_budget(
        api, accountId=master, name="Loose", amount="100000", period="YEARLY", thresholds=ACTUAL_50
    )
    await charge(api, members[0], "50.00")
    found = await recommendations(api, master)
    assert [(r["kind"], r["budget"]) for r in found] == [
        ("BUDGET_OVERRUN_FORECAST", {"id": budget["id"]})
    ]
    budgets = (
        await api.gql(
            "query($id: ID!) { account(id: $id) { budgets { name amount forecast } } }",
            {"id": master},
        )
    )["account"]["budgets"]
    tight = next(b for b in budgets if b["name"] == "Tight")
    overrun = Decimal(found[0]["estimatedAmount"])
    assert abs(overrun - (Decimal(tight["forecast"]) - Decimal(tight["amount"]))) <= Decimal("0.05")
    # a member sees nothing of its master's recommendations; cost center off: none
    assert await recommendations(api, master, await api.token(members[0])) in (None, [])
    await enable(api, master, False)
    assert await recommendations(api, master) == []


# ---------------------------------------------------------------- C6


async def _report_with_chart(api: Api) -> dict[str, Any]:
    master = await api.account("Master")
    await enable(api, master)
    members = [await api.account(f"Member {i}") for i in range(2)]
    for member in members:
        await api.link(master, member)
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    plan = [  # (day, whose, amount)
        (0, master, "10.00"),
        (0, members[0], "30.00"),
        (1, members[1], "5.50"),
        (3, master, "2.25"),
        (3, members[0], "2.25"),
        (3, members[1], "40.00"),
    ]
    for day, whose, amount in plan:
        await charge(api, whose, amount, at=start + timedelta(days=day, hours=3))
    report = await costs(api, master, start, start + timedelta(days=7), ["DAY", "MEMBER"])
    assert report is not None
    return {"report": report, "master": master, "members": members, "start": start}


def parse_svg(text: str) -> ET.Element:
    root = ET.fromstring(text)
    assert root.tag == f"{SVG}svg"
    assert (root.get("width"), root.get("height")) == ("800", "400")
    return root


async def test_c6_the_chart_has_one_bar_per_bucket_with_heights_proportional_to_amounts(
    api: Api,
) -> None:
    made = await _report_with_chart(api)
    report = made["report"]
    response = await api.client.get(report["chartUrl"])
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("image/svg+xml")
    root = parse_svg(response.text)
    bars = [g for g in root.iter(f"{SVG}g") if g.get("class") == "bar"]
    days = sorted({g["keys"][0] for g in report["groups"]})
    assert [bar.get("data-bucket") for bar in bars] == days  # one bar per day with costs
    expected: dict[str, Decimal] = {}
    for group in report["groups"]:
        expected[group["keys"][0]] = expected.get(group["keys"][0], Decimal(0)) + Decimal(
            group["amount"]
        )
    ratios = []
    for bar in bars:
        rects = bar.findall(f"{SVG}rect")
        assert (
            sum(Decimal(r.get("data-amount", "0")) for r in rects)
            == expected[bar.get("data-bucket", "")]
        )
        for rect in rects:
            ratios.append(float(rect.get("height", "0")) / float(rect.get("data-amount", "1")))
        heights = sum(float(r.get("height", "0")) for r in rects)
        tops = [float(r.get("y", "0")) for r in rects]
        assert (
            abs(
                min(tops)
                + heights
                - max(float(r.get("y", "0")) + float(r.get("height", "0")) for r in rects)
            )
            < 0.01
        )  # stacked
    assert max(ratios) - min(ratios) < 1e-6 * max(ratios)  # one scale for every segment
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "Amount" in texts and "Day" in texts and "Member" in texts  # axes and legend
    assert {"Master", "Member 0", "Member 1"} <= set(texts)  # the legend names the members


async def test_c6_the_link_is_signed_and_visibility_is_checked_again(api: Api) -> None:
    made = await _report_with_chart(api)
    url = made["report"]["chartUrl"]
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query))
    assert parts.path == "/charts/costs.svg"
    # tampered parameters or token, no token: 404
    for changed in (
        {**params, "groupBy": "DAY"},
        {**params, "token": params["token"][:-2] + "xx"},
        {k: v for k, v in params.items() if k != "token"},
        {**params, "account": made["members"][0]},
    ):
        response = await api.client.get(f"{parts.path}?{urlencode(changed)}")
        assert response.status_code == 404
    # a bearer header instead of the token works, as the viewer sees it
    member_token = await api.token(made["members"][0])
    no_token = {k: v for k, v in params.items() if k != "token"}
    response = await api.client.get(
        f"{parts.path}?{urlencode(no_token)}", headers={"Authorization": f"Bearer {member_token}"}
    )
    assert response.status_code == 404  # a member does not see its master's report
    master_token = await api.token(made["master"])
    master_url = (
        await costs(
            api,
            made["master"],
            made["start"],
            made["start"] + timedelta(days=7),
            ["DAY", "MEMBER"],
            token=master_token,
        )
        or {}
    )["chartUrl"]
    assert (await api.client.get(master_url)).status_code == 200
    await enable(api, made["master"], False)  # checked again when used
    assert (await api.client.get(master_url)).status_code == 404
    assert (await api.client.get(url)).status_code == 404


def _chromium() -> str | None:
    import shutil

    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    return None


async def test_c6_the_chart_renders_in_headless_chromium(api: Api) -> None:
    """Saves test-artifacts/cost-chart.png (the browser test's Chromium; skipped without it
    unless ACCOUNTGRAPH_REQUIRE_BROWSER asks the browser test's harness to install it)."""
    browser = _chromium()
    if browser is None:
        if not os.environ.get("ACCOUNTGRAPH_REQUIRE_BROWSER"):
            pytest.skip("no chromium on PATH (tests/test_browser.py installs it in CI)")
        from tests.test_browser import chromium_or_skip

        browser = chromium_or_skip()
    made = await _report_with_chart(api)
    svg = (await api.client.get(made["report"]["chartUrl"])).text
    ARTIFACTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        page = Path(scratch) / "chart.svg"
        page.write_text(svg)
        target = ARTIFACTS / "cost-chart.png"
        target.unlink(missing_ok=True)
        done = await asyncio.to_thread(
            subprocess.run,
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                f"--user-data-dir={scratch}/profile",
                "--window-size=800,400",
                f"--screenshot={target}",
                page.as_uri(),
            ],
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert target.exists(), done.stderr
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
