"""How sure an evaluation can be: standard errors, confidence intervals and paired comparisons.

The formulas of issue 14, over a ``ScoreResult``'s per-sample values ℓᵢ and row weights wᵢ (0 on a row
that was not scored), with m = Σwᵢℓᵢ / Σwᵢ and n the number of rows with wᵢ > 0:

- SE² = n/(n−1) · Σ wᵢ²(ℓᵢ − m)² / (Σwᵢ)²  (HC1; s²/n with Bessel's correction when every wᵢ = 1);
- with G clusters (those holding a row with wᵢ > 0): SE² = G/(G−1) · Σ_g (Σ_{i∈g} wᵢ(ℓᵢ − m))² / (Σwᵢ)²  (CR1);
- interval m ± z·SE with z = Φ⁻¹((1 + confidence)/2); perplexity's is e^(the cross-entropy interval in nats);
- a paired difference dᵢ = ℓᵢ(model) − ℓᵢ(baseline) gets the same mean, SE and interval, z = mean/SE and
  p = erfc(|z|/√2).

They are the standard errors of statsmodels' ``WLS(ℓ, 1, weights=w).fit(cov_type="HC1")`` and
``.fit(cov_type="cluster", cov_kwds={"groups": g})`` over the rows with wᵢ > 0 (``weighted_standard_error``
says why). Pure Python and NumPy: Φ⁻¹ is Wichura's algorithm AS 241, not SciPy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from service.core.arrays import describe
from service.core.contract import MAX_EXP_NATS, UNCERTAINTY_OPTIONS
from service.core.errors import BadShape, InvalidInput, InvalidOption, quoted
from service.core.result import ScoreResult

#: The warning code of a standard error that cannot be taken (too few rows or clusters); not yet a ``WarningCode``
#: because ``/health`` lists those, and this one joins them when the answer carries ``stderr``.
STDERR_UNDEFINED: Final = "STDERR_UNDEFINED"
#: The default confidence level of the intervals, from the contract.
DEFAULT_CONFIDENCE: Final[float] = UNCERTAINTY_OPTIONS["confidence"].default

#: A confidence interval (low, high).
Interval = tuple[float, float]

# Wichura (1988), algorithm AS 241 PPND16: rational approximations of Φ⁻¹ good to about 1e-16, as
# coefficients of r⁰ … r⁷ (numerator, then denominator) on each of its three ranges.
_CENTRAL = (
    (
        3.387132872796366608,
        133.14166789178437745,
        1971.5909503065514427,
        13731.693765509461125,
        45921.953931549871457,
        67265.770927008700853,
        33430.575583588128105,
        2509.0809287301226727,
    ),
    (
        1.0,
        42.313330701600911252,
        687.1870074920579083,
        5394.1960214247511077,
        21213.794301586595867,
        39307.89580009271061,
        28729.085735721942674,
        5226.495278852545925,
    ),
)
_INTERMEDIATE = (
    (
        1.42343711074968357734,
        4.6303378461565452959,
        5.7694972214606914055,
        3.64784832476320460504,
        1.27045825245236838258,
        0.24178072517745061177,
        0.0227238449892691845833,
        7.7454501427834140764e-4,
    ),
    (
        1.0,
        2.05319162663775882187,
        1.6763848301838038494,
        0.68976733498510000455,
        0.14810397642748007459,
        0.0151986665636164571966,
        5.475938084995344946e-4,
        1.05075007164441684324e-9,
    ),
)
_TAIL = (
    (
        6.6579046435011037772,
        5.4637849111641143699,
        1.7848265399172913358,
        0.29656057182850489123,
        0.026532189526576123093,
        0.0012426609473880784386,
        2.71155556874348757815e-5,
        2.01033439929228813265e-7,
    ),
    (
        1.0,
        0.59983220655588793769,
        0.13692988092273580531,
        0.014875361290850615025,
        7.868691311456132591e-4,
        1.8463183175100546818e-5,
        1.4215117583164458887e-7,
        2.04426310338993978564e-15,
    ),
)


def _rational(coefficients: tuple[tuple[float, ...], tuple[float, ...]], r: float) -> float:
    """Σ aₖrᵏ / Σ bₖrᵏ by Horner's rule."""
    numerator, denominator = 0.0, 0.0
    for a, b in zip(reversed(coefficients[0]), reversed(coefficients[1]), strict=True):
        numerator = numerator * r + a
        denominator = denominator * r + b
    return numerator / denominator


def normal_quantile(p: float) -> float:
    """Φ⁻¹(p), the standard normal quantile, by Wichura's AS 241 (relative error about 1e-16).

    Near the centre (|p − ½| ≤ 0.425) Φ⁻¹(p) = q·A(r)/B(r) with q = p − ½ and r = 0.180625 − q²; in the
    tails, with r = √(−ln min(p, 1 − p)), a rational function of r − 1.6 (r ≤ 5) or r − 5, signed like q.
    Φ⁻¹(0) = −∞ and Φ⁻¹(1) = +∞, as ``scipy.special.ndtri``.

    Parameters
    ----------
    p
        A probability in [0, 1].

    Examples
    --------
    >>> f"{normal_quantile(0.975):.15f}", normal_quantile(0.5), f"{normal_quantile(1e-300):.6f}"
    ('1.959963984540054', 0.0, '-37.047096')
    """
    if not 0.0 <= p <= 1.0:  # NaN fails this too
        raise ValueError(f"normal_quantile: p must be a probability in [0, 1], got {p!r}")
    q = p - 0.5
    if abs(q) <= 0.425:
        return q * _rational(_CENTRAL, 0.180625 - q * q)
    tail = p if q < 0 else 1.0 - p  # exact: p > 0.925 here, so 1 − p loses nothing (Sterbenz)
    if tail == 0.0:
        return math.copysign(math.inf, q)
    r = math.sqrt(-math.log(tail))
    value = _rational(_INTERMEDIATE, r - 1.6) if r <= 5.0 else _rational(_TAIL, r - 5.0)
    return -value if q < 0 else value


def two_sided_p_value(z: float) -> float:
    """P(|Z| ≥ |z|) for a standard normal Z: erfc(|z|/√2).

    >>> round(two_sided_p_value(1.959963984540054), 12), two_sided_p_value(0.0)
    (0.05, 1.0)
    """
    return math.erfc(abs(z) / math.sqrt(2.0))


def check_confidence(confidence: Any) -> float:
    """``confidence`` as a float in (0, 1), or InvalidOption naming ``confidence``.

    >>> check_confidence(0.9)
    0.9
    """
    option = UNCERTAINTY_OPTIONS["confidence"]
    if isinstance(confidence, bool) or not isinstance(confidence, int | float):
        raise InvalidOption("confidence", f"expected a number in {option.interval}, got {describe(confidence)}")
    value = float(confidence)
    if not (math.isfinite(value) and option.contains(value)):
        raise InvalidOption("confidence", f"{quoted(confidence)} is outside {option.interval}")
    return value


def interval(mean: float | None, stderr: float | None, confidence: float) -> Interval | None:
    """The normal interval m ± z·SE with z = Φ⁻¹((1 + confidence)/2); None without a mean or a standard error.

    >>> interval(0.5, 0.1, 0.95)
    (0.3040036015459946, 0.6959963984540054)
    """
    if mean is None or stderr is None or not math.isfinite(mean):
        return None
    z = normal_quantile((1.0 + confidence) / 2.0)
    with np.errstate(over="ignore"):
        half = float(np.float64(z) * np.float64(stderr))  # a standard error near 1e308 gives ±inf, not an error
    return mean - half, mean + half


def perplexity_interval(cross_entropy: Interval | None, log_base: float) -> Interval | None:
    """Perplexity's interval: e^(the cross-entropy interval in nats), the interval in its unit times ln(base).

    >>> perplexity_interval((0.4, 0.6), 1.0) == (math.exp(0.4), math.exp(0.6))
    True
    """
    if cross_entropy is None:
        return None
    low, high = (value * log_base for value in cross_entropy)
    return _exp(low), _exp(high)


def _exp(nats: float) -> float:
    """e^x, +inf past MAX_EXP_NATS (where ``math.exp`` raises)."""
    return math.exp(nats) if nats < MAX_EXP_NATS else math.inf


def cluster_codes(cluster_ids: Any, n: int) -> np.ndarray:
    """Each row's cluster as an integer code 0 … G−1, from N strings or N integers compared as given.

    A list may hold Python strings or integers, not both (``1`` and ``"1"`` are different clusters, and a
    mix has no order to sort by); an array may be of integer or string dtype. Anything else is refused
    with an InvalidInput naming ``cluster_ids`` and the first offending row.

    >>> cluster_codes(["doc-b", "doc-a", "doc-b"], 3).tolist(), cluster_codes(np.array([7, 7, 3]), 3).tolist()
    ([1, 0, 1], [1, 1, 0])
    """
    if isinstance(cluster_ids, np.ndarray):
        if cluster_ids.ndim != 1:
            raise BadShape("cluster_ids", f"expected a 1-D array of N = {n} ids, got {cluster_ids.ndim} dimensions")
        if cluster_ids.dtype.kind not in "iuUS":
            if cluster_ids.dtype.kind != "O":
                raise InvalidInput(
                    "cluster_ids", f"cluster ids are strings or integers, got an array of dtype {cluster_ids.dtype}"
                )
            cluster_ids = list(cluster_ids)
    elif isinstance(cluster_ids, list | tuple):
        cluster_ids = list(cluster_ids)
    else:
        raise InvalidInput(
            "cluster_ids", f"expected an array of N = {n} strings or integers, got {describe(cluster_ids)}"
        )
    if len(cluster_ids) != n:
        raise BadShape("cluster_ids", f"has {len(cluster_ids)} entries but there are {n} rows")
    if isinstance(cluster_ids, list):
        cluster_ids = _typed_ids(cluster_ids)
    codes: np.ndarray = np.unique(cluster_ids, return_inverse=True)[1]
    return codes.reshape(n)


def _typed_ids(ids: list[Any]) -> np.ndarray:
    """A list of ids as an array of one comparable kind: all strings or all integers (a bool is neither)."""
    strings = bool(ids) and isinstance(ids[0], str)
    for row, value in enumerate(ids):
        fits = (
            isinstance(value, str) if strings else isinstance(value, int | np.integer) and not isinstance(value, bool)
        )
        if not fits:
            after = f" after {'a string' if strings else 'an integer'} in row 0" if row else ""
            raise InvalidInput(
                "cluster_ids",
                f"cluster ids are all strings or all integers, got {describe(value)}{after}",
                row=row,
            )
    if strings:
        # Python objects: a NumPy string array would drop trailing NULs, and so merge "a" with "a\0".
        return np.array(ids, dtype=object)
    integers = np.array(ids)
    return integers if integers.dtype.kind in "iu" else np.array(ids, dtype=object)  # beyond 64 bits: as Python ints


@dataclass(frozen=True)
class StandardError:
    """A weighted mean and its standard error, with why the error is missing when it is.

    ``stderr`` is None when n < 2, G < 2 or a value is infinite (``non_finite``); ``reason`` says which.
    """

    mean: float | None
    stderr: float | None
    n: int
    n_clusters: int | None
    reason: str | None
    non_finite: bool = False


def weighted_standard_error(
    values: np.ndarray, weights: np.ndarray, clusters: np.ndarray | None = None
) -> StandardError:
    """m = Σwᵢℓᵢ / Σwᵢ and its standard error, over the rows with wᵢ > 0.

    Without clusters SE² = n/(n−1) · Σ wᵢ²(ℓᵢ − m)² / (Σwᵢ)², n the number of rows with wᵢ > 0; with integer
    cluster codes (``cluster_codes``) SE² = G/(G−1) · Σ_g (Σ_{i∈g} wᵢ(ℓᵢ − m))² / (Σwᵢ)², G the number of
    clusters holding such a row. Rows with wᵢ = 0 take no part (their value may be NaN or infinite).

    These are statsmodels' ``WLS(ℓ, np.ones(n), weights=w).fit(cov_type="HC1")`` and
    ``.fit(cov_type="cluster", cov_kwds={"groups": g})`` over the n rows with wᵢ > 0: WLS scales each row
    by √wᵢ, so β̂ = m, the whitened residual is √wᵢ(ℓᵢ − m) and the regressor √wᵢ; the sandwich is
    (Σwᵢ)⁻² · Σ (√wᵢ · √wᵢ(ℓᵢ − m))² = Σwᵢ²(ℓᵢ − m)² / (Σwᵢ)², times nobs/(nobs − 1) for HC1, and for
    the cluster error G/(G−1) · (nobs − 1)/(nobs − k), which is G/(G−1) with the one regressor k = 1.
    Rows of weight 0 must be left out of the statsmodels fit: they would count in its nobs.

    Neither a weight near 1e308 nor a value near it overflows: everything is taken over wᵢ/2^a and ℓᵢ/2^b,
    with 2^a and 2^b the powers of two just above the largest weight and |value| (exact divisions), and
    SE is independent of the weights' scale. Constant values give SE = 0 exactly.

    Parameters
    ----------
    values
        ℓᵢ, N per-sample values.
    weights
        wᵢ ≥ 0, N finite row weights (0 on the rows left out).
    clusters
        N integer codes ≥ 0, or None for independent rows.

    Examples
    --------
    >>> se = weighted_standard_error(np.array([1.0, 2.0, 4.0]), np.ones(3))
    >>> se.mean, round(se.stderr, 12), round(float(np.std([1, 2, 4], ddof=1) / np.sqrt(3)), 12)
    (2.3333333333333335, 0.881917103688, 0.881917103688)
    >>> weighted_standard_error(np.array([1.0, 2.0, 4.0]), np.ones(3), np.array([0, 0, 0])).reason
    'the scored rows of positive weight lie in 1 cluster; a clustered standard error needs at least 2'
    """
    keep = weights > 0
    every = bool(keep.all())
    kept_values = values if every else values[keep]
    kept_weights = weights if every else weights[keep]
    n = int(kept_values.shape[0])
    n_clusters = None
    kept_codes = None
    if clusters is not None:
        kept_codes = clusters if every else clusters[keep]
        n_clusters = int(np.count_nonzero(np.bincount(kept_codes))) if n else 0
    if not np.isfinite(kept_values).all():
        return StandardError(None, None, n, n_clusters, "some per-sample values are infinite", non_finite=True)
    if n == 0:
        return StandardError(None, None, 0, n_clusters, "no scored row has a positive weight")
    scaled_weights = np.ldexp(kept_weights, -math.frexp(float(kept_weights.max()))[1])
    largest = float(np.abs(kept_values).max())
    value_exponent = math.frexp(largest)[1] if largest > 0 else 0
    scaled_values = np.ldexp(kept_values, -value_exponent)
    total = float(scaled_weights.sum())
    mean = math.ldexp(float(np.dot(scaled_weights, scaled_values)) / total, value_exponent)
    if n < 2:
        return StandardError(mean, None, n, n_clusters, f"{_rows_with_weight(n)}; a standard error needs at least 2")
    if n_clusters is not None and n_clusters < 2:
        return StandardError(
            mean,
            None,
            n,
            n_clusters,
            f"the scored rows of positive weight lie in {n_clusters} cluster; "
            "a clustered standard error needs at least 2",
        )
    if kept_values.min() == kept_values.max():
        return StandardError(mean, 0.0, n, n_clusters, None)  # not the rounding noise of m − ℓᵢ
    scaled_mean = float(np.dot(scaled_weights, scaled_values)) / total
    scores = scaled_weights * (scaled_values - scaled_mean)  # wᵢ(ℓᵢ − m), scaled; each below 2 in size
    if kept_codes is None:
        variance = n / (n - 1) * float(np.dot(scores, scores))
    else:
        assert n_clusters is not None
        by_cluster = np.bincount(kept_codes, weights=scores)
        variance = n_clusters / (n_clusters - 1) * float(np.dot(by_cluster, by_cluster))
    stderr = _times_power_of_two(math.sqrt(variance) / total, value_exponent)
    return StandardError(mean, stderr, n, n_clusters, None)


def _rows_with_weight(n: int) -> str:
    """'only 1 scored row has a positive weight' and the like."""
    return "only 1 scored row has a positive weight" if n == 1 else f"only {n} scored rows have a positive weight"


def _times_power_of_two(value: float, exponent: int) -> float:
    """value·2^exponent, +inf where that exceeds float64."""
    try:
        return math.ldexp(value, exponent)
    except OverflowError:
        return math.inf


def weighted_correlation(a: np.ndarray, b: np.ndarray, weights: np.ndarray) -> float | None:
    """Weighted Pearson correlation Σwᵢ(aᵢ − ā)(bᵢ − b̄) / √(Σwᵢ(aᵢ − ā)² · Σwᵢ(bᵢ − b̄)²) over wᵢ > 0.

    ā and b̄ are the weighted means. None when either is constant there, a value is not finite, or no row has
    weight. Weights and values are divided by powers of two first, so that nothing overflows.

    >>> weighted_correlation(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 7.0]), np.ones(3))
    0.9933992677987828
    """
    keep = weights > 0
    a, b, w = a[keep], b[keep], weights[keep]
    if not a.size or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return None
    if a.min() == a.max() or b.min() == b.max():
        return None
    w = np.ldexp(w, -math.frexp(float(w.max()))[1])
    centred = []
    for values in (a, b):
        scaled = np.ldexp(values, -math.frexp(float(np.abs(values).max()))[1])
        centred.append(scaled - np.dot(w, scaled) / w.sum())
    da, db = centred
    covariance = float(np.dot(w * da, db))
    spread = math.sqrt(float(np.dot(w * da, da))) * math.sqrt(float(np.dot(w * db, db)))
    return max(-1.0, min(1.0, covariance / spread)) if spread > 0 else None


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


def _undefined_warning(errors: list[StandardError]) -> tuple[StatisticsWarning, ...]:
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
    codes = None if cluster_ids is None else cluster_codes(cluster_ids, result.n)
    metrics = (*_MEAN_METRICS, "accuracy")
    taken: dict[int, StandardError] = {}  # hard labels: the KL array is the cross-entropy array itself
    errors = []
    for metric in metrics:
        values = _per_row(result, metric)
        if id(values) not in taken:
            taken[id(values)] = weighted_standard_error(values, result.row_weights, codes)
        errors.append(taken[id(values)])
    ce, kl, h, accuracy = (
        interval(getattr(result.mean, metric), error.stderr, level)
        for metric, error in zip(metrics, errors, strict=True)
    )
    n_clusters = None if codes is None else errors[0].n_clusters
    return Uncertainty(
        stderr=Stderrs(*(error.stderr for error in errors)),
        ci=Intervals(ce, kl, h, accuracy, perplexity_interval(ce, result.unit.log_base)),
        n_clusters=n_clusters,
        confidence=level,
        warnings=_undefined_warning(errors),
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
    model: np.ndarray, baseline: np.ndarray, weights: np.ndarray, codes: np.ndarray | None, level: float
) -> tuple[PairedDifference, StandardError]:
    """dᵢ = ℓᵢ(model) − ℓᵢ(baseline): mean, SE and interval of §1 on dᵢ; z = mean/SE, p = erfc(|z|/√2)."""
    with np.errstate(invalid="ignore"):  # ∞ − ∞ on a row of weight > 0 is refused as non-finite below
        differences = model - baseline
    error = weighted_standard_error(differences, weights, codes)
    z = p_value = None
    if error.stderr is not None and error.stderr > 0 and error.mean is not None:
        z = error.mean / error.stderr
        p_value = two_sided_p_value(z)
    mean = None if error.non_finite else error.mean
    paired = PairedDifference(
        mean=mean,
        stderr=error.stderr,
        ci=interval(mean, error.stderr, level),
        z=z,
        p_value=p_value,
        correlation=weighted_correlation(model, baseline, weights),
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
    codes = None if cluster_ids is None else cluster_codes(cluster_ids, model.n)
    weights = model.row_weights
    pairs = [
        _paired(_per_row(model, metric), _per_row(baseline, metric), weights, codes, level)
        for metric in ("cross_entropy", "kl_divergence", "accuracy")
    ]
    with np.errstate(invalid="ignore"):
        per_sample = model.per_sample.cross_entropy - baseline.per_sample.cross_entropy
    (ce, _), (kl, _), (accuracy, _) = pairs
    return Difference(
        cross_entropy=ce,
        kl_divergence=kl,
        accuracy=accuracy,
        n_clusters=None if codes is None else pairs[0][1].n_clusters,
        confidence=level,
        per_sample=per_sample,
        warnings=_undefined_warning([error for _, error in pairs]),
    )
