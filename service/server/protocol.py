"""uvicorn's httptools protocol, with limits on what a client may send before its request is complete.

uvicorn (0.54) reads a request's head without bound: httptools gathers each header value by
concatenating what arrives, so one 256 MiB header took 15 s and +508 MiB before it was
answered 200, 100,000 header fields were accepted, and a connection that sends nothing (or its
head a byte at a time) was never closed. :class:`HeaderLimitedProtocol` adds three limits
(``XENT_MAX_HEADER_BYTES``, ``XENT_MAX_HEADERS``, ``XENT_HEADER_TIMEOUT_SECONDS``):

* **Size of the head.** The bytes of a request's head (request line and header lines as sent,
  line ends included) are counted as they are read, *before* the parser sees them; the parser is
  fed at most ``max_bytes`` of a head, and a head that does not end within them is answered
  ``431 Request Header Fields Too Large``. Nothing past the limit is read or kept, so memory does
  not grow with the header. (A head that begins inside a read, after a pipelined request, is
  counted from what the parser hands over, URL, names and values, until the next read.)
* **Number of header fields**, counted as the parser delivers them: one over ``max_fields`` is
  answered 431 too.
* **Time to send the head.** A deadline runs from the moment the connection is made (and, on a
  kept-alive connection, from the end of each response) to the end of the next request's head.
  When it passes, the connection is closed without an answer, as nginx does on
  ``client_header_timeout``: the client never finished a request there is an answer to. Idle
  kept-alive connections are still closed sooner by uvicorn's keep-alive timeout (5 s), which any
  byte resets; this deadline does not move when bytes arrive, so trickling the head does not help.

A refusal (431, or 400 when httptools itself rejects the bytes) is an ``application/problem+json``
answer built from the app's catalogue (``ProblemKind.HEADERS_TOO_LARGE``, ``MALFORMED_REQUEST``,
documented on every operation) with ``Connection: close``. Nothing more is parsed. Once it is written
the connection closes *lingering*, as nginx's ``lingering_close``: the write side is shut (the answer
then a FIN), and what the client is still sending is read and dropped, up to ``LINGER_BYTES`` or
``LINGER_SECONDS``, before the close. Closed at once with unread bytes, the kernel would send a reset,
which can throw the answer away before the client reads it (the rest of 100,000 header fields).
If a response to an earlier (pipelined) request is still being sent, the refusal waits for it.

The protocol is built by a :func:`functools.partial` of the class and a :class:`HeaderLimits`:
both top-level, hence picklable, which uvicorn needs to start ``--workers N`` processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from service.api.problems import PROBLEM_MEDIA_TYPE, ProblemKind, ProblemSpec
from service.api.transport.body import BODY_PLACER_KEY, DIRECT_BODY_KEY, BodyPlacer
from service.server.direct_body import DirectBodyReader

if TYPE_CHECKING:
    from uvicorn._types import ASGI3Application
    from uvicorn.config import Config
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle
    from uvicorn.server import ServerState

    from service.settings import Settings

logger = logging.getLogger("service.server")

#: Longest parser error message quoted in a 400 (llhttp's are short fixed texts; this is a backstop).
MAX_REASON_CHARS = 120
#: After a refusal, at most this much of what the client still sends is read and dropped, for at most this long,
#: before the connection is closed (the rest of a 2.7 MB head of 100,000 fields fits; memory does not grow).
LINGER_BYTES = 4 * 1024 * 1024
LINGER_SECONDS = 2.0


@dataclass(frozen=True)
class HeaderLimits:
    """What a request's head may be: its bytes, its header fields, and the seconds to send it.

    The defaults are :class:`~service.settings.Settings`' (so a bare ``HeaderLimitedProtocol``,
    as ``uvicorn --http service.server.protocol:HeaderLimitedProtocol`` builds it, has them too).
    """

    max_bytes: int = 16 * 1024
    max_fields: int = 100
    timeout_seconds: float = 20.0

    @classmethod
    def from_settings(cls, settings: Settings) -> HeaderLimits:
        """The limits ``settings`` (``XENT_MAX_HEADER_BYTES`` and so on) ask for."""
        return cls(settings.max_header_bytes, settings.max_headers, settings.header_timeout_seconds)


DEFAULT_LIMITS = HeaderLimits()


class _Refused(Exception):
    """Raised in a parser callback to stop httptools once the request has been refused."""


class HeaderLimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol that refuses oversized heads (431) and closes slow ones."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: HeaderLimits = DEFAULT_LIMITS,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self._in_head = True  # from the connection's start, or the end of a request, to the end of a head
        self._heads = 0  # heads begun after the first: tells whether one began inside a read
        self._head_bytes = 0  # bytes of the current head given to the parser (exact when it began at a read)
        self._seen_bytes = 0  # URL, names and values of the current head, as the parser delivered them
        self._fields = 0  # header fields of the current head so far
        self._refused = False  # a refusal was written (or is waiting): nothing more is read
        self._pending: tuple[int, bytes] | None = None  # a refusal waiting for the response in flight
        self._head_timer: asyncio.TimerHandle | None = None
        self._linger_left = -1  # bytes still to drop after a refusal was written (-1: not lingering)
        self._linger_timer: asyncio.TimerHandle | None = None
        self._body_length = 0  # the current request's Content-Length (0: none; -1: chunked, or not a number)
        #: Bytes of the current request's body the parser has handed to uvicorn (``DirectBodyReader`` checks them).
        self.body_delivered = 0
        #: The app's placer (``BODY_PLACER_KEY`` in its lifespan state), if any; the request whose body is to be placed
        #: once the read that holds its first bytes is parsed, and the request whose body was placed (until it ends).
        self._placer: BodyPlacer | None = self.app_state.get(BODY_PLACER_KEY)
        self._to_place: DirectBodyReader | None = None
        self._placed: DirectBodyReader | None = None
        self._placed_in_read: DirectBodyReader | None = None  # placed by the piece of the read being parsed
        self._deferred: tuple[RequestResponseCycle, ASGI3Application] | None = None  # a task to start once placed
        self._may_defer = False

    # --- the connection ---

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        self._end_placed()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._refused:
            if self._linger_left >= 0:  # the refusal is written: drop what still comes, within the budget
                self._linger_left -= len(data)
                if self._linger_left < 0:
                    self._end_linger()
            return
        rest = memoryview(data)
        while rest:
            reading_head, heads = self._in_head, self._heads
            if reading_head:  # feed no more of a head than the limit allows
                allowance = self.limits.max_bytes - self._head_bytes
                piece, rest = rest[:allowance], rest[allowance:]
            else:
                piece, rest = rest, rest[:0]
            if not self._feed(piece):
                return
            placed, self._placed_in_read = self._placed_in_read, None
            if placed is not None:  # the body was placed in this piece: the rest of the read is its (up to its end)
                rest = placed.take(rest)
                continue
            if self._in_head:  # the piece ended inside a head
                if reading_head and heads == self._heads:
                    self._head_bytes += len(piece)
                else:  # the head began inside the piece, after the end of a pipelined request
                    self._head_bytes = self._seen_bytes
                if self._head_bytes >= self.limits.max_bytes:  # and it has not ended: it is longer
                    self._refuse_size()
                    return

    def _feed(self, piece: memoryview) -> bool:
        """Give ``piece`` to the parser; whether to go on with the rest of the read."""
        try:
            self.parser.feed_data(piece)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return False
        except httptools.HttpParserError as error:
            if not self._refused:  # httptools' own objection, not one of the limits
                reason = str(error)[:MAX_REASON_CHARS] or type(error).__name__
                logger.warning("Invalid HTTP request received: %s", reason)
                self._refuse(ProblemKind.MALFORMED_REQUEST.value, f"The request is not valid HTTP/1.1 ({reason}).")
            return False
        return True

    # --- parser callbacks ---

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._body_length = self.body_delivered = 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields += 1
        if self._fields > self.limits.max_fields:
            self._refuse_431(
                f"The request has more than {self.limits.max_fields} header fields, the limit set by XENT_MAX_HEADERS.",
            )
            raise _Refused
        self._count(len(name) + len(value))
        lowered = name.lower()
        if lowered == b"content-length":  # llhttp refuses a second one, and one beside Transfer-Encoding
            self._body_length = int(value) if value.isdigit() and self._body_length != -1 else -1
        elif lowered == b"transfer-encoding":
            self._body_length = -1  # (whichever comes first: no body of known length)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        self._may_defer = self._placer is not None  # the task starts below, once it is known whether to place
        super().on_headers_complete()
        self._may_defer = False
        # A body of known length, on a plain connection (TLS transports read through their own buffers), not an upgrade.
        cycle, reader = self.cycle, None
        if self._body_length > 0 and self.scheme == "http" and cycle is not None and cycle.scope is self.scope:
            reader = DirectBodyReader(self, cycle, self._body_length)
            self.scope[DIRECT_BODY_KEY] = reader  # type: ignore[literal-required]
        deferred, self._deferred = self._deferred, None
        if deferred is not None:
            start = functools.partial(super()._start_asgi_task, *deferred)
            if reader is not None and self._placer is not None and reader.may_place(self._placer, start):
                self._end_placed()
                self._to_place = self._placed = reader  # the task starts once the body is placed and in
            else:
                start()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        if self._may_defer:  # (called by uvicorn's on_headers_complete for the request just parsed)
            self._deferred = (cycle, app)
            return
        super()._start_asgi_task(cycle, app)

    def _end_placed(self) -> None:
        reader, self._placed, self._to_place = self._placed, None, None
        if reader is not None:
            reader.end()

    def on_body(self, body: bytes) -> None:
        reader = self._to_place
        if reader is not None and reader.place(body):
            self._to_place = None
            if reader.placement is not None:  # placed there, with the rest of the body to come
                self._placed_in_read = reader
                return
        self.body_delivered += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # The next head starts here: uvicorn's keep-alive timer or the head deadline (armed once the
        # response is complete) bounds the wait for it.
        self._in_head = True
        self._heads += 1
        self._head_bytes = self._seen_bytes = self._fields = 0

    def direct_body_complete(self) -> None:
        """The body was read past the parser (``DirectBodyReader``): the connection's next bytes start a request."""
        self.parser = httptools.HttpRequestParser(self)
        with contextlib.suppress(AttributeError):  # as uvicorn makes its parser (httptools >= 0.6.3)
            self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.on_message_complete()
        self.transport.set_protocol(self)

    def on_response_complete(self) -> None:
        self._end_placed()
        if self._pending is not None and not self.pipeline:
            self.server_state.total_requests += 1
            status, body = self._pending
            self._pending = None
            self._write_and_close(status, body)  # (nothing, on a connection already closing)
            return
        super().on_response_complete()
        if self._pending is not None:  # uvicorn resumed reading for a pipelined request; stay stopped
            self.flow.pause_reading()
        elif self.timeout_keep_alive_task is not None:  # idle, waiting for the next request
            self._start_head_timer()

    def _count(self, size: int) -> None:
        self._seen_bytes += size
        if self._seen_bytes > self.limits.max_bytes:
            self._refuse_size()
            raise _Refused

    # --- the head deadline ---

    def _start_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.limits.timeout_seconds, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            logger.debug("Closing a connection whose request head took over %s s", self.limits.timeout_seconds)
            self.transport.close()

    # --- refusals ---

    def _refuse_size(self) -> None:
        self._refuse_431(
            f"The request's head (request line and header fields) is longer than {self.limits.max_bytes} bytes, "
            "the limit set by XENT_MAX_HEADER_BYTES.",
        )

    def _refuse_431(self, detail: str) -> None:
        logger.warning("Request header fields too large: %s", detail)
        self._refuse(ProblemKind.HEADERS_TOO_LARGE.value, detail)

    def _refuse(self, kind: ProblemSpec, detail: str) -> None:
        """Answer with ``kind``'s problem document (from the app's catalogue) and close; read nothing more meanwhile."""
        self._refused = True
        self._cancel_head_timer()
        self.flow.pause_reading()
        body = json.dumps(kind.body(detail)).encode()
        if self.cycle is not None and not self.cycle.response_complete:
            self._pending = (kind.status, body)  # after the response being sent, in on_response_complete
        else:
            self._write_and_close(kind.status, body)

    def _write_and_close(self, status: int, body: bytes) -> None:
        if self.transport.is_closing():
            return
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: " + PROBLEM_MEDIA_TYPE.encode("ascii") + b"\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()  # the answer, then a FIN: the client reads it, whatever it is still sending
        self._linger_left = LINGER_BYTES
        self._linger_timer = self.loop.call_later(LINGER_SECONDS, self._end_linger)
        self.flow.resume_reading()

    def _end_linger(self) -> None:
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        self._linger_left = -1
        if not self.transport.is_closing():
            self.transport.close()


def http_protocol(settings: Settings) -> functools.partial[HeaderLimitedProtocol]:
    """What ``xent serve`` passes to uvicorn as ``http=``: the protocol with ``settings``' header limits.

    A partial of a top-level class and a frozen dataclass pickles, so uvicorn's worker processes
    (started with "spawn") get the same limits.
    """
    return functools.partial(HeaderLimitedProtocol, limits=HeaderLimits.from_settings(settings))
