"""F9 under concurrency: many money mutations at once over real HTTP on one enterprise.

Every request is a real POST to the app on uvicorn, all in flight together
(``asyncio.gather``). Afterwards the ledger must be sound (``verify``, no negative
balance, reclaimed within allocated, CASH postings summing to zero), every success must
be one record and every record one success, and replaying the records one by one in
journal order through the reference model (test_invariants.Model) must allow each of them
and give exactly the final balances: no lost update, no rule checked on a stale balance.
Money services lock accounts in ascending id order, so no request may deadlock or be
retried, even when a member's id is below its master's.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.accounts.models import links
from accountgraph.api import ids
from accountgraph.funds.models import (
    BUCKETS,
    allocations,
    charges,
    journal_entries,
    payments,
    postings,
    transfers,
)
from tests.funds.test_invariants import Link, Model, assert_ledger_rules
from tests.helpers import OPERATOR_TOKEN, Api

PAY = """mutation($input: RecordPaymentInput!) { recordPayment(input: $input) {
  userErrors { code field message } } }"""
ALLOCATE = """mutation($input: TransferFundsInput!) { allocateFunds(input: $input) {
  transfer { id } userErrors { code field message } } }"""
RECLAIM = """mutation($input: TransferFundsInput!) { reclaimFunds(input: $input) {
  transfer { id } userErrors { code field message } } }"""
CHARGE = """mutation($input: RecordChargeInput!) { recordCharge(input: $input) {
  charge { id } userErrors { code field message } } }"""
WITHDRAW = """mutation($input: WithdrawCashInput!) { withdrawCash(input: $input) {
  userErrors { code field message } } }"""
CREDIT_LINE = """mutation($input: SetCreditLineInput!) { setCreditLine(input: $input) {
  userErrors { code field message } } }"""

# What a rule may answer when the money is gone by the time a request gets its locks.
RULE_REFUSALS = {
    "INSUFFICIENT_FUNDS",
    "EXCEEDS_NET_ALLOCATED",
    "EXCEEDS_UNSPENT",
    "CREDIT_EXCEEDS_AVAILABLE",
}
RETRY_LOGGER = "accountgraph.api.mutations"


@dataclass
class Enterprise:
    master: str
    members: list[str]  # the first one's id is below the master's
    tokens: dict[str, str]


async def build(api: Api) -> Enterprise:
    """Member "Low" is created before its master (lower id, so a lock order by role would
    differ from the id order), then the master and two more members: TRUSTEESHIP, FINANCIAL,
    TRUSTEESHIP, all with every grant. Members hold some cash of their own from before."""
    low = await api.account("Low")
    master = await api.account("Master")
    high = await api.account("High")
    financial = await api.account("Financial")
    members = [low, high, financial]
    for member in members:
        await api.ok("recordPayment", PAY, {"accountId": member, "amount": "40.00"})
    await api.link(master, low, "TRUSTEESHIP")
    await api.link(master, high, "TRUSTEESHIP")
    await api.link(master, financial, "FINANCIAL")
    await api.ok("recordPayment", PAY, {"accountId": master, "amount": "1500.00"})
    await api.ok("setCreditLine", CREDIT_LINE, {"masterId": master, "amount": "600.00"})
    tokens = {account: await api.token(account) for account in (master, *members)}
    return Enterprise(master, members, tokens)


@dataclass(frozen=True)
class Request:
    kind: str
    name: str
    query: str
    input: dict[str, Any]
    token: str


def cents(rng: random.Random, low: int, high: int) -> str:
    return str(Decimal(rng.randint(low * 100, high * 100)) / 100)


def mixed_requests(given: Enterprise, count: int, seed: int) -> list[Request]:
    rng = random.Random(seed)
    master_token = given.tokens[given.master]
    requests = []
    for _ in range(count):
        member = rng.choice(given.members)
        account = rng.choice([*given.members, given.master])
        method = rng.choice(["CASH", "CASH", "CREDIT"])
        kind = rng.choice(
            [
                "allocate",
                "allocate",
                "reclaim",
                "reclaim",
                "charge",
                "charge",
                "payment",
                "withdraw",
            ]
        )
        transfer = {"masterId": given.master, "memberId": member, "method": method}
        if kind == "allocate":
            request = Request(
                kind,
                "allocateFunds",
                ALLOCATE,
                {**transfer, "amount": cents(rng, 1, 120)},
                master_token,
            )
        elif kind == "reclaim":
            request = Request(
                kind,
                "reclaimFunds",
                RECLAIM,
                {**transfer, "amount": cents(rng, 1, 60)},
                master_token,
            )
        elif kind == "charge":
            request = Request(
                kind,
                "recordCharge",
                CHARGE,
                {"accountId": account, "amount": cents(rng, 1, 90), "description": "usage"},
                OPERATOR_TOKEN,
            )
        elif kind == "payment":
            request = Request(
                kind,
                "recordPayment",
                PAY,
                {"accountId": account, "amount": cents(rng, 1, 50)},
                OPERATOR_TOKEN,
            )
        else:  # a withdrawal by the account's own users
            request = Request(
                kind,
                "withdrawCash",
                WITHDRAW,
                {"accountId": account, "amount": cents(rng, 1, 30)},
                given.tokens[account],
            )
        requests.append(request)
    return requests


async def send_all(api: Api, requests: list[Request]) -> list[dict[str, Any]]:
    """All at once; ``Api.mutate`` fails on any top-level GraphQL error or non-200."""
    calls: list[Awaitable[dict[str, Any]]] = [
        api.mutate(r.name, r.query, r.input, r.token) for r in requests
    ]
    return list(await asyncio.gather(*calls))


async def counts(conn: AsyncConnection) -> dict[str, int]:
    found = {}
    for table in (transfers, charges, payments):
        found[table.name] = (
            await conn.execute(text(f"SELECT count(*) FROM {table.name}"))
        ).scalar_one()
    found["withdrawals"] = (
        await conn.execute(text("SELECT count(*) FROM journal_entries WHERE kind = 'WITHDRAWAL'"))
    ).scalar_one()
    return found


async def replay(conn: AsyncConnection) -> Model:
    """The ledger's records, one at a time in journal order, through the reference model.
    Journal order is a valid serial order: two operations that share an account are
    serialised by its row lock, and the later one takes its entry id after the earlier
    committed. Every recorded operation must be one the rules allowed at its turn."""
    model = Model()
    for row in (await conn.execute(select(links).where(links.c.status == "ACTIVE"))).all():
        model.links[row.member_id] = Link(
            row.master_id, row.type, frozenset(row.permissions), row.activated_at
        )
    by_entry: dict[int, list[Any]] = {}
    for posting in (await conn.execute(select(postings).order_by(postings.c.id))).all():
        by_entry.setdefault(posting.entry_id, []).append(posting)
    records: dict[int, tuple[str, Any]] = {}
    for table in (transfers, charges, payments):
        for record in (await conn.execute(select(table))).all():
            records[record.entry_id] = (table.name, record)
    entries = (await conn.execute(select(journal_entries).order_by(journal_entries.c.id))).all()
    for entry in entries:
        lines = by_entry[entry.id]
        own = [p for p in lines if p.account_id is not None]
        if entry.kind in ("ALLOCATE", "RECLAIM"):
            _, t = records[entry.id]
            apply = model.allocate if entry.kind == "ALLOCATE" else model.reclaim
            assert apply(None, t.master_id, t.member_id, t.method, t.amount) is None, t
        elif entry.kind == "CHARGE":
            _, c = records[entry.id]
            assert model.charge(c.account_id, c.amount, c.occurred_at) == c.paid_by_master, c
        elif entry.kind == "PAYMENT":
            _, p = records[entry.id]
            model.payment(p.account_id, p.amount)
        elif entry.kind == "WITHDRAWAL":
            (line,) = own
            assert model.withdraw(line.account_id, line.account_id, -line.amount) is None
        elif entry.kind == "CREDIT_LINE":
            (line,) = [p for p in own if p.bucket == "CREDIT_LINE"]
            new_line = model.balances[line.account_id]["CREDIT_LINE"] + line.amount
            assert model.set_credit_line(line.account_id, new_line) is None
        elif entry.kind == "CREDIT_LIMIT":  # F6: the member's transferred credit moves too
            (given,) = [p for p in own if p.bucket == "TRANSFERRED_CREDIT"]
            member, delta = given.account_id, given.amount
            master = model.links[member].master
            limit = model.balances[member]["CREDIT_LIMIT"] + delta
            assert model.set_credit_limit(None, master, member, limit) is None, entry
        elif entry.kind == "ADJUSTMENT":
            (line,) = own
            assert model.adjust(line.account_id, line.bucket, line.amount) is None, entry
        else:
            raise AssertionError(f"unexpected entry {entry.kind}")
    return model


async def assert_replay_matches(api: Api) -> Model:
    async with api.engine.connect() as conn:
        await assert_ledger_rules(conn)
        cash = (
            await conn.execute(
                text("SELECT coalesce(sum(amount), 0) FROM postings WHERE bucket = 'CASH'")
            )
        ).scalar_one()
        assert cash == 0  # master + members + EXTERNAL: cash is conserved
        model = await replay(conn)
        for row in (await conn.execute(text("SELECT * FROM balances"))).all():
            held = {bucket: getattr(row, column) for bucket, column in BUCKETS.items()}
            assert held == dict(model.balances[row.account_id]), row.account_id
        totals = {
            (r.master_id, r.member_id, r.method): [r.allocated, r.reclaimed]
            for r in (await conn.execute(select(allocations))).all()
        }
        assert totals == {k: v for k, v in model.allocations.items() if any(v)}
    return model


def assert_no_retries(caplog: pytest.LogCaptureFixture) -> None:
    retried = [
        r.getMessage()
        for r in caplog.records
        if r.name == RETRY_LOGGER and "retrying" in r.getMessage()
    ]
    assert retried == []  # no deadlock (40P01) or serialization failure was retried
    conflicts = [r.getMessage() for r in caplog.records if "constraint refused" in r.getMessage()]
    assert conflicts == []  # no CHECK constraint caught what the service missed


async def test_f9_sixty_concurrent_money_mutations_keep_the_ledger_sound(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    given = await build(api)
    async with api.engine.connect() as conn:
        before = await counts(conn)
    requests = mixed_requests(given, 60, seed=20261122)
    # Some transfers in first, so that reclamations and charges have something to take.
    warm = [r for r in requests if r.kind == "allocate"][:6]

    with caplog.at_level(logging.INFO, logger=RETRY_LOGGER):
        warmed = await send_all(api, warm)
        payloads = await send_all(api, requests)

    outcomes: dict[str, int] = {}
    for request, payload in zip(requests, payloads, strict=True):
        codes = [error["code"] for error in payload["userErrors"]]
        assert set(codes) <= RULE_REFUSALS, (request, codes)
        if not codes:
            outcomes[request.kind] = outcomes.get(request.kind, 0) + 1
    warm_done = sum(not payload["userErrors"] for payload in warmed)
    async with api.engine.connect() as conn:
        after = await counts(conn)
    assert after["transfers"] - before["transfers"] == (
        warm_done + outcomes.get("allocate", 0) + outcomes.get("reclaim", 0)
    )
    assert after["charges"] - before["charges"] == outcomes.get("charge", 0)
    assert after["payments"] - before["payments"] == outcomes.get("payment", 0)
    assert after["withdrawals"] - before["withdrawals"] == outcomes.get("withdraw", 0)
    assert outcomes.get("reclaim", 0) > 0 and outcomes.get("allocate", 0) > 0, outcomes
    await assert_replay_matches(api)
    assert_no_retries(caplog)


async def test_f9_opposite_order_operations_do_not_deadlock(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    """Allocations master -> member while the member's charges make the master pay (U4),
    on a member whose id is below the master's and one whose id is above it, with the
    master's own charges and payments and reclamations in between."""
    given = await build(api)
    master, token = given.master, given.tokens[given.master]
    low, high = given.members[0], given.members[1]
    assert (ids.decode_as(low, "Account") or 0) < (ids.decode_as(master, "Account") or 0)
    round_: list[Request] = []
    for member in (low, high):
        transfer = {"masterId": master, "memberId": member, "amount": "3.00"}
        round_ += [
            Request("allocate", "allocateFunds", ALLOCATE, transfer, token),
            Request(
                "charge",
                "recordCharge",
                CHARGE,
                {"accountId": member, "amount": "4.00", "description": "usage"},
                OPERATOR_TOKEN,
            ),
            Request("reclaim", "reclaimFunds", RECLAIM, {**transfer, "amount": "1.00"}, token),
        ]
    round_ += [
        Request(
            "charge",
            "recordCharge",
            CHARGE,
            {"accountId": master, "amount": "2.00", "description": "usage"},
            OPERATOR_TOKEN,
        ),
        Request(
            "payment", "recordPayment", PAY, {"accountId": master, "amount": "1.00"}, OPERATOR_TOKEN
        ),
    ]

    with caplog.at_level(logging.INFO, logger=RETRY_LOGGER):
        payloads = await asyncio.wait_for(send_all(api, round_ * 10), timeout=60)

    assert len(payloads) == 80
    for payload in payloads:
        assert {e["code"] for e in payload["userErrors"]} <= RULE_REFUSALS, payload
    assert sum(not p["userErrors"] for p in payloads) >= 60
    await assert_replay_matches(api)
    assert_no_retries(caplog)
