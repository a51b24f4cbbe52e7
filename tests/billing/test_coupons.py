"""V3, V2, U2, U4, F1: coupons, and the order in which a charge uses coupons, vouchers and
cash.

Every rule both ways, with exact amounts; each refusal with its exact ``code`` and
``field`` and nothing changed. The ledger is verified after every money test (F9).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text

from accountgraph.api import ids
from tests.billing.voucher_support import (
    ISSUE_COUPON,
    at,
    coupon,
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
from tests.helpers import DISSOCIATE, OPERATOR_TOKEN, Api

BEFORE_ANY_ASSOCIATION = "2000-01-01T00:00:00+00:00"


def row(global_id: str, type_name: str) -> int:
    found = ids.decode_as(global_id, type_name)
    assert found is not None
    return found


async def remaining(api: Api, *objects: dict[str, Any]) -> list[str]:
    return [(await node(api, found["id"]) or {})["remaining"] for found in objects]


async def coupon_count(api: Api, account: str, token: str = OPERATOR_TOKEN) -> int:
    found = await credits_of(api, account, token)
    assert found is not None
    count: int = found["finance"]["couponCount"]
    return count


# ---------------------------------------------------------------- V3 issuing coupons


async def test_v3_an_operator_issues_coupons_to_an_account(api: Api) -> None:
    account = await api.account("Standalone")
    counts = await row_counts(api.engine)
    payload = await api.ok(
        "issueCoupon",
        ISSUE_COUPON,
        {"accountId": account, "amount": "25.00", "validUntil": "2031-01-01T00:00:00Z"},
    )
    coupons = payload["account"]["coupons"]
    assert [{k: c[k] for k in ("amount", "remaining", "validUntil")} for c in coupons] == [
        {"amount": "25.00", "remaining": "25.00", "validUntil": "2031-01-01T00:00:00+00:00"}
    ]
    assert payload["account"]["finance"] == {"couponCount": 1}
    await coupon(api, account, "5.50")
    assert await coupon_count(api, account, await api.token(account)) == 2
    # A coupon is not cash: no journal entry, no balance moved.
    assert await row_counts(api.engine) == counts
    assert_finance(await finance(api, account), cashBalance="0.00", availableQuota="0.00")


async def test_v3_masters_and_financial_members_get_coupons(api: Api) -> None:
    given = await pair(api, "FINANCIAL")
    await coupon(api, given.master, "10.00")
    await coupon(api, given.member, "20.00")
    assert [await coupon_count(api, a) for a in (given.master, given.member)] == [1, 1]


async def test_u4_no_coupon_for_a_trusteeship_member_until_it_leaves(api: Api) -> None:
    given = await pair(api)
    await refused(
        api,
        "issueCoupon",
        ISSUE_COUPON,
        {"accountId": given.member, "amount": "10.00", "validUntil": at(days=30)},
        code="NOT_ALLOWED_WHILE_ASSOCIATED",
        field=["accountId"],
        accounts=[given.master, given.member],
    )
    await api.ok("dissociateMember", DISSOCIATE, {"linkId": given.link})
    await coupon(api, given.member, "10.00")
    assert await coupon_count(api, given.member) == 1


@pytest.mark.parametrize("valid_until", ["2020-01-01T00:00:00Z", "now"])
async def test_v3_a_coupon_expires_in_the_future(api: Api, valid_until: str) -> None:
    account = await api.account("Standalone")
    when = at(seconds=-1) if valid_until == "now" else valid_until
    await refused(
        api,
        "issueCoupon",
        ISSUE_COUPON,
        {"accountId": account, "amount": "10.00", "validUntil": when},
        code="INVALID_INPUT",
        field=["validUntil"],
        accounts=[account],
    )


@pytest.mark.parametrize("amount", ["0", "-1.00", "2.345", "Infinity", ""])
async def test_v3_a_coupon_amount_is_a_positive_plain_amount(api: Api, amount: str) -> None:
    account = await api.account("Standalone")
    await refused(
        api,
        "issueCoupon",
        ISSUE_COUPON,
        {"accountId": account, "amount": amount, "validUntil": at(days=1)},
        code="INVALID_AMOUNT",
        field=["amount"],
        accounts=[account],
    )


async def test_v3_issue_coupon_is_for_operators_on_existing_accounts(api: Api) -> None:
    account = await api.account("Standalone")
    await forbidden(
        api,
        ISSUE_COUPON,
        {"accountId": account, "amount": "10.00", "validUntil": at(days=1)},
        token=await api.token(account),
        accounts=[account],
    )
    await refused(
        api,
        "issueCoupon",
        ISSUE_COUPON,
        {"accountId": ids.encode("Account", 999_999), "amount": "10.00", "validUntil": at(days=1)},
        code="NOT_FOUND",
        field=["accountId"],
        accounts=[account],
    )


async def test_v3_coupons_are_finances_of_their_account(api: Api) -> None:
    """P2: the account, its master with VIEW_FINANCE and operators see its coupons."""
    seen = await pair(api, "FINANCIAL")
    hidden = await pair(api, "FINANCIAL", ["SYNC_CREDIT_CONTROL"])
    visible = await coupon(api, seen.member, "10.00")
    invisible = await coupon(api, hidden.member, "10.00")
    assert (await node(api, visible["id"], seen.master_token) or {})["remaining"] == "10.00"
    assert (await node(api, visible["id"], seen.member_token) or {})["remaining"] == "10.00"
    assert [
        c["id"] for c in (await credits_of(api, seen.member, seen.master_token) or {})["coupons"]
    ] == [visible["id"]]
    assert await node(api, invisible["id"], hidden.master_token) is None
    assert (await credits_of(api, hidden.member, hidden.master_token) or {})["coupons"] == []
    assert await node(api, visible["id"], hidden.master_token) is None


async def test_f1_coupon_count_counts_coupons_usable_now(api: Api) -> None:
    account = await api.account("Standalone")
    lasting = await coupon(api, account, "10.00", at(days=30))
    expiry = at(seconds=1.5)
    brief = await coupon(api, account, "5.00", expiry)
    expires = datetime.fromisoformat(expiry)
    count = await coupon_count(api, account)
    if datetime.now(UTC) < expires:  # answered before the brief one expired (a loaded box
        assert count == 2  # may be past it already)
    # the brief one expires: poll for it with a deadline, not a fixed sleep
    deadline = time.monotonic() + 30
    while count != 1:
        assert count == 2 and time.monotonic() < deadline, count
        await asyncio.sleep(0.1)
        count = await coupon_count(api, account)
    assert datetime.now(UTC) >= expires  # it left the count only once it expired
    await charge(api, account, "10.00")  # the expired coupon is not used
    assert await remaining(api, lasting, brief) == ["0.00", "5.00"]
    assert await coupon_count(api, account) == 0
    await assert_sound(api.engine)


# ---------------------------------------------------------------- V2 consumption order


async def test_v2_coupons_pay_before_cash_earliest_expiry_first(api: Api) -> None:
    account = await api.account("Standalone")
    await pay(api, account, "100.00")
    late = await coupon(api, account, "10.00", at(days=30))
    early = await coupon(api, account, "10.00", at(days=5))
    short = await coupon(api, account, "10.00", at(days=1))

    first = await charge(api, account, "12.00")
    assert await remaining(api, late, early, short) == ["10.00", "8.00", "0.00"]
    assert_finance(first["account"]["finance"], cashBalance="100.00")
    # Dated after two of them expired: only the one still valid then pays.
    later = await charge(api, account, "3.00", occurredAt=at(days=10))
    assert await remaining(api, late, early, short) == ["7.00", "8.00", "0.00"]
    rest = await charge(api, account, "20.00")
    assert await remaining(api, late, early, short) == ["0.00", "0.00", "0.00"]
    assert_finance(rest["account"]["finance"], cashBalance="95.00", outstandingFees="0.00")
    charges = [row(c["charge"]["id"], "Charge") for c in (first, later, rest)]
    coupons = [row(c["id"], "Coupon") for c in (late, early, short)]
    assert await credit_rows(api) == [
        (charges[0], coupons[2], None, "10.00"),
        (charges[0], coupons[1], None, "2.00"),
        (charges[1], coupons[0], None, "3.00"),
        (charges[2], coupons[1], None, "8.00"),
        (charges[2], coupons[0], None, "7.00"),
    ]
    await assert_sound(api.engine)


async def test_v2_coupons_then_vouchers_then_transferred_cash_then_own_cash(api: Api) -> None:
    """F7 for a financial member: the coupon expires later than the voucher and is still
    used first."""
    given = await pair(api, "FINANCIAL")
    await pay(api, given.member, "50.00")
    await pay(api, given.master, "100.00")
    await allocate(api, given.master, given.member, "20.00")
    await grant(api, given.master, "10.00")
    gift = await coupon(api, given.member, "10.00", at(days=20))
    made = await voucher(api, given.master, "10.00", [given.member], valid_until=at(days=5))

    first = await charge(api, given.member, "35.00")
    assert first["charge"]["paidByMaster"] == "0.00"
    assert await remaining(api, gift, made) == ["0.00", "0.00"]
    assert_finance(first["account"]["finance"], cashBalance="55.00", transferredCash="5.00")
    second = await charge(api, given.member, "10.00")
    assert_finance(
        second["account"]["finance"],
        cashBalance="45.00",
        transferredCash="0.00",
        outstandingFees="0.00",
    )
    assert_finance(await finance(api, given.master), cashBalance="80.00")
    charge_id = row(first["charge"]["id"], "Charge")
    assert await credit_rows(api) == [
        (charge_id, row(gift["id"], "Coupon"), None, "10.00"),
        (charge_id, None, row(made["id"], "Voucher"), "10.00"),
    ]
    await assert_sound(api.engine)


async def test_v2_a_charge_covered_by_coupons_moves_no_money(api: Api) -> None:
    account = await api.account("Standalone")
    await coupon(api, account, "50.00")
    counts = await row_counts(api.engine)
    payload = await charge(api, account, "20.00")
    assert_finance(
        payload["account"]["finance"],
        cashBalance="0.00",
        outstandingFees="0.00",
        availableQuota="0.00",
    )
    assert await row_counts(api.engine) == {**counts, "charges": counts["charges"] + 1}
    async with api.engine.connect() as conn:
        entry = (await conn.execute(text("SELECT entry_id FROM charges"))).scalar_one()
    assert entry is None
    await assert_sound(api.engine)


# ---------------------------------------------------------------- U2, U4 under trusteeship


async def test_u2_a_members_own_coupons_pay_only_bills_before_the_association(api: Api) -> None:
    member = await api.account("Member")
    gift = await coupon(api, member, "20.00")
    master = await api.account("Master")
    await api.link(master, member)
    await pay(api, master, "100.00")

    during = await charge(api, member, "5.00")
    assert during["charge"]["paidByMaster"] == "5.00"
    assert await remaining(api, gift) == ["20.00"]
    before = await charge(api, member, "8.00", occurredAt=BEFORE_ANY_ASSOCIATION)
    assert before["charge"]["paidByMaster"] == "0.00"
    assert await remaining(api, gift) == ["12.00"]
    assert_finance(before["account"]["finance"], cashBalance="0.00", outstandingFees="0.00")
    assert_finance(await finance(api, master), cashBalance="95.00")
    await assert_sound(api.engine)


async def test_u4_the_masters_coupons_pay_the_part_of_a_members_charge_it_settles(api: Api) -> None:
    """V2, F7: member's vouchers, its transferred cash, then the master's coupons, then the
    master's cash, then the master's credit."""
    given = await pair(api)
    await pay(api, given.master, "100.00")
    await allocate(api, given.master, given.member, "5.00")
    await grant(api, given.master, "10.00")
    made = await voucher(api, given.master, "10.00", [given.member])
    gift = await coupon(api, given.master, "20.00")

    payload = await charge(api, given.member, "50.00")
    assert payload["charge"]["paidByMaster"] == "35.00"
    assert await remaining(api, made, gift) == ["0.00", "0.00"]
    assert_finance(payload["account"]["finance"], cashBalance="0.00", transferredCash="0.00")
    assert_finance(await finance(api, given.master), cashBalance="80.00", outstandingFees="0.00")
    more = await charge(api, given.member, "90.00")
    assert more["charge"]["paidByMaster"] == "90.00"
    assert_finance(await finance(api, given.master), cashBalance="0.00", outstandingFees="10.00")
    charge_id = row(payload["charge"]["id"], "Charge")
    assert await credit_rows(api) == [
        (charge_id, None, row(made["id"], "Voucher"), "10.00"),
        (charge_id, row(gift["id"], "Coupon"), None, "20.00"),
    ]
    await assert_sound(api.engine)


async def test_u4_the_masters_coupons_pay_nothing_of_a_financial_member(api: Api) -> None:
    given = await pair(api, "FINANCIAL")
    gift = await coupon(api, given.master, "20.00")
    payload = await charge(api, given.member, "10.00")
    assert payload["charge"]["paidByMaster"] == "0.00"
    assert_finance(payload["account"]["finance"], outstandingFees="10.00")
    assert await remaining(api, gift) == ["20.00"]
    await assert_sound(api.engine)


async def test_v2_concurrent_charges_never_take_a_coupon_below_zero(api: Api) -> None:
    account = await api.account("Standalone")
    gift = await coupon(api, account, "10.00")
    await asyncio.gather(*(charge(api, account, "3.00") for _ in range(6)))
    assert await remaining(api, gift) == ["0.00"]
    assert_finance(await finance(api, account), outstandingFees="8.00")
    await assert_sound(api.engine)
