"""Demo data: the enterprise of seed 001's sharing example, and CLI token creation.

Master "Account-M" with trusteeship members "Account-sub1" ... "Account-sub5", each with
bill-tos and sites. Loading twice reuses what exists and only prints new tokens.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from accountgraph import jobs  # noqa: F401  (every area's ports: U1 for the invitations)
from accountgraph.accounts import bill_tos, details, links, sites, tokens
from accountgraph.accounts.models import accounts
from accountgraph.api import ids
from accountgraph.db import transaction
from accountgraph.domain import Principal, PrincipalKind

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
    for number in range(1, 6):
        await _create_member(conn, master_id, number)
    return master_id


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
