"""Reading a request body: its media type, a bounded buffer, a deadline; gzip inflation, off the event loop.

Every size is checked by the request's :class:`~service.api.transport.limits.Limits`; a codec
that wants to see a large body while it arrives (an archive's unaligned members, ``token_logprobs`` rows) passes a
watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import mmap
import threading
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from fastapi import Request
from starlette.requests import ClientDisconnect

from service.api.problems import HttpProblem, ProblemKind
from service.api.transport._idle import IdleDrop
from service.api.transport.limits import Limits
from service.api.transport.npz_archive import ALIGNING_PEEK_BYTES, ALIGNMENT, aligning_shift
from service.core.contract import JSON_MEDIA_TYPE, NPZ_MEDIA_TYPE

_MEDIA_HINT = (
    "send JSON with Content-Type: application/json (curl --json '{...}' does both), "
    "or a NumPy .npz archive with Content-Type: application/x-npz"
)

BodyKind = Literal["json", "npz"]

#: A body declared at least this large is read into its own anonymous memory map.
MAPPED_MIN_BYTES = 1 << 20
#: The most a read takes of a body the server reads straight into its map (``DirectBody``), unless a watcher is at
#: work on a thread. Small reads keep the client's window opening as it sends: httpx copies the unsent rest of a
#: body after every ``send`` that took only part of it, and with reads of all that had arrived an 80 MB body took
#: 20 sends and 316 ms, with 16 KiB reads 7 and 186 ms (a client that sends all at once, as requests does, takes
#: 141 ms instead of 130). A thread holding the GIL would make each read wait for it: then it is all at once.
DIRECT_READ_BYTES = 16 << 10


class BodyCharge(Protocol):
    """What a body is charged against while it arrives (the worker's memory budget)."""

    async def charge_body(self, kind: BodyKind, size: int) -> None:
        """Hold the memory a ``kind`` body of ``size`` bytes is expected to need; may wait, or raise 503 or 413."""


#: Where a server that can read a body past the ASGI receive channel offers it, in the request's scope
#: (``xent serve``'s protocol does: ``service.server.direct_body``; other servers, and in-process clients, do not).
DIRECT_BODY_KEY = "xent.direct_body"


class DirectBody(Protocol):
    """Reads the rest of a request's body from the connection straight into a buffer of the body's length."""

    #: Bytes of the body placed so far.
    received: int
    #: Where the server began to read the body before the app was called, if the app's placer gave it a place
    #: (``BODY_PLACER_KEY``): ``read_into`` that place takes it over.
    placement: BodyPlacement | None

    async def head(self, most: int) -> bytes:
        """The body's first ``most`` bytes (all of it, if shorter), once they have arrived (fewer, or none, if the
        connection ends first): read nothing else until then."""

    async def read_into(self, view: memoryview, arrived: Callable[[int], None], read_bytes: Callable[[], int]) -> bool:
        """Fill ``view`` with the body, calling ``arrived(filled)`` as it comes (every few hundred kilobytes, and at
        its end) and ``read_bytes()`` then for the most the next reads may take (0: all that has arrived); False if
        the server cannot (nothing was read: use ``receive``). Raises ``ClientDisconnect`` if the connection ends
        first."""


#: Where the app puts, in its lifespan state, what gives a large body its place before the app is called
#: (``BodyPlacer``): ``xent serve``'s protocol then reads the body first (``service.server.direct_body``).
BODY_PLACER_KEY = "xent.body_placer"


class BodyPlacement(Protocol):
    """A body's place, chosen before the app was called: the server reads the body into ``view``."""

    @property
    def view(self) -> memoryview:
        """Exactly the body's declared length."""

    def arrived(self, filled: int) -> None:
        """``view[:filled]`` has arrived (called every few hundred kilobytes, and at the end)."""

    def read_bytes(self) -> int:
        """The most the next reads may take (0: all that has arrived)."""

    def drop(self) -> None:
        """The app did not take the body (it answered without it, or the connection ended): let go of its place."""


#: Gives a body its place from its first bytes (``BodyPlacer.head_bytes`` of them); None to leave it to the app.
PlaceBody = Callable[[bytes], BodyPlacement | None]


class BodyPlacer(Protocol):
    """Gives a large body of declared length its place before the app is called: decided from the request's head,
    the place itself chosen from the body's first bytes."""

    #: The body's first bytes it looks at (fewer if the body is shorter), and the least length it places.
    head_bytes: int
    min_bytes: int

    def __call__(self, scope: Mapping[str, Any], length: int) -> PlaceBody | None:
        """What places this request's body once its first bytes are in; None to leave it to the app (which is then
        called at once)."""


class BodyWatcher(Protocol):
    """Sees a large body as it arrives (it then lives in one memory map, so views of it stay valid)."""

    def feed(self, view: memoryview, filled: int) -> None:
        """Called after every chunk with the whole map and how much of it has arrived."""

    def close(self) -> None:
        """Called if the body's read fails: nothing more will arrive, and what was seen will not be used."""

    def working(self) -> bool:
        """Whether it is at work on a thread now, holding the GIL at times (the body is then read in large gulps)."""

    async def settled(self) -> None:
        """Returns once the watcher no longer reads or writes the body (work it does in a thread)."""


#: What watches a large body of each kind as it arrives (one watcher a body, made by calling its entry).
Watchers = Mapping[BodyKind, Callable[[], BodyWatcher]]


@dataclass
class Body:
    """A request body and the transport it came in."""

    kind: BodyKind
    data: bytes | bytearray | memoryview  # memoryview: a large body in its own memory map
    #: What watched the body arrive, if anything did to the end.
    watcher: BodyWatcher | None = None
    #: The Content-Encoding ``data`` is in: gzip until :meth:`inflate` (in the decode step) decodes it.
    encoding: Literal["identity", "gzip"] = "identity"
    #: Its length in bytes (kept after ``release``).
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = len(self.data)

    async def settled(self) -> None:
        """Returns once only its reader reads or writes the body: a watcher may still be at work on it in a thread
        (``_json_streamed``). Every decoder of a body that had a watcher waits for this first."""
        if self.watcher is not None:
            await self.watcher.settled()

    def inflate(self, limits: Limits) -> None:
        """Decode a gzip body in place (413 past the body limit, 400 if it is not gzip); no-op for identity.

        Called by the decode step, which runs in a worker thread: inflating as the body arrives
        would hold the event loop for as long as a gzip bomb takes to reach the limit.
        """
        if self.encoding == "gzip":
            inflated = _gunzip(self.data, limits)
            self.release()
            self.data, self.size, self.encoding = inflated, len(inflated), "identity"

    def release(self) -> None:
        """Let go of the bytes once nothing else needs them: a large body's memory map is kept for the next large
        body (``KEPT_MAPS``) if nothing views it any more, else unmapped when the last view goes."""
        data, self.data = self.data, b""
        if isinstance(data, memoryview):
            _let_go(data)


def body_kind(content_type: str | None) -> BodyKind:
    """JSON (``application/json`` or any ``+json``) or NPZ; 415 for anything else."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == JSON_MEDIA_TYPE or (media.startswith("application/") and media.endswith("+json")):
        return "json"
    if media == NPZ_MEDIA_TYPE:
        return "npz"
    got = f"got {content_type!r}" if content_type else "no Content-Type was sent"
    raise ProblemKind.UNSUPPORTED_MEDIA_TYPE.error(f"{_MEDIA_HINT}; {got}")


def _encoding_of(content_encoding: str | None) -> Literal["identity", "gzip"]:
    """The body's Content-Encoding; 415 for one the service does not read."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return "gzip"
    if encoding == "identity":
        return "identity"
    detail = f"Content-Encoding {content_encoding!r} is not supported; send the body as is or gzip-compressed"
    raise ProblemKind.UNSUPPORTED_MEDIA_TYPE.error(detail)


#: Most bytes of gzip input, and of output, handled by one call to zlib (which copies its unconsumed input each time).
_GZIP_PIECE = 1 << 20


def _gunzip(data: bytes | bytearray | memoryview, limits: Limits) -> bytearray | memoryview:
    """What a gzip body decodes to, held to the body limit (a gzip bomb stops one byte past it); 400 if not gzip.
    A large one goes into a memory map as a large body does (``_BodyBuffer``): grown in place, never copied."""
    decoder = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    inflated = _BodyBuffer(None, None, most=limits.body_bytes + 1)
    view = memoryview(data)
    try:
        for start in range(0, len(view), _GZIP_PIECE):
            pending: bytes | memoryview = view[start : start + _GZIP_PIECE]
            while not decoder.eof:
                # Never more than one byte past what the limit allows, nor a large piece at a time.
                most = min(_GZIP_PIECE, limits.body_bytes - inflated.filled + 1)
                piece = decoder.decompress(pending, most)
                inflated.add(piece)
                limits.check_inflated(inflated.filled)
                pending = decoder.unconsumed_tail
                if not pending and len(piece) < most:  # this input is used up (a full piece may leave output held)
                    break
    except zlib.error as error:
        raise ProblemKind.MALFORMED_GZIP.error(f"the body is not valid gzip: {error}") from None
    if not decoder.eof:
        raise ProblemKind.MALFORMED_GZIP.error("the gzip body is truncated")
    return inflated.contents()


async def read_body(
    request: Request,
    limits: Limits,
    *,
    timeout: float,
    min_bytes_per_second: float = 0,
    grace_seconds: float = 0,
    charge: BodyCharge | None = None,
    watchers: Watchers,
) -> Body:
    """The body as sent, after checking its media type and size (a gzip body is inflated later: ``Body.inflate``).

    413 as soon as the declared or streamed size passes the limit, without reading the rest;
    408 if the client takes longer than ``timeout`` seconds to send it
    (a slow client must not hold a worker forever), or if after ``grace_seconds`` it arrives
    slower than ``min_bytes_per_second`` (mod_reqtimeout's MinRate: ``n`` bytes must have arrived
    within ``grace_seconds + n / min_bytes_per_second``), so a trickle is cut long before the
    total timeout. ``charge``: where the body's memory is charged, by its declared length before
    the first byte is read, else (no length, or gzip) by what has arrived, as it grows.
    ``watchers``: what watches a large body of each kind while it arrives.
    """
    kind = body_kind(request.headers.get("content-type"))
    encoding = _encoding_of(request.headers.get("content-encoding"))
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit():
        limits.check_body(int(declared))
    # Filled in place as chunks arrive (see _BodyBuffer), never a list of chunks joined at the end:
    # the join would hold the body twice at its peak.
    mapped = int(declared) if declared is not None and declared.isdigit() and encoding == "identity" else None
    charged = 0  # bytes of body charged for
    if charge is not None and mapped is not None:
        await charge.charge_body(kind, mapped)
        charged = mapped
    direct: DirectBody | None = request.scope.get(DIRECT_BODY_KEY)
    deadline = _Deadline(timeout, min_bytes_per_second, grace_seconds)
    complete = False
    buffer: _BodyBuffer | None = None
    try:
        placed = direct.placement if direct is not None else None
        if isinstance(placed, _BodyBuffer) and placed.holds(mapped) and encoding == "identity":
            buffer = placed  # given its place (this process's placer) before the app was called: being read
        else:
            # An archive read straight into its map goes where its first large array lies aligned (no copy to align
            # it): its first bytes are waited for, as the headers often arrive alone.
            shift = 0
            if kind == "npz" and direct is not None and mapped is not None and mapped >= MAPPED_MIN_BYTES:
                shift = aligning_shift(await direct.head(ALIGNING_PEEK_BYTES))
            buffer = _BodyBuffer(
                mapped, watchers.get(kind), most=None if mapped is not None else limits.body_bytes, shift=shift
            )
        # A large body of declared length (charged already) straight from the connection into its map, if the
        # server can; else, or for the rest, through ASGI's receive.
        if direct is None or not await buffer.read_directly(direct, deadline):
            async for chunk in request.stream():
                deadline.size += len(chunk)
                limits.check_body(deadline.size)
                buffer.add(chunk)  # a gzip body stays compressed here: it is inflated off the event loop
                if charge is not None and buffer.filled > charged:
                    charged = buffer.filled + buffer.filled // 4  # a step ahead: a few charges, not one a chunk
                    await charge.charge_body(kind, charged)
        complete = True
        return Body(kind, buffer.contents(), buffer.watcher, encoding)
    except asyncio.CancelledError:
        if not deadline.expired():
            raise
        raise ProblemKind.TIMEOUT.error(deadline.explain()) from None
    except ClientDisconnect:
        # The client closed the connection before its body was complete. Nobody will read this answer,
        # but the log line and the metrics say what happened: a 400, not a 500 with a stack trace.
        of = f" of the {declared} it declared" if declared is not None else ""
        detail = f"the connection closed after {deadline.size} bytes of the body{of}"
        raise ProblemKind.INCOMPLETE_BODY.error(detail) from None
    finally:
        deadline.close()
        if not complete and buffer is not None and buffer.watcher is not None:
            buffer.watcher.close()  # nothing more will come: a watcher's thread stops


class _Deadline:
    """When a body read gives up: ``timeout`` seconds after it began, or as soon as the body falls behind
    ``min_bytes_per_second`` after ``grace_seconds`` (``size`` bytes must have arrived by
    ``grace_seconds + size / min_bytes_per_second``; 0: no rate).

    One timer for the whole read, not one per chunk: when it fires it looks at what has arrived meanwhile
    and, if that moved the deadline, sets itself again for the new one; otherwise it cancels the reading
    task (what ``asyncio.timeout`` does, without rescheduling a timer for every chunk of every body).
    """

    def __init__(self, timeout: float, min_bytes_per_second: float, grace_seconds: float) -> None:
        self.size = 0  # bytes arrived so far, counted by the reader
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._cancelling = self._task.cancelling() if self._task is not None else 0
        self._started = self._loop.time()
        self._timeout = timeout
        self._give_up = self._started + timeout
        self._rate, self._grace = min_bytes_per_second, grace_seconds
        self._fired = False
        self._when = self._due()
        self._timer = self._loop.call_at(self._when, self._check)

    def _due(self) -> float:
        if not self._rate:
            return self._give_up
        return min(self._give_up, self._started + self._grace + self.size / self._rate)

    def _check(self) -> None:
        due = self._due()
        if due > self._when:  # bytes arrived since the timer was set: not behind yet
            self._when = due
            self._timer = self._loop.call_at(due, self._check)
        elif self._task is not None:
            self._fired = True
            self._task.cancel()

    def expired(self) -> bool:
        """Whether a CancelledError being handled is this deadline's (then it is consumed), not anyone else's."""
        if not self._fired or self._task is None:
            return False
        return self._task.uncancel() <= self._cancelling

    def explain(self) -> str:
        """Why the read was given up: too slow, or too long."""
        if self._when < self._give_up:
            elapsed = self._loop.time() - self._started
            return (
                f"the request body arrived too slowly: {self.size} bytes in {elapsed:.1f} seconds, under "
                f"{self._rate:g} bytes per second after the first {self._grace:g}"
                " (XENT_BODY_MIN_BYTES_PER_SECOND)"
            )
        return f"the request body did not arrive within {self._timeout:g} seconds (XENT_BODY_TIMEOUT_SECONDS)"

    def close(self) -> None:
        """Stop the timer (the read is over, one way or another)."""
        self._timer.cancel()


class _KeptMap:
    """One anonymous memory map kept from a large body to the next, as the simdjson parser is (``_json_fast``).

    A fresh map's pages are zeroed by the kernel as the body first touches them (20 MB: 10 huge pages), on the
    event loop while the body arrives; a body that fits in the kept map arrives into pages that are there already.
    Only a map that nothing views any more is kept (a view would see the next body's bytes; the next body is read
    only up to its own length), and it is dropped ``idle_seconds`` after the last large body, so an idle worker
    does not hold it.
    """

    def __init__(self, idle_seconds: float = 10.0) -> None:
        self._kept: mmap.mmap | None = None
        self._lock = threading.Lock()
        self._idle_drop = IdleDrop(idle_seconds, self._lock, self._drop)

    def take(self, size: int) -> mmap.mmap:
        """The kept map if it holds ``size`` bytes, else a new one (the kernel may back it with huge pages)."""
        with self._lock:
            kept, self._kept = self._kept, None
        if kept is not None and len(kept) >= size:
            return kept
        mapped = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        with contextlib.suppress(AttributeError, OSError):  # not on every platform
            mapped.madvise(mmap.MADV_HUGEPAGE)
        return mapped

    def take_kept(self, size: int) -> mmap.mmap | None:
        """The kept map if it holds ``size`` bytes (then it is no longer kept), else None: no new memory."""
        with self._lock:
            kept = self._kept
            if kept is None or len(kept) < size:
                return None
            self._kept = None
            return kept

    def give_back(self, mapped: mmap.mmap) -> None:
        """Keep ``mapped`` for the next body (the larger of it and the kept one), if nothing views it any more."""
        try:
            mapped.resize(len(mapped))  # refused while a buffer of it is exported: then it goes with its last view
        except (BufferError, OSError, SystemError, ValueError, TypeError):
            return
        with self._lock:
            if self._kept is None or len(mapped) > len(self._kept):
                self._kept = mapped
            self._idle_drop.used()

    def _drop(self) -> None:
        self._kept = None

    def kept(self) -> int:
        """The size of the kept map (0: none)."""
        with self._lock:
            return 0 if self._kept is None else len(self._kept)


#: The memory map kept between large bodies in this process.
KEPT_MAPS = _KeptMap()


def _let_go(view: memoryview) -> None:
    """Release a view of a body: its memory map is kept for the next large body (``KEPT_MAPS``) if nothing else views
    it, else unmapped when the last view goes."""
    owner = view.obj
    with contextlib.suppress(BufferError):  # something still views it: it goes when that does
        view.release()
    if isinstance(owner, mmap.mmap):
        KEPT_MAPS.give_back(owner)


class _BodyBuffer:
    """Where a body accumulates as it arrives.

    A large body whose length is declared goes into one private anonymous memory map at
    least that long (``KEPT_MAPS``: the last large body's, when it fits and nothing views it
    any more), viewed up to that length: no copies as it grows, pages are only touched (and
    counted as resident) as bytes arrive, the kernel may back it with huge pages (page faults
    are a large part of reading tens of megabytes), and the map is kept for the next large
    body until the worker has been idle 10 s. Anything else (small, gzip, no Content-Length)
    grows a bytearray in place, and a body without a declared length that has a limit (``most``:
    one sent in chunks, a gzip body as it is inflated) moves, once past ``MAPPED_MIN_BYTES``, into
    a map of that limit, where it grows without being copied again.
    """

    def __init__(
        self,
        declared: int | None,
        watch: Callable[[], BodyWatcher] | None,
        *,
        most: int | None = None,
        shift: int = 0,
        into: mmap.mmap | None = None,
    ) -> None:
        self._view: memoryview | None = None  # over the memory map, which it keeps alive
        self._deadline: _Deadline | None = None  # sees a directly read body arrive, once the app reads it
        self._bytes = bytearray()
        self._filled = 0
        #: The most an undeclared body can grow to (its limit): past ``MAPPED_MIN_BYTES`` it moves into a map that
        #: long, whose pages are only touched as it grows (a bytearray's growth copies it, twice its size at a peak).
        self._most = most
        #: Fed every chunk of a mapped body (a large one only).
        self.watcher: BodyWatcher | None = None
        if declared is not None and declared >= MAPPED_MIN_BYTES:  # ``shift`` bytes into its map (``aligning_shift``)
            # Room for any shift (under ALIGNMENT), so that the kept map fits the next body of the same length.
            mapped = into if into is not None else KEPT_MAPS.take(declared + ALIGNMENT)
            self._view = memoryview(mapped)[shift : shift + declared]
            self.watcher = watch() if watch is not None else None

    @property
    def filled(self) -> int:
        """Bytes held so far."""
        return self._filled

    async def read_directly(self, direct: DirectBody, deadline: _Deadline) -> bool:
        """The whole body read by the server straight into the map (False: not a mapped body, or the server
        cannot: nothing was read); the deadline sees it arrive, and so does the watcher. A body the server began
        to read before the app was called (``placement``: this buffer) is taken over where it has got to."""
        view = self._view
        if view is None or (self._filled and direct.placement is not self):
            return False
        self._deadline = deadline
        deadline.size = self._filled
        return await direct.read_into(view, self.arrived, self.read_bytes)

    def holds(self, declared: int | None) -> bool:
        """Whether this is a mapped body of ``declared`` bytes (still: ``drop`` lets go of it)."""
        return self._view is not None and len(self._view) == declared

    # --- as a BodyPlacement (``BodyPlacer``), and for ``read_directly`` ---

    @property
    def view(self) -> memoryview:
        if self._view is None:
            raise ValueError("not a mapped body")
        return self._view

    def arrived(self, filled: int) -> None:
        self._filled = filled
        if self._deadline is not None:
            self._deadline.size = filled
        if self.watcher is not None and self._view is not None:
            self.watcher.feed(self._view, filled)

    def read_bytes(self) -> int:
        return 0 if self.watcher is not None and self.watcher.working() else DIRECT_READ_BYTES

    def drop(self) -> None:
        view, self._view = self._view, None
        if self.watcher is not None:
            self.watcher.close()
        if view is not None:
            _let_go(view)

    def add(self, chunk: bytes) -> None:
        end = self._filled + len(chunk)
        if self._view is not None and end <= len(self._view):
            self._view[self._filled : end] = chunk
            if self.watcher is not None:
                self.watcher.feed(self._view, end)
        elif self._view is None and self._most is not None and MAPPED_MIN_BYTES < end <= self._most:
            self._view = memoryview(KEPT_MAPS.take(self._most))[: self._most]  # large now: into a map, once
            self._view[: self._filled] = self._bytes
            self._view[self._filled : end] = chunk
            self._bytes = bytearray()
        else:
            if self._view is not None:  # more than declared (the HTTP parser does not let this happen)
                self._bytes = bytearray(self._view[: self._filled])
                self._view = self.watcher = None
            self._bytes += chunk
        self._filled = end

    def contents(self) -> bytearray | memoryview:
        if self._view is None:
            return self._bytes
        return self._view[: self._filled]


class KeptMapPlacer:
    """This process's ``BodyPlacer``: a large body sent to a scoring route goes into the kept map (``KEPT_MAPS``),
    placed as ``read_body`` would place it (an archive's first array aligned, the route's watcher fed as it arrives),
    if that map is free and fits it; else it is left to the app. No new memory: the map is there already, and the
    app charges it when it takes the body.

    Read before the app is called, a body arrives as fast as the client sends it: the app takes half a millisecond
    to get to ``read_body`` (its middleware, routing, the memory charge), and meanwhile a client on the same machine
    fills the kernel's buffers (4 MB), its ``send()`` takes only part of the body, and httpx copies the rest before
    it sends again (35 ms for an 80 MB archive).
    """

    head_bytes = ALIGNING_PEEK_BYTES
    min_bytes = MAPPED_MIN_BYTES

    def __init__(self, limits: Limits, routes: Mapping[str, Watchers]) -> None:
        self._limits = limits
        #: The routes that read their body with ``read_body`` (by path), and what watches each kind of body there.
        self._routes = routes

    def __call__(self, scope: Mapping[str, Any], length: int) -> Callable[[bytes], _BodyBuffer | None] | None:
        found = self._watchers(scope, length)
        if found is None or KEPT_MAPS.kept() < length + ALIGNMENT:
            return None
        return functools.partial(self._place, length, *found)

    @staticmethod
    def _place(length: int, kind: BodyKind, watchers: Watchers, head: bytes) -> _BodyBuffer | None:
        mapped = KEPT_MAPS.take_kept(length + ALIGNMENT)  # (another body may have taken it meanwhile)
        if mapped is None:
            return None
        shift = aligning_shift(head) if kind == "npz" else 0
        return _BodyBuffer(length, watchers.get(kind), shift=shift, into=mapped)

    def _watchers(self, scope: Mapping[str, Any], length: int) -> tuple[BodyKind, Watchers] | None:
        """The body's kind and its route's watchers, if it is a plain body of a length the route reads here."""
        path: str = scope.get("path", "")
        root: str = scope.get("root_path", "")
        watchers = self._routes.get(path[len(root) :] if root and path.startswith(root) else path)
        if watchers is None or scope.get("method") != "POST" or length > self._limits.body_bytes:
            return None
        headers = {name: value for name, value in scope.get("headers", ()) if name in _PLACING_HEADERS}
        try:
            kind = body_kind(_latin1(headers.get(b"content-type")))
            encoding = _encoding_of(_latin1(headers.get(b"content-encoding")))
        except HttpProblem:
            return None  # the app refuses it
        return (kind, watchers) if encoding == "identity" else None


_PLACING_HEADERS = (b"content-type", b"content-encoding")


def _latin1(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")
