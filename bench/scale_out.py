"""Scale-out (issue 17): throughput per added gateway process and per added worker process,
against one PostgreSQL and one Redis.

Gateways. ``bench.allocations``' data (a master with 16 ACTIVE trusteeship members and
10,000,000.00 cash) in a fresh, migrated database; ``bench.load``'s mix: 70% the tree
query (the master's members with link, sites, bill-tos and finance), 30% ``allocateFunds``
of 0.01 CASH to a member, from ``bench.client`` in its own process (``--clients``
keep-alive connections, each request's answer checked). Configurations, each for
``--seconds`` after a warm-up:

- 1 gateway process: one ``accountgraph serve --workers 1``;
- 2 gateway processes: two separate ``accountgraph serve --workers 1`` on two ports (as
  two replicas behind a load balancer), the client's connections spread over both
  (connection ``n`` to gateway ``n % 2``);
- for comparison, ``accountgraph serve --workers 2``: two uvicorn processes on one port
  (the kernel spreads the connections).

Each gateway process has the default pool (``ACCOUNTGRAPH_DB_POOL_SIZE`` 10, and as many
overflow). The floor in the same run: the same clients drawing the same mix as their SQL
on raw asyncpg (``bench.load``'s baseline), in this process. On a 2-core machine the
client, PostgreSQL and Redis share the cores with the gateways and workers. Printed:
requests/s, p50 and p99 per configuration, and the gain of the added process (2 processes
/ 1 process).

Workers. Accounts with 100.00 cash and an armed alert at 50.00 (``bench.alert_latency``'s
seed). With no worker running, ``--backlog`` ``recordCharge`` calls of 60.00, one account
each (every one crosses its alert), are made through the gateway (``serve --workers 2``,
``bench.charge_client`` in its own process), then the gateway is stopped: the outbox holds
the backlog (a ``quota.changed`` and a ``charge.recorded`` row per charge). The pending
rows are held back (``not_before`` moved a day ahead), 1 or 2 ``accountgraph worker``
processes are started and waited for (each one's outbox relay LISTENing), and the rows are
released (``not_before`` put back, NOTIFY): timed from the release until no outbox row is
pending and every charged account has its notification (the evaluation job writes the
notification and a publish row, whose job publishes on Redis). Each configuration drains a
backlog of its own accounts. Printed: drain time, charges drained per second, outbox jobs
per second, each worker process's CPU time over the drain time (1.00: a core busy all
along), the gain of the second worker, and missing and duplicate notifications (each
account exactly one, checked in the database). ``verify()`` checks the ledger at the end.

    .venv/bin/python -m bench.scale_out [--seconds 10] [--clients 32] [--backlog 1000]
                                        [--skip-gateways] [--skip-workers]

PostgreSQL: ``DATABASE_URL`` (throwaway databases are created on that server and dropped
at the end), else an embedded server in a temporary directory. Redis: ``REDIS_URL``, else
an embedded one. Loopback and unix sockets only. Any failed request, missing or duplicate
notification or ledger difference makes the exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import secrets
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from arq import create_pool

from accountgraph import outbox
from accountgraph.api import ids
from accountgraph.db import make_engine
from accountgraph.funds.verify import verify
from accountgraph.runtime import redis_settings
from bench.alert_latency import CHARGE_AMOUNT, forget_jobs
from bench.alert_latency import seed as seed_alerts
from bench.allocations import AMOUNT, OPENING_CASH
from bench.allocations import seed as seed_members
from bench.load import ALLOCATE, TREE, Client, Level, SqlClient, run_level
from bench.processes import gateway, load, worker
from bench.tree_query import _asyncpg_dsn, _describe, fresh_database, postgres_server, redis_server

MONEY_EVERY = (1, 4, 7)  # of every 10 requests: 3 allocations, 7 trees
EXPECT = r'"totalCount"\s*:\s*16\b|"userErrors"\s*:\s*\[\]'
DRAIN_TIMEOUT_S = 300.0
READY_TIMEOUT_S = 60.0


def _percentile_ms(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)] * 1000


# ---------------------------------------------------------------- gateways


@dataclass
class GatewayRun:
    label: str
    processes: int
    rate: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)


async def gateways(args: argparse.Namespace, server_url: str, redis_url: str, tmp: Path) -> bool:
    async with contextlib.AsyncExitStack() as stack:
        database_url = await stack.enter_async_context(fresh_database(server_url))
        dsn = _asyncpg_dsn(database_url)
        seeded = await seed_members(dsn)
        master = ids.encode("Account", seeded.master_id)
        members = [ids.encode("Account", member) for member in seeded.member_ids]
        env = {"ACCOUNTGRAPH_QUEUE": f"accountgraph:scale:{uuid.uuid4().hex[:8]}"}
        bodies: list[dict[str, Any]] = []
        for n in range(10 * len(members)):  # every member gets allocations
            if n % 10 in MONEY_EVERY:
                variables = {
                    "masterId": master,
                    "memberId": members[n % len(members)],
                    "amount": str(AMOUNT),
                    "method": "CASH",
                }
                bodies.append({"query": ALLOCATE, "variables": {"input": variables}})
            else:
                bodies.append({"query": TREE})

        async def measure(label: str, urls: list[str], processes: int) -> GatewayRun:
            result = await load(
                {
                    "urls": [f"{url}/graphql" for url in urls],
                    "headers": {"Authorization": f"Bearer {seeded.token}"},
                    "bodies": bodies,
                    "each": True,
                    "concurrency": args.clients,
                    "seconds": args.seconds,
                    "warmup": 20,
                    "expect": EXPECT,
                }
            )
            return GatewayRun(
                label, processes, result["per_second"], result["latencies"], result["errors"]
            )

        runs: list[GatewayRun] = []
        async with gateway(database_url, redis_url, tmp / "g1.log", workers=1, env=env) as one:
            runs.append(await measure("1 x serve --workers 1", [one], 1))
        async with (
            gateway(database_url, redis_url, tmp / "g2a.log", workers=1, env=env) as first,
            gateway(database_url, redis_url, tmp / "g2b.log", workers=1, env=env) as second,
        ):
            runs.append(await measure("2 x serve --workers 1", [first, second], 2))
        async with gateway(database_url, redis_url, tmp / "g3.log", workers=2, env=env) as both:
            runs.append(await measure("1 x serve --workers 2", [both], 2))

        # The floor: the same mix as SQL, in this process.
        pool = await asyncpg.create_pool(dsn, min_size=args.clients, max_size=args.clients)
        stack.push_async_callback(pool.close)

        @contextlib.asynccontextmanager
        async def sql_client() -> AsyncIterator[Client]:
            async with pool.acquire() as conn:
                yield SqlClient(conn, seeded.master_id, seeded.member_ids)

        await run_level(sql_client, Level(args.clients), 1.0, 0.3, None)  # warm-up
        floor = Level(args.clients)
        await run_level(sql_client, floor, args.seconds, 0.3, None)

        rows = await pool.fetchval("SELECT count(*) FROM transfers")
        cash = await pool.fetchval(
            "SELECT cash_balance FROM balances WHERE account_id = $1", seeded.master_id
        )
        version = await pool.fetchval("SHOW server_version")
        engine = make_engine(database_url, pool_size=1)
        try:
            async with engine.connect() as conn:
                differences = await verify(conn)
        finally:
            await engine.dispose()

    errors = sum(sum(run.errors.values()) for run in runs) + sum(floor.errors.values())
    cash_ok = cash == OPENING_CASH - AMOUNT * rows
    lines = [
        f"scale-out, gateways: bench.load's mix (70% tree of {len(members)} members, 30% "
        f"allocateFunds {AMOUNT} CASH), {args.clients} keep-alive connections from "
        f"bench.client in its own process, {args.seconds:g} s per configuration",
        f"  PostgreSQL {version} ({_describe(database_url)}), Redis "
        f"{redis_url.split('@')[-1]}; each gateway process with the default pool (10 + 10)",
        "  configuration                    | processes | requests/s |  p50 ms |  p99 ms | errors",
    ]
    for run in runs:
        detail = f" {run.errors}" if run.errors else ""
        lines.append(
            f"  {run.label:32} | {run.processes:9d} | {run.rate:10,.1f} | "
            f"{_percentile_ms(run.latencies, 0.5):7.1f} | "
            f"{_percentile_ms(run.latencies, 0.99):7.1f} | {sum(run.errors.values()):6d}{detail}"
        )
    lines.append(
        f"  {'floor: the mix as SQL (asyncpg)':32} | {'-':>9} | {floor.rate:10,.1f} | "
        f"{floor.percentile_ms(0.5):7.1f} | {floor.percentile_ms(0.99):7.1f} | "
        f"{sum(floor.errors.values()):6d}"
    )
    base = runs[0].rate
    for run in runs[1:]:
        lines.append(
            f"  gain of the second process ({run.label}): {run.rate / base:.2f}x, "
            f"{run.rate - base:+,.1f} requests/s"
        )
    lines.append(
        f"  verified: verify() {len(differences)} differences; master cash = opening - "
        f"{AMOUNT} x {rows:,} transfers: {'yes' if cash_ok else 'NO'}; {errors} failed requests"
    )
    print("\n".join(lines), flush=True)
    return not differences and cash_ok and errors == 0


# ---------------------------------------------------------------- workers


@dataclass
class Drain:
    workers: int
    charges: int
    seconds: float = 0.0
    jobs: int = 0
    missing: int = 0
    duplicates: int = 0
    write_per_s: float = 0.0
    drained: bool = False
    busy: list[float] = field(default_factory=list)  # each worker's CPU s per drain s


def cpu_s(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


PENDING = (
    "SELECT count(*) FROM outbox WHERE done_at IS NULL "
    "AND (not_before IS NULL OR not_before <= now())"
)
NOTIFIED = (
    "SELECT count(DISTINCT account_id) FROM notifications WHERE account_id = ANY($1::bigint[])"
)


async def _listening(raw: asyncpg.Connection) -> int:
    """Sessions in this database LISTENing for the outbox (one per worker's relay)."""
    count: int = await raw.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND query ILIKE 'LISTEN%'"
    )
    return count


async def drain_once(
    workers: int,
    numbers: list[int],
    database_url: str,
    redis_url: str,
    env: dict[str, str],
    token: str,
    tmp: Path,
) -> Drain:
    dsn = _asyncpg_dsn(database_url)
    drain = Drain(workers, len(numbers))
    accounts = [ids.encode("Account", n) for n in numbers]
    # The backlog, through the gateway, with no worker running.
    async with gateway(
        database_url, redis_url, tmp / f"backlog{workers}.log", workers=2, env=env
    ) as base:
        result = await load(
            {
                "urls": [base],
                "token": token,
                "amount": CHARGE_AMOUNT,
                "connections": 32,
                "subscribe": False,
                "phases": [{"rate": 1000.0, "accounts": accounts}],
            },
            module="bench.charge_client",
        )
    phase = result["phases"][0]
    if phase["errors"]:
        raise RuntimeError(f"backlog charges failed: {phase['errors']}")
    answered = [t for t in phase["answered"] if t is not None]
    drain.write_per_s = len(answered) / (max(answered) - phase["scheduled"][0])

    raw = await asyncpg.connect(dsn)
    try:
        async with raw.transaction():  # held back, exactly restorable
            held = await raw.fetch(
                "WITH old AS (SELECT id, not_before FROM outbox WHERE done_at IS NULL "
                "FOR UPDATE) UPDATE outbox SET not_before = coalesce(old.not_before, now()) "
                "+ interval '1 day' FROM old WHERE outbox.id = old.id "
                "RETURNING outbox.id, old.not_before AS was"
            )
        before_done = await raw.fetchval("SELECT count(*) FROM outbox WHERE done_at IS NOT NULL")
        async with contextlib.AsyncExitStack() as stack:
            pids = []
            for n in range(workers):
                process = await stack.enter_async_context(
                    worker(database_url, redis_url, tmp / f"worker{workers}-{n}.log", env=env)
                )
                pids.append(process.pid)
            deadline = time.monotonic() + READY_TIMEOUT_S
            while await _listening(raw) < workers:
                if time.monotonic() > deadline:
                    raise RuntimeError("the workers' relays never LISTENed")
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # arq's poll loops are running too
            cpu_before = [cpu_s(pid) for pid in pids]
            started = time.perf_counter()
            async with raw.transaction():
                await raw.execute(
                    "UPDATE outbox SET not_before = h.was "
                    "FROM unnest($1::bigint[], $2::timestamptz[]) AS h(id, was) "
                    "WHERE outbox.id = h.id",
                    [row["id"] for row in held],
                    [row["was"] for row in held],
                )
                await raw.execute("SELECT pg_notify($1, '')", outbox.NOTIFY_CHANNEL)
            deadline = time.monotonic() + DRAIN_TIMEOUT_S
            while time.monotonic() < deadline:
                if (
                    await raw.fetchval(NOTIFIED, numbers) == len(numbers)
                    and await raw.fetchval(PENDING) == 0
                ):
                    drain.drained = True
                    break
                await asyncio.sleep(0.02)
            drain.seconds = time.perf_counter() - started
            drain.busy = [
                (cpu_s(pid) - before) / drain.seconds
                for pid, before in zip(pids, cpu_before, strict=True)
            ]
        drain.jobs = (
            await raw.fetchval("SELECT count(*) FROM outbox WHERE done_at IS NOT NULL")
            - before_done
        )
        counts = {
            row["account_id"]: row["n"]
            for row in await raw.fetch(
                "SELECT account_id, count(*) AS n FROM notifications "
                "WHERE account_id = ANY($1::bigint[]) GROUP BY account_id",
                numbers,
            )
        }
    finally:
        await raw.close()
    drain.missing = sum(1 for n in numbers if counts.get(n, 0) == 0)
    drain.duplicates = sum(c - 1 for c in counts.values() if c > 1)
    return drain


async def workers_bench(
    args: argparse.Namespace, server_url: str, redis_url: str, tmp: Path
) -> bool:
    async with contextlib.AsyncExitStack() as stack:
        database_url = await stack.enter_async_context(fresh_database(server_url))
        dsn = _asyncpg_dsn(database_url)
        numbers = await seed_alerts(dsn, 2 * args.backlog)
        token = "bench-" + secrets.token_urlsafe(24)
        queue = f"accountgraph:scale:{uuid.uuid4().hex[:8]}"
        env = {"ACCOUNTGRAPH_OPERATOR_TOKEN": token, "ACCOUNTGRAPH_QUEUE": queue}
        redis = await create_pool(redis_settings(redis_url), default_queue_name=queue)
        stack.push_async_callback(redis.aclose)
        stack.push_async_callback(forget_jobs, redis, dsn, queue)
        drains = []
        for index, workers in enumerate((1, 2)):
            mine = numbers[index * args.backlog : (index + 1) * args.backlog]
            drains.append(await drain_once(workers, mine, database_url, redis_url, env, token, tmp))
        raw = await asyncpg.connect(dsn)
        try:
            version = await raw.fetchval("SHOW server_version")
            notified = await raw.fetchval("SELECT count(*) FROM notifications")
        finally:
            await raw.close()
        engine = make_engine(database_url, pool_size=1)
        try:
            async with engine.connect() as conn:
                differences = await verify(conn)
        finally:
            await engine.dispose()

    lines = [
        f"scale-out, workers: a backlog of {args.backlog:,} recordCharge calls ({CHARGE_AMOUNT}, "
        "one account each, every one a crossing) written through the gateway with no worker "
        "running, then drained by 1 or 2 `accountgraph worker` processes",
        f"  PostgreSQL {version} ({_describe(database_url)}), Redis "
        f"{redis_url.split('@')[-1]}; timed from the release of the held rows to no pending "
        "outbox row and every account notified",
        "  workers | backlog written at | drain s | charges/s | outbox jobs/s | missing | "
        "duplicates | worker CPU (cores busy)",
    ]
    for drain in drains:
        lines.append(
            f"  {drain.workers:7d} | {drain.write_per_s:12.1f} /s   | {drain.seconds:7.2f} | "
            f"{drain.charges / drain.seconds:9.1f} | {drain.jobs / drain.seconds:13.1f} | "
            f"{drain.missing:7d} | {drain.duplicates:10d} | "
            + " + ".join(f"{busy:.2f}" for busy in drain.busy)
            + ("" if drain.drained else f"  NOT DRAINED within {DRAIN_TIMEOUT_S:g} s")
        )
    gain = drains[0].seconds / drains[1].seconds
    lines.append(
        f"  gain of the second worker: {gain:.2f}x "
        f"({drains[1].charges / drains[1].seconds - drains[0].charges / drains[0].seconds:+,.1f}"
        " charges/s)"
    )
    lines.append(
        f"  verified: {notified:,} notifications for {2 * args.backlog:,} charges; verify() "
        f"{len(differences)} differences"
    )
    print("\n".join(lines), flush=True)
    sound = all(d.drained and d.missing == 0 and d.duplicates == 0 for d in drains)
    return sound and not differences and notified == 2 * args.backlog


# ---------------------------------------------------------------- main


async def run(args: argparse.Namespace) -> int:
    ok = True
    with tempfile.TemporaryDirectory(prefix="agscale-") as tmp_name:
        tmp = Path(tmp_name)
        async with contextlib.AsyncExitStack() as stack:
            server_url, pg_source = await stack.enter_async_context(postgres_server(tmp))
            redis_url, redis_source = await stack.enter_async_context(redis_server(tmp))
            print(f"PostgreSQL: {pg_source}; Redis: {redis_source}", flush=True)
            if not args.skip_gateways:
                ok = await gateways(args, server_url, redis_url, tmp) and ok
            if not args.skip_workers:
                ok = await workers_bench(args, server_url, redis_url, tmp) and ok
    print("verdict: " + ("OK" if ok else "FAILED"), flush=True)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale_out",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="per gateway configuration")
    parser.add_argument("--clients", type=int, default=32, help="load client connections")
    parser.add_argument("--backlog", type=int, default=1000, help="charges per worker drain")
    parser.add_argument("--skip-gateways", action="store_true")
    parser.add_argument("--skip-workers", action="store_true")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.clients < 1 or not 10 <= args.backlog <= 100_000:
        parser.error("--seconds > 0, --clients >= 1, 10 <= --backlog <= 100000")
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
