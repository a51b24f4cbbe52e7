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

The baseline runs beside it in the same run, level by level: the same clients drawing the
same mix from the same seeds, each request done as its SQL on raw asyncpg (the tree as one
statement building the JSON, an allocation as ``bench.allocations``' locked transfer), so
each level prints accountgraph's throughput and p99 as a ratio to the baseline's.

``--soak S`` adds a soak after the levels: S seconds of the mix at the largest level's
concurrency, with a worker process (``accountgraph worker``) draining the outbox beside the
gateway; every 10 s the resident memory (VmRSS) of each gateway and worker process is
sampled, and the first and last samples and the growth are printed per process. The
ledger checks below cover the soak too.

After the last level the server is stopped and the ledger is checked: ``verify()`` finds
nothing (F9), the transfer rows equal the allocations that answered success (none lost,
none doubled; a request whose answer was lost may have committed, so those are listed
apart and must account for any surplus exactly), and the master's cash is the opening
cash less 0.01 per transfer.

    .venv/bin/python -m bench.load [--seconds 5] [--clients 1,16,64] [--workers 4]
                                   [--money 0.3] [--soak 600]

PostgreSQL: ``DATABASE_URL`` (a throwaway database is created on that server and dropped
at the end), else an embedded server in a temporary directory. Redis: ``REDIS_URL``, else
an embedded one. Loopback and unix sockets only. The run is bounded: every level lasts
``--seconds``, requests time out after 30 s and the whole run after 15 minutes plus the
soak.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.dialects import postgresql

from accountgraph.accounts.public import under_trusteeship
from accountgraph.api import ids
from accountgraph.db import make_engine
from accountgraph.funds.balances import quota_sql
from accountgraph.funds.models import BUCKETS, balances
from accountgraph.funds.verify import verify
from bench.allocations import (
    AMOUNT,
    CREDIT,
    DEBIT,
    ENTRY,
    LOCK,
    MASTER_CASH,
    MEMBERS,
    OPENING_CASH,
    POSTINGS,
    TOTAL,
    TRANSFER,
    seed,
)
from bench.processes import gateway, worker
from bench.tree_query import (
    _asyncpg_dsn,
    _describe,
    _gid,
    fresh_database,
    postgres_server,
    redis_server,
)

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

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

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


def _quota(alias: str) -> str:
    """F2 over the balances row ``alias`` as SQL text: the app's own formula
    (``funds.balances.quota_sql``) compiled, so the baseline computes what the app does."""
    b = balances.alias(alias)
    quota = quota_sql(lambda bucket: b.c[BUCKETS[bucket]], under_trusteeship(b.c.account_id))
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    return str(quota.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


# The baseline's tree: the TREE document's answer as one statement (the viewer's account
# is $1; members by id, their sites and bill-tos by id, as the app orders them).
TREE_SQL = f"""
SELECT json_build_object('data', json_build_object('viewer', json_build_object('account',
  json_build_object(
    'id', {_gid("Account", "a.id")}, 'name', a.name,
    'finance', (SELECT json_build_object('cashBalance', ab.cash_balance::text,
                                         'availableQuota', ({_quota("ab")})::text)
                FROM balances ab WHERE ab.account_id = a.id),
    'members', (
      SELECT json_build_object(
        'totalCount', (SELECT count(*) FROM links x
                       WHERE x.master_id = a.id AND x.status = 'ACTIVE'),
        'edges', coalesce(json_agg(json_build_object('node', json_build_object(
          'id', {_gid("Account", "m.id")}, 'name', m.name, 'role', 'MEMBER',
          'link', json_build_object('status', m.status, 'permissions', m.permissions),
          'sites', coalesce((
            SELECT json_agg(json_build_object('id', {_gid("Site", "s.id")}, 'name', s.name,
                            'billTo', json_build_object('id', {_gid("BillTo", "s.bill_to_id")}))
                   ORDER BY s.id)
            FROM sites s WHERE s.account_id = m.id), '[]'::json),
          'billTos', coalesce((
            SELECT json_agg(json_build_object('id', {_gid("BillTo", "t.id")},
                                              'isPrimary', t.is_primary) ORDER BY t.id)
            FROM bill_tos t WHERE t.account_id = m.id), '[]'::json),
          'finance', (SELECT json_build_object('cashBalance', mb.cash_balance::text,
                                               'transferredCash', mb.transferred_cash::text,
                                               'availableQuota', ({_quota("mb")})::text)
                      FROM balances mb WHERE mb.account_id = m.id)
        )) ORDER BY m.id), '[]'::json))
      FROM (SELECT acc.id, acc.name, l.status, l.permissions
            FROM links l JOIN accounts acc ON acc.id = l.member_id
            WHERE l.master_id = a.id AND l.status = 'ACTIVE' ORDER BY acc.id LIMIT 50) m)
  ))))::text
FROM accounts a WHERE a.id = $1
"""


class Client:
    """One load client's connection: the tree, or one allocation of ``AMOUNT`` to the
    member at an index. Each returns ``None`` when it succeeded, else the kind of error;
    ``allocate`` also says whether the allocation may have run although its answer was
    lost."""

    async def tree(self) -> str | None:
        raise NotImplementedError

    async def allocate(self, member: int, key: str) -> tuple[str | None, bool]:
        raise NotImplementedError


def _tree_error(answer: dict[str, Any]) -> str | None:
    if answer.get("errors"):
        return "graphql error"
    if answer["data"]["viewer"]["account"]["members"]["totalCount"] != MEMBERS:
        return "wrong tree"
    return None


class HttpClient(Client):
    """accountgraph over one keep-alive HTTP connection."""

    def __init__(self, http: httpx.AsyncClient, master: str, members: list[str]) -> None:
        self.http, self.master, self.members = http, master, members

    async def _post(self, body: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
        try:
            response = await self.http.post("/graphql", json=body)
        except httpx.HTTPError as error:
            return None, type(error).__name__
        if response.status_code != 200:
            return None, f"HTTP {response.status_code}"
        answer: dict[str, Any] = json.loads(response.content)
        return answer, None

    async def tree(self) -> str | None:
        answer, error = await self._post({"query": TREE})
        return error if answer is None else _tree_error(answer)

    async def allocate(self, member: int, key: str) -> tuple[str | None, bool]:
        variables = {
            "masterId": self.master,
            "memberId": self.members[member],
            "amount": str(AMOUNT),
            "method": "CASH",
            "idempotencyKey": key,
        }
        answer, error = await self._post({"query": ALLOCATE, "variables": {"input": variables}})
        if answer is None:
            return error, True
        if answer.get("errors"):
            return "graphql error", False
        payload = answer["data"]["allocateFunds"]
        if payload["userErrors"] or payload["transfer"] is None:
            return "user error", False
        return None, False


class SqlClient(Client):
    """The baseline: the same requests as their SQL on one raw asyncpg connection."""

    def __init__(self, conn: asyncpg.Connection, master: int, members: list[int]) -> None:
        self.conn, self.master, self.members = conn, master, members

    async def tree(self) -> str | None:
        return _tree_error(json.loads(await self.conn.fetchval(TREE_SQL, self.master)))

    async def allocate(self, member: int, key: str) -> tuple[str | None, bool]:
        master, member_id = self.master, self.members[member]
        async with self.conn.transaction():
            await self.conn.execute(LOCK, sorted((master, member_id)))
            if await self.conn.fetchval(MASTER_CASH, master) < AMOUNT:
                return "user error", False
            await self.conn.execute(DEBIT, master, AMOUNT)
            await self.conn.execute(CREDIT, member_id, AMOUNT)
            entry_id = await self.conn.fetchval(ENTRY, "bench:sql")
            await self.conn.execute(POSTINGS, entry_id, master, member_id, AMOUNT)
            await self.conn.execute(TOTAL, master, member_id, AMOUNT)
            await self.conn.fetchval(TRANSFER, master, member_id, AMOUNT, "bench:sql", entry_id)
        return None, False


async def run_level(
    connect: Callable[[], contextlib.AbstractAsyncContextManager[Client]],
    level: Level,
    seconds: float,
    money: float,
    ledger: Ledger | None,
) -> None:
    """``level.clients`` clients, client ``n`` drawing its mix from ``Random(n)`` (so the
    app and the baseline get the same requests), for ``seconds``. ``ledger``: the app's
    allocations by idempotency key (the baseline's are counted by their actor)."""
    deadline = time.perf_counter() + seconds

    async def client(number: int) -> None:
        rng = random.Random(number)
        async with connect() as target:
            while time.perf_counter() < deadline:
                allocate = rng.random() < money
                member = rng.randrange(MEMBERS)
                key = uuid.uuid4().hex
                started = time.perf_counter()
                if allocate:
                    error, may_have_run = await target.allocate(member, key)
                else:
                    error, may_have_run = await target.tree(), False
                if error is None or not may_have_run:
                    level.latencies.append(time.perf_counter() - started)
                if error is not None:
                    level.error(error)
                    if may_have_run and ledger is not None:
                        ledger.unknown.add(key)
                elif allocate:
                    level.allocations += 1
                    if ledger is not None:
                        ledger.succeeded.add(key)

    started = time.perf_counter()
    await asyncio.gather(*(client(number) for number in range(level.clients)))
    level.seconds = time.perf_counter() - started


def rss_kib(pid: int) -> int | None:
    """Resident memory of a process (VmRSS), or ``None`` once it has gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def tree_of(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc): the gateway's supervisor and its uvicorn
    workers."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        queue.extend(children.get(current, []))
    return found


@dataclass
class Soak:
    seconds: float
    level: Level
    samples: dict[str, list[int]] = field(default_factory=dict)  # process -> RSS KiB


async def soak(
    connect: Callable[[], contextlib.AbstractAsyncContextManager[Client]],
    the_soak: Soak,
    money: float,
    ledger: Ledger,
    processes: dict[str, int],
) -> None:
    """The mix for ``the_soak.seconds`` while the processes' RSS is sampled every 10 s
    (and once at the end)."""
    done = asyncio.Event()

    async def sample() -> None:
        # The first sample 10 s in: the worker is still importing at the start.
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 10)
            for name, pid in processes.items():
                kib = rss_kib(pid)
                if kib is not None:
                    the_soak.samples.setdefault(name, []).append(kib)
            if done.is_set():
                return

    sampler = asyncio.create_task(sample())
    try:
        await run_level(connect, the_soak.level, the_soak.seconds, money, ledger)
    finally:
        done.set()
        await sampler


def _row(label: str, level: Level) -> str:
    count = len(level.latencies) + sum(
        v for k, v in level.errors.items() if k.endswith("Error") or k.endswith("Timeout")
    )
    errors = sum(level.errors.values())
    detail = (
        " (" + ", ".join(f"{k}: {v}" for k, v in sorted(level.errors.items())) + ")"
        if errors
        else ""
    )
    return (
        f"  {label:>12} {level.clients:7d} | {level.rate:10,.0f} | "
        f"{level.allocations / level.seconds:13,.0f} | {level.percentile_ms(0.5):7.1f} | "
        f"{level.percentile_ms(0.99):7.1f} | {count:8,d} | {errors:6d}{detail}"
    )


async def run(args: argparse.Namespace) -> int:
    levels = [Level(int(part)) for part in args.clients.split(",")]
    floors = [Level(level.clients) for level in levels]
    the_soak = Soak(args.soak, Level(max(level.clients for level in levels))) if args.soak else None
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
            pool = await asyncpg.create_pool(dsn, min_size=1, max_size=max(2, *args.levels))
            stack.push_async_callback(pool.close)

            @contextlib.asynccontextmanager
            async def sql_client() -> AsyncIterator[Client]:
                async with pool.acquire() as conn:
                    yield SqlClient(conn, seeded.master_id, seeded.member_ids)

            started: list[subprocess.Popen[bytes]] = []
            async with gateway(
                database_url,
                redis_url,
                tmp / "uvicorn.log",
                workers=args.workers,
                env=env,
                started=started,
            ) as base:

                @contextlib.asynccontextmanager
                async def http_client() -> AsyncIterator[Client]:
                    async with httpx.AsyncClient(
                        base_url=base,
                        timeout=REQUEST_TIMEOUT_S,
                        trust_env=False,
                        headers={"Authorization": f"Bearer {seeded.token}"},
                    ) as http:
                        yield HttpClient(http, master, members)

                for level, floor in zip(levels, floors, strict=True):
                    await run_level(sql_client, floor, args.seconds, args.money, None)
                    await run_level(http_client, level, args.seconds, args.money, ledger)
                if the_soak is not None:
                    async with worker(database_url, redis_url, tmp / "worker.log", env=env) as w:
                        pids = tree_of(started[0].pid)
                        processes = {f"gateway pid {pid}": pid for pid in pids}
                        processes[f"worker pid {w.pid}"] = w.pid
                        await soak(http_client, the_soak, args.money, ledger, processes)

            # The server is stopped: everything it committed is in the database.
            conn = await asyncpg.connect(dsn)
            try:
                keys = {
                    row["idempotency_key"]
                    for row in await conn.fetch(
                        "SELECT idempotency_key FROM transfers WHERE actor <> 'bench:sql'"
                    )
                }
                rows = await conn.fetchval("SELECT count(*) FROM transfers")
                app_rows = await conn.fetchval(
                    "SELECT count(*) FROM transfers WHERE actor <> 'bench:sql'"
                )
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
    header = "  clients | requests/s | allocations/s |  p50 ms |  p99 ms | requests | errors"
    lines = [
        f"load: tree query (master + {MEMBERS} members with link, sites, bill-tos, finance) "
        f"and allocateFunds ({AMOUNT} CASH, {args.money:.0%} of requests) mixed",
        f"  accountgraph serve --workers {args.workers} (DB pool {pool_size}+"
        f"{pool_size} per process) on 127.0.0.1; PostgreSQL {server_version} ({pg_source}: "
        f"{_describe(database_url)}); Redis ({redis_source}); {args.seconds:g} s per level",
        "  baseline: the same clients and mix (same seeds), each request as its SQL on raw "
        "asyncpg (the tree as one statement, an allocation as a locked transfer)",
        f"  {'':>12}" + header,
    ]
    for level, floor in zip(levels, floors, strict=True):
        lines.append(_row("baseline", floor))
        lines.append(_row("accountgraph", level))
    lines.append("  ratio (baseline / accountgraph throughput; p99 accountgraph / baseline):")
    for level, floor in zip(levels, floors, strict=True):
        lines.append(
            f"    {level.clients:3d} clients: throughput "
            f"{floor.rate / level.rate:.1f}x"
            f", p99 {level.percentile_ms(0.99) / floor.percentile_ms(0.99):.1f}x"
        )
    soak_errors = 0
    if the_soak is not None:
        soak_errors = sum(the_soak.level.errors.values())
        lines.append(
            f"  soak: {the_soak.seconds:g} s at {the_soak.level.clients} clients with a worker"
        )
        lines.append(f"  {'':>12}" + header)
        lines.append(_row("soak", the_soak.level))
        for name, samples in sorted(the_soak.samples.items()):
            lines.append(
                f"    RSS {name}: {samples[0] / 1024:,.1f} MiB at start, "
                f"{samples[-1] / 1024:,.1f} MiB at end (max {max(samples) / 1024:,.1f}, "
                f"{len(samples)} samples; growth {(samples[-1] - samples[0]) / 1024:+,.1f} MiB)"
            )
    expected_cash = OPENING_CASH - AMOUNT * rows
    failed_requests = sum(sum(level.errors.values()) for level in [*levels, *floors])
    failed_requests += soak_errors
    ok = (
        not differences
        and not lost
        and surplus <= ledger.unknown
        and cash == expected_cash
        and not failed_requests  # any error fails the run: non-200 (5xx), GraphQL, transport
    )
    lines.append(
        f"  ledger: verify() {len(differences)} differences; {app_rows:,} accountgraph "
        f"transfer rows = {len(ledger.succeeded):,} successful allocations + {len(surplus)} "
        f"whose answer was lost; lost {len(lost)}, doubled {app_rows - len(keys)}; master "
        f"cash {Decimal(cash):,} = opening - {AMOUNT} x {rows:,} (baseline's included): "
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
    parser.add_argument(
        "--soak",
        type=float,
        default=0.0,
        help="seconds of soak after the levels (e.g. 600), with RSS sampled; 0: none",
    )
    args = parser.parse_args(argv)
    try:
        args.levels = [int(part) for part in args.clients.split(",")]
    except ValueError:
        parser.error("--clients takes integers such as 1,16,64")
    if args.seconds <= 0 or args.workers < 1 or not 0 <= args.money <= 1 or args.soak < 0:
        parser.error("--seconds > 0, --workers >= 1, 0 <= --money <= 1, --soak >= 0")

    async def bounded() -> int:
        return await asyncio.wait_for(run(args), RUN_TIMEOUT_S + args.soak)

    return asyncio.run(bounded())


if __name__ == "__main__":
    raise SystemExit(main())
