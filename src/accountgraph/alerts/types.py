"""A1-A4 in GraphQL: QuotaAlert, NotificationChannels, Notification, Delivery, and the
alerts area's fields of ``Account`` (quotaAlert, channels, notifications)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import strawberry

from accountgraph.alerts.loaders import AlertLoaders, NotificationsKey
from accountgraph.api import composed, ids, node
from accountgraph.api.composed import AccountRef, BudgetRef
from accountgraph.api.connections import Connection, connection, page
from accountgraph.api.node import Node
from accountgraph.api.scalars import Money

Info = strawberry.Info[Any, Any]
Row = Any


@strawberry.enum
class NotificationKind(enum.Enum):
    LOW_QUOTA = "LOW_QUOTA"
    OVERDUE = "OVERDUE"
    BUDGET_ACTUAL = "BUDGET_ACTUAL"
    BUDGET_FORECASTED = "BUDGET_FORECASTED"


@strawberry.enum
class Channel(enum.Enum):
    EMAIL = "EMAIL"
    SMS = "SMS"
    WEBHOOK = "WEBHOOK"


@strawberry.enum
class DeliveryStatus(enum.Enum):
    PENDING = "PENDING"
    SENT = "SENT"
    FAILED = "FAILED"


def loaders(info: Info) -> AlertLoaders:
    found: AlertLoaders = info.context.loaders.alerts
    return found


@strawberry.type
class QuotaAlert:
    threshold: Money
    enabled: bool
    armed: bool
    last_fired_at: datetime | None


@strawberry.type
class NotificationChannels:
    email: str | None
    phone: str | None
    webhook_url: str | None


@strawberry.type
class Delivery:
    channel: Channel
    status: DeliveryStatus
    attempts: int
    last_error: str | None


@strawberry.type
class Notification(Node):
    id: strawberry.ID
    kind: NotificationKind
    available_quota: Money
    threshold: Money | None
    created_at: datetime
    spent: Money | None
    forecast: Money | None
    row_id: strawberry.Private[int]
    account_id: strawberry.Private[int]
    budget_id: strawberry.Private[int | None]

    @strawberry.field
    async def account(self, info: Info) -> AccountRef:
        return await composed.seen_account(info, self.account_id)

    @strawberry.field(description="C4: the budget of a BUDGET_* notification (null once removed).")
    async def budget(self, info: Info) -> BudgetRef | None:
        return None if self.budget_id is None else await composed.budget(info, self.budget_id)

    @strawberry.field
    async def deliveries(self, info: Info) -> list[Delivery]:
        rows = await loaders(info).deliveries_by_notification.load(self.row_id)
        return [
            Delivery(
                channel=Channel(r.channel),
                status=DeliveryStatus(r.status),
                attempts=r.attempts,
                last_error=r.last_error,
            )
            for r in rows
        ]

    @classmethod
    def from_row(cls, row: Row) -> Notification:
        return cls(
            id=strawberry.ID(ids.encode("Notification", row.id)),
            row_id=row.id,
            account_id=row.account_id,
            kind=NotificationKind(row.kind),
            available_quota=row.available_quota,
            threshold=row.threshold,
            created_at=row.created_at,
            spent=row.spent,
            forecast=row.forecast,
            budget_id=row.budget_id,
        )


async def quota_alert_of(info: Info, account_id: int) -> QuotaAlert | None:
    row = await loaders(info).alert_by_account.load(account_id)
    return (
        None
        if row is None
        else QuotaAlert(
            threshold=row.threshold,
            enabled=row.enabled,
            armed=row.armed,
            last_fired_at=row.last_fired_at,
        )
    )


async def channels_of(info: Info, account_id: int) -> NotificationChannels | None:
    row = await loaders(info).channels_by_account.load(account_id)
    return (
        None
        if row is None
        else NotificationChannels(email=row.email, phone=row.phone, webhook_url=row.webhook_url)
    )


async def notifications_of(
    info: Info, account_id: int, *, first: int | None, after: str | None
) -> Connection[Notification]:
    request = page(first, after)
    found = await loaders(info).notifications_by_account.load(
        NotificationsKey(account_id, request.limit, request.after)
    )
    nodes = [Notification.from_row(row) for row in found.rows]
    return connection(nodes, [row.id for row in found.rows], request, found.total)


async def notification_node(info: Info, row_id: int) -> Notification | None:
    row = await loaders(info).notification_by_id.load(row_id)
    return None if row is None else Notification.from_row(row)


node.register("Notification", notification_node)


@strawberry.type
class AlertsAccount:
    """The alerts area's fields of ``Account``."""

    row_id: strawberry.Private[int]

    @strawberry.field(description="A1: the low-quota alert, null if unset.")
    async def quota_alert(self, info: Info) -> QuotaAlert | None:
        return await quota_alert_of(info, self.row_id)

    @strawberry.field(description="A4: where notifications are delivered, null if unset.")
    async def channels(self, info: Info) -> NotificationChannels | None:
        return await channels_of(info, self.row_id)

    @strawberry.field(description="A2-A4: notifications of this account, newest first.")
    async def notifications(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[Notification]:
        return await notifications_of(info, self.row_id, first=first, after=after)
