"""Breakdowns by group and by class (issue 15 §2): each group's answer is the answer of its rows scored alone,
each class's recall is scikit-learn's, and the accumulators of any split merge into those of the whole."""

import itertools
import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import recall_score

from service.core import BinaryOptions, MulticlassOptions, PredictionType, score_binary, score_multiclass
from service.core.breakdowns import ClassBreakdown, GroupBreakdown, group_codes
from service.core.calibration import Calibration
from service.core.slices import binary_breakdowns, multiclass_breakdowns
from service.core.state import StateError
from service.core.statistics import weighted_standard_error
from service.core.summary import answer_summary


def _batch(seed: int, n: int = 60, c: int = 3) -> tuple[list[int], np.ndarray, np.ndarray, list[str], list[str]]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, c)) * 1.5
    q = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = rng.integers(0, c, n).tolist()
    weights = rng.uniform(0, 2, n)
    weights[::7] = 0.0  # rows of no weight count in n, never in a mean
    groups = rng.choice(["en", "fr", "de"], n).tolist()
    clusters = [f"doc{i}" for i in rng.integers(0, 12, n)]
    return labels, q, weights, groups, clusters


def _approx(value: Any) -> Any:
    """A whole block compared to 1e-12 (relative), None staying None."""
    if isinstance(value, dict):
        return {key: _approx(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_approx(item) for item in value]
    return value if value is None or isinstance(value, str | bool) else pytest.approx(value, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("clustered", [False, True])
def test_each_group_gets_the_answer_of_its_rows_scored_alone(clustered: bool) -> None:
    labels, q, weights, groups, clusters = _batch(1)
    result = score_multiclass(labels, q, sample_weights=weights)
    ids = clusters if clustered else None
    by_group = multiclass_breakdowns(result, labels, q, groups=groups, cluster_ids=ids).fields(0.9)["by_group"]
    assert list(by_group) == ["de", "en", "fr"]
    for name, block in by_group.items():
        rows = [i for i, g in enumerate(groups) if g == name]
        alone = score_multiclass([labels[i] for i in rows], q[rows], sample_weights=weights[rows])
        answer = answer_summary(
            alone, per_sample=False, confidence=0.9, cluster_ids=None if ids is None else [ids[i] for i in rows]
        )
        metrics = ("cross_entropy", "kl_divergence", "entropy", "accuracy")
        expected = {
            "n": len(rows),
            "n_scored": len(rows),
            "mean": {metric: answer["mean"][metric] for metric in metrics},
            "stderr": {metric: answer["stderr"][metric] for metric in metrics},
            "ci": {metric: answer["ci"][metric] for metric in metrics},
        }
        assert block == _approx(expected)


def test_group_codes_sort_the_names() -> None:
    names, codes = group_codes(np.array(["b", "a", "b", "c"]), 4)
    assert (names, codes.tolist()) == (["a", "b", "c"], [1, 0, 1, 2])


def test_byte_string_groups_are_read_a_byte_a_character_never_refused_as_undecodable() -> None:
    names, codes = group_codes(np.array([b"\xff", b"c", b"\xff"]), 3)
    assert (names, codes.tolist()) == (["c", "\xff"], [1, 0, 1])


def test_by_class_support_recall_and_predicted_by_hand_and_against_sklearn() -> None:
    labels, q, weights, _, _ = _batch(2, n=80, c=4)
    result = score_multiclass(labels, q, sample_weights=weights, classes=["A", "B", "C", "D"])
    names = ["A", "B", "C", "D"]
    by_class = multiclass_breakdowns(result, [names[y] for y in labels], q, classes=names, per_class=True).fields(0.95)[
        "by_class"
    ]
    y, predicted = np.array(labels), q.argmax(axis=1)
    recall = recall_score(y, predicted, labels=[0, 1, 2, 3], average=None, sample_weight=weights, zero_division=0)
    ce = -np.log(q[np.arange(80), y])
    for c, name in enumerate(names):
        mine = y == c
        error = weighted_standard_error(ce[mine], weights[mine])
        assert by_class[name] == _approx(
            {
                "support": float(weights[mine].sum()),
                "mean_cross_entropy": error.mean,
                "stderr": error.stderr,
                "accuracy": float(recall[c]),
                "predicted": float(weights[predicted == c].sum()),
            }
        )


def test_a_small_case_by_hand() -> None:
    # True classes 1, 0, 2, 1; argmax 1, 0, 2, 0; weights 1, 2, 1, 1.
    labels = [1, 0, 2, 1]
    q = [[0.228, 0.619, 0.153], [0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1]]
    result = score_multiclass(labels, q, sample_weights=[1.0, 2.0, 1.0, 1.0])
    fields = multiclass_breakdowns(result, labels, q, per_class=True, calibration_bins=2).fields(0.95)
    ce_b = [-math.log(0.619), -math.log(0.3)]
    mean_b = sum(ce_b) / 2
    se_b = math.sqrt(2 * sum((v - mean_b) ** 2 for v in ce_b)) / 2  # n/(n−1)·Σw²(ℓ−m)²/W², w = 1
    assert fields["by_class"] == _approx(
        {
            "0": {
                "support": 2.0,
                "mean_cross_entropy": -math.log(0.5),
                "stderr": None,
                "accuracy": 1.0,
                "predicted": 3.0,
            },
            "1": {"support": 2.0, "mean_cross_entropy": mean_b, "stderr": se_b, "accuracy": 0.5, "predicted": 1.0},
            "2": {
                "support": 1.0,
                "mean_cross_entropy": -math.log(0.7),
                "stderr": None,
                "accuracy": 1.0,
                "predicted": 1.0,
            },
        }
    )
    # Confidences 0.619, 0.5, 0.7, 0.6, all in [0.5, 1]; correct 1, 1, 1, 0; W = 5.
    conf = (0.619 + 2 * 0.5 + 0.7 + 0.6) / 5
    acc = 4 / 5
    brier = (
        (0.228**2 + 0.381**2 + 0.153**2)
        + 2 * (0.5**2 + 0.3**2 + 0.2**2)
        + (0.1**2 + 0.2**2 + 0.3**2)
        + (0.6**2 + 0.7**2 + 0.1**2)
    ) / 5
    assert fields["calibration"] == _approx(
        {
            "n_bins": 2,
            "ece": abs(acc - conf),
            "mce": abs(acc - conf),
            "rmsce": abs(acc - conf),
            "brier": brier,
            "bins": [
                {"lower": 0.0, "upper": 0.5, "count": 0, "weight": 0.0, "mean_confidence": None, "accuracy": None},
                {"lower": 0.5, "upper": 1.0, "count": 4, "weight": 5.0, "mean_confidence": conf, "accuracy": acc},
            ],
        }
    )
    assert fields["by_group"] is None


def test_one_hot_target_rows_break_down_as_their_class_indices() -> None:
    labels, q, _, _, _ = _batch(3)
    rows = np.eye(3)[labels].tolist()
    as_indices = multiclass_breakdowns(score_multiclass(labels, q), labels, q, per_class=True, calibration_bins=5)
    as_rows = multiclass_breakdowns(score_multiclass(rows, q), rows, q, per_class=True, calibration_bins=5)
    assert as_rows.fields(0.95) == as_indices.fields(0.95)
    assert as_rows.warnings == ()


def test_soft_targets_leave_by_class_and_calibration_null_with_a_warning() -> None:
    rows = [[0.0, 1.0, 0.0], [0.5, 0.5, 0.0]]
    q = [[0.2, 0.7, 0.1], [0.3, 0.3, 0.4]]
    found = multiclass_breakdowns(score_multiclass(rows, q), rows, q, per_class=True, calibration_bins=3)
    assert found.fields(0.95) == {"by_group": None, "by_class": None, "calibration": None}
    [warning] = found.warnings
    assert (str(warning.code), warning.count, warning.rows) == ("SOFT_TARGETS", 1, (1,))
    assert warning.message == (
        "by_class and calibration are null: they need one true class per row, and these target rows are not one-hot"
    )


def test_ignored_rows_count_in_a_groups_n_but_not_in_its_means() -> None:
    labels, q = [1, -100, 0], [[0.2, 0.8], [0.5, 0.5], [0.9, 0.1]]
    options = MulticlassOptions(ignore_index=-100)
    result = score_multiclass(labels, q, options=options)
    found = multiclass_breakdowns(
        result, labels, q, options=options, groups=["g", "g", "h"], per_class=True, calibration_bins=2
    ).fields(0.95)
    assert (found["by_group"]["g"]["n"], found["by_group"]["g"]["n_scored"]) == (2, 1)
    assert found["by_group"]["g"]["mean"]["cross_entropy"] == pytest.approx(-math.log(0.8))
    assert [found["by_class"][k]["support"] for k in ("0", "1")] == [1.0, 1.0]
    assert found["calibration"]["bins"][1]["count"] == 2


def test_logits_calibrate_through_the_softmax() -> None:
    labels, q, _, _, _ = _batch(4)
    logits = np.log(q) + 3.0
    as_logits = MulticlassOptions(prediction_type=PredictionType.LOGITS)
    from_logits = multiclass_breakdowns(
        score_multiclass(labels, logits, options=as_logits), labels, logits, options=as_logits, calibration_bins=10
    )
    from_q = multiclass_breakdowns(score_multiclass(labels, q), labels, q, calibration_bins=10)
    assert from_logits.fields(0.95)["calibration"] == _approx(from_q.fields(0.95)["calibration"])


def test_binary_logits_calibrate_through_the_sigmoid() -> None:
    q = np.array([0.1, 0.6, 0.85, 0.3])
    y = [0, 1, 0, 1]
    logits = np.log(q) - np.log1p(-q)
    as_logits = BinaryOptions(prediction_type=PredictionType.LOGITS)
    from_logits = binary_breakdowns(
        score_binary(y, logits, options=as_logits), y, logits, options=as_logits, calibration_bins=4
    )
    from_q = binary_breakdowns(score_binary(y, q), y, q, calibration_bins=4)
    assert from_logits.fields(0.95)["calibration"] == _approx(from_q.fields(0.95)["calibration"])


# --- merging: any split of the rows merges into the whole ----------------------------------------------


def _pieces(
    labels: list[int], q: np.ndarray, weights: np.ndarray, groups: list[str], clusters: list[str] | None
) -> tuple[GroupBreakdown, ClassBreakdown, Calibration]:
    result = score_multiclass(labels, q, sample_weights=weights, classes=["a", "b", "c"])
    found = multiclass_breakdowns(
        result,
        labels,
        q,
        classes=["a", "b", "c"],
        groups=groups,
        per_class=True,
        calibration_bins=6,
        cluster_ids=clusters,
    )
    assert found.groups is not None
    assert found.classes is not None
    assert found.calibration is not None
    return found.groups, found.classes, found.calibration


def _through_json(piece: Any, kind: Any) -> Any:
    """A piece written as its JSON state and read back, as a merge request carries it."""
    return kind.from_state(json.loads(json.dumps(piece.to_state())), 0)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 40),
    cuts=st.lists(st.floats(0, 1), max_size=5),
    clustered=st.booleans(),
)
def test_merging_the_pieces_of_any_split_gives_the_pieces_of_the_whole(
    seed: int, n: int, cuts: list[float], clustered: bool
) -> None:
    labels, q, weights, groups, clusters = _batch(seed, n=n)
    ids = clusters if clustered else None
    whole = _pieces(labels, q, weights, groups, ids)
    bounds = sorted({0, n, *(int(c * n) for c in cuts)})
    shards = [(0, 0), *itertools.pairwise(bounds)]  # an empty shard too: the identity
    merged: list[Any] = [None, None, None]
    every: list[list[Any]] = [[], [], []]
    kinds: tuple[Any, ...] = (GroupBreakdown, ClassBreakdown, Calibration)
    for a, b in shards:
        parts = _pieces(labels[a:b], q[a:b], weights[a:b], groups[a:b], None if ids is None else ids[a:b])
        for i, (part, kind) in enumerate(zip(parts, kinds, strict=True)):
            part = _through_json(part, kind)
            merged[i] = part if merged[i] is None else merged[i].merge(part)
            every[i].append(part)
    wholes: tuple[Any, ...] = whole
    at_once = [kind.merge_all(pieces[::-1]) for kind, pieces in zip(kinds, every, strict=True)]
    for got, all_at_once, expected in zip(merged, at_once, wholes, strict=True):
        expected_fields = expected.summary(0.95)
        for found in (got.summary(0.95), all_at_once.summary(0.95)):  # pair by pair, and all at once (reversed)
            assert json.dumps(found, sort_keys=True).count("null") == json.dumps(expected_fields, sort_keys=True).count(
                "null"
            )
            assert found == _merge_tolerance(expected_fields)


def _merge_tolerance(value: Any) -> Any:
    """Means to 1e-12, standard errors and intervals to 1e-9 (issue 15): 1e-9 relative for every number here."""
    if isinstance(value, dict):
        return {key: _merge_tolerance(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_merge_tolerance(item) for item in value]
    if value is None or isinstance(value, str | bool | int):
        return value
    return pytest.approx(value, rel=1e-9, abs=1e-12)


# --- hostile states ---------------------------------------------------------------------------------------


def _group_state() -> dict[str, Any]:
    labels, q, weights, groups, clusters = _batch(5, n=12)
    state: dict[str, Any] = json.loads(json.dumps(_pieces(labels, q, weights, groups, clusters)[0].to_state()))
    return state


def _forge(state: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    target: Any = state
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return state


T = "table"  # a row per group: n, W, V, then 4 columns each of mean, U, Q, low, high, infinite; then n, n_scored
FORGED_GROUPS = [
    ("negative n", (T, 0, 27), -1, r"expected a count \(a whole number ≥ 0\)"),
    ("n_scored above n", (T, 0, 28), 99, "rows of positive weight ≤ n_scored ≤ n"),
    ("names out of order", ("names",), ["fr", "de", "en"], "expected the group names sorted, each once"),
    ("NaN mean", (T, 0, 3), math.nan, "expected a finite number"),
    ("table row too short", (T, 0), [0.1], "expected a list of 29 numbers"),
    ("a boolean for a number", (T, 1, 1), True, "expected a number"),
    ("a fractional count", (T, 1, 0), 1.5, r"expected a count \(a whole number ≥ 0\)"),
    ("an infinite flag of 2", (T, 1, 23), 2, "expected 0 or 1"),
    ("weight without rows", (T, 0, 0), 0, "a total weight contradicts the entry's n"),
    ("Σw² above W²", (T, 0, 2), 1e6, r"Σw² must lie in \[W²/n, W²\]"),
    ("negative second moment", (T, 0, 11), -1.0, "a centred second moment is negative"),
    ("mean past the largest value", (T, 0, 3), 1e6, r"lies outside \[low, high\]"),
    ("accuracy above 1", (T, 0, 22), 2.0, r"accuracy lies in \[0, 1\]"),
    ("cluster weights that do not add up", ("clusters", "weight", 0), 1e6, "do not add up"),
    ("a cluster id that is null", ("clusters", "ids", 0), None, "expected a list of cluster ids"),
    ("a cluster of no entry", ("clusters", "entry", 0), 7, r"names no entry \(there are 3\)"),
]


@pytest.mark.parametrize(
    ("path", "value", "message"), [case[1:] for case in FORGED_GROUPS], ids=[case[0] for case in FORGED_GROUPS]
)
def test_a_forged_group_state_is_refused(path: tuple[Any, ...], value: Any, message: str) -> None:
    with pytest.raises(StateError, match=message) as raised:
        GroupBreakdown.from_state(_forge(_group_state(), path, value), 2)
    assert raised.value.index == 2
    assert raised.value.path[:2] == ("accumulators", "groups")


def test_a_forged_class_state_is_refused() -> None:
    labels, q, weights, groups, _ = _batch(6, n=12)
    state = json.loads(json.dumps(_pieces(labels, q, weights, groups, None)[1].to_state()))
    with pytest.raises(StateError, match="the predicted weights add up to more than the rows' weight"):
        ClassBreakdown.from_state({**state, "table": [[*row[:-1], 1e9] for row in state["table"]]}, 0)
    with pytest.raises(StateError, match="expected 2 entries, got 3"):
        ClassBreakdown.from_state({**state, "classes": ["a", "b"]}, 0)
    with pytest.raises(StateError, match="the class names repeat"):
        ClassBreakdown.from_state({**state, "classes": ["a", "a", "c"]}, 0)


def test_pieces_that_disagree_on_what_their_settings_fix_are_refused_not_merged() -> None:
    labels, q, weights, groups, clusters = _batch(7, n=12)
    clustered = _pieces(labels, q, weights, groups, clusters)
    plain = _pieces(labels, q, weights, groups, None)
    with pytest.raises(
        StateError, match=r"^states\.accumulators\.groups\.clustered: differs between the states merged"
    ):
        clustered[0].merge(plain[0])
    with pytest.raises(
        StateError, match=r"accumulators\.calibration\.n_bins: differs between the states merged: 6 and 2"
    ):
        clustered[2].merge(Calibration.empty(2))
    renamed = ClassBreakdown(("x", "y", "z"), plain[1].table, plain[1].predicted, False)
    with pytest.raises(StateError, match=r"accumulators\.classes\.classes: differs"):
        plain[1].merge(renamed)
