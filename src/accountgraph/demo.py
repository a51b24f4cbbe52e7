"""Demo data: the enterprise of seed 001's sharing example, and CLI token creation.

Master "Account-M" with trusteeship members "Account-sub1" ... "Account-sub5", each with
bill-tos and sites, a STANDARD tax group, a stored value card and a taxed invoice (T1,
T2, W1). Loading twice reuses what exists and only prints new tokens.

The master has cost center on (U6: so have its members), three months of its own charges
tagged by product, team and environment, a few of its members' since the association,
and two budgets (C1-C3): ``costs`` and its chart show a real report at once.

Money to move (F3, F6): the master's cash from a payment, a credit line, cash allocated to
sub1 and sub2 and credit to sub3. Alerts (A1, A4): sub1 and sub2 alert below 500.00 of
available quota and the master below 5,000.00, on email and SMS channels; sub1 holds 1,000
of transferred cash, so a charge of 600 on it (``examples/record-charge.graphql``) fires a
LOW_QUOTA notification at once. The ids are the same in every fresh demo (``Account-M`` is
``Account:1``, ``Account-subN`` is ``Account:N+1``): ``examples/*.variables.json`` use them.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from accountgraph import jobs  # noqa: F401  (every area's ports: U1 for the invitations)
from accountgraph.accounts import bill_tos, details, links, sites, tokens
from accountgraph.accounts.models import accounts
from accountgraph.accounts.models import links as link_rows
from accountgraph.accounts.models import sites as sites_rows
from accountgraph.alerts import service as alerts
from accountgraph.api import ids
from accountgraph.billing import cycles, stored_value, taxes
from accountgraph.config import Settings
from accountgraph.costs import budgets
from accountgraph.db import transaction
from accountgraph.domain import Principal, PrincipalKind
from accountgraph.funds import charges, payments, transfers
from accountgraph.funds.kinds import DisbursementMethod

OPERATOR = Principal(PrincipalKind.OPERATOR, None, "operator:demo")
ALL_PERMISSIONS = ["SYNC_CREDIT_CONTROL", "VIEW_FINANCE", "MANAGE_INVOICES"]
CITIES = ["Hangzhou", "Shanghai", "Beijing", "Shenzhen", "Chengdu", "Singapore"]


async def load_demo(engine: AsyncEngine) -> dict[str, str]:
    """Create the demo enterprise if missing; return fresh tokens for operator, master and
    the first member."""
    async with transaction(engine) as conn:
        master_id = await _find(conn, "Account-M")
        if master_id is None:
            master_id = await _create_enterprise(conn)
        member_id = await _find(conn, "Account-sub1")
        assert member_id is not None
        return {
            "operator": await tokens.create_token(
                conn, OPERATOR, account_id=None, name="demo operator"
            ),
            "master": await tokens.create_token(
                conn, OPERATOR, account_id=master_id, name="demo master"
            ),
            "member": await tokens.create_token(
                conn, OPERATOR, account_id=member_id, name="demo member"
            ),
        }


async def _create_enterprise(conn: AsyncConnection) -> int:
    master_id = await details.create_account(
        conn,
        {
            "name": "Account-M",
            "display_name": "Enterprise M",
            "branch": "Hangzhou",
            "terms": "NET30",
            "salesperson": "Li Wei",
        },
    )
    hq = await bill_tos.add_bill_to(
        conn,
        OPERATOR,
        master_id,
        {
            "name": "Enterprise M HQ",
            "address": "1 West Lake Rd, Hangzhou",
            "email": "finance@enterprise-m.example",
            "invoice_title": "Enterprise M Co., Ltd.",
            "tax_id": "91330100MA27XXXX0M",
        },
    )
    await bill_tos.add_bill_to(
        conn,
        OPERATOR,
        master_id,
        {
            "name": "Enterprise M Procurement",
            "email": "procurement@enterprise-m.example",
            "invoice_title": "Enterprise M Co., Ltd.",
        },
    )
    await sites.add_site(
        conn, OPERATOR, master_id, {"name": "M Headquarters", "branch": "Hangzhou"}, bill_to_id=hq
    )
    # T1: the members' sites name the STANDARD tax group; the master's default taxes the
    # members' rolled-up lines (T2).
    await taxes.create_tax_group(conn, OPERATOR, code="STANDARD", name="Standard", rate="6")
    await taxes.set_account_tax_group(conn, OPERATOR, account_id=master_id, code="STANDARD")
    await conn.execute(  # U6: before the associations, so that the members get it too
        update(accounts).where(accounts.c.id == master_id).values(cost_center_enabled=True)
    )
    # F8, F6: money to settle the members' charges and to allocate (F3) from.
    await payments.record_payment(conn, OPERATOR, account_id=master_id, amount=Decimal(20_000))
    await transfers.set_credit_line(conn, OPERATOR, master_id=master_id, amount=Decimal(10_000))
    for number in range(1, 6):
        await _create_member(conn, master_id, number)
    await _taxed_invoice(conn, master_id)
    await _cost_center(conn, master_id, hq_site=await _site_of(conn, master_id))
    await _funds_and_alerts(conn, master_id)
    return master_id


async def _funds_and_alerts(conn: AsyncConnection, master_id: int) -> None:
    """F3, A1, A4: allocations to three members (cash, credit), and quota alerts on
    email and SMS channels (deliveries fail, saying why, until ACCOUNTGRAPH_SMTP_HOST and
    ACCOUNTGRAPH_SMS_GATEWAY_URL are set; the subscription gets them regardless)."""
    sub = {number: await _find(conn, f"Account-sub{number}") for number in (1, 2, 3)}
    for number, amount, method in (
        (1, Decimal(1000), DisbursementMethod.CASH),
        (2, Decimal(2000), DisbursementMethod.CASH),
        (3, Decimal(1500), DisbursementMethod.CREDIT),
    ):
        member_id = sub[number]
        assert member_id is not None
        await transfers.allocate(
            conn,
            OPERATOR,
            master_id=master_id,
            member_id=member_id,
            amount=amount,
            method=method,
            idempotency_key=None,
        )
    settings = Settings()  # only a webhook URL would need its checks; none is set here
    for account_id, email, phone in (
        (master_id, "finance@enterprise-m.example", None),
        (sub[1], "ops@sub1.example", "+86 571 0000 0001"),
        (sub[2], "ops@sub2.example", None),
    ):
        assert account_id is not None
        await alerts.set_channels(
            conn,
            OPERATOR,
            account_id=account_id,
            email=email,
            phone=phone,
            webhook_url=None,
            settings=settings,
        )
    for account_ids, threshold in (([sub[1], sub[2]], Decimal(500)), ([master_id], Decimal(5000))):
        _, refused = await alerts.set_quota_alerts(
            conn, OPERATOR, account_ids=account_ids, threshold=threshold, enabled=True
        )
        assert not refused, refused


PRODUCTS = ("ECS", "OSS", "RDS", "CDN")
TEAMS = ("web", "data", "platform")


async def _site_of(conn: AsyncConnection, account_id: int) -> int | None:
    site = sites_rows
    found: int | None = (
        await conn.execute(
            select(site.c.id).where(site.c.account_id == account_id).order_by(site.c.id).limit(1)
        )
    ).scalar_one_or_none()
    return found


async def _cost_center(conn: AsyncConnection, master_id: int, *, hq_site: int | None) -> None:
    """C1-C3 demo data: three months of the master's tagged charges (every
    third day, half of them on its headquarters site), one charge of each member since the
    association, and two budgets."""
    now = datetime.now(UTC)
    pick = random.Random(14)  # the same demo every time
    for day in range(90, -1, -3):
        for _ in range(2):
            await _tagged_charge(
                conn,
                pick,
                master_id,
                now - timedelta(days=day, hours=pick.randint(1, 20)),
                site_id=hq_site if pick.random() < 0.5 else None,
            )
    member_ids = (
        await conn.execute(
            select(link_rows.c.member_id)
            .where(link_rows.c.master_id == master_id, link_rows.c.status == "ACTIVE")
            .order_by(link_rows.c.member_id)
        )
    ).scalars()
    for member_id in list(member_ids):
        await _tagged_charge(conn, pick, member_id, None, site_id=None)
    thresholds = [
        budgets.Threshold("ACTUAL", Decimal(80)),
        budgets.Threshold("FORECASTED", Decimal(100)),
    ]
    for name, amount, period, tag in (
        ("Enterprise cloud spend", Decimal(1500), "MONTHLY", None),
        ("Team web", Decimal(1200), "QUARTERLY", ("team", "web")),
    ):
        await budgets.set_budget(
            conn,
            OPERATOR,
            account_id=master_id,
            budget_id=None,
            name=name,
            amount=amount,
            period=period,
            member_id=None,
            user_group_id=None,
            tag=tag,
            thresholds=thresholds,
        )


async def _tagged_charge(
    conn: AsyncConnection,
    pick: random.Random,
    account_id: int,
    when: datetime | None,
    *,
    site_id: int | None,
) -> None:
    await charges.record_charge(
        conn,
        OPERATOR,
        account_id=account_id,
        amount=Decimal(pick.randint(200, 4000)) / 100,
        description="Metered usage (demo)",
        site_id=site_id,
        occurred_at=when,
        product=pick.choice(PRODUCTS),
        tags=[("team", pick.choice(TEAMS)), ("env", pick.choice(("prod", "staging")))],
    )


async def _taxed_invoice(conn: AsyncConnection, master_id: int) -> None:
    """W1, T2: a stored value card on the master, last month's charges of the master and
    the first member (part paid by the card), and the master's taxed invoice for them."""
    await stored_value.issue_stored_value_card(
        conn, OPERATOR, account_id=master_id, amount=Decimal("500.00"), valid_until=None
    )
    member_id = await _find(conn, "Account-sub1")
    assert member_id is not None
    today = datetime.now(UTC).date()
    last_month_end = today.replace(day=1) - timedelta(days=1)
    for account_id, amount in ((master_id, "120.00"), (member_id, "345.67")):
        await charges.record_charge(
            conn,
            OPERATOR,
            account_id=account_id,
            amount=Decimal(amount),
            description="Compute (demo)",
            site_id=None,
            occurred_at=datetime.combine(last_month_end, time(12), UTC),
        )
    await cycles.run_bill_cycle(
        conn,
        OPERATOR,
        account_id=master_id,
        period_start=last_month_end.replace(day=1),
        period_end=last_month_end,
        bill_to_id=None,
    )


async def _create_member(conn: AsyncConnection, master_id: int, number: int) -> None:
    """Subsidiary ``number``: an ACTIVE trusteeship member with two bill-tos and a site on
    each."""
    member_id = await details.create_account(
        conn,
        {
            "name": f"Account-sub{number}",
            "display_name": f"Subsidiary {number}",
            "branch": CITIES[number],
            "terms": "NET30",
        },
    )
    link_id = await links.invite_member(
        conn, OPERATOR, master_id=master_id, member_id=member_id, type="TRUSTEESHIP"
    )
    await links.respond_to_invitation(
        conn, OPERATOR, link_id=link_id, accept=True, permissions=ALL_PERMISSIONS
    )
    main = await bill_tos.add_bill_to(
        conn,
        OPERATOR,
        member_id,
        {
            "name": f"Subsidiary {number} Accounts",
            "invoice_title": f"Subsidiary {number} Ltd.",
            "email": f"ap@sub{number}.example",
        },
    )
    second = await bill_tos.add_bill_to(
        conn,
        OPERATOR,
        member_id,
        {
            "name": f"Subsidiary {number} Projects",
            "invoice_title": f"Subsidiary {number} Ltd.",
        },
    )
    for site_number, bill_to in ((1, main), (2, second)):
        await sites.add_site(
            conn,
            OPERATOR,
            member_id,
            {
                "name": f"Sub{number} site {site_number}",
                "address": f"{site_number} Harbour St, {CITIES[number]}",
                "branch": CITIES[number],
                "tax_group": "STANDARD",
            },
            bill_to_id=bill_to,
        )


async def _find(conn: AsyncConnection, name: str) -> int | None:
    found: int | None = (
        await conn.execute(
            select(accounts.c.id).where(accounts.c.name == name).order_by(accounts.c.id).limit(1)
        )
    ).scalar_one_or_none()
    return found


async def create_cli_token(engine: AsyncEngine, account: str | None, name: str) -> str:
    """``accountgraph token create``: for an account (global id or exact name) or operator."""
    async with transaction(engine) as conn:
        account_id = None
        if account:
            account_id = ids.decode_as(account, "Account") or await _find(conn, account)
            if account_id is None:
                raise SystemExit(f"no account {account!r}")
        return await tokens.create_token(conn, OPERATOR, account_id=account_id, name=name)
