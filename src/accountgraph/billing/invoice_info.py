"""I2, I3: the invoice information a master sets for many members at once.

The information is the members' primary bill-tos (the accounts area's, H3): this module
checks the rules and writes them only through ``accounts.public``. Each member needs an
ACTIVE link to the master granting MANAGE_INVOICES; refused members are reported per
index, and the others still change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.accounts import public as accounts
from accountgraph.accounts.public import ReferencedReadOnly
from accountgraph.domain import DomainError, ErrorCode, NotFound, Principal

INVOICE_INFO_FIELDS = ("invoice_title", "tax_id", "address", "email")
MAX_BATCH = 500


async def set_member_invoice_info(
    conn: AsyncConnection,
    principal: Principal,
    *,
    master_id: int,
    member_ids: Sequence[int | None],
    fields: Mapping[str, Any],
) -> tuple[list[int], list[DomainError]]:
    """I2: the master's users (or an operator) set invoice title, tax id, address and email
    of many members' primary bill-tos (one named after the member is created if it has
    none). Each member needs an ACTIVE link granting MANAGE_INVOICES and no reference to
    the master's information (I3); refused members are reported per index."""
    values = accounts.checked_bill_to_fields(fields, INVOICE_INFO_FIELDS)
    links_of = await _members_links(conn, principal, master_id, member_ids)
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
        await accounts.write_primary_bill_to(conn, link.member_id, values)
        changed.append(link.member_id)
    return changed, errors


async def reference_master_invoice_info(
    conn: AsyncConnection,
    principal: Principal,
    *,
    master_id: int,
    member_ids: Sequence[int | None],
    enabled: bool,
) -> tuple[list[int], list[DomainError]]:
    """I3: while on, each member's primary bill-to is a copy of the master's primary
    bill-to (copied now and after every change of it) and read-only; turned off, the
    member keeps the last copy and may edit it again. Needs MANAGE_INVOICES, per member."""
    links_of = await _members_links(conn, principal, master_id, member_ids)
    changed: list[int] = []
    errors: list[DomainError] = []
    for index, member_id in enumerate(member_ids):
        try:
            link = _managed_invoices_link(links_of, member_id, ["memberIds", str(index)])
        except DomainError as error:
            errors.append(error)
            continue
        await accounts.set_references_master(conn, link.id, enabled)
        changed.append(link.member_id)
    if enabled:
        await accounts.mirror_master_invoice_info(conn, master_id)
    return changed, errors


async def _members_links(
    conn: AsyncConnection,
    principal: Principal,
    master_id: int,
    member_ids: Sequence[int | None],
) -> dict[int, Row[Any]]:
    """The master's ACTIVE links to the named members, with the accounts locked."""
    if len(member_ids) > MAX_BATCH:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"At most {MAX_BATCH} members at once.", ["memberIds"]
        )
    await accounts.own_or_operator(conn, principal, master_id, ["masterId"])
    named = {member_id for member_id in member_ids if member_id is not None}
    await accounts.lock_accounts(conn, master_id, *named)
    return await accounts.active_links_to(conn, master_id, named)


def _managed_invoices_link(
    links_of: Mapping[int, Row[Any]], member_id: int | None, field: list[str]
) -> Row[Any]:
    """I2: an ACTIVE member of this master (else it does not exist here: NOT_FOUND) whose
    link grants MANAGE_INVOICES (PERMISSION_NOT_GRANTED)."""
    link = None if member_id is None else links_of.get(member_id)
    if link is None:
        raise NotFound(field, "member of this master")
    if "MANAGE_INVOICES" not in link.permissions:
        raise DomainError(
            ErrorCode.PERMISSION_NOT_GRANTED, "The member has not granted MANAGE_INVOICES.", field
        )
    return link
