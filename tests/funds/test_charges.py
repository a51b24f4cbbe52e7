"""F1, F2, F7, F8, U1-U5: financial state, charges, payments and withdrawals, and how a
trusteeship changes who pays.

Every rule both ways: the allowed case with the exact balances after it, and each refusal
with its exact ``code`` and ``field`` and nothing changed (the finance of every involved
account, every balance and allocation row, and the row counts of the money records).
After every test that moves money the ledger is verified (F9).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text

from accountgraph.api import ids
from tests.funds.support import (
    ADJUST,
    CHARGE,
    CHARGE_FIELDS,
    PAY,
    WITHDRAW,
    ZERO_FINANCE,
    adjust,
    allocate,
    assert_finance,
    assert_sound,
    charge,
    credit_line,
    finance,
    forbidden,
    money_state,
    pair,
    pay,
    refused,
    row_counts,
    withdraw,
)
from tests.helpers import DISSOCIATE, OPERATOR_TOKEN, RESPOND, Api, enterprise

CHARGES = (
    """
query($id: ID!, $first: Int, $after: String, $since: DateTime, $until: DateTime) {
  account(id: $id) {
    charges(first: $first, after: $after, since: $since, until: $until) {
      totalCount pageInfo { hasNextPage endCursor }
      edges { cursor node { ...ChargeFields } }
    }
  }
}"""
    + CHARGE_FIELDS
)
CHARGE_NODE = (
    """
query($id: ID!) { node(id: $id) { __typename id ...ChargeFields } }"""
    + CHARGE_FIELDS
)
LINK_NODE = """
query($id: ID!) { node(id: $id) { ... on Link { id status activatedAt } } }"""
ACCOUNT_FINANCE = """
query($id: ID!) { account(id: $id) { id finance { cashBalance availableQuota } } }"""
MY_MASTER_FINANCE = """
{ viewer { account { link { master { id name finance { cashBalance } } } } } }"""
LAST_ENTRY = text("""
SELECT e.kind, e.reason, e.actor,
       array_agg(p.account_id ORDER BY p.id) AS accounts,
       array_agg(p.bucket ORDER BY p.id) AS buckets,
       array_agg(p.amount ORDER BY p.id) AS amounts
FROM journal_entries e JOIN postings p ON p.entry_id = e.id
WHERE e.id = (SELECT max(id) FROM journal_entries)
GROUP BY e.id""")

BUCKETS = {
    "BANKERS_ACCEPTANCE_BILL": "bankersAcceptanceBill",
    "CREDIT_REFUND": "creditRefund",
    "UNSETTLED_AMOUNT": "unsettledAmount",
    "NEGATIVE_BILL": "negativeBill",
}
BAD_AMOUNTS = [
    "0",
    "-1",
    "-0.01",
    "1.001",
    "abc",
    "1e3",
    "1E3",
    "NaN",
    "Infinity",
    "-Infinity",
    "",
    " ",
    True,
    False,
]
BEFORE_ANY_ASSOCIATION = "2000-01-01T00:00:00+00:00"


async def charges(
    api: Api, account: str, token: str = OPERATOR_TOKEN, **args: Any
) -> dict[str, Any]:
    found = (await api.gql(CHARGES, {"id": account, **args}, token))["account"]
    assert found is not None
    result: dict[str, Any] = found["charges"]
    return result


def descriptions(connection: dict[str, Any]) -> list[str]:
    return [edge["node"]["description"] for edge in connection["edges"]]


async def charge_node(
    api: Api, charge_id: str, token: str = OPERATOR_TOKEN
) -> dict[str, Any] | None:
    found: dict[str, Any] | None = (await api.gql(CHARGE_NODE, {"id": charge_id}, token))["node"]
    return found


async def last_entry(api: Api) -> Any:
    async with api.engine.connect() as conn:
        return (await conn.execute(LAST_ENTRY)).one()


async def with_own_cash(api: Api, name: str, cash: str) -> str:
    """A standalone account that was paid ``cash`` before any association."""
    account = await api.account(name)
    await pay(api, account, cash)
    return account


# ---------------------------------------------------------------- F1 financial state


async def test_f1_every_account_has_a_financial_state_of_zeros(api: Api) -> None:
    account = await api.account("Fresh")
    for token in (OPERATOR_TOKEN, await api.token(account)):
        assert await finance(api, account, token) == ZERO_FINANCE


@pytest.mark.parametrize("bucket", list(BUCKETS))
async def test_f1_adjust_balance_moves_a_back_office_bucket(api: Api, bucket: str) -> None:
    account = await api.account("Account")
    counts = await row_counts(api.engine)
    found = await adjust(api, account, bucket, "100.25", reason="  invoice 42  ")
    assert_finance(found, **{BUCKETS[bucket]: "100.25"})
    entry = await last_entry(api)
    assert (entry.kind, entry.reason, entry.actor) == ("ADJUSTMENT", "invoice 42", "operator:env")
    # One balanced entry against the EXTERNAL counterparty (account NULL).
    assert list(zip(entry.accounts, entry.buckets, entry.amounts, strict=True)) == [
        (None, bucket, Decimal("-100.25")),
        (ids.decode_as(account, "Account"), bucket, Decimal("100.25")),
    ]
    found = await adjust(api, account, bucket, "-40.25")
    assert_finance(found, **{BUCKETS[bucket]: "60.00"})
    after = await row_counts(api.engine)
    assert after["journal_entries"] == counts["journal_entries"] + 2
    assert after["postings"] == counts["postings"] + 4
    await assert_sound(api.engine)


@pytest.mark.parametrize("bucket", list(BUCKETS))
async def test_f1_adjust_balance_below_zero_is_insufficient_funds(api: Api, bucket: str) -> None:
    account = await api.account("Account")
    await refused(
        api,
        "adjustBalance",
        ADJUST,
        {"accountId": account, "bucket": bucket, "amount": "-0.01", "reason": "x"},
        code="INSUFFICIENT_FUNDS",
        field=["amount"],
        accounts=[account],
    )
    await adjust(api, account, bucket, "10.00")
    await refused(
        api,
        "adjustBalance",
        ADJUST,
        {"accountId": account, "bucket": bucket, "amount": "-10.01", "reason": "x"},
        code="INSUFFICIENT_FUNDS",
        field=["amount"],
        accounts=[account],
    )
    found = await adjust(api, account, bucket, "-10.00")
    assert_finance(found, **{BUCKETS[bucket]: "0.00"})
    await assert_sound(api.engine)


@pytest.mark.parametrize("value", [v for v in BAD_AMOUNTS if v not in ("-1", "-0.01")], ids=repr)
async def test_f1_adjust_balance_needs_a_non_zero_plain_amount(api: Api, value: Any) -> None:
    account = await api.account("Account")
    await adjust(api, account, "CREDIT_REFUND", "5.00")
    await refused(
        api,
        "adjustBalance",
        ADJUST,
        {"accountId": account, "bucket": "CREDIT_REFUND", "amount": value, "reason": "x"},
        code="INVALID_AMOUNT",
        field=["amount"],
        accounts=[account],
    )


async def test_f1_adjust_balance_needs_a_reason_and_a_visible_account(api: Api) -> None:
    account = await api.account("Account")
    for reason in ("", "   ", "x" * 501):
        await refused(
            api,
            "adjustBalance",
            ADJUST,
            {"accountId": account, "bucket": "CREDIT_REFUND", "amount": "1.00", "reason": reason},
            code="INVALID_INPUT",
            field=["reason"],
            accounts=[account],
        )
    await refused(
        api,
        "adjustBalance",
        ADJUST,
        {"accountId": "not-an-id", "bucket": "CREDIT_REFUND", "amount": "1.00", "reason": "x"},
        code="NOT_FOUND",
        field=["accountId"],
        accounts=[account],
    )


async def test_f1_adjust_balance_is_for_operators_only(api: Api) -> None:
    given = await pair(api)
    for token in (given.master_token, given.member_token):
        await forbidden(
            api,
            ADJUST,
            {"accountId": given.member, "bucket": "CREDIT_REFUND", "amount": "1.00", "reason": "x"},
            token=token,
            accounts=[given.master, given.member],
        )


# ---------------------------------------------------------------- F2 available quota


async def test_f2_available_quota_is_the_formula_over_every_bucket(api: Api) -> None:
    given = await pair(api, "FINANCIAL")
    await credit_line(api, given.master, "1000.00")
    await charge(api, given.member, "50.00")  # nothing pays it: outstanding fees
    await pay(api, given.master, "100.00")
    await allocate(api, given.master, given.member, "80.00")
    await allocate(api, given.master, given.member, "300.00", "CREDIT")
    await adjust(api, given.member, "BANKERS_ACCEPTANCE_BILL", "20.00")
    await adjust(api, given.member, "CREDIT_REFUND", "7.50")
    await adjust(api, given.member, "UNSETTLED_AMOUNT", "12.25")
    found = await adjust(api, given.member, "NEGATIVE_BILL", "5.00")

    assert found == {
        "cashBalance": "80.00",
        "bankersAcceptanceBill": "20.00",
        "creditLimit": "300.00",
        "creditRefund": "7.50",
        "unsettledAmount": "12.25",
        "outstandingFees": "50.00",
        "negativeBill": "5.00",
        "transferredCash": "80.00",
        "transferredCredit": "300.00",
        "transferredAmount": "380.00",
        "frozenCash": "0.00",
        # 80 + 20 + 300 + 7.50 - 12.25 - (50 - 5)
        "availableQuota": "350.25",
        "creditLine": None,
        "availableCredit": None,
    }
    # A negative bill larger than the fees raises the quota.
    found = await adjust(api, given.member, "NEGATIVE_BILL", "55.00")
    assert_finance(found, negativeBill="60.00", availableQuota="405.25")
    await assert_sound(api.engine)


async def test_f2_frozen_cash_is_shown_but_left_out_of_the_quota(api: Api) -> None:
    member = await with_own_cash(api, "Member", "40.00")
    financial = await with_own_cash(api, "Financial member", "40.00")
    master = await api.account("Master")
    await api.link(master, member)
    await api.link(master, financial, type="FINANCIAL")
    assert_finance(
        await finance(api, member),
        cashBalance="40.00",
        frozenCash="40.00",
        transferredCash="0.00",
        availableQuota="0.00",
    )
    assert_finance(
        await finance(api, financial),
        cashBalance="40.00",
        frozenCash="0.00",
        availableQuota="40.00",
    )
    await pay(api, master, "25.00")
    payload = await allocate(api, master, member, "25.00")
    assert_finance(
        payload["member"]["finance"],
        cashBalance="65.00",
        transferredCash="25.00",
        frozenCash="40.00",
        availableQuota="25.00",
    )
    await assert_sound(api.engine)


async def test_f2_credit_line_and_available_credit_are_for_non_members(api: Api) -> None:
    given = await pair(api)
    standalone = await api.account("Standalone")
    assert_finance(await finance(api, standalone), creditLine="0.00", availableCredit="0.00")
    assert_finance(await finance(api, given.master), creditLine="0.00", availableCredit="0.00")
    for token in (OPERATOR_TOKEN, given.master_token, given.member_token):
        assert_finance(
            await finance(api, given.member, token), creditLine=None, availableCredit=None
        )
    await api.ok("dissociateMember", DISSOCIATE, {"linkId": given.link})
    assert_finance(
        await finance(api, given.member, given.member_token),
        creditLine="0.00",
        availableCredit="0.00",
    )


@pytest.mark.parametrize("type", ["TRUSTEESHIP", "FINANCIAL"])
async def test_f2_finance_is_seen_by_the_account_its_master_with_view_finance_and_operators(
    api: Api, type: str
) -> None:
    """P2, P3: a master needs VIEW_FINANCE; siblings never see each other; a member sees
    its master by name only."""
    master = await api.account("Master")
    master_token = await api.token(master)
    viewing = await pair(api, type, ["VIEW_FINANCE"], master=master, name="Viewing")
    blind = await pair(
        api, type, ["SYNC_CREDIT_CONTROL", "MANAGE_INVOICES"], master=master, name="Blind"
    )
    await pay(api, master, "10.00")

    assert await finance(api, viewing.member, master_token) is not None
    assert await finance(api, blind.member, master_token) is None
    for account, token in (
        (viewing.member, viewing.member_token),
        (blind.member, blind.member_token),
        (master, master_token),
    ):
        assert await finance(api, account, token) is not None
        assert await finance(api, account) is not None
    sibling = await api.gql(ACCOUNT_FINANCE, {"id": blind.member}, viewing.member_token)
    assert sibling["account"] is None
    view = (await api.gql(MY_MASTER_FINANCE, token=viewing.member_token))["viewer"]["account"]
    assert view["link"]["master"] == {"id": master, "name": "Master", "finance": None}


# ---------------------------------------------------------------- F7 charges


async def test_f7_a_standalone_charge_takes_cash_then_becomes_outstanding_fees(api: Api) -> None:
    account = await with_own_cash(api, "Standalone", "30.00")
    first = await charge(api, account, "12.50")
    assert first["charge"]["paidByMaster"] == "0.00"
    assert first["charge"]["account"] == {"id": account}
    assert_finance(
        first["account"]["finance"],
        cashBalance="17.50",
        outstandingFees="0.00",
        availableQuota="17.50",
    )
    second = await charge(api, account, "37.50")
    assert_finance(
        second["account"]["finance"],
        cashBalance="0.00",
        outstandingFees="20.00",
        availableQuota="-20.00",
    )
    await assert_sound(api.engine)


async def test_f7_a_charge_is_never_refused_even_past_the_credit_limit(api: Api) -> None:
    account = await api.account("Standalone")
    await credit_line(api, account, "100.00")
    payload = await charge(api, account, "250.00")
    assert payload["charge"]["amount"] == "250.00"
    assert_finance(
        payload["account"]["finance"],
        outstandingFees="250.00",
        creditLimit="100.00",
        availableCredit="-150.00",
        availableQuota="-150.00",
    )
    payload = await charge(api, account, "0.01")
    assert_finance(payload["account"]["finance"], availableQuota="-150.01")
    await assert_sound(api.engine)


async def test_f7_a_financial_member_pays_transferred_cash_then_own_cash_then_fees(
    api: Api,
) -> None:
    given = await pair(api, "FINANCIAL")
    await pay(api, given.member, "10.00")
    await pay(api, given.master, "20.00")
    await allocate(api, given.master, given.member, "20.00")
    master_before = await finance(api, given.master)

    first = await charge(api, given.member, "25.00")
    assert first["charge"]["paidByMaster"] == "0.00"
    assert_finance(
        first["account"]["finance"],
        cashBalance="5.00",
        transferredCash="0.00",
        outstandingFees="0.00",
        availableQuota="5.00",
    )
    second = await charge(api, given.member, "10.00")
    assert_finance(
        second["account"]["finance"],
        cashBalance="0.00",
        outstandingFees="5.00",
        availableQuota="-5.00",
    )
    assert await finance(api, given.master) == master_before
    await assert_sound(api.engine)


async def test_f7_a_trusteeship_members_charge_is_settled_by_its_master(api: Api) -> None:
    """F7, U3, U4: transferred cash, then the master's cash, then the master's credit; the
    member's own (frozen) cash is not touched; the charge stays the member's."""
    member = await with_own_cash(api, "Member", "15.00")
    master = await api.account("Master")
    await api.link(master, member)
    await pay(api, master, "70.00")
    await credit_line(api, master, "100.00")
    await allocate(api, master, member, "20.00")

    payload = await charge(api, member, "100.00")
    assert payload["charge"]["account"] == {"id": member}
    assert payload["charge"]["paidByMaster"] == "80.00"
    assert_finance(
        payload["account"]["finance"],
        cashBalance="15.00",
        transferredCash="0.00",
        frozenCash="15.00",
        outstandingFees="0.00",
        availableQuota="0.00",
    )
    assert_finance(
        await finance(api, master),
        cashBalance="0.00",
        outstandingFees="30.00",
        creditLimit="100.00",
        availableCredit="70.00",
        availableQuota="70.00",
    )
    assert descriptions(await charges(api, member)) == ["compute"]
    assert descriptions(await charges(api, master)) == []
    await assert_sound(api.engine)


async def test_f7_a_charge_may_name_a_site_of_its_account_only(api: Api) -> None:
    given = await enterprise(api, 2, sites=True)
    site = (
        await api.gql(
            "query($id: ID!) { account(id: $id) { sites { id } } }", {"id": given.members[0]}
        )
    )["account"]["sites"][0]["id"]
    other_site = (
        await api.gql(
            "query($id: ID!) { account(id: $id) { sites { id } } }", {"id": given.members[1]}
        )
    )["account"]["sites"][0]["id"]
    await pay(api, given.master, "10.00")
    involved = [given.master, *given.members]
    for bad in (other_site, "not-an-id", given.links[0]):
        await refused(
            api,
            "recordCharge",
            CHARGE,
            {"accountId": given.members[0], "amount": "1.00", "description": "x", "siteId": bad},
            code="NOT_FOUND",
            field=["siteId"],
            accounts=involved,
        )
    payload = await charge(api, given.members[0], "1.00", siteId=site)
    assert payload["charge"]["site"] == {"id": site}
    node = await charge_node(api, payload["charge"]["id"])
    assert node is not None and node["site"] == {"id": site}
    await assert_sound(api.engine)


async def test_f7_record_charge_input_is_checked(api: Api) -> None:
    account = await with_own_cash(api, "Standalone", "10.00")
    for description in ("", "  ", "x" * 501):
        await refused(
            api,
            "recordCharge",
            CHARGE,
            {"accountId": account, "amount": "1.00", "description": description},
            code="INVALID_INPUT",
            field=["description"],
            accounts=[account],
        )
    await refused(
        api,
        "recordCharge",
        CHARGE,
        {"accountId": "not-an-id", "amount": "1.00", "description": "x"},
        code="NOT_FOUND",
        field=["accountId"],
        accounts=[account],
    )


@pytest.mark.parametrize("value", BAD_AMOUNTS, ids=repr)
async def test_f7_a_charge_amount_is_a_positive_plain_amount(api: Api, value: Any) -> None:
    account = await with_own_cash(api, "Standalone", "10.00")
    await refused(
        api,
        "recordCharge",
        CHARGE,
        {"accountId": account, "amount": value, "description": "x"},
        code="INVALID_AMOUNT",
        field=["amount"],
        accounts=[account],
    )


async def test_f7_record_charge_is_for_operators_only(api: Api) -> None:
    given = await pair(api)
    await pay(api, given.master, "10.00")
    for token in (given.master_token, given.member_token):
        await forbidden(
            api,
            CHARGE,
            {"accountId": given.member, "amount": "1.00", "description": "x"},
            token=token,
            accounts=[given.master, given.member],
        )


async def test_f7_charges_are_listed_newest_first_and_by_node(api: Api) -> None:
    given = await pair(api, "FINANCIAL", ["VIEW_FINANCE", "SYNC_CREDIT_CONTROL"])
    blind = await pair(api, "FINANCIAL", ["SYNC_CREDIT_CONTROL"], master=given.master, name="Blind")
    made = []
    for number, day in enumerate(("2024-01-03", "2024-01-01", "2024-01-02")):
        payload = await charge(
            api,
            given.member,
            f"{number + 1}.00",
            f"charge {number + 1}",
            occurredAt=f"{day}T12:00:00+00:00",
        )
        made.append(payload["charge"])
    hidden = (await charge(api, blind.member, "1.00", "blind"))["charge"]

    for token in (OPERATOR_TOKEN, given.member_token, given.master_token):
        found = await charges(api, given.member, token)
        assert found["totalCount"] == 3
        assert descriptions(found) == ["charge 3", "charge 2", "charge 1"]  # recorded last first
        assert await charge_node(api, made[0]["id"], token) == {"__typename": "Charge", **made[0]}
    # since/until are on occurredAt (since inclusive, until exclusive).
    window = await charges(
        api, given.member, since="2024-01-02T12:00:00+00:00", until="2024-01-03T12:00:00+00:00"
    )
    assert descriptions(window) == ["charge 3"]
    first_page = await charges(api, given.member, first=2)
    assert first_page["pageInfo"]["hasNextPage"] is True
    rest = await charges(api, given.member, first=2, after=first_page["pageInfo"]["endCursor"])
    assert descriptions(first_page) + descriptions(rest) == ["charge 3", "charge 2", "charge 1"]
    # Finance hidden: no charges either.
    assert (await charges(api, blind.member, given.master_token))["totalCount"] == 0
    assert await charge_node(api, hidden["id"], given.master_token) is None
    assert await charge_node(api, hidden["id"], given.member_token) is None
    assert await charge_node(api, made[0]["id"], blind.member_token) is None


@pytest.mark.parametrize("type", ["TRUSTEESHIP", "FINANCIAL"])
async def test_f7_an_occurred_at_without_a_time_zone_is_utc(api: Api, type: str) -> None:
    """U2 compares it with the link's activation: a naive time must not break that."""
    member = await with_own_cash(api, "Member", "10.00")
    master = await api.account("Master")
    await api.link(master, member, type=type)
    await pay(api, master, "10.00")
    payload = await charge(api, member, "1.00", occurredAt="2001-02-03T04:05:06")
    assert datetime.fromisoformat(payload["charge"]["occurredAt"]) == datetime.fromisoformat(
        "2001-02-03T04:05:06+00:00"
    )
    assert payload["charge"]["paidByMaster"] == "0.00"
    assert_finance(payload["account"]["finance"], cashBalance="9.00")
    found = await charges(api, member, since="2001-02-03T04:05:06", until="2001-02-03T04:05:07")
    assert found["totalCount"] == 1
    await assert_sound(api.engine)


# ---------------------------------------------------------------- F8 payments, withdrawals


async def test_f8_a_payment_settles_outstanding_fees_first(api: Api) -> None:
    account = await api.account("Standalone")
    await charge(api, account, "30.00")
    counts = await row_counts(api.engine)
    assert_finance(
        await pay(api, account, "10.00"),
        outstandingFees="20.00",
        cashBalance="0.00",
        availableQuota="-20.00",
    )
    assert_finance(
        await pay(api, account, "50.00"),
        outstandingFees="0.00",
        cashBalance="30.00",
        availableQuota="30.00",
    )
    assert_finance(await pay(api, account, "0.01"), cashBalance="30.01")
    after = await row_counts(api.engine)
    assert after["payments"] == counts["payments"] + 3
    assert after["journal_entries"] == counts["journal_entries"] + 3
    await assert_sound(api.engine)


async def test_f8_record_payment_is_for_operators_and_checks_its_input(api: Api) -> None:
    given = await pair(api)
    for token in (given.master_token, given.member_token):
        await forbidden(
            api,
            PAY,
            {"accountId": given.master, "amount": "1.00"},
            token=token,
            accounts=[given.master, given.member],
        )
    await refused(
        api,
        "recordPayment",
        PAY,
        {"accountId": "not-an-id", "amount": "1.00"},
        code="NOT_FOUND",
        field=["accountId"],
        accounts=[given.master],
    )


@pytest.mark.parametrize("value", BAD_AMOUNTS, ids=repr)
async def test_f8_a_payment_amount_is_a_positive_plain_amount(api: Api, value: Any) -> None:
    account = await api.account("Standalone")
    await refused(
        api,
        "recordPayment",
        PAY,
        {"accountId": account, "amount": value},
        code="INVALID_AMOUNT",
        field=["amount"],
        accounts=[account],
    )


async def test_f8_only_cash_that_was_not_allocated_is_withdrawn(api: Api) -> None:
    given = await pair(api, "FINANCIAL")
    await pay(api, given.member, "30.00")
    await pay(api, given.master, "20.00")
    await allocate(api, given.master, given.member, "20.00")
    involved = [given.master, given.member]
    await refused(
        api,
        "withdrawCash",
        WITHDRAW,
        {"accountId": given.member, "amount": "30.01"},
        code="INSUFFICIENT_FUNDS",
        field=["amount"],
        token=given.member_token,
        accounts=involved,
    )
    counts = await row_counts(api.engine)
    found = await withdraw(api, given.member, "30.00", given.member_token)
    assert_finance(found, cashBalance="20.00", transferredCash="20.00", availableQuota="20.00")
    assert (await row_counts(api.engine))["journal_entries"] == counts["journal_entries"] + 1
    await refused(
        api,
        "withdrawCash",
        WITHDRAW,
        {"accountId": given.member, "amount": "0.01"},
        code="INSUFFICIENT_FUNDS",
        field=["amount"],
        token=given.member_token,
        accounts=involved,
    )
    # A master has no transferred cash: all of its cash is withdrawable.
    await pay(api, given.master, "5.00")
    assert_finance(
        await withdraw(api, given.master, "5.00", given.master_token), cashBalance="0.00"
    )
    await assert_sound(api.engine)


async def test_f8_only_the_accounts_own_users_withdraw(api: Api) -> None:
    given = await enterprise(api, 2)
    await pay(api, given.members[0], "10.00")
    stranger_token = await api.token(await api.account("Stranger"))
    involved = [given.master, *given.members]
    request = {"accountId": given.members[0], "amount": "1.00"}
    for token in (given.master_token, OPERATOR_TOKEN):
        await refused(
            api,
            "withdrawCash",
            WITHDRAW,
            request,
            code="PERMISSION_NOT_GRANTED",
            field=["accountId"],
            token=token,
            accounts=involved,
        )
    for token in (given.member_tokens[1], stranger_token):
        await refused(
            api,
            "withdrawCash",
            WITHDRAW,
            request,
            code="NOT_FOUND",
            field=["accountId"],
            token=token,
            accounts=involved,
        )
    await withdraw(api, given.members[0], "10.00", given.member_tokens[0])
    await assert_sound(api.engine)


@pytest.mark.parametrize("value", BAD_AMOUNTS, ids=repr)
async def test_f8_a_withdrawal_amount_is_a_positive_plain_amount(api: Api, value: Any) -> None:
    account = await with_own_cash(api, "Standalone", "10.00")
    await refused(
        api,
        "withdrawCash",
        WITHDRAW,
        {"accountId": account, "amount": value},
        code="INVALID_AMOUNT",
        field=["amount"],
        token=await api.token(account),
        accounts=[account],
    )


# ---------------------------------------------------------------- U1 association


async def test_u1_outstanding_fees_block_accepting_a_trusteeship(api: Api) -> None:
    master = await api.account("Master")
    member = await api.account("Member")
    member_token = await api.token(member)
    await charge(api, member, "10.00")
    link = await api.invite(master, member)
    answer = {"linkId": link, "accept": True, "permissions": ["VIEW_FINANCE"]}
    for token in (member_token, OPERATOR_TOKEN):
        await refused(
            api,
            "respondToInvitation",
            RESPOND,
            answer,
            code="OUTSTANDING_FEES",
            field=["linkId"],
            token=token,
            accounts=[master, member],
        )
    assert (await api.gql(LINK_NODE, {"id": link}))["node"]["status"] == "INVITED"

    await pay(api, member, "10.00")
    payload = await api.ok("respondToInvitation", RESPOND, answer, member_token)
    assert payload["link"]["status"] == "ACTIVE"
    await assert_sound(api.engine)


async def test_u1_outstanding_fees_do_not_block_a_financial_link(api: Api) -> None:
    master = await api.account("Master")
    member = await api.account("Member")
    await charge(api, member, "10.00")
    link = await api.invite(master, member, type="FINANCIAL")
    payload = await api.ok(
        "respondToInvitation",
        RESPOND,
        {"linkId": link, "accept": True, "permissions": []},
        await api.token(member),
    )
    assert payload["link"]["status"] == "ACTIVE"
    assert_finance(await finance(api, member), outstandingFees="10.00")


# ---------------------------------------------------------------- U2 bills before association


async def test_u2_a_charge_dated_before_the_association_is_paid_as_if_standalone(api: Api) -> None:
    member = await with_own_cash(api, "Member", "40.00")
    master = await api.account("Master")
    await api.link(master, member)
    await pay(api, master, "100.00")

    earlier = await charge(api, member, "30.00", occurredAt=BEFORE_ANY_ASSOCIATION)
    assert earlier["charge"]["paidByMaster"] == "0.00"
    assert_finance(
        earlier["account"]["finance"],
        cashBalance="10.00",
        frozenCash="10.00",
        outstandingFees="0.00",
    )
    more = await charge(api, member, "25.00", occurredAt=BEFORE_ANY_ASSOCIATION)
    assert_finance(
        more["account"]["finance"],
        cashBalance="0.00",
        outstandingFees="15.00",
        availableQuota="-15.00",
    )
    assert_finance(await finance(api, master), cashBalance="100.00", outstandingFees="0.00")

    later = await charge(api, member, "5.00")
    assert later["charge"]["paidByMaster"] == "5.00"
    assert_finance(await finance(api, master), cashBalance="95.00")
    await assert_sound(api.engine)


async def test_u2_the_association_starts_at_its_activation(api: Api) -> None:
    member = await with_own_cash(api, "Member", "40.00")
    master = await api.account("Master")
    link = await api.link(master, member)
    await pay(api, master, "100.00")
    activated = datetime.fromisoformat(
        (await api.gql(LINK_NODE, {"id": link}))["node"]["activatedAt"]
    )

    before = await charge(
        api, member, "1.00", occurredAt=(activated - timedelta(microseconds=1)).isoformat()
    )
    assert before["charge"]["paidByMaster"] == "0.00"
    at = await charge(api, member, "2.00", occurredAt=activated.isoformat())
    assert at["charge"]["paidByMaster"] == "2.00"
    assert_finance(await finance(api, member), cashBalance="39.00")
    assert_finance(await finance(api, master), cashBalance="98.00")
    await assert_sound(api.engine)


# ---------------------------------------------------------------- U3 frozen balance


async def test_u3_frozen_cash_pays_no_charge_but_can_be_withdrawn(api: Api) -> None:
    member = await with_own_cash(api, "Member", "40.00")
    member_token = await api.token(member)
    master = await api.account("Master")
    await api.link(master, member)

    payload = await charge(api, member, "10.00")  # the master has no cash: its fees grow
    assert payload["charge"]["paidByMaster"] == "10.00"
    assert_finance(
        payload["account"]["finance"],
        cashBalance="40.00",
        frozenCash="40.00",
        outstandingFees="0.00",
    )
    assert_finance(await finance(api, master), outstandingFees="10.00")
    await refused(
        api,
        "withdrawCash",
        WITHDRAW,
        {"accountId": member, "amount": "40.01"},
        code="INSUFFICIENT_FUNDS",
        field=["amount"],
        token=member_token,
        accounts=[master, member],
    )
    found = await withdraw(api, member, "40.00", member_token)
    assert_finance(found, cashBalance="0.00", frozenCash="0.00", availableQuota="0.00")
    await assert_sound(api.engine)


async def test_u3_frozen_cash_is_usable_again_after_dissociation(api: Api) -> None:
    """U3, U5: own cash is free again; allocated cash stays, for consumption only, and is
    used first."""
    member = await with_own_cash(api, "Member", "40.00")
    member_token = await api.token(member)
    master = await api.account("Master")
    link = await api.link(master, member)
    await pay(api, master, "20.00")
    await allocate(api, master, member, "20.00")
    assert_finance(await finance(api, member), frozenCash="40.00", availableQuota="20.00")

    await api.ok("dissociateMember", DISSOCIATE, {"linkId": link}, token=member_token)
    assert_finance(
        await finance(api, member, member_token),
        cashBalance="60.00",
        transferredCash="20.00",
        frozenCash="0.00",
        availableQuota="60.00",
    )
    payload = await charge(api, member, "30.00")
    assert payload["charge"]["paidByMaster"] == "0.00"
    assert_finance(
        payload["account"]["finance"],
        cashBalance="30.00",
        transferredCash="0.00",
        availableQuota="30.00",
    )
    assert_finance(await finance(api, master), cashBalance="0.00", outstandingFees="0.00")
    await refused(
        api,
        "withdrawCash",
        WITHDRAW,
        {"accountId": member, "amount": "30.01"},
        code="INSUFFICIENT_FUNDS",
        field=["amount"],
        token=member_token,
        accounts=[master, member],
    )
    await withdraw(api, member, "30.00", member_token)
    await assert_sound(api.engine)


async def test_u5_funds_still_transferred_stay_with_a_dissociated_member(api: Api) -> None:
    given = await pair(api)
    await pay(api, given.master, "50.00")
    await allocate(api, given.master, given.member, "30.00")
    await api.ok("dissociateMember", DISSOCIATE, {"linkId": given.link}, token=given.master_token)
    assert_finance(
        await finance(api, given.member, given.member_token),
        cashBalance="30.00",
        transferredCash="30.00",
        frozenCash="0.00",
        availableQuota="30.00",
    )
    await refused(
        api,
        "withdrawCash",
        WITHDRAW,
        {"accountId": given.member, "amount": "0.01"},
        code="INSUFFICIENT_FUNDS",
        field=["amount"],
        token=given.member_token,
        accounts=[given.master, given.member],
    )
    payload = await charge(api, given.member, "10.00")
    assert_finance(payload["account"]["finance"], cashBalance="20.00", transferredCash="20.00")
    assert_finance(await finance(api, given.master), cashBalance="20.00")
    await assert_sound(api.engine)


# ---------------------------------------------------------------- U4 the master pays


async def test_u4_the_master_settles_every_trusteeship_members_charges(api: Api) -> None:
    given = await enterprise(api, 2)
    first, second = given.members
    await pay(api, given.master, "100.00")
    a = await charge(api, first, "30.00")
    b = await charge(api, second, "50.00")
    own = await charge(api, given.master, "10.00")
    assert [c["charge"]["paidByMaster"] for c in (a, b, own)] == ["30.00", "50.00", "0.00"]
    assert_finance(await finance(api, given.master), cashBalance="10.00", outstandingFees="0.00")
    c = await charge(api, second, "25.00")
    assert c["charge"]["paidByMaster"] == "25.00"
    assert_finance(
        await finance(api, given.master),
        cashBalance="0.00",
        outstandingFees="15.00",
        availableQuota="-15.00",
    )
    for member in given.members:
        assert_finance(
            await finance(api, member),
            cashBalance="0.00",
            outstandingFees="0.00",
            availableQuota="0.00",
        )
    # Attributed to the member for reports and invoices; the master sees them there.
    assert descriptions(await charges(api, second, given.master_token)) == ["compute"] * 2
    assert (await charges(api, given.master, given.master_token))["totalCount"] == 1
    await assert_sound(api.engine)


# ---------------------------------------------------------------- U5 dissociation (charges)


async def test_u5_a_member_no_longer_sees_the_charges_of_its_association(api: Api) -> None:
    member = await with_own_cash(api, "Member", "100.00")
    member_token = await api.token(member)
    master = await api.account("Master")
    master_token = await api.token(master)
    link = await api.link(master, member)
    await pay(api, master, "100.00")
    before = (await charge(api, member, "1.00", "before", occurredAt=BEFORE_ANY_ASSOCIATION))[
        "charge"
    ]
    during = (await charge(api, member, "2.00", "during"))["charge"]
    # U6: during the association the member sees its costs.
    assert descriptions(await charges(api, member, member_token)) == ["during", "before"]
    assert await charge_node(api, during["id"], member_token) is not None

    await api.ok("dissociateMember", DISSOCIATE, {"linkId": link}, token=master_token)
    after = (await charge(api, member, "3.00", "after"))["charge"]

    assert descriptions(await charges(api, member, member_token)) == ["after", "before"]
    assert (await charges(api, member, member_token))["totalCount"] == 2
    assert await charge_node(api, during["id"], member_token) is None
    for kept in (before, after):
        assert await charge_node(api, kept["id"], member_token) is not None
    # Operators still see everything; the former master sees nothing of the member.
    assert descriptions(await charges(api, member)) == ["after", "during", "before"]
    assert await charge_node(api, during["id"]) is not None
    assert await charge_node(api, during["id"], master_token) is None
    assert (await api.gql(ACCOUNT_FINANCE, {"id": member}, master_token))["account"] is None
    # The money itself is not touched by dissociation.
    state = await money_state(api, [master, member])
    assert state["finance"][member]["cashBalance"] == "96.00"
    await assert_sound(api.engine)
