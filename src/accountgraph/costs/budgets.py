"""C3, C4: budgets, their live spend and forecast, and their alerts.

A budget's spend is the sum of the charges of its account's report (C2, as the account
sees itself) in the current calendar period and in its scope (a member, a user group's
members, a tag ``key=value``, or everything). One statement computes it for every budget
of an account (``spend``). Evaluation (C4) runs in the job of each committed charge's
outbox row (``funds.public.CHARGE_TOPIC``) for the budgets of the charge's account and of
its master, and in the periodic sweep for all; a threshold fires when its basis reaches
its percent of the amount, once per period: the firing's primary key (budget, basis,
percent, period start) and the notification's unique dedupe key make a second run a
no-op (A5).

At the speed of the charges (issue 14: 10,000 budgets, 200 charges/s) the worker does not
sum the report again per charge: each budget's spend in its current period is kept
(``budget_spends``), computed in whole when it cannot be trusted and by every sweep, and
otherwise brought up to date with the charges recorded since (``budget_deltas``). An
account evaluated within ``DEBOUNCE_S`` gets one delayed ``budgets.evaluate`` row instead
of an evaluation per charge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    Select,
    Text,
    and_,
    case,
    cast,
    delete,
    exists,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import UserDefinedType

from accountgraph import outbox
from accountgraph.accounts import public as accounts
from accountgraph.alerts import public as alerts
from accountgraph.costs.models import (
    BASES,
    MAX_BUDGETS,
    MAX_THRESHOLDS,
    PERIODS,
    budget_deltas,
    budget_evaluations,
    budget_firings,
    budget_spends,
    budget_thresholds,
    budgets,
)
from accountgraph.costs.periods import CENT, forecast, forecast_factor, period_bounds, utc
from accountgraph.costs.reports import own_view, report_charges
from accountgraph.domain import ZERO, DomainError, ErrorCode, NotFound, Principal
from accountgraph.funds import public as funds
from accountgraph.funds.public import cost_labels
from accountgraph.sharing import public as sharing

SWEEP_BATCH = 200
HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class Threshold:
    basis: str
    percent: Decimal


@dataclass(frozen=True, slots=True)
class Spend:
    """C3: a budget's current period, its spend so far and the forecast."""

    period_start: datetime
    period_end: datetime
    spent: Decimal
    forecast: Decimal


# ---------------------------------------------------------------- setting (C3)


async def set_budget(
    conn: AsyncConnection,
    principal: Principal,
    *,
    account_id: int,
    budget_id: int | None,
    name: str,
    amount: Decimal,
    period: str,
    member_id: int | None,
    user_group_id: int | None,
    tag: tuple[str, str] | None,
    thresholds: Sequence[Threshold],
) -> int:
    """C3: create a budget (``budget_id`` None) or change one; its account's users or
    operators. Thresholds are replaced; what fired in the period stays (C4)."""
    await accounts.own_or_operator(conn, principal, account_id, ["accountId"])
    await _cost_center(conn, account_id)
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise DomainError(ErrorCode.INVALID_INPUT, "Between 1 and 200 characters.", ["name"])
    if period not in PERIODS:  # pragma: no cover - the enum allows no other
        raise DomainError(ErrorCode.INVALID_INPUT, "Unknown period.", ["period"])
    checked = _thresholds(thresholds)
    await _scope(conn, account_id, member_id, user_group_id, tag)
    await accounts.lock_accounts(conn, account_id)
    values = {
        "name": name,
        "amount": amount,
        "period": period,
        "member_id": member_id,
        "user_group_id": user_group_id,
        "tag_key": None if tag is None else tag[0],
        "tag_value": None if tag is None else tag[1],
    }
    if budget_id is None:
        count = (
            await conn.execute(
                select(func.count()).select_from(budgets).where(budgets.c.account_id == account_id)
            )
        ).scalar_one()
        if count >= MAX_BUDGETS:
            raise DomainError(
                ErrorCode.INVALID_INPUT,
                f"At most {MAX_BUDGETS} budgets per account.",
                ["accountId"],
            )
        budget_id = (
            await conn.execute(
                insert(budgets).values(account_id=account_id, **values).returning(budgets.c.id)
            )
        ).scalar_one()
    else:
        changed = (
            await conn.execute(
                update(budgets)
                .where(budgets.c.id == budget_id, budgets.c.account_id == account_id)
                .values(**values, updated_at=func.now())
                .returning(budgets.c.id)
            )
        ).scalar_one_or_none()
        if changed is None:
            raise NotFound(["budgetId"], "budget of this account")
        await conn.execute(
            delete(budget_thresholds).where(budget_thresholds.c.budget_id == budget_id)
        )
        # Its scope or period may have changed: the worker computes its spend in whole.
        await conn.execute(delete(budget_spends).where(budget_spends.c.budget_id == budget_id))
    await conn.execute(
        insert(budget_thresholds),
        [
            {"budget_id": budget_id, "basis": t.basis, "percent": t.percent, "position": index}
            for index, t in enumerate(checked)
        ],
    )
    assert budget_id is not None
    return budget_id


async def remove_budget(conn: AsyncConnection, principal: Principal, budget_id: int) -> int:
    """C3: remove a budget (its thresholds and firings go with it); returns its account."""
    account_id = (
        await conn.execute(select(budgets.c.account_id).where(budgets.c.id == budget_id))
    ).scalar_one_or_none()
    if account_id is None:
        raise NotFound(["budgetId"], "budget")
    await accounts.own_or_operator(conn, principal, account_id, ["budgetId"])
    await _cost_center(conn, account_id)
    await conn.execute(delete(budgets).where(budgets.c.id == budget_id))
    return int(account_id)


async def _cost_center(conn: AsyncConnection, account_id: int) -> None:
    if not await _cost_center_on(conn, account_id):
        raise DomainError(
            ErrorCode.COST_CENTER_DISABLED, "Cost center is off for this account.", ["accountId"]
        )


def _thresholds(thresholds: Sequence[Threshold]) -> list[Threshold]:
    """1-5 thresholds, each a percent in (0, 1000] (2 places) on ACTUAL or FORECASTED, no
    two alike."""
    if not 1 <= len(thresholds) <= MAX_THRESHOLDS:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"Between 1 and {MAX_THRESHOLDS} thresholds.", ["thresholds"]
        )
    seen: set[tuple[str, Decimal]] = set()
    checked = []
    for index, threshold in enumerate(thresholds):
        field = ["thresholds", str(index)]
        percent = threshold.percent
        if (
            not percent.is_finite()
            or not ZERO < percent <= 1000
            or percent != percent.quantize(Decimal("0.01"))
        ):
            raise DomainError(
                ErrorCode.INVALID_INPUT,
                "A percent in (0, 1000], at most 2 decimal places.",
                [*field, "percent"],
            )
        if threshold.basis not in BASES:  # pragma: no cover - the enum allows no other
            raise DomainError(ErrorCode.INVALID_INPUT, "Unknown basis.", [*field, "basis"])
        key = (threshold.basis, percent.quantize(Decimal("0.01")))
        if key in seen:
            raise DomainError(ErrorCode.INVALID_INPUT, "Two thresholds are alike.", field)
        seen.add(key)
        checked.append(Threshold(*key))
    return checked


async def _scope(
    conn: AsyncConnection,
    account_id: int,
    member_id: int | None,
    user_group_id: int | None,
    tag: tuple[str, str] | None,
) -> None:
    """At most one scope, inside the account's report (else NOT_FOUND): the account itself
    or a member whose charges its report holds; one of its user groups; any tag."""
    given = [
        field
        for field, value in (("memberId", member_id), ("userGroupId", user_group_id), ("tag", tag))
        if value is not None
    ]
    if len(given) > 1:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "At most one of memberId, userGroupId, tag.", [given[1]]
        )
    if member_id is not None and member_id != account_id:
        association = accounts.active_associations()
        found = (
            await conn.execute(
                select(association.c.member_id).where(
                    association.c.master_id == account_id,
                    association.c.member_id == member_id,
                    or_(association.c.type == "TRUSTEESHIP", association.c.view_finance),
                )
            )
        ).first()
        if found is None:
            raise NotFound(["memberId"], "member in this account's report")
    if user_group_id is not None:
        group = sharing.user_groups_of()
        found = (
            await conn.execute(
                select(group.c.id).where(
                    group.c.id == user_group_id, group.c.master_id == account_id
                )
            )
        ).first()
        if found is None:
            raise NotFound(["userGroupId"], "user group of this account")
    if tag is not None:
        try:
            cost_labels(None, [tag])
        except DomainError as error:
            raise DomainError(
                error.code, error.message, ["tag", *(error.field or [])[2:]]
            ) from None


# ---------------------------------------------------------------- spend (C3)


def _bounds(now: datetime) -> dict[str, tuple[datetime, datetime]]:
    return {period: period_bounds(period, now) for period in PERIODS}


def _period_start(bounds: dict[str, tuple[datetime, datetime]]) -> ColumnElement[datetime]:
    """Each budget's current period start, by its period."""
    return case(
        *(
            (budgets.c.period == p, literal(b[0].replace(tzinfo=None), DateTime()))
            for p, b in bounds.items()
        )
    )


def _in_scope(
    scope: Any, member_id: ColumnElement[int], tags: ColumnElement[Any]
) -> ColumnElement[bool]:
    """C3: a charge of ``member_id`` with ``tags`` is in the scope of ``scope`` (a row of
    budgets, or of their distinct scopes): the member, a user group's member, a tag, or
    everything."""
    member = sharing.group_members("budget_group_member")
    return and_(
        or_(scope.c.member_id.is_(None), member_id == scope.c.member_id),
        or_(
            scope.c.user_group_id.is_(None),
            exists().where(
                member.c.group_id == scope.c.user_group_id, member.c.member_id == member_id
            ),
        ),
        or_(scope.c.tag_key.is_(None), tags.op("->>")(scope.c.tag_key) == scope.c.tag_value),
    )


def _spend_statement(
    account_id: int, now: datetime, budget_ids: Sequence[int] | None
) -> tuple[Select[Any], dict[str, tuple[datetime, datetime]]]:
    bounds = _bounds(now)
    charge = report_charges(
        own_view(account_id),
        account_id,
        bounds["YEARLY"][0],
        now + timedelta(microseconds=1),  # "so far": up to now, included
        name="budget_charge",
    )
    month = func.date_trunc("month", func.timezone("UTC", charge.c.occurred_at))
    monthly = (
        select(
            month.label("month"),
            charge.c.member_id,
            charge.c.tags,
            func.sum(charge.c.amount).label("amount"),
        )
        .group_by(month, charge.c.member_id, charge.c.tags)
        .cte("budget_month")
    )
    mine = [budgets.c.account_id == account_id]
    if budget_ids is not None:
        mine.append(budgets.c.id.in_(list(budget_ids)))
    scope_columns = ("member_id", "user_group_id", "tag_key", "tag_value")
    scopes = (
        select(*(budgets.c[name] for name in scope_columns))
        .where(*mine)
        .distinct()
        .cte("budget_scope")
    )
    scoped = (
        select(
            *(scopes.c[name] for name in scope_columns),
            monthly.c.month,
            func.sum(monthly.c.amount).label("amount"),
        )
        .select_from(scopes.join(monthly, _in_scope(scopes, monthly.c.member_id, monthly.c.tags)))
        .group_by(*(scopes.c[name] for name in scope_columns), monthly.c.month)
        .cte("budget_scope_month")
    )
    joined = and_(
        *(scoped.c[name].is_not_distinct_from(budgets.c[name]) for name in scope_columns),
        scoped.c.month >= _period_start(bounds),
    )
    query = (
        select(
            budgets.c.id,
            budgets.c.period,
            func.coalesce(func.sum(scoped.c.amount), 0).label("spent"),
            func.pg_current_snapshot().cast(Text).label("snapshot"),
        )
        .select_from(budgets.outerjoin(scoped, joined))
        .where(*mine)
        .group_by(budgets.c.id)
    )
    return query, bounds


async def spend(
    conn: AsyncConnection, account_id: int, now: datetime, budget_ids: Sequence[int] | None = None
) -> dict[int, Spend]:
    """C3: every budget of the account (or these of it) with its spend so far (charges that
    occurred up to ``now``) in its period holding ``now``, in one statement over the
    account's report as the account sees it.

    Every period starts on the first of a month (UTC), so the report since the year's start
    is summed once per month, member and tag set; each distinct scope of the account's
    budgets sums those rows once; each budget adds its scope's months of its period."""
    found, _ = await _spend(conn, account_id, utc(now), budget_ids)
    return found


async def _spend(
    conn: AsyncConnection, account_id: int, now: datetime, budget_ids: Sequence[int] | None
) -> tuple[dict[int, Spend], str | None]:
    """``spend``, and the snapshot its statement read."""
    query, bounds = _spend_statement(account_id, now, budget_ids)
    found = {}
    snapshot = None
    for row in (await conn.execute(query)).all():
        period_start, period_end = bounds[row.period]
        spent = Decimal(row.spent)
        found[int(row.id)] = Spend(
            period_start, period_end, spent, forecast(spent, period_start, period_end, now)
        )
        snapshot = row.snapshot
    return found, snapshot


# ---------------------------------------------------------------- alerts (C4)


async def evaluate(
    conn: AsyncConnection, account_ids: Sequence[int], now: datetime | None = None
) -> list[int]:
    """C4: every budget of these accounts (with cost center on) against its thresholds in
    the period holding ``now``, each spend computed in whole from the charges; returns the
    new notifications' ids. A threshold fires once per period: the firing row is inserted
    first, ON CONFLICT DO NOTHING.

    At the present time (``now`` None, as the sweep runs it) an account's stored spends
    are set to what it computed, under the account's evaluation lock; an account a job is
    evaluating at this moment is left to it. With a chosen ``now`` nothing is stored."""
    fired: list[int] = []
    for account_id in sorted(set(account_ids)):
        if now is None:
            if not await _lock_evaluation(conn, account_id, wait=False):
                continue
            fired += await _evaluate_counted(conn, account_id, whole=True)
            continue
        at = utc(now)
        if not await _cost_center_on(conn, account_id):
            continue
        spends = await spend(conn, account_id, at)
        for row in (await conn.execute(_thresholds_of(account_id))).all():
            found = spends.get(int(row.budget_id))
            if found is not None:
                notification = await _fire(conn, account_id, row, found)
                if notification is not None:
                    fired.append(notification)
    return fired


def _thresholds_of(account_id: int) -> Select[Any]:
    return (
        select(
            budget_thresholds.c.budget_id,
            budget_thresholds.c.basis,
            budget_thresholds.c.percent,
            budgets.c.amount,
        )
        .join(budgets, budgets.c.id == budget_thresholds.c.budget_id)
        .where(budgets.c.account_id == account_id)
        .order_by(budget_thresholds.c.budget_id, budget_thresholds.c.position)
    )


async def _cost_center_on(conn: AsyncConnection, account_id: int) -> bool:
    return bool(
        (
            await conn.execute(select(accounts.cost_center_on(literal(account_id, BigInteger))))
        ).scalar_one()
    )


async def _fire(conn: AsyncConnection, account_id: int, row: Any, found: Spend) -> int | None:
    basis_value = found.spent if row.basis == "ACTUAL" else found.forecast
    if basis_value < row.amount * row.percent / HUNDRED:
        return None
    firing = (
        await conn.execute(
            pg_insert(budget_firings)
            .values(
                budget_id=row.budget_id,
                basis=row.basis,
                percent=row.percent,
                period_start=found.period_start,
                spent=found.spent,
                forecast=found.forecast,
            )
            .on_conflict_do_nothing()
            .returning(budget_firings.c.budget_id)
        )
    ).scalar_one_or_none()
    if firing is None:
        return None  # fired already in this period
    day = found.period_start.date().isoformat()
    notification_id = await alerts.notify_budget(
        conn,
        account_id,
        kind=f"BUDGET_{row.basis}",
        budget_id=int(row.budget_id),
        threshold=row.percent,
        spent=found.spent,
        forecast=found.forecast,
        dedupe_key=f"budget:{row.budget_id}:{row.basis}:{row.percent}:{day}",
    )
    await conn.execute(
        update(budget_firings)
        .where(
            budget_firings.c.budget_id == row.budget_id,
            budget_firings.c.basis == row.basis,
            budget_firings.c.percent == row.percent,
            budget_firings.c.period_start == found.period_start,
        )
        .values(notification_id=notification_id)
    )
    return notification_id


# ------------------------------------------------- counted spends (C4 at charge speed)
#
# The worker keeps each budget's spend in its current period (``budget_spends``) instead of
# summing the report again per charge: a charge's job records it as not yet counted for
# each account whose report holds it (``budget_deltas``), and the account's next
# evaluation adds what it finds there. A spend is computed in whole again when it cannot
# be trusted: a new or changed budget, a new period, or a report made of other members
# (an association began or ended, a permission or a user group changed: the account's
# fingerprint), and by every sweep. The live ``Budget.spent`` never reads these rows.

EVALUATE_TOPIC = outbox.BUDGETS_EVALUATE
# An account evaluated less than this long ago is evaluated again once, this long later
# (one delayed outbox row), instead of at once for every charge: a busy master's budgets
# cost at most about two evaluations per interval, and an alert waits at most about that.
DEBOUNCE_S = 1.0
SCHEDULING_LOCK = 0x434F_5354 << 32  # advisory lock keys: "COST" then the account id


class _Xid8(UserDefinedType[int]):
    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "xid8"


class _Snapshot(UserDefinedType[str]):
    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "pg_snapshot"


def _seen_by(xid: ColumnElement[int], snapshot: Any) -> ColumnElement[bool]:
    """The charge's transaction ``xid`` had committed for ``snapshot`` (text)."""
    if isinstance(snapshot, str):
        snapshot = literal(snapshot, Text)  # sent as text (asyncpg has no codec for it)
    return func.pg_visible_in_snapshot(
        cast(cast(xid, Text), _Xid8()), cast(snapshot, _Snapshot())
    ).is_(True)


def _fingerprint(account_id: int) -> ColumnElement[str]:
    """What the account's report (as it sees itself) is made of, as a digest: the members
    whose charges it holds and since when, its own ended trusteeships (U5), the members of
    its budgets' user groups."""
    association = accounts.active_associations("fp_association")
    ended = accounts.trusteeship_periods("fp_trusteeship")
    member = sharing.group_members("fp_group_member")
    members = (
        select(
            func.string_agg(
                func.concat(association.c.member_id, "@", association.c.activated_at),
                aggregate_order_by(literal_column("','"), association.c.member_id),
            )
        )
        .where(
            association.c.master_id == account_id,
            or_(association.c.type == "TRUSTEESHIP", association.c.view_finance),
        )
        .scalar_subquery()
    )
    periods = (
        select(
            func.string_agg(
                func.concat(ended.c.activated_at, "-", ended.c.ended_at),
                aggregate_order_by(literal_column("','"), ended.c.activated_at),
            )
        )
        .where(ended.c.member_id == account_id, ended.c.ended_at.is_not(None))
        .scalar_subquery()
    )
    groups = (
        select(
            func.string_agg(
                func.concat(member.c.group_id, ":", member.c.member_id),
                aggregate_order_by(literal_column("','"), member.c.group_id, member.c.member_id),
            )
        )
        .where(
            member.c.group_id.in_(
                select(budgets.c.user_group_id).where(
                    budgets.c.account_id == account_id, budgets.c.user_group_id.is_not(None)
                )
            )
        )
        .scalar_subquery()
    )
    return func.md5(
        func.concat(
            func.coalesce(members, ""),
            "|",
            func.coalesce(periods, ""),
            "|",
            func.coalesce(groups, ""),
        )
    )


async def _lock_evaluation(conn: AsyncConnection, account_id: int, *, wait: bool) -> bool:
    """Take the account's evaluation row (made if missing); False if another transaction
    holds it and ``wait`` is False."""
    await conn.execute(
        pg_insert(budget_evaluations).values(account_id=account_id).on_conflict_do_nothing()
    )
    held = (
        await conn.execute(
            select(budget_evaluations.c.account_id)
            .where(budget_evaluations.c.account_id == account_id)
            .with_for_update(skip_locked=not wait)
        )
    ).first()
    return held is not None


async def _evaluate_counted(conn: AsyncConnection, account_id: int, *, whole: bool) -> list[int]:
    """C4 at the present time for one account whose evaluation row the caller holds: the
    stored spends brought up to date (in whole if ``whole`` or if they cannot be
    trusted, else plus the charges not yet counted), then every threshold not yet fired
    in its period against them. Returns the new notifications' ids."""
    now = datetime.now(UTC)
    bounds = _bounds(now)
    start = _period_start(bounds)
    stale = exists().where(
        budgets.c.account_id == account_id,
        ~exists().where(
            budget_spends.c.budget_id == budgets.c.id, budget_spends.c.period_start == start
        ),
    )
    state = (
        await conn.execute(
            select(
                _fingerprint(account_id).label("fingerprint"),
                budget_evaluations.c.fingerprint.label("stored"),
                budget_evaluations.c.spend_snapshot,
                budget_evaluations.c.spend_until,
                stale.label("stale"),
                accounts.cost_center_on(literal(account_id, BigInteger)).label("on"),
            ).where(budget_evaluations.c.account_id == account_id)
        )
    ).one()
    if not state.on:
        # Nothing fires; what is counted meanwhile is computed in whole once it is on.
        await conn.execute(delete(budget_deltas).where(budget_deltas.c.account_id == account_id))
        await _recorded(conn, account_id, fingerprint=None)
        return []
    if (
        whole
        or state.stale
        or state.spend_snapshot is None
        or state.spend_until is None
        or state.fingerprint != state.stored
    ):
        spends, snapshot = await _spend(conn, account_id, now, None)
        if spends:
            rows = [
                {"budget_id": b, "period_start": s.period_start, "spent": s.spent}
                for b, s in spends.items()
            ]
            upsert = pg_insert(budget_spends).values(rows)
            await conn.execute(
                upsert.on_conflict_do_update(
                    index_elements=[budget_spends.c.budget_id],
                    set_={
                        "period_start": upsert.excluded.period_start,
                        "spent": upsert.excluded.spent,
                    },
                )
            )
            # What that snapshot saw and occurred by now is counted; the rest stays for
            # the next time.
            await conn.execute(
                delete(budget_deltas).where(
                    budget_deltas.c.account_id == account_id,
                    _seen_by(budget_deltas.c.xid, snapshot),
                    budget_deltas.c.occurred_at <= now,
                )
            )
        await _recorded(
            conn, account_id, fingerprint=state.fingerprint, snapshot=snapshot, until=now
        )
    else:
        await conn.execute(
            _count_deltas(account_id, now, bounds, state.spend_snapshot, state.spend_until)
        )
        await _recorded(conn, account_id)
    return await _fire_due(conn, account_id, now, bounds)


def _count_deltas(
    account_id: int,
    now: datetime,
    bounds: dict[str, tuple[datetime, datetime]],
    spend_snapshot: str,
    spend_until: datetime,
) -> Any:
    """One statement: take the account's not-yet-counted charges that occurred by now,
    and add those its stored spends do not hold yet (not both seen by the snapshot of
    their whole computation and occurred by the time it counted up to), in the account's
    report and each budget's scope and period, to the budgets' spends."""
    taken = (
        delete(budget_deltas)
        .where(budget_deltas.c.account_id == account_id, budget_deltas.c.occurred_at <= now)
        .returning(budget_deltas.c.charge_id, budget_deltas.c.xid, budget_deltas.c.occurred_at)
        .cte("budget_delta")
    )
    new = select(taken.c.charge_id).where(
        ~and_(_seen_by(taken.c.xid, spend_snapshot), taken.c.occurred_at <= spend_until)
    )
    charge = report_charges(
        own_view(account_id),
        account_id,
        bounds["YEARLY"][0],
        now + timedelta(microseconds=1),
        charge_ids=new,
        name="delta_charge",
    )
    added = (
        select(budgets.c.id, func.sum(charge.c.amount).label("amount"))
        .select_from(
            budgets.join(
                charge,
                and_(
                    _in_scope(budgets, charge.c.member_id, charge.c.tags),
                    charge.c.occurred_at >= _period_start(bounds),
                ),
            )
        )
        .where(budgets.c.account_id == account_id)
        .group_by(budgets.c.id)
        .cte("budget_added")
    )
    return (
        update(budget_spends)
        .where(budget_spends.c.budget_id == added.c.id)
        .values(spent=budget_spends.c.spent + added.c.amount)
        .add_cte(taken)
    )


_RECORDED = {"snapshot": "spend_snapshot", "until": "spend_until"}


async def _recorded(conn: AsyncConnection, account_id: int, **values: Any) -> None:
    await conn.execute(
        update(budget_evaluations)
        .where(budget_evaluations.c.account_id == account_id)
        .values(
            **{_RECORDED.get(k, k): v for k, v in values.items()},
            evaluated_at=func.clock_timestamp(),
        )
    )


async def _fire_due(
    conn: AsyncConnection,
    account_id: int,
    now: datetime,
    bounds: dict[str, tuple[datetime, datetime]],
) -> list[int]:
    """Every threshold of the account not yet fired in its budget's period that its stored
    spend may reach (a bound in SQL: the forecast's factor per period rounded up, a cent
    for its rounding), checked exactly by ``_fire``."""
    factor = case(
        (budget_thresholds.c.basis == "ACTUAL", literal(Decimal(1))),
        *(
            (budgets.c.period == p, literal(forecast_factor(start, end, now)))
            for p, (start, end) in bounds.items()
        ),
    )
    rows = (
        await conn.execute(
            select(
                budget_thresholds.c.budget_id,
                budget_thresholds.c.basis,
                budget_thresholds.c.percent,
                budgets.c.amount,
                budgets.c.period,
                budget_spends.c.spent,
            )
            .join(budgets, budgets.c.id == budget_thresholds.c.budget_id)
            .join(budget_spends, budget_spends.c.budget_id == budgets.c.id)
            .where(
                budgets.c.account_id == account_id,
                budget_spends.c.period_start == _period_start(bounds),
                budget_spends.c.spent * factor + CENT
                >= budgets.c.amount * budget_thresholds.c.percent / HUNDRED,
                ~exists().where(
                    budget_firings.c.budget_id == budget_thresholds.c.budget_id,
                    budget_firings.c.basis == budget_thresholds.c.basis,
                    budget_firings.c.percent == budget_thresholds.c.percent,
                    budget_firings.c.period_start == budget_spends.c.period_start,
                ),
            )
            .order_by(budget_thresholds.c.budget_id, budget_thresholds.c.position)
        )
    ).all()
    fired = []
    for row in rows:
        period_start, period_end = bounds[row.period]
        spent = Decimal(row.spent)
        found = Spend(
            period_start, period_end, spent, forecast(spent, period_start, period_end, now)
        )
        notification = await _fire(conn, account_id, row, found)
        if notification is not None:
            fired.append(notification)
    return fired


@outbox.handler(funds.CHARGE_TOPIC)
async def _charge_recorded(
    conn: AsyncConnection, payload: dict[str, Any], context: outbox.JobContext
) -> None:
    """C4: after every committed charge, for each account whose report holds it (the
    charge's account, then its ACTIVE master) and that has budgets: the charge is recorded
    as not yet counted, and the account is evaluated at once, or, if it was evaluated
    within ``DEBOUNCE_S`` or is being evaluated right now, once more a moment later.
    Accounts without budgets cost one indexed look-up."""
    xid = payload.get("xid")
    # The charge's account first, its master last: locks are always taken up the tree (no
    # deadlock), and a master's lock, which every member's charge takes, is held only for
    # the master's own part.
    for account_id in await _record_uncounted(
        conn, int(payload["account_id"]), int(payload["charge_id"]), xid
    ):
        if xid is None:
            await conn.execute(
                update(budget_evaluations)
                .where(budget_evaluations.c.account_id == account_id)
                .values(fingerprint=None)
            )
        recent = (
            await conn.execute(
                select(
                    func.coalesce(
                        budget_evaluations.c.evaluated_at
                        > func.clock_timestamp() - func.make_interval(0, 0, 0, 0, 0, 0, DEBOUNCE_S),
                        False,
                    )
                )
                .where(budget_evaluations.c.account_id == account_id)
                .with_for_update(skip_locked=True)
            )
        ).one_or_none()
        if recent is not None and not (recent[0] and DEBOUNCE_S > 0):
            await _evaluate_counted(conn, account_id, whole=False)
        else:
            await _evaluation_pending(conn, account_id)


async def _record_uncounted(
    conn: AsyncConnection, account_id: int, charge_id: int, xid: Any
) -> list[int]:
    """One statement: the charge recorded as not yet counted for each account whose
    report holds it (its own, its ACTIVE master's) and that has budgets, with an
    evaluation row for each; returns those accounts, the charge's own first."""
    association = accounts.active_associations("budget_touched_association")
    charge = funds.cost_charges("budget_new_charge")
    charged = literal(account_id, BigInteger)
    touched = union_all(
        select(charged.label("account_id")),
        select(association.c.master_id).where(association.c.member_id == account_id),
    ).subquery("budget_touched")
    added = (
        insert(budget_deltas)
        .from_select(
            ["account_id", "charge_id", "xid", "occurred_at"],
            select(
                touched.c.account_id,
                charge.c.id,
                # A row written before its transaction id was recorded: its account is
                # computed in whole next (its fingerprint is cleared).
                literal(int(xid) if xid is not None else 0, BigInteger),
                charge.c.occurred_at,
            )
            .select_from(touched.join(charge, charge.c.id == charge_id))
            .where(exists().where(budgets.c.account_id == touched.c.account_id)),
        )
        .returning(budget_deltas.c.account_id)
        .cte("budget_touched_delta")
    )
    rows = (
        pg_insert(budget_evaluations)
        .from_select(["account_id"], select(added.c.account_id))
        .on_conflict_do_nothing()
        .cte("budget_touched_evaluation")
    )
    found = await conn.execute(
        select(added.c.account_id)
        .add_cte(rows)
        .order_by((added.c.account_id == charged).desc(), added.c.account_id)
    )
    return [int(a) for a in found.scalars()]


async def _evaluation_pending(conn: AsyncConnection, account_id: int) -> None:
    """Make sure an evaluation of the account will begin after this transaction commits:
    a delayed one not yet running is held (KEY SHARE: its job's FOR UPDATE waits for this
    commit), else one is added, ``DEBOUNCE_S`` from now. The scheduling lock makes those
    who find none wait for the one who adds it, then hold that."""
    await conn.execute(select(func.pg_advisory_xact_lock(SCHEDULING_LOCK + account_id)))
    pending = (
        await conn.execute(
            select(outbox.outbox.c.id)
            .where(
                outbox.outbox.c.topic == EVALUATE_TOPIC,
                outbox.outbox.c.done_at.is_(None),
                outbox.outbox.c.payload["account_id"].astext.cast(BigInteger) == account_id,
            )
            .limit(1)
            .with_for_update(read=True, key_share=True, skip_locked=True)
        )
    ).first()
    if pending is None:
        await outbox.add(conn, EVALUATE_TOPIC, {"account_id": account_id}, delay_s=DEBOUNCE_S)


@outbox.handler(EVALUATE_TOPIC)
async def _evaluate_later(
    conn: AsyncConnection, payload: dict[str, Any], context: outbox.JobContext
) -> None:
    """C4: the delayed evaluation of a busy account (after ``DEBOUNCE_S``)."""
    account_id = int(payload["account_id"])
    if not await _lock_evaluation(conn, account_id, wait=False):
        # Being evaluated (the sweep computing it in whole, a charge's job): once more a
        # moment later, instead of holding a worker while it waits.
        await outbox.add(conn, EVALUATE_TOPIC, {"account_id": account_id}, delay_s=DEBOUNCE_S)
        return
    await _evaluate_counted(conn, account_id, whole=False)


async def sweep(engine: Any, now: datetime | None = None) -> int:
    """C4: re-evaluate every budget (a missed event, a forecast that crossed as time went
    by), a batch of accounts per short transaction, each spend computed in whole. Returns
    how many accounts."""
    async with engine.connect() as conn:
        account_ids = [
            int(a)
            for a in (
                await conn.execute(
                    select(budgets.c.account_id).distinct().order_by(budgets.c.account_id)
                )
            ).scalars()
        ]
    for start in range(0, len(account_ids), SWEEP_BATCH):
        async with engine.begin() as conn:
            await evaluate(conn, account_ids[start : start + SWEEP_BATCH], now)
    return len(account_ids)
