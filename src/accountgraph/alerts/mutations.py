"""Alert mutations and the live ``notifications`` subscription.

``setNotificationChannels`` runs through ``mutate`` (``api/mutations.py``);
``setQuotaAlerts`` is a batch whose payload is the list of accounts it changed
(``api.payloads.mutate_accounts``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator
from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.alerts import service
from accountgraph.alerts.fanout import Feed
from accountgraph.alerts.types import Notification, loaders, notification_node
from accountgraph.api import ids
from accountgraph.api.auth import IsAuthenticated, principal_of
from accountgraph.api.mutations import mutate, row_id
from accountgraph.api.payloads import AccountPayload, AccountsPayload, mutate_accounts
from accountgraph.api.scalars import Money, amount
from accountgraph.domain import DomainError, Principal

Info = strawberry.Info[Any, Any]
SEEN = 1_000  # recent ids a subscriber remembers (publishing is at least once)


@strawberry.input
class SetQuotaAlertsInput:
    account_ids: list[strawberry.ID]
    threshold: Money
    enabled: bool


@strawberry.input
class SetNotificationChannelsInput:
    account_id: strawberry.ID
    email: str | None = None
    phone: str | None = None
    webhook_url: str | None = None


@strawberry.type
class AlertMutation:
    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="A1: one threshold for one account or many; refused "
        "accounts are reported per index, the others are set.",
    )
    async def set_quota_alerts(self, info: Info, input: SetQuotaAlertsInput) -> AccountsPayload:
        async def work(
            conn: AsyncConnection, principal: Principal
        ) -> tuple[list[int], list[DomainError]]:
            account_ids = [ids.decode_as(account_id, "Account") for account_id in input.account_ids]
            threshold = amount(input.threshold, ["threshold"], allow_zero=True, allow_negative=True)
            return await service.set_quota_alerts(
                conn,
                principal,
                account_ids=account_ids,
                threshold=threshold,
                enabled=input.enabled,
            )

        return await mutate_accounts(info, work)

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="A4: where an account's notifications are delivered.",
    )
    async def set_notification_channels(
        self, info: Info, input: SetNotificationChannelsInput
    ) -> AccountPayload:
        async def work(conn: AsyncConnection, principal: Principal) -> int:
            account_id = row_id(input.account_id, "Account", ["accountId"])
            await service.set_channels(
                conn,
                principal,
                account_id=account_id,
                email=input.email,
                phone=input.phone,
                webhook_url=input.webhook_url,
                settings=info.context.settings,
            )
            return account_id

        return await mutate(info, AccountPayload, work, account="Account")


@strawberry.type
class AlertSubscription:
    @strawberry.subscription(
        permission_classes=[IsAuthenticated],
        description="Notifications of the given account (or of every account the viewer "
        "sees) as they are created.",
    )
    async def notifications(
        self, info: Info, account_id: strawberry.ID | None = None
    ) -> AsyncGenerator[Notification, None]:
        # A coroutine that returns the stream, not a generator: the limits are checked (a
        # slot taken) before it starts, so a refusal is graphql-transport-ws's ``error``.
        wanted = None if account_id is None else ids.decode_as(account_id, "Account") or -1
        principal = principal_of(info)
        context = info.context
        feed: Feed = context.notifications.open(  # the app's one Redis listener (alerts/fanout.py)
            principal.key, context if context.request is None else context.request
        )

        async def stream() -> AsyncGenerator[Notification, None]:
            seen: deque[int] = deque(maxlen=SEEN)
            try:
                async for event in feed:
                    if wanted is not None and event.account_id != wanted:
                        continue
                    if event.notification_id in seen:
                        continue
                    seen.append(event.notification_id)
                    loaders(info).clear()  # every event is read fresh, under the viewer's rights
                    found = await notification_node(info, event.notification_id)
                    if found is not None:
                        yield found
            finally:
                feed.close()  # the slot is given back however the subscription ends

        return feed.bind(stream())
