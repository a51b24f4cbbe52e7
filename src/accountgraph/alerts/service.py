"""A1-A5: alert settings, evaluation after every quota change, the sweep, notifications.

Evaluation runs in the job of the ``quota.changed`` outbox row that the balance change
committed (A5), under the alert's row lock, against the quota as it is now. A crossing
disarms the alert and counts it; the notification's unique ``dedupe_key`` names the
crossing, so nothing fires twice for one crossing even if a job runs twice.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, and_, func, insert, literal_column, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph import outbox
from accountgraph.accounts import public as accounts
from accountgraph.alerts import webhook_guard
from accountgraph.alerts.models import (
    deliveries,
    notification_channels,
    notifications,
    quota_alerts,
)
from accountgraph.config import Settings
from accountgraph.domain import DomainError, ErrorCode, NotFound, Principal
from accountgraph.funds import public as funds
from accountgraph.funds.public import QUOTA_TOPIC

DELIVER_TOPIC = "notification.deliver"
PUBLISH_TOPIC = "notification.publish"
PUBSUB_CHANNEL = "accountgraph:notifications"
MAX_BATCH = 500
SWEEP_BATCH = 1_000

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# 5 to 15 digits (E.164), with spaces, dashes and parentheses between them.
_PHONE = re.compile(r"^\+?(?:[ ()-]*[0-9]){5,15}[ ()-]*$")


# ---------------------------------------------------------------- settings (A1, A4)


async def set_quota_alerts(
    conn: AsyncConnection,
    principal: Principal,
    *,
    account_ids: Sequence[int | None],
    threshold: Decimal,
    enabled: bool,
) -> tuple[list[int], list[DomainError]]:
    """A1: one threshold for many accounts; refused accounts are reported per index.
    An alert set while the quota is already below the threshold starts disarmed: only a
    crossing from at or above fires (A2)."""
    if len(account_ids) > MAX_BATCH:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"At most {MAX_BATCH} accounts at once.", ["accountIds"]
        )
    changed: list[int] = []
    errors: list[DomainError] = []
    for index, account_id in enumerate(account_ids):
        field = ["accountIds", str(index)]
        try:
            if account_id is None:
                raise NotFound(field, "account")
            await accounts.finance_access(conn, principal, account_id, field)
        except DomainError as error:
            errors.append(error)
            continue
        armed = await funds.available_quota(conn, account_id) >= threshold
        statement = pg_insert(quota_alerts).values(
            account_id=account_id, threshold=threshold, enabled=enabled, armed=armed
        )
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=["account_id"],
                set_={
                    "threshold": threshold,
                    "enabled": enabled,
                    "armed": armed,
                    "updated_at": func.now(),
                },
            )
        )
        changed.append(account_id)
    return changed, errors


async def set_channels(
    conn: AsyncConnection,
    principal: Principal,
    *,
    account_id: int,
    email: str | None,
    phone: str | None,
    webhook_url: str | None,
    settings: Settings,
) -> None:
    """A4: where an account's notifications go; a null clears that channel. A webhook URL
    must pass ``webhook_guard`` (https, no user info, public addresses only; finding 4)."""
    await accounts.finance_access(conn, principal, account_id, ["accountId"])
    email, phone, webhook_url = (_clean(v) for v in (email, phone, webhook_url))
    if email is not None and (len(email) > 320 or not _EMAIL.match(email)):
        raise DomainError(ErrorCode.INVALID_INPUT, "Not an email address.", ["email"])
    if phone is not None and (len(phone) > 32 or not _PHONE.match(phone)):
        raise DomainError(ErrorCode.INVALID_INPUT, "Not a phone number.", ["phone"])
    if webhook_url is not None:
        try:
            await webhook_guard.validate_webhook_url(webhook_url, settings)
        except webhook_guard.WebhookRefused as refused:
            raise DomainError(ErrorCode.INVALID_INPUT, refused.message, ["webhookUrl"]) from None
    values = {"email": email, "phone": phone, "webhook_url": webhook_url}
    await conn.execute(
        pg_insert(notification_channels)
        .values(account_id=account_id, **values)
        .on_conflict_do_update(index_elements=["account_id"], set_=values)
    )


def _clean(value: str | None) -> str | None:
    value = None if value is None else value.strip()
    return value or None


# ---------------------------------------------------------------- evaluation (A2, A3)


async def evaluate(
    conn: AsyncConnection, account_id: int, *, overdue_entry: int | None = None
) -> int | None:
    """A2/A3 for one account under its alert's lock; returns a new notification's id.

    ``overdue_entry``: the journal entry of a charge that took the account from >= 0 to
    < 0 (A3): it fires OVERDUE (once per charge) instead of LOW_QUOTA.
    """
    alert = (
        await conn.execute(
            select(quota_alerts).where(quota_alerts.c.account_id == account_id).with_for_update()
        )
    ).one_or_none()
    if alert is None or not alert.enabled:
        return None
    quota = await funds.available_quota(conn, account_id)
    crossed = alert.armed and quota < alert.threshold
    if (
        crossed
        and overdue_entry is None
        and account_id in await _overdue_pending_of(conn, [account_id])
    ):
        return None  # that charge's job fires OVERDUE for this crossing, and disarms (A3)
    fired = None
    if overdue_entry is not None:
        fired = await _notify(
            conn,
            account_id,
            "OVERDUE",
            quota,
            alert.threshold,
            f"{account_id}:OVERDUE:{overdue_entry}",
        )
    elif crossed:
        fired = await _notify(
            conn,
            account_id,
            "LOW_QUOTA",
            quota,
            alert.threshold,
            _low_quota_key(alert),
        )
    rearmed = not alert.armed and quota >= alert.threshold
    await _record_states(conn, [account_id] if crossed else [], [account_id] if rearmed else [])
    return fired


async def notify_budget(
    conn: AsyncConnection,
    account_id: int,
    *,
    kind: str,
    budget_id: int,
    threshold: Decimal,
    spent: Decimal,
    forecast: Decimal,
    dedupe_key: str,
) -> int | None:
    """C4: a BUDGET_ACTUAL or BUDGET_FORECASTED notification on the budget's account, once
    per ``dedupe_key`` (budget, threshold, period), delivered as A4 says; None if it was
    already made."""
    quota = await funds.available_quota(conn, account_id)
    return await _notify(
        conn,
        account_id,
        kind,
        quota,
        threshold,
        dedupe_key,
        budget_id=budget_id,
        spent=spent,
        forecast=forecast,
    )


async def _notify(
    conn: AsyncConnection,
    account_id: int,
    kind: str,
    quota: Decimal,
    threshold: Decimal,
    dedupe_key: str,
    **budget: Any,
) -> int | None:
    """Store a notification (once per key), its deliveries and their jobs (A4)."""
    made = await _notify_many(
        conn,
        [
            {
                "account_id": account_id,
                "kind": kind,
                "available_quota": quota,
                "threshold": threshold,
                "dedupe_key": dedupe_key,
                **budget,
            }
        ],
    )
    return made[0] if made else None


def _targets(channels: Any) -> list[tuple[str, str]]:
    """An account's notification_channels row as (channel, target) for each one set."""
    found = [("EMAIL", channels.email), ("SMS", channels.phone), ("WEBHOOK", channels.webhook_url)]
    return [(channel, target) for channel, target in found if target]


@outbox.handler(QUOTA_TOPIC)
async def _quota_changed(
    conn: AsyncConnection, payload: dict[str, Any], context: outbox.JobContext
) -> None:
    before, after = Decimal(payload["before"]), Decimal(payload["after"])
    overdue = payload.get("cause") == "CHARGE" and before >= 0 > after
    await evaluate(
        conn,
        int(payload["account_id"]),
        overdue_entry=int(payload["entry_id"]) if overdue else None,
    )


# ---------------------------------------------------------------- sweep (A2)


def _sweep_candidates() -> Select[tuple[int]]:
    """Enabled alerts whose state disagrees with the quota now (F2, funds' formula): armed
    and below (a missed crossing), or disarmed and back at or above (a missed re-arm)."""
    quota = funds.available_quotas()
    current = func.coalesce(quota.c.available_quota, literal_column("0"))
    return (
        select(quota_alerts.c.account_id)
        .select_from(quota_alerts.outerjoin(quota, quota.c.account_id == quota_alerts.c.account_id))
        .where(
            quota_alerts.c.enabled,
            or_(
                and_(quota_alerts.c.armed, current < quota_alerts.c.threshold),
                and_(~quota_alerts.c.armed, current >= quota_alerts.c.threshold),
            ),
        )
        .order_by(quota_alerts.c.account_id)
    )


# Compiled once to plain SQL (the benchmark runs the same text on raw asyncpg).
_POSTGRESQL = PGDialect()  # type: ignore[no-untyped-call]
SWEEP_CANDIDATES = text(
    str(_sweep_candidates().compile(dialect=_POSTGRESQL, compile_kwargs={"literal_binds": True}))
)


async def sweep_candidates(conn: AsyncConnection) -> list[int]:
    return [int(i) for i in (await conn.execute(SWEEP_CANDIDATES)).scalars().all()]


async def sweep(engine: Any) -> int:
    """A2: re-evaluate every enabled alert whose state the quota contradicts (a missed
    event), ``SWEEP_BATCH`` accounts a transaction, set-based (``evaluate_many``).
    Returns how many were evaluated."""
    async with engine.connect() as conn:
        candidates = await sweep_candidates(conn)
    for start in range(0, len(candidates), SWEEP_BATCH):
        async with engine.begin() as conn:
            await evaluate_many(conn, candidates[start : start + SWEEP_BATCH])
    return len(candidates)


async def evaluate_many(conn: AsyncConnection, account_ids: Sequence[int]) -> list[int]:
    """``evaluate`` (A2, A3) for many accounts in a few statements, whatever their number:
    the alerts locked in account order, the quotas read after the locks, the crossings
    whose OVERDUE is still to come (a pending charge's job) left to that job, then the
    notifications, their deliveries and jobs, and the alerts' new state, each written
    once for all. Same dedupe keys as ``evaluate``: running both never doubles anything.
    Returns the new notifications' ids."""
    ids = sorted(set(account_ids))
    locked = (
        await conn.execute(
            select(quota_alerts)
            .where(quota_alerts.c.account_id.in_(ids), quota_alerts.c.enabled)
            .order_by(quota_alerts.c.account_id)
            .with_for_update()
        )
    ).all()
    if not locked:
        return []
    quota = funds.available_quotas()
    quotas: dict[int, Decimal] = {
        int(row.account_id): row.available_quota
        for row in await conn.execute(
            select(quota.c.account_id, quota.c.available_quota).where(
                quota.c.account_id.in_([alert.account_id for alert in locked])
            )
        )
    }
    zero = Decimal("0.00")
    crossed = [a for a in locked if a.armed and quotas.get(a.account_id, zero) < a.threshold]
    rearmed = [
        a.account_id
        for a in locked
        if not a.armed and quotas.get(a.account_id, zero) >= a.threshold
    ]
    waiting = await _overdue_pending_of(conn, [a.account_id for a in crossed])
    crossed = [a for a in crossed if a.account_id not in waiting]
    fired = await _notify_many(
        conn,
        [
            {
                "account_id": a.account_id,
                "kind": "LOW_QUOTA",
                "available_quota": quotas.get(a.account_id, zero),
                "threshold": a.threshold,
                "dedupe_key": _low_quota_key(a),
            }
            for a in crossed
        ],
    )
    await _record_states(conn, [a.account_id for a in crossed], rearmed)
    return fired


def _low_quota_key(alert: Any) -> str:
    """A2: one LOW_QUOTA per crossing (the alert's next one)."""
    return f"{alert.account_id}:LOW_QUOTA:{alert.crossings + 1}"


async def _record_states(
    conn: AsyncConnection, crossed: Sequence[int], rearmed: Sequence[int]
) -> None:
    """A2: the alerts that crossed are disarmed (one crossing more), those back at or
    above their threshold re-armed."""
    if crossed:
        await conn.execute(
            update(quota_alerts)
            .where(quota_alerts.c.account_id.in_(list(crossed)))
            .values(armed=False, crossings=quota_alerts.c.crossings + 1, last_fired_at=func.now())
        )
    if rearmed:
        await conn.execute(
            update(quota_alerts)
            .where(quota_alerts.c.account_id.in_(list(rearmed)))
            .values(armed=True)
        )


async def _overdue_pending_of(conn: AsyncConnection, account_ids: Sequence[int]) -> set[int]:
    """A3: the accounts that a committed charge made overdue and whose evaluation of it
    has not run yet. Jobs of one account run in any order, so an earlier change's job may
    see the quota that charge left: LOW_QUOTA must not fire for the crossing that OVERDUE
    reports."""
    if not account_ids:
        return set()
    rows, payload = outbox.outbox, outbox.outbox.c.payload
    pending = (rows.c.sent_at.is_(None) & rows.c.done_at.is_(None)) | (
        rows.c.sent_at.is_not(None) & rows.c.done_at.is_(None)
    )
    account = payload["account_id"].as_string()
    found = await conn.execute(
        select(account)
        .where(
            pending,
            rows.c.topic == QUOTA_TOPIC,
            account.in_([str(account_id) for account_id in account_ids]),
            payload["cause"].as_string() == "CHARGE",
            payload["before"].as_numeric(20, 2) >= 0,
            payload["after"].as_numeric(20, 2) < 0,
        )
        .distinct()
    )
    return {int(value) for value in found.scalars()}


async def _notify_many(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Notifications (once per dedupe key; at most one per account), their deliveries on
    each channel the account has and their jobs (A4): one INSERT of each, whatever their
    number. Returns the new notifications' ids."""
    if not rows:
        return []
    made = (
        await conn.execute(
            pg_insert(notifications)
            .values(list(rows))
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(notifications.c.id, notifications.c.account_id)
        )
    ).all()
    if not made:
        return []
    notification_of = {int(row.account_id): int(row.id) for row in made}
    channels = (
        await conn.execute(
            select(notification_channels).where(
                notification_channels.c.account_id.in_(list(notification_of))
            )
        )
    ).all()
    sends = [
        {"notification_id": notification_of[row.account_id], "channel": channel, "target": target}
        for row in channels
        for channel, target in _targets(row)
    ]
    if sends:
        await conn.execute(insert(deliveries), sends)
    jobs: list[tuple[str, dict[str, Any]]] = [
        (DELIVER_TOPIC, {"notification_id": send["notification_id"], "channel": send["channel"]})
        for send in sends
    ]
    jobs += [
        (PUBLISH_TOPIC, {"notification_id": notification_id, "account_id": account_id})
        for account_id, notification_id in notification_of.items()
    ]
    await outbox.add_many(conn, jobs)
    return sorted(notification_of.values())


# ---------------------------------------------------------------- live (A4)


@outbox.handler(PUBLISH_TOPIC)
async def _publish(
    conn: AsyncConnection, payload: dict[str, Any], context: outbox.JobContext
) -> None:
    """Push to GraphQL subscribers through Redis pub/sub (every gateway replica listens).
    At least once: a subscriber may see an id twice after a retried job."""
    await context.redis.publish(PUBSUB_CHANNEL, json.dumps(payload))
