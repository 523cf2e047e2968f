"""Body watchers that work on a worker thread while a large body arrives (``body.BodyWatcher``).

A watcher is fed the body after every read, on the event loop; the work (parsing rows, copying an archive's
unaligned members to where they are aligned) runs on one of ``WATCH_THREADS`` so that the event loop only receives.
``feed`` records how much has arrived and wakes the thread; the thread works on what is there, then waits for more,
until the body is complete, its read failed (``close``), or the watcher stops. Whoever reads the body next waits for
the thread first (``settled``, or ``finish`` from a thread); a thread that has not started by then (both busy with
other bodies) is called off, and the reader does the work itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time

#: The threads that work on bodies while they arrive. Two: simdjson holds the GIL while it parses, so more would only
#: take turns; a body that finds both busy is read by its decoder when it has arrived.
WATCH_THREADS = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="xent-watch")
#: A thread that waited this long for more of a body stops there (a slow upload: the reader does the rest).
STALL_SECONDS = 30.0
#: The thread is woken once this much more of the body has arrived (or it is complete), not after every read: a
#: body read 16 KiB at a time would otherwise wake it 5,000 times for 80 MB, each time taking the GIL from the
#: event loop between two reads.
WAKE_BYTES = 1 << 20


class ThreadedWatcher:
    """The thread, the hand-over and the stops; a subclass says when to begin (``_begin``) and what to do with what
    has arrived (``_advance``)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._view: memoryview | None = None  # the body, until the thread is done with it
        self._filled = 0
        self._woken = 0  # how much had arrived when the thread was last woken
        self._closed = False  # the body will not grow any more (it is complete, or its read failed)
        self._stopped = False  # nothing more is done
        self._work: concurrent.futures.Future[None] | None = None

    # --- what a subclass says ---

    def _begin(self, view: memoryview, filled: int) -> bool:
        """On the event loop, until the thread starts: whether to start it now (set ``_stopped`` never to)."""
        return True

    def _advance(self, view: memoryview, filled: int) -> bool:
        """On the thread: work on ``view[:filled]`` past what was done; False once nothing more will be done."""
        raise NotImplementedError

    # --- the event loop's side ---

    def feed(self, view: memoryview, filled: int) -> None:
        """The body so far: the thread works on it (started once ``_begin`` says so)."""
        if self._stopped:
            return
        if self._work is None:
            if not self._begin(view, filled) or self._stopped:
                return
            self._view = view
            self._work = WATCH_THREADS.submit(self._run)
        self._filled = filled  # (read by the thread when it wakes; a single store)
        if filled >= len(view) or filled - self._woken >= WAKE_BYTES:
            with self._changed:
                self._woken, self._closed = filled, filled >= len(view)
                self._changed.notify()

    def close(self) -> None:
        """The body's read failed: the thread stops (what it did is never used)."""
        with self._changed:
            self._closed = self._stopped = True
            self._changed.notify()

    def working(self) -> bool:
        """Whether it is at work on a thread that holds the GIL at length (the body is then read in large gulps)."""
        return False

    # --- the reader's side ---

    async def settled(self) -> None:
        """``finish``, awaited on the event loop (``Body.settled``)."""
        work = self._running()
        if work is not None:
            await asyncio.wrap_future(work)

    def finish(self) -> None:
        """Wait for the thread to do what it can with what has arrived, or call it off if it has not started."""
        work = self._running()
        if work is not None:
            work.result()

    def _running(self) -> concurrent.futures.Future[None] | None:
        """The thread's work to wait for; None if there is none, or it had not started and is called off."""
        work = self._work
        if work is not None and work.cancel():
            self._view = None  # (the thread would have let go of it)
            return None
        return work

    def _busy(self) -> bool:
        """Whether the thread has started and not finished."""
        return self._work is not None and not self._stopped and not self._work.done()

    # --- the thread ---

    def _run(self) -> None:
        try:
            done = 0
            while True:
                with self._changed:
                    waited = time.monotonic()
                    while (
                        self._filled - done < WAKE_BYTES
                        and not self._closed
                        and time.monotonic() - waited < STALL_SECONDS
                    ):
                        self._changed.wait(STALL_SECONDS)
                    if self._filled == done or self._stopped:
                        return
                    done, view = self._filled, self._view
                if view is None or not self._advance(view, done):
                    return
                time.sleep(0)  # the GIL to the event loop, which has a read to hand over
        finally:
            self._view = None  # the body's map may be kept for the next body once nothing views it
