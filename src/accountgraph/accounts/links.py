"""H1, H2, U1, U5, U6: inviting a member, answering the invitation, dissociating.

Each operation locks both accounts (ascending ids), then the link, and checks the rules
in the order DOMAIN.md lists them; every change of a link is kept with who did it (H2).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph import outbox
from accountgraph.accounts import ports
from accountgraph.accounts.access import (
    account_exists,
    any_link,
    has_members,
    is_member,
    own_or_operator,
)
from accountgraph.accounts.details import billing_hierarchy_enabled
from accountgraph.accounts.locks import lock_accounts
from accountgraph.accounts.models import LINK_PERMISSIONS, accounts, link_events, links
from accountgraph.accounts.visibility import sees_link
from accountgraph.domain import DomainError, ErrorCode, NotFound, Principal

HIERARCHY_OFF = "The billing hierarchy is disabled: no new trusteeship links."


async def invite_member(
    conn: AsyncConnection, principal: Principal, *, master_id: int, member_id: int, type: str
) -> int:
    """H1, H2, H5: the master invites any account by id (API.md: the one exception to
    visibility, since invitations are how accounts meet)."""
    await own_or_operator(conn, principal, master_id, ["masterId"])
    if not await account_exists(conn, member_id):
        raise NotFound(["memberId"], "account")
    if master_id == member_id:
        raise DomainError(ErrorCode.INVALID_INPUT, "An account cannot invite itself.", ["memberId"])
    await lock_accounts(conn, master_id, member_id)
    if type == "TRUSTEESHIP" and not await billing_hierarchy_enabled(conn):
        raise DomainError(ErrorCode.HIERARCHY_DISABLED, HIERARCHY_OFF, ["type"])
    if await is_member(conn, master_id):
        raise DomainError(
            ErrorCode.ALREADY_A_MEMBER,
            "A member account cannot have members of its own.",
            ["masterId"],
        )
    if await is_member(conn, member_id) or await has_members(conn, member_id):
        raise DomainError(
            ErrorCode.ALREADY_A_MEMBER,
            "The account already has a master or members of its own.",
            ["memberId"],
        )
    if await _open_invitation(conn, master_id, member_id):
        raise DomainError(
            ErrorCode.CONFLICT, "An invitation to this account is already open.", ["memberId"]
        )
    link_id: int = (
        await conn.execute(
            insert(links)
            .values(master_id=master_id, member_id=member_id, type=type, status="INVITED")
            .returning(links.c.id)
        )
    ).scalar_one()
    await _record(conn, principal, link_id, "INVITED", [])
    return link_id


async def respond_to_invitation(
    conn: AsyncConnection,
    principal: Principal,
    *,
    link_id: int,
    accept: bool,
    permissions: Sequence[str],
) -> None:
    """U1, H2: the invited account accepts with its grants (ACTIVE) or declines."""
    link = await _visible_link(conn, principal, link_id, ["linkId"])
    if not principal.is_operator and principal.account_id != link.member_id:
        raise DomainError(
            ErrorCode.PERMISSION_NOT_GRANTED,
            "Only the invited account answers an invitation.",
            ["linkId"],
        )
    await lock_accounts(conn, link.master_id, link.member_id)
    link = await _lock_link(conn, link_id)
    if link.status != "INVITED":
        raise DomainError(ErrorCode.CONFLICT, f"The invitation is {link.status}.", ["linkId"])
    if not accept:
        await _set_link(
            conn, principal, link_id, status="DECLINED", permissions=[], ended_at=func.now()
        )
        return
    granted = sorted(set(permissions), key=LINK_PERMISSIONS.index)
    if link.type == "TRUSTEESHIP" and not await billing_hierarchy_enabled(conn):
        raise DomainError(ErrorCode.HIERARCHY_DISABLED, HIERARCHY_OFF, ["linkId"])
    if link.type == "TRUSTEESHIP" and await ports.outstanding_fees(conn, link.member_id) > 0:
        raise DomainError(
            ErrorCode.OUTSTANDING_FEES,
            "Pay the outstanding fees before joining a trusteeship.",
            ["linkId"],
        )
    if await is_member(conn, link.member_id) or await has_members(conn, link.member_id):
        raise DomainError(
            ErrorCode.ALREADY_A_MEMBER,
            "The account already has a master or members of its own.",
            ["linkId"],
        )
    if await is_member(conn, link.master_id):
        raise DomainError(
            ErrorCode.ALREADY_A_MEMBER,
            "The inviting account has since become a member.",
            ["linkId"],
        )
    await _set_link(
        conn, principal, link_id, status="ACTIVE", permissions=granted, activated_at=func.now()
    )
    await _enable_cost_center_from_master(conn, link.master_id, link.member_id)
    await outbox.add(conn, outbox.SHARING_RECALCULATE, {"master_id": link.master_id})
    # S1: what the account owned as its own enterprise is now its master's to compute.
    await outbox.add(conn, outbox.SHARING_RECALCULATE, {"master_id": link.member_id})


async def dissociate(conn: AsyncConnection, principal: Principal, *, link_id: int) -> None:
    """U5: either side (or an operator) ends an ACTIVE link."""
    link = await _visible_link(conn, principal, link_id, ["linkId"])
    await lock_accounts(conn, link.master_id, link.member_id)
    link = await _lock_link(conn, link_id)
    if link.status != "ACTIVE":
        raise DomainError(ErrorCode.LINK_NOT_ACTIVE, f"The link is {link.status}.", ["linkId"])
    await _set_link(
        conn,
        principal,
        link_id,
        status="DISSOCIATED",
        permissions=list(link.permissions),
        ended_at=func.now(),
    )
    # S9: the member's sharing ends with the link: it leaves the master's user groups (the
    # sharing area's listener), its master's grants are recalculated, and it is its own
    # enterprise again (it keeps using what it owns).
    await ports.dissociated(conn, link.master_id, link.member_id)
    await outbox.add(conn, outbox.SHARING_RECALCULATE, {"master_id": link.master_id})
    await outbox.add(conn, outbox.SHARING_RECALCULATE, {"master_id": link.member_id})


async def _enable_cost_center_from_master(
    conn: AsyncConnection, master_id: int, member_id: int
) -> None:
    """U6: a master with cost center enabled enables it for every member on association
    (later the member may turn it off; dissociation leaves it as it is)."""
    master = accounts.alias("master")  # not correlated with the account being updated
    await conn.execute(
        update(accounts)
        .where(
            accounts.c.id == member_id,
            select(master.c.cost_center_enabled).where(master.c.id == master_id).scalar_subquery(),
        )
        .values(cost_center_enabled=True)
    )


async def _open_invitation(conn: AsyncConnection, master_id: int, member_id: int) -> bool:
    return await any_link(
        conn,
        links.c.master_id == master_id,
        links.c.member_id == member_id,
        links.c.status == "INVITED",
    )


async def _visible_link(
    conn: AsyncConnection, principal: Principal, link_id: int, field: list[str]
) -> Row[Any]:
    row = (
        await conn.execute(select(links).where(links.c.id == link_id, sees_link(principal)))
    ).one_or_none()
    if row is None:
        raise NotFound(field, "link")
    return row


async def _lock_link(conn: AsyncConnection, link_id: int) -> Row[Any]:
    return (await conn.execute(select(links).where(links.c.id == link_id).with_for_update())).one()


async def _set_link(
    conn: AsyncConnection,
    principal: Principal,
    link_id: int,
    *,
    status: str,
    permissions: list[str],
    **times: Any,
) -> None:
    await conn.execute(
        update(links)
        .where(links.c.id == link_id)
        .values(status=status, permissions=permissions, **times)
    )
    await _record(conn, principal, link_id, status, permissions)


async def _record(
    conn: AsyncConnection, principal: Principal, link_id: int, status: str, permissions: list[str]
) -> None:
    """H2: every link change is kept, with who did it and when."""
    await conn.execute(
        insert(link_events).values(
            link_id=link_id, status=status, permissions=permissions, actor=principal.actor
        )
    )
