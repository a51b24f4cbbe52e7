"""S2, S4 as SQL for the areas above (cost center, C3 and C5): user groups' members, and
the resource types a master owns valid resources of without sharing them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Subquery, and_, exists, func, select

from accountgraph.sharing.models import (
    resources,
    shared_resource_types,
    user_group_members,
    user_groups,
)


def group_members(name: str = "group_member") -> Subquery:
    """S4: every user group's members, as ``(group_id, master_id, member_id)``."""
    return (
        select(
            user_groups.c.id.label("group_id"),
            user_groups.c.master_id,
            user_group_members.c.member_id,
        )
        .select_from(
            user_groups.join(user_group_members, user_group_members.c.group_id == user_groups.c.id)
        )
        .subquery(name)
    )


def user_groups_of(name: str = "user_group") -> Subquery:
    """S4: every user group, as ``(id, master_id)``."""
    return select(user_groups.c.id, user_groups.c.master_id).subquery(name)


def unshared_resource_types(at: datetime, name: str = "unshared_type") -> Subquery:
    """S1/S2: per master and resource type it owns valid resources of (at ``at``) but does
    not share: ``(owner_id, type, resources)``."""
    return (
        select(resources.c.owner_id, resources.c.type, func.count().label("resources"))
        .where(
            resources.c.valid_from <= at,
            resources.c.valid_until > at,
            ~exists().where(
                and_(
                    shared_resource_types.c.master_id == resources.c.owner_id,
                    shared_resource_types.c.type == resources.c.type,
                )
            ),
        )
        .group_by(resources.c.owner_id, resources.c.type)
        .subquery(name)
    )
