"""F3 allocations per second through the GraphQL API, against the same locked transfer in
raw SQL, with 1, 8 and 32 concurrent clients on one master.

A master with 16 ACTIVE trusteeship members (every grant) and plenty of cash is written
with bulk SQL into a fresh, migrated database. Every allocation moves 0.01 CASH from the
master to one of its members, so every one of them locks the master's row: that row is
the contention point. The app side is the real app (``create_app``) on a real uvicorn on
a loopback port in this process; each client is a loop of ``allocateFunds`` POSTs over
httpx (keep-alive). The baseline, in the same run and with the same number of clients,
is the same locked transfer in raw asyncpg, one connection per client:

    BEGIN; SELECT the two account rows FOR NO KEY UPDATE in id order (the app's lock);
    read the master's cash; UPDATE both balances; INSERT the journal entry, its 4
    postings, the per-method allocation total and the transfer row; COMMIT

What only the app does on top: HTTP and GraphQL, the token lookup, the link and
permission checks (read twice: before and under the locks), the outbox rows for both
accounts' quota (A5) and reading the transfer back for the payload.

    .venv/bin/python -m bench.allocations [--seconds 4] [--warmup 0.5] [--clients 1,8,32]

PostgreSQL: ``DATABASE_URL`` (a throwaway database ``accountgraph_bench_<random>`` is
created on that server and dropped at the end), else an embedded server in a temporary
directory. Redis: ``REDIS_URL``, else an embedded one. Only loopback addresses and unix
sockets are accepted. Client, app and baseline share this process and its event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import secrets
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from accountgraph.accounts.tokens import TOKEN_PREFIX, hash_token
from accountgraph.api import ids
from accountgraph.db import make_engine, to_async_url
from accountgraph.funds.verify import verify
from bench.processes import gateway, load, print_profile
from bench.tree_query import fresh_database, postgres_server, redis_server

MEMBERS = 16
OPENING_CASH = Decimal("10000000.00")
AMOUNT = Decimal("0.01")
PERMISSIONS = ["SYNC_CREDIT_CONTROL", "VIEW_FINANCE", "MANAGE_INVOICES"]

ALLOCATE = """
mutation Allocate($input: TransferFundsInput!) {
  allocateFunds(input: $input) { transfer { id amount } userErrors { code message } }
}
"""

# The baseline's statements (asyncpg prepares and caches each one per connection).
LOCK = "SELECT id FROM accounts WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE"
MASTER_CASH = "SELECT cash_balance FROM balances WHERE account_id = $1"
DEBIT = "UPDATE balances SET cash_balance = cash_balance - $2 WHERE account_id = $1"
CREDIT = (
    "UPDATE balances SET cash_balance = cash_balance + $2, "
    "transferred_cash = transferred_cash + $2 WHERE account_id = $1"
)
ENTRY = "INSERT INTO journal_entries (kind, actor) VALUES ('ALLOCATE', $1) RETURNING id"
POSTINGS = """
INSERT INTO postings (entry_id, account_id, bucket, amount) VALUES
  ($1, $2, 'CASH', -$4::numeric), ($1, $3, 'CASH', $4::numeric),
  ($1, NULL, 'TRANSFERRED_CASH', -$4::numeric), ($1, $3, 'TRANSFERRED_CASH', $4::numeric)
"""
TOTAL = """
INSERT INTO allocations (master_id, member_id, method, allocated) VALUES ($1, $2, 'CASH', $3)
ON CONFLICT (master_id, member_id, method)
DO UPDATE SET allocated = allocations.allocated + excluded.allocated
"""
TRANSFER = """
INSERT INTO transfers (master_id, member_id, method, direction, amount, actor, entry_id)
VALUES ($1, $2, 'CASH', 'ALLOCATE', $3, $4, $5) RETURNING id
"""


def _asyncpg_dsn(url: str) -> str:
    return (
        make_url(to_async_url(url))
        .set(drivername="postgresql")
        .render_as_string(hide_password=False)
    )


def _describe(url: str) -> str:
    parsed = make_url(to_async_url(url))
    where = f"{parsed.host}:{parsed.port or 5432}" if parsed.host else "unix socket"
    return f"{where}, database {parsed.database}"


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


# ---------------------------------------------------------------- the data


@dataclass
class Seeded:
    master_id: int
    member_ids: list[int]
    token: str


async def seed(dsn: str) -> Seeded:
    """The master, its members and ACTIVE links, a token, and the master's cash as one
    balanced PAYMENT entry (F8, F9), all in bulk SQL."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            master_id: int = await conn.fetchval(
                "INSERT INTO accounts (name, display_name, branch, terms, salesperson) "
                "VALUES ('Bench Master', 'Bench Master Holdings', 'HQ', 'NET30', 'Alice') "
                "RETURNING id"
            )
            member_ids: list[int] = [
                row["id"]
                for row in await conn.fetch(
                    """
                WITH m AS (
                  INSERT INTO accounts (name, display_name, branch, terms, salesperson)
                  SELECT format('Member-%s', g), format('Member %s Ltd', g), 'HQ', 'NET30',
                         'Alice'
                  FROM generate_series(1, $2::int) AS g ORDER BY g RETURNING id
                ), l AS (
                  INSERT INTO links (master_id, member_id, type, status, permissions,
                                     invited_at, activated_at)
                  SELECT $1, m.id, 'TRUSTEESHIP', 'ACTIVE', $3::text[],
                         now() - interval '1 day', now() - interval '1 hour'
                  FROM m ORDER BY m.id RETURNING id, member_id, status, permissions
                ), e AS (
                  INSERT INTO link_events (link_id, status, permissions, actor)
                  SELECT id, status, permissions, 'operator:bench' FROM l
                )
                SELECT member_id AS id FROM l ORDER BY member_id
                """,
                    master_id,
                    MEMBERS,
                    PERMISSIONS,
                )
            ]
            await conn.execute(
                "INSERT INTO balances (account_id) SELECT unnest($1::bigint[])",
                [master_id, *member_ids],
            )
            entry_id = await conn.fetchval(
                "INSERT INTO journal_entries (kind, actor) VALUES ('PAYMENT', 'operator:bench') "
                "RETURNING id"
            )
            await conn.execute(
                "INSERT INTO postings (entry_id, account_id, bucket, amount) VALUES "
                "($1, NULL, 'CASH', -$3::numeric), ($1, $2, 'CASH', $3::numeric)",
                entry_id,
                master_id,
                OPENING_CASH,
            )
            await conn.execute(
                "UPDATE balances SET cash_balance = $2 WHERE account_id = $1",
                master_id,
                OPENING_CASH,
            )
            await conn.execute(
                "INSERT INTO payments (account_id, payer_id, amount, actor, entry_id) "
                "VALUES ($1, $1, $2, 'operator:bench', $3)",
                master_id,
                OPENING_CASH,
                entry_id,
            )
            token = TOKEN_PREFIX + secrets.token_urlsafe(32)
            await conn.execute(
                "INSERT INTO api_tokens (account_id, name, token_hash, created_by) "
                "VALUES ($1, 'bench', $2, 'operator:bench')",
                master_id,
                hash_token(token),
            )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    _check(len(member_ids) == MEMBERS, f"seeded {len(member_ids)} members")
    return Seeded(master_id, member_ids, token)


# ---------------------------------------------------------------- one measured run


@dataclass
class Run:
    label: str
    clients: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile_ms(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)] * 1000


async def drive(
    clients: int, seconds: float, once: Callable[[int, int], Awaitable[None]], run: Run | None
) -> None:
    """``clients`` loops calling ``once(client, n)`` until ``seconds`` have passed; with a
    ``run``, each call's latency and the wall time are recorded."""
    deadline = time.perf_counter() + seconds

    async def client(number: int) -> None:
        n = 0
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await once(number, n)
            if run is not None:
                run.latencies.append(time.perf_counter() - started)
            n += 1

    started = time.perf_counter()
    await asyncio.gather(*(client(number) for number in range(clients)))
    if run is not None:
        run.seconds = time.perf_counter() - started


def member_for(seeded: Seeded, client: int, n: int) -> int:
    """Clients spread over the members; every allocation still locks the master's row."""
    return seeded.member_ids[(client * 7 + n) % len(seeded.member_ids)]


async def run(args: argparse.Namespace) -> int:
    levels = [int(part) for part in args.clients.split(",")]
    with tempfile.TemporaryDirectory(prefix="agbench-") as tmp_name:
        tmp = Path(tmp_name)
        async with contextlib.AsyncExitStack() as stack:
            server_url, pg_source = await stack.enter_async_context(postgres_server(tmp))
            database_url = await stack.enter_async_context(fresh_database(server_url))
            redis_url, redis_source = await stack.enter_async_context(redis_server(tmp))
            dsn = _asyncpg_dsn(database_url)
            seeded = await seed(dsn)
            top = max(levels)

            pool = await asyncpg.create_pool(dsn, min_size=top, max_size=top)
            stack.push_async_callback(pool.close)
            server_version = await pool.fetchval("SHOW server_version")
            master_gid = ids.encode("Account", seeded.master_id)
            counted = {"app": 0, "sql": 0}
            # The gateway as production starts it, in its own processes; as many
            # connections in all as the baseline gets at the highest level.
            env = {
                "ACCOUNTGRAPH_QUEUE": f"accountgraph:bench:{uuid.uuid4().hex[:8]}",
                "ACCOUNTGRAPH_DB_POOL_SIZE": str(max(1, top // args.workers)),
                "ACCOUNTGRAPH_OPERATOR_TOKEN": "",
            }
            profile = tmp / "gateway.pyspy" if args.profile else None
            base_url = await stack.enter_async_context(
                gateway(
                    database_url,
                    redis_url,
                    tmp / "gateway.log",
                    workers=args.workers,
                    env=env,
                    profile=profile,
                )
            )
            bodies = [
                {
                    "query": ALLOCATE,
                    "variables": {
                        "input": {
                            "masterId": master_gid,
                            "memberId": ids.encode("Account", member),
                            "amount": str(AMOUNT),
                            "method": "CASH",
                        }
                    },
                }
                for member in seeded.member_ids
            ]

            async def app_level(clients: int) -> Run:
                """Allocations from bench.client in its own process; every answer must be
                a transfer with no user error."""
                result = await load(
                    {
                        "url": f"{base_url}/graphql",
                        "headers": {"Authorization": f"Bearer {seeded.token}"},
                        "bodies": bodies,
                        "each": True,
                        "concurrency": clients,
                        "seconds": args.seconds,
                        "warmup": max(1, int(args.warmup * 20)),
                        "expect": r'"userErrors"\s*:\s*\[\]',
                    }
                )
                _check(not result["errors"], f"allocations failed: {result['errors']}")
                run = Run("app", clients, result["elapsed"], result["latencies"])
                return run

            async def sql_once(client_number: int, n: int) -> None:
                member = member_for(seeded, client_number, n)
                master = seeded.master_id
                async with pool.acquire() as conn, conn.transaction():
                    await conn.execute(LOCK, sorted((master, member)))
                    cash = await conn.fetchval(MASTER_CASH, master)
                    _check(cash >= AMOUNT, "the master ran out of cash")
                    await conn.execute(DEBIT, master, AMOUNT)
                    await conn.execute(CREDIT, member, AMOUNT)
                    entry_id = await conn.fetchval(ENTRY, "bench:sql")
                    await conn.execute(POSTINGS, entry_id, master, member, AMOUNT)
                    await conn.execute(TOTAL, master, member, AMOUNT)
                    await conn.fetchval(TRANSFER, master, member, AMOUNT, "bench:sql", entry_id)
                counted["sql"] += 1

            results: list[tuple[Run, Run]] = []
            for clients in levels:
                sql_run = Run("sql", clients)
                # Warm both (connections, prepared statements, caches), then measure.
                await drive(clients, args.warmup, sql_once, None)
                await drive(clients, args.seconds, sql_once, sql_run)
                app_run = await app_level(clients)
                results.append((sql_run, app_run))

            # Everything both sides did is in the ledger, and the ledger is sound (F9).
            engine = make_engine(database_url, pool_size=1)
            stack.push_async_callback(engine.dispose)
            async with engine.connect() as conn:
                differences = await verify(conn)
            counted["app"] = await pool.fetchval(
                "SELECT count(*) FROM transfers WHERE actor <> 'bench:sql'"
            )
            total = counted["app"] + counted["sql"]
            rows = await pool.fetchval("SELECT count(*) FROM transfers")
            cash = await pool.fetchval(
                "SELECT cash_balance FROM balances WHERE account_id = $1", seeded.master_id
            )
            _check(differences == [], f"ledger differences: {differences[:5]}")
            _check(rows == total, f"{rows} transfer rows for {total} allocations")
            _check(cash == OPENING_CASH - AMOUNT * total, f"master cash {cash}")

            lines = [
                f"allocations: 1 master, {MEMBERS} ACTIVE trusteeship members; each "
                f"allocation moves {AMOUNT} CASH master -> member (every one locks the "
                f"master's row)",
                f"  PostgreSQL {server_version} ({pg_source}: {_describe(database_url)}); "
                f"Redis ({redis_source}); {args.seconds:g} s per run after "
                f"{args.warmup:g} s warm-up; gateway `accountgraph serve --workers "
                f"{args.workers}`, load client (bench.client) and SQL baseline in separate "
                "processes",
                "  clients | SQL allocations/s  p50 ms  p99 ms | app allocations/s  p50 ms"
                "  p99 ms | SQL/app rate",
            ]
            for sql_run, app_run in results:
                lines.append(
                    f"  {sql_run.clients:7d} | {sql_run.rate:17,.0f} "
                    f"{sql_run.percentile_ms(0.5):7.2f} {sql_run.percentile_ms(0.99):7.2f} | "
                    f"{app_run.rate:17,.0f} {app_run.percentile_ms(0.5):7.2f} "
                    f"{app_run.percentile_ms(0.99):7.2f} | {sql_run.rate / app_run.rate:10.1f}x"
                )
            lines.append(
                f"  verified: {total:,} allocations ({counted['app']:,} app + "
                f"{counted['sql']:,} SQL) = {rows:,} transfer rows; master cash = opening - "
                f"{AMOUNT} x {total:,}; verify(): 0 differences"
            )
            print("\n".join(lines), flush=True)
        if profile is not None:
            print_profile(profile)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.allocations",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="measured time per run")
    parser.add_argument("--warmup", type=float, default=0.5, help="unmeasured time per run")
    parser.add_argument(
        "--clients", default="1,8,32", help="comma-separated concurrency levels (default 1,8,32)"
    )
    parser.add_argument("--workers", type=int, default=2, help="gateway processes")
    parser.add_argument(
        "--profile", action="store_true", help="run the gateway under py-spy; print its top"
    )
    args = parser.parse_args(argv)
    try:
        levels = [int(part) for part in args.clients.split(",")]
    except ValueError:
        parser.error("--clients takes integers such as 1,8,32")
    if args.seconds <= 0 or args.warmup < 0 or not levels or min(levels) < 1:
        parser.error("--seconds must be > 0, --warmup >= 0 and every client count >= 1")
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
