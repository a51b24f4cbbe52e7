"""A2/A4: from a committed charge to the live subscription event, and the sweep against
the one SQL query that finds the same accounts.

Latency (issue 17: every process as production runs it). Accounts with 100.00 cash and
an armed alert at 50.00 are written with bulk SQL into a fresh, migrated database. The
gateway is ``accountgraph serve --workers 2 --no-worker --no-migrate`` in a child process
(``bench.processes.gateway``, ``--workers N`` to change), a separate ``accountgraph
worker`` process (``bench.processes.worker``) runs the outbox relay and the jobs, and the
load client (``bench.charge_client``) runs in a third process: it subscribes over
WebSocket (graphql-transport-ws) to ``notifications`` with an operator token, waits until
a gateway listens on Redis pub/sub, then POSTs ``recordCharge`` (60.00, one account per
charge, so every charge is a crossing) on a fixed schedule at 1 and at 200 charges per
second for ``--seconds`` each (open loop, at most 64 in flight; after 5 warm-up charges).
Printed per rate: charges offered and accepted per second, recordCharge p50/p99 (on the
wire, and from the charge's scheduled time, which includes waiting for a free connection
in the client), event latency (the POST's response, i.e. the charge committed, to the
event on the WebSocket: the outbox relay, the evaluation job, the publish job, Redis
pub/sub and the gateway) p50/p99/max, and missing and duplicate notifications counted on
the socket and in the database (each account whose charge committed must have exactly
one), and what the gateway and the worker logged at WARNING (e.g. a subscriber too slow
for the gateway losing its oldest events). At the end (gateway and worker stopped)
``verify()`` recomputes the ledger (F9). Any failed charge, missing or duplicate
notification or ledger difference makes the exit status 1.

``--profile`` runs the gateway under py-spy for its whole life (warm-up and every rate;
``--rates 200 --no-sweep`` profiles the 200/s phase alone) and prints the top of its
profile (own time, then the accountgraph frames by total time).

Sweep. A second fresh database gets 100,000 accounts with balances and enabled alerts
(bulk SQL); 1% are armed while their quota is below the threshold (crossings whose
events were lost), the rest agree with their quota. ``alerts.service.sweep`` (find the
candidates, then evaluate each in its own transaction: lock, quota, notification,
publish row) is timed against its floor, the one query ``SWEEP_CANDIDATES`` alone, and
the state is put back between runs. The sweep runs in this process (no HTTP involved).

    .venv/bin/python -m bench.alert_latency [--seconds 5] [--rates 1,200] [--workers 2]
        [--profile] [--alerts 100000] [--sweep-iterations 3] [--no-sweep]

PostgreSQL: ``DATABASE_URL`` (throwaway databases ``accountgraph_bench_<random>`` are
created on that server and dropped at the end), else an embedded server in a temporary
directory. Redis: ``REDIS_URL``, else an embedded one. Only loopback addresses and unix
sockets are accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import secrets
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from arq import create_pool
from arq.connections import ArqRedis

from accountgraph import outbox
from accountgraph.alerts import service
from accountgraph.api import ids
from accountgraph.db import make_engine
from accountgraph.funds.verify import verify
from accountgraph.runtime import redis_settings
from bench.processes import gateway, load, print_profile, worker
from bench.tree_query import (
    _asyncpg_dsn,
    _describe,
    fresh_database,
    postgres_server,
    redis_server,
)

CASH = "100.00"
THRESHOLD = "50.00"
CHARGE_AMOUNT = "60.00"
WARMUP_CHARGES = 5
EVENT_TIMEOUT_S = 60.0
CLIENT_CONNECTIONS = 64
SWEEP_CROSSING_EVERY = 100  # 1% of the alerts are missed crossings


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
class PhaseResult:
    """One phase as the charge client saw it (times on its clock), and the database."""

    rate: float
    accounts: list[str]
    scheduled: list[float]
    sent: list[float | None]
    answered: list[float | None]
    received: list[float | None]
    errors: dict[str, int]
    duplicates: int
    stored: dict[str, int]  # account -> notifications in the database
    charged: set[str]  # accounts with a committed charge (a failed POST may have none)

    @classmethod
    def of(cls, raw: dict[str, Any], stored: dict[str, int], charged: set[str]) -> PhaseResult:
        return cls(
            raw["rate"],
            raw["accounts"],
            raw["scheduled"],
            raw["sent"],
            raw["answered"],
            raw["received"],
            raw["errors"],
            raw["duplicates"],
            {account: stored.get(account, 0) for account in raw["accounts"]},
            {account for account in raw["accounts"] if account in charged},
        )

    @property
    def count(self) -> int:
        return len(self.accounts)

    def accepted(self) -> list[int]:
        return [i for i, answered in enumerate(self.answered) if answered is not None]

    def accepted_per_s(self) -> float:
        """Charges answered with success per second: over the schedule's span (one slot
        per charge), or until the last answer if that came later."""
        done = self.accepted()
        if not done:
            return 0.0
        last = max(self.answered[i] or 0.0 for i in done)
        span = self.scheduled[-1] - self.scheduled[0] + 1 / self.rate
        return len(done) / max(span, last - self.scheduled[0])

    def offered_per_s(self) -> float:
        """As the schedule sent them: count over the scheduled span (one slot per charge)."""
        return self.count / (self.scheduled[-1] - self.scheduled[0] + 1 / self.rate)

    def wire_ms(self) -> list[float]:
        return [((self.answered[i] or 0.0) - (self.sent[i] or 0.0)) * 1000 for i in self.accepted()]

    def from_schedule_ms(self) -> list[float]:
        return [((self.answered[i] or 0.0) - self.scheduled[i]) * 1000 for i in self.accepted()]

    def event_ms(self) -> list[float]:
        return [
            ((self.received[i] or 0.0) - (self.answered[i] or 0.0)) * 1000
            for i in self.accepted()
            if self.received[i] is not None
        ]

    def missing_socket(self) -> int:
        return sum(1 for received in self.received if received is None)

    def missing_db(self) -> int:
        """Accounts with a committed charge but no notification (or one with none)."""
        return sum(
            1 for account, count in self.stored.items() if (count == 0) == (account in self.charged)
        )

    def duplicates_db(self) -> int:
        return sum(count - 1 for count in self.stored.values() if count > 1)

    def sound(self) -> bool:
        return (
            not self.errors
            and len(self.accepted()) == self.count
            and self.missing_socket() == 0
            and self.duplicates == 0
            and self.missing_db() == 0
            and self.duplicates_db() == 0
        )


def _p(values: list[float], fraction: float) -> str:
    return f"{percentile(values, fraction):8.1f}" if values else "     n/a"


def report_phase(phase: PhaseResult, seconds: float) -> list[str]:
    done = phase.accepted()
    events = phase.event_ms()
    last_answer = max((phase.answered[i] or 0.0 for i in done), default=phase.scheduled[0])
    last_event = max((r for r in phase.received if r is not None), default=phase.scheduled[0])
    errors = (
        " (" + ", ".join(f"{k}: {v}" for k, v in sorted(phase.errors.items())) + ")"
        if phase.errors
        else ""
    )
    return [
        f"  {phase.rate:>5g}/s for {seconds:g} s: {phase.count} charges offered at "
        f"{phase.offered_per_s():.1f}/s, {len(done)} accepted at {phase.accepted_per_s():.1f}/s"
        f"{errors}; last answer {last_answer - phase.scheduled[0]:.1f} s and last event "
        f"{last_event - phase.scheduled[0]:.1f} s after the first charge was due",
        f"         recordCharge p50 {_p(phase.wire_ms(), 0.5)} ms  p99 {_p(phase.wire_ms(), 0.99)}"
        f" ms on the wire; from its scheduled time p50 {_p(phase.from_schedule_ms(), 0.5)} ms"
        f"  p99 {_p(phase.from_schedule_ms(), 0.99)} ms",
        f"         event (POST answered -> event on the socket) p50 {_p(events, 0.5)} ms  p99 "
        f"{_p(events, 0.99)} ms  max {_p(events, 1.0)} ms",
        f"         missing {phase.missing_socket()} on the socket / {phase.missing_db()} in the "
        f"database, duplicates {phase.duplicates} on the socket / {phase.duplicates_db()} in "
        "the database",
    ]


async def latency(
    args: argparse.Namespace, server_url: str, redis_url: str, rates: list[float], tmp: Path
) -> tuple[list[str], bool]:
    """The latency part: gateway, worker and charge client in processes of their own."""
    async with contextlib.AsyncExitStack() as stack:
        database_url = await stack.enter_async_context(fresh_database(server_url))
        dsn = _asyncpg_dsn(database_url)
        wanted = [max(1, round(rate * args.seconds)) for rate in rates]
        numbers = await seed(dsn, WARMUP_CHARGES + sum(wanted))
        accounts = [ids.encode("Account", n) for n in numbers]
        by_gid = dict(zip(accounts, numbers, strict=True))
        token = "bench-" + secrets.token_urlsafe(24)
        queue = f"accountgraph:bench:{uuid.uuid4().hex[:8]}"
        env = {"ACCOUNTGRAPH_OPERATOR_TOKEN": token, "ACCOUNTGRAPH_QUEUE": queue}
        redis = await create_pool(redis_settings(redis_url), default_queue_name=queue)
        stack.push_async_callback(redis.aclose)
        # Runs once the processes have stopped, before the database is dropped.
        stack.push_async_callback(forget_jobs, redis, dsn, queue)
        profile = tmp / "gateway.pyspy" if args.profile else None
        phases = [{"rate": 5.0, "accounts": accounts[:WARMUP_CHARGES]}]
        offset = WARMUP_CHARGES
        for rate, count in zip(rates, wanted, strict=True):
            phases.append({"rate": rate, "accounts": accounts[offset : offset + count]})
            offset += count
        async with contextlib.AsyncExitStack() as servers:
            base = await servers.enter_async_context(
                gateway(
                    database_url,
                    redis_url,
                    tmp / "gateway.log",
                    workers=args.workers,
                    env=env,
                    profile=profile,
                )
            )
            await servers.enter_async_context(
                worker(database_url, redis_url, tmp / "worker.log", env=env)
            )
            result = await load(
                {
                    "urls": [base],
                    "token": token,
                    "amount": CHARGE_AMOUNT,
                    "connections": CLIENT_CONNECTIONS,
                    "subscribe": True,
                    "redis_url": redis_url,
                    "channel": service.PUBSUB_CHANNEL,
                    "event_timeout": EVENT_TIMEOUT_S,
                    "phases": phases,
                },
                module="bench.charge_client",
            )
        # Gateway and worker have stopped: what they committed is in the database.
        raw = await asyncpg.connect(dsn)
        try:
            counts = {
                row["account_id"]: row["n"]
                for row in await raw.fetch(
                    "SELECT account_id, count(*) AS n FROM notifications GROUP BY account_id"
                )
            }
            notified = sum(counts.values())
            charged_ids = {
                row["account_id"] for row in await raw.fetch("SELECT account_id FROM charges")
            }
            charges = len(charged_ids)
            version = await raw.fetchval("SHOW server_version")
        finally:
            await raw.close()
        stored = {gid: counts.get(number, 0) for gid, number in by_gid.items()}
        charged = {gid for gid, number in by_gid.items() if number in charged_ids}
        engine = make_engine(database_url, pool_size=1)
        try:
            async with engine.connect() as conn:
                problems = await verify(conn)
        finally:
            await engine.dispose()
    warm, *measured = [PhaseResult.of(raw_phase, stored, charged) for raw_phase in result["phases"]]
    lines = [
        f"alert latency: recordCharge answered -> subscription event on a WebSocket "
        f"(PostgreSQL {version}, {_describe(database_url)}; Redis {redis_url.split('@')[-1]})",
        f"  gateway `accountgraph serve --workers {args.workers}`, `accountgraph worker` (arq "
        "and the outbox relay woken by NOTIFY) and the charge client (bench.charge_client: "
        f"open loop, at most {CLIENT_CONNECTIONS} charges in flight, one graphql-transport-ws "
        "subscription as an operator) each in processes of their own; one charge = one "
        f"account = one crossing{'; gateway under py-spy' if profile else ''}",
    ]
    for phase in measured:
        lines += report_phase(phase, args.seconds)
    sound = warm.sound() and all(phase.sound() for phase in measured)
    sound = sound and not problems and result["strays"] == 0 and notified == charges
    lines.append(
        f"  verified: {notified} notifications in the database for {charges} committed "
        f"charges ({offset} sent, incl. {WARMUP_CHARGES} warm-up), {result['strays']} stray "
        "events on the socket; "
        f"verify(): {len(problems)} differences" + ("" if not problems else f" {problems[:3]}")
    )
    top = max(measured, key=lambda phase: phase.rate)
    events = top.event_ms()
    met = (
        top.sound()
        and top.accepted_per_s() >= 0.95 * top.rate
        and bool(events)
        and percentile(events, 0.99) <= 100
    )
    lines.append(
        f"  goal at {top.rate:g}/s (sustained, event p99 <= 100 ms): "
        + ("met" if met else "NOT met")
        + ("" if sound else "; FAILED: errors, missing or duplicate notifications, or ledger")
    )
    for name in ("gateway", "worker"):
        lines += log_warnings(tmp / f"{name}.log", name)
    return lines, sound


def log_warnings(path: Path, name: str, show: int = 3) -> list[str]:
    """What a process logged at WARNING and above (``--log-level WARNING``): how many lines,
    and the first few distinct messages (e.g. the gateway dropping a slow subscriber's
    oldest events)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    found = [line for line in text.splitlines() if "WARNING" in line or "ERROR" in line]
    if not found:
        return [f"  {name} log: no warnings"]
    distinct: list[str] = []
    for line in found:
        short = line.strip()[:240]
        if short not in distinct:
            distinct.append(short)
    return [f"  {name} log: {len(found)} warning/error lines; first distinct:"] + [
        f"    {line}" for line in distinct[:show]
    ]


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
            lines, sound = await latency(args, server_url, redis_url, rates, tmp)
            for line in lines:
                print(line, flush=True)
            if args.profile:
                print_profile(tmp / "gateway.pyspy", top=args.profile_top)
            if not args.no_sweep:
                for line in await sweep_bench(args, server_url):
                    print(line, flush=True)
    return 0 if sound else 1


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
    parser.add_argument("--no-sweep", action="store_true", help="the latency part only")
    parser.add_argument(
        "--workers", type=int, default=2, help="gateway processes (serve --workers)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run the gateway under py-spy (its whole life: warm-up and every rate); print its top",
    )
    parser.add_argument("--profile-top", type=int, default=15, help="lines of the profile's top")
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= 60 or not 100 <= args.alerts <= 1_000_000:
        parser.error("--seconds must be in (0, 60] and --alerts in [100, 1000000]")
    if args.sweep_iterations < 1 or args.workers < 1:
        parser.error("--sweep-iterations and --workers must be >= 1")
    rates = args.rates.split(",")
    if not all(r.replace(".", "", 1).isdigit() and 0 < float(r) <= 1000 for r in rates):
        parser.error("--rates: numbers in (0, 1000]")
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
