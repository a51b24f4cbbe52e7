"""alerts

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notification_channels",
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("webhook_url", sa.String(length=2000), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_notification_channels_account_id_accounts"),
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_notification_channels")),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("available_quota", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column("threshold", sa.Numeric(precision=20, scale=2), nullable=True),
        sa.Column("dedupe_key", sa.String(length=100), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("kind IN ('LOW_QUOTA', 'OVERDUE')", name=op.f("ck_notifications_kind")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_notifications_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_notifications_dedupe_key")),
    )
    op.create_index("ix_notifications_account", "notifications", ["account_id", "id"], unique=False)
    op.create_table(
        "quota_alerts",
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("threshold", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("armed", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("crossings", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_fired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_quota_alerts_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_quota_alerts")),
    )
    op.create_index(
        "ix_quota_alerts_enabled",
        "quota_alerts",
        ["account_id"],
        unique=False,
        postgresql_where="enabled",
    )
    op.create_table(
        "deliveries",
        sa.Column("notification_id", sa.BigInteger(), nullable=False),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("target", sa.String(length=2000), nullable=False),
        sa.Column("status", sa.String(length=10), server_default="PENDING", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "channel IN ('EMAIL', 'SMS', 'WEBHOOK')", name=op.f("ck_deliveries_channel")
        ),
        sa.CheckConstraint(
            "status IN ('PENDING', 'SENT', 'FAILED')", name=op.f("ck_deliveries_status")
        ),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.id"],
            name=op.f("fk_deliveries_notification_id_notifications"),
        ),
        sa.PrimaryKeyConstraint("notification_id", "channel", name=op.f("pk_deliveries")),
    )
    op.add_column("outbox", sa.Column("not_before", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("outbox", "not_before")
    op.drop_table("deliveries")
    op.drop_index("ix_quota_alerts_enabled", table_name="quota_alerts", postgresql_where="enabled")
    op.drop_table("quota_alerts")
    op.drop_index("ix_notifications_account", table_name="notifications")
    op.drop_table("notifications")
    op.drop_table("notification_channels")
