"""Result objects: per-sample values, weighted aggregates and warnings.

Both scoring functions hand their per-sample values (in nats) to ``finish``, which
does the reductions and the unit conversion once, for everything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from service.core.arrays import all_finite, first_rows
from service.core.options import Unit

#: How many row indices a warning lists.
WARNING_ROWS_SHOWN = 20
#: ``Unit.log_base`` of each unit, looked up once.
_LOG_BASE = {unit: unit.log_base for unit in Unit}


class WarningCode(StrEnum):
    """Machine-readable codes of the warnings a result may carry."""

    ROWS_NOT_NORMALIZED = "ROWS_NOT_NORMALIZED"
    RENORMALIZED = "RENORMALIZED"
    CLIPPED = "CLIPPED"
    NON_FINITE = "NON_FINITE"
    EMPTY = "EMPTY"
    ZERO_WEIGHT = "ZERO_WEIGHT"


@dataclass(frozen=True)
class ScoringWarning:
    """Something the caller should know about the numbers: which rows, how many."""

    code: WarningCode
    message: str
    count: int
    rows: tuple[int, ...]

    @classmethod
    def for_rows(cls, code: WarningCode, mask: np.ndarray, message: str) -> ScoringWarning:
        """A warning about the rows where ``mask`` is true."""
        return cls(code, message, int(np.count_nonzero(mask)), tuple(first_rows(mask, WARNING_ROWS_SHOWN)))


@dataclass(frozen=True)
class Quantities:
    """Cross-entropy, KL divergence and target entropy, as numbers or per-sample arrays."""

    cross_entropy: float | None
    kl_divergence: float | None
    entropy: float | None


@dataclass(frozen=True)
class Means(Quantities):
    """Weighted means over the scored rows; None when nothing (or no weight) was scored."""

    perplexity: float | None
    accuracy: float | None


@dataclass(frozen=True)
class PerSample:
    """Per-sample values in the result's unit; NaN marks an ignored row."""

    cross_entropy: np.ndarray
    kl_divergence: np.ndarray
    entropy: np.ndarray


@dataclass(frozen=True)
class ScoreResult:
    """Everything one scoring call found. Values may be +inf only with a NON_FINITE warning."""

    n: int
    n_scored: int
    unit: Unit
    mean: Means
    sum: Quantities
    per_sample: PerSample
    scored: np.ndarray
    warnings: tuple[ScoringWarning, ...]
    settings: Mapping[str, object]

    def to_summary(self, *, per_sample: bool, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The answer's wire dict (the JSON answer, and the NPZ answer's ``summary``).

        Non-finite numbers are None (JSON has no infinity); ``per_sample`` there is None,
        for the writer to fill in, while ``settings.per_sample`` records the flag; ``extra``
        adds top-level fields after ``unit``.
        """
        mean, sums = self.mean, self.sum
        return {
            "n": self.n,
            "n_scored": self.n_scored,
            "unit": self.unit.value,
            **(extra or {}),
            "mean": {
                "cross_entropy": finite_or_none(mean.cross_entropy),
                "kl_divergence": finite_or_none(mean.kl_divergence),
                "entropy": finite_or_none(mean.entropy),
                "perplexity": finite_or_none(mean.perplexity),
                "accuracy": finite_or_none(mean.accuracy),
            },
            "sum": {
                "cross_entropy": finite_or_none(sums.cross_entropy),
                "kl_divergence": finite_or_none(sums.kl_divergence),
                "entropy": finite_or_none(sums.entropy),
            },
            "per_sample": None,
            "warnings": [
                {"code": w.code.value, "message": w.message, "count": w.count, "rows": list(w.rows)}
                for w in self.warnings
            ],
            "settings": {**self.settings, "per_sample": per_sample},
        }


def finite_or_none(value: float | None) -> float | None:
    """``value``, or None when it is None, infinite or NaN (how the wire writes those)."""
    return None if value is None or not math.isfinite(value) else value


def _weighted(values: np.ndarray, weights: np.ndarray, keep: np.ndarray | None) -> float:
    """Σ wᵢ·vᵢ over the rows in ``keep`` (those with wᵢ > 0; None: all of them).

    Rows of weight 0 are left out rather than multiplied, so that an infinite or
    undefined value there adds nothing instead of NaN.
    """
    if keep is None:
        return float(np.dot(weights, values))
    return float(np.dot(weights[keep], values[keep]))


def _in_unit(values: np.ndarray, base: float, scored: np.ndarray, every_row: bool) -> np.ndarray:
    """Per-sample values divided by ln(base), with NaN on the rows that were not scored."""
    if every_row:
        return values if base == 1.0 else values / base
    return np.where(scored, values / base, np.nan)


def empty(unit: Unit, settings: Mapping[str, object]) -> ScoreResult:
    """The result of scoring a batch of no rows."""
    nothing = np.empty(0)
    return finish(
        cross_entropy=nothing,
        kl_divergence=nothing,
        entropy=nothing,
        correct=nothing,
        scored=np.zeros(0, dtype=bool),
        weights=nothing,
        unit=unit,
        warnings=[],
        settings=settings,
    )


def finish(
    *,
    cross_entropy: np.ndarray,
    kl_divergence: np.ndarray,
    entropy: np.ndarray,
    correct: np.ndarray,
    scored: np.ndarray,
    weights: np.ndarray | None,
    unit: Unit,
    warnings: list[ScoringWarning],
    settings: Mapping[str, object],
    all_scored: bool | None = None,
) -> ScoreResult:
    """Reduce per-sample values (nats) to weighted means and sums, in ``unit``.

    mean = Σ wᵢℓᵢ / Σ wᵢ and sum = Σ wᵢℓᵢ over the scored rows; perplexity is
    exp(mean cross-entropy in nats), whatever the unit. ``weights=None`` weighs every row 1;
    ``all_scored`` is ``scored.all()`` when the caller knows it; ``kl_divergence`` may be the
    very array ``cross_entropy``.
    """
    n = int(scored.shape[0])
    every_row = bool(scored.all()) if all_scored is None else all_scored
    n_scored = n if every_row else int(np.count_nonzero(scored))
    if weights is None and every_row:
        weights, total, keep = np.ones(n), float(n), None  # Σ 1 = n exactly, and every weight is > 0
    else:
        if weights is None:
            weights = np.ones(n)
        if not every_row:
            weights = np.where(scored, weights, 0.0)
        total = float(weights.sum())
        keep = None if n == 0 or weights.min() > 0 else weights > 0
    base = _LOG_BASE[unit]
    same = kl_divergence is cross_entropy
    ce_sum = _weighted(cross_entropy, weights, keep)
    sums = [ce_sum, ce_sum if same else _weighted(kl_divergence, weights, keep), _weighted(entropy, weights, keep)]
    means: list[float | None] = [None] * 5
    if n_scored == 0:
        reason = "the batch is empty" if n == 0 else "every row is ignored"
        warnings.append(ScoringWarning(WarningCode.EMPTY, f"nothing was scored: {reason}; means are null", 0, ()))
    elif total == 0.0:
        message = "the weights of the scored rows sum to 0, so the weighted means are undefined (null)"
        warnings.append(ScoringWarning.for_rows(WarningCode.ZERO_WEIGHT, scored, message))
    else:
        mean_nats = sums[0] / total
        # exp overflows float64 past ~709.78 nats: report +inf (then null) rather than raise.
        perplexity = math.exp(mean_nats) if mean_nats < 709.78 else math.inf
        means = [*(s / total / base for s in sums), perplexity, _weighted(correct, weights, keep) / total]
    infinite_aggregates = [v for v in (*sums, *means) if v is not None and not math.isfinite(v)]
    if keep is None and not infinite_aggregates:
        infinite_rows = None  # every row weighs > 0 in the finite sums, so no value is NaN or infinite
    elif all_finite(cross_entropy) and (same or all_finite(kl_divergence)):
        infinite_rows = None
    else:
        infinite_rows = scored & ~(np.isfinite(cross_entropy) & np.isfinite(kl_divergence))
    if infinite_aggregates or (infinite_rows is not None and infinite_rows.any()):
        message = (
            "some values are +infinity (a zero probability on a non-zero target with epsilon 0, "
            "or an overflow); JSON cannot hold them, so they are reported as null"
        )
        rows = np.zeros(n, dtype=bool) if infinite_rows is None else infinite_rows
        warnings.append(ScoringWarning.for_rows(WarningCode.NON_FINITE, rows, message))
    per_sample_ce = _in_unit(cross_entropy, base, scored, every_row)
    per_sample = PerSample(
        per_sample_ce,
        per_sample_ce if same else _in_unit(kl_divergence, base, scored, every_row),
        _in_unit(entropy, base, scored, every_row),
    )
    return ScoreResult(
        n=n,
        n_scored=n_scored,
        unit=unit,
        mean=Means(*means),
        sum=Quantities(*(s / base for s in sums)),
        per_sample=per_sample,
        scored=scored,
        warnings=tuple(warnings),
        settings=settings,
    )
