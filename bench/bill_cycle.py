"""B2 bill cycles through the GraphQL API, against one SQL query computing the same totals.

A responsible account with 2,000 ACTIVE trusteeship members, each with 2 sites and 50
charges per period (100,000 charges a period, spread over the sites and "no site"), is
written with bulk SQL into a fresh, migrated database; a third of the members have a
discount of their own (B3), the master none. Each timed period is one ``runBillCycle``
POST to the real app (``create_app``) on a real uvicorn on a loopback port in this
process: it selects the period's charges, groups them into lines by member and site,
discounts them, writes the invoice(s), the lines and one ``invoiced_charges`` row per
charge, and checks the totals after the write (B4). The floor, in the same run and on the
same data, is one SQL query that computes the same totals (subtotal, discount total,
total and number of lines) without writing anything:

    .venv/bin/python -m bench.bill_cycle [--periods 3] [--floor-runs 5] [--tax 8.875]

The periods run in AGGREGATED mode (one invoice of 6,000 lines); one more runs in
PER_MEMBER mode (2,000 invoices of 3 lines); a second run of a period (B2: issues
nothing) is timed too. Every cycle's totals are checked against the floor's.

PostgreSQL: ``DATABASE_URL`` (a throwaway database ``accountgraph_bench_<random>`` is
created on that server and dropped at the end), else an embedded server in a temporary
directory. Redis: ``REDIS_URL``, else an embedded one. Only loopback addresses and unix
sockets are accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from arq import create_pool

from accountgraph.accounts.tokens import TOKEN_PREFIX, hash_token
from accountgraph.api import ids
from accountgraph.app import create_app
from accountgraph.config import Settings
from accountgraph.db import make_engine
from accountgraph.runtime import redis_settings
from bench.tree_query import (
    SqlMeter,
    _asyncpg_dsn,
    _describe,
    fresh_database,
    postgres_server,
    redis_server,
    serve,
)

MEMBERS = 2_000
CHARGES_PER_MEMBER = 50
SITES_PER_MEMBER = 2
MAX_PERIODS = 10
MAX_FLOOR_RUNS = 50

RUN = """
mutation Run($input: RunBillCycleInput!) {
  runBillCycle(input: $input) {
    invoices { id subtotal discountTotal taxTotal total }
    userErrors { code field message }
  }
}
"""
MODE = """
mutation Mode($input: SetInvoiceModeInput!) {
  setInvoiceMode(input: $input) { account { invoiceMode } userErrors { code message } }
}
"""

# The charges a cycle invoices (B1: the members' during their association, the account's
# own outside any association of its own; not yet invoiced), grouped by member and site,
# discounted by B3 and rounded half-up per line (PostgreSQL's round() on numeric): the
# common part of both floors.
PRICED_LINES = """
WITH chosen AS MATERIALIZED (
  SELECT NULL::bigint AS member_id, c.id, c.site_id, c.amount
  FROM charges c
  WHERE c.account_id = $1 AND c.occurred_at >= $2 AND c.occurred_at < $3
    AND NOT EXISTS (SELECT 1 FROM invoiced_charges i WHERE i.charge_id = c.id)
    AND NOT EXISTS (SELECT 1 FROM links x WHERE x.member_id = c.account_id
                    AND x.type = 'TRUSTEESHIP' AND x.activated_at IS NOT NULL
                    AND c.occurred_at >= x.activated_at
                    AND (x.ended_at IS NULL OR c.occurred_at < x.ended_at))
  UNION ALL
  SELECT c.account_id, c.id, c.site_id, c.amount
  FROM links l JOIN charges c ON c.account_id = l.member_id
   AND c.occurred_at >= l.activated_at AND (l.ended_at IS NULL OR c.occurred_at < l.ended_at)
  WHERE l.master_id = $1 AND l.type = 'TRUSTEESHIP' AND l.activated_at IS NOT NULL
    AND c.occurred_at >= $2 AND c.occurred_at < $3
    AND NOT EXISTS (SELECT 1 FROM invoiced_charges i WHERE i.charge_id = c.id)
), grouped AS (
  SELECT member_id, site_id, sum(amount) AS amount,
         coalesce((SELECT percent FROM discounts WHERE account_id = $1),
                  (SELECT percent FROM discounts WHERE account_id = chosen.member_id),
                  0) AS percent
  FROM chosen GROUP BY member_id, site_id
), priced AS (
  SELECT *, round(amount * percent / 100, 2) AS discount,
         amount - round(amount * percent / 100, 2) AS net
  FROM grouped
)"""

# The floor: the same totals in one query, writing nothing. T2: every line is rolled up to
# the responsible account, so its default rate ($4) applies.
FLOOR_SQL = (
    PRICED_LINES
    + """
SELECT coalesce(sum(amount), 0) AS subtotal,
       coalesce(sum(discount), 0) AS discount_total,
       coalesce(sum(round(net * $4::numeric / 100, 2)), 0) AS tax_total,
       coalesce(sum(net + round(net * $4::numeric / 100, 2)), 0) AS total,
       count(*) AS lines
FROM priced
"""
)

# The floor with the writes the rules need (B2, B4): the same lines written as one
# invoice, its lines and one invoiced_charges row per charge, in one statement, then
# rolled back. What the cycle does beyond this is its own cost.
WRITE_FLOOR_SQL = (
    PRICED_LINES
    + """, invoice AS (
  INSERT INTO invoices (account_id, period_start, period_end, subtotal, discount_total,
                        tax_total, total)
  VALUES ($1, $5, $6, 0, 0, 0, 0) RETURNING id
), line AS (
  INSERT INTO invoice_lines (invoice_id, member_id, site_id, description, amount,
                             discount_percent, discount, net, tax_rate, tax)
  SELECT invoice.id, member_id, site_id, 'usage', amount, percent, discount, net,
         $4::numeric, round(net * $4::numeric / 100, 2)
  FROM priced, invoice
  RETURNING id, member_id, site_id
)
INSERT INTO invoiced_charges (charge_id, line_id)
SELECT chosen.id, line.id FROM chosen JOIN line
  ON coalesce(chosen.member_id, 0) = coalesce(line.member_id, 0)
 AND coalesce(chosen.site_id, 0) = coalesce(line.site_id, 0)
"""
)


async def write_floor(
    raw: asyncpg.Connection,
    master_id: int,
    since: datetime,
    until: datetime,
    tax: Decimal,
    period: tuple[date, date],
) -> tuple[float, int]:
    """WRITE_FLOOR_SQL in a transaction rolled back: its seconds (commit not included:
    the cycle's own commit is in its figure) and the rows of invoiced charges it wrote."""
    transaction = raw.transaction()
    await transaction.start()
    try:
        started = time.perf_counter()
        status = await raw.execute(WRITE_FLOOR_SQL, master_id, since, until, tax, *period)
        return time.perf_counter() - started, int(status.split()[-1])
    finally:
        await transaction.rollback()


@dataclass
class Seeded:
    master_id: int
    master_gid: str
    token: str
    seconds: float


async def seed(dsn: str, periods: list[date]) -> Seeded:
    """Master, members (ACTIVE trusteeship links since 2020), bill-tos, sites, discounts
    and every period's charges (all on one journal entry: the bench reads no ledger)."""
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            master_id: int = await conn.fetchval(
                "INSERT INTO accounts (name, display_name) VALUES ('Bench Master', "
                "'Bench Master Holdings') RETURNING id"
            )
            await conn.execute(
                "INSERT INTO bill_tos (account_id, name, invoice_title, is_primary) "
                "VALUES ($1, 'Bench Master AP', 'Bench Master Holdings', true)",
                master_id,
            )
            await conn.execute(
                """
                WITH m AS (
                  INSERT INTO accounts (name, display_name)
                  SELECT format('Member-%s', lpad(g::text, 5, '0')), format('Member %s', g)
                  FROM generate_series(1, $2::int) AS g ORDER BY g RETURNING id
                )
                INSERT INTO links (master_id, member_id, type, status, permissions,
                                   invited_at, activated_at)
                SELECT $1, m.id, 'TRUSTEESHIP', 'ACTIVE',
                       ARRAY['SYNC_CREDIT_CONTROL','VIEW_FINANCE','MANAGE_INVOICES'],
                       '2020-01-01', '2020-01-01' FROM m ORDER BY m.id
                """,
                master_id,
                MEMBERS,
            )
            await conn.execute(
                """
                INSERT INTO bill_tos (account_id, name, is_primary)
                SELECT member_id, 'AP', true FROM links WHERE master_id = $1 ORDER BY member_id
                """,
                master_id,
            )
            await conn.execute(
                """
                INSERT INTO sites (account_id, name, bill_to_id)
                SELECT b.account_id, format('Site %s', k), b.id
                FROM bill_tos b CROSS JOIN generate_series(1, $2::int) AS k
                WHERE b.account_id <> $1 ORDER BY b.account_id, k
                """,
                master_id,
                SITES_PER_MEMBER,
            )
            # B3: every third member has its own discount, 0.5 % to 20 % in quarter steps.
            await conn.execute(
                """
                INSERT INTO discounts (account_id, percent)
                SELECT member_id, 0.5 + (member_id % 79) * 0.25 FROM links
                WHERE master_id = $1 AND member_id % 3 = 0
                """,
                master_id,
            )
            entry_id: int = await conn.fetchval(
                "INSERT INTO journal_entries (kind, actor) VALUES ('CHARGE', 'bench') RETURNING id"
            )
            for start in periods:
                await _charges(conn, master_id, entry_id, start)
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
    return Seeded(master_id, ids.encode("Account", master_id), token, time.perf_counter() - started)


async def _charges(conn: asyncpg.Connection, master_id: int, entry_id: int, start: date) -> None:
    """50 charges per member in the 28 days from ``start``: amounts 0.01-99.99, at one of
    the member's sites or none (every third)."""
    await conn.execute(
        """
        INSERT INTO charges (account_id, site_id, amount, description, occurred_at, entry_id)
        SELECT l.member_id,
               CASE WHEN k % 3 = 0 THEN NULL
                    ELSE (SELECT s.id FROM sites s WHERE s.account_id = l.member_id
                          ORDER BY s.id OFFSET (k % 2) LIMIT 1) END,
               ((l.member_id * 7919 + k * 104729) % 9999 + 1) / 100.0,
               'usage',
               $3::timestamptz + ((l.member_id * 31 + k * 17) % 2419200) * interval '1 s', $4
        FROM links l CROSS JOIN generate_series(1, $2::int) AS k
        WHERE l.master_id = $1
        """,
        master_id,
        CHARGES_PER_MEMBER,
        datetime.combine(start, datetime.min.time(), UTC),
        entry_id,
    )


def _bounds(start: date) -> tuple[date, date, datetime, datetime]:
    end = start + timedelta(days=27)
    return (
        start,
        end,
        datetime.combine(start, datetime.min.time(), UTC),
        datetime.combine(end + timedelta(days=1), datetime.min.time(), UTC),
    )


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


@dataclass
class Cycle:
    mode: str
    seconds: float
    floor_ms: float
    write_floor_ms: float
    invoices: int
    statements: int
    in_sql_ms: float
    again_ms: float


async def run(args: argparse.Namespace) -> int:
    periods = [date(2025, month, 1) for month in range(1, args.periods + 2)]
    with tempfile.TemporaryDirectory(prefix="agbench-") as tmp_name:
        tmp = Path(tmp_name)
        async with contextlib.AsyncExitStack() as stack:
            server_url, pg_source = await stack.enter_async_context(postgres_server(tmp))
            database_url = await stack.enter_async_context(fresh_database(server_url))
            redis_url, redis_source = await stack.enter_async_context(redis_server(tmp))
            dsn = _asyncpg_dsn(database_url)
            seeded = await seed(dsn, periods)
            if args.tax:  # T2: the responsible account's default tax group
                conn = await asyncpg.connect(dsn)
                group = await conn.fetchval(
                    "INSERT INTO tax_groups (code, name, rate) VALUES ('BENCH', 'Bench', $1) "
                    "RETURNING id",
                    args.tax,
                )
                await conn.execute(
                    "INSERT INTO account_tax_groups (account_id, tax_group_id) VALUES ($1, $2)",
                    seeded.master_id,
                    group,
                )
                await conn.close()
            settings = Settings(
                DATABASE_URL=database_url,
                REDIS_URL=redis_url,
                ACCOUNTGRAPH_OPERATOR_TOKEN=None,
                ACCOUNTGRAPH_GRAPHIQL=False,
                ACCOUNTGRAPH_QUEUE=f"accountgraph:bench:{uuid.uuid4().hex[:8]}",
            )
            engine = make_engine(database_url, pool_size=settings.db_pool_size)
            stack.push_async_callback(engine.dispose)
            meter = SqlMeter()
            meter.attach(engine)
            redis = await create_pool(
                redis_settings(redis_url), default_queue_name=settings.queue_name
            )
            stack.push_async_callback(redis.aclose)
            base_url = await stack.enter_async_context(serve(create_app(settings, engine, redis)))
            client = await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=base_url,
                    timeout=600,
                    trust_env=False,
                    headers={"Authorization": f"Bearer {seeded.token}"},
                )
            )
            raw = await asyncpg.connect(dsn)
            stack.push_async_callback(raw.close)
            server_version = await raw.fetchval("SHOW server_version")

            async def post(query: str, variables: dict[str, Any]) -> dict[str, Any]:
                response = await client.post(
                    "/graphql", json={"query": query, "variables": variables}
                )
                _check(response.status_code == 200, f"HTTP {response.status_code}")
                body: dict[str, Any] = response.json()
                _check(not body.get("errors"), f"GraphQL errors: {body.get('errors')}")
                data: dict[str, Any] = body["data"]
                return data

            cycles: list[Cycle] = []
            for number, start in enumerate(periods):
                mode = "PER_MEMBER" if number == len(periods) - 1 else "AGGREGATED"
                payload = await post(
                    MODE, {"input": {"accountId": seeded.master_gid, "mode": mode}}
                )
                _check(payload["setInvoiceMode"]["userErrors"] == [], "setInvoiceMode")
                cycles.append(await _one(args, raw, post, meter, seeded, mode, start))

            lines = [
                f"bill cycle: responsible account with {MEMBERS:,} managed accounts x "
                f"{CHARGES_PER_MEMBER} charges a period ({MEMBERS * CHARGES_PER_MEMBER:,}"
                f" charges, {SITES_PER_MEMBER} sites each + no site; a third with their own "
                f"discount); seeded {len(periods)} periods in {seeded.seconds:.1f} s",
                f"  PostgreSQL {server_version} ({pg_source}: {_describe(database_url)}); "
                f"Redis ({redis_source}); floor = 1 SQL query of the same totals, write floor = "
                "1 SQL statement writing the same invoice, lines and invoiced charges (rolled "
                "back), medians of "
                f"{args.floor_runs} runs before each cycle; tax (T2) at {args.tax}% on every "
                "line (the responsible account's default)"
                if args.tax
                else f"{args.floor_runs} runs before each cycle; no tax group",
            ]
            for cycle in cycles:
                lines.append(
                    f"  {cycle.mode:<10} cycle {cycle.seconds * 1000:8.1f} ms "
                    f"({cycle.invoices:,} invoice(s); {cycle.statements} SQL statements taking "
                    f"{cycle.in_sql_ms:.0f} ms)   "
                    f"floor {cycle.floor_ms:7.1f} ms   "
                    f"ratio {cycle.seconds * 1000 / cycle.floor_ms:5.1f}x   "
                    f"write floor {cycle.write_floor_ms:7.1f} ms   "
                    f"ratio {cycle.seconds * 1000 / cycle.write_floor_ms:4.1f}x"
                    f"   second run (B2: nothing) {cycle.again_ms:6.1f} ms"
                )
            aggregated = [c for c in cycles if c.mode == "AGGREGATED"]
            median_cycle = statistics.median(c.seconds * 1000 for c in aggregated)
            median_floor = statistics.median(c.floor_ms for c in aggregated)
            median_write = statistics.median(c.write_floor_ms for c in aggregated)
            lines.append(
                f"  AGGREGATED medians: cycle {median_cycle:.1f} ms, floor "
                f"{median_floor:.1f} ms, ratio cycle/floor "
                f"{median_cycle / median_floor:.1f}x; write floor {median_write:.1f} ms, "
                f"ratio cycle/write floor {median_cycle / median_write:.1f}x"
            )
            lines.append(
                "  verified: every cycle's subtotal, discount total, tax total, total and line "
                "count == the floor's; every charge of the period invoiced once"
            )
            print("\n".join(lines), flush=True)
    return 0


async def _one(
    args: argparse.Namespace,
    raw: asyncpg.Connection,
    post: Any,
    meter: SqlMeter,
    seeded: Seeded,
    mode: str,
    start: date,
) -> Cycle:
    period_start, period_end, since, until = _bounds(start)
    floors: list[float] = []
    floor: Any = None
    for _ in range(args.floor_runs):
        started = time.perf_counter()
        floor = await raw.fetchrow(FLOOR_SQL, seeded.master_id, since, until, args.tax)
        floors.append(time.perf_counter() - started)
    writes: list[float] = []
    for _ in range(args.floor_runs):
        took, rows = await write_floor(
            raw, seeded.master_id, since, until, args.tax, (period_start, period_end)
        )
        _check(rows == MEMBERS * CHARGES_PER_MEMBER, f"write floor wrote {rows} charges")
        writes.append(took)
    variables = {
        "input": {
            "accountId": seeded.master_gid,
            "periodStart": period_start.isoformat(),
            "periodEnd": period_end.isoformat(),
        }
    }
    meter.reset()
    started = time.perf_counter()
    payload = (await post(RUN, variables))["runBillCycle"]
    seconds = time.perf_counter() - started
    statements, in_sql_ms = meter.statements, meter.seconds * 1000
    for took, statement in sorted(meter.slow, reverse=True):
        print(f"    {took:7.1f} ms  {statement}")
    _check(payload["userErrors"] == [], f"runBillCycle: {payload['userErrors']}")
    invoices = payload["invoices"]
    expected = MEMBERS if mode == "PER_MEMBER" else 1
    _check(len(invoices) == expected, f"{len(invoices)} invoices, expected {expected}")
    for name, key in (
        ("subtotal", "subtotal"),
        ("discount_total", "discountTotal"),
        ("tax_total", "taxTotal"),
        ("total", "total"),
    ):
        got = sum((Decimal(i[key]) for i in invoices), Decimal(0))
        _check(got == floor[name], f"{name}: cycle {got} != floor {floor[name]}")
    line_count, charge_count = await raw.fetchrow(
        "SELECT count(DISTINCT l.id), count(*) FROM invoice_lines l "
        "JOIN invoiced_charges i ON i.line_id = l.id JOIN invoices v ON v.id = l.invoice_id "
        "WHERE v.period_start = $1",
        period_start,
    )
    _check(line_count == floor["lines"], f"lines: {line_count} != {floor['lines']}")
    _check(charge_count == MEMBERS * CHARGES_PER_MEMBER, f"charges invoiced: {charge_count}")
    started = time.perf_counter()
    again = (await post(RUN, variables))["runBillCycle"]
    again_ms = (time.perf_counter() - started) * 1000
    _check(again == {"invoices": [], "userErrors": []}, f"second run: {again}")
    return Cycle(
        mode,
        seconds,
        statistics.median(floors) * 1000,
        statistics.median(writes) * 1000,
        len(invoices),
        statements,
        in_sql_ms,
        again_ms,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bill_cycle",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--periods",
        type=int,
        default=3,
        help=f"AGGREGATED periods to time (1-{MAX_PERIODS}), then 1 PER_MEMBER",
    )
    parser.add_argument(
        "--tax",
        type=Decimal,
        default=Decimal("8.875"),
        help="T2: the responsible account's default tax rate in percent (0: no tax group)",
    )
    parser.add_argument(
        "--floor-runs",
        type=int,
        default=5,
        help=f"floor query runs per period (1-{MAX_FLOOR_RUNS})",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.periods <= MAX_PERIODS:
        parser.error(f"--periods must be 1-{MAX_PERIODS}")
    if not 1 <= args.floor_runs <= MAX_FLOOR_RUNS:
        parser.error(f"--floor-runs must be 1-{MAX_FLOOR_RUNS}")
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
