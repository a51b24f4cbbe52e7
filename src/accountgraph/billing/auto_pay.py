"""W2: auto-pay: a payment method marked ``autoPay`` pays its account's invoices.

The owner of a payment method marks it (its account's users; for a managed method, B5,
the responsible account's, whose money it spends; or an operator). When a bill cycle
issues invoices to an account that has an auto-pay method of its own (not a managed
one), its transaction writes one outbox row per invoice (``TOPIC``); the worker pays the
invoice's total with the method as ``recordPayment`` would (F8: settling outstanding
fees first) and records it in ``invoice_payments``, keyed by the invoice, in the same
transaction as the outbox row's ``done``: an invoice is paid once, however often the job
runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph import outbox
from accountgraph.accounts import public as accounts
from accountgraph.billing.models import invoice_payments, invoices, payment_methods
from accountgraph.domain import DomainError, ErrorCode, NotFound, Principal, PrincipalKind
from accountgraph.funds import public as funds

TOPIC = "billing.auto_pay"
WORKER = Principal(PrincipalKind.OPERATOR, None, "worker:auto-pay")


async def set_auto_pay(
    conn: AsyncConnection, principal: Principal, *, payment_method_id: int, auto_pay: bool
) -> int:
    """W2: the method is visible (NOT_FOUND) and the principal is an operator or a user
    of its owner (PERMISSION_NOT_GRANTED): its account, or for a managed method the
    responsible account it was made from (whose money it spends, B5)."""
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
    owner = method.account_id
    if method.managed_from_id is not None:
        owner = (
            await conn.execute(
                select(payment_methods.c.account_id).where(
                    payment_methods.c.id == method.managed_from_id
                )
            )
        ).scalar_one()
    if not principal.is_operator and principal.account_id != owner:
        raise DomainError(
            ErrorCode.PERMISSION_NOT_GRANTED,
            "Only the owner of a payment method marks it autoPay.",
            ["paymentMethodId"],
        )
    await conn.execute(
        update(payment_methods)
        .where(payment_methods.c.id == payment_method_id)
        .values(auto_pay=auto_pay)
    )
    return payment_method_id


async def after_cycle(conn: AsyncConnection, account_id: int, invoice_ids: Sequence[int]) -> None:
    """W2, in the cycle's transaction: an outbox row per issued invoice with something to
    pay, if the account has an auto-pay method of its own."""
    if not invoice_ids or await _auto_pay_method(conn, account_id) is None:
        return
    for invoice_id in invoice_ids:
        await outbox.add(conn, TOPIC, {"invoice_id": invoice_id})


async def _auto_pay_method(conn: AsyncConnection, account_id: int) -> int | None:
    found: int | None = (
        await conn.execute(
            select(payment_methods.c.id)
            .where(
                payment_methods.c.account_id == account_id,
                payment_methods.c.managed_from_id.is_(None),
                payment_methods.c.auto_pay,
            )
            .order_by(payment_methods.c.id)
            .limit(1)
        )
    ).scalar_one_or_none()
    return found


@outbox.handler(TOPIC)
async def pay_invoice(
    conn: AsyncConnection, payload: dict[str, Any], context: outbox.JobContext
) -> None:
    """W2, in the worker: pay the invoice once (nothing if it is paid, has nothing to pay,
    or its account no longer has an auto-pay method)."""
    invoice = (
        await conn.execute(
            select(invoices.c.id, invoices.c.account_id, invoices.c.total)
            .where(invoices.c.id == int(payload["invoice_id"]))
            .with_for_update()
        )
    ).one_or_none()
    if invoice is None or invoice.total <= 0:
        return
    paid = (
        await conn.execute(
            select(invoice_payments.c.payment_id).where(invoice_payments.c.invoice_id == invoice.id)
        )
    ).first()
    if paid is not None:
        return
    method_id = await _auto_pay_method(conn, invoice.account_id)
    if method_id is None:
        return
    payment_id = await funds.record_payment(
        conn,
        WORKER,
        account_id=invoice.account_id,
        amount=invoice.total,
        payment_method_id=method_id,
    )
    await conn.execute(
        insert(invoice_payments).values(invoice_id=invoice.id, payment_id=payment_id)
    )
