"""W3: auto top-up. A charge that leaves the stored value below an armed rule's threshold
orders one top-up; the worker pays it with the rule's auto-pay method (a managed one: the
responsible account's money) and adds a TOP_UP card; the rule re-arms only once the stored
value is back at or above the threshold; a refusal is kept on the rule and retried by the
sweep."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from accountgraph.api import ids
from accountgraph.billing import auto_top_up
from tests.billing.tax_support import (
    SET_AUTO_TOP_UP,
    card,
    pending_rows,
    refused,
    run_handler,
    set_auto_pay,
    stored,
)
from tests.billing.voucher_support import ADD_MANAGED_METHOD, method
from tests.funds.support import assert_sound, charge, pair
from tests.helpers import OPERATOR_TOKEN, Api


async def rule(
    api: Api,
    account: str,
    method_id: str,
    threshold: str = "50.00",
    amount: str = "100.00",
    *,
    enabled: bool = True,
    token: str = OPERATOR_TOKEN,
) -> dict[str, Any]:
    payload = await api.ok(
        "setAutoTopUp",
        SET_AUTO_TOP_UP,
        {
            "accountId": account,
            "threshold": threshold,
            "amount": amount,
            "paymentMethodId": method_id,
            "enabled": enabled,
        },
        token,
    )
    found: dict[str, Any] = payload["account"]["autoTopUp"]
    return found


async def orders(api: Api) -> list[tuple[int, int, str]]:
    """``top_up_orders`` as (account id, payer id, amount)."""
    async with api.engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT account_id, payer_id, amount::text FROM top_up_orders ORDER BY id")
            )
        ).all()
    return [tuple(row) for row in rows]


def row(global_id: str) -> int:
    found = ids.decode_as(global_id, "Account")
    assert found is not None
    return found


def top_ups(account: dict[str, Any]) -> list[str]:
    return [c["amount"] for c in account["storedValueCards"] if c["origin"] == "TOP_UP"]


async def own_auto_pay_account(api: Api) -> tuple[str, str, str]:
    account = await api.account("Standalone")
    token = await api.token(account)
    card_id = await method(api, account, token=token)
    await set_auto_pay(api, card_id, token=token)
    return account, card_id, token


async def test_w3_an_accounts_users_set_an_auto_top_up(api: Api) -> None:
    account, card_id, token = await own_auto_pay_account(api)
    found = await rule(api, account, card_id, "20.00", "75.00", token=token)
    assert found == {
        "threshold": "20.00",
        "amount": "75.00",
        "enabled": True,
        "lastTopUpAt": None,
        "lastError": None,
        "paymentMethod": {"id": card_id},
    }


async def test_w3_an_auto_top_up_is_refused(api: Api) -> None:
    account, card_id, token = await own_auto_pay_account(api)
    plain = await method(api, account, "Plain", token=token)
    other, other_card, _ = await own_auto_pay_account(api)
    valid = {
        "accountId": account,
        "threshold": "50.00",
        "amount": "100.00",
        "paymentMethodId": card_id,
        "enabled": True,
    }
    for change, code, field, by in (
        ({"threshold": "0"}, "INVALID_AMOUNT", ["threshold"], token),
        ({"amount": "-1"}, "INVALID_AMOUNT", ["amount"], token),
        ({"paymentMethodId": plain}, "INVALID_INPUT", ["paymentMethodId"], token),  # no autoPay
        ({"paymentMethodId": other_card}, "NOT_FOUND", ["paymentMethodId"], OPERATOR_TOKEN),
        ({"accountId": other}, "NOT_FOUND", ["accountId"], token),
    ):
        await refused(
            api,
            "setAutoTopUp",
            SET_AUTO_TOP_UP,
            {**valid, **change},
            code=code,
            field=field,
            accounts=[account, other],
            token=by,
        )


async def test_w3_a_managed_members_top_up_is_paid_by_the_responsible_account(
    api: Api, run_jobs: Any
) -> None:
    member = await pair(api)
    own = await method(api, member.master, token=member.master_token)
    managed = (
        await api.ok(
            "addManagedPaymentMethod",
            ADD_MANAGED_METHOD,
            {"paymentMethodId": own, "managedId": member.member},
            member.master_token,
        )
    )["paymentMethod"]["id"]
    await set_auto_pay(api, managed, token=member.master_token)
    await rule(api, member.member, managed, "50.00", "100.00", token=member.member_token)
    await charge(api, member.member, "10.00")
    assert len(await pending_rows(api.engine, auto_top_up.TOPIC)) == 1
    await run_jobs()
    found = await stored(api, member.member, member.member_token)
    assert top_ups(found) == ["100.00"]
    assert found["finance"]["storedValue"] == "100.00"
    assert found["autoTopUp"]["lastTopUpAt"] is not None
    assert found["autoTopUp"]["lastError"] is None
    assert await orders(api) == [(row(member.member), row(member.master), "100.00")]
    # back above the threshold: armed again, so the next fall below buys the next one
    await charge(api, member.member, "60.00")
    await run_jobs()
    assert top_ups(await stored(api, member.member)) == ["100.00", "100.00"]
    await assert_sound(api.engine)


async def test_w3_no_second_top_up_while_still_below_the_threshold(api: Api, run_jobs: Any) -> None:
    account, card_id, token = await own_auto_pay_account(api)
    await rule(api, account, card_id, "100.00", "30.00", token=token)
    await charge(api, account, "5.00")
    await run_jobs()
    assert top_ups(await stored(api, account)) == ["30.00"]  # 30 < 100: not re-armed
    await charge(api, account, "5.00")
    await charge(api, account, "5.00")
    assert await pending_rows(api.engine, auto_top_up.TOPIC) == []
    await run_jobs()
    found = await stored(api, account)
    assert top_ups(found) == ["30.00"]
    assert found["finance"]["storedValue"] == "20.00"
    # an issued card brings it back to the threshold: armed again
    await card(api, account, "80.00")
    await charge(api, account, "1.00")
    await run_jobs()
    assert top_ups(await stored(api, account)) == ["30.00", "30.00"]
    await assert_sound(api.engine)


async def test_w3_a_disabled_rule_orders_nothing(api: Api, run_jobs: Any) -> None:
    account, card_id, token = await own_auto_pay_account(api)
    await rule(api, account, card_id, enabled=False, token=token)
    await charge(api, account, "5.00")
    assert await pending_rows(api.engine, auto_top_up.TOPIC) == []
    await run_jobs()
    assert top_ups(await stored(api, account)) == []


async def test_w3_the_top_up_job_run_twice_tops_up_once(api: Api) -> None:
    account, card_id, token = await own_auto_pay_account(api)
    await rule(api, account, card_id, token=token)
    await charge(api, account, "5.00")
    [(_, job)] = await pending_rows(api.engine, auto_top_up.TOPIC)
    await run_handler(api.engine, auto_top_up.TOPIC, job)
    await run_handler(api.engine, auto_top_up.TOPIC, job)
    assert top_ups(await stored(api, account)) == ["100.00"]
    assert len(await orders(api)) == 1
    await assert_sound(api.engine)


async def test_w3_a_refused_top_up_is_kept_on_the_rule_and_retried_by_the_sweep(
    api: Api, run_jobs: Any
) -> None:
    account, card_id, token = await own_auto_pay_account(api)
    await rule(api, account, card_id, token=token)
    await set_auto_pay(api, card_id, False, token=token)
    await charge(api, account, "5.00")
    await run_jobs()
    found = await stored(api, account)
    assert top_ups(found) == []
    assert found["autoTopUp"]["lastError"].startswith("INVALID_INPUT")
    assert await auto_top_up.retry_failed(api.engine) == 0  # not yet due
    await set_auto_pay(api, card_id, True, token=token)
    assert await auto_top_up.retry_failed(api.engine, retry_after_s=0) == 1
    await run_jobs()
    found = await stored(api, account)
    assert top_ups(found) == ["100.00"]
    assert found["autoTopUp"]["lastError"] is None
    assert await auto_top_up.retry_failed(api.engine, retry_after_s=0) == 0
    await assert_sound(api.engine)
