"""B1-B4, H4, U4: bill cycles.

A bill cycle for an account and a period (dates, inclusive, in UTC) takes the charges it
is responsible for that no invoice has yet (``invoiced_charges`` is keyed by the charge),
groups them into lines by member and site, applies the discounts of B3 and the taxes of
T2, and issues the invoices of its mode (B2), addressed by H4. It runs once per account
and period (``bill_cycles``); totals are checked against their lines and charges after the write
(B4), beside the CHECK constraints on every invoice and line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    MetaData,
    Numeric,
    Select,
    Subquery,
    Table,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.accounts import public as accounts
from accountgraph.billing import auto_pay
from accountgraph.billing.invoices import (
    InvoiceDraft,
    LineDraft,
    assert_totals,
    same_line,
    write_invoices,
)
from accountgraph.billing.models import (
    account_tax_groups,
    bill_cycles,
    discounts,
    invoice_settings,
    invoiced_charges,
    tax_groups,
)
from accountgraph.billing.taxes import RATE_PLACES
from accountgraph.billing.terms import CENT, DEFAULT_MODE
from accountgraph.domain import DomainError, ErrorCode, NotFound, Principal
from accountgraph.funds import public as funds


async def run_bill_cycle(
    conn: AsyncConnection,
    principal: Principal,
    *,
    account_id: int,
    period_start: date,
    period_end: date,
    bill_to_id: int | None,
) -> list[int]:
    """B2: issue the invoices of ``account_id`` for the period (the account's own users
    or operators); the ids of the invoices issued, [] when the cycle already ran."""
    await accounts.own_or_operator(conn, principal, account_id, ["accountId"])
    if period_start > period_end:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "The period ends before it starts.", ["periodEnd"]
        )
    await accounts.lock_accounts(conn, account_id)
    if await accounts.trusteeship_link(conn, account_id) is not None:
        raise DomainError(
            ErrorCode.NOT_ALLOWED_WHILE_ASSOCIATED,
            "A managed account is never invoiced itself: its responsible "
            "account's cycle invoices its charges (B2).",
            ["accountId"],
        )
    own_bill_tos = await accounts.bill_tos_of(conn, account_id)
    if bill_to_id is not None and bill_to_id not in own_bill_tos:
        raise NotFound(["billToId"], "bill-to of this account")
    first_run = (
        await conn.execute(
            pg_insert(bill_cycles)
            .values(account_id=account_id, period_start=period_start, period_end=period_end)
            .on_conflict_do_nothing()
            .returning(bill_cycles.c.account_id)
        )
    ).first()
    if first_run is None:
        return []
    lines = await _lines(conn, account_id, *_bounds(period_start, period_end))
    if not lines:
        return []
    responsible = await accounts.has_trusteeship_members(conn, account_id) or any(
        line.member_id is not None for line in lines
    )
    drafts = _invoices(
        lines,
        responsible=responsible,
        mode=await _mode(conn, account_id),
        bill_to_id=bill_to_id,
        primary_id=_primary(own_bill_tos),
    )
    invoice_ids, written = await write_invoices(
        conn, account_id, period_start, period_end, drafts, own_bill_tos
    )
    await _record_invoiced(conn, written)
    await assert_totals(conn, invoice_ids, staged_charges)
    await auto_pay.after_cycle(conn, account_id, invoice_ids)
    return invoice_ids


def _bounds(period_start: date, period_end: date) -> tuple[datetime, datetime]:
    """Both dates inclusive: [start 00:00 UTC, day after end 00:00 UTC)."""
    return (
        datetime.combine(period_start, time(), UTC),
        datetime.combine(period_end + timedelta(days=1), time(), UTC),
    )


def cycle_charges(account_id: ColumnElement[int], since: datetime, until: datetime) -> Subquery:
    """B1/U4, as SQL: the charges a cycle of ``account_id`` invoices in [since, until): the
    charges it answers for (``funds.responsible_charges``: its own outside a trusteeship
    association of its own, its trusteeship members' during their association with it)
    that no invoice has yet. Columns: member_id (NULL for its own), id, account_id,
    site_id, amount."""
    return funds.responsible_charges(
        account_id, since, until, where=_not_invoiced, name="cycle_charges"
    )


def _not_invoiced(charge_id: ColumnElement[int]) -> ColumnElement[bool]:
    return ~exists().where(invoiced_charges.c.charge_id == charge_id)


async def _lines(
    conn: AsyncConnection, account_id: int, since: datetime, until: datetime
) -> list[LineDraft]:
    """The period's charges grouped by member and site, each group with its discount (B3:
    the account's own overrides; else each member's own; a self-invoiced account's own)
    and its tax (T2), both rounded half-up per line in SQL. The same statement stages the
    charges it grouped (``cycle_charges_staged``, this transaction's only), so that they
    and no others go on the lines, whatever commits meanwhile."""
    await conn.execute(text(STAGE_DDL))
    chosen = select(cycle_charges(literal(account_id), since, until)).cte("chosen")
    chosen = chosen.prefix_with("MATERIALIZED")
    staged = (
        insert(staged_charges)
        .from_select(
            ["charge_id", "member_id", "site_id", "amount"],
            select(chosen.c.id, chosen.c.member_id, chosen.c.site_id, chosen.c.amount),
        )
        .cte("staged")
    )
    line = _grouped(account_id, chosen).subquery("line")
    discount = func.round(line.c.amount * line.c.percent / 100, 2)
    tax = func.round((line.c.amount - discount) * line.c.tax_rate / 100, 2)
    query = (
        select(line, discount.label("discount"), tax.label("tax"))
        .add_cte(staged)
        .order_by(line.c.member_id.nulls_first(), line.c.site_id.nulls_first())
    )
    drafts = []
    for row in (await conn.execute(query)).all():
        draft = LineDraft(
            member_id=row.member_id,
            site_id=row.site_id,
            description=_description(row.member_name, row.site_name, row.charges),
            amount=row.amount,
            discount_percent=Decimal(row.percent).quantize(CENT),
            charge_count=row.charges,
            bill_to_id=row.bill_to_id,
            tax_rate=Decimal(row.tax_rate).quantize(RATE_PLACES),
            tax=row.tax,
        )
        assert draft.discount == row.discount, (draft.discount, row.discount)  # B3 half-up
        drafts.append(draft)
    return drafts


# The charges a cycle grouped into its lines, until its transaction ends: a temporary
# table (each connection its own, emptied at commit and gone at rollback).
STAGE_DDL = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS cycle_charges_staged "
    "(charge_id bigint NOT NULL, member_id bigint, site_id bigint, amount numeric NOT NULL) "
    "ON COMMIT DELETE ROWS"
)
staged_charges = Table(
    "cycle_charges_staged",
    MetaData(),
    Column("charge_id", BigInteger, nullable=False),
    Column("member_id", BigInteger),
    Column("site_id", BigInteger),
    Column("amount", Numeric, nullable=False),
)


async def _record_invoiced(conn: AsyncConnection, lines: Sequence[tuple[int, LineDraft]]) -> None:
    """Every staged charge on its line (``invoiced_charges``), in one statement: a line is
    its member and site."""
    keys = _unnest_lines(lines)
    written = await conn.execute(
        insert(invoiced_charges).from_select(
            ["charge_id", "line_id"],
            select(staged_charges.c.charge_id, keys.c.line_id).join(
                keys, same_line(staged_charges, keys)
            ),
        )
    )
    expected = sum(line.charge_count for _, line in lines)
    assert written.rowcount == expected, (written.rowcount, expected)


def _unnest_lines(lines: Sequence[tuple[int, LineDraft]]) -> Any:
    """The written lines as rows (line_id, member_id, site_id)."""

    def ids(name: str, values: list[int | None]) -> Any:
        return bindparam(name, values, type_=ARRAY(BigInteger))

    return (
        func.unnest(
            ids("line_ids", [line_id for line_id, _ in lines]),
            ids("member_ids", [line.member_id for _, line in lines]),
            ids("site_ids", [line.site_id for _, line in lines]),
        )
        .table_valued("line_id", "member_id", "site_id")
        .render_derived(name="line_keys")
    )


def _grouped(account_id: int, chosen: Any) -> Select[Any]:
    """The lines before rounding: amount, discount percent and tax rate per member and
    site. T2's rate: a rolled-up line (a managed account's) takes the responsible
    account's default tax group, never the member's; an own line its site's tax group,
    else the account's default; none: 0."""
    member = accounts.account_names("member")
    site = accounts.site_bill_tos("site")
    site_tax = accounts.site_tax_groups("site_tax")
    site_group = tax_groups.alias("site_group")
    own_discount = (
        select(discounts.c.percent).where(discounts.c.account_id == account_id).scalar_subquery()
    )
    member_discount = (
        select(discounts.c.percent)
        .where(discounts.c.account_id == chosen.c.member_id)
        .scalar_subquery()
    )
    own_rate = (
        select(tax_groups.c.rate)
        .join(account_tax_groups, account_tax_groups.c.tax_group_id == tax_groups.c.id)
        .where(account_tax_groups.c.account_id == account_id)
        .scalar_subquery()
    )
    rate = case(
        (chosen.c.member_id.is_(None), func.coalesce(site_group.c.rate, own_rate, 0)),
        else_=func.coalesce(own_rate, 0),
    )
    return (
        select(
            chosen.c.member_id,
            chosen.c.site_id,
            member.c.name.label("member_name"),
            site.c.name.label("site_name"),
            site.c.bill_to_id,
            func.sum(chosen.c.amount).label("amount"),
            func.count().label("charges"),
            func.coalesce(own_discount, member_discount, 0).label("percent"),
            rate.label("tax_rate"),
        )
        .select_from(
            chosen.outerjoin(member, member.c.id == chosen.c.member_id)
            .outerjoin(site, site.c.id == chosen.c.site_id)
            .outerjoin(site_tax, site_tax.c.id == chosen.c.site_id)
            .outerjoin(site_group, site_group.c.code == site_tax.c.tax_group)
        )
        .group_by(
            chosen.c.member_id,
            chosen.c.site_id,
            member.c.name,
            site.c.name,
            site.c.bill_to_id,
            site_group.c.rate,
        )
    )


def _description(member_name: str | None, site_name: str | None, count: int) -> str:
    who = member_name or "Own usage"
    where = f"site {site_name}" if site_name is not None else "no site"
    return f"{who}, {where} ({count} charge{'' if count == 1 else 's'})"[:500]


def _invoices(
    lines: Sequence[LineDraft],
    *,
    responsible: bool,
    mode: str,
    bill_to_id: int | None,
    primary_id: int | None,
) -> list[InvoiceDraft]:
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


def _primary(own_bill_tos: Mapping[int, Any]) -> int | None:
    return next((key for key, row in own_bill_tos.items() if row.is_primary), None)


async def _mode(conn: AsyncConnection, account_id: int) -> str:
    found: str | None = (
        await conn.execute(
            select(invoice_settings.c.mode).where(invoice_settings.c.account_id == account_id)
        )
    ).scalar_one_or_none()
    return found or DEFAULT_MODE
