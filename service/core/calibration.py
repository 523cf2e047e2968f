"""Calibration: how far the predicted probabilities are from the frequencies they predict (issue 15 §3).

Confidences fall into B equal-width bins [k/B, (k+1)/B), the last one closed at 1. For bin b, with the row
weights wᵢ (an element of a multi-label row carries its row's weight):

- W_b = Σ wᵢ, conf_b = Σ wᵢ·confᵢ / W_b and acc_b = Σ wᵢ·accᵢ / W_b; W = Σ_b W_b;
- ECE = Σ_b (W_b/W)·|acc_b − conf_b|, MCE = max_b |acc_b − conf_b| over the bins with W_b > 0,
  RMSCE = √(Σ_b (W_b/W)·(acc_b − conf_b)²): torchmetrics' ``multiclass_calibration_error`` and
  ``binary_calibration_error`` with norm ``l1``, ``max`` and ``l2``, which however put a confidence of
  exactly 1.0 in a bin of its own past the last;
- Brier = Σ wᵢ·Σ_c (q_c − y_c)² / W, halved when C = 2 (scikit-learn's ``brier_score_loss`` with
  ``scale_by_half="auto"``); binary and multi-label: Σ wᵢ·(q − y)² / W over the elements.

Multi-class: confᵢ is the top predicted probability and accᵢ is 1 when its class (the argmax) is the true
one; binary and multi-label: every element, confᵢ the probability of the positive class and accᵢ the label
(a soft label's value). ``Calibration`` keeps only the per-bin sums: its state is O(B) and merges by addition.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from service.core.contract import MULTICLASS, OPTIONS
from service.core.errors import InvalidOption, quoted
from service.core.state import StateError, count, number
from service.core.state_arrays import SOFT_TARGETS_STATE, exact_keys, first_bad, floats, is_soft_targets, stacked
from service.core.state_batch import column, shared_keys

_BINS_OPTION = OPTIONS[MULTICLASS]["calibration_bins"]
#: The per-bin sums of a state, in the order a state lists them.
_SUMS = ("weight", "confidence", "accuracy")
#: The columns of a state's table, a row a bin: its count, then the sums.
COLUMNS: Final = ("count", *_SUMS)
_KEYS = frozenset(("n_bins", "table", "brier"))


def _whole(counts: np.ndarray) -> np.ndarray:
    """Where the values are counts: whole numbers ≥ 0 within what a float holds exactly."""
    return (counts >= 0) & (counts < 2.0**53) & (counts == np.floor(counts))


def _at(bad: np.ndarray, column: int) -> np.ndarray:
    """``bad`` (over the bins, or bins × columns) placed from ``column`` on in a mask of the table's shape."""
    block = bad.reshape(bad.shape[0], -1)
    mask = np.zeros((bad.shape[0], len(COLUMNS)), dtype=bool)
    mask[:, column : column + block.shape[1]] = block
    return mask


def check_calibration_bins(value: Any) -> int | None:
    """``calibration_bins`` as an int in its range, or None (off); InvalidOption naming it otherwise.

    >>> check_calibration_bins(15), check_calibration_bins(10.0), check_calibration_bins(None)
    (15, 10, None)
    """
    if value is None:
        return None
    integral = isinstance(value, int | float) and not isinstance(value, bool) and float(value).is_integer()
    if not (integral and _BINS_OPTION.contains(value)):
        raise InvalidOption(
            "calibration_bins", f"must be an integer in {_BINS_OPTION.interval} or null, got {quoted(value)}"
        )
    return int(value)


def bin_edges(n_bins: int) -> np.ndarray:
    """The B + 1 edges k/B, each the correctly rounded quotient: 3/10 is 0.3, where ``np.linspace(0, 1, 11)[3]``
    (and torchmetrics' ``torch.linspace``) may land an ulp off, at 0.30000000000000004."""
    return np.arange(n_bins + 1) / n_bins


def bin_of(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """The bin of each confidence in [0, 1]: k with edge_k ≤ conf < edge_(k+1); 1.0 in the last bin."""
    found = np.searchsorted(bin_edges(n_bins), confidence, side="right") - 1
    return np.minimum(found, n_bins - 1)


@dataclass(frozen=True)
class Calibration:
    """The per-bin sums of a batch: row (element) count, Σw, Σw·conf, Σw·acc; and Σw·(Brier term).

    Mergeable exactly: the sums of the union of two batches are the sums of their sums.
    """

    count: np.ndarray  # int64 (B,)
    weight: np.ndarray  # (B,)
    confidence: np.ndarray  # (B,)
    accuracy: np.ndarray  # (B,)
    brier: float
    #: Soft targets left it undefined (multi-class rows with no true class): null, and so is any merge's.
    soft: bool = False

    @classmethod
    def undefined(cls) -> Calibration:
        """The calibration of multi-class rows with soft targets: undefined, and it leaves every merge undefined."""
        empty = cls.empty(1)
        return cls(empty.count, empty.weight, empty.confidence, empty.accuracy, 0.0, soft=True)

    @property
    def n_bins(self) -> int:
        """B."""
        return int(self.count.shape[0])

    @classmethod
    def empty(cls, n_bins: int) -> Calibration:
        """The sums of no rows: the identity of ``merge``."""
        zeros = np.zeros(n_bins)
        return cls(np.zeros(n_bins, dtype=np.int64), zeros, zeros.copy(), zeros.copy(), 0.0)

    @classmethod
    def from_rows(
        cls, confidence: np.ndarray, accuracy: np.ndarray, weights: np.ndarray, brier: np.ndarray, n_bins: int
    ) -> Calibration:
        """The sums over rows (elements) of confidence confᵢ ∈ [0, 1], accuracy accᵢ, weight wᵢ and Brier term."""
        bins = bin_of(confidence, n_bins)
        weighted = weights > 0  # a zero weight adds nothing, even next to a NaN it should not meet
        return cls(
            count=np.bincount(bins, minlength=n_bins).astype(np.int64),
            weight=np.bincount(bins, weights=weights, minlength=n_bins),
            confidence=np.bincount(bins, weights=np.where(weighted, weights * confidence, 0.0), minlength=n_bins),
            accuracy=np.bincount(bins, weights=np.where(weighted, weights * accuracy, 0.0), minlength=n_bins),
            brier=float(np.dot(weights[weighted], brier[weighted])),
        )

    def merge(self, other: Calibration) -> Calibration:
        """The sums of both batches (the bins must agree: ``calibration_bins`` is a setting of the state)."""
        if self.soft or other.soft:
            return self if self.soft else other
        if self.n_bins != other.n_bins:  # only a forged state's bins can differ from its settings
            path = ("accumulators", "calibration", "n_bins")
            raise StateError(path, f"differs between the states merged: {self.n_bins} and {other.n_bins}")
        return Calibration(
            self.count + other.count,
            self.weight + other.weight,
            self.confidence + other.confidence,
            self.accuracy + other.accuracy,
            self.brier + other.brier,
        )

    @classmethod
    def merge_all(cls, pieces: Sequence[Calibration]) -> Calibration:
        """The sums of all the pieces at once (what ``merge`` gives, pair by pair)."""
        soft = [piece for piece in pieces if piece.soft]
        if soft:
            return soft[0]
        if len({piece.n_bins for piece in pieces}) > 1:
            return functools.reduce(cls.merge, pieces)  # refused there, naming the setting
        weight, confidence, accuracy = (np.sum([getattr(piece, name) for piece in pieces], axis=0) for name in _SUMS)
        brier = math.fsum(piece.brier for piece in pieces)
        return cls(np.sum([piece.count for piece in pieces], axis=0), weight, confidence, accuracy, brier)

    @classmethod
    def read_merged(cls, states: Sequence[Any], merged: Sequence[bool]) -> Calibration | None:
        """The sums of many states read and checked at once (what ``from_state`` checks), and those of the states
        ``merged`` marks merged; None when one would be refused (or is of soft targets, or the bins differ): read
        them one by one."""
        if shared_keys(states) != _KEYS:
            return None
        bins = column(states, ("n_bins",))
        n_bins = bins[0]
        if type(n_bins) is not int or not _BINS_OPTION.contains(n_bins) or any(b != n_bins for b in bins):
            return None
        sizes = [n_bins] * len(states)
        table = stacked(column(states, ("table",)), sizes, len(COLUMNS))
        brier = stacked([column(states, ("brier",))], [len(states)])
        if table is None or brier is None or not _whole(table[:, 0]).all():
            return None
        counts = table[:, 0].astype(np.int64)
        weight, confidence, accuracy = (table[:, j].reshape(len(states), n_bins) for j in range(1, len(COLUMNS)))
        empty = (counts == 0).reshape(len(states), n_bins)
        if (brier < 0).any() or (weight < 0).any() or (confidence < 0).any() or (accuracy < 0).any():
            return None
        if (empty & ((weight > 0) | (confidence > 0) | (accuracy > 0))).any():
            return None
        if (confidence > weight * (1 + 1e-9)).any() or (accuracy > weight * (1 + 1e-9)).any():
            return None
        if (brier > 2.0 * weight.sum(axis=1) * (1 + 1e-9)).any():
            return None
        keep = np.asarray(merged, dtype=bool)
        total = [x[keep].sum(axis=0) for x in (weight, confidence, accuracy)]
        brier_sum = math.fsum(brier[keep].tolist())
        return cls(counts.reshape(len(states), n_bins)[keep].sum(axis=0), total[0], total[1], total[2], brier_sum)

    def to_state(self) -> dict[str, Any]:
        """The JSON state: ``n_bins``, ``table`` (a row a bin: its count and the sums Σw, Σw·conf and Σw·acc, the
        ``COLUMNS``) and ``brier`` (Σw·Brier term); soft targets: ``{"soft_targets": true}``."""
        if self.soft:
            return dict(SOFT_TARGETS_STATE)
        table = np.column_stack([self.count.astype(np.float64), *(getattr(self, name) for name in _SUMS)])
        return {"n_bins": self.n_bins, "table": table.tolist(), "brier": self.brier}

    @classmethod
    def from_state(
        cls, state: Any, index: int, path: tuple[str | int, ...] = ("accumulators", "calibration")
    ) -> Calibration:
        """A state read back, checked as untrusted input (StateError naming the path and the state's index).

        Refused: a missing or unknown key, B outside the option's range, lists of another length, negative or
        non-integer counts, negative or non-finite sums, a weight or Brier sum where no row is counted, and
        weighted means outside [0, 1] (a sum of w·conf above the bin's weight, and the like).
        """
        if is_soft_targets(state):
            return cls.undefined()
        exact_keys(state, ("n_bins", "table", "brier"), path, index)
        n_bins = count(state["n_bins"], (*path, "n_bins"), index)
        if not _BINS_OPTION.contains(n_bins):
            raise StateError((*path, "n_bins"), f"must lie in {_BINS_OPTION.interval}, got {n_bins}", index)
        where = (*path, "table")
        table = floats(state["table"], (n_bins, len(COLUMNS)), where, index)
        first_bad(_at(~_whole(table[:, 0]), 0), where, "expected a count (a whole number ≥ 0)", index)
        first_bad(_at(table[:, 1:] < 0, 1), where, "expected a finite number ≥ 0", index)
        counts = table[:, 0].astype(np.int64)
        weight, confidence, accuracy = (table[:, j] for j in range(1, len(COLUMNS)))
        brier = number(state["brier"], (*path, "brier"), index, nonnegative=True)
        assert brier is not None
        message = "is positive in a bin that counts no rows"
        first_bad(_at((counts == 0)[:, None] & (table[:, 1:] > 0), 1), where, message, index)
        message = "exceeds the bin's weight: its weighted mean would be above 1"
        first_bad(_at(table[:, 2:] > weight[:, None] * (1 + 1e-9), 2), where, message, index)
        if brier > 2.0 * float(weight.sum()) * (1 + 1e-9):
            raise StateError(
                (*path, "brier"), "exceeds twice the total weight: the mean Brier score is at most 2", index
            )
        return cls(counts, weight, confidence, accuracy, brier)

    def summary(self, confidence: float | None = None) -> dict[str, Any] | None:
        """The answer's ``calibration`` block (``confidence``, the intervals' level, is not used: no intervals here);
        None when soft targets left it undefined."""
        if self.soft:
            return None
        edges = bin_edges(self.n_bins)
        total = float(self.weight.sum())
        bins = []
        gaps = []
        for k in range(self.n_bins):
            weight = float(self.weight[k])
            mean_confidence = accuracy = None
            if weight > 0:
                mean_confidence = float(self.confidence[k]) / weight
                accuracy = float(self.accuracy[k]) / weight
                gaps.append((weight, abs(accuracy - mean_confidence)))
            bins.append(
                {
                    "lower": float(edges[k]),
                    "upper": float(edges[k + 1]),
                    "count": int(self.count[k]),
                    "weight": weight,
                    "mean_confidence": mean_confidence,
                    "accuracy": accuracy,
                }
            )
        ece = mce = rmsce = brier = None
        if total > 0:
            ece = sum(weight / total * gap for weight, gap in gaps)
            mce = max(gap for _, gap in gaps)
            rmsce = math.sqrt(sum(weight / total * gap * gap for weight, gap in gaps))
            brier = self.brier / total
        return {"n_bins": self.n_bins, "ece": ece, "mce": mce, "rmsce": rmsce, "brier": brier, "bins": bins}


def multiclass_calibration(
    probabilities: np.ndarray, true_class: np.ndarray, correct: np.ndarray, weights: np.ndarray, n_bins: int
) -> Calibration:
    """Calibration of N×C probabilities q against true classes y: confᵢ = max_c q_ic, accᵢ = [argmax qᵢ = yᵢ].

    The Brier term is Σ_c (q_ic − [c = yᵢ])², halved when C = 2. ``correct`` is the scoring's accᵢ (the
    argmax of the predictions as given, which the softmax and a renormalisation leave in place).

    >>> q = np.array([[0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    >>> calibration = multiclass_calibration(q, np.array([1, 2]), np.array([1.0, 0.0]), np.ones(2), 2)
    >>> block = calibration.summary()
    >>> round(block["ece"], 6), round(block["brier"], 6)
    (0.15, 0.7)
    """
    n, n_classes = probabilities.shape
    differences = probabilities.copy()
    differences[np.arange(n), true_class] -= 1.0
    brier = np.einsum("ij,ij->i", differences, differences)
    if n_classes == 2:
        brier *= 0.5
    return Calibration.from_rows(probabilities.max(axis=1), correct, weights, brier, n_bins)


def binary_calibration(probabilities: np.ndarray, labels: np.ndarray, weights: np.ndarray, n_bins: int) -> Calibration:
    """Calibration of N×K probabilities q against labels y ∈ [0, 1], element by element, each with its row's weight.

    >>> q, y = np.array([[0.9], [0.8], [0.2]]), np.array([[1.0], [0.0], [0.0]])
    >>> block = binary_calibration(q, y, np.ones(3), 2).summary()
    >>> round(block["ece"], 6), round(block["brier"], 6), [b["count"] for b in block["bins"]]
    (0.3, 0.23, [1, 2])
    """
    n_labels = probabilities.shape[1]
    element_weights = np.repeat(weights, n_labels)
    q, y = probabilities.ravel(), labels.ravel()
    return Calibration.from_rows(q, y, element_weights, (q - y) ** 2, n_bins)
