"""P1, P4: every request acts for a principal; operators alone do operators' work; tokens.

The root fields are read from the schema itself, so a field added later is covered by the
UNAUTHENTICATED tests without touching this file (a new scalar in a required argument
needs an entry in ``SCALAR_LITERALS``).
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest
from arq.connections import ArqRedis
from graphql import (
    GraphQLEnumType,
    GraphQLEnumValueMap,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    get_named_type,
    is_leaf_type,
    is_required_argument,
    is_required_input_field,
)
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from accountgraph.accounts import tokens
from accountgraph.accounts.models import api_tokens
from accountgraph.accounts.principals import announce_revoked
from accountgraph.api import ids
from accountgraph.models import metadata
from accountgraph.schema import schema
from tests.helpers import OPERATOR_TOKEN, Api, enterprise

GRAPHQL_SCHEMA = schema._schema
SCALAR_LITERALS = {
    "ID": '"QWNjb3VudDox"',
    "String": '"x"',
    "Boolean": "false",
    "Int": "1",
    "Float": "1.5",
    "Decimal": '"1.00"',
    "DateTime": '"2024-01-01T00:00:00+00:00"',
    "Date": '"2024-01-01"',
}
# P4 and API.md ("# operators (P4)"), createApiToken aside: only operators call these.
OPERATOR_ONLY = [
    "createAccount",
    "setCreditLine",
    "grantVoucherPool",
    "recordCharge",
    "recordPayment",
    "adjustBalance",
    "issueCoupon",
    "createResource",
    "updateSettings",
    "setDiscount",
    "createTaxGroup",
    "setAccountTaxGroup",
    "issueStoredValueCard",
]

VIEWER = "{ viewer { kind account { id name } } }"
TYPENAME = "{ __typename }"
MUTATION_TYPENAME = "mutation { __typename }"
INTROSPECTION = """
{
  __schema { queryType { name } mutationType { name } types { name } }
  __type(name: "Account") { name fields { name } }
}"""
CREATE_ACCOUNT = """
mutation($input: CreateAccountInput!) {
  createAccount(input: $input) { account { id } userErrors { code field message } }
}"""
UPDATE_SETTINGS = """
mutation($input: UpdateSettingsInput!) {
  updateSettings(input: $input) {
    settings { billingHierarchyEnabled } userErrors { code field message }
  }
}"""
SETTINGS = "{ settings { billingHierarchyEnabled } }"
CREATE_TOKEN = """
mutation($input: CreateApiTokenInput!) {
  createApiToken(input: $input) { token userErrors { code field message } }
}"""
INVITE = """
mutation($input: InviteMemberInput!) {
  inviteMember(input: $input) {
    link { id history { actor } } userErrors { code field message }
  }
}"""

# Authorization headers that authenticate nobody.
BAD_HEADERS = {
    "none": None,
    "garbage": "Bearer garbage",
    "forged-account-token": "Bearer agt_" + "A" * 43,
    "operator-token-changed": f"Bearer {OPERATOR_TOKEN}x",
    "operator-token-prefix": f"Bearer {OPERATOR_TOKEN[:-1]}",
    "wrong-scheme": f"Basic {OPERATOR_TOKEN}",
    "empty-bearer": "Bearer",
    "no-scheme": OPERATOR_TOKEN,
    "very-long": "Bearer agt_" + "x" * 5000,
}


# ---------------------------------------------------------------- minimal operations


def literal(type_: GraphQLInputType) -> str:
    """A GraphQL literal of ``type_`` that passes validation (required fields only)."""
    if isinstance(type_, GraphQLNonNull):
        return literal(type_.of_type)
    if isinstance(type_, GraphQLList):
        return f"[{literal(type_.of_type)}]"
    if isinstance(type_, GraphQLEnumType):
        values: GraphQLEnumValueMap = type_.values  # graphql-core's cached_property is untyped
        return next(iter(values))
    if isinstance(type_, GraphQLInputObjectType):
        fields = [
            f"{name}: {literal(field.type)}"
            for name, field in type_.fields.items()
            if is_required_input_field(field)
        ]
        return "{" + ", ".join(fields) + "}"
    assert type_.name in SCALAR_LITERALS, f"add a literal of scalar {type_.name}"
    return SCALAR_LITERALS[type_.name]


def minimal(operation: str, name: str, field: GraphQLField) -> str:
    """``operation { name(required args) { __typename } }``."""
    args = [
        f"{arg_name}: {literal(arg.type)}"
        for arg_name, arg in field.args.items()
        if is_required_argument(arg)
    ]
    arguments = f"({', '.join(args)})" if args else ""
    selection = "" if is_leaf_type(get_named_type(field.type)) else " { __typename }"
    return f"{operation} {{ {name}{arguments}{selection} }}"


def root_fields(operation: str) -> dict[str, str]:
    root = {"query": GRAPHQL_SCHEMA.query_type, "mutation": GRAPHQL_SCHEMA.mutation_type}[operation]
    assert root is not None
    return {name: minimal(operation, name, field) for name, field in root.fields.items()}


QUERIES = root_fields("query")
MUTATIONS = root_fields("mutation")
ROOT_OPERATIONS = [("query", name, text_) for name, text_ in QUERIES.items()] + [
    ("mutation", name, text_) for name, text_ in MUTATIONS.items()
]
OPERATOR_ONLY_PRESENT = [name for name in OPERATOR_ONLY if name in MUTATIONS]


# ---------------------------------------------------------------- helpers


async def post(
    api: Api, query: str, authorization: str | None, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await api.client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def database_state(engine: AsyncEngine) -> dict[str, list[Any]]:
    """Every row of every table: a refused request must leave them all equal (but for the
    audit log, where a refused mutation writes its row by design: tests/test_audit.py)."""
    async with engine.connect() as conn:
        state = {}
        for table in metadata.sorted_tables:
            if table.name == "audit_log":
                continue
            order = list(table.primary_key.columns) or list(table.columns)
            state[table.name] = list((await conn.execute(select(table).order_by(*order))).all())
        return state


def refused_at_top_level(body: dict[str, Any], name: str, code: str) -> None:
    """One top-level error at the root field ``name`` with ``extensions.code``; no data."""
    errors = body.get("errors")
    assert errors, body
    assert [(e.get("extensions") or {}).get("code") for e in errors] == [code], errors
    assert errors[0]["path"] == [name]
    assert body.get("data") is None or body["data"].get(name) is None, body


async def stored_tokens(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(select(api_tokens).order_by(api_tokens.c.id))).all())


async def viewer(api: Api, token: str) -> dict[str, Any]:
    found: dict[str, Any] = (await api.gql(VIEWER, token=token))["viewer"]
    return found


def missing_account() -> str:
    return ids.encode("Account", 987_654_321)


# ---------------------------------------------------------------- P1: no principal


def test_p1_the_schema_has_the_root_fields_of_the_api() -> None:
    """The enumeration below really covers the API (not an empty or stale schema)."""
    assert {"node", "viewer", "account", "accounts", "settings"} <= set(QUERIES)
    assert {
        "createAccount",
        "createApiToken",
        "updateSettings",
        "inviteMember",
        "respondToInvitation",
        "dissociateMember",
    } <= set(MUTATIONS)


@pytest.mark.parametrize("header", list(BAD_HEADERS), ids=list(BAD_HEADERS))
@pytest.mark.parametrize(
    ("operation", "name", "query"),
    ROOT_OPERATIONS,
    ids=[f"{op}.{name}" for op, name, _ in ROOT_OPERATIONS],
)
async def test_p1_every_root_field_needs_a_principal(
    api: Api, operation: str, name: str, query: str, header: str
) -> None:
    # given
    before = await database_state(api.engine)

    # when
    body = await post(api, query, BAD_HEADERS[header])

    # then
    refused_at_top_level(body, name, "UNAUTHENTICATED")
    if operation == "mutation":
        assert await database_state(api.engine) == before


@pytest.mark.parametrize(
    ("operation", "name", "query"),
    ROOT_OPERATIONS,
    ids=[f"{op}.{name}" for op, name, _ in ROOT_OPERATIONS],
)
async def test_p1_the_minimal_operations_are_valid_graphql(
    api: Api, operation: str, name: str, query: str
) -> None:
    """With the operator token the same text gets past validation and authentication, so
    UNAUTHENTICATED above is about the token, not about a malformed query."""
    # when
    body = await post(api, query, f"Bearer {OPERATOR_TOKEN}")

    # then
    codes = [(e.get("extensions") or {}).get("code") for e in body.get("errors") or []]
    assert "UNAUTHENTICATED" not in codes and "FORBIDDEN" not in codes, body
    assert "GRAPHQL_VALIDATION_FAILED" not in codes, body
    assert all("Cannot query field" not in e["message"] for e in body.get("errors") or []), body


@pytest.mark.parametrize("header", ["none", "garbage"])
async def test_p1_introspection_works_without_a_token(api: Api, header: str) -> None:
    # when
    typename = await post(api, TYPENAME, BAD_HEADERS[header])
    mutation = await post(api, MUTATION_TYPENAME, BAD_HEADERS[header])
    schema_body = await post(api, INTROSPECTION, BAD_HEADERS[header])

    # then
    assert typename["data"] == {"__typename": "Query"} and "errors" not in typename
    assert mutation["data"] == {"__typename": "Mutation"} and "errors" not in mutation
    assert "errors" not in schema_body
    data = schema_body["data"]
    assert data["__schema"]["queryType"] == {"name": "Query"}
    assert data["__schema"]["mutationType"] == {"name": "Mutation"}
    assert "Account" in {t["name"] for t in data["__schema"]["types"]}
    assert "members" in {f["name"] for f in data["__type"]["fields"]}


async def test_p1_a_wrong_token_reads_unlike_a_missing_one(api: Api) -> None:
    """Both UNAUTHENTICATED; extensions.reason and the message tell which it was."""
    missing = await post(api, VIEWER, None)
    wrong = await post(api, VIEWER, "Bearer agt_" + "x" * 43)
    refused_at_top_level(missing, "viewer", "UNAUTHENTICATED")
    refused_at_top_level(wrong, "viewer", "UNAUTHENTICATED")
    assert missing["errors"][0]["extensions"]["reason"] == "NO_TOKEN"
    assert wrong["errors"][0]["extensions"]["reason"] == "INVALID_TOKEN"
    assert "unknown or revoked" in wrong["errors"][0]["message"]
    assert "Authorization: Bearer" in missing["errors"][0]["message"]


async def test_p1_a_revoked_token_authenticates_nobody(api: Api, redis: ArqRedis) -> None:
    # given
    account = await api.account("Acme")
    token = await api.token(account)
    assert (await viewer(api, token))["account"]["id"] == account

    # when: revoked as `accountgraph token revoke` does (commit, then announce)
    async with api.engine.begin() as conn:
        assert len(await tokens.revoke(conn, token)) == 1
    await announce_revoked(redis, [tokens.hash_token(token)])

    # then: this gateway has dropped the principal it kept
    body = await post(api, VIEWER, f"Bearer {token}")
    for _ in range(50):
        if body.get("errors"):
            break
        await asyncio.sleep(0.02)
        body = await post(api, VIEWER, f"Bearer {token}")
    refused_at_top_level(body, "viewer", "UNAUTHENTICATED")


async def test_p1_the_bearer_scheme_is_case_insensitive(api: Api) -> None:
    # given
    account = await api.account("Acme")
    token = await api.token(account)

    # when
    body = await post(api, VIEWER, f"bearer {token}")

    # then
    assert body["data"]["viewer"] == {
        "kind": "ACCOUNT_USER",
        "account": {"id": account, "name": "Acme"},
    }


# ---------------------------------------------------------------- P4: operators only


def test_p4_create_account_and_update_settings_are_operator_only() -> None:
    assert {"createAccount", "updateSettings"} <= set(OPERATOR_ONLY_PRESENT)


@pytest.mark.parametrize("who", ["master", "member", "standalone"])
@pytest.mark.parametrize("name", OPERATOR_ONLY_PRESENT)
async def test_p4_operator_only_mutations_are_forbidden_to_account_users(
    api: Api, name: str, who: str
) -> None:
    # given
    given = await enterprise(api, 1)
    standalone = await api.account("Standalone")
    token = {
        "master": given.master_token,
        "member": given.member_tokens[0],
        "standalone": await api.token(standalone),
    }[who]
    before = await database_state(api.engine)

    # when
    body = await post(api, MUTATIONS[name], f"Bearer {token}")

    # then
    refused_at_top_level(body, name, "FORBIDDEN")
    assert await database_state(api.engine) == before


@pytest.mark.parametrize("who", ["master", "member"])
async def test_p4_an_account_user_cannot_create_accounts(api: Api, who: str) -> None:
    # given
    given = await enterprise(api, 1)
    token = given.master_token if who == "master" else given.member_tokens[0]
    before = await database_state(api.engine)

    # when
    body = await api.raw(CREATE_ACCOUNT, {"input": {"name": "Sneaky"}}, token)

    # then
    refused_at_top_level(body, "createAccount", "FORBIDDEN")
    assert await database_state(api.engine) == before
    names = [
        edge["node"]["id"]
        for edge in (await api.gql('{ accounts(search: "Sneaky") { edges { node { id } } } }'))[
            "accounts"
        ]["edges"]
    ]
    assert names == []


@pytest.mark.parametrize("who", ["master", "member"])
async def test_p4_an_account_user_cannot_change_platform_settings(api: Api, who: str) -> None:
    # given
    given = await enterprise(api, 1)
    token = given.master_token if who == "master" else given.member_tokens[0]
    before = await database_state(api.engine)

    # when
    body = await api.raw(UPDATE_SETTINGS, {"input": {"billingHierarchyEnabled": False}}, token)

    # then
    refused_at_top_level(body, "updateSettings", "FORBIDDEN")
    assert await database_state(api.engine) == before
    assert (await api.gql(SETTINGS, token=token))["settings"] == {"billingHierarchyEnabled": True}


# ---------------------------------------------------------------- P4: tokens


@pytest.mark.parametrize("whose", ["master", "member", "standalone"])
async def test_p4_operator_creates_a_token_for_any_account(api: Api, whose: str) -> None:
    # given
    given = await enterprise(api, 1)
    standalone = await api.account("Standalone")
    account = {"master": given.master, "member": given.members[0], "standalone": standalone}[whose]

    # when
    payload = await api.ok("createApiToken", CREATE_TOKEN, {"accountId": account, "name": "ci"})

    # then
    token = payload["token"]
    assert token.startswith("agt_")
    assert (await viewer(api, token))["kind"] == "ACCOUNT_USER"
    assert (await viewer(api, token))["account"]["id"] == account
    row = (await stored_tokens(api.engine))[-1]
    assert row.account_id == ids.decode_as(account, "Account")
    assert (row.name, row.created_by, row.revoked_at) == ("ci", "operator:env", None)


async def test_p4_operator_creates_an_operator_token(api: Api) -> None:
    # given
    member = await api.account("Member")

    # when
    payload = await api.ok("createApiToken", CREATE_TOKEN, {"accountId": None, "name": "bot"})

    # then
    token = payload["token"]
    assert await viewer(api, token) == {"kind": "OPERATOR", "account": None}
    row = (await stored_tokens(api.engine))[-1]
    assert (row.account_id, row.name) == (None, "bot")
    # it has operators' powers, and its acts are recorded under its name (H2)
    created = await api.ok("createAccount", CREATE_ACCOUNT, {"name": "Master"}, token)
    master = created["account"]["id"]
    invited = await api.ok(
        "inviteMember", INVITE, {"masterId": master, "memberId": member, "type": "FINANCIAL"}, token
    )
    assert invited["link"]["history"] == [{"actor": "operator:bot"}]


@pytest.mark.parametrize("who", ["master", "member", "standalone"])
async def test_p4_an_account_user_creates_tokens_for_its_own_account(api: Api, who: str) -> None:
    # given
    given = await enterprise(api, 1)
    standalone = await api.account("Standalone")
    account, token, actor = {
        "master": (given.master, given.master_token, "Master:test"),
        "member": (given.members[0], given.member_tokens[0], "Member-1:test"),
        "standalone": (standalone, await api.token(standalone), "Standalone:test"),
    }[who]

    # when
    payload = await api.ok(
        "createApiToken", CREATE_TOKEN, {"accountId": account, "name": "laptop"}, token
    )

    # then
    created = payload["token"]
    assert created != token
    assert await viewer(api, created) == (await viewer(api, token))
    assert (await viewer(api, created))["account"]["id"] == account
    row = (await stored_tokens(api.engine))[-1]
    assert (row.name, row.created_by) == ("laptop", actor)


async def test_p4_a_master_cannot_create_tokens_for_its_member(api: Api) -> None:
    # given: the member is visible to its master, but tokens are its own users' to make
    given = await enterprise(api, 1)
    before = await database_state(api.engine)

    # when
    payload = await api.mutate(
        "createApiToken",
        CREATE_TOKEN,
        {"accountId": given.members[0], "name": "x"},
        given.master_token,
    )

    # then
    assert payload["token"] is None
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
        ("PERMISSION_NOT_GRANTED", ["accountId"])
    ]
    assert await database_state(api.engine) == before


@pytest.mark.parametrize(
    "case",
    [
        "sibling",
        "member-for-master",
        "stranger-for-master",
        "stranger-for-member",
        "missing",
        "garbage",
        "link-id",
    ],
)
async def test_p4_tokens_for_accounts_the_user_cannot_see_are_not_found(
    api: Api, case: str
) -> None:
    # given
    given = await enterprise(api, 2)
    stranger_token = await api.token(await api.account("Stranger"))
    token, account = {
        "sibling": (given.member_tokens[0], given.members[1]),
        "member-for-master": (given.member_tokens[0], given.master),
        "stranger-for-master": (stranger_token, given.master),
        "stranger-for-member": (stranger_token, given.members[0]),
        "missing": (given.master_token, missing_account()),
        "garbage": (given.master_token, "garbage"),
        "link-id": (given.master_token, given.links[0]),
    }[case]
    before = await database_state(api.engine)

    # when
    payload = await api.mutate(
        "createApiToken", CREATE_TOKEN, {"accountId": account, "name": "x"}, token
    )

    # then
    assert payload["token"] is None
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
        ("NOT_FOUND", ["accountId"])
    ]
    assert await database_state(api.engine) == before
    absent = await api.mutate(
        "createApiToken", CREATE_TOKEN, {"accountId": missing_account(), "name": "x"}, token
    )
    assert absent == payload  # a hidden account answers like one that does not exist


@pytest.mark.parametrize("who", ["master", "member"])
async def test_p4_an_account_user_cannot_create_operator_tokens(api: Api, who: str) -> None:
    # given
    given = await enterprise(api, 1)
    token = given.master_token if who == "master" else given.member_tokens[0]
    before = await database_state(api.engine)

    # when
    payload = await api.mutate(
        "createApiToken", CREATE_TOKEN, {"accountId": None, "name": "root"}, token
    )

    # then
    assert payload["token"] is None
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
        ("PERMISSION_NOT_GRANTED", ["accountId"])
    ]
    assert await database_state(api.engine) == before


@pytest.mark.parametrize("name", ["", "   ", "x" * 201])
async def test_p4_a_token_needs_a_name(api: Api, name: str) -> None:
    # given
    account = await api.account("Acme")
    before = await database_state(api.engine)

    # when
    payload = await api.mutate("createApiToken", CREATE_TOKEN, {"accountId": account, "name": name})

    # then
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [("INVALID_INPUT", ["name"])]
    assert await database_state(api.engine) == before


async def test_p4_a_token_is_shown_once_and_only_its_hash_is_stored(api: Api) -> None:
    # given
    account = await api.account("Acme")

    # when
    first = await api.token(account, "same-name")
    second = await api.token(account, "same-name")
    operator = await api.token(None, "ops")

    # then
    assert len({first, second, operator}) == 3
    rows = await stored_tokens(api.engine)
    assert [row.token_hash for row in rows] == [
        hashlib.sha256(token.encode()).hexdigest() for token in (first, second, operator)
    ]
    for row in rows:
        stored = " ".join(str(value) for value in row)
        for token in (first, second, operator):
            assert token not in stored
            assert token.removeprefix("agt_") not in stored
    # the token itself is the credential: it works
    assert (await viewer(api, first))["account"]["id"] == account
    assert (await viewer(api, operator))["kind"] == "OPERATOR"
