"""H1-H5, P2-P3: the accounts area's fields of ``Account``.

``AccountCore`` holds an account's own data, its link and its members; ``AccountTree``
the structure below it (invitations, bill-tos, sites). The other areas add their fields
beside their own types, and ``schema.py`` composes the one ``Account`` type from all of
them (``api/composed.py``). Objects are ``AccountCore`` instances built from rows that
the loaders already filtered by visibility. Fields that repeat per item in a tree are
plain or sync; the ``members`` connection looks ahead at what is selected below it and
loads links, sites and bill-tos of all its members in one query each (DESIGN.md, read
path).
"""

from __future__ import annotations

from typing import Any

import strawberry

from accountgraph.accounts.loaders import MembersKey
from accountgraph.accounts.types import (
    AccountRole,
    AccountStatus,
    BillTo,
    Link,
    LinkStatus,
    LinkType,
    Site,
    loaders,
)
from accountgraph.api import ids
from accountgraph.api.composed import AccountRef
from accountgraph.api.connections import Connection, connection, page
from accountgraph.api.lookahead import selects
from accountgraph.api.node import Node

Info = strawberry.Info[Any, Any]
Row = Any


@strawberry.type(name="Account")
class AccountCore(Node):
    id: strawberry.ID
    name: str
    display_name: str
    branch: str | None
    terms: str | None
    salesperson: str | None
    status: AccountStatus
    role: AccountRole
    row_id: strawberry.Private[int]
    details: strawberry.Private[bool]
    """P2/P3: False for an account seen by name only (a member's master, an invitee)."""
    cost_center_enabled: bool
    preloaded_sites: strawberry.Private[list[Site] | None] = None
    preloaded_bill_tos: strawberry.Private[list[BillTo] | None] = None
    preloaded_link: strawberry.Private[Link | None] = None
    link_preloaded: strawberry.Private[bool] = False

    @classmethod
    def from_row(cls, row: Row) -> AccountCore:
        if row.is_master:
            role = AccountRole.MASTER
        elif row.is_member:
            role = AccountRole.MEMBER
        else:
            role = AccountRole.STANDALONE
        return cls(
            id=strawberry.ID(ids.encode("Account", row.id)),
            row_id=row.id,
            name=row.name,
            display_name=row.display_name,
            branch=row.branch if row.details else None,
            terms=row.terms if row.details else None,
            salesperson=row.salesperson if row.details else None,
            status=AccountStatus(row.status),
            role=role,
            details=row.details,
            cost_center_enabled=row.cost_center_enabled and row.details,
        )

    @strawberry.field(
        description="The member's link to its master (any status but DECLINED), null for others."
    )
    def link(self, info: Info) -> Link | None:
        if self.link_preloaded:
            return self.preloaded_link
        return self._load_link(info)  # type: ignore[return-value]

    async def _load_link(self, info: Info) -> Link | None:
        row = await loaders(info).link_by_member.load(self.row_id)
        return None if row is None else Link.from_row(row)

    @strawberry.field(
        description="For a master: its members, by default those with an ACTIVE link."
    )
    async def members(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        type: LinkType | None = None,
        status: LinkStatus | None = None,
    ) -> Connection[AccountRef]:
        request = page(first, after)
        key = MembersKey(
            master_id=self.row_id,
            type=type.value if type else None,
            status=status.value if status else "ACTIVE",
            limit=request.limit,
            after=request.after,
        )
        found = await loaders(info).members_by_master.load(key)
        members = [AccountCore.from_row(row) for row in found.rows]
        await _preload(
            info, members, selects(info, "edges", "node"), selects(info, "edges", "node", "sites")
        )
        return connection(members, [m.row_id for m in members], request, found.total)


@strawberry.type
class AccountTree:
    """The structure below an account; composed last into ``Account``. The ``members``
    look-ahead of ``AccountCore`` fills the preloaded lists."""

    row_id: strawberry.Private[int]
    preloaded_sites: strawberry.Private[list[Site] | None] = None
    preloaded_bill_tos: strawberry.Private[list[BillTo] | None] = None

    @strawberry.field
    async def invitations(self, info: Info) -> list[Link]:
        rows = await loaders(info).invitations_by_account.load(self.row_id)
        return [Link.from_row(row) for row in rows]

    @strawberry.field
    def bill_tos(self, info: Info) -> list[BillTo]:
        if self.preloaded_bill_tos is not None:
            return self.preloaded_bill_tos
        return _bill_tos(info, self.row_id)  # type: ignore[return-value]

    @strawberry.field
    def primary_bill_to(self, info: Info) -> BillTo | None:
        if self.preloaded_bill_tos is not None:
            return _primary(self.preloaded_bill_tos)
        return _primary_bill_to(info, self.row_id)  # type: ignore[return-value]

    @strawberry.field
    def sites(self, info: Info) -> list[Site]:
        if self.preloaded_sites is not None:
            return self.preloaded_sites
        return _sites(info, self.row_id)  # type: ignore[return-value]


async def _bill_tos(info: Info, account_id: int) -> list[BillTo]:
    rows = await loaders(info).bill_tos_by_account.load(account_id)
    return [BillTo.from_row(row) for row in rows]


async def _primary_bill_to(info: Info, account_id: int) -> BillTo | None:
    return _primary(await _bill_tos(info, account_id))


async def _sites(info: Info, account_id: int) -> list[Site]:
    rows = await loaders(info).sites_by_account.load(account_id)
    return [Site.from_row(row) for row in rows]


def _primary(bill_tos: list[BillTo]) -> BillTo | None:
    return next((b for b in bill_tos if b.is_primary), None)


async def _preload(
    info: Info,
    members: list[AccountCore],
    fields: set[str],
    site_fields: set[str],
) -> None:
    """Look-ahead: attach links, sites and bill-tos of every member with one query each."""
    if not members:
        return
    account_ids = [member.row_id for member in members]
    if "link" in fields:
        found = await loaders(info).link_by_member.load_many(account_ids)
        for member, row in zip(members, found, strict=True):
            member.preloaded_link = None if row is None else Link.from_row(row)
            member.link_preloaded = True
    want_bill_tos = bool(fields & {"billTos", "primaryBillTo"}) or "billTo" in site_fields
    bill_tos: dict[int, BillTo] = {}
    if want_bill_tos:
        grouped = await loaders(info).bill_tos_by_account.load_many(account_ids)
        for member, rows in zip(members, grouped, strict=True):
            member.preloaded_bill_tos = [BillTo.from_row(row) for row in rows]
            bill_tos.update((b.row_id, b) for b in member.preloaded_bill_tos)
    if "sites" in fields:
        grouped = await loaders(info).sites_by_account.load_many(account_ids)
        for member, rows in zip(members, grouped, strict=True):
            member.preloaded_sites = [
                Site.from_row(row, bill_tos.get(row.bill_to_id)) for row in rows
            ]
