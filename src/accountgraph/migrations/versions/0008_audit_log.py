"""audit_log

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("principal_kind", sa.String(length=20), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=True),
        sa.Column("token_id", sa.String(length=16), nullable=True),
        sa.Column("token_name", sa.String(length=200), nullable=True),
        sa.Column("operation_name", sa.String(length=200), nullable=True),
        sa.Column("field", sa.String(length=100), nullable=False),
        sa.Column("outcome", sa.String(length=10), nullable=False),
        sa.Column(
            "error_codes",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("input", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "object_ids",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("client_address", sa.String(length=100), nullable=True),
        sa.CheckConstraint(
            "principal_kind IN ('OPERATOR', 'ACCOUNT_USER')",
            name=op.f("ck_audit_log_principal_kind"),
        ),
        sa.CheckConstraint(
            "outcome IN ('OK', 'REFUSED', 'ERROR')", name=op.f("ck_audit_log_outcome")
        ),
        sa.CheckConstraint(
            "principal_kind = 'OPERATOR' OR account_id IS NOT NULL",
            name=op.f("ck_audit_log_account_user_account"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_account", "audit_log", ["account_id", "id"], unique=False)
    op.create_index("ix_audit_log_at", "audit_log", ["at"], unique=False)
    # Append-only, as the journal (0002): UPDATE is always refused; DELETE only by the
    # retention purge (audit/log.py), which sets accountgraph.audit_retention_days for its
    # transaction (SET LOCAL), and only for rows older than that many days (at least 30).
    # TRUNCATE, for the table's owner only, is left to the owner (the tests' reset).
    op.execute("""
        CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
          days text := current_setting('accountgraph.audit_retention_days', true);
        BEGIN
          IF TG_OP = 'DELETE' AND days ~ '^[0-9]{1,6}$' AND days::int >= 30
             AND OLD.at < now() - make_interval(days => days::int) THEN
            RETURN OLD;
          END IF;
          RAISE EXCEPTION 'audit_log rows are never edited or deleted (only purged)'
            USING ERRCODE = 'restrict_violation';
        END $$""")
    op.execute("""
        CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
        FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()""")


def downgrade() -> None:
    op.execute("DROP TRIGGER audit_log_append_only ON audit_log")
    op.execute("DROP FUNCTION audit_log_append_only()")
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_index("ix_audit_log_account", table_name="audit_log")
    op.drop_table("audit_log")
