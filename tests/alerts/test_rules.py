"""A1-A5 both ways through the real API with a real arq worker: who may set alerts and
channels (and what a refusal leaves alone), evaluation per crossing (A2), OVERDUE instead
(A3), delivery per channel (A4), idempotent jobs and the sweep (A5), and the live
``notifications`` subscription over a real WebSocket."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import websockets
from arq.connections import ArqRedis
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from websockets.typing import Subprotocol

from accountgraph import outbox
from accountgraph.alerts import service
from accountgraph.config import Settings
from tests.alerts.support import (
    ADJUST,
    SET_CHANNELS,
    WS_PROTOCOL,
    Receiver,
    alert_view,
    charge,
    drain,
    fetch,
    kinds,
    pay,
    scalar,
    set_alert,
    snapshot,
    subscribed,
    watched,
    ws_url,
)
from tests.conftest import Mailbox
from tests.helpers import DISSOCIATE, OPERATOR_TOKEN, Api
from workers.settings import build_worker

RunJobs = Callable[[], Awaitable[None]]


@dataclass
class Family:
    """A master with two FINANCIAL members (they settle their own charges, so a charge
    moves their own quota): ``seen`` granted VIEW_FINANCE, ``hidden`` did not."""

    master: str
    seen: str
    hidden: str
    hidden_link: str
    seen_link: str
    master_token: str
    seen_token: str
    hidden_token: str


async def family(api: Api) -> Family:
    master = await api.account("Master")
    seen, hidden = await api.account("Seen"), await api.account("Hidden")
    seen_link = await api.link(master, seen, "FINANCIAL")
    hidden_link = await api.link(
        master, hidden, "FINANCIAL", permissions=["SYNC_CREDIT_CONTROL", "MANAGE_INVOICES"]
    )
    return Family(
        master,
        seen,
        hidden,
        hidden_link,
        seen_link,
        await api.token(master),
        await api.token(seen),
        await api.token(hidden),
    )


def codes(payload: dict[str, Any]) -> list[tuple[str, list[str] | None]]:
    return [(error["code"], error["field"]) for error in payload["userErrors"]]


async def alert_rows(api: Api) -> dict[int, tuple[str, bool, bool]]:
    rows = await fetch(api.engine, "SELECT account_id, threshold, enabled, armed FROM quota_alerts")
    return {row.account_id: (str(row.threshold), row.enabled, row.armed) for row in rows}


# ---------------------------------------------------------------- A1: thresholds


async def test_a1_an_unset_alert_shows_as_none(api: Api) -> None:
    account = await api.account("Fresh")

    view = await alert_view(api, account)

    assert view["quotaAlert"] is None and view["channels"] is None
    assert view["notifications"]["totalCount"] == 0


async def test_a1_operator_sets_one_threshold_for_many_accounts(api: Api) -> None:
    accounts = [await api.account(f"A{n}") for n in range(3)]
    await pay(api, accounts[0], "100.00")

    payload = await set_alert(api, accounts, "50.00")

    assert payload["userErrors"] == []
    assert [a["id"] for a in payload["accounts"]] == accounts
    # Armed where the quota is at or above the threshold: only then can a crossing come.
    assert [a["quotaAlert"] for a in payload["accounts"]] == [
        {"threshold": "50.00", "enabled": True, "armed": True, "lastFiredAt": None},
        {"threshold": "50.00", "enabled": True, "armed": False, "lastFiredAt": None},
        {"threshold": "50.00", "enabled": True, "armed": False, "lastFiredAt": None},
    ]
    assert sorted((await alert_rows(api)).values()) == [
        ("50.00", True, False),
        ("50.00", True, False),
        ("50.00", True, True),
    ]


async def test_a1_setting_again_replaces_threshold_and_flag(api: Api) -> None:
    account = await api.account("Changing")
    await pay(api, account, "100.00")
    await set_alert(api, [account], "50.00")

    payload = await set_alert(api, [account], "150.00", enabled=False)

    assert payload["accounts"][0]["quotaAlert"] == {
        "threshold": "150.00",
        "enabled": False,
        "armed": False,
        "lastFiredAt": None,
    }
    assert list((await alert_rows(api)).values()) == [("150.00", False, False)]


async def test_a1_own_users_set_their_own_alert(api: Api) -> None:
    account = await api.account("Self")
    token = await api.token(account)

    payload = await set_alert(api, [account], "10.00", token=token)

    assert payload["userErrors"] == []
    assert (await alert_view(api, account, token))["quotaAlert"]["threshold"] == "10.00"


async def test_a1_master_with_view_finance_sets_its_members_alert(api: Api) -> None:
    given = await family(api)

    payload = await set_alert(api, [given.seen], "25.00", token=given.master_token)

    assert payload["userErrors"] == []
    assert (await alert_view(api, given.seen, given.master_token))["quotaAlert"] == {
        "threshold": "25.00",
        "enabled": True,
        "armed": False,
        "lastFiredAt": None,
    }


async def test_a1_master_without_view_finance_is_refused_per_index_and_the_rest_set(
    api: Api,
) -> None:
    given = await family(api)
    before = await snapshot(api.engine)

    payload = await set_alert(
        api, [given.seen, given.hidden, given.master], "25.00", token=given.master_token
    )

    assert codes(payload) == [("PERMISSION_NOT_GRANTED", ["accountIds", "1"])]
    assert [a["id"] for a in payload["accounts"]] == [given.seen, given.master]
    rows = await alert_rows(api)
    assert len(rows) == 2 and len(before["quota_alerts"]) == 0
    # The refused member's alert stays unset, and the master may not even read it (P2).
    assert (await alert_view(api, given.hidden))["quotaAlert"] is None
    assert (await alert_view(api, given.hidden, given.master_token))["quotaAlert"] is None


async def test_a1_accounts_the_caller_cannot_see_are_not_found_and_nothing_changes(
    api: Api,
) -> None:
    given = await family(api)
    stranger = await api.account("Stranger")
    gone = await api.account("Gone")
    await api.link(given.master, gone, "FINANCIAL")
    gone_link_payload = await api.gql(
        "query($id: ID!) { account(id: $id) { link { id } } }", {"id": gone}
    )
    await api.ok(
        "dissociateMember", DISSOCIATE, {"linkId": gone_link_payload["account"]["link"]["id"]}
    )
    await set_alert(api, [given.master], "1.00")  # something that must stay as it is
    before = await snapshot(api.engine)
    refused = [
        (given.hidden_token, given.seen),  # a sibling (P3)
        (given.seen_token, given.master),  # its master: name fields only (P3)
        (given.seen_token, stranger),  # an unrelated account
        (given.master_token, gone),  # a dissociated member (U5)
        (given.master_token, "not-an-id"),  # garbage
        (given.master_token, given.seen_link),  # an id of another type
    ]

    for token, account in refused:
        payload = await set_alert(api, [account], "5.00", token=token)
        assert codes(payload) == [("NOT_FOUND", ["accountIds", "0"])], (token, account)
        assert payload["accounts"] == []

    assert await snapshot(api.engine) == before


async def test_a1_bad_thresholds_are_invalid_amount_and_change_nothing(api: Api) -> None:
    account = await api.account("Strict")
    await set_alert(api, [account], "1.00")
    before = await snapshot(api.engine)

    for threshold in ("abc", "1.234", "NaN", "1e3", ""):
        payload = await set_alert(api, [account], threshold)
        assert codes(payload) == [("INVALID_AMOUNT", ["threshold"])], threshold

    assert await snapshot(api.engine) == before


async def test_a1_more_than_500_accounts_at_once_is_invalid_input(api: Api) -> None:
    account = await api.account("One")

    payload = await set_alert(api, [account] * 501, "1.00")

    assert codes(payload) == [("INVALID_INPUT", ["accountIds"])]
    assert await alert_rows(api) == {}


async def test_a1_without_a_token_is_unauthenticated(api: Api) -> None:
    account = await api.account("Anon")

    body = await api.raw(
        "mutation($i: SetQuotaAlertsInput!) { setQuotaAlerts(input: $i) { userErrors { code } } }",
        {"i": {"accountIds": [account], "threshold": "1.00", "enabled": True}},
        token=None,
    )

    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert await alert_rows(api) == {}


async def test_a1_a2_alert_set_while_below_starts_disarmed_and_waits_for_a_new_crossing(
    api: Api, run_jobs: RunJobs
) -> None:
    account = await api.account("Low")
    await pay(api, account, "30.00")
    await run_jobs()

    await set_alert(api, [account], "50.00")
    await charge(api, account, "10.00")
    await run_jobs()
    assert await kinds(api, account) == []  # below already: not a crossing

    await pay(api, account, "40.00")  # 60: back above, re-armed
    await run_jobs()
    await charge(api, account, "20.00")  # 40: a crossing
    await run_jobs()
    assert await kinds(api, account) == ["LOW_QUOTA"]


async def test_a1_a_disabled_alert_never_fires(api: Api, run_jobs: RunJobs) -> None:
    account = await watched(api, "Off")
    await set_alert(api, [account], "50.00", enabled=False)

    await charge(api, account, "60.00")
    await charge(api, account, "60.00")  # overdue as well (A3 needs an enabled alert)
    await run_jobs()

    assert await kinds(api, account) == []
    assert await service.sweep(api.engine) == 0  # the sweep looks at enabled alerts only


# ---------------------------------------------------------------- A4: channels


async def test_a4_channels_are_set_by_own_users_and_a_null_clears_one(api: Api) -> None:
    account = await api.account("Reachable")
    token = await api.token(account)

    payload = await api.ok(
        "setNotificationChannels",
        SET_CHANNELS,
        {
            "accountId": account,
            "email": " finance@example.com ",
            "phone": "+1 (555) 010-0199",
            "webhookUrl": "https://hooks.example.com/a?b=c",
        },
        token,
    )
    assert payload["account"]["channels"] == {
        "email": "finance@example.com",
        "phone": "+1 (555) 010-0199",
        "webhookUrl": "https://hooks.example.com/a?b=c",
    }

    payload = await api.ok(
        "setNotificationChannels",
        SET_CHANNELS,
        {"accountId": account, "email": "finance@example.com"},
        token,
    )
    assert payload["account"]["channels"] == {
        "email": "finance@example.com",
        "phone": None,
        "webhookUrl": None,
    }


async def test_a4_master_with_view_finance_sets_a_members_channels(api: Api) -> None:
    given = await family(api)

    payload = await api.ok(
        "setNotificationChannels",
        SET_CHANNELS,
        {"accountId": given.seen, "webhookUrl": "http://127.0.0.1:9/hook"},
        given.master_token,
    )

    assert payload["account"]["channels"]["webhookUrl"] == "http://127.0.0.1:9/hook"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "not-an-email"),
        ("email", "a@b"),
        ("email", "a b@example.com"),
        ("email", "a@@example.com"),
        ("email", "x" * 310 + "@example.com"),
        ("phone", "12"),
        ("phone", "call me"),
        ("phone", "-----"),
        ("phone", "+" + "1" * 40),
        ("webhookUrl", "ftp://example.com/hook"),
        ("webhookUrl", "javascript:alert(1)"),
        ("webhookUrl", "example.com/hook"),
        ("webhookUrl", "http://"),
        ("webhookUrl", "http://[::1/hook"),
        ("webhookUrl", "http://example.com:99999/"),
        ("webhookUrl", "https://example.com/" + "a" * 2000),
    ],
)
async def test_a4_bad_channels_are_invalid_input_and_change_nothing(
    api: Api, field: str, value: str
) -> None:
    account = await api.account("Careful")
    await api.ok(
        "setNotificationChannels",
        SET_CHANNELS,
        {
            "accountId": account,
            "email": "ok@example.com",
            "phone": "+44 20 7946 0000",
            "webhookUrl": "https://example.com/ok",
        },
    )
    before = await snapshot(api.engine)

    payload = await api.mutate(
        "setNotificationChannels",
        SET_CHANNELS,
        {
            "accountId": account,
            "email": "new@example.com",
            "phone": "+44 20 7946 0001",
            "webhookUrl": "https://example.com/new",
            field: value,
        },
    )

    assert codes(payload) == [("INVALID_INPUT", [field])]
    assert payload["account"] is None
    assert await snapshot(api.engine) == before


async def test_a4_channels_of_accounts_the_caller_may_not_manage_are_refused(api: Api) -> None:
    given = await family(api)
    before = await snapshot(api.engine)
    cases = [
        (given.master_token, given.hidden, "PERMISSION_NOT_GRANTED"),
        (given.hidden_token, given.seen, "NOT_FOUND"),
        (given.seen_token, given.master, "NOT_FOUND"),
    ]

    for token, account, code in cases:
        payload = await api.mutate(
            "setNotificationChannels",
            SET_CHANNELS,
            {"accountId": account, "email": "spy@example.com"},
            token,
        )
        assert codes(payload) == [(code, ["accountId"])]

    assert await snapshot(api.engine) == before


# ---------------------------------------------------------------- A2: evaluation


async def test_a2_fires_once_per_crossing_not_while_below_and_rearms_at_the_threshold(
    api: Api, run_jobs: RunJobs
) -> None:
    account = await watched(api, "Crossing")

    assert await charge(api, account, "60.00") == "40.00"  # 100 -> 40: crossing 1
    await run_jobs()
    view = await alert_view(api, account)
    assert [e["node"]["availableQuota"] for e in view["notifications"]["edges"]] == ["40.00"]
    assert view["quotaAlert"]["armed"] is False and view["quotaAlert"]["lastFiredAt"]

    await charge(api, account, "5.00")  # 35: still below, nothing new
    await pay(api, account, "10.00")  # 45: up, but below
    await run_jobs()
    assert await kinds(api, account) == ["LOW_QUOTA"]
    assert (await alert_view(api, account))["quotaAlert"]["armed"] is False

    await pay(api, account, "5.00")  # 50: at the threshold re-arms, fires nothing
    await run_jobs()
    assert (await alert_view(api, account))["quotaAlert"]["armed"] is True
    assert await kinds(api, account) == ["LOW_QUOTA"]

    await charge(api, account, "0.01")  # 49.99: crossing 2
    await run_jobs()
    assert await kinds(api, account) == ["LOW_QUOTA", "LOW_QUOTA"]
    keys = [
        r.dedupe_key
        for r in await fetch(api.engine, "SELECT dedupe_key FROM notifications ORDER BY id")
    ]
    assert [key.split(":", 1)[1] for key in keys] == ["LOW_QUOTA:1", "LOW_QUOTA:2"]
    assert await scalar(api.engine, "SELECT crossings FROM quota_alerts") == 2


async def test_a2_changes_that_stay_at_or_above_the_threshold_fire_nothing(
    api: Api, run_jobs: RunJobs
) -> None:
    account = await watched(api, "Steady")

    await charge(api, account, "30.00")
    await charge(api, account, "20.00")  # exactly 50: not below
    await run_jobs()

    assert await kinds(api, account) == []
    assert (await alert_view(api, account))["quotaAlert"]["armed"] is True


async def test_a2_an_account_without_an_alert_gets_no_notification(
    api: Api, run_jobs: RunJobs
) -> None:
    account = await api.account("Unwatched")
    await pay(api, account, "100.00")

    await charge(api, account, "99.00")
    await charge(api, account, "99.00")
    await run_jobs()

    assert await kinds(api, account) == []
    assert await scalar(api.engine, "SELECT count(*) FROM outbox WHERE done_at IS NULL") == 0


async def test_a2_any_quota_change_is_evaluated_not_only_charges(
    api: Api, run_jobs: RunJobs
) -> None:
    account = await watched(api, "Adjusted")

    await api.ok(
        "adjustBalance",
        ADJUST,
        {  # the back office's unsettled amount grows
            "accountId": account,
            "bucket": "UNSETTLED_AMOUNT",
            "amount": "70.00",
            "reason": "billing run",
        },
    )
    await run_jobs()

    view = await alert_view(api, account)
    assert [
        (e["node"]["kind"], e["node"]["availableQuota"], e["node"]["threshold"])
        for e in view["notifications"]["edges"]
    ] == [("LOW_QUOTA", "30.00", "50.00")]


async def test_a2_a_members_alert_follows_its_own_quota(api: Api, run_jobs: RunJobs) -> None:
    given = await family(api)
    await pay(api, given.seen, "100.00")
    await set_alert(api, [given.seen], "50.00", token=given.master_token)

    await charge(api, given.seen, "75.00")
    await run_jobs()

    view = await alert_view(api, given.seen, given.master_token)
    assert [e["node"]["kind"] for e in view["notifications"]["edges"]] == ["LOW_QUOTA"]
    assert view["notifications"]["edges"][0]["node"]["account"]["id"] == given.seen
    # The member's users see their own notifications; a sibling sees nothing of them.
    own = await alert_view(api, given.seen, given.seen_token)
    assert own["notifications"]["totalCount"] == 1
    sibling = await api.gql(
        "query($id: ID!) { account(id: $id) { id } }", {"id": given.seen}, given.hidden_token
    )
    assert sibling["account"] is None


# ---------------------------------------------------------------- A3: overdue instead


async def test_a3_a_charge_that_makes_the_account_overdue_fires_overdue_instead(
    api: Api, run_jobs: RunJobs
) -> None:
    account = await watched(api, "Overdue")

    assert await charge(api, account, "110.00") == "-10.00"  # 100 -> -10 in one charge
    await run_jobs()

    view = await alert_view(api, account)
    assert [
        (e["node"]["kind"], e["node"]["availableQuota"], e["node"]["threshold"])
        for e in view["notifications"]["edges"]
    ] == [("OVERDUE", "-10.00", "50.00")]
    assert view["quotaAlert"]["armed"] is False  # that crossing is used up
    entry = await scalar(api.engine, "SELECT max(id) FROM journal_entries")
    assert await scalar(api.engine, "SELECT dedupe_key FROM notifications") == (
        f"{await scalar(api.engine, 'SELECT account_id FROM quota_alerts')}:OVERDUE:{entry}"
    )


async def test_a3_from_exactly_zero_to_below_is_overdue(api: Api, run_jobs: RunJobs) -> None:
    account = await api.account("Zero")
    await set_alert(api, [account], "0.00")  # quota 0 >= 0: armed

    await charge(api, account, "0.01")
    await run_jobs()

    assert await kinds(api, account) == ["OVERDUE"]


async def test_a3_every_charge_that_makes_the_account_overdue_fires_once(
    api: Api, run_jobs: RunJobs
) -> None:
    account = await watched(api, "Again")
    await charge(api, account, "110.00")
    await run_jobs()

    await pay(api, account, "110.00")  # 100: back above, re-armed
    await run_jobs()
    await charge(api, account, "100.01")  # -0.01
    await run_jobs()

    assert await kinds(api, account) == ["OVERDUE", "OVERDUE"]


async def test_a3_what_is_not_one_charge_from_zero_or_above_is_not_overdue(
    api: Api, run_jobs: RunJobs
) -> None:
    low = await watched(api, "Low first")
    await charge(api, low, "60.00")  # 40: LOW_QUOTA
    await run_jobs()
    await charge(api, low, "30.00")  # 10: below, still >= 0
    await run_jobs()
    assert await kinds(api, low) == ["LOW_QUOTA"]

    already = await watched(api, "Already overdue", cash="0.00", threshold="-100.00")
    await charge(api, already, "10.00")  # 0 -> -10: OVERDUE
    await run_jobs()
    await charge(api, already, "10.00")  # -10 -> -20: was overdue before, nothing
    await run_jobs()
    assert await kinds(api, already) == ["OVERDUE"]

    adjusted = await watched(api, "Adjusted")
    await api.ok(
        "adjustBalance",
        ADJUST,
        {  # not a charge: LOW_QUOTA, not OVERDUE
            "accountId": adjusted,
            "bucket": "UNSETTLED_AMOUNT",
            "amount": "120.00",
            "reason": "billing run",
        },
    )
    await run_jobs()
    assert await kinds(api, adjusted) == ["LOW_QUOTA"]


# ---------------------------------------------------------------- A4: delivery


async def test_a4_a_notification_is_delivered_on_each_channel_with_its_status(
    api: Api,
    run_jobs: RunJobs,
    mailbox: Mailbox,
    hook: Receiver,
    gateway: Receiver,
    settings: Settings,
    engine: Any,
    redis: ArqRedis,
) -> None:
    account = await watched(
        api, "Everywhere", email="ops@example.com", webhook_url=hook.url, phone="+15550100"
    )
    mailbox.messages.clear()
    await charge(api, account, "60.00")

    await drain(settings.model_copy(update={"sms_gateway_url": gateway.url}), engine, redis)

    node = (await alert_view(api, account))["notifications"]["edges"][0]["node"]
    assert sorted(
        (d["channel"], d["status"], d["attempts"], d["lastError"]) for d in node["deliveries"]
    ) == [("EMAIL", "SENT", 1, None), ("SMS", "SENT", 1, None), ("WEBHOOK", "SENT", 1, None)]
    [message] = mailbox.messages
    assert message.rcpt_tos == ["ops@example.com"]
    assert b"Low available quota: Everywhere" in message.content
    [(_, sms)] = gateway.requests
    assert json.loads(sms)["to"] == "+15550100"
    assert "fell below the alert threshold 50.00" in json.loads(sms)["message"]
    [(headers, body)] = hook.requests
    assert json.loads(body)["kind"] == "LOW_QUOTA"
    assert json.loads(body)["availableQuota"] == "40.00"
    assert headers["x-accountgraph-delivery"]


async def test_a4_sms_without_a_gateway_fails_after_the_retries_with_a_clear_error(
    api: Api, run_jobs: RunJobs
) -> None:
    account = await watched(api, "Texted", phone="+15550100")
    await charge(api, account, "60.00")

    await run_jobs()

    [delivery] = (await alert_view(api, account))["notifications"]["edges"][0]["node"]["deliveries"]
    assert (delivery["channel"], delivery["status"], delivery["attempts"]) == ("SMS", "FAILED", 3)
    assert "ACCOUNTGRAPH_SMS_GATEWAY_URL" in delivery["lastError"]


async def test_a4_a_webhook_that_keeps_failing_is_retried_then_failed_with_one_id(
    api: Api, run_jobs: RunJobs, hook: Receiver
) -> None:
    hook.status = 503
    account = await watched(api, "Hooked", webhook_url=hook.url)
    await charge(api, account, "60.00")

    await run_jobs()

    [delivery] = (await alert_view(api, account))["notifications"]["edges"][0]["node"]["deliveries"]
    assert delivery == {
        "channel": "WEBHOOK",
        "status": "FAILED",
        "attempts": 3,
        "lastError": "delivery failed (status 503)",
    }
    assert len(hook.requests) == 3
    assert len({headers["x-accountgraph-delivery"] for headers, _ in hook.requests}) == 1


async def test_a4_a_notification_without_channels_is_stored_with_no_deliveries(
    api: Api, run_jobs: RunJobs
) -> None:
    account = await watched(api, "Quiet")
    await charge(api, account, "60.00")

    await run_jobs()

    [edge] = (await alert_view(api, account))["notifications"]["edges"]
    assert edge["node"]["deliveries"] == []


# ---------------------------------------------------------------- A5: no loss, no double


async def test_a5_a_quota_change_commits_with_the_request_to_evaluate_it(api: Api) -> None:
    account = await watched(api, "Committed")

    await charge(api, account, "60.00")

    [row] = await fetch(
        api.engine,
        "SELECT payload, sent_at, done_at FROM outbox "
        "WHERE topic = 'quota.changed' ORDER BY id DESC LIMIT 1",
    )
    assert {k: row.payload[k] for k in ("before", "after", "cause")} == {
        "before": "100.00",
        "after": "40.00",
        "cause": "CHARGE",
    }
    assert row.payload["entry_id"] and row.sent_at is None and row.done_at is None
    assert await kinds(api, account) == []  # nothing fires before the job runs


async def test_a5_an_evaluation_job_run_twice_makes_one_notification(
    api: Api, run_jobs: RunJobs
) -> None:
    account = await watched(api, "Twice")
    await run_jobs()
    await charge(api, account, "60.00")
    row_id = await scalar(api.engine, "SELECT max(id) FROM outbox WHERE topic = 'quota.changed'")

    assert await outbox.run_row(api.engine, row_id) is True
    assert await outbox.run_row(api.engine, row_id) is False  # arq ran it again
    await run_jobs()

    assert await kinds(api, account) == ["LOW_QUOTA"]


async def test_a5_a_job_redis_delivers_twice_at_once_makes_one_notification(
    api: Api, redis: ArqRedis, settings: Settings
) -> None:
    """The same row as two arq jobs running side by side (Redis gave it out twice): the
    row lock and its done mark make the second a no-op."""
    account = await watched(api, "Relayed twice")
    await charge(api, account, "60.00")
    row_id = await scalar(api.engine, "SELECT max(id) FROM outbox WHERE topic = 'quota.changed'")

    assert await outbox.relay_once(api.engine, redis, resend_after_s=60) >= 1
    assert await redis.enqueue_job(outbox.JOB_FUNCTION, row_id=row_id, _job_id="copy")
    worker = build_worker(settings, api.engine, redis, burst=True, relay=False)
    await worker.main()
    await drain(settings, api.engine, redis)

    assert await kinds(api, account) == ["LOW_QUOTA"]
    assert worker.jobs_complete >= 3 and worker.jobs_failed == 0


async def test_a5_a_doubled_job_whose_done_mark_was_lost_still_fires_once(
    api: Api, run_jobs: RunJobs
) -> None:
    """Below the job's own checks, the unique dedupe key: the OVERDUE of one charge is one
    row even if the evaluation runs again from scratch."""
    account = await watched(api, "Doubled")
    await charge(api, account, "110.00")
    await run_jobs()
    async with api.engine.begin() as conn:
        await conn.execute(text("UPDATE outbox SET done_at = NULL WHERE topic = 'quota.changed'"))

    for row_id in [
        r.id
        for r in await fetch(api.engine, "SELECT id FROM outbox WHERE done_at IS NULL ORDER BY id")
    ]:
        assert await outbox.run_row(api.engine, row_id) is True
    await run_jobs()

    assert await kinds(api, account) == ["OVERDUE"]
    assert await scalar(api.engine, "SELECT count(*) FROM deliveries") == 0


async def test_a5_the_database_refuses_a_second_notification_with_the_same_key(
    api: Api, run_jobs: RunJobs
) -> None:
    account = await watched(api, "Unique")
    await charge(api, account, "60.00")
    await run_jobs()
    [row] = await fetch(
        api.engine,
        "SELECT account_id, kind, available_quota, threshold, dedupe_key FROM notifications",
    )

    with pytest.raises(IntegrityError):
        async with api.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO notifications (account_id, kind, available_quota, threshold, "
                    "dedupe_key) VALUES (:a, :k, :q, :t, :d)"
                ),
                {
                    "a": row.account_id,
                    "k": row.kind,
                    "q": row.available_quota,
                    "t": row.threshold,
                    "d": row.dedupe_key,
                },
            )

    assert await scalar(api.engine, "SELECT count(*) FROM notifications") == 1


@pytest.mark.parametrize("loss", ["deleted", "marked done"])
async def test_a5_the_sweep_catches_a_crossing_whose_evaluation_was_lost(
    api: Api, run_jobs: RunJobs, hook: Receiver, loss: str
) -> None:
    account = await watched(api, "Lost", webhook_url=hook.url)
    await run_jobs()
    await charge(api, account, "60.00")
    async with api.engine.begin() as conn:
        await conn.execute(
            text(
                "DELETE FROM outbox WHERE topic = 'quota.changed' AND done_at IS NULL"
                if loss == "deleted"
                else "UPDATE outbox SET done_at = now() WHERE topic = 'quota.changed'"
            )
        )
    await run_jobs()
    assert await kinds(api, account) == []  # the event is gone

    assert await service.sweep(api.engine) == 1
    await run_jobs()

    assert await kinds(api, account) == ["LOW_QUOTA"]
    assert len(hook.requests) == 1
    assert await service.sweep(api.engine) == 0  # caught once: nothing left to catch
    await run_jobs()
    assert await kinds(api, account) == ["LOW_QUOTA"]


async def test_a5_the_sweep_catches_a_lost_re_arm(api: Api, run_jobs: RunJobs) -> None:
    account = await watched(api, "Rearm")
    await charge(api, account, "60.00")
    await run_jobs()
    await pay(api, account, "60.00")  # 100: back above, but the event is lost
    async with api.engine.begin() as conn:
        await conn.execute(text("DELETE FROM outbox WHERE done_at IS NULL"))

    assert await service.sweep(api.engine) == 1

    assert (await alert_view(api, account))["quotaAlert"]["armed"] is True
    await charge(api, account, "60.00")
    await run_jobs()
    assert await kinds(api, account) == ["LOW_QUOTA", "LOW_QUOTA"]


async def test_a5_the_sweep_is_a_no_op_when_states_agree(api: Api, run_jobs: RunJobs) -> None:
    above = await watched(api, "Above")
    below = await watched(api, "Below")
    await watched(api, "Overdue")
    await charge(api, below, "60.00")
    await charge(api, above, "10.00")
    await run_jobs()
    before = await snapshot(api.engine)
    outbox_rows = await scalar(api.engine, "SELECT count(*) FROM outbox")

    async with api.engine.connect() as conn:
        assert await service.sweep_candidates(conn) == []
    assert await service.sweep(api.engine) == 0

    assert await snapshot(api.engine) == before
    assert await scalar(api.engine, "SELECT count(*) FROM outbox") == outbox_rows


async def test_a5_one_sweep_catches_many_accounts_at_once_each_as_its_own_job_would(
    api: Api, run_jobs: RunJobs, hook: Receiver, mailbox: Mailbox
) -> None:
    """The sweep evaluates its candidates set-based: each account ends as ``evaluate``
    leaves it (its notification, a delivery per channel, its state), and a crossing whose
    charge's OVERDUE is still to come is left to that charge's job (A3)."""
    mailbox.messages.clear()
    lost = [
        await watched(api, f"Lost {n}", email=f"lost{n}@example.com", webhook_url=hook.url)
        for n in range(3)
    ]
    quiet = await watched(api, "Lost quietly")  # no channels
    rearm = await watched(api, "Lost re-arm")
    await charge(api, rearm, "60.00")
    await run_jobs()
    await pay(api, rearm, "60.00")
    for account in [*lost, quiet]:
        await charge(api, account, "60.00")
    async with api.engine.begin() as conn:  # every evaluation of those changes is lost
        await conn.execute(text("DELETE FROM outbox WHERE done_at IS NULL"))
    overdue = await watched(api, "Overdue to come")
    await charge(api, overdue, "150.00")  # 100 -> -50: its job fires OVERDUE (A3)

    assert await service.sweep(api.engine) == 6
    await run_jobs()

    for account in [*lost, quiet]:
        assert await kinds(api, account) == ["LOW_QUOTA"]
    assert await kinds(api, rearm) == ["LOW_QUOTA"]
    assert (await alert_view(api, rearm))["quotaAlert"]["armed"] is True
    assert await kinds(api, overdue) == ["OVERDUE"]
    assert len(mailbox.messages) == 3 and len(hook.requests) == 3
    assert sorted(m.rcpt_tos[0] for m in mailbox.messages) == [
        f"lost{n}@example.com" for n in range(3)
    ]
    assert await scalar(api.engine, "SELECT count(*) FROM deliveries WHERE status = 'SENT'") == 6
    assert await service.sweep(api.engine) == 0  # caught once each
    await run_jobs()
    assert [await kinds(api, account) for account in lost] == [["LOW_QUOTA"]] * 3


def test_a2_the_sweep_runs_periodically_in_every_worker(settings: Settings) -> None:
    worker = build_worker(settings, None, None)  # type: ignore[arg-type]
    [job] = [job for job in worker.cron_jobs if job.name == "cron:sweep_alerts"]
    assert job.minute == set(range(0, 60, settings.alert_sweep_minutes))


# ---------------------------------------------------------------- A4: live, over WebSocket


async def test_a4_a_master_with_view_finance_gets_its_members_notification_live(
    api: Api, run_jobs: RunJobs, redis: ArqRedis
) -> None:
    given = await family(api)
    await pay(api, given.seen, "100.00")
    await set_alert(api, [given.seen], "50.00", token=given.master_token)

    async with subscribed(api, redis, given.master_token, given.seen) as live:
        await charge(api, given.seen, "60.00")
        await run_jobs()
        event = await live.next()

    node = event["data"]["notifications"]
    assert (node["kind"], node["availableQuota"], node["threshold"]) == (
        "LOW_QUOTA",
        "40.00",
        "50.00",
    )
    assert node["account"] == {"id": given.seen, "name": "Seen"}
    stored = (await alert_view(api, given.seen))["notifications"]["edges"][0]["node"]["id"]
    assert node["id"] == stored


async def test_a4_every_visible_account_without_an_account_id(
    api: Api, run_jobs: RunJobs, redis: ArqRedis
) -> None:
    given = await family(api)
    for account in (given.seen, given.hidden):
        await pay(api, account, "100.00")
        await set_alert(api, [account], "50.00")

    async with subscribed(api, redis, given.master_token, None) as live:
        await charge(api, given.hidden, "60.00")  # not visible to the master's finance
        await charge(api, given.seen, "60.00")
        await run_jobs()
        event = await live.next()
        await live.nothing(1.0)

    assert event["data"]["notifications"]["account"]["id"] == given.seen


async def test_a4_a_sibling_or_a_master_without_view_finance_gets_nothing(
    api: Api, run_jobs: RunJobs, redis: ArqRedis
) -> None:
    given = await family(api)
    for account in (given.seen, given.hidden):
        await pay(api, account, "100.00")
        await set_alert(api, [account], "50.00")

    async with (
        subscribed(api, redis, given.hidden_token, given.seen) as sibling,
        subscribed(api, redis, given.hidden_token, None) as sibling_all,
        subscribed(api, redis, given.master_token, given.hidden) as no_grant,
        subscribed(api, redis, given.seen_token, None) as own,
    ):
        await charge(api, given.seen, "60.00")
        await charge(api, given.hidden, "60.00")
        await run_jobs()
        event = await own.next()  # the members' own users get their own
        own_hidden = await sibling_all.next()
        await sibling.nothing(1.0)
        await sibling_all.nothing(0.1)
        await no_grant.nothing(0.1)
        await own.nothing(0.1)

    assert event["data"]["notifications"]["account"]["id"] == given.seen
    assert own_hidden["data"]["notifications"]["account"]["id"] == given.hidden
    assert await scalar(api.engine, "SELECT count(*) FROM notifications") == 2


@pytest.mark.parametrize("payload", [{"Authorization": "Bearer wrong"}, {}, None])
async def test_a4_a_subscription_with_a_bad_token_is_closed_4403(
    api: Api, payload: dict[str, str] | None
) -> None:
    async with websockets.connect(ws_url(api), subprotocols=[Subprotocol(WS_PROTOCOL)]) as socket:
        init: dict[str, Any] = {"type": "connection_init"}
        if payload is not None:
            init["payload"] = payload
        await socket.send(json.dumps(init))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await socket.recv()
            await socket.send(
                json.dumps(
                    {
                        "id": "1",
                        "type": "subscribe",
                        "payload": {"query": "subscription { notifications { id } }"},
                    }
                )
            )
            await socket.recv()

    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


async def test_a4_operator_token_subscribes_to_everything(
    api: Api, run_jobs: RunJobs, redis: ArqRedis
) -> None:
    account = await watched(api, "Operated")

    async with subscribed(api, redis, OPERATOR_TOKEN, None) as live:
        await charge(api, account, "110.00")
        await run_jobs()
        event = await live.next()

    assert event["data"]["notifications"]["kind"] == "OVERDUE"
