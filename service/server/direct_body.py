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
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.requests import ClientDisconnect

from service.api.transport.body import BodyPlacement, BodyPlacer, PlaceBody

if TYPE_CHECKING:
    from uvicorn._types import ASGIReceiveEvent
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

    from service.server.protocol import HeaderLimitedProtocol

#: Bytes read at a time once the app has stopped waiting for the body (the rest is dropped).
_DISCARD_BYTES = 256 * 1024
#: The app hears of the body's progress (``arrived``) once this much more has come, and is asked then how much the
#: next reads may take: reads of 16 KiB (``body.DIRECT_READ_BYTES``) should cost the event loop no more than the
#: copy, so that it keeps the client's window open while it sends; the app's callbacks run every 256 KiB instead.
_REPORT_BYTES = 256 * 1024
#: The app is called once a body the server places (``place``) is in, or after this long at most: then it takes the
#: read over where it has got to, with its own deadlines (a slow client must not wait for them before the app).
WAIT_SECONDS = 1.0

logger = logging.getLogger("service.server")


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
        #: Where the body is being read before the app is called (``place``), until the app takes it or the exchange
        #: ends without it (``end``).
        self.placement: BodyPlacement | None = None
        self._sink: _BodySink | None = None  # reading the placed body
        self._taken = False  # the placed body is the app's (or dropped)
        self._call_app: Callable[[], None] | None = None  # until the body is placed and in, or will not be placed
        self._place_body: PlaceBody | None = None  # the placer's, for this body
        self._head_bytes = 0  # the body's first bytes it looks at
        self._timer: asyncio.TimerHandle | None = None
        # The app's callbacks once it takes a placed body over (before: the placement's).
        self._arrived: Callable[[int], None] | None = None
        self._read_bytes: Callable[[], int] | None = None

    # --- the body read before the app is called ---

    def may_place(self, placer: BodyPlacer, call_app: Callable[[], None]) -> bool:
        """Whether the body may be placed (``place``) before the app is called: large enough for ``placer``, one it
        takes from the request's head, and the client is not waiting for an answer before it sends it. Then
        ``call_app`` (which starts the app's task) is called once the body is placed and in, or will not be placed,
        or after ``WAIT_SECONDS``; and the app's ``receive`` is this reader's (``receive``)."""
        http, cycle = self._http, self._cycle
        if self._length < placer.min_bytes or cycle.waiting_for_100_continue or http.pipeline:
            return False
        try:
            place_body = placer(cycle.scope, self._length)
        except Exception:  # the app's placer: its failure leaves the body to the app
            logger.exception("placing a request body failed; the app reads it")
            return False
        if place_body is None:
            return False
        self._place_body, self._head_bytes = place_body, placer.head_bytes
        self._call_app = call_app
        self._timer = http.loop.call_later(WAIT_SECONDS, self._settle)
        cycle.receive = self.receive  # type: ignore[method-assign]
        return True

    def _settle(self) -> None:
        """Nothing more is placed: the app is called (it reads the body itself, or takes a placed one over)."""
        call_app, self._call_app = self._call_app, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if call_app is not None:
            call_app()

    def place(self, chunk: bytes) -> bool:
        """Called by the protocol with each piece of the body the parser delivers until this returns True: once the
        body's first bytes the placer looks at are in (``chunk`` and what uvicorn holds before it), give the body its
        place, put them there and read the rest there (then ``chunk`` is placed: True, and ``placement`` is set); or
        leave the body to uvicorn and the app (True, ``placement`` None). False: not yet (``chunk`` is uvicorn's)."""
        http, cycle, place_body, most = self._http, self._cycle, self._place_body, self._head_bytes
        if self._call_app is None or place_body is None:
            return True  # not placing, or the app is already called: it reads the body its way
        held = len(cycle.body)
        arrived = held + len(chunk)
        if (
            self._used
            or http.cycle is not cycle
            or arrived >= self._length  # all of it is here: uvicorn's as usual
            or cycle.response_complete
            or cycle.disconnected
            or http.transport.is_closing()
            or held != http.body_delivered
        ):
            self._settle()
            return True
        if arrived < most:
            return False
        head = bytes(cycle.body) + chunk[: most - held] if held else chunk[:most]
        try:
            placement = place_body(head)
        except Exception:  # the app's placer: its failure leaves the body to the app, as if it had declined
            logger.exception("placing a request body failed; the app reads it")
            placement = None
        if placement is None:
            self._settle()
            return True
        view = placement.view
        view[:held] = cycle.body  # what uvicorn held, then this piece
        view[held:arrived] = chunk
        cycle.body = bytearray()
        self.placement = placement
        self.received = arrived  # (the placement hears of it at the sink's first report: less to do before reading)
        sink = _BodySink(http, view, arrived, self._report, self._next_read_bytes)
        self._sink = sink
        sink.done.add_done_callback(self._placed)
        http.transport.set_protocol(sink)  # from the next read (this one holds no more of the body)
        http.flow.resume_reading()
        return True

    def take(self, data: memoryview) -> memoryview:
        """Place ``data``, the rest of the read in which the body was placed (the parser had it): what lies past the
        body's end (the next request's) is returned."""
        if self._sink is None:
            return data
        return data[self._sink.take(data) :]

    def _placed(self, done: asyncio.Future[None]) -> None:
        if not done.cancelled():
            done.exception()  # (retrieved: the app, if it takes the body, hears of a failure from read_into)
        self._settle()

    def _report(self, filled: int, reads: int = 0) -> None:
        self.received = filled
        self.reads += reads
        arrived = self._arrived if self._arrived is not None else self.placement.arrived if self.placement else None
        if arrived is not None:
            arrived(filled)

    def _next_read_bytes(self) -> int:
        if self._read_bytes is not None:
            return self._read_bytes()
        return self.placement.read_bytes() if self.placement is not None else 0

    async def receive(self) -> ASGIReceiveEvent:
        """The app's ``receive`` while a body may be placed: a placed body the app did not take with ``read_into``
        comes in one message once it is in (a copy; the placement is dropped); anything else as uvicorn has it."""
        placement, sink = self.placement, self._sink
        if placement is None or sink is None or self._taken:
            return await type(self._cycle).receive(self._cycle)
        self._taken = self._used = True
        try:
            await sink.done
        except ClientDisconnect:
            placement.drop()
            return {"type": "http.disconnect"}
        except BaseException:
            sink.abandon()
            placement.drop()
            raise
        body = bytes(placement.view)
        placement.drop()
        return {"type": "http.request", "body": body, "more_body": False}

    def end(self) -> None:
        """The exchange is over (its answer sent, or the connection gone): a placed body the app did not take is
        dropped, and the rest of it, if it is still coming, is read and thrown away."""
        self._settle()
        if self.placement is not None and not self._taken:
            self._taken = True
            if self._sink is not None:
                self._sink.abandon()
            self.placement.drop()

    # --- the body read when the app asks ---

    def _continue(self) -> None:
        """Answer ``Expect: 100-continue``, as ``receive`` would: the client waits for this before it sends the body."""
        cycle = self._cycle
        if cycle.waiting_for_100_continue and not self._http.transport.is_closing():
            self._http.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            cycle.waiting_for_100_continue = False

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
            self._continue()
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
        placement, placing = self.placement, self._sink
        if placement is not None and placing is not None:  # placed before the app was called: it takes it over
            if self._taken or view is not placement.view:
                return False
            self._taken = self._used = True
            self.placement = None  # the app's now: no view of it here (its map is kept for the next body once let go)
            self._arrived, self._read_bytes = arrived, read_bytes
            arrived(self.received)
            try:
                await placing.done
            except BaseException:
                placing.abandon()
                raise
            finally:
                self._arrived = self._read_bytes = None  # (they hold the app's buffer)
            return True
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
        self._continue()
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

    def take(self, data: memoryview) -> int:
        """Place ``data`` as if it had been read (bytes the parser had), up to the body's end; how much it took."""
        size = min(len(data), self._total - self._filled)
        if size and self._view is not None:
            self._view[self._filled : self._filled + size] = data[:size]
        if size:
            self.buffer_updated(size)
        return size

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
