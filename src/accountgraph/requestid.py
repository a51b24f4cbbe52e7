"""Request ids: ``X-Request-Id`` on every HTTP answer, and one log line per request.

A client (or the load balancer in front) may send its own ``X-Request-Id``: it is kept
when it is 1-128 characters of ``A-Z a-z 0-9 . _ : -``, so that it cannot smuggle
anything into a log line or a header; otherwise a new one is made (32 hex digits). The id
goes into the request's log scope (``logs.py``), the audit rows of its mutations, and the
answer's header. A W3C ``traceparent`` header's trace id is logged as ``trace_id``. When
the answer is complete the middleware logs one line (``accountgraph.request``, INFO; DEBUG
for the probes ``/healthz`` and ``/metrics``) with the method, path, status and duration,
and what the view and the audit hook learnt: the principal, the operation, the outcome.
"""

from __future__ import annotations

import logging
import re
import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from accountgraph import logs

log = logging.getLogger("accountgraph.request")

HEADER = b"x-request-id"
ACCEPTED = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
TRACEPARENT = re.compile(rb"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")
SCOPE_KEY = "accountgraph.request_id"
# Polled every few seconds by orchestrators: their lines at DEBUG, not INFO.
PROBES = frozenset({"/healthz", "/metrics"})


def request_id_of(scope: Scope) -> str | None:
    """The request id the middleware gave this request (HTTP or WebSocket)."""
    found: str | None = scope.get(SCOPE_KEY)
    return found


def _chosen(headers: list[tuple[bytes, bytes]]) -> tuple[str, str | None]:
    sent = trace = None
    for name, value in headers:
        if name == HEADER and sent is None:
            sent = value
        elif name == b"traceparent" and trace is None:
            trace = value
    request_id = sent.decode() if sent is not None and ACCEPTED.fullmatch(sent) else None
    matched = TRACEPARENT.fullmatch(trace) if trace is not None else None
    trace_id = matched.group(1).decode() if matched else None
    return request_id or secrets.token_hex(16), trace_id


class RequestId:
    """The outermost middleware: gives each HTTP request and WebSocket its id and log
    scope, answers the id in ``X-Request-Id``, and logs each HTTP request once."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id, trace_id = _chosen(scope.get("headers") or [])
        scope[SCOPE_KEY] = request_id
        client = scope.get("client")
        log_scope, token = logs.open_scope(
            request_id=request_id,
            trace_id=trace_id,
            client_address=client[0] if client else None,
        )
        if scope["type"] == "websocket":
            try:
                await self.app(scope, receive, send)
            finally:
                logs.close_scope(token)
            return
        status = [0]
        header = (HEADER, request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            # ProxyHeadersMiddleware (inside this one) rewrote the client of trusted peers.
            client = scope.get("client")
            log_scope.client_address = client[0] if client else log_scope.client_address
            log.log(
                logging.DEBUG if scope.get("path") in PROBES else logging.INFO,
                "%s %s %s",
                scope.get("method"),
                scope.get("path"),
                status[0] or "-",
                extra={"status": status[0] or None, "duration_ms": log_scope.duration_ms()},
            )
            logs.close_scope(token)


__all__ = ["HEADER", "RequestId", "request_id_of"]
