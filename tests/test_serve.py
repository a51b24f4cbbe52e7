"""`accountgraph serve --workers N`: N uvicorn processes serving one app, stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port


async def test_serve_with_two_workers_answers_from_two_processes(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url}
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: ASYNC220 - one child, waited for below
            [
                *(sys.executable, "-m", "accountgraph.cli", "serve", "--workers", "2"),
                *("--no-worker", "--no-migrate", "--port", str(port)),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            deadline = time.monotonic() + 60
            started: set[str] = set()
            while len(started) < 2:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                started = set(re.findall(r"Started server process \[(\d+)\]", log.read_text()))
                await asyncio.sleep(0.2)
            ready = None
            while ready != 200:
                assert time.monotonic() < deadline, log.read_text()
                try:
                    ready = (await http.get("/readyz")).status_code
                except httpx.HTTPError:
                    await asyncio.sleep(0.2)
            answers = await asyncio.gather(
                *(http.post("/graphql", json={"query": "{ __typename }"}) for _ in range(8))
            )
        assert [answer.json()["data"] for answer in answers] == [{"__typename": "Query"}] * 8
        assert len(started) == 2 and str(process.pid) not in started
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 30)
    assert code == 0, log.read_text()


def test_serve_on_a_port_in_use_says_so_in_one_line_before_starting_anything(
    tmp_path: Path,
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        env["ACCOUNTGRAPH_STATE_DIR"] = str(tmp_path / "state")
        result = subprocess.run(
            [sys.executable, "-m", "accountgraph.cli", "serve", "--demo", "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"accountgraph: 127.0.0.1:{port} is already in use (another accountgraph serve?); "
        f"choose another port with --port {port + 1}"
    ]
    assert "agt_" not in result.stdout  # no demo tokens for a server that never ran
    assert not (tmp_path / "state").exists()  # nothing started, nothing written


@pytest.mark.parametrize(
    ("setting", "value", "says"),
    [
        (
            "DATABASE_URL",
            "postgresql://postgres@127.0.0.1:{port}/x",
            "DATABASE_URL: nothing answers at 127.0.0.1:{port}; is PostgreSQL running there?",
        ),
        (
            "DATABASE_URL",
            "localhost:5432",
            "DATABASE_URL='localhost:5432' is not a postgresql:// URL",
        ),
        (
            "REDIS_URL",
            "redis://127.0.0.1:{port}/0",
            "REDIS_URL: nothing answers at 127.0.0.1:{port}; is Redis running there?",
        ),
        (
            "ACCOUNTGRAPH_STATE_DIR",
            "{file}/state",
            "ACCOUNTGRAPH_STATE_DIR='{file}/state' is not a writable folder",
        ),
    ],
)
def test_a_setup_mistake_is_one_line_naming_the_setting(
    tmp_path: Path, setting: str, value: str, says: str
) -> None:
    port = free_port()  # nothing listens there
    afile = tmp_path / "a-file"
    afile.write_text("not a folder")
    fill = {"port": port, "file": afile}
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["ACCOUNTGRAPH_STATE_DIR"] = str(tmp_path / "state")
    env[setting] = value.format(**fill)
    env["ACCOUNTGRAPH_STARTUP_WAIT_S"] = "0"
    command = "migrate" if setting != "REDIS_URL" else "demo"
    result = subprocess.run(
        [sys.executable, "-m", "accountgraph.cli", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("accountgraph: " + says.format(**fill)), line


def test_the_command_line_tells_its_version() -> None:
    from importlib.metadata import version

    result = subprocess.run(
        [sys.executable, "-m", "accountgraph.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"accountgraph {version('accountgraph')}"


def test_the_preflight_lets_unix_socket_urls_through(tmp_path: Path) -> None:
    """The embedded PostgreSQL's URL names its socket folder in ?host=, no host part."""
    from accountgraph.cli import preflight
    from accountgraph.config import Settings

    settings = Settings(
        DATABASE_URL=f"postgresql+asyncpg://postgres:@/postgres?host={tmp_path}",
        REDIS_URL=f"unix://{tmp_path}/redis.socket",
        ACCOUNTGRAPH_STATE_DIR=tmp_path / "state",
    )
    assert preflight(settings) is None
