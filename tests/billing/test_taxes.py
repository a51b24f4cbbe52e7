"""T1, T2: tax groups, accounts' default tax groups, site tax groups, and the tax of every
invoice line (the rate chosen by T2, half-up per line), through the real API."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from tests.billing.invoice_support import charge, discount, issued
from tests.billing.tax_support import (
    ADD_SITE,
    CREATE_TAX_GROUP,
    SET_ACCOUNT_TAX_GROUP,
    TAX_GROUPS,
    UPDATE_SITE,
    default_tax_group,
    forbidden,
    refused,
    site,
    tax_group,
)
from tests.funds.support import pair
from tests.helpers import Api

JANUARY = ("2031-01-01", "2031-01-31")
ON = "2031-01-10T00:00:00Z"
INVOICE_TAX = """
query($id: ID!) {
  account(id: $id) {
    invoices { edges { node { subtotal discountTotal taxTotal total
      lines { member { id } site { id } net taxRate tax } } } }
  }
}"""


NODE = """
query($id: ID!) { node(id: $id) { __typename ... on TaxGroup { code } } }"""


def taxed(invoice: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(line["net"], line["taxRate"], line["tax"]) for line in invoice["lines"]]


# ---------------------------------------------------------------- T1 tax groups


async def test_t1_operators_create_tax_groups_that_everyone_lists(api: Api) -> None:
    member = await pair(api)
    new_york = await tax_group(api, "NY-8_875", "8.875", "New York")
    assert new_york["rate"] == "8.875"  # every place it has, never rounded to 8.88
    created = await tax_group(api, "ZERO", "0")
    assert created["rate"] == "0.00" and created["code"] == "ZERO"
    listed = (await api.gql(TAX_GROUPS, token=member.member_token))["taxGroups"]
    assert [(g["code"], g["name"]) for g in listed] == [("NY-8_875", "New York"), ("ZERO", "ZERO")]
    async with api.engine.connect() as conn:
        rate = (
            await conn.execute(text("SELECT rate::text FROM tax_groups WHERE code = 'NY-8_875'"))
        ).scalar_one()
    assert rate == "8.8750"  # kept exactly (4 places)
    node = await api.gql(NODE, {"id": created["id"]}, member.member_token)
    assert node["node"] == {"__typename": "TaxGroup", "code": "ZERO"}


@pytest.mark.parametrize(
    ("input", "code", "field"),
    [
        ({"code": "", "name": "x", "rate": "1"}, "INVALID_INPUT", ["code"]),
        ({"code": "a" * 33, "name": "x", "rate": "1"}, "INVALID_INPUT", ["code"]),
        ({"code": "VAT 20", "name": "x", "rate": "1"}, "INVALID_INPUT", ["code"]),
        ({"code": "VAT", "name": "  ", "rate": "1"}, "INVALID_INPUT", ["name"]),
        ({"code": "VAT", "name": "x", "rate": "100.01"}, "INVALID_AMOUNT", ["rate"]),
        ({"code": "VAT", "name": "x", "rate": "1.00001"}, "INVALID_AMOUNT", ["rate"]),
        ({"code": "VAT", "name": "x", "rate": "-1"}, "INVALID_AMOUNT", ["rate"]),
        ({"code": "VAT", "name": "x", "rate": "NaN"}, "INVALID_AMOUNT", ["rate"]),
        ({"code": "USED", "name": "x", "rate": "1"}, "CONFLICT", ["code"]),
    ],
)
async def test_t1_a_tax_group_is_refused(
    api: Api, input: dict[str, str], code: str, field: list[str]
) -> None:
    await tax_group(api, "USED", "5")
    await refused(
        api, "createTaxGroup", CREATE_TAX_GROUP, input, code=code, field=field, accounts=[]
    )


async def test_t1_only_operators_create_tax_groups_and_set_defaults(api: Api) -> None:
    member = await pair(api)
    await tax_group(api, "VAT", "20")
    input = {"code": "OTHER", "name": "x", "rate": "1"}
    await forbidden(api, CREATE_TAX_GROUP, input, token=member.master_token, accounts=[])
    await forbidden(
        api,
        SET_ACCOUNT_TAX_GROUP,
        {"accountId": member.master, "taxGroupCode": "VAT"},
        token=member.master_token,
        accounts=[member.master],
    )


async def test_t1_an_accounts_default_tax_group_is_set_and_removed(api: Api) -> None:
    account = await api.account("Standalone")
    await tax_group(api, "VAT", "20")
    payload = await api.ok(
        "setAccountTaxGroup",
        SET_ACCOUNT_TAX_GROUP,
        {"accountId": account, "taxGroupCode": "VAT"},
    )
    assert payload["account"]["taxGroup"] == {"code": "VAT", "rate": "20.00"}
    payload = await api.ok(
        "setAccountTaxGroup", SET_ACCOUNT_TAX_GROUP, {"accountId": account, "taxGroupCode": None}
    )
    assert payload["account"]["taxGroup"] is None


async def test_t1_an_unknown_default_tax_group_is_refused(api: Api) -> None:
    account = await api.account("Standalone")
    await refused(
        api,
        "setAccountTaxGroup",
        SET_ACCOUNT_TAX_GROUP,
        {"accountId": account, "taxGroupCode": "NOPE"},
        code="INVALID_INPUT",
        field=["taxGroupCode"],
        accounts=[account],
    )
    await refused(
        api,
        "setAccountTaxGroup",
        SET_ACCOUNT_TAX_GROUP,
        {"accountId": "QWNjb3VudDo5OTk5", "taxGroupCode": None},
        code="NOT_FOUND",
        field=["accountId"],
        accounts=[account],
    )


async def test_t1_a_sites_tax_group_is_a_known_code(api: Api) -> None:
    account = await api.account("Standalone")
    bill_to = await api.bill_to(account, "AP")
    await tax_group(api, "VAT", "20")
    site_id = await site(api, account, "Plant", bill_to, "VAT")
    await refused(
        api,
        "addSite",
        ADD_SITE,
        {"accountId": account, "name": "Other", "billToId": bill_to, "taxGroup": "NOPE"},
        code="INVALID_INPUT",
        field=["taxGroup"],
        accounts=[account],
    )
    await refused(
        api,
        "updateSite",
        UPDATE_SITE,
        {"siteId": site_id, "taxGroup": "NOPE"},
        code="INVALID_INPUT",
        field=["taxGroup"],
        accounts=[account],
    )
    await tax_group(api, "LOW", "5")
    payload = await api.ok("updateSite", UPDATE_SITE, {"siteId": site_id, "taxGroup": "LOW"})
    assert payload["site"]["taxGroup"] == "LOW"


# ---------------------------------------------------------------- T2 tax on invoices


async def test_t2_a_members_own_tax_group_never_applies_to_its_rolled_up_lines(
    api: Api,
) -> None:
    """The responsible account's default taxes its managed accounts' lines; the member's
    own default and its site's tax group are ignored (seed 000: no separate tax
    determination for member accounts)."""
    member = await pair(api)
    await tax_group(api, "MASTER", "10")
    await tax_group(api, "MEMBER", "20")
    await tax_group(api, "SITE", "5")
    await default_tax_group(api, member.master, "MASTER")
    await default_tax_group(api, member.member, "MEMBER")
    member_site = await site(
        api, member.member, "Plant", await api.bill_to(member.member, "AP"), "SITE"
    )
    await charge(api, member.member, "100.00", ON, member_site)
    await charge(api, member.member, "33.33", ON)
    await charge(api, member.master, "50.00", ON)
    [invoice] = await issued(api, member.master, *JANUARY)
    found = (await api.gql(INVOICE_TAX, {"id": member.master}))["account"]["invoices"]
    [node] = [edge["node"] for edge in found["edges"]]
    assert taxed(node) == [
        ("50.00", "10.00", "5.00"),  # the master's own line: its default
        ("33.33", "10.00", "3.33"),  # the member's unsited line: the master's, not MEMBER's
        ("100.00", "10.00", "10.00"),  # the member's sited line: the master's, not SITE's
    ]
    assert (node["subtotal"], node["discountTotal"], node["taxTotal"], node["total"]) == (
        "183.33",
        "0.00",
        "18.33",
        "201.66",
    )
    assert invoice["total"] == "201.66"


async def test_t2_a_responsible_account_without_a_tax_group_taxes_rolled_up_lines_at_zero(
    api: Api,
) -> None:
    member = await pair(api)
    await tax_group(api, "MEMBER", "20")
    await default_tax_group(api, member.member, "MEMBER")
    await charge(api, member.member, "10.00", ON)
    await issued(api, member.master, *JANUARY)
    found = (await api.gql(INVOICE_TAX, {"id": member.master}))["account"]["invoices"]
    [node] = [edge["node"] for edge in found["edges"]]
    assert taxed(node) == [("10.00", "0.00", "0.00")]
    assert (node["taxTotal"], node["total"]) == ("0.00", "10.00")


async def test_t2_own_lines_take_the_sites_tax_group_else_the_accounts_default(
    api: Api,
) -> None:
    account = await api.account("Standalone")
    bill_to = await api.bill_to(account, "AP")
    await tax_group(api, "DEFAULT", "20")
    await tax_group(api, "NY", "8.875")
    taxed_site = await site(api, account, "New York", bill_to, "NY")
    plain_site = await site(api, account, "Plain", bill_to)
    await default_tax_group(api, account, "DEFAULT")
    await charge(api, account, "100.00", ON, taxed_site)
    await charge(api, account, "10.00", ON, plain_site)
    await charge(api, account, "1.00", ON)
    await issued(api, account, *JANUARY)
    found = (await api.gql(INVOICE_TAX, {"id": account}))["account"]["invoices"]
    lines = sorted(line for edge in found["edges"] for line in taxed(edge["node"]))
    # 100 x 8.875 % = 8.875 -> 8.88 (half-up); the plain site and no site: the default.
    assert lines == [
        ("1.00", "20.00", "0.20"),
        ("10.00", "20.00", "2.00"),
        ("100.00", "8.875", "8.88"),
    ]


async def test_t2_tax_is_rounded_half_up_per_line_after_the_discount(api: Api) -> None:
    """Two lines of net 0.50 at 1 %: 0.005 each rounds half-up to 0.01 per line (0.02 in
    all), where the sum's tax would be 0.01 and banker's rounding 0.00."""
    account = await api.account("Standalone")
    bill_to = await api.bill_to(account, "AP")
    await tax_group(api, "ONE", "1")
    first = await site(api, account, "First", bill_to, "ONE")
    second = await site(api, account, "Second", bill_to, "ONE")
    await charge(api, account, "0.50", ON, first)
    await charge(api, account, "0.50", ON, second)
    [invoice] = await issued(api, account, *JANUARY)
    found = (await api.gql(INVOICE_TAX, {"id": account}))["account"]["invoices"]
    [node] = [edge["node"] for edge in found["edges"]]
    assert taxed(node) == [("0.50", "1.00", "0.01"), ("0.50", "1.00", "0.01")]
    assert (node["subtotal"], node["taxTotal"], node["total"]) == ("1.00", "0.02", "1.02")
    assert invoice["total"] == "1.02"


async def test_t2_the_tax_follows_the_discount(api: Api) -> None:
    """net = amount - discount (B3), tax = net x rate (T2): 123.45 at 10 % off is 111.10
    net (12.35 discount, half-up); at 8.875 % that is 9.860... -> 9.86."""
    account = await api.account("Standalone")
    await tax_group(api, "NY", "8.875")
    await default_tax_group(api, account, "NY")
    await discount(api, account, "10")
    await charge(api, account, "123.45", ON)
    await issued(api, account, *JANUARY)
    found = (await api.gql(INVOICE_TAX, {"id": account}))["account"]["invoices"]
    [node] = [edge["node"] for edge in found["edges"]]
    assert taxed(node) == [("111.10", "8.875", "9.86")]
    assert (node["discountTotal"], node["taxTotal"], node["total"]) == ("12.35", "9.86", "120.96")


async def test_t2_the_database_refuses_a_line_whose_tax_is_not_its_rate(api: Api) -> None:
    """The CHECKs back the rule: a tax not half-up of net x rate, or a total without the
    tax, cannot be written."""
    account = await api.account("Standalone")
    await charge(api, account, "10.00", ON)
    await issued(api, account, *JANUARY)
    async with api.engine.connect() as conn:
        invoice_id = (await conn.execute(text("SELECT id FROM invoices"))).scalar_one()
        for statement in (
            "INSERT INTO invoice_lines (invoice_id, description, amount, discount_percent, "
            "discount, net, tax_rate, tax) VALUES (:id, 'x', 1, 0, 0, 1, 10, 0.11)",
            "INSERT INTO invoices (account_id, period_start, period_end, subtotal, "
            "discount_total, tax_total, total) SELECT account_id, period_start, period_end, "
            "10, 0, 1, 10 FROM invoices WHERE id = :id",
        ):
            with pytest.raises(Exception, match="check constraint"):
                async with conn.begin_nested():
                    await conn.execute(text(statement), {"id": invoice_id})


DOCUMENT = """
query($id: ID!) {
  node(id: $id) { ... on Invoice { html: documentUrl(format: HTML) pdf: documentUrl } }
}"""


async def test_t2_the_documents_show_the_tax_of_each_line_and_the_total(api: Api) -> None:
    account = await api.account("Standalone")
    await tax_group(api, "NY", "8.875")
    await default_tax_group(api, account, "NY")
    await charge(api, account, "100.00", ON)
    [invoice] = await issued(api, account, *JANUARY)
    urls = (await api.gql(DOCUMENT, {"id": invoice["id"]}))["node"]
    html = (await api.client.get(urls["html"])).text
    assert "<th class=num>Tax %</th>" in html
    assert "<td class=num>8.875%</td><td class=num>8.88</td>" in html  # the exact rate
    assert "<td colspan=6 class=num>Tax</td>\n<td class=num>8.88</td>" in html
    assert "<td colspan=6 class=num>Total</td>\n<td class=num>108.88</td>" in html
    pdf = await api.client.get(urls["pdf"])
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
