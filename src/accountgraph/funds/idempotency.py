"""F10: the same key with the same input replays the first result; with another input it
is IDEMPOTENCY_CONFLICT. Keys are scoped to the caller and kept at least 24 hours.

The key row is claimed first in the operation's own transaction: a concurrent request
with the same key waits on the primary key until the first commits (then replays) or
rolls back (then runs itself), so two requests never both take effect.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.domain import DomainError, ErrorCode, Principal
from accountgraph.funds.models import idempotency_keys

MAX_KEY = 200
KEEP = timedelta(hours=48)

Result = dict[str, Any]


def scope_of(principal: Principal) -> str:
    return "operator" if principal.is_operator else f"account:{principal.account_id}"


def request_hash(operation: str, input: Mapping[str, Any]) -> str:
    canonical = json.dumps({"operation": operation, "input": input}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def once(
    conn: AsyncConnection,
    principal: Principal,
    key: str | None,
    operation: str,
    input: Mapping[str, Any],
    work: Callable[[], Awaitable[Result]],
) -> Result:
    """Run ``work`` unless this caller already ran this key; returns the (first) result."""
    if key is None:
        return await work()
    if not 0 < len(key) <= MAX_KEY or "\x00" in key:  # PostgreSQL text cannot hold NUL
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"An idempotency key has 1 to {MAX_KEY} characters (no NUL).",
            ["idempotencyKey"],
        )
    scope, digest = scope_of(principal), request_hash(operation, input)
    claimed = (
        await conn.execute(
            pg_insert(idempotency_keys)
            .values(scope=scope, key=key, request_hash=digest)
            .on_conflict_do_nothing()
            .returning(idempotency_keys.c.key)
        )
    ).scalar_one_or_none()
    if claimed is None:
        first = (
            await conn.execute(
                select(idempotency_keys.c.request_hash, idempotency_keys.c.result).where(
                    idempotency_keys.c.scope == scope, idempotency_keys.c.key == key
                )
            )
        ).one()
        if first.request_hash != digest:
            raise DomainError(
                ErrorCode.IDEMPOTENCY_CONFLICT,
                "This key was used with a different input.",
                ["idempotencyKey"],
            )
        replayed: Result = dict(first.result)
        return replayed
    result = await work()
    await conn.execute(
        update(idempotency_keys)
        .where(idempotency_keys.c.scope == scope, idempotency_keys.c.key == key)
        .values(result=result)
    )
    return result


async def purge(conn: AsyncConnection) -> int:
    """Forget keys older than KEEP (48 h, so every key lives at least the promised 24 h)."""
    result = await conn.execute(
        delete(idempotency_keys).where(idempotency_keys.c.created_at < func.now() - KEEP)
    )
    return int(result.rowcount)
