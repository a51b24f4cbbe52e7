"""Security finding 4: webhooks to loopback and private addresses (SSRF, an internal port
scanner through ``deliveries.last_error``), and unsigned webhooks.

Through the real HTTP API and a real arq worker: a webhook URL must be https and resolve
to public addresses only (checked when set, and again at every delivery, which connects
to the checked address itself); a failed attempt records a generic text only; every
webhook is signed. The shared app allows http and private addresses (its receivers are
local servers), so the strict behaviour is shown with an app and a worker of their own.
No traffic leaves 127.0.0.1: public URLs are literal IPs, never posted to.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from accountgraph.alerts import delivery
from accountgraph.alerts.webhook_guard import (
    WebhookRefused,
    is_public_address,
    parse_webhook_url,
    resolve_webhook,
    validate_webhook_url,
)
from accountgraph.app import create_app
from accountgraph.config import Settings
from tests.alerts.support import (
    SET_CHANNELS,
    Receiver,
    alert_view,
    charge,
    drain,
    snapshot,
    watched,
)
from tests.conftest import Mailbox, free_port, serving
from tests.helpers import Api

PUBLIC_URL = "https://93.184.215.14/hook"  # a literal public address: no lookup, no traffic
HTTPS_ONLY = "The webhook URL must use https."
PRIVATE = "The webhook URL resolves to a private or loopback address."
USERINFO = "The webhook URL must not contain a user name or password."
UNRESOLVABLE = "The webhook URL's host could not be resolved."


def strict(settings: Settings, **update: Any) -> Settings:
    """The production defaults: https only, public addresses only."""
    return settings.model_copy(
        update={"webhook_allow_http": False, "webhook_allow_private": False, **update}
    )


@pytest.fixture
async def strict_api(
    api: Api, settings: Settings, engine: AsyncEngine, redis: ArqRedis
) -> AsyncIterator[Api]:
    """A second app on a real uvicorn, with the production defaults (same database)."""
    async with (
        serving(create_app(strict(settings), engine, redis)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        yield Api(client, engine)


async def set_webhook(api: Api, account: str, url: str | None, token: str) -> dict[str, Any]:
    return await api.mutate(
        "setNotificationChannels", SET_CHANNELS, {"accountId": account, "webhookUrl": url}, token
    )


async def store_target(engine: AsyncEngine, name: str, url: str) -> None:
    """The stored channel changed behind the check's back (a DNS change after it)."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE notification_channels SET webhook_url = :url WHERE account_id = "
                "(SELECT id FROM accounts WHERE name = :name)"
            ),
            {"url": url, "name": name},
        )


async def webhook_delivery(api: Api, account: str) -> dict[str, Any]:
    [edge] = (await alert_view(api, account))["notifications"]["edges"]
    [found] = [d for d in edge["node"]["deliveries"] if d["channel"] == "WEBHOOK"]
    return dict(found)


# ---------------------------------------------------------------- the guard, unit by unit


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True),
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("127.255.255.254", False),
        ("0.0.0.0", False),
        ("10.0.0.5", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("224.0.0.1", False),
        ("239.255.255.250", False),
        ("255.255.255.255", False),
        ("240.0.0.1", False),
        ("192.0.2.1", False),
        ("198.18.0.1", False),
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("fd12::1", False),
        ("ff02::1", False),
        ("fec0::1", False),
        ("2001:db8::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("::127.0.0.1", False),
        ("64:ff9b::7f00:1", False),
        ("2002:7f00:1::1", False),
        ("2002:a00:1::1", False),
    ],
)
def test_finding4_only_globally_routable_addresses_are_public(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public


@pytest.mark.parametrize(
    ("url", "allow_http", "reason"),
    [
        ("http://93.184.215.14/hook", False, "scheme"),
        ("HTTP://93.184.215.14/hook", False, "scheme"),
        ("https://user:pass@93.184.215.14/hook", True, "userinfo"),
        ("https://user@93.184.215.14/hook", True, "userinfo"),
        ("https://@93.184.215.14/hook", True, "userinfo"),
        ("http://127.0.0.1\\@93.184.215.14/hook", True, "userinfo"),
        ("ftp://93.184.215.14/hook", True, "malformed"),
        ("javascript:alert(1)", True, "malformed"),
        ("93.184.215.14/hook", True, "malformed"),
        ("https://", True, "malformed"),
        ("https://[::1/hook", True, "malformed"),
        ("https://93.184.215.14:99999/", True, "malformed"),
        ("https://93.184.215.14/a b", True, "malformed"),
        ("https://93.184.215.14/\nHost: x", True, "malformed"),
        ("https://93.184.215.14/" + "a" * 2000, True, "malformed"),
    ],
)
def test_finding4_parse_refuses_bad_urls(url: str, allow_http: bool, reason: str) -> None:
    with pytest.raises(WebhookRefused) as refused:
        parse_webhook_url(url, allow_http=allow_http)
    assert refused.value.reason == reason


@pytest.mark.parametrize(
    ("url", "host", "port"),
    [
        ("https://93.184.215.14/hook", "93.184.215.14", 443),
        ("https://Hooks.Example.COM:8443/a?b=c", "hooks.example.com", 8443),
        ("https://[2606:4700:4700::1111]/hook", "2606:4700:4700::1111", 443),
    ],
)
def test_finding4_parse_keeps_good_urls(url: str, host: str, port: int) -> None:
    parsed = parse_webhook_url(url, allow_http=False)
    assert (parsed.scheme, parsed.host, parsed.port) == ("https", host, port)
    assert parse_webhook_url(url.replace("https", "http", 1), allow_http=True).scheme == "http"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://127.0.0.1/hook", "address"),
        ("https://127.1/hook", "address"),
        ("https://2130706433/hook", "address"),
        ("https://0x7f.1/hook", "address"),
        ("https://localhost/hook", "address"),
        ("https://LOCALHOST:8080/hook", "address"),
        ("https://10.1.2.3/hook", "address"),
        ("https://169.254.169.254/latest", "address"),
        ("https://[::1]/hook", "address"),
        ("https://[::ffff:127.0.0.1]/hook", "address"),
        ("https://[fe80::1]/hook", "address"),
        ("https://0.0.0.0/hook", "address"),
        ("https://a..b/hook", "unresolvable"),  # refused by the IDNA codec: no lookup is sent
        ("https://" + "a" * 64 + ".example/hook", "unresolvable"),
    ],
)
async def test_finding4_resolve_refuses_hosts_that_are_not_public(
    settings: Settings, url: str, reason: str
) -> None:
    with pytest.raises(WebhookRefused) as refused:
        await resolve_webhook(url, strict(settings))
    assert refused.value.reason == reason


async def test_finding4_resolve_keeps_public_literals_and_allow_private_skips_the_check(
    settings: Settings,
) -> None:
    target = await resolve_webhook(PUBLIC_URL, strict(settings))
    assert target.addresses == (ipaddress.ip_address("93.184.215.14"),)
    relaxed = strict(settings, webhook_allow_private=True)
    assert (await resolve_webhook("https://localhost/hook", relaxed)).addresses[0].is_loopback
    # With private addresses allowed nothing is refused by address, so nothing is looked up.
    assert (await validate_webhook_url("https://a..b/hook", relaxed)).host == "a..b"
    with pytest.raises(WebhookRefused):
        await validate_webhook_url("https://a..b/hook", strict(settings))


# ---------------------------------------------------------------- when a URL is set


async def test_finding4_attack_an_inside_port_is_reachable_only_where_private_is_allowed(
    api: Api,
    strict_api: Api,
    run_jobs: Any,
    hook: Receiver,
) -> None:
    """The attack: an account user points its webhook at an inside port and the worker
    posts there. Reproduced where private addresses are allowed (the shared test app, as
    every deployment was before the fix); refused with the production defaults."""
    account = await watched(api, "Scanner")
    token = await api.token(account)
    allowed = await set_webhook(api, account, hook.url, token)
    assert allowed["userErrors"] == [] and allowed["account"]["channels"]["webhookUrl"] == hook.url
    await charge(api, account, "60.00")
    await run_jobs()
    assert len(hook.requests) == 1  # the worker reached 127.0.0.1

    for url in (hook.url, hook.url.replace("http:", "https:")):
        refused = await set_webhook(strict_api, account, url, token)
        assert refused["account"] is None
        assert refused["userErrors"] == [
            {
                "code": "INVALID_INPUT",
                "field": ["webhookUrl"],
                "message": HTTPS_ONLY if url == hook.url else PRIVATE,
            }
        ]
    assert (await alert_view(api, account))["channels"]["webhookUrl"] == hook.url  # unchanged


async def test_finding4_an_http_url_is_refused_and_nothing_is_stored(
    api: Api, strict_api: Api
) -> None:
    account = await api.account("Plain")
    token = await api.token(account)
    before = await snapshot(api.engine)

    payload = await set_webhook(strict_api, account, "http://93.184.215.14/hook", token)

    assert payload["account"] is None
    assert payload["userErrors"] == [
        {"code": "INVALID_INPUT", "field": ["webhookUrl"], "message": HTTPS_ONLY}
    ]
    assert (await alert_view(api, account))["channels"] is None
    assert await snapshot(api.engine) == before


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://127.0.0.1:6379/hook", PRIVATE),  # loopback (Redis' port)
        ("https://127.0.0.2/hook", PRIVATE),
        ("https://10.0.0.5/hook", PRIVATE),  # private
        ("https://172.16.0.1/hook", PRIVATE),
        ("https://192.168.1.1/hook", PRIVATE),
        ("https://169.254.169.254/latest/meta-data/", PRIVATE),  # link-local (cloud metadata)
        ("https://100.64.0.1/hook", PRIVATE),  # shared address space (carrier-grade NAT)
        ("https://0.0.0.0/hook", PRIVATE),  # unspecified
        ("https://224.0.0.1/hook", PRIVATE),  # multicast
        ("https://[::1]/hook", PRIVATE),  # IPv6 loopback
        ("https://[::ffff:127.0.0.1]/hook", PRIVATE),  # IPv4-mapped IPv6
        ("https://[fe80::1]/hook", PRIVATE),
        ("https://[fd00::1]/hook", PRIVATE),
        ("https://localhost/hook", PRIVATE),  # a name that resolves to loopback
        ("https://2130706433/hook", PRIVATE),  # 127.0.0.1 as one number
        ("https://user:pass@93.184.215.14/hook", USERINFO),
        ("https://a..b/hook", UNRESOLVABLE),
        ("https://[::1/hook", "An http(s) URL is needed."),
    ],
)
async def test_finding4_private_loopback_and_odd_urls_are_refused_and_change_nothing(
    api: Api, strict_api: Api, url: str, message: str
) -> None:
    account = await api.account("Careful")
    token = await api.token(account)
    await set_webhook(strict_api, account, PUBLIC_URL, token)
    before = await snapshot(api.engine)

    payload = await set_webhook(strict_api, account, url, token)

    assert payload["account"] is None
    assert payload["userErrors"] == [
        {"code": "INVALID_INPUT", "field": ["webhookUrl"], "message": message}
    ]
    assert (await alert_view(api, account))["channels"]["webhookUrl"] == PUBLIC_URL
    assert await snapshot(api.engine) == before


@pytest.mark.parametrize(
    "url", [PUBLIC_URL, "https://8.8.8.8:8443/a?b=c", "https://[2606:4700:4700::1111]/hook"]
)
async def test_finding4_a_public_https_url_is_accepted(api: Api, strict_api: Api, url: str) -> None:
    account = await api.account("Public")
    token = await api.token(account)

    payload = await set_webhook(strict_api, account, url, token)

    assert payload["userErrors"] == []
    assert payload["account"]["channels"]["webhookUrl"] == url
    assert (await alert_view(api, account))["channels"]["webhookUrl"] == url


# ---------------------------------------------------------------- at delivery


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"])
async def test_finding4_a_stored_target_now_loopback_is_not_posted_at_delivery(
    api: Api,
    strict_api: Api,
    settings: Settings,
    redis: ArqRedis,
    hook: Receiver,
    host: str,
) -> None:
    """Checked when set, then the name's address changed (simulated in the table): the
    worker checks again, posts nothing and records only a generic refusal."""
    account = await watched(api, "Rebound")
    await set_webhook(strict_api, account, PUBLIC_URL, await api.token(account))
    port = httpx.URL(hook.url).port
    await store_target(api.engine, "Rebound", f"http://{host}:{port}/hook")
    await charge(api, account, "60.00")

    # http allowed, so that the refusal is the address's.
    await drain(strict(settings, webhook_allow_http=True), api.engine, redis)

    assert hook.requests == []
    assert await webhook_delivery(api, account) == {
        "channel": "WEBHOOK",
        "status": "FAILED",
        "attempts": 3,
        "lastError": "delivery refused (address not allowed)",
    }


async def test_finding4_an_http_target_is_not_posted_by_a_strict_worker(
    api: Api,
    strict_api: Api,
    settings: Settings,
    redis: ArqRedis,
    hook: Receiver,
) -> None:
    account = await watched(api, "Downgraded")
    await set_webhook(strict_api, account, PUBLIC_URL, await api.token(account))
    await store_target(api.engine, "Downgraded", hook.url)
    await charge(api, account, "60.00")

    await drain(strict(settings), api.engine, redis)

    assert hook.requests == []
    assert (await webhook_delivery(api, account))["lastError"] == (
        "delivery refused (address not allowed)"
    )


async def test_finding4_delivery_connects_to_the_checked_address_with_the_hosts_name(
    api: Api,
    run_jobs: Any,
    hook: Receiver,
) -> None:
    """``localhost`` is resolved once by the worker and the checked address is dialled
    (the receiver listens on 127.0.0.1 only; ::1, if it comes first, fails over to it);
    the Host header still names the URL's host."""
    port = httpx.URL(hook.url).port
    account = await watched(api, "Named", webhook_url=f"http://localhost:{port}/hook")
    await charge(api, account, "60.00")

    await run_jobs()

    assert (await webhook_delivery(api, account))["status"] == "SENT"
    [(headers, _)] = hook.requests
    assert headers["host"] == f"localhost:{port}"


async def test_finding4_an_error_status_is_recorded_as_a_generic_text(
    api: Api,
    run_jobs: Any,
    hook: Receiver,
) -> None:
    """Before: "HTTP 405", the answer of whatever listened on the port."""
    hook.status = 405
    account = await watched(api, "Refusing", webhook_url=hook.url)
    await charge(api, account, "60.00")

    await run_jobs()

    assert await webhook_delivery(api, account) == {
        "channel": "WEBHOOK",
        "status": "FAILED",
        "attempts": 3,
        "lastError": "delivery failed (status 405)",
    }
    assert len(hook.requests) == 3


async def test_finding4_a_closed_port_is_recorded_as_could_not_connect(
    api: Api, run_jobs: Any
) -> None:
    """Before: "ConnectError: All connection attempts failed" and the like."""
    account = await watched(api, "Closed", webhook_url=f"http://127.0.0.1:{free_port()}/hook")
    await charge(api, account, "60.00")

    await run_jobs()

    assert await webhook_delivery(api, account) == {
        "channel": "WEBHOOK",
        "status": "FAILED",
        "attempts": 3,
        "lastError": "could not connect",
    }


async def test_finding4_a_redirect_is_not_followed(api: Api, run_jobs: Any, hook: Receiver) -> None:
    async def moved(request: Request) -> Response:
        return Response(status_code=307, headers={"Location": hook.url})

    app = Starlette(routes=[Route("/hook", moved, methods=["POST"])])
    async with serving(app) as url:
        account = await watched(api, "Redirected", webhook_url=f"{url}/hook")
        await charge(api, account, "60.00")
        await run_jobs()

    assert hook.requests == []
    assert (await webhook_delivery(api, account))["lastError"] == "delivery failed (status 307)"


async def test_finding4_sms_and_email_errors_are_generic_too(
    api: Api,
    settings: Settings,
    redis: ArqRedis,
    mailbox: Mailbox,
    gateway: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="accountgraph.alerts.delivery")
    gateway.status = 503
    account = await watched(api, "Failing", email="ops@example.com", phone="+15550100")
    closed = await watched(api, "Unreachable", phone="+15550101")
    mailbox.refuse = True
    try:
        await charge(api, account, "60.00")
        await drain(settings.model_copy(update={"sms_gateway_url": gateway.url}), api.engine, redis)
        await charge(api, closed, "60.00")
        await drain(
            settings.model_copy(update={"sms_gateway_url": f"http://127.0.0.1:{free_port()}/sms"}),
            api.engine,
            redis,
        )
    finally:
        mailbox.refuse = False

    [edge] = (await alert_view(api, account))["notifications"]["edges"]
    assert sorted((d["channel"], d["lastError"]) for d in edge["node"]["deliveries"]) == [
        ("EMAIL", "could not deliver email"),
        ("SMS", "delivery failed (status 503)"),
    ]
    [edge] = (await alert_view(api, closed))["notifications"]["edges"]
    assert [d["lastError"] for d in edge["node"]["deliveries"]] == ["could not connect"]
    assert any("451" in record.getMessage() for record in caplog.records)  # in the log only


# ---------------------------------------------------------------- signed always


async def test_finding4_without_a_secret_webhooks_are_still_signed_with_a_process_key(
    api: Api,
    settings: Settings,
    redis: ArqRedis,
    hook: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="accountgraph.alerts.delivery")
    delivery._process_secret.cache_clear()  # a fresh process, as far as the key goes
    unsigned = settings.model_copy(update={"webhook_secret": None})
    first = await watched(api, "Signed-1", webhook_url=hook.url)
    second = await watched(api, "Signed-2", webhook_url=hook.url)
    await charge(api, first, "60.00")
    await charge(api, second, "60.00")

    await drain(unsigned, api.engine, redis)

    assert len(hook.requests) == 2
    key = delivery._process_secret()
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    for headers, body in hook.requests:
        expected = hmac.new(
            key.encode(), headers["x-accountgraph-timestamp"].encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        assert headers["x-accountgraph-signature"] == f"sha256={expected}"
    warnings = [
        record for record in caplog.records if "ACCOUNTGRAPH_WEBHOOK_SECRET" in record.getMessage()
    ]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert "random per-process key" in warnings[0].getMessage()
