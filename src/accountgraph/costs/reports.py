"""C2: cost analysis. A report is computed by PostgreSQL in one statement: the charges of
the account's report (its own, less those of an ended association of its own when it
looks itself, U5; its ACTIVE members' since their association began, a financial
member's only with VIEW_FINANCE, P2), grouped by one or two dimensions with
``date_trunc`` in UTC, summed exactly as NUMERIC, ordered by the keys.

The visibility pieces are the accounts area's (``sees_finance``, ``sees_association_costs``,
``active_associations``) and the charges are funds' (``cost_charges``), so the report and
the invoices (B1/U4) and every loader agree on who sees which charge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    Subquery,
    and_,
    func,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.accounts import public as accounts
from accountgraph.costs.periods import utc
from accountgraph.domain import ZERO, DomainError, ErrorCode, Principal, PrincipalKind
from accountgraph.funds import public as funds

DIMENSIONS = ("DAY", "WEEK", "MONTH", "MEMBER", "SITE", "PRODUCT", "TAG")
TIME_DIMENSIONS = ("DAY", "WEEK", "MONTH")
MAX_DAYS = 400


@dataclass(frozen=True, slots=True)
class ReportRequest:
    """What a report is asked for (C2), validated by ``request``."""

    account_id: int
    since: datetime
    until: datetime
    group_by: tuple[str, ...]
    tag_key: str | None = None
    member_ids: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class Group:
    """One group: one key per dimension (a bucket's first day, a row id, a product or a
    tag value; None where the charge has none), the exact sum and how many charges."""

    keys: tuple[Any, ...]
    amount: Decimal
    charges: int


@dataclass(frozen=True, slots=True)
class Report:
    request: ReportRequest
    groups: list[Group]

    @property
    def total(self) -> Decimal:
        return sum((group.amount for group in self.groups), ZERO)


def request(
    account_id: int,
    since: datetime,
    until: datetime,
    group_by: Sequence[str],
    tag_key: str | None = None,
    member_ids: Sequence[int] | None = None,
) -> ReportRequest:
    """C2's refusals (INVALID_INPUT): no or more than two dimensions, one twice, two time
    dimensions, TAG without ``tagKey``, ``until`` not after ``since``, more than 400 days."""
    dims = tuple(group_by)
    since, until = utc(since), utc(until)
    if not 1 <= len(dims) <= 2 or len(set(dims)) != len(dims):
        raise DomainError(
            ErrorCode.INVALID_INPUT, "Group by one or two different dimensions.", ["groupBy"]
        )
    if any(d not in DIMENSIONS for d in dims):  # pragma: no cover - the enum allows no other
        raise DomainError(ErrorCode.INVALID_INPUT, "Unknown dimension.", ["groupBy"])
    if sum(d in TIME_DIMENSIONS for d in dims) > 1:
        raise DomainError(ErrorCode.INVALID_INPUT, "At most one time dimension.", ["groupBy"])
    if "TAG" in dims and not tag_key:
        raise DomainError(ErrorCode.INVALID_INPUT, "TAG needs a tagKey.", ["tagKey"])
    if until <= since:
        raise DomainError(ErrorCode.INVALID_INPUT, "until must be after since.", ["until"])
    if until - since > timedelta(days=MAX_DAYS):
        raise DomainError(ErrorCode.INVALID_INPUT, f"At most {MAX_DAYS} days.", ["until"])
    return ReportRequest(
        account_id,
        since,
        until,
        dims,
        tag_key if "TAG" in dims else None,
        None if member_ids is None else tuple(member_ids),
    )


def own_view(account_id: int) -> Principal:
    """The account looking at its own report: budgets (C3) are evaluated as it sees it."""
    return Principal(PrincipalKind.ACCOUNT_USER, account_id, f"{account_id}:cost-center")


def report_charges(
    principal: Principal,
    account_id: int,
    since: datetime | ColumnElement[datetime],
    until: datetime | ColumnElement[datetime],
    *,
    member_ids: Sequence[int] | None = None,
    charge_ids: Select[Any] | None = None,
    name: str = "report_charge",
) -> Subquery:
    """C2: the charges of ``account_id``'s report as ``principal`` sees it, occurred in
    [since, until): ``(member_id, site_id, product, tags, amount, occurred_at)``, where
    member_id is the account whose charge it is (the account itself for its own)."""
    own_charge = funds.cost_charges("own_charge")
    own = select(
        own_charge.c.account_id.label("member_id"),
        own_charge.c.site_id,
        own_charge.c.product,
        own_charge.c.tags,
        own_charge.c.amount,
        own_charge.c.occurred_at,
    ).where(
        own_charge.c.account_id == account_id,
        own_charge.c.occurred_at >= since,
        own_charge.c.occurred_at < until,
        accounts.sees_association_costs(
            principal, own_charge.c.account_id, own_charge.c.occurred_at
        ),
    )
    association = accounts.active_associations("report_association")
    member_charge = funds.cost_charges("member_charge")
    managed = (
        select(
            member_charge.c.account_id.label("member_id"),
            member_charge.c.site_id,
            member_charge.c.product,
            member_charge.c.tags,
            member_charge.c.amount,
            member_charge.c.occurred_at,
        )
        .select_from(
            association.join(
                member_charge,
                and_(
                    member_charge.c.account_id == association.c.member_id,
                    member_charge.c.occurred_at >= association.c.activated_at,
                ),
            )
        )
        .where(
            association.c.master_id == account_id,
            or_(association.c.type == "TRUSTEESHIP", association.c.view_finance),
            member_charge.c.occurred_at >= since,
            member_charge.c.occurred_at < until,
        )
    )
    if member_ids is not None:
        own = own.where(own_charge.c.account_id.in_(list(member_ids)))
        managed = managed.where(member_charge.c.account_id.in_(list(member_ids)))
    if charge_ids is not None:  # only these charges (C4's not yet counted ones)
        own = own.where(own_charge.c.id.in_(charge_ids))
        managed = managed.where(member_charge.c.id.in_(charge_ids))
    return union_all(own, managed).subquery(name)


def may_see(principal: Principal, account_id: int) -> ColumnElement[bool]:
    """C2/U6/P2: the report exists (cost center on) and the viewer sees the finances."""
    account = literal(account_id, BigInteger)
    return and_(accounts.cost_center_on(account), accounts.sees_finance(principal, account))


def _key(dimension: str, row: Subquery, tag_key: str | None) -> ColumnElement[Any]:
    if dimension in TIME_DIMENSIONS:
        unit = dimension.lower()
        return func.date_trunc(unit, func.timezone("UTC", row.c.occurred_at)).label(unit)
    if dimension == "MEMBER":
        return row.c.member_id.label("member")
    if dimension == "SITE":
        return row.c.site_id.label("site")
    if dimension == "PRODUCT":
        return row.c.product.label("product")
    return row.c.tags.op("->>")(literal(tag_key)).label("tag")


def report_statement(principal: Principal, wanted: ReportRequest) -> Any:
    """The one statement of a report: its groups, in key order (nulls last)."""
    row = report_charges(
        principal, wanted.account_id, wanted.since, wanted.until, member_ids=wanted.member_ids
    )
    keys = [_key(d, row, wanted.tag_key) for d in wanted.group_by]
    return (
        select(*keys, func.sum(row.c.amount).label("amount"), func.count().label("charges"))
        .select_from(row)
        .where(may_see(principal, wanted.account_id))
        .group_by(*keys)
        .order_by(*(key.asc().nulls_last() for key in keys))
    )


async def visible(conn: AsyncConnection, principal: Principal, account_id: int) -> bool:
    return bool((await conn.execute(select(may_see(principal, account_id)))).scalar_one())


async def cost_report(
    conn: AsyncConnection, principal: Principal, wanted: ReportRequest
) -> Report | None:
    """C2: the report, or None where cost center is off or the viewer may not see the
    account's finances."""
    if not await visible(conn, principal, wanted.account_id):
        return None
    rows = (await conn.execute(report_statement(principal, wanted))).all()
    groups = [
        Group(
            tuple(_plain(d, value) for d, value in zip(wanted.group_by, row[:-2], strict=True)),
            Decimal(row.amount),
            int(row.charges),
        )
        for row in rows
    ]
    return Report(wanted, groups)


def _plain(dimension: str, value: Any) -> Any:
    if dimension in TIME_DIMENSIONS and value is not None:
        found: date = value.date()
        return found
    return value
