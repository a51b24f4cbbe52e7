"""F3, F4, F5, F6: allocations, reclamations, the transfer book and credit limits.

Every rule both ways: the allowed case with the exact balances after it, and each refusal
with its exact ``code`` and ``field`` and nothing changed (the finance of every involved
account, every balance and allocation row, and the row counts of the money records).
After every test that moves money the ledger is verified (F9).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.funds.support import (
    ALLOCATE,
    RECLAIM,
    SET_CREDIT_LIMIT,
    SET_CREDIT_LINE,
    TRANSFER_FIELDS,
    WITHDRAW,
    Pair,
    allocate,
    assert_finance,
    assert_sound,
    charge,
    credit_limit,
    credit_line,
    finance,
    forbidden,
    money_state,
    pair,
    pay,
    reclaim,
    refused,
    row_counts,
)
from tests.helpers import DISSOCIATE, OPERATOR_TOKEN, RESPOND, Api, enterprise

BOOK = (
    """
query($id: ID!, $first: Int, $after: String, $memberId: ID, $direction: TransferDirection,
      $since: DateTime, $until: DateTime) {
  account(id: $id) {
    transfers(first: $first, after: $after, memberId: $memberId, direction: $direction,
              since: $since, until: $until) {
      totalCount pageInfo { hasNextPage endCursor }
      edges { cursor node { ...TransferFields } }
    }
  }
}"""
    + TRANSFER_FIELDS
)
TRANSFER_NODE = (
    """
query($id: ID!) { node(id: $id) { __typename id ...TransferFields } }"""
    + TRANSFER_FIELDS
)
ALLOCATE_LITERAL = """
mutation($master: ID!, $member: ID!) {
  allocateFunds(input: {masterId: $master, memberId: $member, amount: %s}) {
    transfer { id amount } userErrors { code field message }
  }
}"""

TRANSFER_PERMISSIONS = ["SYNC_CREDIT_CONTROL", "VIEW_FINANCE"]
# Amounts every positive-amount input refuses with INVALID_AMOUNT (API.md, Money).
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
# A limit may be 0 (F6), the rest is refused alike.
BAD_LIMITS = [value for value in BAD_AMOUNTS if value != "0"]

# The three mutations that act on a master-member pair (F3, F4, F6), by name and text, and
# the input field that carries the amount.
PAIR_MUTATIONS = {
    "allocateFunds": (ALLOCATE, "amount"),
    "reclaimFunds": (RECLAIM, "amount"),
    "setCreditLimit": (SET_CREDIT_LIMIT, "limit"),
}


def pair_input(name: str, master: str, member: str, value: Any = "10.00") -> dict[str, Any]:
    field = PAIR_MUTATIONS[name][1]
    return {"masterId": master, "memberId": member, field: value}


async def book(api: Api, account: str, token: str = OPERATOR_TOKEN, **args: Any) -> dict[str, Any]:
    found = (await api.gql(BOOK, {"id": account, **args}, token))["account"]
    assert found is not None
    transfers: dict[str, Any] = found["transfers"]
    return transfers


def amounts(transfers: dict[str, Any]) -> list[str]:
    return [edge["node"]["amount"] for edge in transfers["edges"]]


async def funded_pair(
    api: Api,
    type: str = "TRUSTEESHIP",
    permissions: list[str] | None = None,
    cash: str = "100.00",
    line: str = "1000.00",
    name: str = "Member",
) -> Pair:
    """A pair whose master has ``cash`` and a credit line of ``line``."""
    given = await pair(api, type, permissions, name=name)
    await pay(api, given.master, cash)
    await credit_line(api, given.master, line)
    return given


# ---------------------------------------------------------------- F3 allocate


@pytest.mark.parametrize("type", ["TRUSTEESHIP", "FINANCIAL"])
@pytest.mark.parametrize("by", ["master", "operator"])
async def test_f3_allocate_cash_moves_cash_to_the_member(api: Api, type: str, by: str) -> None:
    given = await pair(api, type)
    await pay(api, given.master, "100.00")
    token = given.master_token if by == "master" else OPERATOR_TOKEN
    counts = await row_counts(api.engine)

    payload = await allocate(api, given.master, given.member, "30.50", token=token)

    assert payload["transfer"]["amount"] == "30.50"
    assert payload["transfer"]["method"] == "CASH"
    assert payload["transfer"]["direction"] == "ALLOCATE"
    assert_finance(
        payload["master"]["finance"],
        cashBalance="69.50",
        availableQuota="69.50",
        transferredCash="0.00",
    )
    assert_finance(
        payload["member"]["finance"],
        cashBalance="30.50",
        transferredCash="30.50",
        transferredCredit="0.00",
        transferredAmount="30.50",
        frozenCash="0.00",
        availableQuota="30.50",
    )
    after = await row_counts(api.engine)
    assert after["transfers"] == counts["transfers"] + 1
    assert after["journal_entries"] == counts["journal_entries"] + 1
    await assert_sound(api.engine)


async def test_f3_allocate_cash_may_take_all_of_the_masters_cash(api: Api) -> None:
    given = await pair(api)
    await pay(api, given.master, "40.00")
    payload = await allocate(api, given.master, given.member, "40.00", token=given.master_token)
    assert_finance(payload["master"]["finance"], cashBalance="0.00", availableQuota="0.00")
    assert_finance(payload["member"]["finance"], cashBalance="40.00", transferredCash="40.00")
    await assert_sound(api.engine)


@pytest.mark.parametrize("cash", [None, "40.00"])
async def test_f3_allocate_cash_beyond_the_masters_cash_is_insufficient_funds(
    api: Api, cash: str | None
) -> None:
    given = await pair(api)
    if cash is not None:
        await pay(api, given.master, cash)
    await credit_line(api, given.master, "1000.00")  # credit is no cash
    await refused(
        api,
        "allocateFunds",
        ALLOCATE,
        {"masterId": given.master, "memberId": given.member, "amount": "40.01"},
        code="INSUFFICIENT_FUNDS",
        field=["amount"],
        token=given.master_token,
        accounts=[given.master, given.member],
    )


async def test_f3_allocated_cash_cannot_be_withdrawn_or_passed_on(api: Api) -> None:
    """F3: allocated funds may only be consumed."""
    given = await enterprise(api, 2)
    await pay(api, given.master, "100.00")
    await allocate(api, given.master, given.members[0], "30.00", token=given.master_token)
    involved = [given.master, *given.members]

    await refused(
        api,
        "withdrawCash",
        WITHDRAW,
        {"accountId": given.members[0], "amount": "0.01"},
        code="INSUFFICIENT_FUNDS",
        field=["amount"],
        token=given.member_tokens[0],
        accounts=involved,
    )
    # A member has no members of its own: a sibling is nothing it can name.
    await refused(
        api,
        "allocateFunds",
        ALLOCATE,
        {"masterId": given.members[0], "memberId": given.members[1], "amount": "1.00"},
        code="NOT_FOUND",
        field=["memberId"],
        token=given.member_tokens[0],
        accounts=involved,
    )


async def test_f3_a_former_member_cannot_pass_on_cash_it_was_allocated(api: Api) -> None:
    """F3, U5: after dissociation the allocated cash stays consumption-only, also when the
    former member becomes a master itself: only its own cash can be allocated."""
    old = await pair(api, name="Former member")
    await pay(api, old.master, "100.00")
    await allocate(api, old.master, old.member, "30.00", token=old.master_token)
    await api.ok("dissociateMember", DISSOCIATE, {"linkId": old.link}, token=old.member_token)
    await pay(api, old.member, "10.00")
    new = await pair(api, master=old.member, name="New member")
    involved = [old.master, old.member, new.member]

    await refused(
        api,
        "allocateFunds",
        ALLOCATE,
        {"masterId": new.master, "memberId": new.member, "amount": "10.01"},
        code="INSUFFICIENT_FUNDS",
        field=["amount"],
        token=new.master_token,
        accounts=involved,
    )
    payload = await allocate(api, new.master, new.member, "10.00", token=new.master_token)
    assert_finance(payload["master"]["finance"], cashBalance="30.00", transferredCash="30.00")
    await refused(
        api,
        "allocateFunds",
        ALLOCATE,
        {"masterId": new.master, "memberId": new.member, "amount": "0.01"},
        code="INSUFFICIENT_FUNDS",
        field=["amount"],
        token=new.master_token,
        accounts=involved,
    )
    await assert_sound(api.engine)


@pytest.mark.parametrize("type", ["TRUSTEESHIP", "FINANCIAL"])
async def test_f3_allocate_credit_moves_credit_limit_to_the_member(api: Api, type: str) -> None:
    given = await funded_pair(api, type, cash="0.01")
    payload = await allocate(
        api, given.master, given.member, "300.00", "CREDIT", token=given.master_token
    )
    assert payload["transfer"]["method"] == "CREDIT"
    assert_finance(
        payload["master"]["finance"],
        creditLine="1000.00",
        creditLimit="700.00",
        availableCredit="700.00",
        cashBalance="0.01",
        availableQuota="700.01",
    )
    assert_finance(
        payload["member"]["finance"],
        creditLimit="300.00",
        transferredCredit="300.00",
        transferredCash="0.00",
        transferredAmount="300.00",
        cashBalance="0.00",
        availableQuota="300.00",
        creditLine=None,
        availableCredit=None,
    )
    await assert_sound(api.engine)


async def test_f3_allocate_credit_within_the_enterprises_available_credit(api: Api) -> None:
    given = await funded_pair(api, line="500.00")
    involved = [given.master, given.member]
    await refused(
        api,
        "allocateFunds",
        ALLOCATE,
        {
            "masterId": given.master,
            "memberId": given.member,
            "amount": "500.01",
            "method": "CREDIT",
        },
        code="CREDIT_EXCEEDS_AVAILABLE",
        field=["amount"],
        token=given.master_token,
        accounts=involved,
    )
    payload = await allocate(
        api, given.master, given.member, "500.00", "CREDIT", token=given.master_token
    )
    assert_finance(payload["master"]["finance"], creditLimit="0.00", availableCredit="0.00")
    await refused(
        api,
        "allocateFunds",
        ALLOCATE,
        {"masterId": given.master, "memberId": given.member, "amount": "0.01", "method": "CREDIT"},
        code="CREDIT_EXCEEDS_AVAILABLE",
        field=["amount"],
        token=given.master_token,
        accounts=involved,
    )
    await assert_sound(api.engine)


@pytest.mark.parametrize("name", ["allocateFunds", "reclaimFunds", "setCreditLimit"])
@pytest.mark.parametrize(
    "permissions",
    [
        [],
        ["SYNC_CREDIT_CONTROL"],
        ["VIEW_FINANCE"],
        ["SYNC_CREDIT_CONTROL", "MANAGE_INVOICES"],
        ["VIEW_FINANCE", "MANAGE_INVOICES"],
    ],
    ids=["none", "sync-only", "view-only", "sync-invoices", "view-invoices"],
)
async def test_f3_transfers_need_sync_credit_control_and_view_finance(
    api: Api, name: str, permissions: list[str]
) -> None:
    """F3, F4, F6: the same link permissions for all three, for the master and operators."""
    given = await funded_pair(api, permissions=permissions)
    query = PAIR_MUTATIONS[name][0]
    for token in (given.master_token, OPERATOR_TOKEN):
        await refused(
            api,
            name,
            query,
            pair_input(name, given.master, given.member),
            code="PERMISSION_NOT_GRANTED",
            field=["memberId"],
            token=token,
            accounts=[given.master, given.member],
        )


@pytest.mark.parametrize("name", ["allocateFunds", "reclaimFunds", "setCreditLimit"])
async def test_f3_a_member_the_caller_cannot_see_is_not_found(api: Api, name: str) -> None:
    given = await funded_pair(api)
    other = await pair(api)
    stranger = await api.account("Stranger")
    query = PAIR_MUTATIONS[name][0]
    involved = [given.master, given.member, other.member, stranger]
    for member in (stranger, other.member, "not-an-id", given.link, given.master):
        await refused(
            api,
            name,
            query,
            pair_input(name, given.master, member),
            code="NOT_FOUND",
            field=["memberId"],
            token=given.master_token,
            accounts=involved,
        )
    # An operator naming a pair without any link.
    await refused(
        api,
        name,
        query,
        pair_input(name, given.master, stranger),
        code="NOT_FOUND",
        field=["memberId"],
        accounts=involved,
    )


@pytest.mark.parametrize("name", ["allocateFunds", "reclaimFunds", "setCreditLimit"])
async def test_f3_only_the_masters_own_users_or_an_operator_act(api: Api, name: str) -> None:
    given = await enterprise(api, 2)
    await pay(api, given.master, "100.00")
    stranger = await api.account("Stranger")
    stranger_token = await api.token(stranger)
    query = PAIR_MUTATIONS[name][0]
    involved = [given.master, *given.members]
    # The member itself, a sibling and a stranger: none of them sees the master's details.
    for token in (given.member_tokens[0], given.member_tokens[1], stranger_token):
        await refused(
            api,
            name,
            query,
            pair_input(name, given.master, given.members[0]),
            code="NOT_FOUND",
            field=["masterId"],
            token=token,
            accounts=involved,
        )


@pytest.mark.parametrize("name", ["allocateFunds", "reclaimFunds", "setCreditLimit"])
async def test_f3_a_dissociated_link_is_not_active(api: Api, name: str) -> None:
    """An operator naming a dissociated pair: LINK_NOT_ACTIVE; its former master no longer
    sees the member (U5): NOT_FOUND."""
    given = await funded_pair(api)
    await allocate(api, given.master, given.member, "10.00")
    await allocate(api, given.master, given.member, "10.00", "CREDIT")
    await api.ok("dissociateMember", DISSOCIATE, {"linkId": given.link}, token=given.master_token)
    query = PAIR_MUTATIONS[name][0]
    involved = [given.master, given.member]
    await refused(
        api,
        name,
        query,
        pair_input(name, given.master, given.member, "1.00"),
        code="LINK_NOT_ACTIVE",
        field=["memberId"],
        accounts=involved,
    )
    await refused(
        api,
        name,
        query,
        pair_input(name, given.master, given.member, "1.00"),
        code="NOT_FOUND",
        field=["memberId"],
        token=given.master_token,
        accounts=involved,
    )


@pytest.mark.parametrize("name", ["allocateFunds", "reclaimFunds", "setCreditLimit"])
async def test_f3_an_invited_or_declined_link_is_not_active(api: Api, name: str) -> None:
    master = await api.account("Master")
    invited, declined = await api.account("Invited"), await api.account("Declined")
    await pay(api, master, "100.00")
    await credit_line(api, master, "100.00")
    master_token = await api.token(master)
    await api.invite(master, invited, token=master_token)
    link = await api.invite(master, declined, token=master_token)
    await api.ok("respondToInvitation", RESPOND, {"linkId": link, "accept": False})
    query = PAIR_MUTATIONS[name][0]
    involved = [master, invited, declined]
    await refused(
        api,
        name,
        query,
        pair_input(name, master, invited),
        code="LINK_NOT_ACTIVE",
        field=["memberId"],
        token=master_token,
        accounts=involved,
    )
    await refused(
        api,
        name,
        query,
        pair_input(name, master, declined),
        code="NOT_FOUND",
        field=["memberId"],
        token=master_token,
        accounts=involved,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (name, value)
        for name, (_, field) in PAIR_MUTATIONS.items()
        for value in (BAD_LIMITS if field == "limit" else BAD_AMOUNTS)
    ],
    ids=repr,
)
async def test_f3_invalid_amounts_are_invalid_amount(api: Api, name: str, value: Any) -> None:
    field = PAIR_MUTATIONS[name][1]
    given = await funded_pair(api)
    await allocate(api, given.master, given.member, "50.00")
    await allocate(api, given.master, given.member, "50.00", "CREDIT")
    await refused(
        api,
        name,
        PAIR_MUTATIONS[name][0],
        pair_input(name, given.master, given.member, value),
        code="INVALID_AMOUNT",
        field=[field],
        token=given.master_token,
        accounts=[given.master, given.member],
    )


@pytest.mark.parametrize("literal", ["true", '"1.001"', "-5", "0", '"NaN"', '""'])
async def test_f3_invalid_literal_amounts_are_invalid_amount(api: Api, literal: str) -> None:
    """An amount written in the query text is validated like one in variables."""
    given = await funded_pair(api)
    before = await money_state(api, [given.master, given.member])
    payload = (
        await api.gql(
            ALLOCATE_LITERAL % literal,
            {"master": given.master, "member": given.member},
            given.master_token,
        )
    )["allocateFunds"]
    assert payload["transfer"] is None
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
        ("INVALID_AMOUNT", ["amount"])
    ]
    assert await money_state(api, [given.master, given.member]) == before


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (12.5, "12.50"),
        (7, "7.00"),
        ("0.01", "0.01"),
        ("3.1", "3.10"),
        ("+2", "2.00"),
    ],
)
async def test_f3_numbers_and_short_decimals_are_accepted(
    api: Api, value: Any, expected: str
) -> None:
    given = await funded_pair(api)
    payload = await allocate(api, given.master, given.member, value, token=given.master_token)
    assert payload["transfer"]["amount"] == expected
    assert_finance(payload["member"]["finance"], cashBalance=expected)
    literal = (
        await api.gql(
            ALLOCATE_LITERAL % "12.5",
            {"master": given.master, "member": given.member},
            given.master_token,
        )
    )["allocateFunds"]
    assert literal["userErrors"] == []
    assert literal["transfer"]["amount"] == "12.50"
    await assert_sound(api.engine)


@pytest.mark.parametrize("value", ["1_000", "\u0661\u0662"], ids=["underscore", "arabic-indic"])
async def test_f3_only_plain_ascii_decimals_are_amounts(api: Api, value: str) -> None:
    given = await funded_pair(api)
    await refused(
        api,
        "allocateFunds",
        ALLOCATE,
        {"masterId": given.master, "memberId": given.member, "amount": value},
        code="INVALID_AMOUNT",
        field=["amount"],
        token=given.master_token,
        accounts=[given.master, given.member],
    )


# ---------------------------------------------------------------- F4 reclaim


@pytest.mark.parametrize("by", ["master", "operator"])
async def test_f4_reclaim_cash_returns_it_to_the_master(api: Api, by: str) -> None:
    given = await pair(api)
    await pay(api, given.master, "100.00")
    await allocate(api, given.master, given.member, "40.00")
    token = given.master_token if by == "master" else OPERATOR_TOKEN

    payload = await reclaim(api, given.master, given.member, "15.00", token=token)

    assert payload["transfer"]["direction"] == "RECLAIM"
    assert payload["transfer"]["method"] == "CASH"
    assert payload["transfer"]["amount"] == "15.00"
    assert_finance(payload["master"]["finance"], cashBalance="75.00", availableQuota="75.00")
    assert_finance(
        payload["member"]["finance"],
        cashBalance="25.00",
        transferredCash="25.00",
        availableQuota="25.00",
    )
    await assert_sound(api.engine)


async def test_f4_reclaim_credit_returns_it_to_the_master(api: Api) -> None:
    given = await funded_pair(api, cash="0.01")
    await allocate(api, given.master, given.member, "300.00", "CREDIT")
    payload = await reclaim(
        api, given.master, given.member, "100.00", "CREDIT", token=given.master_token
    )
    assert payload["transfer"]["method"] == "CREDIT"
    assert_finance(
        payload["master"]["finance"],
        creditLimit="800.00",
        availableCredit="800.00",
        creditLine="1000.00",
    )
    assert_finance(
        payload["member"]["finance"],
        creditLimit="200.00",
        transferredCredit="200.00",
        availableQuota="200.00",
    )
    await assert_sound(api.engine)


@pytest.mark.parametrize("method", ["CASH", "CREDIT"])
async def test_f4_reclaim_cannot_exceed_net_allocated(api: Api, method: str) -> None:
    given = await funded_pair(api)
    await allocate(api, given.master, given.member, "50.00", method)
    await reclaim(api, given.master, given.member, "20.00", method, token=given.master_token)
    involved = [given.master, given.member]
    request = {"masterId": given.master, "memberId": given.member, "method": method}

    await refused(
        api,
        "reclaimFunds",
        RECLAIM,
        {**request, "amount": "30.01"},
        code="EXCEEDS_NET_ALLOCATED",
        field=["amount"],
        token=given.master_token,
        accounts=involved,
    )
    await reclaim(api, given.master, given.member, "30.00", method, token=given.master_token)
    await refused(
        api,
        "reclaimFunds",
        RECLAIM,
        {**request, "amount": "0.01"},
        code="EXCEEDS_NET_ALLOCATED",
        field=["amount"],
        token=given.master_token,
        accounts=involved,
    )
    # Allocating again makes it reclaimable again.
    await allocate(api, given.master, given.member, "5.00", method)
    await reclaim(api, given.master, given.member, "5.00", method, token=given.master_token)
    await assert_sound(api.engine)


async def test_f4_net_allocated_is_per_method_and_per_member(api: Api) -> None:
    given = await enterprise(api, 2)
    await pay(api, given.master, "100.00")
    await credit_line(api, given.master, "1000.00")
    first, second = given.members
    await allocate(api, given.master, first, "50.00", "CASH")
    await allocate(api, given.master, second, "70.00", "CREDIT")
    involved = [given.master, first, second]
    for member, method in ((first, "CREDIT"), (second, "CASH")):
        await refused(
            api,
            "reclaimFunds",
            RECLAIM,
            {"masterId": given.master, "memberId": member, "amount": "1.00", "method": method},
            code="EXCEEDS_NET_ALLOCATED",
            field=["amount"],
            token=given.master_token,
            accounts=involved,
        )
    await reclaim(api, given.master, first, "50.00", "CASH")
    await reclaim(api, given.master, second, "70.00", "CREDIT")
    await assert_sound(api.engine)


async def test_f4_credit_set_by_set_credit_limit_is_not_net_allocated(api: Api) -> None:
    """Only CREDIT allocations count as allocated; a limit set by F6 is changed by F6."""
    given = await funded_pair(api)
    await credit_limit(api, given.master, given.member, "500.00")
    await allocate(api, given.master, given.member, "100.00", "CREDIT")
    await refused(
        api,
        "reclaimFunds",
        RECLAIM,
        {
            "masterId": given.master,
            "memberId": given.member,
            "amount": "100.01",
            "method": "CREDIT",
        },
        code="EXCEEDS_NET_ALLOCATED",
        field=["amount"],
        token=given.master_token,
        accounts=[given.master, given.member],
    )
    payload = await reclaim(api, given.master, given.member, "100.00", "CREDIT")
    assert_finance(payload["member"]["finance"], creditLimit="500.00", transferredCredit="500.00")
    await assert_sound(api.engine)


async def test_f4_reclaim_cash_cannot_exceed_what_is_unspent(api: Api) -> None:
    given = await pair(api)
    await pay(api, given.master, "100.00")
    await allocate(api, given.master, given.member, "50.00")
    await charge(api, given.member, "30.00")  # paid from the transferred cash (F7)
    assert_finance(await finance(api, given.member), transferredCash="20.00", cashBalance="20.00")

    await refused(
        api,
        "reclaimFunds",
        RECLAIM,
        {"masterId": given.master, "memberId": given.member, "amount": "20.01"},
        code="EXCEEDS_UNSPENT",
        field=["amount"],
        token=given.master_token,
        accounts=[given.master, given.member],
    )
    payload = await reclaim(api, given.master, given.member, "20.00", token=given.master_token)
    assert_finance(payload["master"]["finance"], cashBalance="70.00")
    assert_finance(payload["member"]["finance"], cashBalance="0.00", transferredCash="0.00")
    await assert_sound(api.engine)


async def test_f4_reclaim_credit_cannot_exceed_the_unused_credit(api: Api) -> None:
    """A FINANCIAL member's charges use its credit (F7): only the unused part comes back."""
    given = await funded_pair(api, "FINANCIAL")
    await allocate(api, given.master, given.member, "100.00", "CREDIT")
    await charge(api, given.member, "40.00")
    assert_finance(
        await finance(api, given.member), outstandingFees="40.00", availableQuota="60.00"
    )

    await refused(
        api,
        "reclaimFunds",
        RECLAIM,
        {"masterId": given.master, "memberId": given.member, "amount": "60.01", "method": "CREDIT"},
        code="EXCEEDS_UNSPENT",
        field=["amount"],
        token=given.master_token,
        accounts=[given.master, given.member],
    )
    payload = await reclaim(
        api, given.master, given.member, "60.00", "CREDIT", token=given.master_token
    )
    assert_finance(
        payload["member"]["finance"],
        creditLimit="40.00",
        transferredCredit="40.00",
        outstandingFees="40.00",
        availableQuota="0.00",
    )
    assert_finance(payload["master"]["finance"], creditLimit="960.00", availableCredit="960.00")
    await assert_sound(api.engine)


async def test_f4_reclaim_credit_cannot_take_the_members_own_credit_line(api: Api) -> None:
    """Found by the HTTP model (seed 7): credit allocated, then given back by a lowered
    limit (F6); the member stood alone, got a credit line of its own and joined again. Its
    net allocated credit is still 100, but only the 50 its master still gives can come
    back; its own line never (the balance constraint used to turn this into CONFLICT)."""
    given = await funded_pair(api)
    await allocate(api, given.master, given.member, "100.00", "CREDIT")
    await credit_limit(api, given.master, given.member, "50.00")
    await api.ok("dissociateMember", DISSOCIATE, {"linkId": given.link})
    await credit_line(api, given.member, "200.00")
    await api.link(given.master, given.member)
    assert_finance(
        await finance(api, given.member), creditLimit="250.00", transferredCredit="50.00"
    )
    request = {"masterId": given.master, "memberId": given.member, "method": "CREDIT"}

    await refused(
        api,
        "reclaimFunds",
        RECLAIM,
        {**request, "amount": "50.01"},
        code="EXCEEDS_UNSPENT",
        field=["amount"],
        token=given.master_token,
        accounts=[given.master, given.member],
    )
    payload = await reclaim(
        api, given.master, given.member, "50.00", "CREDIT", token=given.master_token
    )
    assert_finance(
        payload["member"]["finance"],
        creditLimit="200.00",
        transferredCredit="0.00",
    )
    await assert_sound(api.engine)


async def test_f4_net_allocated_is_checked_before_unspent(api: Api) -> None:
    given = await pair(api)
    await pay(api, given.master, "50.00")
    await allocate(api, given.master, given.member, "50.00")
    await charge(api, given.member, "50.00")
    involved = [given.master, given.member]
    request = {"masterId": given.master, "memberId": given.member}
    await refused(
        api,
        "reclaimFunds",
        RECLAIM,
        {**request, "amount": "60.00"},
        code="EXCEEDS_NET_ALLOCATED",
        field=["amount"],
        accounts=involved,
    )
    await refused(
        api,
        "reclaimFunds",
        RECLAIM,
        {**request, "amount": "10.00"},
        code="EXCEEDS_UNSPENT",
        field=["amount"],
        accounts=involved,
    )


# ---------------------------------------------------------------- F5 transfer book


async def test_f5_every_transfer_is_a_record(api: Api) -> None:
    given = await enterprise(api, 2)
    await pay(api, given.master, "100.00")
    before = datetime.now(UTC)
    by_master = await allocate(
        api,
        given.master,
        given.members[0],
        "12.34",
        token=given.master_token,
        idempotencyKey="allocation-1",
    )
    by_operator = await reclaim(api, given.master, given.members[0], "2.34")

    record = by_master["transfer"]
    assert record["master"] == {"id": given.master}
    assert record["member"] == {"id": given.members[0]}
    assert (record["method"], record["direction"], record["amount"]) == (
        "CASH",
        "ALLOCATE",
        "12.34",
    )
    assert record["actor"] == "Master:test"
    assert record["idempotencyKey"] == "allocation-1"
    created = datetime.fromisoformat(record["createdAt"])
    assert before - timedelta(seconds=5) <= created <= datetime.now(UTC)
    assert by_operator["transfer"]["actor"] == "operator:env"
    assert by_operator["transfer"]["idempotencyKey"] is None

    # node(id): whoever sees the finance of either end.
    for token in (OPERATOR_TOKEN, given.master_token, given.member_tokens[0]):
        found = (await api.gql(TRANSFER_NODE, {"id": record["id"]}, token))["node"]
        assert found == {"__typename": "Transfer", **record}
    for token in (given.member_tokens[1], await api.token(await api.account("Stranger"))):
        assert (await api.gql(TRANSFER_NODE, {"id": record["id"]}, token))["node"] is None


async def test_f5_the_masters_book_and_each_members_book(api: Api) -> None:
    given = await enterprise(api, 2)
    first, second = given.members
    await pay(api, given.master, "100.00")
    await credit_line(api, given.master, "100.00")
    await allocate(api, given.master, first, "10.00")
    await allocate(api, given.master, second, "20.00", "CREDIT")
    await reclaim(api, given.master, first, "5.00")

    master_book = await book(api, given.master, given.master_token)
    assert master_book["totalCount"] == 3
    assert amounts(master_book) == ["5.00", "20.00", "10.00"]  # newest first
    assert [
        (e["node"]["direction"], e["node"]["method"], e["node"]["member"]["id"])
        for e in master_book["edges"]
    ] == [("RECLAIM", "CASH", first), ("ALLOCATE", "CREDIT", second), ("ALLOCATE", "CASH", first)]
    for token in (OPERATOR_TOKEN, given.master_token, given.member_tokens[0]):
        assert amounts(await book(api, first, token)) == ["5.00", "10.00"]
    assert amounts(await book(api, second, given.member_tokens[1])) == ["20.00"]
    # A member sees its master by name only: not the master's book.
    assert (await book(api, given.master, given.member_tokens[0]))["totalCount"] == 0


async def test_f5_the_book_filters_by_member_direction_and_time(api: Api) -> None:
    given = await enterprise(api, 2)
    first, second = given.members
    await pay(api, given.master, "100.00")
    made = [
        (await allocate(api, given.master, first, "10.00"))["transfer"],
        (await allocate(api, given.master, second, "20.00"))["transfer"],
        (await reclaim(api, given.master, first, "5.00"))["transfer"],
        (await allocate(api, given.master, second, "1.00"))["transfer"],
    ]
    times = [record["createdAt"] for record in made]
    assert times == sorted(times, key=datetime.fromisoformat)

    async def listed(**args: Any) -> list[str]:
        found = await book(api, given.master, given.master_token, **args)
        assert found["totalCount"] == len(found["edges"])
        return amounts(found)

    assert await listed(memberId=first) == ["5.00", "10.00"]
    assert await listed(memberId=second) == ["1.00", "20.00"]
    assert await listed(direction="RECLAIM") == ["5.00"]
    assert await listed(direction="ALLOCATE", memberId=second) == ["1.00", "20.00"]
    assert await listed(since=times[1]) == ["1.00", "5.00", "20.00"]  # since: inclusive
    assert await listed(until=times[1]) == ["10.00"]  # until: exclusive
    assert await listed(since=times[1], until=times[3], direction="ALLOCATE") == ["20.00"]
    assert await listed(memberId=given.master) == []
    assert await listed(memberId="not-an-id") == []


async def test_f5_the_book_pages_newest_first(api: Api) -> None:
    given = await pair(api)
    await pay(api, given.master, "100.00")
    for amount in ("1.00", "2.00", "3.00", "4.00", "5.00"):
        await allocate(api, given.master, given.member, amount)
    pages, after = [], None
    while True:
        found = await book(api, given.master, given.master_token, first=2, after=after)
        assert found["totalCount"] == 5
        pages.append(amounts(found))
        if not found["pageInfo"]["hasNextPage"]:
            break
        after = found["pageInfo"]["endCursor"]
    assert pages == [["5.00", "4.00"], ["3.00", "2.00"], ["1.00"]]


async def test_f5_a_dissociated_members_transfers_leave_its_former_masters_view(api: Api) -> None:
    """P3, U5: the former master sees nothing of the member, so not the transfers to it
    either; the member keeps its book; operators see everything."""
    given = await enterprise(api, 2)
    await pay(api, given.master, "100.00")
    gone = (await allocate(api, given.master, given.members[0], "10.00"))["transfer"]
    await allocate(api, given.master, given.members[1], "20.00")
    await api.ok(
        "dissociateMember", DISSOCIATE, {"linkId": given.links[0]}, token=given.member_tokens[0]
    )

    assert amounts(await book(api, given.master, given.master_token)) == ["20.00"]
    assert (await api.gql(TRANSFER_NODE, {"id": gone["id"]}, given.master_token))["node"] is None
    assert amounts(await book(api, given.members[0], given.member_tokens[0])) == ["10.00"]
    found = (await api.gql(TRANSFER_NODE, {"id": gone["id"]}, given.member_tokens[0]))["node"]
    assert found["master"] == {"id": given.master}
    assert amounts(await book(api, given.master)) == ["20.00", "10.00"]


@pytest.mark.parametrize(
    "table", ["transfers", "charges", "payments", "journal_entries", "postings"]
)
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE {table} SET id = id",
        "DELETE FROM {table}",
    ],
    ids=["update", "delete"],
)
async def test_f5_money_records_are_never_edited_or_deleted(
    api: Api, table: str, statement: str
) -> None:
    given = await pair(api)
    await pay(api, given.master, "100.00")
    await allocate(api, given.master, given.member, "10.00")
    await charge(api, given.member, "5.00")
    before = await money_state(api, [given.master, given.member])
    assert before["counts"][table] > 0

    with pytest.raises(DBAPIError, match="never edited or deleted"):
        async with api.engine.begin() as conn:
            await conn.execute(text(statement.format(table=table)))

    assert await money_state(api, [given.master, given.member]) == before
    await assert_sound(api.engine)


# ---------------------------------------------------------------- F6 credit line and limits


async def test_f6_the_operator_sets_a_masters_credit_line(api: Api) -> None:
    master = await api.account("Master")
    for line in ("1000.00", "1500.00", "200.00", "0.00"):
        counts = await row_counts(api.engine)
        found = await credit_line(api, master, line)
        assert_finance(
            found, creditLine=line, creditLimit=line, availableCredit=line, availableQuota=line
        )
        assert (await row_counts(api.engine))["journal_entries"] == counts["journal_entries"] + 1
    # The same line again is no change of money: no entry.
    counts = await row_counts(api.engine)
    await credit_line(api, master, "0")
    assert await row_counts(api.engine) == counts
    await assert_sound(api.engine)


async def test_f6_the_masters_own_limit_is_its_line_minus_member_limits(api: Api) -> None:
    given = await enterprise(api, 2)
    first, second = given.members
    await pay(api, given.master, "1.00")

    async def check(line: str) -> None:
        master = await finance(api, given.master)
        members = [await finance(api, member) for member in given.members]
        assert master is not None
        assert master["creditLine"] == line
        assert Decimal(master["creditLimit"]) == Decimal(line) - sum(
            Decimal(m["creditLimit"]) for m in members if m is not None
        )
        for member in members:
            assert member is not None
            assert member["transferredCredit"] == member["creditLimit"]

    await credit_line(api, given.master, "1000.00")
    await credit_limit(api, given.master, first, "200.00", token=given.master_token)
    await allocate(api, given.master, second, "300.00", "CREDIT")
    await check("1000.00")
    await credit_line(api, given.master, "1200.00")
    await check("1200.00")
    assert_finance(await finance(api, given.master), creditLimit="700.00")
    await reclaim(api, given.master, second, "100.00", "CREDIT")
    await credit_limit(api, given.master, first, "50.00")
    await check("1200.00")
    assert_finance(await finance(api, given.master), creditLimit="950.00", availableCredit="950.00")
    await assert_sound(api.engine)


async def test_f6_the_credit_line_cannot_drop_below_member_limits(api: Api) -> None:
    given = await funded_pair(api)
    await credit_limit(api, given.master, given.member, "600.00")
    await refused(
        api,
        "setCreditLine",
        SET_CREDIT_LINE,
        {"masterId": given.master, "amount": "599.99"},
        code="CREDIT_EXCEEDS_AVAILABLE",
        field=["amount"],
        accounts=[given.master, given.member],
    )
    found = await credit_line(api, given.master, "600.00")
    assert_finance(found, creditLine="600.00", creditLimit="0.00", availableCredit="0.00")
    await assert_sound(api.engine)


async def test_f6_a_standalone_accounts_credit_line_is_its_credit_limit(api: Api) -> None:
    account = await api.account("Standalone")
    found = await credit_line(api, account, "250.00")
    assert_finance(found, creditLine="250.00", creditLimit="250.00", availableQuota="250.00")
    await charge(api, account, "50.00")
    assert_finance(
        await finance(api, account),
        outstandingFees="50.00",
        availableCredit="200.00",
        availableQuota="200.00",
    )
    await assert_sound(api.engine)


async def test_f6_setting_a_credit_line_is_for_operators_only(api: Api) -> None:
    given = await pair(api)
    for token in (given.master_token, given.member_token):
        await forbidden(
            api,
            SET_CREDIT_LINE,
            {"masterId": given.master, "amount": "100.00"},
            token=token,
            accounts=[given.master, given.member],
        )


async def test_f6_a_credit_line_is_not_set_on_a_member(api: Api) -> None:
    given = await pair(api)
    involved = [given.master, given.member]
    await refused(
        api,
        "setCreditLine",
        SET_CREDIT_LINE,
        {"masterId": given.member, "amount": "100.00"},
        code="INVALID_INPUT",
        field=["masterId"],
        accounts=involved,
    )
    await refused(
        api,
        "setCreditLine",
        SET_CREDIT_LINE,
        {"masterId": "not-an-id", "amount": "100.00"},
        code="NOT_FOUND",
        field=["masterId"],
        accounts=involved,
    )


@pytest.mark.parametrize("value", BAD_LIMITS, ids=repr)
async def test_f6_a_credit_line_is_a_plain_non_negative_amount(api: Api, value: Any) -> None:
    master = await api.account("Master")
    await credit_line(api, master, "10.00")
    await refused(
        api,
        "setCreditLine",
        SET_CREDIT_LINE,
        {"masterId": master, "amount": value},
        code="INVALID_AMOUNT",
        field=["amount"],
        accounts=[master],
    )


@pytest.mark.parametrize("by", ["master", "operator"])
async def test_f6_set_credit_limit_raises_a_members_limit(api: Api, by: str) -> None:
    given = await funded_pair(api)
    token = given.master_token if by == "master" else OPERATOR_TOKEN
    counts = await row_counts(api.engine)
    found = await credit_limit(api, given.master, given.member, "250.00", token=token)
    assert_finance(
        found,
        creditLimit="250.00",
        transferredCredit="250.00",
        transferredAmount="250.00",
        availableQuota="250.00",
    )
    assert_finance(
        await finance(api, given.master),
        creditLine="1000.00",
        creditLimit="750.00",
        availableCredit="750.00",
    )
    after = await row_counts(api.engine)
    assert after["journal_entries"] == counts["journal_entries"] + 1
    assert after["transfers"] == counts["transfers"]  # a limit is not a transfer
    await assert_sound(api.engine)


async def test_f6_an_increase_must_fit_the_available_credit(api: Api) -> None:
    given = await funded_pair(api, line="500.00")
    involved = [given.master, given.member]
    request = {"masterId": given.master, "memberId": given.member}
    await refused(
        api,
        "setCreditLimit",
        SET_CREDIT_LIMIT,
        {**request, "limit": "500.01"},
        code="CREDIT_EXCEEDS_AVAILABLE",
        field=["limit"],
        token=given.master_token,
        accounts=involved,
    )
    await credit_limit(api, given.master, given.member, "500.00", token=given.master_token)
    await refused(
        api,
        "setCreditLimit",
        SET_CREDIT_LIMIT,
        {**request, "limit": "500.01"},
        code="CREDIT_EXCEEDS_AVAILABLE",
        field=["limit"],
        token=given.master_token,
        accounts=involved,
    )
    await assert_sound(api.engine)


async def test_f6_available_credit_is_net_of_the_masters_outstanding_fees(api: Api) -> None:
    given = await funded_pair(api, cash="0.01")
    await charge(api, given.master, "300.01")  # 0.01 from cash, 300.00 on credit
    assert_finance(
        await finance(api, given.master),
        outstandingFees="300.00",
        creditLimit="1000.00",
        availableCredit="700.00",
        availableQuota="700.00",
    )
    involved = [given.master, given.member]
    request = {"masterId": given.master, "memberId": given.member}
    await refused(
        api,
        "allocateFunds",
        ALLOCATE,
        {**request, "amount": "700.01", "method": "CREDIT"},
        code="CREDIT_EXCEEDS_AVAILABLE",
        field=["amount"],
        accounts=involved,
    )
    await refused(
        api,
        "setCreditLimit",
        SET_CREDIT_LIMIT,
        {**request, "limit": "700.01"},
        code="CREDIT_EXCEEDS_AVAILABLE",
        field=["limit"],
        accounts=involved,
    )
    await credit_limit(api, given.master, given.member, "400.00")
    await allocate(api, given.master, given.member, "300.00", "CREDIT")
    assert_finance(
        await finance(api, given.master),
        creditLimit="300.00",
        availableCredit="0.00",
        availableQuota="0.00",
    )
    await assert_sound(api.engine)


async def test_f6_a_decrease_must_leave_the_members_quota_above_zero(api: Api) -> None:
    given = await funded_pair(api, "FINANCIAL")
    await credit_limit(api, given.master, given.member, "100.00")
    await charge(api, given.member, "60.00")  # on the member's credit (F7)
    assert_finance(await finance(api, given.member), availableQuota="40.00")
    await refused(
        api,
        "setCreditLimit",
        SET_CREDIT_LIMIT,
        {"masterId": given.master, "memberId": given.member, "limit": "60.00"},
        code="QUOTA_WOULD_BE_NON_POSITIVE",
        field=["limit"],
        token=given.master_token,
        accounts=[given.master, given.member],
    )
    found = await credit_limit(api, given.master, given.member, "60.01", token=given.master_token)
    assert_finance(found, creditLimit="60.01", transferredCredit="60.01", availableQuota="0.01")
    assert_finance(await finance(api, given.master), creditLimit="939.99")
    await assert_sound(api.engine)


async def test_f6_frozen_cash_does_not_keep_the_quota_above_zero(api: Api) -> None:
    """U3: a trusteeship member's own cash is out of its quota, so it cannot carry a
    decrease; allocated cash can."""
    master = await api.account("Master")
    member = await api.account("Member")
    await pay(api, member, "50.00")
    await api.link(master, member)
    await pay(api, master, "100.00")
    await credit_line(api, master, "1000.00")
    await credit_limit(api, master, member, "100.00")
    assert_finance(await finance(api, member), frozenCash="50.00", availableQuota="100.00")
    await refused(
        api,
        "setCreditLimit",
        SET_CREDIT_LIMIT,
        {"masterId": master, "memberId": member, "limit": "0"},
        code="QUOTA_WOULD_BE_NON_POSITIVE",
        field=["limit"],
        accounts=[master, member],
    )
    await allocate(api, master, member, "5.00")
    found = await credit_limit(api, master, member, "0")
    assert_finance(found, creditLimit="0.00", transferredCredit="0.00", availableQuota="5.00")
    assert_finance(await finance(api, master), creditLimit="1000.00")
    await assert_sound(api.engine)


async def test_f6_a_former_member_cannot_pass_on_credit_it_was_allocated(api: Api) -> None:
    """F3, F6, U5: credit a dissociated member keeps is consumption-only; as a master
    itself, only its own credit line is the enterprise's credit."""
    old = await funded_pair(api, name="Former member")
    await allocate(api, old.master, old.member, "100.00", "CREDIT")
    await api.ok("dissociateMember", DISSOCIATE, {"linkId": old.link}, token=old.member_token)
    found = await credit_line(api, old.member, "50.00")
    assert_finance(
        found,
        creditLine="50.00",
        creditLimit="150.00",
        transferredCredit="100.00",
        availableCredit="50.00",
        availableQuota="150.00",
    )
    new = await pair(api, master=old.member, name="New member")
    involved = [old.master, old.member, new.member]
    request = {"masterId": new.master, "memberId": new.member}

    await refused(
        api,
        "allocateFunds",
        ALLOCATE,
        {**request, "amount": "50.01", "method": "CREDIT"},
        code="CREDIT_EXCEEDS_AVAILABLE",
        field=["amount"],
        token=new.master_token,
        accounts=involved,
    )
    await refused(
        api,
        "setCreditLimit",
        SET_CREDIT_LIMIT,
        {**request, "limit": "50.01"},
        code="CREDIT_EXCEEDS_AVAILABLE",
        field=["limit"],
        token=new.master_token,
        accounts=involved,
    )
    await allocate(api, new.master, new.member, "50.00", "CREDIT", token=new.master_token)
    assert_finance(
        await finance(api, new.master),
        creditLine="50.00",
        creditLimit="100.00",
        transferredCredit="100.00",
        availableCredit="0.00",
    )
    await refused(
        api,
        "setCreditLine",
        SET_CREDIT_LINE,
        {"masterId": new.master, "amount": "49.99"},
        code="CREDIT_EXCEEDS_AVAILABLE",
        field=["amount"],
        accounts=involved,
    )
    await assert_sound(api.engine)


async def test_f6_the_same_limit_again_changes_nothing(api: Api) -> None:
    given = await funded_pair(api)
    await credit_limit(api, given.master, given.member, "100.00")
    before = await money_state(api, [given.master, given.member])
    await credit_limit(api, given.master, given.member, "100", token=given.master_token)
    assert await money_state(api, [given.master, given.member]) == before


async def _member_with_credit_of_its_own(api: Api) -> tuple[str, str]:
    """A member that brought a credit line of its own (set while standalone) into its
    association, then got 100.00 of credit and 1,000.00 of cash from its master: limit
    600, transferred credit 100."""
    master, member = await api.account("Master"), await api.account("Member")
    await credit_line(api, master, "1000.00")
    await credit_line(api, member, "500.00")  # standalone: its own line
    await api.link(master, member)
    await credit_limit(api, master, member, "600.00")
    await pay(api, master, "1000.00")
    await allocate(api, master, member, "1000.00")  # so that the quota stays > 0 (F6)
    return master, member


async def test_f6_a_master_lowers_a_limit_only_by_the_credit_it_gave(api: Api) -> None:
    master, member = await _member_with_credit_of_its_own(api)
    assert_finance(await finance(api, member), creditLimit="600.00", transferredCredit="100.00")
    found = await credit_limit(api, master, member, "500.00")  # all it gave, back
    assert_finance(found, creditLimit="500.00", transferredCredit="0.00")
    await assert_sound(api.engine)


async def test_f6_a_limit_below_the_members_own_credit_is_refused_and_changes_nothing(
    api: Api,
) -> None:
    """Was CONFLICT (transferred credit below zero, refused by the database)."""
    master, member = await _member_with_credit_of_its_own(api)
    for limit in ("0.00", "499.99"):
        await refused(
            api,
            "setCreditLimit",
            SET_CREDIT_LIMIT,
            {"masterId": master, "memberId": member, "limit": limit},
            code="EXCEEDS_NET_ALLOCATED",
            field=["limit"],
            accounts=[master, member],
        )
