"""A1-A5: the tables of alerts, channels, notifications and deliveries.

``notifications.dedupe_key`` is unique: one LOW_QUOTA per crossing of an alert
(``<account>:LOW_QUOTA:<crossing>``) and one OVERDUE per charge that made the account
overdue (``<account>:OVERDUE:<entry>``), so a retried or doubled job can never make a
second notification for one event (A5), whatever the code above it does.

Declared as SQLModel table models; the services query the Core tables (``quota_alerts``,
``notifications``, ..., each model's ``__table__``).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Identity,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    func,
    text,
)
from sqlmodel import Field, SQLModel

from accountgraph.db import table_of

# C4 (migration 0006): BUDGET_* name a budget (``budget_id``, no foreign key: the cost
# center sits above alerts) and carry the spend and the forecast.
KINDS = ("LOW_QUOTA", "OVERDUE", "BUDGET_ACTUAL", "BUDGET_FORECASTED")
CHANNELS = ("EMAIL", "SMS", "WEBHOOK")
STATUSES = ("PENDING", "SENT", "FAILED")


class QuotaAlert(SQLModel, table=True):
    __tablename__ = "quota_alerts"
    __table_args__ = (
        Index("ix_quota_alerts_enabled", "account_id", postgresql_where=text("enabled")),
    )

    account_id: int = Field(primary_key=True, sa_type=BigInteger, foreign_key="accounts.id")
    threshold: Decimal = Field(sa_type=Numeric(20, 2))
    enabled: bool = Field(sa_type=Boolean)
    # A2: armed while the quota is at or above the threshold; a crossing disarms it.
    armed: bool = Field(sa_type=Boolean, sa_column_kwargs={"server_default": text("true")})
    crossings: int = Field(sa_type=Integer, sa_column_kwargs={"server_default": text("0")})
    last_fired_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(
        sa_type=DateTime(timezone=True), sa_column_kwargs={"server_default": func.now()}
    )


class NotificationChannels(SQLModel, table=True):
    """Where one account's notifications go."""

    __tablename__ = "notification_channels"

    account_id: int = Field(primary_key=True, sa_type=BigInteger, foreign_key="accounts.id")
    email: str | None = Field(default=None, sa_type=String(320))
    phone: str | None = Field(default=None, sa_type=String(32))
    webhook_url: str | None = Field(default=None, sa_type=String(2000))


class Notification(SQLModel, table=True):
    __tablename__ = "notifications"
    __table_args__ = (
        CheckConstraint(f"kind IN ({', '.join(repr(k) for k in KINDS)})", name="kind"),
        Index("ix_notifications_account", "account_id", "id"),
    )

    id: int = Field(primary_key=True, sa_type=BigInteger, sa_column_args=[Identity()])
    account_id: int = Field(sa_type=BigInteger, foreign_key="accounts.id")
    kind: str = Field(sa_type=String(20))
    available_quota: Decimal = Field(sa_type=Numeric(20, 2))
    threshold: Decimal | None = Field(default=None, sa_type=Numeric(20, 2))
    dedupe_key: str = Field(sa_type=String(100), unique=True)
    created_at: datetime = Field(
        sa_type=DateTime(timezone=True), sa_column_kwargs={"server_default": func.now()}
    )
    budget_id: int | None = Field(default=None, sa_type=BigInteger)
    spent: Decimal | None = Field(default=None, sa_type=Numeric(20, 2))
    forecast: Decimal | None = Field(default=None, sa_type=Numeric(20, 2))


class Delivery(SQLModel, table=True):
    __tablename__ = "deliveries"
    __table_args__ = (
        CheckConstraint(f"channel IN ({', '.join(repr(c) for c in CHANNELS)})", name="channel"),
        CheckConstraint(f"status IN ({', '.join(repr(s) for s in STATUSES)})", name="status"),
    )

    notification_id: int = Field(
        primary_key=True, sa_type=BigInteger, foreign_key="notifications.id"
    )
    channel: str = Field(primary_key=True, sa_type=String(10))
    target: str = Field(sa_type=String(2000))
    status: str = Field(sa_type=String(10), sa_column_kwargs={"server_default": "PENDING"})
    attempts: int = Field(sa_type=Integer, sa_column_kwargs={"server_default": text("0")})
    last_error: str | None = Field(default=None, sa_type=Text)
    updated_at: datetime = Field(
        sa_type=DateTime(timezone=True), sa_column_kwargs={"server_default": func.now()}
    )


# The Core tables, under the names the services' queries use.
quota_alerts = table_of(QuotaAlert)
notification_channels = table_of(NotificationChannels)
notifications = table_of(Notification)
deliveries = table_of(Delivery)
