"""B5, F8, F10: payment methods, managed payment methods, payments made with them, and
``Account.payments``.

Every rule both ways, with exact amounts; each refusal with its exact ``code`` and
``field`` and nothing changed. The ledger is verified after every money test (F9).
"""

from __future__ import annotations

from typing import Any

import pytest

from accountgraph.api import ids
from tests.billing.voucher_support import (
    ADD_MANAGED_METHOD,
    ADD_METHOD,
    PAY_WITH,
    PAYMENT_FIELDS,
    method,
    node,
    refused,
)
from tests.funds.support import (
    assert_finance,
    assert_sound,
    charge,
    credit_line,
    finance,
    pair,
)
from tests.helpers import DISSOCIATE, OPERATOR_TOKEN, Api, enterprise

METHODS = """
query($id: ID!) { account(id: $id) { id paymentMethods { id label managedFrom { id } } } }"""
PAYMENTS = (
    """
query($id: ID!, $first: Int, $after: String) {
  account(id: $id) {
    payments(first: $first, after: $after) {
      totalCount pageInfo { hasNextPage endCursor }
      edges { cursor node { ...PaymentFields } }
    }
  }
}"""
    + PAYMENT_FIELDS
)


async def managed(
    api: Api, payment_method: str, member: str, token: str = OPERATOR_TOKEN
) -> dict[str, Any]:
    payload = await api.ok(
        "addManagedPaymentMethod",
        ADD_MANAGED_METHOD,
        {"paymentMethodId": payment_method, "managedId": member},
        token,
    )
    found: dict[str, Any] = payload["paymentMethod"]
    return found


async def methods(api: Api, account: str, token: str = OPERATOR_TOKEN) -> list[dict[str, Any]]:
    found = (await api.gql(METHODS, {"id": account}, token))["account"]
    assert found is not None
    result: list[dict[str, Any]] = found["paymentMethods"]
    return result


async def payments(
    api: Api, account: str, token: str = OPERATOR_TOKEN, **args: Any
) -> dict[str, Any]:
    found = (await api.gql(PAYMENTS, {"id": account, **args}, token))["account"]
    assert found is not None
    result: dict[str, Any] = found["payments"]
    return result


async def pay_with(
    api: Api, account: str, amount: str, payment_method: str | None, **fields: Any
) -> dict[str, Any]:
    payload = await api.ok(
        "recordPayment",
        PAY_WITH,
        {"accountId": account, "amount": amount, "paymentMethodId": payment_method, **fields},
    )
    found: dict[str, Any] = payload["account"]["payments"]["edges"][0]["node"]
    return found


# ---------------------------------------------------------------- B5 payment methods


async def test_b5_an_accounts_own_users_or_operators_add_payment_methods(api: Api) -> None:
    given = await pair(api)
    card = await method(api, given.master, "  Visa 4242  ", given.master_token)
    bank = await method(api, given.master, "Bank transfer")
    assert await methods(api, given.master, given.master_token) == [
        {"id": card, "label": "Visa 4242", "managedFrom": None},
        {"id": bank, "label": "Bank transfer", "managedFrom": None},
    ]
    assert await methods(api, given.member) == []


async def test_b5_a_payment_method_is_added_by_the_accounts_own_users_only(api: Api) -> None:
    given = await pair(api)
    stranger = await api.account("Stranger")
    accounts = [given.master, given.member]
    await refused(
        api,
        "addPaymentMethod",
        ADD_METHOD,
        {"accountId": given.member, "label": "Card"},
        code="PERMISSION_NOT_GRANTED",
        field=["accountId"],
        accounts=accounts,
        token=given.master_token,
    )
    for account in (stranger, given.master):
        await refused(
            api,
            "addPaymentMethod",
            ADD_METHOD,
            {"accountId": account, "label": "x"},
            code="NOT_FOUND",
            field=["accountId"],
            accounts=accounts,
            token=given.member_token,
        )


@pytest.mark.parametrize("label", ["", "   ", "x" * 201, "a\x00b"])
async def test_b5_a_payment_method_has_a_label(api: Api, label: str) -> None:
    account = await api.account("Standalone")
    await refused(
        api,
        "addPaymentMethod",
        ADD_METHOD,
        {"accountId": account, "label": label},
        code="INVALID_INPUT",
        field=["label"],
        accounts=[account],
    )


async def test_b5_a_responsible_account_adds_its_method_to_a_managed_account(api: Api) -> None:
    given = await enterprise(api, 2)
    first, second = given.members
    card = await method(api, given.master, "Corporate card", given.master_token)
    added = await managed(api, card, first, given.master_token)
    assert {k: added[k] for k in ("label", "managedFrom")} == {
        "label": "Corporate card",
        "managedFrom": {"id": given.master},
    }
    assert await methods(api, first, given.member_tokens[0]) == [added]
    assert await methods(api, second) == []
    assert await methods(api, given.master) == [
        {"id": card, "label": "Corporate card", "managedFrom": None}
    ]
    other = await managed(api, card, second)  # operators too
    assert other["managedFrom"] == {"id": given.master}


async def test_b5_only_a_trusteeship_member_gets_a_managed_method(api: Api) -> None:
    given = await enterprise(api, 1)
    member = given.members[0]
    financial = await api.account("Financial")
    await api.link(given.master, financial, "FINANCIAL")
    card = await method(api, given.master)
    accounts = [given.master, member, financial]
    await refused(
        api,
        "addManagedPaymentMethod",
        ADD_MANAGED_METHOD,
        {"paymentMethodId": card, "managedId": financial},
        code="NOT_TRUSTEESHIP",
        field=["managedId"],
        accounts=accounts,
        token=given.master_token,
    )
    invited = await api.account("Invited")
    await api.invite(given.master, invited)
    other = await pair(api)
    for bad in (invited, other.member, given.master, "garbage"):
        await refused(
            api,
            "addManagedPaymentMethod",
            ADD_MANAGED_METHOD,
            {"paymentMethodId": card, "managedId": bad},
            code="NOT_FOUND",
            field=["managedId"],
            accounts=accounts,
        )
    await managed(api, card, member, given.master_token)
    await refused(
        api,
        "addManagedPaymentMethod",
        ADD_MANAGED_METHOD,
        {"paymentMethodId": card, "managedId": member},
        code="CONFLICT",
        field=["managedId"],
        accounts=accounts,
        token=given.master_token,
    )


async def test_b5_the_method_must_be_the_responsible_accounts_own(api: Api) -> None:
    given = await enterprise(api, 2)
    first, second = given.members
    accounts = [given.master, *given.members]
    members_card = await method(api, first, "Member card", given.member_tokens[0])
    # The master sees its member's method but acts only for its own account.
    await refused(
        api,
        "addManagedPaymentMethod",
        ADD_MANAGED_METHOD,
        {"paymentMethodId": members_card, "managedId": second},
        code="PERMISSION_NOT_GRANTED",
        field=["paymentMethodId"],
        accounts=accounts,
        token=given.master_token,
    )
    # A member's method is no responsible account's: its "members" are nobody.
    await refused(
        api,
        "addManagedPaymentMethod",
        ADD_MANAGED_METHOD,
        {"paymentMethodId": members_card, "managedId": second},
        code="NOT_FOUND",
        field=["managedId"],
        accounts=accounts,
    )
    # A member does not see its master's methods.
    card = await method(api, given.master)
    await refused(
        api,
        "addManagedPaymentMethod",
        ADD_MANAGED_METHOD,
        {"paymentMethodId": card, "managedId": first},
        code="NOT_FOUND",
        field=["paymentMethodId"],
        accounts=accounts,
        token=given.member_tokens[0],
    )
    # A managed method is not passed on.
    added = await managed(api, card, first)
    await refused(
        api,
        "addManagedPaymentMethod",
        ADD_MANAGED_METHOD,
        {"paymentMethodId": added["id"], "managedId": second},
        code="INVALID_INPUT",
        field=["paymentMethodId"],
        accounts=accounts,
    )
    await refused(
        api,
        "addManagedPaymentMethod",
        ADD_MANAGED_METHOD,
        {"paymentMethodId": ids.encode("PaymentMethod", 999_999), "managedId": second},
        code="NOT_FOUND",
        field=["paymentMethodId"],
        accounts=accounts,
    )


# ---------------------------------------------------------------- B5, F8 payments


async def test_f8_a_payment_with_the_accounts_own_method(api: Api) -> None:
    account = await api.account("Standalone")
    await charge(api, account, "30.00")
    card = await method(api, account, "Visa")
    found = await pay_with(api, account, "50.00", card)
    assert {k: found[k] for k in ("amount", "account", "payer", "paymentMethod")} == {
        "amount": "50.00",
        "account": {"id": account},
        "payer": {"id": account},
        "paymentMethod": {"id": card, "label": "Visa", "managedFrom": None},
    }
    assert_finance(await finance(api, account), cashBalance="20.00", outstandingFees="0.00")
    plain = await pay_with(api, account, "1.00", None)
    assert plain["paymentMethod"] is None and plain["payer"] == {"id": account}
    await assert_sound(api.engine)


async def test_b5_a_payment_with_a_managed_method_is_the_responsible_accounts(api: Api) -> None:
    given = await enterprise(api, 2)
    first, second = given.members
    await credit_line(api, given.master, "100.00")
    await charge(api, first, "30.00")  # the master settles it: its fees grow
    assert_finance(await finance(api, given.master), outstandingFees="30.00")
    card = await method(api, given.master, "Corporate card")
    added = await managed(api, card, first)
    member_before = await finance(api, first)

    found = await pay_with(api, first, "50.00", added["id"])
    assert {k: found[k] for k in ("amount", "account", "payer")} == {
        "amount": "50.00",
        "account": {"id": first},
        "payer": {"id": given.master},
    }
    assert found["paymentMethod"] == {
        "id": added["id"],
        "label": "Corporate card",
        "managedFrom": {"id": given.master},
    }
    assert_finance(await finance(api, given.master), cashBalance="20.00", outstandingFees="0.00")
    assert await finance(api, first) == member_before
    # Listed on the account it was made on and on the payer's; seen by both sides.
    for account, token in (
        (first, given.member_tokens[0]),
        (given.master, given.master_token),
        (first, given.master_token),
    ):
        listed = await payments(api, account, token)
        assert [edge["node"]["id"] for edge in listed["edges"]] == [found["id"]]
    assert (await payments(api, second))["totalCount"] == 0
    assert (await node(api, found["id"], given.member_tokens[0]) or {})["payer"] == {
        "id": given.master
    }
    assert await node(api, found["id"], given.member_tokens[1]) is None
    await assert_sound(api.engine)


async def test_b5_a_payment_names_a_method_of_its_account(api: Api) -> None:
    given = await enterprise(api, 2)
    first, second = given.members
    card = await method(api, given.master)
    added = await managed(api, card, first)
    accounts = [given.master, *given.members]
    for account, bad in (
        (second, added["id"]),
        (first, card),
        (given.master, added["id"]),
        (first, "garbage"),
        (first, ids.encode("Account", 1)),
    ):
        await refused(
            api,
            "recordPayment",
            PAY_WITH,
            {"accountId": account, "amount": "10.00", "paymentMethodId": bad},
            code="NOT_FOUND",
            field=["paymentMethodId"],
            accounts=accounts,
        )


async def test_b5_a_managed_method_stops_working_when_the_trusteeship_ends(api: Api) -> None:
    given = await pair(api)
    card = await method(api, given.master)
    added = await managed(api, card, given.member)
    await pay_with(api, given.member, "5.00", added["id"])
    await api.ok("dissociateMember", DISSOCIATE, {"linkId": given.link})
    await refused(
        api,
        "recordPayment",
        PAY_WITH,
        {"accountId": given.member, "amount": "10.00", "paymentMethodId": added["id"]},
        code="LINK_NOT_ACTIVE",
        field=["paymentMethodId"],
        accounts=[given.master, given.member],
    )
    # U5: the former responsible account no longer sees payments on the member.
    assert (await payments(api, given.master, given.master_token))["totalCount"] == 0
    assert (await payments(api, given.member, given.member_token))["totalCount"] == 1
    assert_finance(await finance(api, given.master), cashBalance="5.00")
    await assert_sound(api.engine)


async def test_f10_the_payment_method_is_part_of_a_payments_idempotent_input(api: Api) -> None:
    account = await api.account("Standalone")
    card = await method(api, account)
    first = await pay_with(api, account, "10.00", card, idempotencyKey="k-1")
    again = await pay_with(api, account, "10.00", card, idempotencyKey="k-1")
    assert again["id"] == first["id"]
    await refused(
        api,
        "recordPayment",
        PAY_WITH,
        {"accountId": account, "amount": "10.00", "paymentMethodId": None, "idempotencyKey": "k-1"},
        code="IDEMPOTENCY_CONFLICT",
        field=["idempotencyKey"],
        accounts=[account],
    )
    assert_finance(await finance(api, account), cashBalance="10.00")


async def test_f8_payments_are_listed_newest_first_in_pages(api: Api) -> None:
    account = await api.account("Standalone")
    made = [(await pay_with(api, account, f"{n}.00", None))["id"] for n in (1, 2, 3)]
    page = await payments(api, account, first=2)
    assert page["totalCount"] == 3 and page["pageInfo"]["hasNextPage"]
    assert [edge["node"]["id"] for edge in page["edges"]] == made[:0:-1]
    rest = await payments(api, account, first=2, after=page["pageInfo"]["endCursor"])
    assert [edge["node"]["id"] for edge in rest["edges"]] == made[:1]
    assert not rest["pageInfo"]["hasNextPage"] and rest["totalCount"] == 3
    stranger_token = await api.token(await api.account("Stranger"))
    assert await node(api, made[0], stranger_token) is None
