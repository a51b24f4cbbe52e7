"""H4: sites, the physical service locations of an account, each pointing at one of its
bill-tos."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.accounts.access import account_access
from accountgraph.accounts.bill_tos import own_bill_to
from accountgraph.accounts.fields import camel, checked_text, column_limit
from accountgraph.accounts.models import sites
from accountgraph.accounts.visibility import sees_details
from accountgraph.domain import NotFound, Principal

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
    if bill_to_id is not None:
        await own_bill_to(conn, row.account_id, bill_to_id)
        values["bill_to_id"] = bill_to_id
    if values:
        await conn.execute(update(sites).where(sites.c.id == site_id).values(**values))


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
