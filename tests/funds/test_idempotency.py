"""F10: idempotency keys on the money mutations, through the API.

The same key with the same input replays the first result and changes nothing; with
another input it is IDEMPOTENCY_CONFLICT. Keys are scoped to the caller (an account's
tokens share a scope, operators share one), kept at least 24 hours (purged after 48), and
a refused attempt keeps no key. Concurrent requests with one key take effect once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select, text

from accountgraph.api import ids
from accountgraph.funds import idempotency
from accountgraph.funds.models import idempotency_keys, journal_entries, transfers
from accountgraph.funds.verify import verify
from tests.helpers import OPERATOR_TOKEN, Api, Enterprise, enterprise

PAY = """mutation($input: RecordPaymentInput!) { recordPayment(input: $input) {
  account { finance { cashBalance outstandingFees } } userErrors { code field message } } }"""
ALLOCATE = """mutation($input: TransferFundsInput!) { allocateFunds(input: $input) {
  transfer { id amount idempotencyKey } master { finance { cashBalance } }
  member { finance { cashBalance transferredCash } } userErrors { code field message } } }"""
RECLAIM = """mutation($input: TransferFundsInput!) { reclaimFunds(input: $input) {
  transfer { id amount idempotencyKey } userErrors { code field message } } }"""
CHARGE = """mutation($input: RecordChargeInput!) { recordCharge(input: $input) {
  charge { id amount } account { finance { cashBalance outstandingFees } }
  userErrors { code field message } } }"""
WITHDRAW = """mutation($input: WithdrawCashInput!) { withdrawCash(input: $input) {
  account { finance { cashBalance } } userErrors { code field message } } }"""
CREDIT_LINE = """mutation($input: SetCreditLineInput!) { setCreditLine(input: $input) {
  userErrors { code field message } } }"""
CREDIT_LIMIT = """mutation($input: SetCreditLimitInput!) { setCreditLimit(input: $input) {
  account { finance { creditLimit } } userErrors { code field message } } }"""
ADJUST = """mutation($input: AdjustBalanceInput!) { adjustBalance(input: $input) {
  account { finance { negativeBill creditRefund } } userErrors { code field message } } }"""
FINANCE = """query($id: ID!) { account(id: $id) { finance {
  cashBalance transferredCash creditLimit outstandingFees negativeBill creditRefund } } }"""


async def finance(api: Api, account_id: str) -> dict[str, str]:
    found: dict[str, str] = (await api.gql(FINANCE, {"id": account_id}))["account"]["finance"]
    return found


async def count(api: Api, table: Any) -> int:
    async with api.engine.connect() as conn:
        found: int = (await conn.execute(select(func.count()).select_from(table))).scalar_one()
        return found


async def keys(api: Api) -> list[tuple[str, str]]:
    async with api.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(idempotency_keys.c.scope, idempotency_keys.c.key).order_by(
                    idempotency_keys.c.key
                )
            )
        ).all()
    return [(row.scope, row.key) for row in rows]


async def funded(api: Api, members: int = 1, cash: str = "100.00") -> Enterprise:
    given = await enterprise(api, members)
    await api.ok("recordPayment", PAY, {"accountId": given.master, "amount": cash})
    return given


async def account_ids(api: Api, *global_ids: str) -> list[int]:
    found = [ids.decode_as(gid, "Account") for gid in global_ids]
    assert all(i is not None for i in found)
    return [i for i in found if i is not None]


def allocation(
    given: Enterprise, amount: str = "10.00", key: str | None = "k-1", **extra: Any
) -> dict[str, Any]:
    return {
        "masterId": given.master,
        "memberId": given.members[0],
        "amount": amount,
        "idempotencyKey": key,
        **extra,
    }


async def assert_sound(api: Api) -> None:
    async with api.engine.connect() as conn:
        assert await verify(conn) == []


async def test_f10_same_key_and_input_replays_the_first_transfer(api: Api) -> None:
    given = await funded(api)

    first = await api.ok("allocateFunds", ALLOCATE, allocation(given), given.master_token)
    again = await api.ok("allocateFunds", ALLOCATE, allocation(given), given.master_token)

    assert again["transfer"] == first["transfer"]
    assert first["transfer"]["idempotencyKey"] == "k-1"
    assert again["master"]["finance"]["cashBalance"] == "90.00"
    assert again["member"]["finance"] == {"cashBalance": "10.00", "transferredCash": "10.00"}
    assert await count(api, transfers) == 1
    await assert_sound(api)


async def test_f10_another_token_of_the_same_account_replays_too(api: Api) -> None:
    given = await funded(api)
    second_token = await api.token(given.master, "second")

    first = await api.ok("allocateFunds", ALLOCATE, allocation(given), given.master_token)
    again = await api.ok("allocateFunds", ALLOCATE, allocation(given), second_token)

    assert again["transfer"]["id"] == first["transfer"]["id"]
    assert await count(api, transfers) == 1


@pytest.mark.parametrize(
    ("query", "name", "change"),
    [
        (ALLOCATE, "allocateFunds", {"amount": "10.01"}),
        (ALLOCATE, "allocateFunds", {"method": "CREDIT"}),
        (ALLOCATE, "allocateFunds", {"memberId": "other"}),
        (RECLAIM, "reclaimFunds", {}),  # another operation with the same input
    ],
)
async def test_f10_same_key_with_another_input_is_a_conflict(
    api: Api, query: str, name: str, change: dict[str, Any]
) -> None:
    given = await funded(api, members=2)
    await api.ok("allocateFunds", ALLOCATE, allocation(given), given.master_token)
    if change.get("memberId") == "other":
        change = {"memberId": given.members[1]}
    before = [await finance(api, a) for a in (given.master, *given.members)]
    entries = await count(api, journal_entries)

    payload = await api.mutate(name, query, {**allocation(given), **change}, given.master_token)

    assert payload["transfer"] is None
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
        ("IDEMPOTENCY_CONFLICT", ["idempotencyKey"])
    ]
    assert [await finance(api, a) for a in (given.master, *given.members)] == before
    assert await count(api, journal_entries) == entries
    assert await count(api, transfers) == 1


async def test_f10_keys_are_scoped_to_the_caller(api: Api) -> None:
    given = await funded(api)
    other = await funded(api)
    await api.ok("recordPayment", PAY, {"accountId": given.members[0], "amount": "20.00"})
    key = "shared-key"

    by_master = await api.ok(
        "allocateFunds", ALLOCATE, allocation(given, key=key), given.master_token
    )
    by_operator = await api.ok("allocateFunds", ALLOCATE, allocation(given, key=key))
    by_other_master = await api.ok(
        "allocateFunds", ALLOCATE, allocation(other, key=key), other.master_token
    )
    by_member = await api.ok(
        "withdrawCash",
        WITHDRAW,
        {"accountId": given.members[0], "amount": "1.00", "idempotencyKey": key},
        given.member_tokens[0],
    )

    ids = {
        by_master["transfer"]["id"],
        by_operator["transfer"]["id"],
        by_other_master["transfer"]["id"],
    }
    assert len(ids) == 3
    assert by_operator["master"]["finance"]["cashBalance"] == "80.00"
    assert by_member["account"]["finance"]["cashBalance"] == "39.00"  # 20 own + 20 allocated
    assert (await finance(api, other.master))["cashBalance"] == "90.00"
    assert await count(api, transfers) == 3
    scopes = [scope for scope, _ in await keys(api)]
    assert sorted(scopes) == sorted(
        [
            "operator",
            *(
                f"account:{i}"
                for i in await account_ids(api, given.master, other.master, given.members[0])
            ),
        ]
    )
    # and each of them replays in its own scope
    again = await api.ok("allocateFunds", ALLOCATE, allocation(given, key=key))
    assert again["transfer"]["id"] == by_operator["transfer"]["id"]
    assert await count(api, transfers) == 3


async def test_f10_a_refused_first_attempt_keeps_no_key(api: Api) -> None:
    given = await enterprise(api, 1)  # no cash yet

    refused = await api.mutate(
        "allocateFunds", ALLOCATE, allocation(given, amount="50.00"), given.master_token
    )
    assert [e["code"] for e in refused["userErrors"]] == ["INSUFFICIENT_FUNDS"]
    assert await keys(api) == []

    await api.ok("recordPayment", PAY, {"accountId": given.master, "amount": "50.00"})
    retried = await api.ok(
        "allocateFunds", ALLOCATE, allocation(given, amount="50.00"), given.master_token
    )

    assert retried["transfer"]["amount"] == "50.00"
    assert retried["master"]["finance"]["cashBalance"] == "0.00"
    assert len(await keys(api)) == 1


async def test_f10_keys_are_kept_and_only_purged_after_48_hours(api: Api) -> None:
    given = await funded(api)
    made = {}
    for key in ("fresh", "day-old", "two-days-old"):
        payload = await api.ok(
            "allocateFunds", ALLOCATE, allocation(given, "1.00", key), given.master_token
        )
        made[key] = payload["transfer"]["id"]
    async with api.engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE idempotency_keys SET created_at = now() - "
                "interval '47 hours' WHERE key = 'day-old'"
            )
        )
        await conn.execute(
            text(
                "UPDATE idempotency_keys SET created_at = now() - "
                "interval '49 hours' WHERE key = 'two-days-old'"
            )
        )

    async with api.engine.begin() as conn:
        purged = await idempotency.purge(conn)

    assert purged == 1
    assert [key for _, key in await keys(api)] == ["day-old", "fresh"]
    kept = await api.ok(
        "allocateFunds", ALLOCATE, allocation(given, "1.00", "day-old"), given.master_token
    )
    assert kept["transfer"]["id"] == made["day-old"]
    forgotten = await api.ok(
        "allocateFunds", ALLOCATE, allocation(given, "1.00", "two-days-old"), given.master_token
    )
    assert forgotten["transfer"]["id"] != made["two-days-old"]
    assert forgotten["master"]["finance"]["cashBalance"] == "96.00"


@pytest.mark.parametrize("requests", [2, 20])
async def test_f10_concurrent_requests_with_one_key_take_effect_once(
    api: Api, requests: int
) -> None:
    given = await funded(api, cash="1000.00")

    payloads = await asyncio.gather(
        *(
            api.mutate(
                "allocateFunds", ALLOCATE, allocation(given, "7.00", "racing"), given.master_token
            )
            for _ in range(requests)
        )
    )

    assert all(p["userErrors"] == [] for p in payloads), payloads
    assert len({p["transfer"]["id"] for p in payloads}) == 1
    assert await count(api, transfers) == 1
    assert (await finance(api, given.master))["cashBalance"] == "993.00"
    assert (await finance(api, given.members[0]))["cashBalance"] == "7.00"
    await assert_sound(api)


@pytest.mark.parametrize(
    ("key", "code"), [("k" * 200, None), ("k" * 201, "INVALID_INPUT"), ("", "INVALID_INPUT")]
)
async def test_f10_a_key_has_1_to_200_characters(api: Api, key: str, code: str | None) -> None:
    given = await funded(api)

    payload = await api.mutate(
        "allocateFunds", ALLOCATE, allocation(given, key=key), given.master_token
    )

    if code is None:
        assert payload["userErrors"] == []
        assert await keys(api) == [(f"account:{(await account_ids(api, given.master))[0]}", key)]
    else:
        assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
            (code, ["idempotencyKey"])
        ]
        assert await count(api, transfers) == 0
        assert (await finance(api, given.master))["cashBalance"] == "100.00"


# ---------------------------------------------------------------- the other money mutations


@dataclass
class Case:
    name: str
    query: str
    input: dict[str, Any]
    other_input: dict[str, Any]
    token: str
    account: str
    changed: dict[str, str]  # the finance after the one effect
    repeatable: bool = True  # the same input without a key changes money again


async def charge_case(api: Api, given: Enterprise) -> Case:
    standalone = await api.account("Standalone")
    await api.ok("recordPayment", PAY, {"accountId": standalone, "amount": "10.00"})
    base = {"accountId": standalone, "amount": "4.00", "description": "compute"}
    return Case(
        "recordCharge",
        CHARGE,
        base,
        {**base, "description": "storage"},
        OPERATOR_TOKEN,
        standalone,
        {"cashBalance": "6.00"},
    )


async def payment_case(api: Api, given: Enterprise) -> Case:
    base = {"accountId": given.master, "amount": "5.00"}
    return Case(
        "recordPayment",
        PAY,
        base,
        {**base, "amount": "6.00"},
        OPERATOR_TOKEN,
        given.master,
        {"cashBalance": "105.00"},
    )


async def withdrawal_case(api: Api, given: Enterprise) -> Case:
    base = {"accountId": given.master, "amount": "30.00"}
    return Case(
        "withdrawCash",
        WITHDRAW,
        base,
        {**base, "amount": "31.00"},
        given.master_token,
        given.master,
        {"cashBalance": "70.00"},
    )


async def credit_limit_case(api: Api, given: Enterprise) -> Case:
    await api.ok("setCreditLine", CREDIT_LINE, {"masterId": given.master, "amount": "500.00"})
    base = {"masterId": given.master, "memberId": given.members[0], "limit": "40.00"}
    return Case(
        "setCreditLimit",
        CREDIT_LIMIT,
        base,
        {**base, "limit": "41.00"},
        given.master_token,
        given.members[0],
        {"creditLimit": "40.00"},
        repeatable=False,
    )  # setting the same limit again is no change


async def adjustment_case(api: Api, given: Enterprise) -> Case:
    base = {
        "accountId": given.master,
        "bucket": "NEGATIVE_BILL",
        "amount": "3.00",
        "reason": "credit note",
    }
    return Case(
        "adjustBalance",
        ADJUST,
        base,
        {**base, "bucket": "CREDIT_REFUND"},
        OPERATOR_TOKEN,
        given.master,
        {"negativeBill": "3.00"},
    )


@pytest.mark.parametrize(
    "build",
    [charge_case, payment_case, withdrawal_case, credit_limit_case, adjustment_case],
    ids=lambda build: build.__name__.removesuffix("_case"),
)
async def test_f10_every_money_mutation_takes_a_key(api: Api, build: Any) -> None:
    given = await funded(api)
    case: Case = await build(api, given)
    before = await finance(api, case.account)
    entries = await count(api, journal_entries)
    keyed = {**case.input, "idempotencyKey": "once"}

    first = await api.ok(case.name, case.query, keyed, case.token)
    again = await api.ok(case.name, case.query, keyed, case.token)
    conflict = await api.mutate(
        case.name, case.query, {**case.other_input, "idempotencyKey": "once"}, case.token
    )

    assert first == again  # the first result, replayed
    assert [(e["code"], e["field"]) for e in conflict["userErrors"]] == [
        ("IDEMPOTENCY_CONFLICT", ["idempotencyKey"])
    ]
    after = await finance(api, case.account)
    assert after == {**before, **case.changed}, (before, after)
    assert await count(api, journal_entries) == entries + 1
    await assert_sound(api)
    # the same input without a key is a new request: it takes effect again
    await api.ok(case.name, case.query, case.input, case.token)
    assert await count(api, journal_entries) == entries + 1 + case.repeatable


async def test_f10_a_replay_reports_the_first_transfer_even_after_later_changes(api: Api) -> None:
    given = await funded(api)
    first = await api.ok(
        "allocateFunds", ALLOCATE, allocation(given, "10.00", "early"), given.master_token
    )
    await api.ok("allocateFunds", ALLOCATE, allocation(given, "5.00", "later"), given.master_token)

    replay = await api.ok(
        "allocateFunds", ALLOCATE, allocation(given, "10.00", "early"), given.master_token
    )

    assert replay["transfer"] == first["transfer"]
    assert Decimal(replay["master"]["finance"]["cashBalance"]) == Decimal("85.00")
    assert await count(api, transfers) == 2
