"""T3: a charge records its branch (its site's, else its account's); the general ledger
sums a period's postings by branch, account and bucket, with the visibility of P2-P4."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import text

from tests.billing.tax_support import LEDGER, site
from tests.billing.voucher_support import at
from tests.funds.support import allocate, charge, pay
from tests.helpers import Api


async def ledger(
    api: Api, token: str, account: str | None = None, since: str | None = None
) -> list[tuple[Any, ...]]:
    variables = {"since": since or at(hours=-1), "until": at(hours=1), "accountId": account}
    rows = (await api.gql(LEDGER, variables, token))["generalLedger"]
    return [
        (r["branch"], r["account"]["id"], r["bucket"], r["debit"], r["credit"], r["net"])
        for r in rows
    ]


async def test_t3_the_ledger_by_branch_with_the_visibility_of_p2_p3(api: Api) -> None:
    master = await api.account("Master", branch="Hangzhou")
    member = await api.account("Member", branch="Shanghai")
    await api.link(master, member)
    north = await site(api, member, "North site", await api.bill_to(member, "AP"), branch="North")
    master_token, member_token = await api.token(master), await api.token(member)
    stranger_token = await api.token(await api.account("Stranger"))
    await pay(api, master, "100.00")
    await charge(api, member, "30.00", siteId=north)  # the master settles: the site's branch
    await charge(api, member, "5.00")  # no site: the charged account's branch
    await allocate(api, master, member, "20.00")
    master_rows = [
        ("Hangzhou", master, "CASH", "20.00", "100.00", "80.00"),
        ("North", master, "CASH", "30.00", "0.00", "-30.00"),
        ("Shanghai", master, "CASH", "5.00", "0.00", "-5.00"),
    ]
    member_rows = [
        ("Shanghai", member, "CASH", "0.00", "20.00", "20.00"),
        ("Shanghai", member, "TRANSFERRED_CASH", "0.00", "20.00", "20.00"),
    ]
    operator = await ledger(api, "test-operator-token")
    assert operator == sorted(master_rows + member_rows, key=lambda r: (r[0], r[1] != master))
    assert await ledger(api, master_token) == operator  # P2: its members' finances too
    assert await ledger(api, member_token) == member_rows  # P3: its own only
    assert await ledger(api, master_token, member) == member_rows
    assert await ledger(api, member_token, master) == []  # never the master's
    assert await ledger(api, stranger_token) == []
    assert await ledger(api, "test-operator-token", since=at(minutes=30)) == []
    async with api.engine.connect() as conn:
        branches = (await conn.execute(text("SELECT branch FROM charges ORDER BY id"))).all()
        posted: dict[str, str] = dict(
            (
                await conn.execute(
                    text(
                        "SELECT bucket, sum(amount)::text FROM postings "
                        "WHERE account_id IS NOT NULL GROUP BY bucket"
                    )
                )
            ).all()
        )
    assert [b for (b,) in branches] == ["North", "Shanghai"]
    shown = await api.gql(
        "query($id: ID!) { account(id: $id) { charges { edges { node { branch } } } } }",
        {"id": member},
    )
    edges = shown["account"]["charges"]["edges"]
    assert [edge["node"]["branch"] for edge in edges] == ["Shanghai", "North"]  # newest first
    by_bucket: dict[str, Decimal] = {}
    for row in operator:  # Σ net over a bucket's rows = Σ of its postings
        by_bucket[row[2]] = by_bucket.get(row[2], Decimal(0)) + Decimal(row[5])
    assert {k: str(v) for k, v in by_bucket.items()} == posted


async def test_t3_a_master_without_view_finance_sees_only_its_own_rows(api: Api) -> None:
    master = await api.account("Master", branch="Hangzhou")
    member = await api.account("Member", branch="Shanghai")
    await api.link(master, member, permissions=["SYNC_CREDIT_CONTROL"])
    await pay(api, member, "10.00")
    await pay(api, master, "7.00")
    rows = await ledger(api, await api.token(master))
    assert rows == [("Hangzhou", master, "CASH", "0.00", "7.00", "7.00")]
