"""Sharing mutations: convert ids and inputs, call one service, report."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.accounts.mutations import AccountPayload, AccountsPayload
from accountgraph.accounts.queries import account_node
from accountgraph.api import ids
from accountgraph.api.auth import IsAuthenticated, IsOperator, principal_of
from accountgraph.api.errors import DomainError, ErrorCode, UserError
from accountgraph.api.mutations import perform, row_id
from accountgraph.api.scalars import Money, amount
from accountgraph.sharing import service
from accountgraph.sharing.queries import group_node, resource_node
from accountgraph.sharing.types import Resource, ResourceType, UserGroup, accounts_of

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
    if len(types) > service.MAX_BATCH:
        raise DomainError(ErrorCode.INVALID_INPUT, "Too many resource types.", ["types"])
    return [t.value for t in types]


@strawberry.type
class SharingMutation:
    @strawberry.mutation(permission_classes=[IsOperator])
    async def create_resource(self, info: Info, input: CreateResourceInput) -> ResourcePayload:
        principal = principal_of(info)

        async def work(conn: AsyncConnection) -> int:
            return await service.create_resource(
                conn, principal, owner_id=row_id(input.owner_id, "Account", ["ownerId"]),
                type=input.type.value, name=input.name,
                capacity=amount(input.capacity, ["capacity"]),
                valid_from=input.valid_from, valid_until=input.valid_until)

        resource_id, errors = await perform(info, work)
        resource = None if resource_id is None else await resource_node(info, resource_id)
        return ResourcePayload(resource=resource, user_errors=errors)

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def set_shared_resource_types(self, info: Info, input: SetSharedResourceTypesInput
                                        ) -> AccountPayload:
        principal = principal_of(info)

        async def work(conn: AsyncConnection) -> int:
            master_id = row_id(input.master_id, "Account", ["masterId"])
            await service.set_shared_types(conn, principal, master_id=master_id,
                                           types=_types(input.types))
            return master_id

        master_id, errors = await perform(info, work)
        account = None if master_id is None else await account_node(info, master_id)
        return AccountPayload(account=account, user_errors=errors)

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def set_accepted_resource_types(
        self, info: Info, input: SetAcceptedResourceTypesInput
    ) -> AccountsPayload:
        principal = principal_of(info)
        member_ids = [ids.decode_as(member_id, "Account") for member_id in input.member_ids]

        async def work(conn: AsyncConnection) -> tuple[list[int], list[UserError]]:
            changed, refused = await service.set_accepted_types(
                conn, principal, member_ids=member_ids, types=_types(input.types))
            return changed, [UserError.of(error) for error in refused]

        result, errors = await perform(info, work)
        changed, refused = result if result is not None else ([], [])
        return AccountsPayload(accounts=await accounts_of(info, changed),
                               user_errors=errors + refused)

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def create_user_group(self, info: Info, input: CreateUserGroupInput
                                ) -> UserGroupPayload:
        principal = principal_of(info)

        async def work(conn: AsyncConnection) -> int:
            return await service.create_user_group(
                conn, principal, master_id=row_id(input.master_id, "Account", ["masterId"]),
                name=input.name)

        group_id, errors = await perform(info, work)
        group = None if group_id is None else await group_node(info, group_id)
        return UserGroupPayload(user_group=group, user_errors=errors)

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def set_user_group_members(self, info: Info, input: SetUserGroupMembersInput
                                     ) -> UserGroupPayload:
        principal = principal_of(info)

        async def work(conn: AsyncConnection) -> int:
            group_id = row_id(input.group_id, "UserGroup", ["groupId"])
            await service.set_user_group_members(
                conn, principal, group_id=group_id,
                member_ids=[ids.decode_as(m, "Account") for m in input.member_ids])
            return group_id

        group_id, errors = await perform(info, work)
        group = None if group_id is None else await group_node(info, group_id)
        return UserGroupPayload(user_group=group, user_errors=errors)

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def share_resource_with_groups(self, info: Info, input: ShareResourceWithGroupsInput
                                         ) -> ResourcePayload:
        principal = principal_of(info)

        async def work(conn: AsyncConnection) -> int:
            resource_id = row_id(input.resource_id, "Resource", ["resourceId"])
            await service.share_resource_with_groups(
                conn, principal, resource_id=resource_id,
                group_ids=[ids.decode_as(g, "UserGroup") for g in input.group_ids])
            return resource_id

        resource_id, errors = await perform(info, work)
        resource = None if resource_id is None else await resource_node(info, resource_id)
        return ResourcePayload(resource=resource, user_errors=errors)
