"""Result objects: per-sample values, weighted aggregates and warnings.

Both scoring functions hand their per-sample values (in nats) to ``finish``, which
does the reductions and the unit conversion once, for everything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from service.core.arrays import first_rows
from service.core.options import Unit

#: How many row indices a warning lists.
WARNING_ROWS_SHOWN = 20


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


def _weighted(values: np.ndarray, weights: np.ndarray, keep: np.ndarray | None) -> float:
    """Σ wᵢ·vᵢ over the rows in ``keep`` (those with wᵢ > 0; None: all of them).

    Rows of weight 0 are left out rather than multiplied, so that an infinite or
    undefined value there adds nothing instead of NaN.
    """
    if keep is None:
        return float(np.dot(weights, values))
    return float(np.dot(weights[keep], values[keep]))


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
    weights: np.ndarray,
    unit: Unit,
    warnings: list[ScoringWarning],
    settings: Mapping[str, object],
) -> ScoreResult:
    """Reduce per-sample values (nats) to weighted means and sums, in ``unit``.

    mean = Σ wᵢℓᵢ / Σ wᵢ and sum = Σ wᵢℓᵢ over the scored rows; perplexity is
    exp(mean cross-entropy in nats), whatever the unit.
    """
    n = int(scored.shape[0])
    n_scored = int(np.count_nonzero(scored))
    weights = np.where(scored, weights, 0.0)
    total = float(weights.sum())
    base = unit.log_base
    positive = weights > 0
    keep = None if positive.all() else positive
    sums = [_weighted(v, weights, keep) for v in (cross_entropy, kl_divergence, entropy)]
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
    infinite_rows = scored & ~(np.isfinite(cross_entropy) & np.isfinite(kl_divergence))
    infinite_aggregates = [v for v in (*sums, *means) if v is not None and not math.isfinite(v)]
    if infinite_rows.any() or infinite_aggregates:
        message = (
            "some values are +infinity (a zero probability on a non-zero target with epsilon 0, "
            "or an overflow); JSON cannot hold them, so they are reported as null"
        )
        warnings.append(ScoringWarning.for_rows(WarningCode.NON_FINITE, infinite_rows, message))
    every_row = bool(scored.all())
    per_sample = PerSample(
        *(
            (v if base == 1.0 else v / base) if every_row else np.where(scored, v / base, np.nan)
            for v in (cross_entropy, kl_divergence, entropy)
        ),
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
