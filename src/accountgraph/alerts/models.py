"""A1-A5: the tables of alerts, channels, notifications and deliveries.

``notifications.dedupe_key`` is unique: one LOW_QUOTA per crossing of an alert
(``<account>:LOW_QUOTA:<crossing>``) and one OVERDUE per charge that made the account
overdue (``<account>:OVERDUE:<entry>``), so a retried or doubled job can never make a
second notification for one event (A5), whatever the code above it does.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    func,
    text,
)

from accountgraph.db import metadata

KINDS = ("LOW_QUOTA", "OVERDUE")
CHANNELS = ("EMAIL", "SMS", "WEBHOOK")
STATUSES = ("PENDING", "SENT", "FAILED")

quota_alerts = Table(
    "quota_alerts",
    metadata,
    Column("account_id", BigInteger, ForeignKey("accounts.id"), primary_key=True),
    Column("threshold", Numeric(20, 2), nullable=False),
    Column("enabled", Boolean, nullable=False),
    # A2: armed while the quota is at or above the threshold; a crossing disarms it.
    Column("armed", Boolean, nullable=False, server_default=text("true")),
    Column("crossings", Integer, nullable=False, server_default=text("0")),
    Column("last_fired_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index("ix_quota_alerts_enabled", quota_alerts.c.account_id,
      postgresql_where=quota_alerts.c.enabled)

notification_channels = Table(
    "notification_channels",
    metadata,
    Column("account_id", BigInteger, ForeignKey("accounts.id"), primary_key=True),
    Column("email", String(320)),
    Column("phone", String(32)),
    Column("webhook_url", String(2000)),
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("account_id", BigInteger, ForeignKey("accounts.id"), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("available_quota", Numeric(20, 2), nullable=False),
    Column("threshold", Numeric(20, 2)),
    Column("dedupe_key", String(100), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint(f"kind IN ({', '.join(repr(k) for k in KINDS)})", name="kind"),
)
Index("ix_notifications_account", notifications.c.account_id, notifications.c.id)

deliveries = Table(
    "deliveries",
    metadata,
    Column("notification_id", BigInteger, ForeignKey("notifications.id"), nullable=False),
    Column("channel", String(10), nullable=False),
    Column("target", String(2000), nullable=False),
    Column("status", String(10), nullable=False, server_default="PENDING"),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_error", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("notification_id", "channel"),
    CheckConstraint(f"channel IN ({', '.join(repr(c) for c in CHANNELS)})", name="channel"),
    CheckConstraint(f"status IN ({', '.join(repr(s) for s in STATUSES)})", name="status"),
)
