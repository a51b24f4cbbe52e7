"""F1, F5, F9, F10: the tables of money.

Every change of money is a journal entry whose postings sum to zero per bucket over the
accounts and the EXTERNAL counterparty (``account_id IS NULL``); a deferred constraint
trigger (migration 0002) refuses a commit whose entry does not. Balances are materialised
per account, updated in the same transaction, and must equal the sums of their postings
(``accountgraph verify-ledger``). Records of money are never edited.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
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
ENTRY_KINDS = ("ALLOCATE", "RECLAIM", "CREDIT_LINE", "CREDIT_LIMIT", "CHARGE", "PAYMENT",
               "WITHDRAWAL", "ADJUSTMENT")
METHODS = ("CASH", "CREDIT")
DIRECTIONS = ("ALLOCATE", "RECLAIM")


def _zero(name: str) -> Column[object]:
    return Column(name, MONEY, nullable=False, server_default=text("0"))


def _in(column: str, values: tuple[str, ...] | list[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


balances = Table(
    "balances",
    metadata,
    Column("account_id", BigInteger, ForeignKey("accounts.id"), primary_key=True),
    *(_zero(column) for column in BUCKETS.values()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    *(CheckConstraint(f"{column} >= 0", name=f"{column}_not_negative")
      for column in BUCKETS.values()),
    # F3: allocated cash is part of cash; F6: a member's transferred credit is its limit.
    CheckConstraint("transferred_cash <= cash_balance", name="transferred_cash_within_cash"),
    CheckConstraint("transferred_credit <= credit_limit", name="transferred_credit_within_limit"),
)

journal_entries = Table(
    "journal_entries",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("actor", String(300), nullable=False),
    Column("reason", String(500)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint(_in("kind", ENTRY_KINDS), name="kind"),
)

postings = Table(
    "postings",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("entry_id", BigInteger, ForeignKey("journal_entries.id"), nullable=False),
    # NULL: the EXTERNAL counterparty (the world outside the platform's accounts).
    Column("account_id", BigInteger, ForeignKey("accounts.id")),
    Column("bucket", String(30), nullable=False),
    Column("amount", MONEY, nullable=False),
    CheckConstraint(_in("bucket", list(BUCKETS)), name="bucket"),
    CheckConstraint("amount <> 0", name="amount_not_zero"),
)
Index("ix_postings_entry", postings.c.entry_id)
Index("ix_postings_account_bucket", postings.c.account_id, postings.c.bucket)

allocations = Table(
    "allocations",
    metadata,
    Column("master_id", BigInteger, ForeignKey("accounts.id"), nullable=False),
    Column("member_id", BigInteger, ForeignKey("accounts.id"), nullable=False),
    Column("method", String(10), nullable=False),
    _zero("allocated"),
    _zero("reclaimed"),
    PrimaryKeyConstraint("master_id", "member_id", "method"),
    CheckConstraint(_in("method", METHODS), name="method"),
    # F4: never more reclaimed than was allocated, per member and method.
    CheckConstraint("reclaimed >= 0 AND reclaimed <= allocated", name="reclaimed_within"),
)

transfers = Table(
    "transfers",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("master_id", BigInteger, ForeignKey("accounts.id"), nullable=False),
    Column("member_id", BigInteger, ForeignKey("accounts.id"), nullable=False),
    Column("method", String(10), nullable=False),
    Column("direction", String(10), nullable=False),
    Column("amount", MONEY, nullable=False),
    Column("actor", String(300), nullable=False),
    Column("idempotency_key", String(200)),
    Column("entry_id", BigInteger, ForeignKey("journal_entries.id"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint(_in("method", METHODS), name="method"),
    CheckConstraint(_in("direction", DIRECTIONS), name="direction"),
    CheckConstraint("amount > 0", name="amount_positive"),
)
Index("ix_transfers_master", transfers.c.master_id, transfers.c.id)
Index("ix_transfers_member", transfers.c.member_id, transfers.c.id)

charges = Table(
    "charges",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("account_id", BigInteger, ForeignKey("accounts.id"), nullable=False),
    Column("site_id", BigInteger, ForeignKey("sites.id")),
    Column("amount", MONEY, nullable=False),
    Column("description", String(500), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("paid_by_master", MONEY, nullable=False, server_default=text("0")),
    # V2: NULL when coupons and vouchers covered the whole charge (no balance moved).
    Column("entry_id", BigInteger, ForeignKey("journal_entries.id")),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("paid_by_master >= 0 AND paid_by_master <= amount", name="paid_by_master"),
)
Index("ix_charges_account", charges.c.account_id, charges.c.id)
Index("ix_charges_account_occurred", charges.c.account_id, charges.c.occurred_at)

payments = Table(
    "payments",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("account_id", BigInteger, ForeignKey("accounts.id"), nullable=False),
    Column("amount", MONEY, nullable=False),
    Column("actor", String(300), nullable=False),
    Column("entry_id", BigInteger, ForeignKey("journal_entries.id"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # B5 (migration 0005): the method it was made with, and whose money it is (the
    # responsible account for a managed payment method, else the account itself).
    Column("payment_method_id", BigInteger, ForeignKey("payment_methods.id")),
    Column("payer_id", BigInteger, ForeignKey("accounts.id"), nullable=False),
    CheckConstraint("amount > 0", name="amount_positive"),
)
Index("ix_payments_account", payments.c.account_id, payments.c.id)
Index("ix_payments_payer", payments.c.payer_id, payments.c.id)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    # Whose key: "operator" or "account:<id>" (F10: keys are scoped to the caller).
    Column("scope", String(100), nullable=False),
    Column("key", String(200), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("result", JSONB),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("scope", "key"),
)
Index("ix_idempotency_keys_created", idempotency_keys.c.created_at)
