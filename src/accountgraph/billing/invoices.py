"""B2, B4, H4: invoices: the drafts a cycle makes, writing them, checking their totals, and
reading one back as its document shows it.

An issued invoice is never edited: what it says of its bill-to is kept with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    FromClause,
    Numeric,
    Text,
    bindparam,
    func,
    insert,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.accounts import public as accounts
from accountgraph.billing.models import invoice_lines, invoices
from accountgraph.billing.terms import discounted
from accountgraph.domain import ZERO, Principal


@dataclass(slots=True)
class LineDraft:
    member_id: int | None
    site_id: int | None
    description: str
    amount: Decimal
    discount_percent: Decimal
    charge_count: int  # the staged charges on it (the cycle writes them: cycles._record_invoiced)
    bill_to_id: int | None  # H4, for a self-invoiced account: the site's bill-to
    tax_rate: Decimal = ZERO  # T2: the line's rate in percent
    tax: Decimal = ZERO  # T2: net x rate / 100, half-up to the cent (computed in SQL)

    @property
    def discount(self) -> Decimal:
        return discounted(self.amount, self.discount_percent)

    @property
    def net(self) -> Decimal:
        return self.amount - self.discount


@dataclass(slots=True)
class InvoiceDraft:
    member_id: int | None
    bill_to_id: int | None
    lines: list[LineDraft] = field(default_factory=list)

    @property
    def subtotal(self) -> Decimal:
        return sum((line.amount for line in self.lines), ZERO)

    @property
    def discount_total(self) -> Decimal:
        return sum((line.discount for line in self.lines), ZERO)

    @property
    def tax_total(self) -> Decimal:
        return sum((line.tax for line in self.lines), ZERO)


async def write_invoices(
    conn: AsyncConnection,
    account_id: int,
    period_start: date,
    period_end: date,
    drafts: Sequence[InvoiceDraft],
    own_bill_tos: Mapping[int, Any],
) -> tuple[list[int], list[tuple[int, LineDraft]]]:
    """B2, B4, H4: the drafts as issued invoices and lines; the invoices' ids, and each
    line's id with its draft (its charges are the caller's to record)."""
    invoice_ids: list[int] = list(
        (
            await conn.execute(
                insert(invoices).returning(invoices.c.id, sort_by_parameter_order=True),
                [
                    {
                        "account_id": account_id,
                        "member_id": draft.member_id,
                        "bill_to_id": draft.bill_to_id,
                        "bill_to": None
                        if draft.bill_to_id is None
                        else _snapshot(own_bill_tos[draft.bill_to_id]),
                        "period_start": period_start,
                        "period_end": period_end,
                        "subtotal": draft.subtotal,
                        "discount_total": draft.discount_total,
                        "tax_total": draft.tax_total,
                        "total": draft.subtotal - draft.discount_total + draft.tax_total,
                    }
                    for draft in drafts
                ],
            )
        ).scalars()
    )
    lines = [
        (invoice_id, line)
        for invoice_id, draft in zip(invoice_ids, drafts, strict=True)
        for line in draft.lines
    ]
    line_ids = await _insert_lines(conn, lines)
    return invoice_ids, list(zip(line_ids, (line for _, line in lines), strict=True))


LINE_COLUMNS = {
    "invoice_id": BigInteger,
    "member_id": BigInteger,
    "site_id": BigInteger,
    "description": Text,
    "amount": Numeric,
    "discount_percent": Numeric,
    "discount": Numeric,
    "net": Numeric,
    "tax_rate": Numeric,
    "tax": Numeric,
}


async def _insert_lines(conn: AsyncConnection, lines: Sequence[tuple[int, LineDraft]]) -> list[int]:
    """All the lines in one INSERT ... SELECT over arrays (one round trip for thousands
    of lines); their ids in the order given. A line is its member and site within its
    invoice's cycle, so the ids returned are matched back by those."""
    values: dict[str, list[Any]] = {
        "invoice_id": [invoice_id for invoice_id, _ in lines],
        "member_id": [line.member_id for _, line in lines],
        "site_id": [line.site_id for _, line in lines],
        "description": [line.description for _, line in lines],
        "amount": [line.amount for _, line in lines],
        "discount_percent": [line.discount_percent for _, line in lines],
        "discount": [line.discount for _, line in lines],
        "net": [line.net for _, line in lines],
        "tax_rate": [line.tax_rate for _, line in lines],
        "tax": [line.tax for _, line in lines],
    }
    rows = (
        func.unnest(
            *(
                bindparam(f"line_{name}", values[name], type_=ARRAY(kind))
                for name, kind in LINE_COLUMNS.items()
            )
        )
        .table_valued(*LINE_COLUMNS)
        .render_derived(name="new_line")
    )
    returned = await conn.execute(
        insert(invoice_lines)
        .from_select(list(LINE_COLUMNS), select(*(rows.c[name] for name in LINE_COLUMNS)))
        .returning(invoice_lines.c.id, invoice_lines.c.member_id, invoice_lines.c.site_id)
    )
    ids = {(row.member_id, row.site_id): row.id for row in returned}
    assert len(ids) == len(lines), (len(ids), len(lines))  # (member, site) is unique
    return [ids[line.member_id, line.site_id] for _, line in lines]


def same_line(a: FromClause, b: FromClause) -> ColumnElement[bool]:
    """A line of a cycle is its member and site (either may be none): rows of ``a`` and
    ``b`` with member_id and site_id columns that name the same line."""
    return (func.coalesce(a.c.member_id, 0) == func.coalesce(b.c.member_id, 0)) & (
        func.coalesce(a.c.site_id, 0) == func.coalesce(b.c.site_id, 0)
    )


async def assert_totals(
    conn: AsyncConnection, invoice_ids: Sequence[int], invoiced: FromClause
) -> None:
    """B4, T2 after the write: every invoice's totals are the sums of its lines (total =
    Σ net + tax total), every line's tax its net at its rate, and its lines' amounts the
    sums of the charges invoiced on them (the CHECKs hold each row on its own).
    ``invoiced``: the charges the cycle invoiced (member_id, site_id, amount: a line of a
    cycle is its member and site), read as the cycle read them."""
    line_sums = (
        select(
            invoice_lines.c.invoice_id,
            func.sum(invoice_lines.c.amount).label("amount"),
            func.sum(invoice_lines.c.discount).label("discount"),
            func.sum(invoice_lines.c.net).label("net"),
            func.sum(invoice_lines.c.tax).label("tax"),
            # T2: every line's tax is its net at its rate, half-up (the CHECK says it too)
            func.bool_and(
                invoice_lines.c.tax
                == func.round(invoice_lines.c.net * invoice_lines.c.tax_rate / 100, 2)
            ).label("taxed"),
        )
        .where(invoice_lines.c.invoice_id.in_(invoice_ids))
        .group_by(invoice_lines.c.invoice_id)
        .subquery()
    )
    charge_sums = (
        select(invoice_lines.c.invoice_id, func.sum(invoiced.c.amount).label("amount"))
        .select_from(invoice_lines.join(invoiced, same_line(invoiced, invoice_lines)))
        .where(invoice_lines.c.invoice_id.in_(invoice_ids))
        .group_by(invoice_lines.c.invoice_id)
        .subquery()
    )
    wrong = (
        (
            await conn.execute(
                select(invoices.c.id)
                .outerjoin(line_sums, line_sums.c.invoice_id == invoices.c.id)
                .outerjoin(charge_sums, charge_sums.c.invoice_id == invoices.c.id)
                .where(
                    invoices.c.id.in_(invoice_ids),
                    or_(
                        line_sums.c.amount.is_(None),
                        charge_sums.c.amount.is_(None),
                        invoices.c.subtotal != line_sums.c.amount,
                        invoices.c.discount_total != line_sums.c.discount,
                        invoices.c.tax_total != line_sums.c.tax,
                        invoices.c.total != line_sums.c.net + line_sums.c.tax,
                        ~line_sums.c.taxed,
                        charge_sums.c.amount != line_sums.c.amount,
                    ),
                )
            )
        )
        .scalars()
        .all()
    )
    assert not wrong, f"invoice totals differ from their lines or charges: {wrong}"


def _snapshot(row: Any) -> dict[str, Any]:
    """What the invoice says of its bill-to, kept as issued."""
    return {
        "name": row.name,
        "address": row.address,
        "email": row.email,
        "invoiceTitle": row.invoice_title,
        "taxId": row.tax_id,
    }


@dataclass(frozen=True, slots=True)
class DocumentLine:
    description: str
    amount: Decimal
    discount_percent: Decimal
    discount: Decimal
    net: Decimal
    tax_rate: Decimal = ZERO
    tax: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class InvoiceDocument:
    """What an invoice document shows, as issued."""

    number: str
    account_name: str
    member_name: str | None
    bill_to: Mapping[str, Any] | None
    period_start: date
    period_end: date
    issued_at: datetime
    lines: list[DocumentLine]
    subtotal: Decimal
    discount_total: Decimal
    total: Decimal
    tax_total: Decimal = ZERO


async def invoice_document(
    conn: AsyncConnection, principal: Principal, invoice_id: int
) -> InvoiceDocument | None:
    """The invoice for its document if the principal sees it now (the finances of the
    invoice's account, P2), else None."""
    account = accounts.account_names("account")
    member = accounts.account_names("member")
    query = (
        select(invoices, account.c.name.label("account_name"), member.c.name.label("member_name"))
        .join(account, account.c.id == invoices.c.account_id)
        .outerjoin(member, member.c.id == invoices.c.member_id)
        .where(invoices.c.id == invoice_id, accounts.sees_finance(principal, invoices.c.account_id))
    )
    row = (await conn.execute(query)).one_or_none()
    if row is None:
        return None
    lines = (
        await conn.execute(
            select(invoice_lines)
            .where(invoice_lines.c.invoice_id == invoice_id)
            .order_by(invoice_lines.c.id)
        )
    ).all()
    return InvoiceDocument(
        number=invoice_number(row.id),
        account_name=row.account_name,
        member_name=row.member_name,
        bill_to=row.bill_to,
        period_start=row.period_start,
        period_end=row.period_end,
        issued_at=row.issued_at,
        lines=[
            DocumentLine(
                line.description,
                line.amount,
                line.discount_percent,
                line.discount,
                line.net,
                line.tax_rate,
                line.tax,
            )
            for line in lines
        ],
        subtotal=row.subtotal,
        discount_total=row.discount_total,
        total=row.total,
        tax_total=row.tax_total,
    )


def invoice_number(invoice_id: int) -> str:
    return f"INV-{invoice_id:08d}"
