"""C2, C3: time in the cost center, all in UTC: report buckets, budget periods, forecasts."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
DAY = timedelta(days=1)


def utc(moment: datetime) -> datetime:
    """A time without a zone is UTC (as PostgreSQL stores it)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def period_bounds(period: str, now: datetime) -> tuple[datetime, datetime]:
    """C3: the calendar period (MONTHLY, QUARTERLY, YEARLY, UTC) holding ``now``."""
    now = utc(now)
    if period == "MONTHLY":
        first = 1 + (now.month - 1)
        months = 1
    elif period == "QUARTERLY":
        first = 1 + 3 * ((now.month - 1) // 3)
        months = 3
    elif period == "YEARLY":
        first, months = 1, 12
    else:  # pragma: no cover - the enum and the CHECK allow no other
        raise ValueError(period)
    start = datetime(now.year, first, 1, tzinfo=UTC)
    end_month = first + months
    end = datetime(now.year + (end_month - 1) // 12, (end_month - 1) % 12 + 1, 1, tzinfo=UTC)
    return start, end


def forecast(spent: Decimal, start: datetime, end: datetime, now: datetime) -> Decimal:
    """C3: spent x (period length) / (time elapsed in the period, at least one day)."""
    elapsed = max(utc(now) - start, DAY)
    length = end - start
    if elapsed >= length:
        return spent
    micro = Decimal(int(length / timedelta(microseconds=1)))
    gone = Decimal(int(elapsed / timedelta(microseconds=1)))
    return (spent * micro / gone).quantize(CENT, rounding=ROUND_HALF_UP)


def bucket_start(dimension: str, day: date) -> date:
    """C2: the first day of the DAY, WEEK (ISO, Monday) or MONTH bucket holding ``day``."""
    if dimension == "WEEK":
        return day - timedelta(days=day.weekday())
    if dimension == "MONTH":
        return day.replace(day=1)
    return day


def forecast_factor(start: datetime, end: datetime, now: datetime) -> Decimal:
    """A bound for C4's SQL filter: ``forecast(spent, ...) <= spent x this + a cent`` for
    any spent >= 0 (the factor of ``forecast``, rounded up)."""
    elapsed = max(utc(now) - start, DAY)
    if elapsed >= end - start:
        return Decimal(1)
    micro = Decimal(int((end - start) / timedelta(microseconds=1)))
    gone = Decimal(int(elapsed / timedelta(microseconds=1)))
    return (micro / gone).quantize(Decimal("0.000000000001"), rounding=ROUND_CEILING)
