"""W3: auto top-up: a rule per account, the order a charge triggers, the worker paying it.

An account's users (or an operator) set a rule: when a charge leaves the account's stored
value below ``threshold`` while the rule is armed, a top-up order of ``amount`` is paid
with the rule's payment method (the account's own, or a managed one, B5; it must be
``autoPay``) and adds a ``TOP_UP`` card. The charge's transaction disarms the rule, marks
it pending and writes an outbox row (``TOPIC``); the worker pays the order and re-arms the
rule only once the stored value is back at or above the threshold, so one fall below buys
one top-up (like A2). A refusal while paying is kept on the rule (``last_error``) and the
order stays pending: the sweep (``retry_failed``) writes a new outbox row for it.

Whose money it is comes from ``payment_methods.payer_of`` (B5: the responsible account's
for a managed method); the order is an immutable ``top_up_orders`` row with its payer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from accountgraph import outbox
from accountgraph.accounts import public as accounts
from accountgraph.billing.models import auto_top_ups, payment_methods, top_up_orders
from accountgraph.billing.payment_methods import payer_of
from accountgraph.billing.stored_value import TOP_UP, add_card, rearm, stored_value
from accountgraph.domain import DomainError, ErrorCode, NotFound, Principal

log = logging.getLogger(__name__)

TOPIC = "billing.auto_top_up"
SWEEP_BATCH = 500
RETRY_AFTER_S = 60.0


async def set_auto_top_up(
    conn: AsyncConnection,
    principal: Principal,
    *,
    account_id: int,
    threshold: Decimal,
    amount: Decimal,
    payment_method_id: int,
    enabled: bool,
) -> None:
    """W3: the account's own users or operators. Checked in this order: the account
    (NOT_FOUND, PERMISSION_NOT_GRANTED); the method is one of the account's (NOT_FOUND at
    paymentMethodId); it is ``autoPay`` (INVALID_INPUT at paymentMethodId). The rule is
    armed (when enabled) and nothing is pending or failed any more."""
    assert threshold > 0 and amount > 0
    await accounts.own_or_operator(conn, principal, account_id, ["accountId"])
    method = (
        await conn.execute(
            select(payment_methods.c.auto_pay).where(
                payment_methods.c.id == payment_method_id,
                payment_methods.c.account_id == account_id,
            )
        )
    ).one_or_none()
    if method is None:
        raise NotFound(["paymentMethodId"], "payment method of this account")
    if not method.auto_pay:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "An auto top-up is paid with a payment method marked autoPay.",
            ["paymentMethodId"],
        )
    values: dict[str, Any] = {
        "threshold": threshold,
        "amount": amount,
        "payment_method_id": payment_method_id,
        "enabled": enabled,
        "armed": enabled,
        "pending": False,
        "last_error": None,
    }
    upsert = pg_insert(auto_top_ups).values(account_id=account_id, **values)
    await conn.execute(
        upsert.on_conflict_do_update(
            index_elements=[auto_top_ups.c.account_id],
            set_={**values, "updated_at": func.now()},
        )
    )


async def after_charge(conn: AsyncConnection, account_ids: Iterable[int]) -> None:
    """W3, in the charge's transaction: each armed rule of these accounts whose stored value
    the charge left below its threshold is disarmed and gets one pending order."""
    rules = (
        await conn.execute(
            select(auto_top_ups.c.account_id, auto_top_ups.c.threshold)
            .where(
                auto_top_ups.c.account_id.in_(sorted(set(account_ids))),
                auto_top_ups.c.enabled,
                auto_top_ups.c.armed,
            )
            .order_by(auto_top_ups.c.account_id)
            .with_for_update()
        )
    ).all()
    for rule in rules:
        if await stored_value(conn, rule.account_id) >= rule.threshold:
            continue
        await conn.execute(
            update(auto_top_ups)
            .where(auto_top_ups.c.account_id == rule.account_id)
            .values(armed=False, pending=True, updated_at=func.now())
        )
        await outbox.add(conn, TOPIC, {"account_id": rule.account_id})


@outbox.handler(TOPIC)
async def pay_top_up(
    conn: AsyncConnection, payload: dict[str, Any], context: outbox.JobContext
) -> None:
    """W3, in the worker: pay the account's pending order once. The payment, the card and
    the rule's new state commit with the outbox row's ``done``: a second run finds nothing
    pending."""
    account_id = int(payload["account_id"])
    rule = await _pending(conn, account_id, lock=False)
    if rule is None:
        return
    # The accounts first (ascending, as a charge takes them), then the rule.
    payer_id, refused = account_id, None
    try:
        payer_id = await payer_of(conn, account_id, rule.payment_method_id)
    except DomainError as error:
        refused = error
    await accounts.lock_accounts(conn, account_id, payer_id)
    rule = await _pending(conn, account_id, lock=True)
    if rule is None:
        return
    try:
        if refused is not None:
            raise refused
        async with conn.begin_nested():
            if await payer_of(conn, account_id, rule.payment_method_id) != payer_id:
                raise DomainError(ErrorCode.CONFLICT, "The payment method changed.", None)
            await _still_auto_pay(conn, rule.payment_method_id)
            card_id = await add_card(conn, account_id, rule.amount, None, TOP_UP)
            await conn.execute(
                insert(top_up_orders).values(
                    account_id=account_id,
                    payer_id=payer_id,
                    payment_method_id=rule.payment_method_id,
                    amount=rule.amount,
                    card_id=card_id,
                )
            )
    except DomainError as error:
        log.info("auto top-up of account %s refused: %s", account_id, error.message)
        await conn.execute(
            update(auto_top_ups)
            .where(auto_top_ups.c.account_id == account_id)
            .values(last_error=f"{error.code.value}: {error.message}"[:500], updated_at=func.now())
        )
        return
    await conn.execute(
        update(auto_top_ups)
        .where(auto_top_ups.c.account_id == account_id)
        .values(pending=False, last_error=None, last_top_up_at=func.now(), updated_at=func.now())
    )
    await rearm(conn, account_id)


async def _pending(conn: AsyncConnection, account_id: int, *, lock: bool) -> Any:
    query = select(auto_top_ups).where(
        auto_top_ups.c.account_id == account_id, auto_top_ups.c.enabled, auto_top_ups.c.pending
    )
    return (await conn.execute(query.with_for_update() if lock else query)).one_or_none()


async def _still_auto_pay(conn: AsyncConnection, payment_method_id: int) -> None:
    auto_pay = (
        await conn.execute(
            select(payment_methods.c.auto_pay).where(payment_methods.c.id == payment_method_id)
        )
    ).scalar_one_or_none()
    if not auto_pay:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "The payment method is no longer marked autoPay.",
            ["paymentMethodId"],
        )


async def retry_failed(
    engine: AsyncEngine, *, retry_after_s: float = RETRY_AFTER_S, batch: int = SWEEP_BATCH
) -> int:
    """W3's sweep: a new outbox row for each pending order whose last attempt failed at
    least ``retry_after_s`` ago (at most ``batch``); how many."""
    async with engine.begin() as conn:
        due = (
            (
                await conn.execute(
                    select(auto_top_ups.c.account_id)
                    .where(
                        auto_top_ups.c.enabled,
                        auto_top_ups.c.pending,
                        auto_top_ups.c.last_error.is_not(None),
                        auto_top_ups.c.updated_at <= func.now() - timedelta(seconds=retry_after_s),
                    )
                    .order_by(auto_top_ups.c.account_id)
                    .limit(batch)
                    .with_for_update(skip_locked=True)
                )
            )
            .scalars()
            .all()
        )
        for account_id in due:
            await conn.execute(
                update(auto_top_ups)
                .where(auto_top_ups.c.account_id == account_id)
                .values(updated_at=func.now())
            )
            await outbox.add(conn, TOPIC, {"account_id": account_id})
        return len(due)
