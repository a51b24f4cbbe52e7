"""taxes_stored_value

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

T1-T3, W1-W3: tax groups and the tax of invoice lines, the branch of charges, stored
value cards and their uses, auto-pay, auto top-up rules and their orders.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(precision=20, scale=2)
RATE = sa.Numeric(precision=7, scale=4)
NOW = sa.text("now()")
# Records of money are never edited (W1 uses, W2 invoice payments, W3 orders).
IMMUTABLE = ("stored_value_uses", "invoice_payments", "top_up_orders")


def upgrade() -> None:
    _taxes()
    _stored_value()
    _automatic_payments()
    for table in IMMUTABLE:
        op.execute(f"""
            CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION money_records_immutable()""")


def _taxes() -> None:
    op.create_table(
        "tax_groups",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("rate", RATE, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.CheckConstraint("rate >= 0 AND rate <= 100", name=op.f("ck_tax_groups_rate")),
        sa.CheckConstraint("code ~ '^[A-Za-z0-9_-]{1,32}$'", name=op.f("ck_tax_groups_code")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tax_groups")),
        sa.UniqueConstraint("code", name=op.f("uq_tax_groups_code")),
    )
    op.create_table(
        "account_tax_groups",
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("tax_group_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_account_tax_groups_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["tax_group_id"],
            ["tax_groups.id"],
            name=op.f("fk_account_tax_groups_tax_group_id_tax_groups"),
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_account_tax_groups")),
    )
    # T2: lines and invoices issued before this revision had no tax (0). Adding a column
    # with a default fires no row trigger: the issued invoices stay as they were.
    op.add_column(
        "invoices", sa.Column("tax_total", MONEY, server_default=sa.text("0"), nullable=False)
    )
    op.drop_constraint(op.f("ck_invoices_total"), "invoices", type_="check")
    op.create_check_constraint(
        op.f("ck_invoices_total"), "invoices", "total = subtotal - discount_total + tax_total"
    )
    op.add_column(
        "invoice_lines", sa.Column("tax_rate", RATE, server_default=sa.text("0"), nullable=False)
    )
    op.add_column(
        "invoice_lines", sa.Column("tax", MONEY, server_default=sa.text("0"), nullable=False)
    )
    op.create_check_constraint(
        op.f("ck_invoice_lines_tax_rate"), "invoice_lines", "tax_rate >= 0 AND tax_rate <= 100"
    )
    op.create_check_constraint(
        op.f("ck_invoice_lines_tax"), "invoice_lines", "tax = round(net * tax_rate / 100, 2)"
    )
    # T3: the branch a charge's entry records (NULL for charges recorded before).
    op.add_column("charges", sa.Column("branch", sa.String(length=200), nullable=True))


def _stored_value() -> None:
    op.create_table(
        "stored_value_cards",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("remaining", MONEY, nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("origin", sa.String(length=10), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_stored_value_cards_amount_positive")),
        sa.CheckConstraint(
            "remaining >= 0 AND remaining <= amount", name=op.f("ck_stored_value_cards_remaining")
        ),
        sa.CheckConstraint(
            "origin IN ('ISSUED', 'TOP_UP')", name=op.f("ck_stored_value_cards_origin")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_stored_value_cards_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stored_value_cards")),
    )
    op.create_index(
        "ix_stored_value_cards_account", "stored_value_cards", ["account_id", "valid_until"]
    )
    op.create_table(
        "stored_value_uses",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("charge_id", sa.BigInteger(), nullable=False),
        sa.Column("card_id", sa.BigInteger(), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_stored_value_uses_amount_positive")),
        sa.ForeignKeyConstraint(
            ["charge_id"], ["charges.id"], name=op.f("fk_stored_value_uses_charge_id_charges")
        ),
        sa.ForeignKeyConstraint(
            ["card_id"],
            ["stored_value_cards.id"],
            name=op.f("fk_stored_value_uses_card_id_stored_value_cards"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stored_value_uses")),
    )
    op.create_index("ix_stored_value_uses_charge", "stored_value_uses", ["charge_id"])
    op.create_index("ix_stored_value_uses_card", "stored_value_uses", ["card_id"])


def _automatic_payments() -> None:
    op.add_column(
        "payment_methods",
        sa.Column("auto_pay", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.create_table(
        "invoice_payments",
        sa.Column("invoice_id", sa.BigInteger(), nullable=False),
        sa.Column("payment_id", sa.BigInteger(), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name=op.f("fk_invoice_payments_invoice_id_invoices")
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_invoice_payments_payment_id_payments")
        ),
        sa.PrimaryKeyConstraint("invoice_id", name=op.f("pk_invoice_payments")),
        sa.UniqueConstraint("payment_id", name=op.f("uq_invoice_payments_payment_id")),
    )
    op.create_table(
        "auto_top_ups",
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("threshold", MONEY, nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("payment_method_id", sa.BigInteger(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("armed", sa.Boolean(), nullable=False),
        sa.Column("pending", sa.Boolean(), nullable=False),
        sa.Column("last_top_up_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.CheckConstraint("threshold > 0", name=op.f("ck_auto_top_ups_threshold_positive")),
        sa.CheckConstraint("amount > 0", name=op.f("ck_auto_top_ups_amount_positive")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_auto_top_ups_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["payment_method_id"],
            ["payment_methods.id"],
            name=op.f("fk_auto_top_ups_payment_method_id_payment_methods"),
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_auto_top_ups")),
    )
    op.create_table(
        "top_up_orders",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("payer_id", sa.BigInteger(), nullable=False),
        sa.Column("payment_method_id", sa.BigInteger(), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("card_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_top_up_orders_amount_positive")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_top_up_orders_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["payer_id"], ["accounts.id"], name=op.f("fk_top_up_orders_payer_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["payment_method_id"],
            ["payment_methods.id"],
            name=op.f("fk_top_up_orders_payment_method_id_payment_methods"),
        ),
        sa.ForeignKeyConstraint(
            ["card_id"],
            ["stored_value_cards.id"],
            name=op.f("fk_top_up_orders_card_id_stored_value_cards"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_top_up_orders")),
        sa.UniqueConstraint("card_id", name=op.f("uq_top_up_orders_card_id")),
    )
    op.create_index("ix_top_up_orders_account", "top_up_orders", ["account_id", "id"])


def downgrade() -> None:
    for table in IMMUTABLE:
        op.execute(f"DROP TRIGGER {table}_immutable ON {table}")
    op.drop_index("ix_top_up_orders_account", table_name="top_up_orders")
    op.drop_table("top_up_orders")
    op.drop_table("auto_top_ups")
    op.drop_table("invoice_payments")
    op.drop_column("payment_methods", "auto_pay")
    op.drop_index("ix_stored_value_uses_card", table_name="stored_value_uses")
    op.drop_index("ix_stored_value_uses_charge", table_name="stored_value_uses")
    op.drop_table("stored_value_uses")
    op.drop_index("ix_stored_value_cards_account", table_name="stored_value_cards")
    op.drop_table("stored_value_cards")
    op.drop_column("charges", "branch")
    op.drop_constraint(op.f("ck_invoice_lines_tax"), "invoice_lines", type_="check")
    op.drop_constraint(op.f("ck_invoice_lines_tax_rate"), "invoice_lines", type_="check")
    op.drop_column("invoice_lines", "tax")
    op.drop_column("invoice_lines", "tax_rate")
    op.drop_constraint(op.f("ck_invoices_total"), "invoices", type_="check")
    op.create_check_constraint(
        op.f("ck_invoices_total"), "invoices", "total = subtotal - discount_total"
    )
    op.drop_column("invoices", "tax_total")
    op.drop_table("account_tax_groups")
    op.drop_table("tax_groups")
