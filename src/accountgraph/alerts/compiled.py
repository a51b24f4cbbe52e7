"""A1-A4 in the read compiler: ``Account.quotaAlert``, ``Account.channels`` and
``Account.notifications`` as SQL building JSON.

Each is the twin of its resolver in ``types.py`` over its loader's rows
(``AlertLoaders._alerts``/``_channels``/``_notifications_by_account``): the account's
one row (null where there is none), or its notifications newest first; nothing where P2
hides the account's finances (``sees_finance``). A notification's ``account``,
``budget`` and ``deliveries`` have no compiler: a selection with them is the resolvers'.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Table, select
from sqlalchemy.sql.expression import FromClause

from accountgraph.accounts.public import sees_finance
from accountgraph.alerts.models import notification_channels, notifications, quota_alerts
from accountgraph.api import compiled_pages, sqljson
from accountgraph.api.compiler import Compilation, Selected, field

Json = ColumnElement[Any]

compiled_pages.register("NotificationConnection", "NotificationEdge")


def _own_row(compilation: Compilation, selected: Selected, table: Table, row: FromClause) -> Json:
    """The object of ``table``'s row of the account ``row`` (keyed by ``account_id``)."""
    own = table.alias(compilation.name(table.name))
    return (
        select(compilation.child(selected, own))
        .where(own.c.account_id == row.c.id, sees_finance(compilation.principal, own.c.account_id))
        .scalar_subquery()
    )


@field("Account", "quotaAlert")
def _quota_alert(compilation: Compilation, selected: Selected, row: FromClause) -> Json:
    return _own_row(compilation, selected, quota_alerts, row)


@field("Account", "channels")
def _channels(compilation: Compilation, selected: Selected, row: FromClause) -> Json:
    return _own_row(compilation, selected, notification_channels, row)


@field("QuotaAlert", "threshold")
def _threshold(compilation: Compilation, selected: Selected, alert: FromClause) -> Json:
    return sqljson.money(alert.c.threshold)


@field("QuotaAlert", "enabled", "armed")
def _flag(compilation: Compilation, selected: Selected, alert: FromClause) -> Json:
    return alert.c[selected.name]


@field("QuotaAlert", "lastFiredAt")
def _last_fired_at(compilation: Compilation, selected: Selected, alert: FromClause) -> Json:
    return sqljson.datetime(alert.c.last_fired_at)


@field("NotificationChannels", "email", "phone", "webhookUrl")
def _channel(compilation: Compilation, selected: Selected, channels: FromClause) -> Json:
    return channels.c[{"webhookUrl": "webhook_url"}.get(selected.name, selected.name)]


@field("Account", "notifications")
def _notifications(compilation: Compilation, selected: Selected, row: FromClause) -> Json:
    notification = notifications.alias(compilation.name("notification"))
    chosen = select(notification).where(
        notification.c.account_id == row.c.id,
        sees_finance(compilation.principal, notification.c.account_id),
    )
    return compiled_pages.rows_page(compilation, selected, chosen, descending=True, parent=row)


@field("Notification", "id")
def _notification_id(compilation: Compilation, selected: Selected, n: FromClause) -> Json:
    return sqljson.global_id("Notification", n.c.id)


@field("Notification", "kind")
def _kind(compilation: Compilation, selected: Selected, n: FromClause) -> Json:
    return n.c.kind


_AMOUNTS = {
    "availableQuota": "available_quota",
    "threshold": "threshold",
    "spent": "spent",
    "forecast": "forecast",
}


@field("Notification", *_AMOUNTS)
def _amount(compilation: Compilation, selected: Selected, n: FromClause) -> Json:
    return sqljson.money(n.c[_AMOUNTS[selected.name]])


@field("Notification", "createdAt")
def _created_at(compilation: Compilation, selected: Selected, n: FromClause) -> Json:
    return sqljson.datetime(n.c.created_at)
