"""C6: a cost report drawn as an SVG bar chart, at a signed same-host URL.

``CostReport.chartUrl`` hands out ``/charts/costs.svg?account=…&since=…&until=…&groupBy=…
[&tagKey=…][&memberIds=…]&token=…``. As for invoice documents (B4), the token is an
HMAC-SHA256 (key: ACCOUNTGRAPH_DOCUMENT_SECRET, else a random key of this process) over the
report's parameters, the principal it was issued to and its expiry; the route checks it
(or, instead of one, an ``Authorization: Bearer`` header) and computes the report again as
that principal sees it now (C2: cost center, P2 finances, U5). Anything else is a 404.

The chart is plain SVG built here (no browser, no plotting library): one bar per time
bucket (or per value of the first dimension when there is no time dimension), stacked by
the other dimension, a labelled y axis of amounts, the buckets on the x axis and a legend;
800 x 400 by default. Each segment carries ``data-bucket``, ``data-series`` and
``data-amount`` so that it can be checked.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from decimal import ROUND_CEILING, Decimal
from typing import Any
from urllib.parse import urlencode
from xml.sax.saxutils import escape, quoteattr

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from accountgraph.accounts import public as accounts
from accountgraph.api import ids
from accountgraph.config import Settings
from accountgraph.costs.reports import TIME_DIMENSIONS, Report, ReportRequest, cost_report, request
from accountgraph.domain import ZERO, DomainError, Principal, PrincipalKind

PATH = "/charts/costs.svg"
WIDTH, HEIGHT = 800, 400
LEFT, RIGHT, TOP, BOTTOM = 80, 190, 30, 60
PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
)  # fmt: skip
OTHERS = "#d3d3d3"
LABEL_PX = 74  # the width an x label needs (an ISO date at 11 px)
MAX_SERIES = len(PALETTE)  # the rest stacks as "others"
_PROCESS_KEY = secrets.token_bytes(32)
_HEADERS = {
    "Cache-Control": "private, no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
}
Resolve = Callable[[AsyncEngine, Settings, str | None], Awaitable[Principal | None]]


# ---------------------------------------------------------------- signed links


def _key(settings: Settings) -> bytes:
    if settings.document_secret:
        return hashlib.sha256(b"accountgraph-charts:" + settings.document_secret.encode()).digest()
    return _PROCESS_KEY


def _subject(principal: Principal) -> str:
    return "o" if principal.is_operator else f"a{principal.account_id}"


def _params(wanted: ReportRequest) -> dict[str, str]:
    params = {
        "account": ids.encode("Account", wanted.account_id),
        "since": wanted.since.isoformat(),
        "until": wanted.until.isoformat(),
        "groupBy": ",".join(wanted.group_by),
    }
    if wanted.tag_key is not None:
        params["tagKey"] = wanted.tag_key
    if wanted.member_ids is not None:
        params["memberIds"] = ",".join(ids.encode("Account", m) for m in wanted.member_ids)
    return params


def _signature(settings: Settings, params: dict[str, str], subject: str, expires: int) -> str:
    canonical = urlencode(sorted(params.items()))
    message = f"cost-chart:{canonical}:{subject}:{expires}".encode()
    digest = hmac.new(_key(settings), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def chart_url(
    settings: Settings, principal: Principal, wanted: ReportRequest, *, now_s: float | None = None
) -> str:
    """C6: the signed link to the chart of this report, for ``principal``."""
    expires = int(now_s if now_s is not None else time.time()) + settings.document_url_ttl_s
    params = _params(wanted)
    subject = _subject(principal)
    token = f"{subject}.{expires}.{_signature(settings, params, subject, expires)}"
    return f"{PATH}?{urlencode({**params, 'token': token})}"


def verify(
    settings: Settings, token: str, params: dict[str, str], *, now_s: float | None = None
) -> Principal | None:
    subject, _, rest = token.partition(".")
    expires_text, _, signature = rest.partition(".")
    if not expires_text.isdigit() or len(expires_text) > 12:
        return None
    if subject != "o" and not (subject[:1] == "a" and subject[1:].isdigit()):
        return None
    expires = int(expires_text)
    if expires <= (now_s if now_s is not None else time.time()):
        return None
    expected = _signature(settings, params, subject, expires)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        return None
    if subject == "o":
        return Principal(PrincipalKind.OPERATOR, None, "operator:chart-link")
    return Principal(PrincipalKind.ACCOUNT_USER, int(subject[1:]), "chart-link")


def parse(params: dict[str, str]) -> ReportRequest | None:
    """The report a chart URL names, or None if it names none."""
    try:
        account_id = ids.decode_as(params.get("account", ""), "Account")
        dims = [d for d in params.get("groupBy", "").split(",") if d]
        member_text = params.get("memberIds")
        member_ids = None
        if member_text is not None:
            member_ids = [ids.decode_as(m, "Account") for m in member_text.split(",") if m]
            if any(m is None for m in member_ids):
                return None
        if account_id is None:
            return None
        return request(
            account_id,
            datetime.fromisoformat(params["since"]),
            datetime.fromisoformat(params["until"]),
            dims,
            params.get("tagKey"),
            [m for m in member_ids if m is not None] if member_ids is not None else None,
        )
    except (KeyError, ValueError, DomainError):
        return None


# ---------------------------------------------------------------- the route


def cost_chart_route(engine: AsyncEngine, settings: Settings, resolve: Resolve) -> Route:
    """``GET /charts/costs.svg?…``; ``resolve`` turns an Authorization header into a
    principal (the gateway's own)."""

    async def endpoint(request: Request) -> Response:
        params = {k: v for k, v in request.query_params.items() if k != "token"}
        wanted = parse(params)
        if wanted is None:
            return _not_found()
        token = request.query_params.get("token")
        if token is not None:
            principal = verify(settings, token, _params(wanted))
        else:
            principal = await resolve(engine, settings, request.headers.get("authorization"))
        if principal is None:
            return _not_found()
        async with engine.connect() as conn:
            report = await cost_report(conn, principal, wanted)
            if report is None:
                return _not_found()
            names = await _names(conn, report)
        return Response(render_svg(report, names), media_type="image/svg+xml", headers=_HEADERS)

    return Route(PATH, endpoint, methods=["GET"])


def _not_found() -> Response:
    return PlainTextResponse("Not Found", status_code=404, headers=_HEADERS)


async def _names(conn: Any, report: Report) -> dict[tuple[str, int], str]:
    """Names of the accounts and sites the report's keys are (the viewer sees them: they
    are in its report)."""
    wanted: dict[str, set[int]] = {"MEMBER": set(), "SITE": set()}
    for group in report.groups:
        for dimension, key in zip(report.request.group_by, group.keys, strict=True):
            if dimension in wanted and key is not None:
                wanted[dimension].add(int(key))
    found: dict[tuple[str, int], str] = {}
    if wanted["MEMBER"]:
        account = accounts.account_names()
        for row in await conn.execute(
            select(account.c.id, account.c.name).where(account.c.id.in_(wanted["MEMBER"]))
        ):
            found["MEMBER", int(row.id)] = row.name
    if wanted["SITE"]:
        site = accounts.site_bill_tos()
        for row in await conn.execute(
            select(site.c.id, site.c.name).where(site.c.id.in_(wanted["SITE"]))
        ):
            found["SITE", int(row.id)] = row.name
    return found


# ---------------------------------------------------------------- drawing


def _label(dimension: str, key: Any, names: dict[tuple[str, int], str]) -> str:
    if key is None:
        return "(none)"
    if isinstance(key, date):
        return key.isoformat()
    if dimension in ("MEMBER", "SITE"):
        return names.get((dimension, int(key)), f"#{key}")
    return str(key)


def _nice_step(top: Decimal) -> Decimal:
    """A round tick step: 1, 2 or 5 times a power of ten, about five ticks up to ``top``."""
    raw = top / 5 if top > 0 else Decimal(1)
    power = Decimal(10) ** (raw.adjusted())
    for factor in (1, 2, 5, 10):
        if power * factor >= raw:
            return power * factor
    return power * 10  # pragma: no cover


def layout(
    report: Report,
) -> tuple[str, str | None, list[Any], list[Any], dict[tuple[Any, Any], Decimal]]:
    """The bar dimension, the stacking dimension, the buckets in order, the series in
    order and the amount per (bucket, series)."""
    dims = report.request.group_by
    bar_index = next((i for i, d in enumerate(dims) if d in TIME_DIMENSIONS), 0)
    stack_index = None if len(dims) == 1 else 1 - bar_index
    buckets: list[Any] = []
    series: list[Any] = []
    amounts: dict[tuple[Any, Any], Decimal] = {}
    for group in report.groups:
        bucket = group.keys[bar_index]
        part = None if stack_index is None else group.keys[stack_index]
        if bucket not in buckets:
            buckets.append(bucket)
        if part not in series:
            series.append(part)
        amounts[bucket, part] = amounts.get((bucket, part), ZERO) + group.amount
    buckets.sort(key=lambda k: (k is None, k))
    series.sort(key=lambda k: (k is None, k))
    return (
        dims[bar_index],
        None if stack_index is None else dims[stack_index],
        buckets,
        series,
        amounts,
    )


def render_svg(
    report: Report,
    names: dict[tuple[str, int], str] | None = None,
    *,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> str:
    """C6: the report as an SVG stacked bar chart."""
    names = names or {}
    bar_dim, stack_dim, buckets, series, amounts = layout(report)
    shown = series[:MAX_SERIES]
    colors = {part: PALETTE[i] for i, part in enumerate(shown)}
    totals = [sum((amounts.get((b, s), ZERO) for s in series), ZERO) for b in buckets]
    top = max(totals, default=ZERO)
    step = _nice_step(top)
    ticks = max(1, int((top / step).to_integral_value(rounding=ROUND_CEILING)))
    axis_top = step * ticks if top > 0 else step * 5
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM
    scale = Decimal(plot_h) / axis_top
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f"<title>Costs {escape(report.request.since.date().isoformat())} to "
        f"{escape(report.request.until.date().isoformat())}: total {report.total}</title>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
    ]
    # y axis, ticks and grid
    out.append('<g class="y-axis">')
    tick = ZERO
    while tick <= axis_top:
        y = TOP + plot_h - float(tick * scale)
        out.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.2f}" y2="{y:.2f}" stroke="#e5e5e5"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.2f}" text-anchor="end">{tick}</text>'
        )
        tick += step
    out.append(
        f'<text class="axis-label" x="16" y="{TOP + plot_h / 2:.2f}" text-anchor="middle" '
        f'transform="rotate(-90 16 {TOP + plot_h / 2:.2f})">Amount</text></g>'
    )
    out.append(
        f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + plot_h}" stroke="#333"/>'
        f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{TOP + plot_h}" y2="{TOP + plot_h}" '
        'stroke="#333"/>'
    )
    # bars
    slot = plot_w / max(len(buckets), 1)
    bar_w = max(slot * 0.7, 1.0)
    label_every = max(1, math.ceil(LABEL_PX / slot))  # labels never overlap
    for index, bucket in enumerate(buckets):
        x = LEFT + slot * index + (slot - bar_w) / 2
        label = _label(bar_dim, bucket, names)
        out.append(f'<g class="bar" data-bucket={quoteattr(label)} data-total="{totals[index]}">')
        base = float(TOP + plot_h)
        for part in series:
            value = amounts.get((bucket, part))
            if not value:
                continue
            h = float(value * scale)
            base -= h
            color = colors.get(part, OTHERS)
            series_label = "" if stack_dim is None else _label(stack_dim, part, names)
            out.append(
                f'<rect x="{x:.2f}" y="{base:.4f}" width="{bar_w:.2f}" height="{h:.4f}" '
                f'fill="{color}" data-series={quoteattr(series_label)} data-amount="{value}">'
                f"<title>{escape(label)} {escape(series_label)}: {value}</title></rect>"
            )
        out.append("</g>")
        if index % label_every == 0:
            cx = x + bar_w / 2
            out.append(
                f'<text class="x-label" x="{cx:.2f}" y="{TOP + plot_h + 14}" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    out.append(
        f'<text class="axis-label" x="{LEFT + plot_w / 2:.2f}" y="{height - 12}" '
        f'text-anchor="middle">{escape(bar_dim.title())}</text>'
    )
    # legend
    if stack_dim is not None:
        lx = LEFT + plot_w + 16
        out.append(
            f'<g class="legend"><text x="{lx}" y="{TOP}" font-weight="bold">'
            f"{escape(stack_dim.title())}</text>"
        )
        entries = [(_label(stack_dim, part, names), colors[part]) for part in shown]
        if len(series) > len(shown):
            entries.append(("others", OTHERS))
        for i, (text, color) in enumerate(entries):
            y = TOP + 16 + i * 18
            out.append(
                f'<rect x="{lx}" y="{y - 10}" width="12" height="12" fill="{color}"/>'
                f'<text x="{lx + 18}" y="{y}">{escape(text[:26])}</text>'
            )
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out)
