"""A2/A4: from a committed charge to the live subscription event, and the sweep against
the one SQL query that finds the same accounts.

Latency. Accounts with 100.00 cash and an armed alert at 50.00 are written with bulk SQL
into a fresh, migrated database. The real app (``create_app``) is served by a real
uvicorn on a loopback port in this process, with an arq worker and its outbox relay
running beside it (the embedded default's shape; the worker has its own engine and Redis
pool, as a separate process would). A real WebSocket client subscribes to
``notifications`` with an operator token. Then ``recordCharge`` (60.00, one account per
charge, so every charge is a crossing) is POSTed on a fixed schedule at 1 and at 200
charges per second for ``--seconds`` each. Measured per charge: from the POST's response
(the charge is committed) to the event on the WebSocket; the path in between is the
outbox relay, the evaluation job, the publish job, Redis pub/sub and the gateway.

Sweep. A second fresh database gets 100,000 accounts with balances and enabled alerts
(bulk SQL); 1% are armed while their quota is below the threshold (crossings whose
events were lost), the rest agree with their quota. ``alerts.service.sweep`` (find the
candidates, then evaluate each in its own transaction: lock, quota, notification,
publish row) is timed against its floor, the one query ``SWEEP_CANDIDATES`` alone, and
the state is put back between runs.

    .venv/bin/python -m bench.alert_latency [--seconds 5] [--rates 1,200]
        [--alerts 100000] [--sweep-iterations 3]

PostgreSQL: ``DATABASE_URL`` (throwaway databases ``accountgraph_bench_<random>`` are
created on that server and dropped at the end), else an embedded server in a temporary
directory. Redis: ``REDIS_URL``, else an embedded one. Only loopback addresses and unix
sockets are accepted. Client, app and worker share this process and its event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import secrets
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import websockets
from arq import create_pool
from arq.connections import ArqRedis
from websockets.typing import Subprotocol

from accountgraph import outbox
from accountgraph.alerts import service
from accountgraph.api import ids
from accountgraph.app import create_app
from accountgraph.config import Settings
from accountgraph.db import make_engine
from accountgraph.funds.verify import verify
from accountgraph.runtime import redis_settings
from bench.tree_query import (
    _asyncpg_dsn,
    _describe,
    fresh_database,
    postgres_server,
    redis_server,
    serve,
)
from workers.settings import build_worker

CASH = "100.00"
THRESHOLD = "50.00"
CHARGE_AMOUNT = "60.00"
WARMUP_CHARGES = 5
EVENT_TIMEOUT_S = 60.0
CLIENT_CONNECTIONS = 64
SWEEP_CROSSING_EVERY = 100  # 1% of the alerts are missed crossings

CHARGE = """
mutation Charge($input: RecordChargeInput!) {
  recordCharge(input: $input) { charge { id } userErrors { code message } }
}
"""
SUBSCRIBE = "subscription { notifications { id kind account { id } } }"


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


# ---------------------------------------------------------------- the data


async def seed(dsn: str, accounts: int, *, crossing_every: int | None = None) -> list[int]:
    """``accounts`` standalone accounts, each paid ``CASH`` (a balanced journal entry) and
    with an enabled alert. Without ``crossing_every`` every alert is armed at
    ``THRESHOLD`` (a charge of 60.00 crosses it). With it, one account in
    ``crossing_every`` is armed at 150.00 (quota below: a missed crossing), one in ten is
    disarmed at 150.00 (already fired), the rest are armed at ``THRESHOLD``."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            numbers: list[int] = [
                row["id"]
                for row in await conn.fetch(
                    "INSERT INTO accounts (name, display_name) "
                    "SELECT format('Alerted-%s', lpad(g::text, 6, '0')), format('Alerted %s', g) "
                    "FROM generate_series(1, $1::int) AS g ORDER BY g RETURNING id",
                    accounts,
                )
            ]
            # One entry per account (the deferred F9 trigger checks a whole entry per
            # posting, so one entry of 100,000 postings would be quadratic).
            await conn.execute(
                "WITH e AS (INSERT INTO journal_entries (kind, actor, reason) "
                "  SELECT 'PAYMENT', 'operator:bench', 'seed ' || id "
                "  FROM unnest($1::bigint[]) AS id RETURNING id, reason) "
                "INSERT INTO postings (entry_id, account_id, bucket, amount) "
                "SELECT e.id, split_part(e.reason, ' ', 2)::bigint, 'CASH', $2::numeric FROM e "
                "UNION ALL SELECT e.id, NULL, 'CASH', -$2::numeric FROM e",
                numbers,
                CASH,
            )
            await conn.execute(
                "INSERT INTO balances (account_id, cash_balance) "
                "SELECT id, $2::numeric FROM unnest($1::bigint[]) AS id",
                numbers,
                CASH,
            )
            if crossing_every is None:
                await conn.execute(
                    "INSERT INTO quota_alerts (account_id, threshold, enabled, armed) "
                    "SELECT id, $2::numeric, true, true FROM unnest($1::bigint[]) AS id",
                    numbers,
                    THRESHOLD,
                )
            else:
                await conn.execute(
                    "INSERT INTO quota_alerts (account_id, threshold, enabled, armed, crossings) "
                    "SELECT id, CASE WHEN n % $2 = 0 OR n % 10 = 1 THEN 150 ELSE 50 END, true, "
                    "       n % 10 <> 1, CASE WHEN n % 10 = 1 THEN 1 ELSE 0 END "
                    "FROM unnest($1::bigint[]) WITH ORDINALITY AS t(id, n)",
                    numbers,
                    crossing_every,
                )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return numbers


# ---------------------------------------------------------------- latency


@dataclass
class Phase:
    rate: float
    seconds: float
    expected: int
    complete: asyncio.Event = field(default_factory=asyncio.Event)
    sent: dict[str, float] = field(default_factory=dict)  # account id -> POST sent
    committed: dict[str, float] = field(default_factory=dict)  # -> response received
    received: dict[str, float] = field(default_factory=dict)  # -> event on the socket
    duplicates: int = 0
    schedule_s: float = 0.0

    def latencies_ms(self) -> list[float]:
        return [
            (self.received[a] - self.committed[a]) * 1000
            for a in self.received
            if a in self.committed
        ]

    def round_trips_ms(self) -> list[float]:
        return [(self.committed[a] - self.sent[a]) * 1000 for a in self.committed]


class Listener:
    """A graphql-transport-ws client subscribed to every notification; it stamps each
    event with its arrival time for the phase in progress."""

    def __init__(self, socket: Any) -> None:
        self.socket = socket
        self.phase: Phase | None = None
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        async for raw in self.socket:
            now = time.perf_counter()
            message = json.loads(raw)
            _check(message.get("type") == "next", f"unexpected message {message}")
            node = message["payload"]["data"]["notifications"]
            if self.phase is None:
                continue
            account = node["account"]["id"]
            if account in self.phase.received:
                self.phase.duplicates += 1
            else:
                self.phase.received[account] = now
                if len(self.phase.received) >= self.phase.expected:
                    self.phase.complete.set()


@contextlib.asynccontextmanager
async def listening(base_url: str, token: str, redis: ArqRedis) -> AsyncIterator[Listener]:
    url = base_url.replace("http://", "ws://") + "/graphql"
    protocols = [Subprotocol("graphql-transport-ws")]
    async with websockets.connect(url, subprotocols=protocols) as socket:
        await socket.send(
            json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
        )
        ack = json.loads(await asyncio.wait_for(socket.recv(), 10))
        _check(ack["type"] == "connection_ack", f"no ack: {ack}")
        await socket.send(
            json.dumps({"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIBE}})
        )
        for _ in range(200):  # until the gateway listens on Redis pub/sub
            counts = dict(await redis.pubsub_numsub(service.PUBSUB_CHANNEL))
            if any(counts.values()):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the subscription never reached Redis")
        listener = Listener(socket)
        listener.task = asyncio.create_task(listener.run())
        try:
            yield listener
        finally:
            listener.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                await listener.task


async def drive(client: httpx.AsyncClient, phase: Phase, accounts: list[str]) -> None:
    """POST one charge per account at ``phase.rate`` per second (open loop: a slow answer
    does not delay the next charge), then wait for every event or the timeout."""

    slots = asyncio.Semaphore(CLIENT_CONNECTIONS)  # httpx's pool slows with many waiters

    async def one(account: str) -> None:
        async with slots:
            phase.sent[account] = time.perf_counter()
            response = await client.post(
                "/graphql",
                json={
                    "query": CHARGE,
                    "variables": {
                        "input": {
                            "accountId": account,
                            "amount": CHARGE_AMOUNT,
                            "description": "bench",
                        }
                    },
                },
            )
            phase.committed[account] = time.perf_counter()
        body = response.json()
        _check(
            response.status_code == 200
            and not body.get("errors")
            and not body["data"]["recordCharge"]["userErrors"],
            f"charge failed: {body}",
        )

    started = time.perf_counter()
    tasks = []
    for n, account in enumerate(accounts):
        delay = started + n / phase.rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(account)))
    await asyncio.gather(*tasks)
    phase.schedule_s = time.perf_counter() - started
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(phase.complete.wait(), EVENT_TIMEOUT_S)
    await asyncio.sleep(0.3)  # a late duplicate would show here


async def latency(
    args: argparse.Namespace, server_url: str, redis_url: str, rates: list[float]
) -> list[str]:
    async with contextlib.AsyncExitStack() as stack:
        database_url = await stack.enter_async_context(fresh_database(server_url))
        dsn = _asyncpg_dsn(database_url)
        wanted = [max(1, round(rate * args.seconds)) for rate in rates]
        numbers = await seed(dsn, WARMUP_CHARGES + sum(wanted))
        accounts = [ids.encode("Account", n) for n in numbers]
        token = "bench-" + secrets.token_urlsafe(24)
        settings = Settings(
            DATABASE_URL=database_url,
            REDIS_URL=redis_url,
            ACCOUNTGRAPH_OPERATOR_TOKEN=token,
            ACCOUNTGRAPH_GRAPHIQL=False,
            ACCOUNTGRAPH_QUEUE=f"accountgraph:bench:{uuid.uuid4().hex[:8]}",
        )
        app_engine = make_engine(database_url, pool_size=settings.db_pool_size)
        worker_engine = make_engine(database_url, pool_size=settings.db_pool_size)
        stack.push_async_callback(app_engine.dispose)
        stack.push_async_callback(worker_engine.dispose)
        app_redis = await create_pool(
            redis_settings(redis_url), default_queue_name=settings.queue_name
        )
        stack.push_async_callback(app_redis.aclose)
        worker = build_worker(
            settings,
            worker_engine,
            await create_pool(redis_settings(redis_url), default_queue_name=settings.queue_name),
        )
        worker_task = asyncio.create_task(worker.async_run())

        async def stop_worker() -> None:
            worker_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker_task
            await worker.close()
            with contextlib.suppress(Exception):
                await forget_jobs(app_redis, dsn, settings.queue_name)

        stack.push_async_callback(stop_worker)
        base_url = await stack.enter_async_context(
            serve(create_app(settings, app_engine, app_redis))
        )
        client = await stack.enter_async_context(
            httpx.AsyncClient(
                base_url=base_url,
                timeout=60,
                trust_env=False,
                limits=httpx.Limits(
                    max_connections=CLIENT_CONNECTIONS, max_keepalive_connections=CLIENT_CONNECTIONS
                ),
                headers={"Authorization": f"Bearer {token}"},
            )
        )
        listener = await stack.enter_async_context(listening(base_url, token, app_redis))

        warmup = Phase(rate=5, seconds=1, expected=WARMUP_CHARGES)
        listener.phase = warmup
        await drive(client, warmup, accounts[:WARMUP_CHARGES])
        _check(len(warmup.received) == WARMUP_CHARGES, "warm-up events missing")
        lines = []
        offset = WARMUP_CHARGES
        for rate, count in zip(rates, wanted, strict=True):
            phase = Phase(rate=rate, seconds=args.seconds, expected=count)
            listener.phase = phase
            await drive(client, phase, accounts[offset : offset + count])
            offset += count
            lines.append(report_phase(phase, count))
        listener.phase = None
        async with app_engine.connect() as conn:
            problems = await verify(conn)
        _check(problems == [], f"ledger: {problems[:3]}")
        raw = await asyncpg.connect(dsn)
        try:
            notified = await raw.fetchval("SELECT count(*) FROM notifications")
            version = await raw.fetchval("SHOW server_version")
        finally:
            await raw.close()
        _check(notified == offset, f"{notified} notifications for {offset} crossings")
        header = [
            f"alert latency: recordCharge committed -> subscription event on a WebSocket "
            f"(PostgreSQL {version}, {_describe(database_url)})",
            f"  app, worker (arq poll {worker.poll_delay_s:.2f} s; outbox relay woken by "
            f"NOTIFY) and client in one process; one charge = one crossing",
        ]
        return (
            header
            + lines
            + [
                f"  verified: {notified} notifications for {offset} "
                "charges (incl. warm-up), ledger sound"
            ]
        )


async def forget_jobs(redis: ArqRedis, dsn: str, queue_name: str) -> None:
    """Leave the Redis as found: the queue and arq's kept results and keys (job ids are
    ``<queue>:outbox:<row id>``, this run's queue is its own)."""
    raw = await asyncpg.connect(dsn)
    try:
        last = await raw.fetchval("SELECT coalesce(max(id), 0) FROM outbox")
    finally:
        await raw.close()
    keys = [
        f"arq:{kind}:{outbox.job_id(row, queue_name)}"
        for row in range(1, last + 1)
        for kind in ("result", "job", "retry", "in-progress")
    ]
    for start in range(0, len(keys), 1_000):
        await redis.delete(*keys[start : start + 1_000])
    await redis.delete(queue_name)


def report_phase(phase: Phase, count: int) -> str:
    latencies = phase.latencies_ms()
    missing = count - len(phase.received)
    span_s = max(phase.received.values(), default=0.0) - min(phase.sent.values(), default=0.0)
    if not latencies:
        return f"  {phase.rate:g}/s: no events received ({missing} missing)"
    return (
        f"  {phase.rate:>5g}/s for {phase.seconds:g} s: {count} charges, all committed "
        f"{phase.schedule_s:.1f} s after the first was sent, every event "
        f"{span_s:.1f} s after\n"
        f"         event p50 {statistics.median(latencies):8.1f} ms  p99 "
        f"{percentile(latencies, 0.99):8.1f} ms  max {max(latencies):8.1f} ms; "
        f"recordCharge p50 {statistics.median(phase.round_trips_ms()):6.1f} ms; "
        f"missing {missing}, duplicates {phase.duplicates}"
    )


# ---------------------------------------------------------------- sweep


async def sweep_bench(args: argparse.Namespace, server_url: str) -> list[str]:
    async with contextlib.AsyncExitStack() as stack:
        database_url = await stack.enter_async_context(fresh_database(server_url))
        dsn = _asyncpg_dsn(database_url)
        started = time.perf_counter()
        await seed(dsn, args.alerts, crossing_every=SWEEP_CROSSING_EVERY)
        seeded_s = time.perf_counter() - started
        engine = make_engine(database_url, pool_size=2)
        stack.push_async_callback(engine.dispose)
        raw = await asyncpg.connect(dsn)
        stack.push_async_callback(raw.close)
        floor_sql = str(service.SWEEP_CANDIDATES)
        expected = await raw.fetch(floor_sql)
        crossing = args.alerts // SWEEP_CROSSING_EVERY
        _check(len(expected) == crossing, f"floor finds {len(expected)}, not {crossing}")

        async def floor_once() -> float:
            began = time.perf_counter()
            await raw.fetch(floor_sql)
            return time.perf_counter() - began

        async def reset() -> None:
            await raw.execute("DELETE FROM outbox")
            await raw.execute("DELETE FROM notifications")
            await raw.execute(
                "UPDATE quota_alerts SET armed = true, crossings = 0, "
                "last_fired_at = NULL WHERE account_id = ANY($1::bigint[])",
                [row["account_id"] for row in expected],
            )
            await raw.execute("VACUUM ANALYZE quota_alerts")

        for _ in range(2):
            await floor_once()
        floors = [await floor_once() for _ in range(max(5, args.sweep_iterations))]
        sweeps, no_ops = [], []
        for _ in range(args.sweep_iterations):
            await reset()
            began = time.perf_counter()
            evaluated = await service.sweep(engine)
            sweeps.append(time.perf_counter() - began)
            _check(evaluated == crossing, f"sweep evaluated {evaluated}")
            fired = await raw.fetchval("SELECT count(*) FROM notifications")
            _check(fired == crossing, f"sweep fired {fired}, not {crossing}")
            began = time.perf_counter()
            _check(await service.sweep(engine) == 0, "a second sweep found work")
            no_ops.append(time.perf_counter() - began)
        floor_ms = statistics.median(floors) * 1000
        sweep_ms = statistics.median(sweeps) * 1000
        no_op_ms = statistics.median(no_ops) * 1000
        return [
            f"sweep: {args.alerts:,} enabled alerts, {crossing:,} armed below their threshold "
            f"(seeded in {seeded_s:.1f} s); medians of {args.sweep_iterations} sweeps, "
            f"{len(floors)} floor runs",
            f"  floor  SWEEP_CANDIDATES alone (raw asyncpg), finds {len(expected):,}   "
            f"{floor_ms:8.1f} ms",
            f"  sweep  find + evaluate each (lock, quota, notification, publish row) "
            f"{sweep_ms:8.1f} ms   ratio {sweep_ms / floor_ms:5.1f}x  "
            f"({(sweep_ms - floor_ms) / crossing:.2f} ms per crossing beyond the floor)",
            f"  sweep when every state agrees (finds 0)                  "
            f"{no_op_ms:8.1f} ms   ratio {no_op_ms / floor_ms:5.1f}x",
        ]


# ---------------------------------------------------------------- main


async def run(args: argparse.Namespace) -> int:
    rates = [float(rate) for rate in args.rates.split(",")]
    with tempfile.TemporaryDirectory(prefix="agbench-") as tmp_name:
        tmp = Path(tmp_name)
        async with contextlib.AsyncExitStack() as stack:
            server_url, pg_source = await stack.enter_async_context(postgres_server(tmp))
            redis_url, redis_source = await stack.enter_async_context(redis_server(tmp))
            print(f"PostgreSQL: {pg_source}; Redis: {redis_source}", flush=True)
            for line in await latency(args, server_url, redis_url, rates):
                print(line, flush=True)
            for line in await sweep_bench(args, server_url):
                print(line, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.alert_latency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="per rate")
    parser.add_argument("--rates", default="1,200", help="charges per second, comma-separated")
    parser.add_argument("--alerts", type=int, default=100_000)
    parser.add_argument("--sweep-iterations", type=int, default=3)
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= 60 or not 100 <= args.alerts <= 1_000_000:
        parser.error("--seconds must be in (0, 60] and --alerts in [100, 1000000]")
    if args.sweep_iterations < 1:
        parser.error("--sweep-iterations must be >= 1")
    rates = args.rates.split(",")
    if not all(r.replace(".", "", 1).isdigit() and 0 < float(r) <= 1000 for r in rates):
        parser.error("--rates: numbers in (0, 1000]")
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
