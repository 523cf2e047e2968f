"""How many scoring requests run at once: a fixed number of slots, the next one refused with 503."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from service.api.problems import ProblemKind


class ScoringSlots:
    """At most ``limit`` scoring requests at once; the next is refused at once with 503.

    A queue would only hide overload: the client waits, times out and retries, while
    the work piles up. Refusing at once with Retry-After lets it back off. The counter
    lives on the event loop (one thread), so it needs no lock.
    """

    def __init__(self, limit: int, retry_after_seconds: int = 1) -> None:
        self.limit = limit
        self.retry_after_seconds = retry_after_seconds
        self.busy = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot for the duration of the block, or raise 503."""
        if self.busy >= self.limit:
            raise ProblemKind.OVERLOADED.error(
                f"{self.limit} scoring requests are already in progress (XENT_MAX_CONCURRENT_SCORING); retry shortly",
                headers={"Retry-After": str(self.retry_after_seconds)},
            )
        self.busy += 1
        try:
            yield
        finally:
            self.busy -= 1
