"""S4, S5, S7, S9: user groups of a master's trusteeship members, the resources shared with
them, and a member leaving its former master's groups when its link ends.

Each change locks the master's sharing, checks the limit of S8 and requests the
master's recalculation (S11).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.accounts import public as accounts
from accountgraph.domain import DomainError, ErrorCode, NotFound, Principal
from accountgraph.sharing.inputs import MAX_BATCH, checked_name, trusteeship_master
from accountgraph.sharing.models import resource_groups, resources, user_group_members, user_groups
from accountgraph.sharing.recalculation import (
    check_limit,
    lock_master,
    members_per_type,
    request_recalculation,
)


async def create_user_group(
    conn: AsyncConnection, principal: Principal, *, master_id: int, name: str
) -> int:
    """S4: a user group of a master's trusteeship members (names unique per master)."""
    await accounts.own_or_operator(conn, principal, master_id, ["masterId"])
    if await accounts.is_member(conn, master_id):
        raise DomainError(ErrorCode.INVALID_INPUT, "Only a master has user groups.", ["masterId"])
    savepoint = await conn.begin_nested()
    try:
        group_id: int = (
            await conn.execute(
                insert(user_groups)
                .values(master_id=master_id, name=checked_name(name))
                .returning(user_groups.c.id)
            )
        ).scalar_one()
    except IntegrityError:
        await savepoint.rollback()
        raise DomainError(
            ErrorCode.CONFLICT, "The master has a group of that name.", ["name"]
        ) from None
    await savepoint.commit()
    return group_id


async def set_user_group_members(
    conn: AsyncConnection, principal: Principal, *, group_id: int, member_ids: Sequence[int | None]
) -> None:
    """S4, S7: the group's members become exactly these trusteeship members; a member
    that was in another group leaves it (a member is in at most one group)."""
    master_id = await _group_master(conn, principal, group_id)
    if len(member_ids) > MAX_BATCH:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"At most {MAX_BATCH} members at once.", ["memberIds"]
        )
    wanted: list[int] = []
    for index, member_id in enumerate(member_ids):
        field = ["memberIds", str(index)]
        if member_id is None:
            raise NotFound(field, "account")
        if await trusteeship_master(conn, principal, member_id, field) != master_id:
            raise NotFound(field, "member of this group's master")
        wanted.append(member_id)
    await lock_master(conn, master_id)
    before = await members_per_type(conn, master_id)
    await conn.execute(
        delete(user_group_members).where(
            (user_group_members.c.group_id == group_id) | user_group_members.c.member_id.in_(wanted)
        )
    )
    if wanted:
        await conn.execute(
            insert(user_group_members),
            [{"group_id": group_id, "member_id": m} for m in sorted(set(wanted))],
        )
    await check_limit(conn, master_id, before, ["memberIds"])
    await request_recalculation(conn, master_id)


async def share_resource_with_groups(
    conn: AsyncConnection,
    principal: Principal,
    *,
    resource_id: int,
    group_ids: Sequence[int | None],
) -> None:
    """S5: the resource becomes usable only by members of these groups (none: S6 again)."""
    if len(group_ids) > MAX_BATCH:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"At most {MAX_BATCH} groups at once.", ["groupIds"]
        )
    row = (
        await conn.execute(select(resources.c.owner_id).where(resources.c.id == resource_id))
    ).one_or_none()
    if row is None:
        raise NotFound(["resourceId"], "resource")
    await accounts.own_or_operator(conn, principal, row.owner_id, ["resourceId"])
    if await accounts.is_member(conn, row.owner_id):
        raise DomainError(
            ErrorCode.INVALID_INPUT, "Members' own resources are never shared (S1).", ["resourceId"]
        )
    wanted = {group_id for group_id in group_ids if group_id is not None}
    owned = set(
        (
            await conn.execute(
                select(user_groups.c.id).where(
                    user_groups.c.id.in_(wanted), user_groups.c.master_id == row.owner_id
                )
            )
        ).scalars()
    )
    for index, group_id in enumerate(group_ids):
        if group_id not in owned:
            raise NotFound(["groupIds", str(index)], "user group of the resource's owner")
    groups = [int(group_id) for group_id in group_ids if group_id is not None]
    await lock_master(conn, row.owner_id)
    before = await members_per_type(conn, row.owner_id)
    await conn.execute(delete(resource_groups).where(resource_groups.c.resource_id == resource_id))
    if groups:
        await conn.execute(
            insert(resource_groups),
            [{"resource_id": resource_id, "group_id": g} for g in sorted(set(groups))],
        )
    await check_limit(conn, row.owner_id, before, ["groupIds"])
    await request_recalculation(conn, row.owner_id)


async def leave_master_groups(conn: AsyncConnection, master_id: int, member_id: int) -> None:
    """S9 (U5, the accounts area's dissociation listener): the member leaves its former
    master's user groups (the dissociation requests the recalculations)."""
    await conn.execute(
        delete(user_group_members).where(
            user_group_members.c.member_id == member_id,
            user_group_members.c.group_id.in_(
                select(user_groups.c.id).where(user_groups.c.master_id == master_id)
            ),
        )
    )


async def _group_master(conn: AsyncConnection, principal: Principal, group_id: int) -> int:
    row = (
        await conn.execute(select(user_groups.c.master_id).where(user_groups.c.id == group_id))
    ).one_or_none()
    if row is None:
        raise NotFound(["groupId"], "user group")
    await accounts.own_or_operator(conn, principal, row.master_id, ["groupId"])
    return int(row.master_id)
