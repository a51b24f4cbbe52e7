"""S10 views: ``Query.sharing(masterId)`` by account, by group and as details; nodes."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import strawberry
from graphql import GraphQLError
from sqlalchemy import select, text

from accountgraph.accounts.public import active_memberships
from accountgraph.api import composed, ids, node
from accountgraph.api.auth import IsAuthenticated, principal_of
from accountgraph.api.composed import AccountRef
from accountgraph.api.connections import DEFAULT_PAGE, MAX_PAGE, PageInfo
from accountgraph.db import reading
from accountgraph.sharing.compute import DETAILS, SHARING_LIMIT
from accountgraph.sharing.models import sharing_state
from accountgraph.sharing.recalculation import PENDING_ROWS
from accountgraph.sharing.types import (
    RecalculationState,
    Resource,
    ResourceGrant,
    SharingReason,
    UserGroup,
    accounts_of,
    loaders,
)

Info = strawberry.Info[Any, Any]


@strawberry.type
class AccountSharing:
    account: AccountRef
    resources: list[ResourceGrant]


@strawberry.type
class GroupSharing:
    group: UserGroup
    resources: list[Resource]


@strawberry.type
class SharingDetail:
    account: AccountRef
    resource: Resource
    shared: bool
    reason: SharingReason
    since: datetime | None


@strawberry.type
class SharingDetailEdge:
    cursor: str
    node: SharingDetail


@strawberry.type
class SharingDetailConnection:
    edges: list[SharingDetailEdge]
    page_info: PageInfo
    total_count: int


@dataclass(frozen=True, slots=True)
class _Pair:
    account_id: int
    resource_id: int


def _cursor(pair: _Pair) -> str:
    raw = f"s:{pair.account_id}:{pair.resource_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _after(cursor: str | None) -> _Pair | None:
    if cursor is None:
        return None
    try:
        prefix, account, resource = (
            base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split(":")
        )
        pair = _Pair(int(account), int(resource))
        if prefix != "s" or _cursor(pair) != cursor:
            raise ValueError(cursor)
        return pair
    except (ValueError, UnicodeDecodeError):
        raise GraphQLError("Invalid cursor.", extensions={"code": "INVALID_INPUT"}) from None


@strawberry.type
class SharingOverview:
    master_id: strawberry.Private[int]
    state: RecalculationState
    calculated_at: datetime | None

    @strawberry.field(description="What each account of the enterprise can use.")
    async def by_account(self, info: Info) -> list[AccountSharing]:
        account_ids = [self.master_id, *await _member_ids(info, self.master_id)]
        found = await accounts_of(info, account_ids)
        grants = await loaders(info).grants_by_account.load_many([a.row_id for a in found])
        return [
            AccountSharing(account=account, resources=[ResourceGrant.from_row(row) for row in rows])
            for account, rows in zip(found, grants, strict=True)
        ]

    @strawberry.field(description="Which resources are shared with which groups.")
    async def by_group(self, info: Info) -> list[GroupSharing]:
        groups = await loaders(info).groups_by_master.load(self.master_id)
        shared = await loaders(info).resources_by_group.load_many([g.id for g in groups])
        return [
            GroupSharing(
                group=UserGroup.from_row(group), resources=[Resource.from_row(row) for row in rows]
            )
            for group, rows in zip(groups, shared, strict=True)
        ]

    @strawberry.field(description="Every (account, resource) pair, shared or not, and why.")
    async def details(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        account_id: strawberry.ID | None = None,
        resource_id: strawberry.ID | None = None,
        shared: bool | None = None,
    ) -> SharingDetailConnection:
        limit = DEFAULT_PAGE if first is None else first
        if not 0 <= limit <= MAX_PAGE:
            raise GraphQLError(
                f"'first' must be between 0 and {MAX_PAGE}.", extensions={"code": "INVALID_INPUT"}
            )
        cursor = _after(after)
        conditions, params = ["true"], {"master": self.master_id, "limit": SHARING_LIMIT}
        if account_id is not None:
            conditions.append("account_id = :account")
            params["account"] = ids.decode_as(account_id, "Account") or -1
        if resource_id is not None:
            conditions.append("resource_id = :resource")
            params["resource"] = ids.decode_as(resource_id, "Resource") or -1
        if shared is not None:
            conditions.append("shared = :shared")
            params["shared"] = shared
        where = " AND ".join(conditions)
        page_where = where
        if cursor is not None:
            page_where += " AND (account_id, resource_id) > (:after_account, :after_resource)"
            params.update(after_account=cursor.account_id, after_resource=cursor.resource_id)
        rows_sql = text(
            f"SELECT * FROM ({DETAILS}) d WHERE {page_where} "
            f"ORDER BY account_id, resource_id LIMIT {limit + 1}"
        )
        count_sql = text(f"SELECT count(*) FROM ({DETAILS}) d WHERE {where}")
        async with reading(info.context.engine) as conn:
            rows = (await conn.execute(rows_sql, params)).all()
            total = (await conn.execute(count_sql, params)).scalar_one()
        shown = rows[:limit]
        accounts = {
            a.row_id: a for a in await accounts_of(info, list({r.account_id for r in shown}))
        }
        found = await loaders(info).resource_by_id.load_many([r.resource_id for r in shown])
        edges = [
            SharingDetailEdge(
                cursor=_cursor(_Pair(row.account_id, row.resource_id)),
                node=SharingDetail(
                    account=accounts[row.account_id],
                    resource=Resource.from_row(resource),
                    shared=row.shared,
                    reason=SharingReason(row.reason),
                    since=row.since,
                ),
            )
            for row, resource in zip(shown, found, strict=True)
            if row.account_id in accounts and resource is not None
        ]
        return SharingDetailConnection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=len(rows) > limit, end_cursor=edges[-1].cursor if edges else None
            ),
            total_count=total,
        )


async def _member_ids(info: Info, master_id: int) -> list[int]:
    """The master's ACTIVE members (only the master and operators get here)."""
    membership = active_memberships()
    query = (
        select(membership.c.member_id)
        .where(membership.c.master_id == master_id)
        .order_by(membership.c.member_id)
    )
    async with reading(info.context.engine) as conn:
        return list((await conn.execute(query)).scalars())


async def overview(info: Info, master_id: int) -> SharingOverview | None:
    """The master's users and operators see its sharing; anyone else gets null."""
    principal = principal_of(info)
    if not principal.is_operator and principal.account_id != master_id:
        return None
    account = await composed.account(info, master_id)
    if account is None or account.role.value == "MEMBER":  # a member's is its master's
        return None
    async with reading(info.context.engine) as conn:
        pending = (await conn.execute(PENDING_ROWS, {"master": master_id})).first()
        calculated_at = (
            await conn.execute(
                select(sharing_state.c.calculated_at).where(sharing_state.c.master_id == master_id)
            )
        ).scalar_one_or_none()
    return SharingOverview(
        master_id=master_id,
        calculated_at=calculated_at,
        state=RecalculationState.PENDING if pending else RecalculationState.CURRENT,
    )


async def resource_node(info: Info, row_id: int) -> Resource | None:
    row = await loaders(info).resource_by_id.load(row_id)
    return None if row is None else Resource.from_row(row)


async def group_node(info: Info, row_id: int) -> UserGroup | None:
    row = await loaders(info).group_by_id.load(row_id)
    return None if row is None else UserGroup.from_row(row)


node.register("Resource", resource_node)
node.register("UserGroup", group_node)


@strawberry.type
class SharingQuery:
    @strawberry.field(
        permission_classes=[IsAuthenticated],
        description="S10: a master's effective sharing, and whether it is "
        "CURRENT or PENDING a recalculation (S11).",
    )
    async def sharing(self, info: Info, master_id: strawberry.ID) -> SharingOverview | None:
        row_id = ids.decode_as(master_id, "Account")
        return None if row_id is None else await overview(info, row_id)
