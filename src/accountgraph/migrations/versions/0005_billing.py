"""billing

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


IMMUTABLE = ("invoices", "invoice_lines", "invoiced_charges", "charge_credits")


def upgrade() -> None:
    op.create_table(
        "bill_cycles",
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column(
            "ran_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_bill_cycles_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint(
            "account_id", "period_start", "period_end", name=op.f("pk_bill_cycles")
        ),
    )
    op.create_table(
        "coupons",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column("remaining", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "issued_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_coupons_amount_positive")),
        sa.CheckConstraint(
            "remaining >= 0 AND remaining <= amount", name=op.f("ck_coupons_remaining")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_coupons_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coupons")),
    )
    op.create_index("ix_coupons_account", "coupons", ["account_id", "valid_until"], unique=False)
    op.create_table(
        "discounts",
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("percent", sa.Numeric(precision=5, scale=2), nullable=False),
        sa.Column(
            "set_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.CheckConstraint("percent >= 0 AND percent <= 100", name=op.f("ck_discounts_percent")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_discounts_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_discounts")),
    )
    op.create_table(
        "invoice_settings",
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("mode", sa.String(length=20), nullable=False),
        sa.CheckConstraint(
            "mode IN ('AGGREGATED', 'PER_MEMBER')", name=op.f("ck_invoice_settings_mode")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_invoice_settings_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_invoice_settings")),
    )
    op.create_table(
        "payment_methods",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("managed_from_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_payment_methods_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["managed_from_id"],
            ["payment_methods.id"],
            name=op.f("fk_payment_methods_managed_from_id_payment_methods"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_methods")),
    )
    op.create_index(
        "ix_payment_methods_account", "payment_methods", ["account_id", "id"], unique=False
    )
    op.create_table(
        "voucher_pools",
        sa.Column("master_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "granted",
            sa.Numeric(precision=20, scale=2),
            server_default=sa.text("0"),
            nullable=False,
        ),
        sa.Column(
            "used", sa.Numeric(precision=20, scale=2), server_default=sa.text("0"), nullable=False
        ),
        sa.CheckConstraint(
            "used >= 0 AND used <= granted", name=op.f("ck_voucher_pools_used_within_granted")
        ),
        sa.ForeignKeyConstraint(
            ["master_id"], ["accounts.id"], name=op.f("fk_voucher_pools_master_id_accounts")
        ),
        sa.PrimaryKeyConstraint("master_id", name=op.f("pk_voucher_pools")),
    )
    op.create_table(
        "vouchers",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("master_id", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column("remaining", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_vouchers_amount_positive")),
        sa.CheckConstraint(
            "remaining >= 0 AND remaining <= amount", name=op.f("ck_vouchers_remaining")
        ),
        sa.CheckConstraint("valid_from < valid_until", name=op.f("ck_vouchers_validity")),
        sa.ForeignKeyConstraint(
            ["master_id"], ["accounts.id"], name=op.f("fk_vouchers_master_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vouchers")),
    )
    op.create_index("ix_vouchers_master", "vouchers", ["master_id", "id"], unique=False)
    op.create_table(
        "invoices",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=True),
        sa.Column("bill_to_id", sa.BigInteger(), nullable=True),
        sa.Column("bill_to", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column(
            "issued_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("subtotal", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column("discount_total", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column("total", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.CheckConstraint("period_start <= period_end", name=op.f("ck_invoices_period")),
        sa.CheckConstraint("total = subtotal - discount_total", name=op.f("ck_invoices_total")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_invoices_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["accounts.id"], name=op.f("fk_invoices_member_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoices")),
    )
    op.create_index("ix_invoices_account", "invoices", ["account_id", "id"], unique=False)
    op.create_table(
        "voucher_members",
        sa.Column("voucher_id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["accounts.id"], name=op.f("fk_voucher_members_member_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["voucher_id"], ["vouchers.id"], name=op.f("fk_voucher_members_voucher_id_vouchers")
        ),
        sa.PrimaryKeyConstraint("voucher_id", "member_id", name=op.f("pk_voucher_members")),
    )
    op.create_index("ix_voucher_members_member", "voucher_members", ["member_id"], unique=False)
    op.create_table(
        "invoice_lines",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("invoice_id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=True),
        sa.Column("site_id", sa.BigInteger(), nullable=True),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("amount", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column("discount_percent", sa.Numeric(precision=5, scale=2), nullable=False),
        sa.Column("discount", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column("net", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.CheckConstraint(
            "discount >= 0 AND discount <= amount", name=op.f("ck_invoice_lines_discount")
        ),
        sa.CheckConstraint("net = amount - discount", name=op.f("ck_invoice_lines_net")),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name=op.f("fk_invoice_lines_invoice_id_invoices")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["accounts.id"], name=op.f("fk_invoice_lines_member_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_invoice_lines_site_id_sites")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice_lines")),
    )
    op.create_index("ix_invoice_lines_invoice", "invoice_lines", ["invoice_id", "id"], unique=False)
    op.create_table(
        "charge_credits",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("charge_id", sa.BigInteger(), nullable=False),
        sa.Column("coupon_id", sa.BigInteger(), nullable=True),
        sa.Column("voucher_id", sa.BigInteger(), nullable=True),
        sa.Column("amount", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.CheckConstraint(
            "(coupon_id IS NULL) <> (voucher_id IS NULL)", name=op.f("ck_charge_credits_one_source")
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_charge_credits_amount_positive")),
        sa.ForeignKeyConstraint(
            ["charge_id"], ["charges.id"], name=op.f("fk_charge_credits_charge_id_charges")
        ),
        sa.ForeignKeyConstraint(
            ["coupon_id"], ["coupons.id"], name=op.f("fk_charge_credits_coupon_id_coupons")
        ),
        sa.ForeignKeyConstraint(
            ["voucher_id"], ["vouchers.id"], name=op.f("fk_charge_credits_voucher_id_vouchers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_charge_credits")),
    )
    op.create_index("ix_charge_credits_charge", "charge_credits", ["charge_id"], unique=False)
    op.create_table(
        "invoiced_charges",
        sa.Column("charge_id", sa.BigInteger(), nullable=False),
        sa.Column("line_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["charge_id"], ["charges.id"], name=op.f("fk_invoiced_charges_charge_id_charges")
        ),
        sa.ForeignKeyConstraint(
            ["line_id"],
            ["invoice_lines.id"],
            name=op.f("fk_invoiced_charges_line_id_invoice_lines"),
        ),
        sa.PrimaryKeyConstraint("charge_id", name=op.f("pk_invoiced_charges")),
    )

    # V2: a charge that coupons and vouchers cover entirely moves no balance: no entry.
    op.alter_column("charges", "entry_id", existing_type=sa.BigInteger(), nullable=True)
    # B5: the payment method of a payment and whose money it is (payer). Rows made before
    # this revision were the account's own money.
    op.add_column("payments", sa.Column("payment_method_id", sa.BigInteger(), nullable=True))
    op.add_column("payments", sa.Column("payer_id", sa.BigInteger(), nullable=True))
    op.execute("ALTER TABLE payments DISABLE TRIGGER payments_immutable")
    op.execute("UPDATE payments SET payer_id = account_id")
    op.execute("ALTER TABLE payments ENABLE TRIGGER payments_immutable")
    op.alter_column("payments", "payer_id", existing_type=sa.BigInteger(), nullable=False)
    op.create_foreign_key(
        op.f("fk_payments_payment_method_id_payment_methods"),
        "payments",
        "payment_methods",
        ["payment_method_id"],
        ["id"],
    )
    op.create_foreign_key(
        op.f("fk_payments_payer_id_accounts"), "payments", "accounts", ["payer_id"], ["id"]
    )
    op.create_index("ix_payments_payer", "payments", ["payer_id", "id"], unique=False)

    # Issued invoices and the record of what paid a charge are never edited (B4, V2).
    for table in IMMUTABLE:
        op.execute(f"""
            CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION money_records_immutable()""")


def downgrade() -> None:
    for table in IMMUTABLE:
        op.execute(f"DROP TRIGGER {table}_immutable ON {table}")
    op.drop_index("ix_payments_payer", table_name="payments")
    op.drop_constraint(op.f("fk_payments_payer_id_accounts"), "payments", type_="foreignkey")
    op.drop_constraint(
        op.f("fk_payments_payment_method_id_payment_methods"), "payments", type_="foreignkey"
    )
    op.drop_column("payments", "payer_id")
    op.drop_column("payments", "payment_method_id")
    op.alter_column("charges", "entry_id", existing_type=sa.BigInteger(), nullable=False)
    op.drop_table("invoiced_charges")
    op.drop_index("ix_charge_credits_charge", table_name="charge_credits")
    op.drop_table("charge_credits")
    op.drop_index("ix_invoice_lines_invoice", table_name="invoice_lines")
    op.drop_table("invoice_lines")
    op.drop_index("ix_voucher_members_member", table_name="voucher_members")
    op.drop_table("voucher_members")
    op.drop_index("ix_invoices_account", table_name="invoices")
    op.drop_table("invoices")
    op.drop_index("ix_vouchers_master", table_name="vouchers")
    op.drop_table("vouchers")
    op.drop_table("voucher_pools")
    op.drop_index("ix_payment_methods_account", table_name="payment_methods")
    op.drop_table("payment_methods")
    op.drop_table("invoice_settings")
    op.drop_table("discounts")
    op.drop_index("ix_coupons_account", table_name="coupons")
    op.drop_table("coupons")
    op.drop_table("bill_cycles")
