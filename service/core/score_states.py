"""Many scoring states read and merged in a few array passes: the common case of a merge (issue 15's speed).

``ScoreStateKind.parse`` reads a state value by value, which names the value at fault; over a thousand states
that reading is most of a merge's time. ``merge_plain`` reads the overall part of every state at once (counts,
weights, the four metrics' moments) when they are all plainly well-formed: every state has rows of positive
weight, the first state's settings, no clusters, finite moments; then checks them with the same conditions in
array form (``state_moments.all_checked``) and merges them with the same k-way update
(``state_moments.merge_moment_table``), so the answer is the one the state-by-state reading gives, to the bit.
Anything else (a state of no rows or no weight, clusters, an infinite value, a value it would refuse) makes it
return None: then the states are read one by one, and a refusal names the state's index and the value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import chain
from operator import itemgetter
from typing import Any, Final

import numpy as np

from service.core.state_batch import column, present, shared_keys
from service.core.state_moments import PLAIN_COLUMNS, all_checked, merge_moment_table

_NUMBER_TYPES: Final = frozenset({int, float})
_ACCUMULATORS: Final = ("accumulators",)
_MOMENT_KEYS: Final = frozenset((*PLAIN_COLUMNS, "sum", "finite"))
_NUMBERS_OF: Final = itemgetter(*PLAIN_COLUMNS)
_FINITE_OF: Final = itemgetter("finite")
_SUM_OF: Final = itemgetter("sum")


def merge_plain(
    states: Sequence[Mapping[str, Any]],
    metrics: Sequence[str],
    keys: frozenset[str],
    piece_settings: Mapping[str, str],
) -> dict[str, Any] | None:
    """The overall part of the merge of ``states`` (envelopes checked, every state of the first one's settings,
    whose validity the caller checks): ``n``, ``n_scored``, ``n_weighted``, the total weight as (W', k), the
    merged moments of each metric and the warnings' states, by the keys of ``ScoreState``; None when a state is
    not plainly well-formed (then read them one by one). ``metrics`` are the metrics of a state, ``keys`` those
    of its accumulators, ``piece_settings`` the setting that turns each optional accumulator on."""

    if len(states) < 2 or shared_keys(states, _ACCUMULATORS) != keys:
        return None
    settings = column(states, ("settings",))
    first = settings[0]
    if first.get("cluster_ids") is not None or not all(value is first or value == first for value in settings):
        return None

    def values(key: str) -> list[Any]:
        return column(states, (*_ACCUMULATORS, key))

    n = np.array(column(states, ("n",)), dtype=np.int64)
    n_scored = np.array(column(states, ("n_scored",)), dtype=np.int64)
    n_weighted = _array(values("n_weighted"), {int})
    weight = _array(values("weight"), _NUMBER_TYPES)
    exponents = _array(values("weight_exponent"), {int})
    if n_weighted is None or weight is None or exponents is None:
        return None
    if (n_weighted <= 0).any() or (n_weighted > n_scored).any() or not np.isfinite(weight).all():
        return None
    if (weight <= 0).any() or (exponents < 0).any() or (exponents > 4096).any():
        return None
    if any(value is not None for value in values("clusters")):
        return None
    total_weight, total_exponent, shares = add_weights_of(weight, exponents)
    if not (shares > 0).all():
        return None  # a weight too small beside the others to have a share: state by state
    with np.errstate(over="ignore"):
        whole_weights = np.ldexp(weight, exponents.astype(np.int64))
    merged_metrics = {}
    for metric in metrics:
        merged = _merge_metric(values(metric), n_weighted, whole_weights, shares, metric == "accuracy")
        if merged is None:
            return None
        merged_metrics[metric] = merged
    if any(type(value) is not dict or value for value in values("warnings")):
        return None  # warnings to read and add up: state by state
    for key, setting in piece_settings.items():
        if present(states, (*_ACCUMULATORS, key)) is not (first[setting] not in (False, None)):
            return None
    return {
        "n": int(n.sum()),
        "n_scored": int(n_scored.sum()),
        "n_weighted": int(n_weighted.sum()),
        "weight": total_weight,
        "weight_exponent": total_exponent,
        "metrics": merged_metrics,
    }


def add_weights_of(weights: np.ndarray, exponents: np.ndarray) -> tuple[float, int, np.ndarray]:
    """``add_weights`` of the states' W' and k (W = W'·2^k), as arrays."""
    exponent = int(exponents.max())
    scaled = np.ldexp(weights, exponents.astype(np.int64) - exponent)
    with np.errstate(over="ignore"):  # near 1.8e308: halve them all, exactly, until the total fits
        total = float(scaled.sum())
        while not math.isfinite(total):
            scaled, exponent = scaled / 2, exponent + 1
            total = float(scaled.sum())
    if total == 0:
        return 0.0, 0, np.zeros(len(weights))
    return total, exponent, scaled / total


def _array(values: list[Any], types: Any) -> np.ndarray | None:
    """``values`` as an array when each is of ``types`` (not a boolean): float64 for numbers, int64 for integers."""
    if not set(map(type, values)) <= types:
        return None
    try:
        return np.array(values, dtype=np.float64 if float in types else np.int64)
    except OverflowError:
        return None


def _merge_metric(
    moments: list[Any], n_weighted: np.ndarray, weight: np.ndarray, shares: np.ndarray, fraction: bool
) -> Any | None:
    """One metric's moments of every state, checked and merged; None when one is not plainly well-formed.
    ``fraction``: the metric is correctness, whose mean, least and largest value lie in [0, 1]."""
    # Each a dict of exactly the moments' keys: as many keys, and every one of them there (else KeyError).
    if set(map(type, moments)) != {dict} or set(map(len, moments)) != {len(_MOMENT_KEYS)}:
        return None
    try:
        flags, numbers = list(map(_FINITE_OF, moments)), list(chain.from_iterable(map(_NUMBERS_OF, moments)))
        given = list(map(_SUM_OF, moments))
    except KeyError:
        return None
    if set(map(type, flags)) != {bool} or not all(flags):
        return None
    table = _array(numbers, _NUMBER_TYPES)
    if table is None or not np.isfinite(table).all():
        return None
    table = table.reshape(len(moments), len(PLAIN_COLUMNS))
    if fraction and ((table[:, :3] < 0.0).any() or (table[:, :3] > 1.0).any()):
        return None
    sums = None
    if any(total is not None for total in given):
        sums = _array(given, _NUMBER_TYPES)
        if sums is None or not np.isfinite(sums).all():
            return None  # a sum missing (overflowed) in some state: state by state
    if not all_checked(table, sums, n_weighted, weight):
        return None
    total = None
    if sums is not None:
        with np.errstate(over="ignore"):
            total = float(np.sum(sums))
        total = total if np.isfinite(total) else None
    return merge_moment_table(table, shares, total)
