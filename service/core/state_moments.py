"""The mergeable moments of one metric (HC1) and the per-cluster shares and means (CR1) of a scoring state.

The formulas, and how two states' moments merge (the parallel, Chan update of centred moments), are in
``service.core.score_state``; here are the accumulators, how they are taken from a result's rows, and how a
state's copy of them is validated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from service.core.arrays import describe
from service.core.state import StateError, field, number, number_list
from service.core.statistics import Rows, Scaled, cluster_keys

#: The keys of one metric's moments in a state.
MOMENT_KEYS: Final = ("mean", "sum", "min", "max", "w2", "w2_dev", "w2_dev2", "finite")
#: How far a forged state's numbers may stray from what they must satisfy before they are refused (rounding).
_SLACK: Final = 1e-9


@dataclass(frozen=True)
class Moments:
    """One metric over the rows of positive weight: mean m, sum, smallest and largest value, and v, p, q.

    v = Σwᵢ²/W², p = Σwᵢ²(ℓᵢ − m)/W², q = Σwᵢ²(ℓᵢ − m)²/W²; ``finite`` is false when some ℓᵢ is infinite
    (then the mean, bounds and moments are not kept). Without such rows mean, low and high are None.
    """

    mean: float | None
    total: float | None
    low: float | None
    high: float | None
    v: float
    p: float
    q: float
    finite: bool = True

    def to_state(self) -> dict[str, Any]:
        """The JSON form (``MOMENT_KEYS``)."""
        return {
            "mean": self.mean,
            "sum": self.total,
            "min": self.low,
            "max": self.high,
            "w2": self.v,
            "w2_dev": self.p,
            "w2_dev2": self.q,
            "finite": self.finite,
        }


def _number(value: Any, path: Sequence[str | int], index: int) -> float:
    """A finite number (not null)."""
    checked = number(value, path, index)
    assert checked is not None
    return checked


def merge_moments(parts: Sequence[Moments], shares: np.ndarray) -> Moments:
    """The moments of the union of ``parts``' rows, ``shares`` their fractions W_s/W of the total weight.

    The parallel (Chan) update of k sets at once: m = Σ f_s·m_s, and with δ_s = m_s − m,
    v = Σ f_s²·v_s, p = Σ f_s²·(p_s + δ_s·v_s), q = Σ f_s²·(q_s + 2δ_s·p_s + δ_s²·v_s).
    """
    totals = [part.total for part in parts]
    listed = [t for t in totals if t is not None]
    with np.errstate(over="ignore"):
        total = float(np.sum(listed)) if len(listed) == len(totals) else None
    if total is not None and not math.isfinite(total):
        total = None  # the sum overflows float64: null, with AGGREGATE_OVERFLOW (``score_state``)
    if not all(part.finite for part in parts):
        return Moments(None, total, None, None, 0.0, 0.0, 0.0, finite=False)
    kept = [i for i, part in enumerate(parts) if part.mean is not None and shares[i] > 0]
    if not kept:
        return Moments(None, total, None, None, 0.0, 0.0, 0.0)
    if len(kept) == 1:
        part = parts[kept[0]]
        return Moments(part.mean, total, part.low, part.high, part.v, part.p, part.q)
    table = np.array([[parts[i].mean, parts[i].low, parts[i].high, parts[i].v, parts[i].p, parts[i].q] for i in kept])
    return merge_moment_table(table, shares[kept], total)


def merge_moment_table(table: np.ndarray, f: np.ndarray, total: float | None) -> Moments:
    """``merge_moments`` of k ≥ 2 sets of rows with finite moments, given as a k × 6 table of their mean, min, max,
    v, p and q (the columns of ``PLAIN_COLUMNS``) with their shares ``f`` of the weight, and the merged sum."""
    means, v, p, q = table[:, 0], table[:, 3], table[:, 4], table[:, 5]
    mean = float(np.dot(f, means))
    gaps = means - mean  # δ_s = m_s − m
    squares = f * f
    return Moments(
        mean=mean,
        total=total,
        low=float(table[:, 1].min()),
        high=float(table[:, 2].max()),
        v=float(np.dot(squares, v)),
        p=float(np.dot(squares, p + gaps * v)),
        q=max(0.0, float(np.dot(squares, q + 2 * gaps * p + gaps * gaps * v))),
    )


class Shares:
    """fᵢ = wᵢ/W over the rows of positive weight (each at most 1) and v = Σfᵢ², found once for every metric."""

    def __init__(self, rows: Rows) -> None:
        self.rows = rows
        self.f = rows.weights / rows.total if rows.n else rows.weights
        self.v = float(np.dot(self.f, self.f))


#: Below this largest |ℓᵢ| the moments are taken in plain float64: (fᵢ·(ℓᵢ − m))² cannot overflow.
_PLAIN_LIMIT = 1e150


def moments_of(values: np.ndarray, shares: Shares, mean: float | None, total: float | None) -> Moments:
    """The moments of ``values`` over the rows of ``shares``, centred on the answer's ``mean``, with its sum ``total``.

    p = Σfᵢ²(ℓᵢ − m) and q = Σ(fᵢ(ℓᵢ − m))². Values beyond 1e150 are divided by 2^b first (``statistics.Scaled``),
    the moments taken around the scaled mean c and moved to m: p(m) = p(c) + (c − m)·v and
    q(m) = q(c) + 2(c − m)·p(c) + (c − m)²·v.
    """
    rows, v = shares.rows, shares.v
    if rows.n == 0:
        return Moments(None, total, None, None, 0.0, 0.0, 0.0)
    kept = rows.take(values)
    low, high = float(kept.min()), float(kept.max())
    if not (math.isfinite(low) and math.isfinite(high)) or mean is None or not math.isfinite(mean):
        return Moments(None, None, None, None, 0.0, 0.0, 0.0, finite=False)  # NaN fails isfinite too
    if max(-low, high) < _PLAIN_LIMIT:
        scores = shares.f * (kept - mean)  # fᵢ(ℓᵢ − m)
        p, q = float(np.dot(shares.f, scores)), float(np.dot(scores, scores))
        return Moments(mean, total, low, high, v, p, q)
    scaled = Scaled(kept, rows)
    assert scaled.values is not None
    deviations = scaled.values - scaled.mean
    squares = shares.f * shares.f
    with np.errstate(over="ignore"):
        p = math.ldexp(float(np.dot(squares, deviations)), scaled.exponent)
        q = float(np.ldexp(np.float64(np.dot(squares, deviations * deviations)), 2 * scaled.exponent))
    shift = math.ldexp(scaled.mean, scaled.exponent) - mean
    q = max(0.0, q + 2 * shift * p + shift * shift * v)
    p = p + shift * v
    return Moments(mean, total, low, high, v, p, q)


def moments_of_all(
    columns: Sequence[np.ndarray], shares: Shares, means: Sequence[float | None], totals: Sequence[float | None]
) -> list[Moments]:
    """``moments_of`` of several metrics' values over the same rows: a few rows (a small request) in plain floats
    at once, where NumPy's cost per call would be most of the state's; more, metric by metric in NumPy (an N×k
    table would copy the columns, and costs more than it saves)."""
    centres = [mean for mean in means if mean is not None and math.isfinite(mean)]
    if 0 < shares.rows.n <= _FEW_ROWS and len(centres) == len(columns):
        few = _few_moments(columns, shares, centres, totals)
        if few is not None:
            return few
    return [moments_of(column, shares, mean, total) for column, mean, total in zip(columns, means, totals, strict=True)]


#: Up to this many rows of positive weight, a state's moments are summed in Python: NumPy's cost per call,
#: not per value, would be most of a small request's state.
_FEW_ROWS: Final = 8


def _few_moments(
    columns: Sequence[np.ndarray], shares: Shares, means: Sequence[float], totals: Sequence[float | None]
) -> list[Moments] | None:
    """``moments_of_all`` of a few rows in plain floats; None when a value is not finite or beyond 1e150."""
    f = shares.f.tolist()
    found = []
    for column, mean, total in zip(columns, means, totals, strict=True):
        values = shares.rows.take(column).tolist()
        low, high = min(values), max(values)
        if not (math.isfinite(low) and math.isfinite(high)) or max(-low, high) >= _PLAIN_LIMIT:
            return None
        scores = [w * (x - mean) for w, x in zip(f, values, strict=True)]  # fᵢ(ℓᵢ − m)
        p = sum(w * score for w, score in zip(f, scores, strict=True))
        found.append(Moments(mean, total, low, high, shares.v, p, sum(score * score for score in scores)))
    return found


def read_moments(value: Any, path: Sequence[str | int], index: int, n_weighted: int, weight: float) -> Moments:
    """A state's moments of one metric, checked against each other and the state's counts and weight."""
    fast = _plain_moments(value, n_weighted)
    if fast is not None:
        return _checked(Moments(*fast), path, index, n_weighted, weight)
    if not isinstance(value, Mapping):
        raise StateError(tuple(path), f"expected a JSON object, got {describe(value)}", index)
    for key in MOMENT_KEYS:
        field(value, key, path, index)
    extra = [key for key in value if key not in MOMENT_KEYS]
    if extra:
        raise StateError(tuple(path), f"unknown key {str(extra[0])[:64]!r} (keys: {', '.join(MOMENT_KEYS)})", index)
    finite = value["finite"]
    if not isinstance(finite, bool):
        raise StateError((*path, "finite"), f"expected true or false, got {describe(finite)}", index)
    mean, low, high = (number(value[key], (*path, key), index, nullable=True) for key in ("mean", "min", "max"))
    total = number(value["sum"], (*path, "sum"), index, nullable=True)
    v, p, q = (_number(value[key], (*path, key), index) for key in ("w2", "w2_dev", "w2_dev2"))
    if not finite or n_weighted == 0:
        reason = "some values are infinite (finite is false)" if not finite else "no row has a positive weight"
        for key, given in (("mean", mean), ("min", low), ("max", high)):
            if given is not None:
                raise StateError((*path, key), f"must be null: {reason}", index)
        if v or p or q:
            raise StateError((*path, "w2"), f"the moments must be 0: {reason}", index)
        return Moments(None, total, None, None, 0.0, 0.0, 0.0, finite=finite)
    if mean is None or low is None or high is None:
        key = "mean" if mean is None else "min" if low is None else "max"
        raise StateError((*path, key), f"expected a number: {n_weighted} rows have a positive weight", index)
    return _checked(Moments(mean, total, low, high, v, p, q), path, index, n_weighted, weight)


_PLAIN = frozenset({int, float})


def _plain_moments(value: Any, n_weighted: int) -> tuple[float, float | None, float, float, float, float, float] | None:
    """The numbers of well-formed finite moments of rows of positive weight, read at once; None: take the long way
    (which checks each and names what is wrong)."""
    if type(value) is not dict or value.keys() != _KEY_SET or value["finite"] is not True or not n_weighted:
        return None
    numbers = [value[key] for key in _NUMBERS]
    total = value["sum"]
    if not set(map(type, numbers)) <= _PLAIN or not (total is None or type(total) in _PLAIN):
        return None
    try:
        floats = list(map(float, numbers if total is None else [*numbers, total]))
    except OverflowError:  # an integer beyond float64
        return None
    if not all(map(math.isfinite, floats)):
        return None
    mean, low, high, v, p, q = floats[:6]
    return mean, None if total is None else floats[6], low, high, v, p, q


_NUMBERS = ("mean", "min", "max", "w2", "w2_dev", "w2_dev2")
#: The numbers of a metric's moments other than its sum, in the order of ``merge_moment_table``'s columns.
PLAIN_COLUMNS: Final = _NUMBERS
_KEY_SET = frozenset(MOMENT_KEYS)


def _checked(moments: Moments, path: Sequence[str | int], index: int, n_weighted: int, weight: float) -> Moments:
    """``moments`` of n_weighted > 0 rows, once they agree with each other, the count and the weight."""
    mean, total, v, p, q = moments.mean, moments.total, moments.v, moments.p, moments.q
    low, high = moments.low, moments.high
    assert mean is not None
    assert low is not None
    assert high is not None
    scale = max(abs(low), abs(high))
    if not low - _SLACK * scale <= mean <= high + _SLACK * scale:
        raise StateError((*path, "mean"), f"the mean {mean!r} lies outside [min, max] = [{low!r}, {high!r}]", index)
    if not 1.0 / n_weighted * (1 - _SLACK) <= v <= 1.0 + _SLACK or (n_weighted == 1 and abs(v - 1.0) > _SLACK):
        raise StateError(
            (*path, "w2"), f"Σw²/W² lies in [1/n, 1] for n = {n_weighted} rows of positive weight, got {v!r}", index
        )
    spread = (high - low) * (high - low) * v  # may be inf: a float product, unlike **, does not raise
    if q < 0 or q > spread * (1 + _SLACK) + _SLACK * scale * scale * v:
        raise StateError((*path, "w2_dev2"), f"Σw²(ℓ − m)²/W² lies in [0, v·(max − min)²], got {q!r}", index)
    if p * p > v * q * (1 + 1e-6) + _SLACK * scale * scale * v * v:
        raise StateError((*path, "w2_dev"), f"(Σw²(ℓ − m)/W²)² is at most v·q, got {p!r}", index)
    if total is not None and math.isfinite(weight):
        expected = mean * weight
        if abs(total - expected) > 1e-6 * (abs(expected) + scale * weight) + 1e-300:
            raise StateError((*path, "sum"), f"the sum {total!r} contradicts mean × weight = {expected!r}", index)
    return moments


def all_checked(table: np.ndarray, sums: np.ndarray | None, n_weighted: np.ndarray, weight: np.ndarray) -> bool:
    """Whether every row of a k × 6 table of finite moments (``PLAIN_COLUMNS``) of n_weighted > 0 rows passes
    ``_checked`` (with its sum, and the total weight W, which may be +inf): ``_checked`` over many states at once,
    the same conditions in array form; the caller reads the states one by one when it is false, to name the fault."""
    mean, low, high, v, p, q = (table[:, j] for j in range(6))
    with np.errstate(over="ignore", invalid="ignore"):
        scale = np.maximum(np.abs(low), np.abs(high))
        ok = (low - _SLACK * scale <= mean) & (mean <= high + _SLACK * scale)
        ok &= (1.0 / n_weighted * (1 - _SLACK) <= v) & (v <= 1.0 + _SLACK)
        ok &= (n_weighted != 1) | (np.abs(v - 1.0) <= _SLACK)
        spread = (high - low) * (high - low) * v
        ok &= (q >= 0) & (q <= spread * (1 + _SLACK) + _SLACK * scale * scale * v)
        ok &= p * p <= v * q * (1 + 1e-6) + _SLACK * scale * scale * v * v
        if sums is not None:
            expected = mean * weight
            off = np.abs(sums - expected) > 1e-6 * (np.abs(expected) + scale * weight) + 1e-300
            ok &= ~(off & np.isfinite(weight))
    return bool(ok.all())


@dataclass(frozen=True)
class Clusters:
    """The clusters with a positive weight: their ids, shares f_g = W_g/W of the weight, and each metric's mean."""

    id_type: str  # "string" or "integer"
    ids: list[Any]
    shares: np.ndarray
    means: dict[str, np.ndarray | None]  # None for a metric with an infinite value

    @classmethod
    def of(cls, cluster_ids: Any, n: int, rows: Rows, values: Mapping[str, np.ndarray]) -> Clusters:
        """The clusters of a result's rows: ``values`` are each metric's per-sample values (or correctness)."""
        keys, codes = cluster_keys(cluster_ids, n)
        id_type = "string" if keys and isinstance(keys[0], str) else "integer"
        kept = rows.take(codes)
        weights = np.bincount(kept, weights=rows.weights, minlength=len(keys))
        present = weights > 0
        shares = weights[present] / rows.total if rows.n else weights[present]
        means: dict[str, np.ndarray | None] = {}
        for name, column in values.items():
            scaled = Scaled(rows.take(column), rows) if rows.n else None
            if scaled is None or scaled.values is None:
                means[name] = None if scaled is not None else np.zeros(0)
                continue
            sums = np.bincount(kept, weights=rows.weights * scaled.values, minlength=len(keys))[present]
            means[name] = np.ldexp(sums / weights[present], scaled.exponent)
        ids = [key for key, keep in zip(keys, present.tolist(), strict=True) if keep]
        return cls(id_type, ids, shares, means)

    def sum_of_squares(self, name: str, mean: float) -> float:
        """Σ_g f_g²(m_g − m)², the squares added smallest first (independent of the clusters' order)."""
        means = self.means[name]
        assert means is not None
        scores = self.shares * (means - mean)
        return float(np.sort(scores * scores).sum())

    def to_state(self) -> dict[str, Any]:
        """The JSON form: integer ids beyond 64 bits are written as decimal text (JSON tools stop at 64 bits)."""
        ids = (
            self.ids if self.id_type == "string" else [key if -(2**63) <= key < 2**64 else str(key) for key in self.ids]
        )
        return {
            "id_type": self.id_type,
            "ids": ids,
            "shares": self.shares.tolist(),
            "means": {name: None if m is None else m.tolist() for name, m in self.means.items()},
        }


def merge_clusters(parts: Sequence[Clusters], shares: np.ndarray) -> Clusters:
    """The clusters of ``parts``, one entry per id: shares weighted by the states' ``shares``, means by the
    clusters' weights (a cluster split over states is one cluster)."""
    position: dict[Any, int] = {}
    ids: list[Any] = []
    codes = np.empty(sum(len(part.ids) for part in parts), dtype=np.intp)
    at = 0
    for part in parts:
        for key in part.ids:
            code = position.get(key)
            if code is None:
                code = position[key] = len(ids)
                ids.append(key)
            codes[at] = code
            at += 1
    weights = np.concatenate([part.shares * share for part, share in zip(parts, shares, strict=True)])
    merged = np.bincount(codes, weights=weights, minlength=len(ids))
    means: dict[str, np.ndarray | None] = {}
    for name in parts[0].means:
        columns = [column for part in parts if (column := part.means[name]) is not None]
        if len(columns) < len(parts):
            means[name] = None
            continue
        sums = np.bincount(codes, weights=weights * np.concatenate(columns), minlength=len(ids))
        means[name] = np.divide(sums, merged, out=np.zeros(len(ids)), where=merged > 0)
    return Clusters(parts[0].id_type, ids, merged, means)


def read_clusters(value: Any, index: int, n_weighted: int, metrics: Mapping[str, Any]) -> Clusters:
    """A state's clusters, checked: unique ids of one type, positive shares adding up to 1, a mean each."""
    path = ("accumulators", "clusters")
    if not isinstance(value, Mapping):
        raise StateError(path, f"expected a JSON object or null, got {describe(value)}", index)
    id_type = field(value, "id_type", path, index)
    if id_type not in ("string", "integer"):
        raise StateError((*path, "id_type"), f"expected 'string' or 'integer', got {describe(id_type)}", index)
    raw_ids = field(value, "ids", path, index)
    if not isinstance(raw_ids, list):
        raise StateError((*path, "ids"), f"expected a list, got {describe(raw_ids)}", index)
    ids = [_cluster_id(key, id_type, (*path, "ids", i), index) for i, key in enumerate(raw_ids)]
    if len(set(ids)) != len(ids):
        raise StateError((*path, "ids"), "a cluster id appears twice", index)
    if len(ids) > n_weighted:
        raise StateError(
            (*path, "ids"), f"{len(ids)} clusters is more than the {n_weighted} rows of positive weight", index
        )
    shares = np.array(number_list(field(value, "shares", path, index), len(ids), (*path, "shares"), index), dtype=float)
    if len(ids) and (shares.min() <= 0 or abs(float(shares.sum()) - 1.0) > _SLACK * len(ids)):
        raise StateError((*path, "shares"), "each share is > 0 and they add up to 1", index)
    raw_means = field(value, "means", path, index)
    means: dict[str, np.ndarray | None] = {}
    for name, moments in metrics.items():
        column = field(raw_means, name, (*path, "means"), index)
        if not moments.finite:
            if column is not None:
                raise StateError((*path, "means", name), "must be null: the metric has an infinite value", index)
            means[name] = None
            continue
        array = np.array(number_list(column, len(ids), (*path, "means", name), index), dtype=float)
        scale = max(abs(moments.low or 0.0), abs(moments.high or 0.0))
        if len(ids) and (
            array.min() < (moments.low or 0.0) - _SLACK * scale or array.max() > (moments.high or 0.0) + _SLACK * scale
        ):
            raise StateError((*path, "means", name), "a cluster's mean lies outside the metric's [min, max]", index)
        means[name] = array
    return Clusters(id_type, ids, shares, means)


def _cluster_id(key: Any, id_type: str, path: Sequence[str | int], index: int) -> Any:
    """A cluster id of ``id_type``: a string, or an integer (decimal text beyond 64 bits)."""
    if id_type == "string" and isinstance(key, str):
        return key
    if id_type == "integer":
        if isinstance(key, int) and not isinstance(key, bool):
            return key
        if isinstance(key, str) and 0 < len(key) <= 4300 and key.lstrip("-").isdigit():
            return int(key)
    raise StateError(tuple(path), f"expected a cluster id of type {id_type}, got {describe(key)}", index)
