"""What the account graph needs of the areas above it, as ports they fill in.

The accounts area uses no other area. Some of its rules still depend on them, so they
register their part here when their public module is imported (``funds.public``,
``sharing.public``; each area's package imports its public module, so importing any
module of the area registers it):

- U1: an account with unpaid outstanding fees (funds' F1) cannot accept a trusteeship
  invitation: ``register_outstanding_fees``.
- T1: a site's tax group must be a tax group's code (billing's): ``register_tax_groups``.
- U5/S9: dissociation ends the member's sharing, so sharing drops the member's user group
  rows of that master: ``on_dissociate``.

Both run inside the caller's transaction, under the accounts' locks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncConnection

OutstandingFees = Callable[[AsyncConnection, int], Awaitable[Decimal]]
"""(conn, account_id) -> what the account owes."""

DissociationListener = Callable[[AsyncConnection, int, int], Awaitable[None]]
"""(conn, master_id, member_id), after the link became DISSOCIATED."""

TaxGroupExists = Callable[[AsyncConnection, str], Awaitable[bool]]
"""T1: (conn, code) -> whether a tax group has this code (billing's tax groups)."""

_outstanding_fees: list[OutstandingFees] = []
_tax_groups: list[TaxGroupExists] = []
_dissociation_listeners: list[DissociationListener] = []


def register_outstanding_fees(reader: OutstandingFees) -> None:
    """U1: how to read an account's outstanding fees (the funds area's)."""
    _outstanding_fees[:] = [reader]


def register_tax_groups(reader: TaxGroupExists) -> None:
    """T1: how to tell a known tax group code (the billing area's)."""
    _tax_groups[:] = [reader]


async def known_tax_group(conn: AsyncConnection, code: str) -> bool:
    if not _tax_groups:
        raise RuntimeError(
            "No reader of tax groups (T1) is registered: import "
            "accountgraph.billing.public before running the site services."
        )
    return await _tax_groups[0](conn, code)


def on_dissociate(listener: DissociationListener) -> DissociationListener:
    """U5: run ``listener`` in the dissociation's transaction (once per listener)."""
    if listener not in _dissociation_listeners:
        _dissociation_listeners.append(listener)
    return listener


async def outstanding_fees(conn: AsyncConnection, account_id: int) -> Decimal:
    if not _outstanding_fees:
        raise RuntimeError(
            "No reader of outstanding fees (U1) is registered: import "
            "accountgraph.funds.public before running the account services."
        )
    return await _outstanding_fees[0](conn, account_id)


async def dissociated(conn: AsyncConnection, master_id: int, member_id: int) -> None:
    for listener in _dissociation_listeners:
        await listener(conn, master_id, member_id)
