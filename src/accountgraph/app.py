"""The Starlette app: /graphql (HTTP + graphql-transport-ws), /healthz, /readyz, /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any

from arq.connections import ArqRedis
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from accountgraph.config import Settings
from accountgraph.context import Context, resolve_principal
from accountgraph.metrics import OUTBOX_PENDING, QUEUE_DEPTH
from accountgraph.outbox import outbox
from accountgraph.schema import schema

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 2.0


class GraphQLApp(GraphQL):
    """Strawberry's ASGI view with our context and the token check on connect."""

    def __init__(self, engine: AsyncEngine, settings: Settings, redis: ArqRedis) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql" if settings.graphiql_enabled else None,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        )
        self.engine = engine
        self.settings = settings
        self.redis = redis

    async def get_context(self, request: Any, response: Any) -> Context:  # type: ignore[override]
        principal = None
        if isinstance(request, Request):
            principal = await resolve_principal(
                self.engine, self.settings, request.headers.get("authorization")
            )
        return Context(engine=self.engine, settings=self.settings, redis=self.redis,
                       principal=principal,
                       request=request, response=response)

    async def create_websocket_response(self, request: WebSocket, subprotocol: str | None
                                        ) -> WebSocket:
        """Only graphql-transport-ws (the legacy protocol had an auth bypass,
        GHSA-vpwc-v33q-mq89): anything else is refused at the handshake (HTTP 403)."""
        if subprotocol != GRAPHQL_TRANSPORT_WS_PROTOCOL:
            await request.close(code=1002)
            return request
        return await super().create_websocket_response(request, subprotocol)

    async def on_ws_connect(self, context: Context) -> Any:  # type: ignore[override]
        """API.md: the token comes in connection_init; a missing or wrong one closes 4403."""
        params = getattr(context, "connection_params", None) or {}
        value = params.get("Authorization") if isinstance(params, dict) else None
        principal = await resolve_principal(self.engine, self.settings,
                                            value if isinstance(value, str) else None)
        if principal is None:
            raise ConnectionRejectionError()
        context.principal = principal
        return await super().on_ws_connect(context)  # type: ignore[arg-type]


def create_app(
    settings: Settings,
    engine: AsyncEngine,
    redis: ArqRedis,
    *,
    background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
) -> Starlette:
    """The gateway. ``background`` tasks (the in-process worker of the embedded default)
    run for the app's lifetime and are cancelled on shutdown."""
    graphql = GraphQLApp(engine, settings, redis)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        down = [name for name, ok in (await _checks(engine, redis)).items() if not ok]
        if down:
            return JSONResponse({"status": "unavailable", "down": down}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def metrics(request: Request) -> Response:
        with contextlib.suppress(Exception):  # a metric we cannot read stays at its last value
            QUEUE_DEPTH.set(await redis.zcard(settings.queue_name))
        with contextlib.suppress(Exception):
            async with engine.connect() as conn:
                OUTBOX_PENDING.set((await conn.execute(
                    select(func.count()).where(outbox.c.done_at.is_(None)))).scalar_one())
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(run()) for run in background]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    return Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
        ],
        lifespan=lifespan,
    )


async def _checks(engine: AsyncEngine, redis: ArqRedis) -> dict[str, bool]:
    async def postgres() -> bool:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True

    async def redis_ping() -> bool:
        return bool(await redis.ping())

    results: dict[str, bool] = {}
    for name, check in (("postgresql", postgres), ("redis", redis_ping)):
        try:
            results[name] = await asyncio.wait_for(check(), READY_TIMEOUT_S)
        except Exception as error:  # any failure means: not ready
            log.warning("readiness check %s failed: %s", name, error)
            results[name] = False
    return results


__all__ = ["GraphQLApp", "create_app"]
