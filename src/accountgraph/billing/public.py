"""The billing area's public surface: the only module of it that other areas may import.

Billing is at the top of the areas: it uses accounts and funds (through their public
modules) and no area uses it; the assembly (schema, cli, demo, workers) reaches its
GraphQL and jobs. What it gives the areas below is its part of their ports, registered
when this module is imported (billing's package imports it, so any use of billing
registers them):

- funds' charge instruments (F7, V2): coupons and vouchers pay a charge first
  (``credits``);
- funds' payer (F8, B5): a payment made with a managed payment method is the responsible
  account's money (``payment_methods.payer_of``).
"""

from __future__ import annotations

from accountgraph.billing import credits
from accountgraph.billing.payment_methods import payer_of
from accountgraph.funds.public import register_charge_instruments, register_payer

register_charge_instruments(credits)
register_payer(payer_of)

__all__: list[str] = []
