"""W2: auto-pay. The owner of a payment method marks it ``autoPay``; after a bill cycle
commits, the worker pays each issued invoice of an account with an auto-pay method of its
own, once (``Invoice.paidAt``, ``Invoice.payment``), however often the job runs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from accountgraph import outbox
from accountgraph.billing import auto_pay
from tests.billing.invoice_support import charge, issued
from tests.billing.tax_support import (
    SET_AUTO_PAY,
    default_tax_group,
    pending_rows,
    refused,
    run_handler,
    set_auto_pay,
    tax_group,
)
from tests.billing.voucher_support import ADD_MANAGED_METHOD, method
from tests.funds.support import assert_sound, finance, pair
from tests.helpers import Api

JANUARY = ("2031-01-01", "2031-01-31")
ON = "2031-01-10T00:00:00Z"
INVOICES = """
query($id: ID!) {
  account(id: $id) {
    invoices { edges { node { id total taxTotal paidAt
      payment { amount account { id } payer { id } paymentMethod { id } } } } }
  }
}"""


async def invoices(api: Api, account: str, token: str | None = None) -> list[dict[str, Any]]:
    found = await api.gql(INVOICES, {"id": account}, *([token] if token else []))
    return [edge["node"] for edge in found["account"]["invoices"]["edges"]]


async def payments(api: Api) -> int:
    async with api.engine.connect() as conn:
        count: int = (await conn.execute(text("SELECT count(*) FROM payments"))).scalar_one()
    return count


async def taxed_account(api: Api) -> tuple[str, str]:
    """A standalone account with a 10 % default tax group, an auto-pay card, and a charge
    of 100.00 in January (unpaid: outstanding fees)."""
    account = await api.account("Standalone")
    await tax_group(api, "TEN", "10")
    await default_tax_group(api, account, "TEN")
    card = await method(api, account)
    await set_auto_pay(api, card)
    await charge(api, account, "100.00", ON)
    return account, card


async def test_w2_the_owner_marks_its_payment_method_auto_pay(api: Api) -> None:
    member = await pair(api)
    own = await method(api, member.master, token=member.master_token)
    payload = await api.ok(
        "setAutoPay",
        SET_AUTO_PAY,
        {"paymentMethodId": own, "autoPay": True},
        member.master_token,
    )
    assert payload["paymentMethod"] == {"id": own, "autoPay": True}
    managed = (
        await api.ok(
            "addManagedPaymentMethod",
            ADD_MANAGED_METHOD,
            {"paymentMethodId": own, "managedId": member.member},
            member.master_token,
        )
    )["paymentMethod"]["id"]
    # a managed method spends the responsible account's money: its users decide (B5)
    payload = await api.ok(
        "setAutoPay",
        SET_AUTO_PAY,
        {"paymentMethodId": managed, "autoPay": True},
        member.master_token,
    )
    assert payload["paymentMethod"]["autoPay"] is True


async def test_w2_auto_pay_is_refused_to_who_does_not_own_the_method(api: Api) -> None:
    member = await pair(api)
    own = await method(api, member.master)
    managed = (
        await api.ok(
            "addManagedPaymentMethod",
            ADD_MANAGED_METHOD,
            {"paymentMethodId": own, "managedId": member.member},
        )
    )["paymentMethod"]["id"]
    stranger = await api.account("Stranger")
    stranger_token = await api.token(stranger)
    accounts = [member.master, member.member]
    members_own = await method(api, member.member)
    for method_id, token, code in (
        (managed, member.member_token, "PERMISSION_NOT_GRANTED"),  # the member's copy
        (members_own, member.master_token, "PERMISSION_NOT_GRANTED"),  # seen, not owned
        (own, stranger_token, "NOT_FOUND"),
        ("UGF5bWVudE1ldGhvZDo5OTk5", member.master_token, "NOT_FOUND"),
    ):
        await refused(
            api,
            "setAutoPay",
            SET_AUTO_PAY,
            {"paymentMethodId": method_id, "autoPay": True},
            code=code,
            field=["paymentMethodId"],
            accounts=accounts,
            token=token,
        )


async def test_w2_an_issued_invoice_is_paid_once_after_the_cycle(api: Api, run_jobs: Any) -> None:
    account, card = await taxed_account(api)
    [invoice] = await issued(api, account, *JANUARY)
    assert (invoice["total"], (await invoices(api, account))[0]["paidAt"]) == ("110.00", None)
    [(_, job)] = await pending_rows(api.engine, auto_pay.TOPIC)
    await run_jobs()
    [paid] = await invoices(api, account)
    assert paid["paidAt"] is not None
    assert paid["payment"] == {
        "amount": "110.00",
        "account": {"id": account},
        "payer": {"id": account},
        "paymentMethod": {"id": card},
    }
    # recorded as recordPayment would: the 100.00 of fees settled, the rest is cash (F8)
    after = await finance(api, account)
    assert after is not None
    assert (after["outstandingFees"], after["cashBalance"]) == ("0.00", "10.00")
    # the job again (a redelivery), and the worker again: still one payment
    await run_handler(api.engine, auto_pay.TOPIC, job)
    await run_jobs()
    assert await payments(api) == 1
    assert (await invoices(api, account))[0]["payment"]["amount"] == "110.00"
    await assert_sound(api.engine)


async def test_w2_a_worker_killed_between_payment_and_marking_still_pays_once(
    api: Api, run_jobs: Any
) -> None:
    """The job pays, then dies before the outbox row is marked done: the row runs again and
    finds the invoice paid. A job that dies before its commit paid nothing."""
    account, _ = await taxed_account(api)
    await issued(api, account, *JANUARY)
    [(_, job)] = await pending_rows(api.engine, auto_pay.TOPIC)
    async with api.engine.connect() as conn:  # died before its commit: rolled back
        transaction = await conn.begin()
        await auto_pay.pay_invoice(conn, job, outbox.JobContext())
        await transaction.rollback()
    assert await payments(api) == 0
    await run_handler(api.engine, auto_pay.TOPIC, job)  # paid and committed, row not done
    assert await payments(api) == 1
    assert len(await pending_rows(api.engine, auto_pay.TOPIC)) == 1
    await run_jobs()
    assert await payments(api) == 1
    assert await pending_rows(api.engine, auto_pay.TOPIC) == []
    await assert_sound(api.engine)


async def test_w2_an_account_without_an_auto_pay_method_is_not_paid(
    api: Api, run_jobs: Any
) -> None:
    account = await api.account("Standalone")
    card = await method(api, account)
    await set_auto_pay(api, card, False)
    await charge(api, account, "10.00", ON)
    await issued(api, account, *JANUARY)
    assert await pending_rows(api.engine, auto_pay.TOPIC) == []
    await run_jobs()
    assert (await invoices(api, account))[0]["paidAt"] is None
    assert await payments(api) == 0
