"""F1, F3-F5: the kinds of money, as plain enums (no GraphQL).

Each value is the string stored in the database (``postings.bucket``,
``transfers.method``, ``transfers.direction``), and a member compares equal to it, so a
row's string and the enum are interchangeable. The GraphQL enums of the same names are
registered from these.
"""

from __future__ import annotations

import enum


class Bucket(enum.StrEnum):
    """F1: a balance of an account, one journal bucket each (``BUCKETS`` maps it to its
    column of ``balances``)."""

    CASH = "CASH"
    TRANSFERRED_CASH = "TRANSFERRED_CASH"
    TRANSFERRED_CREDIT = "TRANSFERRED_CREDIT"
    CREDIT_LIMIT = "CREDIT_LIMIT"
    CREDIT_LINE = "CREDIT_LINE"
    BANKERS_ACCEPTANCE_BILL = "BANKERS_ACCEPTANCE_BILL"
    CREDIT_REFUND = "CREDIT_REFUND"
    UNSETTLED_AMOUNT = "UNSETTLED_AMOUNT"
    NEGATIVE_BILL = "NEGATIVE_BILL"
    OUTSTANDING_FEES = "OUTSTANDING_FEES"


class BalanceBucket(enum.StrEnum):
    """F1: the buckets the billing back office changes (``adjustBalance``)."""

    BANKERS_ACCEPTANCE_BILL = "BANKERS_ACCEPTANCE_BILL"
    CREDIT_REFUND = "CREDIT_REFUND"
    UNSETTLED_AMOUNT = "UNSETTLED_AMOUNT"
    NEGATIVE_BILL = "NEGATIVE_BILL"

    @property
    def bucket(self) -> Bucket:
        return Bucket(self.value)


class DisbursementMethod(enum.StrEnum):
    """F3/F4: how a master allocates (or reclaims): cash, or credit limit."""

    CASH = "CASH"
    CREDIT = "CREDIT"


class TransferDirection(enum.StrEnum):
    """F5: a transfer book record allocates or reclaims."""

    ALLOCATE = "ALLOCATE"
    RECLAIM = "RECLAIM"
