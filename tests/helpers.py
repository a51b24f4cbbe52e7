"""Test helpers: GraphQL over real HTTP, and builders of accounts through the API."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from accountgraph import logs

OPERATOR_TOKEN = "test-operator-token"
ALL_PERMISSIONS = ["SYNC_CREDIT_CONTROL", "VIEW_FINANCE", "MANAGE_INVOICES"]

CREATE_ACCOUNT = """
mutation($input: CreateAccountInput!) {
  createAccount(input: $input) { account { id name } userErrors { code field message } }
}"""
CREATE_TOKEN = """
mutation($input: CreateApiTokenInput!) {
  createApiToken(input: $input) { token userErrors { code field message } }
}"""
INVITE = """
mutation($input: InviteMemberInput!) {
  inviteMember(input: $input) {
    link { id status type } userErrors { code field message }
  }
}"""
RESPOND = """
mutation($input: RespondToInvitationInput!) {
  respondToInvitation(input: $input) {
    link { id status permissions } userErrors { code field message }
  }
}"""
DISSOCIATE = """
mutation($input: DissociateMemberInput!) {
  dissociateMember(input: $input) { link { id status endedAt } userErrors { code field message } }
}"""
ADD_BILL_TO = """
mutation($input: AddBillToInput!) {
  addBillTo(input: $input) { billTo { id name isPrimary } userErrors { code field message } }
}"""
ADD_SITE = """
mutation($input: AddSiteInput!) {
  addSite(input: $input) { site { id name billTo { id } } userErrors { code field message } }
}"""


class GraphQLFailed(AssertionError):
    pass


@dataclass
class Api:
    """A client of the running app. ``token=None`` sends no Authorization header."""

    client: httpx.AsyncClient
    engine: AsyncEngine

    async def raw(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        token: str | None = OPERATOR_TOKEN,
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def gql(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        token: str | None = OPERATOR_TOKEN,
    ) -> dict[str, Any]:
        """``data`` of a request that must have no top-level errors."""
        body = await self.raw(query, variables, token)
        if body.get("errors"):
            raise GraphQLFailed(body["errors"])
        data: dict[str, Any] = body["data"]
        return data

    async def mutate(
        self, name: str, query: str, input: dict[str, Any], token: str | None = OPERATOR_TOKEN
    ) -> dict[str, Any]:
        """The payload of mutation ``name``."""
        payload: dict[str, Any] = (await self.gql(query, {"input": input}, token))[name]
        return payload

    async def ok(
        self, name: str, query: str, input: dict[str, Any], token: str | None = OPERATOR_TOKEN
    ) -> dict[str, Any]:
        """The payload of a mutation that must succeed."""
        payload = await self.mutate(name, query, input, token)
        assert payload["userErrors"] == [], payload["userErrors"]
        return payload

    async def account(self, name: str, **fields: Any) -> str:
        payload = await self.ok("createAccount", CREATE_ACCOUNT, {"name": name, **fields})
        account_id: str = payload["account"]["id"]
        return account_id

    async def token(self, account_id: str | None, name: str = "test") -> str:
        payload = await self.ok(
            "createApiToken", CREATE_TOKEN, {"accountId": account_id, "name": name}
        )
        token: str = payload["token"]
        return token

    async def invite(
        self,
        master_id: str,
        member_id: str,
        type: str = "TRUSTEESHIP",
        token: str | None = OPERATOR_TOKEN,
    ) -> str:
        payload = await self.ok(
            "inviteMember",
            INVITE,
            {"masterId": master_id, "memberId": member_id, "type": type},
            token,
        )
        link_id: str = payload["link"]["id"]
        return link_id

    async def link(
        self,
        master_id: str,
        member_id: str,
        type: str = "TRUSTEESHIP",
        permissions: list[str] | None = None,
    ) -> str:
        """An ACTIVE link (invited and accepted by the operator)."""
        link_id = await self.invite(master_id, member_id, type)
        await self.ok(
            "respondToInvitation",
            RESPOND,
            {
                "linkId": link_id,
                "accept": True,
                "permissions": ALL_PERMISSIONS if permissions is None else permissions,
            },
        )
        return link_id

    async def bill_to(self, account_id: str, name: str, **fields: Any) -> str:
        payload = await self.ok(
            "addBillTo", ADD_BILL_TO, {"accountId": account_id, "name": name, **fields}
        )
        bill_to_id: str = payload["billTo"]["id"]
        return bill_to_id

    async def site(self, account_id: str, name: str, bill_to_id: str) -> str:
        payload = await self.ok(
            "addSite", ADD_SITE, {"accountId": account_id, "name": name, "billToId": bill_to_id}
        )
        site_id: str = payload["site"]["id"]
        return site_id


@dataclass
class Enterprise:
    master: str
    members: list[str]
    links: list[str]
    master_token: str
    member_tokens: list[str]


async def enterprise(api: Api, members: int = 2, *, sites: bool = False) -> Enterprise:
    """A master with ``members`` ACTIVE trusteeship members (all permissions), tokens for
    each, and (with ``sites``) a primary bill-to and a site on every member."""
    master = await api.account("Master")
    member_ids, link_ids, tokens = [], [], []
    for number in range(members):
        member = await api.account(f"Member-{number + 1}")
        link_ids.append(await api.link(master, member))
        member_ids.append(member)
        tokens.append(await api.token(member))
        if sites:
            bill_to = await api.bill_to(member, f"Member-{number + 1} AP")
            await api.site(member, f"Member-{number + 1} site", bill_to)
    return Enterprise(master, member_ids, link_ids, await api.token(master), tokens)


@contextlib.contextmanager
def json_log_lines(level: int = logging.INFO, *, quiet: bool = False) -> Iterator[io.StringIO]:
    """Every log line of this process (the app and the worker run in it) from ``level`` on,
    as JSON lines in the stream yielded; with ``quiet``, the noisy libraries at the level
    ``logs.configure`` leaves them. Everything is put back afterwards."""
    stream = io.StringIO()
    handler = logs.handler("json", stream)
    root = logging.getLogger()
    before = root.level
    loud = {name: logging.getLogger(name).level for name in logs.QUIET} if quiet else {}
    root.addHandler(handler)
    root.setLevel(level)
    for name in loud:
        logging.getLogger(name).setLevel(logs.QUIET[name])
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(before)
        for name, found in loud.items():
            logging.getLogger(name).setLevel(found)
