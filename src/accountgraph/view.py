"""The GraphQL view on /graphql: Strawberry's ASGI view with our per-request context, the
token check on a WebSocket's ``connection_init``, our GraphiQL page, automatic persisted
queries, and every refused HTTP request answered as a GraphQL error in JSON."""

from __future__ import annotations

import contextvars
import logging
from typing import Any

import orjson
from arq.connections import ArqRedis
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLRequestData
from strawberry.http.base import BaseRequestProtocol
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult

from accountgraph import logs
from accountgraph.accounts.principals import PrincipalCache
from accountgraph.alerts.fanout import NotificationFanout
from accountgraph.api.errors import in_client_words
from accountgraph.config import Settings
from accountgraph.context import Context, resolve_principal
from accountgraph.domain import Principal
from accountgraph.metrics import OPERATION_NAME
from accountgraph.persisted import PersistedQueries, RefusedRequest
from accountgraph.playground import graphiql_html
from accountgraph.schema import schema
from accountgraph.security import refusal_response

log = logging.getLogger(__name__)

# The principal of the HTTP request being handled: get_context runs before parse_http_body
# in the same task.
REQUEST_PRINCIPAL: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "request_principal", default=None
)


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
        self.persisted = PersistedQueries(
            redis,
            ttl_s=settings.apq_ttl_s,
            max_entries=settings.apq_max_entries,
            anonymous_register=settings.apq_anonymous_register,
        )
        # One Redis pub/sub connection for all of this app's subscriptions, and their caps.
        self.notifications = NotificationFanout(redis, settings)
        # Tokens' principals for a few seconds, dropped when revoked (the lifespan listens).
        self.principals = PrincipalCache(settings.principal_cache_s)

    async def get_context(self, request: Any, response: Any) -> Context:  # type: ignore[override]
        principal = None
        if isinstance(request, Request):
            try:
                principal = await resolve_principal(
                    self.engine,
                    self.settings,
                    request.headers.get("authorization"),
                    self.principals,
                )
            except (OSError, DBAPIError) as error:  # PostgreSQL down: a clean 503, no 500
                log.warning("token lookup failed: %s", error)
                raise HTTPException(503, "The database is unavailable; try again.") from None
            REQUEST_PRINCIPAL.set(principal)  # for parse_http_body (APQ registration)
            scope = logs.current()
            if scope is not None and principal is not None:  # the request's log fields
                scope.principal_kind = principal.kind.value
                scope.principal_account = principal.account_id
        return Context(
            engine=self.engine,
            settings=self.settings,
            redis=self.redis,
            notifications=self.notifications,
            principal=principal,
            request=request,
            response=response,
            compile_reads=self.settings.read_compiler and isinstance(request, Request),
        )

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

    def encode_json(self, data: object) -> bytes:
        """orjson: fast, and it writes the compiled reads' JSON text as it is (Fragment)."""
        return orjson.dumps(data)

    def decode_json(self, data: str | bytes) -> object:
        """Bodies, GET parameters and WebSocket messages: orjson, which refuses invalid
        UTF-8, lone surrogates, nesting deeper than 1,024 and numbers out of range (each a
        400, not a 500); a request must be an object or a list of objects."""
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError as error:
            raise HTTPException(400, f"The request is not valid JSON: {error}") from None
        if not isinstance(value, dict) and not (
            isinstance(value, list) and all(isinstance(item, dict) for item in value)
        ):
            raise HTTPException(400, "The request must be a JSON object (or a list of them).")
        return value

    def should_render_graphql_ide(self, request: BaseRequestProtocol) -> bool:
        """Not for a GET that carries a persisted query's hash and no text (``*/*``)."""
        return "extensions" not in request.query_params and super().should_render_graphql_ide(
            request
        )

    async def render_graphql_ide(self, request: Request) -> Response:
        return HTMLResponse(graphiql_html())

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        """Strawberry's parsing, then the persisted query: the text looked up by its hash
        (or registered), or a ``RefusedRequest`` that ``execute_single`` answers."""
        data = await super().parse_http_body(request)
        principal = REQUEST_PRINCIPAL.get()
        if isinstance(data, list):
            return [await self.persisted.resolve(item, principal) for item in data]
        return await self.persisted.resolve(data, principal)

    async def execute_single(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: Any,
        root_value: Any,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        if request.method == "GET":  # an answer for this token only: no shared cache
            sub_response.headers["Cache-Control"] = "private"
            sub_response.headers["Vary"] = "Authorization"
        if isinstance(request_data, RefusedRequest):
            refusal = request_data.refusal
            sub_response.status_code = refusal.status
            sub_response.headers.update(refusal.headers)
            return ExecutionResult(data=None, errors=[refusal.error()])
        result = await super().execute_single(
            request, request_adapter, sub_response, context, root_value, request_data
        )
        if result.errors:  # graphql-core's coercion messages speak Python
            result.errors = [in_client_words(error) for error in result.errors]
        scope = logs.current()
        if scope is not None:  # the request's log line; the audit hook may have said REFUSED
            named = request_data.operation_name
            if named is None and request_data.query:
                found = OPERATION_NAME.search(request_data.query)
                named = found.group(1) if found else None
            scope.operation = None if named is None else named[:100]
            if result.errors:
                scope.outcome = "ERROR"
            elif scope.outcome is None:
                scope.outcome = "OK"
        return result

    async def create_websocket_response(
        self, request: WebSocket, subprotocol: str | None
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
        principal = await resolve_principal(
            self.engine, self.settings, value if isinstance(value, str) else None, self.principals
        )
        if principal is None:
            raise ConnectionRejectionError()
        context.principal = principal
        return await super().on_ws_connect(context)  # type: ignore[arg-type]


__all__ = ["GraphQLApp"]
