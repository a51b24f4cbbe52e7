"""C3, C4: the tables of budgets, their thresholds and what fired.

``budget_firings`` has one row per (budget, threshold basis and percent, period start):
its primary key is the unique key that makes a threshold fire at most once in a period
(C4, A5), whatever runs it twice (a retried job, the sweep). It is keyed by basis and
percent, not by the threshold row, so changing a budget keeps what already fired.

Declared as SQLModel table models; the services query the Core tables.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    func,
)
from sqlmodel import Field, SQLModel

from accountgraph.db import table_of

PERIODS = ("MONTHLY", "QUARTERLY", "YEARLY")
BASES = ("ACTUAL", "FORECASTED")
MAX_BUDGETS = 100
MAX_THRESHOLDS = 5


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Budget(SQLModel, table=True):
    __tablename__ = "budgets"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(_in("period", PERIODS), name="period"),
        CheckConstraint("num_nonnulls(member_id, user_group_id, tag_key) <= 1", name="one_scope"),
        CheckConstraint("(tag_key IS NULL) = (tag_value IS NULL)", name="tag_pair"),
        Index("ix_budgets_account", "account_id", "id"),
    )

    id: int = Field(primary_key=True, sa_type=BigInteger, sa_column_args=[Identity()])
    account_id: int = Field(sa_type=BigInteger, foreign_key="accounts.id")
    name: str = Field(sa_type=String(200))
    amount: Decimal = Field(sa_type=Numeric(20, 2))
    period: str = Field(sa_type=String(10))
    member_id: int | None = Field(default=None, sa_type=BigInteger, foreign_key="accounts.id")
    user_group_id: int | None = Field(
        default=None, sa_type=BigInteger, foreign_key="user_groups.id"
    )
    tag_key: str | None = Field(default=None, sa_type=String(64))
    tag_value: str | None = Field(default=None, sa_type=String(256))
    created_at: datetime = Field(
        sa_type=DateTime(timezone=True), sa_column_kwargs={"server_default": func.now()}
    )
    updated_at: datetime = Field(
        sa_type=DateTime(timezone=True), sa_column_kwargs={"server_default": func.now()}
    )


class BudgetThreshold(SQLModel, table=True):
    __tablename__ = "budget_thresholds"
    __table_args__ = (
        CheckConstraint(_in("basis", BASES), name="basis"),
        CheckConstraint("percent > 0 AND percent <= 1000", name="percent"),
    )

    budget_id: int = Field(
        sa_column=Column(BigInteger, ForeignKey("budgets.id", ondelete="CASCADE"), primary_key=True)
    )
    basis: str = Field(primary_key=True, sa_type=String(12))
    percent: Decimal = Field(primary_key=True, sa_type=Numeric(6, 2))
    position: int = Field(sa_type=Integer)


class BudgetFiring(SQLModel, table=True):
    __tablename__ = "budget_firings"
    __table_args__ = (CheckConstraint(_in("basis", BASES), name="basis"),)

    budget_id: int = Field(
        sa_column=Column(BigInteger, ForeignKey("budgets.id", ondelete="CASCADE"), primary_key=True)
    )
    basis: str = Field(primary_key=True, sa_type=String(12))
    percent: Decimal = Field(primary_key=True, sa_type=Numeric(6, 2))
    period_start: datetime = Field(primary_key=True, sa_type=DateTime(timezone=True))
    fired_at: datetime = Field(
        sa_type=DateTime(timezone=True), sa_column_kwargs={"server_default": func.now()}
    )
    spent: Decimal = Field(sa_type=Numeric(20, 2))
    forecast: Decimal = Field(sa_type=Numeric(20, 2))
    notification_id: int | None = Field(default=None, sa_type=BigInteger)


class BudgetEvaluation(SQLModel, table=True):
    """C4: an account's evaluation row: the worker holds it (FOR UPDATE) while it brings
    the account's stored spends up to date; when and in which snapshot it last did."""

    __tablename__ = "budget_evaluations"

    account_id: int = Field(primary_key=True, sa_type=BigInteger, foreign_key="accounts.id")
    evaluated_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    # The snapshot the stored spends (``budget_spends``) were last computed in whole in
    # and the time they counted up to (a charge that snapshot sees and that occurred by
    # then is counted), and what the account's report was made of then (its members since
    # when, its ended trusteeships, its budgets' user groups): a different make-up means
    # the next evaluation computes them in whole again.
    spend_snapshot: str | None = Field(default=None, sa_type=Text)
    spend_until: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    fingerprint: str | None = Field(default=None, sa_type=Text)
    # The previous release's workers (before 0010) record their snapshot here; this one
    # neither reads nor writes it. Kept while they may run beside this release (0011);
    # the next release drops it (contract).
    snapshot: str | None = Field(default=None, sa_type=Text)


class BudgetSpend(SQLModel, table=True):
    """C4 at the speed of the charges: a budget's spend in its current period as the
    worker last counted it (computed in whole, then plus each new charge's amount); the
    live ``Budget.spent`` (C3) is always computed from the charges."""

    __tablename__ = "budget_spends"

    budget_id: int = Field(
        sa_column=Column(BigInteger, ForeignKey("budgets.id", ondelete="CASCADE"), primary_key=True)
    )
    period_start: datetime = Field(sa_type=DateTime(timezone=True))
    spent: Decimal = Field(sa_type=Numeric(20, 2))


class BudgetDelta(SQLModel, table=True):
    """C4: a committed charge not yet counted in the stored spends of an account whose
    report holds it (written by the charge's job, consumed by the account's next
    evaluation). ``xid`` is the charge's transaction: a whole computation whose snapshot
    sees it counted the charge already."""

    __tablename__ = "budget_deltas"
    __table_args__ = (Index("ix_budget_deltas_account", "account_id", "occurred_at"),)

    id: int | None = Field(
        default=None, sa_column=Column(BigInteger, Identity(always=False), primary_key=True)
    )
    account_id: int = Field(sa_type=BigInteger, foreign_key="accounts.id")
    charge_id: int = Field(sa_type=BigInteger)
    xid: int = Field(sa_type=BigInteger)
    occurred_at: datetime = Field(sa_type=DateTime(timezone=True))


budgets = table_of(Budget)
budget_evaluations = table_of(BudgetEvaluation)
budget_spends = table_of(BudgetSpend)
budget_deltas = table_of(BudgetDelta)
budget_thresholds = table_of(BudgetThreshold)
budget_firings = table_of(BudgetFiring)
