"""The load client, in its own process: one keep-alive connection per concurrent client.

Reads a JSON spec on stdin, prints a JSON result on stdout. A *unit* is the list of
requests in ``bodies`` posted one after the other (e.g. the two pages of a tree); the
client measures units.

    spec = {"url": "http://127.0.0.1:8000/graphql", "headers": {...},
            "bodies": [{"query": ..., "variables": ...}, ...],
            "concurrency": 4, "seconds": 5.0, "warmup": 2, "units": null,
            "expect": "a regular expression every response must match"}

``"urls": [...]`` (instead of ``url``) spreads the clients over several gateways: client
``n`` talks to ``urls[n % len(urls)]``. ``units`` (when set) runs that many units per
client instead of ``seconds``. With
``"each": true`` a unit is one request instead, the bodies taken in turn (each client
starting at its own offset), e.g. allocations to different members. The result
has every unit's latency (seconds), the units per second over the timed part, the
errors by kind (HTTP status other than 200, ``"errors"`` in the answer, a missing
``expect``, transport errors) and the last unit's responses (for verification).

    .venv/bin/python -m bench.client < spec.json
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections import Counter
from typing import Any

import httpx


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    urls: list[str] = spec.get("urls") or [spec["url"]]
    bodies = [json.dumps(body).encode() for body in spec["bodies"]]
    headers = {"Content-Type": "application/json", **spec.get("headers", {})}
    concurrency = int(spec.get("concurrency", 1))
    seconds = float(spec.get("seconds", 5.0))
    units = spec.get("units")
    warmup = int(spec.get("warmup", 1))
    expect = re.compile(spec["expect"].encode()) if spec.get("expect") else None
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    last: list[str] = []

    each = bool(spec.get("each", False))

    async def unit(http: httpx.AsyncClient, turn: int, url: str) -> list[bytes] | None:
        answers = []
        for body in [bodies[turn % len(bodies)]] if each else bodies:
            try:
                response = await http.post(url, content=body, headers=headers)
            except httpx.HTTPError as error:
                errors[type(error).__name__] += 1
                return None
            if response.status_code != 200:
                errors[f"HTTP {response.status_code}"] += 1
                return None
            content = response.content
            if b'"errors"' in content:
                errors["GraphQL errors"] += 1
                return None
            if expect is not None and expect.search(content) is None:
                errors["unexpected answer"] += 1
                return None
            answers.append(content)
        return answers

    start_gate = asyncio.Event()
    all_warm = asyncio.Event()
    warm = 0
    deadline = 0.0

    async def client(number: int) -> None:
        nonlocal last, warm
        turn = number * 7
        url = urls[number % len(urls)]
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(timeout=120, trust_env=False, limits=limits) as http:
            for _ in range(warmup):
                turn += 1
                await unit(http, turn, url)
            warm += 1
            if warm == concurrency:
                all_warm.set()
            await start_gate.wait()
            done = 0
            while (units is not None and done < units) or (
                units is None and time.perf_counter() < deadline
            ):
                started = time.perf_counter()
                turn += 1
                answers = await unit(http, turn, url)
                if answers is not None:
                    latencies.append(time.perf_counter() - started)
                    last = [answer.decode() for answer in answers]
                done += 1

    tasks = [asyncio.create_task(client(number)) for number in range(concurrency)]
    await all_warm.wait()  # warm-up units are not measured; the clock starts for all at once
    started = time.perf_counter()
    deadline = started + seconds
    start_gate.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "elapsed": elapsed,
        "units": len(latencies),
        "per_second": len(latencies) / elapsed if elapsed > 0 else 0.0,
        "latencies": latencies,
        "errors": dict(errors),
        "last": last,
    }


def main() -> int:
    spec = json.loads(sys.stdin.read())
    result = asyncio.run(run(spec))
    sys.stdout.write(json.dumps(result))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
