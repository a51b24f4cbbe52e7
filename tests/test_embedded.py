"""The embedded servers (no DATABASE_URL / REDIS_URL): a second command in the same state
directory leaves them running, and SIGTERM to `serve` stops them (issue 19, item 1)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from tests.conftest import free_port

COMMAND = [sys.executable, "-m", "accountgraph.cli"]


def embedded_env(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["ACCOUNTGRAPH_STATE_DIR"] = str(state)
    return env


def servers_of(state: Path) -> list[psutil.Process]:
    """The PostgreSQL and Redis processes working in ``state``."""
    found = []
    for process in psutil.process_iter(["cmdline", "cwd"]):
        try:
            text = " ".join(process.info["cmdline"] or []) + " " + (process.info["cwd"] or "")
        except (psutil.Error, TypeError):
            continue
        if str(state) in text and process.pid != os.getpid():
            found.append(process)
    return found


def ready(url: str) -> int | None:
    try:
        return httpx.get(f"{url}/readyz", timeout=5).status_code
    except httpx.HTTPError:
        return None


def test_a_second_command_leaves_the_servers_running_and_sigterm_stops_them(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        serve = subprocess.Popen(
            [*COMMAND, "serve", "--port", str(port)],
            env=embedded_env(state),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while ready(url) != 200:
            assert serve.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)

        # when: a second command attaches to the same servers and exits
        created = subprocess.run(
            [*COMMAND, "token", "create", "--name", "beside"],
            env=embedded_env(state),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert created.returncode == 0, created.stderr[-3000:]
        assert "agt_" in created.stdout
        # issue 19, item 5: a one-line answer, not 44-47 lines of servers' and migrations' logs
        assert len(created.stdout.strip().splitlines()) <= 3, created.stdout
        assert created.stderr.count("\n") <= 2, created.stderr

        # then: the running server still has its PostgreSQL and Redis
        time.sleep(1)
        assert ready(url) == 200, log.read_text()[-3000:]
        answer = httpx.post(f"{url}/graphql", json={"query": "{ __typename }"}, timeout=10)
        assert answer.json()["data"] == {"__typename": "Query"}
        assert servers_of(state), "the embedded servers are not where they were started"
    finally:
        # when: SIGTERM, as Docker, systemd and process managers stop a service
        serve.send_signal(signal.SIGTERM)
        code = serve.wait(60)

    # then: it stopped what it started
    assert code == 0, log.read_text()[-3000:]
    deadline = time.monotonic() + 20
    while servers_of(state) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert servers_of(state) == [], [p.info for p in servers_of(state)]


def wait_ready(serve: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 120
    while ready(url) != 200:
        assert serve.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.5)


def test_after_sigkill_the_next_start_owns_the_orphans_and_stops_them(tmp_path: Path) -> None:
    state = tmp_path / "state"
    url = f"http://127.0.0.1:{free_port()}"
    port = url.rsplit(":", 1)[1]
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    with first_log.open("wb") as out:
        first = subprocess.Popen(
            [*COMMAND, "serve", "--port", port],
            env=embedded_env(state),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_ready(first, url, first_log)
    finally:
        # when: the gateway dies without a chance to stop anything
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    orphans = servers_of(state)
    assert orphans, "no PostgreSQL or Redis was left to clean up: nothing tested"

    with second_log.open("wb") as out:
        second = subprocess.Popen(
            [*COMMAND, "serve", "--port", port],
            env=embedded_env(state),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        # then: the next start works on the same state (the tokens' database is there)
        wait_ready(second, url, second_log)
        answer = httpx.post(f"{url}/graphql", json={"query": "{ __typename }"}, timeout=10)
        assert answer.json()["data"] == {"__typename": "Query"}
    finally:
        second.send_signal(signal.SIGTERM)
        code = second.wait(60)
    text = second_log.read_text()
    assert code == 0, text[-3000:]
    assert "left running by" in text  # it said what it found
    assert f"state (and tokens): {state.resolve()}" in text  # the banner names the folder

    # and: neither the orphans nor the servers it used are left
    deadline = time.monotonic() + 20
    while servers_of(state) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert servers_of(state) == [], [p.info for p in servers_of(state)]
    assert not any(alive(process) for process in orphans)


def alive(process: psutil.Process) -> bool:
    """Running, not a zombie that init has yet to reap."""
    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
