"""H1-H5, P2-P3 in GraphQL: Account, Link, BillTo, Site and their enums.

Objects are built from rows that the loaders already filtered by visibility. Fields that
repeat per item in a tree are plain or sync; the ``members`` connection looks ahead at
what is selected below it and loads sites and bill-tos of all its members in one query
each (DESIGN.md, read path).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

if TYPE_CHECKING:
    from accountgraph.alerts.types import Notification, NotificationChannels, QuotaAlert
    from accountgraph.billing.types import Invoice, InvoiceMode
    from accountgraph.billing.voucher_types import Coupon, Payment, PaymentMethod, Voucher
    from accountgraph.funds.types import Charge, FinancialState, Transfer, TransferDirection
    from accountgraph.sharing.types import Resource, ResourceGrant, ResourceType, UserGroup

from accountgraph.accounts.loaders import AccountLoaders, MembersKey
from accountgraph.api import ids
from accountgraph.api.connections import Connection, connection, page
from accountgraph.api.lookahead import selects
from accountgraph.api.node import Node
from accountgraph.api.scalars import Money

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
            id=strawberry.ID(ids.encode("BillTo", row.id)), row_id=row.id, name=row.name,
            address=row.address, email=row.email, invoice_title=row.invoice_title,
            tax_id=row.tax_id, is_primary=row.is_primary,
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
            id=strawberry.ID(ids.encode("Site", row.id)), row_id=row.id, name=row.name,
            address=row.address, branch=row.branch, tax_group=row.tax_group,
            bill_to_id=row.bill_to_id, preloaded_bill_to=bill_to,
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
    async def master(self, info: strawberry.Info[Any, Any]) -> Annotated[
        Account, strawberry.lazy("accountgraph.accounts.types")
    ]:
        return await _linked_account(info, self.master_id)

    @strawberry.field
    async def member(self, info: strawberry.Info[Any, Any]) -> Annotated[
        Account, strawberry.lazy("accountgraph.accounts.types")
    ]:
        return await _linked_account(info, self.member_id)

    @strawberry.field
    async def history(self, info: strawberry.Info[Any, Any]) -> list[LinkEvent]:
        rows = await loaders(info).events_by_link.load(self.row_id)
        return [
            LinkEvent(status=LinkStatus(row.status),
                      permissions=[LinkPermission(p) for p in row.permissions],
                      actor=row.actor, at=row.at)
            for row in rows
        ]

    @classmethod
    def from_row(cls, row: Row) -> Link:
        return cls(
            id=strawberry.ID(ids.encode("Link", row.id)), row_id=row.id,
            master_id=row.master_id, member_id=row.member_id, type=LinkType(row.type),
            status=LinkStatus(row.status),
            permissions=[LinkPermission(p) for p in row.permissions],
            invited_at=row.invited_at, activated_at=row.activated_at, ended_at=row.ended_at,
            references_master_invoice_info=row.references_master_invoice_info,
        )


async def _linked_account(info: strawberry.Info[Any, Any], account_id: int) -> Account:
    """Both ends of a link the principal sees are visible at least by name (visibility.py)."""
    row = await loaders(info).account_by_id.load(account_id)
    if row is None:  # pragma: no cover - sees_link implies sees_name of both ends
        raise LookupError("link end not visible")
    return Account.from_row(row)


@strawberry.type
class Account(Node):
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
    def from_row(cls, row: Row) -> Account:
        if row.is_master:
            role = AccountRole.MASTER
        elif row.is_member:
            role = AccountRole.MEMBER
        else:
            role = AccountRole.STANDALONE
        return cls(
            id=strawberry.ID(ids.encode("Account", row.id)), row_id=row.id, name=row.name,
            display_name=row.display_name,
            branch=row.branch if row.details else None,
            terms=row.terms if row.details else None,
            salesperson=row.salesperson if row.details else None,
            status=AccountStatus(row.status), role=role, details=row.details,
            cost_center_enabled=row.cost_center_enabled and row.details,
        )

    @strawberry.field(description="The member's link to its master (any status but "
                      "DECLINED), null for others.")
    def link(self, info: strawberry.Info[Any, Any]) -> Link | None:
        if self.link_preloaded:
            return self.preloaded_link
        return self._load_link(info)  # type: ignore[return-value]

    async def _load_link(self, info: strawberry.Info[Any, Any]) -> Link | None:
        row = await loaders(info).link_by_member.load(self.row_id)
        return None if row is None else Link.from_row(row)

    @strawberry.field(description="For a master: its members, by default those with an "
                      "ACTIVE link.")
    async def members(
        self,
        info: strawberry.Info[Any, Any],
        first: int | None = None,
        after: str | None = None,
        type: LinkType | None = None,
        status: LinkStatus | None = None,
    ) -> Connection[Account]:
        request = page(first, after)
        key = MembersKey(
            master_id=self.row_id, type=type.value if type else None,
            status=status.value if status else "ACTIVE", limit=request.limit,
            after=request.after,
        )
        found = await loaders(info).members_by_master.load(key)
        members = [Account.from_row(row) for row in found.rows]
        await _preload(info, members, selects(info, "edges", "node"),
                       selects(info, "edges", "node", "sites"))
        return connection(members, [m.row_id for m in members], request, found.total)

    @strawberry.field(description="Null where the viewer may not see finances (P2).")
    async def finance(self, info: strawberry.Info[Any, Any]) -> Annotated[
        FinancialState, strawberry.lazy("accountgraph.funds.types")
    ] | None:
        from accountgraph.funds.types import finance_of

        return await finance_of(info, self.row_id)

    @strawberry.field(description="F5: the transfer book, newest first: a master's "
                      "allocations and reclamations, or those a member received.")
    async def transfers(
        self,
        info: strawberry.Info[Any, Any],
        first: int | None = None,
        after: str | None = None,
        member_id: strawberry.ID | None = None,
        direction: Annotated[TransferDirection, strawberry.lazy("accountgraph.funds.types")]
        | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Connection[Annotated[Transfer, strawberry.lazy("accountgraph.funds.types")]]:
        from accountgraph.funds.types import transfers_of

        return await transfers_of(info, self.row_id, first=first, after=after,
                                  member_id=member_id, direction=direction, since=since,
                                  until=until)

    @strawberry.field(description="F7: charges on this account, newest first.")
    async def charges(
        self,
        info: strawberry.Info[Any, Any],
        first: int | None = None,
        after: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Connection[Annotated[Charge, strawberry.lazy("accountgraph.funds.types")]]:
        from accountgraph.funds.types import charges_of

        return await charges_of(info, self.row_id, first=first, after=after, since=since,
                                until=until)

    @strawberry.field(description="F8, B5: payments made on this account or paid by it, "
                      "newest first.")
    async def payments(
        self, info: strawberry.Info[Any, Any], first: int | None = None, after: str | None = None
    ) -> Connection[Annotated[Payment, strawberry.lazy("accountgraph.billing.voucher_types")]]:
        from accountgraph.billing.voucher_types import payments_of

        return await payments_of(info, self.row_id, first=first, after=after)

    @strawberry.field(description="V3: this account's coupons.")
    async def coupons(self, info: strawberry.Info[Any, Any]) -> list[
        Annotated[Coupon, strawberry.lazy("accountgraph.billing.voucher_types")]
    ]:
        from accountgraph.billing.voucher_types import coupons_of

        return await coupons_of(info, self.row_id)

    @strawberry.field(description="V1: a master's vouchers, and the vouchers naming this "
                      "account.")
    async def vouchers(self, info: strawberry.Info[Any, Any]) -> list[
        Annotated[Voucher, strawberry.lazy("accountgraph.billing.voucher_types")]
    ]:
        from accountgraph.billing.voucher_types import vouchers_of

        return await vouchers_of(info, self.row_id)

    @strawberry.field(description="V1: what is left of the voucher pool (granted - used); "
                      "null for members and where the viewer may not see finances.")
    async def voucher_pool(self, info: strawberry.Info[Any, Any]) -> Money | None:
        from accountgraph.billing.voucher_types import voucher_pool_of

        return await voucher_pool_of(info, self.row_id)

    @strawberry.field(description="B5: this account's payment methods, managed ones included.")
    async def payment_methods(self, info: strawberry.Info[Any, Any]) -> list[
        Annotated[PaymentMethod, strawberry.lazy("accountgraph.billing.voucher_types")]
    ]:
        from accountgraph.billing.voucher_types import payment_methods_of

        return await payment_methods_of(info, self.row_id)

    @strawberry.field(description="B2-B4: invoices issued to this account, newest first.")
    async def invoices(
        self, info: strawberry.Info[Any, Any], first: int | None = None, after: str | None = None
    ) -> Connection[Annotated[Invoice, strawberry.lazy("accountgraph.billing.types")]]:
        from accountgraph.billing.types import invoices_of

        return await invoices_of(info, self.row_id, first=first, after=after)

    @strawberry.field(description="B2: how this account's bill cycles issue invoices "
                      "(AGGREGATED unless set); null for a managed account (an ACTIVE "
                      "trusteeship member, never invoiced itself) and where the viewer does "
                      "not see the account's details.")
    async def invoice_mode(self, info: strawberry.Info[Any, Any]) -> Annotated[
        InvoiceMode, strawberry.lazy("accountgraph.billing.types")
    ] | None:
        from accountgraph.billing.types import invoice_mode_of

        return await invoice_mode_of(info, self.row_id)

    @strawberry.field(description="B3: the account-level discount in percent; null if none "
                      "or where the viewer may not see finances.")
    async def discount_percent(self, info: strawberry.Info[Any, Any]) -> Money | None:
        from accountgraph.billing.types import discount_of

        return await discount_of(info, self.row_id)

    @strawberry.field(description="A1: the low-quota alert, null if unset.")
    async def quota_alert(self, info: strawberry.Info[Any, Any]) -> Annotated[
        QuotaAlert, strawberry.lazy("accountgraph.alerts.types")
    ] | None:
        from accountgraph.alerts.types import quota_alert_of

        return await quota_alert_of(info, self.row_id)

    @strawberry.field(description="A4: where notifications are delivered, null if unset.")
    async def channels(self, info: strawberry.Info[Any, Any]) -> Annotated[
        NotificationChannels, strawberry.lazy("accountgraph.alerts.types")
    ] | None:
        from accountgraph.alerts.types import channels_of

        return await channels_of(info, self.row_id)

    @strawberry.field(description="A2-A4: notifications of this account, newest first.")
    async def notifications(
        self, info: strawberry.Info[Any, Any], first: int | None = None, after: str | None = None
    ) -> Connection[Annotated[Notification, strawberry.lazy("accountgraph.alerts.types")]]:
        from accountgraph.alerts.types import notifications_of

        return await notifications_of(info, self.row_id, first=first, after=after)

    @strawberry.field(description="S1: resources this account owns.")
    async def resources(self, info: strawberry.Info[Any, Any]) -> list[
        Annotated[Resource, strawberry.lazy("accountgraph.sharing.types")]
    ]:
        from accountgraph.sharing.types import Resource
        from accountgraph.sharing.types import loaders as sharing

        rows = await sharing(info).resources_by_owner.load(self.row_id)
        return [Resource.from_row(row) for row in rows]

    @strawberry.field(description="S10: what this account can use, and why, as of the last "
                      "recalculation.")
    async def usable_resources(self, info: strawberry.Info[Any, Any]) -> list[
        Annotated[ResourceGrant, strawberry.lazy("accountgraph.sharing.types")]
    ]:
        from accountgraph.sharing.types import ResourceGrant
        from accountgraph.sharing.types import loaders as sharing

        rows = await sharing(info).grants_by_account.load(self.row_id)
        return [ResourceGrant.from_row(row) for row in rows]

    @strawberry.field(description="S3: the resource types this member accepts.")
    async def accepted_resource_types(self, info: strawberry.Info[Any, Any]) -> list[
        Annotated[ResourceType, strawberry.lazy("accountgraph.sharing.types")]
    ]:
        from accountgraph.sharing.types import ResourceType
        from accountgraph.sharing.types import loaders as sharing

        types = await sharing(info).accepted_types_by_account.load(self.row_id)
        return [ResourceType(t) for t in types]

    @strawberry.field(description="S2: the resource types this master shares.")
    async def shared_resource_types(self, info: strawberry.Info[Any, Any]) -> list[
        Annotated[ResourceType, strawberry.lazy("accountgraph.sharing.types")]
    ]:
        from accountgraph.sharing.types import ResourceType
        from accountgraph.sharing.types import loaders as sharing

        types = await sharing(info).shared_types_by_account.load(self.row_id)
        return [ResourceType(t) for t in types]

    @strawberry.field(description="S4: the member's user group, if any.")
    async def user_group(self, info: strawberry.Info[Any, Any]) -> Annotated[
        UserGroup, strawberry.lazy("accountgraph.sharing.types")
    ] | None:
        from accountgraph.sharing.types import UserGroup
        from accountgraph.sharing.types import loaders as sharing

        row = await sharing(info).group_by_member.load(self.row_id)
        return None if row is None else UserGroup.from_row(row)

    @strawberry.field(description="S4: a master's user groups.")
    async def user_groups(self, info: strawberry.Info[Any, Any]) -> list[
        Annotated[UserGroup, strawberry.lazy("accountgraph.sharing.types")]
    ]:
        from accountgraph.sharing.types import UserGroup
        from accountgraph.sharing.types import loaders as sharing

        rows = await sharing(info).groups_by_master.load(self.row_id)
        return [UserGroup.from_row(row) for row in rows]

    @strawberry.field
    async def invitations(self, info: strawberry.Info[Any, Any]) -> list[Link]:
        rows = await loaders(info).invitations_by_account.load(self.row_id)
        return [Link.from_row(row) for row in rows]

    @strawberry.field
    def bill_tos(self, info: strawberry.Info[Any, Any]) -> list[BillTo]:
        if self.preloaded_bill_tos is not None:
            return self.preloaded_bill_tos
        return self._load_bill_tos(info)  # type: ignore[return-value]

    @strawberry.field
    def primary_bill_to(self, info: strawberry.Info[Any, Any]) -> BillTo | None:
        if self.preloaded_bill_tos is not None:
            return _primary(self.preloaded_bill_tos)
        return self._load_primary(info)  # type: ignore[return-value]

    @strawberry.field
    def sites(self, info: strawberry.Info[Any, Any]) -> list[Site]:
        if self.preloaded_sites is not None:
            return self.preloaded_sites
        return self._load_sites(info)  # type: ignore[return-value]

    async def _load_bill_tos(self, info: strawberry.Info[Any, Any]) -> list[BillTo]:
        rows = await loaders(info).bill_tos_by_account.load(self.row_id)
        return [BillTo.from_row(row) for row in rows]

    async def _load_primary(self, info: strawberry.Info[Any, Any]) -> BillTo | None:
        return _primary(await self._load_bill_tos(info))

    async def _load_sites(self, info: strawberry.Info[Any, Any]) -> list[Site]:
        rows = await loaders(info).sites_by_account.load(self.row_id)
        return [Site.from_row(row) for row in rows]


def _primary(bill_tos: list[BillTo]) -> BillTo | None:
    return next((b for b in bill_tos if b.is_primary), None)


async def _preload(
    info: strawberry.Info[Any, Any], members: list[Account], fields: set[str],
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


def account_or_none(row: Row | None) -> Account | None:
    return None if row is None else Account.from_row(row)
