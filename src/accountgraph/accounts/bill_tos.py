"""H3: bill-tos and their primary; and the bill-to side of I2/I3 (invoice information).

While an account has bill-tos, exactly one is primary. A member whose link references its
master's invoice information (I3) has a primary bill-to that mirrors the master's and
cannot be edited (REFERENCED_READ_ONLY). The I2/I3 operations themselves are billing's
(``billing.invoice_info``); they change bill-tos only through the functions here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Row, and_, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.accounts.access import any_link, invoices_managed
from accountgraph.accounts.fields import MAX_TEXT, camel, checked_text, column_limit
from accountgraph.accounts.locks import lock_accounts
from accountgraph.accounts.models import accounts, bill_tos, links, sites
from accountgraph.accounts.visibility import sees_details
from accountgraph.domain import DomainError, ErrorCode, NotFound, Principal

BILL_TO_FIELDS = ("name", "address", "email", "invoice_title", "tax_id")


class ReferencedReadOnly(DomainError):
    """I3: a member's primary bill-to mirrors its master's while the reference is on."""

    def __init__(self, field: Sequence[str]):
        super().__init__(
            ErrorCode.REFERENCED_READ_ONLY,
            "The primary bill-to follows the master's invoice information "
            "(referenceMasterInvoiceInfo); it cannot be edited.",
            field,
        )


async def add_bill_to(
    conn: AsyncConnection, principal: Principal, account_id: int, fields: Mapping[str, Any]
) -> int:
    """H3: the first bill-to of an account is its primary; a new primary demotes the old."""
    await invoices_managed(conn, principal, account_id, ["accountId"])
    await lock_accounts(conn, account_id)
    values = _bill_to_values(fields, creating=True)
    has_primary = await _primary_bill_to(conn, account_id) is not None
    primary = bool(fields.get("is_primary")) or not has_primary
    if primary and await references_master(conn, account_id):
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
        await mirror_master_invoice_info(conn, account_id)
    return bill_to_id


async def update_bill_to(
    conn: AsyncConnection, principal: Principal, bill_to_id: int, fields: Mapping[str, Any]
) -> None:
    """H3: promoting a bill-to demotes the primary; the primary is demoted only by
    promoting another (PRIMARY_REQUIRED)."""
    account_id = await _bill_to_account(conn, principal, bill_to_id, ["billToId"])
    await invoices_managed(conn, principal, account_id, ["billToId"])
    await lock_accounts(conn, account_id)
    values: dict[str, Any] = _bill_to_values(fields, creating=False)
    is_primary = fields.get("is_primary")
    current = await _primary_bill_to(conn, account_id)
    if await references_master(conn, account_id):
        if current == bill_to_id:
            raise ReferencedReadOnly(["billToId"])
        if is_primary:
            raise ReferencedReadOnly(["isPrimary"])
    if is_primary is False and current == bill_to_id:
        raise DomainError(
            ErrorCode.PRIMARY_REQUIRED,
            "Make another bill-to primary instead of demoting this one.",
            ["isPrimary"],
        )
    if is_primary and current != bill_to_id:
        await _demote_primary(conn, account_id)
        values["is_primary"] = True
    if values:
        await conn.execute(update(bill_tos).where(bill_tos.c.id == bill_to_id).values(**values))
    if values and (current == bill_to_id or is_primary):
        await mirror_master_invoice_info(conn, account_id)


async def remove_bill_to(
    conn: AsyncConnection, principal: Principal, bill_to_id: int, *, new_primary_id: int | None
) -> int:
    """H3: removing the primary while others remain needs ``newPrimaryId``; a bill-to that
    sites point at (H4) stays until they point elsewhere. Returns the account id."""
    account_id = await _bill_to_account(conn, principal, bill_to_id, ["billToId"])
    await invoices_managed(conn, principal, account_id, ["billToId"])
    await lock_accounts(conn, account_id)
    used_by = (
        await conn.execute(select(func.count()).where(sites.c.bill_to_id == bill_to_id))
    ).scalar_one()
    if used_by:
        raise DomainError(
            ErrorCode.CONFLICT, f"{used_by} site(s) still point at this bill-to.", ["billToId"]
        )
    others = (
        (
            await conn.execute(
                select(bill_tos.c.id).where(
                    bill_tos.c.account_id == account_id, bill_tos.c.id != bill_to_id
                )
            )
        )
        .scalars()
        .all()
    )
    is_primary = await _primary_bill_to(conn, account_id) == bill_to_id
    if new_primary_id is not None and new_primary_id not in others:
        raise NotFound(["newPrimaryId"], "bill-to of this account")
    if await references_master(conn, account_id):
        if is_primary:
            raise ReferencedReadOnly(["billToId"])
        if new_primary_id is not None:
            raise ReferencedReadOnly(["newPrimaryId"])
    if is_primary and others and new_primary_id is None:
        raise DomainError(
            ErrorCode.PRIMARY_REQUIRED, "Name the bill-to that becomes primary.", ["newPrimaryId"]
        )
    await conn.execute(bill_tos.delete().where(bill_tos.c.id == bill_to_id))
    if new_primary_id is not None:
        await _demote_primary(conn, account_id)
        await conn.execute(
            update(bill_tos).where(bill_tos.c.id == new_primary_id).values(is_primary=True)
        )
        await mirror_master_invoice_info(conn, account_id)
    return account_id


async def bill_tos_of(conn: AsyncConnection, account_id: int) -> dict[int, Row[Any]]:
    """H4: the account's bill-tos by id, in id order."""
    rows = (
        await conn.execute(
            select(bill_tos).where(bill_tos.c.account_id == account_id).order_by(bill_tos.c.id)
        )
    ).all()
    return {row.id: row for row in rows}


async def own_bill_to(conn: AsyncConnection, account_id: int, bill_to_id: int) -> None:
    """H4: ``bill_to_id`` is one of the account's bill-tos, else NOT_FOUND at billToId."""
    found = (
        await conn.execute(
            select(bill_tos.c.id).where(
                and_(bill_tos.c.id == bill_to_id, bill_tos.c.account_id == account_id)
            )
        )
    ).first()
    if found is None:
        raise NotFound(["billToId"], "bill-to of this account")


# ---------------------------------------------------------------- for invoice information


def checked_bill_to_fields(fields: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """I2: the given (not None) fields among ``keys``, checked in that order as a bill-to's
    text (INVALID_INPUT at the field)."""
    return {
        key: checked_text(fields[key], [camel(key)], limit=column_limit(bill_tos, key))
        for key in keys
        if fields.get(key) is not None
    }


async def references_master(conn: AsyncConnection, account_id: int) -> bool:
    """I3: the account's ACTIVE link references its master's invoice information."""
    return await any_link(
        conn,
        links.c.member_id == account_id,
        links.c.status == "ACTIVE",
        links.c.references_master_invoice_info,
    )


async def set_references_master(conn: AsyncConnection, link_id: int, enabled: bool) -> None:
    """I3: turn the link's reference to the master's invoice information on or off."""
    await conn.execute(
        update(links).where(links.c.id == link_id).values(references_master_invoice_info=enabled)
    )


async def mirror_master_invoice_info(conn: AsyncConnection, master_id: int) -> None:
    """I3: copy the master's primary bill-to onto the primary bill-to of every member that
    references it (nothing to copy while the master has none)."""
    primary = (
        await conn.execute(
            select(*(bill_tos.c[key] for key in BILL_TO_FIELDS)).where(
                bill_tos.c.account_id == master_id, bill_tos.c.is_primary
            )
        )
    ).one_or_none()
    if primary is None:
        return
    members = (
        (
            await conn.execute(
                select(links.c.member_id)
                .where(
                    links.c.master_id == master_id,
                    links.c.status == "ACTIVE",
                    links.c.references_master_invoice_info,
                )
                .order_by(links.c.member_id)
            )
        )
        .scalars()
        .all()
    )
    for member_id in members:
        await write_primary_bill_to(conn, member_id, dict(primary._mapping))


async def write_primary_bill_to(
    conn: AsyncConnection, account_id: int, values: Mapping[str, Any]
) -> None:
    """I2/I3: update the account's primary bill-to, or create one named after the account."""
    updated = (
        (
            await conn.execute(
                update(bill_tos)
                .where(bill_tos.c.account_id == account_id, bill_tos.c.is_primary)
                .values(**values)
                .returning(bill_tos.c.id)
            )
        ).first()
        if values
        else await _primary_bill_to(conn, account_id)
    )
    if updated is None:
        name = (
            await conn.execute(select(accounts.c.name).where(accounts.c.id == account_id))
        ).scalar_one()
        await conn.execute(
            insert(bill_tos).values(
                account_id=account_id, is_primary=True, **{"name": name[:MAX_TEXT], **values}
            )
        )


# ---------------------------------------------------------------- helpers


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


def _bill_to_values(fields: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
    return {
        key: checked_text(
            fields[key], [camel(key)], required=key == "name", limit=column_limit(bill_tos, key)
        )
        for key in BILL_TO_FIELDS
        if key in fields and (creating or fields[key] is not None)
    }
