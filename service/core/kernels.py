"""Blocked kernels: the hard-label scores of ``score_multiclass`` in one pass, without N×C temporaries.

Over 300 lines because the blocked passes and the copy of NumPy's pairwise summation they must
reproduce, bit for bit, belong together. ``service.core.multiclass`` holds the reference path
that these kernels must equal (``tests/core/test_blocked_kernels.py`` checks it); what the
constants below were tuned on is in ``benchmarks/KERNELS.md``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from service.core.logspace import log_clipped_moved
from service.core.options import MulticlassOptions, PredictionType
from service.core.predictions import apply_normalization
from service.core.result import ScoringWarning

#: Rows of at most this many classes are scanned transposed, one column at a time: NumPy's
#: reductions along short rows (max, sum, argmax on axis 1) pay a per-row overhead on every row.
NARROW_CLASSES = 32
#: Rows of at most this many classes hold a maximum (x − peak = 0) in a large share of the
#: entries; exp(0) takes another branch of libm's exp than its neighbours, and those entries
#: are moved out of its way rather than mispredicted (see ``_exp_shifted``).
_FEW_CLASSES = 4
#: Bytes of float64 scratch per block of rows: the transposed copy of a narrow block, with
#: its input, stays in the L2 cache; a wide block only needs to amortise per-call overheads.
NARROW_BLOCK_BYTES = 384 * 1024
WIDE_BLOCK_BYTES = 1024 * 1024
#: Arrays of at most this many entries are scanned whole: fewer NumPy calls, a small temporary.
SMALL_ENTRIES = 4096
#: NumPy's pairwise summation sums runs of up to this many values with 8 accumulators.
_PAIRWISE_BLOCK = 128


class RowScan(NamedTuple):
    """What one blocked pass over an N×C array found, row by row."""

    peak: np.ndarray  # the largest entry of each row
    total: np.ndarray  # Σ_c exp(x_c − peak), or Σ_c x_c; summed in the order of NumPy's ``sum(axis=1)``
    picked: np.ndarray  # the entry at the given column of each row
    hit: np.ndarray  # bool: the row's first maximum (its argmax) is at the given column
    lowest: float  # the smallest entry of the whole array
    highest: float  # the largest entry of the whole array

    @property
    def spread_overflows(self) -> bool:
        """Whether x − peak can overflow to −inf (entries more than 1.8e308 apart)."""
        return not self.highest - self.lowest < math.inf


#: What the blocked passes fill in, row by row: peak, total, hit, picked (as in ``RowScan``).
_Outputs = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


class HardLabelScan(NamedTuple):
    """``hard_label_scan``'s answer: log q_y, the rows whose q_y was clipped, and whether argmax = y."""

    log_q: np.ndarray
    clipped: np.ndarray | None
    correct: np.ndarray
    #: Logits only: each row's peak and log Σ_c exp(x_c − peak), so log q = (x − peak) − log_sum for every
    #: column (what the gradient's softmax needs, without a second pass for them).
    normaliser: tuple[np.ndarray, np.ndarray] | None = None


def hard_label_scan(
    preds: np.ndarray,
    indices: np.ndarray,
    scored: np.ndarray,
    options: MulticlassOptions,
    warnings: list[ScoringWarning],
) -> HardLabelScan | None:
    """log q_y, the rows whose q_y was clipped, and whether argmax = y, from one blocked pass.

    The numbers are those of ``multiclass.hard_label_reference``, bit for bit, without an N×C
    temporary. None when a prediction is not finite or out of range (the reference path then
    raises the very error it always did) or when the array is not C-contiguous.
    """
    if not preds.flags.c_contiguous:
        return None
    kind = options.prediction_type
    scan = scan_rows(preds, indices, exponentiate=kind is not PredictionType.PROBABILITIES)
    if scan is None:
        return None
    correct = scan.hit.astype(np.float64)
    if kind is PredictionType.PROBABILITIES:
        if scan.lowest < 0 or scan.highest > 1:
            return None
        values, sums = scan.picked, scan.total
        if apply_normalization(sums, scored, options, warnings):
            # Ignored rows are not checked and may sum to 0: leave those as they are.
            values = values / np.where(sums > 0, sums, 1.0)
        log_q, clipped = log_clipped_moved(values, options.resolved_epsilon)
        return HardLabelScan(log_q, clipped, correct)
    if kind is PredictionType.LOG_PROBABILITIES and scan.highest > 0:
        return None
    log_sum = np.log(scan.total)
    if kind is PredictionType.LOG_PROBABILITIES and not apply_normalization(
        np.exp(scan.peak + log_sum), scored, options, warnings
    ):
        return HardLabelScan(scan.picked, None, correct)
    # (x − peak) − log_sum, in that order: peak + log_sum would round log_sum away when peak is huge.
    if scan.spread_overflows:
        with np.errstate(over="ignore"):  # a spread past 1.8e308 gives −inf, the correctly rounded log q
            log_q = np.subtract(scan.picked, scan.peak, out=scan.picked)
    else:
        log_q = np.subtract(scan.picked, scan.peak, out=scan.picked)
    log_q -= log_sum
    normaliser = (scan.peak, log_sum) if kind is PredictionType.LOGITS else None
    return HardLabelScan(log_q, None, correct, normaliser)


def scan_rows(values: np.ndarray, columns: np.ndarray, *, exponentiate: bool) -> RowScan | None:
    """Row maxima, row sums (of exp(x − max) when ``exponentiate``), x at ``columns`` and argmax hits.

    One pass over C-contiguous ``values`` in blocks of rows, with a small scratch reused from
    block to block, so no N×C temporary is made. Every number equals what the dense NumPy
    expressions give (``x.max(axis=1)``, ``np.exp(x − max).sum(axis=1)``, ``x.argmax(axis=1) == y``),
    bit for bit. Returns None when a value is NaN or infinite (without exponentiate, probabilities
    are also taken to be >= 0 unless ``lowest`` says otherwise): the caller's exact checks then
    name the entry.
    """
    n, width = values.shape
    if n * width <= SMALL_ENTRIES:
        return _scan_small(values, columns, exponentiate)
    # Overflow: a spread past 1.8e308 gives −inf, and exp(−inf) = 0 is right. Invalid: only from
    # a NaN or an infinity, whose batch is rejected below.
    with np.errstate(over="ignore", invalid="ignore"):
        peak = np.empty(n)
        total = np.empty(n)
        hit = np.empty(n, dtype=bool)
        picked = np.empty(n)
        scan = _scan_narrow if width <= NARROW_CLASSES else _scan_wide
        lowest = scan(values, columns, exponentiate, (peak, total, hit, picked))
    if lowest is None:
        return None
    highest = float(peak.max())
    if not _finite(lowest, highest):
        return None
    return RowScan(peak, total, picked, hit, lowest, highest)


def _scan_small(values: np.ndarray, columns: np.ndarray, exponentiate: bool) -> RowScan | None:
    """``scan_rows`` of a small array: the dense expressions themselves, in as few NumPy calls as can be."""
    rows = np.arange(values.shape[0])
    first_max = values.argmax(axis=1)
    peak = values[rows, first_max]  # = values.max(axis=1) once every entry is finite
    lowest, highest = float(values.min()), float(peak.max())
    if not _finite(lowest, highest):
        return None
    if exponentiate:
        if highest - lowest < math.inf:
            shifted = values - peak[:, None]
        else:
            with np.errstate(over="ignore"):  # a spread past 1.8e308 gives −inf, and exp(−inf) = 0 is right
                shifted = values - peak[:, None]
        np.exp(shifted, out=shifted)
        total = shifted.sum(axis=1)
    else:
        total = values.sum(axis=1)
    return RowScan(peak, total, values[rows, columns], first_max == columns, lowest, highest)


def block_rows(width: int) -> int:
    """How many rows of ``width`` classes ``scan_rows`` takes at a time."""
    return max(1, (NARROW_BLOCK_BYTES if width <= NARROW_CLASSES else WIDE_BLOCK_BYTES) // (8 * width))


def _finite(low: float, high: float) -> bool:
    """Whether the array's extremes, and so all of it, are finite."""
    return -math.inf < low and high < math.inf  # False for NaN too


def _scan_narrow(values: np.ndarray, columns: np.ndarray, exponentiate: bool, out: _Outputs) -> float | None:
    """Few columns: copy each block transposed, so that every reduction runs along long contiguous rows."""
    peak, total, hit, picked = out
    n, width = values.shape
    size = min(n, block_rows(width))
    scratch = np.empty((width, size))
    zeros = np.empty((width, size), dtype=bool) if exponentiate and width <= _FEW_CLASSES else None
    flat, where = _flat_positions(values, columns)
    lowest = math.inf
    for start in range(0, n, size):
        stop = min(start + size, n)
        rows = values[start:stop]
        block = scratch[:, : stop - start]
        np.copyto(block, rows.T)
        np.take(flat, where[start:stop], out=picked[start:stop])  # x_y, read while the block is in cache
        block_peak = peak[start:stop]
        np.maximum.reduce(block, axis=0, out=block_peak)
        low = float(rows.min())
        if not low > -math.inf:  # −inf or NaN
            return None
        lowest = min(lowest, low)
        if exponentiate:
            np.subtract(block, block_peak, out=block)
            _exp_shifted(block, None if zeros is None else zeros[:, : stop - start])
        _pairwise_sum_columns(block, total[start:stop])
    # Two maxima add exp(0) + exp(0) = 2 to the sum, or 2·peak to a sum of p >= 0 (rounding
    # never takes a sum of non-negative terms below a partial sum): below that, the maximum is unique.
    maybe_tied = total >= 2.0 if exponentiate else total >= 2.0 * peak
    _first_max_hits(values, columns, picked, peak, maybe_tied, hit)
    return lowest


def _exp_shifted(block: np.ndarray, zeros: np.ndarray | None) -> None:
    """exp in place of x − peak <= 0; with ``zeros`` scratch, the exact zeros go round libm's exp.

    exp(−1) < 1, so max(exp(0 − 1), 1) = 1 = exp(0) on the zeros and max(exp(d), 0) = exp(d) elsewhere.
    """
    if zeros is None:
        np.exp(block, out=block)
        return
    np.equal(block, 0.0, out=zeros)
    np.subtract(block, zeros, out=block)
    np.exp(block, out=block)
    np.maximum(block, zeros, out=block)


def _first_max_hits(
    rows: np.ndarray,
    columns: np.ndarray,
    picked: np.ndarray,
    peak: np.ndarray,
    maybe_tied: np.ndarray,
    hit: np.ndarray,
) -> None:
    """hit = (rows.argmax(axis=1) == columns), found without an argmax on most rows.

    The first maximum is at the column when x at the column is the maximum and no earlier
    entry equals it. Only rows that hold their maximum at the column and may hold it twice
    (``maybe_tied``) need the argmax itself.
    """
    np.equal(picked, peak, out=hit)
    unsure = np.flatnonzero(hit & maybe_tied)
    if unsure.size:
        hit[unsure] = rows[unsure].argmax(axis=1) == columns[unsure]


def _scan_wide(values: np.ndarray, columns: np.ndarray, exponentiate: bool, out: _Outputs) -> float | None:
    """Many columns: NumPy's row reductions are fast; blocks keep the exp scratch in cache."""
    peak, total, hit, picked = out
    n, width = values.shape
    size = min(n, block_rows(width))
    scratch = np.empty((size, width)) if exponentiate else None
    offsets = np.arange(size)
    flat, where = _flat_positions(values, columns)
    lowest = math.inf
    for start in range(0, n, size):
        stop = min(start + size, n)
        rows = values[start:stop]
        first_max = rows.argmax(axis=1)
        block_peak = peak[start:stop]
        block_peak[...] = rows[offsets[: stop - start], first_max]  # the max, as argmax finds it first
        low = float(rows.min())
        if not low > -math.inf:  # −inf or NaN
            return None
        lowest = min(lowest, low)
        np.take(flat, where[start:stop], out=picked[start:stop])
        np.equal(first_max, columns[start:stop], out=hit[start:stop])
        if scratch is None:
            np.add.reduce(rows, axis=1, out=total[start:stop])
            continue
        shifted = scratch[: stop - start]
        np.subtract(rows, block_peak[:, None], out=shifted)
        np.exp(shifted, out=shifted)
        np.add.reduce(shifted, axis=1, out=total[start:stop])
    return lowest


def _flat_positions(values: np.ndarray, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """C-contiguous ``values`` flattened, and the flat position of (row i, columns[i])."""
    where = np.arange(0, values.size, values.shape[1], dtype=np.intp)
    where += columns
    return values.reshape(-1), where


def _pairwise_sum_columns(block: np.ndarray, out: np.ndarray) -> None:
    """``out`` = block.sum(axis=0), adding in the order NumPy's pairwise ``sum`` uses along a row.

    ``x.sum(axis=1)`` on C-contiguous rows starts from 0 and runs NumPy's pairwise summation
    over each row; doing the same additions column by column gives the same bits. The sums
    accumulate in place: ``block`` is scratch and is left holding partial sums.
    """
    np.add(_pairwise(block, 0, block.shape[0]), 0.0, out=out)  # the initial 0 turns −0.0 into +0.0, as NumPy does


def _pairwise(block: np.ndarray, first: int, count: int) -> np.ndarray:
    """NumPy's ``pairwise_sum`` over rows first … first + count − 1 of ``block``: a row of ``block`` holding it."""
    if count < 8:
        result = block[first]
        for i in range(first + 1, first + count):
            result += block[i]
        return result
    if count <= _PAIRWISE_BLOCK:
        r = [block[first + j] for j in range(8)]
        i = 8
        while i < count - count % 8:
            for j in range(8):
                r[j] += block[first + i + j]
            i += 8
        r[0] += r[1]
        r[2] += r[3]
        r[4] += r[5]
        r[6] += r[7]
        r[0] += r[2]
        r[4] += r[6]
        r[0] += r[4]
        for k in range(first + i, first + count):
            r[0] += block[k]
        return r[0]
    half = count // 2
    half -= half % 8
    result = _pairwise(block, first, half)
    result += _pairwise(block, first + half, count - half)
    return result
