"""A4: delivering a notification on one channel, with bounded retries and backoff.

Each (notification, channel) is its own outbox job. A failed attempt is recorded (attempts,
last error) and the next one is scheduled with exponential backoff, until SENT or, after
the last attempt, FAILED. Delivery is at least once: every message carries a stable id
(the email's Message-ID, the webhook's X-Accountgraph-Delivery header) so that a receiver
can drop the copy a crash between sending and recording may cause.

Security finding 4: a webhook's host is resolved and checked again at every attempt
(``webhook_guard``) and the request goes to the checked address itself (the Host header
and the TLS server name keep the URL's name), so no DNS change can aim it at the inside
network; a recorded error is one of a few generic texts, never what a connection attempt
revealed; and every webhook is signed (with a random per-process key if no secret is set).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from email.message import EmailMessage
from functools import cache
from typing import Any

import aiosmtplib
import httpx
from prometheus_client import Counter
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from accountgraph import outbox
from accountgraph.accounts.public import account_names
from accountgraph.alerts import webhook_guard
from accountgraph.alerts.models import deliveries, notifications
from accountgraph.alerts.service import DELIVER_TOPIC

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 10.0
ERROR_LENGTH = 500
# The only texts a failed attempt records (deliveries.last_error, shown to the account).
REFUSED = "delivery refused (address not allowed)"
UNREACHABLE = "could not connect"
EMAIL_FAILED = "could not deliver email"


def failed_status(status: int) -> str:
    return f"delivery failed (status {status})"


class DeliveryError(Exception):
    """The channel refused or could not be reached."""


class _ConnectFailed(DeliveryError):
    """No connection to this address (the next one of the host may be tried)."""


def message_of(row: Any) -> dict[str, Any]:
    """The JSON body of a webhook, and the facts every channel tells."""
    return {
        "id": f"notification-{row.id}",
        "accountName": row.account_name,
        "kind": row.kind,
        "availableQuota": str(row.available_quota),
        "threshold": None if row.threshold is None else str(row.threshold),
        "createdAt": row.created_at.isoformat(),
    }


def text_of(row: Any) -> str:
    if row.kind == "OVERDUE":
        return (
            f"Account {row.account_name} is overdue: its available quota is {row.available_quota}."
        )
    return (
        f"Account {row.account_name}: available quota {row.available_quota} fell below "
        f"the alert threshold {row.threshold}."
    )


async def send_email(settings: Any, target: str, row: Any) -> None:
    if not settings.smtp_host:
        raise DeliveryError("no SMTP server is configured (ACCOUNTGRAPH_SMTP_HOST)")
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = target
    message["Subject"] = (
        "Account overdue" if row.kind == "OVERDUE" else "Low available quota"
    ) + f": {row.account_name}"
    message["Message-ID"] = f"<notification-{row.id}@accountgraph>"
    message.set_content(text_of(row))
    try:
        await aiosmtplib.send(
            message,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_user,
            password=settings.smtp_password,
            start_tls=settings.smtp_starttls,
            timeout=SEND_TIMEOUT_S,
        )
    except (aiosmtplib.SMTPException, OSError) as error:
        log.warning(
            "email for notification %s not delivered: %s: %s", row.id, type(error).__name__, error
        )
        raise DeliveryError(EMAIL_FAILED) from error


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``X-Accountgraph-Signature``: HMAC-SHA256 over ``<timestamp>.<body>``, hex."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


@cache
def _process_secret() -> str:
    """The key webhooks are signed with when ACCOUNTGRAPH_WEBHOOK_SECRET is unset: random,
    made once per process (a receiver cannot verify it; the warning says so, once)."""
    log.warning(
        "ACCOUNTGRAPH_WEBHOOK_SECRET is not set: webhooks are signed with a random "
        "per-process key that receivers cannot verify; set ACCOUNTGRAPH_WEBHOOK_SECRET"
    )
    return secrets.token_hex(32)


def webhook_secret(settings: Any) -> str:
    configured: str | None = settings.webhook_secret
    return configured if configured else _process_secret()


async def send_webhook(settings: Any, target: str, row: Any) -> None:
    body = json.dumps(message_of(row), separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Accountgraph-Delivery": str(row.id),
        "X-Accountgraph-Timestamp": timestamp,
        "X-Accountgraph-Signature": signature(webhook_secret(settings), timestamp, body),
    }
    try:  # checked again now: the host's addresses may have changed since it was set
        checked = await webhook_guard.resolve_webhook(target, settings)
        url = httpx.URL(target)
    except webhook_guard.WebhookRefused as refused:
        if refused.reason == "unresolvable":
            log.warning("webhook for notification %s: host did not resolve", row.id)
            raise DeliveryError(UNREACHABLE) from None
        log.warning("webhook for notification %s refused: %s", row.id, refused.message)
        raise DeliveryError(REFUSED) from None
    except httpx.InvalidURL:
        raise DeliveryError(REFUSED) from None
    headers["Host"] = url.netloc.decode("ascii")
    extensions = (
        {"sni_hostname": url.raw_host.decode("ascii")} if checked.url.scheme == "https" else {}
    )
    last = len(checked.addresses) - 1
    for index, address in enumerate(checked.addresses):
        try:  # no second lookup: the request goes to the checked address itself
            await _post(url.copy_with(host=str(address)), body, headers, extensions=extensions)
            return
        except (_ConnectFailed, httpx.InvalidURL):  # InvalidURL: e.g. an IPv6 zone index
            if index == last:
                raise DeliveryError(UNREACHABLE) from None


async def send_sms(settings: Any, target: str, row: Any) -> None:
    if not settings.sms_gateway_url:
        raise DeliveryError("no SMS gateway is configured (ACCOUNTGRAPH_SMS_GATEWAY_URL)")
    body = json.dumps({"to": target, "message": text_of(row), "id": f"notification-{row.id}"})
    await _post(settings.sms_gateway_url, body.encode(), {"Content-Type": "application/json"})


async def _post(
    url: str | httpx.URL,
    body: bytes,
    headers: dict[str, str],
    *,
    extensions: dict[str, Any] | None = None,
) -> None:
    """POST, without following redirects; any failure is a generic ``DeliveryError`` (the
    detail goes to the log only)."""
    try:
        async with httpx.AsyncClient(
            timeout=SEND_TIMEOUT_S, trust_env=False, follow_redirects=False
        ) as client:
            response = await client.post(url, content=body, headers=headers, extensions=extensions)
    except httpx.ConnectError as error:
        log.warning("POST not delivered: %s: %s", type(error).__name__, error)
        raise _ConnectFailed(UNREACHABLE) from error
    except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as error:
        log.warning("POST not delivered: %s: %s", type(error).__name__, error)
        raise DeliveryError(UNREACHABLE) from error
    if response.status_code >= 300:
        raise DeliveryError(failed_status(response.status_code))


SENDERS = {"EMAIL": send_email, "WEBHOOK": send_webhook, "SMS": send_sms}
DELIVERY_FAILURES = Counter(
    "accountgraph_delivery_failures_total",
    "Failed notification delivery attempts by channel (final: no attempt left)",
    ["channel", "final"],
)


@outbox.handler(DELIVER_TOPIC)
async def deliver(
    conn: AsyncConnection, payload: dict[str, Any], context: outbox.JobContext
) -> None:
    """One attempt; the outcome is recorded in the same transaction as the job's done."""
    settings = context.settings
    notification_id, channel = int(payload["notification_id"]), str(payload["channel"])
    account = account_names("account")
    row = (
        await conn.execute(
            select(
                deliveries.c.target,
                deliveries.c.status,
                deliveries.c.attempts,
                notifications,
                account.c.name.label("account_name"),
            )
            .join(notifications, notifications.c.id == deliveries.c.notification_id)
            .join(account, account.c.id == notifications.c.account_id)
            .where(deliveries.c.notification_id == notification_id, deliveries.c.channel == channel)
            .with_for_update(of=deliveries)
        )
    ).one_or_none()
    if row is None or row.status != "PENDING":
        return
    where = (deliveries.c.notification_id == notification_id) & (deliveries.c.channel == channel)
    attempts = row.attempts + 1
    try:
        await SENDERS[channel](settings, row.target, row)
    except DeliveryError as error:
        failed = attempts >= settings.delivery_attempts
        DELIVERY_FAILURES.labels(channel, "true" if failed else "false").inc()
        await conn.execute(
            update(deliveries)
            .where(where)
            .values(
                attempts=attempts,
                last_error=str(error)[:ERROR_LENGTH],
                updated_at=func.now(),
                status="FAILED" if failed else "PENDING",
            )
        )
        if not failed:
            await outbox.add(
                conn,
                DELIVER_TOPIC,
                payload,
                delay_s=settings.delivery_backoff_s * 2 ** (attempts - 1),
            )
        return
    await conn.execute(
        update(deliveries)
        .where(where)
        .values(attempts=attempts, status="SENT", last_error=None, updated_at=func.now())
    )
