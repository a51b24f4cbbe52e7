"""F9, F10 under real concurrency: the gateway runs as production runs it, in its own
process (``accountgraph serve --workers 2``, each uvicorn process with a pool of
``POOL`` + ``POOL`` connections), and 240 mixed money mutations from a seeded mix are in
flight at once: allocations and reclamations (CASH and CREDIT), charges, payments,
withdrawals, credit limits, balance adjustments, and requests sent two or three times at
once with the same idempotency key.

So that the overlap is not left to chance on a two-core machine, the test holds the
master's account row (as a long bill cycle would) until at least ``OVERLAP`` of the
gateway's transactions are open together, counted in ``pg_stat_activity``, then lets them
all race. Afterwards: no 5xx and no error but a rule's refusal, every copy of a keyed
request answered alike and taking effect once, the journal replayed one entry at a time
through the reference model with 0 drift (test_concurrency.replay), verify-ledger clean,
and the gateway's log without a retried deadlock or a constraint that caught a race."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from accountgraph.api import ids
from accountgraph.config import Settings
from tests.conftest import free_port
from tests.funds.test_concurrency import (
    ALLOCATE,
    CHARGE,
    PAY,
    RECLAIM,
    RULE_REFUSALS,
    WITHDRAW,
    Enterprise,
    Request,
    assert_replay_matches,
    build,
    cents,
    counts,
)
from tests.funds.test_invariants import ADJUSTABLE
from tests.helpers import OPERATOR_TOKEN, Api

POOL = 20  # per gateway process: 20 + 20 overflow, so 80 connections across the two
OVERLAP = 50
KINDS = (
    *("allocate", "allocate", "reclaim", "reclaim", "charge", "charge", "payment"),
    *("withdraw", "credit_limit", "adjust"),
)
REQUESTS = 240
SEED = int(os.environ.get("ACCOUNTGRAPH_CONCURRENCY_SEED", str(random.randrange(2**32))))
CREDIT_LIMIT = """mutation($input: SetCreditLimitInput!) { setCreditLimit(input: $input) {
  userErrors { code field message } } }"""
ADJUST = """mutation($input: AdjustBalanceInput!) { adjustBalance(input: $input) {
  userErrors { code field message } } }"""
# A credit limit lowered below what the member already uses is refused by its rule (F6).
REFUSALS = RULE_REFUSALS | {"QUOTA_WOULD_BE_NON_POSITIVE"}
OPEN_TRANSACTIONS = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND backend_type = 'client backend'
  AND xact_start IS NOT NULL AND pid <> pg_backend_pid() AND pid <> :holder
"""


@contextlib.asynccontextmanager
async def gateway(settings: Settings, log: Path) -> AsyncIterator[str]:
    """``accountgraph serve --workers 2`` against the tests' database; its base URL."""
    assert settings.database_url and settings.redis_url
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "ACCOUNTGRAPH_QUEUE": settings.queue_name,
        "ACCOUNTGRAPH_OPERATOR_TOKEN": OPERATOR_TOKEN,
        "ACCOUNTGRAPH_DB_POOL_SIZE": str(POOL),
        "ACCOUNTGRAPH_RATE_LIMIT_COST_PER_MINUTE": "0",
    }
    command = [sys.executable, "-m", "accountgraph.cli", "--log-level", "INFO", "serve"]
    command += ["--workers", "2", "--no-worker", "--no-migrate", "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: ASYNC220 - one child, stopped below
            command, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=2) as probe:
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await probe.get(f"{base}/readyz")).status_code == 200:
                        break
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(await asyncio.to_thread(log.read_text))
                await asyncio.sleep(0.1)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, 30)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait, 10)


def mixed(given: Enterprise, rng: random.Random) -> list[Request]:
    """``REQUESTS`` requests; about one in eight is sent again at once with the same key."""
    master_token = given.tokens[given.master]
    requests: list[Request] = []
    while len(requests) < REQUESTS:
        member = rng.choice(given.members)
        account = rng.choice([*given.members, given.master])
        transfer = {"masterId": given.master, "memberId": member}
        transfer["method"] = rng.choice(["CASH", "CASH", "CREDIT"])
        kind = rng.choice(KINDS)
        if kind == "allocate":
            request = Request(
                kind, "allocateFunds", ALLOCATE, {**transfer, "amount": cents(rng, 1, 120)}, ""
            )
        elif kind == "reclaim":
            request = Request(
                kind, "reclaimFunds", RECLAIM, {**transfer, "amount": cents(rng, 1, 60)}, ""
            )
        elif kind == "credit_limit":
            limit = {"masterId": given.master, "memberId": member, "limit": cents(rng, 0, 300)}
            request = Request(kind, "setCreditLimit", CREDIT_LIMIT, limit, "")
        elif kind == "charge":
            charge = {"accountId": account, "amount": cents(rng, 1, 90), "description": "usage"}
            request = Request(kind, "recordCharge", CHARGE, charge, OPERATOR_TOKEN)
        elif kind == "payment":
            payment = {"accountId": account, "amount": cents(rng, 1, 50)}
            request = Request(kind, "recordPayment", PAY, payment, OPERATOR_TOKEN)
        elif kind == "adjust":  # only up: a concurrent charge may have taken the rest
            adjust = {"accountId": account, "amount": cents(rng, 1, 20), "reason": "back office"}
            adjust["bucket"] = rng.choice(ADJUSTABLE)
            request = Request(kind, "adjustBalance", ADJUST, adjust, OPERATOR_TOKEN)
        else:  # a withdrawal by the account's own users
            withdrawal = {"accountId": account, "amount": cents(rng, 1, 30)}
            request = Request(kind, "withdrawCash", WITHDRAW, withdrawal, given.tokens[account])
        if not request.token:
            request = Request(
                request.kind, request.name, request.query, request.input, master_token
            )
        copies = 1
        if rng.random() < 0.125:  # F10: the same request at once, 2 or 3 times, one key
            copies = rng.choice([2, 3])
            keyed = {**request.input, "idempotencyKey": f"burst-{len(requests)}"}
            request = replace(request, input=keyed)
        requests += [request] * copies
    return requests


async def watch_overlap(engine: AsyncEngine, holder: int, reached: asyncio.Event) -> int:
    """The most gateway transactions seen open at once, until ``reached`` is set."""
    most = 0
    async with engine.connect() as conn:
        while not reached.is_set():
            open_now = (await conn.execute(text(OPEN_TRANSACTIONS), {"holder": holder})).scalar()
            await conn.rollback()  # pg_stat_activity is read once per transaction
            most = max(most, open_now or 0)
            if most >= OVERLAP:
                reached.set()
            await asyncio.sleep(0.01)
    return most


async def test_f9_f10_240_mutations_at_once_on_a_two_process_gateway(
    api: Api, settings: Settings, tmp_path: Path
) -> None:
    print(f"concurrency seed {SEED} (ACCOUNTGRAPH_CONCURRENCY_SEED={SEED} replays it)")
    log = tmp_path / "gateway.log"
    async with (
        gateway(settings, log) as base,
        httpx.AsyncClient(base_url=base, timeout=60) as client,
    ):
        served = Api(client, api.engine)
        given = await build(served)
        requests = mixed(given, random.Random(SEED))
        warm = [r for r in requests if r.kind == "allocate" and "idempotencyKey" not in r.input]
        for request in warm[:6]:  # something to reclaim and to charge against
            await served.mutate(request.name, request.query, request.input, request.token)
        async with api.engine.connect() as conn:
            before = await counts(conn)
        master = ids.decode_as(given.master, "Account")

        async with api.engine.connect() as holder:
            holder_pid = (await holder.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            await holder.execute(  # in the transaction the first statement began
                text("SELECT id FROM accounts WHERE id = :id FOR NO KEY UPDATE"), {"id": master}
            )
            reached = asyncio.Event()
            watcher = asyncio.create_task(watch_overlap(api.engine, holder_pid, reached))
            sent = [
                asyncio.create_task(client.post("/graphql", json=graphql(r), headers=auth(r)))
                for r in requests
            ]
            try:
                with contextlib.suppress(TimeoutError):  # the assertion below says how many
                    await asyncio.wait_for(reached.wait(), 30)
            finally:
                reached.set()
                await holder.rollback()
            overlap = await watcher
        answers = await asyncio.gather(*sent)

    print(f"{REQUESTS} requests, {overlap} transactions open at once")
    assert overlap >= OVERLAP, overlap
    assert [a.status_code for a in answers] == [200] * len(requests)
    outcomes: dict[str, int] = {}
    by_key: dict[str, list[dict[str, Any]]] = {}
    for request, answer in zip(requests, answers, strict=True):
        body = answer.json()
        assert "errors" not in body, body
        payload = body["data"][request.name]
        codes = [error["code"] for error in payload["userErrors"]]
        assert set(codes) <= REFUSALS, (request, codes)
        key = request.input.get("idempotencyKey")
        if key is not None:  # counted once below
            by_key.setdefault(key, []).append(payload)
        elif not codes:
            outcomes[request.kind] = outcomes.get(request.kind, 0) + 1
    kinds = {r.input["idempotencyKey"]: r.kind for r in requests if "idempotencyKey" in r.input}
    for key, payloads in by_key.items():
        # F10: once a copy took effect, every later copy replays its result (same ids); a
        # copy refused before it rolled its claim back, so a later copy ran afresh.
        done = [p for p in payloads if not p["userErrors"]]
        assert all(p == done[0] for p in done), (key, payloads)
        if done:
            outcomes[kinds[key]] = outcomes.get(kinds[key], 0) + 1
    async with api.engine.connect() as conn:
        after = await counts(conn)
        keys = (await conn.execute(text("SELECT count(*) FROM idempotency_keys"))).scalar_one()
    assert keys == sum(any(not p["userErrors"] for p in ps) for ps in by_key.values())
    assert after["transfers"] - before["transfers"] == (
        outcomes.get("allocate", 0) + outcomes.get("reclaim", 0)
    )
    assert after["charges"] - before["charges"] == outcomes.get("charge", 0)
    assert after["payments"] - before["payments"] == outcomes.get("payment", 0)
    assert after["withdrawals"] - before["withdrawals"] == outcomes.get("withdraw", 0)
    assert outcomes.get("reclaim", 0) > 0 and outcomes.get("allocate", 0) > 0, outcomes
    print(f"outcomes {outcomes}, {len(by_key)} keys sent more than once")
    await assert_replay_matches(api)  # 0 drift; verify-ledger rules inside
    gateway_log = log.read_text()
    assert "retrying a transaction" not in gateway_log  # no deadlock or serialization failure
    assert "constraint refused" not in gateway_log  # no CHECK caught what a rule missed
    assert "Traceback" not in gateway_log


def graphql(request: Request) -> dict[str, Any]:
    return {"query": request.query, "variables": {"input": request.input}}


def auth(request: Request) -> dict[str, str]:
    return {"Authorization": f"Bearer {request.token}"}
