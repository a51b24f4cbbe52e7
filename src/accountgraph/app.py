"""The Starlette app: /graphql (HTTP + graphql-transport-ws; GraphiQL on GET, its assets
under /static), /healthz, /readyz, /metrics, /documents/invoices (signed invoice documents);
CORS for the configured browser origins. This module puts the pieces together: the view
(``view.py``), the monitoring endpoints (``monitoring.py``), the middleware
(``cors.py``, ``bodylimit.py``, ``security.py``), tracing when it is on (``tracing.py``)
and the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import Lifespan
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from accountgraph import tracing
from accountgraph.billing.documents import invoice_document_route
from accountgraph.bodylimit import BodyLimit
from accountgraph.config import Settings
from accountgraph.context import resolve_principal
from accountgraph.cors import CORS_HEADERS, OnlyAllowedOriginsCORS
from accountgraph.costs.public import cost_chart_route
from accountgraph.monitoring import monitoring_routes
from accountgraph.playground import STATIC_DIR
from accountgraph.requestid import RequestId
from accountgraph.security import SecurityHeaders
from accountgraph.view import GraphQLApp

Background = Callable[[], Coroutine[Any, Any, None]]


def create_app(
    settings: Settings,
    engine: AsyncEngine,
    redis: ArqRedis,
    *,
    background: Sequence[Background] = (),
) -> Starlette:
    """The gateway. ``background`` tasks (the in-process worker of the embedded default)
    run for the app's lifetime and are cancelled on shutdown. With
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` set (or a provider installed, in tests) requests and
    the engine's statements are traced."""
    tracing.configure(settings)
    tracing.instrument_engine(engine)
    graphql = GraphQLApp(engine, settings, redis)
    routes: list[BaseRoute] = [
        Route("/graphql", graphql, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", graphql),
        *monitoring_routes(settings, engine, redis),
        invoice_document_route(engine, settings, resolve_principal),
        cost_chart_route(engine, settings, resolve_principal),
    ]
    if settings.graphiql_enabled:
        routes.append(Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"))
        # A browser pointed at the server's root finds GraphiQL.
        routes.append(Route("/", _to_graphiql, methods=["GET", "HEAD"]))
    routes.append(Route("/favicon.ico", _no_icon, methods=["GET", "HEAD"]))
    return Starlette(
        routes=routes,
        middleware=_middleware(settings),
        lifespan=_lifespan(graphql, redis, background),
    )


async def _to_graphiql(request: Request) -> Response:
    return RedirectResponse("/graphql", status_code=307)


async def _no_icon(request: Request) -> Response:
    return Response(status_code=204)


def _middleware(settings: Settings) -> list[Middleware]:
    """Outermost first: the request's span (tracing on), the request id (and the
    request's log line), trusted proxy headers, CORS, the body limit, security headers."""
    middleware = []
    if settings.cors_origins:
        middleware.append(
            Middleware(
                OnlyAllowedOriginsCORS,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST"],
                allow_headers=CORS_HEADERS,
                allow_credentials=True,
            )
        )
    # Inside CORS, so that a browser can read the refusal.
    middleware.append(
        Middleware(BodyLimit, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s)
    )
    middleware.append(Middleware(SecurityHeaders))
    if settings.trusted_proxies:  # X-Forwarded-For/-Proto only from these peers
        middleware.insert(
            0, Middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
        )
    # Outermost: every answer, refusals of the middleware below included, has its id.
    middleware.insert(0, Middleware(RequestId))
    if tracing.enabled():  # around it: the request's log line has the span's trace id
        middleware.insert(
            0, Middleware(tracing.asgi_middleware, **tracing.asgi_middleware_options())
        )
    return middleware


def _lifespan(
    graphql: GraphQLApp, redis: ArqRedis, background: Sequence[Background]
) -> Lifespan[Starlette]:
    """Starts ``background`` and the principal cache's revocation listener with the app;
    on shutdown closes the subscriptions' pub/sub connection and the listener, then
    cancels the tasks and waits for them."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(run()) for run in background]
        app.state.notifications = graphql.notifications
        graphql.principals.start(redis)
        try:
            yield
        finally:
            await graphql.principals.close()
            await graphql.notifications.close()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    return lifespan


__all__ = ["Background", "create_app"]
