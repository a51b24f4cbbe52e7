"""H4: sites, the physical service locations of an account, each pointing at one of its
bill-tos."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.accounts.access import account_access
from accountgraph.accounts.bill_tos import own_bill_to
from accountgraph.accounts.fields import camel, checked_text, column_limit
from accountgraph.accounts.models import accounts, sites
from accountgraph.accounts.ports import known_tax_group
from accountgraph.accounts.visibility import sees_details
from accountgraph.domain import DomainError, ErrorCode, NotFound, Principal

SITE_FIELDS = ("name", "address", "branch", "tax_group")


async def add_site(
    conn: AsyncConnection,
    principal: Principal,
    account_id: int,
    fields: Mapping[str, Any],
    *,
    bill_to_id: int,
) -> int:
    """H4: a site of an account, pointing at one of that account's bill-tos."""
    await account_access(conn, principal, account_id, ["accountId"])
    values = _site_values(fields, creating=True)
    await _check_tax_group(conn, values)
    await own_bill_to(conn, account_id, bill_to_id)
    site_id: int = (
        await conn.execute(
            insert(sites)
            .values(account_id=account_id, bill_to_id=bill_to_id, **values)
            .returning(sites.c.id)
        )
    ).scalar_one()
    return site_id


async def update_site(
    conn: AsyncConnection,
    principal: Principal,
    site_id: int,
    fields: Mapping[str, Any],
    *,
    bill_to_id: int | None,
) -> None:
    row = (
        await conn.execute(
            select(sites.c.account_id).where(
                sites.c.id == site_id, sees_details(principal, sites.c.account_id)
            )
        )
    ).one_or_none()
    if row is None:
        raise NotFound(["siteId"], "site")
    await account_access(conn, principal, row.account_id, ["siteId"])
    values = _site_values(fields, creating=False)
    await _check_tax_group(conn, values)
    if bill_to_id is not None:
        await own_bill_to(conn, row.account_id, bill_to_id)
        values["bill_to_id"] = bill_to_id
    if values:
        await conn.execute(update(sites).where(sites.c.id == site_id).values(**values))


async def branch_of(conn: AsyncConnection, account_id: int, site_id: int | None) -> str | None:
    """T3: the branch a charge records: its site's, else its account's (None if neither)."""
    site_branch = (
        select(sites.c.branch).where(sites.c.id == site_id).scalar_subquery()
        if site_id is not None
        else None
    )
    own = select(accounts.c.branch).where(accounts.c.id == account_id).scalar_subquery()
    found: str | None = (
        await conn.execute(select(own if site_branch is None else func.coalesce(site_branch, own)))
    ).scalar_one_or_none()
    return found


async def site_of(conn: AsyncConnection, site_id: int, account_id: int) -> bool:
    """F7: the site is one of the account's."""
    found = (
        await conn.execute(
            select(sites.c.id).where(sites.c.id == site_id, sites.c.account_id == account_id)
        )
    ).first()
    return found is not None


def _site_values(fields: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
    return {
        key: checked_text(
            fields[key], [camel(key)], required=key == "name", limit=column_limit(sites, key)
        )
        for key in SITE_FIELDS
        if key in fields and (creating or fields[key] is not None)
    }


async def _check_tax_group(conn: AsyncConnection, values: Mapping[str, Any]) -> None:
    """T1: a site's tax group is the code of a tax group (billing's, through the port)."""
    code = values.get("tax_group")
    if code is not None and not await known_tax_group(conn, code):
        raise DomainError(ErrorCode.INVALID_INPUT, "No tax group has this code.", ["taxGroup"])
