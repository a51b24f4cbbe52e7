"""H3: bill-tos of an account; while it has any, exactly one is primary.

Also who may edit them: the account's own users, operators, and its ACTIVE master only
with MANAGE_INVOICES (PERMISSION_NOT_GRANTED otherwise); anyone else gets NOT_FOUND.
Every refusal is checked against the database: nothing changed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from accountgraph.accounts.models import bill_tos
from accountgraph.api import ids
from tests.helpers import Api, enterprise

BILL_TOS = """
query($id: ID!) {
  account(id: $id) {
    primaryBillTo { id name }
    billTos { id name address email invoiceTitle taxId isPrimary readOnly }
  }
}"""
NODE = """
query($id: ID!) { node(id: $id) { id ... on BillTo { name } } }"""
ADD_BILL_TO = """
mutation($input: AddBillToInput!) {
  addBillTo(input: $input) {
    billTo { id name address email invoiceTitle taxId isPrimary }
    userErrors { code field message }
  }
}"""
UPDATE_BILL_TO = """
mutation($input: UpdateBillToInput!) {
  updateBillTo(input: $input) {
    billTo { id name address email invoiceTitle taxId isPrimary }
    userErrors { code field message }
  }
}"""
REMOVE_BILL_TO = """
mutation($input: RemoveBillToInput!) {
  removeBillTo(input: $input) {
    account { id primaryBillTo { id } billTos { id isPrimary } }
    userErrors { code field message }
  }
}"""

LONG = "x" * 201
TEXT_FIELDS = ["name", "address", "email", "invoiceTitle", "taxId"]


# ---------------------------------------------------------------- helpers


def codes(payload: dict[str, Any]) -> list[tuple[str, list[str] | None]]:
    return [(error["code"], error["field"]) for error in payload["userErrors"]]


async def bill_tos_of(api: Api, account_id: str, token: str | None = None) -> dict[str, Any]:
    """``primaryBillTo`` and ``billTos`` of an account, as the operator (or ``token``) sees."""
    kwargs = {} if token is None else {"token": token}
    data = await api.gql(BILL_TOS, {"id": account_id}, **kwargs)
    account: dict[str, Any] = data["account"]
    return account


async def primary_of(api: Api, account_id: str) -> str | None:
    """The primary bill-to's id, after checking both fields agree on exactly one."""
    account = await bill_tos_of(api, account_id)
    primaries: list[str] = [b["id"] for b in account["billTos"] if b["isPrimary"]]
    if not account["billTos"]:
        assert primaries == [] and account["primaryBillTo"] is None
        return None
    assert len(primaries) == 1, account
    assert account["primaryBillTo"]["id"] == primaries[0]
    return primaries[0]


async def db_rows(engine: AsyncEngine, *account_ids: str) -> list[dict[str, Any]]:
    """Every bill-to row of the accounts, straight from the database."""
    keys = [ids.decode_as(account_id, "Account") for account_id in account_ids]
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(bill_tos).where(bill_tos.c.account_id.in_(keys)).order_by(bill_tos.c.id)
        )
        return [dict(row._mapping) for row in rows]


async def db_primary_counts(engine: AsyncEngine, account_id: str) -> tuple[int, int]:
    """(bill-tos, primaries) of an account in the database."""
    rows = await db_rows(engine, account_id)
    return len(rows), sum(1 for row in rows if row["is_primary"])


async def add(
    api: Api, account_id: str, name: str, token: str | None = None, **fields: Any
) -> dict[str, Any]:
    kwargs = {} if token is None else {"token": token}
    return await api.mutate(
        "addBillTo", ADD_BILL_TO, {"accountId": account_id, "name": name, **fields}, **kwargs
    )


async def update(
    api: Api, bill_to_id: str, token: str | None = None, **fields: Any
) -> dict[str, Any]:
    kwargs = {} if token is None else {"token": token}
    return await api.mutate(
        "updateBillTo", UPDATE_BILL_TO, {"billToId": bill_to_id, **fields}, **kwargs
    )


async def remove(
    api: Api, bill_to_id: str, token: str | None = None, **fields: Any
) -> dict[str, Any]:
    kwargs = {} if token is None else {"token": token}
    return await api.mutate(
        "removeBillTo", REMOVE_BILL_TO, {"billToId": bill_to_id, **fields}, **kwargs
    )


# ---------------------------------------------------------------- primary (H3)


async def test_h3_first_bill_to_of_an_account_becomes_primary(api: Api) -> None:
    # given an account without bill-tos
    account = await api.account("Acme")
    assert await primary_of(api, account) is None

    # when its first bill-to is added, even with isPrimary: false
    payload = await api.ok(
        "addBillTo", ADD_BILL_TO, {"accountId": account, "name": "Acme AP", "isPrimary": False}
    )

    # then it is the primary
    assert payload["billTo"]["isPrimary"] is True
    assert await primary_of(api, account) == payload["billTo"]["id"]
    assert await db_primary_counts(api.engine, account) == (1, 1)


async def test_h3_a_second_bill_to_without_is_primary_leaves_the_primary(api: Api) -> None:
    # given an account with a primary bill-to
    account = await api.account("Acme")
    first = await api.bill_to(account, "First")

    # when another is added without isPrimary
    payload = await api.ok("addBillTo", ADD_BILL_TO, {"accountId": account, "name": "Second"})

    # then the first stays primary
    assert payload["billTo"]["isPrimary"] is False
    assert await primary_of(api, account) == first
    assert await db_primary_counts(api.engine, account) == (2, 1)


async def test_h3_add_with_is_primary_demotes_the_old_primary(api: Api) -> None:
    # given an account with a primary bill-to and another one
    account = await api.account("Acme")
    first = await api.bill_to(account, "First")
    await api.bill_to(account, "Second")

    # when a third is added with isPrimary: true
    payload = await api.ok(
        "addBillTo", ADD_BILL_TO, {"accountId": account, "name": "Third", "isPrimary": True}
    )

    # then it is the one primary, and the first is no longer
    third = payload["billTo"]["id"]
    assert payload["billTo"]["isPrimary"] is True
    assert await primary_of(api, account) == third
    listed = (await bill_tos_of(api, account))["billTos"]
    assert [(b["name"], b["isPrimary"]) for b in listed] == [
        ("First", False),
        ("Second", False),
        ("Third", True),
    ]
    assert first != third
    assert await db_primary_counts(api.engine, account) == (3, 1)


async def test_h3_update_is_primary_true_promotes_and_demotes_the_old(api: Api) -> None:
    # given a primary and a second bill-to
    account = await api.account("Acme")
    first = await api.bill_to(account, "First")
    second = await api.bill_to(account, "Second")

    # when the second is made primary
    payload = await api.ok("updateBillTo", UPDATE_BILL_TO, {"billToId": second, "isPrimary": True})

    # then it is the one primary
    assert payload["billTo"]["isPrimary"] is True
    assert await primary_of(api, account) == second
    listed = {b["id"]: b["isPrimary"] for b in (await bill_tos_of(api, account))["billTos"]}
    assert listed == {first: False, second: True}
    assert await db_primary_counts(api.engine, account) == (2, 1)


async def test_h3_update_is_primary_true_on_the_primary_changes_nothing(api: Api) -> None:
    # given a primary and a second bill-to
    account = await api.account("Acme")
    first = await api.bill_to(account, "First")
    await api.bill_to(account, "Second")
    before = await db_rows(api.engine, account)

    # when the primary is "promoted" again
    payload = await api.ok("updateBillTo", UPDATE_BILL_TO, {"billToId": first, "isPrimary": True})

    # then it stays the one primary
    assert payload["billTo"]["isPrimary"] is True
    assert await db_rows(api.engine, account) == before


async def test_h3_demoting_the_primary_is_primary_required(api: Api) -> None:
    # given a primary and a second bill-to
    account = await api.account("Acme")
    first = await api.bill_to(account, "First")
    await api.bill_to(account, "Second")
    before = await db_rows(api.engine, account)

    # when the primary is demoted (with a field change in the same input)
    payload = await update(api, first, isPrimary=False, name="Renamed")

    # then it is refused and nothing changed
    assert codes(payload) == [("PRIMARY_REQUIRED", ["isPrimary"])]
    assert payload["billTo"] is None
    assert await db_rows(api.engine, account) == before
    assert await primary_of(api, account) == first


async def test_h3_demoting_the_only_bill_to_is_primary_required(api: Api) -> None:
    # given an account with a single bill-to
    account = await api.account("Acme")
    only = await api.bill_to(account, "Only")

    # when it is demoted
    payload = await update(api, only, isPrimary=False)

    # then it is refused: while an account has bill-tos one is primary
    assert codes(payload) == [("PRIMARY_REQUIRED", ["isPrimary"])]
    assert await db_primary_counts(api.engine, account) == (1, 1)


async def test_h3_is_primary_false_on_a_non_primary_is_accepted(api: Api) -> None:
    # given a primary and a second bill-to
    account = await api.account("Acme")
    first = await api.bill_to(account, "First")
    second = await api.bill_to(account, "Second")

    # when the second is updated with isPrimary: false
    payload = await api.ok(
        "updateBillTo", UPDATE_BILL_TO, {"billToId": second, "isPrimary": False, "name": "Second b"}
    )

    # then it is updated and the primary stays
    assert payload["billTo"] == payload["billTo"] | {"name": "Second b", "isPrimary": False}
    assert await primary_of(api, account) == first


# ---------------------------------------------------------------- removal (H3, H4)


async def test_h3_removing_the_primary_while_others_exist_needs_new_primary(api: Api) -> None:
    # given a primary and two others
    account = await api.account("Acme")
    first = await api.bill_to(account, "First")
    await api.bill_to(account, "Second")
    await api.bill_to(account, "Third")
    before = await db_rows(api.engine, account)

    # when the primary is removed without newPrimaryId
    payload = await remove(api, first)

    # then it is refused and nothing changed
    assert codes(payload) == [("PRIMARY_REQUIRED", ["newPrimaryId"])]
    assert payload["account"] is None
    assert await db_rows(api.engine, account) == before


async def test_h3_removing_the_primary_with_new_primary_promotes_it(api: Api) -> None:
    # given a primary and two others
    account = await api.account("Acme")
    first = await api.bill_to(account, "First")
    second = await api.bill_to(account, "Second")
    third = await api.bill_to(account, "Third")

    # when the primary is removed naming the third as the new primary
    payload = await api.ok(
        "removeBillTo", REMOVE_BILL_TO, {"billToId": first, "newPrimaryId": third}
    )

    # then the first is gone and the third is the one primary
    assert payload["account"]["primaryBillTo"] == {"id": third}
    assert payload["account"]["billTos"] == [
        {"id": second, "isPrimary": False},
        {"id": third, "isPrimary": True},
    ]
    assert await primary_of(api, account) == third
    assert await db_primary_counts(api.engine, account) == (2, 1)


async def test_h3_removing_a_non_primary_keeps_the_primary(api: Api) -> None:
    # given a primary and a second bill-to
    account = await api.account("Acme")
    first = await api.bill_to(account, "First")
    second = await api.bill_to(account, "Second")

    # when the second is removed
    payload = await api.ok("removeBillTo", REMOVE_BILL_TO, {"billToId": second})

    # then only the primary remains
    assert payload["account"]["billTos"] == [{"id": first, "isPrimary": True}]
    assert await db_primary_counts(api.engine, account) == (1, 1)


async def test_h3_removing_a_non_primary_naming_a_new_primary_moves_it(api: Api) -> None:
    # given a primary and two others
    account = await api.account("Acme")
    first = await api.bill_to(account, "First")
    second = await api.bill_to(account, "Second")
    third = await api.bill_to(account, "Third")

    # when the second is removed naming the third as primary
    await api.ok("removeBillTo", REMOVE_BILL_TO, {"billToId": second, "newPrimaryId": third})

    # then the third is the one primary and the first remains
    listed = {b["id"]: b["isPrimary"] for b in (await bill_tos_of(api, account))["billTos"]}
    assert listed == {first: False, third: True}
    assert await db_primary_counts(api.engine, account) == (2, 1)


async def test_h3_removing_the_only_bill_to_works(api: Api) -> None:
    # given an account with one (primary) bill-to
    account = await api.account("Acme")
    only = await api.bill_to(account, "Only")

    # when it is removed
    payload = await api.ok("removeBillTo", REMOVE_BILL_TO, {"billToId": only})

    # then the account has none and no primary
    assert payload["account"]["billTos"] == []
    assert payload["account"]["primaryBillTo"] is None
    assert await db_rows(api.engine, account) == []

    # and the next one added is primary again
    payload = await api.ok("addBillTo", ADD_BILL_TO, {"accountId": account, "name": "Next"})
    assert payload["billTo"]["isPrimary"] is True


async def test_h3_removing_a_bill_to_a_site_points_at_is_conflict(api: Api) -> None:
    # given a non-primary bill-to that a site points at
    account = await api.account("Acme")
    await api.bill_to(account, "First")
    used = await api.bill_to(account, "Used")
    await api.site(account, "Plant", used)
    before = await db_rows(api.engine, account)

    # when it is removed
    payload = await remove(api, used)

    # then it is refused and nothing changed
    assert codes(payload) == [("CONFLICT", ["billToId"])]
    assert await db_rows(api.engine, account) == before


async def test_h3_removing_the_primary_a_site_points_at_is_conflict(api: Api) -> None:
    # given a primary bill-to that a site points at, and another bill-to
    account = await api.account("Acme")
    first = await api.bill_to(account, "First")
    second = await api.bill_to(account, "Second")
    await api.site(account, "Plant", first)
    before = await db_rows(api.engine, account)

    # when the primary is removed naming a new primary
    payload = await remove(api, first, newPrimaryId=second)

    # then it is refused (the site still points at it) and nothing changed
    assert codes(payload) == [("CONFLICT", ["billToId"])]
    assert await db_rows(api.engine, account) == before


async def test_h3_new_primary_of_another_account_is_not_found(api: Api) -> None:
    # given two accounts with two bill-tos each
    account = await api.account("Acme")
    first = await api.bill_to(account, "First")
    await api.bill_to(account, "Second")
    other = await api.account("Other")
    await api.bill_to(other, "Other first")
    foreign = await api.bill_to(other, "Other second")
    before = await db_rows(api.engine, account, other)

    # when the primary is removed naming the other account's bill-to (even as operator)
    payload = await remove(api, first, newPrimaryId=foreign)

    # then it is NOT_FOUND and nothing changed on either account
    assert codes(payload) == [("NOT_FOUND", ["newPrimaryId"])]
    assert await db_rows(api.engine, account, other) == before


@pytest.mark.parametrize("new_primary", ["self", "garbage", "account"])
async def test_h3_new_primary_that_is_no_other_bill_to_is_not_found(
    api: Api, new_primary: str
) -> None:
    # given a primary and a second bill-to
    account = await api.account("Acme")
    first = await api.bill_to(account, "First")
    await api.bill_to(account, "Second")
    before = await db_rows(api.engine, account)
    named = {"self": first, "garbage": "not-an-id", "account": account}[new_primary]

    # when the primary is removed naming itself, garbage, or an id of another type
    payload = await remove(api, first, newPrimaryId=named)

    # then it is NOT_FOUND and nothing changed
    assert codes(payload) == [("NOT_FOUND", ["newPrimaryId"])]
    assert await db_rows(api.engine, account) == before


async def test_h3_removing_a_removed_bill_to_is_not_found(api: Api) -> None:
    # given a bill-to that was removed
    account = await api.account("Acme")
    await api.bill_to(account, "First")
    gone = await api.bill_to(account, "Gone")
    await api.ok("removeBillTo", REMOVE_BILL_TO, {"billToId": gone})

    # when it is removed or updated again
    removed = await remove(api, gone)
    updated = await update(api, gone, name="Back")

    # then both are NOT_FOUND
    assert codes(removed) == [("NOT_FOUND", ["billToId"])]
    assert codes(updated) == [("NOT_FOUND", ["billToId"])]


# ---------------------------------------------------------------- fields (H3)


async def test_h3_add_stores_every_field(api: Api) -> None:
    # given an account
    account = await api.account("Acme")

    # when a bill-to is added with every field (text is trimmed)
    payload = await api.ok(
        "addBillTo",
        ADD_BILL_TO,
        {
            "accountId": account,
            "name": "  Acme AP  ",
            "address": "1 Main St",
            "email": "ap@acme.test",
            "invoiceTitle": "Acme Ltd",
            "taxId": "DE123",
        },
    )

    # then they are stored and read back
    expected = {
        "id": payload["billTo"]["id"],
        "name": "Acme AP",
        "address": "1 Main St",
        "email": "ap@acme.test",
        "invoiceTitle": "Acme Ltd",
        "taxId": "DE123",
        "isPrimary": True,
    }
    assert payload["billTo"] == expected
    assert (await bill_tos_of(api, account))["billTos"] == [expected | {"readOnly": False}]


async def test_h3_update_changes_the_given_fields_only(api: Api) -> None:
    # given a bill-to with every field set
    account = await api.account("Acme")
    bill_to = await api.bill_to(
        account,
        "Acme AP",
        address="1 Main St",
        email="ap@acme.test",
        invoiceTitle="Acme Ltd",
        taxId="DE123",
    )

    # when name, address, email, invoiceTitle and taxId are changed one request at a time
    changes = {
        "name": "Acme Billing",
        "address": "2 High St",
        "email": "billing@acme.test",
        "invoiceTitle": "Acme GmbH",
        "taxId": "DE456",
    }
    for field, value in changes.items():
        payload = await api.ok("updateBillTo", UPDATE_BILL_TO, {"billToId": bill_to, field: value})
        assert payload["billTo"][field] == value

    # then every field has its new value, and it is still the primary
    listed = (await bill_tos_of(api, account))["billTos"]
    assert listed == [{"id": bill_to, **changes, "isPrimary": True, "readOnly": False}]


async def test_h3_update_with_no_fields_changes_nothing(api: Api) -> None:
    # given a bill-to
    account = await api.account("Acme")
    bill_to = await api.bill_to(account, "Acme AP", email="ap@acme.test")
    before = await db_rows(api.engine, account)

    # when it is updated with only its id
    payload = await api.ok("updateBillTo", UPDATE_BILL_TO, {"billToId": bill_to})

    # then it is returned unchanged
    assert payload["billTo"]["name"] == "Acme AP"
    assert await db_rows(api.engine, account) == before


@pytest.mark.parametrize("name", ["", "   "])
async def test_h3_empty_name_is_invalid_input(api: Api, name: str) -> None:
    # given an account with a bill-to
    account = await api.account("Acme")
    bill_to = await api.bill_to(account, "Acme AP")
    before = await db_rows(api.engine, account)

    # when a bill-to is added, or the existing one renamed, with an empty name
    added = await add(api, account, name)
    updated = await update(api, bill_to, name=name)

    # then both are INVALID_INPUT at ["name"] and nothing changed
    assert codes(added) == [("INVALID_INPUT", ["name"])]
    assert codes(updated) == [("INVALID_INPUT", ["name"])]
    assert await db_rows(api.engine, account) == before


@pytest.mark.parametrize("field", TEXT_FIELDS)
async def test_h3_over_long_text_is_invalid_input(api: Api, field: str) -> None:
    # given an account with a bill-to
    account = await api.account("Acme")
    bill_to = await api.bill_to(account, "Acme AP")
    before = await db_rows(api.engine, account)
    fields = {"name": "New"} | {field: LONG}

    # when a bill-to is added, or the existing one updated, with 201 characters in a field
    added = await api.mutate("addBillTo", ADD_BILL_TO, {"accountId": account, **fields})
    updated = await update(api, bill_to, **{field: LONG})

    # then both are INVALID_INPUT at that field and nothing changed
    assert codes(added) == [("INVALID_INPUT", [field])]
    assert codes(updated) == [("INVALID_INPUT", [field])]
    assert await db_rows(api.engine, account) == before


async def test_h3_tax_id_longer_than_its_column_is_invalid_input(api: Api) -> None:
    """A tax id is stored in 64 characters: a longer one is refused as input, not a crash."""
    # given an account with a bill-to
    account = await api.account("Acme")
    bill_to = await api.bill_to(account, "Acme AP")
    before = await db_rows(api.engine, account)

    # when a 65-character tax id is sent on add and update
    body = await api.raw(
        ADD_BILL_TO, {"input": {"accountId": account, "name": "New", "taxId": "T" * 65}}
    )
    updated = await api.raw(UPDATE_BILL_TO, {"input": {"billToId": bill_to, "taxId": "T" * 65}})

    # then both are INVALID_INPUT user errors (no GraphQL error) and nothing changed
    assert "errors" not in body and "errors" not in updated, (body, updated)
    assert codes(body["data"]["addBillTo"]) == [("INVALID_INPUT", ["taxId"])]
    assert codes(updated["data"]["updateBillTo"]) == [("INVALID_INPUT", ["taxId"])]
    assert await db_rows(api.engine, account) == before


async def test_h3_text_of_200_characters_is_accepted(api: Api) -> None:
    # given an account
    account = await api.account("Acme")

    # when a bill-to is added with 200 characters in name, address, email and title
    fields = {field: "y" * 200 for field in ["name", "address", "email", "invoiceTitle"]}
    payload = await api.ok("addBillTo", ADD_BILL_TO, {"accountId": account, **fields})

    # then they are stored as given
    assert {field: payload["billTo"][field] for field in fields} == fields


# ---------------------------------------------------------------- who may edit (H3, P2, P3)


async def test_h3_master_without_manage_invoices_is_permission_not_granted(api: Api) -> None:
    # given a master whose member granted everything but MANAGE_INVOICES
    master = await api.account("Master")
    member = await api.account("Member")
    await api.link(master, member, permissions=["SYNC_CREDIT_CONTROL", "VIEW_FINANCE"])
    master_token = await api.token(master)
    first = await api.bill_to(member, "First")
    second = await api.bill_to(member, "Second")
    before = await db_rows(api.engine, member)

    # when the master adds, updates, promotes and removes the member's bill-tos
    added = await add(api, member, "By master", token=master_token)
    renamed = await update(api, first, token=master_token, name="By master")
    promoted = await update(api, second, token=master_token, isPrimary=True)
    removed = await remove(api, second, token=master_token)

    # then each is PERMISSION_NOT_GRANTED and nothing changed
    assert codes(added) == [("PERMISSION_NOT_GRANTED", ["accountId"])]
    assert codes(renamed) == [("PERMISSION_NOT_GRANTED", ["billToId"])]
    assert codes(promoted) == [("PERMISSION_NOT_GRANTED", ["billToId"])]
    assert codes(removed) == [("PERMISSION_NOT_GRANTED", ["billToId"])]
    assert await db_rows(api.engine, member) == before

    # and the master still sees them (P2: it sees the member's details)
    seen = await bill_tos_of(api, member, token=master_token)
    assert [b["name"] for b in seen["billTos"]] == ["First", "Second"]


async def test_h3_master_with_manage_invoices_edits_member_bill_tos(api: Api) -> None:
    # given a master whose member granted MANAGE_INVOICES only
    master = await api.account("Master")
    member = await api.account("Member")
    await api.link(master, member, permissions=["MANAGE_INVOICES"])
    master_token = await api.token(master)
    first = await api.bill_to(member, "First")

    # when the master adds a primary bill-to, renames the first and removes it
    added = await api.ok(
        "addBillTo",
        ADD_BILL_TO,
        {"accountId": member, "name": "By master", "isPrimary": True},
        token=master_token,
    )
    renamed = await api.ok(
        "updateBillTo", UPDATE_BILL_TO, {"billToId": first, "taxId": "TX-1"}, token=master_token
    )
    removed = await api.ok("removeBillTo", REMOVE_BILL_TO, {"billToId": first}, token=master_token)

    # then each worked
    assert added["billTo"]["isPrimary"] is True
    assert renamed["billTo"]["taxId"] == "TX-1"
    assert removed["account"]["billTos"] == [{"id": added["billTo"]["id"], "isPrimary": True}]
    assert await db_primary_counts(api.engine, member) == (1, 1)


async def test_h3_member_edits_its_own_bill_tos_without_granting_anything(api: Api) -> None:
    # given a member that granted its master nothing
    master = await api.account("Master")
    member = await api.account("Member")
    await api.link(master, member, permissions=[])
    member_token = await api.token(member)

    # when the member's own users add, promote, rename and remove bill-tos
    first = (
        await api.ok(
            "addBillTo", ADD_BILL_TO, {"accountId": member, "name": "First"}, token=member_token
        )
    )["billTo"]["id"]
    second = (
        await api.ok(
            "addBillTo", ADD_BILL_TO, {"accountId": member, "name": "Second"}, token=member_token
        )
    )["billTo"]["id"]
    await api.ok(
        "updateBillTo",
        UPDATE_BILL_TO,
        {"billToId": second, "isPrimary": True, "name": "Second b"},
        token=member_token,
    )
    await api.ok("removeBillTo", REMOVE_BILL_TO, {"billToId": first}, token=member_token)

    # then the account has the second, renamed and primary
    seen = await bill_tos_of(api, member, token=member_token)
    assert seen["primaryBillTo"] == {"id": second, "name": "Second b"}
    assert [b["id"] for b in seen["billTos"]] == [second]


async def test_h3_sibling_and_stranger_get_not_found(api: Api) -> None:
    # given two members of one master (all permissions) and a stranger
    given = await enterprise(api, 2)
    member, sibling_token = given.members[0], given.member_tokens[1]
    stranger = await api.account("Stranger")
    stranger_token = await api.token(stranger)
    first = await api.bill_to(member, "First")
    second = await api.bill_to(member, "Second")
    before = await db_rows(api.engine, member)

    for token in (sibling_token, stranger_token):
        # when the sibling or the stranger touches the member's bill-tos
        added = await add(api, member, "Intruder", token=token)
        renamed = await update(api, first, token=token, name="Intruder")
        promoted = await update(api, second, token=token, isPrimary=True)
        removed = await remove(api, second, token=token)
        node = await api.gql(NODE, {"id": first}, token=token)
        account = await api.gql(BILL_TOS, {"id": member}, token=token)

        # then everything is NOT_FOUND / null, as if the bill-tos did not exist
        assert codes(added) == [("NOT_FOUND", ["accountId"])]
        assert codes(renamed) == [("NOT_FOUND", ["billToId"])]
        assert codes(promoted) == [("NOT_FOUND", ["billToId"])]
        assert codes(removed) == [("NOT_FOUND", ["billToId"])]
        assert node == {"node": None}
        assert account == {"account": None}

    # and nothing changed
    assert await db_rows(api.engine, member) == before


async def test_h3_member_cannot_touch_its_masters_bill_tos(api: Api) -> None:
    # given a master with a bill-to and a member with all permissions granted
    given = await enterprise(api, 1)
    master_bill_to = await api.bill_to(given.master, "Master AP")
    before = await db_rows(api.engine, given.master)
    token = given.member_tokens[0]

    # when the member adds to or edits the master's bill-tos
    added = await add(api, given.master, "Intruder", token=token)
    renamed = await update(api, master_bill_to, token=token, name="Intruder")
    removed = await remove(api, master_bill_to, token=token)

    # then it is NOT_FOUND (P3: a member sees its master's name fields only)
    assert codes(added) == [("NOT_FOUND", ["accountId"])]
    assert codes(renamed) == [("NOT_FOUND", ["billToId"])]
    assert codes(removed) == [("NOT_FOUND", ["billToId"])]
    assert await db_rows(api.engine, given.master) == before


async def test_h3_former_master_gets_not_found_after_dissociation(api: Api) -> None:
    # given a member with MANAGE_INVOICES granted, then dissociated
    given = await enterprise(api, 1)
    member = given.members[0]
    bill_to = await api.bill_to(member, "Member AP")
    await api.ok(
        "dissociateMember",
        """
        mutation($input: DissociateMemberInput!) {
          dissociateMember(input: $input) { userErrors { code } }
        }""",
        {"linkId": given.links[0]},
    )

    # when the former master edits the member's bill-to
    payload = await update(api, bill_to, token=given.master_token, name="Intruder")

    # then it is NOT_FOUND (U5, P3)
    assert codes(payload) == [("NOT_FOUND", ["billToId"])]


# ---------------------------------------------------------------- concurrency (H3)


async def test_h3_concurrent_adds_leave_exactly_one_primary(api: Api) -> None:
    # given an account without bill-tos
    account = await api.account("Acme")

    # when ten bill-tos are added at once, half of them asking to be primary
    payloads = await asyncio.gather(
        *(add(api, account, f"B{number}", isPrimary=number % 2 == 0) for number in range(10))
    )

    # then all succeeded and exactly one is primary
    assert [codes(payload) for payload in payloads] == [[]] * 10
    assert await db_primary_counts(api.engine, account) == (10, 1)
    assert await primary_of(api, account) is not None


@pytest.mark.parametrize("field", TEXT_FIELDS)
async def test_h3_nul_character_is_invalid_input(api: Api, field: str) -> None:
    """PostgreSQL text cannot hold NUL: refused as input, not a server error."""
    # given an account with a bill-to
    account = await api.account("Acme")
    bill_to = await api.bill_to(account, "Acme AP")
    before = await db_rows(api.engine, account)

    # when a bill-to is added, or updated, with a NUL in a field
    added = await api.raw(
        ADD_BILL_TO, {"input": {"accountId": account, "name": "New", field: "a\x00b"}}
    )
    updated = await api.raw(UPDATE_BILL_TO, {"input": {"billToId": bill_to, field: "a\x00b"}})

    # then both are INVALID_INPUT user errors at that field and nothing changed
    assert "errors" not in added and "errors" not in updated, (added, updated)
    assert codes(added["data"]["addBillTo"]) == [("INVALID_INPUT", [field])]
    assert codes(updated["data"]["updateBillTo"]) == [("INVALID_INPUT", [field])]
    assert await db_rows(api.engine, account) == before
