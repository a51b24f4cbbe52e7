"""F8, F1, U3, B5: payments, withdrawals, and the back office's balance adjustments.

Whose money a payment made with a managed payment method is (B5) is billing's to say;
funds asks through the payer port (``ports.py``) that billing registers.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.accounts import public as accounts
from accountgraph.domain import DomainError, ErrorCode, Principal
from accountgraph.funds import ports
from accountgraph.funds.kinds import BalanceBucket, Bucket
from accountgraph.funds.ledger import Ledger
from accountgraph.funds.models import payments


async def record_payment(
    conn: AsyncConnection,
    principal: Principal,
    *,
    account_id: int,
    amount: Decimal,
    payment_method_id: int | None = None,
) -> int:
    """F8 (operators): settles outstanding fees first; the rest becomes cash. B5: made with
    a managed payment method, it is the responsible account's money and goes to it (its
    fees, then its cash); the payment stays recorded on the account it was made on."""
    payer_of = ports.payer_of()
    await accounts.account_access(conn, principal, account_id, ["accountId"])
    payer_id = await payer_of(conn, account_id, payment_method_id)
    frozen = [account_id] if await accounts.trusteeship_link(conn, account_id) else []
    ledger = await Ledger.lock(conn, [account_id, payer_id], frozen=frozen)
    if await payer_of(conn, account_id, payment_method_id) != payer_id:
        raise DomainError(ErrorCode.CONFLICT, "The payment method changed; try again.", None)
    settles = min(amount, ledger.before[payer_id][Bucket.OUTSTANDING_FEES])
    ledger.move(Bucket.OUTSTANDING_FEES, payer_id, None, settles)
    ledger.move(Bucket.CASH, None, payer_id, amount - settles)
    entry_id = await ledger.commit("PAYMENT", principal.actor)
    payment_id: int = (
        await conn.execute(
            insert(payments)
            .values(
                account_id=account_id,
                payer_id=payer_id,
                payment_method_id=payment_method_id,
                amount=amount,
                actor=principal.actor,
                entry_id=entry_id,
            )
            .returning(payments.c.id)
        )
    ).scalar_one()
    return payment_id


async def withdraw_cash(
    conn: AsyncConnection, principal: Principal, *, account_id: int, amount: Decimal
) -> None:
    """F8, U3: the account's own users take out withdrawable cash (never allocated cash;
    frozen cash is withdrawable)."""
    await accounts.own_account(conn, principal, account_id, ["accountId"])
    link = await accounts.trusteeship_link(conn, account_id)
    ledger = await Ledger.lock(conn, [account_id], frozen=[account_id] if link else [])
    if amount > ledger.before[account_id].withdrawable_cash:
        raise DomainError(
            ErrorCode.INSUFFICIENT_FUNDS,
            "Only cash that was not allocated can be withdrawn.",
            ["amount"],
        )
    ledger.move(Bucket.CASH, account_id, None, amount)
    await ledger.commit("WITHDRAWAL", principal.actor)
    assert ledger.after()[account_id].withdrawable_cash >= 0


async def adjust_balance(
    conn: AsyncConnection,
    principal: Principal,
    *,
    account_id: int,
    bucket: BalanceBucket,
    amount: Decimal,
    reason: str,
) -> None:
    """F1 (operators): a back-office bucket moves by a signed amount, never below zero."""
    posted = bucket.bucket
    await accounts.account_access(conn, principal, account_id, ["accountId"])
    link = await accounts.trusteeship_link(conn, account_id)
    ledger = await Ledger.lock(conn, [account_id], frozen=[account_id] if link else [])
    if ledger.before[account_id][posted] + amount < 0:
        raise DomainError(
            ErrorCode.INSUFFICIENT_FUNDS, f"{posted} would fall below zero.", ["amount"]
        )
    ledger.move(posted, None, account_id, amount)
    await ledger.commit("ADJUSTMENT", principal.actor, reason=reason)
