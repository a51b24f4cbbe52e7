"""S1-S11 in GraphQL: Resource, UserGroup, ResourceGrant and the sharing overview."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from accountgraph.api import ids
from accountgraph.api.node import Node
from accountgraph.api.scalars import Money
from accountgraph.sharing.loaders import SharingLoaders

if TYPE_CHECKING:
    from accountgraph.accounts.types import Account

AccountRef = Annotated["Account", strawberry.lazy("accountgraph.accounts.types")]
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


async def account_of(info: Info, account_id: int) -> Account | None:
    from accountgraph.accounts.queries import account_node

    return await account_node(info, account_id)


async def accounts_of(info: Info, account_ids: list[int]) -> list[Account]:
    from accountgraph.accounts.queries import account_nodes

    return await account_nodes(info, account_ids)


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
            id=strawberry.ID(ids.encode("Resource", row.id)), row_id=row.id,
            owner_id=row.owner_id, type=ResourceType(row.type), name=row.name,
            capacity=row.capacity, valid_from=row.valid_from, valid_until=row.valid_until,
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
        return cls(id=strawberry.ID(ids.encode("UserGroup", row.id)), row_id=row.id,
                   name=row.name)


@strawberry.type
class ResourceGrant:
    resource: Resource
    reason: SharingReason
    since: datetime

    @classmethod
    def from_row(cls, row: Row) -> ResourceGrant:
        return cls(resource=Resource.from_row(row), reason=SharingReason(row.reason),
                   since=row.since)
