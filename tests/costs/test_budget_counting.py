"""C4 at the speed of the charges: the worker's counted spends (``budget_spends``, brought
up to date with each charge's ``budget_deltas`` row) always equal the live spend computed
from the charges (C3): after single charges, a concurrent burst, a user group change, a
dissociation and a whole computation beside charges not yet counted; never twice."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text

from accountgraph import outbox
from accountgraph.costs import budgets as budget_rules
from accountgraph.costs.public import sweep_budgets
from tests.costs.support import BUDGETS, charge
from tests.costs.test_budgets import (
    CREATE_GROUP,
    SET_GROUP_MEMBERS,
    _row,
    master_with_members,
    set_budget,
)
from tests.helpers import Api

DISSOCIATE = """
mutation($input: DissociateMemberInput!) {
  dissociateMember(input: $input) { link { id } userErrors { code field } }
}"""
BIG = [{"basis": "ACTUAL", "percent": "100"}]


@pytest.fixture
def no_debounce(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(budget_rules, "DEBOUNCE_S", 0.0)


async def live(api: Api, account: str) -> dict[int, str]:
    """C3's spend of every budget of the account, as the API computes it from the charges."""
    found = (await api.gql(BUDGETS, {"id": account}))["account"]["budgets"]
    return {_budget_row(b["id"]): b["spent"] for b in found}


def _budget_row(global_id: str) -> int:
    from accountgraph.api import ids

    row = ids.decode_as(global_id, "Budget")
    assert row is not None
    return row


async def counted(api: Api) -> dict[int, str]:
    async with api.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT budget_id, spent FROM budget_spends"))).all()
    return {int(r.budget_id): f"{r.spent:.2f}" for r in rows}


async def evaluation(api: Api, account: str) -> Any:
    async with api.engine.connect() as conn:
        return (
            await conn.execute(
                text(
                    "SELECT spend_snapshot, evaluated_at FROM budget_evaluations "
                    "WHERE account_id = :a"
                ),
                {"a": _row(account)},
            )
        ).one()


async def uncounted(api: Api) -> int:
    async with api.engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM budget_deltas"))).scalar_one())


@pytest.mark.usefixtures("no_debounce")
async def test_c4_counted_spends_equal_the_live_spend_through_charges_and_changes(
    api: Api, run_jobs: Any
) -> None:
    acc = await master_with_members(api)
    acc["gone"] = await api.account("gone")
    gone_link = await api.link(acc["master"], acc["gone"])
    group = await api.ok("createUserGroup", CREATE_GROUP, {"masterId": acc["master"], "name": "G"})
    group_id = group["userGroup"]["id"]
    await api.ok(
        "setUserGroupMembers", SET_GROUP_MEMBERS, {"groupId": group_id, "memberIds": [acc["other"]]}
    )
    scopes: list[dict[str, Any]] = [
        {},
        {"memberId": acc["trustee"]},
        {"userGroupId": group_id},
        {"tag": {"key": "team", "value": "web"}},
    ]
    for index, scope in enumerate(scopes):
        for period in ("MONTHLY", "YEARLY"):
            await set_budget(
                api,
                accountId=acc["master"],
                name=f"b{index}{period}",
                amount="100000",
                period=period,
                thresholds=BIG,
                **scope,
            )
    await set_budget(  # the member's own budget: its own report
        api, accountId=acc["trustee"], name="own", amount="100000", period="MONTHLY", thresholds=BIG
    )
    await charge(api, acc["trustee"], "3.00", tags={"team": "web"})
    await run_jobs()  # the first evaluation computes in whole
    first = await evaluation(api, acc["master"])
    assert first.spend_snapshot is not None
    assert await counted(api) == await live(api, acc["master"]) | await live(api, acc["trustee"])

    # single charges, then a concurrent burst: counted one by one, not in whole again
    await charge(api, acc["other"], "4.10", tags={"team": "web"})
    await charge(api, acc["master"], "0.25")
    await charge(api, acc["blind"], "7.00")  # a financial member without VIEW_FINANCE: not in
    await run_jobs()
    amounts = [f"{n % 7 + 1}.{n:02d}" for n in range(24)]
    whose = [acc["trustee"], acc["other"], acc["master"], acc["gone"]]
    await asyncio.gather(
        *(
            charge(api, whose[n % 4], amount, tags={"team": "web" if n % 2 else "db"})
            for n, amount in enumerate(amounts)
        )
    )
    await run_jobs()
    after = await evaluation(api, acc["master"])
    assert after.spend_snapshot == first.spend_snapshot  # counted, not computed in whole
    assert after.evaluated_at > first.evaluated_at
    expected = await live(api, acc["master"]) | await live(api, acc["trustee"])
    assert await counted(api) == expected
    assert await uncounted(api) == 0
    assert expected[min(expected)] != "0.00"

    # a user group change makes the report other: computed in whole again
    await api.ok(
        "setUserGroupMembers",
        SET_GROUP_MEMBERS,
        {"groupId": group_id, "memberIds": [acc["other"], acc["trustee"]]},
    )
    await charge(api, acc["other"], "1.00")
    await run_jobs()
    regrouped = await evaluation(api, acc["master"])
    assert regrouped.spend_snapshot != first.spend_snapshot
    assert await counted(api) == await live(api, acc["master"]) | await live(api, acc["trustee"])

    # a dissociation takes the member's charges out of the master's report (U5)
    await api.ok("dissociateMember", DISSOCIATE, {"linkId": gone_link})
    await charge(api, acc["other"], "2.00")
    await charge(api, acc["gone"], "5.00")
    await run_jobs()
    assert await counted(api) == await live(api, acc["master"]) | await live(api, acc["trustee"])


@pytest.mark.usefixtures("no_debounce")
async def test_c4_a_whole_computation_beside_uncounted_charges_never_counts_twice(
    api: Api, run_jobs: Any
) -> None:
    """The sweep computes in whole while a charge's job has not run: the job's row for it
    is then seen as counted; and a job run twice changes nothing."""
    acc = await master_with_members(api)
    await set_budget(
        api, accountId=acc["master"], name="B", amount="100", period="MONTHLY", thresholds=BIG
    )
    await run_jobs()
    await charge(api, acc["trustee"], "30.00")
    assert await sweep_budgets(api.engine) == 1  # sees the committed charge
    assert set((await counted(api)).values()) == {"30.00"}
    async with api.engine.connect() as conn:
        row_id = (
            await conn.execute(
                text("SELECT id FROM outbox WHERE topic = 'charge.recorded' AND done_at IS NULL")
            )
        ).scalar_one()
    assert await outbox.run_row(api.engine, row_id)  # its job: the row is seen as counted
    assert not await outbox.run_row(api.engine, row_id)  # a second run: nothing
    await run_jobs()
    assert set((await counted(api)).values()) == {"30.00"}
    await charge(api, acc["other"], "70.00")  # 100: reaches its 100 %
    await run_jobs()
    assert set((await counted(api)).values()) == {"100.00"}
    assert await counted(api) == await live(api, acc["master"])
    async with api.engine.connect() as conn:
        kinds = (
            await conn.execute(text("SELECT kind FROM notifications WHERE kind LIKE 'BUDGET_%'"))
        ).all()
    assert [k.kind for k in kinds] == ["BUDGET_ACTUAL"]
    assert await uncounted(api) == 0
