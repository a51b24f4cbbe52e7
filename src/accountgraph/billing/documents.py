"""B4, T2 documents: an invoice as a printable HTML page or a PDF, at a signed same-host URL.

``Invoice.documentUrl`` hands out ``/documents/invoices/<invoice id>.<pdf|html>?token=…``.
The token is an HMAC-SHA256 (key: ACCOUNTGRAPH_DOCUMENT_SECRET, else a random key of this
process) over the invoice, the principal it was issued to and its expiry. The route checks
the token (or, instead of one, an ``Authorization: Bearer`` header) and then checks again
that the principal still sees the invoice (P2: the finances of its account). Anything else
is a 404 that says nothing about whether the invoice exists.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from accountgraph.api import ids
from accountgraph.billing import invoices
from accountgraph.billing.invoices import InvoiceDocument
from accountgraph.config import Settings
from accountgraph.domain import Principal, PrincipalKind

PATH = "/documents/invoices"
FORMATS = {"PDF": "pdf", "HTML": "html"}
_EXTENSIONS = {extension: name for name, extension in FORMATS.items()}
_PROCESS_KEY = secrets.token_bytes(32)  # the default: valid only in this process
_SUBJECT = re.compile(r"^(o|a[1-9][0-9]{0,17})$")
_HEADERS = {
    "Cache-Control": "private, no-store",
    "Referrer-Policy": "no-referrer",  # the token is in the URL
    "X-Content-Type-Options": "nosniff",
}

Resolve = Callable[[AsyncEngine, Settings, str | None], Awaitable[Principal | None]]


# ---------------------------------------------------------------- signed links


def _key(settings: Settings) -> bytes:
    if settings.document_secret:
        return hashlib.sha256(
            b"accountgraph-documents:" + settings.document_secret.encode()
        ).digest()
    return _PROCESS_KEY


def _subject(principal: Principal) -> str:
    return "o" if principal.is_operator else f"a{principal.account_id}"


def _signature(settings: Settings, invoice_id: int, subject: str, expires: int) -> str:
    message = f"invoice-document:{invoice_id}:{subject}:{expires}".encode()
    digest = hmac.new(_key(settings), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def sign(
    settings: Settings, principal: Principal, invoice_id: int, *, now_s: float | None = None
) -> str:
    """A token for ``principal`` to fetch the invoice's document until it expires."""
    expires = int(now_s if now_s is not None else time.time()) + settings.document_url_ttl_s
    subject = _subject(principal)
    return f"{subject}.{expires}.{_signature(settings, invoice_id, subject, expires)}"


def verify(
    settings: Settings, token: str, invoice_id: int, *, now_s: float | None = None
) -> Principal | None:
    """The principal a valid, unexpired token for this invoice was issued to, or None."""
    subject, _, rest = token.partition(".")
    expires_text, _, signature = rest.partition(".")
    if not _SUBJECT.match(subject) or not expires_text.isdigit() or len(expires_text) > 12:
        return None
    expires = int(expires_text)
    if expires <= (now_s if now_s is not None else time.time()):
        return None
    expected = _signature(settings, invoice_id, subject, expires)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        return None
    if subject == "o":
        return Principal(PrincipalKind.OPERATOR, None, "operator:document-link")
    return Principal(PrincipalKind.ACCOUNT_USER, int(subject[1:]), "document-link")


def document_url(settings: Settings, principal: Principal, invoice_id: int, format: str) -> str:
    global_id = ids.encode("Invoice", invoice_id)
    token = sign(settings, principal, invoice_id)
    return f"{PATH}/{global_id}.{FORMATS[format]}?token={token}"


# ---------------------------------------------------------------- the route


def invoice_document_route(engine: AsyncEngine, settings: Settings, resolve: Resolve) -> Route:
    """``GET /documents/invoices/<id>.<pdf|html>``; ``resolve`` turns an Authorization
    header into a principal (the gateway's own, so both auth paths agree)."""

    async def endpoint(request: Request) -> Response:
        global_id, dot, extension = request.path_params["name"].rpartition(".")
        invoice_id = ids.decode_as(global_id, "Invoice") if dot else None
        format = _EXTENSIONS.get(extension)
        if invoice_id is None or format is None:
            return _not_found()
        token = request.query_params.get("token")
        if token is not None:
            principal = verify(settings, token, invoice_id)
        else:
            principal = await resolve(engine, settings, request.headers.get("authorization"))
        if principal is None:
            return _not_found()
        async with engine.connect() as conn:
            document = await invoices.invoice_document(conn, principal, invoice_id)
        if document is None:
            return _not_found()
        filename = f"{document.number}.{FORMATS[format]}"
        headers = {**_HEADERS, "Content-Disposition": f'inline; filename="{filename}"'}
        if format == "HTML":
            headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
            return HTMLResponse(render_html(document), headers=headers)
        pdf = await run_in_threadpool(render_pdf, document)
        return Response(pdf, media_type="application/pdf", headers=headers)

    return Route(PATH + "/{name}", endpoint, methods=["GET"])


def _not_found() -> Response:
    return PlainTextResponse("Not Found", status_code=404, headers=_HEADERS)


# ---------------------------------------------------------------- rendering


def _money(value: Decimal) -> str:
    return f"{value:,.2f}"


def _rate(value: Decimal) -> str:
    """T2: a tax rate with its places (8.875), at least two (8.00)."""
    text = f"{value.normalize():f}"
    whole, _, places = text.partition(".")
    return f"{whole}.{places.ljust(2, '0')}"


def _bill_to_lines(document: InvoiceDocument) -> list[str]:
    bill_to = document.bill_to or {}
    lines = [bill_to.get("invoiceTitle") or bill_to.get("name") or document.account_name]
    if bill_to.get("invoiceTitle") and bill_to.get("name"):
        lines.append(f"Attn: {bill_to['name']}")
    lines += [str(bill_to[key]) for key in ("address", "email") if bill_to.get(key)]
    if bill_to.get("taxId"):
        lines.append(f"Tax id: {bill_to['taxId']}")
    return lines


def _facts(document: InvoiceDocument) -> list[tuple[str, str]]:
    facts = [("Invoice", document.number), ("Account", document.account_name)]
    if document.member_name:
        facts.append(("Member", document.member_name))
    facts += [
        ("Period", f"{document.period_start.isoformat()} to {document.period_end.isoformat()}"),
        ("Issued", document.issued_at.strftime("%Y-%m-%d %H:%M UTC")),
    ]
    return facts


_STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #111;
       max-width: 60rem; margin: 2rem auto; padding: 0 1.5rem; }
h1 { font-size: 1.6rem; margin: 0 0 1rem; }
.head { display: flex; justify-content: space-between; gap: 2rem; margin-bottom: 1.5rem; }
dl { display: grid; grid-template-columns: auto auto; gap: .15rem 1rem; margin: 0; }
dt { color: #555; } dd { margin: 0; }
.bill-to p { margin: 0; }
table { width: 100%; border-collapse: collapse; }
th, td { padding: .35rem .5rem; border-bottom: 1px solid #ddd; text-align: left; }
th { border-bottom: 2px solid #111; font-weight: 600; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tfoot td { border: 0; } tfoot tr.total td { font-weight: 700; border-top: 2px solid #111; }
@media print { body { margin: 0; max-width: none; } @page { margin: 15mm; } }
"""


def render_html(document: InvoiceDocument) -> str:
    """A clean printable page; every value escaped."""
    e = html.escape
    facts = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in _facts(document))
    bill_to = "".join(f"<p>{e(line)}</p>" for line in _bill_to_lines(document))
    rows = "".join(
        f"<tr><td>{e(line.description)}</td><td class=num>{_money(line.amount)}</td>"
        f"<td class=num>{line.discount_percent:.2f}%</td>"
        f"<td class=num>{_money(line.discount)}</td><td class=num>{_money(line.net)}</td>"
        f"<td class=num>{_rate(line.tax_rate)}%</td><td class=num>{_money(line.tax)}</td></tr>"
        for line in document.lines
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{e(document.number)}</title><style>{_STYLE}</style></head>
<body>
<h1>Invoice {e(document.number)}</h1>
<div class="head"><dl>{facts}</dl>
<div class="bill-to"><strong>Bill to</strong>{bill_to}</div></div>
<table>
<thead><tr><th>Description</th><th class=num>Amount</th><th class=num>Discount %</th>
<th class=num>Discount</th><th class=num>Net</th><th class=num>Tax %</th>
<th class=num>Tax</th></tr></thead>
<tbody>{rows}</tbody>
<tfoot>
<tr><td colspan=6 class=num>Subtotal</td><td class=num>{_money(document.subtotal)}</td></tr>
<tr><td colspan=6 class=num>Discount</td>
<td class=num>{_money(document.discount_total)}</td></tr>
<tr><td colspan=6 class=num>Tax</td>
<td class=num>{_money(document.tax_total)}</td></tr>
<tr class="total"><td colspan=6 class=num>Total</td>
<td class=num>{_money(document.total)}</td></tr>
</tfoot></table>
</body></html>
"""


def _latin1(text: Any) -> str:
    """The PDF's built-in fonts cover Latin-1; anything else prints as '?'."""
    return str(text).encode("latin-1", "replace").decode("latin-1")


def _fit(pdf: Any, text: str, width: float) -> str:
    """The text, shortened with '...' until it fits ``width`` (mm) in the current font."""
    if pdf.get_string_width(text) <= width:
        return text
    while text and pdf.get_string_width(text + "...") > width:
        text = text[:-1]
    return text + "..."


def render_pdf(document: InvoiceDocument) -> bytes:
    from fpdf import FPDF  # a few hundred ms to import: only where a PDF is asked for

    pdf = FPDF(format="A4")
    pdf.set_title(document.number)
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", style="B", size=16)
    pdf.cell(0, 10, _latin1(f"Invoice {document.number}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    for label, value in _facts(document):
        pdf.cell(30, 6, _latin1(label))
        pdf.cell(0, 6, _latin1(value), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    pdf.set_font("Helvetica", style="B", size=10)
    pdf.cell(0, 6, "Bill to", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    for line in _bill_to_lines(document):
        pdf.multi_cell(0, 5, _latin1(line), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    widths = (60, 24, 20, 22, 24, 18, 22)
    pdf.set_font("Helvetica", style="B", size=9)
    for width, title, align in zip(
        widths,
        ("Description", "Amount", "Discount %", "Discount", "Net", "Tax %", "Tax"),
        "LRRRRRR",
        strict=True,
    ):
        pdf.cell(width, 7, title, border="B", align=align)
    pdf.ln()
    pdf.set_font("Helvetica", size=9)
    for row in document.lines:
        values = (
            row.description,
            _money(row.amount),
            f"{row.discount_percent:.2f}%",
            _money(row.discount),
            _money(row.net),
            f"{_rate(row.tax_rate)}%",
            _money(row.tax),
        )
        for width, value, align in zip(widths, values, "LRRRRRR", strict=True):
            pdf.cell(width, 6, _fit(pdf, _latin1(value), width - 2), align=align)
        pdf.ln()
    pdf.ln(2)
    for label, total, style in (
        ("Subtotal", document.subtotal, ""),
        ("Discount", document.discount_total, ""),
        ("Tax", document.tax_total, ""),
        ("Total", document.total, "B"),
    ):
        pdf.set_font("Helvetica", style=style, size=10)
        pdf.cell(sum(widths[:-1]), 6, label, align="R")
        pdf.cell(widths[-1], 6, _money(total), align="R", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
