"""P1-P4 (issue 7): the authorization matrix over the whole schema.

Every Query, Mutation and Subscription field of the schema is read from the schema
itself; each must have a row in ``MATRIX`` (a field without one fails
``test_every_root_field_has_a_decision``, so a new field needs a decision). A row gives
the input, built over one enterprise, and the expected outcome for each principal:

- ``ok``: data returned, no top-level error, no user error;
- ``null``: hidden, the field answers null, no error;
- an ``ErrorCode`` (``NOT_FOUND``, ``PERMISSION_NOT_GRANTED``, ...): the user error;
- ``FORBIDDEN`` / ``UNAUTHENTICATED``: the top-level error with that code;
- for the subscription: ``event`` (the notification arrives), ``silent`` (subscribed,
  nothing arrives) and ``4403`` (the socket is closed at connection_init).

The enterprise (built once for the module): a master ``M`` with a trusteeship member
``A`` (every permission) and a sibling ``B``, and a stranger ``S`` (an unrelated account).
The principals are an operator, M's user, A's user, S's user and no token. Inputs target
M's and A's objects; a mutation that consumes its target (an invitation, a bill-to to
remove, a link to dissociate) gets a fresh one per cell from ``prepare``. One request per
cell; cells run in table order, principals in ``PRINCIPALS`` order (``dissociateMember``
is last, as A's user ends A's own link there).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import websockets
from arq.connections import ArqRedis
from graphql import GraphQLField, get_named_type, is_leaf_type
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.typing import Subprotocol

from accountgraph.api import ids
from accountgraph.models import metadata
from accountgraph.schema import schema
from tests.helpers import OPERATOR_TOKEN, Api

GRAPHQL_SCHEMA = schema._schema
PRINCIPALS = ("none", "stranger", "member", "master", "operator")
TOP_LEVEL = {"FORBIDDEN", "UNAUTHENTICATED"}

# A row per principal: (operator, master, member, stranger, none).
OPERATOR_ONLY = {
    "operator": "ok",
    "master": "FORBIDDEN",
    "member": "FORBIDDEN",
    "stranger": "FORBIDDEN",
    "none": "UNAUTHENTICATED",
}


def expect(
    operator: str, master: str, member: str, stranger: str, none: str = "UNAUTHENTICATED"
) -> dict[str, str]:
    return {
        "operator": operator,
        "master": master,
        "member": member,
        "stranger": stranger,
        "none": none,
    }


@dataclass
class World:
    """The enterprise and its objects (global ids), and a token per principal."""

    api: Api
    master: str = ""
    member: str = ""
    sibling: str = ""
    stranger: str = ""
    link: str = ""
    sibling_link: str = ""
    member_bill_to: str = ""
    member_site: str = ""
    master_bill_to: str = ""
    master_payment_method: str = ""
    resource: str = ""
    group: str = ""
    tokens: dict[str, str | None] = field(default_factory=dict)

    async def op(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        return await self.api.gql(query, variables, OPERATOR_TOKEN)

    async def fresh_account(self, name: str) -> str:
        return await self.api.account(f"{name}-{uuid.uuid4().hex[:6]}")


Prepare = Callable[[World, str], Awaitable[dict[str, Any]]]


@dataclass
class Row:
    """One decision: the field, its arguments for ``principal`` and the expected outcomes."""

    field: str
    args: Prepare
    expected: dict[str, str]
    label: str = ""

    @property
    def id(self) -> str:
        return f"{self.field}:{self.label}" if self.label else self.field


def row(
    name: str,
    args: Callable[[World, str], dict[str, Any]] | Prepare,
    expected: dict[str, str],
    label: str = "",
    *,
    prepared: bool = False,
) -> Row:
    if prepared:
        return Row(name, args, expected, label)  # type: ignore[arg-type]

    async def sync_args(world: World, principal: str) -> dict[str, Any]:
        return args(world, principal)  # type: ignore[return-value]

    return Row(name, sync_args, expected, label)


def unique(principal: str) -> str:
    return f"{principal}-{uuid.uuid4().hex[:6]}"


# ---------------------------------------------------------------- fresh targets

INVITE = """mutation($input: InviteMemberInput!) { inviteMember(input: $input) {
  link { id } userErrors { code } } }"""
RESPOND = """mutation($input: RespondToInvitationInput!) {
  respondToInvitation(input: $input) { link { id } userErrors { code } } }"""
ADD_BILL_TO = """mutation($input: AddBillToInput!) { addBillTo(input: $input) {
  billTo { id } userErrors { code } } }"""
ADD_PAYMENT_METHOD = """mutation($input: AddPaymentMethodInput!) {
  addPaymentMethod(input: $input) { paymentMethod { id } userErrors { code } } }"""


async def fresh_invitation(world: World) -> str:
    invitee = await world.fresh_account("Invitee")
    payload = (
        await world.op(
            INVITE,
            {"input": {"masterId": world.master, "memberId": invitee, "type": "TRUSTEESHIP"}},
        )
    )["inviteMember"]
    assert payload["userErrors"] == [], payload
    link: str = payload["link"]["id"]
    return link


async def fresh_link(world: World) -> str:
    link = await fresh_invitation(world)
    payload = await world.op(
        RESPOND,
        {
            "input": {
                "linkId": link,
                "accept": True,
                "permissions": ["SYNC_CREDIT_CONTROL", "VIEW_FINANCE", "MANAGE_INVOICES"],
            }
        },
    )
    assert payload["respondToInvitation"]["userErrors"] == [], payload
    return link


async def invite_args(world: World, principal: str) -> dict[str, Any]:
    return {
        "input": {
            "masterId": world.master,
            "type": "FINANCIAL",
            "memberId": await world.fresh_account("Invitee"),
        }
    }


async def respond_args(world: World, principal: str) -> dict[str, Any]:
    return {"input": {"linkId": await fresh_invitation(world), "accept": False}}


async def remove_bill_to_args(world: World, principal: str) -> dict[str, Any]:
    payload = (
        await world.op(
            ADD_BILL_TO,
            {"input": {"accountId": world.member, "name": unique("spare"), "isPrimary": False}},
        )
    )["addBillTo"]
    assert payload["userErrors"] == [], payload
    return {"input": {"billToId": payload["billTo"]["id"]}}


async def managed_payment_method_args(world: World, principal: str) -> dict[str, Any]:
    payload = (
        await world.op(
            ADD_PAYMENT_METHOD, {"input": {"accountId": world.master, "label": unique("card")}}
        )
    )["addPaymentMethod"]
    assert payload["userErrors"] == [], payload
    return {"input": {"paymentMethodId": payload["paymentMethod"]["id"], "managedId": world.member}}


SET_AUTO_PAY = """mutation($input: SetAutoPayInput!) { setAutoPay(input: $input) {
  userErrors { code } } }"""


async def auto_top_up_args(world: World, principal: str) -> dict[str, Any]:
    """W3: a fresh auto-pay method of M for each cell."""
    method = (await managed_payment_method_args(world, principal))["input"]["paymentMethodId"]
    payload = await world.op(SET_AUTO_PAY, {"input": {"paymentMethodId": method, "autoPay": True}})
    assert payload["setAutoPay"]["userErrors"] == [], payload
    return {
        "input": {
            "accountId": world.master,
            "threshold": "1.00",
            "amount": "5.00",
            "paymentMethodId": method,
            "enabled": False,
        }
    }


COST_CENTER_ON = """mutation($input: UpdateAccountInput!) { updateAccount(input: $input) {
  userErrors { code } } }"""
SET_BUDGET = """mutation($input: SetBudgetInput!) { setBudget(input: $input) {
  budget { id } userErrors { code } } }"""


async def budget_args(world: World, principal: str) -> dict[str, Any]:
    """C3: a budget on M (cost center on) for each cell."""
    payload = await world.op(
        COST_CENTER_ON, {"input": {"accountId": world.master, "costCenterEnabled": True}}
    )
    assert payload["updateAccount"]["userErrors"] == [], payload
    return {
        "input": {
            "accountId": world.master,
            "name": unique(principal),
            "amount": "100.00",
            "period": "MONTHLY",
            "thresholds": [{"basis": "ACTUAL", "percent": "80"}],
        }
    }


async def remove_budget_args(world: World, principal: str) -> dict[str, Any]:
    """C3: a fresh budget of M to remove in each cell."""
    payload = await world.op(SET_BUDGET, await budget_args(world, principal))
    assert payload["setBudget"]["userErrors"] == [], payload
    return {"input": {"budgetId": payload["setBudget"]["budget"]["id"]}}


async def dissociate_args(world: World, principal: str) -> dict[str, Any]:
    """A's user ends A's own link (its last cell); master and operator fresh links."""
    if principal in ("master", "operator"):
        return {"input": {"linkId": await fresh_link(world)}}
    return {"input": {"linkId": world.link}}


# ---------------------------------------------------------------- the matrix

NOW = "2024-06-01T00:00:00+00:00"
LATER = "2030-01-01T00:00:00+00:00"
BATCH = expect("ok", "ok", "NOT_FOUND", "NOT_FOUND")

MATRIX: list[Row] = [
    # ------------------------------------------------------------ queries
    row("viewer", lambda w, p: {}, expect("ok", "ok", "ok", "ok")),
    row("settings", lambda w, p: {}, expect("ok", "ok", "ok", "ok")),
    row("accounts", lambda w, p: {}, expect("ok", "ok", "ok", "ok")),
    row("account", lambda w, p: {"id": w.member}, expect("ok", "ok", "ok", "null"), "member"),
    row("account", lambda w, p: {"id": w.sibling}, expect("ok", "ok", "null", "null"), "sibling"),
    # P3: a member sees its master's name fields through its link (finance null).
    row("account", lambda w, p: {"id": w.master}, expect("ok", "ok", "ok", "null"), "master"),
    row(
        "node", lambda w, p: {"id": w.member_site}, expect("ok", "ok", "ok", "null"), "member-site"
    ),
    row(
        "node",
        lambda w, p: {"id": w.master_bill_to},
        expect("ok", "ok", "null", "null"),
        "master-bill-to",
    ),
    row("sharing", lambda w, p: {"masterId": w.master}, expect("ok", "ok", "null", "null")),
    # Issue 15: every principal pages its own view of the audit log (tests/test_audit.py).
    row("auditLog", lambda w, p: {}, expect("ok", "ok", "ok", "ok")),
    # T1, T3: the platform's tax groups; each principal's own view of the ledger.
    row("taxGroups", lambda w, p: {}, expect("ok", "ok", "ok", "ok")),
    row(
        "generalLedger",
        lambda w, p: {"since": NOW, "until": LATER},
        expect("ok", "ok", "ok", "ok"),
    ),
    # ------------------------------------------------------------ operators only (P4)
    row("createAccount", lambda w, p: {"input": {"name": unique("Created")}}, OPERATOR_ONLY),
    row("updateSettings", lambda w, p: {"input": {"billingHierarchyEnabled": True}}, OPERATOR_ONLY),
    row(
        "setCreditLine",
        lambda w, p: {"input": {"masterId": w.master, "amount": "1000.00"}},
        OPERATOR_ONLY,
    ),
    row(
        "grantVoucherPool",
        lambda w, p: {"input": {"masterId": w.master, "amount": "5.00"}},
        OPERATOR_ONLY,
    ),
    row(
        "recordCharge",
        lambda w, p: {"input": {"accountId": w.master, "amount": "1.00", "description": "usage"}},
        OPERATOR_ONLY,
    ),
    row(
        "recordPayment",
        lambda w, p: {"input": {"accountId": w.master, "amount": "1.00"}},
        OPERATOR_ONLY,
    ),
    row(
        "adjustBalance",
        lambda w, p: {
            "input": {
                "accountId": w.master,
                "bucket": "CREDIT_REFUND",
                "amount": "1.00",
                "reason": "matrix",
            }
        },
        OPERATOR_ONLY,
    ),
    row(
        "issueCoupon",
        lambda w, p: {"input": {"accountId": w.master, "amount": "1.00", "validUntil": LATER}},
        OPERATOR_ONLY,
    ),
    row(
        "createResource",
        lambda w, p: {
            "input": {
                "ownerId": w.master,
                "type": "RESERVED_INSTANCE",
                "name": unique("RI"),
                "capacity": "1",
                "validFrom": NOW,
                "validUntil": LATER,
            }
        },
        OPERATOR_ONLY,
    ),
    row(
        "setDiscount",
        lambda w, p: {"input": {"accountId": w.master, "percent": "5"}},
        OPERATOR_ONLY,
    ),
    row(
        "createTaxGroup",
        lambda w, p: {"input": {"code": unique("TG"), "name": "matrix", "rate": "5"}},
        OPERATOR_ONLY,
    ),
    row(
        "setAccountTaxGroup",
        lambda w, p: {"input": {"accountId": w.master, "taxGroupCode": None}},
        OPERATOR_ONLY,
    ),
    row(
        "issueStoredValueCard",
        lambda w, p: {"input": {"accountId": w.master, "amount": "1.00"}},
        OPERATOR_ONLY,
    ),
    # ------------------------------------------------------------ tokens and accounts
    row(
        "createApiToken",
        lambda w, p: {"input": {"accountId": w.member, "name": "m"}},
        expect("ok", "PERMISSION_NOT_GRANTED", "ok", "NOT_FOUND"),
    ),
    row(
        "updateAccount",
        lambda w, p: {"input": {"accountId": w.member, "displayName": unique("A")}},
        expect("ok", "ok", "ok", "NOT_FOUND"),
    ),
    # ------------------------------------------------------------ links (H2, U1, U5)
    row("inviteMember", invite_args, expect("ok", "ok", "NOT_FOUND", "NOT_FOUND"), prepared=True),
    row(
        "respondToInvitation",
        respond_args,
        expect("ok", "PERMISSION_NOT_GRANTED", "NOT_FOUND", "NOT_FOUND"),
        prepared=True,
    ),
    # ------------------------------------------------------------ bill-tos and sites (H3, H4)
    row(
        "addBillTo",
        lambda w, p: {"input": {"accountId": w.member, "name": unique("AP")}},
        expect("ok", "ok", "ok", "NOT_FOUND"),
    ),
    row(
        "updateBillTo",
        lambda w, p: {"input": {"billToId": w.member_bill_to, "name": unique("AP")}},
        expect("ok", "ok", "ok", "NOT_FOUND"),
    ),
    row("removeBillTo", remove_bill_to_args, expect("ok", "ok", "ok", "NOT_FOUND"), prepared=True),
    row(
        "addSite",
        lambda w, p: {
            "input": {"accountId": w.member, "name": unique("site"), "billToId": w.member_bill_to}
        },
        expect("ok", "ok", "ok", "NOT_FOUND"),
    ),
    row(
        "updateSite",
        lambda w, p: {"input": {"siteId": w.member_site, "name": unique("site")}},
        expect("ok", "ok", "ok", "NOT_FOUND"),
    ),
    # ------------------------------------------------------------ funds (F3-F8)
    row(
        "allocateFunds",
        lambda w, p: {
            "input": {
                "masterId": w.master,
                "memberId": w.member,
                "amount": "1.00",
                "method": "CASH",
            }
        },
        expect("ok", "ok", "NOT_FOUND", "NOT_FOUND"),
    ),
    row(
        "reclaimFunds",
        lambda w, p: {
            "input": {
                "masterId": w.master,
                "memberId": w.member,
                "amount": "0.10",
                "method": "CASH",
            }
        },
        expect("ok", "ok", "NOT_FOUND", "NOT_FOUND"),
    ),
    row(
        "setCreditLimit",
        lambda w, p: {
            "input": {
                "masterId": w.master,
                "memberId": w.member,
                "limit": {"operator": "10.00", "master": "20.00"}.get(p, "30.00"),
            }
        },
        expect("ok", "ok", "NOT_FOUND", "NOT_FOUND"),
    ),
    row(
        "withdrawCash",
        lambda w, p: {"input": {"accountId": w.member, "amount": "1.00"}},
        # F8: a withdrawal is the account's own users' act, not even an operator's
        expect("PERMISSION_NOT_GRANTED", "PERMISSION_NOT_GRANTED", "ok", "NOT_FOUND"),
    ),
    # ------------------------------------------------------------ sharing (S)
    row(
        "setSharedResourceTypes",
        lambda w, p: {"input": {"masterId": w.master, "types": ["RESERVED_INSTANCE"]}},
        expect("ok", "ok", "NOT_FOUND", "NOT_FOUND"),
    ),
    row(
        "setAcceptedResourceTypes",
        lambda w, p: {"input": {"memberIds": [w.member], "types": ["RESERVED_INSTANCE"]}},
        expect("ok", "ok", "ok", "NOT_FOUND"),
    ),
    row(
        "createUserGroup",
        lambda w, p: {"input": {"masterId": w.master, "name": unique("group")}},
        expect("ok", "ok", "NOT_FOUND", "NOT_FOUND"),
    ),
    row(
        "setUserGroupMembers",
        lambda w, p: {"input": {"groupId": w.group, "memberIds": [w.member]}},
        expect("ok", "ok", "NOT_FOUND", "NOT_FOUND"),
    ),
    row(
        "shareResourceWithGroups",
        lambda w, p: {"input": {"resourceId": w.resource, "groupIds": [w.group]}},
        expect("ok", "ok", "NOT_FOUND", "NOT_FOUND"),
    ),
    # ------------------------------------------------------------ alerts (A)
    row(
        "setQuotaAlerts",
        lambda w, p: {"input": {"accountIds": [w.member], "threshold": "1.00", "enabled": False}},
        expect("ok", "ok", "ok", "NOT_FOUND"),
    ),
    row(
        "setNotificationChannels",
        lambda w, p: {"input": {"accountId": w.member, "email": "ap@member.example"}},
        expect("ok", "ok", "ok", "NOT_FOUND"),
    ),
    # ------------------------------------------------------------ billing (B, I, V)
    row(
        "createVoucher",
        lambda w, p: {
            "input": {
                "masterId": w.master,
                "amount": "1.00",
                "validFrom": NOW,
                "validUntil": LATER,
                "memberIds": [w.member],
            }
        },
        expect("ok", "ok", "NOT_FOUND", "NOT_FOUND"),
    ),
    row(
        "addPaymentMethod",
        lambda w, p: {"input": {"accountId": w.master, "label": unique("card")}},
        expect("ok", "ok", "NOT_FOUND", "NOT_FOUND"),
    ),
    row(
        "addManagedPaymentMethod",
        managed_payment_method_args,
        expect("ok", "ok", "NOT_FOUND", "NOT_FOUND"),
        prepared=True,
    ),
    row(
        "setAutoPay",
        lambda w, p: {"input": {"paymentMethodId": w.master_payment_method, "autoPay": False}},
        expect("ok", "ok", "NOT_FOUND", "NOT_FOUND"),
    ),
    row(
        "setAutoTopUp",
        auto_top_up_args,
        expect("ok", "ok", "NOT_FOUND", "NOT_FOUND"),
        prepared=True,
    ),
    row("setBudget", budget_args, expect("ok", "ok", "NOT_FOUND", "NOT_FOUND"), prepared=True),
    row(
        "removeBudget",
        remove_budget_args,
        expect("ok", "ok", "NOT_FOUND", "NOT_FOUND"),
        prepared=True,
    ),
    row(
        "setInvoiceMode",
        lambda w, p: {"input": {"accountId": w.master, "mode": "AGGREGATED"}},
        expect("ok", "ok", "NOT_FOUND", "NOT_FOUND"),
    ),
    row(
        "runBillCycle",
        lambda w, p: {
            "input": {"accountId": w.master, "periodStart": "2024-01-01", "periodEnd": "2024-01-31"}
        },
        expect("ok", "ok", "NOT_FOUND", "NOT_FOUND"),
    ),
    row(
        "setMemberInvoiceInfo",
        lambda w, p: {
            "input": {
                "masterId": w.master,
                "memberIds": [w.member],
                "invoiceTitle": unique("Title"),
            }
        },
        BATCH,
    ),
    row(
        "referenceMasterInvoiceInfo",
        lambda w, p: {"input": {"masterId": w.master, "memberIds": [w.member], "enabled": False}},
        BATCH,
    ),
    # ------------------------------------------------------------ last: it ends A's link
    row("dissociateMember", dissociate_args, expect("ok", "ok", "ok", "NOT_FOUND"), prepared=True),
]

# The subscription: a notification of A, who receives it.
SUBSCRIPTIONS = {"notifications": expect("event", "event", "event", "silent", "4403")}


# ---------------------------------------------------------------- the enterprise


async def clean_database(engine: AsyncEngine, redis: ArqRedis) -> None:
    tables = ", ".join(
        table.name for table in metadata.sorted_tables if table.name != "platform_settings"
    )
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        await conn.execute(text("UPDATE platform_settings SET billing_hierarchy_enabled = true"))
    await redis.flushdb()


CREATE_RESOURCE = """mutation($input: CreateResourceInput!) { createResource(input: $input) {
  resource { id } userErrors { code } } }"""
CREATE_GROUP = """mutation($input: CreateUserGroupInput!) { createUserGroup(input: $input) {
  userGroup { id } userErrors { code } } }"""
MONEY = """mutation($pay: RecordPaymentInput!, $memberPay: RecordPaymentInput!,
                    $line: SetCreditLineInput!) {
  recordPayment(input: $pay) { userErrors { code } }
  member: recordPayment(input: $memberPay) { userErrors { code } }
  setCreditLine(input: $line) { userErrors { code } }
}"""


@pytest.fixture(scope="module")
async def world(base_url: str, engine: AsyncEngine, redis: ArqRedis) -> AsyncIterator[World]:
    await clean_database(engine, redis)
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        api = Api(client, engine)
        found = World(api)
        found.master = await api.account("Master")
        found.member = await api.account("Member-A")
        found.sibling = await api.account("Member-B")
        found.stranger = await api.account("Stranger")
        found.link = await api.link(found.master, found.member)
        found.sibling_link = await api.link(found.master, found.sibling)
        found.member_bill_to = await api.bill_to(found.member, "A AP", isPrimary=True)
        found.member_site = await api.site(found.member, "A site", found.member_bill_to)
        found.master_bill_to = await api.bill_to(found.master, "M AP", isPrimary=True)
        payload = (
            await found.op(
                ADD_PAYMENT_METHOD, {"input": {"accountId": found.master, "label": "card"}}
            )
        )["addPaymentMethod"]
        found.master_payment_method = payload["paymentMethod"]["id"]
        found.resource = (
            await found.op(
                CREATE_RESOURCE,
                {
                    "input": {
                        "ownerId": found.master,
                        "type": "RESERVED_INSTANCE",
                        "name": "RI1",
                        "capacity": "4",
                        "validFrom": NOW,
                        "validUntil": LATER,
                    }
                },
            )
        )["createResource"]["resource"]["id"]
        found.group = (
            await found.op(CREATE_GROUP, {"input": {"masterId": found.master, "name": "G1"}})
        )["createUserGroup"]["userGroup"]["id"]
        money = await found.op(
            MONEY,
            {
                "pay": {"accountId": found.master, "amount": "10000.00"},
                "memberPay": {"accountId": found.member, "amount": "100.00"},
                "line": {"masterId": found.master, "amount": "1000.00"},
            },
        )
        assert all(value["userErrors"] == [] for value in money.values()), money
        await found.op(
            """mutation($input: GrantVoucherPoolInput!) {
            grantVoucherPool(input: $input) { userErrors { code } } }""",
            {"input": {"masterId": found.master, "amount": "100.00"}},
        )
        found.tokens = {
            "operator": OPERATOR_TOKEN,
            "master": await api.token(found.master),
            "member": await api.token(found.member),
            "stranger": await api.token(found.stranger),
            "none": None,
        }
        yield found


# ---------------------------------------------------------------- operations


def root_fields(root: str) -> dict[str, GraphQLField]:
    type_ = {
        "query": GRAPHQL_SCHEMA.query_type,
        "mutation": GRAPHQL_SCHEMA.mutation_type,
        "subscription": GRAPHQL_SCHEMA.subscription_type,
    }[root]
    return dict(type_.fields) if type_ is not None else {}


QUERIES, MUTATIONS = root_fields("query"), root_fields("mutation")
SUBSCRIPTION_FIELDS = root_fields("subscription")


def operation(name: str, variables: dict[str, Any]) -> str:
    """``query|mutation($vars) { name(args) { __typename [userErrors { code field }] } }``."""
    root = "mutation" if name in MUTATIONS else "query"
    graphql_field = (MUTATIONS if root == "mutation" else QUERIES)[name]
    declared = ", ".join(f"${arg}: {graphql_field.args[arg].type}" for arg in variables)
    passed = ", ".join(f"{arg}: ${arg}" for arg in variables)
    named = get_named_type(graphql_field.type)
    selection = ""
    if not is_leaf_type(named):
        fields = getattr(named, "fields", {})
        selection = (
            " { __typename"
            + (" userErrors { code field message }" if "userErrors" in fields else "")
            + " }"
        )
    head = f"{root}({declared})" if declared else root
    call = f"{name}({passed})" if passed else name
    return f"{head} {{ {call}{selection} }}"


def outcome(body: dict[str, Any], name: str) -> str:
    """What a response means, in the matrix's words."""
    errors = body.get("errors") or []
    if errors:
        codes = [(error.get("extensions") or {}).get("code") for error in errors]
        assert len(errors) == 1 and codes[0] in TOP_LEVEL, body
        assert errors[0].get("path") == [name], body
        assert (body.get("data") or {}).get(name) is None, body
        return str(codes[0])
    value = body["data"][name]
    if value is None:
        return "null"
    user_errors = value.get("userErrors") if isinstance(value, dict) else None
    if user_errors:
        user_codes: set[str] = {error["code"] for error in user_errors}
        assert len(user_codes) == 1, body
        return user_codes.pop()
    return "ok"


# ---------------------------------------------------------------- the tests


def test_every_root_field_has_a_decision() -> None:
    """A field of the schema missing here fails: a new field needs a row in MATRIX."""
    decided = {r.field for r in MATRIX}
    schema_fields = set(QUERIES) | set(MUTATIONS)
    assert schema_fields == decided, sorted(schema_fields ^ decided)
    assert set(SUBSCRIPTION_FIELDS) == set(SUBSCRIPTIONS)
    for r in MATRIX:
        assert set(r.expected) == set(PRINCIPALS), r.id
    assert all(expected["none"] == "UNAUTHENTICATED" for expected in (r.expected for r in MATRIX))


# ---------------------------------------------------------------- the subscription

SUBSCRIBE = """subscription($id: ID) { notifications(accountId: $id) { id kind
  account { id } } }"""
ALERT = """mutation($input: SetQuotaAlertsInput!) { setQuotaAlerts(input: $input) {
  userErrors { code } } }"""
ADJUST = """mutation($input: AdjustBalanceInput!) { adjustBalance(input: $input) {
  userErrors { code } } }"""
QUOTA = "query($id: ID!) { account(id: $id) { finance { availableQuota } } }"


@contextlib.asynccontextmanager
async def subscriber(url: str, token: str | None) -> AsyncIterator[Any]:
    async with websockets.connect(
        url, subprotocols=[Subprotocol("graphql-transport-ws")]
    ) as socket:
        payload = {} if token is None else {"Authorization": f"Bearer {token}"}
        await socket.send(json.dumps({"type": "connection_init", "payload": payload}))
        yield socket


@pytest.mark.parametrize("name", list(SUBSCRIPTIONS))
async def test_p_subscriptions_matrix(
    world: World, name: str, redis: ArqRedis, run_jobs: Any
) -> None:
    """A notification of A (a LOW_QUOTA crossing) reaches who may see A, and only them;
    no token: the socket is closed with 4403 at connection_init."""
    from accountgraph.alerts.service import PUBSUB_CHANNEL

    expected = SUBSCRIPTIONS[name]
    url = str(world.api.client.base_url).replace("http://", "ws://") + "/graphql"
    async with contextlib.AsyncExitStack() as stack:
        sockets: dict[str, Any] = {}
        results: dict[str, str] = {}
        before = dict(await redis.pubsub_numsub(PUBSUB_CHANNEL))
        listening = sum(int(v) for v in before.values())
        for principal in PRINCIPALS:
            socket = await stack.enter_async_context(subscriber(url, world.tokens[principal]))
            try:
                first = json.loads(await asyncio.wait_for(socket.recv(), 10))
            except websockets.ConnectionClosed as closed:
                results[principal] = str(closed.rcvd.code if closed.rcvd else None)
                continue
            assert first["type"] == "connection_ack", first
            await socket.send(
                json.dumps(
                    {
                        "id": "1",
                        "type": "subscribe",
                        "payload": {"query": SUBSCRIBE, "variables": {"id": world.member}},
                    }
                )
            )
            sockets[principal] = socket
            listening += 1
        # The gateway listens on Redis over one shared connection (alerts/fanout.py):
        # it is subscribed before the event is published.
        for _ in range(200):
            found = dict(await redis.pubsub_numsub(PUBSUB_CHANNEL))
            if sum(int(v) for v in found.values()) >= min(listening, 1):
                break
            await asyncio.sleep(0.05)

        # when: A's quota falls below its alert's threshold (A2)
        quota = (await world.op(QUOTA, {"id": world.member}))["account"]["finance"][
            "availableQuota"
        ]
        await world.op(
            ALERT, {"input": {"accountIds": [world.member], "threshold": quota, "enabled": True}}
        )
        await run_jobs()
        await world.op(
            ADJUST,
            {
                "input": {
                    "accountId": world.member,
                    "amount": "1.00",
                    "bucket": "UNSETTLED_AMOUNT",
                    "reason": "matrix",
                }
            },
        )
        await run_jobs()

        # then
        for principal, socket in sockets.items():
            try:
                message = json.loads(await asyncio.wait_for(socket.recv(), 3))
            except TimeoutError:
                results[principal] = "silent"
                continue
            assert message["type"] == "next", message
            assert message["payload"]["data"][name]["account"]["id"] == world.member
            results[principal] = "event"
        assert results == expected


CELLS = [(r, principal) for r in MATRIX for principal in PRINCIPALS]


@pytest.mark.parametrize(
    ("decision", "principal"), CELLS, ids=[f"{r.id}-{principal}" for r, principal in CELLS]
)
async def test_p_authorization_matrix(world: World, decision: Row, principal: str) -> None:
    # given
    variables = await decision.args(world, principal)
    token = world.tokens[principal]

    refused = decision.expected[principal] != "ok"
    before = await state_digest(world.api.engine) if refused else None

    # when: one request
    body = await world.api.raw(operation(decision.field, variables), variables, token)

    # then
    assert outcome(body, decision.field) == decision.expected[principal], body
    if refused:  # a refusal (or a hidden answer) changed nothing but the audit log
        assert await state_digest(world.api.engine) == before, body


def _digest_sql() -> str:
    """One statement: a digest of every row of every table but the audit log (which
    records refusals too)."""
    parts = [
        f"(SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM {name} t)"
        for name in sorted(t.name for t in metadata.sorted_tables if t.name != "audit_log")
    ]
    return "SELECT " + " || ".join(parts)


DIGEST = _digest_sql()


async def state_digest(engine: AsyncEngine) -> str:
    async with engine.connect() as conn:
        found: str = (await conn.execute(text(DIGEST))).scalar_one()
        return found


ACCOUNTS_PAGE = "{ accounts(first: 100) { totalCount edges { node { id } } } }"
ALL_ACCOUNTS = "SELECT id FROM accounts"
ACTIVE_LINKS = "SELECT master_id, member_id FROM links WHERE status = 'ACTIVE'"


@pytest.mark.parametrize("principal", ["operator", "master", "member", "stranger"])
async def test_p2_p3_p4_accounts_lists_exactly_the_visible_set(
    world: World, principal: str
) -> None:
    """Not a subset, not a superset: P4 every account; P2 the master and its ACTIVE
    members; P3 a member its own account only (of the master, the name only, through the
    link); a stranger itself."""
    async with world.api.engine.connect() as conn:
        every = {ids.encode("Account", r.id) for r in await conn.execute(text(ALL_ACCOUNTS))}
        active = [
            (ids.encode("Account", r.master_id), ids.encode("Account", r.member_id))
            for r in await conn.execute(text(ACTIVE_LINKS))
        ]
    me = {"master": world.master, "member": world.member, "stranger": world.stranger}
    if principal == "operator":
        visible = every
    else:
        visible = {me[principal]} | {member for master, member in active if master == me[principal]}
    body = await world.api.raw(ACCOUNTS_PAGE, None, world.tokens[principal])
    page = body["data"]["accounts"]
    assert {edge["node"]["id"] for edge in page["edges"]} == visible
    assert page["totalCount"] == len(visible)
