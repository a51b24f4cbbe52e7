"""Servers as production starts them, each in its own process, for the benchmarks.

``gateway()`` runs ``accountgraph serve --workers N --no-worker --no-migrate`` (the
command a deployment runs) against the bench's database and Redis; ``worker()`` runs
``accountgraph worker``; ``load()`` runs ``bench.client`` (or ``bench.charge_client``) in a
process of its own, so the client's work never shares a core's event loop with the
server's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

BASE_ENV = {
    "ACCOUNTGRAPH_GRAPHIQL": "false",
    "ACCOUNTGRAPH_RATE_LIMIT_COST_PER_MINUTE": "0",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    async with httpx.AsyncClient(timeout=2, trust_env=False) as probe:
        deadline = time.monotonic() + 90
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await probe.get(url)).status_code == 200:
                    return
            if process.poll() is not None or time.monotonic() > deadline:
                output = await asyncio.to_thread(log.read_text)
                raise RuntimeError(f"{url} did not come up:\n{output[-3000:]}")
            await asyncio.sleep(0.1)


async def _stop(process: subprocess.Popen[bytes], *, interrupt: bool = False) -> None:
    """SIGTERM (SIGINT for py-spy, which writes its profile then)."""
    if interrupt:
        process.send_signal(signal.SIGINT)
    else:
        process.terminate()
    try:
        await asyncio.to_thread(process.wait, 30)
    except subprocess.TimeoutExpired:
        process.kill()
        await asyncio.to_thread(process.wait, 10)


def _env(database_url: str, redis_url: str, extra: dict[str, str] | None) -> dict[str, str]:
    return {
        **os.environ,
        **BASE_ENV,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        **(extra or {}),
    }


@contextlib.asynccontextmanager
async def gateway(
    database_url: str,
    redis_url: str,
    log: Path,
    *,
    workers: int = 2,
    env: dict[str, str] | None = None,
    profile: Path | None = None,
    started: list[subprocess.Popen[bytes]] | None = None,
) -> AsyncIterator[str]:
    """The gateway's base URL while ``accountgraph serve --workers N`` runs.

    ``profile``: run it under py-spy (``record``, raw stack counts written there) when
    py-spy is installed. ``started``: the child is appended to it (for its pid)."""
    port = free_port()
    command = [sys.executable, "-m", "accountgraph.cli", "--log-level", "WARNING", "serve"]
    command += ["--workers", str(workers), "--no-worker", "--no-migrate", "--port", str(port)]
    if profile is not None:
        gateway_command = command
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        command = [spy, "record", "--subprocesses", "--format", "raw", "--rate", "250"]
        command += ["-o", str(profile), "--", *gateway_command]
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: ASYNC220 - one child, stopped below
            command,
            env=_env(database_url, redis_url, env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if started is not None:
        started.append(process)
    base = f"http://127.0.0.1:{port}"
    try:
        await _wait_ready(f"{base}/readyz", process, log)
        yield base
    finally:
        await _stop(process, interrupt=profile is not None)


@contextlib.asynccontextmanager
async def worker(
    database_url: str, redis_url: str, log: Path, *, env: dict[str, str] | None = None
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """``accountgraph worker`` (the arq worker and the outbox relay) in a child."""
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: ASYNC220 - one child, stopped below
            [sys.executable, "-m", "accountgraph.cli", "--log-level", "WARNING", "worker"],
            env=_env(database_url, redis_url, env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        await _stop(process)


async def load(spec: dict[str, Any], module: str = "bench.client") -> dict[str, Any]:
    """``bench.client`` (or another client ``module``, e.g. ``bench.charge_client``) in its
    own process with ``spec``; its JSON result."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate(json.dumps(spec).encode())
    if process.returncode != 0:
        raise RuntimeError(f"{module} failed ({process.returncode}):\n{err.decode()[-3000:]}")
    result: dict[str, Any] = json.loads(out)
    return result


def median_ms(seconds: list[float]) -> float:
    ordered = sorted(seconds)
    if not ordered:
        return float("nan")
    middle = len(ordered) // 2
    value = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return value * 1000


def p95_ms(seconds: list[float]) -> float:
    ordered = sorted(seconds)
    if not ordered:
        return float("nan")
    return ordered[max(0, -(-95 * len(ordered) // 100) - 1)] * 1000


def print_profile(path: Path, top: int = 30) -> None:
    """The top of a py-spy raw profile (collapsed stacks): self and total samples per
    function, over every gateway process."""
    if not path.exists():
        print(f"\nno profile at {path} (is py-spy installed, may it attach?)")
        return
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        frames = [frame.split(" (")[0] + " (" + frame.split(" (")[-1] for frame in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            total[frame] = total.get(frame, 0) + count
    print(f"\npy-spy over the gateway processes: {samples:,} samples")
    print("  self %  function (file:line)")
    for frame, count in sorted(own.items(), key=lambda item: -item[1])[:top]:
        print(f"  {100 * count / samples:5.1f}  {frame}")
    print("  total %  (accountgraph frames)")
    ours = [(f, c) for f, c in total.items() if "accountgraph" in f]
    for frame, count in sorted(ours, key=lambda item: -item[1])[:top]:
        print(f"  {100 * count / samples:5.1f}  {frame}")
