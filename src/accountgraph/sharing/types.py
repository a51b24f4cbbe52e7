"""S1-S11 in GraphQL: Resource, UserGroup, ResourceGrant, and the sharing area's fields of
``Account`` (resources, usable resources, resource types, user groups)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import strawberry

from accountgraph.api import composed, ids
from accountgraph.api.composed import AccountRef
from accountgraph.api.node import Node
from accountgraph.api.scalars import Money
from accountgraph.sharing.loaders import SharingLoaders

Info = strawberry.Info[Any, Any]
Row = Any


@strawberry.enum
class ResourceType(enum.Enum):
    RESERVED_INSTANCE = "RESERVED_INSTANCE"
    SAVINGS_PLAN = "SAVINGS_PLAN"
    STORAGE_CAPACITY_UNIT = "STORAGE_CAPACITY_UNIT"


@strawberry.enum
class SharingReason(enum.Enum):
    OWNER = "OWNER"
    ACCOUNT_SETTING = "ACCOUNT_SETTING"
    USER_GROUP = "USER_GROUP"
    TYPE_NOT_SHARED = "TYPE_NOT_SHARED"
    TYPE_NOT_ACCEPTED = "TYPE_NOT_ACCEPTED"
    RESTRICTED_TO_GROUPS = "RESTRICTED_TO_GROUPS"
    GROUP_HAS_RESOURCES = "GROUP_HAS_RESOURCES"
    NOT_TRUSTEESHIP = "NOT_TRUSTEESHIP"
    LIMIT_REACHED = "LIMIT_REACHED"


@strawberry.enum
class RecalculationState(enum.Enum):
    CURRENT = "CURRENT"
    PENDING = "PENDING"


def loaders(info: Info) -> SharingLoaders:
    found: SharingLoaders = info.context.loaders.sharing
    return found


async def account_of(info: Info, account_id: int) -> AccountRef | None:
    return await composed.account(info, account_id)


async def accounts_of(info: Info, account_ids: list[int]) -> list[AccountRef]:
    return await composed.accounts(info, account_ids)


@strawberry.type
class Resource(Node):
    id: strawberry.ID
    type: ResourceType
    name: str
    capacity: Money
    valid_from: datetime
    valid_until: datetime
    row_id: strawberry.Private[int]
    owner_id: strawberry.Private[int]

    @strawberry.field
    async def owner(self, info: Info) -> AccountRef:
        found = await account_of(info, self.owner_id)
        if found is None:  # a member sees the master it uses resources of by name
            raise LookupError("owner not visible")
        return found

    @strawberry.field
    async def user_groups(self, info: Info) -> list[UserGroup]:
        rows = await loaders(info).groups_by_resource.load(self.row_id)
        return [UserGroup.from_row(row) for row in rows]

    @classmethod
    def from_row(cls, row: Row) -> Resource:
        return cls(
            id=strawberry.ID(ids.encode("Resource", row.id)),
            row_id=row.id,
            owner_id=row.owner_id,
            type=ResourceType(row.type),
            name=row.name,
            capacity=row.capacity,
            valid_from=row.valid_from,
            valid_until=row.valid_until,
        )


@strawberry.type
class UserGroup(Node):
    id: strawberry.ID
    name: str
    row_id: strawberry.Private[int]

    @strawberry.field
    async def members(self, info: Info) -> list[AccountRef]:
        return await accounts_of(info, await loaders(info).members_by_group.load(self.row_id))

    @strawberry.field
    async def resources(self, info: Info) -> list[Resource]:
        rows = await loaders(info).resources_by_group.load(self.row_id)
        return [Resource.from_row(row) for row in rows]

    @classmethod
    def from_row(cls, row: Row) -> UserGroup:
        return cls(id=strawberry.ID(ids.encode("UserGroup", row.id)), row_id=row.id, name=row.name)


@strawberry.type
class ResourceGrant:
    resource: Resource
    reason: SharingReason
    since: datetime

    @classmethod
    def from_row(cls, row: Row) -> ResourceGrant:
        return cls(
            resource=Resource.from_row(row), reason=SharingReason(row.reason), since=row.since
        )


@strawberry.type
class SharingAccount:
    """The sharing area's fields of ``Account``."""

    row_id: strawberry.Private[int]

    @strawberry.field(description="S1: resources this account owns.")
    async def resources(self, info: Info) -> list[Resource]:
        rows = await loaders(info).resources_by_owner.load(self.row_id)
        return [Resource.from_row(row) for row in rows]

    @strawberry.field(
        description="S10: what this account can use, and why, as of the last recalculation."
    )
    async def usable_resources(self, info: Info) -> list[ResourceGrant]:
        rows = await loaders(info).grants_by_account.load(self.row_id)
        return [ResourceGrant.from_row(row) for row in rows]

    @strawberry.field(description="S3: the resource types this member accepts.")
    async def accepted_resource_types(self, info: Info) -> list[ResourceType]:
        types = await loaders(info).accepted_types_by_account.load(self.row_id)
        return [ResourceType(t) for t in types]

    @strawberry.field(description="S2: the resource types this master shares.")
    async def shared_resource_types(self, info: Info) -> list[ResourceType]:
        types = await loaders(info).shared_types_by_account.load(self.row_id)
        return [ResourceType(t) for t in types]

    @strawberry.field(description="S4: the member's user group, if any.")
    async def user_group(self, info: Info) -> UserGroup | None:
        row = await loaders(info).group_by_member.load(self.row_id)
        return None if row is None else UserGroup.from_row(row)

    @strawberry.field(description="S4: a master's user groups.")
    async def user_groups(self, info: Info) -> list[UserGroup]:
        rows = await loaders(info).groups_by_master.load(self.row_id)
        return [UserGroup.from_row(row) for row in rows]
