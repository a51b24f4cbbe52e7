"""A4/A5 under faults (issue 5, Done when): Redis stopped while charges commit, the worker
stopped or killed in the middle of a delivery, the SMTP server down."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from arq import create_pool
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix
from arq.worker import Worker
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from accountgraph import outbox
from accountgraph.alerts import service
from accountgraph.app import create_app
from accountgraph.config import Settings
from accountgraph.db import make_engine
from accountgraph.runtime import redis_settings
from tests.alerts.conftest import OwnRedis, SlowMailbox
from tests.alerts.support import (
    Receiver,
    alert_view,
    charge,
    drain,
    fetch,
    kinds,
    scalar,
    wait_for,
    watched,
)
from tests.conftest import Mailbox, free_port, serving
from tests.helpers import Api
from workers.settings import build_worker, close_worker


async def pool_of(url: str, settings: Settings) -> ArqRedis:
    pool = await create_pool(redis_settings(url), default_queue_name=settings.queue_name)
    pool.connection_pool.connection_kwargs["socket_connect_timeout"] = 0.5
    return pool


@contextlib.asynccontextmanager
async def background_worker(
    settings: Settings, engine: AsyncEngine, redis_url: str
) -> AsyncIterator[Worker]:
    """The deployed shape in this process: an arq worker with its outbox relay, on a Redis
    pool of its own (``Worker.close`` closes it), until the block ends."""
    worker = build_worker(settings, engine, await pool_of(redis_url, settings))
    task = asyncio.create_task(worker.async_run())
    try:
        yield worker
    finally:
        await stop(worker, task)


async def stop(worker: Worker, task: asyncio.Task[None]) -> None:
    """Stop a worker now: its running jobs are cancelled mid-way (arq puts them back)."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await close_worker(worker)


async def delivery_states(engine: AsyncEngine) -> list[tuple[str, str, int]]:
    rows = await fetch(
        engine, "SELECT channel, status, attempts FROM deliveries ORDER BY notification_id, channel"
    )
    return [(row.channel, row.status, row.attempts) for row in rows]


async def outbox_finished(engine: AsyncEngine) -> bool:
    return bool(await scalar(engine, "SELECT count(*) = 0 FROM outbox WHERE done_at IS NULL"))


# ---------------------------------------------------------------- Redis down


async def test_a5_with_redis_down_charges_commit_and_every_alert_fires_once_when_it_is_back(
    api: Api, settings: Settings, own_redis: OwnRedis, hook: Receiver
) -> None:
    """Gateway, relay and worker all on a Redis of the test's own, which is stopped while
    the charges are recorded through that gateway."""
    engine = api.engine
    low = [await watched(api, f"Low-{n}", webhook_url=hook.url) for n in range(4)]
    overdue = await watched(api, "Overdue", webhook_url=hook.url)
    pool = await pool_of(own_redis.url, settings)
    try:
        await drain(settings, engine, pool)  # the payments' evaluations: nothing fires
        async with (
            serving(create_app(settings, engine, pool)) as url,
            httpx.AsyncClient(base_url=url, timeout=30) as client,
        ):
            gateway = Api(client, engine)
            own_redis.stop()
            for account in low:  # 100 -> 40 -> 30: one crossing each
                assert await charge(gateway, account, "60.00") == "40.00"
                assert await charge(gateway, account, "10.00") == "30.00"
            assert await charge(gateway, overdue, "110.00") == "-10.00"
            assert (await client.get("/readyz")).json()["down"] == ["redis"]
        with pytest.raises(Exception):  # noqa: B017 - whatever redis-py raises for "down"
            await outbox.relay_once(engine, pool, resend_after_s=60)
        assert (
            await scalar(
                engine,
                "SELECT count(*) FROM outbox WHERE topic = 'quota.changed' AND sent_at IS NULL",
            )
            == 9
        )  # waiting
        assert await scalar(engine, "SELECT count(*) FROM notifications") == 0

        own_redis.start()
        async with background_worker(settings, engine, own_redis.url):
            # (a job's follow-up rows commit with its done mark: none is left behind)
            await wait_for(lambda: outbox_finished(engine))
        await drain(settings, engine, pool)
        assert await service.sweep(engine) == 0  # nothing was missed
    finally:
        await pool.aclose()

    for account in low:
        assert await kinds(api, account) == ["LOW_QUOTA"]
    assert await kinds(api, overdue) == ["OVERDUE"]
    assert await delivery_states(engine) == [("WEBHOOK", "SENT", 1)] * 5
    assert len(hook.requests) == 5
    assert len({headers["x-accountgraph-delivery"] for headers, _ in hook.requests}) == 5


async def test_a5_redis_restarted_empty_with_jobs_queued_loses_none_and_doubles_none(
    api: Api, settings: Settings, own_redis: OwnRedis, hook: Receiver
) -> None:
    """A5 when Redis comes back with an empty dataset in the middle of a burst: a gateway
    records 16 charges on 8 watched accounts at once while the relay hands their outbox
    rows to Redis; with the jobs queued (sent, not run: the queue holds them) Redis is
    restarted empty and loses them. The relay sends again what was sent and not done
    after ``outbox_resend_after_s``; every crossing fires exactly once, every webhook
    goes out once per notification, and the outbox ends empty."""
    engine = api.engine
    watched_accounts = [await watched(api, f"Burst-{n}", webhook_url=hook.url) for n in range(8)]
    pool = await pool_of(own_redis.url, settings)
    quick = settings.model_copy(update={"outbox_resend_after_s": 1.0})
    try:
        await drain(settings, engine, pool)  # the payments' evaluations: nothing fires
        async with (
            serving(create_app(settings, engine, pool)) as url,
            httpx.AsyncClient(base_url=url, timeout=30) as client,
        ):
            gateway = Api(client, engine)
            burst = [charge(gateway, a, "30.00") for a in watched_accounts + watched_accounts]
            relaying = asyncio.create_task(relay_until_quiet(engine, pool))
            await asyncio.gather(*burst)  # 100 -> 70 -> 40: one crossing each
            await relaying
        queued = await pool.zcard(settings.queue_name)
        sent_not_done = await scalar(
            engine, "SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL AND done_at IS NULL"
        )
        assert queued > 0 and sent_not_done >= queued  # work in flight, in Redis only

        own_redis.stop()
        own_redis.start()  # empty: the queued jobs are gone
        await pool.aclose()
        pool = await pool_of(own_redis.url, settings)  # the old connections were cut
        assert await pool.zcard(settings.queue_name) == 0
        await asyncio.sleep(1.1)  # past the resend delay
        async with background_worker(quick, engine, own_redis.url):
            await wait_for(lambda: outbox_finished(engine), timeout_s=60)
        await drain(quick, engine, pool)
        assert await service.sweep(engine) == 0  # nothing was missed
    finally:
        await pool.aclose()

    for account in watched_accounts:
        assert await kinds(api, account) == ["LOW_QUOTA"]
    assert await delivery_states(engine) == [("WEBHOOK", "SENT", 1)] * 8
    assert len({headers["x-accountgraph-delivery"] for headers, _ in hook.requests}) == 8
    assert len(hook.requests) == 8


async def relay_until_quiet(engine: AsyncEngine, pool: ArqRedis) -> None:
    """The relay's work while the burst commits: every committed row handed to Redis."""
    quiet = 0
    while quiet < 10:
        quiet = 0 if await outbox.relay_once(engine, pool, resend_after_s=60) else quiet + 1
        await asyncio.sleep(0.05)


# ---------------------------------------------------------------- the worker dies mid-send


async def sent_everywhere(engine: AsyncEngine) -> bool:
    return await delivery_states(engine) == [("EMAIL", "SENT", 1), ("WEBHOOK", "SENT", 1)]


def assert_one_notification_delivered_at_least_once(
    notifications: list[Any], hook: Receiver, box: SlowMailbox
) -> None:
    """At least once, never a second notification: every copy a receiver got carries the
    one notification's stable id (X-Accountgraph-Delivery, Message-ID)."""
    [notification] = notifications
    assert len(hook.requests) >= 2 and len(box.messages) >= 2  # the cut-off send, then again
    assert {headers["x-accountgraph-delivery"] for headers, _ in hook.requests} == {
        str(notification.id)
    }
    message_ids = {
        line
        for envelope in box.messages
        for line in envelope.content.decode().splitlines()
        if line.lower().startswith("message-id:")
    }
    assert message_ids == {f"Message-ID: <notification-{notification.id}@accountgraph>"}


async def test_a4_a_worker_stopped_mid_delivery_completes_after_restart_without_duplicates(
    api: Api, settings: Settings, hook: Receiver, slow_mailbox: SlowMailbox
) -> None:
    engine = api.engine
    assert settings.redis_url is not None
    worker_settings = settings.model_copy(update={"smtp_port": slow_mailbox.port})
    account = await watched(api, "Interrupted", email="ops@example.com", webhook_url=hook.url)
    hook.stall.hold(60)
    slow_mailbox.stall.hold(60)

    first = build_worker(worker_settings, engine, await pool_of(settings.redis_url, settings))
    task = asyncio.create_task(first.async_run())
    try:
        await charge(api, account, "60.00")

        async def both_in_flight() -> bool:
            return bool(hook.requests) and bool(slow_mailbox.messages)

        await wait_for(both_in_flight)
    finally:
        await stop(first, task)  # cancelled in the middle of both sends
    assert await delivery_states(engine) == [("EMAIL", "PENDING", 0), ("WEBHOOK", "PENDING", 0)]

    hook.stall.release()
    slow_mailbox.stall.release()
    async with background_worker(worker_settings, engine, settings.redis_url):
        await wait_for(lambda: sent_everywhere(engine))
        await wait_for(lambda: outbox_finished(engine))

    notifications = await fetch(engine, "SELECT id FROM notifications")
    assert_one_notification_delivered_at_least_once(notifications, hook, slow_mailbox)
    assert await kinds(api, account) == ["LOW_QUOTA"]


def _worker_environment(settings: Settings, smtp_port: int) -> dict[str, str]:
    assert settings.database_url and settings.redis_url
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "ACCOUNTGRAPH_QUEUE": settings.queue_name,
        "ACCOUNTGRAPH_OUTBOX_POLL_S": "0.2",
        "ACCOUNTGRAPH_SMTP_HOST": "127.0.0.1",
        "ACCOUNTGRAPH_SMTP_PORT": str(smtp_port),
        "ACCOUNTGRAPH_WEBHOOK_SECRET": settings.webhook_secret or "",
        "ACCOUNTGRAPH_WEBHOOK_ALLOW_HTTP": "true",
        "ACCOUNTGRAPH_WEBHOOK_ALLOW_PRIVATE": "true",
        "ACCOUNTGRAPH_DELIVERY_ATTEMPTS": "3",
        "ACCOUNTGRAPH_DELIVERY_BACKOFF_S": "0.01",
    }


async def test_a4_a_worker_process_killed_mid_delivery_completes_after_restart(
    api: Api,
    settings: Settings,
    redis: ArqRedis,
    hook: Receiver,
    gateway: Receiver,
    slow_mailbox: SlowMailbox,
    tmp_path: Path,
) -> None:
    """``accountgraph worker`` as a real process, SIGKILLed while the email, the webhook
    and the SMS are all in flight (each receiver holds the request it got): no shutdown,
    no clean-up. arq keeps such a job's in-progress key for the worker's longest timeout
    + 10 s; the test proves the keys are there, then lets that time pass by expiring them.
    After the restart every channel is SENT once in the deliveries, and every copy a
    receiver got carries the one notification's id."""
    engine = api.engine
    assert settings.redis_url is not None
    account = await watched(
        api, "Killed", email="ops@example.com", webhook_url=hook.url, phone="+15550100"
    )
    for stalled in (hook.stall, gateway.stall, slow_mailbox.stall):
        stalled.hold(60)
    log = (tmp_path / "worker.log").open("wb")
    process = subprocess.Popen(  # noqa: ASYNC220 - started once, killed below
        [sys.executable, "-m", "accountgraph.cli", "worker"],
        env={
            **_worker_environment(settings, slow_mailbox.port),
            "ACCOUNTGRAPH_SMS_GATEWAY_URL": gateway.url,
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        await charge(api, account, "60.00")

        async def all_in_flight() -> bool:
            return bool(hook.requests and gateway.requests and slow_mailbox.messages)

        await wait_for(all_in_flight, timeout_s=60)
    finally:
        process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(process.wait, 10)
        log.close()
    pending = [("EMAIL", "PENDING", 0), ("SMS", "PENDING", 0), ("WEBHOOK", "PENDING", 0)]
    assert await delivery_states(engine) == pending
    stuck = [key async for key in redis.scan_iter(match=f"{in_progress_key_prefix}*")]
    assert stuck, (tmp_path / "worker.log").read_text()[-3000:]
    for key in stuck:
        assert 0 < await redis.pttl(key) <= 310_000
        await redis.pexpire(key, 1)  # the wait arq imposes after a crash, elapsed

    for stalled in (hook.stall, gateway.stall, slow_mailbox.stall):
        stalled.release()
    restarted = settings.model_copy(
        update={"smtp_port": slow_mailbox.port, "sms_gateway_url": gateway.url}
    )
    sent = [("EMAIL", "SENT", 1), ("SMS", "SENT", 1), ("WEBHOOK", "SENT", 1)]

    async def sent_on_every_channel() -> bool:
        return await delivery_states(engine) == sent

    async with background_worker(restarted, engine, settings.redis_url):
        await wait_for(sent_on_every_channel, timeout_s=30)
        await wait_for(lambda: outbox_finished(engine))

    notifications = await fetch(engine, "SELECT id FROM notifications")
    assert_one_notification_delivered_at_least_once(notifications, hook, slow_mailbox)
    [notification] = notifications
    assert len(gateway.requests) >= 2  # the cut-off SMS, then again, with the same id
    assert {json.loads(body)["id"] for _, body in gateway.requests} == {
        f"notification-{notification.id}"
    }
    assert await kinds(api, account) == ["LOW_QUOTA"]


# ---------------------------------------------------------------- SMTP down


@pytest.mark.parametrize("fault", ["answers 451", "unreachable"])
async def test_a4_with_smtp_down_email_fails_after_the_retries_and_the_webhook_is_sent(
    api: Api,
    settings: Settings,
    redis: ArqRedis,
    mailbox: Mailbox,
    hook: Receiver,
    fault: str,
) -> None:
    account = await watched(api, "No mail", email="ops@example.com", webhook_url=hook.url)
    worker_settings = settings
    if fault == "unreachable":
        worker_settings = settings.model_copy(update={"smtp_port": free_port()})
    mailbox.messages.clear()
    mailbox.refuse = fault == "answers 451"
    try:
        await charge(api, account, "60.00")
        await drain(worker_settings, api.engine, redis)
    finally:
        mailbox.refuse = False

    [edge] = (await alert_view(api, account))["notifications"]["edges"]
    email, webhook = edge["node"]["deliveries"]
    assert (email["channel"], email["status"], email["attempts"]) == ("EMAIL", "FAILED", 3)
    assert email["lastError"] == "could not deliver email"  # the detail is logged only
    assert webhook == {"channel": "WEBHOOK", "status": "SENT", "attempts": 1, "lastError": None}
    assert mailbox.messages == [] and len(hook.requests) == 1


# ---------------------------------------------------------------- the relay stops cleanly


async def test_a5_a_stopped_relay_closes_its_listening_connection(
    settings: Settings, redis: ArqRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker that stops (or restarts in-process) closes the connection its relay LISTENs
    on, even with the pool full; it never returns it to the pool with the listener on."""
    assert settings.database_url is not None
    engine = make_engine(settings.database_url, pool_size=1)
    opened: list[Any] = []
    event.listen(engine.sync_engine, "connect", lambda dbapi, record: opened.append(dbapi))
    relay = asyncio.create_task(outbox.relay_forever(engine, redis, poll_s=0.05, resend_after_s=60))
    try:

        async def pool_full() -> bool:  # the listener's connection, and the pool's own
            return len(opened) == 2 and "Connections in pool: 1 " in engine.pool.status()

        await wait_for(pool_full)
    finally:
        with caplog.at_level(logging.ERROR, logger="sqlalchemy.pool"):
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay
    await engine.dispose()

    assert [r.getMessage() for r in caplog.records if r.name.startswith("sqlalchemy")] == []
    assert opened and all(dbapi.driver_connection.is_closed() for dbapi in opened)
