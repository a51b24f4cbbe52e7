"""The endpoints around /graphql: health, readiness, metrics, GraphiQL, WebSocket."""

from __future__ import annotations

import json

import httpx
import pytest
import websockets
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.typing import Subprotocol

from accountgraph.app import create_app
from accountgraph.config import Settings
from tests.conftest import free_port, serving
from tests.helpers import OPERATOR_TOKEN, Api

WS_PROTOCOL = Subprotocol("graphql-transport-ws")


async def test_healthz_answers_while_the_process_runs(api: Api) -> None:
    response = await api.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_is_200_when_postgresql_and_redis_answer(api: Api) -> None:
    response = await api.client.get("/readyz")
    assert response.status_code == 200


async def test_readyz_is_503_naming_redis_when_it_is_down(
    settings: Settings, engine: AsyncEngine
) -> None:
    pool = ArqRedis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    try:
        async with serving(create_app(settings, engine, pool)) as url, httpx.AsyncClient() as c:
            response = await c.get(f"{url}/readyz")
    finally:
        await pool.aclose()
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "down": ["redis"]}


async def test_metrics_count_operations_by_name(api: Api) -> None:
    """Named by the playground's operation (a bounded set of names); a name the client
    made up counts as ``other``."""
    await api.gql("query EnterpriseTree { viewer { kind } }")
    await api.gql("query ViewerForMetrics { viewer { kind } }")
    body = (await api.client.get("/metrics")).text
    assert (
        'accountgraph_graphql_operations_total{operation="EnterpriseTree",outcome="ok",'
        'type="query"}' in body
    )
    assert 'operation="ViewerForMetrics"' not in body
    assert (
        'accountgraph_graphql_operations_total{operation="other",outcome="ok",type="query"}' in body
    )
    assert "accountgraph_graphql_operation_seconds_bucket" in body
    assert "accountgraph_queue_depth" in body


async def test_graphiql_is_served_on_get(api: Api) -> None:
    response = await api.client.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()


async def test_the_root_leads_to_graphiql_and_the_icon_is_no_404(api: Api) -> None:
    root = await api.client.get("/", headers={"Accept": "text/html"})
    assert root.status_code == 307 and root.headers["location"] == "/graphql"
    followed = await api.client.get("/", headers={"Accept": "text/html"}, follow_redirects=True)
    assert followed.status_code == 200 and "graphiql" in followed.text.lower()
    assert (await api.client.get("/favicon.ico")).status_code == 204


async def test_parse_and_validation_errors_carry_a_code(api: Api) -> None:
    """As Apollo Server names them: a client tells a typo from a refusal by the code."""
    broken = await api.raw("{ viewer { kind ")
    unknown = await api.raw("{ viewer { kindd } }")
    assert [e["extensions"]["code"] for e in broken["errors"]] == ["GRAPHQL_PARSE_FAILED"]
    assert broken["errors"][0]["locations"]
    assert [e["extensions"]["code"] for e in unknown["errors"]] == ["GRAPHQL_VALIDATION_FAILED"]
    assert broken.get("data") is None and unknown.get("data") is None


def ws_url(api: Api) -> str:
    return str(api.client.base_url).replace("http://", "ws://") + "/graphql"


async def test_p1_websocket_without_a_valid_token_is_closed_4403(api: Api) -> None:
    async with websockets.connect(ws_url(api), subprotocols=[WS_PROTOCOL]) as socket:
        await socket.send(
            json.dumps({"type": "connection_init", "payload": {"Authorization": "Bearer wrong"}})
        )
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await socket.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


async def test_p1_websocket_with_a_token_runs_operations(api: Api) -> None:
    async with websockets.connect(ws_url(api), subprotocols=[WS_PROTOCOL]) as socket:
        await socket.send(
            json.dumps(
                {
                    "type": "connection_init",
                    "payload": {"Authorization": f"Bearer {OPERATOR_TOKEN}"},
                }
            )
        )
        assert json.loads(await socket.recv())["type"] == "connection_ack"
        await socket.send(
            json.dumps(
                {"id": "1", "type": "subscribe", "payload": {"query": "{ viewer { kind } }"}}
            )
        )
        message = json.loads(await socket.recv())
    assert message == {
        "id": "1",
        "type": "next",
        "payload": {"data": {"viewer": {"kind": "OPERATOR"}}},
    }


async def test_websocket_refuses_the_legacy_protocol(api: Api) -> None:
    """GHSA-vpwc-v33q-mq89: only graphql-transport-ws is spoken."""
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(ws_url(api), subprotocols=[Subprotocol("graphql-ws")]):
            pass
