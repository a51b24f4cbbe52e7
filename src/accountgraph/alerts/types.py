"""A1-A4 in GraphQL: QuotaAlert, NotificationChannels, Notification, Delivery."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from accountgraph.alerts.loaders import AlertLoaders, NotificationsKey
from accountgraph.api import ids
from accountgraph.api.connections import Connection, connection, page
from accountgraph.api.node import Node
from accountgraph.api.scalars import Money

if TYPE_CHECKING:
    from accountgraph.accounts.types import Account

AccountRef = Annotated["Account", strawberry.lazy("accountgraph.accounts.types")]
Info = strawberry.Info[Any, Any]
Row = Any


@strawberry.enum
class NotificationKind(enum.Enum):
    LOW_QUOTA = "LOW_QUOTA"
    OVERDUE = "OVERDUE"


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
    row_id: strawberry.Private[int]
    account_id: strawberry.Private[int]

    @strawberry.field
    async def account(self, info: Info) -> AccountRef:
        from accountgraph.accounts.queries import account_node

        found = await account_node(info, self.account_id)
        if found is None:  # pragma: no cover - who sees the notification sees its account
            raise LookupError("account not visible")
        return found

    @strawberry.field
    async def deliveries(self, info: Info) -> list[Delivery]:
        rows = await loaders(info).deliveries_by_notification.load(self.row_id)
        return [Delivery(channel=Channel(r.channel), status=DeliveryStatus(r.status),
                         attempts=r.attempts, last_error=r.last_error) for r in rows]

    @classmethod
    def from_row(cls, row: Row) -> Notification:
        return cls(id=strawberry.ID(ids.encode("Notification", row.id)), row_id=row.id,
                   account_id=row.account_id, kind=NotificationKind(row.kind),
                   available_quota=row.available_quota, threshold=row.threshold,
                   created_at=row.created_at)


async def quota_alert_of(info: Info, account_id: int) -> QuotaAlert | None:
    row = await loaders(info).alert_by_account.load(account_id)
    return None if row is None else QuotaAlert(threshold=row.threshold, enabled=row.enabled,
                                               armed=row.armed, last_fired_at=row.last_fired_at)


async def channels_of(info: Info, account_id: int) -> NotificationChannels | None:
    row = await loaders(info).channels_by_account.load(account_id)
    return None if row is None else NotificationChannels(
        email=row.email, phone=row.phone, webhook_url=row.webhook_url)


async def notifications_of(info: Info, account_id: int, *, first: int | None,
                           after: str | None) -> Connection[Notification]:
    request = page(first, after)
    found = await loaders(info).notifications_by_account.load(
        NotificationsKey(account_id, request.limit, request.after))
    nodes = [Notification.from_row(row) for row in found.rows]
    return connection(nodes, [row.id for row in found.rows], request, found.total)


async def notification_node(info: Info, row_id: int) -> Notification | None:
    row = await loaders(info).notification_by_id.load(row_id)
    return None if row is None else Notification.from_row(row)


NODE_RESOLVERS = {"Notification": notification_node}
