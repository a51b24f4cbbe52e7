"""B5: payment methods, managed payment methods, and whose money a payment is.

A responsible account (a master with ACTIVE trusteeship members, B1) may add one of its
payment methods to a managed account (its ACTIVE trusteeship member). A payment made with
that managed method on the managed account is the responsible account's money
(``payer_of``), as long as the trusteeship lasts. ``funds``' record_payment calls
``payer_of`` through its payer port (registered by ``billing.public``); this module
imports no other area's tables and nothing of funds.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.accounts import public as accounts
from accountgraph.billing.models import payment_methods
from accountgraph.domain import DomainError, ErrorCode, NotFound, Principal

MAX_LABEL = 200


async def add_payment_method(
    conn: AsyncConnection, principal: Principal, *, account_id: int, label: str
) -> int:
    """B5: the account's own users (or an operator) add a payment method to it."""
    await accounts.own_or_operator(conn, principal, account_id, ["accountId"])
    text = label.strip()
    if not text or len(text) > MAX_LABEL or "\x00" in text:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"A label has 1 to {MAX_LABEL} characters.", ["label"]
        )
    method_id: int = (
        await conn.execute(
            insert(payment_methods)
            .values(account_id=account_id, label=text)
            .returning(payment_methods.c.id)
        )
    ).scalar_one()
    return method_id


async def add_managed_payment_method(
    conn: AsyncConnection, principal: Principal, *, payment_method_id: int, managed_id: int
) -> int:
    """B5: the responsible account's own users (or an operator) add one of its payment
    methods to one of its managed accounts; returns the managed method's id.

    Checked in this order: the method is visible (NOT_FOUND) and the principal acts for
    its account (PERMISSION_NOT_GRANTED); it is not itself a managed method
    (INVALID_INPUT); ``managed_id`` is visible and an ACTIVE member of that account
    (NOT_FOUND) by a trusteeship link (NOT_TRUSTEESHIP); it was not added there already
    (CONFLICT)."""
    method = (
        await conn.execute(
            select(payment_methods)
            .where(
                payment_methods.c.id == payment_method_id,
                accounts.sees_details(principal, payment_methods.c.account_id),
            )
            .with_for_update()
        )
    ).one_or_none()
    if method is None:
        raise NotFound(["paymentMethodId"], "payment method")
    await accounts.own_or_operator(conn, principal, method.account_id, ["paymentMethodId"])
    if method.managed_from_id is not None:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "A managed payment method cannot be passed on.",
            ["paymentMethodId"],
        )
    await accounts.account_access(conn, principal, managed_id, ["managedId"])
    link = await accounts.active_link_as_member(conn, managed_id)
    if link is None or link.master_id != method.account_id:
        raise NotFound(["managedId"], "member of the payment method's account")
    if link.type != "TRUSTEESHIP":
        raise DomainError(
            ErrorCode.NOT_TRUSTEESHIP,
            "Only a trusteeship member is a managed account.",
            ["managedId"],
        )
    if await _managed_copy(conn, payment_method_id, managed_id) is not None:
        raise DomainError(
            ErrorCode.CONFLICT,
            "This payment method is already managed on that account.",
            ["managedId"],
        )
    managed_method_id: int = (
        await conn.execute(
            insert(payment_methods)
            .values(account_id=managed_id, label=method.label, managed_from_id=payment_method_id)
            .returning(payment_methods.c.id)
        )
    ).scalar_one()
    return managed_method_id


async def payer_of(conn: AsyncConnection, account_id: int, payment_method_id: int | None) -> int:
    """B5, F8: whose money a payment on ``account_id`` with this method is: the account's
    own, or for a managed method the responsible account's. The method must be one of the
    account's (NOT_FOUND); a managed one only works while its account is still the
    responsible account's ACTIVE trusteeship member (LINK_NOT_ACTIVE)."""
    if payment_method_id is None:
        return account_id
    method = (
        await conn.execute(
            select(payment_methods).where(
                payment_methods.c.id == payment_method_id,
                payment_methods.c.account_id == account_id,
            )
        )
    ).one_or_none()
    if method is None:
        raise NotFound(["paymentMethodId"], "payment method of this account")
    if method.managed_from_id is None:
        return account_id
    responsible: int = (
        await conn.execute(
            select(payment_methods.c.account_id).where(
                payment_methods.c.id == method.managed_from_id
            )
        )
    ).scalar_one()
    link = await accounts.trusteeship_link(conn, account_id)
    if link is None or link.master_id != responsible:
        raise DomainError(
            ErrorCode.LINK_NOT_ACTIVE,
            "The account is no longer managed by this method's account.",
            ["paymentMethodId"],
        )
    return responsible


async def _managed_copy(
    conn: AsyncConnection, payment_method_id: int, managed_id: int
) -> Row[Any] | None:
    return (
        await conn.execute(
            select(payment_methods.c.id).where(
                payment_methods.c.account_id == managed_id,
                payment_methods.c.managed_from_id == payment_method_id,
            )
        )
    ).one_or_none()
