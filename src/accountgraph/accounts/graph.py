"""H1, H4, U3, U4 as SQL: the narrow pieces of the account graph that other areas' queries
join or filter with (the visibility predicates are in ``visibility.py``).

Each is a fresh named subquery or a predicate on a column of the caller's query, so the
caller never names the accounts area's tables; PostgreSQL flattens the subqueries, so
the plans are those of a join on the table itself.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, Subquery, exists, select

from accountgraph.accounts.models import accounts, links, sites


def account_ids(name: str = "account") -> Subquery:
    """Every account, as ``(id)``: the rows to start from when an account may have nothing
    of the caller's yet (a left join)."""
    return select(accounts.c.id).subquery(name)


def account_names(name: str = "account") -> Subquery:
    """H1: every account's ``(id, name)``."""
    return select(accounts.c.id, accounts.c.name).subquery(name)


def site_bill_tos(name: str = "site") -> Subquery:
    """H4: every site's ``(id, name, bill_to_id)``: the bill-to its invoice lines go to."""
    return select(sites.c.id, sites.c.name, sites.c.bill_to_id).subquery(name)


def site_tax_groups(name: str = "site_tax") -> Subquery:
    """H4, T2: every site's ``(id, tax_group)``: the tax group code its lines are taxed by."""
    return select(sites.c.id, sites.c.tax_group).subquery(name)


def account_branches(name: str = "account_branch") -> Subquery:
    """H1, T3: every account's ``(id, branch)``."""
    return select(accounts.c.id, accounts.c.branch).subquery(name)


def active_memberships(name: str = "membership") -> Subquery:
    """H1: every ACTIVE link as ``(master_id, member_id)``: who is whose member now."""
    return (
        select(links.c.master_id, links.c.member_id)
        .where(links.c.status == "ACTIVE")
        .subquery(name)
    )


def has_active_master(account_id: ColumnElement[int]) -> ColumnElement[bool]:
    """H1: the account is a member (it has an ACTIVE link to a master)."""
    return exists().where(links.c.member_id == account_id, links.c.status == "ACTIVE")


def under_trusteeship(account_id: ColumnElement[int]) -> ColumnElement[bool]:
    """U3/U4: the account is a member by an ACTIVE trusteeship link (its own cash is
    frozen; it is a managed account, never invoiced itself)."""
    return exists().where(
        links.c.member_id == account_id, links.c.status == "ACTIVE", links.c.type == "TRUSTEESHIP"
    )


def trusteeship_periods(name: str = "trusteeship") -> Subquery:
    """U4: every trusteeship association that became ACTIVE, as ``(master_id, member_id,
    activated_at, ended_at)``: it covers [activated_at, ended_at), ended_at NULL while it
    lasts."""
    return (
        select(links.c.master_id, links.c.member_id, links.c.activated_at, links.c.ended_at)
        .where(links.c.type == "TRUSTEESHIP", links.c.activated_at.is_not(None))
        .subquery(name)
    )


def cost_center_on(account_id: ColumnElement[int]) -> ColumnElement[bool]:
    """U6: the account has cost center enabled (C2-C6 read and write only then)."""
    return exists().where(accounts.c.id == account_id, accounts.c.cost_center_enabled)


def active_associations(name: str = "association") -> Subquery:
    """U4/P2 for cost reports (C2): every ACTIVE link as ``(master_id, member_id, type,
    activated_at, view_finance)``: whose charges a master's report holds, and since when."""
    return (
        select(
            links.c.master_id,
            links.c.member_id,
            links.c.type,
            links.c.activated_at,
            links.c.permissions.any("VIEW_FINANCE").label("view_finance"),
        )
        .where(links.c.status == "ACTIVE")
        .subquery(name)
    )
