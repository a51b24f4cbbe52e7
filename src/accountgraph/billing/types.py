"""B2-B4 in GraphQL: InvoiceMode, DocumentFormat, Invoice, InvoiceLine and their
connection (billing's fields of ``Account`` are in ``billing/account.py``)."""

from __future__ import annotations

import enum
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import strawberry

from accountgraph.api import composed, ids, node
from accountgraph.api.auth import principal_of
from accountgraph.api.composed import AccountRef, BillToRef, SiteRef
from accountgraph.api.connections import Connection, connection, page
from accountgraph.api.node import Node
from accountgraph.api.scalars import Exact, Money
from accountgraph.billing import documents
from accountgraph.billing.invoices import invoice_number
from accountgraph.billing.loaders import BillingLoaders, InvoicesKey
from accountgraph.billing.payment_types import Payment
from accountgraph.billing.tax_loaders import TaxLoaders

Info = strawberry.Info[Any, Any]
Row = Any


@strawberry.enum
class InvoiceMode(enum.Enum):
    AGGREGATED = "AGGREGATED"
    PER_MEMBER = "PER_MEMBER"


@strawberry.enum
class DocumentFormat(enum.Enum):
    PDF = "PDF"
    HTML = "HTML"


def loaders(info: Info) -> BillingLoaders:
    found: BillingLoaders = info.context.loaders.billing
    return found


def _tax_loaders(info: Info) -> TaxLoaders:
    found: TaxLoaders = info.context.loaders.taxes
    return found


async def _account(info: Info, account_id: int | None) -> AccountRef | None:
    """Null where the viewer does not see the account (a dissociated member, P3/U5)."""
    return None if account_id is None else await composed.account(info, account_id)


@strawberry.type
class InvoiceLine:
    description: str
    amount: Money
    discount_percent: Money
    discount: Money
    net: Money
    tax_rate: Money = strawberry.field(description="T2: the line's tax rate in percent.")
    tax: Money = strawberry.field(description="T2: net x taxRate / 100, half-up to the cent.")
    member_id: strawberry.Private[int | None]
    site_id: strawberry.Private[int | None]

    @strawberry.field(
        description="The managed account the line is for; null for the "
        "invoiced account's own charges."
    )
    async def member(self, info: Info) -> AccountRef | None:
        return await _account(info, self.member_id)

    @strawberry.field
    async def site(self, info: Info) -> SiteRef | None:
        return None if self.site_id is None else await composed.site(info, self.site_id)

    @classmethod
    def from_row(cls, row: Row) -> InvoiceLine:
        return cls(
            description=row.description,
            amount=row.amount,
            discount_percent=row.discount_percent,
            discount=row.discount,
            net=row.net,
            tax_rate=Exact(row.tax_rate),
            tax=row.tax,
            member_id=row.member_id,
            site_id=row.site_id,
        )


@strawberry.type(description="B4: an issued invoice; never edited.")
class Invoice(Node):
    id: strawberry.ID
    number: str
    period_start: date
    period_end: date
    issued_at: datetime
    subtotal: Money
    discount_total: Money
    total: Money = strawberry.field(description="B4, T2: Σ net + taxTotal.")
    tax_total: Money = strawberry.field(description="T2: Σ of the lines' taxes.")
    row_id: strawberry.Private[int]
    account_id: strawberry.Private[int]
    member_id: strawberry.Private[int | None]
    bill_to_id: strawberry.Private[int | None]

    @strawberry.field
    async def account(self, info: Info) -> AccountRef:
        found = await _account(info, self.account_id)
        if found is None:  # pragma: no cover - who sees an invoice sees its account
            raise LookupError("account not visible")
        return found

    @strawberry.field(description="managed account for PER_MEMBER invoices")
    async def member(self, info: Info) -> AccountRef | None:
        return await _account(info, self.member_id)

    @strawberry.field(
        description="H4: where the invoice was addressed; null if none was, "
        "or that bill-to has since been removed."
    )
    async def bill_to(self, info: Info) -> BillToRef | None:
        return None if self.bill_to_id is None else await composed.bill_to(info, self.bill_to_id)

    @strawberry.field(description="W2: when the invoice was paid automatically; null if not.")
    async def paid_at(self, info: Info) -> datetime | None:
        row = await _tax_loaders(info).payment_by_invoice.load(self.row_id)
        return None if row is None else row.paid_at

    @strawberry.field(description="W2: the automatic payment of this invoice; null if none.")
    async def payment(self, info: Info) -> Payment | None:
        row = await _tax_loaders(info).payment_by_invoice.load(self.row_id)
        if row is None:
            return None
        found: Payment | None = await node.load(info, "Payment", row.payment_id)
        return found

    @strawberry.field
    async def lines(self, info: Info) -> list[InvoiceLine]:
        rows = await loaders(info).lines_by_invoice.load(self.row_id)
        return [InvoiceLine.from_row(row) for row in rows]

    @strawberry.field(
        description="A URL (same host) of the invoice document, served only "
        "to principals who may see it."
    )
    def document_url(self, info: Info, format: DocumentFormat = DocumentFormat.PDF) -> str:
        return documents.document_url(
            info.context.settings, principal_of(info), self.row_id, format.value
        )

    @classmethod
    def from_row(cls, row: Row) -> Invoice:
        return cls(
            id=strawberry.ID(ids.encode("Invoice", row.id)),
            row_id=row.id,
            number=invoice_number(row.id),
            account_id=row.account_id,
            member_id=row.member_id,
            bill_to_id=row.bill_to_id,
            period_start=row.period_start,
            period_end=row.period_end,
            issued_at=row.issued_at,
            subtotal=row.subtotal,
            discount_total=row.discount_total,
            total=row.total,
            tax_total=row.tax_total,
        )


async def invoice_node(info: Info, row_id: int) -> Invoice | None:
    row = await loaders(info).invoice_by_id.load(row_id)
    return None if row is None else Invoice.from_row(row)


async def invoice_nodes(info: Info, row_ids: list[int]) -> list[Invoice]:
    rows = await loaders(info).invoice_by_id.load_many(row_ids)
    return [Invoice.from_row(row) for row in rows if row is not None]


async def invoices_of(
    info: Info, account_id: int, *, first: int | None, after: str | None
) -> Connection[Invoice]:
    request = page(first, after)
    found = await loaders(info).invoices_by_account.load(
        InvoicesKey(account_id, request.limit, request.after)
    )
    nodes = [Invoice.from_row(row) for row in found.rows]
    return connection(nodes, [row.id for row in found.rows], request, found.total)


async def invoice_mode_of(info: Info, account_id: int) -> InvoiceMode | None:
    mode = await loaders(info).invoice_mode_by_account.load(account_id)
    return None if mode is None else InvoiceMode(mode)


async def discount_of(info: Info, account_id: int) -> Decimal | None:
    found: Decimal | None = await loaders(info).discount_by_account.load(account_id)
    return found


node.register("Invoice", invoice_node, invoice_nodes)
