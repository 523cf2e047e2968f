"""Breakdowns of an answer by group and by true class, as mergeable accumulators (issue 15 §2).

- ``GroupBreakdown``: for each group (the ``groups`` string of its rows), n, n_scored and the mean of the
  cross-entropy, KL divergence, entropy and accuracy, each with its standard error (clustered within the
  group with ``cluster_ids``) and interval: the formulas of the whole answer (``service.core.statistics``),
  over the group's rows.
- ``ClassBreakdown``: for each class c, over the scored rows whose true class is c, ``support`` = Σwᵢ, the
  mean cross-entropy and its standard error, ``accuracy`` = Σwᵢ·[argmax qᵢ = c] / Σwᵢ (the weighted recall),
  and ``predicted`` = Σwᵢ over the scored rows whose argmax is c.

Both keep a ``service.core.moments.MomentTable`` over their groups or classes, so their state is O(groups) or
O(classes) (plus the clusters they hold), and they merge exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from service.core.arrays import describe
from service.core.errors import BadShape, InvalidInput, counted, quoted
from service.core.moments import STATE_KEYS, MomentTable, table_column, table_width
from service.core.result import finite_or_none
from service.core.state import StateError
from service.core.state_arrays import SOFT_TARGETS_STATE, first_bad, is_soft_targets
from service.core.state_batch import column, shared_keys

#: The metrics of a group, in the answer's order (accuracy: each row's correctness).
GROUP_METRICS: Final = ("cross_entropy", "kl_divergence", "entropy", "accuracy")
#: The metrics of a class: its rows' cross-entropy and correctness.
CLASS_METRICS: Final = ("cross_entropy", "accuracy")
_LONGEST_NAME: Final = 1 << 16


def group_codes(groups: Any, n: int) -> tuple[list[str], np.ndarray]:
    """The distinct group names, sorted, and each row's index among them; InvalidInput naming ``groups`` otherwise.

    ``groups`` is N strings: a list, or a NumPy string array (an NPZ member).

    >>> group_codes(["fr", "en", "fr"], 3)
    (['en', 'fr'], array([1, 0, 1]))
    """
    if isinstance(groups, np.ndarray):
        if groups.ndim != 1:
            raise BadShape("groups", f"expected a 1-D array of N = {n} strings, got {groups.ndim} dimensions")
        if groups.dtype.kind not in "US":
            raise InvalidInput("groups", f"groups are strings, got an array of dtype {groups.dtype}")
        if groups.shape[0] == n:  # an NPZ member: sorted and numbered in C, not name by name
            distinct, codes = np.unique(groups, return_inverse=True)
            names = distinct.tolist()
            if groups.dtype.kind == "S":  # bytes: each byte one character, as cluster ids are read
                names = [name.decode("latin-1") for name in names]
            return names, codes.reshape(n)
        names_of_rows = groups.tolist()
    elif isinstance(groups, list | tuple):
        names_of_rows = list(groups)
    else:
        raise InvalidInput("groups", f"expected an array of N = {n} strings, got {describe(groups)}")
    if len(names_of_rows) != n:
        where = f"row {len(names_of_rows)} has no group" if len(names_of_rows) < n else "one group per row"
        raise BadShape(
            "groups",
            f"has {counted(len(names_of_rows), 'entry')} but there are {counted(n, 'row')}; {where}",
            row=min(len(names_of_rows), n),
        )
    if set(map(type, names_of_rows)) - {str}:
        row = next(i for i, name in enumerate(names_of_rows) if type(name) is not str)
        raise InvalidInput("groups", f"a group is a string, got {describe(names_of_rows[row])}", row=row)
    names = sorted(dict.fromkeys(names_of_rows))
    position = {name: i for i, name in enumerate(names)}
    return names, np.fromiter(map(position.__getitem__, names_of_rows), dtype=np.intp, count=n)


@dataclass(frozen=True)
class GroupBreakdown:
    """Per group (names sorted): rows, scored rows and the ``MomentTable`` of the four metrics."""

    names: tuple[str, ...]
    n: np.ndarray
    n_scored: np.ndarray
    table: MomentTable
    clustered: bool

    @classmethod
    def from_rows(
        cls,
        names: Sequence[str],
        codes: np.ndarray,
        values: np.ndarray,
        weights: np.ndarray,
        scored: np.ndarray,
        clusters: tuple[np.ndarray, Sequence[Any]] | None = None,
    ) -> GroupBreakdown:
        """The breakdown of N rows: ``codes`` index the sorted ``names``; ``values`` is N×4 (``GROUP_METRICS``).

        ``weights`` are the row weights of the means (0 on the rows not scored); ``clusters`` each row's index
        into the cluster ids, and the ids.
        """
        size = len(names)
        return cls(
            tuple(names),
            np.bincount(codes, minlength=size).astype(np.int64),
            np.bincount(codes, weights=scored, minlength=size).astype(np.int64),
            MomentTable.of_rows(values, weights, codes, size, clusters),
            clusters is not None,
        )

    def merge(self, other: GroupBreakdown) -> GroupBreakdown:
        """The breakdown of both batches' rows: a group in both adds its counts and merges its moments."""
        _same_piece(("accumulators", "groups", "clustered"), self.clustered, other.clustered)
        if self.names == other.names:
            return GroupBreakdown(
                self.names,
                self.n + other.n,
                self.n_scored + other.n_scored,
                self.table.merge(other.table),
                self.clustered,
            )
        names = tuple(sorted({*self.names, *other.names}))
        position = {name: i for i, name in enumerate(names)}
        ours = np.array([position[name] for name in self.names], dtype=np.intp)
        theirs = np.array([position[name] for name in other.names], dtype=np.intp)
        counts = []
        for mine, their in ((self.n, other.n), (self.n_scored, other.n_scored)):
            total = np.zeros(len(names), dtype=np.int64)
            np.add.at(total, ours, mine)
            np.add.at(total, theirs, their)
            counts.append(total)
        table = self.table.placed(ours, len(names)).merge(other.table.placed(theirs, len(names)))
        return GroupBreakdown(names, counts[0], counts[1], table, self.clustered)

    @classmethod
    def merge_all(cls, pieces: Sequence[GroupBreakdown]) -> GroupBreakdown:
        """The breakdown of all the pieces' rows at once (what ``merge`` gives, pair by pair)."""
        for piece in pieces[1:]:
            _same_piece(("accumulators", "groups", "clustered"), pieces[0].clustered, piece.clustered)
        if pieces[0].clustered:
            names = tuple(sorted({name for piece in pieces for name in piece.names}))
            position = {name: i for i, name in enumerate(names)}
            n, n_scored, tables = np.zeros(len(names), np.int64), np.zeros(len(names), np.int64), []
            for piece in pieces:
                at = np.array([position[name] for name in piece.names], dtype=np.intp)
                n[at] += piece.n
                n_scored[at] += piece.n_scored
                tables.append(piece.table.placed(at, len(names)))
            return cls(names, n, n_scored, MomentTable.merge_all(tables), True)
        table = MomentTable.concatenated([piece.table for piece in pieces])
        counts = np.concatenate([piece.n for piece in pieces]), np.concatenate([piece.n_scored for piece in pieces])
        return cls._gathered([piece.names for piece in pieces], *counts, table)

    @classmethod
    def _gathered(
        cls, names_of: Sequence[Sequence[str]], n: np.ndarray, n_scored: np.ndarray, table: MomentTable
    ) -> GroupBreakdown:
        """The unclustered breakdown of entries one piece after another (``names_of`` each piece's), merged by name."""
        first = list(names_of[0]) if names_of else []
        if all(listed == first for listed in names_of):  # the same groups in every piece: they line up
            names = tuple(first)
            target = np.tile(np.arange(len(first)), len(names_of))
            size = len(names)
            rows, scored = (x.reshape(-1, size).sum(axis=0) if size else np.zeros(0, np.int64) for x in (n, n_scored))
            return cls(names, rows, scored, table.gather(target, size), False)
        names = tuple(sorted({name for listed in names_of for name in listed}))
        position = {name: i for i, name in enumerate(names)}
        target = np.fromiter((position[name] for listed in names_of for name in listed), dtype=np.intp, count=len(n))
        size = len(names)
        rows, scored = (np.bincount(target, weights=x, minlength=size).astype(np.int64) for x in (n, n_scored))
        return cls(names, rows, scored, table.gather(target, size), False)

    @classmethod
    def read_merged(cls, states: Sequence[Any], merged: Sequence[bool]) -> GroupBreakdown | None:
        """The breakdowns of many states read and checked at once (what ``from_state`` checks), and those of the
        states ``merged`` marks merged; None when one would be refused (or is clustered): read them one by one."""
        if shared_keys(states) != _GROUP_KEYS or any(flag is not False for flag in column(states, ("clustered",))):
            return None
        names_of = column(states, ("names",))
        last: Any = _UNSEEN
        for names in names_of:
            if names is last or (type(names) is list and names == last):  # the usual merge: shared groups, checked once
                continue
            if type(names) is not list or set(map(type, names)) - {str} or names != sorted(set(names)):
                return None
            if names and max(map(len, names)) > _LONGEST_NAME:
                return None
            last = names
        sizes = list(map(len, names_of))
        read = MomentTable.read_many(states, sizes, len(GROUP_METRICS), extra=len(_GROUP_COUNTS))
        if read is None:
            return None
        table, counts = read
        n, n_scored = _counts(counts)
        if n is None or n_scored is None:
            return None
        if ((table.n > n_scored) | (n_scored > n)).any() or _fractions_outside(table, len(GROUP_METRICS) - 1).any():
            return None
        keep = np.repeat(np.asarray(merged, dtype=bool), sizes)
        kept = table.taken(keep)
        chosen = [names for names, used in zip(names_of, merged, strict=True) if used]
        return cls._gathered(chosen, n[keep], n_scored[keep], kept)

    def to_state(self) -> dict[str, Any]:
        """``{"clustered", "names", "exponent", "table", "clusters"}``: a ``MomentTable`` state whose rows (one a
        group, in the order of ``names``) end with the group's n and n_scored (``_GROUP_COUNTS``)."""
        return {"clustered": self.clustered, "names": list(self.names), **self.table.to_state((self.n, self.n_scored))}

    @classmethod
    def from_state(cls, state: Any, index: int) -> GroupBreakdown:
        """A state read back and checked (StateError naming the path: counts that contradict each other, …)."""
        path: tuple[str | int, ...] = ("accumulators", "groups")
        clustered = _clustered(state, ("clustered", "names", *STATE_KEYS), path, index)
        names = state["names"]
        if not isinstance(names, list) or not all(type(name) is str and len(name) <= _LONGEST_NAME for name in names):
            raise StateError((*path, "names"), "expected a list of group names (strings)", index)
        if names != sorted(set(names)):
            raise StateError((*path, "names"), "expected the group names sorted, each once", index)
        k = len(GROUP_METRICS)
        table, counts = MomentTable.from_state(state, len(names), k, clustered, path, index, len(_GROUP_COUNTS))
        first = table_width(k)
        n, n_scored = _counts(counts)
        if n is None or n_scored is None:
            bad = ~_whole(counts)
            at = np.argwhere(bad)[0]
            message = "expected a count (a whole number ≥ 0)"
            raise StateError((*path, "table", int(at[0]), first + int(at[1])), message, index)
        bad = np.flatnonzero((table.n > n_scored) | (n_scored > n))
        if bad.size:
            message = "counts must satisfy rows of positive weight ≤ n_scored ≤ n"
            raise StateError((*path, "table", int(bad[0]), first + 1), message, index)
        _check_fractions(table, k - 1, path, index)
        return cls(tuple(names), n, n_scored, table, clustered)

    def summary(self, confidence: float) -> dict[str, Any]:
        """The answer's ``by_group``: ``{name: {n, n_scored, mean, stderr, ci}}``, the names sorted."""
        _, _, table = self.table.spread(confidence)
        answer = {}
        for name, n, n_scored, spreads in zip(self.names, self.n.tolist(), self.n_scored.tolist(), table, strict=True):
            answer[name] = {
                "n": n,
                "n_scored": n_scored,
                "mean": {metric: finite_or_none(s.mean) for metric, s in zip(GROUP_METRICS, spreads, strict=True)},
                "stderr": {metric: s.stderr for metric, s in zip(GROUP_METRICS, spreads, strict=True)},
                "ci": {metric: s.ci for metric, s in zip(GROUP_METRICS, spreads, strict=True)},
            }
        return answer


@dataclass(frozen=True)
class ClassBreakdown:
    """Per class (in column order): the ``MomentTable`` of its rows' cross-entropy and correctness, ``predicted``."""

    keys: tuple[str, ...]
    table: MomentTable
    predicted: np.ndarray
    clustered: bool
    #: Soft targets left it undefined (no true class): the answer's ``by_class`` is null, and so is any merge's.
    soft: bool = False

    @classmethod
    def undefined(cls) -> ClassBreakdown:
        """The breakdown of rows with soft targets: undefined, and it leaves every merge undefined."""
        empty = MomentTable.of_rows(np.zeros((0, 2)), np.zeros(0), np.zeros(0, dtype=np.intp), 0)
        return cls((), empty, np.zeros(0), False, soft=True)

    @classmethod
    def from_rows(
        cls,
        keys: Sequence[str],
        true_class: np.ndarray,
        predicted_class: np.ndarray,
        values: np.ndarray,
        weights: np.ndarray,
        clusters: tuple[np.ndarray, Sequence[Any]] | None = None,
    ) -> ClassBreakdown:
        """The breakdown of N rows: their true and predicted (argmax) classes, N×2 values (``CLASS_METRICS``),
        and the row weights (0 on the rows not scored, which then count nowhere)."""
        size = len(keys)
        table = MomentTable.of_rows(values, weights, true_class, size, clusters)
        predicted = np.bincount(predicted_class, weights=weights, minlength=size)
        return cls(tuple(keys), table, predicted, clusters is not None)

    def merge(self, other: ClassBreakdown) -> ClassBreakdown:
        """The breakdown of both batches' rows (the classes are a setting of the state: they agree)."""
        if self.soft or other.soft:
            return self if self.soft else other
        _same_piece(("accumulators", "classes", "classes"), self.keys, other.keys)
        _same_piece(("accumulators", "classes", "clustered"), self.clustered, other.clustered)
        return ClassBreakdown(
            self.keys, self.table.merge(other.table), self.predicted + other.predicted, self.clustered
        )

    @classmethod
    def merge_all(cls, pieces: Sequence[ClassBreakdown]) -> ClassBreakdown:
        """The breakdown of all the pieces' rows at once (what ``merge`` gives, pair by pair)."""
        soft = [piece for piece in pieces if piece.soft]
        if soft:
            return soft[0]
        first = pieces[0]
        for piece in pieces[1:]:
            _same_piece(("accumulators", "classes", "classes"), first.keys, piece.keys)
            _same_piece(("accumulators", "classes", "clustered"), first.clustered, piece.clustered)
        table = MomentTable.merge_all([piece.table for piece in pieces])
        return cls(first.keys, table, np.sum([piece.predicted for piece in pieces], axis=0), first.clustered)

    @classmethod
    def read_merged(cls, states: Sequence[Any], merged: Sequence[bool]) -> ClassBreakdown | None:
        """The breakdowns of many states read and checked at once (what ``from_state`` checks), and those of the
        states ``merged`` marks merged; None when one would be refused (or is clustered, or of soft targets, or
        the class names differ): read them one by one."""
        if shared_keys(states) != _CLASS_KEYS or any(flag is not False for flag in column(states, ("clustered",))):
            return None
        keys_of = column(states, ("classes",))
        keys = keys_of[0]
        if type(keys) is not list or set(map(type, keys)) - {str} or len(set(keys)) != len(keys):
            return None
        if any(listed != keys for listed in keys_of) or (keys and max(map(len, keys)) > _LONGEST_NAME):
            return None
        size = len(keys)
        sizes = [size] * len(states)
        read = MomentTable.read_many(states, sizes, len(CLASS_METRICS), extra=1)
        if read is None:
            return None
        table, extra = read
        predicted = extra[:, 0]
        if (predicted < 0).any() or _fractions_outside(table, 1).any():
            return None
        weights = table.total_weight()  # W itself, as ``predicted`` is
        by_state = predicted.reshape(len(states), size).sum(axis=1), weights.reshape(len(states), size).sum(axis=1)
        if (by_state[0] > by_state[1] * (1 + 1e-9) + 1e-300).any():
            return None
        keep = np.repeat(np.asarray(merged, dtype=bool), sizes)
        kept = table.taken(keep)
        target = np.tile(np.arange(size), int(sum(merged)))
        total = predicted[keep].reshape(-1, size).sum(axis=0) if size else np.zeros(0)
        return cls(tuple(keys), kept.gather(target, size), total, False)

    def to_state(self) -> dict[str, Any]:
        """``{"clustered", "classes": [key …], "exponent", "table", "clusters"}``: a ``MomentTable`` state whose
        rows (one a class, in the order of ``classes``) end with the class's predicted weight; soft targets:
        ``{"soft_targets": true}``."""
        if self.soft:
            return dict(SOFT_TARGETS_STATE)
        return {"clustered": self.clustered, "classes": list(self.keys), **self.table.to_state((self.predicted,))}

    @classmethod
    def from_state(cls, state: Any, index: int) -> ClassBreakdown:
        """A state read back and checked (StateError naming the path)."""
        if is_soft_targets(state):
            return cls.undefined()
        path: tuple[str | int, ...] = ("accumulators", "classes")
        clustered = _clustered(state, ("clustered", "classes", *STATE_KEYS), path, index)
        keys = state["classes"]
        if not isinstance(keys, list) or not all(type(key) is str and len(key) <= _LONGEST_NAME for key in keys):
            raise StateError((*path, "classes"), "expected a list of class names", index)
        if len(set(keys)) != len(keys):
            raise StateError((*path, "classes"), "the class names repeat", index)
        size = len(keys)
        k = len(CLASS_METRICS)
        table, extra = MomentTable.from_state(state, size, k, clustered, path, index, 1)
        _check_fractions(table, 1, path, index)
        predicted = extra[:, 0]
        where = (*path, "table")
        first_bad(_column(predicted < 0, table_width(k)), where, "expected a finite number ≥ 0", index)
        if float(predicted.sum()) > float(table.total_weight().sum()) * (1 + 1e-9) + 1e-300:
            message = "the predicted weights add up to more than the rows' weight"
            raise StateError((*where, 0, table_width(k)), message, index)
        return cls(tuple(keys), table, predicted, clustered)

    def summary(self, confidence: float) -> dict[str, Any] | None:
        """The answer's ``by_class``: ``{class: {support, mean_cross_entropy, stderr, accuracy, predicted}}``;
        None when soft targets left it undefined."""
        if self.soft:
            return None
        _, _, table = self.table.spread(confidence)
        answer = {}
        rows = zip(self.keys, self.table.total_weight().tolist(), self.predicted.tolist(), table, strict=True)
        for key, support, predicted, (cross_entropy, accuracy) in rows:
            answer[key] = {
                "support": support,
                "mean_cross_entropy": finite_or_none(cross_entropy.mean),
                "stderr": cross_entropy.stderr,
                "accuracy": accuracy.mean,
                "predicted": predicted,
            }
        return answer


def _same_piece(path: tuple[str, ...], ours: Any, theirs: Any) -> None:
    """StateError when two pieces to merge disagree on what their state's settings fix (only a forged one can)."""
    if ours != theirs:
        raise StateError(path, f"differs between the states merged: {quoted(ours)} and {quoted(theirs)}")


def _clustered(state: Any, keys: tuple[str, ...], path: tuple[str | int, ...], index: int) -> bool:
    """The ``clustered`` flag of a breakdown state that has exactly ``keys``."""
    if not isinstance(state, Mapping) or set(state) != set(keys):
        raise StateError(path, f"expected an object with exactly {', '.join(keys)}", index)
    clustered = state["clustered"]
    if not isinstance(clustered, bool):
        raise StateError((*path, "clustered"), "expected true or false", index)
    return clustered


_UNSEEN: Final = object()
_GROUP_KEYS: Final = frozenset(("clustered", "names", *STATE_KEYS))
_CLASS_KEYS: Final = frozenset(("clustered", "classes", *STATE_KEYS))
#: The columns a group's row of the table ends with, after its moments.
_GROUP_COUNTS: Final = ("n", "n_scored")


def _whole(counts: np.ndarray) -> np.ndarray:
    """Where the values are counts: whole numbers ≥ 0 within what a float holds exactly."""
    return (counts >= 0) & (counts < 2.0**53) & (counts == np.floor(counts))


def _counts(counts: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """A groups table's last two columns as counts n and n_scored (None, None when one is not a count)."""
    if not _whole(counts).all():
        return None, None
    whole = counts.astype(np.int64)
    return whole[:, 0], whole[:, 1]


def _column(bad: np.ndarray, column: int) -> np.ndarray:
    """``bad`` over a table's rows, as a mask of rows × (column + 1) true at ``column``: where ``first_bad`` names."""
    mask = np.zeros((bad.shape[0], column + 1), dtype=bool)
    mask[:, column] = bad
    return mask


def _fractions_outside(table: MomentTable, metric: int) -> np.ndarray:
    """Where metric ``metric`` (correctness) has a mean, least or largest value outside [0, 1] in a counted entry."""
    values = np.stack([table.mean[:, metric], table.low[:, metric], table.high[:, metric]], axis=1)
    return (table.n > 0)[:, None] & ((values < 0.0) | (values > 1.0))


def _check_fractions(table: MomentTable, metric: int, path: tuple[str | int, ...], index: int) -> None:
    """Correctness lies in [0, 1]: so do the mean, least and largest value of metric ``metric``, where rows count."""
    counted = table.n > 0
    k = table.mean.shape[1]
    path = (*path, "table")
    for name in ("mean", "low", "high"):
        values = getattr(table, name)[:, metric]
        bad = np.flatnonzero(counted & ((values < 0.0) | (values > 1.0)))
        if bad.size:
            column = table_column(name, k) + metric
            raise StateError((*path, int(bad[0]), column), "accuracy lies in [0, 1]", index)
