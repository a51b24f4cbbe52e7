"""B, I, V: the tables of billing.

A charge is on at most one invoice line (``invoiced_charges`` keyed by the charge), so a
bill cycle run twice, or over overlapping periods, never invoices a charge twice (B2).
Invoice totals are the sums of their lines (checked after every write, B4). Vouchers and
coupons keep what is left of them; each use is a row of ``charge_credits`` (V2).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from accountgraph.db import metadata

MONEY = Numeric(20, 2)

discounts = Table(
    "discounts",
    metadata,
    Column("account_id", BigInteger, ForeignKey("accounts.id"), primary_key=True),
    Column("percent", Numeric(5, 2), nullable=False),
    Column("set_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("percent >= 0 AND percent <= 100", name="percent"),
)

invoice_settings = Table(
    "invoice_settings",
    metadata,
    Column("account_id", BigInteger, ForeignKey("accounts.id"), primary_key=True),
    Column("mode", String(20), nullable=False),
    CheckConstraint("mode IN ('AGGREGATED', 'PER_MEMBER')", name="mode"),
)

coupons = Table(
    "coupons",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("account_id", BigInteger, ForeignKey("accounts.id"), nullable=False),
    Column("amount", MONEY, nullable=False),
    Column("remaining", MONEY, nullable=False),
    Column("valid_until", DateTime(timezone=True), nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("remaining >= 0 AND remaining <= amount", name="remaining"),
)
Index("ix_coupons_account", coupons.c.account_id, coupons.c.valid_until)

voucher_pools = Table(
    "voucher_pools",
    metadata,
    Column("master_id", BigInteger, ForeignKey("accounts.id"), primary_key=True),
    Column("granted", MONEY, nullable=False, server_default=text("0")),
    Column("used", MONEY, nullable=False, server_default=text("0")),
    CheckConstraint("used >= 0 AND used <= granted", name="used_within_granted"),
)

vouchers = Table(
    "vouchers",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("master_id", BigInteger, ForeignKey("accounts.id"), nullable=False),
    Column("amount", MONEY, nullable=False),
    Column("remaining", MONEY, nullable=False),
    Column("valid_from", DateTime(timezone=True), nullable=False),
    Column("valid_until", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("remaining >= 0 AND remaining <= amount", name="remaining"),
    CheckConstraint("valid_from < valid_until", name="validity"),
)
Index("ix_vouchers_master", vouchers.c.master_id, vouchers.c.id)

voucher_members = Table(
    "voucher_members",
    metadata,
    Column("voucher_id", BigInteger, ForeignKey("vouchers.id"), nullable=False),
    Column("member_id", BigInteger, ForeignKey("accounts.id"), nullable=False),
    PrimaryKeyConstraint("voucher_id", "member_id"),
)
Index("ix_voucher_members_member", voucher_members.c.member_id)

charge_credits = Table(
    "charge_credits",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("charge_id", BigInteger, ForeignKey("charges.id"), nullable=False),
    Column("coupon_id", BigInteger, ForeignKey("coupons.id")),
    Column("voucher_id", BigInteger, ForeignKey("vouchers.id")),
    Column("amount", MONEY, nullable=False),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("(coupon_id IS NULL) <> (voucher_id IS NULL)", name="one_source"),
)
Index("ix_charge_credits_charge", charge_credits.c.charge_id)

payment_methods = Table(
    "payment_methods",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("account_id", BigInteger, ForeignKey("accounts.id"), nullable=False),
    Column("label", String(200), nullable=False),
    # B5: a managed payment method of a managed account points at the responsible
    # account's method it was made from; payments with it are the responsible's money.
    Column("managed_from_id", BigInteger, ForeignKey("payment_methods.id")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index("ix_payment_methods_account", payment_methods.c.account_id, payment_methods.c.id)

invoices = Table(
    "invoices",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("account_id", BigInteger, ForeignKey("accounts.id"), nullable=False),
    # PER_MEMBER: the managed account this invoice is for (B2).
    Column("member_id", BigInteger, ForeignKey("accounts.id")),
    # H4: the bill-to it was addressed to. No foreign key: an issued invoice is never
    # edited (so it cannot be SET NULL), and the bill-to may be removed later; what the
    # invoice said is kept in ``bill_to`` (name, address, email, invoiceTitle, taxId).
    Column("bill_to_id", BigInteger),
    Column("bill_to", JSONB),
    Column("period_start", Date, nullable=False),
    Column("period_end", Date, nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("subtotal", MONEY, nullable=False),
    Column("discount_total", MONEY, nullable=False),
    Column("total", MONEY, nullable=False),
    CheckConstraint("period_start <= period_end", name="period"),
    CheckConstraint("total = subtotal - discount_total", name="total"),
)
Index("ix_invoices_account", invoices.c.account_id, invoices.c.id)

invoice_lines = Table(
    "invoice_lines",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("invoice_id", BigInteger, ForeignKey("invoices.id"), nullable=False),
    Column("member_id", BigInteger, ForeignKey("accounts.id")),
    Column("site_id", BigInteger, ForeignKey("sites.id")),
    Column("description", String(500), nullable=False),
    Column("amount", MONEY, nullable=False),
    Column("discount_percent", Numeric(5, 2), nullable=False),
    Column("discount", MONEY, nullable=False),
    Column("net", MONEY, nullable=False),
    CheckConstraint("net = amount - discount", name="net"),
    CheckConstraint("discount >= 0 AND discount <= amount", name="discount"),
)
Index("ix_invoice_lines_invoice", invoice_lines.c.invoice_id, invoice_lines.c.id)

invoiced_charges = Table(
    "invoiced_charges",
    metadata,
    Column("charge_id", BigInteger, ForeignKey("charges.id"), primary_key=True),
    Column("line_id", BigInteger, ForeignKey("invoice_lines.id"), nullable=False),
)

bill_cycles = Table(
    "bill_cycles",
    metadata,
    # B2: a cycle ran for this account and period; running it again issues nothing.
    Column("account_id", BigInteger, ForeignKey("accounts.id"), nullable=False),
    Column("period_start", Date, nullable=False),
    Column("period_end", Date, nullable=False),
    Column("ran_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("account_id", "period_start", "period_end"),
)
