"""P2-P4 as SQL predicates: every query that loads graph data filters with these.

Written as SQL, not Python filters over loaded rows, so that loaders and a future
compiled query (DESIGN.md, read path) share one definition of who sees what.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, exists, literal, or_, select, true
from sqlalchemy.sql.expression import FromClause

from accountgraph.accounts.models import links
from accountgraph.api.auth import Principal


def _link_exists(*conditions: ColumnElement[bool]) -> ColumnElement[bool]:
    return exists(select(literal(1)).select_from(links).where(*conditions))


def sees_details(principal: Principal, account_id: ColumnElement[int]) -> ColumnElement[bool]:
    """P2/P3/P4: the whole account (sites, bill-tos, members): its own users, the master of
    an ACTIVE link, operators."""
    if principal.is_operator:
        return true()
    me = principal.account_id
    return or_(
        account_id == me,
        _link_exists(links.c.master_id == me, links.c.member_id == account_id,
                     links.c.status == "ACTIVE"),
    )


def sees_name(principal: Principal, account_id: ColumnElement[int]) -> ColumnElement[bool]:
    """Name fields only: a member's master (through its link, P3), and accounts a master
    invited (the invitation names them). Never a sibling, never a dissociated member."""
    if principal.is_operator:
        return true()
    me = principal.account_id
    return or_(
        sees_details(principal, account_id),
        _link_exists(links.c.member_id == me, links.c.master_id == account_id),
        _link_exists(links.c.master_id == me, links.c.member_id == account_id,
                     links.c.status.in_(("INVITED", "DECLINED"))),
    )


def sees_finance(principal: Principal, account_id: ColumnElement[int]) -> ColumnElement[bool]:
    """P2: a member's finances need VIEW_FINANCE on its ACTIVE link; own and operator always."""
    if principal.is_operator:
        return true()
    me = principal.account_id
    return or_(
        account_id == me,
        _link_exists(links.c.master_id == me, links.c.member_id == account_id,
                     links.c.status == "ACTIVE", links.c.permissions.any("VIEW_FINANCE")),
    )


def sees_link(principal: Principal, link: FromClause = links) -> ColumnElement[bool]:
    """A link: its member's users always; its master's users unless it ended (U5: a
    dissociated member is invisible to its former master)."""
    if principal.is_operator:
        return true()
    me = principal.account_id
    return or_(
        link.c.member_id == me,
        and_(link.c.master_id == me, link.c.status != "DISSOCIATED"),
    )
