"""Mergeable sufficient statistics of weighted means and their standard errors (issue 15; the errors of issue 14).

For each of G entries (the groups, or the classes, of a breakdown) and k metrics ℓᵢ over the entry's rows with
weight wᵢ > 0 (n of them), ``MomentTable`` keeps, as arrays over the entries:

- W = Σwᵢ, V = Σwᵢ² (held over 2^e and 2^2e, e that of the largest weight, so that no scale of weights
  overflows V), the weighted means m = Σwᵢℓᵢ / W, the w²-weighted means U = Σwᵢ²ℓᵢ / V and the centred
  second moments Q = Σwᵢ²(ℓᵢ − U)², the least and largest ℓᵢ, and whether one is infinite;
- with clusters, per (entry, cluster id): A_g = Σ_{i∈g} wᵢ and m_g = Σ_{i∈g} wᵢℓᵢ / A_g (``ClusterTable``).

From them, the standard errors of ``service.core.statistics`` (the same formulas):
Σwᵢ²(ℓᵢ − m)² = Q + V·(U − m)², so SE² = n/(n−1)·(Q + V·(U − m)²)/W² (HC1), and
Σ_g (Σ_{i∈g} wᵢ(ℓᵢ − m))² = Σ_g A_g²(m_g − m)², so SE² = G/(G−1)·Σ_g A_g²(m_g − m)²/W² (CR1).
Two tables merge entry by entry by the parallel (Chan et al.) update: W and V add; m and U are the W- and
V-weighted means of the two; Q = Q_a + Q_b + (U_b − U_a)²·V_a·V_b/V; a cluster present in both adds its A and
takes the A-weighted mean of its m. No raw sum of squares is kept, so merging loses no precision to cancellation.
Everything is vectorised over the entries: 1,000 states of 10 groups merge in milliseconds.

Over 300 lines because a table is built, merged, answered for and checked in one place: the moments, their
parallel update, the standard errors they give, and the validation of a copy that a caller sent back (a forged
state must be a 422, never a wrong number or a 500).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from service.core.intervals import normal_quantile
from service.core.state import StateError
from service.core.state_arrays import Path, exact_keys, first_bad, floats, integers, stacked
from service.core.state_batch import column

#: Relative slack of the consistency checks of a state read back (sums that contradict each other).
_SLACK = 1e-9
#: The per-metric arrays of a table's state, each G × k.
_MATRICES = ("mean", "mean_sq", "m2", "low", "high")
#: A table's arrays in the order of its fields (all but the clusters).
_COLUMNS = ("n", "weight", "weight_sq", *_MATRICES, "infinite")


@dataclass(frozen=True)
class ClusterTable:
    """Per (entry, cluster): the entry it belongs to, the cluster's id, A_g > 0 and its k means m_g."""

    entry: np.ndarray  # (P,) intp
    ids: list[Any]  # (P,) strings or integers
    weight: np.ndarray  # (P,)
    means: np.ndarray  # (P, k)

    def moved(self, positions: np.ndarray) -> ClusterTable:
        """The same clusters, entry e now at ``positions[e]``."""
        return ClusterTable(positions[self.entry], self.ids, self.weight, self.means)

    def merge(self, other: ClusterTable) -> ClusterTable:
        """Both tables' clusters: one that both hold (same entry, same id) adds its A and averages its means."""
        return ClusterTable.combine([self, other])

    @staticmethod
    def combine(tables: Sequence[ClusterTable]) -> ClusterTable:
        """All the tables' clusters: one that several hold (same entry, same id) adds its A and averages its means."""
        keys = [key for table in tables for key in zip(table.entry.tolist(), table.ids, strict=True)]
        first: dict[tuple[int, Any], int] = {}
        slot = np.fromiter((first.setdefault(key, len(first)) for key in keys), dtype=np.intp, count=len(keys))
        weight = np.concatenate([table.weight for table in tables])
        means = np.vstack([table.means for table in tables])
        if len(first) == len(keys):  # no cluster held twice: the tables side by side
            entry = np.concatenate([table.entry for table in tables])
            return ClusterTable(entry, [key[1] for key in keys], weight, means)
        sums = means * weight[:, None]
        total = np.bincount(slot, weights=weight, minlength=len(first))
        means = np.stack([np.bincount(slot, weights=sums[:, j], minlength=len(first)) for j in range(sums.shape[1])], 1)
        entry = np.array([key[0] for key in first], dtype=np.intp)
        return ClusterTable(entry, [key[1] for key in first], total, means / total[:, None])


@dataclass(frozen=True)
class MetricSpread:
    """One metric's weighted mean, standard error and interval; None where undefined (or infinite: mean +inf)."""

    mean: float | None
    stderr: float | None
    ci: list[float] | None


@dataclass(frozen=True)
class MomentTable:
    """n, W, V and, per metric, m, U, Q, the least and largest value and whether one is infinite, per entry."""

    n: np.ndarray  # (G,) int64: rows of positive weight
    weight: np.ndarray  # (G,)
    weight_sq: np.ndarray  # (G,)
    mean: np.ndarray  # (G, k)
    mean_sq: np.ndarray  # (G, k)
    m2: np.ndarray  # (G, k)
    low: np.ndarray  # (G, k)
    high: np.ndarray  # (G, k)
    infinite: np.ndarray  # (G, k) bool
    clusters: ClusterTable | None
    #: e: the weights are held divided by 2^e (W, the clusters' A; V and Q by 2^2e), e that of the largest row
    #: weight, so that Σw² cannot overflow (nor vanish) whatever the weights' scale; ``total_weight`` is W itself.
    exponent: int = 0

    def __len__(self) -> int:
        return int(self.n.shape[0])

    @classmethod
    def of_rows(
        cls,
        values: np.ndarray,
        weights: np.ndarray,
        entries: np.ndarray,
        n_entries: int,
        clusters: tuple[np.ndarray, Sequence[Any]] | None = None,
    ) -> MomentTable:
        """The table of N rows (N×k ``values``) in ``entries`` 0 … n_entries − 1, in one pass of bincounts.

        Rows with wᵢ = 0 take no part (their values may be NaN or infinite). ``clusters`` (each row's index into
        the cluster ids, and the ids) makes the table clustered.
        """
        k = values.shape[1]
        keep = weights > 0
        v, w, g = values[keep], weights[keep], entries[keep]
        exponent = math.frexp(float(w.max()))[1] if w.size else 0
        w = np.ldexp(w, -exponent)  # exact: a power of two
        finite = np.isfinite(v)
        v = np.where(finite, v, 0.0)

        def by_entry(x: np.ndarray) -> np.ndarray:
            return np.bincount(g, weights=x, minlength=n_entries)

        def per_metric(x: np.ndarray) -> np.ndarray:
            return np.stack([by_entry(x[:, j]) for j in range(k)], axis=1).reshape(n_entries, k)

        sizes = np.bincount(g, minlength=n_entries)
        total, w_sq = by_entry(w), w * w
        total_sq = by_entry(w_sq)
        means = per_metric(w[:, None] * v) / np.where(total > 0, total, 1.0)[:, None]
        means_sq = per_metric(w_sq[:, None] * v) / np.where(total_sq > 0, total_sq, 1.0)[:, None]
        m2 = per_metric(w_sq[:, None] * (v - means_sq[g]) ** 2)
        low, high = np.zeros((n_entries, k)), np.zeros((n_entries, k))
        present = np.flatnonzero(sizes)
        if present.size:
            order = np.argsort(g, kind="stable")
            starts = np.concatenate(([0], np.cumsum(sizes[present])[:-1]))
            low[present] = np.minimum.reduceat(v[order], starts, axis=0)
            high[present] = np.maximum.reduceat(v[order], starts, axis=0)
        table = None
        if clusters is not None:
            codes, ids = clusters
            width = max(len(ids), 1)
            pairs, pair_of_row = np.unique(g.astype(np.int64) * width + codes[keep], return_inverse=True)
            pair_of_row = pair_of_row.reshape(-1)
            weight = np.bincount(pair_of_row, weights=w, minlength=pairs.shape[0])
            sums = np.stack(
                [np.bincount(pair_of_row, weights=w * v[:, j], minlength=pairs.shape[0]) for j in range(k)], axis=1
            ).reshape(pairs.shape[0], k)
            named = np.array([*ids, None], dtype=object)[:-1]  # an object array, whatever the ids' type
            table = ClusterTable(
                (pairs // width).astype(np.intp), named[pairs % width].tolist(), weight, sums / weight[:, None]
            )
        infinite = per_metric((~finite).astype(np.float64)) > 0
        return cls(sizes.astype(np.int64), total, total_sq, means, means_sq, m2, low, high, infinite, table, exponent)

    def spread(self, confidence: float) -> tuple[np.ndarray, np.ndarray, list[list[MetricSpread]]]:
        """Each entry's and metric's mean, standard error (HC1, or CR1 with clusters) and interval m ± z·SE
        (``intervals.interval``'s, z = Φ⁻¹((1 + confidence)/2) found once); with the SEs as arrays (NaN: none)."""
        g, k = self.mean.shape
        n = self.n.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if self.clusters is None:
                count = n
                deviation = self.mean_sq - self.mean
                squares = self.m2 + self.weight_sq[:, None] * deviation * deviation
            else:
                clusters = self.clusters
                count = np.bincount(clusters.entry, minlength=g).astype(np.float64)
                scores = clusters.weight[:, None] * (clusters.means - self.mean[clusters.entry])
                squares = np.zeros((g, k))
                for j in range(k):
                    # Smallest first within each entry, as ``statistics`` adds them: no dependence on the order.
                    order = np.lexsort((scores[:, j] ** 2, clusters.entry))
                    squares[:, j] = np.bincount(clusters.entry[order], weights=scores[order, j] ** 2, minlength=g)
            stderr = np.sqrt(count / (count - 1.0))[:, None] * np.sqrt(squares) / self.weight[:, None]
        too_few = ((self.n < 2) | (count < 2))[:, None]
        stderr = np.where(self.low == self.high, 0.0, stderr)  # constant values: exactly 0, as ``statistics``
        stderr[too_few | self.infinite] = np.nan
        z = normal_quantile((1.0 + confidence) / 2.0)
        means, errors = self.mean.tolist(), stderr.tolist()
        table = []
        for entry in range(g):
            row = []
            for metric in range(k):
                if self.n[entry] == 0:
                    row.append(MetricSpread(None, None, None))
                elif self.infinite[entry, metric]:
                    row.append(MetricSpread(math.inf, None, None))
                else:
                    mean, error = means[entry][metric], errors[entry][metric]
                    if math.isnan(error):
                        row.append(MetricSpread(mean, None, None))
                        continue
                    half = z * error  # past float64 this is +inf, and the interval is null
                    bounds = [mean - half, mean + half]
                    row.append(MetricSpread(mean, error, bounds if all(map(math.isfinite, bounds)) else None))
            table.append(row)
        return self.mean, stderr, table

    def placed(self, positions: np.ndarray, size: int) -> MomentTable:
        """This table's entries at ``positions`` of a table of ``size`` entries, the others empty."""
        k = self.mean.shape[1]

        def put(values: np.ndarray, shape: tuple[int, ...], dtype: Any = np.float64) -> np.ndarray:
            out = np.zeros(shape, dtype=dtype)
            out[positions] = values
            return out

        return MomentTable(
            put(self.n, (size,), np.int64),
            put(self.weight, (size,)),
            put(self.weight_sq, (size,)),
            put(self.mean, (size, k)),
            put(self.mean_sq, (size, k)),
            put(self.m2, (size, k)),
            put(self.low, (size, k)),
            put(self.high, (size, k)),
            put(self.infinite, (size, k), bool),
            None if self.clusters is None else self.clusters.moved(positions),
            self.exponent,
        )

    def total_weight(self) -> np.ndarray:
        """W of each entry, Σwᵢ itself (+inf past float64)."""
        with np.errstate(over="ignore"):
            return np.ldexp(self.weight, self.exponent)

    def rescaled(self, exponent: int) -> MomentTable:
        """The same table with its weights held divided by 2^``exponent`` (≥ its own)."""
        shift = self.exponent - exponent
        if not shift:
            return self
        clusters = self.clusters
        if clusters is not None:
            clusters = ClusterTable(clusters.entry, clusters.ids, np.ldexp(clusters.weight, shift), clusters.means)
        return dataclasses.replace(
            self,
            weight=np.ldexp(self.weight, shift),
            weight_sq=np.ldexp(self.weight_sq, 2 * shift),
            m2=np.ldexp(self.m2, 2 * shift),
            clusters=clusters,
            exponent=exponent,
        )

    def merge(self, other: MomentTable) -> MomentTable:
        """Entry by entry, the moments of both sets of rows (the parallel update; see the module)."""
        if self.exponent != other.exponent:
            exponent = max(self.exponent, other.exponent)
            return self.rescaled(exponent).merge(other.rescaled(exponent))
        a, b = self.n[:, None] > 0, other.n[:, None] > 0
        weight, weight_sq = self.weight + other.weight, self.weight_sq + other.weight_sq
        share = np.divide(other.weight, weight, out=np.zeros_like(weight), where=weight > 0)[:, None]
        share_sq = np.divide(other.weight_sq, weight_sq, out=np.zeros_like(weight), where=weight_sq > 0)[:, None]
        gap = other.mean_sq - self.mean_sq
        cross = np.divide(self.weight_sq * other.weight_sq, weight_sq, out=np.zeros_like(weight), where=weight_sq > 0)[
            :, None
        ]
        clusters = None
        if self.clusters is not None and other.clusters is not None:
            clusters = self.clusters.merge(other.clusters)
        return MomentTable(
            self.n + other.n,
            weight,
            weight_sq,
            np.where(b, np.where(a, self.mean + (other.mean - self.mean) * share, other.mean), self.mean),
            np.where(b, np.where(a, self.mean_sq + gap * share_sq, other.mean_sq), self.mean_sq),
            self.m2 + other.m2 + np.where(a & b, gap * gap * cross, 0.0),
            np.where(b, np.where(a, np.minimum(self.low, other.low), other.low), self.low),
            np.where(b, np.where(a, np.maximum(self.high, other.high), other.high), self.high),
            self.infinite | other.infinite,
            clusters,
            self.exponent,
        )

    @staticmethod
    def merge_all(tables: Sequence[MomentTable]) -> MomentTable:
        """The tables' moments merged at once, entry by entry (tables of the same entries): ``gather``."""
        size = len(tables[0])
        exponent = max(table.exponent for table in tables)
        tables = [table.rescaled(exponent) for table in tables]
        present = [table.clusters for table in tables if table.clusters is not None]
        clusters = ClusterTable.combine(present) if len(present) == len(tables) else None
        merged = MomentTable.concatenated(tables).gather(np.tile(np.arange(size), len(tables)), size)
        return dataclasses.replace(merged, clusters=clusters)

    def taken(self, keep: np.ndarray) -> MomentTable:
        """The entries where ``keep`` is true (without clusters)."""
        if keep.all() and self.clusters is None:
            return self
        return MomentTable.of_columns([getattr(self, name)[keep] for name in _COLUMNS], self.exponent)

    @staticmethod
    def concatenated(tables: Sequence[MomentTable]) -> MomentTable:
        """The entries of all the tables, one after the other (without clusters), held at the largest exponent."""
        exponent = max(table.exponent for table in tables)
        tables = [table.rescaled(exponent) for table in tables]
        columns = [np.concatenate([getattr(table, name) for table in tables]) for name in _COLUMNS]
        return MomentTable.of_columns(columns, exponent)

    @staticmethod
    def of_columns(columns: Sequence[np.ndarray], exponent: int) -> MomentTable:
        """The unclustered table of these arrays, in the order of ``_COLUMNS``, its weights over 2^``exponent``."""
        n, weight, weight_sq, mean, mean_sq, m2, low, high, infinite = columns
        return MomentTable(n, weight, weight_sq, mean, mean_sq, m2, low, high, infinite, None, exponent)

    def gather(self, target: np.ndarray, size: int) -> MomentTable:
        """The entries merged into ``size`` entries, entry e into ``target[e]`` (unclustered): the k-way parallel
        update in a few scatter passes, m = Σ_e W_e·m_e / W, U = Σ_e V_e·U_e / V, Q = Σ_e Q_e + Σ_e V_e·(U_e − U)²."""
        k = self.mean.shape[1]
        # Entries that come as whole tables of the same ``size`` entries in order (the usual merge): sums by axis.
        tables = target.shape[0] // size if size else 0
        tiled = bool(tables) and tables * size == target.shape[0]
        tiled = tiled and bool((target.reshape(tables, size) == np.arange(size)).all())

        def scatter(values: np.ndarray) -> np.ndarray:
            if tiled:
                return values.reshape(tables, size, *values.shape[1:]).sum(axis=0)
            if values.ndim == 1:
                return np.bincount(target, weights=values, minlength=size)
            return np.stack([scatter(values[:, j]) for j in range(k)], axis=1).reshape(size, k)

        weight, weight_sq = scatter(self.weight), scatter(self.weight_sq)
        mean = scatter(self.weight[:, None] * self.mean) / np.where(weight > 0, weight, 1.0)[:, None]
        mean_sq = scatter(self.weight_sq[:, None] * self.mean_sq) / np.where(weight_sq > 0, weight_sq, 1.0)[:, None]
        gaps = self.mean_sq - mean_sq[target]
        m2 = scatter(self.m2 + self.weight_sq[:, None] * gaps * gaps)
        has = self.n > 0
        low, high = np.zeros((size, k)), np.zeros((size, k))
        counted_target = target[has]
        if tiled:
            low = np.where(has[:, None], self.low, np.inf).reshape(tables, size, k).min(axis=0)
            high = np.where(has[:, None], self.high, -np.inf).reshape(tables, size, k).max(axis=0)
        elif counted_target.size:  # each target's least and largest over its counted entries: sorted, then reduced
            order = np.argsort(counted_target, kind="stable")
            present, starts = np.unique(counted_target[order], return_index=True)
            low[present] = np.minimum.reduceat(self.low[has][order], starts, axis=0)
            high[present] = np.maximum.reduceat(self.high[has][order], starts, axis=0)
        n = scatter(self.n).astype(np.int64) if tiled else np.bincount(target, self.n, size).astype(np.int64)
        counted = (n > 0)[:, None]
        infinite = scatter(self.infinite.astype(np.float64)) > 0
        return MomentTable(
            n,
            weight,
            weight_sq,
            mean,
            mean_sq,
            m2,
            np.where(counted, low, 0.0),
            np.where(counted, high, 0.0),
            infinite,
            None,
            self.exponent,
        )

    def to_state(self, extra: Sequence[np.ndarray] = ()) -> dict[str, Any]:
        """The JSON state: ``{"exponent": e, "table": [[…] per entry], "clusters": …}``, each entry's row of
        ``table_width(k)`` numbers in the order of ``TABLE_FIELDS`` (n, W, V, then k of each of m, U, Q, low, high
        and infinite as 0 or 1), then the ``extra`` columns of its owner (a breakdown's counts): every number
        finite, an infinite value flagged. One table a state, not a list per column: a merge reads a thousand of
        them, and reads each in one piece."""
        clusters = self.clusters
        columns = [self.n, self.weight, self.weight_sq, *(getattr(self, name) for name in _MATRICES), self.infinite]
        table = np.column_stack([np.asarray(column, dtype=np.float64) for column in (*columns, *extra)])
        return {
            "exponent": self.exponent,
            "table": table.reshape(len(self), table_width(self.mean.shape[1]) + len(extra)).tolist(),
            "clusters": None
            if clusters is None
            else {
                "entry": clusters.entry.tolist(),
                "ids": list(clusters.ids),
                "weight": clusters.weight.tolist(),
                "means": clusters.means.tolist(),
            },
        }

    @classmethod
    def from_state(
        cls, state: Any, size: int, k: int, clustered: bool, path: Path, index: int, extra: int = 0
    ) -> tuple[MomentTable, np.ndarray]:
        """A table read back from a state, checked as untrusted input: StateError naming the path otherwise.

        Refused beyond a malformed value (a table of another shape, a number that is not one or not finite): a
        count that is not a whole number ≥ 0, an infinite flag other than 0 or 1, a negative weight, a weight
        where no row is counted (or none where rows are), Σw² outside [W²/n, W²], a negative Q, a mean outside
        [low, high], clusters that name no entry, hold no weight, repeat, outnumber their entry's rows or whose
        weights do not add up to the entry's W. The path of a value of the table is ``path, table, row, column``.
        ``state`` is the owner's state, which holds the keys ``exponent``, ``table`` and ``clusters`` (its own keys
        checked by the owner); returned with the table's last ``extra`` columns, the owner's (finite, not checked).
        """
        exponent = state["exponent"]
        if type(exponent) is not int or not -_EXPONENTS <= exponent <= _EXPONENTS:
            raise StateError((*path, "exponent"), f"expected an integer in [−{_EXPONENTS}, {_EXPONENTS}]", index)
        where = (*path, "table")
        whole = floats(state["table"], (size, table_width(k) + extra), where, index)
        table, extra_columns = whole[:, : table_width(k)], whole[:, table_width(k) :]
        n, weight, weight_sq, mean, mean_sq, m2, low, high, flags = _split(table, k)
        for bad, message in _malformed(table, k):
            first_bad(bad, where, message, index)
        column = _column_of(k)
        counts = n.astype(np.int64)
        bad = (counts == 0) != (weight == 0)
        first_bad(_at(bad, column["weight"], table.shape), where, "a total weight contradicts the entry's n", index)
        nonzero = np.where(counts > 0, counts, 1)
        with np.errstate(over="ignore", invalid="ignore"):  # a forged weight near float64's end: +inf, refused
            squares = weight * weight
            bad_sq = (counts > 0) & (
                (weight_sq < squares / nonzero * (1 - _SLACK)) | (weight_sq > squares * (1 + _SLACK))
            )
        message = "Σw² must lie in [W²/n, W²] for n weights summing to W"
        first_bad(_at(bad_sq, column["weight_sq"], table.shape), where, message, index)
        first_bad(_at(m2 < 0, column["m2"], table.shape), where, "a centred second moment is negative", index)
        infinite = flags > 0
        counted = (counts > 0)[:, None] & ~infinite
        with np.errstate(over="ignore"):  # a forged bound near float64's end: ±inf, which lets any mean by
            low_bound, high_bound = low - _tolerance(low), high + _tolerance(high)
        for name, values in (("mean", mean), ("mean_sq", mean_sq)):
            outside = counted & ((values < low_bound) | (values > high_bound))
            first_bad(_at(outside, column[name], table.shape), where, "lies outside [low, high]", index)
        clusters = _clusters(state["clusters"], size, k, clustered, counts, weight, (*path, "clusters"), index)
        return cls(counts, weight, weight_sq, mean, mean_sq, m2, low, high, infinite, clusters, exponent), extra_columns

    @classmethod
    def read_many(
        cls, states: Sequence[Any], sizes: Sequence[int], k: int, extra: int = 0
    ) -> tuple[MomentTable, np.ndarray] | None:
        """Many unclustered tables' states read and checked at once, their entries one after another (what
        ``from_state`` reads and refuses, in a few array passes over all of them), with their ``extra`` columns;
        None when any would be refused, or is clustered: then read them one by one, which names the fault. The
        owner checks its states' keys (plain dicts with ``exponent``, ``table`` and ``clusters`` among them)."""
        if any(clusters is not None for clusters in column(states, ("clusters",))):
            return None
        exponents = column(states, ("exponent",))
        if set(map(type, exponents)) - {int} or (
            exponents and not -_EXPONENTS <= min(exponents) <= max(exponents) <= _EXPONENTS
        ):
            return None
        whole = stacked(column(states, ("table",)), sizes, table_width(k) + extra)
        if whole is None:
            return None
        width = table_width(k)
        extra_columns = whole[:, width:]
        # Column by column (the table transposed, each field's values side by side): what ``from_state`` checks,
        # in a few passes over contiguous arrays, without its masks.
        fields = np.ascontiguousarray(whole[:, :width].T)
        n, weight, weight_sq = fields[0], fields[1], fields[2]
        mean, mean_sq, m2, low, high, flags = (fields[3 + j * k : 3 + (j + 1) * k] for j in range(len(_MATRICES) + 1))
        if (n < 0).any() or (n >= _LARGEST_COUNT).any() or (n != np.floor(n)).any() or (fields[1:3] < 0).any():
            return None
        if ((flags != 0) & (flags != 1)).any() or (m2 < 0).any():
            return None
        counts, infinite = n.astype(np.int64), flags > 0
        counted = counts > 0
        nonzero = np.where(counted, n, 1.0)
        bad = ~counted != (weight == 0)
        with np.errstate(over="ignore", invalid="ignore"):  # a forged weight near float64's end: +inf, refused
            squares = weight * weight
            bad |= counted & ((weight_sq < squares / nonzero * (1 - _SLACK)) | (weight_sq > squares * (1 + _SLACK)))
            low_bound, high_bound = low - _tolerance(low), high + _tolerance(high)
            outside = (mean < low_bound) | (mean > high_bound) | (mean_sq < low_bound) | (mean_sq > high_bound)
        if bad.any() or (outside & counted & ~infinite).any():
            return None
        n = counts
        mean, mean_sq, m2, low, high, infinite = (x.T for x in (mean, mean_sq, m2, low, high, infinite))
        exponent = max(exponents, default=0)
        if exponent == min(exponents, default=0):  # weights of one scale (the usual case): nothing to move
            return cls(n, weight, weight_sq, mean, mean_sq, m2, low, high, infinite, None, exponent), extra_columns
        shifts = np.repeat(np.array(exponents, dtype=np.int64) - exponent, sizes)  # each state's at the largest
        weight, weight_sq, m2 = (
            np.ldexp(weight, shifts),
            np.ldexp(weight_sq, 2 * shifts),
            np.ldexp(m2, 2 * shifts[:, None]),
        )
        return cls(n, weight, weight_sq, mean, mean_sq, m2, low, high, infinite, None, exponent), extra_columns


#: The keys of a table's state, within its owner's.
STATE_KEYS: Final = ("exponent", "table", "clusters")
#: The fields of a row of a table's state, in order: n, W and V, then k columns of each of the others.
TABLE_FIELDS = _COLUMNS


def table_width(k: int) -> int:
    """The numbers of a row of the state's table of k metrics: n, W, V and six fields of k each."""
    return 3 + (len(_MATRICES) + 1) * k


def table_column(name: str, k: int) -> int:
    """The first column of field ``name`` (of ``TABLE_FIELDS``) in a row of the state's table of k metrics."""
    return _column_of(k)[name]


def _column_of(k: int) -> dict[str, int]:
    """The first column of each field in a row of the state's table."""
    return {"n": 0, "weight": 1, "weight_sq": 2, **{name: 3 + j * k for j, name in enumerate((*_MATRICES, "infinite"))}}


def _split(table: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """A state's table as its fields: n, W, V (each G) and the six of k columns (each G × k), views of ``table``."""
    fields = [table[:, 0], table[:, 1], table[:, 2]]
    fields += [table[:, 3 + j * k : 3 + (j + 1) * k] for j in range(len(_MATRICES) + 1)]
    return tuple(fields)


#: The largest count a table's float can hold exactly.
_LARGEST_COUNT = float(2**53)


def _malformed(table: np.ndarray, k: int) -> list[tuple[np.ndarray, str]]:
    """The cells of a table that no real state has, as masks of its shape with what is wrong: a count that is not
    a whole number ≥ 0, a negative weight or Σw², an infinite flag other than 0 and 1."""
    column = _column_of(k)
    n, weight, weight_sq, flags = table[:, 0], table[:, 1], table[:, 2], table[:, column["infinite"] :]
    return [
        (
            _at((n < 0) | (n >= _LARGEST_COUNT) | (n != np.floor(n)), 0, table.shape),
            "expected a count (a whole number ≥ 0)",
        ),
        (_at((weight < 0), 1, table.shape) | _at(weight_sq < 0, 2, table.shape), "expected a finite number ≥ 0"),
        (
            _at((flags != 0) & (flags != 1), column["infinite"], table.shape),
            "expected 0 or 1 (whether a value is infinite)",
        ),
    ]


def _at(bad: np.ndarray, column: int, shape: tuple[int, ...]) -> np.ndarray:
    """``bad`` (over the entries, or entries × k) placed at ``column`` onwards of a mask of the table's ``shape``."""
    mask = np.zeros(shape, dtype=bool)
    block = bad.reshape(shape[0], -1 if shape[0] else bad.shape[-1] if bad.ndim > 1 else 1)
    mask[:, column : column + block.shape[1]] = block
    return mask


#: The largest |e| of a table's weights 2^e: beyond float64's exponents either way, with room.
_EXPONENTS = 1100


def _tolerance(values: np.ndarray) -> np.ndarray:
    """How far a mean may round past the least or largest value it averages."""
    return _SLACK * np.maximum(np.abs(values), 1.0)


def _clusters(
    value: Any, size: int, k: int, clustered: bool, n: np.ndarray, weight: np.ndarray, path: Path, index: int
) -> ClusterTable | None:
    """The cluster table of a state: ``{"entry", "ids", "weight", "means"}``, checked; None unclustered."""
    if not clustered:
        if value is not None:
            raise StateError(path, "expected null: the state has no cluster_ids", index)
        return None
    exact_keys(value, ("entry", "ids", "weight", "means"), path, index)
    ids = value["ids"]
    if not isinstance(ids, list) or any(isinstance(x, bool) or not isinstance(x, str | int) for x in ids):
        raise StateError((*path, "ids"), "expected a list of cluster ids (strings or integers)", index)
    count = len(ids)
    entry = integers(value["entry"], count, (*path, "entry"), index)
    cluster_weight = floats(value["weight"], (count,), (*path, "weight"), index, nonnegative=True)
    means = floats(value["means"], (count, k), (*path, "means"), index)
    first_bad(entry >= size, (*path, "entry"), f"names no entry (there are {size})", index)
    first_bad(cluster_weight == 0, (*path, "weight"), "a cluster of the state holds weight", index)
    if len(set(zip(entry.tolist(), ids, strict=True))) != count:
        raise StateError((*path, "ids"), "a cluster is listed twice for one entry", index)
    per_entry = np.bincount(entry, minlength=size)
    first_bad(per_entry > n, (*path, "entry"), "more clusters than the entry has rows", index)
    totals = np.bincount(entry, weights=cluster_weight, minlength=size)
    off = np.abs(totals - weight) > _SLACK * np.maximum(weight, 1e-300)
    first_bad(off, (*path, "weight"), "the clusters' weights do not add up to their entry's total weight", index)
    return ClusterTable(entry.astype(np.intp), ids, cluster_weight, means)
