"""H1-H5, U1, P1-P4: the rules of the account graph as plain async functions.

Each function runs inside the caller's transaction, checks visibility first (what the
principal may not see does not exist: NOT_FOUND), then the rules in the order listed in
DOMAIN.md, and raises DomainError before writing anything it would have to undo.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, Table, and_, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph import outbox
from accountgraph.accounts.models import (
    LINK_PERMISSIONS,
    accounts,
    api_tokens,
    bill_tos,
    link_events,
    links,
    platform_settings,
    sites,
)
from accountgraph.accounts.visibility import sees_details, sees_link
from accountgraph.domain import DomainError, ErrorCode, NotFound, Principal, PrincipalKind
from accountgraph.funds import balances
from accountgraph.sharing.models import user_group_members, user_groups

TOKEN_PREFIX = "agt_"
MAX_TEXT = 200
HIERARCHY_OFF = "The billing hierarchy is disabled: no new trusteeship links."

# ---------------------------------------------------------------- tokens (P1, P4)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def authenticate(
    conn: AsyncConnection, token: str, *, operator_token: str | None
) -> Principal | None:
    """The principal of a bearer token, or None for an unknown or revoked one."""
    if operator_token and hmac.compare_digest(token.encode(), operator_token.encode()):
        return Principal(PrincipalKind.OPERATOR, None, "operator:env")
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    row = (
        await conn.execute(
            select(api_tokens.c.account_id, api_tokens.c.name, accounts.c.name.label("account"))
            .select_from(api_tokens.outerjoin(accounts, accounts.c.id == api_tokens.c.account_id))
            .where(api_tokens.c.token_hash == hash_token(token), api_tokens.c.revoked_at.is_(None))
        )
    ).one_or_none()
    if row is None:
        return None
    if row.account_id is None:
        return Principal(PrincipalKind.OPERATOR, None, f"operator:{row.name}")
    return Principal(PrincipalKind.ACCOUNT_USER, row.account_id, f"{row.account}:{row.name}")


async def create_token(
    conn: AsyncConnection, principal: Principal, *, account_id: int | None, name: str
) -> str:
    """P4: operators create tokens for anyone (None: an operator token); an account's users
    for their own account. The token is returned once; only its hash is kept."""
    name = _text(name, ["name"], required=True)
    if account_id is None:
        if not principal.is_operator:
            raise DomainError(ErrorCode.PERMISSION_NOT_GRANTED,
                              "Only operators create operator tokens.", ["accountId"])
    else:
        await _visible_account(conn, principal, account_id, ["accountId"])
        if not principal.is_operator and principal.account_id != account_id:
            raise DomainError(ErrorCode.PERMISSION_NOT_GRANTED,
                              "Tokens are created by the account's own users.", ["accountId"])
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    await conn.execute(
        insert(api_tokens).values(
            account_id=account_id, name=name, token_hash=hash_token(token),
            created_by=principal.actor,
        )
    )
    return token


# ---------------------------------------------------------------- accounts (H1, H5)


ACCOUNT_FIELDS = ("display_name", "branch", "terms", "salesperson")


async def create_account(conn: AsyncConnection, fields: Mapping[str, Any]) -> int:
    """H1 (operators, P4): a new standalone ACTIVE account."""
    name = _text(fields.get("name"), ["name"], required=True)
    values = {key: _text(fields.get(key), [_camel(key)], limit=_limit(accounts, key))
              for key in ACCOUNT_FIELDS}
    values["display_name"] = values["display_name"] or name
    account_id: int = (
        await conn.execute(insert(accounts).values(name=name, **values).returning(accounts.c.id))
    ).scalar_one()
    return account_id


async def update_account(
    conn: AsyncConnection, principal: Principal, account_id: int, changes: Mapping[str, Any]
) -> None:
    """The account's users, its master (ACTIVE link) or an operator change its details."""
    await _managed_account(conn, principal, account_id, ["accountId"])
    values: dict[str, Any] = {
        key: _text(value, [_camel(key)], required=key == "display_name",
                   limit=_limit(accounts, key))
        for key, value in changes.items()
        if key in ACCOUNT_FIELDS
    }
    if "cost_center_enabled" in changes:
        values["cost_center_enabled"] = bool(changes["cost_center_enabled"])
    if values:
        await conn.execute(update(accounts).where(accounts.c.id == account_id).values(**values))


async def billing_hierarchy_enabled(conn: AsyncConnection) -> bool:
    value: bool = (
        await conn.execute(select(platform_settings.c.billing_hierarchy_enabled))
    ).scalar_one()
    return value


async def update_settings(conn: AsyncConnection, *, billing_hierarchy_enabled: bool | None) -> None:
    """H5 (operators): turning the hierarchy off leaves existing links as they are."""
    if billing_hierarchy_enabled is not None:
        await conn.execute(
            update(platform_settings).values(billing_hierarchy_enabled=billing_hierarchy_enabled)
        )


# ---------------------------------------------------------------- links (H1, H2, U1, U5)


async def invite_member(
    conn: AsyncConnection, principal: Principal, *, master_id: int, member_id: int, type: str
) -> int:
    """H1, H2, H5: the master invites any account by id (API.md: the one exception to
    visibility, since invitations are how accounts meet)."""
    await _managed_by_self(conn, principal, master_id, ["masterId"])
    if not await _exists(conn, member_id):
        raise NotFound(["memberId"], "account")
    if master_id == member_id:
        raise DomainError(ErrorCode.INVALID_INPUT, "An account cannot invite itself.",
                          ["memberId"])
    await _lock_accounts(conn, master_id, member_id)
    if type == "TRUSTEESHIP" and not await billing_hierarchy_enabled(conn):
        raise DomainError(ErrorCode.HIERARCHY_DISABLED, HIERARCHY_OFF, ["type"])
    if await _has_active_master(conn, master_id):
        raise DomainError(ErrorCode.ALREADY_A_MEMBER,
                          "A member account cannot have members of its own.", ["masterId"])
    if await _has_active_master(conn, member_id) or await _has_active_members(conn, member_id):
        raise DomainError(ErrorCode.ALREADY_A_MEMBER,
                          "The account already has a master or members of its own.", ["memberId"])
    if await _open_invitation(conn, master_id, member_id):
        raise DomainError(ErrorCode.CONFLICT, "An invitation to this account is already open.",
                          ["memberId"])
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
        raise DomainError(ErrorCode.PERMISSION_NOT_GRANTED,
                          "Only the invited account answers an invitation.", ["linkId"])
    await _lock_accounts(conn, link.master_id, link.member_id)
    link = await _lock_link(conn, link_id)
    if link.status != "INVITED":
        raise DomainError(ErrorCode.CONFLICT, f"The invitation is {link.status}.", ["linkId"])
    if not accept:
        await _set_link(conn, principal, link_id, status="DECLINED", permissions=[],
                        ended_at=func.now())
        return
    granted = sorted(set(permissions), key=LINK_PERMISSIONS.index)
    if link.type == "TRUSTEESHIP" and not await billing_hierarchy_enabled(conn):
        raise DomainError(ErrorCode.HIERARCHY_DISABLED, HIERARCHY_OFF, ["linkId"])
    if link.type == "TRUSTEESHIP" and await balances.outstanding_fees(conn, link.member_id) > 0:
        raise DomainError(ErrorCode.OUTSTANDING_FEES,
                          "Pay the outstanding fees before joining a trusteeship.", ["linkId"])
    if await _has_active_master(conn, link.member_id) or await _has_active_members(
        conn, link.member_id
    ):
        raise DomainError(ErrorCode.ALREADY_A_MEMBER,
                          "The account already has a master or members of its own.", ["linkId"])
    if await _has_active_master(conn, link.master_id):
        raise DomainError(ErrorCode.ALREADY_A_MEMBER,
                          "The inviting account has since become a member.", ["linkId"])
    await _set_link(conn, principal, link_id, status="ACTIVE", permissions=granted,
                    activated_at=func.now())
    await _enable_cost_center_from_master(conn, link.master_id, link.member_id)
    await outbox.add(conn, outbox.SHARING_RECALCULATE, {"master_id": link.master_id})
    # S1: what the account owned as its own enterprise is now its master's to compute.
    await outbox.add(conn, outbox.SHARING_RECALCULATE, {"master_id": link.member_id})


async def _enable_cost_center_from_master(conn: AsyncConnection, master_id: int,
                                          member_id: int) -> None:
    """U6: a master with cost center enabled enables it for every member on association
    (later the member may turn it off; dissociation leaves it as it is)."""
    master = accounts.alias("master")  # not correlated with the account being updated
    await conn.execute(
        update(accounts)
        .where(accounts.c.id == member_id,
               select(master.c.cost_center_enabled).where(master.c.id == master_id)
               .scalar_subquery())
        .values(cost_center_enabled=True)
    )


async def dissociate(conn: AsyncConnection, principal: Principal, *, link_id: int) -> None:
    """U5: either side (or an operator) ends an ACTIVE link."""
    link = await _visible_link(conn, principal, link_id, ["linkId"])
    await _lock_accounts(conn, link.master_id, link.member_id)
    link = await _lock_link(conn, link_id)
    if link.status != "ACTIVE":
        raise DomainError(ErrorCode.LINK_NOT_ACTIVE, f"The link is {link.status}.", ["linkId"])
    await _set_link(conn, principal, link_id, status="DISSOCIATED",
                    permissions=list(link.permissions), ended_at=func.now())
    # S9: the member's sharing ends with the link: it leaves the master's user groups, its
    # master's grants are recalculated, and it is its own enterprise again (it keeps
    # using what it owns).
    await conn.execute(delete(user_group_members).where(
        user_group_members.c.member_id == link.member_id,
        user_group_members.c.group_id.in_(
            select(user_groups.c.id).where(user_groups.c.master_id == link.master_id))))
    await outbox.add(conn, outbox.SHARING_RECALCULATE, {"master_id": link.master_id})
    await outbox.add(conn, outbox.SHARING_RECALCULATE, {"master_id": link.member_id})


# ---------------------------------------------------------------- bill-tos (H3)

BILL_TO_FIELDS = ("name", "address", "email", "invoice_title", "tax_id")


async def add_bill_to(
    conn: AsyncConnection, principal: Principal, account_id: int, fields: Mapping[str, Any]
) -> int:
    """H3: the first bill-to of an account is its primary; a new primary demotes the old."""
    await _invoices_managed(conn, principal, account_id, ["accountId"])
    await _lock_accounts(conn, account_id)
    values = _bill_to_values(fields, creating=True)
    has_primary = await _primary_bill_to(conn, account_id) is not None
    primary = bool(fields.get("is_primary")) or not has_primary
    if primary and await _references_master(conn, account_id):
        raise ReferencedReadOnly(["isPrimary"])
    if primary and has_primary:
        await _demote_primary(conn, account_id)
    bill_to_id: int = (
        await conn.execute(
            insert(bill_tos)
            .values(account_id=account_id, is_primary=primary, **values)
            .returning(bill_tos.c.id)
        )
    ).scalar_one()
    if primary:
        await _mirror_to_members(conn, account_id)
    return bill_to_id


async def update_bill_to(
    conn: AsyncConnection, principal: Principal, bill_to_id: int, fields: Mapping[str, Any]
) -> None:
    """H3: promoting a bill-to demotes the primary; the primary is demoted only by
    promoting another (PRIMARY_REQUIRED)."""
    account_id = await _bill_to_account(conn, principal, bill_to_id, ["billToId"])
    await _invoices_managed(conn, principal, account_id, ["billToId"])
    await _lock_accounts(conn, account_id)
    values: dict[str, Any] = _bill_to_values(fields, creating=False)
    is_primary = fields.get("is_primary")
    current = await _primary_bill_to(conn, account_id)
    if await _references_master(conn, account_id):
        if current == bill_to_id:
            raise ReferencedReadOnly(["billToId"])
        if is_primary:
            raise ReferencedReadOnly(["isPrimary"])
    if is_primary is False and current == bill_to_id:
        raise DomainError(ErrorCode.PRIMARY_REQUIRED,
                          "Make another bill-to primary instead of demoting this one.",
                          ["isPrimary"])
    if is_primary and current != bill_to_id:
        await _demote_primary(conn, account_id)
        values["is_primary"] = True
    if values:
        await conn.execute(update(bill_tos).where(bill_tos.c.id == bill_to_id).values(**values))
    if values and (current == bill_to_id or is_primary):
        await _mirror_to_members(conn, account_id)


async def remove_bill_to(
    conn: AsyncConnection, principal: Principal, bill_to_id: int, *, new_primary_id: int | None
) -> int:
    """H3: removing the primary while others remain needs ``newPrimaryId``; a bill-to that
    sites point at (H4) stays until they point elsewhere. Returns the account id."""
    account_id = await _bill_to_account(conn, principal, bill_to_id, ["billToId"])
    await _invoices_managed(conn, principal, account_id, ["billToId"])
    await _lock_accounts(conn, account_id)
    used_by = (
        await conn.execute(select(func.count()).where(sites.c.bill_to_id == bill_to_id))
    ).scalar_one()
    if used_by:
        raise DomainError(ErrorCode.CONFLICT,
                          f"{used_by} site(s) still point at this bill-to.", ["billToId"])
    others = (
        await conn.execute(
            select(bill_tos.c.id).where(bill_tos.c.account_id == account_id,
                                        bill_tos.c.id != bill_to_id)
        )
    ).scalars().all()
    is_primary = await _primary_bill_to(conn, account_id) == bill_to_id
    if new_primary_id is not None and new_primary_id not in others:
        raise NotFound(["newPrimaryId"], "bill-to of this account")
    if await _references_master(conn, account_id):
        if is_primary:
            raise ReferencedReadOnly(["billToId"])
        if new_primary_id is not None:
            raise ReferencedReadOnly(["newPrimaryId"])
    if is_primary and others and new_primary_id is None:
        raise DomainError(ErrorCode.PRIMARY_REQUIRED,
                          "Name the bill-to that becomes primary.", ["newPrimaryId"])
    await conn.execute(bill_tos.delete().where(bill_tos.c.id == bill_to_id))
    if new_primary_id is not None:
        await _demote_primary(conn, account_id)
        await conn.execute(
            update(bill_tos).where(bill_tos.c.id == new_primary_id).values(is_primary=True)
        )
        await _mirror_to_members(conn, account_id)
    return account_id


# ---------------------------------------------------------------- invoice information (I2, I3)

INVOICE_INFO_FIELDS = ("invoice_title", "tax_id", "address", "email")
MAX_BATCH = 500


class ReferencedReadOnly(DomainError):
    """I3: a member's primary bill-to mirrors its master's while the reference is on."""

    def __init__(self, field: Sequence[str]):
        super().__init__(ErrorCode.REFERENCED_READ_ONLY,
                         "The primary bill-to follows the master's invoice information "
                         "(referenceMasterInvoiceInfo); it cannot be edited.", field)


async def set_member_invoice_info(
    conn: AsyncConnection, principal: Principal, *, master_id: int,
    member_ids: Sequence[int | None], fields: Mapping[str, Any],
) -> tuple[list[int], list[DomainError]]:
    """I2: the master's users (or an operator) set invoice title, tax id, address and email
    of many members' primary bill-tos (one named after the member is created if it has
    none). Each member needs an ACTIVE link granting MANAGE_INVOICES and no reference to
    the master's information (I3); refused members are reported per index."""
    values = {key: _text(fields[key], [_camel(key)], limit=_limit(bill_tos, key))
              for key in INVOICE_INFO_FIELDS if fields.get(key) is not None}
    links_of = await _batch_links(conn, principal, master_id, member_ids)
    changed: list[int] = []
    errors: list[DomainError] = []
    for index, member_id in enumerate(member_ids):
        field = ["memberIds", str(index)]
        try:
            link = _managed_invoices_link(links_of, member_id, field)
            if link.references_master_invoice_info:
                raise ReferencedReadOnly(field)
        except DomainError as error:
            errors.append(error)
            continue
        await _write_primary(conn, link.member_id, values)
        changed.append(link.member_id)
    return changed, errors


async def reference_master_invoice_info(
    conn: AsyncConnection, principal: Principal, *, master_id: int,
    member_ids: Sequence[int | None], enabled: bool,
) -> tuple[list[int], list[DomainError]]:
    """I3: while on, each member's primary bill-to is a copy of the master's primary
    bill-to (copied now and after every change of it) and read-only; turned off, the
    member keeps the last copy and may edit it again. Needs MANAGE_INVOICES, per member."""
    links_of = await _batch_links(conn, principal, master_id, member_ids)
    changed: list[int] = []
    errors: list[DomainError] = []
    for index, member_id in enumerate(member_ids):
        try:
            link = _managed_invoices_link(links_of, member_id, ["memberIds", str(index)])
        except DomainError as error:
            errors.append(error)
            continue
        await conn.execute(update(links).where(links.c.id == link.id)
                           .values(references_master_invoice_info=enabled))
        changed.append(link.member_id)
    if enabled:
        await _mirror_to_members(conn, master_id)
    return changed, errors


async def _batch_links(
    conn: AsyncConnection, principal: Principal, master_id: int,
    member_ids: Sequence[int | None],
) -> dict[int, Row[Any]]:
    """The master's ACTIVE links to the named members, with the accounts locked."""
    if len(member_ids) > MAX_BATCH:
        raise DomainError(ErrorCode.INVALID_INPUT, f"At most {MAX_BATCH} members at once.",
                          ["memberIds"])
    await _managed_by_self(conn, principal, master_id, ["masterId"])
    named = {member_id for member_id in member_ids if member_id is not None}
    await _lock_accounts(conn, master_id, *named)
    rows = (await conn.execute(
        select(links).where(links.c.master_id == master_id, links.c.member_id.in_(named),
                            links.c.status == "ACTIVE")
    )).all()
    return {row.member_id: row for row in rows}


def _managed_invoices_link(
    links_of: Mapping[int, Row[Any]], member_id: int | None, field: list[str]
) -> Row[Any]:
    """I2: an ACTIVE member of this master (else it does not exist here: NOT_FOUND) whose
    link grants MANAGE_INVOICES (PERMISSION_NOT_GRANTED)."""
    link = None if member_id is None else links_of.get(member_id)
    if link is None:
        raise NotFound(field, "member of this master")
    if "MANAGE_INVOICES" not in link.permissions:
        raise DomainError(ErrorCode.PERMISSION_NOT_GRANTED,
                          "The member has not granted MANAGE_INVOICES.", field)
    return link


async def _references_master(conn: AsyncConnection, account_id: int) -> bool:
    return await _any_link(conn, links.c.member_id == account_id, links.c.status == "ACTIVE",
                           links.c.references_master_invoice_info)


async def _mirror_to_members(conn: AsyncConnection, master_id: int) -> None:
    """I3: copy the master's primary bill-to onto the primary bill-to of every member that
    references it (nothing to copy while the master has none)."""
    primary = (await conn.execute(
        select(*(bill_tos.c[key] for key in BILL_TO_FIELDS))
        .where(bill_tos.c.account_id == master_id, bill_tos.c.is_primary)
    )).one_or_none()
    if primary is None:
        return
    members = (await conn.execute(
        select(links.c.member_id).where(links.c.master_id == master_id,
                                        links.c.status == "ACTIVE",
                                        links.c.references_master_invoice_info)
        .order_by(links.c.member_id)
    )).scalars().all()
    for member_id in members:
        await _write_primary(conn, member_id, dict(primary._mapping))


async def _write_primary(conn: AsyncConnection, account_id: int, values: Mapping[str, Any]
                         ) -> None:
    """Update the account's primary bill-to, or create one named after the account."""
    updated = (await conn.execute(
        update(bill_tos).where(bill_tos.c.account_id == account_id, bill_tos.c.is_primary)
        .values(**values).returning(bill_tos.c.id)
    )).first() if values else await _primary_bill_to(conn, account_id)
    if updated is None:
        name = (await conn.execute(
            select(accounts.c.name).where(accounts.c.id == account_id))).scalar_one()
        await conn.execute(insert(bill_tos).values(
            account_id=account_id, is_primary=True, **{"name": name[:MAX_TEXT], **values}))


# ---------------------------------------------------------------- sites (H4)

SITE_FIELDS = ("name", "address", "branch", "tax_group")


async def add_site(
    conn: AsyncConnection,
    principal: Principal,
    account_id: int,
    fields: Mapping[str, Any],
    *,
    bill_to_id: int,
) -> int:
    """H4: a site of an account, pointing at one of that account's bill-tos."""
    await _managed_account(conn, principal, account_id, ["accountId"])
    values = _site_values(fields, creating=True)
    await _own_bill_to(conn, account_id, bill_to_id)
    site_id: int = (
        await conn.execute(
            insert(sites)
            .values(account_id=account_id, bill_to_id=bill_to_id, **values)
            .returning(sites.c.id)
        )
    ).scalar_one()
    return site_id


async def update_site(
    conn: AsyncConnection,
    principal: Principal,
    site_id: int,
    fields: Mapping[str, Any],
    *,
    bill_to_id: int | None,
) -> None:
    row = (
        await conn.execute(
            select(sites.c.account_id).where(
                sites.c.id == site_id, sees_details(principal, sites.c.account_id)
            )
        )
    ).one_or_none()
    if row is None:
        raise NotFound(["siteId"], "site")
    await _managed_account(conn, principal, row.account_id, ["siteId"])
    values = _site_values(fields, creating=False)
    if bill_to_id is not None:
        await _own_bill_to(conn, row.account_id, bill_to_id)
        values["bill_to_id"] = bill_to_id
    if values:
        await conn.execute(update(sites).where(sites.c.id == site_id).values(**values))


# ---------------------------------------------------------------- for the money area (F, U)


async def account_access(
    conn: AsyncConnection, principal: Principal, account_id: int, field: list[str]
) -> None:
    """The account if the principal sees its details (operators: any), else NOT_FOUND."""
    await _visible_account(conn, principal, account_id, field)


async def own_account(
    conn: AsyncConnection, principal: Principal, account_id: int, field: list[str]
) -> None:
    """F8: what only the account's own users do (withdrawals); others who see it get
    PERMISSION_NOT_GRANTED, others NOT_FOUND."""
    await _visible_account(conn, principal, account_id, field)
    if principal.account_id != account_id:
        raise DomainError(ErrorCode.PERMISSION_NOT_GRANTED,
                          "Only the account's own users may do this.", field)


async def member_link(
    conn: AsyncConnection, principal: Principal, master_id: int, member_id: int
) -> Row[Any]:
    """F3/F6: the master's own users (or operators) acting on a member: the pair's current
    link, which must be ACTIVE (LINK_NOT_ACTIVE); a member they cannot see is NOT_FOUND."""
    await _managed_by_self(conn, principal, master_id, ["masterId"])
    link = (
        await conn.execute(
            select(links)
            .where(links.c.master_id == master_id, links.c.member_id == member_id,
                   links.c.status != "DECLINED", sees_link(principal))
            .order_by((links.c.status == "ACTIVE").desc(), links.c.id.desc())
            .limit(1)
        )
    ).one_or_none()
    if link is None:
        raise NotFound(["memberId"], "member of this master")
    if link.status != "ACTIVE":
        raise DomainError(ErrorCode.LINK_NOT_ACTIVE, f"The link is {link.status}.", ["memberId"])
    return link


async def finance_access(
    conn: AsyncConnection, principal: Principal, account_id: int, field: list[str]
) -> None:
    """P2: an account's finances are its own users', operators', and its master's with
    VIEW_FINANCE (PERMISSION_NOT_GRANTED without it); others get NOT_FOUND."""
    access = await _visible_account(conn, principal, account_id, field)
    if not access.own and "VIEW_FINANCE" not in (access.master_permissions or ()):
        raise DomainError(ErrorCode.PERMISSION_NOT_GRANTED,
                          "The member has not granted VIEW_FINANCE.", field)


async def own_or_operator(
    conn: AsyncConnection, principal: Principal, account_id: int, field: list[str]
) -> None:
    """Acts of an account's own users or operators (a master's settings, S2, S4)."""
    await _managed_by_self(conn, principal, account_id, field)


async def active_link_as_member(conn: AsyncConnection, account_id: int) -> Row[Any] | None:
    """The account's ACTIVE link to its master, if it is a member (H1: at most one)."""
    return (
        await conn.execute(
            select(links).where(links.c.member_id == account_id, links.c.status == "ACTIVE")
        )
    ).one_or_none()


async def is_member(conn: AsyncConnection, account_id: int) -> bool:
    return await _has_active_master(conn, account_id)


async def trusteeship_link(conn: AsyncConnection, account_id: int) -> Row[Any] | None:
    """U3/U4: the account's ACTIVE trusteeship link as a member, if any."""
    return (
        await conn.execute(
            select(links).where(links.c.member_id == account_id, links.c.status == "ACTIVE",
                                links.c.type == "TRUSTEESHIP")
        )
    ).one_or_none()


async def lock_accounts(conn: AsyncConnection, *account_ids: int) -> None:
    """Row locks on accounts in ascending id order (the one order every service uses)."""
    await _lock_accounts(conn, *account_ids)


async def site_of(conn: AsyncConnection, site_id: int, account_id: int) -> bool:
    found = (
        await conn.execute(
            select(sites.c.id).where(sites.c.id == site_id, sites.c.account_id == account_id)
        )
    ).first()
    return found is not None


# ---------------------------------------------------------------- helpers


@dataclass(frozen=True, slots=True)
class _Access:
    """How the principal stands to an account it can see."""

    own: bool
    master_permissions: tuple[str, ...] | None  # set when the principal is its ACTIVE master


async def _visible_account(
    conn: AsyncConnection, principal: Principal, account_id: int, field: list[str]
) -> _Access:
    """The account if the principal sees its details (P2-P4), else NOT_FOUND."""
    if principal.is_operator:
        if not await _exists(conn, account_id):
            raise NotFound(field, "account")
        return _Access(own=True, master_permissions=None)
    if account_id == principal.account_id:
        return _Access(own=True, master_permissions=None)
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
    return _Access(own=False, master_permissions=tuple(permissions))


async def _managed_account(
    conn: AsyncConnection, principal: Principal, account_id: int, field: list[str]
) -> None:
    """Writes to an account's details: its users, its ACTIVE master, operators."""
    await _visible_account(conn, principal, account_id, field)


async def _managed_by_self(
    conn: AsyncConnection, principal: Principal, account_id: int, field: list[str]
) -> None:
    """Acts only an account's own users (or operators) take, such as inviting members."""
    access = await _visible_account(conn, principal, account_id, field)
    if not access.own:
        raise DomainError(ErrorCode.PERMISSION_NOT_GRANTED,
                          "Only the account's own users may do this.", field)


async def _invoices_managed(
    conn: AsyncConnection, principal: Principal, account_id: int, field: list[str]
) -> None:
    """A member's bill-tos are the master's to edit only with MANAGE_INVOICES (I2)."""
    access = await _visible_account(conn, principal, account_id, field)
    if not access.own and "MANAGE_INVOICES" not in (access.master_permissions or ()):
        raise DomainError(ErrorCode.PERMISSION_NOT_GRANTED,
                          "The member has not granted MANAGE_INVOICES.", field)


async def _exists(conn: AsyncConnection, account_id: int) -> bool:
    found = (
        await conn.execute(select(accounts.c.id).where(accounts.c.id == account_id))
    ).scalar_one_or_none()
    return found is not None


async def _lock_accounts(conn: AsyncConnection, *account_ids: int) -> None:
    """Row locks in ascending id order, the one order every service uses (no deadlocks)."""
    await conn.execute(
        select(accounts.c.id)
        .where(accounts.c.id.in_(sorted(set(account_ids))))
        .order_by(accounts.c.id)
        .with_for_update()
    )


async def _has_active_master(conn: AsyncConnection, account_id: int) -> bool:
    return await _any_link(conn, links.c.member_id == account_id, links.c.status == "ACTIVE")


async def _has_active_members(conn: AsyncConnection, account_id: int) -> bool:
    return await _any_link(conn, links.c.master_id == account_id, links.c.status == "ACTIVE")


async def _open_invitation(conn: AsyncConnection, master_id: int, member_id: int) -> bool:
    return await _any_link(conn, links.c.master_id == master_id, links.c.member_id == member_id,
                           links.c.status == "INVITED")


async def _any_link(conn: AsyncConnection, *conditions: Any) -> bool:
    found = (await conn.execute(select(links.c.id).where(*conditions).limit(1))).first()
    return found is not None


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
    return (
        await conn.execute(select(links).where(links.c.id == link_id).with_for_update())
    ).one()


async def _set_link(
    conn: AsyncConnection, principal: Principal, link_id: int, *, status: str,
    permissions: list[str], **times: Any,
) -> None:
    await conn.execute(
        update(links).where(links.c.id == link_id)
        .values(status=status, permissions=permissions, **times)
    )
    await _record(conn, principal, link_id, status, permissions)


async def _record(
    conn: AsyncConnection, principal: Principal, link_id: int, status: str, permissions: list[str]
) -> None:
    """H2: every link change is kept, with who did it and when."""
    await conn.execute(
        insert(link_events).values(link_id=link_id, status=status, permissions=permissions,
                                   actor=principal.actor)
    )


async def _primary_bill_to(conn: AsyncConnection, account_id: int) -> int | None:
    found: int | None = (
        await conn.execute(
            select(bill_tos.c.id).where(bill_tos.c.account_id == account_id, bill_tos.c.is_primary)
        )
    ).scalar_one_or_none()
    return found


async def _demote_primary(conn: AsyncConnection, account_id: int) -> None:
    await conn.execute(
        update(bill_tos)
        .where(bill_tos.c.account_id == account_id, bill_tos.c.is_primary)
        .values(is_primary=False)
    )


async def _bill_to_account(
    conn: AsyncConnection, principal: Principal, bill_to_id: int, field: list[str]
) -> int:
    account_id: int | None = (
        await conn.execute(
            select(bill_tos.c.account_id).where(
                bill_tos.c.id == bill_to_id, sees_details(principal, bill_tos.c.account_id)
            )
        )
    ).scalar_one_or_none()
    if account_id is None:
        raise NotFound(field, "bill-to")
    return account_id


async def _own_bill_to(conn: AsyncConnection, account_id: int, bill_to_id: int) -> None:
    found = (
        await conn.execute(
            select(bill_tos.c.id).where(
                and_(bill_tos.c.id == bill_to_id, bill_tos.c.account_id == account_id)
            )
        )
    ).first()
    if found is None:
        raise NotFound(["billToId"], "bill-to of this account")


def _bill_to_values(fields: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
    return {
        key: _text(fields[key], [_camel(key)], required=key == "name",
                   limit=_limit(bill_tos, key))
        for key in BILL_TO_FIELDS
        if key in fields and (creating or fields[key] is not None)
    }


def _site_values(fields: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
    return {
        key: _text(fields[key], [_camel(key)], required=key == "name",
                   limit=_limit(sites, key))
        for key in SITE_FIELDS
        if key in fields and (creating or fields[key] is not None)
    }


def _limit(table: Table, key: str) -> int:
    """MAX_TEXT, or less where the column is narrower (terms, tax id, tax group)."""
    length: int | None = getattr(table.c[key].type, "length", None)
    return min(MAX_TEXT, length) if length else MAX_TEXT


def _text(value: Any, field: list[str], *, required: bool = False, limit: int = MAX_TEXT
          ) -> Any:
    """Trimmed text within ``limit``; None stays None unless required."""
    if value is None:
        if required:
            raise DomainError(ErrorCode.INVALID_INPUT, "A value is required.", field)
        return None
    text = str(value).strip()
    if required and not text:
        raise DomainError(ErrorCode.INVALID_INPUT, "Must not be empty.", field)
    if len(text) > limit:
        raise DomainError(ErrorCode.INVALID_INPUT, f"At most {limit} characters.", field)
    if "\x00" in text:  # PostgreSQL text cannot hold NUL
        raise DomainError(ErrorCode.INVALID_INPUT, "Must not contain NUL characters.", field)
    return text


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
