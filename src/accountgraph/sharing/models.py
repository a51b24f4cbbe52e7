"""S1-S5, S10: the tables of resource sharing.

Inputs (resources, shared and accepted types, user groups, group members, resource to
group) are written by requests; ``sharing_grants`` is the result of the last
recalculation (S11), one row per (account, resource) pair that is shared, with its reason
and since when. A recalculation is pending while an outbox row ``sharing.recalculate``
of that master is not done.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    UniqueConstraint,
    func,
)

from accountgraph.db import metadata

RESOURCE_TYPES = ("RESERVED_INSTANCE", "SAVINGS_PLAN", "STORAGE_CAPACITY_UNIT")
SHARED_REASONS = ("OWNER", "ACCOUNT_SETTING", "USER_GROUP")


def _type_check(column: str = "type") -> CheckConstraint:
    return CheckConstraint(
        f"{column} IN ({', '.join(repr(t) for t in RESOURCE_TYPES)})", name="type"
    )


resources = Table(
    "resources",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("owner_id", BigInteger, ForeignKey("accounts.id"), nullable=False),
    Column("type", String(30), nullable=False),
    Column("name", String(200), nullable=False),
    Column("capacity", Numeric(20, 2), nullable=False),
    Column("valid_from", DateTime(timezone=True), nullable=False),
    Column("valid_until", DateTime(timezone=True), nullable=False),
    _type_check(),
    CheckConstraint("capacity > 0", name="capacity_positive"),
    CheckConstraint("valid_from < valid_until", name="validity"),
)
Index("ix_resources_owner", resources.c.owner_id, resources.c.id)

shared_resource_types = Table(
    "shared_resource_types",
    metadata,
    Column("master_id", BigInteger, ForeignKey("accounts.id"), nullable=False),
    Column("type", String(30), nullable=False),
    PrimaryKeyConstraint("master_id", "type"),
    _type_check(),
)

accepted_resource_types = Table(
    "accepted_resource_types",
    metadata,
    Column("member_id", BigInteger, ForeignKey("accounts.id"), nullable=False),
    Column("type", String(30), nullable=False),
    PrimaryKeyConstraint("member_id", "type"),
    _type_check(),
)

user_groups = Table(
    "user_groups",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("master_id", BigInteger, ForeignKey("accounts.id"), nullable=False),
    Column("name", String(200), nullable=False),
    UniqueConstraint("master_id", "name", name="uq_user_groups_master_name"),
)

user_group_members = Table(
    "user_group_members",
    metadata,
    Column("group_id", BigInteger, ForeignKey("user_groups.id"), nullable=False),
    # S4: a member is in at most one group at a time.
    Column("member_id", BigInteger, ForeignKey("accounts.id"), primary_key=True),
)
Index("ix_user_group_members_group", user_group_members.c.group_id)

resource_groups = Table(
    "resource_groups",
    metadata,
    Column("resource_id", BigInteger, ForeignKey("resources.id"), nullable=False),
    Column("group_id", BigInteger, ForeignKey("user_groups.id"), nullable=False),
    PrimaryKeyConstraint("resource_id", "group_id"),
)
Index("ix_resource_groups_group", resource_groups.c.group_id)

# Derived data, rewritten only by the recalculation under the master's lock; accounts and
# resources are never deleted. No foreign keys: checking them was 70% of a full
# recalculation (58k rows: 730 ms with them, 250 ms without).
sharing_grants = Table(
    "sharing_grants",
    metadata,
    Column("master_id", BigInteger, nullable=False),
    Column("account_id", BigInteger, nullable=False),
    Column("resource_id", BigInteger, nullable=False),
    Column("reason", String(30), nullable=False),
    Column("since", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("master_id", "account_id", "resource_id"),
    CheckConstraint(
        f"reason IN ({', '.join(repr(r) for r in SHARED_REASONS)})", name="reason"
    ),
)
Index("ix_sharing_grants_account", sharing_grants.c.account_id, sharing_grants.c.resource_id)

sharing_state = Table(
    "sharing_state",
    metadata,
    # One row per master: recalculations of one master take its lock, one at a time.
    Column("master_id", BigInteger, ForeignKey("accounts.id"), primary_key=True),
    Column("calculated_at", DateTime(timezone=True)),
)
