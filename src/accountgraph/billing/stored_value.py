"""W1: stored value cards: issuing them, what they pay of a charge, what is left of them.

An operator issues a card (amount > 0, optional expiry) to any account but a member under
an ACTIVE trusteeship link (U4, like coupons); an auto top-up order adds a ``TOP_UP`` card
(``auto_top_up.py``). A charge uses the valid cards of the charged account after its
coupons and vouchers and before any cash, earliest expiry first (no expiry last); the
master's cards pay the part the master settles before its cash (``credits.consume``).
Like coupons, cards move no balance: each use is an immutable ``stored_value_uses`` row and
lowers the card's ``remaining`` in the same transaction (a CHECK keeps 0 ≤ remaining ≤
amount). Stored value is not part of the available quota (F2).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import ColumnElement, and_, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.accounts import public as accounts
from accountgraph.billing.models import auto_top_ups, stored_value_cards, stored_value_uses
from accountgraph.domain import ZERO, DomainError, ErrorCode, Principal

ISSUED = "ISSUED"
TOP_UP = "TOP_UP"


def usable(at: datetime | ColumnElement[datetime]) -> ColumnElement[bool]:
    """W1: a card with something left and not expired at ``at``."""
    return and_(
        stored_value_cards.c.remaining > 0,
        or_(stored_value_cards.c.valid_until.is_(None), stored_value_cards.c.valid_until > at),
    )


async def issue_stored_value_card(
    conn: AsyncConnection,
    principal: Principal,
    *,
    account_id: int,
    amount: Decimal,
    valid_until: datetime | None,
) -> int:
    """W1 (operators): a card of ``amount`` (> 0), valid until a future time or without
    expiry, to any account but a member under an ACTIVE trusteeship link
    (NOT_ALLOWED_WHILE_ASSOCIATED, U4). Checked in this order: the account, the expiry
    (INVALID_INPUT at validUntil), the association."""
    assert amount > 0
    await accounts.account_access(conn, principal, account_id, ["accountId"])
    if valid_until is not None:
        valid_until = valid_until if valid_until.tzinfo else valid_until.replace(tzinfo=UTC)
        if valid_until <= datetime.now(UTC):
            raise DomainError(
                ErrorCode.INVALID_INPUT, "A card expires in the future.", ["validUntil"]
            )
    await accounts.lock_accounts(conn, account_id)
    if await accounts.trusteeship_link(conn, account_id) is not None:
        raise DomainError(
            ErrorCode.NOT_ALLOWED_WHILE_ASSOCIATED,
            "No stored value cards for a member under trusteeship: its master's pay.",
            ["accountId"],
        )
    card_id = await add_card(conn, account_id, amount, valid_until, ISSUED)
    await rearm(conn, account_id)
    return card_id


async def add_card(
    conn: AsyncConnection,
    account_id: int,
    amount: Decimal,
    valid_until: datetime | None,
    origin: str,
) -> int:
    """W1, W3: a new full card (ISSUED or TOP_UP)."""
    assert origin in (ISSUED, TOP_UP) and amount > 0
    card_id: int = (
        await conn.execute(
            insert(stored_value_cards)
            .values(
                account_id=account_id,
                amount=amount,
                remaining=amount,
                valid_until=valid_until,
                origin=origin,
            )
            .returning(stored_value_cards.c.id)
        )
    ).scalar_one()
    return card_id


async def stored_value(conn: AsyncConnection, account_id: int) -> Decimal:
    """W1: Σ remaining of the account's cards usable now."""
    found: Decimal = (
        await conn.execute(
            select(func.coalesce(func.sum(stored_value_cards.c.remaining), ZERO)).where(
                stored_value_cards.c.account_id == account_id, usable(func.now())
            )
        )
    ).scalar_one()
    return found


async def consume(
    conn: AsyncConnection, *, account_id: int, at: datetime, amount: Decimal
) -> list[tuple[int, Decimal]]:
    """W1: pay up to ``amount`` from the account's cards valid at ``at``, earliest expiry
    first (no expiry last, then the oldest), locking them in that order; (card, amount)
    per card used."""
    if amount <= 0:
        return []
    rows = await conn.execute(
        select(stored_value_cards.c.id, stored_value_cards.c.remaining)
        .where(stored_value_cards.c.account_id == account_id, usable(at))
        .order_by(stored_value_cards.c.valid_until.nulls_last(), stored_value_cards.c.id)
        .with_for_update()
    )
    used: list[tuple[int, Decimal]] = []
    left = amount
    for row in rows.all():
        taken = min(left, row.remaining)
        if taken <= 0:
            break
        await conn.execute(
            update(stored_value_cards)
            .where(stored_value_cards.c.id == row.id)
            .values(remaining=stored_value_cards.c.remaining - taken)
        )
        used.append((row.id, taken))
        left -= taken
    return used


async def record_uses(
    conn: AsyncConnection, charge_id: int, uses: Sequence[tuple[int, Decimal]]
) -> None:
    """W1: what paid the charge, one immutable row per card used."""
    if uses:
        await conn.execute(
            insert(stored_value_uses),
            [{"charge_id": charge_id, "card_id": card, "amount": amount} for card, amount in uses],
        )


async def card_accounts(conn: AsyncConnection, card_ids: Sequence[int]) -> list[int]:
    """The accounts of these cards."""
    if not card_ids:
        return []
    return list(
        (
            await conn.execute(
                select(stored_value_cards.c.account_id)
                .where(stored_value_cards.c.id.in_(card_ids))
                .distinct()
            )
        ).scalars()
    )


async def rearm(conn: AsyncConnection, account_id: int) -> None:
    """W3: a rule that bought its top-up is armed again once the stored value is back at or
    above its threshold."""
    rule = (
        await conn.execute(
            select(auto_top_ups.c.threshold)
            .where(
                auto_top_ups.c.account_id == account_id,
                auto_top_ups.c.enabled,
                ~auto_top_ups.c.armed,
                ~auto_top_ups.c.pending,
            )
            .with_for_update()
        )
    ).one_or_none()
    if rule is not None and await stored_value(conn, account_id) >= rule.threshold:
        await conn.execute(
            update(auto_top_ups)
            .where(auto_top_ups.c.account_id == account_id)
            .values(armed=True, updated_at=func.now())
        )
