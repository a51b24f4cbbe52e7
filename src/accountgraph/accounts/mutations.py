"""Mutations of the account graph: convert ids and inputs, call one service, report.

Accounts, tokens, settings and links are here; bill-tos and sites in ``bill_to_mutations``.
``AccountMutation`` composes both, in the order of the published schema. Each mutation runs
through ``mutate`` (``api/mutations.py``) except the two whose payload is not an object by
id: ``createApiToken`` (the token itself) and ``updateSettings`` (the platform settings).
"""

from __future__ import annotations

from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph.accounts import details, links, tokens
from accountgraph.accounts.bill_to_mutations import BillToMutation, given
from accountgraph.accounts.types import Link, LinkPermission, LinkType, PlatformSettings
from accountgraph.api.auth import IsAuthenticated, IsOperator, principal_of
from accountgraph.api.errors import UserError
from accountgraph.api.mutations import mutate, perform, row_id
from accountgraph.api.payloads import AccountPayload
from accountgraph.domain import Principal

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
class LinkMutation:
    """Accounts, tokens, settings (H1, H5, P1, P4) and links (H1, H2, U1, U5)."""

    @strawberry.mutation(permission_classes=[IsOperator])
    async def create_account(self, info: Info, input: CreateAccountInput) -> AccountPayload:
        fields = given(input, "name", "display_name", "branch", "terms", "salesperson")

        async def work(conn: AsyncConnection, principal: Principal) -> int:
            return await details.create_account(conn, fields)

        return await mutate(info, AccountPayload, work, account="Account")

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def create_api_token(
        self, info: Info, input: CreateApiTokenInput
    ) -> CreateApiTokenPayload:
        # Not ``mutate``: the payload is the new token (shown once), not an object by id.
        principal = principal_of(info)

        async def work(conn: AsyncConnection) -> str:
            account_id = (
                None
                if input.account_id is None
                else row_id(input.account_id, "Account", ["accountId"])
            )
            return await tokens.create_token(
                conn, principal, account_id=account_id, name=input.name
            )

        token, errors = await perform(info, work)
        return CreateApiTokenPayload(token=token, user_errors=errors)

    @strawberry.mutation(permission_classes=[IsOperator])
    async def update_settings(self, info: Info, input: UpdateSettingsInput) -> SettingsPayload:
        # Not ``mutate``: the payload is the platform settings (no id), read after the change
        # and shown even when it was refused.
        _, errors = await perform(
            info,
            lambda conn: details.update_settings(
                conn, billing_hierarchy_enabled=input.billing_hierarchy_enabled
            ),
        )
        async with info.context.engine.connect() as conn:
            enabled = await details.billing_hierarchy_enabled(conn)
        return SettingsPayload(
            settings=PlatformSettings(billing_hierarchy_enabled=enabled), user_errors=errors
        )

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def update_account(self, info: Info, input: UpdateAccountInput) -> AccountPayload:
        changes = given(
            input, "display_name", "branch", "terms", "salesperson", "cost_center_enabled"
        )

        async def work(conn: AsyncConnection, principal: Principal) -> int:
            account_id = row_id(input.account_id, "Account", ["accountId"])
            await details.update_account(conn, principal, account_id, changes)
            return account_id

        return await mutate(info, AccountPayload, work, account="Account")

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def invite_member(self, info: Info, input: InviteMemberInput) -> LinkPayload:
        async def work(conn: AsyncConnection, principal: Principal) -> int:
            return await links.invite_member(
                conn,
                principal,
                master_id=row_id(input.master_id, "Account", ["masterId"]),
                member_id=row_id(input.member_id, "Account", ["memberId"]),
                type=input.type.value,
            )

        return await mutate(info, LinkPayload, work, link="Link")

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def respond_to_invitation(
        self, info: Info, input: RespondToInvitationInput
    ) -> LinkPayload:
        async def work(conn: AsyncConnection, principal: Principal) -> int:
            link_id = row_id(input.link_id, "Link", ["linkId"])
            await links.respond_to_invitation(
                conn,
                principal,
                link_id=link_id,
                accept=input.accept,
                permissions=[p.value for p in input.permissions or []],
            )
            return link_id

        return await mutate(info, LinkPayload, work, link="Link")

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def dissociate_member(self, info: Info, input: DissociateMemberInput) -> LinkPayload:
        async def work(conn: AsyncConnection, principal: Principal) -> int:
            link_id = row_id(input.link_id, "Link", ["linkId"])
            await links.dissociate(conn, principal, link_id=link_id)
            return link_id

        return await mutate(info, LinkPayload, work, link="Link")


@strawberry.type
class AccountMutation(LinkMutation, BillToMutation):
    """The accounts area's part of ``Mutation``: links first, then bill-tos and sites."""
