"""The funds area's public surface: the only module of it that other areas import.

Funds uses only the accounts area (through ``accounts.public``); billing and alerts use
funds through what is here:

- the kinds of money (plain enums: buckets, disbursement methods, transfer directions);
- F2 quota and F1 outstanding fees, as values and as SQL; the outbox topic of a quota
  change (A2 evaluates on it);
- F7/F8 records as SQL (the charges an account answers for; payments; T3 the postings
  with their branch); F8's ``record_payment`` (W2 auto-pay pays invoices with it);
- the ports billing fills in (charge instruments V2, payer B5, W1's ledger check).

Importing this module registers funds' part of the accounts area's ports: U1's reader of
outstanding fees.
"""

from __future__ import annotations

from accountgraph.accounts.public import register_outstanding_fees
from accountgraph.funds.balances import (
    available_quota,
    available_quota_of,
    available_quotas,
    outstanding_fees,
)
from accountgraph.funds.charges import CHARGE_TOPIC, cost_labels
from accountgraph.funds.idempotency import purge as purge_idempotency_keys
from accountgraph.funds.kinds import BalanceBucket, Bucket, DisbursementMethod, TransferDirection
from accountgraph.funds.ledger import QUOTA_TOPIC
from accountgraph.funds.payments import record_payment
from accountgraph.funds.ports import (
    ChargeInstruments,
    Covering,
    LedgerCheck,
    PayerOf,
    register_charge_instruments,
    register_ledger_check,
    register_payer,
)
from accountgraph.funds.reads import (
    ChargeFilter,
    charge_amounts,
    cost_charges,
    ledger_postings,
    payments_by_id,
    payments_of,
    responsible_charges,
)
from accountgraph.funds.verify import verify as verify_ledger

register_outstanding_fees(outstanding_fees)

__all__ = [
    "CHARGE_TOPIC",
    "QUOTA_TOPIC",
    "BalanceBucket",
    "Bucket",
    "ChargeFilter",
    "ChargeInstruments",
    "Covering",
    "DisbursementMethod",
    "LedgerCheck",
    "PayerOf",
    "TransferDirection",
    "available_quota",
    "available_quota_of",
    "available_quotas",
    "charge_amounts",
    "cost_charges",
    "cost_labels",
    "ledger_postings",
    "outstanding_fees",
    "payments_by_id",
    "payments_of",
    "purge_idempotency_keys",
    "record_payment",
    "register_charge_instruments",
    "register_ledger_check",
    "register_payer",
    "responsible_charges",
    "verify_ledger",
]
