"""H1-H4, P2-P3 in GraphQL: Link, BillTo, Site and the enums of the account graph.

Objects are built from rows that the loaders already filtered by visibility. The
accounts area's fields of ``Account`` are in ``accounts/account.py``.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import strawberry

from accountgraph.accounts.loaders import AccountLoaders
from accountgraph.api import composed, ids
from accountgraph.api.composed import AccountRef
from accountgraph.api.node import Node

Row = Any


@strawberry.enum
class AccountStatus(enum.Enum):
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    CLOSED = "CLOSED"


@strawberry.enum
class AccountRole(enum.Enum):
    MASTER = "MASTER"
    MEMBER = "MEMBER"
    STANDALONE = "STANDALONE"


@strawberry.enum
class LinkType(enum.Enum):
    TRUSTEESHIP = "TRUSTEESHIP"
    FINANCIAL = "FINANCIAL"


@strawberry.enum
class LinkStatus(enum.Enum):
    INVITED = "INVITED"
    ACTIVE = "ACTIVE"
    DECLINED = "DECLINED"
    DISSOCIATED = "DISSOCIATED"


@strawberry.enum
class LinkPermission(enum.Enum):
    SYNC_CREDIT_CONTROL = "SYNC_CREDIT_CONTROL"
    VIEW_FINANCE = "VIEW_FINANCE"
    MANAGE_INVOICES = "MANAGE_INVOICES"


def loaders(info: strawberry.Info[Any, Any]) -> AccountLoaders:
    found: AccountLoaders = info.context.loaders.accounts
    return found


@strawberry.type
class PlatformSettings:
    billing_hierarchy_enabled: bool


@strawberry.type
class BillTo(Node):
    id: strawberry.ID
    name: str
    address: str | None
    email: str | None
    invoice_title: str | None
    tax_id: str | None
    is_primary: bool
    read_only: bool = False  # I3 (reference master invoice info) makes it True
    row_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: Row) -> BillTo:
        return cls(
            id=strawberry.ID(ids.encode("BillTo", row.id)),
            row_id=row.id,
            name=row.name,
            address=row.address,
            email=row.email,
            invoice_title=row.invoice_title,
            tax_id=row.tax_id,
            is_primary=row.is_primary,
            read_only=bool(getattr(row, "read_only", False)),
        )


@strawberry.type
class Site(Node):
    id: strawberry.ID
    name: str
    address: str | None
    branch: str | None
    tax_group: str | None
    row_id: strawberry.Private[int]
    bill_to_id: strawberry.Private[int]
    preloaded_bill_to: strawberry.Private[BillTo | None] = None

    @strawberry.field
    def bill_to(self, info: strawberry.Info[Any, Any]) -> BillTo:
        if self.preloaded_bill_to is not None:
            return self.preloaded_bill_to
        return _bill_to(info, self.bill_to_id)  # type: ignore[return-value]

    @classmethod
    def from_row(cls, row: Row, bill_to: BillTo | None = None) -> Site:
        return cls(
            id=strawberry.ID(ids.encode("Site", row.id)),
            row_id=row.id,
            name=row.name,
            address=row.address,
            branch=row.branch,
            tax_group=row.tax_group,
            bill_to_id=row.bill_to_id,
            preloaded_bill_to=bill_to,
        )


async def _bill_to(info: strawberry.Info[Any, Any], bill_to_id: int) -> BillTo:
    row = await loaders(info).bill_to_by_id.load(bill_to_id)
    return BillTo.from_row(row)


@strawberry.type
class LinkEvent:
    status: LinkStatus
    permissions: list[LinkPermission]
    actor: str
    at: datetime


@strawberry.type
class Link(Node):
    id: strawberry.ID
    type: LinkType
    status: LinkStatus
    permissions: list[LinkPermission]
    invited_at: datetime
    activated_at: datetime | None
    ended_at: datetime | None
    references_master_invoice_info: bool
    row_id: strawberry.Private[int]
    master_id: strawberry.Private[int]
    member_id: strawberry.Private[int]

    @strawberry.field
    async def master(self, info: strawberry.Info[Any, Any]) -> AccountRef:
        # Both ends of a link the principal sees are visible at least by name.
        return await composed.seen_account(info, self.master_id)

    @strawberry.field
    async def member(self, info: strawberry.Info[Any, Any]) -> AccountRef:
        return await composed.seen_account(info, self.member_id)

    @strawberry.field
    async def history(self, info: strawberry.Info[Any, Any]) -> list[LinkEvent]:
        rows = await loaders(info).events_by_link.load(self.row_id)
        return [
            LinkEvent(
                status=LinkStatus(row.status),
                permissions=[LinkPermission(p) for p in row.permissions],
                actor=row.actor,
                at=row.at,
            )
            for row in rows
        ]

    @classmethod
    def from_row(cls, row: Row) -> Link:
        return cls(
            id=strawberry.ID(ids.encode("Link", row.id)),
            row_id=row.id,
            master_id=row.master_id,
            member_id=row.member_id,
            type=LinkType(row.type),
            status=LinkStatus(row.status),
            permissions=[LinkPermission(p) for p in row.permissions],
            invited_at=row.invited_at,
            activated_at=row.activated_at,
            ended_at=row.ended_at,
            references_master_invoice_info=row.references_master_invoice_info,
        )
