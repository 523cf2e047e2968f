"""Exact chunked scoring: split a dataset into row ranges, and merge the chunks' answers into the answer
one request over the whole dataset would give.

Means are merged as Σ sums / Σ weights, never as a mean of means: the service's mean is
Σwᵢℓᵢ / Σwᵢ over the scored rows, every wᵢ belongs to one row, so the chunk sums add up and
so do the chunk weight totals. The weight totals are recomputed here from the options (the
answer does not carry them), with the service's formula: wᵢ = sᵢ·Σ_c w_c·y'ᵢ_c, 0 on ignored rows.
Only where a sum overflows float64 (null) is a mean merged as Σ_c W_c·m_c / Σ_c W_c over the
chunks' means m_c and weights W_c, both divided by powers of two first, as the service does.

Standard errors are not merged: the dataset's needs every row's weight, correctness and cluster (a cluster
may span chunks), which the answers do not carry, and this package does not redo the service's statistics.
A merged answer's ``stderr`` and ``ci`` are null with a STDERR_UNDEFINED warning saying so; one chunk's
answer is returned as it is, standard errors and all.

Over 300 lines because planning the chunks and merging them exactly are one argument: the merge is
exact only for the split this module makes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.client.results import Intervals, Means, PerSample, Scores, ScoreWarning, Stderrs, Sums
from service.client.wire import (
    Request,
    TransportChoice,
    as_array,
    build_request,
    check_options,
    prepare,
    prepare_predictions,
)
from service.core.contract import AGGREGATE_OVERFLOW, LOG_BASES, MAX_EXP_NATS, Endpoint, aggregate_overflow_message

#: Rows per chunk, at most: big enough to amortize a request, small enough to show progress.
MAX_CHUNK_ROWS = 131_072
#: A chunk's body aims at this share of the service's body limit (the answer and headers need room too).
BODY_LIMIT_SHARE = 4
#: The limit assumed when the service does not say (``/v1/info``): the service's default, 64 MiB.
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
#: A warning lists this many row indices, as the service's do.
WARNING_ROWS_SHOWN = 20
#: The code of the warning that standard errors are null (the service's, for too few rows or clusters).
STDERR_UNDEFINED = "STDERR_UNDEFINED"
#: Warnings in the order the service emits them (row checks first, then the aggregates').
WARNING_ORDER = (
    "ROWS_NOT_NORMALIZED",
    "RENORMALIZED",
    "CLIPPED",
    "EMPTY",
    "ZERO_WEIGHT",
    "NON_FINITE",
    AGGREGATE_OVERFLOW,
    STDERR_UNDEFINED,
)
#: The quantities with a mean and a sum, by wire name.
_QUANTITIES = ("cross_entropy", "kl_divergence", "entropy")


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
PER_ROW_OPTIONS = ("sample_weights", "cluster_ids")


def chunk_options(options: Mapping[str, Any], start: int, stop: int) -> dict[str, Any]:
    """The options of the chunk [start, stop): sample weights and cluster ids are per row, so they are sliced too."""
    return {
        name: as_array(value)[start:stop] if name in PER_ROW_OPTIONS and value is not None else value
        for name, value in options.items()
    }


def total_weight(endpoint: Endpoint, labels: np.ndarray, options: Mapping[str, Any]) -> tuple[float, int]:
    """Σwᵢ over the scored rows of a chunk, as the service weighs them (read after it accepted the chunk).

    It comes as (t, k) with Σwᵢ = t·2^k: k is 0 unless the plain sum overflows float64, and then the
    sample and class weights are divided by powers of two (exactly) before they are multiplied and added.
    """
    with np.errstate(over="ignore"):
        total = _total_weight(endpoint, labels, options, 0, 0)
    if math.isfinite(total):
        return total, 0
    sample_exponent = _max_exponent(options.get("sample_weights"))
    class_exponent = 0 if endpoint == "binary-cross-entropy" else _max_exponent(options.get("class_weights"))
    return _total_weight(endpoint, labels, options, sample_exponent, class_exponent), sample_exponent + class_exponent


def _max_exponent(weights: Any) -> int:
    """The k with 2^(k−1) ≤ max weight < 2^k (0 without weights): dividing by 2^k brings every weight below 1."""
    if weights is None or not len(weights):
        return 0
    return math.frexp(float(as_array(weights).astype(np.float64).max()))[1]


def _total_weight(
    endpoint: Endpoint, labels: np.ndarray, options: Mapping[str, Any], sample_exponent: int, class_exponent: int
) -> float:
    """Σwᵢ over the scored rows with the sample weights divided by 2^sample_exponent, the class weights by
    2^class_exponent."""
    n = len(labels)
    weights = options.get("sample_weights")
    by_sample = np.ones(n) if weights is None else np.ldexp(as_array(weights).astype(np.float64), -sample_exponent)
    if endpoint == "binary-cross-entropy":
        return float(by_sample.sum())
    scored = np.ones(n, dtype=bool)
    ignore_index = options.get("ignore_index")
    if ignore_index is not None and labels.dtype.kind in "iu":
        scored = labels != ignore_index
    class_weights = options.get("class_weights")
    if class_weights is None:
        mass: np.ndarray | float = 1.0
    else:
        by_class = np.ldexp(as_array(class_weights).astype(np.float64), -class_exponent)
        smoothing = float(options.get("label_smoothing") or 0.0)
        if labels.ndim == 2:
            target = labels.astype(np.float64)
            if options.get("normalization") == "renormalize":
                target = target / target.sum(axis=1, keepdims=True)
            if smoothing:
                target = (1.0 - smoothing) * target + smoothing / len(by_class)
            mass = target @ by_class
        else:
            if labels.dtype.kind in "US":
                column = {name: i for i, name in enumerate(options.get("classes") or ())}
                indices = np.array([column[name] for name in labels.tolist()], dtype=np.int64)
            else:
                indices = np.where(scored, labels, 0).astype(np.int64)
            # y' = (1 − ε)·onehot + ε/C, so Σ_c w_c·y'_c = (1 − ε)·w_y + ε·mean(w).
            mass = (
                by_class[indices]
                if not smoothing
                else (1.0 - smoothing) * by_class[indices] + smoothing / len(by_class) * by_class.sum()
            )
    return float(np.where(scored, by_sample * mass, 0.0).sum())


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
        # The weight is read after the service accepted the rows: it would name an error less well.
        return Chunk(start, *total_weight(self.endpoint, self.labels, self.options), scores)


@dataclass(frozen=True)
class Chunk:
    """One chunk's answer: where it starts, what it weighed (``weight``·2^``weight_exponent``), what it scored."""

    start: int
    weight: float
    weight_exponent: int
    scores: Scores


def merge(chunks: Sequence[Chunk]) -> Scores:
    """The answer for the whole dataset from its chunks' answers (in row order)."""
    if len(chunks) == 1:
        return chunks[0].scores
    first = chunks[0].scores
    n = sum(c.scores.n for c in chunks)
    n_scored = sum(c.scores.n_scored for c in chunks)
    total, exponent = _total(chunks)
    sums = [_add(getattr(c.scores.sum, name) for c in chunks) for name in _QUANTITIES]
    means: list[float | None] = [None] * 5
    if n_scored and total > 0.0:
        for j, name in enumerate(_QUANTITIES):
            plain = sums[j]
            means[j] = plain / total if exponent == 0 and plain is not None else _mean_of_means(chunks, name)
        ce_nats = None if means[0] is None else means[0] * LOG_BASES[first.unit]
        means[3] = None if ce_nats is None or ce_nats >= MAX_EXP_NATS else math.exp(ce_nats)
        if exponent == 0:
            correct = math.fsum(c.scores.mean.accuracy * c.weight for c in chunks if c.scores.mean.accuracy is not None)
            means[4] = correct / total
        else:
            means[4] = _mean_of_means(chunks, "accuracy")
    per_sample = None
    if all(c.scores.per_sample is not None for c in chunks):
        parts = [c.scores.per_sample for c in chunks if c.scores.per_sample is not None]
        per_sample = PerSample(
            *(np.concatenate([getattr(p, name) for p in parts]) for name in PerSample.__dataclass_fields__)
        )
    warnings = _merge_warnings(chunks, keep_empty=n_scored == 0, keep_zero_weight=bool(n_scored) and total == 0.0)
    overflowing = _overflowing_aggregates(chunks, means if n_scored and total > 0.0 else None, sums)
    if overflowing:
        warnings.append(ScoreWarning(AGGREGATE_OVERFLOW, aggregate_overflow_message(overflowing), 0, ()))
    with_errors = first.stderr is not None
    if with_errors:
        warnings.append(ScoreWarning(STDERR_UNDEFINED, chunked_stderr_message(len(chunks), n), 0, ()))
    return Scores(
        n=n,
        n_scored=n_scored,
        unit=first.unit,
        mean=Means(*means),
        sum=Sums(*sums),
        per_sample=per_sample,
        warnings=tuple(warnings),
        settings=first.settings,
        classes=first.classes,
        stderr=Stderrs(None, None, None, None) if with_errors else None,
        ci=Intervals(None, None, None, None, None) if with_errors else None,
        n_clusters=None,
    )


def chunked_stderr_message(chunks: int, n: int) -> str:
    """Why a merged answer has no standard errors: they are not merged (see ``merge``)."""
    return (
        f"standard errors and intervals are null: the answer merges {chunks} chunked requests, and the chunks' "
        "standard errors do not add up to the dataset's (that needs every row's weight, correctness and cluster); "
        f"score the {n} rows in one request (chunk_size >= {n}) to have them"
    )


def _total(chunks: Sequence[Chunk]) -> tuple[float, int]:
    """Σ of the chunks' weights as (t, k) with Σ = t·2^k; k is 0 unless the plain sum overflows float64."""
    if all(c.weight_exponent == 0 for c in chunks):
        try:
            total = math.fsum(c.weight for c in chunks)
        except OverflowError:  # fsum raises where a partial sum overflows
            total = math.inf
        if math.isfinite(total):
            return total, 0
    top = _top_exponent(chunks)
    return math.fsum(math.ldexp(c.weight, c.weight_exponent - top) for c in chunks), top


def _top_exponent(chunks: Sequence[Chunk]) -> int:
    """The k with every chunk's weight below 2^k."""
    return max((math.frexp(c.weight)[1] + c.weight_exponent for c in chunks if c.weight > 0), default=0)


def _mean_of_means(chunks: Sequence[Chunk], name: str) -> float | None:
    """Σ_c W_c·m_c / Σ_c W_c over the chunks of weight W_c > 0 and mean ``name`` m_c; None if such an m_c is.

    W_c and m_c are divided by powers of two first (exactly), so that no product or sum overflows.
    """
    weighted = [c for c in chunks if c.weight > 0]
    values = [getattr(c.scores.mean, name) for c in weighted]
    if not weighted or any(v is None for v in values):
        return None
    top = _top_exponent(weighted)
    weights = [math.ldexp(c.weight, c.weight_exponent - top) for c in weighted]
    value_exponent = max(math.frexp(v)[1] for v in values)
    numerator = math.fsum(w * math.ldexp(v, -value_exponent) for w, v in zip(weights, values, strict=True))
    return math.ldexp(numerator / math.fsum(weights), value_exponent)


def _add(values: Any) -> float | None:
    """Σ of the chunk sums; None (not finite) if any is, or if the total overflows float64."""
    listed = list(values)
    if any(v is None for v in listed):
        return None
    try:
        total = math.fsum(listed)
    except OverflowError:  # fsum raises where a partial sum overflows
        return None
    return total if math.isfinite(total) else None


def _overflowing_aggregates(
    chunks: Sequence[Chunk], means: list[float | None] | None, sums: list[float | None]
) -> list[str]:
    """The merged aggregates that are null although every value they are taken over is finite, by wire name.

    A chunk's sum is null either for an infinite value of positive weight or because it overflows, and then
    its AGGREGATE_OVERFLOW warning names it; a null that no chunk's warning explains marks infinite values.
    """
    names = []
    infinite = [any(_infinite_sum(c, name) for c in chunks) for name in _QUANTITIES]
    if means is not None:
        names += [f"mean.{name}" for j, name in enumerate(_QUANTITIES) if means[j] is None and not infinite[j]]
        if means[0] is not None and means[3] is None:
            names.append("mean.perplexity")
    names += [f"sum.{name}" for j, name in enumerate(_QUANTITIES) if sums[j] is None and not infinite[j]]
    return names


def _infinite_sum(chunk: Chunk, name: str) -> bool:
    """Whether the chunk's sum ``name`` is null for an infinite value (not for an overflow its warning names)."""
    if getattr(chunk.scores.sum, name) is not None:
        return False
    named = [w.message for w in chunk.scores.warnings if w.code == AGGREGATE_OVERFLOW]
    return not any(f"sum.{name}" in message for message in named)


def _merge_warnings(chunks: Sequence[Chunk], *, keep_empty: bool, keep_zero_weight: bool) -> list[ScoreWarning]:
    """Warnings by code: counts added, rows renumbered from the chunk's start, the first 20 rows kept.

    EMPTY and ZERO_WEIGHT describe a whole request: a chunk's says nothing about the dataset
    unless the dataset as a whole is empty (or weighs nothing) too. AGGREGATE_OVERFLOW is left to
    ``merge``, which names the merged aggregates that overflow.
    """
    merged: dict[str, ScoreWarning] = {}
    for chunk in chunks:
        for w in chunk.scores.warnings:
            if (w.code == "EMPTY" and not keep_empty) or (w.code == "ZERO_WEIGHT" and not keep_zero_weight):
                continue
            if w.code in (AGGREGATE_OVERFLOW, STDERR_UNDEFINED):
                continue  # said of the merged aggregates, which may differ from the chunk's
            rows = tuple(chunk.start + row for row in w.rows)
            if w.code in merged:
                seen = merged[w.code]
                if w.code == "EMPTY":
                    continue  # said once, for the whole dataset
                merged[w.code] = ScoreWarning(
                    w.code, seen.message, seen.count + w.count, (seen.rows + rows)[:WARNING_ROWS_SHOWN]
                )
            else:
                merged[w.code] = ScoreWarning(w.code, w.message, w.count, rows[:WARNING_ROWS_SHOWN])
    order = {code: i for i, code in enumerate(WARNING_ORDER)}
    return sorted(merged.values(), key=lambda w: order.get(w.code, len(order)))
