"""Request bodies bounded in size and in time: the middleware in front of every route."""

from __future__ import annotations

import asyncio
import logging

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

DRAIN_BYTES = 1024 * 1024


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
                raise _BodyRefused(
                    408,
                    "BODY_TIMEOUT",
                    f"The request body took longer than {self.timeout_s:g} s to arrive.",
                ) from None
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
            if refused.status == 413 and not complete:
                await self._drain(receive, deadline)
            await self._refuse(scope, receive, send, refused)

    @staticmethod
    async def _drain(receive: Receive, deadline: float) -> None:
        """Read (and drop) what is left of a streamed body, at most ``DRAIN_BYTES`` and
        not past the deadline, so that a client still sending it reads the 413 instead of
        a reset connection. A larger or slower rest is cut off as before."""
        loop = asyncio.get_running_loop()
        drained = 0
        while drained <= DRAIN_BYTES:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.0))
            except TimeoutError:
                return
            if message["type"] != "http.request":
                return
            drained += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    def _too_large(self) -> _BodyRefused:
        return _BodyRefused(
            413, "BODY_TOO_LARGE", f"The request body is larger than {self.max_bytes} bytes."
        )

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, refused: _BodyRefused) -> None:
        log.info("request body refused: %s", refused.message)
        response = JSONResponse(
            {
                "data": None,
                "errors": [{"message": refused.message, "extensions": {"code": refused.code}}],
            },
            status_code=refused.status,
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


__all__ = ["BodyLimit"]
