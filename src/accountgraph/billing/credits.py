"""V2, U2, U4, W1: what coupons, vouchers and stored value cards pay of a charge.

A leaf module (it reads and writes billing tables only): funds' charge instruments
(``funds.public.ChargeInstruments``, registered by ``billing.public``), which
``record_charge`` calls inside the charge's transaction, after the charged accounts are
locked. Coupons, vouchers and stored value cards are not cash and not journal buckets:
the part of a charge they cover moves no balance. Each use is a ``charge_credits`` row (a
card's: a ``stored_value_uses`` row, W1) and lowers the coupon's, voucher's or card's
``remaining`` in the same transaction (a CHECK keeps it within ``0 ≤ remaining ≤
amount``). Recording the uses also checks the auto top-up rules of the accounts the charge
touched (W3, ``auto_top_up.after_charge``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.billing import auto_top_up, stored_value
from accountgraph.billing.models import charge_credits, coupons, voucher_members, vouchers
from accountgraph.domain import ZERO
from accountgraph.funds import public as funds


@dataclass(frozen=True, slots=True)
class Use:
    """An amount of one charge paid by one coupon, one voucher or one stored value card."""

    amount: Decimal
    coupon_id: int | None = None
    voucher_id: int | None = None
    card_id: int | None = None


def covered(uses: Sequence[Use]) -> Decimal:
    return sum((use.amount for use in uses), ZERO)


async def consume(
    conn: AsyncConnection,
    *,
    account_id: int,
    at: datetime,
    amount: Decimal,
    with_coupons: bool = True,
) -> list[Use]:
    """V2, W1: pay up to ``amount`` from the account's coupons (unless ``with_coupons`` is
    False), then from the vouchers naming it, then from its stored value cards, each valid
    at ``at``, earliest expiry first (then the oldest). A trusteeship member's cards pay
    its charges also during the association (its top-ups are bought for that, W3). A
    coupon is valid until its ``valid_until``; a voucher from its
    ``valid_from`` (inclusive) to its ``valid_until`` (exclusive). Rows are locked in the
    order they are used, which is the same total order for every charge."""
    assert amount >= 0
    uses: list[Use] = []
    if with_coupons and amount > 0:
        usable = await conn.execute(
            select(coupons.c.id, coupons.c.remaining)
            .where(
                coupons.c.account_id == account_id,
                coupons.c.remaining > 0,
                coupons.c.valid_until > at,
            )
            .order_by(coupons.c.valid_until, coupons.c.id)
            .with_for_update()
        )
        for row in usable.all():
            taken = min(amount - covered(uses), row.remaining)
            if taken <= 0:
                break
            await conn.execute(
                update(coupons)
                .where(coupons.c.id == row.id)
                .values(remaining=coupons.c.remaining - taken)
            )
            uses.append(Use(taken, coupon_id=row.id))
    if covered(uses) < amount:
        usable = await conn.execute(
            select(vouchers.c.id, vouchers.c.remaining)
            .join(voucher_members, voucher_members.c.voucher_id == vouchers.c.id)
            .where(
                voucher_members.c.member_id == account_id,
                vouchers.c.remaining > 0,
                vouchers.c.valid_from <= at,
                vouchers.c.valid_until > at,
            )
            .order_by(vouchers.c.valid_until, vouchers.c.id)
            .with_for_update(of=vouchers)
        )
        for row in usable.all():
            taken = min(amount - covered(uses), row.remaining)
            if taken <= 0:
                break
            await conn.execute(
                update(vouchers)
                .where(vouchers.c.id == row.id)
                .values(remaining=vouchers.c.remaining - taken)
            )
            uses.append(Use(taken, voucher_id=row.id))
    uses += [
        Use(taken, card_id=card)
        for card, taken in await stored_value.consume(
            conn, account_id=account_id, at=at, amount=amount - covered(uses)
        )
    ]
    assert all(use.amount > 0 for use in uses) and covered(uses) <= amount
    return uses


async def record(conn: AsyncConnection, charge_id: int, uses: Sequence[Use]) -> None:
    """V2, W1: what paid the charge, one immutable row per coupon, voucher or card used;
    then W3: the auto top-up rules of the charged account and of the cards' accounts."""
    credits = [use for use in uses if use.card_id is None]
    if credits:
        await conn.execute(
            insert(charge_credits),
            [
                {
                    "charge_id": charge_id,
                    "coupon_id": use.coupon_id,
                    "voucher_id": use.voucher_id,
                    "amount": use.amount,
                }
                for use in credits
            ],
        )
    cards = [(use.card_id, use.amount) for use in uses if use.card_id is not None]
    await stored_value.record_uses(conn, charge_id, cards)
    charge = funds.charge_amounts("charge")
    charged: int = (
        await conn.execute(select(charge.c.account_id).where(charge.c.id == charge_id))
    ).scalar_one()
    touched = await stored_value.card_accounts(conn, [card for card, _ in cards])
    await auto_top_up.after_charge(conn, [charged, *touched])
