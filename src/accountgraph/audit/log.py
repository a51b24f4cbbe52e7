"""The audit log's rules: what a row holds (secrets removed), writing it, who sees it
(P1-P4), reading a page of it, and the retention purge.

A row is written once per mutation, in its own transaction after the mutation's, with
one INSERT; it is never changed. Visibility follows the acting account: operators see
every row; an account's users see the rows of their own account's principals and of the
members they see (``sees_details``: a master's ACTIVE members, from the time they joined),
so a member's users see only their own, and no account sees what operators did.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import ColumnElement, Row, and_, exists, func, literal, or_, select, text, true
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from accountgraph.accounts.public import active_associations, sees_details
from accountgraph.audit.models import PURGE_SETTING, audit_log
from accountgraph.domain import Principal

REDACTED = "[REDACTED]"
# Input fields whose value is a credential, by the words of their name (camelCase or
# snake_case): token values, passwords, webhook and SMTP secrets, keys, card data.
SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "credential",
        "credentials",
        "pin",
        "cvc",
        "cvv",
        "otp",
        "authorization",
    }
)
SECRET_WORDS = SECRET_WORDS | {word + "s" for word in SECRET_WORDS}
SECRET_NAMES = frozenset({"cardnumber", "cardnumbers"})
# ``<something>Key`` (apiKey, privateKey, signingKey) is a credential, but not a client's
# retry key (idempotencyKey) nor a plain ``key`` (a cost tag's).
NOT_SECRET_KEYS = frozenset({"idempotency"})
_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
MIN_RETENTION_DAYS = 30
# The API refuses longer list inputs (INVALID_INPUT); a row keeps at most this many items.
MAX_LIST_ITEMS = 500
PURGE_BATCH = 10_000
# Built once (stable names let SQLAlchemy cache the statements).
_ASSOCIATION = active_associations("audit_association")


NUL_SHOWN = "\u2400"


def _words(name: str) -> list[str]:
    return [word.lower() for word in _WORD.findall(name)]


def is_secret(name: str) -> bool:
    """Whether an input field of this name holds a credential (its value is dropped)."""
    words = _words(name)
    if SECRET_WORDS.intersection(words) or "".join(words) in SECRET_NAMES:
        return True
    return len(words) > 1 and words[-1] in ("key", "keys") and words[0] not in NOT_SECRET_KEYS


def is_url(name: str) -> bool:
    """Whether an input field of this name holds a URL: it may carry a credential in its
    user info, path or query (a webhook URL often is one), so only scheme and host are
    kept."""
    words = _words(name)
    return bool(words) and words[-1] in ("url", "uri", "endpoint")


def _url_without_secrets(value: str) -> str:
    try:
        parts = urlsplit(value)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return REDACTED
    if not parts.scheme or not host:
        return REDACTED
    shown = f"{parts.scheme}://{host}" + (f":{port}" if port else "")
    return shown + ("/" + REDACTED if (parts.path.strip("/") or parts.query) else "")


def redact(value: Any, name: str = "") -> Any:
    """``value`` (a mutation's input, with GraphQL field names) as JSON-ready data, with
    the values of secret fields replaced and URLs cut to scheme and host."""
    if isinstance(value, Mapping):
        return {str(key): redact(item, str(key)) for key, item in value.items()}
    if name and is_secret(name) and value is not None:
        return REDACTED
    if isinstance(value, (list, tuple)):
        kept = [redact(item, name) for item in value[:MAX_LIST_ITEMS]]
        if len(value) > MAX_LIST_ITEMS:  # refused as INVALID_INPUT anyway; the row stays small
            kept.append(f"[{len(value) - MAX_LIST_ITEMS} more]")
        return kept
    if name and is_url(name) and isinstance(value, str):
        return _url_without_secrets(value)
    return _jsonable(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, str):  # JSONB cannot hold NUL: the row shows it as U+2400 (␀)
        return value.replace("\x00", NUL_SHOWN)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, (Decimal, datetime, date)):
        return str(value) if isinstance(value, Decimal) else value.isoformat()
    if hasattr(value, "__dict__"):  # an input object
        return {key: _jsonable(item) for key, item in vars(value).items()}
    return str(value)


@dataclass(frozen=True, slots=True)
class Entry:
    """One mutation, as its audit row records it."""

    principal: Principal
    field: str
    outcome: str
    input: dict[str, Any]
    request_id: str
    operation_name: str | None = None
    error_codes: Sequence[str] = ()
    object_ids: Sequence[str] = ()
    client_address: str | None = None
    token_id: str | None = None
    token_name: str | None = None


def token_name_of(principal: Principal) -> str | None:
    """The token's name from the principal's actor (``<account or operator>:<name>``)."""
    _, colon, name = principal.actor.rpartition(":")
    return name if colon else None


async def record(engine: AsyncEngine, entry: Entry) -> None:
    """Write ``entry`` in a transaction of its own: one INSERT, autocommitted (one round
    trip, on a connection of its own, after the mutation's transaction ended)."""
    principal = entry.principal
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(
            audit_log.insert().values(
                principal_kind=principal.kind.value,
                account_id=principal.account_id,
                token_id=entry.token_id,
                token_name=(entry.token_name or token_name_of(principal) or "")[:200] or None,
                operation_name=(entry.operation_name or "")[:200] or None,
                field=entry.field[:100],
                outcome=entry.outcome,
                error_codes=list(entry.error_codes),
                input=entry.input,
                object_ids=list(entry.object_ids),
                request_id=entry.request_id[:128],
                client_address=(entry.client_address or "")[:100] or None,
            )
        )


def visible(principal: Principal) -> ColumnElement[bool]:
    """P1-P4: the rows a principal sees: those of the accounts it sees in full
    (``sees_details``: its own, a master's ACTIVE members), a member's only from the time
    its link became ACTIVE (what it did before it joined is not the enterprise's)."""
    if principal.is_operator:
        return true()
    me = principal.account_id
    acting = audit_log.c.account_id
    since_joined = exists(
        select(literal(1))
        .select_from(_ASSOCIATION)
        .where(
            _ASSOCIATION.c.master_id == me,
            _ASSOCIATION.c.member_id == acting,
            audit_log.c.at >= _ASSOCIATION.c.activated_at,
        )
    )
    return and_(
        acting.is_not(None), sees_details(principal, acting), or_(acting == me, since_joined)
    )


@dataclass(frozen=True, slots=True)
class Filters:
    """``Query.auditLog``'s filters; ``account`` is the row id and global id of an
    account: its principals' rows and the rows that name it among their objects."""

    account: tuple[int, str] | None = None
    since: datetime | None = None
    until: datetime | None = None
    field: str | None = None
    outcome: str | None = None


def _conditions(principal: Principal, filters: Filters) -> list[ColumnElement[bool]]:
    found = [visible(principal)]
    if filters.account is not None:
        row_id, global_id = filters.account
        found.append(or_(audit_log.c.account_id == row_id, audit_log.c.object_ids.any(global_id)))
    if filters.since is not None:
        found.append(audit_log.c.at >= filters.since)
    if filters.until is not None:
        found.append(audit_log.c.at < filters.until)
    if filters.field is not None:
        found.append(audit_log.c.field == filters.field)
    if filters.outcome is not None:
        found.append(audit_log.c.outcome == filters.outcome)
    return found


async def page(
    conn: AsyncConnection,
    principal: Principal,
    filters: Filters,
    *,
    limit: int,
    after: int | None,
) -> tuple[list[Row[Any]], int]:
    """Up to ``limit + 1`` visible rows, newest first, older than the cursor ``after``;
    and how many rows the filters match in all."""
    conditions = _conditions(principal, filters)
    query = select(audit_log).where(*conditions)
    if after is not None:
        query = query.where(audit_log.c.id < after)
    rows = list((await conn.execute(query.order_by(audit_log.c.id.desc()).limit(limit + 1))).all())
    counted = select(func.count()).select_from(audit_log).where(*conditions)
    total = (await conn.execute(counted)).scalar_one()
    return rows, int(total)


async def entries_by_id(
    conn: AsyncConnection, principal: Principal, row_ids: Sequence[int]
) -> dict[int, Row[Any]]:
    """The visible rows among ``row_ids`` (``node(id)``)."""
    rows = await conn.execute(
        select(audit_log).where(audit_log.c.id.in_(list(row_ids)), visible(principal))
    )
    return {row.id: row for row in rows}


async def purge(conn: AsyncConnection, *, retention_days: int) -> int:
    """Delete the rows older than ``retention_days`` (at least ``MIN_RETENTION_DAYS``), in
    batches; returns how many. The append-only trigger lets these DELETEs through only
    because this transaction sets ``accountgraph.audit_retention_days`` (SET LOCAL), and
    only for rows older than that: nothing younger can be purged, by this or anyone."""
    if retention_days < MIN_RETENTION_DAYS:
        raise ValueError(f"audit retention must be at least {MIN_RETENTION_DAYS} days")
    await conn.execute(
        select(func.set_config(PURGE_SETTING, str(retention_days), True))  # SET LOCAL
    )
    purged = 0
    while True:
        deleted = await conn.execute(
            text(
                "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log"
                " WHERE at < now() - make_interval(days => :days) ORDER BY id LIMIT :batch)"
            ),
            {"days": retention_days, "batch": PURGE_BATCH},
        )
        purged += deleted.rowcount
        if deleted.rowcount < PURGE_BATCH:
            return purged


__all__ = [
    "MIN_RETENTION_DAYS",
    "REDACTED",
    "Entry",
    "Filters",
    "entries_by_id",
    "is_secret",
    "is_url",
    "page",
    "purge",
    "record",
    "redact",
    "token_name_of",
    "visible",
]
