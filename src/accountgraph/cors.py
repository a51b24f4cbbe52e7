"""CORS for the configured browser origins, and nothing at all for any other origin."""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import PlainTextResponse
from starlette.types import Message, Receive, Scope, Send

# What a browser client may send cross-origin besides the CORS-safelisted headers.
CORS_HEADERS = (
    "Authorization",
    "Content-Type",
    "Accept",
    "apollographql-client-name",
    "apollographql-client-version",
)


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
            refused = PlainTextResponse(
                "Disallowed CORS origin", status_code=400, headers={"Vary": "Origin"}
            )
            await refused(scope, receive, send)
            return

        async def send_with_vary(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Vary"] = ", ".join([*headers.getlist("Vary"), "Origin"])
            await send(message)

        await self.app(scope, receive, send_with_vary)


__all__ = ["CORS_HEADERS", "OnlyAllowedOriginsCORS"]
