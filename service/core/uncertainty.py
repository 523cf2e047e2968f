"""How sure a scoring answer is: its standard errors and intervals, and the paired comparison of two models.

Over a ``ScoreResult``'s per-sample values ℓᵢ and row weights wᵢ, by the formulas of ``statistics``
(SE, CR1 with clusters, correlation) and ``intervals`` (m ± z·SE, perplexity's e^(CE interval in nats),
p-values). A paired difference dᵢ = ℓᵢ(model) − ℓᵢ(baseline) gets the same mean, SE and interval,
z = mean/SE and p = erfc(|z|/√2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from service.core.errors import BadShape, InvalidInput, InvalidOption
from service.core.intervals import (
    DEFAULT_CONFIDENCE,
    Interval,
    check_confidence,
    interval,
    perplexity_interval,
    two_sided_p_value,
)
from service.core.result import ScoreResult
from service.core.statistics import Rows, Scaled, StandardError, cluster_labels, rows_standard_error, scaled_correlation

#: The warning code of a standard error that cannot be taken (too few rows or clusters).
STDERR_UNDEFINED: Final = "STDERR_UNDEFINED"


@dataclass(frozen=True)
class Stderrs:
    """Standard errors of the means, in the result's unit (accuracy as a fraction); None where undefined."""

    cross_entropy: float | None
    kl_divergence: float | None
    entropy: float | None
    accuracy: float | None


@dataclass(frozen=True)
class Intervals:
    """Confidence intervals (low, high) of the means; perplexity's is e^(the cross-entropy one in nats)."""

    cross_entropy: Interval | None
    kl_divergence: Interval | None
    entropy: Interval | None
    accuracy: Interval | None
    perplexity: Interval | None


@dataclass(frozen=True)
class StatisticsWarning:
    """A warning about the standard errors, shaped like a ``ScoringWarning`` (code, message, count, rows)."""

    code: str
    message: str
    count: int = 0
    rows: tuple[int, ...] = ()


@dataclass(frozen=True)
class Uncertainty:
    """The answer's ``stderr``, ``ci`` and ``n_clusters`` (None without clusters), and the warnings they bring."""

    stderr: Stderrs
    ci: Intervals
    n_clusters: int | None
    confidence: float
    warnings: tuple[StatisticsWarning, ...]


_MEAN_METRICS = ("cross_entropy", "kl_divergence", "entropy")


def _per_row(result: ScoreResult, metric: str) -> np.ndarray:
    """ℓᵢ of ``metric``: the per-sample values in the result's unit, or each row's correctness."""
    return result.correct if metric == "accuracy" else getattr(result.per_sample, metric)


def undefined_warning(errors: list[StandardError]) -> tuple[StatisticsWarning, ...]:
    """One STDERR_UNDEFINED warning saying why, when too few rows or clusters leave the errors undefined."""
    for error in errors:
        if error.stderr is None and not error.non_finite and error.reason is not None:
            message = f"standard errors and intervals are null: {error.reason}"
            return (StatisticsWarning(STDERR_UNDEFINED, message),)
    return ()


def uncertainty(result: ScoreResult, confidence: Any = DEFAULT_CONFIDENCE, cluster_ids: Any = None) -> Uncertainty:
    """Standard errors and intervals of every mean of ``result`` (issue 14 §1).

    ℓᵢ is each row's cross-entropy, KL divergence and entropy (in the result's unit; a multi-label row's
    mean over its K labels) or correctness, wᵢ the row weights of the means; each mean gets SE by
    ``weighted_standard_error`` (clustered with ``cluster_ids``) and the interval m ± z·SE around the
    reported mean, z = Φ⁻¹((1 + confidence)/2). Perplexity's interval is e^(the cross-entropy interval in
    nats), whatever the unit. A metric with an infinite per-sample value has a null error and interval (the
    result's NON_FINITE warning says why); too few rows or clusters null them all, with a STDERR_UNDEFINED
    warning.

    Examples
    --------
    The reference example and two more rows (true classes B, A, C):

    >>> from service.core.multiclass import score_multiclass
    >>> probabilities = [[0.228, 0.619, 0.153], [0.5, 0.3, 0.2], [0.1, 0.2, 0.7]]
    >>> result = score_multiclass([1, 0, 2], probabilities)
    >>> spread = uncertainty(result)
    >>> round(result.mean.cross_entropy, 6), round(spread.stderr.cross_entropy, 6), spread.stderr.entropy
    (0.509824, 0.098296, 0.0)
    >>> [round(x, 6) for x in spread.ci.cross_entropy], [round(x, 4) for x in spread.ci.perplexity]
    ([0.317168, 0.70248], [1.3732, 2.0188])
    >>> uncertainty(score_multiclass([1], [[0.228, 0.619, 0.153]])).warnings[0].message
    'standard errors and intervals are null: only 1 scored row has a positive weight; a standard error needs at least 2'
    """
    level = check_confidence(confidence)
    rows = Rows(result.row_weights, None if cluster_ids is None else cluster_labels(cluster_ids, result.n))
    metrics = (*_MEAN_METRICS, "accuracy")
    taken: dict[int, StandardError] = {}  # hard labels: the KL array is the cross-entropy array itself
    errors = []
    for metric in metrics:
        values = _per_row(result, metric)
        if id(values) not in taken:
            taken[id(values)] = rows_standard_error(values, rows)
        errors.append(taken[id(values)])
    ce, kl, h, accuracy = (
        interval(getattr(result.mean, metric), error.stderr, level)
        for metric, error in zip(metrics, errors, strict=True)
    )
    return Uncertainty(
        stderr=Stderrs(*(error.stderr for error in errors)),
        ci=Intervals(ce, kl, h, accuracy, perplexity_interval(ce, result.unit.log_base)),
        n_clusters=rows.n_clusters,
        confidence=level,
        warnings=undefined_warning(errors),
    )


@dataclass(frozen=True)
class PairedDifference:
    """One metric's paired difference model − baseline: mean, SE, interval, z = mean/SE, p and correlation."""

    mean: float | None
    stderr: float | None
    ci: Interval | None
    z: float | None
    p_value: float | None
    correlation: float | None


@dataclass(frozen=True)
class Difference:
    """The answer's ``difference`` block, ``n_clusters``, the per-sample CE differences and the warnings."""

    cross_entropy: PairedDifference
    kl_divergence: PairedDifference
    accuracy: PairedDifference
    n_clusters: int | None
    confidence: float
    per_sample: np.ndarray  # dᵢ of the cross-entropy in the result's unit; NaN on the rows not scored
    warnings: tuple[StatisticsWarning, ...]


def _paired(
    model: np.ndarray, baseline: np.ndarray, differences: np.ndarray, rows: Rows, level: float
) -> tuple[PairedDifference, StandardError]:
    """dᵢ = ℓᵢ(model) − ℓᵢ(baseline): mean, SE and interval of §1 on dᵢ; z = mean/SE, p = erfc(|z|/√2)."""
    error = rows_standard_error(differences, rows)
    z = p_value = None
    if error.stderr is not None and error.stderr > 0 and error.mean is not None:
        z = error.mean / error.stderr
        p_value = two_sided_p_value(z)
    mean = None if error.non_finite else error.mean
    correlation = None
    if rows.n:
        correlation = scaled_correlation(
            Scaled(rows.take(model), rows), Scaled(rows.take(baseline), rows), rows.weights
        )
    paired = PairedDifference(
        mean=mean,
        stderr=error.stderr,
        ci=interval(mean, error.stderr, level),
        z=z,
        p_value=p_value,
        correlation=correlation,
    )
    return paired, error


def paired_difference(
    model: ScoreResult, baseline: ScoreResult, confidence: Any = DEFAULT_CONFIDENCE, cluster_ids: Any = None
) -> Difference:
    """The paired comparison of two models scored on the same rows (issue 14 §2).

    dᵢ = ℓᵢ(model) − ℓᵢ(baseline) per row (negative: the model is better on that metric), for the
    cross-entropy, the KL divergence (both in the results' unit) and the correctness (accuracy); the mean,
    SE and interval of dᵢ by ``weighted_standard_error`` with the model's row weights (clustered with
    ``cluster_ids``), z = mean/SE and p = erfc(|z|/√2), None when SE is 0 or None. Unweighted and
    unclustered, SE(d̄)² = (s_A² + s_B² − 2·s_AB)/n. ``correlation`` is the weighted Pearson correlation
    of the two models' values over the rows with wᵢ > 0, None when either is constant.

    Both results must come from the same labels and weights (so the same rows and row weights), and the
    same unit; the prediction types may differ.

    Examples
    --------
    >>> from service.core.multiclass import score_multiclass
    >>> labels = [1, 0, 2, 1]
    >>> model = score_multiclass(labels, [[0.228, 0.619, 0.153], [0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.2, 0.6, 0.2]])
    >>> baseline = score_multiclass(labels, [[0.3, 0.4, 0.3], [0.4, 0.3, 0.3], [0.3, 0.3, 0.4], [0.4, 0.3, 0.3]])
    >>> ce = paired_difference(model, baseline).cross_entropy
    >>> round(ce.mean, 6), round(ce.stderr, 6), round(ce.z, 3), round(ce.p_value, 6), round(ce.correlation, 6)
    (-0.478137, 0.099838, -4.789, 2e-06, 0.003602)
    """
    level = check_confidence(confidence)
    if baseline.n != model.n:
        raise BadShape("baseline_predictions", f"has {baseline.n} rows but predictions have {model.n}")
    if baseline.unit is not model.unit:
        raise InvalidOption("unit", f"the baseline is in {baseline.unit.value}, the model in {model.unit.value}")
    if not np.array_equal(model.row_weights, baseline.row_weights):
        raise InvalidInput(
            "baseline_predictions", "the baseline was scored with other rows or row weights than the model"
        )
    rows = Rows(model.row_weights, None if cluster_ids is None else cluster_labels(cluster_ids, model.n))
    with np.errstate(invalid="ignore"):  # ∞ − ∞ on a row of weight > 0 is refused as non-finite
        per_sample = model.per_sample.cross_entropy - baseline.per_sample.cross_entropy
    taken: dict[tuple[int, int], tuple[PairedDifference, StandardError]] = {}  # hard labels: KL is CE
    pairs = []
    for metric in ("cross_entropy", "kl_divergence", "accuracy"):
        ours, theirs = _per_row(model, metric), _per_row(baseline, metric)
        if (id(ours), id(theirs)) not in taken:
            with np.errstate(invalid="ignore"):
                differences = per_sample if metric == "cross_entropy" else ours - theirs
            taken[id(ours), id(theirs)] = _paired(ours, theirs, differences, rows, level)
        pairs.append(taken[id(ours), id(theirs)])
    (ce, _), (kl, _), (accuracy, _) = pairs
    return Difference(
        cross_entropy=ce,
        kl_divergence=kl,
        accuracy=accuracy,
        n_clusters=rows.n_clusters,
        confidence=level,
        per_sample=per_sample,
        warnings=undefined_warning([error for _, error in pairs]),
    )
