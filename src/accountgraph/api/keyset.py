"""Keyset pages of child rows for many parents in one SQL query (window per parent)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

from sqlalchemy import ColumnElement, Select, func, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from accountgraph.db import reading


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
    counted = select(rows_of, func.count().over(partition_by=parent_col).label("_total")).subquery()
    order = counted.c[key].desc() if descending else counted.c[key]
    after_cursor: ColumnElement[bool] = literal(True)
    if after is not None:
        after_cursor = counted.c[key] < after if descending else counted.c[key] > after
    # Window functions run after WHERE: positions count from the cursor, totals do not.
    ordered = (
        select(
            counted,
            func.row_number()
            .over(partition_by=counted.c[parent], order_by=order)
            .label("_position"),
        )
        .where(after_cursor)
        .subquery()
    )
    page_rows = (
        await conn.execute(
            select(ordered)
            .where(ordered.c._position <= limit + 1)
            .order_by(ordered.c[parent], ordered.c._position)
        )
    ).all()
    grouped: dict[int, list[Any]] = defaultdict(list)
    totals: dict[int, int] = {}
    for row in page_rows:
        grouped[row._mapping[parent]].append(row)
        totals[row._mapping[parent]] = row._total
    missing = [p for p in parents if p not in totals]
    if missing:  # an empty page (past the last cursor) still has a total
        count = select(parent_col, func.count()).where(parent_col.in_(missing)).group_by(parent_col)
        totals.update({row[0]: row[1] for row in (await conn.execute(count)).all()})
    return grouped, totals


class PageKey(Protocol):
    """A loader key asking for one page of one account's child rows."""

    @property
    def account_id(self) -> int: ...

    @property
    def limit(self) -> int: ...

    @property
    def after(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[Any]
    total: int


K = TypeVar("K", bound=PageKey)


async def child_pages(
    engine: AsyncEngine,
    keys: Sequence[K],
    query: Callable[[K, list[int]], Select[Any]],
    *,
    descending: bool = True,
) -> list[Page]:
    """A DataLoader batch of pages: keys that differ only in their account share one
    query (``query(key, accounts)`` selects their rows with a ``parent_id`` column)."""
    groups: dict[Hashable, list[K]] = defaultdict(list)
    for key in keys:
        shape: Hashable = replace(key, account_id=0)  # type: ignore[type-var, assignment]
        groups[shape].append(key)
    found: dict[K, Page] = {}
    async with reading(engine) as conn:
        for group in groups.values():
            first = group[0]
            parents = [key.account_id for key in group]
            rows, totals = await pages(
                conn,
                query(first, parents),
                parent="parent_id",
                key="id",
                parents=parents,
                limit=first.limit,
                after=first.after,
                descending=descending,
            )
            for key in group:
                found[key] = Page(rows.get(key.account_id, []), totals.get(key.account_id, 0))
    return [found[key] for key in keys]
