"""Issue 18: the read compiler answers exactly what the resolvers answer.

Two apps on the same database: the default one compiles tree reads to one statement
per entry (``api/compiler.py``); the other has ``ACCOUNTGRAPH_READ_COMPILER=false`` and
completes every field with its resolver. Every example document, the suite's tree
query, and random selections (aliases, named and inline fragments, ``@include``/``@skip``
with variables, nested pages with cursors, fields the compiler leaves to the resolvers)
are sent to both under each kind of principal, and the answers must be equal.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from accountgraph.api import ids
from accountgraph.api.budget import BUCKET_KEY
from accountgraph.api.compiler import COMPILED
from accountgraph.app import create_app
from accountgraph.config import Settings
from tests.accounts.test_tree_queries import TREE, build_tree
from tests.conftest import StatementCounter, serving
from tests.helpers import DISSOCIATE, OPERATOR_TOKEN, Api

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.graphql"))
RANDOM_SELECTIONS = 500


@pytest.fixture(scope="session")
async def fallback_url(
    settings: Settings, engine: AsyncEngine, redis: ArqRedis
) -> AsyncIterator[str]:
    resolvers_only = settings.model_copy(update={"read_compiler": False})
    async with serving(create_app(resolvers_only, engine, redis)) as url:
        yield url


@dataclass
class Graph:
    """Who asks: every kind of principal, and the ids they ask about."""

    tokens: dict[str, str | None]
    master: str
    member: str


async def graph(api: Api) -> Graph:
    master = await api.account("Master", branch="North", terms="NET30")
    viewing = await api.account("Viewing")
    blind = await api.account("Blind")
    invited = await api.account("Invited")
    gone = await api.account("Gone")
    stranger = await api.account("Stranger")
    await api.link(master, viewing)
    await api.link(master, blind, "FINANCIAL", permissions=["MANAGE_INVOICES"])
    await api.invite(master, invited)
    gone_link = await api.link(master, gone)
    await api.ok("dissociateMember", DISSOCIATE, {"linkId": gone_link})
    await money(api, master, viewing, blind)
    for account in (master, viewing, blind):
        bill_to = await api.bill_to(account, f"AP of {account[-4:]}", isPrimary=True)
        await api.bill_to(account, f"Second of {account[-4:]}")
        await api.site(account, f"Site of {account[-4:]}", bill_to)
    return Graph(
        tokens={
            "operator": OPERATOR_TOKEN,
            "master": await api.token(master),
            "member": await api.token(viewing),
            "dissociated": await api.token(gone),
            "stranger": await api.token(stranger),
        },
        master=master,
        member=viewing,
    )


_MONEY_PAYLOAD = "{ userErrors { code field message } }"


async def money(api: Api, master: str, viewing: str, blind: str) -> None:
    """Balances that are not all zero: a master's cash and credit line, a trusteeship
    member's allocated cash and credit and its own (frozen) cash, a charge, a payment."""

    async def ok(name: str, input_type: str, input: dict[str, Any]) -> None:
        document = f"mutation($input: {input_type}!) {{ {name}(input: $input) {_MONEY_PAYLOAD} }}"
        await api.ok(name, document, input)

    await ok("recordPayment", "RecordPaymentInput", {"accountId": master, "amount": "100.00"})
    await ok("setCreditLine", "SetCreditLineInput", {"masterId": master, "amount": "80.00"})
    await ok(
        "allocateFunds",
        "TransferFundsInput",
        {"masterId": master, "memberId": viewing, "amount": "30.50"},
    )
    await ok(
        "setCreditLimit",
        "SetCreditLimitInput",
        {"masterId": master, "memberId": viewing, "limit": "12.25"},
    )
    await ok("recordPayment", "RecordPaymentInput", {"accountId": viewing, "amount": "7.10"})
    await ok(
        "recordCharge",
        "RecordChargeInput",
        {"accountId": viewing, "amount": "3.35", "description": "compute"},
    )
    await ok("recordPayment", "RecordPaymentInput", {"accountId": blind, "amount": "4.00"})
    # A1, A4, B2, B3: alerts, channels, an invoice mode and a discount to compile.
    await ok(
        "setQuotaAlerts",
        "SetQuotaAlertsInput",
        {"accountIds": [master, viewing], "threshold": "50.00", "enabled": True},
    )
    await ok(
        "setNotificationChannels",
        "SetNotificationChannelsInput",
        {"accountId": master, "email": "ap@example.com", "webhookUrl": "https://example.com/h"},
    )
    await ok("setInvoiceMode", "SetInvoiceModeInput", {"accountId": master, "mode": "PER_MEMBER"})
    await ok("setDiscount", "SetDiscountInput", {"accountId": blind, "percent": "12.5"})


class Both:
    def __init__(self, api: Api, fallback: httpx.AsyncClient, redis: ArqRedis) -> None:
        self.api = api
        self.fallback = fallback
        self.redis = redis

    async def same(self, query: str, variables: dict[str, Any], token: str | None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        body = {"query": query, "variables": variables}
        # Both apps draw on one Redis, so one rate-limit bucket per principal: refill it,
        # or hundreds of tree reads in a row would be answered 429 by whichever asks last.
        buckets = [key async for key in self.redis.scan_iter(f"{BUCKET_KEY}*")]
        if buckets:
            await self.redis.delete(*buckets)
        compiled = await self.api.client.post("/graphql", json=body, headers=headers)
        resolved = await self.fallback.post("/graphql", json=body, headers=headers)
        assert compiled.status_code == resolved.status_code, (compiled.text, resolved.text)
        left, right = compiled.json(), resolved.json()
        left.get("extensions", {}).pop("cost", None)
        right.get("extensions", {}).pop("cost", None)
        assert _canonical(left) == _canonical(right), query
        return left


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


@pytest.fixture
async def both(api: Api, fallback_url: str, redis: ArqRedis) -> AsyncIterator[Both]:
    async with httpx.AsyncClient(base_url=fallback_url, timeout=30) as client:
        yield Both(api, client, redis)


def _compiled_count(outcome: str = "compiled", type_name: str = "Account") -> float:
    value: float = COMPILED.labels(type_name, outcome)._value.get()
    return value


async def test_examples_answer_the_same_under_every_principal(api: Api, both: Both) -> None:
    given = await graph(api)
    variables = {
        "masterId": given.master,
        "memberId": given.member,
        "accountId": given.member,
        "id": given.master,
        "amount": "1.00",
    }
    for path in EXAMPLES:
        document = path.read_text()
        if "mutation" in document.split("{", 1)[0]:
            continue  # the examples that change money are the rule tests' to run
        for token in given.tokens.values():
            await both.same(document, variables, token)


async def test_the_tree_is_compiled_and_answers_the_same(api: Api, both: Both) -> None:
    token = await build_tree(api, 30)
    before = _compiled_count()
    answer = await both.same(TREE, {}, token)
    assert len(answer["data"]["viewer"]["account"]["members"]["edges"]) == 30
    assert _compiled_count() == before + 1  # one statement for the whole account subtree


async def test_a_field_the_compiler_does_not_know_falls_back(api: Api, both: Both) -> None:
    given = await graph(api)
    before = _compiled_count("fallback")
    query = "query($id: ID!) { account(id: $id) { name finance { cashBalance couponCount } } }"
    answer = await both.same(query, {"id": given.member}, given.tokens["master"])
    assert answer["data"]["account"]["finance"] is not None
    assert _compiled_count("fallback") == before + 1


async def test_the_viewers_own_account_falls_back_by_loading_it(
    api: Api, both: Both, statements: StatementCounter
) -> None:
    # given: viewer.account is answered from the principal's id, unread, when compiled
    given = await graph(api)
    compiled_query = "{ viewer { account { id name } } }"
    await api.gql(compiled_query, token=given.tokens["master"])  # the token's principal kept
    before = statements.count
    assert (await api.gql(compiled_query, token=given.tokens["master"]))["viewer"]["account"]
    assert statements.count - before == 1  # the compiled statement, nothing else

    # when: a field the compiler does not know makes the resolvers answer it
    fallback = _compiled_count("fallback")
    query = "{ viewer { kind account { name finance { cashBalance couponCount } } } }"
    answer = await both.same(query, {}, given.tokens["master"])

    # then: the account was loaded for them, and the answer is the fallback app's
    assert answer["data"]["viewer"]["account"]["name"] == "Master"
    assert _compiled_count("fallback") == fallback + 1


async def test_finance_is_compiled_and_answers_the_same(api: Api, both: Both) -> None:
    given = await graph(api)
    query = f"query($id: ID!) {{ account(id: $id) {{ finance {{ {' '.join(FINANCE)} }} }} }}"
    for target in (given.master, given.member):
        for token in given.tokens.values():
            before = _compiled_count(), _compiled_count("fallback")
            answer = await both.same(query, {"id": target}, token)
            entries = 0 if answer["data"]["account"] is None else 1  # not seen: no entry
            after = _compiled_count(), _compiled_count("fallback")
            assert after == (before[0] + entries, before[1])
    member = await both.same(query, {"id": given.member}, given.tokens["master"])
    finance = member["data"]["account"]["finance"]
    assert finance["frozenCash"] != "0.00" and finance["creditLine"] is None, finance
    master = await both.same(query, {"id": given.master}, given.tokens["master"])
    assert master["data"]["account"]["finance"]["availableCredit"] is not None


async def test_alerts_and_billing_fields_are_compiled_and_answer_the_same(
    api: Api, both: Both
) -> None:
    """A1, A4 (alerts) and B2, B3 (billing) compile where their area defines them: each
    entry is one statement (no fallback), null where P2/P3 hide it or nothing is set."""
    given = await graph(api)
    query = (
        "query($id: ID!) { account(id: $id) { invoiceMode discountPercent "
        f"quotaAlert {{ {' '.join(QUOTA_ALERT)} }} channels {{ {' '.join(CHANNELS)} }} "
        "members { edges { node { name invoiceMode discountPercent quotaAlert { threshold } "
        "channels { email } } } } } }"
    )
    for target in (given.master, given.member):
        for token in given.tokens.values():
            before = _compiled_count(), _compiled_count("fallback")
            answer = await both.same(query, {"id": target}, token)
            entries = 0 if answer["data"]["account"] is None else 1
            assert (_compiled_count(), _compiled_count("fallback")) == (
                before[0] + entries,
                before[1],
            )
    master = (await both.same(query, {"id": given.master}, given.tokens["master"]))["data"]
    account = master["account"]
    assert account["invoiceMode"] == "PER_MEMBER"
    assert account["quotaAlert"]["threshold"] == "50.00"
    assert account["channels"]["webhookUrl"] == "https://example.com/h"
    members = {edge["node"]["name"]: edge["node"] for edge in account["members"]["edges"]}
    assert members["Blind"]["discountPercent"] is None  # no VIEW_FINANCE on Blind (P2)
    operator = await both.same(query, {"id": given.master}, given.tokens["operator"])
    seen = {
        edge["node"]["name"]: edge["node"]
        for edge in operator["data"]["account"]["members"]["edges"]
    }
    assert seen["Blind"]["discountPercent"] == "12.50"
    assert members["Viewing"]["invoiceMode"] is None  # managed: never invoiced itself (B1)
    stranger = await both.same(query, {"id": given.master}, given.tokens["stranger"])
    assert stranger["data"]["account"] is None or stranger["data"]["account"]["quotaAlert"] is None


NOTIFICATION = ["id", "kind", "availableQuota", "threshold", "createdAt", "spent", "forecast"]


async def test_notifications_are_compiled_newest_first_page_by_page(api: Api, both: Both) -> None:
    """A descending connection: Account.notifications newest first, page after page by
    the cursor, the same as the resolvers' under every principal (P2 hides them)."""
    given = await graph(api)
    async with api.engine.begin() as conn:  # rows as the worker writes them (A2, C4)
        for n, (kind, spent) in enumerate(
            [("LOW_QUOTA", None), ("OVERDUE", None), ("BUDGET_ACTUAL", "70.10")] * 3
        ):
            await conn.execute(
                text(
                    "INSERT INTO notifications (account_id, kind, available_quota, threshold, "
                    "dedupe_key, created_at, spent, forecast) VALUES (:account, :kind, "
                    ":quota, :threshold, :key, now() - make_interval(secs => :age), "
                    ":spent, :spent)"
                ),
                {
                    "account": ids.decode_as(given.master, "Account"),
                    "kind": kind,
                    "quota": Decimal("12.30") + n,
                    "threshold": None if spent else Decimal("50.00"),
                    "key": f"test:{n}",
                    "age": 9 - n + 0.123456 * (n % 2),
                    "spent": None if spent is None else Decimal(spent),
                },
            )
    query = (
        "query($id: ID!, $first: Int, $after: String) { account(id: $id) { "
        "notifications(first: $first, after: $after) { totalCount "
        "pageInfo { hasNextPage endCursor } "
        f"edges {{ cursor node {{ {' '.join(NOTIFICATION)} __typename }} }} }} }} }}"
    )
    for token in given.tokens.values():
        before = _compiled_count("fallback")
        after, seen = None, []
        for _ in range(5):
            variables = {"id": given.master, "first": 4, "after": after}
            answer = await both.same(query, variables, token)
            account = answer["data"]["account"]
            if account is None:
                break
            page = account["notifications"]
            seen += [edge["node"]["id"] for edge in page["edges"]]
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        assert _compiled_count("fallback") == before
        if token in (given.tokens["operator"], given.tokens["master"]):
            assert len(seen) == 9 and len(set(seen)) == 9
            numbers = [ids.decode_as(node_id, "Notification") or 0 for node_id in seen]
            assert numbers == sorted(numbers, reverse=True)  # newest first
        else:
            assert seen == []


TRANSFER = ["id", "method", "direction", "amount", "createdAt", "actor", "idempotencyKey"]


async def test_transfers_are_compiled_with_their_filters_page_by_page(api: Api, both: Both) -> None:
    """Account.transfers (F3-F5): both books, newest first, each filter and the cursor, the
    same as the resolvers' for master and member under every principal (P2, P3, U5)."""
    given = await graph(api)
    for n in range(4):  # more of both directions, to page through
        await api.ok(
            "allocateFunds",
            "mutation($input: TransferFundsInput!) { allocateFunds(input: $input) "
            "{ userErrors { code } } }",
            {
                "masterId": given.master,
                "memberId": given.member,
                "amount": f"1.{n}0",
                "idempotencyKey": f"compiled-{n}",
            },
        )
    await api.ok(
        "reclaimFunds",
        "mutation($input: TransferFundsInput!) { reclaimFunds(input: $input) "
        "{ userErrors { code } } }",
        {"masterId": given.master, "memberId": given.member, "amount": "0.50"},
    )
    query = (
        "query($id: ID!, $first: Int, $after: String, $member: ID, "
        "$direction: TransferDirection, $since: DateTime, $until: DateTime) { "
        "account(id: $id) { transfers(first: $first, after: $after, memberId: $member, "
        "direction: $direction, since: $since, until: $until) { totalCount "
        "pageInfo { hasNextPage endCursor } "
        f"edges {{ cursor node {{ {' '.join(TRANSFER)} __typename }} }} }} }} }}"
    )
    filters: list[dict[str, Any]] = [
        {},
        {"direction": "RECLAIM"},
        {"direction": "ALLOCATE", "member": given.member},
        {"member": given.master},  # no transfer has the master as member
        {"member": "not-an-id"},
        {"since": "2000-01-01T00:00:00Z", "until": "2999-01-01T00:00:00Z"},
        {"until": "2000-01-01T00:00:00Z"},
    ]
    totals = {}
    for target in (given.master, given.member):
        for name, token in given.tokens.items():
            for number, chosen in enumerate(filters):
                before = _compiled_count("fallback")
                after, seen = None, []
                for _ in range(10):
                    variables = {"id": target, "first": 2, "after": after, **chosen}
                    answer = await both.same(query, variables, token)
                    account = answer["data"]["account"]
                    if account is None:
                        break
                    page = account["transfers"]
                    seen += [edge["node"]["id"] for edge in page["edges"]]
                    if not page["pageInfo"]["hasNextPage"]:
                        break
                    after = page["pageInfo"]["endCursor"]
                assert _compiled_count("fallback") == before
                totals[target == given.master, name, number] = len(seen)
    assert totals[True, "master", 0] == totals[False, "master", 0] == 6  # 1 + 4 + 1
    assert totals[True, "master", 1] == 1 and totals[True, "master", 3] == 0
    assert totals[True, "stranger", 0] == 0


async def test_the_accounts_root_is_compiled_page_by_page(api: Api, both: Both) -> None:
    """Query.accounts (P3: what the viewer sees the details of; operators all), with and
    without ``search``, page after page: one statement per page, the resolvers' answer."""
    given = await graph(api)
    query = (
        "query($first: Int, $after: String, $search: String) { accounts(first: $first, "
        "after: $after, search: $search) { totalCount pageInfo { hasNextPage endCursor } "
        "edges { cursor node { id name role finance { cashBalance } "
        "members(first: 1) { totalCount edges { node { name } } } } } } }"
    )
    listed = {}
    for name, token in given.tokens.items():
        for search in (None, "i", "MASTER", "%", "a\u0000"):
            before = _compiled_count("compiled", "AccountConnection")
            after, seen, pages = None, [], 0
            for _ in range(10):
                variables = {"first": 2, "after": after, "search": search}
                answer = await both.same(query, variables, token)
                if answer.get("data") is None:  # no token: refused before any read
                    break
                pages += 1
                connection = answer["data"]["accounts"]
                seen += [edge["node"]["name"] for edge in connection["edges"]]
                if not connection["pageInfo"]["hasNextPage"]:
                    break
                after = connection["pageInfo"]["endCursor"]
            assert _compiled_count("compiled", "AccountConnection") == before + pages
            listed[name, search] = seen
    assert listed["operator", None] == ["Master", "Viewing", "Blind", "Invited", "Gone", "Stranger"]
    assert sorted(listed["master", None]) == ["Blind", "Master", "Viewing"]
    assert listed["master", "MASTER"] == ["Master"]
    assert listed["stranger", None] == ["Stranger"]
    assert listed["operator", "%"] == [] and listed["operator", "a\u0000"] == []


# ---------------------------------------------------------------- random selections

SCALARS = [
    "id",
    "name",
    "displayName",
    "branch",
    "terms",
    "salesperson",
    "status",
    "role",
    "costCenterEnabled",
    "__typename",
]
LINK = [
    "id",
    "type",
    "status",
    "permissions",
    "invitedAt",
    "activatedAt",
    "endedAt",
    "referencesMasterInvoiceInfo",
    "__typename",
]
BILL_TO = [
    "id",
    "name",
    "address",
    "email",
    "invoiceTitle",
    "taxId",
    "isPrimary",
    "readOnly",
    "__typename",
]
SITE = ["id", "name", "address", "branch", "taxGroup"]
FINANCE = [
    "cashBalance",
    "bankersAcceptanceBill",
    "creditLimit",
    "creditRefund",
    "unsettledAmount",
    "outstandingFees",
    "negativeBill",
    "transferredCash",
    "transferredCredit",
    "transferredAmount",
    "frozenCash",
    "availableQuota",
    "creditLine",
    "availableCredit",
    "__typename",
]
QUOTA_ALERT = ["threshold", "enabled", "armed", "lastFiredAt", "__typename"]
CHANNELS = ["email", "phone", "webhookUrl", "__typename"]
NOT_COMPILED = [
    "finance { cashBalance couponCount }",
    "fallback_n: notifications { edges { node { deliveries { status } } } }",
    "payments { totalCount }",
    "link { history { status } }",
]
STATUSES = ["ACTIVE", "INVITED", "DISSOCIATED", "DECLINED"]


@st.composite
def _aliased(draw: st.DrawFn, body: str) -> str:
    # An alias names one field only: two fields under one response key would make the
    # document invalid, and an invalid document tests nothing of the compiler.
    prefix = draw(st.sampled_from(["", "", "a1_", "b2_", "x_"]))
    alias = f"{prefix}{body.partition(' ')[0]}: " if prefix else ""
    directive = draw(
        st.sampled_from(
            ["", "", "", " @include(if: $yes)", " @skip(if: $yes)", " @include(if: $no)"]
        )
    )
    name, _, rest = body.partition(" ")
    return f"{alias}{name}{directive}{(' ' + rest) if rest else ''}"


@st.composite
def _scalars(draw: st.DrawFn, fields: list[str]) -> str:
    chosen = draw(st.lists(st.sampled_from(fields), min_size=1, max_size=5))
    return " ".join(draw(_aliased(name)) for name in chosen)


@st.composite
def account_selection(draw: st.DrawFn, depth: int) -> str:
    parts = [draw(_scalars(SCALARS))]
    if draw(st.booleans()):
        master = f" master {{ {draw(_scalars(SCALARS))} }}" if draw(st.booleans()) else ""
        parts.append(f"link {{ {draw(_scalars(LINK))}{master} }}")
    if draw(st.booleans()):
        parts.append(
            draw(st.sampled_from(["billTos", "primaryBillTo"]))
            + f" {{ {draw(_scalars(BILL_TO))} }}"
        )
    if draw(st.booleans()):
        bill_to = draw(_scalars(BILL_TO))
        parts.append(f"sites {{ {draw(_scalars(SITE))} billTo {{ {bill_to} }} }}")
    if draw(st.booleans()):
        parts.append(f"invitations {{ {draw(_scalars(LINK))} }}")
    if draw(st.booleans()):
        parts.append(f"finance {{ {draw(_scalars(FINANCE))} }}")
    if draw(st.integers(0, 3)) == 0:
        parts.append(f"quotaAlert {{ {draw(_scalars(QUOTA_ALERT))} }}")
    if draw(st.integers(0, 3)) == 0:
        parts.append(f"channels {{ {draw(_scalars(CHANNELS))} }}")
    if draw(st.integers(0, 3)) == 0:
        parts.append(draw(_scalars(["invoiceMode", "discountPercent"])))
    if draw(st.integers(0, 3)) == 0:
        connection = draw(st.sampled_from(["transfers", "notifications"]))
        fields = TRANSFER if connection == "transfers" else NOTIFICATION
        first = draw(st.sampled_from(["", "(first: 1)", "(first: $first)"]))
        parts.append(
            f"{connection}{first} {{ totalCount pageInfo {{ hasNextPage endCursor }} "
            f"edges {{ cursor node {{ {draw(_scalars(fields))} }} }} }}"
        )
    if depth > 0 and draw(st.booleans()):
        first = draw(st.sampled_from(["", "first: 1", "first: 2", "first: 0", "first: $first"]))
        status = draw(st.sampled_from(["", f"status: {draw(st.sampled_from(STATUSES))}"]))
        args = ", ".join(a for a in (first, status) if a)
        node = draw(account_selection(depth - 1))
        arguments = f"({args})" if args else ""
        parts.append(
            f"members{arguments} {{ totalCount pageInfo {{ hasNextPage endCursor }} "
            f"edges {{ cursor node {{ {node} }} }} }}"
        )
    if draw(st.integers(0, 9)) == 0:
        parts.append(draw(st.sampled_from(NOT_COMPILED)))
    if draw(st.booleans()):
        parts.append(f"... on Account {{ {draw(_scalars(SCALARS))} }}")
    if draw(st.booleans()):
        parts.append("...Names")
    draw(st.randoms()).shuffle(parts)
    return " ".join(parts)


VARIABLES = {"$id": "ID!", "$yes": "Boolean!", "$no": "Boolean!", "$first": "Int"}


def _document(root: str) -> str:
    """A valid document: only the variables and the fragment the selection uses (an unused
    one is a validation error, answered without running anything)."""
    used = [f"{name}: {kind}" for name, kind in VARIABLES.items() if name in root]
    names = " fragment Names on Account { name displayName }" if "...Names" in root else ""
    declared = f"({', '.join(used)})" if used else ""
    return f"query{declared} {{ {root} }}{names}"


ROOTS = {
    "viewer": "viewer {{ kind account {{ {} }} }}",
    "account": "account(id: $id) {{ {} }}",
    "node": "node(id: $id) {{ ... on Account {{ {} }} }}",
    "accounts": "accounts(first: $first) {{ totalCount pageInfo {{ hasNextPage endCursor }} "
    "edges {{ cursor node {{ {} }} }} }}",
}


@pytest.fixture
async def random_graph(api: Api) -> Graph:
    return await graph(api)


@settings(
    max_examples=RANDOM_SELECTIONS,
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_random_selections_answer_the_same(
    random_graph: Graph, both: Both, data: st.DataObject
) -> None:
    root = data.draw(st.sampled_from(sorted(ROOTS)))
    selection = data.draw(account_selection(2))  # pages inside pages, as trees nest
    kind = data.draw(st.sampled_from(sorted(random_graph.tokens)))
    target = data.draw(st.sampled_from([random_graph.master, random_graph.member]))
    query = _document(ROOTS[root].format(selection))
    answer = await both.same(
        query, {"id": target, "yes": True, "no": False, "first": 1}, random_graph.tokens[kind]
    )
    # Every drawn document is valid; a deep or wide one may pass a request's limits.
    codes = {error.get("extensions", {}).get("code") for error in answer.get("errors", [])}
    assert codes <= {"QUERY_TOO_COSTLY", "TOO_MANY_ALIASES", "QUERY_TOO_DEEP"}, answer
