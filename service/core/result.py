"""Result objects: per-sample values, weighted aggregates and warnings.

Both scoring functions hand their per-sample values (in nats) to ``finish``, which
does the reductions and the unit conversion once, for everything.

Over 300 lines because every aggregate is here and nowhere else: the weighted means and sums
(with their overflow-safe rescaling), the warnings, the unit conversion and the answer's shape.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Final

import numpy as np

from service.core.arrays import all_finite, first_rows
from service.core.contract import (
    AGGREGATE_OVERFLOW,
    MAX_EXP_NATS,
    UNCERTAINTY_OPTIONS,
    aggregate_overflow_message,
)
from service.core.options import Unit

#: How many row indices a warning lists.
WARNING_ROWS_SHOWN = 20
#: ``Unit.log_base`` of each unit, looked up once.
_LOG_BASE = {unit: unit.log_base for unit in Unit}
#: The default confidence level of the intervals, from the contract.
DEFAULT_CONFIDENCE: float = UNCERTAINTY_OPTIONS["confidence"].default
#: The quantities that have a mean, a sum and a per-sample value, by wire name.
_QUANTITIES = ("cross_entropy", "kl_divergence", "entropy")


class WarningCode(StrEnum):
    """Machine-readable codes of the warnings a result may carry."""

    ROWS_NOT_NORMALIZED = "ROWS_NOT_NORMALIZED"
    RENORMALIZED = "RENORMALIZED"
    CLIPPED = "CLIPPED"
    NON_FINITE = "NON_FINITE"
    EMPTY = "EMPTY"
    ZERO_WEIGHT = "ZERO_WEIGHT"
    AGGREGATE_OVERFLOW = AGGREGATE_OVERFLOW
    STDERR_UNDEFINED = "STDERR_UNDEFINED"
    SOFT_TARGETS = "SOFT_TARGETS"
    STATE_NOT_MERGEABLE = "STATE_NOT_MERGEABLE"


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
    """Everything one scoring call found.

    A per-sample value may be +inf only with a NON_FINITE warning naming its row; an aggregate
    only with that warning, or with an AGGREGATE_OVERFLOW warning naming the aggregate.

    ``row_weights`` and ``correct`` are what the means were taken over, kept for the standard
    errors (``service.core.statistics``): ``row_weights`` is wᵢ·2^−k for one k ≥ 0 (the caller's
    overflow scaling, which changes no mean or standard error), 0 on every row that was not
    scored; ``correct`` is each row's correctness, whose weighted mean is ``mean.accuracy``
    (0 or 1; for a multi-label row the fraction of its K labels that are right). Neither is
    part of the answer.
    """

    n: int
    n_scored: int
    unit: Unit
    mean: Means
    sum: Quantities
    per_sample: PerSample
    scored: np.ndarray
    warnings: tuple[ScoringWarning, ...]
    settings: Mapping[str, object]
    row_weights: np.ndarray
    correct: np.ndarray
    #: ∂ℓᵢ/∂xᵢ, shaped like the predictions, when the options asked for it (``service.core.gradient``).
    gradient: np.ndarray | None = None
    #: Row i weighs ``row_weights[i]``·2^weight_exponent: the overflow scaling of ``finish`` (for the state).
    weight_exponent: int = 0
    #: Why the means are not the row-weighted means of the per-sample values (a ``compat`` preset's own
    #: reduction), so that no state can merge to them: the answer's ``state`` is then null. None: they are.
    unmergeable: str | None = None

    def aggregates(self) -> dict[str, Any]:
        """The answer's ``mean`` and ``sum`` blocks (null where not finite)."""
        mean, sums = self.mean, self.sum
        return {
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
        }


def wire_warnings(warnings: Any) -> list[dict[str, Any]]:
    """Warnings (``ScoringWarning`` or alike: code, message, count, rows) as the answer lists them."""
    return [{"code": str(w.code), "message": w.message, "count": w.count, "rows": list(w.rows)} for w in warnings]


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


def _kept(values: np.ndarray, keep: np.ndarray | None) -> np.ndarray:
    """The values of the rows in ``keep`` (None: all of them)."""
    return values if keep is None else values[keep]


def _scaled_mean(values: np.ndarray, weights: np.ndarray, keep: np.ndarray | None) -> tuple[float, float] | None:
    """Σ wᵢvᵢ / Σ wᵢ and Σ wᵢvᵢ when a plain sum overflows, from w/2^a and v/2^b; None if some vᵢ is infinite.

    With 2^a > max wᵢ and 2^b > max |vᵢ|, Σ (wᵢ/2^a)·(vᵢ/2^b) and Σ wᵢ/2^a are at most n, and dividing
    by a power of two is exact (short of the subnormal range). Taken in the plain formula's order, the
    sums are then the plain ones times 2^−a−b and 2^−a to the bit, and so is the mean
    (Σ (w/2^a)(v/2^b) / Σ w/2^a)·2^b wherever the plain formula does not overflow. The sum is the
    numerator times 2^(a+b): +inf where that exceeds float64.
    """
    kept_values = _kept(values, keep)
    if not all_finite(kept_values):
        return None
    weight_exponent = math.frexp(float(weights.max()))[1]
    value_exponent = math.frexp(float(np.abs(kept_values).max()))[1]
    scaled_weights = np.ldexp(weights, -weight_exponent)
    numerator = float(np.dot(_kept(scaled_weights, keep), np.ldexp(kept_values, -value_exponent)))
    mean = math.ldexp(numerator / float(scaled_weights.sum()), value_exponent)
    return mean, _times_power_of_two(numerator, weight_exponent + value_exponent)


#: Below this largest row weight, means are taken from the weights scaled by a power of two (``finish``):
#: 2^−511, the square root of float64's smallest normal number, keeps every wᵢvᵢ normal for vᵢ down to 2^−511.
TINY_WEIGHT: Final = 2.0**-511


def _times_power_of_two(value: float, exponent: int) -> float:
    """value·2^exponent, +inf or −inf where that exceeds float64 (``math.ldexp`` raises there)."""
    try:
        return math.ldexp(value, exponent)
    except OverflowError:
        return math.copysign(math.inf, value)


def _infinite_rows(
    nats: tuple[np.ndarray, np.ndarray], in_unit: PerSample, scored: np.ndarray, every_row: bool, base: float
) -> np.ndarray | None:
    """The scored rows whose cross-entropy or KL divergence, in the result's unit, is infinite; None: no row.

    Dividing by ln 2 (bits) can overflow a value finite in nats; ln 10 and 1 cannot. The arrays in the
    unit hold NaN on the rows that were not scored, so then the nats are checked when they tell.
    """
    if every_row or base >= 1.0:
        ce, kl = (in_unit.cross_entropy, in_unit.kl_divergence) if every_row else nats
        if all_finite(ce) and (kl is ce or all_finite(kl)):
            return None
    finite = np.isfinite(in_unit.cross_entropy)
    if in_unit.kl_divergence is not in_unit.cross_entropy:
        finite &= np.isfinite(in_unit.kl_divergence)
    rows = scored & ~finite  # NaN marks the rows that were not scored
    return rows if rows.any() else None


def _in_unit(values: np.ndarray, base: float, scored: np.ndarray, every_row: bool) -> np.ndarray:
    """Per-sample values divided by ln(base), with NaN on the rows that were not scored."""
    with np.errstate(over="ignore"):  # past 1.8e308·ln 2 nats a value is +inf in bits, flagged NON_FINITE
        if every_row:
            return values if base == 1.0 else values / base
        return np.where(scored, values / base, np.nan)


def empty(unit: Unit, settings: Mapping[str, object], gradient: np.ndarray | None = None) -> ScoreResult:
    """The result of scoring a batch of no rows (``gradient``: its empty gradient, when one was asked for)."""
    nothing = np.empty(0)
    result = finish(
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
    return result if gradient is None else replace(result, gradient=gradient)


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
    weight_exponent: int = 0,
) -> ScoreResult:
    """Reduce per-sample values (nats) to weighted means and sums, in ``unit``.

    mean = Σ wᵢℓᵢ / Σ wᵢ and sum = Σ wᵢℓᵢ over the scored rows; perplexity is
    exp(mean cross-entropy in nats), whatever the unit. ``weights=None`` weighs every row 1;
    ``all_scored`` is ``scored.all()`` when the caller knows it; ``kl_divergence`` may be the
    very array ``cross_entropy``. Row i weighs ``weights[i]``·2^``weight_exponent``: a caller
    whose weights would overflow passes them scaled, which changes the sums, not the means.

    A mean is finite whenever the values it averages are, however large the weights: where a
    plain sum overflows, it is taken again over weights and values divided by powers of two
    (``_scaled_mean``). A sum or perplexity too large for float64 is +inf and named by an
    AGGREGATE_OVERFLOW warning; NON_FINITE names the scored rows whose own values are infinite.
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
        with np.errstate(over="ignore"):  # an overflowing total is taken again, scaled, below
            total = float(weights.sum())
        keep = None if n == 0 or weights.min() > 0 else weights > 0
    base = _LOG_BASE[unit]
    same = kl_divergence is cross_entropy
    with np.errstate(over="ignore", invalid="ignore"):  # likewise an overflowing sum
        ce_sum = _weighted(cross_entropy, weights, keep)
        sums = [ce_sum, ce_sum if same else _weighted(kl_divergence, weights, keep), _weighted(entropy, weights, keep)]
    plain_sums_finite = all(math.isfinite(s) for s in sums)
    means: list[float | None] = [None] * 5
    mean_ce_nats = math.nan
    if n_scored == 0:
        reason = "the batch is empty" if n == 0 else "every row is ignored"
        warnings.append(ScoringWarning(WarningCode.EMPTY, f"nothing was scored: {reason}; means are null", 0, ()))
    elif total == 0.0:
        message = "the weights of the scored rows sum to 0, so the weighted means are undefined (null)"
        warnings.append(ScoringWarning.for_rows(WarningCode.ZERO_WEIGHT, scored, message))
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            correct_sum = _weighted(correct, weights, keep)
        mean_nats = [s / total for s in (*sums, correct_sum)]
        # Weights this small make each wᵢvᵢ subnormal, short of float64's precision (all 5e-324: a mean of 0.5
        # for 0.586): the means and sums are then taken from the weights scaled by a power of two, as on overflow.
        # (Σw ≥ n·2^−511 implies a weight of at least 2^−511: the maximum is looked for only below that.)
        tiny = total < TINY_WEIGHT * n and float(weights.max()) < TINY_WEIGHT
        if tiny or not (math.isfinite(total) and plain_sums_finite and math.isfinite(correct_sum)):
            for j, values in enumerate((cross_entropy, kl_divergence, entropy, correct)):
                plain = j == 3 or math.isfinite(sums[j])
                if not tiny and math.isfinite(total) and plain and math.isfinite(mean_nats[j]):
                    continue  # this column's plain sums did not overflow: keep their mean, bit for bit
                scaled = _scaled_mean(values, weights, keep)
                if scaled is None:
                    mean_nats[j] = math.inf  # a value of positive weight is +inf
                    continue
                mean_nats[j] = scaled[0]
                if j < 3 and (tiny or not plain):
                    sums[j] = scaled[1]
        mean_ce_nats = mean_nats[0]
        # exp overflows float64 past MAX_EXP_NATS: report +inf (then null) rather than raise.
        perplexity = math.exp(mean_ce_nats) if mean_ce_nats < MAX_EXP_NATS else math.inf
        means = [*(m / base for m in mean_nats[:3]), perplexity, mean_nats[3]]
    if weight_exponent:
        sums = [_times_power_of_two(s, weight_exponent) for s in sums]
    totals = [s / base for s in sums]
    per_sample_ce = _in_unit(cross_entropy, base, scored, every_row)
    per_sample = PerSample(
        per_sample_ce,
        per_sample_ce if same else _in_unit(kl_divergence, base, scored, every_row),
        _in_unit(entropy, base, scored, every_row),
    )
    if keep is None and base >= 1.0 and plain_sums_finite:
        infinite_rows = None  # every row weighs > 0 in the finite sums, so no value is NaN or infinite
    else:
        infinite_rows = _infinite_rows((cross_entropy, kl_divergence), per_sample, scored, every_row, base)
    if infinite_rows is not None:
        message = (
            "some values are +infinity (a zero probability on a non-zero target with epsilon 0, "
            "or an overflow); JSON cannot hold them, so they are reported as null"
        )
        warnings.append(ScoringWarning.for_rows(WarningCode.NON_FINITE, infinite_rows, message))
    overflowing = _overflowing_aggregates(means, totals, mean_ce_nats, per_sample, keep)
    if overflowing:
        message = aggregate_overflow_message(overflowing)
        warnings.append(ScoringWarning(WarningCode.AGGREGATE_OVERFLOW, message, 0, ()))
    return ScoreResult(
        n=n,
        n_scored=n_scored,
        unit=unit,
        mean=Means(*means),
        sum=Quantities(*totals),
        per_sample=per_sample,
        scored=scored,
        warnings=tuple(warnings),
        settings=settings,
        row_weights=weights,
        correct=correct,
        weight_exponent=weight_exponent,
    )


def _overflowing_aggregates(
    means: list[float | None], totals: list[float], mean_ce_nats: float, per_sample: PerSample, keep: np.ndarray | None
) -> list[str]:
    """The aggregates (by wire name) that are infinite although every value they are taken over is finite."""
    names = []
    for group, values in (("mean", means[:3]), ("sum", totals)):
        for name, value in zip(_QUANTITIES, values, strict=True):
            if value is not None and not math.isfinite(value) and all_finite(_kept(getattr(per_sample, name), keep)):
                names.append(f"{group}.{name}")
        if group == "mean" and means[3] == math.inf and math.isfinite(mean_ce_nats):
            names.append("mean.perplexity")
    return names
