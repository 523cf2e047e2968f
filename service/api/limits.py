"""Per-request limits: how much one batch may hold, and how many are scored at once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np

from service.api.errors import HttpProblem
from service.settings import Settings


def _shape(predictions: Any) -> tuple[int, int]:
    """Rows and columns (classes or labels per sample) of decoded predictions, without converting them."""
    if isinstance(predictions, np.ndarray):
        rows = predictions.shape[0] if predictions.ndim else 0
        return rows, (predictions.shape[1] if predictions.ndim == 2 else 1)
    if not isinstance(predictions, list) or not predictions:
        return 0, 0
    first = predictions[0]
    return len(predictions), (len(first) if isinstance(first, list) else 1)


def _refuse(what: str, value: int, limit: int, setting: str) -> HttpProblem:
    return HttpProblem(
        413,
        "Payload too large",
        f"the batch has {value:,} {what}; the limit is {limit:,} ({setting})",
        "too-large",
    )


def check_batch_size(predictions: Any, settings: Settings) -> None:
    """413 naming the limit and the value sent when a batch has too many rows, classes or cells."""
    rows, columns = _shape(predictions)
    if rows > settings.max_rows:
        raise _refuse("rows", rows, settings.max_rows, "XENT_MAX_ROWS")
    if columns > settings.max_classes:
        raise _refuse("classes (columns)", columns, settings.max_classes, "XENT_MAX_CLASSES")
    if rows * columns > settings.max_cells:
        raise _refuse("rows × classes", rows * columns, settings.max_cells, "XENT_MAX_CELLS")


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
            raise HttpProblem(
                503,
                "Service unavailable",
                f"{self.limit} scoring requests are already in progress (XENT_MAX_CONCURRENT_SCORING); retry shortly",
                "overloaded",
                {"Retry-After": str(self.retry_after_seconds)},
            )
        self.busy += 1
        try:
            yield
        finally:
            self.busy -= 1
