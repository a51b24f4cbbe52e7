"""P2-P4 as checks, and the reads of the link graph (H1, H2, U3, U4) other services need.

What the principal may not see does not exist: NOT_FOUND. What it sees but may not do is
PERMISSION_NOT_GRANTED. Every check runs inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.accounts.models import accounts, links
from accountgraph.accounts.visibility import sees_link
from accountgraph.domain import DomainError, ErrorCode, NotFound, Principal


@dataclass(frozen=True, slots=True)
class Access:
    """How the principal stands to an account it can see."""

    own: bool
    master_permissions: tuple[str, ...] | None  # set when the principal is its ACTIVE master


async def visible_account(
    conn: AsyncConnection, principal: Principal, account_id: int, field: list[str]
) -> Access:
    """The account if the principal sees its details (P2-P4), else NOT_FOUND."""
    if principal.is_operator:
        if not await account_exists(conn, account_id):
            raise NotFound(field, "account")
        return Access(own=True, master_permissions=None)
    if account_id == principal.account_id:
        return Access(own=True, master_permissions=None)
    permissions = (
        await conn.execute(
            select(links.c.permissions).where(
                links.c.master_id == principal.account_id,
                links.c.member_id == account_id,
                links.c.status == "ACTIVE",
            )
        )
    ).scalar_one_or_none()
    if permissions is None:
        raise NotFound(field, "account")
    return Access(own=False, master_permissions=tuple(permissions))


async def account_access(
    conn: AsyncConnection, principal: Principal, account_id: int, field: list[str]
) -> None:
    """The account if the principal sees its details (operators: any), else NOT_FOUND.
    Also who writes an account's details: its users, its ACTIVE master, operators."""
    await visible_account(conn, principal, account_id, field)


async def own_or_operator(
    conn: AsyncConnection, principal: Principal, account_id: int, field: list[str]
) -> None:
    """Acts only an account's own users (or operators) take: inviting members, a master's
    settings (S2, S4), its payment methods; its master gets PERMISSION_NOT_GRANTED."""
    access = await visible_account(conn, principal, account_id, field)
    if not access.own:
        raise DomainError(
            ErrorCode.PERMISSION_NOT_GRANTED, "Only the account's own users may do this.", field
        )


async def own_account(
    conn: AsyncConnection, principal: Principal, account_id: int, field: list[str]
) -> None:
    """F8: what only the account's own users do (withdrawals); others who see it get
    PERMISSION_NOT_GRANTED, others NOT_FOUND."""
    await visible_account(conn, principal, account_id, field)
    if principal.account_id != account_id:
        raise DomainError(
            ErrorCode.PERMISSION_NOT_GRANTED, "Only the account's own users may do this.", field
        )


async def finance_access(
    conn: AsyncConnection, principal: Principal, account_id: int, field: list[str]
) -> None:
    """P2: an account's finances are its own users', operators', and its master's with
    VIEW_FINANCE (PERMISSION_NOT_GRANTED without it); others get NOT_FOUND."""
    access = await visible_account(conn, principal, account_id, field)
    if not access.own and "VIEW_FINANCE" not in (access.master_permissions or ()):
        raise DomainError(
            ErrorCode.PERMISSION_NOT_GRANTED, "The member has not granted VIEW_FINANCE.", field
        )


async def invoices_managed(
    conn: AsyncConnection, principal: Principal, account_id: int, field: list[str]
) -> None:
    """A member's bill-tos are the master's to edit only with MANAGE_INVOICES (I2)."""
    access = await visible_account(conn, principal, account_id, field)
    if not access.own and "MANAGE_INVOICES" not in (access.master_permissions or ()):
        raise DomainError(
            ErrorCode.PERMISSION_NOT_GRANTED, "The member has not granted MANAGE_INVOICES.", field
        )


async def account_exists(conn: AsyncConnection, account_id: int) -> bool:
    found = (
        await conn.execute(select(accounts.c.id).where(accounts.c.id == account_id))
    ).scalar_one_or_none()
    return found is not None


# ---------------------------------------------------------------- the link graph


async def member_link(
    conn: AsyncConnection, principal: Principal, master_id: int, member_id: int
) -> Row[Any]:
    """F3/F6: the master's own users (or operators) acting on a member: the pair's current
    link, which must be ACTIVE (LINK_NOT_ACTIVE); a member they cannot see is NOT_FOUND."""
    await own_or_operator(conn, principal, master_id, ["masterId"])
    link = (
        await conn.execute(
            select(links)
            .where(
                links.c.master_id == master_id,
                links.c.member_id == member_id,
                links.c.status != "DECLINED",
                sees_link(principal),
            )
            .order_by((links.c.status == "ACTIVE").desc(), links.c.id.desc())
            .limit(1)
        )
    ).one_or_none()
    if link is None:
        raise NotFound(["memberId"], "member of this master")
    if link.status != "ACTIVE":
        raise DomainError(ErrorCode.LINK_NOT_ACTIVE, f"The link is {link.status}.", ["memberId"])
    return link


async def active_link_as_member(conn: AsyncConnection, account_id: int) -> Row[Any] | None:
    """The account's ACTIVE link to its master, if it is a member (H1: at most one)."""
    return (
        await conn.execute(
            select(links).where(links.c.member_id == account_id, links.c.status == "ACTIVE")
        )
    ).one_or_none()


async def trusteeship_link(conn: AsyncConnection, account_id: int) -> Row[Any] | None:
    """U3/U4: the account's ACTIVE trusteeship link as a member, if any."""
    return (
        await conn.execute(
            select(links).where(
                links.c.member_id == account_id,
                links.c.status == "ACTIVE",
                links.c.type == "TRUSTEESHIP",
            )
        )
    ).one_or_none()


async def active_links_to(
    conn: AsyncConnection, master_id: int, member_ids: Iterable[int]
) -> dict[int, Row[Any]]:
    """The master's ACTIVE links to these members, by member id (the others have none)."""
    rows = (
        await conn.execute(
            select(links).where(
                links.c.master_id == master_id,
                links.c.member_id.in_(member_ids),
                links.c.status == "ACTIVE",
            )
        )
    ).all()
    return {row.member_id: row for row in rows}


async def is_member(conn: AsyncConnection, account_id: int) -> bool:
    """H1: the account has an ACTIVE master."""
    return await any_link(conn, links.c.member_id == account_id, links.c.status == "ACTIVE")


async def has_members(conn: AsyncConnection, account_id: int) -> bool:
    """H1: the account is a master (it has ACTIVE members)."""
    return await any_link(conn, links.c.master_id == account_id, links.c.status == "ACTIVE")


async def has_trusteeship_members(conn: AsyncConnection, account_id: int) -> bool:
    """B1: a master with ACTIVE trusteeship members (a responsible account)."""
    return await any_link(
        conn,
        links.c.master_id == account_id,
        links.c.status == "ACTIVE",
        links.c.type == "TRUSTEESHIP",
    )


async def any_link(conn: AsyncConnection, *conditions: Any) -> bool:
    found = (await conn.execute(select(links.c.id).where(*conditions).limit(1))).first()
    return found is not None
