"""Every size limit of a request, checked in one object: body bytes, inflated bytes, batch shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from service.api.problems import HttpProblem, ProblemKind
from service.core.state_batch import StateBatch
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
    groups: int
    merge_states: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """The limits an operator set (``XENT_MAX_BODY_BYTES``, ``XENT_MAX_ROWS``, …)."""
        return cls(
            settings.max_body_bytes,
            settings.max_rows,
            settings.max_classes,
            settings.max_cells,
            settings.max_groups,
            settings.max_merge_states,
        )

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

    def check_cells(self, cells: int, what: str = "token positions") -> None:
        """413 when a batch without a predictions matrix (token sequences) holds more cells than allowed."""
        if cells > self.cells:
            raise _refuse(what, cells, self.cells, "XENT_MAX_CELLS")

    def check_groups(self, groups: Any) -> None:
        """413 naming XENT_MAX_GROUPS when ``groups`` (a decoded request's) holds more distinct names than allowed.

        Only a batch of more rows than the limit can: the names are then counted (a set of them). Values that are
        not names are left to the core, which refuses them with a 422 naming the row.
        """
        if isinstance(groups, np.ndarray):
            if groups.ndim != 1:
                return  # not N names: refused by the core
        elif not isinstance(groups, list):
            return  # null, or not an array: the core says which
        if len(groups) <= self.groups:
            return
        try:
            distinct = len(np.unique(groups)) if isinstance(groups, np.ndarray) else len(set(groups))
        except TypeError:
            return  # unhashable or unorderable entries: not names, refused by the core
        if distinct > self.groups:
            raise _refuse("distinct groups", distinct, self.groups, "XENT_MAX_GROUPS")

    def check_states(self, states: Any) -> None:
        """413 naming XENT_MAX_MERGE_STATES when a merge request (its decoded ``states``) holds more than allowed, and
        XENT_MAX_GROUPS when their group breakdowns name more distinct groups together than one request may.

        Names that are not lists of strings are left to the core, which refuses them with a 422 naming the state.
        """
        if not isinstance(states, list | StateBatch):
            return
        if len(states) > self.merge_states:
            raise _refuse("states", len(states), self.merge_states, "XENT_MAX_MERGE_STATES")
        names: set[str] = set()
        if isinstance(states, StateBatch):  # read by column: the groups' names, if the states have them
            lists = states.columns.get(("accumulators", "groups", "names"), [])
        else:
            lists = []
            for state in states:
                accumulators = state.get("accumulators") if isinstance(state, dict) else None
                piece = accumulators.get("groups") if isinstance(accumulators, dict) else None
                lists.append(piece.get("names") if isinstance(piece, dict) else None)
        for listed in lists:
            if isinstance(listed, list) and all(type(name) is str for name in listed):
                names.update(listed)
        if len(names) > self.groups:
            raise _refuse("distinct groups (of the states together)", len(names), self.groups, "XENT_MAX_GROUPS")

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


#: What an object or array in a JSON body may cost, beyond the charge per body byte, once Pydantic holds it as a
#: Python dict or list (an empty dict is 64 bytes; a small one with its key and value ~250): charged for the
#: request models that take nested objects (``charge_json_containers``).
BYTES_PER_JSON_CONTAINER = 256


def json_containers(data: bytes | bytearray | memoryview) -> int:
    """How many objects and arrays a JSON text opens at most: its '{' and '[' bytes (inside strings too: a bound)."""
    array = np.frombuffer(data, dtype=np.uint8)
    block, total = 1 << 18, 0
    for start in range(0, array.shape[0], block):
        piece = array[start : start + block]
        # '[' is 0x5B and '{' 0x7B: the bytes b with b | 0x20 == 0x7B.
        total += int(np.count_nonzero((piece | 0x20) == 0x7B))
    return total


#: The fields holding predictions: a comparison has two, each charged and counted.
PREDICTION_FIELDS = ("predictions", "baseline_predictions")


#: What ``gradient: true`` adds, in cells per cell of the model's predictions: the N×C gradient, and in a JSON
#: answer its text (about 20 bytes a value, written, then joined): a 100,000 × 10 JSON answer peaked 62 bytes a
#: cell above the one without (an NPZ answer 8), charged here as 2 × 40.
GRADIENT_CELLS = 2


def batch_cells(request: Any) -> int:
    """Rows × columns of a decoded request's predictions, both arrays of a comparison (what the memory budget
    charges a batch by), and ``GRADIENT_CELLS`` times the model's when it asks for the gradient; a request
    without predictions says what its cells are (``cells()``: token positions)."""
    cells = getattr(request, "cells", None)
    if cells is not None:
        return int(cells())
    total = sum(rows * columns for rows, columns in (_shape(array) for array in predictions_of(request)))
    if getattr(request, "gradient", False):
        rows, columns = _shape(request.predictions)
        total += GRADIENT_CELLS * rows * columns
    return total


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
