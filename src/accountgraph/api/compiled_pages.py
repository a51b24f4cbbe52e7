"""Relay connections in the read compiler: ``totalCount``, ``pageInfo`` and ``edges`` of a
keyset page, built by one aggregate over the page's rows (``api/connections.py`` is the
resolvers' twin: ``limit + 1`` rows after the cursor, the extra one meaning more).

Pages are in key order, or newest (highest key) first where the resolvers' are
(``descending``, as ``api/keyset.pages``): then the cursor means "older than", edges run
down and ``endCursor`` is the smallest key shown. ``rows_page`` builds a whole page of
one parent's child rows whose node is the row itself (notifications, transfers ...)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graphql import GraphQLError
from sqlalchemy import ColumnElement, Select, case, func, literal_column, null, select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.sql.expression import FromClause

from accountgraph.api import sqljson
from accountgraph.api.compiler import Compilation, NotCompiled, Selected, field
from accountgraph.api.connections import page


@dataclass(frozen=True, slots=True)
class PageOf:
    """One page being built: the rows' sort key and position (1-based, after the cursor),
    the page size, the total (a scalar subquery), and what each edge's node is built from.
    """

    key: ColumnElement[int]
    position: ColumnElement[int]
    limit: int
    total: ColumnElement[int]
    node: Any
    descending: bool = False

    @property
    def order(self) -> ColumnElement[int]:
        return self.key.desc() if self.descending else self.key


def page_args(selected: Selected) -> tuple[int, int | None]:
    """``first``/``after`` as the resolvers take them; what they refuse stays theirs."""
    try:
        request = page(selected.args.get("first"), selected.args.get("after"))
    except GraphQLError as refused:  # the resolvers answer it with the same error
        raise NotCompiled(str(refused)) from None
    return request.limit, request.after


def rows_page(
    compilation: Compilation,
    selected: Selected,
    chosen: Select[Any],
    *,
    key: str = "id",
    descending: bool,
    parent: FromClause,
) -> ColumnElement[Any]:
    """The connection of ``selected`` over a page of ``chosen``'s rows: one parent's
    child rows (correlated to the outer row ``parent``), visibility in its WHERE, unique by
    ``key``. The twin of ``keyset.pages`` for one parent; each edge's node is its row."""
    limit, after = page_args(selected)
    chosen = chosen.correlate(parent)
    total = (
        select(func.count())
        .select_from(chosen.subquery(compilation.name("counted")))
        .scalar_subquery()
    )
    if after is not None:
        cursor_key = chosen.selected_columns[key]
        chosen = chosen.where(cursor_key < after if descending else cursor_key > after)
    rows = chosen.subquery(compilation.name("chosen"))
    order = rows.c[key].desc() if descending else rows.c[key]
    position = func.row_number().over(order_by=order).label(compilation.name("position"))
    ordered = (
        select(rows, position).order_by(order).limit(limit + 1).subquery(compilation.name("page"))
    )
    source = PageOf(
        key=ordered.c[key],
        position=ordered.c[position.name],
        limit=limit,
        total=total,
        node=ordered,
        descending=descending,
    )
    # GROUP BY (): one row even for an empty page, whatever the selection aggregates.
    return (
        select(compilation.child(selected, source))
        .select_from(ordered)
        .group_by(literal_column("()"))
        .scalar_subquery()
    )


def register(connection_type: str, edge_type: str) -> None:
    """Compile ``connection_type`` and ``edge_type`` over a ``PageOf`` source."""
    field(connection_type, "totalCount")(_total)
    field(connection_type, "pageInfo")(_page_info)
    field(connection_type, "edges")(_edges)
    field(edge_type, "cursor")(_cursor)
    field(edge_type, "node")(_node)


def _shown(source: PageOf) -> ColumnElement[bool]:
    return source.position <= source.limit


def _total(compilation: Compilation, selected: Selected, source: PageOf) -> ColumnElement[Any]:
    return source.total


def _page_info(compilation: Compilation, selected: Selected, source: PageOf) -> ColumnElement[Any]:
    return compilation.child(selected, source)


@field("PageInfo", "hasNextPage")
def _has_next(compilation: Compilation, selected: Selected, source: PageOf) -> ColumnElement[Any]:
    return func.count() > source.limit


@field("PageInfo", "endCursor")
def _end_cursor(compilation: Compilation, selected: Selected, source: PageOf) -> ColumnElement[Any]:
    last = (func.min if source.descending else func.max)(source.key).filter(_shown(source))
    return case((last.is_(None), null()), else_=sqljson.cursor(last))


def _edges(compilation: Compilation, selected: Selected, source: PageOf) -> ColumnElement[Any]:
    edge = compilation.child(selected, source)
    return sqljson.array(
        func.json_agg(aggregate_order_by(edge, source.order)).filter(_shown(source))
    )


def _cursor(compilation: Compilation, selected: Selected, source: PageOf) -> ColumnElement[Any]:
    return sqljson.cursor(source.key)


def _node(compilation: Compilation, selected: Selected, source: PageOf) -> ColumnElement[Any]:
    return compilation.child(selected, source.node)
