"""Per-request batch loading of alerts, channels and notifications (finance visibility:
P2, a member's alerts are its finances)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncEngine
from strawberry.dataloader import DataLoader

from accountgraph.accounts.public import sees_finance
from accountgraph.alerts.models import (
    deliveries,
    notification_channels,
    notifications,
    quota_alerts,
)
from accountgraph.api import keyset
from accountgraph.api.batching import AreaLoaders, by_key, grouped
from accountgraph.api.keyset import Page
from accountgraph.domain import Principal

Row = Any


@dataclass(frozen=True, slots=True)
class NotificationsKey:
    account_id: int
    limit: int
    after: int | None


class AlertLoaders(AreaLoaders):
    def __init__(self, engine: AsyncEngine, principal: Principal) -> None:
        super().__init__(engine, principal)
        self.alert_by_account = DataLoader(self._alerts)
        self.channels_by_account = DataLoader(self._channels)
        self.notification_by_id = DataLoader(self._notifications_by_id)
        self.notifications_by_account = DataLoader(self._notifications_by_account)
        self.deliveries_by_notification = DataLoader(self._deliveries)

    async def _alerts(self, ids: Sequence[int]) -> list[Row | None]:
        query = select(quota_alerts).where(
            quota_alerts.c.account_id.in_(ids),
            sees_finance(self.principal, quota_alerts.c.account_id),
        )
        return by_key(ids, await self._all(query), lambda row: row.account_id)

    async def _channels(self, ids: Sequence[int]) -> list[Row | None]:
        table = notification_channels
        query = select(table).where(
            table.c.account_id.in_(ids), sees_finance(self.principal, table.c.account_id)
        )
        return by_key(ids, await self._all(query), lambda row: row.account_id)

    async def _notifications_by_id(self, ids: Sequence[int]) -> list[Row | None]:
        query = select(notifications).where(
            notifications.c.id.in_(ids), sees_finance(self.principal, notifications.c.account_id)
        )
        return by_key(ids, await self._all(query), lambda row: row.id)

    async def _notifications_by_account(self, keys: Sequence[NotificationsKey]) -> list[Page]:
        """Newest first."""

        def query(key: NotificationsKey, parents: list[int]) -> Select[Any]:
            return select(notifications, notifications.c.account_id.label("parent_id")).where(
                notifications.c.account_id.in_(parents),
                sees_finance(self.principal, notifications.c.account_id),
            )

        return await keyset.child_pages(self.engine, keys, query)

    async def _deliveries(self, ids: Sequence[int]) -> list[list[Row]]:
        query = (
            select(deliveries)
            .join(notifications, notifications.c.id == deliveries.c.notification_id)
            .where(
                deliveries.c.notification_id.in_(ids),
                sees_finance(self.principal, notifications.c.account_id),
            )
            .order_by(deliveries.c.notification_id, deliveries.c.channel)
        )
        return grouped(ids, await self._all(query), lambda row: row.notification_id)
