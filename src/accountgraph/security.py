"""Response headers that keep browsers from misusing our answers, and refusals as JSON.

Every response gets ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``,
``X-Frame-Options: DENY`` and a ``Content-Security-Policy``: the GraphiQL page its own
(scripts and styles from ``/static`` and its one inline script by hash, connections to
this origin only), everything else one that allows nothing to run (``default-src
'none'``; inline styles for the printable invoice pages) and no framing anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import re

from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from accountgraph.playground import graphiql_html

# Codes of the refusals that happen before GraphQL runs (malformed requests and the like).
HTTP_CODES = {
    400: "BAD_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "BODY_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    503: "SERVICE_UNAVAILABLE",
}


def _inline_script_hashes(page: str) -> str:
    scripts = re.findall(r"<script>(.*?)</script>", page, flags=re.DOTALL)
    return " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in scripts
    )


GRAPHIQL_CSP = (
    "default-src 'self'; script-src 'self' "
    + _inline_script_hashes(graphiql_html())
    + "; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
DEFAULT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
COMMON = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class SecurityHeaders:
    """Adds the headers above to every HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in COMMON.items():
                    headers.setdefault(name, value)
                graphiql = headers.get("content-type", "").startswith("text/html") and scope[
                    "path"
                ].endswith("/graphql")
                headers.setdefault(
                    "Content-Security-Policy", GRAPHIQL_CSP if graphiql else DEFAULT_CSP
                )
            await send(message)

        await self.app(scope, receive, with_headers)


def refusal_response(status: int, message: str) -> JSONResponse:
    """A request refused before GraphQL ran, as a GraphQL error body."""
    code = HTTP_CODES.get(status, "BAD_REQUEST" if status < 500 else "INTERNAL")
    return JSONResponse(
        {"data": None, "errors": [{"message": message, "extensions": {"code": code}}]},
        status_code=status,
    )


__all__ = ["DEFAULT_CSP", "GRAPHIQL_CSP", "SecurityHeaders", "refusal_response"]
