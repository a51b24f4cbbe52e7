"""Mutations of the account graph: convert ids and inputs, call one service, report."""

from __future__ import annotations

from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.accounts import service
from accountgraph.accounts.queries import account_node, bill_to_node, link_node, site_node
from accountgraph.accounts.types import (
    Account,
    BillTo,
    Link,
    LinkPermission,
    LinkType,
    PlatformSettings,
    Site,
)
from accountgraph.api.auth import IsAuthenticated, IsOperator, principal_of
from accountgraph.api.errors import UserError
from accountgraph.api.mutations import perform, row_id

Info = strawberry.Info[Any, Any]


@strawberry.input
class CreateAccountInput:
    name: str
    display_name: str | None = None
    branch: str | None = None
    terms: str | None = None
    salesperson: str | None = None


@strawberry.input
class CreateApiTokenInput:
    account_id: strawberry.ID | None = strawberry.field(
        default=None, description="null: an operator token"
    )
    name: str


@strawberry.input
class UpdateSettingsInput:
    billing_hierarchy_enabled: bool | None = None


@strawberry.input
class UpdateAccountInput:
    account_id: strawberry.ID
    display_name: str | None = None
    branch: str | None = None
    terms: str | None = None
    salesperson: str | None = None
    cost_center_enabled: bool | None = None


@strawberry.input
class InviteMemberInput:
    master_id: strawberry.ID
    member_id: strawberry.ID
    type: LinkType


@strawberry.input
class RespondToInvitationInput:
    link_id: strawberry.ID
    accept: bool
    permissions: list[LinkPermission] | None = None


@strawberry.input
class DissociateMemberInput:
    link_id: strawberry.ID


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
class AccountPayload:
    account: Account | None
    user_errors: list[UserError]


@strawberry.type
class AccountsPayload:
    """Batch operations: the accounts that changed; the refused ones as userErrors."""

    accounts: list[Account]
    user_errors: list[UserError]


@strawberry.type
class CreateApiTokenPayload:
    token: str | None
    user_errors: list[UserError]


@strawberry.type
class SettingsPayload:
    settings: PlatformSettings
    user_errors: list[UserError]


@strawberry.type
class LinkPayload:
    link: Link | None
    user_errors: list[UserError]


@strawberry.type
class BillToPayload:
    bill_to: BillTo | None
    user_errors: list[UserError]


@strawberry.type
class SitePayload:
    site: Site | None
    user_errors: list[UserError]


def _given(input: object, *names: str) -> dict[str, Any]:
    """The optional fields the client sent (strawberry leaves the others as None)."""
    return {name: getattr(input, name) for name in names if getattr(input, name) is not None}


async def _account_payload(info: Info, account_id: int | None, errors: list[UserError]
                           ) -> AccountPayload:
    account = None if account_id is None else await account_node(info, account_id)
    return AccountPayload(account=account, user_errors=errors)


async def _link_payload(info: Info, link_id: int | None, errors: list[UserError]) -> LinkPayload:
    link = None if link_id is None else await link_node(info, link_id)
    return LinkPayload(link=link, user_errors=errors)


@strawberry.type
class AccountMutation:
    @strawberry.mutation(permission_classes=[IsOperator])
    async def create_account(self, info: Info, input: CreateAccountInput) -> AccountPayload:
        fields = _given(input, "name", "display_name", "branch", "terms", "salesperson")
        account_id, errors = await perform(
            info, lambda conn: service.create_account(conn, fields)
        )
        return await _account_payload(info, account_id, errors)

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def create_api_token(self, info: Info, input: CreateApiTokenInput
                               ) -> CreateApiTokenPayload:
        principal = principal_of(info)

        async def work(conn: AsyncConnection) -> str:
            account_id = (None if input.account_id is None
                          else row_id(input.account_id, "Account", ["accountId"]))
            return await service.create_token(conn, principal, account_id=account_id,
                                              name=input.name)

        token, errors = await perform(info, work)
        return CreateApiTokenPayload(token=token, user_errors=errors)

    @strawberry.mutation(permission_classes=[IsOperator])
    async def update_settings(self, info: Info, input: UpdateSettingsInput) -> SettingsPayload:
        _, errors = await perform(info, lambda conn: service.update_settings(
            conn, billing_hierarchy_enabled=input.billing_hierarchy_enabled))
        async with info.context.engine.connect() as conn:
            enabled = await service.billing_hierarchy_enabled(conn)
        return SettingsPayload(settings=PlatformSettings(billing_hierarchy_enabled=enabled),
                               user_errors=errors)

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def update_account(self, info: Info, input: UpdateAccountInput) -> AccountPayload:
        principal = principal_of(info)
        changes = _given(input, "display_name", "branch", "terms", "salesperson",
                         "cost_center_enabled")

        async def work(conn: AsyncConnection) -> int:
            account_id = row_id(input.account_id, "Account", ["accountId"])
            await service.update_account(conn, principal, account_id, changes)
            return account_id

        account_id, errors = await perform(info, work)
        return await _account_payload(info, account_id, errors)

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def invite_member(self, info: Info, input: InviteMemberInput) -> LinkPayload:
        principal = principal_of(info)

        async def work(conn: AsyncConnection) -> int:
            return await service.invite_member(
                conn, principal,
                master_id=row_id(input.master_id, "Account", ["masterId"]),
                member_id=row_id(input.member_id, "Account", ["memberId"]),
                type=input.type.value,
            )

        link_id, errors = await perform(info, work)
        return await _link_payload(info, link_id, errors)

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def respond_to_invitation(self, info: Info, input: RespondToInvitationInput
                                    ) -> LinkPayload:
        principal = principal_of(info)

        async def work(conn: AsyncConnection) -> int:
            link_id = row_id(input.link_id, "Link", ["linkId"])
            await service.respond_to_invitation(
                conn, principal, link_id=link_id, accept=input.accept,
                permissions=[p.value for p in input.permissions or []],
            )
            return link_id

        link_id, errors = await perform(info, work)
        return await _link_payload(info, link_id, errors)

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def dissociate_member(self, info: Info, input: DissociateMemberInput) -> LinkPayload:
        principal = principal_of(info)

        async def work(conn: AsyncConnection) -> int:
            link_id = row_id(input.link_id, "Link", ["linkId"])
            await service.dissociate(conn, principal, link_id=link_id)
            return link_id

        link_id, errors = await perform(info, work)
        return await _link_payload(info, link_id, errors)

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def add_bill_to(self, info: Info, input: AddBillToInput) -> BillToPayload:
        principal = principal_of(info)
        fields = _given(input, "name", "address", "email", "invoice_title", "tax_id",
                        "is_primary")

        async def work(conn: AsyncConnection) -> int:
            account_id = row_id(input.account_id, "Account", ["accountId"])
            return await service.add_bill_to(conn, principal, account_id, fields)

        bill_to_id, errors = await perform(info, work)
        bill_to = None if bill_to_id is None else await bill_to_node(info, bill_to_id)
        return BillToPayload(bill_to=bill_to, user_errors=errors)

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def update_bill_to(self, info: Info, input: UpdateBillToInput) -> BillToPayload:
        principal = principal_of(info)
        fields = _given(input, "name", "address", "email", "invoice_title", "tax_id")
        if input.is_primary is not None:
            fields["is_primary"] = input.is_primary

        async def work(conn: AsyncConnection) -> int:
            bill_to_id = row_id(input.bill_to_id, "BillTo", ["billToId"])
            await service.update_bill_to(conn, principal, bill_to_id, fields)
            return bill_to_id

        bill_to_id, errors = await perform(info, work)
        bill_to = None if bill_to_id is None else await bill_to_node(info, bill_to_id)
        return BillToPayload(bill_to=bill_to, user_errors=errors)

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def remove_bill_to(self, info: Info, input: RemoveBillToInput) -> AccountPayload:
        principal = principal_of(info)

        async def work(conn: AsyncConnection) -> int:
            bill_to_id = row_id(input.bill_to_id, "BillTo", ["billToId"])
            new_primary = (None if input.new_primary_id is None
                           else row_id(input.new_primary_id, "BillTo", ["newPrimaryId"]))
            return await service.remove_bill_to(conn, principal, bill_to_id,
                                                new_primary_id=new_primary)

        account_id, errors = await perform(info, work)
        return await _account_payload(info, account_id, errors)

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def add_site(self, info: Info, input: AddSiteInput) -> SitePayload:
        principal = principal_of(info)
        fields = _given(input, "name", "address", "branch", "tax_group")

        async def work(conn: AsyncConnection) -> int:
            account_id = row_id(input.account_id, "Account", ["accountId"])
            bill_to_id = row_id(input.bill_to_id, "BillTo", ["billToId"])
            return await service.add_site(conn, principal, account_id, fields,
                                          bill_to_id=bill_to_id)

        site_id, errors = await perform(info, work)
        site = None if site_id is None else await site_node(info, site_id)
        return SitePayload(site=site, user_errors=errors)

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def update_site(self, info: Info, input: UpdateSiteInput) -> SitePayload:
        principal = principal_of(info)
        fields = _given(input, "name", "address", "branch", "tax_group")

        async def work(conn: AsyncConnection) -> int:
            site_id = row_id(input.site_id, "Site", ["siteId"])
            bill_to_id = (None if input.bill_to_id is None
                          else row_id(input.bill_to_id, "BillTo", ["billToId"]))
            await service.update_site(conn, principal, site_id, fields, bill_to_id=bill_to_id)
            return site_id

        site_id, errors = await perform(info, work)
        site = None if site_id is None else await site_node(info, site_id)
        return SitePayload(site=site, user_errors=errors)
