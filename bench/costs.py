"""C2/C4 at scale: ``costs(groupBy: [DAY, MEMBER])`` through the real app over HTTP
against one hand-written SQL query of the same result, and budget evaluation per charge.

A master with ``--members`` ACTIVE trusteeship members and ``--per-day`` charges per member
per day for ``--days`` days (issue 14: 2,000 x 100 x 30 = 6M charges) is written with bulk
SQL into a fresh, migrated database. The real app (``create_app``) is served by a real
uvicorn on a loopback port in this process; every iteration asks for the month's report by
day and member. The baseline, in the same run, is one hand-written SQL statement (raw
asyncpg) with the same visibility predicate that returns the same groups as JSON text.
Both answers are checked to be the same groups and total.

Budget evaluation (``--budgets``, 100 per account over the master and the first members):
``--rate`` charges/s for ``--seconds`` s, each committed with its outbox row, while
``--workers`` concurrent jobs run the rows; the note gives the lag from commit to done
(p50, p99) and how long after the last charge the backlog was gone.

    .venv/bin/python -m bench.costs [--members 2000] [--per-day 100] [--days 30]
        [--iterations 5] [--budgets 10000] [--rate 200] [--seconds 20] [--workers 8]

PostgreSQL: ``DATABASE_URL`` (a throwaway database is created on that server and dropped
at the end), else an embedded server. Redis: ``REDIS_URL``, else an embedded one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import uvicorn
from arq import create_pool
from sqlalchemy import text
from sqlalchemy.engine import make_url

from accountgraph import embedded, outbox
from accountgraph.api import ids
from accountgraph.app import create_app
from accountgraph.config import Settings
from accountgraph.costs.budgets import DEBOUNCE_S, EVALUATE_TOPIC, spend, sweep
from accountgraph.db import make_engine, to_async_url
from accountgraph.funds.public import CHARGE_TOPIC
from accountgraph.migrations import upgrade_async
from accountgraph.runtime import redis_settings

OPERATOR_TOKEN = "bench-operator-" + uuid.uuid4().hex
START = datetime(2026, 6, 1, tzinfo=UTC)
QUERY = """
query($id: ID!, $since: DateTime!, $until: DateTime!) {
  account(id: $id) {
    costs(since: $since, until: $until, groupBy: [DAY, MEMBER]) {
      total groups { keys amount charges }
    }
  }
}"""
# The same report by hand: the master's own charges and its ACTIVE members' since their
# association (trusteeship, or VIEW_FINANCE), by UTC day and account, in key order.
BASELINE = """
SELECT coalesce(json_agg(json_build_object(
         'day', to_char(g.day, 'YYYY-MM-DD'), 'member', g.account_id,
         'amount', g.amount::text, 'charges', g.charges) ORDER BY g.day, g.account_id), '[]')::text,
       coalesce(sum(g.amount), 0)::text
FROM (
  SELECT date_trunc('day', timezone('UTC', c.occurred_at)) AS day, c.account_id,
         sum(c.amount) AS amount, count(*) AS charges
  FROM charges c
  WHERE c.occurred_at >= $2 AND c.occurred_at < $3
    AND (c.account_id = $1 OR EXISTS (
      SELECT 1 FROM links l
      WHERE l.master_id = $1 AND l.member_id = c.account_id AND l.status = 'ACTIVE'
        AND c.occurred_at >= l.activated_at
        AND (l.type = 'TRUSTEESHIP' OR 'VIEW_FINANCE' = ANY (l.permissions))))
  GROUP BY 1, 2
) g
"""


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _dsn(url: str) -> str:
    return make_url(to_async_url(url)).set(drivername="postgresql").render_as_string(False)


@contextlib.asynccontextmanager
async def servers(tmp: Path) -> AsyncIterator[tuple[str, str]]:
    """(PostgreSQL server URL, Redis URL): the environment's, else embedded ones."""
    stack = contextlib.AsyncExitStack()
    async with stack:
        pg = os.environ.get("DATABASE_URL")
        if pg is None:
            server = await asyncio.to_thread(embedded.start_postgres, tmp / "state")
            stack.push_async_callback(asyncio.to_thread, server.stop)
            pg = server.url
        redis = os.environ.get("REDIS_URL")
        if redis is None:
            found = await asyncio.to_thread(embedded.start_redis, tmp / "redis")
            stack.push_async_callback(asyncio.to_thread, found.stop)
            redis = found.url
        yield to_async_url(pg), redis


@contextlib.asynccontextmanager
async def fresh_database(server_url: str) -> AsyncIterator[str]:
    name = f"accountgraph_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(_dsn(server_url))
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    try:
        url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
        await upgrade_async(url)
        yield url
    finally:
        admin = await asyncpg.connect(_dsn(server_url))
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def seed(dsn: str, members: int, per_day: int, days: int) -> tuple[int, list[int], float]:
    """The master, its members (associated the day before START) and their charges."""
    began = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        master = await conn.fetchval(
            "INSERT INTO accounts (name, display_name, cost_center_enabled) "
            "VALUES ('Master', 'Master', true) RETURNING id"
        )
        member_ids = [
            r["id"]
            for r in await conn.fetch(
                "INSERT INTO accounts (name, display_name, cost_center_enabled) "
                "SELECT 'M' || n, 'M' || n, true FROM generate_series(1, $1) n RETURNING id",
                members,
            )
        ]
        await conn.execute(
            "INSERT INTO links (master_id, member_id, type, status, permissions, activated_at) "
            "SELECT $1, m, 'TRUSTEESHIP', 'ACTIVE', '{VIEW_FINANCE}', $3 "
            "FROM unnest($2::bigint[]) m",
            master,
            member_ids,
            START - timedelta(days=1),
        )
        for day in range(days):
            await conn.execute(
                "INSERT INTO charges (account_id, amount, description, occurred_at, product, tags) "
                "SELECT m, ((n * 37 + m) % 5000 + 1) / 100.0, 'usage', "
                "       $2::timestamptz + (n * interval '1 second' * 86399 / $3::int), "
                "       (ARRAY['ECS','OSS','RDS'])[1 + n % 3], "
                "       jsonb_build_object('team', (ARRAY['web','db'])[1 + m % 2]) "
                "FROM unnest($1::bigint[]) m, generate_series(0, $3::int - 1) n",
                [master, *member_ids],
                START + timedelta(days=day),
                per_day,
            )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return master, member_ids, time.perf_counter() - began


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()


async def report_bench(
    args: argparse.Namespace, url: str, redis_url: str, master: int
) -> list[str]:
    settings = Settings(
        DATABASE_URL=url, REDIS_URL=redis_url, ACCOUNTGRAPH_OPERATOR_TOKEN=OPERATOR_TOKEN,
        ACCOUNTGRAPH_QUEUE=f"accountgraph:bench:{uuid.uuid4().hex[:8]}",
    )  # fmt: skip
    engine = make_engine(url, pool_size=10)
    redis = await create_pool(redis_settings(redis_url), default_queue_name=settings.queue_name)
    since, until = START, START + timedelta(days=args.days)
    variables = {"id": ids.encode("Account", master), "since": since.isoformat(),
                 "until": until.isoformat()}  # fmt: skip
    raw = await asyncpg.connect(_dsn(url))
    api_times, sql_times = [], []
    try:
        async with (
            serve(create_app(settings, engine, redis)) as base,
            httpx.AsyncClient(
                base_url=base, timeout=600, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}
            ) as client,
        ):
            body: dict[str, Any] = {}
            baseline: Any = None
            for index in range(args.warmup + args.iterations):
                began = time.perf_counter()
                response = await client.post(
                    "/graphql", json={"query": QUERY, "variables": variables}
                )
                body = response.json()
                api_s = time.perf_counter() - began
                began = time.perf_counter()
                baseline = await raw.fetchrow(BASELINE, master, since, until)
                sql_s = time.perf_counter() - began
                if index >= args.warmup:
                    api_times.append(api_s)
                    sql_times.append(sql_s)
            assert "errors" not in body, body.get("errors")
            report = body["data"]["account"]["costs"]
            groups = json.loads(baseline[0])
            assert Decimal(report["total"]) == Decimal(baseline[1]), "totals differ"
            assert len(report["groups"]) == len(groups), "group counts differ"
            for mine, theirs in zip(report["groups"], groups, strict=True):
                assert mine["keys"] == [theirs["day"], ids.encode("Account", theirs["member"])]
                assert Decimal(mine["amount"]) == Decimal(theirs["amount"])
                assert mine["charges"] == theirs["charges"]
    finally:
        await raw.close()
        await redis.aclose()
        await engine.dispose()
    api, sql = statistics.median(api_times), statistics.median(sql_times)
    return [
        f"report: {len(report['groups']):,} groups, total {report['total']}",
        f"  API (HTTP, costs by DAY x MEMBER): median {api * 1000:.0f} ms "
        f"(min {min(api_times) * 1000:.0f}, max {max(api_times) * 1000:.0f})",
        f"  one hand-written SQL query:       median {sql * 1000:.0f} ms "
        f"(min {min(sql_times) * 1000:.0f}, max {max(sql_times) * 1000:.0f})",
        f"  ratio API / SQL: {api / sql:.2f}x (target <= 1.5x)",
    ]


async def budget_bench(
    args: argparse.Namespace, url: str, master: int, members: list[int]
) -> list[str]:
    """``--budgets`` budgets (100 per account: the master and the first members), then
    ``--rate`` charges/s for ``--seconds`` s, each committed with its outbox row as
    ``record_charge`` does, for random members, while ``--workers`` concurrent jobs run
    the rows (``outbox.run_row``, the worker's own call). Lag: commit to done."""
    from accountgraph import jobs  # noqa: F401  (registers the C4 handler)

    dsn = _dsn(url)
    owners = [master, *members][: max(1, args.budgets // 100)]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO budgets (account_id, name, amount, period, tag_key, tag_value) "
            "SELECT o, 'b' || n, 100000000 + n, "
            "       (ARRAY['MONTHLY','QUARTERLY','YEARLY'])[1 + n % 3], "
            "       CASE WHEN n % 2 = 0 THEN 'team' END, CASE WHEN n % 2 = 0 THEN 'web' END "
            "FROM unnest($1::bigint[]) o, generate_series(1, $2) n",
            owners,
            min(100, args.budgets),
        )
        await conn.execute(
            "INSERT INTO budget_thresholds (budget_id, basis, percent, position) "
            "SELECT id, b, 100, CASE b WHEN 'ACTUAL' THEN 0 ELSE 1 END FROM budgets, "
            "unnest(ARRAY['ACTUAL','FORECASTED']) b"
        )
        total = await conn.fetchval("SELECT count(*) FROM budgets")
        first = await conn.fetchval("SELECT coalesce(max(id), 0) FROM outbox")
    finally:
        await conn.close()
    engine = make_engine(url, pool_size=args.workers + 2)
    queue: asyncio.Queue[int] = asyncio.Queue()
    producing = asyncio.Event()
    finished = asyncio.Event()
    pick = random.Random(1)
    ages: list[float] = []

    async def produce() -> None:
        producer = await asyncpg.connect(dsn)
        try:
            batch = max(1, args.rate // 10)
            deadline = time.perf_counter() + args.seconds
            while time.perf_counter() < deadline:
                tick = time.perf_counter()
                whose = [pick.choice(members) for _ in range(batch)]
                async with producer.transaction():
                    rows = await producer.fetch(
                        "INSERT INTO charges (account_id, amount, description, occurred_at, "
                        "product, tags) SELECT m, 1.00, 'usage', clock_timestamp(), 'ECS', "
                        '\'{"team": "web"}\' FROM unnest($1::bigint[]) m '
                        "RETURNING id, account_id",
                        whose,
                    )
                    ids_ = await producer.fetch(
                        "INSERT INTO outbox (topic, payload) SELECT $1, jsonb_build_object("
                        "'charge_id', c, 'account_id', a, 'xid', pg_current_xact_id()::text) "
                        "FROM unnest($2::bigint[], $3::bigint[]) AS t(c, a) RETURNING id",
                        CHARGE_TOPIC,
                        [r["id"] for r in rows],
                        [r["account_id"] for r in rows],
                    )
                for row in ids_:
                    queue.put_nowait(row["id"])
                await asyncio.sleep(max(0.0, 0.1 - (time.perf_counter() - tick)))
        finally:
            producing.set()
            await producer.close()

    async def delayed() -> None:
        """The relay's part for the delayed evaluations (C4 debounce): due rows to run."""
        poller = await asyncpg.connect(dsn)
        seen: set[int] = set()
        try:
            while True:
                rows = await poller.fetch(
                    "SELECT id FROM outbox WHERE topic = $1 AND done_at IS NULL "
                    "AND not_before <= now()",
                    EVALUATE_TOPIC,
                )
                for row in rows:
                    if row["id"] not in seen:
                        seen.add(row["id"])
                        queue.put_nowait(row["id"])
                if producing.is_set() and not rows and queue.empty():
                    pending = await poller.fetchval(
                        "SELECT count(*) FROM outbox WHERE topic = $1 AND done_at IS NULL",
                        EVALUATE_TOPIC,
                    )
                    if not pending:
                        break
                await asyncio.sleep(0.1)
        finally:
            await poller.close()

    async def sample() -> None:
        """Every 100 ms: the age of the oldest charge not yet counted in the budgets'
        stored spends (C4: what a threshold crossing waits for at most)."""
        sampler = await asyncpg.connect(dsn)
        try:
            while not finished.is_set():
                age = await sampler.fetchval(
                    "SELECT extract(epoch FROM clock_timestamp() - min(occurred_at)) "
                    "FROM budget_deltas"
                )
                ages.append(float(age or 0))
                await asyncio.sleep(0.1)
        finally:
            await sampler.close()

    async def work() -> None:
        while not (producing.is_set() and queue.empty() and finished.is_set()):
            try:
                row_id = await asyncio.wait_for(queue.get(), 0.1)
            except TimeoutError:
                continue
            await outbox.run_row(engine, row_id)

    # As after a deploy: the sweep computes every budget's spend in whole once; from then
    # on the charges' jobs count each charge.
    warmed = time.perf_counter()
    await sweep(engine)
    warm_s = time.perf_counter() - warmed
    began = time.perf_counter()
    try:

        async def relay() -> None:
            await delayed()
            finished.set()

        await asyncio.gather(produce(), relay(), sample(), *(work() for _ in range(args.workers)))
        elapsed = time.perf_counter() - began
        # The stored spends against the live spend (C3, from the charges) of every budget,
        # then the sweep's whole computation of all of them.
        async with engine.connect() as conn:
            counted = {
                int(r.budget_id): r.spent
                for r in await conn.execute(text("SELECT budget_id, spent FROM budget_spends"))
            }
            live: dict[int, Any] = {}
            for owner in owners:
                live |= {
                    b: s.spent for b, s in (await spend(conn, owner, datetime.now(UTC))).items()
                }
        drift = sum(1 for b, v in live.items() if counted.get(b) != v)
        swept = time.perf_counter()
        await sweep(engine)
        sweep_s = time.perf_counter() - swept
    finally:
        await engine.dispose()
    conn = await asyncpg.connect(dsn)
    try:
        lags = [
            float(r["lag"])
            for r in await conn.fetch(
                "SELECT extract(epoch FROM done_at - created_at) AS lag FROM outbox "
                "WHERE id > $1 AND topic = $2",
                first,
                CHARGE_TOPIC,
            )
        ]
        evaluations = await conn.fetchval("SELECT count(*) FROM budget_evaluations")
        delayed_rows = await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE id > $1 AND topic = $2", first, EVALUATE_TOPIC
        )
    finally:
        await conn.close()
    done = len(lags)
    return [
        f"budgets: {total:,} on {len(owners)} accounts (100 each; 2 thresholds each); "
        f"{done:,} charges at {args.rate}/s for {args.seconds} s to random members, "
        f"{args.workers} concurrent jobs; all done {elapsed - args.seconds:.1f} s after the "
        f"last charge ({evaluations} accounts evaluated, {delayed_rows} delayed evaluations)",
        f"  lag commit -> job done (a debounced charge is counted by a delayed evaluation "
        f"up to {DEBOUNCE_S:.0f} s later): p50 {percentile(lags, 0.5) * 1000:.0f} ms, "
        f"p99 {percentile(lags, 0.99) * 1000:.0f} ms, max {max(lags) * 1000:.0f} ms",
        f"  oldest charge not yet counted in the stored spends (sampled every 100 ms): "
        f"p50 {percentile(ages, 0.5) * 1000:.0f} ms, p99 {percentile(ages, 0.99) * 1000:.0f} ms, "
        f"max {max(ages) * 1000:.0f} ms",
        f"  stored spends vs the live spend of all {len(live):,} budgets: {drift} differ; "
        f"the sweep (each computed in whole) {warm_s * 1000:.0f} ms before the charges, "
        f"{sweep_s * 1000:.0f} ms after",
    ]


async def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        async with servers(Path(tmp)) as (server_url, redis_url), fresh_database(server_url) as url:
            master, members, seconds = await seed(_dsn(url), args.members, args.per_day, args.days)
            count = (args.members + 1) * args.per_day * args.days
            lines = [f"seeded {count:,} charges ({args.members:,} members) in {seconds:.0f} s"]
            if args.iterations:
                lines += await report_bench(args, url, redis_url, master)
            lines += await budget_bench(args, url, master, members)
    print("\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=2_000)
    parser.add_argument("--per-day", type=int, default=100)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--budgets", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--workers", type=int, default=8)
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
