"""Memory-aware admission: a budget of bytes per worker process that scoring requests in flight share.

A request is charged in two steps. While its body arrives: the peak it is expected to reach,
from the body's declared length (``Content-Length``; for a body without one, or a gzip one,
from what has arrived so far) times :data:`PEAK_PER_BODY_BYTE` of its media type. Once decoded:
its batch's cells times :data:`BYTES_PER_CELL`, up or down. A charge that does not fit waits
(first come, first served) for at most ``wait_seconds``, then the request gets 503 with
Retry-After; a request that could not fit even in an empty budget gets 413 at once. The charge
is given back however the request ends (answer, 4xx, disconnect, exception, cancellation).

Everything here runs on the event loop (one thread), so the counters need no lock.

The budget of a worker (:func:`memory_budget`)::

    XENT_MEMORY_BUDGET_BYTES                            when set (0: no budget, nothing is counted)
    max(MIN_BUDGET_BYTES, limit / workers - PROCESS_BASELINE_BYTES)   otherwise

where ``limit`` is the container's cgroup memory limit (v2 ``memory.max``, v1
``memory.limit_in_bytes``), or the machine's physical memory when there is none.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
from collections import deque
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from service.api.problems import ProblemKind

#: Expected peak memory (above an idle worker) per prediction cell, decoding and scoring included.
#: benchmarks/RESULTS.md, "End to end", column "Peak RSS above idle" ÷ N × C: 17-35 bytes a cell on the
#: NPZ and fast JSON paths (10,000 × 1,000 NPZ 168.5 MB; 100,000 × 10 JSON 29.5-31.8 MB); 735,000 × 10
#: NPZ, the body of the out-of-memory report, peaked at 212 MB (28.8 a cell). Rounded up for headroom.
BYTES_PER_CELL = 40

#: Expected peak per byte of body, before it is decoded (the cells are not known yet). NPZ: 2.0-4.5 ×
#: the body (the benchmarks' NPZ rows; 4.5 × for np.savez_compressed). JSON: the fast path peaks at
#: 2-3.3 × the body, but a body it declines (an escape, a duplicate key, NaN) takes the reference
#: path, which peaked at 10.5-11 × (100,000 × 10 and 300,000 × 10 with XENT_FAST_JSON_MIN_BYTES
#: above the body); which path a body takes is known only once it is parsed, so 12 ×.
PEAK_PER_BODY_BYTE = {"npz": 4.5, "json": 12.0}

#: What a worker holds before any request: the interpreter, NumPy, FastAPI, uvicorn (78-92 MB idle
#: in benchmarks/RESULTS.md) plus the allocator's and the answers' slack.
PROCESS_BASELINE_BYTES = 150 * 1000 * 1000

#: The smallest budget derived from a memory limit: below it, a worker could not score much at all.
MIN_BUDGET_BYTES = 32 * 1024 * 1024

#: How long a charge that does not fit waits for others to finish before its request gets 503.
WAIT_SECONDS = 2.0

#: Where the container's memory limit is (cgroup v2, then v1).
CGROUP_LIMIT_FILES = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))

#: cgroup v1 says "no limit" with a number near 2**63; anything this large is no limit.
_UNLIMITED = 1 << 60


def cgroup_memory_limit(files: Iterable[Path] = CGROUP_LIMIT_FILES) -> int | None:
    """The memory limit of this process's cgroup, in bytes; None when there is none ("max") or no file."""
    for file in files:
        with contextlib.suppress(OSError):
            text = file.read_text().strip()
            if text == "max":
                return None
            limit = int(text) if text.isdigit() else None
            return limit if limit is not None and limit < _UNLIMITED else None
    return None


def physical_memory() -> int | None:
    """The machine's physical memory in bytes, if the system says."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not on every platform
        return None


def memory_budget(
    setting: int | None, workers: int, *, cgroup_files: Iterable[Path] = CGROUP_LIMIT_FILES
) -> int | None:
    """The bytes one worker's requests may hold (None: no budget); the formula is in the module docstring."""
    if setting is not None:
        return setting or None
    limits = [limit for limit in (cgroup_memory_limit(cgroup_files), physical_memory()) if limit is not None]
    if not limits:
        return None  # pragma: no cover - a system that says nothing about its memory
    return max(MIN_BUDGET_BYTES, min(limits) // workers - PROCESS_BASELINE_BYTES)


class MemoryBudget:
    """``total`` bytes that requests in flight share (None: unlimited), handed out first come, first served."""

    def __init__(self, total: int | None, *, wait_seconds: float = WAIT_SECONDS, retry_after_seconds: int = 1) -> None:
        self.total = total
        self.wait_seconds = wait_seconds
        self.retry_after_seconds = retry_after_seconds
        #: Bytes charged to requests in flight.
        self.in_use = 0
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    @contextlib.asynccontextmanager
    async def charge(self) -> AsyncIterator[Charge]:
        """A charge of 0 bytes for one request, given back whole when the block ends, however it ends."""
        charge = Charge(self)
        try:
            yield charge
        finally:
            charge.resize_down(0)

    async def _take(self, extra: int, *, growing: bool) -> None:
        """Add ``extra`` bytes to ``in_use`` once they fit; 503 after ``wait_seconds``.

        A request that already holds a charge (``growing``) goes to the head of the line: it has
        done work, and finishing it is what frees memory for the others.
        """
        if (growing or not self._waiting) and self._fits(extra):
            self.in_use += extra
            return
        waiter = (extra, asyncio.get_running_loop().create_future())
        (self._waiting.appendleft if growing else self._waiting.append)(waiter)
        try:
            async with asyncio.timeout(self.wait_seconds):
                await waiter[1]
        except BaseException as error:
            if waiter[1].done() and not waiter[1].cancelled():
                self.give_back(extra)  # granted just as the wait ended: nobody holds it
            else:
                with contextlib.suppress(ValueError):  # ``_wake`` may have dropped it, cancelled, already
                    self._waiting.remove(waiter)
                self._wake()  # a smaller charge behind this one may fit now
            if isinstance(error, TimeoutError):
                raise self._overloaded(extra) from None
            raise

    def give_back(self, size: int) -> None:
        """Return ``size`` bytes and admit the waiting charges that now fit, in order."""
        self.in_use -= size
        self._wake()

    def _wake(self) -> None:
        while self._waiting:
            extra, future = self._waiting[0]
            if future.done():  # cancelled (its wait timed out) before its task could leave the line: skip it
                self._waiting.popleft()
                continue
            if not self._fits(extra):
                return
            self._waiting.popleft()
            self.in_use += extra
            future.set_result(None)

    def _fits(self, extra: int) -> bool:
        return self.total is None or self.in_use + extra <= self.total

    def _overloaded(self, extra: int) -> Exception:
        detail = (
            f"not enough memory is free for this request (it needs about {extra:,} more bytes; {self.in_use:,} of "
            f"this worker's {self.total:,} are in use, XENT_MEMORY_BUDGET_BYTES); retry shortly"
        )
        return ProblemKind.OVERLOADED.error(detail, headers={"Retry-After": str(self.retry_after_seconds)})


class Charge:
    """What one request holds of a :class:`MemoryBudget`; sized by :meth:`resize`."""

    __slots__ = ("budget", "held")

    def __init__(self, budget: MemoryBudget) -> None:
        self.budget = budget
        self.held = 0

    async def resize(self, size: int) -> None:
        """Hold ``size`` bytes: give back the difference at once, or wait for it (503, or 413 if it never fits)."""
        budget = self.budget
        if budget.total is None or size <= self.held:
            self.resize_down(size)
            return
        if size > budget.total:
            detail = (
                f"this request would need about {size:,} bytes of memory, more than this worker's whole budget of "
                f"{budget.total:,} (XENT_MEMORY_BUDGET_BYTES); send fewer rows at a time"
            )
            raise ProblemKind.TOO_LARGE.error(detail)
        await budget._take(size - self.held, growing=self.held > 0)
        self.held = size

    def resize_down(self, size: int) -> None:
        """Hold at most ``size`` bytes (no wait)."""
        if size < self.held:
            self.budget.give_back(self.held - size)
            self.held = size

    async def charge_body(self, kind: str, size: int) -> None:
        """Hold the expected peak of a ``kind`` body of ``size`` bytes (declared, or arrived so far)."""
        await self.resize(math.ceil(size * PEAK_PER_BODY_BYTE[kind]))

    async def charge_cells(self, cells: int) -> None:
        """Hold the expected peak of scoring a decoded batch of ``cells`` prediction cells."""
        await self.resize(cells * BYTES_PER_CELL)
