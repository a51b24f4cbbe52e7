"""The Starlette app: /graphql (HTTP + graphql-transport-ws; GraphiQL on GET, its assets
under /static), /healthz, /readyz, /metrics, /documents/invoices (signed invoice documents);
CORS for the configured browser origins."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any

import orjson
from arq.connections import ArqRedis
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLRequestData
from strawberry.http.base import BaseRequestProtocol
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from accountgraph.alerts.fanout import NotificationFanout
from accountgraph.billing.documents import invoice_document_route
from accountgraph.config import Settings
from accountgraph.context import Context, resolve_principal
from accountgraph.domain import Principal
from accountgraph.metrics import OUTBOX_PENDING, QUEUE_DEPTH
from accountgraph.outbox import outbox
from accountgraph.persisted import PersistedQueries, RefusedRequest
from accountgraph.playground import STATIC_DIR, graphiql_html
from accountgraph.schema import schema
from accountgraph.security import SecurityHeaders, refusal_response

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 2.0
# The principal of the HTTP request being handled: get_context runs before parse_http_body
# in the same task.
REQUEST_PRINCIPAL: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "request_principal", default=None)
# What a browser client may send cross-origin besides the CORS-safelisted headers.
CORS_HEADERS = ("Authorization", "Content-Type", "Accept", "apollographql-client-name",
                "apollographql-client-version")


class GraphQLApp(GraphQL):
    """Strawberry's ASGI view with our context, the token check on connect, our GraphiQL
    page and automatic persisted queries."""

    def __init__(self, engine: AsyncEngine, settings: Settings, redis: ArqRedis) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql" if settings.graphiql_enabled else None,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            allowed_origins=settings.cors_origins,  # cross-origin WebSocket handshakes
        )
        self.engine = engine
        self.settings = settings
        self.redis = redis
        self.persisted = PersistedQueries(redis, ttl_s=settings.apq_ttl_s,
                                          max_entries=settings.apq_max_entries,
                                          anonymous_register=settings.apq_anonymous_register)
        # One Redis pub/sub connection for all of this app's subscriptions, and their caps.
        self.notifications = NotificationFanout(redis, settings)

    async def get_context(self, request: Any, response: Any) -> Context:  # type: ignore[override]
        principal = None
        if isinstance(request, Request):
            try:
                principal = await resolve_principal(
                    self.engine, self.settings, request.headers.get("authorization")
                )
            except (OSError, DBAPIError) as error:  # PostgreSQL down: a clean 503, no 500
                log.warning("token lookup failed: %s", error)
                raise HTTPException(503, "The database is unavailable; try again.") from None
            REQUEST_PRINCIPAL.set(principal)  # for parse_http_body (APQ registration)
        return Context(engine=self.engine, settings=self.settings, redis=self.redis,
                       notifications=self.notifications, principal=principal,
                       request=request, response=response)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Strawberry's view, except that a refused HTTP request (malformed body, wrong
        content type, database down) is answered as a GraphQL error in JSON, never as
        plain text or a traceback."""
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        try:
            response = await self.run(Request(scope=scope, receive=receive))
        except HTTPException as error:
            response = refusal_response(error.status_code, error.reason)
        await response(scope, receive, send)

    def decode_json(self, data: str | bytes) -> object:
        """Bodies, GET parameters and WebSocket messages: orjson, which refuses invalid
        UTF-8, lone surrogates, nesting deeper than 1,024 and numbers out of range (each a
        400, not a 500); a request must be an object or a list of objects."""
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError as error:
            raise HTTPException(400, f"The request is not valid JSON: {error}") from None
        if not isinstance(value, dict) and not (
                isinstance(value, list) and all(isinstance(item, dict) for item in value)):
            raise HTTPException(400, "The request must be a JSON object (or a list of them).")
        return value

    def should_render_graphql_ide(self, request: BaseRequestProtocol) -> bool:
        """Not for a GET that carries a persisted query's hash and no text (``*/*``)."""
        return ("extensions" not in request.query_params
                and super().should_render_graphql_ide(request))

    async def render_graphql_ide(self, request: Request) -> Response:
        return HTMLResponse(graphiql_html())

    async def parse_http_body(self, request: AsyncHTTPRequestAdapter
                              ) -> GraphQLRequestData | list[GraphQLRequestData]:
        """Strawberry's parsing, then the persisted query: the text looked up by its hash
        (or registered), or a ``RefusedRequest`` that ``execute_single`` answers."""
        data = await super().parse_http_body(request)
        principal = REQUEST_PRINCIPAL.get()
        if isinstance(data, list):
            return [await self.persisted.resolve(item, principal) for item in data]
        return await self.persisted.resolve(data, principal)

    async def execute_single(self, request: Request, request_adapter: AsyncHTTPRequestAdapter,
                             sub_response: Response, context: Any, root_value: Any,
                             request_data: GraphQLRequestData) -> ExecutionResult:
        if request.method == "GET":  # an answer for this token only: no shared cache
            sub_response.headers["Cache-Control"] = "private"
            sub_response.headers["Vary"] = "Authorization"
        if isinstance(request_data, RefusedRequest):
            refusal = request_data.refusal
            sub_response.status_code = refusal.status
            sub_response.headers.update(refusal.headers)
            return ExecutionResult(data=None, errors=[refusal.error()])
        return await super().execute_single(request, request_adapter, sub_response, context,
                                            root_value, request_data)

    async def create_websocket_response(self, request: WebSocket, subprotocol: str | None
                                        ) -> WebSocket:
        """Only graphql-transport-ws (the legacy protocol had an auth bypass,
        GHSA-vpwc-v33q-mq89): anything else is refused at the handshake (HTTP 403), by
        strawberry's own close, so that the socket is closed once."""
        if subprotocol != GRAPHQL_TRANSPORT_WS_PROTOCOL:
            return request  # strawberry refuses it (one close, 4406: HTTP 403 at handshake)
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
        app.state.notifications = graphql.notifications
        try:
            yield
        finally:
            await graphql.notifications.close()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    routes: list[BaseRoute] = [
        Route("/graphql", graphql, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", graphql),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        invoice_document_route(engine, settings, resolve_principal),
    ]
    if settings.graphiql_enabled:
        routes.append(Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"))
    middleware = []
    if settings.cors_origins:
        middleware.append(Middleware(
            OnlyAllowedOriginsCORS, allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"], allow_headers=CORS_HEADERS, allow_credentials=True,
        ))
    # Inside CORS, so that a browser can read the refusal.
    middleware.append(Middleware(BodyLimit, max_bytes=settings.max_body_bytes,
                                 timeout_s=settings.body_timeout_s))
    middleware.append(Middleware(SecurityHeaders))
    if settings.trusted_proxies:  # X-Forwarded-For/-Proto only from these peers
        middleware.insert(0, Middleware(ProxyHeadersMiddleware,
                                        trusted_hosts=settings.trusted_proxies))
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


class _BodyRefused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class BodyLimit:
    """Request bodies over ``max_bytes`` are refused with 413 (``BODY_TOO_LARGE``): by
    their Content-Length before anything is read, or as soon as a streamed (chunked) body
    passes the cap. A body still arriving ``timeout_s`` after the request began is refused
    with 408 (``BODY_TIMEOUT``): a slow client cannot hold a request open. Nothing of a
    refused request runs."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._refuse(scope, receive, send, self._too_large())
            return
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        received = 0
        complete = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, complete
            if complete:  # the body is in: later receives wait for a disconnect, unbounded
                return await receive()
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                message = await asyncio.wait_for(receive(), max(remaining, 0.0))
            except TimeoutError:
                raise _BodyRefused(408, "BODY_TIMEOUT", "The request body took longer than "
                                   f"{self.timeout_s:g} s to arrive.") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large()
                complete = not message.get("more_body", False)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyRefused as refused:
            if started:
                raise
            await self._refuse(scope, receive, send, refused)

    def _too_large(self) -> _BodyRefused:
        return _BodyRefused(413, "BODY_TOO_LARGE",
                            f"The request body is larger than {self.max_bytes} bytes.")

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, refused: _BodyRefused
                      ) -> None:
        log.info("request body refused: %s", refused.message)
        response = JSONResponse(
            {"data": None, "errors": [{"message": refused.message,
                                       "extensions": {"code": refused.code}}]},
            status_code=refused.status, headers={"Connection": "close"})
        await response(scope, receive, send)


class OnlyAllowedOriginsCORS(CORSMiddleware):
    """Starlette's CORS, except that an origin not allowed gets no CORS headers at all
    (Starlette would still send it ``Access-Control-Allow-Credentials`` and, on a
    preflight, the allowed methods and headers). Every answer says ``Vary: Origin``, so a
    shared cache (a CDN keeping persisted-query GETs) keeps the origins' answers apart."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = Headers(scope=scope).get("origin")
        if origin is not None and self.is_allowed_origin(origin):
            await super().__call__(scope, receive, send)
            return
        if origin is not None and scope["method"] == "OPTIONS":
            refused = PlainTextResponse("Disallowed CORS origin", status_code=400,
                                        headers={"Vary": "Origin"})
            await refused(scope, receive, send)
            return

        async def send_with_vary(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Vary"] = ", ".join([*headers.getlist("Vary"), "Origin"])
            await send(message)

        await self.app(scope, receive, send_with_vary)


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


__all__ = ["BodyLimit", "GraphQLApp", "create_app"]
