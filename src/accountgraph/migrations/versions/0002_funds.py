"""funds ledger

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(length=100), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index("ix_idempotency_keys_created", "idempotency_keys", ["created_at"], unique=False)
    op.create_table(
        "journal_entries",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("actor", sa.String(length=300), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "kind IN ('ALLOCATE', 'RECLAIM', 'CREDIT_LINE', 'CREDIT_LIMIT', 'CHARGE', 'PAYMENT', 'WITHDRAWAL', 'ADJUSTMENT')",
            name=op.f("ck_journal_entries_kind"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journal_entries")),
    )
    op.create_table(
        "allocations",
        sa.Column("master_id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("method", sa.String(length=10), nullable=False),
        sa.Column(
            "allocated",
            sa.Numeric(precision=20, scale=2),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column(
            "reclaimed",
            sa.Numeric(precision=20, scale=2),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.CheckConstraint("method IN ('CASH', 'CREDIT')", name=op.f("ck_allocations_method")),
        sa.CheckConstraint(
            "reclaimed >= 0 AND reclaimed <= allocated",
            name=op.f("ck_allocations_reclaimed_within"),
        ),
        sa.ForeignKeyConstraint(
            ["master_id"], ["accounts.id"], name=op.f("fk_allocations_master_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["accounts.id"], name=op.f("fk_allocations_member_id_accounts")
        ),
        sa.PrimaryKeyConstraint("master_id", "member_id", "method", name=op.f("pk_allocations")),
    )
    op.create_table(
        "balances",
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "cash_balance",
            sa.Numeric(precision=20, scale=2),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column(
            "transferred_cash",
            sa.Numeric(precision=20, scale=2),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column(
            "transferred_credit",
            sa.Numeric(precision=20, scale=2),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column(
            "credit_limit",
            sa.Numeric(precision=20, scale=2),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column(
            "credit_line",
            sa.Numeric(precision=20, scale=2),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column(
            "bankers_acceptance_bill",
            sa.Numeric(precision=20, scale=2),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column(
            "credit_refund",
            sa.Numeric(precision=20, scale=2),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column(
            "unsettled_amount",
            sa.Numeric(precision=20, scale=2),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column(
            "negative_bill",
            sa.Numeric(precision=20, scale=2),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column(
            "outstanding_fees",
            sa.Numeric(precision=20, scale=2),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "bankers_acceptance_bill >= 0",
            name=op.f("ck_balances_bankers_acceptance_bill_not_negative"),
        ),
        sa.CheckConstraint("cash_balance >= 0", name=op.f("ck_balances_cash_balance_not_negative")),
        sa.CheckConstraint("credit_limit >= 0", name=op.f("ck_balances_credit_limit_not_negative")),
        sa.CheckConstraint("credit_line >= 0", name=op.f("ck_balances_credit_line_not_negative")),
        sa.CheckConstraint(
            "credit_refund >= 0", name=op.f("ck_balances_credit_refund_not_negative")
        ),
        sa.CheckConstraint(
            "negative_bill >= 0", name=op.f("ck_balances_negative_bill_not_negative")
        ),
        sa.CheckConstraint(
            "outstanding_fees >= 0", name=op.f("ck_balances_outstanding_fees_not_negative")
        ),
        sa.CheckConstraint(
            "transferred_cash <= cash_balance",
            name=op.f("ck_balances_transferred_cash_within_cash"),
        ),
        sa.CheckConstraint(
            "transferred_cash >= 0", name=op.f("ck_balances_transferred_cash_not_negative")
        ),
        sa.CheckConstraint(
            "transferred_credit <= credit_limit",
            name=op.f("ck_balances_transferred_credit_within_limit"),
        ),
        sa.CheckConstraint(
            "transferred_credit >= 0", name=op.f("ck_balances_transferred_credit_not_negative")
        ),
        sa.CheckConstraint(
            "unsettled_amount >= 0", name=op.f("ck_balances_unsettled_amount_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_balances_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_balances")),
    )
    op.create_table(
        "payments",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column("actor", sa.String(length=300), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_payments_amount_positive")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_payments_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["journal_entries.id"], name=op.f("fk_payments_entry_id_journal_entries")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
    )
    op.create_index("ix_payments_account", "payments", ["account_id", "id"], unique=False)
    op.create_table(
        "postings",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=True),
        sa.Column("bucket", sa.String(length=30), nullable=False),
        sa.Column("amount", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.CheckConstraint(
            "bucket IN ('CASH', 'TRANSFERRED_CASH', 'TRANSFERRED_CREDIT', 'CREDIT_LIMIT', 'CREDIT_LINE', 'BANKERS_ACCEPTANCE_BILL', 'CREDIT_REFUND', 'UNSETTLED_AMOUNT', 'NEGATIVE_BILL', 'OUTSTANDING_FEES')",
            name=op.f("ck_postings_bucket"),
        ),
        sa.CheckConstraint("amount <> 0", name=op.f("ck_postings_amount_not_zero")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_postings_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["journal_entries.id"], name=op.f("fk_postings_entry_id_journal_entries")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_postings")),
    )
    op.create_index(
        "ix_postings_account_bucket", "postings", ["account_id", "bucket"], unique=False
    )
    op.create_index("ix_postings_entry", "postings", ["entry_id"], unique=False)
    op.create_table(
        "transfers",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("master_id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("method", sa.String(length=10), nullable=False),
        sa.Column("direction", sa.String(length=10), nullable=False),
        sa.Column("amount", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column("actor", sa.String(length=300), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "direction IN ('ALLOCATE', 'RECLAIM')", name=op.f("ck_transfers_direction")
        ),
        sa.CheckConstraint("method IN ('CASH', 'CREDIT')", name=op.f("ck_transfers_method")),
        sa.CheckConstraint("amount > 0", name=op.f("ck_transfers_amount_positive")),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["journal_entries.id"], name=op.f("fk_transfers_entry_id_journal_entries")
        ),
        sa.ForeignKeyConstraint(
            ["master_id"], ["accounts.id"], name=op.f("fk_transfers_master_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["accounts.id"], name=op.f("fk_transfers_member_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transfers")),
    )
    op.create_index("ix_transfers_master", "transfers", ["master_id", "id"], unique=False)
    op.create_index("ix_transfers_member", "transfers", ["member_id", "id"], unique=False)
    op.create_table(
        "charges",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("site_id", sa.BigInteger(), nullable=True),
        sa.Column("amount", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "recorded_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "paid_by_master",
            sa.Numeric(precision=20, scale=2),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_charges_amount_positive")),
        sa.CheckConstraint(
            "paid_by_master >= 0 AND paid_by_master <= amount",
            name=op.f("ck_charges_paid_by_master"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_charges_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["journal_entries.id"], name=op.f("fk_charges_entry_id_journal_entries")
        ),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], name=op.f("fk_charges_site_id_sites")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_charges")),
    )
    op.create_index("ix_charges_account", "charges", ["account_id", "id"], unique=False)
    op.create_index(
        "ix_charges_account_occurred", "charges", ["account_id", "occurred_at"], unique=False
    )

    # F9: every journal entry balances per bucket, checked once at commit (deferred), so
    # the database itself refuses an unbalanced entry even if a service were wrong.
    op.execute("""
        CREATE FUNCTION postings_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF EXISTS (SELECT 1 FROM postings WHERE entry_id = NEW.entry_id
                     GROUP BY bucket HAVING sum(amount) <> 0) THEN
            RAISE EXCEPTION 'journal entry % does not balance', NEW.entry_id
              USING ERRCODE = 'check_violation';
          END IF;
          RETURN NULL;
        END $$""")
    op.execute("""
        CREATE CONSTRAINT TRIGGER postings_balanced AFTER INSERT OR UPDATE ON postings
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION postings_balanced()""")
    # Records of money are never edited (STYLE.md): corrections are new entries.
    op.execute("""
        CREATE FUNCTION money_records_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          RAISE EXCEPTION '% rows are never edited or deleted', TG_TABLE_NAME
            USING ERRCODE = 'restrict_violation';
        END $$""")
    for table in ("journal_entries", "postings", "transfers", "charges", "payments"):
        op.execute(f"""
            CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION money_records_immutable()""")


def downgrade() -> None:
    for table in ("journal_entries", "postings", "transfers", "charges", "payments"):
        op.execute(f"DROP TRIGGER {table}_immutable ON {table}")
    op.execute("DROP FUNCTION money_records_immutable()")
    op.execute("DROP TRIGGER postings_balanced ON postings")
    op.execute("DROP FUNCTION postings_balanced()")
    op.drop_index("ix_charges_account_occurred", table_name="charges")
    op.drop_index("ix_charges_account", table_name="charges")
    op.drop_table("charges")
    op.drop_index("ix_transfers_member", table_name="transfers")
    op.drop_index("ix_transfers_master", table_name="transfers")
    op.drop_table("transfers")
    op.drop_index("ix_postings_entry", table_name="postings")
    op.drop_index("ix_postings_account_bucket", table_name="postings")
    op.drop_table("postings")
    op.drop_index("ix_payments_account", table_name="payments")
    op.drop_table("payments")
    op.drop_table("balances")
    op.drop_table("allocations")
    op.drop_table("journal_entries")
    op.drop_index("ix_idempotency_keys_created", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
