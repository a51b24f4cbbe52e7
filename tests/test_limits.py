"""Limits of the public API: each refuses with its code and runs nothing (depth, aliases,
tokens, cost, rate, introspection, batching, body size and time), and ``extensions.cost``
on an ordinary answer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
from arq.connections import ArqRedis
from graphql import get_introspection_query, parse
from sqlalchemy.ext.asyncio import AsyncEngine

from accountgraph.api.budget import BUCKET_KEY
from accountgraph.api.cost import query_cost
from accountgraph.app import create_app
from accountgraph.config import Settings
from accountgraph.schema import MAX_ALIASES, MAX_DEPTH, MAX_TOKENS, schema
from tests.conftest import free_port, serving
from tests.helpers import CREATE_ACCOUNT, OPERATOR_TOKEN, Api

AUTH = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
ACCOUNT_COUNT = "{ accounts { totalCount } }"


def codes(body: dict[str, Any]) -> list[str]:
    return [error.get("extensions", {}).get("code") for error in body.get("errors", [])]


async def account_count(api: Api) -> int:
    count: int = (await api.gql(ACCOUNT_COUNT))["accounts"]["totalCount"]
    return count


@contextlib.asynccontextmanager
async def app_with(
    settings: Settings, engine: AsyncEngine, redis: ArqRedis, **changes: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway of its own with ``changes`` to the settings, and a client of it."""
    changed = settings.model_copy(update=changes)
    async with (
        serving(create_app(changed, engine, redis)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        yield client


# -- cost ---------------------------------------------------------------------------------


async def test_an_answer_reports_its_cost_and_the_budget(api: Api) -> None:
    response = await api.client.post(
        "/graphql",
        headers=AUTH,
        json={
            "query": "{ accounts(first: 5) { totalCount edges { node { id sites { name } } } } }"
        },
    )
    body = response.json()
    assert body["data"]["accounts"]["totalCount"] == 0
    cost = body["extensions"]["cost"]
    assert cost["requestedQueryCost"] == 1 + 5 * (1 + 1 + 10 * 1)
    assert cost["maximumAvailable"] == 50_000
    throttle = cost["throttleStatus"]
    assert throttle["maximumAvailable"] == 1_000_000
    assert 0 < throttle["currentlyAvailable"] <= 1_000_000
    assert throttle["restoreRate"] > 0


def test_cost_follows_fragments_aliases_pages_and_mutations() -> None:
    graph = schema._schema
    query = """query($n: Int) {
      a: node(id: "x") { ... on Account { members(first: $n) { edges { node { id } } } } ...T }
      b: accounts { pageInfo { hasNextPage } }
    }
    fragment T on Transfer { master { id } member { id } }"""
    # node: the dearer of Account (1 + 1 + 7 * 2) and Transfer (1 + 1 + 1); accounts 1 + 1
    assert query_cost(graph, parse(query), None, {"n": 7}) == 16 + 2
    # no first: 50 a page; first over 500 counts 500
    assert query_cost(graph, parse("{ accounts { edges { node { id } } } }"), None) == 101
    assert query_cost(graph, parse("{ accounts(first: 9999) { edges { cursor } } }"), None) == 501
    mutation = "mutation { a: updateSettings(input: {}) { userErrors { code } } }"
    assert query_cost(graph, parse(mutation), None) == 10 + 1 + 10


def test_graphiql_introspection_and_the_examples_stay_under_the_maximum() -> None:
    from pathlib import Path

    graph = schema._schema
    maximum = Settings().max_query_cost
    documents = [get_introspection_query(descriptions=True, input_value_deprecation=True)]
    documents += [path.read_text() for path in Path("examples").glob("*.graphql")]
    for document in documents:
        cost = query_cost(graph, parse(document), None)
        assert cost is not None and cost <= maximum


async def test_a_query_over_the_maximum_cost_is_refused_and_nothing_runs(api: Api) -> None:
    body = await api.raw(
        """mutation($input: CreateAccountInput!) {
      createAccount(input: $input) {
        account { members(first: 500) { edges { node {
          members(first: 500) { edges { node { id } } } } } } }
      }
    }""",
        {"input": {"name": "costly"}},
    )
    assert codes(body) == ["QUERY_TOO_COSTLY"]
    assert body["data"] is None
    assert body["extensions"]["cost"]["requestedQueryCost"] > 50_000
    assert await account_count(api) == 0


async def test_the_maximum_cost_is_a_setting(
    settings: Settings, engine: AsyncEngine, redis: ArqRedis
) -> None:
    async with app_with(settings, engine, redis, max_query_cost=10) as client:
        small = (
            await client.post(
                "/graphql", headers=AUTH, json={"query": "{ viewer { account { id } } }"}
            )
        ).json()
        big = (
            await client.post(
                "/graphql",
                headers=AUTH,
                json={"query": "{ accounts(first: 5) { edges { node { id } } } }"},
            )
        ).json()
    assert "errors" not in small
    assert codes(big) == ["QUERY_TOO_COSTLY"]
    assert big["extensions"]["cost"] == {"requestedQueryCost": 11, "maximumAvailable": 10}


# -- rate limit ---------------------------------------------------------------------------


async def test_rate_limit_per_principal_refuses_with_429_once_the_budget_is_spent(
    settings: Settings, engine: AsyncEngine, redis: ArqRedis, clean: None
) -> None:
    query = {"query": "{ accounts(first: 5) { edges { node { id } } } }"}  # costs 11
    try:
        async with app_with(settings, engine, redis, rate_limit_cost_per_minute=30) as client:
            answers = [await client.post("/graphql", headers=AUTH, json=query) for _ in range(3)]
            anonymous = await client.post(
                "/graphql", json={"query": "{ __schema { queryType { name } } }"}
            )  # another principal
    finally:
        await redis.delete(BUCKET_KEY + "operator")
    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert [codes(answer.json()) for answer in answers[:2]] == [[], []]
    refused = answers[2].json()
    assert codes(refused) == ["RATE_LIMITED"]
    assert refused["data"] is None
    assert int(answers[2].headers["retry-after"]) >= 1
    assert refused["errors"][0]["extensions"]["retryAfterSeconds"] >= 1
    throttle = refused["extensions"]["cost"]["throttleStatus"]
    assert throttle["maximumAvailable"] == 30 and throttle["currentlyAvailable"] < 11
    assert anonymous.status_code == 200 and "errors" not in anonymous.json()


async def test_rate_limit_fails_open_when_redis_is_down(
    settings: Settings, engine: AsyncEngine
) -> None:
    pool = ArqRedis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2)
    try:
        async with app_with(settings, engine, pool, rate_limit_cost_per_minute=1) as client:
            response = await client.post(
                "/graphql", headers=AUTH, json={"query": "{ viewer { kind } }"}
            )
    finally:
        await pool.aclose()
    assert response.status_code == 200
    body = response.json()
    assert body["data"] == {"viewer": {"kind": "OPERATOR"}}
    assert "throttleStatus" not in body["extensions"]["cost"]  # not metered


# -- depth, aliases, tokens ----------------------------------------------------------------


async def test_a_query_deeper_than_the_limit_is_refused(api: Api) -> None:
    nested = "id"
    for _ in range(MAX_DEPTH):
        nested = f"link {{ master {{ {nested} }} }}"
    body = await api.raw(f"{{ viewer {{ account {{ {nested} }} }} }}")
    assert set(codes(body)) == {"QUERY_TOO_DEEP"}
    assert body.get("data") is None


async def test_more_aliases_than_the_limit_are_refused(api: Api) -> None:
    aliases = " ".join(f"a{n}: viewer {{ kind }}" for n in range(MAX_ALIASES + 1))
    body = await api.raw(f"{{ {aliases} }}")
    assert codes(body) == ["TOO_MANY_ALIASES"]
    assert body.get("data") is None


async def test_more_tokens_than_the_limit_are_refused(api: Api) -> None:
    body = await api.raw("{ viewer { " + "kind " * MAX_TOKENS + "} }")
    assert codes(body) == ["TOO_MANY_TOKENS"]
    assert body.get("data") is None


# -- introspection and GraphiQL ----------------------------------------------------------


async def test_introspection_answers_without_a_token_when_on(api: Api) -> None:
    body = await api.raw("{ __schema { queryType { name } } }", token=None)
    assert body["data"] == {"__schema": {"queryType": {"name": "Query"}}}


async def test_introspection_and_graphiql_can_be_switched_off(
    settings: Settings, engine: AsyncEngine, redis: ArqRedis
) -> None:
    async with app_with(
        settings, engine, redis, introspection_enabled=False, graphiql_enabled=False
    ) as client:
        schema_query = await client.post(
            "/graphql", headers=AUTH, json={"query": "{ __schema { types { name } } }"}
        )
        type_query = await client.post(
            "/graphql", json={"query": '{ __type(name: "Account") { fields { name } } }'}
        )
        typename = await client.post(
            "/graphql", headers=AUTH, json={"query": "{ viewer { __typename kind } }"}
        )
        graphiql = await client.get("/graphql", headers={"Accept": "text/html"})
    assert set(codes(schema_query.json())) == {"INTROSPECTION_DISABLED"}
    assert set(codes(type_query.json())) == {"INTROSPECTION_DISABLED"}
    assert schema_query.json()["data"] is None
    assert typename.json()["data"] == {"viewer": {"__typename": "Viewer", "kind": "OPERATOR"}}
    assert graphiql.status_code == 404


# -- batching, body size, slow bodies ----------------------------------------------------


async def test_batched_operations_are_refused_with_400_and_nothing_runs(api: Api) -> None:
    operation = {"query": CREATE_ACCOUNT, "variables": {"input": {"name": "batched"}}}
    response = await api.client.post("/graphql", headers=AUTH, json=[operation, operation])
    assert response.status_code == 400
    assert "Batching is not enabled" in response.text
    assert await account_count(api) == 0


async def test_a_body_over_the_cap_is_refused_with_413_and_nothing_runs(api: Api) -> None:
    padding = "x" * 1_100_000
    response = await api.client.post(
        "/graphql",
        headers=AUTH,
        json={"query": CREATE_ACCOUNT, "variables": {"input": {"name": "big", "terms": padding}}},
    )
    assert response.status_code == 413
    assert codes(response.json()) == ["BODY_TOO_LARGE"]
    assert await account_count(api) == 0


async def test_a_streamed_body_over_the_cap_is_refused_with_413(
    settings: Settings, engine: AsyncEngine, redis: ArqRedis, clean: None
) -> None:
    """Chunked, with no Content-Length: counted as it arrives."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"query": "mutation { createAccount(input: {name: \\"chunked\\", terms: \\"'
        for _ in range(10):
            yield b"y" * 1024
        yield b'\\"}) { userErrors { code } } }"}'

    async with app_with(settings, engine, redis, max_body_bytes=4096) as client:
        response = await client.post(
            "/graphql", content=chunks(), headers={**AUTH, "Content-Type": "application/json"}
        )
        count = (await client.post("/graphql", headers=AUTH, json={"query": ACCOUNT_COUNT})).json()
    assert response.status_code == 413
    assert codes(response.json()) == ["BODY_TOO_LARGE"]
    assert count["data"]["accounts"]["totalCount"] == 0


async def test_a_body_that_arrives_too_slowly_is_refused_with_408(
    settings: Settings, engine: AsyncEngine, redis: ArqRedis
) -> None:
    async with app_with(settings, engine, redis, body_timeout_s=0.3) as client:
        address = urlsplit(str(client.base_url))
        reader, writer = await asyncio.open_connection(address.hostname, address.port)
        writer.write(
            b"POST /graphql HTTP/1.1\r\nHost: test\r\nContent-Type: application/json"
            b'\r\nContent-Length: 100\r\n\r\n{"query":'
        )  # and then nothing
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(4096), 5)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408")
    assert b"BODY_TIMEOUT" in answer
