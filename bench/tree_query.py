"""The master's nested tree through the real app over HTTP, against one SQL query.

A master with 1,000 ACTIVE members, each with 2 bill-tos and 2 sites, is written with bulk
SQL into a fresh, migrated database. The real app (``create_app``) is served by a real
uvicorn on a loopback port in this process; every iteration fetches all 1,000 members
(two pages of 500) over HTTP with httpx. The baseline, in the same run, is one
hand-written SQL query (raw asyncpg) that builds the same data as JSON text.

    .venv/bin/python -m bench.tree_query [--iterations 20] [--warmup 3] [--profile]

PostgreSQL: ``DATABASE_URL`` (a throwaway database ``accountgraph_bench_<random>`` is
created on that server and dropped at the end), else an embedded server in a temporary
directory. Redis: ``REDIS_URL``, else an embedded one. Only loopback addresses and unix
sockets are accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import secrets
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import asyncpg
import httpx
import uvicorn
from arq import create_pool
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from accountgraph import embedded
from accountgraph.accounts.tokens import TOKEN_PREFIX, hash_token
from accountgraph.app import create_app
from accountgraph.config import Settings
from accountgraph.db import make_engine, to_async_url
from accountgraph.migrations import upgrade_async
from accountgraph.runtime import redis_settings
from bench import postgraphile
from bench.processes import gateway, load, median_ms, p95_ms, print_profile

MEMBERS = 1_000
PAGE = 500
SITES_PER_MEMBER = 2
BILL_TOS_PER_MEMBER = 2
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
PERMISSIONS = ["SYNC_CREDIT_CONTROL", "VIEW_FINANCE", "MANAGE_INVOICES"]

TREE_QUERY = """
query Tree($first: Int!, $after: String) {
  viewer {
    account {
      id
      name
      members(first: $first, after: $after) {
        totalCount
        pageInfo { hasNextPage endCursor }
        edges {
          node {
            id name displayName role
            link { status permissions }
            sites { id name address billTo { id name } }
            billTos { id name isPrimary invoiceTitle }
            primaryBillTo { id name }
          }
        }
      }
    }
  }
}
"""

# The app's per-request floor: HTTP, token lookup, one account row.
SMALL_QUERY = "query Small { viewer { account { id name } } }"


def _gid(type_name: str, column: str) -> str:
    """SQL for ``ids.encode``: base64url of ``"<Type>:<id>"`` without padding."""
    return (
        f"rtrim(translate(encode(convert_to('{type_name}:' || {column}, 'UTF8'), "
        f"'base64'), '+/', '-_'), '=')"
    )


# The floor: one statement building every member's subtree as JSON, in the app's order
# (members by id, sites and bill-tos by id), with the app's definitions of role and link.
BASELINE_SQL = f"""
WITH mem AS (
  SELECT DISTINCT l.member_id FROM links l WHERE l.master_id = $1 AND l.status = 'ACTIVE'
)
SELECT json_build_object(
  'totalCount', (SELECT count(*) FROM mem),
  'members', coalesce((
    SELECT json_agg(json_build_object(
      'id', {_gid("Account", "a.id")},
      'name', a.name,
      'displayName', a.display_name,
      'role', CASE  -- hashed subplans: a correlated EXISTS on master_id seq-scans links
        WHEN a.id IN (SELECT x.master_id FROM links x WHERE x.status = 'ACTIVE') THEN 'MASTER'
        WHEN a.id IN (SELECT x.member_id FROM links x WHERE x.status = 'ACTIVE') THEN 'MEMBER'
        ELSE 'STANDALONE' END,
      'link', (SELECT json_build_object('status', k.status, 'permissions', k.permissions)
               FROM links k WHERE k.member_id = a.id AND k.status <> 'DECLINED'
               ORDER BY k.id DESC LIMIT 1),
      'sites', coalesce((
        SELECT json_agg(json_build_object(
          'id', {_gid("Site", "s.id")}, 'name', s.name, 'address', s.address,
          'billTo', json_build_object('id', {_gid("BillTo", "sb.id")}, 'name', sb.name)
        ) ORDER BY s.id)
        FROM sites s JOIN bill_tos sb ON sb.id = s.bill_to_id
        WHERE s.account_id = a.id), '[]'::json),
      'billTos', coalesce((
        SELECT json_agg(json_build_object(
          'id', {_gid("BillTo", "b.id")}, 'name', b.name, 'isPrimary', b.is_primary,
          'invoiceTitle', b.invoice_title
        ) ORDER BY b.id)
        FROM bill_tos b WHERE b.account_id = a.id), '[]'::json),
      'primaryBillTo', (SELECT json_build_object('id', {_gid("BillTo", "p.id")}, 'name', p.name)
                        FROM bill_tos p WHERE p.account_id = a.id AND p.is_primary)
    ) ORDER BY a.id)
    FROM mem JOIN accounts a ON a.id = mem.member_id), '[]'::json)
)::text
"""


# ---------------------------------------------------------------- where the servers are


def _require_local_postgres(url: str) -> None:
    parsed = make_url(to_async_url(url))
    host = parsed.host or ""
    socket_dir = parsed.query.get("host")
    if isinstance(socket_dir, tuple):
        socket_dir = socket_dir[0]
    if host in LOOPBACK or (not host and (socket_dir is None or str(socket_dir).startswith("/"))):
        return
    raise SystemExit(f"DATABASE_URL must point at 127.0.0.1 or a unix socket, not {host!r}")


def _require_local_redis(url: str) -> None:
    parsed = urlparse(url)
    if parsed.scheme == "unix" or (parsed.hostname or "") in LOOPBACK:
        return
    raise SystemExit(f"REDIS_URL must point at 127.0.0.1 or a unix socket, not {url!r}")


def _asyncpg_dsn(url: str) -> str:
    """A plain ``postgresql://`` DSN for raw asyncpg (unix-socket ``?host=`` kept)."""
    return (
        make_url(to_async_url(url))
        .set(drivername="postgresql")
        .render_as_string(hide_password=False)
    )


def _describe(url: str) -> str:
    parsed = make_url(to_async_url(url))
    where = f"{parsed.host}:{parsed.port or 5432}" if parsed.host else "unix socket"
    return f"{where}, database {parsed.database}"


@contextlib.asynccontextmanager
async def postgres_server(tmp: Path) -> AsyncIterator[tuple[str, str]]:
    """(server URL, how it was found): DATABASE_URL's server, or an embedded one."""
    url = os.environ.get("DATABASE_URL")
    if url:
        _require_local_postgres(url)
        yield to_async_url(url), "DATABASE_URL"
        return
    server = await asyncio.to_thread(embedded.start_postgres, tmp / "state")
    try:
        yield server.url, "embedded"
    finally:
        await asyncio.to_thread(server.stop)


@contextlib.asynccontextmanager
async def fresh_database(server_url: str) -> AsyncIterator[str]:
    """A new database on the server, migrated with Alembic, dropped on exit."""
    name = f"accountgraph_bench_{uuid.uuid4().hex[:10]}"
    admin = _asyncpg_dsn(server_url)
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
        await upgrade_async(url)
        yield url
    finally:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@contextlib.asynccontextmanager
async def redis_server(tmp: Path) -> AsyncIterator[tuple[str, str]]:
    url = os.environ.get("REDIS_URL")
    if url:
        _require_local_redis(url)
        yield url, "REDIS_URL"
        return
    server = await asyncio.to_thread(embedded.start_redis, tmp / "redis")
    try:
        yield server.url, "embedded"
    finally:
        await asyncio.to_thread(server.stop)


# ---------------------------------------------------------------- the data


@dataclass
class Seeded:
    master_id: int
    token: str
    seconds: float


async def seed(dsn: str, members: int) -> Seeded:
    """The master, its members, links, events, bill-tos, sites and a token: bulk SQL."""
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            master_id: int = await conn.fetchval(
                "INSERT INTO accounts (name, display_name, branch, terms, salesperson) "
                "VALUES ('Bench Master', 'Bench Master Holdings', 'HQ', 'NET30', 'Alice') "
                "RETURNING id"
            )
            await conn.execute(
                "INSERT INTO bill_tos (account_id, name, address, email, invoice_title, "
                "tax_id, is_primary) VALUES ($1, 'Bench Master AP', '1 Master Road', "
                "'ap@master.example', 'Bench Master Holdings', 'TAX-M', true)",
                master_id,
            )
            # Members and their ACTIVE links (H1: activated_at set), with H2's history row.
            await conn.execute(
                """
                WITH m AS (
                  INSERT INTO accounts (name, display_name, branch, terms, salesperson)
                  SELECT format('Member-%s', lpad(g::text, 5, '0')),
                         format('Member %s Trading Ltd', g),
                         format('Branch %s', g % 17), 'NET30', format('Rep %s', g % 7)
                  FROM generate_series(1, $2::int) AS g
                  ORDER BY g
                  RETURNING id
                ), l AS (
                  INSERT INTO links (master_id, member_id, type, status, permissions,
                                     invited_at, activated_at)
                  SELECT $1, m.id, 'TRUSTEESHIP', 'ACTIVE',
                         CASE WHEN m.id % 2 = 0 THEN $3::text[]
                              ELSE ARRAY['VIEW_FINANCE']::text[] END,
                         now() - interval '1 day', now()
                  FROM m ORDER BY m.id
                  RETURNING id, status, permissions
                )
                INSERT INTO link_events (link_id, status, permissions, actor)
                SELECT id, status, permissions, 'operator:bench' FROM l
                """,
                master_id,
                members,
                PERMISSIONS,
            )
            # H3: exactly one primary bill-to per member (the first).
            await conn.execute(
                """
                INSERT INTO bill_tos (account_id, name, address, email, invoice_title,
                                      tax_id, is_primary)
                SELECT a.id, format('%s AP %s', a.name, k),
                       format('%s Billing Street, Floor %s', a.id, k),
                       format('ap%s@member%s.example', k, a.id),
                       format('%s (invoice title %s)', a.display_name, k),
                       format('TAX-%s-%s', a.id, k), k = 1
                FROM links l JOIN accounts a ON a.id = l.member_id
                CROSS JOIN generate_series(1, $2::int) AS k
                WHERE l.master_id = $1 AND l.status = 'ACTIVE'
                ORDER BY a.id, k
                """,
                master_id,
                BILL_TOS_PER_MEMBER,
            )
            # H4: every site points at a bill-to of its own account (site k -> bill-to k).
            await conn.execute(
                """
                INSERT INTO sites (account_id, name, address, branch, tax_group, bill_to_id)
                SELECT b.account_id, format('Site %s of %s', b.n, b.account_id),
                       format('%s Site Avenue %s', b.account_id, b.n),
                       format('Branch %s', b.n), 'STANDARD', b.id
                FROM (
                  SELECT bt.id, bt.account_id,
                         row_number() OVER (PARTITION BY bt.account_id ORDER BY bt.id) AS n
                  FROM bill_tos bt JOIN links l ON l.member_id = bt.account_id
                  WHERE l.master_id = $1 AND l.status = 'ACTIVE'
                ) b
                WHERE b.n <= $2
                ORDER BY b.account_id, b.id
                """,
                master_id,
                SITES_PER_MEMBER,
            )
            token = TOKEN_PREFIX + secrets.token_urlsafe(32)
            await conn.execute(
                "INSERT INTO api_tokens (account_id, name, token_hash, created_by) "
                "VALUES ($1, 'bench', $2, 'operator:bench')",
                master_id,
                hash_token(token),
            )
        await conn.execute("ANALYZE")
        counts = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM links WHERE master_id = $1 AND status = 'ACTIVE') "
            "AS members, (SELECT count(*) FROM sites) AS sites, "
            "(SELECT count(*) FROM bill_tos WHERE account_id <> $1) AS bill_tos",
            master_id,
        )
    finally:
        await conn.close()
    _check(counts["members"] == members, f"seeded {counts['members']} members")
    _check(counts["sites"] == members * SITES_PER_MEMBER, f"seeded {counts['sites']} sites")
    _check(
        counts["bill_tos"] == members * BILL_TOS_PER_MEMBER, f"seeded {counts['bill_tos']} bill-tos"
    )
    return Seeded(master_id, token, time.perf_counter() - started)


# ---------------------------------------------------------------- the app


@dataclass
class SqlMeter:
    """Statements, pool checkouts and time inside cursor execution (incl. the fetch)."""

    statements: int = 0
    checkouts: int = 0
    seconds: float = 0.0
    # statements that took over ``slow_ms``: (ms, the statement's start)
    slow_ms: float = 20.0
    slow: list[tuple[float, str]] = field(default_factory=list)
    _started: list[tuple[float, str]] = field(default_factory=list)

    def attach(self, engine: AsyncEngine) -> None:
        event.listen(engine.sync_engine, "before_cursor_execute", self._before)
        event.listen(engine.sync_engine, "after_cursor_execute", self._after)
        event.listen(engine.sync_engine, "checkout", self._checkout)

    def reset(self) -> None:
        self.statements = self.checkouts = 0
        self.seconds = 0.0
        self.slow = []

    def _before(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.statements += 1
        self._started.append((time.perf_counter(), statement))

    def _after(self, *args: Any) -> None:
        if self._started:
            started, statement = self._started.pop()
            took = time.perf_counter() - started
            self.seconds += took
            if took * 1000 > self.slow_ms:
                self.slow.append((took * 1000, " ".join(statement.split())[:110]))

    def _checkout(self, *args: Any) -> None:
        self.checkouts += 1


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """The app on a real uvicorn, on a loopback port, in this event loop."""
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets whose proto says
    # TCP, and accepted sockets inherit it. With proto 0 every keep-alive response waits
    # ~40 ms for the client's delayed ACK (Nagle), which would swamp what we measure.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on"
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def _members_of(body: dict[str, Any]) -> dict[str, Any]:
    _check(not body.get("errors"), f"GraphQL errors: {body.get('errors')}")
    account = body["data"]["viewer"]["account"]
    _check(account is not None, "the token's viewer has no account")
    members: dict[str, Any] = account["members"]
    return members


def verify(pages: list[dict[str, Any]], baseline: dict[str, Any], members: int = MEMBERS) -> int:
    """All members, each with 2 sites and 2 bill-tos, equal to the SQL's data."""
    nodes = [edge["node"] for page in pages for edge in _members_of(page)["edges"]]
    first, last = _members_of(pages[0]), _members_of(pages[-1])
    _check(first["totalCount"] == members, f"totalCount {first['totalCount']}")
    _check(first["pageInfo"]["hasNextPage"] == (len(pages) > 1), "page 1's hasNextPage")
    _check(not last["pageInfo"]["hasNextPage"], "the last page says there is a next page")
    _check(len(nodes) == members, f"app returned {len(nodes)} members")
    _check(len({node["id"] for node in nodes}) == members, "duplicate members across pages")
    for node in nodes:
        _check(len(node["sites"]) == SITES_PER_MEMBER, f"{node['name']}: sites {node['sites']}")
        _check(
            len(node["billTos"]) == BILL_TOS_PER_MEMBER,
            f"{node['name']}: bill-tos {node['billTos']}",
        )
        own = {bill_to["id"] for bill_to in node["billTos"]}
        _check(
            all(site["billTo"]["id"] in own for site in node["sites"]),
            f"{node['name']}: a site's bill-to is not the member's",
        )
        primary = [bill_to for bill_to in node["billTos"] if bill_to["isPrimary"]]
        _check(
            len(primary) == 1
            and node["primaryBillTo"] is not None
            and node["primaryBillTo"]["id"] == primary[0]["id"],
            f"{node['name']}: primary bill-to {node['primaryBillTo']}",
        )
        _check(
            node["role"] == "MEMBER" and node["link"]["status"] == "ACTIVE",
            f"{node['name']}: role {node['role']}, link {node['link']}",
        )
    _check(baseline["totalCount"] == members, f"SQL totalCount {baseline['totalCount']}")
    _check(nodes == baseline["members"], "the app's members differ from the SQL's")
    return len(nodes)


# ---------------------------------------------------------------- timing


@dataclass
class Series:
    label: str
    seconds: list[float] = field(default_factory=list)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.seconds) * 1000

    @property
    def p95_ms(self) -> float:
        ordered = sorted(self.seconds)
        return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)] * 1000


async def timed(call: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await call()
    return time.perf_counter() - started, result


async def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="agbench-") as tmp_name:
        tmp = Path(tmp_name)
        async with contextlib.AsyncExitStack() as stack:
            server_url, pg_source = await stack.enter_async_context(postgres_server(tmp))
            database_url = await stack.enter_async_context(fresh_database(server_url))
            redis_url, redis_source = await stack.enter_async_context(redis_server(tmp))
            dsn = _asyncpg_dsn(database_url)
            members = args.members[0]
            page = min(PAGE, members)
            seeded = await seed(dsn, members)

            suffix = uuid.uuid4().hex[:8]
            settings = Settings(
                DATABASE_URL=database_url,
                REDIS_URL=redis_url,
                ACCOUNTGRAPH_OPERATOR_TOKEN=None,
                ACCOUNTGRAPH_GRAPHIQL=False,
                ACCOUNTGRAPH_QUEUE=f"accountgraph:bench:{suffix}",
                ACCOUNTGRAPH_RATE_LIMIT_COST_PER_MINUTE=0,
            )
            engine = make_engine(database_url, pool_size=settings.db_pool_size)
            stack.push_async_callback(engine.dispose)
            meter = SqlMeter()
            meter.attach(engine)
            redis = await create_pool(
                redis_settings(redis_url), default_queue_name=settings.queue_name
            )

            async def close_redis() -> None:
                with contextlib.suppress(Exception):
                    await redis.delete(settings.queue_name)
                await redis.aclose()

            stack.push_async_callback(close_redis)
            base_url = await stack.enter_async_context(serve(create_app(settings, engine, redis)))
            client = await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=base_url,
                    timeout=120,
                    trust_env=False,
                    headers={"Authorization": f"Bearer {seeded.token}"},
                )
            )
            raw = await asyncpg.connect(dsn)
            stack.push_async_callback(raw.close)
            server_version = await raw.fetchval("SHOW server_version")

            async def post(query: str, variables: dict[str, Any]) -> bytes:
                response = await client.post(
                    "/graphql", json={"query": query, "variables": variables}
                )
                _check(
                    response.status_code == 200,
                    f"HTTP {response.status_code}: {response.text[:500]}",
                )
                return response.content

            # Check once, untimed: both sides return the same 1,000 members.
            page1 = json.loads(await post(TREE_QUERY, {"first": page, "after": None}))
            cursor = _members_of(page1)["pageInfo"]["endCursor"]
            page2 = json.loads(await post(TREE_QUERY, {"first": page, "after": cursor}))
            baseline = json.loads(await raw.fetchval(BASELINE_SQL, seeded.master_id))
            verified = verify([page1, page2] if members > page else [page1], baseline, members)

            async def app_once() -> tuple[bytes, bytes]:
                # The cursor is the one page 1 returned above (the data does not change);
                # responses are read, not parsed, so the client's JSON work is not counted.
                return (
                    await post(TREE_QUERY, {"first": page, "after": None}),
                    await post(TREE_QUERY, {"first": page, "after": cursor}),
                )

            async def sql_once() -> str:
                text: str = await raw.fetchval(BASELINE_SQL, seeded.master_id)
                return text

            async def small_once() -> bytes:
                return await post(SMALL_QUERY, {})

            for _ in range(args.warmup):
                await app_once()
                await sql_once()
                await small_once()

            app, sql, small = Series("app"), Series("sql"), Series("small")
            per_page: list[tuple[int, int]] = []
            checkouts: list[int] = []
            in_sql: list[float] = []
            last: tuple[bytes, bytes] = (b"", b"")
            sql_text = ""
            for _ in range(args.iterations):
                # Interleaved, so drift on the machine hits both sides alike.
                elapsed, sql_text = await timed(sql_once)
                sql.seconds.append(elapsed)
                meter.reset()
                started = time.perf_counter()
                first_page = await post(TREE_QUERY, {"first": page, "after": None})
                first_statements = meter.statements
                second_page = await post(TREE_QUERY, {"first": page, "after": cursor})
                app.seconds.append(time.perf_counter() - started)
                per_page.append((first_statements, meter.statements - first_statements))
                checkouts.append(meter.checkouts)
                in_sql.append(meter.seconds)
                last = (first_page, second_page)
                elapsed, _ = await timed(small_once)
                small.seconds.append(elapsed)

            # The last timed responses are still the same data.
            answered = last if members > page else last[:1]
            verify([json.loads(x) for x in answered], json.loads(sql_text), members)

            ratio = app.median_ms / sql.median_ms
            statements = sorted(set(per_page))
            statement_text = ", ".join(f"{a} + {b}" for a, b in statements)
            lines = [
                f"tree query: master with {MEMBERS:,} ACTIVE members x {SITES_PER_MEMBER} sites"
                f" x {BILL_TOS_PER_MEMBER} bill-tos (seeded in {seeded.seconds:.1f} s)",
                f"  PostgreSQL {server_version} ({pg_source}: {_describe(database_url)}); "
                f"Redis ({redis_source}); {args.iterations} iterations after "
                f"{args.warmup} warm-up",
                f"  SQL  1 query, all {MEMBERS:,} members as JSON text ({len(sql_text) / 1024:,.0f}"
                f" KiB)      median {sql.median_ms:8.1f} ms   p95 {sql.p95_ms:8.1f} ms",
                f"  app  2 x POST /graphql (first: {PAGE}), {MEMBERS:,} members "
                f"({(len(last[0]) + len(last[1])) / 1024:,.0f} KiB)  median {app.median_ms:8.1f}"
                f" ms   p95 {app.p95_ms:8.1f} ms",
                f"  ratio app/SQL (medians): {ratio:.1f}x",
                f"  app SQL statements per request (page 1 + page 2): {statement_text}; "
                f"pool checkouts per iteration: {statistics.median(checkouts):.0f}; "
                f"time inside statements: {statistics.median(in_sql) * 1000:.1f} ms of "
                f"{app.median_ms:.1f} ms",
                f"  app floor, {{ viewer {{ account {{ id name }} }} }}: median "
                f"{small.median_ms:.1f} ms   p95 {small.p95_ms:.1f} ms",
                f"  verified: {verified:,} members, each {SITES_PER_MEMBER} sites (bill-to its"
                f" own) and {BILL_TOS_PER_MEMBER} bill-tos (1 primary); app data == SQL data",
            ]
            print("\n".join(lines), flush=True)

            if args.profile:
                await profile(app_once, args.profile_iterations)
    return 0


@dataclass
class Measured:
    """One system's figures: latency at concurrency 1 and throughput per concurrency."""

    label: str
    latencies: list[float] = field(default_factory=list)
    throughput: dict[int, float] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    def cells(self, levels: list[int]) -> str:
        rates = "  ".join(f"{self.throughput.get(c, float('nan')):7.1f}" for c in levels)
        return (
            f"median {median_ms(self.latencies):7.1f} ms  p95 {p95_ms(self.latencies):7.1f} ms"
            f"   trees/s at {'/'.join(map(str, levels))}: {rates}"
        )


async def measure_http(
    label: str,
    url: str,
    bodies: list[dict[str, Any]],
    headers: dict[str, str],
    expect: str,
    args: argparse.Namespace,
) -> tuple[Measured, list[str]]:
    """Latency (``--iterations`` trees at concurrency 1) and trees/s per level, from
    ``bench.client`` in its own process."""
    measured = Measured(label)
    base = {"url": url, "headers": headers, "bodies": bodies, "expect": expect}
    single = await load({**base, "concurrency": 1, "units": args.iterations, "warmup": args.warmup})
    measured.latencies = single["latencies"]
    last: list[str] = single["last"]
    errors: dict[str, int] = dict(single["errors"])
    for level in args.levels:
        result = await load({**base, "concurrency": level, "seconds": args.seconds, "warmup": 1})
        measured.throughput[level] = result["per_second"]
        for kind, count in result["errors"].items():
            errors[f"c={level}: {kind}"] = count
    measured.errors = errors
    return measured, last


async def measure_sql(dsn: str, master_id: int, args: argparse.Namespace) -> tuple[Measured, str]:
    """The floor: the one statement, from asyncpg, at concurrency 1 and per level."""
    measured = Measured("SQL floor (1 statement)")
    pool = await asyncpg.create_pool(dsn, min_size=max(args.levels), max_size=max(args.levels))
    try:
        text: str = await pool.fetchval(BASELINE_SQL, master_id)
        for _ in range(args.warmup):
            await pool.fetchval(BASELINE_SQL, master_id)
        for _ in range(args.iterations):
            elapsed, text = await timed(lambda: pool.fetchval(BASELINE_SQL, master_id))
            measured.latencies.append(elapsed)
        for level in args.levels:
            done = 0

            async def client(deadline: float) -> None:
                nonlocal done
                while time.perf_counter() < deadline:
                    await pool.fetchval(BASELINE_SQL, master_id)
                    done += 1

            started = time.perf_counter()
            await asyncio.gather(*(client(started + args.seconds) for _ in range(level)))
            measured.throughput[level] = done / (time.perf_counter() - started)
    finally:
        await pool.close()
    return measured, text


def _pages(query: str, first: int, cursor: str | None, **variables: Any) -> list[dict[str, Any]]:
    bodies = [{"query": query, "variables": {**variables, "first": first, "after": None}}]
    if cursor is not None:
        bodies.append({"query": query, "variables": {**variables, "first": first, "after": cursor}})
    return bodies


async def run_processes(args: argparse.Namespace) -> int:
    """The gateway as production runs it (``accountgraph serve --workers N``, compiled and
    with the compiler off), PostGraphile, and the SQL floor, on the same data, per tree."""
    with tempfile.TemporaryDirectory(prefix="agbench-") as tmp_name:
        tmp = Path(tmp_name)
        async with contextlib.AsyncExitStack() as stack:
            server_url, pg_source = await stack.enter_async_context(postgres_server(tmp))
            redis_url, redis_source = await stack.enter_async_context(redis_server(tmp))
            cpus = os.cpu_count()
            print(
                f"tree query, processes: gateway `accountgraph serve --workers {args.workers}`"
                f" and the load client (bench.client) each in their own processes; "
                f"{cpus} CPUs; PostgreSQL ({pg_source}), Redis ({redis_source}); "
                f"{args.iterations} trees at concurrency 1, {args.seconds:.0f} s per level",
                flush=True,
            )
            for members in args.members:
                await one_tree(args, tmp, server_url, redis_url, members)
    return 0


async def one_tree(
    args: argparse.Namespace, tmp: Path, server_url: str, redis_url: str, members: int
) -> None:
    async with fresh_database(server_url) as database_url:
        dsn = _asyncpg_dsn(database_url)
        seeded = await seed(dsn, members)
        headers = {"Authorization": f"Bearer {seeded.token}"}
        page = min(PAGE, members)
        results: list[Measured] = []
        floor, sql_text = await measure_sql(dsn, seeded.master_id, args)
        results.append(floor)
        baseline = json.loads(sql_text)
        answers: dict[str, list[str]] = {}
        for label, compile_reads in (("accountgraph, compiled", True), ("fallback", False)):
            env = {
                "ACCOUNTGRAPH_READ_COMPILER": "true" if compile_reads else "false",
                "ACCOUNTGRAPH_QUEUE": f"accountgraph:bench:{uuid.uuid4().hex[:8]}",
                "ACCOUNTGRAPH_DB_POOL_SIZE": str(args.pool),
                "ACCOUNTGRAPH_OPERATOR_TOKEN": "",
            }
            log = tmp / f"gateway-{members}-{compile_reads}.log"
            spy = tmp / f"gateway-{members}.pyspy" if args.spy and compile_reads else None
            async with gateway(
                database_url, redis_url, log, workers=args.workers, env=env, profile=spy
            ) as base:
                async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=120) as http:
                    first = await http.post(
                        "/graphql",
                        json={"query": TREE_QUERY, "variables": {"first": page, "after": None}},
                        headers=headers,
                    )
                cursor = _members_of(first.json())["pageInfo"]["endCursor"]
                more = cursor if members > page else None
                bodies = _pages(TREE_QUERY, page, more)
                measured, last = await measure_http(
                    f"{label} ({args.workers} workers)",
                    f"{base}/graphql",
                    bodies,
                    headers,
                    rf'"totalCount"\s*:\s*{members}\b',
                    args,
                )
            _check(bool(last), f"{label}: no answer succeeded: {measured.errors}")
            verify([json.loads(text) for text in last], baseline, members)
            if spy is not None:
                print_profile(spy)
            answers[label] = last
            results.append(measured)
        _check(
            [json.loads(t) for t in answers["accountgraph, compiled"]]
            == [json.loads(t) for t in answers["fallback"]],
            "compiled and fallback answers differ",
        )
        peer = await measure_postgraphile(args, tmp, database_url, seeded, members, page)
        if isinstance(peer, str):
            print(f"  PostGraphile: not measured ({peer})")
        else:
            results.append(peer)
        print(
            f"\n  {members:,} members x {SITES_PER_MEMBER} sites x {BILL_TOS_PER_MEMBER} bill-tos"
            f" ({'two pages of ' + str(page) if members > page else 'one page'})"
        )
        for measured in results:
            ratio = median_ms(measured.latencies) / median_ms(floor.latencies)
            errors = f"   errors {measured.errors}" if measured.errors else ""
            print(
                f"  {measured.label:<34} {measured.cells(args.levels)}"
                f"  ({ratio:.2f}x floor){errors}"
            )
        ours = results[1]
        if not isinstance(peer, str):
            for level in args.levels:
                print(
                    f"  accountgraph / PostGraphile trees/s at concurrency {level}: "
                    f"{ours.throughput[level] / peer.throughput[level]:.2f}x"
                )
        print(flush=True)


async def measure_postgraphile(
    args: argparse.Namespace,
    tmp: Path,
    database_url: str,
    seeded: Seeded,
    members: int,
    page: int,
) -> Measured | str:
    if args.no_postgraphile:
        return "--no-postgraphile"
    try:
        async with postgraphile.serve(_asyncpg_dsn(database_url), tmp / "postgraphile.log") as url:
            variables = {"id": str(seeded.master_id)}
            async with httpx.AsyncClient(trust_env=False, timeout=120) as http:
                first = await http.post(
                    url,
                    json={
                        "query": postgraphile.TREE_QUERY,
                        "variables": {**variables, "first": page, "after": None},
                    },
                )
            answer = first.json()
            if "data" not in answer or answer.get("errors"):
                return f"PostGraphile answered {str(answer)[:300]}"
            links = answer["data"]["accountByRowId"]["linksByMasterId"]
            cursor = links["pageInfo"]["endCursor"] if members > page else None
            bodies = _pages(postgraphile.TREE_QUERY, page, cursor, **variables)
            measured, last = await measure_http(
                "PostGraphile 5 (amber, Node 22)",
                url,
                bodies,
                {},
                rf'"totalCount"\s*:\s*{members}\b',
                args,
            )
    except RuntimeError as error:
        return str(error)[:300]
    nodes = [
        edge["node"]["accountByMemberId"]
        for text in last
        for edge in json.loads(text)["data"]["accountByRowId"]["linksByMasterId"]["edges"]
    ]
    _check(len(nodes) == members, f"PostGraphile returned {len(nodes)} members")
    _check(
        all(len(node["sitesByAccountId"]["nodes"]) == SITES_PER_MEMBER for node in nodes),
        "PostGraphile: sites per member",
    )
    return measured


async def profile(app_once: Callable[[], Awaitable[Any]], iterations: int) -> None:
    """Where the app's time goes: pyinstrument if importable, else cProfile."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(iterations):
            await app_once()
        profiler.disable()
        print(f"\ncProfile over {iterations} iterations (client and server share the process):")
        stats = pstats.Stats(profiler, stream=sys.stdout).strip_dirs()
        stats.sort_stats("tottime").print_stats(30)
        if os.environ.get("BENCH_CUMULATIVE"):
            stats.sort_stats("cumtime").print_stats(os.environ["BENCH_CUMULATIVE"], 40)
        if os.environ.get("BENCH_CALLERS"):
            stats.print_callers(*os.environ["BENCH_CALLERS"].split(","))
        return
    profiler = Profiler(async_mode="disabled", interval=0.0005)
    profiler.start()
    for _ in range(iterations):
        await app_once()
    profiler.stop()
    print(f"\npyinstrument over {iterations} iterations (client and server share the process):")
    print(profiler.output_text(unicode=False, color=False, show_all=False))
    flat = profiler.output_text(unicode=False, color=False, flat=True, flat_time="self")
    print("\n".join(flat.splitlines()[:45]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.tree_query",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--profile", action="store_true", help="after the report, profile more app iterations"
    )
    parser.add_argument("--profile-iterations", type=int, default=10)
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="the app in this process (1,000 members; with --profile: where its time goes)",
    )
    parser.add_argument("--workers", type=int, default=2, help="gateway processes")
    parser.add_argument("--pool", type=int, default=10, help="DB pool per gateway process")
    parser.add_argument("--seconds", type=float, default=5.0, help="per throughput level")
    parser.add_argument("--levels", type=_ints, default=[1, 4, 16], help="e.g. 1,4,16")
    parser.add_argument("--members", type=_ints, default=[1_000, 50], help="e.g. 1000,50")
    parser.add_argument("--no-postgraphile", action="store_true")
    parser.add_argument(
        "--spy", action="store_true", help="py-spy over the compiled gateway; print its top"
    )
    args = parser.parse_args(argv)
    if args.iterations < 1 or args.warmup < 0:
        parser.error("--iterations must be >= 1 and --warmup >= 0")
    if args.in_process or args.profile:
        return asyncio.run(run(args))
    return asyncio.run(run_processes(args))


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


if __name__ == "__main__":
    raise SystemExit(main())
