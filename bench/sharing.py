"""S11: the cost of a master's sharing recalculation, against one SQL query for the floor.

A master with 2,000 ACTIVE trusteeship members, 100 user groups (18 members each,
assigned round-robin by account id; every 10th member is in no group), and 5,000
resources of the master over the 3 types (every 5th shared with one of groups 1-50, every
25th also with one of groups 26-75, so groups 76-100 have none) is written with bulk SQL
into a fresh, migrated database. The master shares RESERVED_INSTANCE and SAVINGS_PLAN;
every member accepts RESERVED_INSTANCE, every other one SAVINGS_PLAN, every third
STORAGE_CAPACITY_UNIT. S8 keeps 100 members per type, so most members are LIMIT_REACHED.

Measured, each over ``--iterations`` runs (median, p95):

* full: ``recalculation.recalculate`` in one transaction (commit included), the grants table
  emptied before (TRUNCATE, untimed);
* change: one member moves between an idle and a busy group through
  ``groups.set_user_group_members`` (its S8 check included), then the recalculation;
* floor: one statement computing the same grant set without writing it
  (``SELECT count(*)`` over compute.GRANTS), and fetching it all.

Once, untimed for the ratios: the same change carried by the real path, the outbox row
relayed to Redis and run by an arq worker in burst mode.

    .venv/bin/python -m bench.sharing [--iterations 5] [--explain]

PostgreSQL: ``DATABASE_URL`` (a throwaway database ``accountgraph_bench_<random>`` is
created on that server and dropped at the end), else an embedded server in a temporary
directory. Redis: ``REDIS_URL``, else an embedded one. Only loopback addresses and unix
sockets are accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
from arq import create_pool
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from accountgraph import outbox
from accountgraph.api.auth import Principal, PrincipalKind
from accountgraph.config import Settings
from accountgraph.db import make_engine
from accountgraph.runtime import redis_settings
from accountgraph.sharing import groups, recalculation
from accountgraph.sharing.compute import GRANTS, MEMBERS_PER_TYPE, SHARING_LIMIT
from bench.tree_query import (
    _asyncpg_dsn,
    _check,
    _describe,
    fresh_database,
    postgres_server,
    redis_server,
)
from workers.settings import build_worker

MEMBERS = 2_000
GROUPS = 100
BUSY_GROUPS = 75  # groups 1-75 have resources shared with them, 76-100 none
RESOURCES = 5_000
TYPES = ("RESERVED_INSTANCE", "SAVINGS_PLAN", "STORAGE_CAPACITY_UNIT")
OPERATOR = Principal(PrincipalKind.OPERATOR, None, "operator:bench")
GRANTS_SQL = GRANTS.text
FLOOR_COUNT = f"SELECT count(*) FROM ({GRANTS_SQL}) g"


async def seed(dsn: str) -> tuple[int, float]:
    """The enterprise of the module docstring, with bulk SQL; returns (master id, s)."""
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            master: int = await conn.fetchval(
                "INSERT INTO accounts (name, display_name) "
                "VALUES ('Bench Master', 'Bench Master Holdings') RETURNING id"
            )
            await conn.execute(
                """
                WITH m AS (
                  INSERT INTO accounts (name, display_name)
                  SELECT format('Member-%s', lpad(g::text, 5, '0')), format('Member %s', g)
                  FROM generate_series(1, $2::int) AS g ORDER BY g RETURNING id)
                INSERT INTO links (master_id, member_id, type, status, permissions,
                                   invited_at, activated_at)
                SELECT $1, m.id, 'TRUSTEESHIP', 'ACTIVE',
                       ARRAY['SYNC_CREDIT_CONTROL', 'VIEW_FINANCE'], now(), now()
                FROM m ORDER BY m.id
                """,
                master,
                MEMBERS,
            )
            await conn.execute(
                "INSERT INTO user_groups (master_id, name) "
                "SELECT $1, format('Group-%s', lpad(g::text, 3, '0')) "
                "FROM generate_series(1, $2::int) AS g ORDER BY g",
                master,
                GROUPS,
            )
            # n: the member's position by account id (1-based); every 10th is ungrouped,
            # the others go round-robin to the groups (18 each).
            await conn.execute(
                """
                WITH n AS (
                  SELECT member_id, row_number() OVER (ORDER BY member_id) AS n
                  FROM links WHERE master_id = $1),
                g AS (
                  SELECT id, row_number() OVER (ORDER BY id) AS k FROM user_groups
                  WHERE master_id = $1)
                INSERT INTO user_group_members (group_id, member_id)
                SELECT g.id, n.member_id FROM n
                JOIN g ON g.k = ((n.n - 1 - (n.n - 1) / 10) % $2) + 1
                WHERE n.n % 10 <> 0
                """,
                master,
                GROUPS,
            )
            await conn.execute(
                """
                INSERT INTO resources (owner_id, type, name, capacity, valid_from, valid_until)
                SELECT $1, ($3::text[])[k % 3 + 1], format('R-%s', lpad(k::text, 5, '0')),
                       10, now() - interval '1 day', now() + interval '365 days'
                FROM generate_series(1, $2::int) AS k ORDER BY k
                """,
                master,
                RESOURCES,
                list(TYPES),
            )
            await conn.execute(
                """
                WITH r AS (
                  SELECT id, row_number() OVER (ORDER BY id) AS k FROM resources
                  WHERE owner_id = $1),
                g AS (
                  SELECT id, row_number() OVER (ORDER BY id) AS k FROM user_groups
                  WHERE master_id = $1)
                INSERT INTO resource_groups (resource_id, group_id)
                SELECT r.id, g.id FROM r JOIN g ON g.k = (r.k / 5) % 50 + 1 WHERE r.k % 5 = 0
                UNION
                SELECT r.id, g.id FROM r JOIN g ON g.k = (r.k / 25) % 50 + 26
                WHERE r.k % 25 = 0
                """,
                master,
            )
            await conn.execute(
                "INSERT INTO shared_resource_types (master_id, type) "
                "VALUES ($1, 'RESERVED_INSTANCE'), ($1, 'SAVINGS_PLAN')",
                master,
            )
            await conn.execute(
                """
                WITH n AS (
                  SELECT member_id, row_number() OVER (ORDER BY member_id) AS n
                  FROM links WHERE master_id = $1)
                INSERT INTO accepted_resource_types (member_id, type)
                SELECT member_id, 'RESERVED_INSTANCE' FROM n
                UNION ALL SELECT member_id, 'SAVINGS_PLAN' FROM n WHERE n % 2 = 1
                UNION ALL SELECT member_id, 'STORAGE_CAPACITY_UNIT' FROM n WHERE n % 3 = 0
                """,
                master,
            )
            await conn.execute("INSERT INTO sharing_state (master_id) VALUES ($1)", master)
        await conn.execute("ANALYZE")
        counts = await conn.fetchrow(
            """SELECT (SELECT count(*) FROM links WHERE master_id = $1) AS members,
                      (SELECT count(*) FROM user_group_members) AS grouped,
                      (SELECT count(DISTINCT group_id) FROM resource_groups) AS busy,
                      (SELECT count(*) FROM resources) AS resources,
                      (SELECT count(DISTINCT resource_id) FROM resource_groups) AS restricted
            """,
            master,
        )
    finally:
        await conn.close()
    _check(counts["members"] == MEMBERS, f"seeded {counts['members']} members")
    _check(counts["grouped"] == MEMBERS - MEMBERS // 10, f"grouped {counts['grouped']}")
    _check(counts["busy"] == BUSY_GROUPS, f"{counts['busy']} groups have resources")
    _check(counts["resources"] == RESOURCES, f"seeded {counts['resources']} resources")
    _check(counts["restricted"] == RESOURCES // 5, f"{counts['restricted']} restricted")
    return master, time.perf_counter() - started


async def timed(call: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await call()
    return time.perf_counter() - started, result


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def p95_ms(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-95 * len(ordered) // 100) - 1)] * 1000


def line(label: str, values: list[float]) -> str:
    return f"  {label:<58} median {median_ms(values):8.1f} ms   p95 {p95_ms(values):8.1f} ms"


async def grant_summary(engine: AsyncEngine, master: int) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT reason, count(*) AS n FROM sharing_grants WHERE master_id = :m "
                    "GROUP BY reason ORDER BY reason"
                ),
                {"m": master},
            )
        ).all()
    return {row.reason: int(row.n) for row in rows}


async def stored(engine: AsyncEngine, master: int) -> set[tuple[int, int, str]]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT account_id, resource_id, reason FROM sharing_grants "
                    "WHERE master_id = :m"
                ),
                {"m": master},
            )
        ).all()
    return {(row.account_id, row.resource_id, row.reason) for row in rows}


async def verify(engine: AsyncEngine, master: int) -> int:
    """The stored grants are exactly the GRANTS statement's set; S8 holds per type."""
    async with engine.connect() as conn:
        params = {"master": master, "limit": SHARING_LIMIT}
        differ = (
            await conn.execute(
                text(f"""
            SELECT count(*) FROM (
              (SELECT account_id, resource_id, reason FROM sharing_grants
               WHERE master_id = :master
               EXCEPT SELECT account_id, resource_id, reason FROM ({GRANTS_SQL}) c)
              UNION ALL
              (SELECT account_id, resource_id, reason FROM ({GRANTS_SQL}) c
               EXCEPT SELECT account_id, resource_id, reason FROM sharing_grants
               WHERE master_id = :master)) d"""),
                params,
            )
        ).scalar_one()
        _check(differ == 0, f"{differ} stored grants differ from the GRANTS statement")
        over = (
            await conn.execute(
                text("""
            SELECT max(n) FROM (SELECT r.type, count(DISTINCT g.account_id) AS n
            FROM sharing_grants g JOIN resources r ON r.id = g.resource_id
            WHERE g.master_id = :master AND g.reason <> 'OWNER' GROUP BY r.type) t"""),
                params,
            )
        ).scalar_one()
        _check(over is not None and over <= SHARING_LIMIT, f"{over} members share a type")
        total: int = (
            await conn.execute(
                text("SELECT count(*) FROM sharing_grants WHERE master_id = :master"), params
            )
        ).scalar_one()
    return total


async def mover(engine: AsyncEngine) -> tuple[int, int, int, list[int], list[int]]:
    """The lowest-id member (among the first 100 of every type) and two groups with
    resources of all 3 types: it moves from its group to the other and back, which keeps
    every type's count (the data is past S8's limit: a move that added a member to a type
    would be refused). Returns (member, its group, the other, members of each)."""
    async with engine.connect() as conn:
        member, home = (
            await conn.execute(
                text("""
            SELECT gm.member_id, gm.group_id FROM user_group_members gm
            WHERE gm.group_id IN (SELECT group_id FROM resource_groups)
            ORDER BY gm.member_id LIMIT 1""")
            )
        ).one()
        other = (
            await conn.execute(
                text("SELECT min(group_id) FROM resource_groups WHERE group_id > :g"), {"g": home}
            )
        ).scalar_one()

        async def members(group: int) -> list[int]:
            return list(
                (
                    await conn.execute(
                        text(
                            "SELECT member_id FROM user_group_members WHERE group_id = :g "
                            "ORDER BY member_id"
                        ),
                        {"g": group},
                    )
                ).scalars()
            )

        return member, home, other, await members(home), await members(other)


async def candidates(engine: AsyncEngine, master: int) -> dict[str, int]:
    """S8: how many members would share each type without the limit."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(MEMBERS_PER_TYPE, {"master": master, "limit": SHARING_LIMIT})
        ).all()
    return {row.type: int(row.members) for row in rows}


async def explain(engine: AsyncEngine, master: int) -> None:
    params = {"master": master, "limit": SHARING_LIMIT}
    async with engine.connect() as conn:
        plan = (
            (
                await conn.execute(
                    text(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {GRANTS_SQL}"), params
                )
            )
            .scalars()
            .all()
        )
    print("\nEXPLAIN ANALYZE of compute.GRANTS:")
    print("\n".join(plan))


async def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="agbench-") as tmp_name:
        tmp = Path(tmp_name)
        async with contextlib.AsyncExitStack() as stack:
            server_url, pg_source = await stack.enter_async_context(postgres_server(tmp))
            database_url = await stack.enter_async_context(fresh_database(server_url))
            redis_url, redis_source = await stack.enter_async_context(redis_server(tmp))
            dsn = _asyncpg_dsn(database_url)
            master, seeded_s = await seed(dsn)

            settings = Settings(
                DATABASE_URL=database_url,
                REDIS_URL=redis_url,
                ACCOUNTGRAPH_OPERATOR_TOKEN=None,
                ACCOUNTGRAPH_QUEUE=f"accountgraph:bench:{uuid.uuid4().hex[:8]}",
            )
            engine = make_engine(database_url, pool_size=4)
            stack.push_async_callback(engine.dispose)
            redis = await create_pool(
                redis_settings(redis_url), default_queue_name=settings.queue_name
            )

            async def close_redis() -> None:
                with contextlib.suppress(Exception):
                    await redis.delete(settings.queue_name)
                await redis.aclose()

            stack.push_async_callback(close_redis)
            raw = await asyncpg.connect(dsn)
            stack.push_async_callback(raw.close)
            server_version = await raw.fetchval("SHOW server_version")

            async def recalculate() -> None:
                async with engine.begin() as conn:
                    await recalculation.recalculate(conn, master)

            async def clear() -> None:
                # The bench database holds this one master: its grants are the table.
                async with engine.begin() as conn:
                    await conn.execute(text("TRUNCATE sharing_grants"))

            async def floor_count() -> int:
                found: int = await raw.fetchval(
                    FLOOR_COUNT.replace(":master", "$1").replace(":limit", "$2"),
                    master,
                    SHARING_LIMIT,
                )
                return found

            async def floor_fetch() -> int:
                rows = await raw.fetch(
                    GRANTS_SQL.replace(":master", "$1").replace(":limit", "$2"),
                    master,
                    SHARING_LIMIT,
                )
                return len(rows)

            # Warm-up (untimed): one full recalculation, checked.
            await recalculate()
            total = await verify(engine, master)
            _check(total == await floor_count(), "stored grants != the floor's count")
            by_reason = await grant_summary(engine, master)
            would_share = await candidates(engine, master)

            full: list[float] = []
            floor: list[float] = []
            fetch: list[float] = []
            for _ in range(args.iterations):
                await clear()
                elapsed, _ = await timed(recalculate)
                full.append(elapsed)
                elapsed, counted = await timed(floor_count)
                floor.append(elapsed)
                _check(counted == total, f"floor counted {counted}, stored {total}")
                elapsed, fetched = await timed(floor_fetch)
                fetch.append(elapsed)
                _check(fetched == total, f"floor fetched {fetched}")
            _check(await verify(engine, master) == total, "full recalculation drifted")

            member, home, other, home_members, other_members = await mover(engine)
            positions = [(other, [*other_members, member]), (home, home_members)]
            mutation: list[float] = []
            change: list[float] = []
            changed_grants: list[int] = []
            for iteration in range(args.iterations * 2):
                target, target_members = positions[iteration % 2]

                async def move(group: int = target, members: list[int] = target_members) -> None:
                    async with engine.begin() as conn:
                        await groups.set_user_group_members(
                            conn, OPERATOR, group_id=group, member_ids=list(members)
                        )

                before = await stored(engine, master)
                elapsed, _ = await timed(move)
                mutation.append(elapsed)
                elapsed, _ = await timed(recalculate)
                change.append(elapsed)
                await verify(engine, master)
                changed_grants.append(len(before ^ await stored(engine, master)))
            # The job the last move wrote is covered: nothing pending.
            async with engine.connect() as conn:
                left = (await conn.execute(recalculation.PENDING_ROWS, {"master": master})).all()
            _check(not left, f"{len(left)} recalculation rows still pending")

            # Once through the real path: outbox row -> relay -> Redis -> arq worker.
            target, target_members = positions[0]
            async with engine.begin() as conn:
                await groups.set_user_group_members(
                    conn, OPERATOR, group_id=target, member_ids=target_members
                )

            async def through_worker() -> None:
                while await outbox.relay_once(engine, redis, resend_after_s=60):
                    pass
                await build_worker(settings, engine, redis, burst=True, relay=False).main()

            worker_s, _ = await timed(through_worker)
            async with engine.connect() as conn:
                left = (await conn.execute(recalculation.PENDING_ROWS, {"master": master})).all()
            _check(not left, "the worker left the recalculation pending")
            await verify(engine, master)

            reasons = ", ".join(f"{reason} {count:,}" for reason, count in by_reason.items())
            ratio_full = median_ms(full) / median_ms(floor)
            ratio_change = median_ms(change) / median_ms(floor)
            lines = [
                f"sharing recalculation: master with {MEMBERS:,} trusteeship members, "
                f"{GROUPS} groups ({BUSY_GROUPS} with resources, {MEMBERS // 10} members "
                f"ungrouped), {RESOURCES:,} resources over 3 types "
                f"({RESOURCES // 5:,} shared with groups) (seeded in {seeded_s:.1f} s)",
                f"  PostgreSQL {server_version} ({pg_source}: {_describe(database_url)}); "
                f"Redis ({redis_source}); {args.iterations} iterations after 1 warm-up",
                f"  grant set: {total:,} rows ({reasons}); members who would share, per "
                f"type: {', '.join(f'{t} {n:,}' for t, n in sorted(would_share.items()))} "
                f"(S8 keeps {SHARING_LIMIT})",
                line("full recalculation (grants empty before, 1 transaction)", full),
                line("floor: count(*) over compute.GRANTS (1 statement)", floor),
                line("floor: fetch all rows of compute.GRANTS", fetch),
                line("setUserGroupMembers service call (S8 check included)", mutation),
                line("recalculation after one member changes group", change),
                f"    (grant rows changed per move: median "
                f"{statistics.median(changed_grants):,.0f})",
                f"  ratio full / floor(count): {ratio_full:.1f}x;   change / floor(count): "
                f"{ratio_change:.1f}x;   full / floor(fetch): "
                f"{median_ms(full) / median_ms(fetch):.1f}x",
                f"  one move through outbox relay + arq worker (burst), once: "
                f"{worker_s * 1000:.1f} ms",
                "  verified: stored grants == compute.GRANTS after every recalculation; "
                f"at most {SHARING_LIMIT} members per type; no recalculation left pending",
            ]
            print("\n".join(lines), flush=True)
            if args.explain:
                await explain(engine, master)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sharing",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument(
        "--explain",
        action="store_true",
        help="after the report, EXPLAIN ANALYZE the GRANTS statement",
    )
    args = parser.parse_args(argv)
    if args.iterations < 1:
        parser.error("--iterations must be >= 1")
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
