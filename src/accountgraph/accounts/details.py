"""H1, H5: creating accounts, changing their details, and the platform settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.accounts.access import account_access
from accountgraph.accounts.fields import camel, checked_text, column_limit
from accountgraph.accounts.models import accounts, platform_settings
from accountgraph.domain import Principal

ACCOUNT_FIELDS = ("display_name", "branch", "terms", "salesperson")


async def create_account(conn: AsyncConnection, fields: Mapping[str, Any]) -> int:
    """H1 (operators, P4): a new standalone ACTIVE account."""
    name = checked_text(fields.get("name"), ["name"], required=True)
    values = {
        key: checked_text(fields.get(key), [camel(key)], limit=column_limit(accounts, key))
        for key in ACCOUNT_FIELDS
    }
    values["display_name"] = values["display_name"] or name
    account_id: int = (
        await conn.execute(insert(accounts).values(name=name, **values).returning(accounts.c.id))
    ).scalar_one()
    return account_id


async def update_account(
    conn: AsyncConnection, principal: Principal, account_id: int, changes: Mapping[str, Any]
) -> None:
    """The account's users, its master (ACTIVE link) or an operator change its details."""
    await account_access(conn, principal, account_id, ["accountId"])
    values: dict[str, Any] = {
        key: checked_text(
            value, [camel(key)], required=key == "display_name", limit=column_limit(accounts, key)
        )
        for key, value in changes.items()
        if key in ACCOUNT_FIELDS
    }
    if "cost_center_enabled" in changes:
        values["cost_center_enabled"] = bool(changes["cost_center_enabled"])
    if values:
        await conn.execute(update(accounts).where(accounts.c.id == account_id).values(**values))


async def billing_hierarchy_enabled(conn: AsyncConnection) -> bool:
    value: bool = (
        await conn.execute(select(platform_settings.c.billing_hierarchy_enabled))
    ).scalar_one()
    return value


async def update_settings(conn: AsyncConnection, *, billing_hierarchy_enabled: bool | None) -> None:
    """H5 (operators): turning the hierarchy off leaves existing links as they are."""
    if billing_hierarchy_enabled is not None:
        await conn.execute(
            update(platform_settings).values(billing_hierarchy_enabled=billing_hierarchy_enabled)
        )
