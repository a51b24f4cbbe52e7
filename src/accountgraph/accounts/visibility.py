"""P2-P4 as SQL predicates: every query that loads graph data filters with these.

Written as SQL, not Python filters over loaded rows, so that loaders and a future
compiled query (DESIGN.md, read path) share one definition of who sees what.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, any_, exists, false, literal, or_, select, true
from sqlalchemy.sql.expression import FromClause

from accountgraph.accounts.models import links
from accountgraph.domain import Principal

# Named aliases of ``links``, so that an outer query on ``links`` itself (a link's member
# or master) is correlated, not shadowed. Built once: a fresh alias per call cost a
# quarter of a small request's CPU, and stable names let SQLAlchemy cache the statements.
_VISIBLE = links.alias("visible_link")
_ENDED = links.alias("ended_link")


def _link_exists(
    conditions: Callable[[FromClause], list[ColumnElement[bool]]],
    alias: FromClause = _VISIBLE,
) -> ColumnElement[bool]:
    return exists(select(literal(1)).select_from(alias).where(*conditions(alias)))


def _master_still_sees(link: FromClause) -> ColumnElement[bool]:
    """U5: once a pair's association ended, its master sees none of the pair's links up to
    the dissociated one (an earlier declined invitation included); later ones it sees."""
    return ~_link_exists(
        alias=_ENDED,
        conditions=lambda ended: [
            ended.c.master_id == link.c.master_id,
            ended.c.member_id == link.c.member_id,
            ended.c.status == "DISSOCIATED",
            ended.c.id >= link.c.id,
        ],
    )


def sees_details(principal: Principal, account_id: ColumnElement[int]) -> ColumnElement[bool]:
    """P2/P3/P4: the whole account (sites, bill-tos, members): its own users, the master of
    an ACTIVE link, operators."""
    if principal.is_operator:
        return true()
    me = principal.account_id
    return or_(
        account_id == me,
        _link_exists(
            lambda link: [
                link.c.master_id == me,
                link.c.member_id == account_id,
                link.c.status == "ACTIVE",
            ]
        ),
    )


def sees_name(principal: Principal, account_id: ColumnElement[int]) -> ColumnElement[bool]:
    """Name fields only: a member's master (through its link, P3), and accounts a master
    invited (the invitation names them). Never a sibling, never a dissociated member."""
    if principal.is_operator:
        return true()
    me = principal.account_id
    return or_(
        sees_details(principal, account_id),
        _link_exists(lambda link: [link.c.member_id == me, link.c.master_id == account_id]),
        _link_exists(
            lambda link: [
                link.c.master_id == me,
                link.c.member_id == account_id,
                link.c.status.in_(("INVITED", "DECLINED")),
                _master_still_sees(link),
            ]
        ),
    )


def sees_finance(principal: Principal, account_id: ColumnElement[int]) -> ColumnElement[bool]:
    """P2: a member's finances need VIEW_FINANCE on its ACTIVE link; own and operator always."""
    if principal.is_operator:
        return true()
    me = principal.account_id
    return or_(
        account_id == me,
        _link_exists(
            lambda link: [
                link.c.master_id == me,
                link.c.member_id == account_id,
                link.c.status == "ACTIVE",
                literal("VIEW_FINANCE") == any_(link.c.permissions),
            ]
        ),
    )


def sees_link(principal: Principal, link: FromClause = links) -> ColumnElement[bool]:
    """A link: its member's users always; its master's users unless the association ended
    (U5: a dissociated member is invisible to its former master)."""
    if principal.is_operator:
        return true()
    me = principal.account_id
    return or_(
        link.c.member_id == me,
        and_(link.c.master_id == me, _master_still_sees(link)),
    )


def sees_association_costs(
    principal: Principal, account_id: ColumnElement[int], occurred_at: ColumnElement[datetime]
) -> ColumnElement[bool]:
    """U5: a member no longer sees the costs (charges) dated in a trusteeship association
    of its own that has ended: its master settled them. Everyone else who sees the
    account's finances still does."""
    if principal.is_operator:
        return literal(True)
    ended = exists().where(
        links.c.member_id == account_id,
        links.c.member_id == principal.account_id,
        links.c.type == "TRUSTEESHIP",
        links.c.status == "DISSOCIATED",
        and_(occurred_at >= links.c.activated_at, occurred_at < links.c.ended_at),
    )
    return ~ended


MAX_SEARCH = 100


def listed(principal: Principal, account: FromClause, search: str | None) -> list[Any]:
    """``Query.accounts``' rows: accounts whose details the viewer sees (P3; operators
    all), with ``search`` in their name or display name (case-insensitive, at most
    ``MAX_SEARCH`` characters, ``%``/``_`` literal; a NUL matches nothing, as no name can
    hold one)."""
    conditions: list[Any] = [sees_details(principal, account.c.id)]
    if search and "\x00" in search:
        conditions.append(false())
    elif search:
        pattern = "%" + _escape_like(search.strip()[:MAX_SEARCH]) + "%"
        conditions.append(or_(account.c.name.ilike(pattern), account.c.display_name.ilike(pattern)))
    return conditions


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
