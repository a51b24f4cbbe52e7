"""Invoice documents (B4, P2): ``Invoice.documentUrl`` gives a signed same-host URL; the
PDF and HTML are served to principals who see the invoice, and 404 to everyone else."""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from accountgraph.api import ids
from accountgraph.api.auth import Principal, PrincipalKind
from accountgraph.billing import documents
from accountgraph.config import Settings
from tests.billing.invoice_support import charge, discount, issued
from tests.helpers import DISSOCIATE, OPERATOR_TOKEN, Api

URL = """
query($id: ID!, $format: DocumentFormat!) { node(id: $id) { ... on Invoice {
  number total pdf: documentUrl html: documentUrl(format: HTML) other: documentUrl(format: $format)
} } }"""


@dataclass
class World:
    master: str
    master_token: str
    invoice: str  # a FINANCIAL member's own invoice, seen by its master (VIEW_FINANCE)
    member: str
    member_token: str
    link: str
    sibling_token: str
    stranger_token: str


async def world(api: Api) -> World:
    master = await api.account("Master")
    member = await api.account("<script>alert(1)</script> & Co")
    link = await api.link(master, member, type="FINANCIAL")
    sibling = await api.account("Sibling")
    await api.link(master, sibling, type="FINANCIAL")
    await api.bill_to(
        member,
        "Accounts payable",
        invoiceTitle="Müller & Söhne GmbH",
        taxId="DE-123",
        address="Hauptstraße 1, Köln",
        email="ap@example.com",
    )
    await charge(api, member, "123.45", "2031-01-02T00:00:00Z")
    await discount(api, member, "10")
    [invoice] = await issued(api, member, "2031-01-01", "2031-01-31")
    return World(
        master,
        await api.token(master),
        invoice["id"],
        member,
        await api.token(member),
        link,
        await api.token(sibling),
        await api.token(await api.account("Stranger")),
    )


async def urls(api: Api, invoice: str, token: str) -> dict[str, str]:
    found = (await api.gql(URL, {"id": invoice, "format": "PDF"}, token))["node"]
    assert found is not None
    result: dict[str, str] = found
    return result


async def test_documents_are_served_to_who_sees_the_invoice(api: Api) -> None:
    w = await world(api)
    for token in (w.master_token, w.member_token, OPERATOR_TOKEN):
        found = await urls(api, w.invoice, token)
        assert found["pdf"].startswith(f"/documents/invoices/{w.invoice}.pdf?token=")
        assert found["html"].startswith(f"/documents/invoices/{w.invoice}.html?token=")
        pdf = await api.client.get(found["pdf"])
        assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
        assert pdf.content.startswith(b"%PDF")
        assert pdf.headers["cache-control"] == "private, no-store"
        page = await api.client.get(found["html"])
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        body = page.text
        for shown in (
            found["number"],
            "123.45",
            "12.35",
            "111.10",
            "Müller &amp; Söhne GmbH",
            "DE-123",
            "2031-01-01 to 2031-01-31",
        ):
            assert shown in body, shown
        assert "<script>" not in body and "&lt;script&gt;" in body  # every value escaped


async def test_documents_accept_a_bearer_header_instead_of_the_token(api: Api) -> None:
    w = await world(api)
    path = f"/documents/invoices/{w.invoice}.pdf"
    for token, status in (
        (w.master_token, 200),
        (w.member_token, 200),
        (OPERATOR_TOKEN, 200),
        (w.sibling_token, 404),
        (w.stranger_token, 404),
        ("agt_wrong", 404),
    ):
        response = await api.client.get(path, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == status, token
    assert (await api.client.get(path)).status_code == 404  # no token, no header


async def test_documents_refuse_bad_expired_and_foreign_tokens(
    api: Api, settings: Settings
) -> None:
    w = await world(api)
    found = await urls(api, w.invoice, w.master_token)
    token = parse_qs(urlsplit(found["pdf"]).query)["token"][0]
    path = urlsplit(found["pdf"]).path
    invoice_id, master_id = ids.decode_as(w.invoice, "Invoice"), ids.decode_as(w.master, "Account")
    assert invoice_id is not None and master_id is not None
    other_invoice = ids.encode("Invoice", invoice_id + 1)
    subject, expires, signature = token.split(".")
    expired = documents.sign(
        settings,
        Principal(PrincipalKind.ACCOUNT_USER, master_id, "t"),
        invoice_id,
        now_s=time.time() - settings.document_url_ttl_s - 1,
    )
    for url in (
        f"{path}?token={subject}.{expires}.{signature[:-2]}AA",  # tampered signature
        f"{path}?token={subject}.{int(expires) + 60}.{signature}",  # extended expiry
        f"{path}?token=o.{expires}.{signature}",  # claims to be an operator
        f"{path}?token=",
        f"{path}?token=garbage",
        f"{path}?token={expired}",
        f"/documents/invoices/{other_invoice}.pdf?token={token}",  # another invoice
        f"/documents/invoices/{w.invoice}.txt?token={token}",
        f"/documents/invoices/{w.master}.pdf?token={token}",  # not an invoice id
        f"/documents/invoices/{w.invoice}?token={token}",
    ):
        assert (await api.client.get(url)).status_code == 404, url
    assert (await api.client.get(found["pdf"])).status_code == 200
    # With the header: whose header it is counts, the token in the URL decides when given.
    response = await api.client.get(
        f"{path}?token=garbage", headers={"Authorization": f"Bearer {w.master_token}"}
    )
    assert response.status_code == 404


async def test_documents_recheck_visibility_when_served(api: Api) -> None:
    """A link handed out while the master saw the member's invoice stops working once it
    no longer does (U5: after the dissociation)."""
    w = await world(api)
    found = await urls(api, w.invoice, w.master_token)
    assert (await api.client.get(found["html"])).status_code == 200
    await api.ok("dissociateMember", DISSOCIATE, {"linkId": w.link}, w.member_token)
    assert (await api.client.get(found["html"])).status_code == 404
    assert (await api.client.get(found["pdf"])).status_code == 404
    # ... while the member's own still does.
    own = await urls(api, w.invoice, w.member_token)
    assert (await api.client.get(own["pdf"])).status_code == 200


async def test_documents_of_a_responsible_account_stay_with_it(api: Api) -> None:
    """P3: a trusteeship member sees neither its master's invoices nor their documents."""
    master = await api.account("Master")
    master_token = await api.token(master)
    member = await api.account("Member")
    await api.link(master, member)
    await charge(api, member, "5.00", "2031-01-02T00:00:00Z")
    [invoice] = await issued(api, master, "2031-01-01", "2031-01-31", token=master_token)
    assert invoice["lines"][0]["member"]["id"] == member
    member_token = await api.token(member)
    assert (await api.gql(URL, {"id": invoice["id"], "format": "HTML"}, member_token))[
        "node"
    ] is None
    path = f"/documents/invoices/{invoice['id']}.html"
    response = await api.client.get(path, headers={"Authorization": f"Bearer {member_token}"})
    assert response.status_code == 404
    response = await api.client.get(path, headers={"Authorization": f"Bearer {master_token}"})
    assert response.status_code == 200 and "Member, no site (1 charge)" in response.text
