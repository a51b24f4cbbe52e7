"""Issue 7 fuzzing: schemathesis against ``/graphql``, and hypothesis on the inputs of the
money mutations. No answer may be a 5xx or a masked internal error ("Unexpected error."
means an exception the code did not expect: a bug), and afterwards the ledger is sound
(F9: ``verify()`` finds nothing).

schemathesis loads the schema by introspecting the running ``/graphql`` (operator token)
and generates every Query and Mutation field's operation; its ``Decimal``, ``DateTime``
and ``Date`` strategies are ours (valid values and the strings a careless client sends:
``"-1"``, ``"1e3"``, ``"abc"``, ``"NaN"`` ...), and ``ID`` draws from the ids of one
enterprise (and garbage), so that mutations reach real objects. Hypothesis drives
schemathesis's cases synchronously (``requests``) in a thread while this event loop
serves the app.
"""

from __future__ import annotations

import asyncio
import re
import string
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import schemathesis
from arq.connections import ArqRedis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.graphql import nodes
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from accountgraph.funds.verify import verify
from accountgraph.schema import schema as app_schema
from tests.funds.support import ALLOCATE, PAY, RECLAIM, SET_CREDIT_LIMIT, WITHDRAW
from tests.helpers import OPERATOR_TOKEN, Api
from tests.test_matrix import clean_database

MASKED = "Unexpected error."
EXAMPLES_PER_FIELD = 50
AUTH = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
PRINCIPALS: list[str | None] = []  # the tokens of the world below, None: no token

DECIMAL_STRINGS = [
    "12.50",
    "-1",
    "1e3",
    "abc",
    "0",
    "0.00",
    "0.001",
    "NaN",
    "Infinity",
    "-0",
    "1.005",
    "99999999999999999999.99",
    "1" * 40,
    "",
    " 1",
    "١٢",
    "0x10",
    "1_000",
    "+5",
    "12.5.1",
]
DECIMALS = st.one_of(
    st.sampled_from(DECIMAL_STRINGS),
    st.decimals(
        min_value=Decimal("-1000"), max_value=Decimal("1000"), places=2, allow_nan=False
    ).map(str),
    st.text(alphabet=string.digits + ".-eE+", max_size=12),
)
DATETIMES = st.one_of(
    st.datetimes().map(lambda moment: moment.isoformat() + "+00:00"),
    st.sampled_from(
        [
            "2024-01-01T00:00:00Z",
            "2024-13-40T99:00:00",
            "yesterday",
            "",
            "2024-01-01",
            "0000-00-00T00:00:00",
            "9999-12-31T23:59:59+14:00",
        ]
    ),
)
DATES = st.one_of(st.dates().map(str), st.sampled_from(["2024-02-30", "2024-1-1", "tomorrow", ""]))


@pytest.fixture(scope="module")
async def world(base_url: str, engine: AsyncEngine, redis: ArqRedis) -> AsyncIterator[Api]:
    """One enterprise: a master with cash and a credit line, two trusteeship members, a
    stranger; the ids of everything the API made are the ``ID`` strategy's pool."""
    await clean_database(engine, redis)
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        api = Api(client, engine)
        master = await api.account("Master")
        members = [await api.account(f"Member-{n}") for n in (1, 2)]
        for member in members:
            await api.link(master, member)
            bill_to = await api.bill_to(member, "AP", isPrimary=True)
            await api.site(member, "site", bill_to)
        stranger = await api.account("Stranger")
        await api.ok("recordPayment", PAY, {"accountId": master, "amount": "100000.00"})
        # Every principal kind (P1): an operator, the master's, a member's and a
        # stranger's users, and no token at all.
        PRINCIPALS[:] = [
            OPERATOR_TOKEN,
            await api.token(master),
            await api.token(members[0]),
            await api.token(stranger),
            None,
        ]
        yield api


async def known_ids(engine: AsyncEngine) -> list[str]:
    from accountgraph.api import ids

    tables = {
        "Account": "accounts",
        "Link": "links",
        "BillTo": "bill_tos",
        "Site": "sites",
        "Transfer": "transfers",
        "Resource": "resources",
        "UserGroup": "user_groups",
        "PaymentMethod": "payment_methods",
        "Voucher": "vouchers",
    }
    found: list[str] = []
    async with engine.connect() as conn:
        for type_name, table in tables.items():
            rows = await conn.execute(text(f"SELECT id FROM {table} ORDER BY id LIMIT 20"))
            found += [ids.encode(type_name, row[0]) for row in rows]
    return found


def register_scalars(pool: list[str]) -> None:
    schemathesis.graphql.scalar("Decimal", DECIMALS.map(nodes.String))
    schemathesis.graphql.scalar("DateTime", DATETIMES.map(nodes.String))
    schemathesis.graphql.scalar("Date", DATES.map(nodes.String))
    schemathesis.graphql.scalar(
        "ID",
        st.one_of(
            st.sampled_from(pool),
            st.sampled_from(["", "garbage", "QWNjb3VudDox", "-1", "QWNj\x00b3VudDox"]),
            st.text(max_size=12),  # NUL and other control characters included
        ).map(nodes.String),
    )


def problems(status: int, body: Any) -> list[str]:
    """What an answer must never be: a server error or a masked internal error."""
    found = []
    if status >= 500:
        found.append(f"HTTP {status}")
    if isinstance(body, dict):
        for error in body.get("errors") or []:
            if MASKED in str(error.get("message")):
                found.append(f"masked internal error: {error}")
    return found


async def row_counts(conn: Any) -> dict[str, int]:
    """Rows of the tables these mutations write (the audit log keeps the refusal)."""
    found = {}
    for table in ("accounts", "bill_tos", "api_tokens", "charges", "payments", "journal_entries"):
        found[table] = (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
    return found


async def assert_sound(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        assert [str(d) for d in await verify(conn)] == []


def _root_fields() -> list[str]:
    query, mutation = app_schema._schema.query_type, app_schema._schema.mutation_type
    assert query is not None and mutation is not None
    return [f"Query.{name}" for name in query.fields] + [
        f"Mutation.{name}" for name in mutation.fields
    ]


ROOT_FIELDS = _root_fields()
LOADED: dict[str, Any] = {}


def fuzz_field(base_url: str, label: str, pool: list[str]) -> list[str]:
    """schemathesis cases of one root field against the server; the problems found."""
    if "schema" not in LOADED:
        # Generated strings hold NUL and every other control character.
        config = schemathesis.config.SchemathesisConfig.from_dict(
            {"generation": {"allow-x00": True}}
        )
        LOADED["schema"] = schemathesis.graphql.from_url(
            f"{base_url}/graphql", headers=AUTH, config=config
        )
    register_scalars(pool)
    root, name = label.split(".")
    operation = LOADED["schema"][root][name]
    found: list[str] = []

    @settings(
        max_examples=EXAMPLES_PER_FIELD,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(), token=st.sampled_from(PRINCIPALS))
    def run(case: Any, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = case.call(base_url=base_url, headers=headers, timeout=30)
        try:
            body = response.json()
        except ValueError:
            body = None
        found.extend(
            f"{problem} for {case.body} ({'a token' if token else 'no token'})"
            for problem in problems(response.status_code, body)
        )

    run()
    return found


@pytest.mark.parametrize("label", ROOT_FIELDS)
async def test_schemathesis_every_root_field_answers_without_server_errors(
    world: Api, base_url: str, label: str
) -> None:
    pool = await known_ids(world.engine)
    found = await asyncio.to_thread(fuzz_field, base_url, label, pool)
    assert found == []
    await assert_sound(world.engine)


# ---------------------------------------------------------------- hypothesis: money inputs

AMOUNTS = st.one_of(DECIMALS, st.integers(-5, 5).map(str))
MONEY = {
    "allocateFunds": ALLOCATE,
    "reclaimFunds": RECLAIM,
    "withdrawCash": WITHDRAW,
    "setCreditLimit": SET_CREDIT_LIMIT,
    "recordPayment": PAY,
}


def valid_amount(value: str) -> bool:
    """API.md: a plain decimal string, > 0, at most 2 places (and below 10^15)."""
    if not re.fullmatch(r"[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)", value.strip(), re.ASCII):
        return False
    amount = Decimal(value.strip())
    return 0 < amount < Decimal("1e15") and amount == amount.quantize(Decimal("0.01"))


def money_fuzz(
    base_url: str, pool: list[str], master: str, members: list[str], tokens: list[str]
) -> list[str]:
    found: list[str] = []
    client = httpx.Client(base_url=base_url, timeout=30)
    ids = st.one_of(st.sampled_from(pool), st.sampled_from(["", "garbage"]))

    @settings(
        max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(
        name=st.sampled_from(sorted(MONEY)),
        amount=AMOUNTS,
        master_id=st.one_of(st.just(master), ids),
        member_id=st.one_of(st.sampled_from(members), ids),
        token=st.sampled_from(tokens),
        method=st.sampled_from(["CASH", "CREDIT"]),
        key=st.one_of(st.none(), st.sampled_from(["k1", "k2"])),
    )
    def run(
        name: str,
        amount: str,
        master_id: str,
        member_id: str,
        token: str,
        method: str,
        key: str | None,
    ) -> None:
        input_: dict[str, Any] = {
            "allocateFunds": {
                "masterId": master_id,
                "memberId": member_id,
                "amount": amount,
                "method": method,
                "idempotencyKey": key,
            },
            "reclaimFunds": {
                "masterId": master_id,
                "memberId": member_id,
                "amount": amount,
                "method": method,
                "idempotencyKey": key,
            },
            "withdrawCash": {"accountId": member_id, "amount": amount, "idempotencyKey": key},
            "setCreditLimit": {
                "masterId": master_id,
                "memberId": member_id,
                "limit": amount,
                "idempotencyKey": key,
            },
            "recordPayment": {"accountId": member_id, "amount": amount, "idempotencyKey": key},
        }[name]
        response = client.post(
            "/graphql",
            json={"query": MONEY[name], "variables": {"input": input_}},
            headers={"Authorization": f"Bearer {token}"},
        )
        body = response.json()
        found.extend(
            f"{problem}: {name} {input_}" for problem in problems(response.status_code, body)
        )
        payload = (body.get("data") or {}).get(name)
        if payload is None:
            return
        codes = [error["code"] for error in payload["userErrors"]]
        if (
            name != "setCreditLimit"
            and not valid_amount(amount)
            and codes != ["INVALID_AMOUNT"]
            and "NOT_FOUND" not in codes
            and ("PERMISSION_NOT_GRANTED" not in codes and "IDEMPOTENCY_CONFLICT" not in codes)
        ):
            found.append(f"{name} accepted the amount {amount!r}: {payload}")

    try:
        run()
    finally:
        client.close()
    return found


async def test_hypothesis_money_mutations_refuse_bad_input_cleanly_and_keep_the_ledger(
    world: Api, base_url: str
) -> None:
    """F3, F4, F6, F8, F9, F10 under random amounts, ids, methods, keys and principals."""
    accounts = (await world.gql("{ accounts { edges { node { id name } } } }"))["accounts"]
    by_name = {edge["node"]["name"]: edge["node"]["id"] for edge in accounts["edges"]}
    master, members = by_name["Master"], [by_name["Member-1"], by_name["Member-2"]]
    await world.ok(
        "setCreditLine",
        """mutation($input: SetCreditLineInput!) {
        setCreditLine(input: $input) { userErrors { code field message } } }""",
        {"masterId": master, "amount": "500.00"},
    )
    tokens = [
        OPERATOR_TOKEN,
        await world.token(master),
        await world.token(members[0]),
        await world.token(by_name["Stranger"]),
    ]
    pool = await known_ids(world.engine)

    found = await asyncio.to_thread(money_fuzz, base_url, pool, master, members, tokens)

    assert found == []
    await assert_sound(world.engine)
    async with world.engine.connect() as conn:
        # F5: every transfer row has its journal entry, and no entry was written twice.
        orphans = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM transfers t LEFT JOIN journal_entries e "
                    "ON e.id = t.entry_id WHERE e.id IS NULL"
                )
            )
        ).scalar_one()
        shared = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM (SELECT entry_id FROM transfers GROUP BY entry_id "
                    "HAVING count(*) > 1) x"
                )
            )
        ).scalar_one()
        negative = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM balances WHERE cash_balance < 0 OR transferred_cash < 0 "
                    "OR credit_limit < 0"
                )
            )
        ).scalar_one()
    assert (orphans, shared, negative) == (0, 0, 0)


async def test_nul_in_free_text_is_refused_as_invalid_input(world: Api) -> None:
    """Found by the fuzzing above: ``adjustBalance.reason`` (and other free-text inputs
    stored as text) with a NUL character. Fixed for ``accounts(search:)`` and idempotency
    keys; every other free text is refused by ``perform`` when PostgreSQL refuses it."""
    accounts = (await world.gql("{ accounts { edges { node { id } } } }"))["accounts"]
    account = accounts["edges"][0]["node"]["id"]
    body = await world.raw(
        """mutation($input: AdjustBalanceInput!) {
        adjustBalance(input: $input) { userErrors { code field } } }""",
        {
            "input": {
                "accountId": account,
                "bucket": "CREDIT_REFUND",
                "amount": "1.00",
                "reason": "a\x00b",
            }
        },
    )
    assert problems(200, body) == []
    assert body["data"]["adjustBalance"]["userErrors"] == [
        {"code": "INVALID_INPUT", "field": ["reason"]}
    ]


# Free text with a NUL or another control character, in every kind of place text goes:
# (mutation, input type, the input with "{bad}" where the text goes).
FREE_TEXT = [
    ("createAccount", "CreateAccountInput", {"name": "{bad}"}),
    ("createAccount", "CreateAccountInput", {"name": "ok", "displayName": "{bad}"}),
    ("updateAccount", "UpdateAccountInput", {"accountId": "{account}", "terms": "{bad}"}),
    ("addBillTo", "AddBillToInput", {"accountId": "{account}", "name": "{bad}"}),
    ("createApiToken", "CreateApiTokenInput", {"accountId": "{account}", "name": "{bad}"}),
    (
        "recordCharge",
        "RecordChargeInput",
        {"accountId": "{account}", "amount": "1.00", "description": "{bad}"},
    ),
    (
        "recordPayment",
        "RecordPaymentInput",
        {"accountId": "{account}", "amount": "1.00", "idempotencyKey": "{bad}"},
    ),
]


@pytest.mark.parametrize("bad", ["a\x00b", "a\x01b", "a\x1b[31mred", "a\x7fb", "a\x85b"])
@pytest.mark.parametrize(("name", "type_name", "template"), FREE_TEXT)
async def test_control_characters_in_any_free_text_are_invalid_input_and_change_nothing(
    world: Api, name: str, type_name: str, template: dict[str, str], bad: str
) -> None:
    """NUL, other C0 controls, an ANSI escape, DEL and C1 (NEL): INVALID_INPUT naming the
    field, before any work (api/mutations.py's ``perform``); tab and line breaks pass."""
    accounts = (await world.gql("{ accounts { edges { node { id } } } }"))["accounts"]
    account = accounts["edges"][0]["node"]["id"]
    input_ = {
        key: value.replace("{bad}", bad).replace("{account}", account)
        for key, value in template.items()
    }
    async with world.engine.connect() as conn:
        before = await row_counts(conn)
    selection = "userErrors { code field }"
    body = await world.raw(
        f"mutation($input: {type_name}!) {{ {name}(input: $input) {{ {selection} }} }}",
        {"input": input_},
    )
    assert problems(200, body) == []
    errors = body["data"][name]["userErrors"]
    assert [error["code"] for error in errors] == ["INVALID_INPUT"], errors
    assert errors[0]["field"] == [key for key, value in template.items() if value == "{bad}"]
    async with world.engine.connect() as conn:
        assert await row_counts(conn) == before


async def test_tab_and_line_breaks_pass_and_a_control_in_a_literal_is_refused(world: Api) -> None:
    accounts = (await world.gql("{ accounts { edges { node { id } } } }"))["accounts"]
    account = accounts["edges"][0]["node"]["id"]
    update = """mutation($input: UpdateAccountInput!) { updateAccount(input: $input) {
      account { terms } userErrors { code field } } }"""
    terms = "Net 30\tby transfer\r\nto the account on file"
    payload = await world.ok("updateAccount", update, {"accountId": account, "terms": terms})
    assert payload["account"]["terms"] == terms
    literal = (
        f'mutation {{ updateAccount(input: {{accountId: "{account}", terms: "a\\u001bb"}}) '
        "{ account { terms } userErrors { code field } } }"
    )
    body = await world.raw(literal)
    assert body["data"]["updateAccount"] == {
        "account": None,
        "userErrors": [{"code": "INVALID_INPUT", "field": ["terms"]}],
    }
    after = await world.gql(f'{{ account(id: "{account}") {{ terms }} }}')
    assert after["account"]["terms"] == terms
