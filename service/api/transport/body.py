"""Reading a request body: its media type, gzip inflation, a bounded buffer, a deadline.

Every size is checked by the request's :class:`~service.api.transport.limits.Limits`; a codec
that wants to see a large body while it arrives (the NPZ checksums) passes a watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import mmap
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from fastapi import Request
from starlette.requests import ClientDisconnect

from service.api.problems import ProblemKind
from service.api.transport.limits import Limits
from service.core.contract import JSON_MEDIA_TYPE, NPZ_MEDIA_TYPE

_MEDIA_HINT = (
    "send JSON with Content-Type: application/json (curl --json '{...}' does both), "
    "or a NumPy .npz archive with Content-Type: application/x-npz"
)

BodyKind = Literal["json", "npz"]

#: A body declared at least this large is read into its own anonymous memory map.
MAPPED_MIN_BYTES = 1 << 20


class BodyWatcher(Protocol):
    """Sees a large body as it arrives (it then lives in one memory map, so views of it stay valid)."""

    def feed(self, view: memoryview, filled: int) -> None:
        """Called after every chunk with the whole map and how much of it has arrived."""


@dataclass
class Body:
    """A request body and the transport it came in."""

    kind: BodyKind
    data: bytes | bytearray | memoryview  # memoryview: a large body in its own memory map
    #: What watched the body arrive, if anything did to the end.
    watcher: BodyWatcher | None = None
    #: Its length in bytes (kept after ``release``).
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = len(self.data)

    def release(self) -> None:
        """Let go of the bytes (a large body's memory map is unmapped) once nothing else needs them."""
        data, self.data = self.data, b""
        if isinstance(data, memoryview):
            with contextlib.suppress(BufferError):  # something still views it: it goes when that does
                data.release()


def body_kind(content_type: str | None) -> BodyKind:
    """JSON (``application/json`` or any ``+json``) or NPZ; 415 for anything else."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == JSON_MEDIA_TYPE or (media.startswith("application/") and media.endswith("+json")):
        return "json"
    if media == NPZ_MEDIA_TYPE:
        return "npz"
    got = f"got {content_type!r}" if content_type else "no Content-Type was sent"
    raise ProblemKind.UNSUPPORTED_MEDIA_TYPE.error(f"{_MEDIA_HINT}; {got}")


class _Gunzip:
    """Streaming gzip decoding whose output is held to the body limit (a gzip bomb stops there)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.size = 0
        self._decoder = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)

    def feed(self, data: bytes) -> bytes:
        """The bytes ``data`` decodes to; 413 past the limit, 400 if it is not gzip."""
        out: list[bytes] = []
        try:
            while data:
                # max_length: never inflate more than one byte past what the limit allows.
                piece = self._decoder.decompress(data, self.limits.body_bytes - self.size + 1)
                self.size += len(piece)
                self.limits.check_inflated(self.size)
                out.append(piece)
                data = self._decoder.unconsumed_tail
        except zlib.error as error:
            raise ProblemKind.MALFORMED_GZIP.error(f"the body is not valid gzip: {error}") from None
        return b"".join(out)

    def finish(self) -> None:
        """400 unless the gzip stream ended properly."""
        if not self._decoder.eof:
            raise ProblemKind.MALFORMED_GZIP.error("the gzip body is truncated")


def _decoder_for(content_encoding: str | None, limits: Limits) -> _Gunzip | None:
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return _Gunzip(limits)
    if encoding == "identity":
        return None
    detail = f"Content-Encoding {content_encoding!r} is not supported; send the body as is or gzip-compressed"
    raise ProblemKind.UNSUPPORTED_MEDIA_TYPE.error(detail)


async def read_body(
    request: Request,
    limits: Limits,
    *,
    timeout: float,
    watchers: Mapping[BodyKind, Callable[[], BodyWatcher]],
) -> Body:
    """The (decompressed) body, after checking its media type and size.

    413 as soon as the declared, streamed or decompressed size passes the limit, without
    reading the rest; 408 if the client takes longer than ``timeout`` seconds to send it
    (a slow client must not hold a worker forever). ``watchers``: what watches a large
    body of each kind while it arrives.
    """
    kind = body_kind(request.headers.get("content-type"))
    gunzip = _decoder_for(request.headers.get("content-encoding"), limits)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit():
        limits.check_body(int(declared))
    # Filled in place as chunks arrive (see _BodyBuffer), never a list of chunks joined at the end:
    # the join would hold the body twice at its peak.
    mapped = int(declared) if declared is not None and declared.isdigit() and not gunzip else None
    buffer = _BodyBuffer(mapped, watchers.get(kind))
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                limits.check_body(size)
                buffer.add(gunzip.feed(chunk) if gunzip else chunk)
    except TimeoutError:
        detail = f"the request body did not arrive within {timeout:g} seconds (XENT_BODY_TIMEOUT_SECONDS)"
        raise ProblemKind.TIMEOUT.error(detail) from None
    except ClientDisconnect:
        # The client closed the connection before its body was complete. Nobody will read this answer,
        # but the log line and the metrics say what happened: a 400, not a 500 with a stack trace.
        of = f" of the {declared} it declared" if declared is not None else ""
        raise ProblemKind.INCOMPLETE_BODY.error(f"the connection closed after {size} bytes of the body{of}") from None
    if gunzip:
        gunzip.finish()
    return Body(kind, buffer.contents(), buffer.watcher)


class _BodyBuffer:
    """Where a body accumulates as it arrives.

    A large body whose length is declared goes into one private anonymous memory map of
    that length: no copies as it grows, pages are only touched (and counted as resident)
    as bytes arrive, the kernel may back it with huge pages (page faults are a large part
    of reading tens of megabytes), and the whole map goes back to the system as soon as
    the request is done with it. Anything else (small, gzip, no Content-Length) grows a
    bytearray in place.
    """

    def __init__(self, declared: int | None, watch: Callable[[], BodyWatcher] | None) -> None:
        self._view: memoryview | None = None  # over the memory map, which it keeps alive
        self._bytes = bytearray()
        self._filled = 0
        #: Fed every chunk of a mapped body (a large one only).
        self.watcher: BodyWatcher | None = None
        if declared is not None and declared >= MAPPED_MIN_BYTES:
            mapped = mmap.mmap(-1, declared, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            with contextlib.suppress(AttributeError, OSError):  # not on every platform
                mapped.madvise(mmap.MADV_HUGEPAGE)
            self._view = memoryview(mapped)
            self.watcher = watch() if watch is not None else None

    def add(self, chunk: bytes) -> None:
        end = self._filled + len(chunk)
        if self._view is not None and end <= len(self._view):
            self._view[self._filled : end] = chunk
            if self.watcher is not None:
                self.watcher.feed(self._view, end)
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
