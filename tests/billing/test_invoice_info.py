"""I1-I3: members' invoice information, read (primaryBillTo), set in batches and made to
follow the master's (referenceMasterInvoiceInfo), through the real API."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from tests.helpers import ALL_PERMISSIONS, OPERATOR_TOKEN, Api

SET_INFO = """
mutation($input: SetMemberInvoiceInfoInput!) {
  setMemberInvoiceInfo(input: $input) {
    accounts { id primaryBillTo { ...BillToFields } } userErrors { code field message }
  }
}
fragment BillToFields on BillTo {
  id name invoiceTitle taxId address email isPrimary readOnly
}"""
REFERENCE = """
mutation($input: ReferenceMasterInvoiceInfoInput!) {
  referenceMasterInvoiceInfo(input: $input) {
    accounts { id link { referencesMasterInvoiceInfo } primaryBillTo { ...BillToFields } }
    userErrors { code field message }
  }
}
fragment BillToFields on BillTo {
  id name invoiceTitle taxId address email isPrimary readOnly
}"""
UPDATE_BILL_TO = """
mutation($input: UpdateBillToInput!) {
  updateBillTo(input: $input) { billTo { id name readOnly } userErrors { code field message } }
}"""
ADD_BILL_TO = """
mutation($input: AddBillToInput!) {
  addBillTo(input: $input) { billTo { id } userErrors { code field message } }
}"""
REMOVE_BILL_TO = """
mutation($input: RemoveBillToInput!) {
  removeBillTo(input: $input) { account { id } userErrors { code field message } }
}"""
TITLES = """
query($id: ID!) {
  account(id: $id) {
    members { edges { node { id name primaryBillTo { invoiceTitle taxId } } } }
  }
}"""
BILL_TOS = """
query($id: ID!) {
  account(id: $id) {
    link { referencesMasterInvoiceInfo }
    billTos { id name invoiceTitle taxId address email isPrimary readOnly }
  }
}"""
INFO = {"invoiceTitle": "Member Ltd", "taxId": "VAT-9", "address": "1 Road", "email": "ap@m.io"}


async def bill_tos(api: Api, account: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (await api.gql(BILL_TOS, {"id": account}))["account"]["billTos"]
    return found


async def all_bill_tos(api: Api) -> list[tuple[Any, ...]]:
    """Every bill-to row: a refused mutation leaves them all as they were."""
    async with api.engine.connect() as conn:
        return [
            tuple(row)
            for row in (await conn.execute(text("SELECT * FROM bill_tos ORDER BY id"))).all()
        ]


def codes(payload: dict[str, Any]) -> list[tuple[str, list[str]]]:
    return [(error["code"], error["field"]) for error in payload["userErrors"]]


async def test_i1_the_master_lists_its_members_invoice_titles(api: Api) -> None:
    master = await api.account("Master")
    member = await api.account("Member")
    await api.link(master, member)
    await api.bill_to(member, "AP", invoiceTitle="Member Ltd", taxId="VAT-1")
    await api.bill_to(member, "Other", invoiceTitle="Other Ltd")
    found = (await api.gql(TITLES, {"id": master}, await api.token(master)))["account"]
    assert [edge["node"]["primaryBillTo"] for edge in found["members"]["edges"]] == [
        {"invoiceTitle": "Member Ltd", "taxId": "VAT-1"}
    ]


async def test_i2_batch_sets_invoice_info_and_reports_the_refused_per_index(api: Api) -> None:
    master = await api.account("Master")
    token = await api.token(master)
    granted = await api.account("Granted")
    await api.link(master, granted)
    await api.bill_to(granted, "Granted AP", invoiceTitle="Old")
    fresh = await api.account("Fresh")  # no bill-to yet: one is created, named after it
    await api.link(master, fresh, type="FINANCIAL")
    withheld = await api.account("Withheld")
    await api.link(master, withheld, permissions=["SYNC_CREDIT_CONTROL", "VIEW_FINANCE"])
    await api.bill_to(withheld, "Withheld AP", invoiceTitle="Kept")
    stranger = await api.account("Stranger")
    referencing = await api.account("Referencing")
    await api.link(master, referencing)
    await api.mutate(
        "referenceMasterInvoiceInfo",
        REFERENCE,
        {"masterId": master, "memberIds": [referencing], "enabled": True},
    )
    untouched = {
        account: await bill_tos(api, account) for account in (withheld, stranger, referencing)
    }

    payload = await api.mutate(
        "setMemberInvoiceInfo",
        SET_INFO,
        {
            "masterId": master,
            "memberIds": [granted, withheld, stranger, "garbage", referencing, fresh],
            **INFO,
        },
        token,
    )
    assert codes(payload) == [
        ("PERMISSION_NOT_GRANTED", ["memberIds", "1"]),
        ("NOT_FOUND", ["memberIds", "2"]),
        ("NOT_FOUND", ["memberIds", "3"]),
        ("REFERENCED_READ_ONLY", ["memberIds", "4"]),
    ]
    assert [a["id"] for a in payload["accounts"]] == [granted, fresh]
    shown = [a["primaryBillTo"] for a in payload["accounts"]]
    assert [(b["name"], b["isPrimary"], b["readOnly"]) for b in shown] == [
        ("Granted AP", True, False),
        ("Fresh", True, False),
    ]
    for bill_to in shown:
        assert {key: bill_to[key] for key in INFO} == INFO
    for account, before in untouched.items():
        assert await bill_tos(api, account) == before


async def test_i2_only_the_master_s_own_users_set_member_info(api: Api) -> None:
    master = await api.account("Master")
    member = await api.account("Member")
    await api.link(master, member)
    await api.bill_to(member, "AP")
    before = await all_bill_tos(api)
    for token, code in (
        (await api.token(member), "NOT_FOUND"),
        (await api.token(await api.account("Stranger")), "NOT_FOUND"),
    ):
        payload = await api.mutate(
            "setMemberInvoiceInfo",
            SET_INFO,
            {"masterId": master, "memberIds": [member], **INFO},
            token,
        )
        assert codes(payload) == [(code, ["masterId"])] and payload["accounts"] == []
    payload = await api.mutate(
        "setMemberInvoiceInfo",
        SET_INFO,
        {"masterId": master, "memberIds": [member], "invoiceTitle": "x" * 201},
    )
    assert codes(payload) == [("INVALID_INPUT", ["invoiceTitle"])]
    payload = await api.mutate(
        "setMemberInvoiceInfo", SET_INFO, {"masterId": master, "memberIds": [member] * 501}
    )
    assert codes(payload) == [("INVALID_INPUT", ["memberIds"])]
    assert await all_bill_tos(api) == before
    await api.ok(
        "setMemberInvoiceInfo",
        SET_INFO,
        {  # the operator may
            "masterId": master,
            "memberIds": [member],
            **INFO,
        },
        OPERATOR_TOKEN,
    )


async def test_i3_reference_mirrors_the_master_s_primary_and_follows_it(api: Api) -> None:
    master = await api.account("Master")
    token = await api.token(master)
    hq = await api.bill_to(
        master,
        "HQ",
        invoiceTitle="Enterprise Ltd",
        taxId="TAX-1",
        address="Main St 1",
        email="ap@enterprise.io",
    )
    member = await api.account("Member")
    await api.link(master, member)
    own = await api.bill_to(member, "Member AP", invoiceTitle="Member Ltd")
    other = await api.bill_to(member, "Member other")

    payload = await api.ok(
        "referenceMasterInvoiceInfo",
        REFERENCE,
        {"masterId": master, "memberIds": [member], "enabled": True},
        token,
    )
    [account] = payload["accounts"]
    assert account["link"] == {"referencesMasterInvoiceInfo": True}
    assert account["primaryBillTo"] == {
        "id": own,
        "name": "HQ",
        "invoiceTitle": "Enterprise Ltd",
        "taxId": "TAX-1",
        "address": "Main St 1",
        "email": "ap@enterprise.io",
        "isPrimary": True,
        "readOnly": True,
    }

    # Later changes of the master's primary follow: an edit, a new primary, a removal.
    await api.ok("updateBillTo", UPDATE_BILL_TO, {"billToId": hq, "taxId": "TAX-2"}, token)
    assert (await bill_tos(api, member))[0]["taxId"] == "TAX-2"
    branch = await api.bill_to(master, "Branch", isPrimary=True, invoiceTitle="Branch Ltd")
    assert (await bill_tos(api, member))[0]["name"] == "Branch"
    await api.ok("removeBillTo", REMOVE_BILL_TO, {"billToId": branch, "newPrimaryId": hq})
    mirrored = (await bill_tos(api, member))[0]
    assert (mirrored["name"], mirrored["taxId"], mirrored["invoiceTitle"]) == (
        "HQ",
        "TAX-2",
        "Enterprise Ltd",
    )
    await api.ok("updateBillTo", UPDATE_BILL_TO, {"billToId": other, "name": "Renamed"})
    assert [(b["name"], b["readOnly"]) for b in await bill_tos(api, member)] == [
        ("HQ", True),
        ("Renamed", False),
    ]  # only the primary is read-only

    # Turned off: the member keeps the copy and may edit it again.
    await api.ok(
        "referenceMasterInvoiceInfo",
        REFERENCE,
        {"masterId": master, "memberIds": [member], "enabled": False},
        token,
    )
    await api.ok(
        "updateBillTo",
        UPDATE_BILL_TO,
        {"billToId": own, "name": "Mine again"},
        await api.token(member),
    )
    await api.ok("updateBillTo", UPDATE_BILL_TO, {"billToId": hq, "name": "HQ renamed"})
    assert [(b["name"], b["readOnly"]) for b in await bill_tos(api, member)] == [
        ("Mine again", False),
        ("Renamed", False),
    ]


async def test_i3_a_referenced_primary_cannot_be_edited(api: Api) -> None:
    master = await api.account("Master")
    await api.bill_to(master, "HQ", invoiceTitle="Enterprise Ltd")
    member = await api.account("Member")
    await api.link(master, member)
    own = await api.bill_to(member, "Member AP")
    other = await api.bill_to(member, "Member other")
    await api.ok(
        "referenceMasterInvoiceInfo",
        REFERENCE,
        {"masterId": master, "memberIds": [member], "enabled": True},
    )
    before = await all_bill_tos(api)
    for token in (OPERATOR_TOKEN, await api.token(master), await api.token(member)):
        for name, query, input, field in (
            ("updateBillTo", UPDATE_BILL_TO, {"billToId": own, "name": "x"}, "billToId"),
            ("updateBillTo", UPDATE_BILL_TO, {"billToId": other, "isPrimary": True}, "isPrimary"),
            (
                "addBillTo",
                ADD_BILL_TO,
                {"accountId": member, "name": "y", "isPrimary": True},
                "isPrimary",
            ),
            ("removeBillTo", REMOVE_BILL_TO, {"billToId": own, "newPrimaryId": other}, "billToId"),
            (
                "removeBillTo",
                REMOVE_BILL_TO,
                {"billToId": other, "newPrimaryId": own},
                "newPrimaryId",
            ),
        ):
            payload = await api.mutate(name, query, input, token)
            assert codes(payload) == [("REFERENCED_READ_ONLY", [field])], (name, input)
    payload = await api.mutate(
        "setMemberInvoiceInfo", SET_INFO, {"masterId": master, "memberIds": [member], **INFO}
    )
    assert codes(payload) == [("REFERENCED_READ_ONLY", ["memberIds", "0"])]
    assert await all_bill_tos(api) == before


async def test_i3_reference_needs_manage_invoices_per_member(api: Api) -> None:
    master = await api.account("Master")
    await api.bill_to(master, "HQ")
    granted = await api.account("Granted")
    await api.link(master, granted, permissions=ALL_PERMISSIONS)
    withheld = await api.account("Withheld")
    await api.link(master, withheld, permissions=["VIEW_FINANCE"])
    await api.bill_to(withheld, "Withheld AP")
    stranger = await api.account("Stranger")
    payload = await api.mutate(
        "referenceMasterInvoiceInfo",
        REFERENCE,
        {"masterId": master, "memberIds": [withheld, granted, stranger], "enabled": True},
        await api.token(master),
    )
    assert codes(payload) == [
        ("PERMISSION_NOT_GRANTED", ["memberIds", "0"]),
        ("NOT_FOUND", ["memberIds", "2"]),
    ]
    [account] = payload["accounts"]
    assert account["id"] == granted and account["primaryBillTo"]["name"] == "HQ"
    found = (await api.gql(BILL_TOS, {"id": withheld}))["account"]
    assert found["link"] == {"referencesMasterInvoiceInfo": False}
    assert [b["name"] for b in found["billTos"]] == ["Withheld AP"]
    payload = await api.mutate(
        "referenceMasterInvoiceInfo",
        REFERENCE,
        {"masterId": master, "memberIds": [granted], "enabled": True},
        await api.token(granted),
    )
    assert codes(payload) == [("NOT_FOUND", ["masterId"])]
