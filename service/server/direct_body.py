"""A large request body read from the socket straight into the app's buffer, past uvicorn's receive channel.

Through ASGI a body reaches the app as ``http.request`` messages: the event loop reads each piece of
the socket into a buffer of its own and makes it a ``bytes`` object, httptools hands the body part on
as another ``bytes``, uvicorn appends it to the request's ``bytearray`` and gives it to ``receive`` as
``bytes`` again, and the app copies it into its own buffer: five copies of every byte, 100 MB of copying
for a 20 MB body, on the event loop. When the app already holds a buffer the body's declared length
(a large body goes into its own memory map: ``service.api.transport.body``), it can ask the server
instead, through ``scope[DIRECT_BODY_KEY]``, to read the rest of the body into it: the transport is
switched to a :class:`asyncio.BufferedProtocol` whose buffer is the app's, so the kernel copies each
byte once, into its place, and the app's task wakes once, when the body is in.

What HTTP/1.1 keeps: the bytes the parser already delivered come first; ``Expect: 100-continue`` is
answered as ``receive`` would; the sink never reads past the body's declared end, and once it is in, the
transport goes back to the HTTP protocol with a fresh parser (the state a parser is in between two
requests), so a pipelined request behind it is read as usual. If the app stops waiting (its deadline, a
cancellation), the rest of the body is read and dropped, as uvicorn drops a body the app did not read,
and never into the app's buffer, which may already serve another request. A connection lost, or closed
for writing, before the body is complete is :class:`~starlette.requests.ClientDisconnect`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.requests import ClientDisconnect

if TYPE_CHECKING:
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

    from service.server.protocol import HeaderLimitedProtocol

#: Bytes read at a time once the app has stopped waiting for the body (the rest is dropped).
_DISCARD_BYTES = 256 * 1024
#: The app hears of the body's progress (``arrived``) once this much more has come, and is asked then how much the
#: next reads may take: reads of 16 KiB (``body.DIRECT_READ_BYTES``) should cost the event loop no more than the
#: copy, so that it keeps the client's window open while it sends; the app's callbacks run every 256 KiB instead.
_REPORT_BYTES = 256 * 1024


class DirectBodyReader:
    """``scope[DIRECT_BODY_KEY]`` of one request: see :class:`service.api.transport.body.DirectBody`."""

    def __init__(self, http: HeaderLimitedProtocol, cycle: RequestResponseCycle, length: int) -> None:
        self._http = http
        self._cycle = cycle
        self._length = length  # the body's declared length
        #: Bytes of the body this reader has placed so far (read by the request telemetry), and the reads it took.
        self.received = 0
        self.reads = 0
        self._used = False  # one read a request

    async def head(self, most: int) -> bytes:
        """The body's first ``most`` bytes (all of it, if shorter), once they have arrived: for the app to choose
        where in its buffer the body goes before it reads it. Fewer, or none, if the body was taken already, or the
        connection ends first. A client that sent ``Expect: 100-continue`` is answered first, as ``receive`` would.
        """
        http, cycle = self._http, self._cycle
        want = min(most, self._length)
        waited = False
        while (
            not self._used
            and http.cycle is cycle
            and len(cycle.body) == http.body_delivered < want
            and cycle.more_body
            and not cycle.disconnected
            and not cycle.response_complete
        ):
            if cycle.waiting_for_100_continue and not http.transport.is_closing():
                http.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                cycle.waiting_for_100_continue = False
            http.flow.resume_reading()
            cycle.message_event.clear()
            waited = True
            await cycle.message_event.wait()
        if waited and (cycle.body or not cycle.more_body or cycle.disconnected):
            cycle.message_event.set()  # what the parser delivered is still for the app: receive must not wait for it
        if self._used or http.cycle is not cycle or len(cycle.body) != http.body_delivered:
            return b""
        return bytes(cycle.body[:most])

    async def read_into(
        self, view: memoryview, arrived: Callable[[int], None], read_bytes: Callable[[], int] = lambda: 0
    ) -> bool:
        """Fill ``view`` (exactly the declared length) with the body, calling ``arrived(filled)`` as it comes (every
        ``_REPORT_BYTES`` and at its end), and ``read_bytes()`` then for the most the next reads may take (0: all
        that has arrived).

        False, having read nothing, when this cannot be done here (the body is not the declared length, the app
        already took some of it with ``receive``, it is all in already, or the exchange is over): the app then
        reads it with ``receive``. Raises :class:`ClientDisconnect` if the connection ends before the body does.
        """
        http, cycle = self._http, self._cycle
        if (
            self._used
            or len(view) != self._length
            or http.cycle is not cycle
            or not cycle.more_body
            or cycle.response_complete
            or cycle.disconnected
            or http.transport.is_closing()
            or len(cycle.body) != http.body_delivered  # the app has taken some of it through receive
        ):
            return False
        self._used = True
        if cycle.waiting_for_100_continue:  # as receive() would: the client waits for this before sending
            http.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            cycle.waiting_for_100_continue = False
        start = len(cycle.body)
        view[:start] = cycle.body  # what the parser delivered before the app asked
        cycle.body = bytearray()

        def placed(filled: int, reads: int = 0) -> None:
            self.received = filled
            self.reads += reads
            arrived(filled)

        placed(start)
        sink = _BodySink(http, view, start, placed, read_bytes)
        http.transport.set_protocol(sink)
        http.flow.resume_reading()  # uvicorn pauses reading once 64 KiB wait for the app
        try:
            await sink.done
        except BaseException:
            sink.abandon()
            raise
        return True


class _BodySink(asyncio.BufferedProtocol):
    """The transport's protocol while a body is read into ``view``; everything else goes to the HTTP protocol."""

    def __init__(
        self,
        http: HeaderLimitedProtocol,
        view: memoryview,
        filled: int,
        arrived: Callable[[int, int], None],
        read_bytes: Callable[[], int],
    ) -> None:
        self._http = http
        # The app's buffer and callbacks, let go of once the body is in or the app stops waiting: uvloop keeps the
        # last buffered protocol's methods after it switches back, and with them this sink, until the connection
        # closes (a map held so could not be kept for the next body, nor freed).
        self._view: memoryview | None = view
        self._arrived: Callable[[int, int], None] | None = arrived
        self._read_bytes: Callable[[], int] | None = read_bytes
        self._most = read_bytes()  # what a read may take, asked again at every report
        self._total = len(view)
        self._filled = self._reported = filled
        self._reads = 0  # since the last report
        self._discard: bytearray | None = None  # once the app stopped waiting: where the rest goes
        self.done: asyncio.Future[None] = http.loop.create_future()

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._view is not None:
            most = self._most
            return self._view[self._filled : self._filled + most] if most > 0 else self._view[self._filled :]
        if self._discard is None:
            self._discard = bytearray(_DISCARD_BYTES)
        return memoryview(self._discard)[: min(_DISCARD_BYTES, self._total - self._filled)]

    def buffer_updated(self, nbytes: int) -> None:
        self._filled += nbytes
        self._reads += 1
        if self._filled - self._reported >= _REPORT_BYTES or self._filled >= self._total:
            self._report()
        if self._filled >= self._total:
            self._let_go()
            self._http.direct_body_complete()
            if not self.done.done():
                self.done.set_result(None)

    def _report(self) -> None:
        """Tell the app how far the body has come, and ask how much the next reads may take."""
        if self._view is None or self._arrived is None or self._read_bytes is None:
            return
        self._reported, reads, self._reads = self._filled, self._reads, 0
        try:
            self._arrived(self._filled, reads)
            self._most = self._read_bytes()
        except Exception as error:  # noqa: BLE001 - the app's watcher: its failure is the read's, not the connection's
            self._fail(error)

    def abandon(self) -> None:
        """The app no longer waits: drop the rest of the body as it comes, and stop writing to its buffer."""
        self._let_go()

    def _let_go(self) -> None:
        self._view = self._arrived = self._read_bytes = None

    def _fail(self, error: BaseException) -> None:
        self._let_go()
        if not self.done.done():
            self.done.set_exception(error)

    # --- the rest of the protocol is the HTTP protocol's ---

    def eof_received(self) -> None:  # the body is incomplete; the transport closes, as uvicorn's protocol has it
        self._fail(ClientDisconnect())
        self._http.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ClientDisconnect())
        self._http.connection_lost(exc)

    def pause_writing(self) -> None:
        self._http.pause_writing()

    def resume_writing(self) -> None:
        self._http.resume_writing()
