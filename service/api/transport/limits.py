"""Every size limit of a request, checked in one object: body bytes, inflated bytes, batch shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from service.api.problems import HttpProblem, ProblemKind
from service.settings import Settings


@dataclass(frozen=True, slots=True)
class Limits:
    """How large one request may be; each check raises the 413 that names the limit and its setting.

    ``body_bytes`` bounds the body as sent, as decompressed (gzip) and, for an NPZ archive,
    its members uncompressed; ``rows``, ``classes`` and ``cells`` bound the decoded batch.
    """

    body_bytes: int
    rows: int
    classes: int
    cells: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """The limits an operator set (``XENT_MAX_BODY_BYTES``, ``XENT_MAX_ROWS``, …)."""
        return cls(settings.max_body_bytes, settings.max_rows, settings.max_classes, settings.max_cells)

    def too_large(self, what: str = "the request body") -> HttpProblem:
        """The 413 for ``what`` past the body limit."""
        detail = f"{what} is larger than the limit of {self.body_bytes} bytes (XENT_MAX_BODY_BYTES)"
        return ProblemKind.TOO_LARGE.error(detail)

    def check_body(self, size: int) -> None:
        """413 when the body, as declared or as received so far, passes the limit."""
        if size > self.body_bytes:
            raise self.too_large()

    def check_inflated(self, size: int) -> None:
        """413 when the decompressed (gzip) body passes the limit."""
        if size > self.body_bytes:
            raise self.too_large("the decompressed request body")

    def check_archive(self, size: int) -> None:
        """413 when an archive's members, uncompressed, pass the limit (checked before any is read).

        What the archive declares is what it gets: each member is decompressed to at most one byte
        past its declared size (``npz_archive``), so no archive inflates past this limit, whatever
        its compressed data would inflate to.
        """
        if size > self.body_bytes:
            raise self.too_large("the uncompressed archive")

    def check_batch(self, *predictions: Any) -> None:
        """413 naming the limit and the value sent when a batch has too many rows, classes or cells.

        A comparison sends two prediction arrays (``predictions``, ``baseline_predictions``): each is held to
        the rows and classes, and their cells together to the cells limit, as both are held in memory.
        """
        self.check_shapes([_shape(array) for array in predictions])

    def check_shapes(self, shapes: list[tuple[int, int]]) -> None:
        """413 when one of the prediction arrays of these shapes passes a limit, or all their cells together do."""
        for rows, columns in shapes:
            if rows > self.rows:
                raise _refuse("rows", rows, self.rows, "XENT_MAX_ROWS")
            if columns > self.classes:
                raise _refuse("classes (columns)", columns, self.classes, "XENT_MAX_CLASSES")
        cells = sum(rows * columns for rows, columns in shapes)
        if cells > self.cells:
            what = "rows × classes" if len(shapes) < 2 else "rows × classes (both prediction arrays)"
            raise _refuse(what, cells, self.cells, "XENT_MAX_CELLS")

    def batch_fits_in(self, json_bytes: int) -> bool:
        """Whether no JSON array of ``json_bytes`` can hold more entries, or entries × first-entry length, than allowed.

        r entries whose first is an array of c take at least 2r + 2c bytes (brackets, commas, a byte
        each), so r, c ≤ bytes / 2 and r·c ≤ bytes² / 16. Such bodies need no counting before decoding.
        """
        half = json_bytes // 2
        return half <= min(self.rows, self.classes) and json_bytes * json_bytes // 16 <= self.cells

    def check_values(self, field: str, count: int) -> None:
        """413 when the array ``field`` beside the predictions holds more values than a batch has cells.

        No valid batch has such a field (each matches the predictions' rows or classes); checked in
        the text before decoding, so that a parser never builds an object per value of it.
        """
        if count > self.cells:
            detail = f"{field} has {count:,} values; the limit is {self.cells:,} (XENT_MAX_CELLS)"
            raise ProblemKind.TOO_LARGE.error(detail)


#: The fields holding predictions: a comparison has two, each charged and counted.
PREDICTION_FIELDS = ("predictions", "baseline_predictions")


def batch_cells(request: Any) -> int:
    """Rows × columns of a decoded request's predictions, both arrays of a comparison (what the memory budget
    charges a batch by)."""
    return sum(rows * columns for rows, columns in (_shape(array) for array in predictions_of(request)))


def predictions_of(request: Any) -> list[Any]:
    """The prediction arrays of a decoded request: ``predictions``, and a comparison's ``baseline_predictions``."""
    return [getattr(request, name) for name in PREDICTION_FIELDS if getattr(request, name, None) is not None]


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
    return ProblemKind.TOO_LARGE.error(f"the batch has {value:,} {what}; the limit is {limit:,} ({setting})")
