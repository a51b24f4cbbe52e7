"""Load (issue 7): tree queries and money mutations mixed, at 1, 16 and 64 concurrent
clients, against uvicorn with several worker processes on a loopback port.

The data is ``bench.allocations``'s: a master with 16 ACTIVE trusteeship members (every
grant) and 10,000,000.00 cash, written with bulk SQL into a fresh, migrated database.
The server is ``accountgraph serve --workers N --no-worker --no-migrate`` in a child
process (``bench/processes.py``; Settings from its environment). Each client is an
asyncio loop over one keep-alive httpx connection; per request it picks a tree query (the
master's members with link, sites, bill-tos and finance) or, with ``--money``
probability, ``allocateFunds`` of 0.01 CASH to one of the members with an idempotency key
of its own. Errors (HTTP status other than 200, 5xx included, GraphQL errors, user
errors, timeouts) are counted per level and any one of them fails the run (exit 1).

After the last level the server is stopped and the ledger is checked: ``verify()`` finds
nothing (F9), the transfer rows equal the allocations that answered success (none lost,
none doubled; a request whose answer was lost may have committed, so those are listed
apart and must account for any surplus exactly), and the master's cash is the opening
cash less 0.01 per transfer.

    .venv/bin/python -m bench.load [--seconds 5] [--clients 1,16,64] [--workers 4]
                                   [--money 0.3]

PostgreSQL: ``DATABASE_URL`` (a throwaway database is created on that server and dropped
at the end), else an embedded server in a temporary directory. Redis: ``REDIS_URL``, else
an embedded one. Loopback and unix sockets only. The run is bounded: every level lasts
``--seconds``, requests time out after 30 s and the whole run after 15 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from accountgraph.api import ids
from accountgraph.db import make_engine
from accountgraph.funds.verify import verify
from bench.allocations import AMOUNT, MEMBERS, OPENING_CASH, seed
from bench.processes import gateway
from bench.tree_query import _asyncpg_dsn, _describe, fresh_database, postgres_server, redis_server

TREE = """
query Tree {
  viewer { account { id name finance { cashBalance availableQuota }
    members(first: 50) { totalCount edges { node {
      id name role link { status permissions }
      sites { id name billTo { id } } billTos { id isPrimary }
      finance { cashBalance transferredCash availableQuota }
    } } } } }
}"""
ALLOCATE = """
mutation Allocate($input: TransferFundsInput!) {
  allocateFunds(input: $input) { transfer { id amount } userErrors { code message } }
}"""
REQUEST_TIMEOUT_S = 30.0
RUN_TIMEOUT_S = 900.0


@dataclass
class Level:
    clients: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    allocations: int = 0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def percentile_ms(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)] * 1000


@dataclass
class Ledger:
    """Allocations by idempotency key: answered success, or answer lost (may have run)."""

    succeeded: set[str] = field(default_factory=set)
    unknown: set[str] = field(default_factory=set)


async def run_level(
    base: str,
    token: str,
    master: str,
    members: list[str],
    level: Level,
    seconds: float,
    money: float,
    ledger: Ledger,
) -> None:
    deadline = time.perf_counter() + seconds

    async def client(number: int) -> None:
        rng = random.Random(number)
        async with httpx.AsyncClient(
            base_url=base,
            timeout=REQUEST_TIMEOUT_S,
            trust_env=False,
            headers={"Authorization": f"Bearer {token}"},
        ) as http:
            while time.perf_counter() < deadline:
                allocate = rng.random() < money
                key = uuid.uuid4().hex
                if allocate:
                    body: dict[str, Any] = {
                        "query": ALLOCATE,
                        "variables": {
                            "input": {
                                "masterId": master,
                                "memberId": rng.choice(members),
                                "amount": str(AMOUNT),
                                "method": "CASH",
                                "idempotencyKey": key,
                            }
                        },
                    }
                else:
                    body = {"query": TREE}
                started = time.perf_counter()
                try:
                    response = await http.post("/graphql", json=body)
                except httpx.HTTPError as error:
                    level.error(type(error).__name__)
                    if allocate:
                        ledger.unknown.add(key)
                    continue
                level.latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    level.error(f"HTTP {response.status_code}")
                    if allocate:
                        ledger.unknown.add(key)
                    continue
                answer = json.loads(response.content)
                if answer.get("errors"):
                    level.error("graphql error")
                    continue
                if allocate:
                    payload = answer["data"]["allocateFunds"]
                    if payload["userErrors"] or payload["transfer"] is None:
                        level.error("user error")
                        continue
                    ledger.succeeded.add(key)
                    level.allocations += 1
                elif answer["data"]["viewer"]["account"]["members"]["totalCount"] != MEMBERS:
                    level.error("wrong tree")

    started = time.perf_counter()
    await asyncio.gather(*(client(number) for number in range(level.clients)))
    level.seconds = time.perf_counter() - started


async def run(args: argparse.Namespace) -> int:
    levels = [Level(int(part)) for part in args.clients.split(",")]
    with tempfile.TemporaryDirectory(prefix="agload-") as tmp_name:
        tmp = Path(tmp_name)
        async with contextlib.AsyncExitStack() as stack:
            server_url, pg_source = await stack.enter_async_context(postgres_server(tmp))
            database_url = await stack.enter_async_context(fresh_database(server_url))
            redis_url, redis_source = await stack.enter_async_context(redis_server(tmp))
            dsn = _asyncpg_dsn(database_url)
            seeded = await seed(dsn)
            master = ids.encode("Account", seeded.master_id)
            members = [ids.encode("Account", member) for member in seeded.member_ids]
            ledger = Ledger()
            # Connections: every worker's pool (and its overflow) within the server's 100.
            pool_size = max(2, min(10, 80 // (2 * args.workers)))
            env = {  # as production starts it: `accountgraph serve --workers N`
                "ACCOUNTGRAPH_QUEUE": f"accountgraph:load:{uuid.uuid4().hex[:8]}",
                "ACCOUNTGRAPH_DB_POOL_SIZE": str(pool_size),
            }
            async with gateway(
                database_url, redis_url, tmp / "uvicorn.log", workers=args.workers, env=env
            ) as base:
                for level in levels:
                    await run_level(
                        base, seeded.token, master, members, level, args.seconds, args.money, ledger
                    )

            # The server is stopped: everything it committed is in the database.
            conn = await asyncpg.connect(dsn)
            try:
                keys = {
                    row["idempotency_key"]
                    for row in await conn.fetch("SELECT idempotency_key FROM transfers")
                }
                rows = await conn.fetchval("SELECT count(*) FROM transfers")
                cash = await conn.fetchval(
                    "SELECT cash_balance FROM balances WHERE account_id = $1", seeded.master_id
                )
                server_version = await conn.fetchval("SHOW server_version")
            finally:
                await conn.close()
            engine = make_engine(database_url, pool_size=1)
            try:
                async with engine.connect() as sa_conn:
                    differences = await verify(sa_conn)
            finally:
                await engine.dispose()

    lost = ledger.succeeded - keys
    surplus = keys - ledger.succeeded
    lines = [
        f"load: tree query (master + {MEMBERS} members with link, sites, bill-tos, finance) "
        f"and allocateFunds ({AMOUNT} CASH, {args.money:.0%} of requests) mixed",
        f"  accountgraph serve --workers {args.workers} (DB pool {pool_size}+"
        f"{pool_size} per process) on 127.0.0.1; PostgreSQL {server_version} ({pg_source}: "
        f"{_describe(database_url)}); Redis ({redis_source}); {args.seconds:g} s per level",
        "  clients | requests/s | allocations/s |  p50 ms |  p99 ms | requests | errors",
    ]
    for level in levels:
        count = len(level.latencies) + sum(
            v for k, v in level.errors.items() if k.endswith("Error") or k.endswith("Timeout")
        )
        errors = sum(level.errors.values())
        detail = (
            " (" + ", ".join(f"{k}: {v}" for k, v in sorted(level.errors.items())) + ")"
            if errors
            else ""
        )
        lines.append(
            f"  {level.clients:7d} | {len(level.latencies) / level.seconds:10,.0f} | "
            f"{level.allocations / level.seconds:13,.0f} | {level.percentile_ms(0.5):7.1f} | "
            f"{level.percentile_ms(0.99):7.1f} | {count:8,d} | {errors:6d}{detail}"
        )
    expected_cash = OPENING_CASH - AMOUNT * rows
    failed_requests = sum(sum(level.errors.values()) for level in levels)
    ok = (
        not differences
        and not lost
        and surplus <= ledger.unknown
        and cash == expected_cash
        and not failed_requests  # any error fails the run: non-200 (5xx), GraphQL, transport
    )
    lines.append(
        f"  ledger: verify() {len(differences)} differences; {rows:,} transfer rows = "
        f"{len(ledger.succeeded):,} successful allocations + {len(surplus)} whose answer was "
        f"lost; lost {len(lost)}, doubled {rows - len(keys)}; master cash "
        f"{Decimal(cash):,} = opening - {AMOUNT} x {rows:,}: "
        f"{'yes' if cash == expected_cash else 'NO'}"
    )
    lines.append(
        "  verdict: "
        + (
            "OK, zero failed requests, zero lost or doubled money"
            if ok
            else f"FAILED ({failed_requests} failed requests)"
        )
    )
    print("\n".join(lines), flush=True)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per level")
    parser.add_argument("--clients", default="1,16,64", help="concurrency levels")
    parser.add_argument("--workers", type=int, default=4, help="uvicorn worker processes")
    parser.add_argument(
        "--money", type=float, default=0.3, help="share of requests that are allocateFunds"
    )
    args = parser.parse_args(argv)
    try:
        [int(part) for part in args.clients.split(",")]
    except ValueError:
        parser.error("--clients takes integers such as 1,16,64")
    if args.seconds <= 0 or args.workers < 1 or not 0 <= args.money <= 1:
        parser.error("--seconds > 0, --workers >= 1, 0 <= --money <= 1")

    async def bounded() -> int:
        return await asyncio.wait_for(run(args), RUN_TIMEOUT_S)

    return asyncio.run(bounded())


if __name__ == "__main__":
    raise SystemExit(main())
