"""F7, F8 as SQL for other areas: the charges an account answers for, and payments.

Billing invoices charges (B2) and shows payments (B5) without naming funds' tables:
these build the rows it needs, to filter and join in its own queries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Subquery,
    and_,
    exists,
    null,
    or_,
    select,
    union_all,
)

from accountgraph.accounts.public import trusteeship_periods
from accountgraph.funds.models import charges, journal_entries, payments, postings

ChargeFilter = Callable[[ColumnElement[int]], ColumnElement[bool]]
"""A further condition on a charge, given its id."""


def responsible_charges(
    account_id: ColumnElement[int],
    since: datetime,
    until: datetime,
    *,
    where: ChargeFilter | None = None,
    name: str = "responsible_charges",
) -> Subquery:
    """B1/U4 as SQL: the charges ``account_id`` answers for in [since, until): its own
    charges outside any trusteeship association of its own (those are its master's), and
    its trusteeship members' charges during their association with it (activated_at <=
    occurred_at < ended_at, as F7 settles them). ``where`` narrows both (billing: not
    invoiced yet). Columns: member_id (NULL for its own), id, account_id, site_id,
    amount."""
    extra = [] if where is None else [where(charges.c.id)]
    in_period = and_(charges.c.occurred_at >= since, charges.c.occurred_at < until)
    own_association = trusteeship_periods("own_association")
    own = select(
        null().cast(BigInteger).label("member_id"),
        charges.c.id,
        charges.c.account_id,
        charges.c.site_id,
        charges.c.amount,
    ).where(
        charges.c.account_id == account_id,
        in_period,
        *extra,
        ~exists().where(
            own_association.c.member_id == charges.c.account_id, _during(own_association)
        ),
    )
    association = trusteeship_periods("association")
    managed = (
        select(
            charges.c.account_id.label("member_id"),
            charges.c.id,
            charges.c.account_id,
            charges.c.site_id,
            charges.c.amount,
        )
        .select_from(
            association.join(
                charges, and_(charges.c.account_id == association.c.member_id, _during(association))
            )
        )
        .where(association.c.master_id == account_id, in_period, *extra)
    )
    return union_all(own, managed).subquery(name)


def _during(period: Subquery) -> ColumnElement[bool]:
    """The charge occurred while the trusteeship association ``period`` lasted."""
    return and_(
        charges.c.occurred_at >= period.c.activated_at,
        or_(period.c.ended_at.is_(None), charges.c.occurred_at < period.c.ended_at),
    )


def charge_amounts(name: str = "charge") -> Subquery:
    """F7: every charge's ``(id, account_id, amount)``."""
    return select(charges.c.id, charges.c.account_id, charges.c.amount).subquery(name)


def ledger_postings(since: datetime, until: datetime, name: str = "ledger_posting") -> Subquery:
    """F9, T3: the postings on accounts (not EXTERNAL) of the entries made in [since,
    until), each with the branch its charge recorded (NULL for other entries). Columns:
    account_id, bucket, amount, branch."""
    return (
        select(
            postings.c.account_id,
            postings.c.bucket,
            postings.c.amount,
            charges.c.branch.label("branch"),
        )
        .select_from(
            postings.join(journal_entries, journal_entries.c.id == postings.c.entry_id).outerjoin(
                charges, charges.c.entry_id == postings.c.entry_id
            )
        )
        .where(
            postings.c.account_id.is_not(None),
            journal_entries.c.created_at >= since,
            journal_entries.c.created_at < until,
        )
        .subquery(name)
    )


def payments_of(account_ids: Sequence[int]) -> Subquery:
    """F8, B5: the payments made on each account or paid by it (a managed payment method
    pays with the responsible account's money), each row with the account as
    ``parent_id``."""
    return (
        select(payments, payments.c.account_id.label("parent_id"))
        .where(payments.c.account_id.in_(account_ids))
        .union_all(
            select(payments, payments.c.payer_id.label("parent_id")).where(
                payments.c.payer_id.in_(account_ids),
                payments.c.payer_id != payments.c.account_id,
            )
        )
        .subquery()
    )


def payments_by_id(ids: Sequence[Any]) -> Subquery:
    """F8: the payments of these ids."""
    return select(payments).where(payments.c.id.in_(ids)).subquery("payment")


def cost_charges(name: str = "cost_charge") -> Subquery:
    """F7/C1 for the cost center (C2-C4): every charge's ``(id, account_id, site_id,
    amount, occurred_at, product, tags)``."""
    return select(
        charges.c.id,
        charges.c.account_id,
        charges.c.site_id,
        charges.c.amount,
        charges.c.occurred_at,
        charges.c.product,
        charges.c.tags,
    ).subquery(name)
