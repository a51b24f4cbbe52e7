"""A1-A4 end to end: a charge crosses the threshold, a real worker evaluates it, the email
reaches a local SMTP server and the webhook a local HTTP server, signed."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.conftest import Mailbox, serving
from tests.funds.test_flow import PAY
from tests.helpers import Api

SET_ALERTS = """mutation($input: SetQuotaAlertsInput!) { setQuotaAlerts(input: $input) {
  accounts { id quotaAlert { threshold enabled armed } } userErrors { code field message } } }"""
SET_CHANNELS = """mutation($input: SetNotificationChannelsInput!) {
  setNotificationChannels(input: $input) { account { channels { email webhookUrl } }
  userErrors { code field message } } }"""
CHARGE = """mutation($input: RecordChargeInput!) { recordCharge(input: $input) {
  charge { id } userErrors { code field message } } }"""
NOTIFICATIONS = """query($id: ID!) { account(id: $id) {
  quotaAlert { armed lastFiredAt }
  notifications { totalCount edges { node { kind availableQuota threshold
    deliveries { channel status attempts lastError } } } } } }"""


class Receiver:
    """A local HTTP server that records webhook requests (status to answer settable)."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.status = 200

    async def endpoint(self, request: Request) -> Response:
        self.requests.append((dict(request.headers), await request.body()))
        return Response(status_code=self.status)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    found = Receiver()
    app = Starlette(routes=[Route("/hook", found.endpoint, methods=["POST"])])
    async with serving(app) as url:
        yield found, f"{url}/hook"


async def test_a2_a4_a_crossing_fires_once_by_email_and_signed_webhook(
    api: Api,
    run_jobs: Callable[[], Awaitable[None]],
    mailbox: Mailbox,
    receiver: tuple[Receiver, str],
) -> None:
    hook, hook_url = receiver
    account = await api.account("Watched")
    await api.ok("recordPayment", PAY, {"accountId": account, "amount": "100.00"})
    await api.ok(
        "setQuotaAlerts",
        SET_ALERTS,
        {"accountIds": [account], "threshold": "50.00", "enabled": True},
    )
    await api.ok(
        "setNotificationChannels",
        SET_CHANNELS,
        {"accountId": account, "email": "finance@example.com", "webhookUrl": hook_url},
    )
    mailbox.messages.clear()

    await api.ok(
        "recordCharge", CHARGE, {"accountId": account, "amount": "60.00", "description": "usage"}
    )
    await api.ok(
        "recordCharge",
        CHARGE,
        {"accountId": account, "amount": "10.00", "description": "more usage, still below"},
    )
    await run_jobs()

    data: dict[str, Any] = (await api.gql(NOTIFICATIONS, {"id": account}))["account"]
    assert data["quotaAlert"]["armed"] is False
    assert data["notifications"]["totalCount"] == 1
    node = data["notifications"]["edges"][0]["node"]
    assert (node["kind"], node["availableQuota"], node["threshold"]) == (
        "LOW_QUOTA",
        "30.00",
        "50.00",
    )  # the quota when evaluated: both charges are in
    assert sorted((d["channel"], d["status"], d["attempts"]) for d in node["deliveries"]) == [
        ("EMAIL", "SENT", 1),
        ("WEBHOOK", "SENT", 1),
    ]
    assert [m.rcpt_tos for m in mailbox.messages] == [["finance@example.com"]]
    assert len(hook.requests) == 1
    headers, body = hook.requests[0]
    expected = hmac.new(
        b"test-webhook-secret",
        headers["x-accountgraph-timestamp"].encode() + b"." + body,
        hashlib.sha256,
    ).hexdigest()
    assert headers["x-accountgraph-signature"] == f"sha256={expected}"
    assert json.loads(body)["kind"] == "LOW_QUOTA"
