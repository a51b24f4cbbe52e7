"""What frontend teams rely on: the example operations (valid against schema.graphql and
runnable), the GraphiQL page and its assets, CORS, and automatic persisted queries."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from graphql import (
    ExecutableDefinitionNode,
    GraphQLSchema,
    NonNullTypeNode,
    OperationDefinitionNode,
    build_schema,
    parse,
    print_ast,
    validate,
)
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.typing import Origin, Subprotocol

from accountgraph.app import create_app
from accountgraph.cli import demo_banner
from accountgraph.config import Settings
from accountgraph.persisted import INDEX_KEY, KEY_PREFIX
from accountgraph.playground import DEFAULT_QUERY, STATIC_DIR
from tests.conftest import free_port, serving
from tests.helpers import OPERATOR_TOKEN, Api

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.graphql"))
CONSOLE = "https://console.example.com"
AUTH = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


@pytest.fixture(scope="module")
def sdl_schema() -> GraphQLSchema:
    return build_schema((ROOT / "schema.graphql").read_text())


def problems(schema: GraphQLSchema, path: Path) -> list[str]:
    return [error.message for error in validate(schema, parse(path.read_text()))]


# -- example operations ------------------------------------------------------------------


def test_the_examples_cover_what_a_console_needs() -> None:
    names = {path.stem for path in EXAMPLES}
    assert names >= {
        "enterprise-tree",
        "member-finance",
        "transfer-book",
        "sharing-overview",
        "allocate-funds",
        "set-quota-alerts",
        "notifications",
    }


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_example_is_valid_against_schema_graphql(sdl_schema: GraphQLSchema, path: Path) -> None:
    assert problems(sdl_schema, path) == []


def test_operation_names_are_unique_for_codegen() -> None:
    names = [
        definition.name.value
        for path in EXAMPLES
        for definition in parse(path.read_text()).definitions
        if isinstance(definition, ExecutableDefinitionNode) and definition.name is not None
    ]
    assert len(names) == len(set(names))


def test_graphiql_opens_with_the_enterprise_tree_example() -> None:
    assert print_ast(parse(DEFAULT_QUERY)) == print_ast(
        parse((ROOT / "examples" / "enterprise-tree.graphql").read_text())
    )


def test_every_example_ships_its_variables() -> None:
    for path in EXAMPLES:
        variables = json.loads(path.with_suffix(".variables.json").read_text())
        operation = parse(path.read_text()).definitions[0]
        assert isinstance(operation, OperationDefinitionNode)
        declared = {v.variable.name.value for v in operation.variable_definitions or ()}
        assert set(variables) <= declared, path.name
        required = {
            v.variable.name.value
            for v in operation.variable_definitions or ()
            if isinstance(v.type, NonNullTypeNode) and v.default_value is None
        }
        assert required <= set(variables), (path.name, required - set(variables))


COMMAND = [sys.executable, "-m", "accountgraph.cli"]
# The examples that need an operator's token (P4); the others run as the demo's master.
OPERATOR_EXAMPLES = {"record-charge"}


@pytest.fixture
async def serve_demo(
    settings: Settings, clean: None, tmp_path: Path
) -> AsyncIterator[tuple[str, dict[str, str]]]:
    """``accountgraph serve --demo --worker`` on the emptied test database (ids restart at
    1, as in a fresh demo, whose ids the examples' variables files use) and Redis (no
    job ids left from other tests). Yields its URL and the tokens it printed."""
    assert settings.database_url is not None and settings.redis_url is not None
    port = free_port()
    log = tmp_path / "serve.log"
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "ACCOUNTGRAPH_QUEUE": f"accountgraph:demo:{uuid.uuid4().hex[:8]}",
        "ACCOUNTGRAPH_OUTBOX_POLL_S": "0.2",
    }
    with log.open("wb") as out:
        serve = subprocess.Popen(  # noqa: ASYNC220 - one child, waited for below
            [*COMMAND, "serve", "--demo", "--worker", "--no-migrate", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while "GraphiQL as the master" not in log.read_text():
            assert serve.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            await asyncio.sleep(0.2)
        tokens = dict(re.findall(r"^  (operator|master|member) +(agt_\S+)$", log.read_text(), re.M))
        yield f"http://127.0.0.1:{port}", tokens
    finally:
        serve.send_signal(signal.SIGTERM)
        await asyncio.to_thread(serve.wait, 60)


def user_errors(value: Any) -> list[Any]:
    """Every ``userErrors`` entry anywhere in an answer's data."""
    if isinstance(value, dict):
        found = list(value.get("userErrors") or [])
        return found + [e for k, v in value.items() if k != "userErrors" for e in user_errors(v)]
    if isinstance(value, list):
        return [error for item in value for error in user_errors(item)]
    return []


async def test_examples_run_as_shipped_against_serve_demo(
    serve_demo: tuple[str, dict[str, str]],
) -> None:
    """Each example with its ``.variables.json``, as a newcomer would paste them, against
    ``serve --demo``: no errors, no userErrors (the depth, alias and cost limits apply at
    run time too). The subscription is open meanwhile, and the README's recipe holds: the
    RecordCharge example takes Account-sub1 below its alert and a LOW_QUOTA arrives."""
    import websockets

    url, tokens = serve_demo
    subscription = ROOT / "examples" / "notifications.graphql"
    async with (
        websockets.connect(
            url.replace("http://", "ws://") + "/graphql",
            subprotocols=[Subprotocol("graphql-transport-ws")],
        ) as socket,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        await socket.send(
            json.dumps(
                {
                    "type": "connection_init",
                    "payload": {"Authorization": f"Bearer {tokens['master']}"},
                }
            )
        )
        assert json.loads(await socket.recv())["type"] == "connection_ack"
        query = subscription.read_text()
        values = json.loads(subscription.with_suffix(".variables.json").read_text())
        await socket.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": query, "variables": values},
                }
            )
        )
        # RecordCharge last: SetQuotaAlerts after it would set sub1's alert again, below
        # its threshold, before the worker evaluated the charge (A1: it starts disarmed).
        for path in sorted(EXAMPLES, key=lambda path: path.stem in OPERATOR_EXAMPLES):
            if path == subscription:
                continue
            token = tokens["operator" if path.stem in OPERATOR_EXAMPLES else "master"]
            response = await http.post(
                "/graphql",
                json={
                    "query": path.read_text(),
                    "variables": json.loads(path.with_suffix(".variables.json").read_text()),
                },
                headers={"Authorization": f"Bearer {token}"},
            )
            body = response.json()
            assert response.status_code == 200 and "errors" not in body, (path.name, body)
            data = body["data"]
            assert data and all(value is not None for value in data.values()), (path.name, data)
            assert user_errors(data) == [], (path.name, user_errors(data))

        async def low_quota() -> dict[str, Any]:
            while True:
                message = json.loads(await socket.recv())
                assert message["type"] == "next" and "errors" not in message["payload"], message
                event: dict[str, Any] = message["payload"]["data"]["notifications"]
                if event["kind"] == "LOW_QUOTA":
                    return event

        event = await asyncio.wait_for(low_quota(), 30)
    assert event["account"]["name"] == "Account-sub1"
    assert event["threshold"] == "500.00"
    assert {delivery["channel"] for delivery in event["deliveries"]} <= {"EMAIL", "SMS"}


# -- GraphiQL ----------------------------------------------------------------------------


async def test_graphiql_page_loads_its_assets_from_the_app(api: Api) -> None:
    page = await api.client.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert "https://" not in page.text and "http://" not in page.text  # no CDN
    assets = [
        "react.production.min.js",
        "react-dom.production.min.js",
        "graphiql.min.js",
        "graphiql.min.css",
    ]
    for asset in assets:
        assert f'"static/graphiql/{asset}"' in page.text
        response = await api.client.get(f"/static/graphiql/{asset}")
        assert response.status_code == 200, asset
        assert response.headers["content-type"].split(";")[0] in (
            "text/javascript",
            "application/javascript",
            "text/css",
        ), asset
    assert "query EnterpriseTree" in page.text
    assert '"headers"' in page.text  # the Headers tab opens first


def test_vendored_assets_are_the_files_their_readme_names() -> None:
    folder = STATIC_DIR / "graphiql"
    listed = {
        name: digest
        for digest, name in (
            line.split()
            for line in (folder / "README.md").read_text().split("```")[1].strip().splitlines()
        )
    }
    on_disk = {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in folder.iterdir()
        if path.suffix in (".js", ".css")
    }
    assert listed == on_disk


def test_serve_demo_prints_a_ready_link_and_the_header() -> None:
    tokens = {"operator": "agt_o", "master": "agt_m", "member": "agt_x"}
    banner = demo_banner(tokens, "0.0.0.0", 8000)
    assert "http://127.0.0.1:8000/graphql#token=agt_m" in banner.split()
    assert '{"Authorization": "Bearer agt_m"}' in banner
    assert all(token in banner for token in tokens.values())


async def test_graphiql_and_its_assets_are_off_with_the_setting(
    settings: Settings, engine: AsyncEngine, redis: ArqRedis
) -> None:
    off = settings.model_copy(update={"graphiql_enabled": False})
    async with serving(create_app(off, engine, redis)) as url, httpx.AsyncClient() as client:
        page = await client.get(f"{url}/graphql", headers={"Accept": "text/html"})
        asset = await client.get(f"{url}/static/graphiql/graphiql.min.js")
    assert page.status_code == 404
    assert asset.status_code == 404


# -- CORS --------------------------------------------------------------------------------


@pytest.fixture
async def cors_url(settings: Settings, engine: AsyncEngine, redis: ArqRedis) -> Any:
    with_origins = settings.model_copy(
        update={"cors_origins_csv": f"{CONSOLE}, http://localhost:5173/"}
    )
    async with serving(create_app(with_origins, engine, redis)) as url:
        yield url


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {
        name: value
        for name, value in response.headers.items()
        if name.lower().startswith("access-control-")
    }


async def test_cors_preflight_from_an_allowed_origin_allows_credentials_and_authorization(
    cors_url: str,
) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.options(
            f"{cors_url}/graphql",
            headers={
                "Origin": CONSOLE,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
    assert response.status_code == 200
    headers = cors_headers(response)
    assert headers["access-control-allow-origin"] == CONSOLE
    assert headers["access-control-allow-credentials"] == "true"
    assert "authorization" in headers["access-control-allow-headers"].lower()
    assert "POST" in headers["access-control-allow-methods"]


async def test_cors_request_from_an_allowed_origin_can_read_the_answer(cors_url: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{cors_url}/graphql",
            json={"query": "{ viewer { kind } }"},
            headers={**AUTH, "Origin": "http://localhost:5173"},
        )
    assert answer(response) == {"data": {"viewer": {"kind": "OPERATOR"}}}
    assert response.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "Origin" in response.headers["vary"]


async def test_cors_refuses_another_origin_with_no_cors_headers(cors_url: str) -> None:
    async with httpx.AsyncClient() as client:
        preflight = await client.options(
            f"{cors_url}/graphql",
            headers={
                "Origin": "https://evil.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        simple = await client.post(
            f"{cors_url}/graphql",
            json={"query": "{ viewer { kind } }"},
            headers={**AUTH, "Origin": "https://evil.example"},
        )
    assert preflight.status_code == 400
    assert cors_headers(preflight) == {}
    assert simple.status_code == 200  # the server answers; the browser hides it from the page
    assert cors_headers(simple) == {}
    assert "Origin" in simple.headers["vary"]


async def test_cors_answers_vary_on_origin_even_without_one(cors_url: str) -> None:
    """A CDN filled by a request without Origin must not serve that answer to a browser."""
    async with httpx.AsyncClient() as client:
        response = await client.get(
            f"{cors_url}/graphql", headers=AUTH, params={"query": "{ viewer { kind } }"}
        )
    assert "Origin" in response.headers["vary"]
    assert cors_headers(response) == {}


async def test_no_cors_headers_when_no_origin_is_configured(api: Api) -> None:
    response = await api.client.post(
        "/graphql", json={"query": "{ viewer { kind } }"}, headers={**AUTH, "Origin": CONSOLE}
    )
    assert cors_headers(response) == {}


async def test_an_allowed_origin_may_open_the_websocket(cors_url: str) -> None:
    import websockets

    socket_url = cors_url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(
        socket_url, subprotocols=[Subprotocol("graphql-transport-ws")], origin=Origin(CONSOLE)
    ) as socket:
        await socket.send(json.dumps({"type": "connection_init", "payload": AUTH}))
        assert json.loads(await socket.recv())["type"] == "connection_ack"
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(
            socket_url,
            subprotocols=[Subprotocol("graphql-transport-ws")],
            origin=Origin("https://evil.example"),
        ):
            pass


# -- automatic persisted queries ---------------------------------------------------------

VIEWER = "query Viewer { viewer { kind } }"


def sha(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()


def answer(response: httpx.Response) -> dict[str, Any]:
    """The response's body without ``extensions`` (the query cost, on every answer)."""
    body: dict[str, Any] = response.json()
    body.pop("extensions", None)
    return body


def persisted(query: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": sha(query)}}


async def test_apq_unknown_hash_then_registered_with_the_text_then_hit(
    api: Api, redis: ArqRedis
) -> None:
    miss = await api.client.post("/graphql", json={"extensions": persisted(VIEWER)}, headers=AUTH)
    assert miss.status_code == 200
    assert miss.json()["errors"] == [
        {"message": "PersistedQueryNotFound", "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"}}
    ]
    assert "no-cache" in miss.headers["cache-control"]

    register = await api.client.post(
        "/graphql", headers=AUTH, json={"query": VIEWER, "extensions": persisted(VIEWER)}
    )
    assert answer(register) == {"data": {"viewer": {"kind": "OPERATOR"}}}
    # stored with an expiry, in the operators' own store
    assert await redis.ttl(KEY_PREFIX + "operator:" + sha(VIEWER)) > 0

    hit = await api.client.post("/graphql", json={"extensions": persisted(VIEWER)}, headers=AUTH)
    assert answer(hit) == {"data": {"viewer": {"kind": "OPERATOR"}}}


async def test_apq_over_get_so_a_cdn_can_cache_it(api: Api) -> None:
    params = {"extensions": json.dumps(persisted(VIEWER)), "operationName": "Viewer"}
    # */* is what fetch() sends: a hash-only GET must not be answered with GraphiQL.
    headers = {**AUTH, "Accept": "*/*"}
    miss = await api.client.get("/graphql", params=params, headers=headers)
    assert miss.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    register = await api.client.get("/graphql", params={**params, "query": VIEWER}, headers=headers)
    assert answer(register) == {"data": {"viewer": {"kind": "OPERATOR"}}}
    hit = await api.client.get("/graphql", params=params, headers=headers)
    assert hit.status_code == 200
    assert answer(hit) == {"data": {"viewer": {"kind": "OPERATOR"}}}


async def test_apq_with_variables_over_get(api: Api) -> None:
    query = "query Node($id: ID!) { node(id: $id) { id } }"
    await api.client.post(
        "/graphql", headers=AUTH, json={"query": query, "extensions": persisted(query)}
    )
    hit = await api.client.get(
        "/graphql",
        headers=AUTH,
        params={
            "extensions": json.dumps(persisted(query)),
            "variables": json.dumps({"id": "nope"}),
        },
    )
    assert answer(hit) == {"data": {"node": None}}


async def test_apq_refuses_a_hash_that_does_not_match_the_text(api: Api, redis: ArqRedis) -> None:
    lying = {
        "persistedQuery": {
            "version": 1,
            "sha256Hash": sha("{ settings { billingHierarchyEnabled } }"),
        }
    }
    response = await api.client.post(
        "/graphql", headers=AUTH, json={"query": VIEWER, "extensions": lying}
    )
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"message": "provided sha does not match query", "extensions": {"code": "INVALID_INPUT"}}
    ]
    assert response.json()["data"] is None
    assert await redis.keys(KEY_PREFIX + "*") == []


@pytest.mark.parametrize(
    "extension",
    [
        {"version": 2, "sha256Hash": sha(VIEWER)},
        {"version": 1, "sha256Hash": "not-a-hash"},
        {"version": 1},
        "v1",
    ],
    ids=["version 2", "malformed hash", "no hash", "not an object"],
)
async def test_apq_refuses_malformed_extensions(api: Api, extension: Any) -> None:
    response = await api.client.post(
        "/graphql",
        headers=AUTH,
        json={"query": VIEWER, "extensions": {"persistedQuery": extension}},
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "INVALID_INPUT"


async def test_apq_store_is_bounded_dropping_the_oldest(
    settings: Settings, engine: AsyncEngine, redis: ArqRedis, clean: None
) -> None:
    small = settings.model_copy(update={"apq_max_entries": 2})
    queries = [f"query Q{n} {{ viewer {{ kind }} }}" for n in range(3)]
    async with serving(create_app(small, engine, redis)) as url, httpx.AsyncClient() as client:
        for query in queries:
            await client.post(
                f"{url}/graphql",
                headers=AUTH,
                json={"query": query, "extensions": persisted(query)},
            )
        answers = [
            answer(
                await client.post(
                    f"{url}/graphql", headers=AUTH, json={"extensions": persisted(query)}
                )
            )
            for query in queries
        ]
    assert answers[0]["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    assert answers[1] == answers[2] == {"data": {"viewer": {"kind": "OPERATOR"}}}
    assert await redis.zcard(INDEX_KEY) == 2


async def test_apq_off_says_not_supported(
    settings: Settings, engine: AsyncEngine, redis: ArqRedis
) -> None:
    off = settings.model_copy(update={"apq_max_entries": 0})
    async with serving(create_app(off, engine, redis)) as url, httpx.AsyncClient() as client:
        response = await client.post(
            f"{url}/graphql", headers=AUTH, json={"extensions": persisted(VIEWER)}
        )
    assert response.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_SUPPORTED"


async def test_apq_without_redis_still_runs_the_text(
    settings: Settings, engine: AsyncEngine
) -> None:
    pool = ArqRedis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    try:
        async with (
            serving(create_app(settings, engine, pool)) as url,
            httpx.AsyncClient() as client,
        ):
            miss = await client.post(
                f"{url}/graphql", headers=AUTH, json={"extensions": persisted(VIEWER)}
            )
            with_text = await client.post(
                f"{url}/graphql",
                headers=AUTH,
                json={"query": VIEWER, "extensions": persisted(VIEWER)},
            )
    finally:
        await pool.aclose()
    assert miss.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    assert answer(with_text) == {"data": {"viewer": {"kind": "OPERATOR"}}}


async def test_requests_without_persisted_queries_are_unchanged(api: Api) -> None:
    get = await api.client.get("/graphql", params={"query": VIEWER}, headers=AUTH)
    post = await api.client.post("/graphql", json={"query": VIEWER}, headers=AUTH)
    assert answer(get) == answer(post) == {"data": {"viewer": {"kind": "OPERATOR"}}}
    mutation_over_get = await api.client.get(
        "/graphql",
        headers=AUTH,
        params={"query": "mutation { updateSettings(input: {}) { userErrors { code } } }"},
    )
    assert mutation_over_get.status_code == 400  # strawberry: GET is for queries
