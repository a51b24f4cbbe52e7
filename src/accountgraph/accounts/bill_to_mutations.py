"""H3, H4: the bill-to and site mutations, part of ``AccountMutation`` (``mutations.py``).

Each converts its ids and inputs and calls one service inside ``mutate`` (``api/mutations.py``),
which answers the payload with the object whose row id the work returns.
"""

from __future__ import annotations

from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.accounts import bill_tos, sites
from accountgraph.accounts.types import BillTo, Site
from accountgraph.api.auth import IsAuthenticated
from accountgraph.api.errors import UserError
from accountgraph.api.mutations import mutate, row_id
from accountgraph.api.payloads import AccountPayload
from accountgraph.domain import Principal

Info = strawberry.Info[Any, Any]


def given(input: object, *names: str) -> dict[str, Any]:
    """The optional fields the client sent (strawberry leaves the others as None)."""
    return {name: getattr(input, name) for name in names if getattr(input, name) is not None}


@strawberry.input
class AddBillToInput:
    account_id: strawberry.ID
    name: str
    address: str | None = None
    email: str | None = None
    invoice_title: str | None = None
    tax_id: str | None = None
    is_primary: bool | None = None


@strawberry.input
class UpdateBillToInput:
    bill_to_id: strawberry.ID
    name: str | None = None
    address: str | None = None
    email: str | None = None
    invoice_title: str | None = None
    tax_id: str | None = None
    is_primary: bool | None = None


@strawberry.input
class RemoveBillToInput:
    bill_to_id: strawberry.ID
    new_primary_id: strawberry.ID | None = None


@strawberry.input
class AddSiteInput:
    account_id: strawberry.ID
    name: str
    address: str | None = None
    branch: str | None = None
    tax_group: str | None = None
    bill_to_id: strawberry.ID


@strawberry.input
class UpdateSiteInput:
    site_id: strawberry.ID
    name: str | None = None
    address: str | None = None
    branch: str | None = None
    tax_group: str | None = None
    bill_to_id: strawberry.ID | None = None


@strawberry.type
class BillToPayload:
    bill_to: BillTo | None
    user_errors: list[UserError]


@strawberry.type
class SitePayload:
    site: Site | None
    user_errors: list[UserError]


@strawberry.type
class BillToMutation:
    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def add_bill_to(self, info: Info, input: AddBillToInput) -> BillToPayload:
        fields = given(input, "name", "address", "email", "invoice_title", "tax_id", "is_primary")

        async def work(conn: AsyncConnection, principal: Principal) -> int:
            account_id = row_id(input.account_id, "Account", ["accountId"])
            return await bill_tos.add_bill_to(conn, principal, account_id, fields)

        return await mutate(info, BillToPayload, work, bill_to="BillTo")

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def update_bill_to(self, info: Info, input: UpdateBillToInput) -> BillToPayload:
        fields = given(input, "name", "address", "email", "invoice_title", "tax_id")
        if input.is_primary is not None:
            fields["is_primary"] = input.is_primary

        async def work(conn: AsyncConnection, principal: Principal) -> int:
            bill_to_id = row_id(input.bill_to_id, "BillTo", ["billToId"])
            await bill_tos.update_bill_to(conn, principal, bill_to_id, fields)
            return bill_to_id

        return await mutate(info, BillToPayload, work, bill_to="BillTo")

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def remove_bill_to(self, info: Info, input: RemoveBillToInput) -> AccountPayload:
        async def work(conn: AsyncConnection, principal: Principal) -> int:
            bill_to_id = row_id(input.bill_to_id, "BillTo", ["billToId"])
            new_primary = (
                None
                if input.new_primary_id is None
                else row_id(input.new_primary_id, "BillTo", ["newPrimaryId"])
            )
            # The bill-to's account: the payload shows its bill-tos after the removal.
            return await bill_tos.remove_bill_to(
                conn, principal, bill_to_id, new_primary_id=new_primary
            )

        return await mutate(info, AccountPayload, work, account="Account")

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def add_site(self, info: Info, input: AddSiteInput) -> SitePayload:
        fields = given(input, "name", "address", "branch", "tax_group")

        async def work(conn: AsyncConnection, principal: Principal) -> int:
            account_id = row_id(input.account_id, "Account", ["accountId"])
            bill_to_id = row_id(input.bill_to_id, "BillTo", ["billToId"])
            return await sites.add_site(conn, principal, account_id, fields, bill_to_id=bill_to_id)

        return await mutate(info, SitePayload, work, site="Site")

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def update_site(self, info: Info, input: UpdateSiteInput) -> SitePayload:
        fields = given(input, "name", "address", "branch", "tax_group")

        async def work(conn: AsyncConnection, principal: Principal) -> int:
            site_id = row_id(input.site_id, "Site", ["siteId"])
            bill_to_id = (
                None
                if input.bill_to_id is None
                else row_id(input.bill_to_id, "BillTo", ["billToId"])
            )
            await sites.update_site(conn, principal, site_id, fields, bill_to_id=bill_to_id)
            return site_id

        return await mutate(info, SitePayload, work, site="Site")
