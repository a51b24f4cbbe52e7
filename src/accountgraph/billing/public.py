"""The billing area's public surface: the only module of it that other areas may import.

Billing is at the top of the areas: it uses accounts and funds (through their public
modules) and no area uses it; the assembly (schema, cli, demo, workers) reaches its
GraphQL and jobs. What it gives the areas below is its part of their ports, registered
when this module is imported (billing's package imports it, so any use of billing
registers them):

- funds' charge instruments (F7, V2, W1): coupons, vouchers and stored value cards pay
  a charge first (``credits``);
- funds' payer (F8, B5): a payment made with a managed payment method is the responsible
  account's money (``payment_methods.payer_of``);
- funds' ledger check (F9, W1): verify-ledger covers stored value (``verify``);
- the accounts area's tax groups (T1): a site's tax group is a known code (``taxes``).

Importing it also registers billing's outbox handlers (W2 auto-pay, W3 auto top-up); the
worker's sweep retries refused top-ups with ``retry_top_ups`` (W3).
"""

from __future__ import annotations

from accountgraph.accounts.public import register_tax_groups
from accountgraph.billing import auto_pay as _auto_pay  # noqa: F401  (W2 handler)
from accountgraph.billing import credits
from accountgraph.billing.auto_top_up import retry_failed as retry_top_ups  # W3 sweep
from accountgraph.billing.payment_methods import payer_of
from accountgraph.billing.taxes import tax_group_exists
from accountgraph.billing.verify import invoice_differences, stored_value_differences
from accountgraph.funds.public import (
    register_charge_instruments,
    register_ledger_check,
    register_payer,
)

register_charge_instruments(credits)
register_payer(payer_of)
register_ledger_check(stored_value_differences)
register_ledger_check(invoice_differences)
register_tax_groups(tax_group_exists)

__all__ = ["retry_top_ups"]
