"""``X-Request-ID``: taken from the request when it is sane, generated otherwise, returned on every answer."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

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
        # ASGI header names arrive lower-cased; the answer's header goes out as Starlette would set it.
        self._name = header.lower().encode("latin-1")
        self.sane = re.compile(rf"[A-Za-z0-9._-]{{1,{max_length}}}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        name = self._name
        offered = next((value.decode("latin-1") for key, value in scope["headers"] if key == name), None)
        request_id = offered if offered is not None and self.sane.fullmatch(offered) else new_request_id()
        # Starlette's request.state reads scope["state"]; the 500 handler, outside this middleware, sees it too.
        scope.setdefault("state", {})[STATE_KEY] = request_id
        header = (name, request_id.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _with_header(message.get("headers", ()), header)
            await send(message)

        await self.app(scope, receive, send_with_id)


def new_request_id() -> str:
    """A random UUID4 as text: ``str(uuid.uuid4())``, formatted here in a third of the time (once per request)."""
    digits = os.urandom(16).hex()
    # Version 4 in the 13th digit; the variant bits (10xx) turn the 17th digit into one of 8, 9, a, b.
    variant = "89ab89ab89ab89ab"[int(digits[16], 16)]
    return f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-{variant}{digits[17:20]}-{digits[20:]}"


def _with_header(headers: Iterable[tuple[bytes, bytes]], header: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    """``headers`` with ``header`` set: the first header of that name replaced (others dropped), or it added.

    What ``MutableHeaders(scope=message)[name] = value`` does, without building the object.
    """
    name = header[0]
    raw = list(headers)
    if not any(key == name for key, _ in raw):
        raw.append(header)
        return raw
    first = next(index for index, (key, _) in enumerate(raw) if key == name)
    return [*raw[:first], header, *(item for item in raw[first + 1 :] if item[0] != name)]
