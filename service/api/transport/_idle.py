"""What a worker keeps from one large request for the next, dropped once it has gone idle.

The simdjson parsers of ``_json_fast`` and the body's memory map of ``body`` spare the next large
request fresh memory (its page faults) while large requests keep coming; both are dropped ``idle_seconds``
after their last use, so that an idle worker does not hold them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class IdleDrop:
    """Calls ``drop`` (with ``lock`` held) once ``idle_seconds`` pass without a ``used``: a timer thread, set by the
    first use after a drop and set again for the rest of the time while uses keep coming."""

    def __init__(self, idle_seconds: float, lock: threading.Lock, drop: Callable[[], None]) -> None:
        self.idle_seconds = idle_seconds
        self._lock = lock
        self._drop = drop
        self._last_use = 0.0
        self._timer: threading.Timer | None = None

    def used(self) -> None:
        """Note a use (called with the lock held): the idle time starts over."""
        self._last_use = time.monotonic()
        if self._timer is None:
            self._check_in(self.idle_seconds)

    def _check_in(self, seconds: float) -> None:
        """Check for idleness after ``seconds`` (called with the lock held)."""
        self._timer = threading.Timer(seconds, self._drop_if_idle)
        self._timer.daemon = True
        self._timer.start()

    def _drop_if_idle(self) -> None:
        """Drop what is kept if nothing used it for ``idle_seconds``; else check again."""
        with self._lock:
            idle = time.monotonic() - self._last_use
            if idle >= self.idle_seconds:
                self._drop()
                self._timer = None
            else:
                self._check_in(self.idle_seconds - idle)
