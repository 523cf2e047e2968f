"""Standard errors of weighted means (HC1, and CR1 with clusters) and weighted correlation.

The formulas of issue 14, over a ``ScoreResult``'s per-sample values ℓᵢ and row weights wᵢ (0 on a row
that was not scored), with m = Σwᵢℓᵢ / Σwᵢ and n the number of rows with wᵢ > 0:

- SE² = n/(n−1) · Σ wᵢ²(ℓᵢ − m)² / (Σwᵢ)²  (HC1; s²/n with Bessel's correction when every wᵢ = 1);
- with G clusters (those holding a row with wᵢ > 0): SE² = G/(G−1) · Σ_g (Σ_{i∈g} wᵢ(ℓᵢ − m))² / (Σwᵢ)²  (CR1);
- the weighted Pearson correlation of two models' values over the same rows.

Intervals and p-values are in ``intervals``; their use on a ``ScoreResult`` (an answer's ``stderr`` and
``ci``, a paired comparison) in ``uncertainty``.

They are the standard errors of statsmodels' ``WLS(ℓ, 1, weights=w).fit(cov_type="HC1")`` and
``.fit(cov_type="cluster", cov_kwds={"groups": g})`` over the rows with wᵢ > 0 (``weighted_standard_error``
says why). Pure NumPy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.core.arrays import describe
from service.core.errors import BadShape, InvalidInput


def cluster_codes(cluster_ids: Any, n: int) -> np.ndarray:
    """Each row's cluster as an integer code 0 … G−1 in the order of the ids, from N strings or N integers.

    A list may hold Python strings or integers, not both (``1`` and ``"1"`` are different clusters, and a
    mix has no order to sort by); an array may be of integer or string dtype. Anything else is refused
    with an InvalidInput naming ``cluster_ids`` and the first offending row. Ids are compared as given.

    >>> cluster_codes(["doc-b", "doc-a", "doc-b"], 3).tolist(), cluster_codes(np.array([7, 7, 3]), 3).tolist()
    ([1, 0, 1], [1, 1, 0])
    """
    ids = _checked_ids(cluster_ids, n)
    if isinstance(ids, list):
        ids = np.array(ids, dtype=object)  # not a string array: that would drop trailing NULs ("a" = "a\0")
    codes: np.ndarray = np.unique(ids, return_inverse=True)[1]
    return codes.reshape(n)


def cluster_labels(cluster_ids: Any, n: int) -> np.ndarray:
    """Each row's cluster as an integer label in [0, 4N): equal ids share a label, in no particular order.

    What the standard errors need of ``cluster_codes``, faster: a list of strings is labelled by a dict
    (each id's first row), not sorted; integers close together by their offset from the smallest. The
    clustered error does not depend on which labels the clusters get (``_cluster_sum_of_squares``).

    >>> cluster_labels(["doc-b", "doc-a", "doc-b"], 3).tolist(), cluster_labels([7, 7, 3], 3).tolist()
    ([0, 1, 0], [4, 4, 0])
    """
    ids = _checked_ids(cluster_ids, n)
    if isinstance(ids, list):
        first_rows: dict[Any, int] = {}
        return np.fromiter(map(first_rows.setdefault, ids, range(n)), dtype=np.intp, count=n)
    if ids.dtype.kind in "iu" and n and int(ids.max()) - int(ids.min()) < 4 * n:
        return (ids - ids.min()).astype(np.intp)
    labels: np.ndarray = np.unique(ids, return_inverse=True)[1]
    return labels.reshape(n)


def _checked_ids(cluster_ids: Any, n: int) -> np.ndarray | list[Any]:
    """N cluster ids of one kind: an integer or string array, or a list of Python strings or big integers."""
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
    return _typed_ids(cluster_ids) if isinstance(cluster_ids, list) else cluster_ids


def _typed_ids(ids: list[Any]) -> np.ndarray | list[Any]:
    """A list of ids of one comparable kind: all strings or all integers (a bool is neither).

    Strings stay a list of Python strings (a NumPy string array would drop trailing NULs, and so merge
    "a" with "a\\0"); integers become an int64 or uint64 array, or stay Python ints beyond 64 bits.
    """
    kinds = set(map(type, ids))
    if kinds == {str}:
        return ids  # the JSON decoder's case, checked without a loop in Python
    if kinds == {int}:
        try:
            return np.fromiter(ids, dtype=np.int64, count=len(ids))
        except OverflowError:
            pass  # beyond int64: below, as uint64 or as Python ints
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
        return ids
    integers = np.array(ids)
    return integers if integers.dtype.kind in "iu" else ids  # beyond 64 bits: Python ints


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


class Rows:
    """The rows of positive weight that every metric's error is taken over, and their weights over 2^a.

    Found once for all metrics: ``keep`` (None when every row counts), the kept weights divided by 2^a (the
    power of two just above the largest, an exact division), their sum, n, and the kept cluster labels.
    """

    def __init__(self, weights: np.ndarray, clusters: np.ndarray | None) -> None:
        keep = weights > 0
        self.keep: np.ndarray | None = None if keep.all() else keep
        kept = self.take(weights)
        self.n = int(kept.shape[0])
        self.clusters = None if clusters is None else self.take(clusters)
        self.n_clusters: int | None = None
        if self.clusters is not None:
            self.n_clusters = int(np.count_nonzero(np.bincount(self.clusters))) if self.n else 0
        #: a: the kept weights are divided by 2^a (0 without rows).
        self.exponent = math.frexp(float(kept.max()))[1] if self.n else 0
        self.weights = np.ldexp(kept, -self.exponent) if self.n else kept
        self.total = float(self.weights.sum())

    def take(self, values: np.ndarray) -> np.ndarray:
        """``values`` on the kept rows."""
        return values if self.keep is None else values[self.keep]


def weighted_standard_error(
    values: np.ndarray, weights: np.ndarray, clusters: np.ndarray | None = None
) -> StandardError:
    """m = Σwᵢℓᵢ / Σwᵢ and its standard error, over the rows with wᵢ > 0.

    Without clusters SE² = n/(n−1) · Σ wᵢ²(ℓᵢ − m)² / (Σwᵢ)², n the number of rows with wᵢ > 0; with integer
    cluster labels (``cluster_codes``; any labels ≥ 0 that are equal exactly within a cluster)
    SE² = G/(G−1) · Σ_g (Σ_{i∈g} wᵢ(ℓᵢ − m))² / (Σwᵢ)², G the number of clusters holding such a row. Rows
    with wᵢ = 0 take no part (their value may be NaN or infinite).

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
        N integer labels ≥ 0, or None for independent rows.

    Examples
    --------
    >>> se = weighted_standard_error(np.array([1.0, 2.0, 4.0]), np.ones(3))
    >>> se.mean, round(se.stderr, 12), round(float(np.std([1, 2, 4], ddof=1) / np.sqrt(3)), 12)
    (2.3333333333333335, 0.881917103688, 0.881917103688)
    >>> weighted_standard_error(np.array([1.0, 2.0, 4.0]), np.ones(3), np.array([0, 0, 0])).reason
    'the scored rows of positive weight lie in 1 cluster; a clustered standard error needs at least 2'
    """
    return rows_standard_error(values, Rows(weights, clusters))


def rows_standard_error(values: np.ndarray, rows: Rows) -> StandardError:
    """``weighted_standard_error`` of ``values`` over rows found once for every metric."""
    n, n_clusters = rows.n, rows.n_clusters
    if n == 0:
        return StandardError(None, None, 0, n_clusters, "no scored row has a positive weight")
    scaled = Scaled(rows.take(values), rows)
    if scaled.values is None:
        return StandardError(None, None, n, n_clusters, "some per-sample values are infinite", non_finite=True)
    mean = math.ldexp(scaled.mean, scaled.exponent)
    reason = too_few(n, n_clusters)
    if reason is not None:
        return StandardError(mean, None, n, n_clusters, reason)
    if scaled.constant:
        return StandardError(mean, 0.0, n, n_clusters, None)  # not the rounding noise of m − ℓᵢ
    scores = rows.weights * (scaled.values - scaled.mean)  # wᵢ(ℓᵢ − m), scaled; each below 2 in size
    if rows.clusters is None:
        variance = n / (n - 1) * float(np.dot(scores, scores))
    else:
        assert n_clusters is not None
        variance = n_clusters / (n_clusters - 1) * _cluster_sum_of_squares(rows.clusters, scores)
    stderr = _times_power_of_two(math.sqrt(variance) / rows.total, scaled.exponent)
    return StandardError(mean, stderr, n, n_clusters, None)


class Scaled:
    """Kept values ℓᵢ over 2^b, the power of two just above the largest |ℓᵢ|, and their weighted mean.

    ``values`` is None when some ℓᵢ is infinite (or NaN); ``constant`` when they are all equal. One pass for
    the minimum and one for the maximum find all three facts.
    """

    def __init__(self, kept: np.ndarray, rows: Rows) -> None:
        low, high = float(kept.min()), float(kept.max())
        self.constant = low == high
        self.exponent = 0
        self.mean = math.nan
        self.values: np.ndarray | None = None
        if math.isfinite(low) and math.isfinite(high):  # NaN too fails this: min and max propagate it
            largest = max(high, -low)
            self.exponent = math.frexp(largest)[1] if largest > 0 else 0
            self.values = np.ldexp(kept, -self.exponent)
            self.mean = float(np.dot(rows.weights, self.values)) / rows.total


def _cluster_sum_of_squares(clusters: np.ndarray, scores: np.ndarray) -> float:
    """Σ_g (Σ_{i∈g} sᵢ)², the same to the last bit however the clusters are labelled.

    Each cluster's sum is taken in row order; their squares are added smallest first, leaving out the
    empty labels (exact zeros add nothing), so the result depends on the clusters, not on their labels.
    """
    by_cluster = np.bincount(clusters, weights=scores)
    squares = by_cluster * by_cluster
    return float(np.sort(squares[squares > 0]).sum())


def too_few(n: int, n_clusters: int | None) -> str | None:
    """Why n ≥ 1 rows of positive weight in ``n_clusters`` clusters (None: unclustered) have no standard error."""
    if n < 2:
        return f"{_rows_with_weight(n)}; a standard error needs at least 2"
    if n_clusters is not None and n_clusters < 2:
        return (
            f"the scored rows of positive weight lie in {n_clusters} cluster; "
            "a clustered standard error needs at least 2"
        )
    return None


def cluster_keys(cluster_ids: Any, n: int) -> tuple[list[Any], np.ndarray]:
    """The distinct cluster ids (as Python strings or ints) and each row's index among them.

    >>> cluster_keys(["doc-b", "doc-a", "doc-b"], 3)
    (['doc-b', 'doc-a'], array([0, 1, 0]))
    """
    ids = _checked_ids(cluster_ids, n)
    if isinstance(ids, np.ndarray) and ids.dtype.kind in "iu":
        keys, codes = np.unique(ids, return_inverse=True)
        return [int(key) for key in keys.tolist()], codes.reshape(n)
    first_rows: dict[Any, int] = {}
    values = ids.tolist() if isinstance(ids, np.ndarray) else ids
    if isinstance(ids, np.ndarray) and ids.dtype.kind == "S":
        values = [value.decode("latin-1") for value in values]
    labels = [first_rows.setdefault(value, len(first_rows)) for value in values]
    return list(first_rows), np.array(labels, dtype=np.intp).reshape(n)


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
    rows = Rows(weights, None)
    if not rows.n:
        return None
    return scaled_correlation(Scaled(rows.take(a), rows), Scaled(rows.take(b), rows), rows.weights)


def scaled_correlation(a: Scaled, b: Scaled, weights: np.ndarray) -> float | None:
    """``weighted_correlation`` of two kept, scaled value arrays."""
    if a.values is None or b.values is None or a.constant or b.constant:
        return None
    da, db = a.values - a.mean, b.values - b.mean
    weighted = weights * da
    covariance = float(np.dot(weighted, db))
    spread = math.sqrt(float(np.dot(weighted, da))) * math.sqrt(float(np.dot(weights * db, db)))
    return max(-1.0, min(1.0, covariance / spread)) if spread > 0 else None
