"""B, I, V: the tables of billing.

A charge is on at most one invoice line (``invoiced_charges`` keyed by the charge), so a
bill cycle run twice, or over overlapping periods, never invoices a charge twice (B2).
Invoice totals are the sums of their lines (checked after every write, B4). Vouchers and
coupons keep what is left of them; each use is a row of ``charge_credits`` (V2).

Declared as SQLModel table models; the services query the Core tables (``invoices``,
``vouchers``, ..., each model's ``__table__``).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Identity,
    Index,
    Numeric,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from accountgraph.db import table_of

MONEY = Numeric(20, 2)
RATE = Numeric(7, 4)  # T1: a tax rate in percent, 0-100 with at most 4 places


class Discount(SQLModel, table=True):
    __tablename__ = "discounts"
    __table_args__ = (CheckConstraint("percent >= 0 AND percent <= 100", name="percent"),)

    account_id: int = Field(primary_key=True, sa_type=BigInteger, foreign_key="accounts.id")
    percent: Decimal = Field(sa_type=Numeric(5, 2))
    set_at: datetime = Field(
        sa_type=DateTime(timezone=True), sa_column_kwargs={"server_default": func.now()}
    )


class InvoiceSettings(SQLModel, table=True):
    """How one account's invoices are made."""

    __tablename__ = "invoice_settings"
    __table_args__ = (CheckConstraint("mode IN ('AGGREGATED', 'PER_MEMBER')", name="mode"),)

    account_id: int = Field(primary_key=True, sa_type=BigInteger, foreign_key="accounts.id")
    mode: str = Field(sa_type=String(20))


class Coupon(SQLModel, table=True):
    __tablename__ = "coupons"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("remaining >= 0 AND remaining <= amount", name="remaining"),
        Index("ix_coupons_account", "account_id", "valid_until"),
    )

    id: int = Field(primary_key=True, sa_type=BigInteger, sa_column_args=[Identity()])
    account_id: int = Field(sa_type=BigInteger, foreign_key="accounts.id")
    amount: Decimal = Field(sa_type=MONEY)
    remaining: Decimal = Field(sa_type=MONEY)
    valid_until: datetime = Field(sa_type=DateTime(timezone=True))
    issued_at: datetime = Field(
        sa_type=DateTime(timezone=True), sa_column_kwargs={"server_default": func.now()}
    )


class VoucherPool(SQLModel, table=True):
    __tablename__ = "voucher_pools"
    __table_args__ = (CheckConstraint("used >= 0 AND used <= granted", name="used_within_granted"),)

    master_id: int = Field(primary_key=True, sa_type=BigInteger, foreign_key="accounts.id")
    granted: Decimal = Field(sa_type=MONEY, sa_column_kwargs={"server_default": text("0")})
    used: Decimal = Field(sa_type=MONEY, sa_column_kwargs={"server_default": text("0")})


class Voucher(SQLModel, table=True):
    __tablename__ = "vouchers"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("remaining >= 0 AND remaining <= amount", name="remaining"),
        CheckConstraint("valid_from < valid_until", name="validity"),
        Index("ix_vouchers_master", "master_id", "id"),
    )

    id: int = Field(primary_key=True, sa_type=BigInteger, sa_column_args=[Identity()])
    master_id: int = Field(sa_type=BigInteger, foreign_key="accounts.id")
    amount: Decimal = Field(sa_type=MONEY)
    remaining: Decimal = Field(sa_type=MONEY)
    valid_from: datetime = Field(sa_type=DateTime(timezone=True))
    valid_until: datetime = Field(sa_type=DateTime(timezone=True))
    created_at: datetime = Field(
        sa_type=DateTime(timezone=True), sa_column_kwargs={"server_default": func.now()}
    )


class VoucherMember(SQLModel, table=True):
    __tablename__ = "voucher_members"
    __table_args__ = (Index("ix_voucher_members_member", "member_id"),)

    voucher_id: int = Field(primary_key=True, sa_type=BigInteger, foreign_key="vouchers.id")
    member_id: int = Field(primary_key=True, sa_type=BigInteger, foreign_key="accounts.id")


class ChargeCredit(SQLModel, table=True):
    __tablename__ = "charge_credits"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("(coupon_id IS NULL) <> (voucher_id IS NULL)", name="one_source"),
        Index("ix_charge_credits_charge", "charge_id"),
    )

    id: int = Field(primary_key=True, sa_type=BigInteger, sa_column_args=[Identity()])
    charge_id: int = Field(sa_type=BigInteger, foreign_key="charges.id")
    coupon_id: int | None = Field(default=None, sa_type=BigInteger, foreign_key="coupons.id")
    voucher_id: int | None = Field(default=None, sa_type=BigInteger, foreign_key="vouchers.id")
    amount: Decimal = Field(sa_type=MONEY)


class PaymentMethod(SQLModel, table=True):
    __tablename__ = "payment_methods"
    __table_args__ = (Index("ix_payment_methods_account", "account_id", "id"),)

    id: int = Field(primary_key=True, sa_type=BigInteger, sa_column_args=[Identity()])
    account_id: int = Field(sa_type=BigInteger, foreign_key="accounts.id")
    label: str = Field(sa_type=String(200))
    # B5: a managed payment method of a managed account points at the responsible
    # account's method it was made from; payments with it are the responsible's money.
    managed_from_id: int | None = Field(
        default=None, sa_type=BigInteger, foreign_key="payment_methods.id"
    )
    created_at: datetime = Field(
        sa_type=DateTime(timezone=True), sa_column_kwargs={"server_default": func.now()}
    )
    # W2 (migration 0007): the owner pays its invoices (and W3 top-ups) with it automatically.
    auto_pay: bool = Field(
        default=False, sa_type=Boolean, sa_column_kwargs={"server_default": text("false")}
    )


class Invoice(SQLModel, table=True):
    __tablename__ = "invoices"
    __table_args__ = (
        CheckConstraint("period_start <= period_end", name="period"),
        # B4, T2: total = Σ net + Σ tax (migration 0007 added the tax).
        CheckConstraint("total = subtotal - discount_total + tax_total", name="total"),
        Index("ix_invoices_account", "account_id", "id"),
    )

    id: int = Field(primary_key=True, sa_type=BigInteger, sa_column_args=[Identity()])
    account_id: int = Field(sa_type=BigInteger, foreign_key="accounts.id")
    # PER_MEMBER: the managed account this invoice is for (B2).
    member_id: int | None = Field(default=None, sa_type=BigInteger, foreign_key="accounts.id")
    # H4: the bill-to it was addressed to. No foreign key: an issued invoice is never
    # edited (so it cannot be SET NULL), and the bill-to may be removed later; what the
    # invoice said is kept in ``bill_to`` (name, address, email, invoiceTitle, taxId).
    bill_to_id: int | None = Field(default=None, sa_type=BigInteger)
    bill_to: dict[str, Any] | None = Field(default=None, sa_type=JSONB)
    period_start: date = Field(sa_type=Date)
    period_end: date = Field(sa_type=Date)
    issued_at: datetime = Field(
        sa_type=DateTime(timezone=True), sa_column_kwargs={"server_default": func.now()}
    )
    subtotal: Decimal = Field(sa_type=MONEY)
    discount_total: Decimal = Field(sa_type=MONEY)
    total: Decimal = Field(sa_type=MONEY)
    tax_total: Decimal = Field(sa_type=MONEY, sa_column_kwargs={"server_default": text("0")})


class InvoiceLine(SQLModel, table=True):
    __tablename__ = "invoice_lines"
    __table_args__ = (
        CheckConstraint("net = amount - discount", name="net"),
        CheckConstraint("discount >= 0 AND discount <= amount", name="discount"),
        # T2: the tax of a line is its net at its rate, half-up to the cent.
        CheckConstraint("tax_rate >= 0 AND tax_rate <= 100", name="tax_rate"),
        CheckConstraint("tax = round(net * tax_rate / 100, 2)", name="tax"),
        Index("ix_invoice_lines_invoice", "invoice_id", "id"),
    )

    id: int = Field(primary_key=True, sa_type=BigInteger, sa_column_args=[Identity()])
    invoice_id: int = Field(sa_type=BigInteger, foreign_key="invoices.id")
    member_id: int | None = Field(default=None, sa_type=BigInteger, foreign_key="accounts.id")
    site_id: int | None = Field(default=None, sa_type=BigInteger, foreign_key="sites.id")
    description: str = Field(sa_type=String(500))
    amount: Decimal = Field(sa_type=MONEY)
    discount_percent: Decimal = Field(sa_type=Numeric(5, 2))
    discount: Decimal = Field(sa_type=MONEY)
    net: Decimal = Field(sa_type=MONEY)
    tax_rate: Decimal = Field(sa_type=RATE, sa_column_kwargs={"server_default": text("0")})
    tax: Decimal = Field(sa_type=MONEY, sa_column_kwargs={"server_default": text("0")})


class InvoicedCharge(SQLModel, table=True):
    __tablename__ = "invoiced_charges"

    # A charge (funds) on a line (invoice_lines), without foreign keys (0012): all three
    # are never edited or deleted, the cycle writes only ids it has just read, and checks
    # the sums after the write; the keys' checks and KEY SHARE locks on every invoiced
    # charge and its line were two thirds of a bill cycle.
    charge_id: int = Field(
        primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": False}
    )
    line_id: int = Field(sa_type=BigInteger)


class BillCycle(SQLModel, table=True):
    """B2: a cycle ran for this account and period; running it again issues nothing."""

    __tablename__ = "bill_cycles"

    account_id: int = Field(primary_key=True, sa_type=BigInteger, foreign_key="accounts.id")
    period_start: date = Field(primary_key=True, sa_type=Date)
    period_end: date = Field(primary_key=True, sa_type=Date)
    ran_at: datetime = Field(
        sa_type=DateTime(timezone=True), sa_column_kwargs={"server_default": func.now()}
    )


class TaxGroup(SQLModel, table=True):
    """T1: a tax rate by code; sites and accounts name it by its code."""

    __tablename__ = "tax_groups"
    __table_args__ = (
        CheckConstraint("rate >= 0 AND rate <= 100", name="rate"),
        CheckConstraint("code ~ '^[A-Za-z0-9_-]{1,32}$'", name="code"),
        UniqueConstraint("code"),
    )

    id: int = Field(primary_key=True, sa_type=BigInteger, sa_column_args=[Identity()])
    code: str = Field(sa_type=String(32))
    name: str = Field(sa_type=String(200))
    rate: Decimal = Field(sa_type=RATE)
    created_at: datetime = Field(
        sa_type=DateTime(timezone=True), sa_column_kwargs={"server_default": func.now()}
    )


class AccountTaxGroup(SQLModel, table=True):
    """T1: an account's default tax group (set by operators)."""

    __tablename__ = "account_tax_groups"

    account_id: int = Field(primary_key=True, sa_type=BigInteger, foreign_key="accounts.id")
    tax_group_id: int = Field(sa_type=BigInteger, foreign_key="tax_groups.id")


class StoredValueCard(SQLModel, table=True):
    """W1: prepaid value of an account, used by charges after coupons and vouchers."""

    __tablename__ = "stored_value_cards"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("remaining >= 0 AND remaining <= amount", name="remaining"),
        CheckConstraint("origin IN ('ISSUED', 'TOP_UP')", name="origin"),
        Index("ix_stored_value_cards_account", "account_id", "valid_until"),
    )

    id: int = Field(primary_key=True, sa_type=BigInteger, sa_column_args=[Identity()])
    account_id: int = Field(sa_type=BigInteger, foreign_key="accounts.id")
    amount: Decimal = Field(sa_type=MONEY)
    remaining: Decimal = Field(sa_type=MONEY)
    valid_until: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    origin: str = Field(sa_type=String(10))
    created_at: datetime = Field(
        sa_type=DateTime(timezone=True), sa_column_kwargs={"server_default": func.now()}
    )


class StoredValueUse(SQLModel, table=True):
    """W1: what one card paid of one charge; never edited (like ``charge_credits``)."""

    __tablename__ = "stored_value_uses"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        Index("ix_stored_value_uses_charge", "charge_id"),
        Index("ix_stored_value_uses_card", "card_id"),
    )

    id: int = Field(primary_key=True, sa_type=BigInteger, sa_column_args=[Identity()])
    charge_id: int = Field(sa_type=BigInteger, foreign_key="charges.id")
    card_id: int = Field(sa_type=BigInteger, foreign_key="stored_value_cards.id")
    amount: Decimal = Field(sa_type=MONEY)


class InvoicePayment(SQLModel, table=True):
    """W2: the one automatic payment of an invoice (an issued invoice is never edited)."""

    __tablename__ = "invoice_payments"
    __table_args__ = (UniqueConstraint("payment_id"),)

    invoice_id: int = Field(primary_key=True, sa_type=BigInteger, foreign_key="invoices.id")
    payment_id: int = Field(sa_type=BigInteger, foreign_key="payments.id")
    paid_at: datetime = Field(
        sa_type=DateTime(timezone=True), sa_column_kwargs={"server_default": func.now()}
    )


class AutoTopUp(SQLModel, table=True):
    """W3: an account's auto top-up rule. ``armed``: the next fall below ``threshold``
    orders a top-up; ``pending``: an order is waiting for the worker (or its retry)."""

    __tablename__ = "auto_top_ups"
    __table_args__ = (
        CheckConstraint("threshold > 0", name="threshold_positive"),
        CheckConstraint("amount > 0", name="amount_positive"),
    )

    account_id: int = Field(primary_key=True, sa_type=BigInteger, foreign_key="accounts.id")
    threshold: Decimal = Field(sa_type=MONEY)
    amount: Decimal = Field(sa_type=MONEY)
    payment_method_id: int = Field(sa_type=BigInteger, foreign_key="payment_methods.id")
    enabled: bool = Field(sa_type=Boolean)
    armed: bool = Field(sa_type=Boolean)
    pending: bool = Field(sa_type=Boolean)
    last_top_up_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    last_error: str | None = Field(default=None, sa_type=String(500))
    updated_at: datetime = Field(
        sa_type=DateTime(timezone=True), sa_column_kwargs={"server_default": func.now()}
    )


class TopUpOrder(SQLModel, table=True):
    """W3: a paid top-up order and the card it bought; ``payer_id`` is whose money it was
    (the responsible account for a managed payment method, B5). Never edited."""

    __tablename__ = "top_up_orders"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        UniqueConstraint("card_id"),
        Index("ix_top_up_orders_account", "account_id", "id"),
    )

    id: int = Field(primary_key=True, sa_type=BigInteger, sa_column_args=[Identity()])
    account_id: int = Field(sa_type=BigInteger, foreign_key="accounts.id")
    payer_id: int = Field(sa_type=BigInteger, foreign_key="accounts.id")
    payment_method_id: int = Field(sa_type=BigInteger, foreign_key="payment_methods.id")
    amount: Decimal = Field(sa_type=MONEY)
    card_id: int = Field(sa_type=BigInteger, foreign_key="stored_value_cards.id")
    created_at: datetime = Field(
        sa_type=DateTime(timezone=True), sa_column_kwargs={"server_default": func.now()}
    )


# The Core tables, under the names the services' queries use.
discounts = table_of(Discount)
invoice_settings = table_of(InvoiceSettings)
coupons = table_of(Coupon)
voucher_pools = table_of(VoucherPool)
vouchers = table_of(Voucher)
voucher_members = table_of(VoucherMember)
charge_credits = table_of(ChargeCredit)
payment_methods = table_of(PaymentMethod)
invoices = table_of(Invoice)
invoice_lines = table_of(InvoiceLine)
invoiced_charges = table_of(InvoicedCharge)
bill_cycles = table_of(BillCycle)
tax_groups = table_of(TaxGroup)
account_tax_groups = table_of(AccountTaxGroup)
stored_value_cards = table_of(StoredValueCard)
stored_value_uses = table_of(StoredValueUse)
invoice_payments = table_of(InvoicePayment)
auto_top_ups = table_of(AutoTopUp)
top_up_orders = table_of(TopUpOrder)
