"""Hand memory freed by large requests back to the system once a worker has gone idle (glibc's allocator).

Scoring a large batch allocates and frees tens of megabytes in worker threads. Given back at once,
those pages are faulted in again, zeroed by the kernel, by the next large request: on a 20 MB
``token_logprobs`` request page faults were 17 % of the worker's CPU (``perf``), the largest cost
after the parse. So while large requests keep coming, freed memory stays in the heap for the next
one: blocks up to 64 MiB come from the heap (larger ones are mmapped and return on free), a free
does not trim the heap below 256 MiB, and at most two arenas hold it. Once no large request has
been in flight for ``IDLE_TRIM_SECONDS``, :class:`IdleTrim` hands all free heap memory back
(``malloc_trim``), so an idle worker's resident size falls back (under a mixed load glibc's
defaults, with a heap per thread, grew 70 % over a minute without anything leaking). What requests
in flight may hold is bounded by the memory budget (``policy.admission``); the heap between them
holds at most what the last ones freed.

`xent serve` runs with GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (service/cli/serve.py), so the heap
and the large mmapped blocks fault in as 2 MiB pages rather than 4 KiB ones.
Elsewhere than glibc these are no-ops.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging

logger = logging.getLogger("service.api")

_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_M_TRIM_THRESHOLD = -1


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


_LIBC = _libc()


#: Blocks up to this size come from the heap; larger ones are mmapped (and go back to the system when freed).
MMAP_THRESHOLD = 64 << 20
#: A free leaves up to this much free memory at the top of a heap; ``IdleTrim`` gives it back once idle.
TRIM_THRESHOLD = 256 << 20
#: How long a worker has had no large request in flight before its free heap memory is handed back.
IDLE_TRIM_SECONDS = 10.0


def tune_allocator() -> None:
    """The heap keeps what large requests free for the next one (``MMAP_THRESHOLD``, ``TRIM_THRESHOLD``), in at
    most two arenas, for allocations from now on."""
    if _LIBC is not None:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        _LIBC.mallopt(_M_ARENA_MAX, 2)
        _LIBC.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)


def give_back_free_memory() -> None:
    """Return free heap pages to the system (a few milliseconds)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


class IdleTrim:
    """Hands free heap memory back once no large request has been in flight for ``idle_seconds``.

    ``started`` and ``finished`` bracket each large request (on the event loop); when the last one in
    flight finishes, a trim is set for ``idle_seconds`` later, in a worker thread, and called off if
    another large request starts before then.
    """

    def __init__(self, idle_seconds: float = IDLE_TRIM_SECONDS) -> None:
        self.idle_seconds = idle_seconds
        self.in_flight = 0
        self.trims = 0
        self._pending: asyncio.TimerHandle | None = None

    def started(self) -> None:
        self.in_flight += 1
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    def finished(self) -> None:
        self.in_flight = max(self.in_flight - 1, 0)
        if not self.in_flight:
            loop = asyncio.get_running_loop()
            self._pending = loop.call_later(self.idle_seconds, self._trim, loop)

    def _trim(self, loop: asyncio.AbstractEventLoop) -> None:
        self._pending = None
        if not self.in_flight:
            self.trims += 1
            loop.run_in_executor(None, give_back_free_memory)


#: The idle trim of this process (one event loop a worker).
IDLE_TRIM = IdleTrim()
