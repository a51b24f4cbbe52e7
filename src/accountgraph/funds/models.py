"""F1, F5, F9, F10: the tables of money.

Every change of money is a journal entry whose postings sum to zero per bucket over the
accounts and the EXTERNAL counterparty (``account_id IS NULL``); a deferred constraint
trigger (migration 0002) refuses a commit whose entry does not. Balances are materialised
per account, updated in the same transaction, and must equal the sums of their postings
(``accountgraph verify-ledger``). Records of money are never edited.

Declared as SQLModel table models; the services query the Core tables (``balances``,
``postings``, ..., each model's ``__table__``).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Identity,
    Index,
    Numeric,
    String,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from accountgraph.db import table_of

MONEY = Numeric(20, 2)

# Bucket name -> balance column. One name for one thing across SQL, Python and GraphQL.
BUCKETS = {
    "CASH": "cash_balance",
    "TRANSFERRED_CASH": "transferred_cash",
    "TRANSFERRED_CREDIT": "transferred_credit",
    "CREDIT_LIMIT": "credit_limit",
    "CREDIT_LINE": "credit_line",
    "BANKERS_ACCEPTANCE_BILL": "bankers_acceptance_bill",
    "CREDIT_REFUND": "credit_refund",
    "UNSETTLED_AMOUNT": "unsettled_amount",
    "NEGATIVE_BILL": "negative_bill",
    "OUTSTANDING_FEES": "outstanding_fees",
}
ENTRY_KINDS = (
    "ALLOCATE",
    "RECLAIM",
    "CREDIT_LINE",
    "CREDIT_LIMIT",
    "CHARGE",
    "PAYMENT",
    "WITHDRAWAL",
    "ADJUSTMENT",
)
METHODS = ("CASH", "CREDIT")
DIRECTIONS = ("ALLOCATE", "RECLAIM")


def _zero() -> Any:
    """A money column that starts at zero (NOT NULL, server default 0)."""
    return Field(sa_type=MONEY, sa_column_kwargs={"server_default": text("0")})


def _in(column: str, values: tuple[str, ...] | list[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Balance(SQLModel, table=True):
    """One account's money per bucket; a column per ``BUCKETS`` value, in that order."""

    __tablename__ = "balances"
    __table_args__ = (
        *(
            CheckConstraint(f"{column} >= 0", name=f"{column}_not_negative")
            for column in BUCKETS.values()
        ),
        # F3: allocated cash is part of cash; F6: a member's transferred credit is its limit.
        CheckConstraint("transferred_cash <= cash_balance", name="transferred_cash_within_cash"),
        CheckConstraint(
            "transferred_credit <= credit_limit", name="transferred_credit_within_limit"
        ),
    )

    account_id: int = Field(primary_key=True, sa_type=BigInteger, foreign_key="accounts.id")
    cash_balance: Decimal = _zero()
    transferred_cash: Decimal = _zero()
    transferred_credit: Decimal = _zero()
    credit_limit: Decimal = _zero()
    credit_line: Decimal = _zero()
    bankers_acceptance_bill: Decimal = _zero()
    credit_refund: Decimal = _zero()
    unsettled_amount: Decimal = _zero()
    negative_bill: Decimal = _zero()
    outstanding_fees: Decimal = _zero()
    updated_at: datetime = Field(
        sa_type=DateTime(timezone=True), sa_column_kwargs={"server_default": func.now()}
    )


class JournalEntry(SQLModel, table=True):
    __tablename__ = "journal_entries"
    __table_args__ = (CheckConstraint(_in("kind", ENTRY_KINDS), name="kind"),)

    id: int = Field(primary_key=True, sa_type=BigInteger, sa_column_args=[Identity()])
    kind: str = Field(sa_type=String(20))
    actor: str = Field(sa_type=String(300))
    reason: str | None = Field(default=None, sa_type=String(500))
    created_at: datetime = Field(
        sa_type=DateTime(timezone=True), sa_column_kwargs={"server_default": func.now()}
    )


class Posting(SQLModel, table=True):
    __tablename__ = "postings"
    __table_args__ = (
        CheckConstraint(_in("bucket", list(BUCKETS)), name="bucket"),
        CheckConstraint("amount <> 0", name="amount_not_zero"),
        Index("ix_postings_entry", "entry_id"),
        Index("ix_postings_account_bucket", "account_id", "bucket"),
    )

    id: int = Field(primary_key=True, sa_type=BigInteger, sa_column_args=[Identity()])
    entry_id: int = Field(sa_type=BigInteger, foreign_key="journal_entries.id")
    # NULL: the EXTERNAL counterparty (the world outside the platform's accounts).
    account_id: int | None = Field(default=None, sa_type=BigInteger, foreign_key="accounts.id")
    bucket: str = Field(sa_type=String(30))
    amount: Decimal = Field(sa_type=MONEY)


class Allocation(SQLModel, table=True):
    __tablename__ = "allocations"
    __table_args__ = (
        CheckConstraint(_in("method", METHODS), name="method"),
        # F4: never more reclaimed than was allocated, per member and method.
        CheckConstraint("reclaimed >= 0 AND reclaimed <= allocated", name="reclaimed_within"),
    )

    master_id: int = Field(primary_key=True, sa_type=BigInteger, foreign_key="accounts.id")
    member_id: int = Field(primary_key=True, sa_type=BigInteger, foreign_key="accounts.id")
    method: str = Field(primary_key=True, sa_type=String(10))
    allocated: Decimal = _zero()
    reclaimed: Decimal = _zero()


class Transfer(SQLModel, table=True):
    __tablename__ = "transfers"
    __table_args__ = (
        CheckConstraint(_in("method", METHODS), name="method"),
        CheckConstraint(_in("direction", DIRECTIONS), name="direction"),
        CheckConstraint("amount > 0", name="amount_positive"),
        Index("ix_transfers_master", "master_id", "id"),
        Index("ix_transfers_member", "member_id", "id"),
    )

    id: int = Field(primary_key=True, sa_type=BigInteger, sa_column_args=[Identity()])
    master_id: int = Field(sa_type=BigInteger, foreign_key="accounts.id")
    member_id: int = Field(sa_type=BigInteger, foreign_key="accounts.id")
    method: str = Field(sa_type=String(10))
    direction: str = Field(sa_type=String(10))
    amount: Decimal = Field(sa_type=MONEY)
    actor: str = Field(sa_type=String(300))
    idempotency_key: str | None = Field(default=None, sa_type=String(200))
    entry_id: int = Field(sa_type=BigInteger, foreign_key="journal_entries.id")
    created_at: datetime = Field(
        sa_type=DateTime(timezone=True), sa_column_kwargs={"server_default": func.now()}
    )


class Charge(SQLModel, table=True):
    __tablename__ = "charges"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("paid_by_master >= 0 AND paid_by_master <= amount", name="paid_by_master"),
        Index("ix_charges_account", "account_id", "id"),
        Index("ix_charges_account_occurred", "account_id", "occurred_at"),
        CheckConstraint("jsonb_typeof(tags) = 'object'", name="tags_object"),
    )

    id: int = Field(primary_key=True, sa_type=BigInteger, sa_column_args=[Identity()])
    account_id: int = Field(sa_type=BigInteger, foreign_key="accounts.id")
    site_id: int | None = Field(default=None, sa_type=BigInteger, foreign_key="sites.id")
    amount: Decimal = Field(sa_type=MONEY)
    description: str = Field(sa_type=String(500))
    occurred_at: datetime = Field(sa_type=DateTime(timezone=True))
    recorded_at: datetime = Field(
        sa_type=DateTime(timezone=True), sa_column_kwargs={"server_default": func.now()}
    )
    paid_by_master: Decimal = _zero()
    # V2: NULL when coupons and vouchers covered the whole charge (no balance moved).
    entry_id: int | None = Field(default=None, sa_type=BigInteger, foreign_key="journal_entries.id")
    # C1 (migration 0006): the product and the cost tags ({key: value}), part of the charge.
    product: str | None = Field(default=None, sa_type=String(64))
    tags: dict[str, str] = Field(
        default_factory=dict, sa_type=JSONB, sa_column_kwargs={"server_default": text("'{}'")}
    )
    # T3 (migration 0007): the branch its entry records: its site's, else its account's.
    branch: str | None = Field(default=None, sa_type=String(200))


class Payment(SQLModel, table=True):
    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        Index("ix_payments_account", "account_id", "id"),
        Index("ix_payments_payer", "payer_id", "id"),
    )

    id: int = Field(primary_key=True, sa_type=BigInteger, sa_column_args=[Identity()])
    account_id: int = Field(sa_type=BigInteger, foreign_key="accounts.id")
    amount: Decimal = Field(sa_type=MONEY)
    actor: str = Field(sa_type=String(300))
    entry_id: int = Field(sa_type=BigInteger, foreign_key="journal_entries.id")
    created_at: datetime = Field(
        sa_type=DateTime(timezone=True), sa_column_kwargs={"server_default": func.now()}
    )
    # B5 (migration 0005): the method it was made with, and whose money it is (the
    # responsible account for a managed payment method, else the account itself).
    payment_method_id: int | None = Field(
        default=None, sa_type=BigInteger, foreign_key="payment_methods.id"
    )
    payer_id: int = Field(sa_type=BigInteger, foreign_key="accounts.id")


class IdempotencyKey(SQLModel, table=True):
    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("ix_idempotency_keys_created", "created_at"),)

    # Whose key: "operator" or "account:<id>" (F10: keys are scoped to the caller).
    scope: str = Field(primary_key=True, sa_type=String(100))
    key: str = Field(primary_key=True, sa_type=String(200))
    request_hash: str = Field(sa_type=String(64))
    result: dict[str, Any] | None = Field(default=None, sa_type=JSONB)
    created_at: datetime = Field(
        sa_type=DateTime(timezone=True), sa_column_kwargs={"server_default": func.now()}
    )


# The Core tables, under the names the services' queries use.
balances = table_of(Balance)
journal_entries = table_of(JournalEntry)
postings = table_of(Posting)
allocations = table_of(Allocation)
transfers = table_of(Transfer)
charges = table_of(Charge)
payments = table_of(Payment)
idempotency_keys = table_of(IdempotencyKey)

# A bucket is a balance column: BUCKETS and Balance must name the same ones.
if [column.name for column in balances.c][1:-1] != list(BUCKETS.values()):
    raise RuntimeError("Balance's money columns are not BUCKETS' values")
