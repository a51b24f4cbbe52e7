"""B1-B4, U4: discounts, invoice modes and bill cycles.

A bill cycle for an account and a period (dates, inclusive, in UTC) takes the charges it
is responsible for that no invoice has yet (``invoiced_charges`` is keyed by the charge),
groups them into lines by member and site, applies the discounts of B3 and issues the
invoices of its mode (B2), addressed by H4. It runs once per account and period
(``bill_cycles``); totals are checked against their lines and charges after the write
(B4), beside the CHECK constraints on every invoice and line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    text,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.accounts import service as accounts
from accountgraph.accounts.models import accounts as account_rows
from accountgraph.accounts.models import bill_tos, links, sites
from accountgraph.accounts.visibility import sees_finance
from accountgraph.billing.models import (
    bill_cycles,
    discounts,
    invoice_lines,
    invoice_settings,
    invoiced_charges,
    invoices,
)
from accountgraph.domain import ZERO, DomainError, ErrorCode, NotFound, Principal
from accountgraph.funds.models import charges

CENT = Decimal("0.01")
HUNDRED = Decimal(100)
MODES = ("AGGREGATED", "PER_MEMBER")
DEFAULT_MODE = "AGGREGATED"
ASSOCIATED = "No commercial discount or invoice setting for a member under a trusteeship " \
             "link: its master's apply (U4)."


# ---------------------------------------------------------------- discounts (B3, U4)


async def set_discount(
    conn: AsyncConnection, principal: Principal, *, account_id: int, percent: Decimal | None
) -> None:
    """B3 (operators): the account-level discount, 0-100 with at most 2 places; None
    removes it. U4: not for a member under an ACTIVE trusteeship link (a discount it had
    before the association stays and applies by B3)."""
    await accounts.account_access(conn, principal, account_id, ["accountId"])
    if percent is not None and not ZERO <= percent <= HUNDRED:
        raise DomainError(ErrorCode.INVALID_AMOUNT, "A percent from 0 to 100.", ["percent"])
    await accounts.lock_accounts(conn, account_id)
    if await accounts.trusteeship_link(conn, account_id) is not None:
        raise DomainError(ErrorCode.NOT_ALLOWED_WHILE_ASSOCIATED, ASSOCIATED, ["accountId"])
    if percent is None:
        await conn.execute(delete(discounts).where(discounts.c.account_id == account_id))
        return
    upsert = pg_insert(discounts).values(account_id=account_id, percent=percent)
    await conn.execute(upsert.on_conflict_do_update(
        index_elements=[discounts.c.account_id],
        set_={"percent": upsert.excluded.percent, "set_at": func.now()}))


def discounted(amount: Decimal, percent: Decimal) -> Decimal:
    """B3: the discount of a line, rounded half-up to the cent."""
    return (amount * percent / HUNDRED).quantize(CENT, rounding=ROUND_HALF_UP)


# ---------------------------------------------------------------- invoice mode (B2)


async def set_invoice_mode(
    conn: AsyncConnection, principal: Principal, *, account_id: int, mode: str
) -> None:
    """B2: how a responsible account's cycles issue invoices; its own users or operators.
    A managed account is never invoiced (NOT_ALLOWED_WHILE_ASSOCIATED)."""
    assert mode in MODES, mode
    await accounts.own_or_operator(conn, principal, account_id, ["accountId"])
    await accounts.lock_accounts(conn, account_id)
    if await accounts.trusteeship_link(conn, account_id) is not None:
        raise DomainError(ErrorCode.NOT_ALLOWED_WHILE_ASSOCIATED, ASSOCIATED, ["accountId"])
    upsert = pg_insert(invoice_settings).values(account_id=account_id, mode=mode)
    await conn.execute(upsert.on_conflict_do_update(
        index_elements=[invoice_settings.c.account_id], set_={"mode": upsert.excluded.mode}))


# ---------------------------------------------------------------- bill cycles (B1-B4, H4)


@dataclass(slots=True)
class LineDraft:
    member_id: int | None
    site_id: int | None
    description: str
    amount: Decimal
    discount_percent: Decimal
    charge_ids: list[int]
    bill_to_id: int | None  # H4, for a self-invoiced account: the site's bill-to

    @property
    def discount(self) -> Decimal:
        return discounted(self.amount, self.discount_percent)


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


async def run_bill_cycle(
    conn: AsyncConnection, principal: Principal, *, account_id: int, period_start: date,
    period_end: date, bill_to_id: int | None,
) -> list[int]:
    """B2: issue the invoices of ``account_id`` for the period (the account's own users
    or operators); the ids of the invoices issued, [] when the cycle already ran."""
    await accounts.own_or_operator(conn, principal, account_id, ["accountId"])
    if period_start > period_end:
        raise DomainError(ErrorCode.INVALID_INPUT, "The period ends before it starts.",
                          ["periodEnd"])
    await accounts.lock_accounts(conn, account_id)
    if await accounts.trusteeship_link(conn, account_id) is not None:
        raise DomainError(ErrorCode.NOT_ALLOWED_WHILE_ASSOCIATED,
                          "A managed account is never invoiced itself: its responsible "
                          "account's cycle invoices its charges (B2).", ["accountId"])
    own_bill_tos = await _bill_tos(conn, account_id)
    if bill_to_id is not None and bill_to_id not in own_bill_tos:
        raise NotFound(["billToId"], "bill-to of this account")
    first_run = (await conn.execute(
        pg_insert(bill_cycles).values(account_id=account_id, period_start=period_start,
                                      period_end=period_end)
        .on_conflict_do_nothing().returning(bill_cycles.c.account_id)
    )).first()
    if first_run is None:
        return []
    lines = await _lines(conn, account_id, *_bounds(period_start, period_end))
    if not lines:
        return []
    responsible = await _is_responsible(conn, account_id) or any(
        line.member_id is not None for line in lines)
    drafts = _invoices(lines, responsible=responsible, mode=await _mode(conn, account_id),
                       bill_to_id=bill_to_id, primary_id=_primary(own_bill_tos))
    invoice_ids = await _write(conn, account_id, period_start, period_end, drafts,
                               own_bill_tos)
    await _assert_totals(conn, invoice_ids)
    return invoice_ids


def _bounds(period_start: date, period_end: date) -> tuple[datetime, datetime]:
    """Both dates inclusive: [start 00:00 UTC, day after end 00:00 UTC)."""
    return (datetime.combine(period_start, time(), UTC),
            datetime.combine(period_end + timedelta(days=1), time(), UTC))


def cycle_charges(account_id: Any, since: Any, until: Any) -> Any:
    """B1/U4, as SQL: the charges a cycle of ``account_id`` invoices in [since, until):
    its own charges outside any trusteeship association of its own (those are its
    master's), and its trusteeship members' charges during their association with it
    (activated_at <= occurred_at < ended_at, as F7 settles them). Columns: member_id
    (NULL for its own), id, account_id, site_id, amount."""
    not_invoiced = ~exists().where(invoiced_charges.c.charge_id == charges.c.id)
    in_period = and_(charges.c.occurred_at >= since, charges.c.occurred_at < until)
    own = select(null().cast(BigInteger).label("member_id"), charges.c.id,
                 charges.c.account_id, charges.c.site_id, charges.c.amount).where(
        charges.c.account_id == account_id, in_period, not_invoiced,
        ~exists().where(links.c.member_id == charges.c.account_id, _during(links)))
    managed = select(charges.c.account_id.label("member_id"), charges.c.id,
                     charges.c.account_id, charges.c.site_id, charges.c.amount).select_from(
        links.join(charges, and_(charges.c.account_id == links.c.member_id, _during(links)))
    ).where(links.c.master_id == account_id, in_period, not_invoiced)
    return union_all(own, managed).subquery("cycle_charges")


def _during(link: Any) -> ColumnElement[bool]:
    """The charge occurred while ``link`` was an active trusteeship association."""
    return and_(link.c.type == "TRUSTEESHIP", link.c.activated_at.is_not(None),
                charges.c.occurred_at >= link.c.activated_at,
                or_(link.c.ended_at.is_(None), charges.c.occurred_at < link.c.ended_at))


async def _lines(conn: AsyncConnection, account_id: int, since: datetime, until: datetime
                 ) -> list[LineDraft]:
    """The period's charges grouped by member and site, each group with its discount (B3:
    the account's own overrides; else each member's own; a self-invoiced account's own)."""
    chosen = cycle_charges(literal(account_id), since, until)
    member = account_rows.alias("member")
    own_discount = select(discounts.c.percent).where(
        discounts.c.account_id == account_id).scalar_subquery()
    member_discount = select(discounts.c.percent).where(
        discounts.c.account_id == chosen.c.member_id).scalar_subquery()
    query = (
        select(chosen.c.member_id, chosen.c.site_id, member.c.name.label("member_name"),
               sites.c.name.label("site_name"), sites.c.bill_to_id,
               func.sum(chosen.c.amount).label("amount"),
               func.array_agg(chosen.c.id).label("charge_ids"),
               func.coalesce(own_discount, member_discount, 0).label("percent"))
        .select_from(chosen.outerjoin(member, member.c.id == chosen.c.member_id)
                     .outerjoin(sites, sites.c.id == chosen.c.site_id))
        .group_by(chosen.c.member_id, chosen.c.site_id, member.c.name, sites.c.name,
                  sites.c.bill_to_id)
        .order_by(chosen.c.member_id.nulls_first(), chosen.c.site_id.nulls_first())
    )
    return [
        LineDraft(member_id=row.member_id, site_id=row.site_id,
                  description=_description(row.member_name, row.site_name,
                                           len(row.charge_ids)),
                  amount=row.amount, discount_percent=Decimal(row.percent).quantize(CENT),
                  charge_ids=sorted(row.charge_ids), bill_to_id=row.bill_to_id)
        for row in (await conn.execute(query)).all()
    ]


def _description(member_name: str | None, site_name: str | None, count: int) -> str:
    who = member_name or "Own usage"
    where = f"site {site_name}" if site_name is not None else "no site"
    return f"{who}, {where} ({count} charge{'' if count == 1 else 's'})"[:500]


def _invoices(lines: Sequence[LineDraft], *, responsible: bool, mode: str,
              bill_to_id: int | None, primary_id: int | None) -> list[InvoiceDraft]:
    """B2 and H4: how the lines are split into invoices and where each is addressed."""
    by_key: dict[tuple[int | None, int | None], InvoiceDraft] = {}
    for line in lines:
        if responsible:
            member = line.member_id if mode == "PER_MEMBER" else None
            address = bill_to_id or primary_id
        else:  # self-invoiced: one invoice per bill-to of its sites (unsited: primary)
            member = None
            address = bill_to_id or line.bill_to_id or primary_id
        draft = by_key.setdefault((member, address), InvoiceDraft(member, address))
        draft.lines.append(line)
    return list(by_key.values())


async def _write(conn: AsyncConnection, account_id: int, period_start: date,
                 period_end: date, drafts: Sequence[InvoiceDraft],
                 own_bill_tos: Mapping[int, Any]) -> list[int]:
    invoice_ids: list[int] = list((await conn.execute(
        insert(invoices).returning(invoices.c.id, sort_by_parameter_order=True),
        [{"account_id": account_id, "member_id": draft.member_id,
          "bill_to_id": draft.bill_to_id,
          "bill_to": None if draft.bill_to_id is None
          else _snapshot(own_bill_tos[draft.bill_to_id]),
          "period_start": period_start, "period_end": period_end,
          "subtotal": draft.subtotal, "discount_total": draft.discount_total,
          "total": draft.subtotal - draft.discount_total} for draft in drafts],
    )).scalars())
    lines = [(invoice_id, line) for invoice_id, draft in zip(invoice_ids, drafts, strict=True)
             for line in draft.lines]
    line_ids = list((await conn.execute(
        insert(invoice_lines).returning(invoice_lines.c.id, sort_by_parameter_order=True),
        [{"invoice_id": invoice_id, "member_id": line.member_id, "site_id": line.site_id,
          "description": line.description, "amount": line.amount,
          "discount_percent": line.discount_percent, "discount": line.discount,
          "net": line.amount - line.discount} for invoice_id, line in lines],
    )).scalars())
    charge_ids = [c for _, line in lines for c in line.charge_ids]
    owners = [line_id for line_id, (_, line) in zip(line_ids, lines, strict=True)
              for _ in line.charge_ids]
    written = await conn.execute(
        text("INSERT INTO invoiced_charges (charge_id, line_id) "
             "SELECT * FROM unnest(:charge_ids, :line_ids)").bindparams(
            bindparam("charge_ids", charge_ids, type_=ARRAY(BigInteger)),
            bindparam("line_ids", owners, type_=ARRAY(BigInteger))))
    assert written.rowcount == len(charge_ids), (written.rowcount, len(charge_ids))
    return invoice_ids


async def _assert_totals(conn: AsyncConnection, invoice_ids: Sequence[int]) -> None:
    """B4 after the write: every invoice's totals are the sums of its lines, and its lines'
    amounts the sums of the charges on them (the CHECKs hold each row on its own)."""
    line_sums = select(
        invoice_lines.c.invoice_id, func.sum(invoice_lines.c.amount).label("amount"),
        func.sum(invoice_lines.c.discount).label("discount"),
        func.sum(invoice_lines.c.net).label("net"),
    ).where(invoice_lines.c.invoice_id.in_(invoice_ids)).group_by(
        invoice_lines.c.invoice_id).subquery()
    charge_sums = select(
        invoice_lines.c.invoice_id, func.sum(charges.c.amount).label("amount"),
    ).select_from(invoice_lines.join(invoiced_charges,
                                     invoiced_charges.c.line_id == invoice_lines.c.id)
                  .join(charges, charges.c.id == invoiced_charges.c.charge_id)
    ).where(invoice_lines.c.invoice_id.in_(invoice_ids)).group_by(
        invoice_lines.c.invoice_id).subquery()
    wrong = (await conn.execute(
        select(invoices.c.id)
        .outerjoin(line_sums, line_sums.c.invoice_id == invoices.c.id)
        .outerjoin(charge_sums, charge_sums.c.invoice_id == invoices.c.id)
        .where(invoices.c.id.in_(invoice_ids), or_(
            line_sums.c.amount.is_(None), charge_sums.c.amount.is_(None),
            invoices.c.subtotal != line_sums.c.amount,
            invoices.c.discount_total != line_sums.c.discount,
            invoices.c.total != line_sums.c.net,
            charge_sums.c.amount != line_sums.c.amount))
    )).scalars().all()
    assert not wrong, f"invoice totals differ from their lines or charges: {wrong}"


async def _bill_tos(conn: AsyncConnection, account_id: int) -> dict[int, Any]:
    """The account's bill-tos (H4) by id."""
    rows = (await conn.execute(
        select(bill_tos).where(bill_tos.c.account_id == account_id).order_by(bill_tos.c.id)
    )).all()
    return {row.id: row for row in rows}


def _snapshot(row: Any) -> dict[str, Any]:
    """What the invoice says of its bill-to, kept as issued."""
    return {"name": row.name, "address": row.address, "email": row.email,
            "invoiceTitle": row.invoice_title, "taxId": row.tax_id}


def _primary(own_bill_tos: Mapping[int, Any]) -> int | None:
    return next((key for key, row in own_bill_tos.items() if row.is_primary), None)


async def _is_responsible(conn: AsyncConnection, account_id: int) -> bool:
    """B1: a master with ACTIVE trusteeship members."""
    found = (await conn.execute(select(links.c.id).where(
        links.c.master_id == account_id, links.c.status == "ACTIVE",
        links.c.type == "TRUSTEESHIP").limit(1))).first()
    return found is not None


async def _mode(conn: AsyncConnection, account_id: int) -> str:
    found: str | None = (await conn.execute(select(invoice_settings.c.mode).where(
        invoice_settings.c.account_id == account_id))).scalar_one_or_none()
    return found or DEFAULT_MODE


# ---------------------------------------------------------------- documents


@dataclass(frozen=True, slots=True)
class DocumentLine:
    description: str
    amount: Decimal
    discount_percent: Decimal
    discount: Decimal
    net: Decimal


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


async def invoice_document(conn: AsyncConnection, principal: Principal, invoice_id: int
                           ) -> InvoiceDocument | None:
    """The invoice for its document if the principal sees it now (the finances of the
    invoice's account, P2), else None."""
    account = account_rows.alias("account")
    member = account_rows.alias("member")
    query = (select(invoices, account.c.name.label("account_name"),
                    member.c.name.label("member_name"))
             .join(account, account.c.id == invoices.c.account_id)
             .outerjoin(member, member.c.id == invoices.c.member_id)
             .where(invoices.c.id == invoice_id,
                    sees_finance(principal, invoices.c.account_id)))
    row = (await conn.execute(query)).one_or_none()
    if row is None:
        return None
    lines = (await conn.execute(select(invoice_lines).where(
        invoice_lines.c.invoice_id == invoice_id).order_by(invoice_lines.c.id))).all()
    return InvoiceDocument(
        number=invoice_number(row.id), account_name=row.account_name,
        member_name=row.member_name, bill_to=row.bill_to, period_start=row.period_start,
        period_end=row.period_end, issued_at=row.issued_at,
        lines=[DocumentLine(line.description, line.amount, line.discount_percent,
                            line.discount, line.net) for line in lines],
        subtotal=row.subtotal, discount_total=row.discount_total, total=row.total)


def invoice_number(invoice_id: int) -> str:
    return f"INV-{invoice_id:08d}"
