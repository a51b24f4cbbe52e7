"""What the money services need of billing, as ports billing fills in.

Funds uses no area but accounts. Two money rules still depend on billing's records, so
billing registers its implementations when ``accountgraph.billing.public`` is imported
(billing's package imports it, so importing any billing module registers them):

- F7, V2: a charge is paid first by the applicable coupons and vouchers
  (``register_charge_instruments``);
- F8, B5: a payment made with a managed payment method is the responsible account's
  money (``register_payer``).

Both run inside the money operation's transaction, after its accounts are locked.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.domain import ZERO


class Covering(Protocol):
    """An amount of one charge that one instrument (a coupon, a voucher) paid."""

    @property
    def amount(self) -> Decimal: ...


class ChargeInstruments(Protocol):
    """F7, V2: what pays a charge before any balance moves (coupons, vouchers)."""

    async def consume(
        self,
        conn: AsyncConnection,
        *,
        account_id: int,
        at: datetime,
        amount: Decimal,
        with_coupons: bool = True,
    ) -> Sequence[Covering]:
        """Pay up to ``amount`` of a charge on ``account_id`` dated ``at`` (coupons only
        when ``with_coupons``), locking what it uses; what paid what."""
        ...

    async def record(self, conn: AsyncConnection, charge_id: int, uses: Sequence[Any]) -> None:
        """Keep what ``consume`` returned (for one charge, in order) as paying it."""
        ...


PayerOf = Callable[[AsyncConnection, int, int | None], Awaitable[int]]
"""F8, B5: (conn, account_id, payment_method_id) -> whose money the payment is."""

LedgerCheck = Callable[[AsyncConnection], Awaitable[list[str]]]
"""F9, W1: a further check of verify-ledger (billing's stored value): its differences."""

_instruments: list[ChargeInstruments] = []
_payers: list[PayerOf] = []
_ledger_checks: list[LedgerCheck] = []


def register_ledger_check(check: LedgerCheck) -> None:
    """F9: verify-ledger runs ``check`` too (once per check)."""
    if check not in _ledger_checks:
        _ledger_checks.append(check)


def ledger_checks() -> list[LedgerCheck]:
    return list(_ledger_checks)


def register_charge_instruments(instruments: ChargeInstruments) -> None:
    _instruments[:] = [instruments]


def register_payer(payer_of: PayerOf) -> None:
    _payers[:] = [payer_of]


def charge_instruments() -> ChargeInstruments:
    if not _instruments:
        raise RuntimeError(
            "No charge instruments (V2) are registered: import "
            "accountgraph.billing.public before running the money services."
        )
    return _instruments[0]


def payer_of() -> PayerOf:
    if not _payers:
        raise RuntimeError(
            "No payer of payments (B5) is registered: import "
            "accountgraph.billing.public before running the money services."
        )
    return _payers[0]


def covered(uses: Sequence[Covering]) -> Decimal:
    """The part of a charge that instruments paid."""
    return sum((use.amount for use in uses), ZERO)
