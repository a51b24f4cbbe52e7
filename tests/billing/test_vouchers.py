"""V1, V2, P2-P4: voucher pools, vouchers from them, and how charges consume vouchers.

Every rule both ways: the allowed case with exact amounts, each refusal with its exact
``code`` and ``field`` and nothing changed (money, balances, records and every voucher,
coupon and payment method row). The ledger is verified after every money test (F9).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from accountgraph.api import ids
from tests.billing.voucher_support import (
    CREATE_VOUCHER,
    GRANT_POOL,
    at,
    credit_rows,
    credits_of,
    forbidden,
    grant,
    node,
    refused,
    voucher,
)
from tests.funds.support import (
    allocate,
    assert_finance,
    assert_sound,
    charge,
    finance,
    pair,
    pay,
    row_counts,
)
from tests.helpers import DISSOCIATE, OPERATOR_TOKEN, Api, enterprise

MY_MASTER_POOL = "{ viewer { account { link { master { id voucherPool } } } } }"


def row(global_id: str, type_name: str) -> int:
    found = ids.decode_as(global_id, type_name)
    assert found is not None
    return found


def create_input(master: str, amount: str, members: list[str], **fields: Any) -> dict[str, Any]:
    return {
        "masterId": master,
        "amount": amount,
        "memberIds": members,
        "validFrom": at(days=-1),
        "validUntil": at(days=30),
        **fields,
    }


# ---------------------------------------------------------------- V1 voucher pool


async def test_v1_an_operator_grants_a_voucher_pool_that_adds_up(api: Api) -> None:
    given = await pair(api)
    counts = await row_counts(api.engine)
    assert await grant(api, given.master, "100.00") == "100.00"
    assert await grant(api, given.master, "50.50") == "150.50"
    assert (await credits_of(api, given.master, given.master_token) or {})[
        "voucherPool"
    ] == "150.50"
    # A voucher pool is not cash: no journal entry, no balance moved.
    assert await row_counts(api.engine) == counts
    assert_finance(await finance(api, given.master), cashBalance="0.00", availableQuota="0.00")


async def test_v1_voucher_pool_is_null_for_members_and_where_finance_is_hidden(api: Api) -> None:
    given = await pair(api)
    await grant(api, given.master, "100.00")
    standalone = await api.account("Standalone")
    assert (await credits_of(api, standalone) or {})["voucherPool"] == "0.00"
    assert (await credits_of(api, given.member) or {})["voucherPool"] is None
    assert (await credits_of(api, given.member, given.member_token) or {})["voucherPool"] is None
    # P3: a member sees its master by name only, never its finances.
    master = (await api.gql(MY_MASTER_POOL, token=given.member_token))["viewer"]["account"]["link"][
        "master"
    ]
    assert master == {"id": given.master, "voucherPool": None}


async def test_v1_a_member_is_granted_no_voucher_pool(api: Api) -> None:
    given = await pair(api, "FINANCIAL")
    await refused(
        api,
        "grantVoucherPool",
        GRANT_POOL,
        {"masterId": given.member, "amount": "10.00"},
        code="INVALID_INPUT",
        field=["masterId"],
        accounts=[given.master, given.member],
    )
    await api.ok("dissociateMember", DISSOCIATE, {"linkId": given.link})
    assert await grant(api, given.member, "10.00") == "10.00"


@pytest.mark.parametrize("amount", ["0", "-5.00", "1.001", "abc", "1e3"])
async def test_v1_a_pool_grant_is_a_positive_plain_amount(api: Api, amount: str) -> None:
    master = await api.account("Master")
    await refused(
        api,
        "grantVoucherPool",
        GRANT_POOL,
        {"masterId": master, "amount": amount},
        code="INVALID_AMOUNT",
        field=["amount"],
        accounts=[master],
    )


async def test_v1_grant_voucher_pool_is_for_operators_on_existing_accounts(api: Api) -> None:
    given = await pair(api)
    await forbidden(
        api,
        GRANT_POOL,
        {"masterId": given.master, "amount": "10.00"},
        token=given.master_token,
        accounts=[given.master],
    )
    await refused(
        api,
        "grantVoucherPool",
        GRANT_POOL,
        {"masterId": ids.encode("Account", 999_999), "amount": "10.00"},
        code="NOT_FOUND",
        field=["masterId"],
        accounts=[given.master],
    )


# ---------------------------------------------------------------- V1 vouchers


async def test_v1_a_master_creates_a_voucher_for_named_members_from_its_pool(api: Api) -> None:
    given = await enterprise(api, 2)
    first, second = given.members
    financial = await api.account("Financial")
    await api.link(given.master, financial, "FINANCIAL")
    await grant(api, given.master, "100.00")
    counts = await row_counts(api.engine)

    made = await voucher(
        api,
        given.master,
        "60.00",
        [first, financial, first],
        valid_from="2030-01-01T00:00:00+00:00",
        valid_until="2030-02-01T00:00:00Z",
        token=given.master_token,
    )
    assert {k: made[k] for k in ("amount", "remaining", "validFrom", "validUntil", "members")} == {
        "amount": "60.00",
        "remaining": "60.00",
        "validFrom": "2030-01-01T00:00:00+00:00",
        "validUntil": "2030-02-01T00:00:00+00:00",
        "members": [{"id": first}, {"id": financial}],
    }
    master = await credits_of(api, given.master, given.master_token)
    assert master is not None and master["voucherPool"] == "40.00"
    assert [v["id"] for v in master["vouchers"]] == [made["id"]]
    for member, token in ((first, given.member_tokens[0]), (financial, OPERATOR_TOKEN)):
        seen = await credits_of(api, member, token)
        assert seen is not None and [v["id"] for v in seen["vouchers"]] == [made["id"]]
    assert (await credits_of(api, second) or {})["vouchers"] == []

    # The whole rest of the pool, by an operator; then nothing is left.
    await voucher(api, given.master, "40.00", [second])
    assert (await credits_of(api, given.master) or {})["voucherPool"] == "0.00"
    await refused(
        api,
        "createVoucher",
        CREATE_VOUCHER,
        create_input(given.master, "0.01", [second]),
        code="INSUFFICIENT_FUNDS",
        field=["amount"],
        accounts=[given.master],
    )
    assert await row_counts(api.engine) == counts  # vouchers are not cash


async def test_v1_voucher_count_counts_vouchers_usable_now(api: Api) -> None:
    given = await enterprise(api, 2)
    first, second = given.members
    await grant(api, given.master, "100.00")
    await voucher(api, given.master, "10.00", [first, second])
    await voucher(api, given.master, "10.00", [first])
    await voucher(api, given.master, "10.00", [first], valid_from=at(days=1))  # not yet
    await voucher(
        api, given.master, "10.00", [first], valid_from=at(days=-9), valid_until=at(days=-1)
    )  # over
    counts = {
        account: (await credits_of(api, account) or {})["finance"]["voucherCount"]
        for account in (given.master, first, second)
    }
    assert counts == {given.master: 2, first: 2, second: 1}
    await charge(api, second, "10.00")  # uses up the voucher shared with ``first``
    counts = {
        account: (await credits_of(api, account) or {})["finance"]["voucherCount"]
        for account in (given.master, first, second)
    }
    assert counts == {given.master: 1, first: 1, second: 0}
    await assert_sound(api.engine)


async def test_v1_a_voucher_needs_more_pool_than_its_amount(api: Api) -> None:
    given = await pair(api)
    await refused(
        api,
        "createVoucher",
        CREATE_VOUCHER,
        create_input(given.master, "1.00", [given.member]),
        code="INSUFFICIENT_FUNDS",
        field=["amount"],
        accounts=[given.master],
        token=given.master_token,
    )
    await grant(api, given.master, "25.00")
    await refused(
        api,
        "createVoucher",
        CREATE_VOUCHER,
        create_input(given.master, "25.01", [given.member]),
        code="INSUFFICIENT_FUNDS",
        field=["amount"],
        accounts=[given.master],
        token=given.master_token,
    )
    await voucher(api, given.master, "25.00", [given.member], token=given.master_token)


async def test_v1_named_members_must_be_active_members_of_the_master(api: Api) -> None:
    given = await enterprise(api, 1)
    member = given.members[0]
    await grant(api, given.master, "100.00")
    stranger = await api.account("Stranger")
    invited = await api.account("Invited")
    await api.invite(given.master, invited)
    former = await api.account("Former")
    former_link = await api.link(given.master, former)
    await api.ok("dissociateMember", DISSOCIATE, {"linkId": former_link})
    other = await pair(api)
    accounts = [given.master, member]
    for bad in (
        stranger,
        invited,
        former,
        other.member,
        given.master,
        "garbage",
        ids.encode("Site", 1),
    ):
        await refused(
            api,
            "createVoucher",
            CREATE_VOUCHER,
            create_input(given.master, "10.00", [member, bad]),
            code="NOT_FOUND",
            field=["memberIds", "1"],
            accounts=accounts,
        )
    await refused(
        api,
        "createVoucher",
        CREATE_VOUCHER,
        create_input(given.master, "10.00", []),
        code="INVALID_INPUT",
        field=["memberIds"],
        accounts=accounts,
    )


@pytest.mark.parametrize("valid_until", ["2030-01-01T00:00:00Z", "2029-12-31T23:59:59Z"])
async def test_v1_a_voucher_is_valid_until_after_it_becomes_valid(
    api: Api, valid_until: str
) -> None:
    given = await pair(api)
    await grant(api, given.master, "100.00")
    await refused(
        api,
        "createVoucher",
        CREATE_VOUCHER,
        create_input(
            given.master,
            "10.00",
            [given.member],
            validFrom="2030-01-01T00:00:00Z",
            validUntil=valid_until,
        ),
        code="INVALID_INPUT",
        field=["validUntil"],
        accounts=[given.master],
    )


@pytest.mark.parametrize("amount", ["0", "-1.00", "0.001", "NaN"])
async def test_v1_a_voucher_amount_is_a_positive_plain_amount(api: Api, amount: str) -> None:
    given = await pair(api)
    await grant(api, given.master, "100.00")
    await refused(
        api,
        "createVoucher",
        CREATE_VOUCHER,
        create_input(given.master, amount, [given.member]),
        code="INVALID_AMOUNT",
        field=["amount"],
        accounts=[given.master],
    )


async def test_v1_vouchers_are_created_by_the_masters_own_users_or_operators(api: Api) -> None:
    given = await pair(api)
    other = await pair(api)
    await grant(api, given.master, "100.00")
    accounts = [given.master, given.member]
    # Its member and another master do not see it: NOT_FOUND.
    for token in (given.member_token, other.master_token):
        await refused(
            api,
            "createVoucher",
            CREATE_VOUCHER,
            create_input(given.master, "10.00", [given.member]),
            code="NOT_FOUND",
            field=["masterId"],
            accounts=accounts,
            token=token,
        )
    # A master sees its member, but a voucher comes from the account's own pool.
    await refused(
        api,
        "createVoucher",
        CREATE_VOUCHER,
        create_input(given.member, "10.00", [given.member]),
        code="PERMISSION_NOT_GRANTED",
        field=["masterId"],
        accounts=accounts,
        token=given.master_token,
    )
    await voucher(api, given.master, "10.00", [given.member], token=given.master_token)
    await voucher(api, given.master, "10.00", [given.member])


async def test_v1_a_voucher_is_seen_by_its_master_and_the_members_it_names(api: Api) -> None:
    given = await enterprise(api, 2)
    first, second = given.members
    await grant(api, given.master, "100.00")
    both = await voucher(api, given.master, "10.00", [first, second])
    only_first = await voucher(api, given.master, "10.00", [first])
    assert (await node(api, only_first["id"], given.master_token) or {})["members"] == [
        {"id": first}
    ]
    assert (await node(api, only_first["id"], given.member_tokens[0]) or {})["remaining"] == "10.00"
    assert await node(api, only_first["id"], given.member_tokens[1]) is None
    # P3: a member never sees its siblings, also not among a voucher's members.
    assert (await node(api, both["id"], given.member_tokens[1]) or {})["members"] == [
        {"id": second}
    ]
    assert (await node(api, both["id"], given.master_token) or {})["members"] == [
        {"id": first},
        {"id": second},
    ]
    stranger_token = await api.token(await api.account("Stranger"))
    assert await node(api, both["id"], stranger_token) is None


# ---------------------------------------------------------------- V2 consumption


async def test_v2_a_voucher_pays_before_transferred_cash_and_the_master(api: Api) -> None:
    given = await pair(api)
    await pay(api, given.master, "100.00")
    await allocate(api, given.master, given.member, "20.00")
    await grant(api, given.master, "50.00")
    made = await voucher(api, given.master, "30.00", [given.member])

    first = await charge(api, given.member, "40.00")
    assert first["charge"]["paidByMaster"] == "0.00"
    assert_finance(
        first["account"]["finance"],
        cashBalance="10.00",
        transferredCash="10.00",
        outstandingFees="0.00",
    )
    assert (await node(api, made["id"]) or {})["remaining"] == "0.00"
    second = await charge(api, given.member, "15.00")
    assert second["charge"]["paidByMaster"] == "5.00"
    assert_finance(await finance(api, given.master), cashBalance="75.00")
    assert await credit_rows(api) == [
        (row(first["charge"]["id"], "Charge"), None, row(made["id"], "Voucher"), "30.00")
    ]
    await assert_sound(api.engine)


async def test_v2_vouchers_are_used_earliest_expiry_first_when_valid_at_the_charge(
    api: Api,
) -> None:
    given = await pair(api, "FINANCIAL")
    await pay(api, given.member, "100.00")
    await grant(api, given.master, "100.00")
    late = await voucher(api, given.master, "10.00", [given.member], valid_until=at(days=30))
    early = await voucher(api, given.master, "10.00", [given.member], valid_until=at(days=10))
    over = await voucher(
        api, given.master, "10.00", [given.member], valid_from=at(days=-10), valid_until=at(days=-1)
    )
    later = await voucher(
        api, given.master, "10.00", [given.member], valid_from=at(days=5), valid_until=at(days=40)
    )

    async def remaining() -> list[str]:
        return [(await node(api, v["id"]) or {})["remaining"] for v in (late, early, over, later)]

    now = await charge(api, given.member, "15.00")
    assert await remaining() == ["5.00", "0.00", "10.00", "10.00"]
    assert_finance(now["account"]["finance"], cashBalance="100.00")
    # A charge dated back in the window of the expired voucher uses it (and nothing else).
    back = await charge(api, given.member, "8.00", occurredAt=at(days=-5))
    assert await remaining() == ["5.00", "0.00", "2.00", "10.00"]
    assert_finance(back["account"]["finance"], cashBalance="100.00")
    # What no voucher valid now covers is paid by cash; nothing goes below zero.
    rest = await charge(api, given.member, "20.00")
    assert await remaining() == ["0.00", "0.00", "2.00", "10.00"]
    assert_finance(rest["account"]["finance"], cashBalance="85.00", outstandingFees="0.00")
    charge_ids = [row(c["charge"]["id"], "Charge") for c in (now, back, rest)]
    voucher_ids = [row(v["id"], "Voucher") for v in (late, early, over, later)]
    assert await credit_rows(api) == [
        (charge_ids[0], None, voucher_ids[1], "10.00"),
        (charge_ids[0], None, voucher_ids[0], "5.00"),
        (charge_ids[1], None, voucher_ids[2], "8.00"),
        (charge_ids[2], None, voucher_ids[0], "5.00"),
    ]
    await assert_sound(api.engine)


async def test_v2_a_voucher_is_used_only_by_the_members_it_names(api: Api) -> None:
    given = await enterprise(api, 2)
    first, second = given.members
    await pay(api, given.master, "100.00")
    await grant(api, given.master, "100.00")
    made = await voucher(api, given.master, "50.00", [first])
    payload = await charge(api, second, "20.00")
    assert payload["charge"]["paidByMaster"] == "20.00"
    assert (await node(api, made["id"]) or {})["remaining"] == "50.00"
    # The master's own charges are not the members': its vouchers pay nothing of them.
    await charge(api, given.master, "10.00")
    assert (await node(api, made["id"]) or {})["remaining"] == "50.00"
    assert_finance(await finance(api, given.master), cashBalance="70.00")
    assert await credit_rows(api) == []
    await assert_sound(api.engine)


async def test_v2_a_charge_covered_by_a_voucher_moves_no_money(api: Api) -> None:
    given = await pair(api)
    await pay(api, given.master, "10.00")
    await grant(api, given.master, "50.00")
    made = await voucher(api, given.master, "30.00", [given.member])
    before = {account: await finance(api, account) for account in (given.master, given.member)}
    counts = await row_counts(api.engine)
    payload = await charge(api, given.member, "30.00")
    assert payload["charge"]["paidByMaster"] == "0.00"
    assert {
        account: await finance(api, account) for account in (given.master, given.member)
    } == before
    after = await row_counts(api.engine)
    assert after == {**counts, "charges": counts["charges"] + 1}
    assert (await node(api, made["id"]) or {})["remaining"] == "0.00"
    await assert_sound(api.engine)


async def test_v2_concurrent_charges_never_take_a_voucher_below_zero(api: Api) -> None:
    """Two financial members share one voucher; their charges lock different accounts and
    meet only at the voucher's row lock."""
    master = await api.account("Master")
    first, second = await api.account("First"), await api.account("Second")
    for member in (first, second):
        await api.link(master, member, "FINANCIAL")
    await grant(api, master, "10.00")
    made = await voucher(api, master, "10.00", [first, second])
    await asyncio.gather(*(charge(api, (first, second)[i % 2], "3.00") for i in range(8)))
    assert (await node(api, made["id"]) or {})["remaining"] == "0.00"
    uses = await credit_rows(api)
    assert sum(float(amount) for *_, amount in uses) == 10.0
    fees = [(await finance(api, member) or {})["outstandingFees"] for member in (first, second)]
    assert sum(float(fee) for fee in fees) == 14.0
    await assert_sound(api.engine)
