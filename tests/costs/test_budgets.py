"""C3 (budgets) and C4 (budget alerts: once per threshold and period, through the outbox
and the sweep, never twice)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from accountgraph import outbox
from accountgraph.costs import budgets as budget_rules
from accountgraph.costs.public import evaluate_budgets, sweep_budgets
from accountgraph.funds.public import CHARGE_TOPIC
from tests.conftest import Mailbox
from tests.costs.support import (
    BUDGETS,
    REMOVE_BUDGET,
    SET_BUDGET,
    charge,
    enable,
    notifications,
)
from tests.helpers import OPERATOR_TOKEN, Api

CREATE_GROUP = """
mutation($input: CreateUserGroupInput!) {
  createUserGroup(input: $input) { userGroup { id } userErrors { code field } }
}"""
SET_GROUP_MEMBERS = """
mutation($input: SetUserGroupMembersInput!) {
  setUserGroupMembers(input: $input) { userGroup { id } userErrors { code field } }
}"""
SET_CHANNELS = """
mutation($input: SetNotificationChannelsInput!) {
  setNotificationChannels(input: $input) { account { id } userErrors { code field } }
}"""
ACTUAL_50 = [{"basis": "ACTUAL", "percent": "50"}]


def month_bounds(now: datetime) -> tuple[datetime, datetime]:
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


async def budget_count(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as conn:
        return [
            (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
            for table in ("budgets", "budget_thresholds", "budget_firings")
        ]


async def set_budget(api: Api, token: str = OPERATOR_TOKEN, **input: Any) -> dict[str, Any]:
    payload = await api.ok("setBudget", SET_BUDGET, input, token)
    found: dict[str, Any] = payload["budget"]
    return found


async def budget_refused(
    api: Api,
    input: dict[str, Any],
    code: str,
    field: list[str] | None,
    token: str = OPERATOR_TOKEN,
    name: str = "setBudget",
) -> None:
    before = await budget_count(api.engine)
    query = SET_BUDGET if name == "setBudget" else REMOVE_BUDGET
    payload = await api.mutate(name, query, input, token)
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [(code, field)], payload
    assert all(v is None for k, v in payload.items() if k != "userErrors")
    assert await budget_count(api.engine) == before


async def master_with_members(api: Api) -> dict[str, str]:
    master = await api.account("Master")
    await enable(api, master)
    found = {"master": master}
    for name in ("trustee", "other"):
        found[name] = await api.account(name)
        await api.link(master, found[name])
    found["blind"] = await api.account("blind")
    await api.link(master, found["blind"], "FINANCIAL", [])
    found["stranger"] = await api.account("stranger")
    await enable(api, found["stranger"])
    return found


# ---------------------------------------------------------------- C3


async def test_c3_a_budget_is_set_changed_and_shows_live_spend_and_forecast(api: Api) -> None:
    acc = await master_with_members(api)
    now = datetime.now(UTC)
    start, end = month_bounds(now)
    await charge(api, acc["master"], "10.00")
    await charge(api, acc["trustee"], "20.00", tags={"team": "web"})
    await charge(api, acc["blind"], "40.00")  # a financial member without VIEW_FINANCE
    await charge(api, acc["master"], "99.00", at=start - timedelta(seconds=1))  # last period
    budget = await set_budget(
        api,
        accountId=acc["master"],
        name=" Cloud ",
        amount="1000",
        period="MONTHLY",
        thresholds=[{"basis": "FORECASTED", "percent": "100"}, *ACTUAL_50],
    )
    assert budget["name"] == "Cloud" and budget["amount"] == "1000.00"
    assert budget["spent"] == "30.00"
    assert budget["periodStart"] == start.isoformat()
    assert budget["periodEnd"] == end.isoformat()
    elapsed = max(datetime.now(UTC) - start, timedelta(days=1))
    expected = (
        Decimal(30) * Decimal((end - start).total_seconds()) / Decimal(elapsed.total_seconds())
    )
    assert abs(Decimal(budget["forecast"]) - expected) < Decimal("0.05")
    assert budget["thresholds"] == [
        {"basis": "FORECASTED", "percent": "100.00", "firedAt": None},
        {"basis": "ACTUAL", "percent": "50.00", "firedAt": None},
    ]
    assert budget["member"] is None and budget["tag"] is None and budget["userGroup"] is None
    changed = await set_budget(
        api,
        accountId=acc["master"],
        budgetId=budget["id"],
        name="Web",
        amount="500.5",
        period="YEARLY",
        tag={"key": "team", "value": "web"},
        thresholds=[{"basis": "ACTUAL", "percent": "80.5"}],
    )
    assert changed["id"] == budget["id"]
    assert (changed["name"], changed["amount"], changed["period"]) == ("Web", "500.50", "YEARLY")
    assert changed["tag"] == {"key": "team", "value": "web"}
    assert changed["spent"] == "20.00"
    assert changed["thresholds"] == [{"basis": "ACTUAL", "percent": "80.50", "firedAt": None}]
    listed = (await api.gql(BUDGETS, {"id": acc["master"]}))["account"]["budgets"]
    assert [b["id"] for b in listed] == [budget["id"]]
    # the master's own users may set them; a member's users see none of the master's
    token = await api.token(acc["master"])
    mine = await set_budget(
        api,
        token,
        accountId=acc["master"],
        name="Trustee",
        amount="5",
        period="QUARTERLY",
        memberId=acc["trustee"],
        thresholds=ACTUAL_50,
    )
    assert mine["member"] == {"id": acc["trustee"]} and mine["spent"] == "20.00"
    member_view = await api.gql(BUDGETS, {"id": acc["master"]}, await api.token(acc["trustee"]))
    assert member_view["account"] is None or member_view["account"]["budgets"] == []


async def test_c3_a_user_group_scope_sums_its_members(api: Api) -> None:
    acc = await master_with_members(api)
    group = await api.ok("createUserGroup", CREATE_GROUP, {"masterId": acc["master"], "name": "G"})
    group_id = group["userGroup"]["id"]
    await api.ok(
        "setUserGroupMembers", SET_GROUP_MEMBERS, {"groupId": group_id, "memberIds": [acc["other"]]}
    )
    await charge(api, acc["trustee"], "1.00")
    await charge(api, acc["other"], "2.00")
    budget = await set_budget(
        api,
        accountId=acc["master"],
        name="G",
        amount="10",
        period="MONTHLY",
        userGroupId=group_id,
        thresholds=ACTUAL_50,
    )
    assert budget["userGroup"] == {"id": group_id} and budget["spent"] == "2.00"


async def test_c3_refusals_change_nothing(api: Api) -> None:
    acc = await master_with_members(api)
    base: dict[str, Any] = {
        "accountId": acc["master"],
        "name": "B",
        "amount": "10",
        "period": "MONTHLY",
        "thresholds": ACTUAL_50,
    }
    plain = await api.account("No cost center")
    await budget_refused(api, {**base, "accountId": plain}, "COST_CENTER_DISABLED", ["accountId"])
    for member in (acc["blind"], acc["stranger"]):  # outside the master's report
        await budget_refused(api, {**base, "memberId": member}, "NOT_FOUND", ["memberId"])
    other_group = await api.ok(
        "createUserGroup", CREATE_GROUP, {"masterId": acc["stranger"], "name": "S"}
    )
    await budget_refused(
        api,
        {**base, "userGroupId": other_group["userGroup"]["id"]},
        "NOT_FOUND",
        ["userGroupId"],
    )
    await budget_refused(
        api,
        {**base, "memberId": acc["trustee"], "tag": {"key": "a", "value": "b"}},
        "INVALID_INPUT",
        ["tag"],
    )
    await budget_refused(
        api, {**base, "tag": {"key": "bad key", "value": "b"}}, "INVALID_INPUT", ["tag", "key"]
    )
    await budget_refused(api, {**base, "name": " "}, "INVALID_INPUT", ["name"])
    await budget_refused(api, {**base, "amount": "0"}, "INVALID_AMOUNT", ["amount"])
    await budget_refused(api, {**base, "thresholds": []}, "INVALID_INPUT", ["thresholds"])
    six = [{"basis": "ACTUAL", "percent": str(p)} for p in range(10, 70, 10)]
    await budget_refused(api, {**base, "thresholds": six}, "INVALID_INPUT", ["thresholds"])
    for percent in ("0", "-1", "1000.01", "0.001", "x"):
        await budget_refused(
            api,
            {**base, "thresholds": [{"basis": "ACTUAL", "percent": percent}]},
            "INVALID_INPUT",
            ["thresholds", "0", "percent"],
        )
    alike = [{"basis": "ACTUAL", "percent": "50"}, {"basis": "ACTUAL", "percent": "50.00"}]
    await budget_refused(api, {**base, "thresholds": alike}, "INVALID_INPUT", ["thresholds", "1"])
    # who may: a member's users cannot see the master (NOT_FOUND); the master cannot set
    # a member's budgets (PERMISSION_NOT_GRANTED); a stranger sees nothing
    await enable(api, acc["trustee"])
    trustee_token = await api.token(acc["trustee"])
    await budget_refused(api, base, "NOT_FOUND", ["accountId"], trustee_token)
    master_token = await api.token(acc["master"])
    await budget_refused(
        api,
        {**base, "accountId": acc["trustee"]},
        "PERMISSION_NOT_GRANTED",
        ["accountId"],
        master_token,
    )
    await budget_refused(api, base, "NOT_FOUND", ["accountId"], await api.token(acc["stranger"]))
    # a budget of another account cannot be changed through this one
    theirs = await set_budget(api, **{**base, "accountId": acc["stranger"]})
    await budget_refused(api, {**base, "budgetId": theirs["id"]}, "NOT_FOUND", ["budgetId"])
    # 1000.00 is the top, and 5 thresholds are allowed
    five = [{"basis": "FORECASTED", "percent": str(p)} for p in (10, 20, 30, 40, 1000)]
    await set_budget(api, **{**base, "thresholds": five})


async def test_c3_at_most_100_budgets(api: Api) -> None:
    account = await api.account("A")
    await enable(api, account)
    async with api.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO budgets (account_id, name, amount, period) "
                "SELECT CAST(:a AS bigint), 'b' || n, 1, 'MONTHLY' FROM generate_series(1, 100) n"
            ),
            {
                "a": int(
                    __import__("accountgraph.api.ids", fromlist=["x"]).decode_as(account, "Account")
                )
            },
        )
    base: dict[str, Any] = {"accountId": account, "name": "B", "amount": "1", "period": "MONTHLY"}
    await budget_refused(api, {**base, "thresholds": ACTUAL_50}, "INVALID_INPUT", ["accountId"])


async def test_c3_remove_budget(api: Api) -> None:
    acc = await master_with_members(api)
    await enable(api, acc["trustee"])
    theirs = await set_budget(
        api, accountId=acc["trustee"], name="T", amount="1", period="MONTHLY", thresholds=ACTUAL_50
    )
    master_token = await api.token(acc["master"])
    stranger_token = await api.token(acc["stranger"])
    for token, code in ((master_token, "PERMISSION_NOT_GRANTED"), (stranger_token, "NOT_FOUND")):
        await budget_refused(
            api, {"budgetId": theirs["id"]}, code, ["budgetId"], token, name="removeBudget"
        )
    await enable(api, acc["trustee"], False)
    await budget_refused(
        api, {"budgetId": theirs["id"]}, "COST_CENTER_DISABLED", ["accountId"], name="removeBudget"
    )
    await enable(api, acc["trustee"])
    payload = await api.ok(
        "removeBudget", REMOVE_BUDGET, {"budgetId": theirs["id"]}, await api.token(acc["trustee"])
    )
    assert payload["account"] == {"id": acc["trustee"]}
    assert await budget_count(api.engine) == [0, 0, 0]
    await budget_refused(
        api, {"budgetId": theirs["id"]}, "NOT_FOUND", ["budgetId"], name="removeBudget"
    )


# ---------------------------------------------------------------- C4


@pytest.fixture
def no_debounce(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every charge's job evaluates at once (the delayed evaluation has its own test):
    the tests' ``run_jobs`` may stop just as a delayed row falls due."""
    monkeypatch.setattr(budget_rules, "DEBOUNCE_S", 0.0)


@pytest.mark.usefixtures("no_debounce")
async def test_c4_actual_fires_once_per_threshold_per_period_through_the_outbox(
    api: Api, run_jobs: Any, mailbox: Mailbox
) -> None:
    acc = await master_with_members(api)
    await api.ok(
        "setNotificationChannels",
        SET_CHANNELS,
        {"accountId": acc["master"], "email": "finance@example.com"},
    )
    budget = await set_budget(
        api,
        accountId=acc["master"],
        name="Cloud",
        amount="100",
        period="MONTHLY",
        thresholds=[*ACTUAL_50, {"basis": "ACTUAL", "percent": "80"}],
    )
    await run_jobs()
    await charge(api, acc["trustee"], "60.00")  # a member's charge is in the master's report
    sent_before = len(mailbox.messages)
    await run_jobs()
    found = await notifications(api, acc["master"])
    assert [(n["kind"], n["threshold"], n["spent"]) for n in found] == [
        ("BUDGET_ACTUAL", "50.00", "60.00")
    ]
    assert found[0]["budget"] == {"id": budget["id"], "name": "Cloud"}
    assert found[0]["forecast"] is not None
    assert len(mailbox.messages) == sent_before + 1  # delivered on the account's channel
    async with api.engine.connect() as conn:  # and pushed to the account's subscribers (A4)
        published = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM outbox WHERE topic = 'notification.publish' "
                    "AND done_at IS NOT NULL AND payload->>'account_id' = :a"
                ),
                {"a": str(_row(acc["master"]))},
            )
        ).scalar_one()
    assert published == 1
    await charge(api, acc["master"], "10.00")  # 70: no new threshold
    await run_jobs()
    assert len(await notifications(api, acc["master"])) == 1
    await charge(api, acc["other"], "15.00")  # 85: the 80 % threshold
    await run_jobs()
    found = await notifications(api, acc["master"])
    assert [(n["kind"], n["threshold"], n["spent"]) for n in found] == [
        ("BUDGET_ACTUAL", "80.00", "85.00"),
        ("BUDGET_ACTUAL", "50.00", "60.00"),
    ]
    # retries, a second job for the same charge and the sweep never double
    async with api.engine.begin() as conn:
        handler = outbox._handlers[CHARGE_TOPIC]
        for _ in range(2):
            await handler(conn, {"account_id": 0, "charge_id": 0}, outbox.JobContext())
            await evaluate_budgets(conn, [int(_row(acc["master"]))])
    await sweep_budgets(api.engine)
    await sweep_budgets(api.engine)
    await run_jobs()
    assert len(await notifications(api, acc["master"])) == 2
    # changing the budget keeps what fired in the period
    changed = await set_budget(
        api,
        accountId=acc["master"],
        budgetId=budget["id"],
        name="Cloud",
        amount="100",
        period="MONTHLY",
        thresholds=[*ACTUAL_50, {"basis": "ACTUAL", "percent": "90"}],
    )
    fired = {t["percent"]: t["firedAt"] for t in changed["thresholds"]}
    assert fired["50.00"] is not None and fired["90.00"] is None
    await charge(api, acc["master"], "1.00")  # 86: 50 % fired already, 90 % not reached
    await run_jobs()
    assert len(await notifications(api, acc["master"])) == 2
    await charge(api, acc["master"], "4.00")  # 90: reaches 90 %
    await run_jobs()
    assert (await notifications(api, acc["master"]))[0]["threshold"] == "90.00"
    assert len(await notifications(api, acc["master"])) == 3


def _row(global_id: str) -> int:
    from accountgraph.api import ids

    found = ids.decode_as(global_id, "Account")
    assert found is not None
    return found


async def test_c4_forecasted_fires_when_the_projection_crosses_and_not_before(
    api: Api, run_jobs: Any
) -> None:
    """A controllable clock: evaluation at chosen moments of June 2026 (30 days)."""
    account = await api.account("A")
    await enable(api, account)
    await set_budget(
        api,
        accountId=account,
        name="June",
        amount="1000",
        period="MONTHLY",
        thresholds=[
            {"basis": "FORECASTED", "percent": "100"},
            {"basis": "ACTUAL", "percent": "100"},
        ],
    )
    row = _row(account)
    june = datetime(2026, 6, 1, tzinfo=UTC)
    await charge(api, account, "50.00", at=june + timedelta(hours=10))
    await charge(api, account, "300.00", at=june + timedelta(days=10, hours=1))
    await run_jobs()  # evaluated now (December): June is not this period, nothing fires

    async def evaluate(at: datetime) -> list[int]:
        async with api.engine.begin() as conn:
            return await evaluate_budgets(conn, [row], at)

    assert await evaluate(june + timedelta(days=10)) == []  # 50 x 30 / 10 = 150
    assert await evaluate(june + timedelta(days=11)) == []  # 350 x 30 / 11 = 954.55
    await charge(api, account, "100.00", at=june + timedelta(days=11, hours=2))
    fired = await evaluate(june + timedelta(days=12))  # 450 x 30 / 12 = 1125
    assert len(fired) == 1
    assert await evaluate(june + timedelta(days=12)) == []  # run twice: no double
    assert await evaluate(june + timedelta(days=20)) == []  # fired in this period already
    await run_jobs()
    found = await notifications(api, account)
    assert [(n["kind"], n["spent"], n["forecast"]) for n in found] == [
        ("BUDGET_FORECASTED", "450.00", "1125.00")
    ]
    # the next period re-arms every threshold
    july = datetime(2026, 7, 1, tzinfo=UTC)
    await charge(api, account, "1000.00", at=july + timedelta(days=1))
    assert len(await evaluate(july + timedelta(days=2))) == 2  # ACTUAL and FORECASTED
    assert await evaluate(july + timedelta(days=3)) == []


@pytest.mark.parametrize("enabled", [False])
async def test_c4_nothing_fires_with_cost_center_off(api: Api, enabled: bool) -> None:
    account = await api.account("A")
    await enable(api, account)
    await set_budget(
        api, accountId=account, name="B", amount="1", period="MONTHLY", thresholds=ACTUAL_50
    )
    await enable(api, account, enabled)
    await charge(api, account, "5.00")
    async with api.engine.begin() as conn:
        assert await evaluate_budgets(conn, [_row(account)]) == []


async def test_c4_a_burst_costs_one_evaluation_and_a_busy_account_is_evaluated_later(
    api: Api, run_jobs: Any
) -> None:
    """A5 under load: charges committed before an evaluation began are counted by it (their
    jobs skip); a charge right after an evaluation gets one delayed evaluation, which
    still fires its crossing."""
    account = await api.account("A")
    await enable(api, account)
    await set_budget(
        api,
        accountId=account,
        name="B",
        amount="20",
        period="MONTHLY",
        thresholds=[{"basis": "ACTUAL", "percent": "50"}, {"basis": "ACTUAL", "percent": "100"}],
    )
    for _ in range(11):
        await charge(api, account, "1.00")
    await run_jobs()  # eleven jobs at once: one evaluates, those it counted skip, ...
    await asyncio.sleep(budget_rules.DEBOUNCE_S)
    await run_jobs()  # ... and those that found it busy left one delayed evaluation
    assert [n["threshold"] for n in await notifications(api, account)] == ["50.00"]
    async with api.engine.connect() as conn:
        delayed = (
            await conn.execute(text("SELECT count(*) FROM outbox WHERE topic = 'budgets.evaluate'"))
        ).scalar_one()
    assert delayed <= 1  # not one evaluation per charge
    await charge(api, account, "9.00")  # 20: right after that evaluation
    await run_jobs()  # its job leaves a delayed evaluation ...
    await asyncio.sleep(budget_rules.DEBOUNCE_S)
    await run_jobs()  # ... due now
    async with api.engine.connect() as conn:
        delayed = (
            await conn.execute(text("SELECT count(*) FROM outbox WHERE topic = 'budgets.evaluate'"))
        ).scalar_one()
    assert delayed <= 2
    assert [n["threshold"] for n in await notifications(api, account)] == ["100.00", "50.00"]
