"""Sharing mutations: convert ids and inputs, call one service, report.

Each runs through ``mutate`` (``api/mutations.py``) but ``setAcceptedResourceTypes``, a
batch whose payload is the list of accounts it changed (``api.payloads.mutate_accounts``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.api import ids
from accountgraph.api.auth import IsAuthenticated, IsOperator
from accountgraph.api.errors import UserError
from accountgraph.api.mutations import mutate, row_id
from accountgraph.api.payloads import AccountPayload, AccountsPayload, mutate_accounts
from accountgraph.api.scalars import Money, amount
from accountgraph.domain import DomainError, ErrorCode, Principal
from accountgraph.sharing import groups, inputs
from accountgraph.sharing.types import Resource, ResourceType, UserGroup

Info = strawberry.Info[Any, Any]


@strawberry.input
class CreateResourceInput:
    owner_id: strawberry.ID
    type: ResourceType
    name: str
    capacity: Money
    valid_from: datetime
    valid_until: datetime


@strawberry.input
class SetSharedResourceTypesInput:
    master_id: strawberry.ID
    types: list[ResourceType]


@strawberry.input
class SetAcceptedResourceTypesInput:
    member_ids: list[strawberry.ID]
    types: list[ResourceType]


@strawberry.input
class CreateUserGroupInput:
    master_id: strawberry.ID
    name: str


@strawberry.input
class SetUserGroupMembersInput:
    group_id: strawberry.ID
    member_ids: list[strawberry.ID]


@strawberry.input
class ShareResourceWithGroupsInput:
    resource_id: strawberry.ID
    group_ids: list[strawberry.ID]


@strawberry.type
class ResourcePayload:
    resource: Resource | None
    user_errors: list[UserError]


@strawberry.type
class UserGroupPayload:
    user_group: UserGroup | None
    user_errors: list[UserError]


def _types(types: list[ResourceType]) -> list[str]:
    if len(types) > inputs.MAX_BATCH:
        raise DomainError(ErrorCode.INVALID_INPUT, "Too many resource types.", ["types"])
    return [t.value for t in types]


@strawberry.type
class SharingMutation:
    @strawberry.mutation(permission_classes=[IsOperator])
    async def create_resource(self, info: Info, input: CreateResourceInput) -> ResourcePayload:
        async def work(conn: AsyncConnection, principal: Principal) -> int:
            return await inputs.create_resource(
                conn,
                principal,
                owner_id=row_id(input.owner_id, "Account", ["ownerId"]),
                type=input.type.value,
                name=input.name,
                capacity=amount(input.capacity, ["capacity"]),
                valid_from=input.valid_from,
                valid_until=input.valid_until,
            )

        return await mutate(info, ResourcePayload, work, resource="Resource")

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def set_shared_resource_types(
        self, info: Info, input: SetSharedResourceTypesInput
    ) -> AccountPayload:
        async def work(conn: AsyncConnection, principal: Principal) -> int:
            master_id = row_id(input.master_id, "Account", ["masterId"])
            await inputs.set_shared_types(
                conn, principal, master_id=master_id, types=_types(input.types)
            )
            return master_id

        return await mutate(info, AccountPayload, work, account="Account")

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def set_accepted_resource_types(
        self, info: Info, input: SetAcceptedResourceTypesInput
    ) -> AccountsPayload:
        async def work(
            conn: AsyncConnection, principal: Principal
        ) -> tuple[list[int], list[DomainError]]:
            member_ids = [ids.decode_as(member_id, "Account") for member_id in input.member_ids]
            return await inputs.set_accepted_types(
                conn, principal, member_ids=member_ids, types=_types(input.types)
            )

        return await mutate_accounts(info, work)

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def create_user_group(self, info: Info, input: CreateUserGroupInput) -> UserGroupPayload:
        async def work(conn: AsyncConnection, principal: Principal) -> int:
            return await groups.create_user_group(
                conn,
                principal,
                master_id=row_id(input.master_id, "Account", ["masterId"]),
                name=input.name,
            )

        return await mutate(info, UserGroupPayload, work, user_group="UserGroup")

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def set_user_group_members(
        self, info: Info, input: SetUserGroupMembersInput
    ) -> UserGroupPayload:
        async def work(conn: AsyncConnection, principal: Principal) -> int:
            group_id = row_id(input.group_id, "UserGroup", ["groupId"])
            await groups.set_user_group_members(
                conn,
                principal,
                group_id=group_id,
                member_ids=[ids.decode_as(m, "Account") for m in input.member_ids],
            )
            return group_id

        return await mutate(info, UserGroupPayload, work, user_group="UserGroup")

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def share_resource_with_groups(
        self, info: Info, input: ShareResourceWithGroupsInput
    ) -> ResourcePayload:
        async def work(conn: AsyncConnection, principal: Principal) -> int:
            resource_id = row_id(input.resource_id, "Resource", ["resourceId"])
            await groups.share_resource_with_groups(
                conn,
                principal,
                resource_id=resource_id,
                group_ids=[ids.decode_as(g, "UserGroup") for g in input.group_ids],
            )
            return resource_id

        return await mutate(info, ResourcePayload, work, resource="Resource")
