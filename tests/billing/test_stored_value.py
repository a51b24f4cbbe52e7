"""W1: stored value cards: issuing them, their place in F7's order (coupons, vouchers,
stored value, transferred cash, own cash, credit), the master's cards for the part it
settles, what FinancialState shows, and verify-ledger covering them (F9)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from accountgraph.api import ids
from accountgraph.funds.verify import verify
from tests.billing.tax_support import ISSUE_CARD, card, forbidden, refused, stored
from tests.billing.voucher_support import at, coupon, grant, voucher
from tests.funds.support import assert_sound, charge, pair, pay
from tests.helpers import Api


async def uses(api: Api) -> list[tuple[int, int, str]]:
    """``stored_value_uses`` as (charge id, card id, amount), in order of use."""
    async with api.engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT charge_id, card_id, amount::text FROM stored_value_uses ORDER BY id")
            )
        ).all()
    return [tuple(row) for row in rows]


NODE = """
query($id: ID!) { node(id: $id) { __typename ... on StoredValueCard { remaining } } }"""


def remaining(account: dict[str, Any]) -> list[str]:
    return [found["remaining"] for found in account["storedValueCards"]]


async def test_w1_operators_issue_cards_shown_beside_the_quota_not_in_it(api: Api) -> None:
    account = await api.account("Standalone")
    first = await card(api, account, "50.00")
    second = await card(api, account, "30.00", at(days=30))
    assert (first["origin"], first["validUntil"], first["remaining"]) == ("ISSUED", None, "50.00")
    assert second["amount"] == "30.00" and second["validUntil"] is not None
    found = await stored(api, account)
    assert found["finance"]["storedValue"] == "80.00"
    assert found["finance"]["storedValueCardCount"] == 2
    assert found["finance"]["availableQuota"] == "0.00"  # F2 leaves stored value out
    node = await api.gql(NODE, {"id": second["id"]})
    assert node["node"] == {"__typename": "StoredValueCard", "remaining": "30.00"}
    stranger = await api.token(await api.account("Stranger"))
    assert (await api.gql(NODE, {"id": second["id"]}, stranger))["node"] is None  # P2-P4
    await assert_sound(api.engine)


async def test_w1_an_issue_is_refused(api: Api) -> None:
    member = await pair(api)
    standalone = await api.account("Standalone")
    for input, code, field in (
        ({"accountId": standalone, "amount": "0"}, "INVALID_AMOUNT", ["amount"]),
        ({"accountId": standalone, "amount": "1.001"}, "INVALID_AMOUNT", ["amount"]),
        (
            {"accountId": standalone, "amount": "1", "validUntil": at(days=-1)},
            "INVALID_INPUT",
            ["validUntil"],
        ),
        ({"accountId": "QWNjb3VudDo5OTk5", "amount": "1"}, "NOT_FOUND", ["accountId"]),
        (  # U4: not to a trusteeship member while associated (like coupons)
            {"accountId": member.member, "amount": "1"},
            "NOT_ALLOWED_WHILE_ASSOCIATED",
            ["accountId"],
        ),
    ):
        await refused(
            api,
            "issueStoredValueCard",
            ISSUE_CARD,
            input,
            code=code,
            field=field,
            accounts=[standalone, member.member],
        )
    await forbidden(
        api,
        ISSUE_CARD,
        {"accountId": member.master, "amount": "1"},
        token=member.master_token,
        accounts=[member.master],
    )


async def test_w1_a_charge_uses_coupons_vouchers_then_cards_earliest_expiry_first_then_cash(
    api: Api,
) -> None:
    member = await pair(api, "FINANCIAL")
    account = member.member
    await coupon(api, account, "10.00")
    await grant(api, member.master, "100.00")
    await voucher(api, member.master, "5.00", [account])
    lasting = await card(api, account, "20.00")  # no expiry: used last
    soon = await card(api, account, "7.00", at(days=10))
    await pay(api, account, "100.00")
    payload = await charge(api, account, "50.00")
    finance = payload["account"]["finance"]
    # 10 coupon + 5 voucher + 7 (soon) + 20 (lasting) = 42 before cash; 8 from cash
    assert finance["cashBalance"] == "92.00" and finance["outstandingFees"] == "0.00"
    found = await stored(api, account)
    assert [(c["id"], c["remaining"]) for c in found["storedValueCards"]] == [
        (lasting["id"], "0.00"),
        (soon["id"], "0.00"),
    ]
    assert [amount for _, _, amount in await uses(api)] == ["7.00", "20.00"]
    assert found["finance"]["storedValue"] == "0.00"
    assert found["finance"]["storedValueCardCount"] == 0
    await assert_sound(api.engine)


async def test_w1_a_card_pays_part_of_a_charge_and_keeps_the_rest(api: Api) -> None:
    account = await api.account("Standalone")
    await card(api, account, "100.00")
    payload = await charge(api, account, "30.00")
    assert payload["account"]["finance"]["outstandingFees"] == "0.00"
    found = await stored(api, account)
    assert remaining(found) == ["70.00"]
    assert found["finance"]["storedValue"] == "70.00"
    async with api.engine.connect() as conn:  # covered entirely: no balance moved (V2)
        entry = (await conn.execute(text("SELECT entry_id FROM charges"))).scalar_one()
    assert entry is None
    await assert_sound(api.engine)


async def test_w1_an_expired_card_pays_nothing(api: Api) -> None:
    account = await api.account("Standalone")
    await card(api, account, "20.00", at(days=1))
    payload = await charge(api, account, "5.00", occurredAt=at(days=2))
    assert payload["account"]["finance"]["outstandingFees"] == "5.00"
    assert remaining(await stored(api, account)) == ["20.00"]
    assert await uses(api) == []


async def test_w1_the_master_settles_with_its_cards_before_its_cash(api: Api) -> None:
    """A trusteeship member's charge: its own cards (from before the association) first,
    then the part the master settles: the master's cards, then the master's cash."""
    master = await api.account("Master")
    member_id = await api.account("Member")
    await card(api, member_id, "10.00")  # before the association
    await api.link(master, member_id)
    await card(api, master, "30.00")
    await pay(api, master, "100.00")
    payload = await charge(api, member_id, "50.00")
    assert payload["charge"]["paidByMaster"] == "40.00"
    assert remaining(await stored(api, member_id)) == ["0.00"]
    master_state = await stored(api, master)
    assert remaining(master_state) == ["0.00"]
    assert master_state["finance"]["cashBalance"] == "90.00"
    assert [amount for _, _, amount in await uses(api)] == ["10.00", "30.00"]
    await assert_sound(api.engine)


async def test_w1_verify_ledger_reports_a_card_that_disagrees_with_its_uses(api: Api) -> None:
    account = await api.account("Standalone")
    found = await card(api, account, "20.00")
    await charge(api, account, "5.00")
    await assert_sound(api.engine)
    async with api.engine.begin() as conn:
        await conn.execute(text("UPDATE stored_value_cards SET remaining = 16"))
    async with api.engine.connect() as conn:
        differences = [str(d) for d in await verify(conn)]
    assert differences == [
        f"stored value card {ids.decode_as(found['id'], 'StoredValueCard')}: remaining 16.00 "
        "but amount 20.00 minus "
        "uses 5.00 is 15.00"
    ]
