"""Graceful shutdown (issue 15): SIGTERM to a gateway under load and to a worker with jobs
in flight, each a real ``accountgraph`` process on the session's PostgreSQL and Redis.

A gateway stops accepting at once, closes its WebSockets with 1012 (service restart),
answers every request it had started and exits 0. A worker stops taking jobs, finishes
the running ones within ACCOUNTGRAPH_SHUTDOWN_GRACE_S (or hands them back to the queue
after it) and exits 0; the next worker does the rest: no job lost, none done twice.

And the start of a release: two gateways migrating at start on the same empty database
at the same moment both come up, the schema migrated once (the migration lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from websockets.typing import Subprotocol

from accountgraph.config import Settings
from accountgraph.db import make_engine
from accountgraph.migrations import alembic_config
from tests.alerts.support import SUBSCRIBE, WS_PROTOCOL, charge, watched
from tests.conftest import free_port, new_database, serving
from tests.helpers import OPERATOR_TOKEN, Api

COMMAND = [sys.executable, "-m", "accountgraph.cli"]
PAY = """mutation($input: RecordPaymentInput!) { recordPayment(input: $input) {
  account { id } userErrors { code field message } } }"""
READ = "query($id: ID!) { account(id: $id) { id name finance { cashBalance availableQuota } } }"


def environment(settings: Settings, **extra: str) -> dict[str, str]:
    """What ``accountgraph serve`` / ``worker`` need to join the test's servers and queue."""
    assert settings.database_url and settings.redis_url
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "ACCOUNTGRAPH_QUEUE": settings.queue_name,
        "ACCOUNTGRAPH_OPERATOR_TOKEN": OPERATOR_TOKEN,
        "ACCOUNTGRAPH_OUTBOX_POLL_S": "0.2",
        "ACCOUNTGRAPH_RATE_LIMIT_COST_PER_MINUTE": "0",
        "ACCOUNTGRAPH_LOG_FORMAT": "text",
        "ACCOUNTGRAPH_WEBHOOK_SECRET": settings.webhook_secret or "",
        "ACCOUNTGRAPH_WEBHOOK_ALLOW_HTTP": "true",
        "ACCOUNTGRAPH_WEBHOOK_ALLOW_PRIVATE": "true",
        "ACCOUNTGRAPH_DELIVERY_ATTEMPTS": "3",
        "ACCOUNTGRAPH_DELIVERY_BACKOFF_S": "0.01",
        **extra,
    }


@dataclass
class Child:
    """An ``accountgraph`` command running as its own process, its output in ``log``."""

    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    async def exit_code(self, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while (code := self.process.poll()) is None:
            assert time.monotonic() < deadline, (
                f"still running after {timeout_s} s\n{self.output()}"
            )
            await asyncio.sleep(0.05)
        return code

    async def logged(self, words: str, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while words not in self.log.read_text(errors="replace"):
            assert self.process.poll() is None, self.output()
            assert time.monotonic() < deadline, f"{words!r} not logged\n{self.output()}"
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def started(args: list[str], env: dict[str, str], log: Path) -> AsyncIterator[Child]:
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: ASYNC220 - one child, waited for by polling
            [*COMMAND, *args], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    child = Child(process, log)
    try:
        yield child
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


async def until(condition: Callable[[], Any], what: str, timeout_s: float = 30) -> None:
    """Poll ``condition`` (sync or async) until it is true, or fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = condition()
        if asyncio.iscoroutine(found):
            found = await found
        if found:
            return
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s: {what}"
        await asyncio.sleep(0.05)


# ---------------------------------------------------------------- the gateway


def tcp_queues() -> dict[tuple[int, int], tuple[int, int]]:
    """Loopback TCP sockets by (local port, remote port): (bytes not yet acknowledged by
    the peer, bytes received but not yet read by the owning process), from the kernel."""
    found = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        local, remote, queues = parts[1], parts[2], parts[4]
        tx, rx = (int(value, 16) for value in queues.split(":"))
        found[(int(local.split(":")[1], 16), int(remote.split(":")[1], 16))] = (tx, rx)
    return found


@dataclass
class Held:
    """A mutation whose request head and first half of the body are sent; the rest is
    sent when ``release`` is set. Speaks raw HTTP/1.1 so that the test knows exactly
    which bytes went out when."""

    port: int
    body: bytes
    release: asyncio.Event
    client_port: int = 0
    sent_head: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> tuple[int, dict[str, Any]]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            self.client_port = writer.get_extra_info("sockname")[1]
            head = (
                "POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Content-Type: application/json\r\n"
                f"Authorization: Bearer {OPERATOR_TOKEN}\r\n"
                f"Content-Length: {len(self.body)}\r\n\r\n"
            ).encode()
            half = len(self.body) // 2
            writer.write(head + self.body[:half])
            await writer.drain()
            self.sent_head.set()
            await self.release.wait()
            writer.write(self.body[half:])
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 60)  # the server closes after it
        finally:
            writer.close()
        status_line, _, rest = answer.partition(b"\r\n")
        _, _, payload = rest.partition(b"\r\n\r\n")
        return int(status_line.split()[1]), json.loads(payload)

    def read_by_server(self) -> bool:
        """Every byte sent so far has reached the gateway process (nothing left in this
        side's send queue, nothing unread in the gateway's receive queue)."""
        queues = tcp_queues()
        mine = queues.get((self.client_port, self.port))
        theirs = queues.get((self.port, self.client_port))
        return mine is not None and theirs is not None and mine[0] == 0 and theirs[1] == 0


@dataclass
class Load:
    """One client sending payments and reads over keep-alive connections until the
    gateway refuses it; each outcome recorded."""

    base_url: str
    account: str
    answers: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)
    failures: list[tuple[str, BaseException]] = field(default_factory=list)

    async def run(self) -> None:
        headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
        async with httpx.AsyncClient(base_url=self.base_url, timeout=60, headers=headers) as http:
            while True:
                for kind, body in (
                    ("pay", {"query": PAY, "variables": {"input": self.pay_input()}}),
                    ("read", {"query": READ, "variables": {"id": self.account}}),
                ):
                    try:
                        response = await http.post("/graphql", json=body)
                    except httpx.ConnectError:
                        return  # refused: the gateway stopped accepting
                    except httpx.TransportError as error:
                        # No answer at all: a request written to a keep-alive connection the
                        # gateway was closing as idle. It never started (checked below by
                        # the money: no payment without its answer).
                        self.failures.append((kind, error))
                        continue
                    self.answers.append((kind, response.status_code, response.json()))

    def pay_input(self) -> dict[str, Any]:
        return {"accountId": self.account, "amount": "1.00"}


async def payments_of(engine: AsyncEngine) -> tuple[int, Decimal]:
    async with engine.connect() as conn:
        row = (await conn.execute(text("SELECT count(*), sum(amount) FROM payments"))).one()
    return row[0], row[1] or Decimal(0)


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:  # a connection accepted into a closing backlog: not refused yet
        return False


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigterm_under_load_answers_every_started_request_and_refuses_new_ones(
    api: Api, settings: Settings, tmp_path: Path, workers: int
) -> None:
    account = await api.account("Busy")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    args = ["serve", "--no-worker", "--no-migrate", "--port", str(port)]
    if workers > 1:
        args += ["--workers", str(workers)]
    env = environment(settings, ACCOUNTGRAPH_SHUTDOWN_GRACE_S="30")
    async with started(args, env, tmp_path / "serve.log") as gateway:

        async def ready() -> bool:
            assert gateway.process.poll() is None, gateway.output()
            try:
                async with httpx.AsyncClient(timeout=5) as http:
                    return (await http.get(f"{base_url}/readyz")).status_code == 200
            except httpx.HTTPError:
                return False

        await until(ready, "the gateway is ready", timeout_s=90)

        # a live subscription
        socket_ = await websockets.connect(
            f"ws://127.0.0.1:{port}/graphql", subprotocols=[Subprotocol(WS_PROTOCOL)]
        )
        await socket_.send(
            json.dumps(
                {
                    "type": "connection_init",
                    "payload": {"Authorization": f"Bearer {OPERATOR_TOKEN}"},
                }
            )
        )
        assert json.loads(await asyncio.wait_for(socket_.recv(), 10))["type"] == "connection_ack"
        subscribe = {"query": SUBSCRIBE, "variables": {"id": account}}
        await socket_.send(json.dumps({"id": "1", "type": "subscribe", "payload": subscribe}))
        await socket_.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(socket_.recv(), 10))["type"] == "pong"

        # requests the gateway has started (head and half the body read) when SIGTERM comes
        release = asyncio.Event()
        body = json.dumps(
            {"query": PAY, "variables": {"input": {"accountId": account, "amount": "10.00"}}}
        ).encode()
        held = [Held(port, body, release) for _ in range(8)]
        held_tasks = [asyncio.create_task(request.run()) for request in held]
        # and a load of payments and reads from many clients, running through the SIGTERM
        loads = [Load(base_url, account) for _ in range(12)]
        load_tasks = [asyncio.create_task(load.run()) for load in loads]
        try:
            await until(lambda: all(r.sent_head.is_set() for r in held), "held requests sent")
            await until(lambda: all(r.read_by_server() for r in held), "held requests read")
            await until(
                lambda: sum(len(load.answers) for load in loads) >= 60, "the load is running"
            )

            gateway.process.send_signal(signal.SIGTERM)

            # then: new connections are refused while the started requests are still open
            # (quickly: with --workers N the supervisor too closes its listening socket)
            await until(lambda: refused(port), "new connections refused", timeout_s=5)
            assert gateway.process.poll() is None, gateway.output()
            # and the subscription is closed with 1012 (service restart: reconnect elsewhere)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(socket_.recv(), 20)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012

            # when: the held requests' bodies arrive, after the SIGTERM
            release.set()
            held_answers = await asyncio.wait_for(asyncio.gather(*held_tasks), 60)
            await asyncio.wait_for(asyncio.gather(*load_tasks), 60)
            code = await gateway.exit_code(60)
        finally:
            release.set()
            for task in (*held_tasks, *load_tasks):
                task.cancel()
            await socket_.close()

    # then: every started request got a complete 200 with its data, and it exited 0
    assert code == 0, gateway.output()
    for status, answer in held_answers:
        assert status == 200 and "errors" not in answer, answer
        assert answer["data"]["recordPayment"] == {"account": {"id": account}, "userErrors": []}
    answers = [answer for load in loads for answer in load.answers]
    bad = [answer for answer in answers if answer[1] != 200 or "errors" in answer[2]]
    assert bad == [], bad[:5]
    # a request that failed never took effect: every payment made has its 200
    paid = sum(kind == "pay" for kind, _, _ in answers)
    assert await payments_of(api.engine) == (
        len(held) + paid,
        Decimal("10.00") * len(held) + Decimal("1.00") * paid,
    ), [load.failures for load in loads]
    assert "Traceback" not in gateway.output(), gateway.output()


async def test_a_request_still_running_after_the_grace_is_cut_and_the_gateway_exits(
    api: Api, settings: Settings, tmp_path: Path
) -> None:
    """The drain is bounded: a request whose body never arrives does not hold the gateway
    past ACCOUNTGRAPH_SHUTDOWN_GRACE_S."""
    account = await api.account("Stuck")
    port = free_port()
    env = environment(settings, ACCOUNTGRAPH_SHUTDOWN_GRACE_S="1")
    args = ["serve", "--no-worker", "--no-migrate", "--port", str(port)]
    async with started(args, env, tmp_path / "serve.log") as gateway:
        await gateway.logged("Uvicorn running on", timeout_s=90)
        body = json.dumps(
            {"query": PAY, "variables": {"input": {"accountId": account, "amount": "10.00"}}}
        ).encode()
        stuck = Held(port, body, asyncio.Event())  # never released
        task = asyncio.create_task(stuck.run())
        try:
            await until(stuck.sent_head.is_set, "sent")
            await until(stuck.read_by_server, "read by the gateway")
            gateway.process.send_signal(signal.SIGTERM)
            stopping = time.monotonic()
            code = await gateway.exit_code(30)
            took = time.monotonic() - stopping
        finally:
            task.cancel()
    assert code == 0, gateway.output()
    assert took < 15, took
    assert "timeout graceful shutdown exceeded" in gateway.output()
    assert await payments_of(api.engine) == (0, Decimal(0))


# ---------------------------------------------------------------- the worker


@dataclass
class SlowHook:
    """A webhook receiver on a loopback port that records each delivery's id as soon as
    it arrives and answers 200 only once ``release`` is set."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    received: list[str] = field(default_factory=list)
    url: str = ""

    async def endpoint(self, request: Request) -> Response:
        self.received.append(request.headers["x-accountgraph-delivery"])
        await request.body()
        await self.release.wait()
        return Response(status_code=200)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hook", self.endpoint, methods=["POST"])])


@contextlib.asynccontextmanager
async def slow_hook() -> AsyncIterator[SlowHook]:
    hook = SlowHook()
    async with serving(hook.app()) as url:
        hook.url = f"{url}/hook"
        try:
            yield hook
        finally:
            hook.release.set()


async def deliveries(engine: AsyncEngine) -> list[tuple[Any, ...]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT notification_id, status, attempts FROM deliveries ORDER BY 1")
        )
        return [tuple(row) for row in rows]


async def notification_ids(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT id FROM notifications ORDER BY id"))
        return [str(row[0]) for row in rows]


async def outbox_left(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        left = await conn.execute(text("SELECT count(*) FROM outbox WHERE done_at IS NULL"))
        return int(left.scalar_one())


async def outbox_done(engine: AsyncEngine) -> bool:
    return await outbox_left(engine) == 0


async def test_a_stopping_worker_finishes_its_running_jobs_and_takes_no_new_ones(
    api: Api, settings: Settings, tmp_path: Path
) -> None:
    async with slow_hook() as hook:
        accounts = [await watched(api, f"Hooked {n}", webhook_url=hook.url) for n in range(5)]
        env = environment(settings, ACCOUNTGRAPH_SHUTDOWN_GRACE_S="60")
        async with started(["worker"], env, tmp_path / "worker-1.log") as first:
            for account in accounts[:4]:
                await charge(api, account, "60.00")
            await until(lambda: len(hook.received) == 4, "4 webhooks in flight", timeout_s=60)

            # and the charges' other jobs (quota changes, alerts) done: only the 4 run on
            async def only_the_webhooks_left() -> bool:
                return await outbox_left(api.engine) == 4

            await until(only_the_webhooks_left, "only the 4 webhooks' jobs left", timeout_s=30)

            first.process.send_signal(signal.SIGTERM)
            # (4, or more if a cron sweep started at that minute: "4" would then never come)
            await first.logged("stopping: waiting up to 60 s for ")
            waiting = re.search(r"waiting up to 60 s for (\d+) running job", first.output())
            assert waiting is not None and int(waiting[1]) >= 4, first.output()
            # a charge after the SIGTERM: its jobs are left to the next worker
            await charge(api, accounts[4], "60.00")
            hook.release.set()
            assert await first.exit_code(30) == 0, first.output()
        assert sorted(hook.received) == sorted(await notification_ids(api.engine))
        assert [row[1:] for row in await deliveries(api.engine)] == [("SENT", 1)] * 4
        assert not await outbox_done(api.engine)  # the fifth charge's work waits

        async with started(["worker"], env, tmp_path / "worker-2.log") as second:
            await until(lambda: outbox_done(api.engine), "the rest done", timeout_s=60)
            second.process.send_signal(signal.SIGTERM)
            assert await second.exit_code(30) == 0, second.output()

    # then: each notification delivered once, no job lost and none run twice
    ids = await notification_ids(api.engine)
    assert len(ids) == 5
    assert Counter(hook.received) == Counter(ids)
    assert [row[1:] for row in await deliveries(api.engine)] == [("SENT", 1)] * 5


async def test_jobs_still_running_after_the_grace_go_back_to_the_queue(
    api: Api, settings: Settings, tmp_path: Path
) -> None:
    """Past ACCOUNTGRAPH_SHUTDOWN_GRACE_S the running jobs are cancelled: their
    transactions roll back and arq puts them back in the queue at once, where the next
    worker finds them. A webhook cut mid-way is sent again with the same delivery id
    (at least once; the receiver drops the copy), and recorded once."""
    async with slow_hook() as hook:
        accounts = [await watched(api, f"Cut {n}", webhook_url=hook.url) for n in range(3)]
        env = environment(settings, ACCOUNTGRAPH_SHUTDOWN_GRACE_S="1")
        async with started(["worker"], env, tmp_path / "worker-1.log") as first:
            for account in accounts:
                await charge(api, account, "60.00")
            await until(lambda: len(hook.received) == 3, "3 webhooks in flight", timeout_s=60)
            first.process.send_signal(signal.SIGTERM)
            assert await first.exit_code(30) == 0, first.output()
        assert [row[1:] for row in await deliveries(api.engine)] == [("PENDING", 0)] * 3

        hook.release.set()
        async with started(["worker"], env, tmp_path / "worker-2.log") as second:
            await until(lambda: outbox_done(api.engine), "the jobs done again", timeout_s=60)
            second.process.send_signal(signal.SIGTERM)
            assert await second.exit_code(30) == 0, second.output()

    ids = await notification_ids(api.engine)
    assert len(ids) == 3
    assert Counter(hook.received) == Counter({notification: 2 for notification in ids})
    assert [row[1:] for row in await deliveries(api.engine)] == [("SENT", 1)] * 3


# ---------------------------------------------------------------- two gateways starting

MIGRATION_LOCK = 727274  # the advisory lock src/accountgraph/migrations/env.py migrates under
SETTINGS_QUERY = "{ settings { billingHierarchyEnabled } }"


async def waiting_for_the_lock(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        found = await conn.execute(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND objid = :key AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())"
            ),
            {"key": MIGRATION_LOCK},
        )
        return int(found.scalar_one())


async def test_two_gateways_starting_at_once_on_an_empty_database_migrate_it_once(
    settings: Settings, server_url: str, tmp_path: Path
) -> None:
    """``accountgraph serve`` migrates at start (the default), as production starts it.
    Two started together on an empty database: one migrates, the other waits on the
    migration lock and then finds the schema at head; both become ready and answer.

    So that the two surely reach the migration together (not one after the other by
    chance of the machine's load), the test holds the lock while they start and lets go
    once both wait on it."""
    async with new_database(server_url, "accountgraph_start", migrate=False) as url:
        engine = make_engine(url, pool_size=2)
        try:
            ports = [free_port(), free_port()]
            env = environment(settings, DATABASE_URL=url)
            async with contextlib.AsyncExitStack() as stack:
                holder = await stack.enter_async_context(engine.connect())
                await holder.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
                gateways = [
                    await stack.enter_async_context(
                        started(
                            ["serve", "--no-worker", "--port", str(port)],
                            env,
                            tmp_path / f"serve-{port}.log",
                        )
                    )
                    for port in ports
                ]

                async def both_waiting() -> bool:
                    for gateway in gateways:
                        assert gateway.process.poll() is None, gateway.output()
                    return await waiting_for_the_lock(engine) == 2

                await until(both_waiting, "both gateways wait on the migration lock", 60)
                await holder.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK}
                )
                await holder.close()

                async def ready() -> bool:
                    answers = []
                    for gateway, port in zip(gateways, ports, strict=True):
                        assert gateway.process.poll() is None, gateway.output()
                        try:
                            async with httpx.AsyncClient(timeout=5) as http:
                                answer = await http.get(f"http://127.0.0.1:{port}/readyz")
                                answers.append(answer.status_code == 200)
                        except httpx.HTTPError:
                            answers.append(False)
                    return all(answers)

                await until(ready, "both gateways ready", 60)

                headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
                for port in ports:
                    async with httpx.AsyncClient(timeout=10, headers=headers) as http:
                        answer = await http.post(
                            f"http://127.0.0.1:{port}/graphql", json={"query": SETTINGS_QUERY}
                        )
                    assert answer.status_code == 200, answer.text
                    assert "errors" not in answer.json(), answer.text
                    assert answer.json()["data"] == {"settings": {"billingHierarchyEnabled": True}}

                for gateway in gateways:
                    gateway.process.send_signal(signal.SIGTERM)
                for gateway in gateways:
                    assert await gateway.exit_code(30) == 0, gateway.output()
                    assert "Traceback" not in gateway.output(), gateway.output()

            head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
            async with engine.connect() as conn:
                versions = await conn.execute(text("SELECT version_num FROM alembic_version"))
                settings_rows = await conn.execute(text("SELECT count(*) FROM platform_settings"))
                assert [row[0] for row in versions] == [head]
                assert settings_rows.scalar_one() == 1  # the seed row: inserted once
        finally:
            await engine.dispose()
