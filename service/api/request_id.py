"""``X-Request-ID``: taken from the request when it is sane, generated otherwise, returned on every answer."""

from __future__ import annotations

import re
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Where the id is kept for the rest of the request: ``request.state.request_id``.
STATE_KEY = "request_id"


class RequestIdMiddleware:
    """Give every HTTP request an id, put it in ``request.state.request_id`` and on the response.

    An incoming id is kept when it is at most ``max_length`` characters of ``[A-Za-z0-9._-]``,
    so a caller can follow its own id through our logs; anything else (too long, spaces,
    control characters that could forge log lines) is replaced by a fresh UUID4.
    Pure ASGI: the body streams through untouched.
    """

    def __init__(self, app: ASGIApp, *, header: str = "X-Request-ID", max_length: int = 128) -> None:
        self.app = app
        self.header = header
        self.sane = re.compile(rf"[A-Za-z0-9._-]{{1,{max_length}}}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = Headers(scope=scope).get(self.header)
        request_id = offered if offered is not None and self.sane.fullmatch(offered) else str(uuid.uuid4())
        # Starlette's request.state reads scope["state"]; the 500 handler, outside this middleware, sees it too.
        scope.setdefault("state", {})[STATE_KEY] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[self.header] = request_id
            await send(message)

        await self.app(scope, receive, send_with_id)
