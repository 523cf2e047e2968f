"""Exact chunked scoring: split a dataset into row ranges, and merge the chunks' answers into the answer
one request over the whole dataset would give.

Every chunk's answer carries its ``state`` (issue 15): the sufficient statistics of its means, sums,
standard errors (clustered too: a cluster may span chunks), breakdowns and warnings. ``merge`` merges
the states with the service's own code (``service.core.state.merge_states``, what ``POST /v1/merge``
runs), so a merged answer has the whole dataset's means, sums, standard errors and intervals, not a
second implementation of them; the per-sample arrays are joined, and the warnings' row numbers (which
a state does not keep) are renumbered from the chunks' answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.client.results import PerSample, Scores
from service.client.wire import (
    Request,
    TransportChoice,
    as_array,
    build_request,
    check_options,
    prepare,
    prepare_predictions,
)
from service.core.contract import UNCERTAINTY_OPTIONS, Endpoint
from service.core.state import merge_states

#: Rows per chunk, at most: big enough to amortize a request, small enough to show progress.
MAX_CHUNK_ROWS = 131_072
#: A chunk's body aims at this share of the service's body limit (the answer and headers need room too).
BODY_LIMIT_SHARE = 4
#: The limit assumed when the service does not say (``/v1/info``): the service's default, 64 MiB.
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
#: A warning lists this many row indices, as the service's do.
WARNING_ROWS_SHOWN = 20
#: The per-sample arrays of one value per row, joined chunk after chunk (the gradient is joined apart).
_PER_SAMPLE_ROWS = ("cross_entropy", "kl_divergence", "entropy", "ignored")


def chunk_rows(
    labels: np.ndarray, predictions: np.ndarray, options: Mapping[str, Any], max_body_bytes: int | None
) -> int:
    """Rows per chunk so that a chunk's NPZ body stays well under the body limit (and at most MAX_CHUNK_ROWS)."""
    n = max(len(predictions), 1)
    row_bytes = (predictions.nbytes + labels.nbytes) / n + 64 / n
    if options.get("sample_weights") is not None:
        row_bytes += 8
    budget = (max_body_bytes or DEFAULT_MAX_BODY_BYTES) // BODY_LIMIT_SHARE
    return max(1, min(MAX_CHUNK_ROWS, int(budget // max(row_bytes, 1.0))))


def ranges(n: int, size: int) -> list[tuple[int, int]]:
    """[start, stop) of each chunk of ``size`` rows (the last one shorter); one empty range for no rows."""
    if size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {size}")
    return [(start, min(start + size, n)) for start in range(0, n, size)] or [(0, 0)]


#: The options that hold one value per row: a chunk sends its rows' slice.
PER_ROW_OPTIONS = ("sample_weights", "cluster_ids", "groups")


def chunk_options(options: Mapping[str, Any], start: int, stop: int) -> dict[str, Any]:
    """The options of the chunk [start, stop): sample weights and cluster ids are per row, so they are sliced too."""
    return {
        name: as_array(value)[start:stop] if name in PER_ROW_OPTIONS and value is not None else value
        for name, value in options.items()
    }


@dataclass(frozen=True)
class Chunking:
    """How ``score_many`` sends a dataset: rows per chunk (None: sized from the body limit), requests in
    flight at once, whether to show a progress bar (None: on a terminal), and the transport."""

    chunk_size: int | None
    concurrency: int
    progress: bool | None
    transport: TransportChoice


@dataclass(frozen=True)
class Batch:
    """Rows to score at one endpoint: labels and predictions as the service reads them, and every option."""

    endpoint: Endpoint
    labels: np.ndarray
    predictions: np.ndarray
    options: dict[str, Any]
    baseline: np.ndarray | None = None  # a comparison's baseline predictions (``/compare``)

    @classmethod
    def of(cls, endpoint: Endpoint, labels: Any, predictions: Any, options: Mapping[str, Any]) -> Batch:
        """The batch for a call's arguments; a misspelt option is a TypeError naming the right ones."""
        resolved = check_options(endpoint, options)
        targets, preds = prepare(endpoint, labels, predictions)
        return cls(endpoint, targets, preds, resolved)

    @classmethod
    def comparing(
        cls, endpoint: Endpoint, labels: Any, predictions: Any, baseline: Any, options: Mapping[str, Any]
    ) -> Batch:
        """The batch comparing ``predictions`` with ``baseline`` predictions on the same labels (``/compare``)."""
        resolved = check_options(endpoint, options, compare=True)
        targets, preds = prepare(endpoint, labels, predictions)
        return cls(endpoint, targets, preds, resolved, prepare_predictions(baseline))

    def chunk_rows(self, max_body_bytes: int | None) -> int:
        """Rows per chunk for this batch and the service's body limit (None: not known)."""
        return chunk_rows(self.labels, self.predictions, self.options, max_body_bytes)

    def spans(self, chunk_size: int) -> list[tuple[int, int]]:
        """[start, stop) of each chunk of ``chunk_size`` rows; one chunk of every row when the labels or the sample
        weights do not count as many rows as the predictions: slicing would hide the rows one of them lacks, the
        service's 422 names the difference."""
        n = len(self.predictions)
        lengths = {len(self.labels)}
        for name in PER_ROW_OPTIONS:
            value = self.options.get(name)
            lengths.add(n if value is None or np.ndim(value) != 1 else len(value))
        return ranges(n, chunk_size) if lengths == {n} else [(0, n)]

    def rows(self, start: int, stop: int) -> Batch:
        """Rows [start, stop) of this batch, with their options (the batch itself when that is every row)."""
        if start == 0 and stop == len(self.predictions):
            return self
        part = chunk_options(self.options, start, stop)
        return Batch(self.endpoint, self.labels[start:stop], self.predictions[start:stop], part)

    def is_npz(self, transport: TransportChoice, npz_min_values: int) -> bool:
        """Whether to send (and ask for) NPZ."""
        if self.predictions.dtype.kind == "O" or (self.baseline is not None and self.baseline.dtype.kind == "O"):
            return False  # ragged rows fit no array: only JSON can carry them
        return transport == "npz" or (transport == "auto" and self.predictions.size >= npz_min_values)

    def request(self, transport: TransportChoice, npz_min_values: int) -> Request:
        """The HTTP request scoring this batch, as JSON or NPZ."""
        npz = self.is_npz(transport, npz_min_values)
        return build_request(
            self.endpoint, self.labels, self.predictions, self.options, npz=npz, baseline=self.baseline
        )

    def chunk(self, start: int, scores: Scores) -> Chunk:
        """The answer ``scores`` to this batch, as the chunk of a dataset starting at row ``start``."""
        return Chunk(start, scores)


@dataclass(frozen=True)
class Chunk:
    """One chunk's answer: where it starts and what it scored."""

    start: int
    scores: Scores


def merge(chunks: Sequence[Chunk]) -> Scores:
    """The answer for the whole dataset from its chunks' answers (in row order), merged through their states."""
    if len(chunks) == 1:
        return chunks[0].scores
    first = chunks[0].scores
    states = [c.scores.state for c in chunks]
    if any(state is None for state in states):
        raise ValueError(
            "the service's answers carry no `state` (it predates mergeable states): score the dataset in one "
            f"request (chunk_size >= {sum(c.scores.n for c in chunks)}), or upgrade the service"
        )
    merged = merge_states(states, first.settings.get("confidence", UNCERTAINTY_OPTIONS["confidence"].default))
    per_sample = None
    if all(c.scores.per_sample is not None for c in chunks):
        parts = [c.scores.per_sample for c in chunks if c.scores.per_sample is not None]
        joined = {name: np.concatenate([getattr(p, name) for p in parts]) for name in _PER_SAMPLE_ROWS}
        gradients = [p.gradient for p in parts if p.gradient is not None]
        per_sample = PerSample(
            joined["cross_entropy"],
            joined["kl_divergence"],
            joined["entropy"],
            joined["ignored"],
            gradient=np.concatenate(gradients) if len(gradients) == len(parts) else None,
        )
    summary = {**merged, "warnings": _with_rows(merged["warnings"], chunks), "settings": first.settings}
    return Scores.from_summary(summary, per_sample)


def _with_rows(warnings: Sequence[Mapping[str, Any]], chunks: Sequence[Chunk]) -> list[dict[str, Any]]:
    """The merged warnings with their rows: each chunk's rows of the same code, renumbered, the first 20."""
    rows: dict[str, list[int]] = {}
    for chunk in chunks:
        for warning in chunk.scores.warnings:
            rows.setdefault(warning.code, []).extend(chunk.start + row for row in warning.rows)
    return [{**w, "rows": rows.get(w["code"], [])[:WARNING_ROWS_SHOWN] if w["count"] else []} for w in warnings]
