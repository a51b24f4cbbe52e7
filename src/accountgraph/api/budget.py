"""The per-principal budget of query cost per minute: a token bucket in Redis, shared by
every gateway replica, failing open when Redis does not answer in time."""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

REDIS_TIMEOUT_S = 0.5
BUCKET_KEY = "accountgraph:cost:"

# A token bucket per principal: holds up to ``capacity`` (the budget per minute), refills
# at capacity / 60 per second, a request takes its cost or is refused taking nothing; with
# ``debt`` (what a refused document costs) it is taken anyway, down to -capacity, and the
# client waits until the bucket has refilled.
# Redis's clock, so every gateway replica agrees. Returns {allowed, tokens left}.
BUCKET_SCRIPT = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local allowed = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
elseif ARGV[4] == '1' then
  tokens = math.max(-capacity, tokens - cost)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 1)
return {allowed, tostring(tokens)}
"""


@dataclass(frozen=True)
class Throttle:
    allowed: bool
    available: float
    capacity: int
    per_second: float

    def status(self) -> dict[str, Any]:
        return {
            "maximumAvailable": self.capacity,
            "currentlyAvailable": math.floor(self.available),
            "restoreRate": round(self.per_second, 3),
        }

    def retry_after_s(self, cost: int) -> int:
        return max(1, math.ceil((cost - self.available) / self.per_second))


async def take(
    redis: Any, principal_key: str, cost: int, per_minute: int, *, debt: bool = False
) -> Throttle | None:
    """Take ``cost`` from the principal's bucket; ``None`` when Redis does not answer in
    time (the caller lets the request through: fail open)."""
    per_second = per_minute / 60
    try:
        script = redis.register_script(BUCKET_SCRIPT)
        allowed, available = await asyncio.wait_for(
            script(
                keys=[BUCKET_KEY + principal_key],
                args=[per_minute, per_second, cost, "1" if debt else "0"],
            ),
            REDIS_TIMEOUT_S,
        )
    except Exception as error:  # Redis down or slow: serve, unmetered
        log.warning("rate limit not checked (failing open): %s", error)
        return None
    left = float(available.decode() if isinstance(available, bytes) else available)
    return Throttle(bool(allowed), left, per_minute, per_second)


def principal_key(context: Any) -> str:
    """Whose budget: the account (all its tokens share it), the operators, or an
    anonymous client by address (the peer's, or from X-Forwarded-For only when the peer is
    one of ``ACCOUNTGRAPH_TRUSTED_PROXIES``)."""
    principal = getattr(context, "principal", None)
    if principal is not None:
        return str(principal.key)
    request = getattr(context, "request", None)
    client = getattr(request, "client", None)
    return f"anonymous:{client.host if client is not None else 'unknown'}"


async def charge(context: Any, cost: int, *, debt: bool = False) -> Throttle | None:
    """Take ``cost`` from the bucket of the request's principal (``context`` is the
    GraphQL context); ``None`` when nothing is metered (no budget per minute set, no
    Redis) or Redis does not answer in time."""
    settings = getattr(context, "settings", None)
    per_minute = int(getattr(settings, "rate_limit_cost_per_minute", 0))
    redis = getattr(context, "redis", None)
    if per_minute <= 0 or redis is None:
        return None
    return await take(redis, principal_key(context), cost, per_minute, debt=debt)


__all__ = ["BUCKET_KEY", "Throttle", "charge", "principal_key", "take"]
