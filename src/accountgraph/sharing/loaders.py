"""Per-request batch loading of sharing: resources, groups, grants and settings.

Resources and groups are visible to whoever sees their owner's details; a resource is
also visible to an account that may use it (a grant), so a member sees what it shares.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import exists, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine
from strawberry.dataloader import DataLoader

from accountgraph.accounts.public import sees_details
from accountgraph.api.batching import AreaLoaders, by_key, grouped
from accountgraph.domain import Principal
from accountgraph.sharing.models import (
    accepted_resource_types,
    resource_groups,
    resources,
    shared_resource_types,
    sharing_grants,
    user_group_members,
    user_groups,
)

Row = Any


class SharingLoaders(AreaLoaders):
    def __init__(self, engine: AsyncEngine, principal: Principal) -> None:
        super().__init__(engine, principal)
        self.resource_by_id = DataLoader(self._resources_by_id)
        self.resources_by_owner = DataLoader(self._resources_by_owner)
        self.grants_by_account = DataLoader(self._grants_by_account)
        self.group_by_id = DataLoader(self._groups_by_id)
        self.groups_by_master = DataLoader(self._groups_by_master)
        self.group_by_member = DataLoader(self._group_by_member)
        self.members_by_group = DataLoader(self._members_by_group)
        self.resources_by_group = DataLoader(self._resources_by_group)
        self.groups_by_resource = DataLoader(self._groups_by_resource)
        self.accepted_types_by_account = DataLoader(self._accepted_types)
        self.shared_types_by_account = DataLoader(self._shared_types)

    def _sees_resource(self) -> Any:
        usable = exists().where(
            sharing_grants.c.resource_id == resources.c.id,
            sharing_grants.c.account_id == self.principal.account_id,
        )
        return or_(sees_details(self.principal, resources.c.owner_id), usable)

    def _sees_group(self) -> Any:
        # An alias: the queries that use this also select from user_group_members, which
        # the EXISTS would otherwise correlate away (leaving it no FROM at all).
        membership = user_group_members.alias()
        mine = exists().where(
            membership.c.group_id == user_groups.c.id,
            membership.c.member_id == self.principal.account_id,
        )
        return or_(sees_details(self.principal, user_groups.c.master_id), mine)

    async def _resources_by_id(self, ids: Sequence[int]) -> list[Row | None]:
        query = select(resources).where(resources.c.id.in_(ids), self._sees_resource())
        return by_key(ids, await self._all(query), lambda row: row.id)

    async def _resources_by_owner(self, ids: Sequence[int]) -> list[list[Row]]:
        query = (
            select(resources)
            .where(
                resources.c.owner_id.in_(ids), sees_details(self.principal, resources.c.owner_id)
            )
            .order_by(resources.c.owner_id, resources.c.id)
        )
        return grouped(ids, await self._all(query), lambda row: row.owner_id)

    async def _grants_by_account(self, ids: Sequence[int]) -> list[list[Row]]:
        """S10 by account: what each account can use, from the last recalculation."""
        query = (
            select(sharing_grants, resources)
            .join(resources, resources.c.id == sharing_grants.c.resource_id)
            .where(
                sharing_grants.c.account_id.in_(ids),
                sees_details(self.principal, sharing_grants.c.account_id),
            )
            .order_by(sharing_grants.c.account_id, sharing_grants.c.resource_id)
        )
        return grouped(ids, await self._all(query), lambda row: row.account_id)

    async def _groups_by_id(self, ids: Sequence[int]) -> list[Row | None]:
        query = select(user_groups).where(user_groups.c.id.in_(ids), self._sees_group())
        return by_key(ids, await self._all(query), lambda row: row.id)

    async def _groups_by_master(self, ids: Sequence[int]) -> list[list[Row]]:
        query = (
            select(user_groups)
            .where(
                user_groups.c.master_id.in_(ids),
                sees_details(self.principal, user_groups.c.master_id),
            )
            .order_by(user_groups.c.master_id, user_groups.c.id)
        )
        return grouped(ids, await self._all(query), lambda row: row.master_id)

    async def _group_by_member(self, ids: Sequence[int]) -> list[Row | None]:
        query = (
            select(user_groups, user_group_members.c.member_id)
            .join(user_group_members, user_group_members.c.group_id == user_groups.c.id)
            .where(
                user_group_members.c.member_id.in_(ids),
                self._sees_group(),
                sees_details(self.principal, user_group_members.c.member_id),
            )
        )
        return by_key(ids, await self._all(query), lambda row: row.member_id)

    async def _members_by_group(self, ids: Sequence[int]) -> list[list[int]]:
        query = (
            select(user_group_members.c.group_id, user_group_members.c.member_id)
            .where(
                user_group_members.c.group_id.in_(ids),
                sees_details(self.principal, user_group_members.c.member_id),
            )
            .order_by(user_group_members.c.group_id, user_group_members.c.member_id)
        )
        rows_by = grouped(ids, await self._all(query), lambda row: row.group_id)
        return [[row.member_id for row in rows] for rows in rows_by]

    async def _resources_by_group(self, ids: Sequence[int]) -> list[list[Row]]:
        query = (
            select(resources, resource_groups.c.group_id)
            .join(resource_groups, resource_groups.c.resource_id == resources.c.id)
            .where(resource_groups.c.group_id.in_(ids), self._sees_resource())
            .order_by(resource_groups.c.group_id, resources.c.id)
        )
        return grouped(ids, await self._all(query), lambda row: row.group_id)

    async def _groups_by_resource(self, ids: Sequence[int]) -> list[list[Row]]:
        query = (
            select(user_groups, resource_groups.c.resource_id)
            .join(resource_groups, resource_groups.c.group_id == user_groups.c.id)
            .where(resource_groups.c.resource_id.in_(ids), self._sees_group())
            .order_by(resource_groups.c.resource_id, user_groups.c.id)
        )
        return grouped(ids, await self._all(query), lambda row: row.resource_id)

    async def _accepted_types(self, ids: Sequence[int]) -> list[list[str]]:
        table = accepted_resource_types
        query = (
            select(table)
            .where(table.c.member_id.in_(ids), sees_details(self.principal, table.c.member_id))
            .order_by(table.c.member_id, table.c.type)
        )
        rows_by = grouped(ids, await self._all(query), lambda row: row.member_id)
        return [[row.type for row in rows] for rows in rows_by]

    async def _shared_types(self, ids: Sequence[int]) -> list[list[str]]:
        table = shared_resource_types
        query = (
            select(table)
            .where(table.c.master_id.in_(ids), sees_details(self.principal, table.c.master_id))
            .order_by(table.c.master_id, table.c.type)
        )
        rows_by = grouped(ids, await self._all(query), lambda row: row.master_id)
        return [[row.type for row in rows] for rows in rows_by]
