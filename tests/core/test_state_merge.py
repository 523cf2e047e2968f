"""Merging states is exact (issue 15 §1): any split of a batch into shards, empty shards and shards of one row
included, merges to the answer of the whole batch in one request — means and sums to 1e-12, standard errors
and intervals to 1e-9, counts and warnings' counts identical — in any order and any grouping."""

import itertools
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from whole_answers import same_numbers

from service.core import BinaryOptions, MulticlassOptions, score_binary, score_multiclass
from service.core.contract import BINARY, MULTICLASS
from service.core.score_state import StateOf
from service.core.state import merge_states
from service.core.summary import answer_summary

#: The answer's blocks a merge gives back, and how close: the issue's tolerances.
TOLERANCES = {"mean": 1e-12, "sum": 1e-12, "stderr": 1e-9, "ci": 1e-9}


def _answer(endpoint: str, labels: Any, predictions: Any, options: dict[str, Any], confidence: float) -> dict:
    """The scoring answer (without per-sample values) of one batch, with its state."""
    cluster_ids = options.get("cluster_ids")
    if endpoint == MULTICLASS:
        result = score_multiclass(
            labels,
            predictions,
            classes=options.get("classes"),
            class_weights=options.get("class_weights"),
            sample_weights=options.get("sample_weights"),
            options=MulticlassOptions(**options["core"]),
        )
    else:
        result = score_binary(
            labels,
            predictions,
            pos_weight=options.get("pos_weight"),
            sample_weights=options.get("sample_weights"),
            options=BinaryOptions(**options["core"]),
        )
    extra = {"classes": options.get("classes")} if endpoint == MULTICLASS else None
    state = StateOf.of_options(endpoint, options, predictions)
    return answer_summary(
        result, per_sample=False, extra=extra, confidence=confidence, cluster_ids=cluster_ids, state=state
    )


def _rows(options: dict[str, Any], start: int, stop: int) -> dict[str, Any]:
    """The options of rows [start, stop): per-row options sliced."""
    return {
        key: value[start:stop] if key in ("sample_weights", "cluster_ids") and value is not None else value
        for key, value in options.items()
    }


def assert_merges_to(merged: dict[str, Any], whole: dict[str, Any]) -> None:
    """The merged answer is the whole batch's (to the issue's tolerances; warnings without their rows)."""
    for key in ("n", "n_scored", "n_clusters", "unit", "classes"):
        assert merged.get(key) == whole.get(key), key
    for block, rel in TOLERANCES.items():
        # 1e-15 absolute: a standard error of constant values that differ in their last bit is rounding noise.
        assert _close(merged[block], whole[block], rel), (block, merged[block], whole[block])
    assert merged["warnings"] == [{**w, "rows": []} for w in whole["warnings"]]


def _close(got: Any, expected: Any, rel: float) -> bool:
    if isinstance(expected, dict):
        return got.keys() == expected.keys() and all(_close(got[k], expected[k], rel) for k in expected)
    if isinstance(expected, list):
        return len(got) == len(expected) and all(_close(a, b, rel) for a, b in zip(got, expected, strict=True))
    if isinstance(expected, float) and isinstance(got, float):
        return math.isclose(got, expected, rel_tol=rel, abs_tol=1e-15)
    return bool(got == expected)


@st.composite
def multiclass_batches(draw: st.DrawFn) -> tuple[Any, np.ndarray, dict[str, Any]]:
    """A multi-class batch: hard, named or soft labels, ignored rows, weights, smoothing, clusters, units."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n, c = draw(st.integers(0, 24)), draw(st.integers(2, 4))
    logits = draw(st.booleans())
    predictions = rng.normal(size=(n, c)) * 2 if logits else rng.dirichlet(np.ones(c), n)
    core: dict[str, Any] = {
        "prediction_type": "logits" if logits else "probabilities",
        "unit": draw(st.sampled_from(["nats", "bits", "hartleys"])),
        "label_smoothing": draw(st.sampled_from([0.0, 0.1])),
    }
    options: dict[str, Any] = {"core": core}
    form = draw(st.sampled_from(["indices", "names", "soft", "ignored"]))
    labels: Any = rng.integers(0, c, n)
    if form == "names":
        options["classes"] = [f"class-{i}" for i in range(c)]
        labels = [options["classes"][i] for i in labels]
    elif form == "soft":
        labels = rng.dirichlet(np.ones(c), n)
    elif form == "ignored":
        core["ignore_index"] = -100
        labels[rng.random(n) < 0.3] = -100
    if draw(st.booleans()):
        options["sample_weights"] = rng.choice([0.0, 0.5, 1.0, 2.5], n)
    if draw(st.booleans()):
        options["class_weights"] = rng.choice([0.5, 1.0, 3.0], c).tolist()
    if draw(st.booleans()):
        ids = rng.integers(0, max(1, n // 3), n)
        options["cluster_ids"] = [f"doc-{i}" for i in ids] if draw(st.booleans()) else ids
    return labels, predictions, options


@st.composite
def binary_batches(draw: st.DrawFn) -> tuple[Any, np.ndarray, dict[str, Any]]:
    """A binary or multi-label batch: hard or soft labels, weights, pos_weight, clusters."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n, k = draw(st.integers(0, 24)), draw(st.sampled_from([None, 1, 3]))
    shape = (n,) if k is None else (n, k)
    soft = draw(st.booleans())
    labels = rng.random(shape) if soft else rng.integers(0, 2, shape).astype(float)
    options: dict[str, Any] = {"core": {"unit": draw(st.sampled_from(["nats", "bits"]))}}
    if draw(st.booleans()):
        options["pos_weight"] = 2.0
    if draw(st.booleans()):
        options["sample_weights"] = rng.choice([0.0, 1.0, 4.0], n)
    if draw(st.booleans()):
        options["cluster_ids"] = rng.integers(0, max(1, n // 2), n)
    return labels, rng.random(shape), options


def _cuts(draw: st.DrawFn, n: int) -> list[tuple[int, int]]:
    """A split of n rows into shards, empty ones and ones of a single row among them."""
    points = sorted(draw(st.lists(st.integers(0, n), max_size=6)))
    edges = [0, *points, n]
    return list(itertools.pairwise(edges))


def _check_splits(endpoint: str, batch: tuple[Any, np.ndarray, dict[str, Any]], data: st.DataObject) -> None:
    labels, predictions, options = batch
    confidence = data.draw(st.sampled_from([0.95, 0.8]))
    whole = _answer(endpoint, labels, predictions, options, confidence)
    shards = [
        _answer(endpoint, labels[start:stop], predictions[start:stop], _rows(options, start, stop), confidence)
        for start, stop in _cuts(data.draw, len(predictions))
    ]
    states = [shard["state"] for shard in shards]
    merged = merge_states(states, confidence)
    assert_merges_to(merged, whole)
    # Order-independent and associative: the states shuffled, and merged in two rounds (a tree of merges).
    order = data.draw(st.permutations(range(len(states))))
    assert_merges_to(merge_states([states[i] for i in order], confidence), whole)
    cut = data.draw(st.integers(0, len(states)))
    rounds = [merge_states(part, confidence)["state"] for part in (states[:cut], states[cut:]) if part]
    assert_merges_to(merge_states(rounds, confidence), whole)


@settings(max_examples=150, deadline=None)
@given(batch=multiclass_batches(), data=st.data())
def test_any_split_of_a_multiclass_batch_merges_to_its_one_request_answer(batch: Any, data: st.DataObject) -> None:
    _check_splits(MULTICLASS, batch, data)


@settings(max_examples=100, deadline=None)
@given(batch=binary_batches(), data=st.data())
def test_any_split_of_a_binary_batch_merges_to_its_one_request_answer(batch: Any, data: st.DataObject) -> None:
    _check_splits(BINARY, batch, data)


LABELS = [1, 0, 2, 1]
PREDICTIONS = [[0.228, 0.619, 0.153], [0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.2, 0.6, 0.2]]


def test_two_shards_of_the_worked_example_merge_to_hand_computed_numbers() -> None:
    # CE per row: −ln 0.619, −ln 0.5, −ln 0.7, −ln 0.6; every argmax is right.
    ce = [-math.log(q) for q in (0.619, 0.5, 0.7, 0.6)]
    mean = sum(ce) / 4
    stderr = math.sqrt(4 / 3 * sum((x - mean) ** 2 for x in ce) / 16)  # HC1 with unit weights: s/√n
    options: dict[str, Any] = {"core": {}}
    shards = [_answer(MULTICLASS, LABELS[i:j], PREDICTIONS[i:j], options, 0.95) for i, j in ((0, 1), (1, 1), (1, 4))]

    merged = merge_states([shard["state"] for shard in shards], 0.95)

    assert merged["mean"]["cross_entropy"] == pytest.approx(mean, rel=1e-15)
    assert merged["sum"]["cross_entropy"] == pytest.approx(sum(ce), rel=1e-15)
    assert merged["stderr"] == {
        "cross_entropy": pytest.approx(stderr, rel=1e-12),
        "kl_divergence": pytest.approx(stderr, rel=1e-12),
        "entropy": 0.0,
        "accuracy": 0.0,
    }
    z = 1.959963984540054
    assert merged["ci"]["cross_entropy"] == [pytest.approx(mean - z * stderr), pytest.approx(mean + z * stderr)]
    assert (merged["n"], merged["n_scored"], merged["n_clusters"], merged["warnings"]) == (4, 4, None, [])
    # One shard of one row has no standard error; the merge of all three does.
    assert shards[0]["stderr"]["cross_entropy"] is None


def test_a_cluster_spanning_two_states_is_one_cluster() -> None:
    # Rows 0, 1 in cluster "a" (one in each shard), rows 2, 3 in "b": G = 2, CR1 over the cluster sums.
    ids = ["a", "b", "a", "b"]
    whole = _answer(MULTICLASS, LABELS, PREDICTIONS, {"core": {}, "cluster_ids": ids}, 0.95)
    shards = [
        _answer(MULTICLASS, LABELS[i:j], PREDICTIONS[i:j], {"core": {}, "cluster_ids": ids[i:j]}, 0.95)
        for i, j in ((0, 2), (2, 4))
    ]
    ce = [-math.log(q) for q in (0.619, 0.5, 0.7, 0.6)]
    mean = sum(ce) / 4
    sums = [ce[0] + ce[2] - 2 * mean, ce[1] + ce[3] - 2 * mean]
    stderr = math.sqrt(2 / 1 * sum(s * s for s in sums) / 16)  # G/(G−1) · Σ_g (Σ_{i∈g} (ℓᵢ − m))² / W²

    merged = merge_states([shard["state"] for shard in shards])

    assert merged["n_clusters"] == 2
    assert merged["stderr"]["cross_entropy"] == pytest.approx(stderr, rel=1e-12)
    assert_merges_to(merged, whole)


def test_the_state_of_an_empty_batch_is_the_identity() -> None:
    empty = _answer(MULTICLASS, np.zeros(0, dtype=int), np.zeros((0, 3)), {"core": {"unit": "bits"}}, 0.95)
    whole = _answer(MULTICLASS, LABELS, PREDICTIONS, {"core": {}}, 0.95)

    # Even in other settings (bits): a state of no rows merges with any state of its endpoint.
    assert_merges_to(merge_states([empty["state"], whole["state"], empty["state"]]), whole)
    alone = merge_states([empty["state"]])
    assert (alone["n"], alone["mean"]["cross_entropy"], [w["code"] for w in alone["warnings"]]) == (
        0,
        None,
        ["EMPTY", "STDERR_UNDEFINED"],
    )


def test_weights_near_float64_max_merge_without_overflow() -> None:
    weights = np.full(4, 1e308)
    options: dict[str, Any] = {"core": {}, "sample_weights": weights}
    whole = _answer(MULTICLASS, LABELS, PREDICTIONS, options, 0.95)
    shards = [
        _answer(MULTICLASS, LABELS[i:j], PREDICTIONS[i:j], _rows(options, i, j), 0.95) for i, j in ((0, 2), (2, 4))
    ]

    merged = merge_states([shard["state"] for shard in shards])

    assert merged["sum"]["cross_entropy"] is None  # Σwℓ overflows float64: null, as in one request
    assert [w["code"] for w in merged["warnings"]] == ["AGGREGATE_OVERFLOW"]
    assert_merges_to(merged, whole)


def test_a_state_is_the_same_json_after_a_round_trip_through_a_merge_of_one() -> None:
    whole = _answer(MULTICLASS, LABELS, PREDICTIONS, {"core": {}, "cluster_ids": [1, 2, 1, 2**70]}, 0.9)

    again = merge_states([whole["state"]], 0.9)["state"]

    assert same_numbers(again, whole["state"])
    assert again["accumulators"]["clusters"]["ids"] == [1, 2, str(2**70)]  # beyond 64 bits: decimal text
