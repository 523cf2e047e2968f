"""Measure every request once, then count it in the metrics and write its one JSON log line."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from typing import Any

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.operations.metrics import UNMATCHED, Metrics
from service.api.operations.request_id import STATE_KEY
from service.api.transport.answer import ROWS_KEY
from service.api.transport.body import DIRECT_BODY_KEY


class _Exchange:
    """What is known about one request so far."""

    __slots__ = ("bytes_in", "bytes_out", "rows", "status")

    def __init__(self) -> None:
        self.status: int | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.rows: int | None = None


def route_template(scope: Scope) -> str:
    """The path template of the route that handled (or would handle) the request; ``unmatched`` if none.

    Templates, never raw paths, keep the label values few. The router leaves the route in
    ``scope["route"]``; a request answered before routing (by an outer middleware) is matched here.
    """
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    for route in getattr(getattr(scope.get("app"), "router", None), "routes", ()):
        match, _ = route.matches(scope)
        if match is not Match.NONE and isinstance(getattr(route, "path", None), str):
            return str(route.path)
    return UNMATCHED


class RequestTelemetryMiddleware:
    """Time, size and status of every HTTP request: counted in ``metrics``, logged as one line to ``logger``.

    The line carries no payload: method, path (no query string), route, status, duration,
    rows, byte counts, client address and request id. Requests to ``quiet_paths`` (the probes
    and scrapes that arrive every few seconds) are counted but logged at debug only.
    Pure ASGI: the body streams through untouched, so a 413 can still be sent before it is read.
    It runs on every request, so it keeps to the cheap path: cached metric children, and the
    log record built only when the logger would write it, without the logger's caller lookup.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        logger: logging.Logger,
        quiet_paths: Collection[str] = ("/healthz", "/readyz", "/metrics"),
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.logger = logger
        self.quiet_paths = frozenset(quiet_paths)
        # Where a record made here says it comes from (the logger's caller lookup walks the stack).
        self._source = (__file__, RequestTelemetryMiddleware._log.__code__.co_firstlineno, "_log")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        exchange = _Exchange()
        # The scoring answer leaves its row count here (ROWS_KEY); shared with the request's own state.
        state = scope.setdefault("state", {})

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                exchange.bytes_in += len(message.get("body", b""))
            return message

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                exchange.status = message["status"]
            elif message["type"] == "http.response.body":
                exchange.bytes_out += len(message.get("body", b""))
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, counting_receive, recording_send)
        finally:
            # No answer started means an exception is on its way out: Starlette's outermost
            # middleware turns it into the 500 (see service/api/problems.py).
            status = exchange.status if exchange.status is not None else 500
            seconds = time.perf_counter() - started
            self.metrics.in_flight.dec()
            exchange.rows = state.get(ROWS_KEY)
            direct = scope.get(DIRECT_BODY_KEY)  # a body the server read past receive
            if direct is not None:
                exchange.bytes_in += direct.received
            endpoint = route_template(scope)
            self.metrics.observe(
                endpoint=endpoint,
                method=scope["method"],
                status=status,
                seconds=seconds,
                bytes_in=exchange.bytes_in,
                rows=exchange.rows,
            )
            self._log(scope, endpoint, status, seconds, exchange)

    def _log(self, scope: Scope, endpoint: str, status: int, seconds: float, exchange: _Exchange) -> None:
        level = logging.DEBUG if scope["path"] in self.quiet_paths else logging.INFO
        if not self.logger.isEnabledFor(level):
            return
        client = scope.get("client")
        method, path = scope["method"], scope["path"]
        fields: dict[str, Any] = {
            "request_id": scope.get("state", {}).get(STATE_KEY),
            "method": method,
            "path": path,
            "route": endpoint,
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
            "rows": exchange.rows,
            "bytes_in": exchange.bytes_in,
            "bytes_out": exchange.bytes_out,
            "client": client[0] if client else None,
        }
        # What logger.log() does, less its search of the call stack for the caller (a fixed place here).
        pathname, lineno, function = self._source
        record = self.logger.makeRecord(
            self.logger.name,
            level,
            pathname,
            lineno,
            "%s %s %d",
            (method, path, status),
            None,
            function,
            {"fields": fields},
        )
        self.logger.handle(record)
