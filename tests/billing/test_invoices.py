"""B1-B4, H4, U4 (discounts): bill cycles, invoices, discounts and invoice modes through the
real API. The enterprise cycles are checked line by line against numbers worked out by
hand; a property test checks Σ invoice totals against the period's discounted charges."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from tests.billing.invoice_support import (
    INVOICES,
    NODE,
    SET_DISCOUNT,
    SET_MODE,
    charge,
    counts,
    discount,
    issued,
    lines,
    run,
    totals,
)
from tests.conftest import StatementCounter
from tests.funds.support import pay
from tests.helpers import DISSOCIATE, OPERATOR_TOKEN, Api

JANUARY = ("2031-01-01", "2031-01-31")
FEBRUARY = ("2031-02-01", "2031-02-28")


# ---------------------------------------------------------------- the worked enterprise


@dataclass
class Books:
    master: str
    hq: str
    branch: str
    members: dict[str, str] = field(default_factory=dict)
    sites: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)


async def enterprise(api: Api) -> Books:
    """Master 'Enterprise' (10 %) with three trusteeship members, two sites each:
    Member-A (5 %) and Member-B (12.5 %) got their discounts before the association (U4),
    Member-C has none; and the charges of January and February 2031."""
    master = await api.account("Enterprise")
    hq = await api.bill_to(master, "Enterprise HQ", invoiceTitle="Enterprise Ltd", taxId="TAX-1")
    books = Books(master, hq, await api.bill_to(master, "Enterprise Branch"))
    books.sites["HQ"] = await api.site(master, "HQ", hq)
    for letter, percent in (("A", "5"), ("B", "12.5"), ("C", None)):
        member = await api.account(f"Member-{letter}")
        if percent is not None:
            await discount(api, member, percent)
        bill_to = await api.bill_to(member, f"Member-{letter} AP")
        for number in (1, 2):
            books.sites[f"{letter}{number}"] = await api.site(member, f"{letter}{number}", bill_to)
        await api.link(master, member)
        books.members[letter] = member
        books.tokens[letter] = await api.token(member)
    books.tokens["M"] = await api.token(master)
    await discount(api, master, "10")
    await january_and_february(api, books)
    return books


async def january_and_february(api: Api, books: Books) -> None:
    m, s = books.members, books.sites
    for account, amount, at, site in (
        (books.master, "10.00", "2031-01-05T10:00:00Z", None),
        (m["A"], "100.00", "2031-01-01T00:00:00Z", s["A1"]),  # first instant of the period
        (m["A"], "23.45", "2031-01-31T23:59:59Z", s["A1"]),  # last second of it
        (m["A"], "5.00", "2030-12-31T23:59:59Z", s["A1"]),  # before: never in these cycles
        (m["A"], "80.10", "2031-01-10T00:00:00Z", s["A2"]),
        (m["B"], "19.99", "2031-01-11T00:00:00Z", s["B1"]),
        (m["B"], "200.00", "2031-01-12T00:00:00Z", s["B2"]),
        (m["B"], "0.01", "2031-01-13T00:00:00Z", s["B2"]),
        (m["C"], "55.55", "2031-01-14T00:00:00Z", s["C1"]),
        (m["C"], "44.45", "2031-01-15T00:00:00Z", s["C2"]),
        (books.master, "30.00", "2031-02-02T00:00:00Z", s["HQ"]),
        (m["A"], "43.00", "2031-02-01T00:00:00Z", s["A1"]),  # February's, not January's
        (m["A"], "7.00", "2031-02-14T00:00:00Z", s["A1"]),
        (m["A"], "33.33", "2031-02-15T00:00:00Z", s["A2"]),
        (m["B"], "12.34", "2031-02-16T00:00:00Z", s["B1"]),
        (m["B"], "99.99", "2031-02-17T00:00:00Z", s["B2"]),
        (m["C"], "10.00", "2031-02-28T23:59:59Z", s["C1"]),
    ):
        await charge(api, account, amount, at, site)


# January: the master's 10 % overrides the members' own (B3) on every rolled-up line.
JANUARY_LINES = [
    (None, None, "Own usage, no site (1 charge)", "10.00", "10.00", "1.00", "9.00"),
    ("Member-A", "A1", "Member-A, site A1 (2 charges)", "123.45", "10.00", "12.35", "111.10"),
    ("Member-A", "A2", "Member-A, site A2 (1 charge)", "80.10", "10.00", "8.01", "72.09"),
    ("Member-B", "B1", "Member-B, site B1 (1 charge)", "19.99", "10.00", "2.00", "17.99"),
    ("Member-B", "B2", "Member-B, site B2 (2 charges)", "200.01", "10.00", "20.00", "180.01"),
    ("Member-C", "C1", "Member-C, site C1 (1 charge)", "55.55", "10.00", "5.56", "49.99"),
    ("Member-C", "C2", "Member-C, site C2 (1 charge)", "44.45", "10.00", "4.45", "40.00"),
]
# February, after the master's discount was removed: each member's own applies (B3).
FEBRUARY_LINES = [
    (None, "HQ", "Own usage, site HQ (1 charge)", "30.00", "0.00", "0.00", "30.00"),
    ("Member-A", "A1", "Member-A, site A1 (2 charges)", "50.00", "5.00", "2.50", "47.50"),
    ("Member-A", "A2", "Member-A, site A2 (1 charge)", "33.33", "5.00", "1.67", "31.66"),
    ("Member-B", "B1", "Member-B, site B1 (1 charge)", "12.34", "12.50", "1.54", "10.80"),
    ("Member-B", "B2", "Member-B, site B2 (1 charge)", "99.99", "12.50", "12.50", "87.49"),
    ("Member-C", "C1", "Member-C, site C1 (1 charge)", "10.00", "0.00", "0.00", "10.00"),
]


async def test_b2_b3_b4_aggregated_cycles_of_an_enterprise(api: Api) -> None:
    books = await enterprise(api)

    [january] = await issued(api, books.master, *JANUARY, token=books.tokens["M"])
    assert lines(january) == JANUARY_LINES
    assert totals(january) == ("533.55", "53.37", "480.18")
    assert (january["periodStart"], january["periodEnd"]) == JANUARY
    assert january["account"]["id"] == books.master and january["member"] is None
    assert january["billTo"] == {"id": books.hq, "name": "Enterprise HQ"}  # H4: primary

    await discount(api, books.master, None)
    [february] = await issued(api, books.master, *FEBRUARY)
    assert lines(february) == FEBRUARY_LINES
    assert totals(february) == ("235.66", "18.21", "217.45")

    # B2: a second run of either period issues nothing and changes nothing.
    before = await counts(api.engine)
    assert await issued(api, books.master, *JANUARY) == []
    assert await issued(api, books.master, *FEBRUARY) == []
    assert await counts(api.engine) == before


async def test_b2_b3_b4_per_member_cycles_of_an_enterprise(api: Api) -> None:
    books = await enterprise(api)
    await api.ok(
        "setInvoiceMode",
        SET_MODE,
        {"accountId": books.master, "mode": "PER_MEMBER"},
        books.tokens["M"],
    )

    january = await issued(api, books.master, *JANUARY)
    assert [(i["member"] or {}).get("id") for i in january] == [
        None,
        books.members["A"],
        books.members["B"],
        books.members["C"],
    ]
    assert [lines(i) for i in january] == [
        JANUARY_LINES[:1],
        JANUARY_LINES[1:3],
        JANUARY_LINES[3:5],
        JANUARY_LINES[5:],
    ]
    assert [totals(i) for i in january] == [
        ("10.00", "1.00", "9.00"),
        ("203.55", "20.36", "183.19"),
        ("220.00", "22.00", "198.00"),
        ("100.00", "10.01", "89.99"),
    ]
    assert {i["billTo"]["id"] for i in january} == {books.hq}
    assert {i["account"]["id"] for i in january} == {books.master}

    await discount(api, books.master, None)
    february = await issued(api, books.master, *FEBRUARY, bill_to=books.branch)
    assert [lines(i) for i in february] == [
        FEBRUARY_LINES[:1],
        FEBRUARY_LINES[1:3],
        FEBRUARY_LINES[3:5],
        FEBRUARY_LINES[5:],
    ]
    assert [totals(i) for i in february] == [
        ("30.00", "0.00", "30.00"),
        ("83.33", "4.17", "79.16"),
        ("112.33", "14.04", "98.29"),
        ("10.00", "0.00", "10.00"),
    ]
    assert {i["billTo"]["id"] for i in february} == {books.branch}  # H4: the one named

    before = await counts(api.engine)
    assert await issued(api, books.master, *FEBRUARY, bill_to=books.branch) == []
    assert await counts(api.engine) == before


# ---------------------------------------------------------------- B1, B2 rules


async def test_b1_a_managed_account_is_never_invoiced(api: Api) -> None:
    books = await enterprise(api)
    before = await counts(api.engine)
    for token in (OPERATOR_TOKEN, books.tokens["A"]):
        payload = await run(api, books.members["A"], *JANUARY, token=token)
        assert payload["invoices"] == []
        assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
            ("NOT_ALLOWED_WHILE_ASSOCIATED", ["accountId"])
        ]
    assert await counts(api.engine) == before


async def test_b1_financial_members_and_standalone_accounts_are_invoiced_themselves(
    api: Api,
) -> None:
    master = await api.account("Master")
    member = await api.account("Financial")
    await api.link(master, member, type="FINANCIAL")
    await charge(api, master, "1.00", "2031-01-02T00:00:00Z")
    await charge(api, member, "2.00", "2031-01-02T00:00:00Z")
    [own] = await issued(api, master, *JANUARY)
    assert lines(own) == [
        (None, None, "Own usage, no site (1 charge)", "1.00", "0.00", "0.00", "1.00")
    ]
    [financial] = await issued(api, member, *JANUARY)
    assert financial["account"]["id"] == member and totals(financial) == ("2.00", "0.00", "2.00")


async def test_b2_cycle_needs_the_account_s_own_users_or_an_operator(api: Api) -> None:
    books = await enterprise(api)
    stranger = await api.token(await api.account("Stranger"))
    financial = await api.account("Financial")
    await api.link(books.master, financial, type="FINANCIAL")
    before = await counts(api.engine)
    for account, token, code in (
        (books.master, books.tokens["A"], "NOT_FOUND"),  # a member sees its master's name
        (books.master, stranger, "NOT_FOUND"),
        (financial, books.tokens["M"], "PERMISSION_NOT_GRANTED"),  # its master: not its own
    ):
        payload = await run(api, account, *JANUARY, token=token)
        assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
            (code, ["accountId"])
        ], (account, token)
    assert await counts(api.engine) == before


async def test_b2_refused_inputs_change_nothing(api: Api) -> None:
    books = await enterprise(api)
    other = await api.bill_to(books.members["A"], "Not the master's")
    before = await counts(api.engine)
    for start, end, bill_to, code, field_name in (
        ("2031-01-31", "2031-01-01", None, "INVALID_INPUT", "periodEnd"),
        (*JANUARY, other, "NOT_FOUND", "billToId"),
        (*JANUARY, books.members["A"], "NOT_FOUND", "billToId"),  # not a BillTo id
    ):
        payload = await run(api, books.master, start, end, bill_to)
        assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [(code, [field_name])]
    assert await counts(api.engine) == before
    assert len(await issued(api, books.master, *JANUARY)) == 1  # the cycle was not recorded


async def test_b2_a_charge_is_invoiced_once_across_overlapping_periods(api: Api) -> None:
    books = await enterprise(api)
    [january] = await issued(api, books.master, *JANUARY)
    # A period overlapping January and February: only February's charges are left.
    [overlap] = await issued(api, books.master, "2031-01-15", "2031-02-28")
    assert totals(overlap) == ("235.66", "23.56", "212.10")  # February's, at 10 %
    assert [line[:4] for line in lines(overlap)] == [line[:4] for line in FEBRUARY_LINES]
    assert await issued(api, books.master, *FEBRUARY) == []  # nothing left to invoice
    async with api.engine.connect() as conn:
        invoiced = (
            await conn.execute(
                text("SELECT count(*), count(DISTINCT charge_id) FROM invoiced_charges")
            )
        ).one()
    assert tuple(invoiced) == (16, 16)
    assert january["total"] == "480.18"


async def test_b2_an_empty_cycle_issues_nothing(api: Api) -> None:
    account = await api.account("Quiet")
    assert await issued(api, account, *JANUARY) == []
    assert (await counts(api.engine))["invoices"] == 0


async def test_b1_u2_u5_charges_follow_the_association_window(api: Api) -> None:
    """Charges before the association are the member's own (U2); those during it are its
    master's, even when invoiced after the dissociation; those after it its own again."""
    master = await api.account("Master")
    member = await api.account("Member")
    await charge(api, member, "1.00", "2020-01-15T00:00:00Z")  # before the association
    await pay(api, member, "1.00")  # U1: no outstanding fees when it joins
    link = await api.link(master, member)
    await charge(api, member, "2.00", datetime.now(UTC).isoformat())  # after activation
    await api.ok("dissociateMember", DISSOCIATE, {"linkId": link})
    after = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    await charge(api, member, "4.00", after)
    period = ("2020-01-01", (datetime.now(UTC) + timedelta(days=2)).date().isoformat())

    [masters] = await issued(api, master, *period, token=await api.token(master))
    assert [line[0] for line in lines(masters)] == [None]  # P3: invisible to it now
    assert masters["lines"][0]["description"] == "Member, no site (1 charge)"
    assert totals(masters) == ("2.00", "0.00", "2.00")
    [own] = await issued(api, member, *period)
    assert totals(own) == ("5.00", "0.00", "5.00")


async def test_h4_self_invoiced_account_gets_one_invoice_per_bill_to(api: Api) -> None:
    account = await api.account("Standalone")
    primary = await api.bill_to(account, "Head office")
    plant = await api.bill_to(account, "Plant")
    office = await api.site(account, "Office", primary)
    factory = await api.site(account, "Factory", plant)
    await charge(api, account, "3.00", "2031-01-02T00:00:00Z", factory)
    await charge(api, account, "1.00", "2031-01-02T00:00:00Z", office)
    await charge(api, account, "2.00", "2031-01-03T00:00:00Z")  # no site: the primary
    await discount(api, account, "50")
    invoices = await issued(api, account, *JANUARY)
    assert [(i["billTo"]["name"], totals(i)) for i in invoices] == [
        ("Head office", ("3.00", "1.50", "1.50")),
        ("Plant", ("3.00", "1.50", "1.50")),
    ]
    assert [line[1] for line in lines(invoices[0])] == [None, "Office"]


async def test_h4_a_named_bill_to_takes_every_line(api: Api) -> None:
    account = await api.account("Standalone")
    primary = await api.bill_to(account, "Head office")
    plant = await api.bill_to(account, "Plant")
    factory = await api.site(account, "Factory", plant)
    await charge(api, account, "3.00", "2031-01-02T00:00:00Z", factory)
    await charge(api, account, "2.00", "2031-01-03T00:00:00Z")
    [invoice] = await issued(api, account, *JANUARY, bill_to=primary)
    assert invoice["billTo"]["name"] == "Head office" and invoice["total"] == "5.00"


async def test_b4_invoices_are_never_edited_and_their_bill_to_may_go(api: Api) -> None:
    account = await api.account("Standalone")
    first = await api.bill_to(account, "First")
    second = await api.bill_to(account, "Second")
    await charge(api, account, "3.00", "2031-01-02T00:00:00Z")
    [invoice] = await issued(api, account, *JANUARY)
    async with api.engine.connect() as conn:
        with pytest.raises(Exception, match="never edited"):
            await conn.execute(text("UPDATE invoices SET total = 0, subtotal = 0"))
    # The invoice keeps what it said; the bill-to record itself may be removed.
    await api.ok(
        "removeBillTo",
        """
        mutation($input: RemoveBillToInput!) { removeBillTo(input: $input) {
          account { id } userErrors { code field message } } }""",
        {"billToId": first, "newPrimaryId": second},
    )
    found = (await api.gql(NODE.replace("total", "total billTo { id }"), {"id": invoice["id"]}))[
        "node"
    ]
    assert found["billTo"] is None and found["total"] == "3.00"


# ---------------------------------------------------------------- discounts (B3, U4)


async def test_b3_set_discount_validates_the_percent(api: Api) -> None:
    account = await api.account("Standalone")
    percent: str | None  # None clears the discount (the last case below)
    for percent in ("100.01", "-1", "1.234", "abc", "1e2", "NaN"):
        payload = await api.mutate(
            "setDiscount", SET_DISCOUNT, {"accountId": account, "percent": percent}
        )
        assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
            ("INVALID_AMOUNT", ["percent"])
        ], percent
    assert (await counts(api.engine))["discounts"] == 0
    for percent, shown in (("0", "0.00"), ("100", "100.00"), ("12.5", "12.50"), (None, None)):
        payload = await api.ok(
            "setDiscount", SET_DISCOUNT, {"accountId": account, "percent": percent}
        )
        assert payload["account"]["discountPercent"] == shown


async def test_b3_p4_only_operators_give_discounts(api: Api) -> None:
    account = await api.account("Standalone")
    body = await api.raw(
        SET_DISCOUNT, {"input": {"accountId": account, "percent": "5"}}, await api.token(account)
    )
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    payload = await api.mutate(
        "setDiscount", SET_DISCOUNT, {"accountId": "QWNjb3VudDo5OTk5", "percent": "5"}
    )
    assert [e["code"] for e in payload["userErrors"]] == ["NOT_FOUND"]
    assert (await counts(api.engine))["discounts"] == 0


async def test_u4_no_discount_for_an_associated_trusteeship_member(api: Api) -> None:
    books = await enterprise(api)
    before = await counts(api.engine)
    for member, percent in (
        (books.members["A"], "7"),
        (books.members["A"], None),
        (books.members["C"], "7"),
    ):
        payload = await api.mutate(
            "setDiscount", SET_DISCOUNT, {"accountId": member, "percent": percent}
        )
        assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
            ("NOT_ALLOWED_WHILE_ASSOCIATED", ["accountId"])
        ]
    assert await counts(api.engine) == before
    # The discount it had before the association stays (and applied by B3 above).
    found = (await api.gql(INVOICES, {"id": books.members["A"]}))["account"]
    assert found["discountPercent"] == "5.00"
    # A FINANCIAL member is not managed: it may get one.
    financial = await api.account("Financial")
    await api.link(books.master, financial, type="FINANCIAL")
    await discount(api, financial, "3")


async def test_b3_p2_discount_percent_is_shown_with_finance_visibility(api: Api) -> None:
    master = await api.account("Master")
    seen = await api.account("Sees")
    hidden = await api.account("Hides")
    for account in (seen, hidden):
        await discount(api, account, "4")
    await api.link(master, seen, type="FINANCIAL")
    await api.link(master, hidden, type="FINANCIAL", permissions=["MANAGE_INVOICES"])
    token = await api.token(master)
    for account, shown in ((seen, "4.00"), (hidden, None)):
        found = (await api.gql(INVOICES, {"id": account}, token))["account"]
        assert found["discountPercent"] == shown
        assert found["invoiceMode"] == "AGGREGATED"


# ---------------------------------------------------------------- invoice mode (B2)


async def test_b2_invoice_mode_defaults_and_is_set_by_own_users_or_operators(api: Api) -> None:
    books = await enterprise(api)
    found = (await api.gql(INVOICES, {"id": books.master}, books.tokens["M"]))["account"]
    assert found["invoiceMode"] == "AGGREGATED"
    for token, mode in ((books.tokens["M"], "PER_MEMBER"), (OPERATOR_TOKEN, "AGGREGATED")):
        payload = await api.ok(
            "setInvoiceMode", SET_MODE, {"accountId": books.master, "mode": mode}, token
        )
        assert payload["account"]["invoiceMode"] == mode
    # A managed account has none, and cannot set one.
    member = (await api.gql(INVOICES, {"id": books.members["A"]}, books.tokens["A"]))["account"]
    assert member["invoiceMode"] is None


async def test_b2_invoice_mode_refusals_change_nothing(api: Api) -> None:
    books = await enterprise(api)
    stranger = await api.token(await api.account("Stranger"))
    financial = await api.account("Financial")
    await api.link(books.master, financial, type="FINANCIAL")
    before = await counts(api.engine)
    for account, token, code in (
        (books.members["A"], books.tokens["A"], "NOT_ALLOWED_WHILE_ASSOCIATED"),
        (books.members["A"], OPERATOR_TOKEN, "NOT_ALLOWED_WHILE_ASSOCIATED"),
        (books.members["A"], books.tokens["M"], "PERMISSION_NOT_GRANTED"),
        (financial, books.tokens["M"], "PERMISSION_NOT_GRANTED"),
        (books.master, books.tokens["A"], "NOT_FOUND"),
        (books.master, stranger, "NOT_FOUND"),
    ):
        payload = await api.mutate(
            "setInvoiceMode", SET_MODE, {"accountId": account, "mode": "PER_MEMBER"}, token
        )
        assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
            (code, ["accountId"])
        ], (account, token)
        assert payload["account"] is None
    assert await counts(api.engine) == before


# ---------------------------------------------------------------- reading invoices


async def test_b4_invoices_connection_is_newest_first_and_pages(api: Api) -> None:
    account = await api.account("Standalone")
    made = []
    for day in range(1, 6):
        await charge(api, account, f"{day}.00", f"2031-01-{day:02d}T00:00:00Z")
        made += await issued(api, account, f"2031-01-{day:02d}", f"2031-01-{day:02d}")
    pages: list[dict[str, Any]] = []
    after = None
    while True:
        found = (await api.gql(INVOICES, {"id": account, "first": 2, "after": after}))["account"][
            "invoices"
        ]
        assert found["totalCount"] == 5
        pages += [edge["node"] for edge in found["edges"]]
        if not found["pageInfo"]["hasNextPage"]:
            break
        after = found["pageInfo"]["endCursor"]
    assert [i["id"] for i in pages] == [i["id"] for i in reversed(made)]
    assert [i["total"] for i in pages] == ["5.00", "4.00", "3.00", "2.00", "1.00"]


async def test_p2_p3_invoices_are_seen_with_the_account_s_finances(api: Api) -> None:
    books = await enterprise(api)
    [invoice] = await issued(api, books.master, *JANUARY)
    stranger = await api.token(await api.account("Stranger"))
    for token, seen in (
        (books.tokens["M"], True),
        (OPERATOR_TOKEN, True),
        (books.tokens["A"], False),
        (stranger, False),
    ):
        found = (await api.gql(NODE, {"id": invoice["id"]}, token))["node"]
        assert (found is not None) == seen, token
        if seen:
            assert found["total"] == "480.18"
    # A member's users see their own account's (empty) invoices, never the master's.
    found = await api.gql(INVOICES, {"id": books.members["A"]}, books.tokens["A"])
    assert found["account"]["invoices"]["totalCount"] == 0


# ---------------------------------------------------------------- property (B2-B4)


def _round(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


PERCENTS = st.one_of(st.none(), st.integers(0, 10_000).map(lambda c: Decimal(c) / 100))
CHARGES = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.integers(0, 2),
        st.integers(1, 100_000).map(lambda c: Decimal(c) / 100),
        st.integers(0, 30 * 24 * 3600 - 1),
    ),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=15,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    master_percent=PERCENTS,
    member_percents=st.lists(PERCENTS, min_size=3, max_size=3),
    charges=CHARGES,
    mode=st.sampled_from(["AGGREGATED", "PER_MEMBER"]),
)
async def test_b2_b3_b4_cycle_totals_are_the_discounted_charges_of_the_period(
    api: Api,
    master_percent: Decimal | None,
    member_percents: list[Decimal | None],
    charges: list[tuple[int, int, Decimal, int]],
    mode: str,
) -> None:
    """Accounts: 0 the master, 1-2 its trusteeship members, 3 a FINANCIAL member (invoiced
    itself). Σ totals of the master's cycle = Σ over (member, site) groups of the amount
    less its discount (B3), and so for the FINANCIAL member's own cycle; again: nothing."""
    master = await api.account("Master")
    accounts = [master]
    sites: list[list[str | None]] = []
    for number, percent in enumerate(member_percents, start=1):
        account = await api.account(f"Member-{number}")
        if percent is not None:
            await discount(api, account, str(percent))
        accounts.append(account)
    for account in accounts:
        bill_to = await api.bill_to(account, "AP")
        sites.append(
            [None, await api.site(account, "S1", bill_to), await api.site(account, "S2", bill_to)]
        )
    for number, account in enumerate(accounts[1:], start=1):
        await api.link(master, account, type="FINANCIAL" if number == 3 else "TRUSTEESHIP")
    if master_percent is not None:
        await discount(api, master, str(master_percent))
    await api.ok("setInvoiceMode", SET_MODE, {"accountId": master, "mode": mode})
    groups: dict[tuple[int, int], Decimal] = {}
    start = datetime(2031, 3, 1, tzinfo=UTC)
    for who, where, amount, second in charges:
        at = (start + timedelta(seconds=second)).isoformat()
        await charge(api, accounts[who], str(amount), at, sites[who][where])
        groups[(who, where)] = groups.get((who, where), Decimal(0)) + amount
    await charge(api, accounts[1], "9.99", "2031-04-01T00:00:00Z")  # after the period

    def percent_of(who: int) -> Decimal:
        if who == 3:
            return member_percents[2] or Decimal(0)
        own = master_percent  # B3: the master's, where it has one, overrides
        if own is None and who != 0:
            own = member_percents[who - 1]
        return own if own is not None else Decimal(0)

    expected = {0: Decimal(0), 3: Decimal(0)}
    for (who, _), amount in groups.items():
        payer = 3 if who == 3 else 0
        expected[payer] += amount - _round(amount * percent_of(who) / 100)
    for payer in (0, 3):
        invoices = await issued(api, accounts[payer], "2031-03-01", "2031-03-30")
        assert sum((Decimal(i["total"]) for i in invoices), Decimal(0)) == expected[payer]
        for invoice in invoices:
            assert Decimal(invoice["total"]) == sum(
                Decimal(line["net"]) for line in invoice["lines"]
            )
        before = await counts(api.engine)
        assert await issued(api, accounts[payer], "2031-03-01", "2031-03-30") == []
        assert await counts(api.engine) == before


# ---------------------------------------------------------------- no N+1


WIDE = """
query($id: ID!) { account(id: $id) { invoices(first: 50) { edges { node {
  id total billTo { name } member { name } documentUrl
  lines { description net member { name discountPercent } site { name billTo { name } } }
} } } } }"""


async def test_reading_invoices_does_not_grow_statements_with_their_number(
    api: Api, statements: StatementCounter
) -> None:
    """PER_MEMBER invoices of 1 member against 4: the same number of SQL statements."""
    counted = []
    for size in (1, 4):
        master = await api.account(f"Master of {size}")
        await api.bill_to(master, "HQ")
        for number in range(size):
            member = await api.account(f"Member {number}")
            bill_to = await api.bill_to(member, "AP")
            site = await api.site(member, "Site", bill_to)
            await api.link(master, member)
            await charge(api, member, "1.00", "2031-01-02T00:00:00Z", site)
            await charge(api, member, "2.00", "2031-01-03T00:00:00Z")
        await api.ok("setInvoiceMode", SET_MODE, {"accountId": master, "mode": "PER_MEMBER"})
        assert len(await issued(api, master, *JANUARY)) == size
        token = await api.token(master)
        before = statements.count
        found = (await api.gql(WIDE, {"id": master}, token))["account"]["invoices"]["edges"]
        counted.append(statements.count - before)
        assert len(found) == size and all(len(e["node"]["lines"]) == 2 for e in found)
    assert counted[0] == counted[1], counted
