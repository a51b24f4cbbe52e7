"""H1-H5, P2-P4 in the read compiler: the accounts area's fields as SQL building JSON.

Each compiler is the twin of a resolver in ``account.py``/``types.py`` and its loader in
``loaders.py``: the same rows, the same order, the same visibility predicates
(``visibility.py``), the same formatting (``api/sqljson.py``). ``Account`` is an entry:
a resolved account outside a list is answered by one statement from its row id.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    case,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.sql.expression import FromClause

from accountgraph.accounts.models import accounts, bill_tos, links, sites
from accountgraph.accounts.visibility import listed, sees_details, sees_link
from accountgraph.api import compiled_pages, sqljson
from accountgraph.api.compiled_pages import PageOf
from accountgraph.api.compiler import (
    Compilation,
    NotCompiled,
    Reference,
    Selected,
    entry,
    enum_value,
    field,
    json_text,
)

Json = ColumnElement[Any]

compiled_pages.register("AccountConnection", "AccountEdge")


@entry("Account")
def _account_entry(compilation: Compilation, details: list[Any], account: Any) -> Select[Any]:
    row = accounts.alias(compilation.name("account"))
    return select(json_text(compilation.object("Account", details, row))).where(
        row.c.id == account.row_id
    )


@entry("AccountConnection")
def _accounts_entry(compilation: Compilation, details: list[Any], pending: Any) -> Select[Any]:
    """``Query.accounts``: the resolver's page (``listed``, by id after the cursor) as one
    aggregate. Only the root field passes its page as a ``Reference``: an
    ``AccountConnection`` met anywhere else (``members`` of an account the resolvers
    answer) is theirs to complete."""
    if not isinstance(pending, Reference) or pending.row_id is not None:
        raise NotCompiled("an AccountConnection that is not Query.accounts")
    limit, after, search = pending.args
    listed_row = accounts.alias(compilation.name("listed"))
    chosen = select(listed_row.c.id).where(*listed(compilation.principal, listed_row, search))
    total = (
        select(func.count())
        .select_from(chosen.subquery(compilation.name("counted")))
        .scalar_subquery()
    )
    after_cursor = chosen.where(listed_row.c.id > after) if after is not None else chosen
    page_rows = after_cursor.subquery(compilation.name("chosen"))
    ordered = (
        select(page_rows.c.id, func.row_number().over(order_by=page_rows.c.id).label("position"))
        .order_by(page_rows.c.id)
        .limit(limit + 1)
        .subquery(compilation.name("page"))
    )
    account = accounts.alias(compilation.name("account"))
    source = PageOf(
        key=ordered.c.id, position=ordered.c.position, limit=limit, total=total, node=account
    )
    # GROUP BY (): one row even for an empty page, whatever the selection aggregates.
    return (
        select(json_text(compilation.object("AccountConnection", details, source)))
        .select_from(ordered.join(account, account.c.id == ordered.c.id))
        .group_by(literal_column("()"))
    )


def _details(compilation: Compilation, row: FromClause) -> ColumnElement[bool]:
    return sees_details(compilation.principal, row.c.id)


@field("Account", "id")
def _id(compilation: Compilation, selected: Selected, row: FromClause) -> Json:
    return sqljson.global_id("Account", row.c.id)


@field("Account", "name", "displayName", "status")
def _plain(compilation: Compilation, selected: Selected, row: FromClause) -> Json:
    return row.c[{"displayName": "display_name"}.get(selected.name, selected.name)]


@field("Account", "branch", "terms", "salesperson")
def _detail(compilation: Compilation, selected: Selected, row: FromClause) -> Json:
    """P3: seen by name only, an account shows no details."""
    return case((_details(compilation, row), row.c[selected.name]), else_=null())


@field("Account", "costCenterEnabled")
def _cost_center(compilation: Compilation, selected: Selected, row: FromClause) -> Json:
    return and_(row.c.cost_center_enabled, _details(compilation, row))


@field("Account", "role")
def _role(compilation: Compilation, selected: Selected, row: FromClause) -> Json:
    """H1: MASTER with an ACTIVE link as master, else MEMBER with one as member. As ``IN``
    over the ACTIVE links (a hashed subplan, once per statement): a correlated EXISTS on
    ``master_id`` is planned as a scan of the links per row wherever one master holds
    most of them."""
    active = links.alias(compilation.name("role_link"))

    def ends(column: str) -> Any:
        return select(active.c[column]).where(active.c.status == "ACTIVE")

    return case(
        (row.c.id.in_(ends("master_id")), sqljson.text("MASTER")),
        (row.c.id.in_(ends("member_id")), sqljson.text("MEMBER")),
        else_=sqljson.text("STANDALONE"),
    )


@field("Account", "link")
def _link(compilation: Compilation, selected: Selected, row: FromClause) -> Json:
    """The member's ACTIVE link, else its latest that was not DECLINED."""
    link = links.alias(compilation.name("member_link"))
    principal = compilation.principal
    return (
        select(compilation.child(selected, link))
        .where(
            link.c.member_id == row.c.id,
            link.c.status != "DECLINED",
            sees_link(principal, link),
            sees_details(principal, link.c.member_id),
        )
        .order_by((link.c.status == "ACTIVE").desc(), link.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )


@field("Account", "invitations")
def _invitations(compilation: Compilation, selected: Selected, row: FromClause) -> Json:
    link = links.alias(compilation.name("invitation"))
    return sqljson.array(
        select(func.json_agg(aggregate_order_by(compilation.child(selected, link), link.c.id)))
        .where(
            link.c.status == "INVITED",
            sees_link(compilation.principal, link),
            or_(link.c.member_id == row.c.id, link.c.master_id == row.c.id),
        )
        .scalar_subquery()
    )


@field("Account", "members")
def _members(compilation: Compilation, selected: Selected, row: FromClause) -> Json:
    """One aggregate over the page: the loader's window query, for one master."""
    limit, after = compiled_pages.page_args(selected)
    principal = compilation.principal
    status = enum_value(selected.args.get("status")) or "ACTIVE"
    link_type = enum_value(selected.args.get("type"))
    link = links.alias(compilation.name("membership"))
    conditions = [
        link.c.master_id == row.c.id,
        link.c.status == status,
        sees_link(principal, link),
        sees_details(principal, link.c.master_id),
    ]
    if link_type is not None:
        conditions.append(link.c.type == link_type)
    # One row per member: a member dissociated twice is listed once.
    # Derived tables do not correlate by themselves: this one belongs to the outer row.
    chosen = select(link.c.member_id).where(*conditions).group_by(link.c.member_id).correlate(row)
    total = (
        select(func.count())
        .select_from(chosen.subquery(compilation.name("counted")))
        .scalar_subquery()
    )
    after_cursor = chosen.where(link.c.member_id > after) if after is not None else chosen
    page_rows = after_cursor.subquery(compilation.name("chosen"))
    ordered = (
        select(
            page_rows.c.member_id,
            func.row_number().over(order_by=page_rows.c.member_id).label("position"),
        )
        .order_by(page_rows.c.member_id)
        .limit(limit + 1)
        .subquery(compilation.name("page"))
    )
    member = accounts.alias(compilation.name("member"))
    source = PageOf(
        key=ordered.c.member_id, position=ordered.c.position, limit=limit, total=total, node=member
    )
    # GROUP BY (): one row even for an empty page, whatever the selection aggregates.
    return (
        select(compilation.child(selected, source))
        .select_from(ordered.join(member, member.c.id == ordered.c.member_id))
        .group_by(literal_column("()"))
        .scalar_subquery()
    )


@field("Account", "billTos")
def _bill_tos(compilation: Compilation, selected: Selected, row: FromClause) -> Json:
    bill_to = bill_tos.alias(compilation.name("bill_to"))
    return sqljson.array(
        select(
            func.json_agg(aggregate_order_by(compilation.child(selected, bill_to), bill_to.c.id))
        )
        .where(
            bill_to.c.account_id == row.c.id,
            sees_details(compilation.principal, bill_to.c.account_id),
        )
        .scalar_subquery()
    )


@field("Account", "primaryBillTo")
def _primary_bill_to(compilation: Compilation, selected: Selected, row: FromClause) -> Json:
    bill_to = bill_tos.alias(compilation.name("primary_bill_to"))
    return (
        select(compilation.child(selected, bill_to))
        .where(
            bill_to.c.account_id == row.c.id,
            bill_to.c.is_primary,
            sees_details(compilation.principal, bill_to.c.account_id),
        )
        .order_by(bill_to.c.id)
        .limit(1)
        .scalar_subquery()
    )


@field("Account", "sites")
def _sites(compilation: Compilation, selected: Selected, row: FromClause) -> Json:
    site = sites.alias(compilation.name("site"))
    return sqljson.array(
        select(func.json_agg(aggregate_order_by(compilation.child(selected, site), site.c.id)))
        .where(
            site.c.account_id == row.c.id, sees_details(compilation.principal, site.c.account_id)
        )
        .scalar_subquery()
    )


# ---------------------------------------------------------------- Link


@field("Link", "id")
def _link_id(compilation: Compilation, selected: Selected, link: FromClause) -> Json:
    return sqljson.global_id("Link", link.c.id)


_LINK_COLUMNS = {
    "type": "type",
    "status": "status",
    "permissions": "permissions",
    "referencesMasterInvoiceInfo": "references_master_invoice_info",
}


@field("Link", *_LINK_COLUMNS)
def _link_plain(compilation: Compilation, selected: Selected, link: FromClause) -> Json:
    return link.c[_LINK_COLUMNS[selected.name]]


_LINK_TIMES = {"invitedAt": "invited_at", "activatedAt": "activated_at", "endedAt": "ended_at"}


@field("Link", *_LINK_TIMES)
def _link_time(compilation: Compilation, selected: Selected, link: FromClause) -> Json:
    return sqljson.datetime(link.c[_LINK_TIMES[selected.name]])


@field("Link", "master", "member")
def _link_end(compilation: Compilation, selected: Selected, link: FromClause) -> Json:
    """Both ends of a link the principal sees are visible at least by name."""
    end = accounts.alias(compilation.name(f"link_{selected.name}"))
    return (
        select(compilation.child(selected, end))
        .where(end.c.id == link.c[f"{selected.name}_id"])
        .scalar_subquery()
    )


# ---------------------------------------------------------------- BillTo and Site

_BILL_TO_COLUMNS = {
    "name": "name",
    "address": "address",
    "email": "email",
    "invoiceTitle": "invoice_title",
    "taxId": "tax_id",
    "isPrimary": "is_primary",
}


@field("BillTo", "id")
def _bill_to_id(compilation: Compilation, selected: Selected, bill_to: FromClause) -> Json:
    return sqljson.global_id("BillTo", bill_to.c.id)


@field("BillTo", *_BILL_TO_COLUMNS)
def _bill_to_plain(compilation: Compilation, selected: Selected, bill_to: FromClause) -> Json:
    return bill_to.c[_BILL_TO_COLUMNS[selected.name]]


@field("BillTo", "readOnly")
def _read_only(compilation: Compilation, selected: Selected, bill_to: FromClause) -> Json:
    """I3: a member's primary bill-to mirrors its master's while its ACTIVE link says so."""
    link = links.alias(compilation.name("mirroring_link"))
    return and_(
        bill_to.c.is_primary,
        select(literal(1))
        .where(
            link.c.member_id == bill_to.c.account_id,
            link.c.status == "ACTIVE",
            link.c.references_master_invoice_info,
        )
        .exists(),
    )


_SITE_COLUMNS = {"name": "name", "address": "address", "branch": "branch", "taxGroup": "tax_group"}


@field("Site", "id")
def _site_id(compilation: Compilation, selected: Selected, site: FromClause) -> Json:
    return sqljson.global_id("Site", site.c.id)


@field("Site", *_SITE_COLUMNS)
def _site_plain(compilation: Compilation, selected: Selected, site: FromClause) -> Json:
    return site.c[_SITE_COLUMNS[selected.name]]


@field("Site", "billTo")
def _site_bill_to(compilation: Compilation, selected: Selected, site: FromClause) -> Json:
    bill_to = bill_tos.alias(compilation.name("site_bill_to"))
    return (
        select(compilation.child(selected, bill_to))
        .where(
            bill_to.c.id == site.c.bill_to_id,
            sees_details(compilation.principal, bill_to.c.account_id),
        )
        .scalar_subquery()
    )
