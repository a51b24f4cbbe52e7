"""F1, F2, F6 in the read compiler: ``Account.finance`` as SQL building JSON.

The twin of ``FinancialStateCore.of`` over the row of ``FundsLoaders._finance_by_account``:
the same rows (every account, its balances left-joined, zero where it never had money),
the same visibility (``sees_finance``, P2), the same arithmetic as ``ledger.Balance``
(U3 frozen cash, F2 available quota), each amount formatted as ``Money`` formats it.

``Account.transfers`` is the twin of ``FundsLoaders._transfers_by_account``: the
account's book as master and as member, newest first, with the same filters, shown only
to who sees the account's finances and both ends (P2, P3, U5). A transfer's ``master``
and ``member`` have no compiler, nor has ``Account.charges``: a selection with them is
the resolvers' to answer, as is one with billing's ``couponCount``/``voucherCount``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, case, func, literal, null, select
from sqlalchemy.sql.expression import FromClause

from accountgraph.accounts.public import (
    account_ids,
    has_active_master,
    sees_finance,
    sees_name,
    under_trusteeship,
)
from accountgraph.api import compiled_pages, ids, sqljson
from accountgraph.api.compiler import Compilation, Selected, enum_value, field
from accountgraph.domain import ZERO
from accountgraph.funds.balances import quota_sql
from accountgraph.funds.models import BUCKETS, balances, transfers

Json = ColumnElement[Any]
Amount = ColumnElement[Any]

compiled_pages.register("TransferConnection", "TransferEdge")


@dataclass(frozen=True, slots=True)
class FinanceRow:
    """One account's loader row as SQL: its buckets (zero without a balances row),
    whether its own cash is frozen (U3), whether it is a member (H1)."""

    values: dict[str, Amount]
    frozen: ColumnElement[bool]
    is_member: ColumnElement[bool]

    def __getitem__(self, bucket: str) -> Amount:
        return self.values[bucket]

    @property
    def frozen_cash(self) -> Amount:
        """``Balance.frozen_cash``: cash minus transferred cash when frozen, else zero."""
        return case((self.frozen, self["CASH"] - self["TRANSFERRED_CASH"]), else_=literal(ZERO))

    @property
    def available_quota(self) -> Amount:
        """``ledger.available_quota``: funds' one SQL formula of F2."""
        return quota_sql(self.__getitem__, self.frozen)


@field("Account", "finance")
def _finance(compilation: Compilation, selected: Selected, row: FromClause) -> Json:
    """The loader's query for this one account: no row (null) where P2 hides it."""
    account = account_ids("finance_account")
    balance = balances.alias(compilation.name("finance_balance"))
    source = FinanceRow(
        values={bucket: func.coalesce(balance.c[column], 0) for bucket, column in BUCKETS.items()},
        frozen=under_trusteeship(account.c.id),
        is_member=has_active_master(account.c.id),
    )
    return (
        select(compilation.child(selected, source))
        .select_from(account.outerjoin(balance, balance.c.account_id == account.c.id))
        .where(account.c.id == row.c.id, sees_finance(compilation.principal, account.c.id))
        .scalar_subquery()
    )


# ---------------------------------------------------------------- FinancialState

_BUCKET_FIELDS = {
    "cashBalance": "CASH",
    "bankersAcceptanceBill": "BANKERS_ACCEPTANCE_BILL",
    "creditLimit": "CREDIT_LIMIT",
    "creditRefund": "CREDIT_REFUND",
    "unsettledAmount": "UNSETTLED_AMOUNT",
    "outstandingFees": "OUTSTANDING_FEES",
    "negativeBill": "NEGATIVE_BILL",
    "transferredCash": "TRANSFERRED_CASH",
    "transferredCredit": "TRANSFERRED_CREDIT",
}


@field("FinancialState", *_BUCKET_FIELDS)
def _bucket(compilation: Compilation, selected: Selected, b: FinanceRow) -> Json:
    return sqljson.money(b[_BUCKET_FIELDS[selected.name]])


@field("FinancialState", "transferredAmount")
def _transferred_amount(compilation: Compilation, selected: Selected, b: FinanceRow) -> Json:
    return sqljson.money(b["TRANSFERRED_CASH"] + b["TRANSFERRED_CREDIT"])


@field("FinancialState", "frozenCash")
def _frozen_cash(compilation: Compilation, selected: Selected, b: FinanceRow) -> Json:
    return sqljson.money(b.frozen_cash)


@field("FinancialState", "availableQuota")
def _available_quota(compilation: Compilation, selected: Selected, b: FinanceRow) -> Json:
    return sqljson.money(b.available_quota)


@field("FinancialState", "creditLine")
def _credit_line(compilation: Compilation, selected: Selected, b: FinanceRow) -> Json:
    """F6: masters' side only (an account with an ACTIVE link as member shows null)."""
    return case((b.is_member, null()), else_=sqljson.money(b["CREDIT_LINE"]))


@field("FinancialState", "availableCredit")
def _available_credit(compilation: Compilation, selected: Selected, b: FinanceRow) -> Json:
    available = b["CREDIT_LIMIT"] - b["TRANSFERRED_CREDIT"] - b["OUTSTANDING_FEES"]
    return case((b.is_member, null()), else_=sqljson.money(available))


# ---------------------------------------------------------------- transfers


@field("Account", "transfers")
def _transfers(compilation: Compilation, selected: Selected, row: FromClause) -> Json:
    principal = compilation.principal
    as_master = transfers.alias(compilation.name("as_master"))
    as_member = transfers.alias(compilation.name("as_member"))
    book = (
        select(as_master, as_master.c.master_id.label("parent_id"))
        .where(as_master.c.master_id == row.c.id)
        .correlate(row)
        .union_all(
            select(as_member, as_member.c.member_id.label("parent_id"))
            .where(as_member.c.member_id == row.c.id)
            .correlate(row)
        )
        .subquery(compilation.name("book"))
    )
    conditions = [
        sees_finance(principal, book.c.parent_id),
        sees_name(principal, book.c.master_id) & sees_name(principal, book.c.member_id),
    ]
    args = selected.args
    if args.get("memberId") is not None:
        member = ids.decode_as(args["memberId"], "Account") or -1  # unknown: matches nothing
        conditions.append(book.c.member_id == member)
    direction = enum_value(args.get("direction"))
    if direction is not None:
        conditions.append(book.c.direction == direction)
    if args.get("since") is not None:
        conditions.append(book.c.created_at >= args["since"])
    if args.get("until") is not None:
        conditions.append(book.c.created_at < args["until"])
    chosen = select(book).where(*conditions)
    return compiled_pages.rows_page(compilation, selected, chosen, descending=True, parent=row)


@field("Transfer", "id")
def _transfer_id(compilation: Compilation, selected: Selected, t: FromClause) -> Json:
    return sqljson.global_id("Transfer", t.c.id)


_TRANSFER_COLUMNS = {
    "method": "method",
    "direction": "direction",
    "actor": "actor",
    "idempotencyKey": "idempotency_key",
}


@field("Transfer", *_TRANSFER_COLUMNS)
def _transfer_column(compilation: Compilation, selected: Selected, t: FromClause) -> Json:
    return t.c[_TRANSFER_COLUMNS[selected.name]]


@field("Transfer", "amount")
def _transfer_amount(compilation: Compilation, selected: Selected, t: FromClause) -> Json:
    return sqljson.money(t.c.amount)


@field("Transfer", "createdAt")
def _transfer_created_at(compilation: Compilation, selected: Selected, t: FromClause) -> Json:
    return sqljson.datetime(t.c.created_at)
