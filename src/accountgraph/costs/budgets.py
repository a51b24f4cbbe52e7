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

Under load the per-charge jobs coalesce: an account's evaluation records the snapshot it
read (``budget_evaluations``), a job whose charge that snapshot sees skips, and an account
evaluated within ``DEBOUNCE_S`` gets one delayed ``budgets.evaluate`` row instead of an
evaluation per charge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Text,
    and_,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph import outbox
from accountgraph.accounts import public as accounts
from accountgraph.alerts import public as alerts
from accountgraph.costs.models import (
    BASES,
    MAX_BUDGETS,
    MAX_THRESHOLDS,
    PERIODS,
    budget_evaluations,
    budget_firings,
    budget_thresholds,
    budgets,
)
from accountgraph.costs.periods import forecast, period_bounds, utc
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
    on = (
        await conn.execute(select(accounts.cost_center_on(literal(account_id, BigInteger))))
    ).scalar_one()
    if not on:
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


async def spend(
    conn: AsyncConnection, account_id: int, now: datetime, budget_ids: Sequence[int] | None = None
) -> dict[int, Spend]:
    """C3: every budget of the account (or these of it) with its spend so far (charges that
    occurred up to ``now``) in its period holding ``now``, in one statement over the
    account's report as the account sees it.

    Every period starts on the first of a month (UTC), so the report since the year's start
    is summed once per month, member and tag set; each distinct scope of the account's
    budgets sums those rows once; each budget adds its scope's months of its period."""
    now = utc(now)
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
    member = sharing.group_members("budget_group_member")
    matches = and_(
        or_(scopes.c.member_id.is_(None), monthly.c.member_id == scopes.c.member_id),
        or_(
            scopes.c.user_group_id.is_(None),
            exists().where(
                member.c.group_id == scopes.c.user_group_id,
                member.c.member_id == monthly.c.member_id,
            ),
        ),
        or_(
            scopes.c.tag_key.is_(None),
            monthly.c.tags.op("->>")(scopes.c.tag_key) == scopes.c.tag_value,
        ),
    )
    scoped = (
        select(
            *(scopes.c[name] for name in scope_columns),
            monthly.c.month,
            func.sum(monthly.c.amount).label("amount"),
        )
        .select_from(scopes.join(monthly, matches))
        .group_by(*(scopes.c[name] for name in scope_columns), monthly.c.month)
        .cte("budget_scope_month")
    )
    start = case(
        *(
            (budgets.c.period == p, literal(b[0].replace(tzinfo=None), DateTime()))
            for p, b in bounds.items()
        )
    )
    joined = and_(
        *(scoped.c[name].is_not_distinct_from(budgets.c[name]) for name in scope_columns),
        scoped.c.month >= start,
    )
    query = (
        select(
            budgets.c.id,
            budgets.c.period,
            func.coalesce(func.sum(scoped.c.amount), 0).label("spent"),
        )
        .select_from(budgets.outerjoin(scoped, joined))
        .where(*mine)
        .group_by(budgets.c.id)
    )
    found = {}
    for row in (await conn.execute(query)).all():
        period_start, period_end = bounds[row.period]
        spent = Decimal(row.spent)
        found[int(row.id)] = Spend(
            period_start, period_end, spent, forecast(spent, period_start, period_end, now)
        )
    return found


# ---------------------------------------------------------------- alerts (C4)


async def evaluate(
    conn: AsyncConnection, account_ids: Sequence[int], now: datetime | None = None
) -> list[int]:
    """C4: every budget of these accounts (with cost center on) against its thresholds in
    the period holding ``now``; returns the new notifications' ids. A threshold fires once
    per period: the firing row is inserted first, ON CONFLICT DO NOTHING."""
    now = utc(now or datetime.now(UTC))
    fired: list[int] = []
    for account_id in sorted(set(account_ids)):
        on = (
            await conn.execute(select(accounts.cost_center_on(literal(account_id, BigInteger))))
        ).scalar_one()
        if not on:
            continue
        spends = await spend(conn, account_id, now)
        if not spends:
            continue
        rows = (
            await conn.execute(
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
        ).all()
        for row in rows:
            found = spends.get(int(row.budget_id))
            if found is None:
                continue
            notification = await _fire(conn, account_id, row, found)
            if notification is not None:
                fired.append(notification)
    return fired


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


async def touched_accounts(conn: AsyncConnection, account_id: int) -> list[int]:
    """The accounts whose report a new charge of ``account_id`` is in: its own, and its
    ACTIVE master's (C2)."""
    association = accounts.active_associations()
    masters = (
        (
            await conn.execute(
                select(association.c.master_id).where(association.c.member_id == account_id)
            )
        )
        .scalars()
        .all()
    )
    return [account_id, *(int(m) for m in masters)]


EVALUATE_TOPIC = "budgets.evaluate"
# An account evaluated less than this long ago is evaluated again once, this long later
# (one delayed outbox row), instead of at once for every charge: a busy master's budgets
# cost at most about two evaluations per interval, and an alert waits at most about that.
DEBOUNCE_S = 1.0
SCHEDULING_LOCK = 0x434F_5354 << 32  # advisory lock keys: "COST" then the account id
_STATE = text(
    "SELECT snapshot IS NOT NULL AND pg_visible_in_snapshot("
    "CAST(:xid AS xid8), CAST(snapshot AS pg_snapshot)) AS covered, "
    "coalesce(evaluated_at > clock_timestamp() - make_interval(secs => :debounce), false) "
    "AS recent "
    "FROM budget_evaluations WHERE account_id = :account_id FOR UPDATE SKIP LOCKED"
)
# A delayed evaluation not yet handed to a worker: it will read a snapshot taken after
# this charge committed. (One already running may have begun before: not counted.)
_PENDING = text(
    "SELECT EXISTS (SELECT 1 FROM outbox WHERE topic = :topic AND sent_at IS NULL "
    "AND done_at IS NULL AND payload->>'account_id' = :account_id)"
)


@outbox.handler(funds.CHARGE_TOPIC)
async def _charge_recorded(
    conn: AsyncConnection, payload: dict[str, Any], context: outbox.JobContext
) -> None:
    """C4: after every committed charge, the budgets of the reports it is in (the
    charge's account, then its ACTIVE master), under a lock per account. An evaluation that
    read a snapshot in which the charge's transaction is visible counted it already; an
    account evaluated within ``DEBOUNCE_S`` gets one delayed evaluation instead. Accounts
    without budgets cost one indexed look-up."""
    xid = payload.get("xid")
    # The charge's account first, its master last: locks are always taken up the tree (no
    # deadlock), and a master's lock, which every member's charge takes, is held only for
    # the master's own part.
    for account_id in await touched_accounts(conn, int(payload["account_id"])):
        has_budgets = (
            await conn.execute(select(exists().where(budgets.c.account_id == account_id)))
        ).scalar_one()
        if not has_budgets:
            continue
        await conn.execute(
            pg_insert(budget_evaluations).values(account_id=account_id).on_conflict_do_nothing()
        )
        state = (
            await conn.execute(
                _STATE,
                {"xid": int(xid or 0), "account_id": account_id, "debounce": DEBOUNCE_S},
            )
        ).one_or_none()
        if state is not None and state.covered and xid is not None:
            continue  # an evaluation that began after this charge committed counted it
        if state is None or (state.recent and DEBOUNCE_S > 0):
            # Being evaluated right now (it may have begun before this charge committed),
            # or evaluated a moment ago: one delayed evaluation, never a wait. A job that
            # cannot take the account's scheduling lock skips: the holder is making sure
            # that an evaluation not yet started exists.
            scheduling = (
                await conn.execute(
                    select(func.pg_try_advisory_xact_lock(SCHEDULING_LOCK + account_id))
                )
            ).scalar_one()
            if not scheduling:
                continue
            pending = (
                await conn.execute(
                    _PENDING, {"topic": EVALUATE_TOPIC, "account_id": str(account_id)}
                )
            ).scalar_one()
            if not pending:
                await outbox.add(
                    conn, EVALUATE_TOPIC, {"account_id": account_id}, delay_s=DEBOUNCE_S
                )
            continue
        await _evaluate_locked(conn, account_id)


@outbox.handler(EVALUATE_TOPIC)
async def _evaluate_later(
    conn: AsyncConnection, payload: dict[str, Any], context: outbox.JobContext
) -> None:
    """C4: the delayed evaluation of a busy account (after ``DEBOUNCE_S``)."""
    account_id = int(payload["account_id"])
    await conn.execute(
        pg_insert(budget_evaluations).values(account_id=account_id).on_conflict_do_nothing()
    )
    await conn.execute(
        select(budget_evaluations.c.account_id)
        .where(budget_evaluations.c.account_id == account_id)
        .with_for_update()
    )
    await _evaluate_locked(conn, account_id)


async def _evaluate_locked(conn: AsyncConnection, account_id: int) -> None:
    """Evaluate (the caller holds the account's evaluation row) and record the snapshot it
    read: the charges that snapshot sees were counted."""
    snapshot = (await conn.execute(select(func.pg_current_snapshot().cast(Text)))).scalar_one()
    await evaluate(conn, [account_id])
    await conn.execute(
        update(budget_evaluations)
        .where(budget_evaluations.c.account_id == account_id)
        .values(snapshot=snapshot, evaluated_at=func.clock_timestamp())
    )


async def sweep(engine: Any, now: datetime | None = None) -> int:
    """C4: re-evaluate every budget (a missed event, a forecast that crossed as time went
    by), a batch of accounts per short transaction. Returns how many accounts."""
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
