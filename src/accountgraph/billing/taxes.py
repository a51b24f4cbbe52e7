"""T1: tax groups, an account's default tax group, and the check of a site's tax group.

Operators create tax groups (a unique code of 1-32 letters, digits, ``_`` or ``-``, a
name and a rate in percent, 0-100 with at most 4 places) and set an account's default.
The accounts area asks ``tax_group_exists`` (through its port, registered by
``billing.public``) whether a site's tax group is a known code.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.accounts import public as accounts
from accountgraph.billing.models import account_tax_groups, tax_groups
from accountgraph.domain import DomainError, ErrorCode, Principal

CODE = re.compile(r"[A-Za-z0-9_-]{1,32}")
MAX_NAME = 200
RATE_PLACES = Decimal("0.0001")
HUNDRED = Decimal(100)


def checked_rate(value: object, field: list[str]) -> Decimal:
    """T1: a rate in percent, a plain decimal 0-100 with at most 4 places
    (INVALID_AMOUNT, as for a discount percent)."""
    ok = isinstance(value, str | int | float) and not isinstance(value, bool)
    text = str(value).strip() if ok else ""
    if not re.fullmatch(r"\d{1,3}(\.\d{1,4})?", text):
        raise DomainError(
            ErrorCode.INVALID_AMOUNT, "A rate is a plain decimal with at most 4 places.", field
        )
    try:
        rate = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern is a decimal
        raise DomainError(ErrorCode.INVALID_AMOUNT, "A rate is a number.", field) from None
    if rate > HUNDRED:
        raise DomainError(ErrorCode.INVALID_AMOUNT, "A rate from 0 to 100.", field)
    return rate.quantize(RATE_PLACES)


async def create_tax_group(
    conn: AsyncConnection, principal: Principal, *, code: str, name: str, rate: object
) -> int:
    """T1 (operators): checked in this order: the code (INVALID_INPUT at code), the name
    (INVALID_INPUT at name), the rate (INVALID_AMOUNT at rate), the code unused (CONFLICT
    at code)."""
    assert principal.is_operator
    if not CODE.fullmatch(code):
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "A code has 1 to 32 letters, digits, '_' or '-'.",
            ["code"],
        )
    label = name.strip()
    if not label or len(label) > MAX_NAME or "\x00" in label:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"A name has 1 to {MAX_NAME} characters.", ["name"]
        )
    checked = checked_rate(rate, ["rate"])
    created: int | None = (
        await conn.execute(
            pg_insert(tax_groups)
            .values(code=code, name=label, rate=checked)
            .on_conflict_do_nothing(index_elements=[tax_groups.c.code])
            .returning(tax_groups.c.id)
        )
    ).scalar_one_or_none()
    if created is None:
        raise DomainError(ErrorCode.CONFLICT, "A tax group has this code already.", ["code"])
    return created


async def tax_group_exists(conn: AsyncConnection, code: str) -> bool:
    """T1: the accounts area's port: is ``code`` a tax group's?"""
    found = (await conn.execute(select(tax_groups.c.id).where(tax_groups.c.code == code))).first()
    return found is not None


async def set_account_tax_group(
    conn: AsyncConnection, principal: Principal, *, account_id: int, code: str | None
) -> None:
    """T1 (operators): the account's default tax group by code; None removes it. An
    unknown code is INVALID_INPUT at taxGroupCode (as for a site's)."""
    await accounts.account_access(conn, principal, account_id, ["accountId"])
    if code is None:
        await conn.execute(
            delete(account_tax_groups).where(account_tax_groups.c.account_id == account_id)
        )
        return
    group_id: int | None = (
        await conn.execute(select(tax_groups.c.id).where(tax_groups.c.code == code))
    ).scalar_one_or_none()
    if group_id is None:
        raise DomainError(ErrorCode.INVALID_INPUT, "No tax group has this code.", ["taxGroupCode"])
    upsert = pg_insert(account_tax_groups).values(account_id=account_id, tax_group_id=group_id)
    await conn.execute(
        upsert.on_conflict_do_update(
            index_elements=[account_tax_groups.c.account_id],
            set_={"tax_group_id": upsert.excluded.tax_group_id},
        )
    )
