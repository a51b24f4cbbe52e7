"""budget_spends: C4's counted spends and the charges not yet counted

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The snapshot of the last evaluation (0006) is no longer read: what a whole
    # computation saw is spend_snapshot.
    op.drop_column("budget_evaluations", "snapshot")
    op.add_column("budget_evaluations", sa.Column("spend_snapshot", sa.Text(), nullable=True))
    op.add_column(
        "budget_evaluations",
        sa.Column("spend_until", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column("budget_evaluations", sa.Column("fingerprint", sa.Text(), nullable=True))
    op.create_table(
        "budget_spends",
        sa.Column("budget_id", sa.BigInteger(), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("spent", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.ForeignKeyConstraint(
            ["budget_id"],
            ["budgets.id"],
            name=op.f("fk_budget_spends_budget_id_budgets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("budget_id", name=op.f("pk_budget_spends")),
    )
    op.create_table(
        "budget_deltas",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("charge_id", sa.BigInteger(), nullable=False),
        sa.Column("xid", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_budget_deltas_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_budget_deltas")),
    )
    op.create_index("ix_budget_deltas_account", "budget_deltas", ["account_id", "occurred_at"])
    op.execute(
        "CREATE INDEX ix_outbox_pending_budgets ON outbox (((payload->>'account_id')::bigint)) "
        "WHERE topic = 'budgets.evaluate' AND done_at IS NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_outbox_pending_budgets")
    op.drop_index("ix_budget_deltas_account", table_name="budget_deltas")
    op.drop_table("budget_deltas")
    op.drop_table("budget_spends")
    op.drop_column("budget_evaluations", "fingerprint")
    op.drop_column("budget_evaluations", "spend_until")
    op.drop_column("budget_evaluations", "spend_snapshot")
    op.add_column("budget_evaluations", sa.Column("snapshot", sa.Text(), nullable=True))
