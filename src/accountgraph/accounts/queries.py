"""Root query fields of the account graph (thin: loaders and visibility do the work)."""

from __future__ import annotations

from typing import Any

import strawberry
from sqlalchemy import func, select

from accountgraph.accounts import details
from accountgraph.accounts.account import AccountCore
from accountgraph.accounts.models import accounts
from accountgraph.accounts.types import BillTo, Link, PlatformSettings, Site, loaders
from accountgraph.accounts.visibility import listed
from accountgraph.api import ids, node
from accountgraph.api.auth import IsAuthenticated, PrincipalKind, principal_of
from accountgraph.api.compiler import Reference
from accountgraph.api.composed import AccountRef
from accountgraph.api.connections import Connection, Page, connection, page
from accountgraph.db import reading


@strawberry.type
class Viewer:
    kind: PrincipalKind
    account: AccountRef | None


async def account_node(info: strawberry.Info[Any, Any], row_id: int) -> AccountCore | None:
    row = await loaders(info).account_by_id.load(row_id)
    return None if row is None else AccountCore.from_row(row)


async def account_nodes(info: strawberry.Info[Any, Any], row_ids: list[int]) -> list[AccountCore]:
    """Accounts in one batch, leaving out those the viewer does not see."""
    rows = await loaders(info).account_by_id.load_many(row_ids)
    return [AccountCore.from_row(row) for row in rows if row is not None]


async def link_node(info: strawberry.Info[Any, Any], row_id: int) -> Link | None:
    row = await loaders(info).link_by_id.load(row_id)
    return None if row is None else Link.from_row(row)


async def bill_to_node(info: strawberry.Info[Any, Any], row_id: int) -> BillTo | None:
    row = await loaders(info).bill_to_by_id.load(row_id)
    return None if row is None else BillTo.from_row(row)


async def site_node(info: strawberry.Info[Any, Any], row_id: int) -> Site | None:
    row = await loaders(info).site_by_id.load(row_id)
    return None if row is None else Site.from_row(row)


node.register("Account", account_node, account_nodes)
node.register("Link", link_node)
node.register("BillTo", bill_to_node)
node.register("Site", site_node)


@strawberry.type
class AccountQuery:
    @strawberry.field(permission_classes=[IsAuthenticated])
    async def viewer(self, info: strawberry.Info[Any, Any]) -> Viewer:
        principal = principal_of(info)
        own = principal.account_id
        if own is None:
            return Viewer(kind=principal.kind, account=None)
        if info.context.compile_reads:  # its own account: the compiled statement reads it
            return Viewer(
                kind=principal.kind,
                account=Reference(own, lambda: account_node(info, own)),  # type: ignore[arg-type]
            )
        return Viewer(kind=principal.kind, account=await account_node(info, own))

    @strawberry.field(permission_classes=[IsAuthenticated])
    async def account(
        self, info: strawberry.Info[Any, Any], id: strawberry.ID
    ) -> AccountRef | None:
        row_id = ids.decode_as(id, "Account")
        return None if row_id is None else await account_node(info, row_id)

    @strawberry.field(
        permission_classes=[IsAuthenticated],
        description="Accounts whose details the viewer sees: its own and its "
        "members (operators: all), optionally matching ``search``.",
    )
    async def accounts(
        self,
        info: strawberry.Info[Any, Any],
        first: int | None = None,
        after: str | None = None,
        search: str | None = None,
    ) -> Connection[AccountRef]:
        request = page(first, after)  # a refused page is refused before anything else
        if info.context.compile_reads:  # the compiled statement reads the page
            return Reference(  # type: ignore[return-value]
                None,
                lambda: _accounts_page(info, request, search),
                (request.limit, request.after, search),
            )
        return await _accounts_page(info, request, search)

    @strawberry.field(permission_classes=[IsAuthenticated])
    async def settings(self, info: strawberry.Info[Any, Any]) -> PlatformSettings:
        async with reading(info.context.engine) as conn:
            enabled = await details.billing_hierarchy_enabled(conn)
        return PlatformSettings(billing_hierarchy_enabled=enabled)


async def _accounts_page(
    info: strawberry.Info[Any, Any], request: Page, search: str | None
) -> Connection[AccountRef]:
    conditions = listed(principal_of(info), accounts, search)
    rows_query = select(*loaders(info).account_columns()).where(*conditions)
    if request.after is not None:
        rows_query = rows_query.where(accounts.c.id > request.after)
    rows_query = rows_query.order_by(accounts.c.id).limit(request.limit + 1)
    count_query = select(func.count()).select_from(accounts).where(*conditions)
    async with reading(info.context.engine) as conn:
        rows = (await conn.execute(rows_query)).all()
        total = (await conn.execute(count_query)).scalar_one()
    found = [AccountCore.from_row(row) for row in rows]
    return connection(found, [a.row_id for a in found], request, total)


__all__ = ["AccountQuery", "Viewer"]
