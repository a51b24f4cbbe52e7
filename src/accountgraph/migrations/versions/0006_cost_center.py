"""cost_center

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

C1: a charge's product and cost tags. C3/C4: budgets, their thresholds and what fired
(one row per budget, threshold and period: nothing fires twice). C4: notifications of
kind BUDGET_ACTUAL / BUDGET_FORECASTED name their budget and carry spend and forecast.
Expand only: new nullable or defaulted columns, new tables, a wider CHECK.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(precision=20, scale=2)
PERCENT = sa.Numeric(precision=6, scale=2)


def upgrade() -> None:
    op.add_column("charges", sa.Column("product", sa.String(length=64), nullable=True))
    op.add_column(
        "charges",
        sa.Column(
            "tags",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
    )
    op.create_check_constraint(
        op.f("ck_charges_tags_object"), "charges", "jsonb_typeof(tags) = 'object'"
    )

    op.add_column("notifications", sa.Column("budget_id", sa.BigInteger(), nullable=True))
    op.add_column("notifications", sa.Column("spent", MONEY, nullable=True))
    op.add_column("notifications", sa.Column("forecast", MONEY, nullable=True))
    op.drop_constraint(op.f("ck_notifications_kind"), "notifications", type_="check")
    op.create_check_constraint(
        op.f("ck_notifications_kind"),
        "notifications",
        "kind IN ('LOW_QUOTA', 'OVERDUE', 'BUDGET_ACTUAL', 'BUDGET_FORECASTED')",
    )

    op.create_table(
        "budgets",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("period", sa.String(length=10), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=True),
        sa.Column("user_group_id", sa.BigInteger(), nullable=True),
        sa.Column("tag_key", sa.String(length=64), nullable=True),
        sa.Column("tag_value", sa.String(length=256), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_budgets_amount_positive")),
        sa.CheckConstraint(
            "period IN ('MONTHLY', 'QUARTERLY', 'YEARLY')", name=op.f("ck_budgets_period")
        ),
        sa.CheckConstraint(
            "num_nonnulls(member_id, user_group_id, tag_key) <= 1",
            name=op.f("ck_budgets_one_scope"),
        ),
        sa.CheckConstraint(
            "(tag_key IS NULL) = (tag_value IS NULL)", name=op.f("ck_budgets_tag_pair")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_budgets_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["accounts.id"], name=op.f("fk_budgets_member_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["user_group_id"], ["user_groups.id"], name=op.f("fk_budgets_user_group_id_user_groups")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_budgets")),
    )
    op.create_index("ix_budgets_account", "budgets", ["account_id", "id"], unique=False)
    op.create_table(
        "budget_thresholds",
        sa.Column("budget_id", sa.BigInteger(), nullable=False),
        sa.Column("basis", sa.String(length=12), nullable=False),
        sa.Column("percent", PERCENT, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "basis IN ('ACTUAL', 'FORECASTED')", name=op.f("ck_budget_thresholds_basis")
        ),
        sa.CheckConstraint(
            "percent > 0 AND percent <= 1000", name=op.f("ck_budget_thresholds_percent")
        ),
        sa.ForeignKeyConstraint(
            ["budget_id"],
            ["budgets.id"],
            name=op.f("fk_budget_thresholds_budget_id_budgets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("budget_id", "basis", "percent", name=op.f("pk_budget_thresholds")),
    )
    op.create_table(
        "budget_firings",
        sa.Column("budget_id", sa.BigInteger(), nullable=False),
        sa.Column("basis", sa.String(length=12), nullable=False),
        sa.Column("percent", PERCENT, nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "fired_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("spent", MONEY, nullable=False),
        sa.Column("forecast", MONEY, nullable=False),
        sa.Column("notification_id", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "basis IN ('ACTUAL', 'FORECASTED')", name=op.f("ck_budget_firings_basis")
        ),
        sa.ForeignKeyConstraint(
            ["budget_id"],
            ["budgets.id"],
            name=op.f("fk_budget_firings_budget_id_budgets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "budget_id", "basis", "percent", "period_start", name=op.f("pk_budget_firings")
        ),
    )

    op.create_table(
        "budget_evaluations",
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("snapshot", sa.Text(), nullable=True),
        sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_budget_evaluations_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_budget_evaluations")),
    )


def downgrade() -> None:
    op.drop_table("budget_evaluations")
    op.drop_table("budget_firings")
    op.drop_table("budget_thresholds")
    op.drop_index("ix_budgets_account", table_name="budgets")
    op.drop_table("budgets")
    op.drop_constraint(op.f("ck_notifications_kind"), "notifications", type_="check")
    op.execute(
        "DELETE FROM deliveries WHERE notification_id IN "
        "(SELECT id FROM notifications WHERE kind LIKE 'BUDGET_%')"
    )
    op.execute("DELETE FROM notifications WHERE kind LIKE 'BUDGET_%'")
    op.create_check_constraint(
        op.f("ck_notifications_kind"), "notifications", "kind IN ('LOW_QUOTA', 'OVERDUE')"
    )
    op.drop_column("notifications", "forecast")
    op.drop_column("notifications", "spent")
    op.drop_column("notifications", "budget_id")
    op.drop_constraint(op.f("ck_charges_tags_object"), "charges", type_="check")
    op.drop_column("charges", "tags")
    op.drop_column("charges", "product")
