"""P1 with the principal cache (accounts/principals.py): a token is looked up once per
few seconds, and a revocation reaches every gateway at once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from arq.connections import ArqRedis
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from accountgraph.accounts import tokens
from accountgraph.accounts.principals import PrincipalCache, announce_revoked
from accountgraph.app import create_app
from accountgraph.config import Settings
from accountgraph.domain import Principal, PrincipalKind
from tests.conftest import free_port, serving
from tests.helpers import Api

VIEWER = {"query": "{ viewer { kind account { name } } }"}
SOMEONE = Principal(PrincipalKind.ACCOUNT_USER, 1, "Acme:ci")


@pytest.fixture
def token_lookups(engine: AsyncEngine) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *args: Any) -> None:
        if "api_tokens" in statement:
            seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine.sync_engine, "before_cursor_execute", record)


async def until_listening(cache: PrincipalCache) -> None:
    for _ in range(200):
        if cache.enabled:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the revocation listener never subscribed")


async def viewer(client: httpx.AsyncClient, token: str) -> dict[str, Any]:
    response = await client.post(
        "/graphql", json=VIEWER, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def refused_soon(client: httpx.AsyncClient, token: str) -> dict[str, Any]:
    for _ in range(100):
        body = await viewer(client, token)
        if body.get("errors"):
            return body
        await asyncio.sleep(0.02)
    raise AssertionError(f"still accepted after 2 s: {body}")


async def test_p1_a_token_is_looked_up_once_then_kept(api: Api, token_lookups: list[str]) -> None:
    # given
    account = await api.account("Acme")
    token = await api.token(account)
    token_lookups.clear()

    # when
    answers = [await viewer(api.client, token) for _ in range(5)]

    # then
    assert all(body["data"]["viewer"]["account"]["name"] == "Acme" for body in answers)
    assert len(token_lookups) <= 1  # at most the first (the token was just created)


async def test_p1_a_revocation_reaches_every_gateway_at_once(
    api: Api, settings: Settings, engine: AsyncEngine, redis: ArqRedis
) -> None:
    # given: a second gateway beside the tests' one, both keeping the token's principal
    account = await api.account("Acme")
    token = await api.token(account)
    second_app = create_app(settings, engine, redis)
    async with serving(second_app) as url, httpx.AsyncClient(base_url=url) as second:
        for client in (api.client, second):
            assert (await viewer(client, token))["data"]["viewer"]["kind"] == "ACCOUNT_USER"

        # when
        async with engine.begin() as conn:
            revoked = await tokens.revoke(conn, token)
        await announce_revoked(redis, revoked)

        # then
        for client in (api.client, second):
            body = await refused_soon(client, token)
            assert [e["extensions"]["code"] for e in body["errors"]] == ["UNAUTHENTICATED"]


async def test_p1_revoking_twice_or_an_unknown_token_revokes_nothing(api: Api) -> None:
    account = await api.account("Acme")
    token = await api.token(account)
    async with api.engine.begin() as conn:
        assert await tokens.revoke(conn, token) == [tokens.hash_token(token)]
        assert await tokens.revoke(conn, token) == []
        assert await tokens.revoke(conn, "agt_" + "x" * 43) == []


async def test_p1_entries_expire_after_their_ttl(redis: ArqRedis) -> None:
    cache = PrincipalCache(0.2)
    cache.start(redis)
    try:
        await until_listening(cache)
        cache.put("digest", SOMEONE)
        assert cache.get("digest") == SOMEONE
        await asyncio.sleep(0.25)
        assert cache.get("digest") is None
    finally:
        await cache.close()


async def test_p1_nothing_is_kept_while_revocations_cannot_be_heard() -> None:
    # given: Redis is not there (nobody listens on this port)
    unreachable = aioredis.Redis(port=free_port(), socket_connect_timeout=0.2)
    cache = PrincipalCache(5.0)
    cache.start(unreachable)
    try:
        await asyncio.sleep(0.3)

        # when
        cache.put("digest", SOMEONE)

        # then: every request looks its token up
        assert not cache.enabled
        assert cache.get("digest") is None
    finally:
        await cache.close()
        await unreachable.aclose()


async def test_p1_a_zero_ttl_turns_the_cache_off(redis: ArqRedis) -> None:
    cache = PrincipalCache(0)
    cache.start(redis)
    cache.put("digest", SOMEONE)
    assert cache.get("digest") is None and not cache.enabled
    await cache.close()


async def test_p1_the_cache_is_bounded(redis: ArqRedis) -> None:
    cache = PrincipalCache(60, max_entries=3)
    cache.start(redis)
    try:
        await until_listening(cache)
        for number in range(5):
            cache.put(f"d{number}", SOMEONE)
        assert [cache.get(f"d{n}") is not None for n in range(5)] == [
            False,
            False,
            True,
            True,
            True,
        ]
    finally:
        await cache.close()
