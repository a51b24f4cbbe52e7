"""Keyset pages of child rows for many parents in one SQL query (window per parent)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, func, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection


async def pages(
    conn: AsyncConnection,
    query: Select[Any],
    *,
    parent: str,
    key: str,
    parents: Sequence[int],
    limit: int,
    after: int | None,
    descending: bool = False,
) -> tuple[dict[int, list[Any]], dict[int, int]]:
    """Up to ``limit + 1`` rows per parent after the cursor, and each parent's total.

    ``query`` selects the child rows with columns labelled ``parent`` and ``key`` (unique
    within a parent), already filtered to ``parents`` and by visibility.
    """
    rows_of = query.subquery()
    parent_col = rows_of.c[parent]
    counted = select(rows_of, func.count().over(partition_by=parent_col).label("_total")
                     ).subquery()
    order = counted.c[key].desc() if descending else counted.c[key]
    after_cursor: ColumnElement[bool] = literal(True)
    if after is not None:
        after_cursor = counted.c[key] < after if descending else counted.c[key] > after
    # Window functions run after WHERE: positions count from the cursor, totals do not.
    ordered = select(counted, func.row_number().over(
        partition_by=counted.c[parent], order_by=order).label("_position")
    ).where(after_cursor).subquery()
    page_rows = (await conn.execute(
        select(ordered).where(ordered.c._position <= limit + 1)
        .order_by(ordered.c[parent], ordered.c._position)
    )).all()
    grouped: dict[int, list[Any]] = defaultdict(list)
    totals: dict[int, int] = {}
    for row in page_rows:
        grouped[row._mapping[parent]].append(row)
        totals[row._mapping[parent]] = row._total
    missing = [p for p in parents if p not in totals]
    if missing:  # an empty page (past the last cursor) still has a total
        count = select(parent_col, func.count()).where(parent_col.in_(missing)).group_by(
            parent_col)
        totals.update({row[0]: row[1] for row in (await conn.execute(count)).all()})
    return grouped, totals
