"""S1-S5, S10: the tables of resource sharing.

Inputs (resources, shared and accepted types, user groups, group members, resource to
group) are written by requests; ``sharing_grants`` is the result of the last
recalculation (S11), one row per (account, resource) pair that is shared, with its reason
and since when. A recalculation is pending while an outbox row ``sharing.recalculate``
of that master is not done.

Declared as SQLModel table models; the services query the Core tables (``resources``,
``sharing_grants``, ..., each model's ``__table__``).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Identity,
    Index,
    Numeric,
    String,
    UniqueConstraint,
    func,
)
from sqlmodel import Field, SQLModel

from accountgraph.db import table_of

RESOURCE_TYPES = ("RESERVED_INSTANCE", "SAVINGS_PLAN", "STORAGE_CAPACITY_UNIT")
SHARED_REASONS = ("OWNER", "ACCOUNT_SETTING", "USER_GROUP")


def _type_check(column: str = "type") -> CheckConstraint:
    return CheckConstraint(
        f"{column} IN ({', '.join(repr(t) for t in RESOURCE_TYPES)})", name="type"
    )


class Resource(SQLModel, table=True):
    __tablename__ = "resources"
    __table_args__ = (
        _type_check(),
        CheckConstraint("capacity > 0", name="capacity_positive"),
        CheckConstraint("valid_from < valid_until", name="validity"),
        Index("ix_resources_owner", "owner_id", "id"),
    )

    id: int = Field(primary_key=True, sa_type=BigInteger, sa_column_args=[Identity()])
    owner_id: int = Field(sa_type=BigInteger, foreign_key="accounts.id")
    type: str = Field(sa_type=String(30))
    name: str = Field(sa_type=String(200))
    capacity: Decimal = Field(sa_type=Numeric(20, 2))
    valid_from: datetime = Field(sa_type=DateTime(timezone=True))
    valid_until: datetime = Field(sa_type=DateTime(timezone=True))


class SharedResourceType(SQLModel, table=True):
    __tablename__ = "shared_resource_types"
    __table_args__ = (_type_check(),)

    master_id: int = Field(primary_key=True, sa_type=BigInteger, foreign_key="accounts.id")
    type: str = Field(primary_key=True, sa_type=String(30))


class AcceptedResourceType(SQLModel, table=True):
    __tablename__ = "accepted_resource_types"
    __table_args__ = (_type_check(),)

    member_id: int = Field(primary_key=True, sa_type=BigInteger, foreign_key="accounts.id")
    type: str = Field(primary_key=True, sa_type=String(30))


class UserGroup(SQLModel, table=True):
    __tablename__ = "user_groups"
    __table_args__ = (UniqueConstraint("master_id", "name", name="uq_user_groups_master_name"),)

    id: int = Field(primary_key=True, sa_type=BigInteger, sa_column_args=[Identity()])
    master_id: int = Field(sa_type=BigInteger, foreign_key="accounts.id")
    name: str = Field(sa_type=String(200))


class UserGroupMember(SQLModel, table=True):
    __tablename__ = "user_group_members"
    __table_args__ = (Index("ix_user_group_members_group", "group_id"),)

    group_id: int = Field(sa_type=BigInteger, foreign_key="user_groups.id")
    # S4: a member is in at most one group at a time.
    member_id: int = Field(primary_key=True, sa_type=BigInteger, foreign_key="accounts.id")


class ResourceGroup(SQLModel, table=True):
    __tablename__ = "resource_groups"
    __table_args__ = (Index("ix_resource_groups_group", "group_id"),)

    resource_id: int = Field(primary_key=True, sa_type=BigInteger, foreign_key="resources.id")
    group_id: int = Field(primary_key=True, sa_type=BigInteger, foreign_key="user_groups.id")


class SharingGrant(SQLModel, table=True):
    """Derived data, rewritten only by the recalculation under the master's lock.

    Accounts and resources are never deleted. No foreign keys: checking them was 70% of a
    full recalculation (58k rows: 730 ms with them, 250 ms without).
    """

    __tablename__ = "sharing_grants"
    __table_args__ = (
        CheckConstraint(f"reason IN ({', '.join(repr(r) for r in SHARED_REASONS)})", name="reason"),
        Index("ix_sharing_grants_account", "account_id", "resource_id"),
    )

    master_id: int = Field(primary_key=True, sa_type=BigInteger)
    account_id: int = Field(primary_key=True, sa_type=BigInteger)
    resource_id: int = Field(primary_key=True, sa_type=BigInteger)
    reason: str = Field(sa_type=String(30))
    since: datetime = Field(
        sa_type=DateTime(timezone=True), sa_column_kwargs={"server_default": func.now()}
    )


class SharingState(SQLModel, table=True):
    """One row per master: recalculations of one master take its lock, one at a time."""

    __tablename__ = "sharing_state"

    master_id: int = Field(primary_key=True, sa_type=BigInteger, foreign_key="accounts.id")
    calculated_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


# The Core tables, under the names the services' queries use.
resources = table_of(Resource)
shared_resource_types = table_of(SharedResourceType)
accepted_resource_types = table_of(AcceptedResourceType)
user_groups = table_of(UserGroup)
user_group_members = table_of(UserGroupMember)
resource_groups = table_of(ResourceGroup)
sharing_grants = table_of(SharingGrant)
sharing_state = table_of(SharingState)
