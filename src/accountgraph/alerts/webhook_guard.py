"""Security finding 4: where a webhook may be posted (no SSRF, no internal port scanner).

A webhook URL is an account user's input, and the worker posts to it from inside the
network. So a URL must use https (unless ACCOUNTGRAPH_WEBHOOK_ALLOW_HTTP), carry no user
name or password, and its host must resolve to globally routable addresses only: every
address it resolves to is checked, and one loopback, private, link-local, multicast,
unspecified or reserved address (IPv4, IPv6, IPv4 embedded in IPv6 such as
``::ffff:127.0.0.1``) refuses the URL, unless ACCOUNTGRAPH_WEBHOOK_ALLOW_PRIVATE. A host
that does not resolve is refused.

The URL is checked when it is set (``validate_webhook_url``) and again at every delivery
(``resolve_webhook``), whose checked addresses the sender connects to directly, so that a
DNS answer that changes after the check cannot smuggle a private address in.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from accountgraph.config import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Reason = Literal["malformed", "scheme", "userinfo", "address", "unresolvable"]

RESOLVE_TIMEOUT_S = 5.0
MAX_URL_LENGTH = 2000
DEFAULT_PORTS = {"http": 80, "https": 443}
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

MESSAGES: dict[Reason, str] = {
    "malformed": "An http(s) URL is needed.",
    "scheme": "The webhook URL must use https.",
    "userinfo": "The webhook URL must not contain a user name or password.",
    "address": "The webhook URL resolves to a private or loopback address.",
    "unresolvable": "The webhook URL's host could not be resolved.",
}


class WebhookRefused(ValueError):
    """The URL may not be posted to; ``reason`` says why, ``message`` for the user."""

    def __init__(self, reason: Reason) -> None:
        self.reason: Reason = reason
        self.message = MESSAGES[reason]
        super().__init__(self.message)


@dataclass(frozen=True)
class WebhookUrl:
    """A well-formed webhook URL, split: ``host`` is lower case, without brackets."""

    url: str
    scheme: str
    host: str
    port: int


@dataclass(frozen=True)
class WebhookTarget:
    """A URL and every address its host resolved to, each one checked."""

    url: WebhookUrl
    addresses: tuple[IPAddress, ...]


def parse_webhook_url(value: str, *, allow_http: bool) -> WebhookUrl:
    """The URL's parts, or ``WebhookRefused`` (malformed, scheme, userinfo). Pure."""
    if (
        not value
        or len(value) > MAX_URL_LENGTH
        or any(ch.isspace() or not ch.isprintable() for ch in value)
    ):
        raise WebhookRefused("malformed")
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError for a port out of range
    except ValueError:  # e.g. "http://[::1/": an unclosed IPv6 host
        raise WebhookRefused("malformed") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise WebhookRefused("malformed")
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise WebhookRefused("userinfo")
    if scheme != "https" and not allow_http:
        raise WebhookRefused("scheme")
    return WebhookUrl(
        url=value,
        scheme=scheme,
        host=parts.hostname.lower(),
        port=DEFAULT_PORTS[scheme] if port is None else port,
    )


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries (mapped, 6to4, Teredo, NAT64)."""
    found = [a for a in (address.ipv4_mapped, address.sixtofour) if a is not None]
    if address.teredo is not None:
        found.extend(address.teredo)
    if address in _NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def is_public_address(address: IPAddress) -> bool:
    """Whether ``address`` is globally routable: not loopback, private, link-local,
    multicast, unspecified, reserved or otherwise special, nor an IPv6 address that
    carries such an IPv4 address. Pure."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return False  # a zone index: only meaningful on a local link
        if any(not is_public_address(inner) for inner in _embedded_ipv4(address)):
            return False
        if address.is_site_local:
            return False
    return address.is_global and not (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
    )


def literal_address(host: str) -> IPAddress | None:
    """The address a host names literally (``127.0.0.1``, ``::1``), else None."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def resolve_host(
    host: str, port: int, *, timeout_s: float = RESOLVE_TIMEOUT_S
) -> tuple[IPAddress, ...]:
    """Every address ``host`` resolves to (for TCP), in resolver order, or
    ``WebhookRefused("unresolvable")``; the lookup is bounded by ``timeout_s``."""
    literal = literal_address(host)
    if literal is not None:
        return (literal,)
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout_s
        )
    except (OSError, TimeoutError, UnicodeError, ValueError):
        raise WebhookRefused("unresolvable") from None
    found: list[IPAddress] = []
    for family, _, _, _, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        try:
            address = ipaddress.ip_address(str(sockaddr[0]))
        except ValueError:
            raise WebhookRefused("unresolvable") from None
        if family == socket.AF_INET6 and len(sockaddr) >= 4 and sockaddr[3]:
            address = ipaddress.IPv6Address(f"{address}%{sockaddr[3]}")
        if address not in found:
            found.append(address)
    if not found:
        raise WebhookRefused("unresolvable")
    return tuple(found)


async def resolve_webhook(
    value: str, settings: Settings, *, timeout_s: float = RESOLVE_TIMEOUT_S
) -> WebhookTarget:
    """The URL, checked against ``settings``, with every address of its host; refused
    (``WebhookRefused``) if ANY of them is not public, unless webhook_allow_private."""
    url = parse_webhook_url(value, allow_http=settings.webhook_allow_http)
    addresses = await resolve_host(url.host, url.port, timeout_s=timeout_s)
    if not settings.webhook_allow_private and not all(map(is_public_address, addresses)):
        raise WebhookRefused("address")
    return WebhookTarget(url=url, addresses=addresses)


async def validate_webhook_url(
    value: str, settings: Settings, *, timeout_s: float = RESOLVE_TIMEOUT_S
) -> WebhookUrl:
    """The check when a URL is set. With webhook_allow_private there is no address to
    refuse, so the host is not looked up (it need not resolve yet)."""
    if settings.webhook_allow_private:
        return parse_webhook_url(value, allow_http=settings.webhook_allow_http)
    return (await resolve_webhook(value, settings, timeout_s=timeout_s)).url
