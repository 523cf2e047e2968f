"""Calibration (issue 15 §3): ECE, MCE and RMSCE against torchmetrics and a torchmetrics-style reference written
here, the Brier score against scikit-learn's ``brier_score_loss``, hand-computed cases, and the state's checks."""

import math
from typing import Any, Literal

import numpy as np
import pytest
import torch
from sklearn.metrics import brier_score_loss
from torchmetrics.functional.classification import binary_calibration_error, multiclass_calibration_error

from service.core.calibration import (
    Calibration,
    bin_of,
    binary_calibration,
    check_calibration_bins,
    multiclass_calibration,
)
from service.core.errors import InvalidOption
from service.core.state import StateError

Norm = Literal["l1", "max", "l2"]
NORMS: tuple[Norm, ...] = ("l1", "max", "l2")
FIELD = {"l1": "ece", "max": "mce", "l2": "rmsce"}


def torchmetrics_style(confidence: np.ndarray, accuracy: np.ndarray, n_bins: int, norm: str) -> float:
    """torchmetrics' ``_binning_bucketize`` and ``_ce_compute``, written out: bins by ``bucketize(right=True)``
    on ``linspace(0, 1, B + 1)``, so a confidence of exactly 1.0 lands in bin B, past the last one."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.searchsorted(edges, confidence, side="right") - 1
    count = np.bincount(bins, minlength=n_bins + 1).astype(float)
    conf = np.bincount(bins, weights=confidence, minlength=n_bins + 1) / np.where(count > 0, count, 1)
    acc = np.bincount(bins, weights=accuracy, minlength=n_bins + 1) / np.where(count > 0, count, 1)
    share = count / count.sum()
    gaps = np.abs(acc - conf)
    if norm == "l1":
        return float(np.sum(gaps * share))
    if norm == "max":
        return float(np.max(gaps[count > 0]))
    return math.sqrt(float(np.sum(gaps * gaps * share)))


def _softmax_rows(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    logits = rng.normal(size=(n, c)) * 2
    q: np.ndarray = np.exp(logits - logits.max(axis=1, keepdims=True))
    return q / q.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("n_bins", [1, 5, 15])
def test_multiclass_calibration_equals_torchmetrics(norm: Norm, n_bins: int) -> None:
    rng = np.random.default_rng(n_bins)
    q = _softmax_rows(rng, 500, 4)
    y = rng.integers(0, 4, 500)
    correct = (q.argmax(axis=1) == y).astype(float)
    ours = multiclass_calibration(q, y, correct, np.ones(500), n_bins).summary()
    theirs = multiclass_calibration_error(
        torch.from_numpy(q), torch.from_numpy(y), num_classes=4, n_bins=n_bins, norm=norm
    ).item()
    assert ours[FIELD[norm]] == pytest.approx(theirs, rel=1e-5, abs=1e-7)  # torchmetrics bins in float32
    assert ours[FIELD[norm]] == pytest.approx(torchmetrics_style(q.max(axis=1), correct, n_bins, norm), rel=1e-12)


@pytest.mark.parametrize("norm", NORMS)
def test_binary_calibration_equals_torchmetrics(norm: Norm) -> None:
    rng = np.random.default_rng(7)
    q = rng.uniform(size=400)
    y = (rng.uniform(size=400) < q).astype(float)
    ours = binary_calibration(q[:, None], y[:, None], np.ones(400), 10).summary()
    theirs = binary_calibration_error(torch.from_numpy(q), torch.from_numpy(y).long(), n_bins=10, norm=norm).item()
    assert ours[FIELD[norm]] == pytest.approx(theirs, rel=1e-5, abs=1e-7)
    assert ours[FIELD[norm]] == pytest.approx(torchmetrics_style(q, y, 10, norm), rel=1e-12)


def test_a_confidence_of_exactly_one_falls_in_the_last_bin_where_torchmetrics_opens_another() -> None:
    q = np.array([1.0, 0.95, 0.3, 0.6])
    y = np.array([0.0, 1.0, 0.0, 1.0])
    ours = binary_calibration(q[:, None], y[:, None], np.ones(4), 2).summary()
    assert [b["count"] for b in ours["bins"]] == [1, 3]
    # Theirs: 1.0 alone in bin 2, so the last bin holds 0.95 and 0.6 only.
    theirs = binary_calibration_error(torch.from_numpy(q), torch.from_numpy(y).long(), n_bins=2, norm="l1").item()
    assert theirs == pytest.approx(torchmetrics_style(q, y, 2, "l1"))
    assert theirs == pytest.approx((0.3 + abs(1.0 - 0.775) * 2 + 1.0) / 4)  # 0.4375
    assert ours["ece"] == pytest.approx((0.3 + abs(2 / 3 - 2.55 / 3) * 3) / 4)  # 0.2125
    assert ours["ece"] != pytest.approx(theirs)
    # With the 1.0 moved into the last bin (1 − 1e-12 rather than 1), the two agree again.
    moved = np.where(q == 1.0, 1 - 1e-12, q)
    assert ours["ece"] == pytest.approx(torchmetrics_style(moved, y, 2, "l1"), rel=1e-9)


def test_bins_are_half_open_on_the_right_edges() -> None:
    assert bin_of(np.array([0.0, 0.1, 0.0999999, 0.2, 0.3, 0.7, 0.9999, 1.0]), 10).tolist() == [
        0,
        1,
        0,
        2,
        3,
        7,
        9,
        9,
    ]


@pytest.mark.parametrize("n_classes", [2, 3, 5])
def test_multiclass_brier_is_sklearns_brier_score_loss(n_classes: int) -> None:
    rng = np.random.default_rng(n_classes)
    q = _softmax_rows(rng, 300, n_classes)
    y = rng.integers(0, n_classes, 300)
    y[:n_classes] = np.arange(n_classes)  # every class present, as sklearn infers the classes from y
    weights = rng.uniform(0, 3, 300)
    correct = (q.argmax(axis=1) == y).astype(float)
    ours = multiclass_calibration(q, y, correct, weights, 10).summary()["brier"]
    # scale_by_half="auto" halves exactly when there are 2 classes; with 2 columns sklearn reads q[:, 1].
    theirs = brier_score_loss(y, q[:, 1] if n_classes == 2 else q, sample_weight=weights)
    assert ours == pytest.approx(theirs, rel=1e-12)


def test_binary_and_multilabel_brier_is_sklearns_brier_score_loss_over_the_elements() -> None:
    rng = np.random.default_rng(3)
    q = rng.uniform(size=(200, 3))
    y = (rng.uniform(size=(200, 3)) < 0.4).astype(float)
    weights = rng.uniform(0, 2, 200)
    ours = binary_calibration(q, y, weights, 15).summary()["brier"]
    theirs = brier_score_loss(y.ravel(), q.ravel(), sample_weight=np.repeat(weights, 3))
    assert ours == pytest.approx(theirs, rel=1e-12)


def test_weighted_calibration_by_hand() -> None:
    # Three rows, B = 2, weights 1, 3 and 0 (the last counts in `count`, not in `weight`).
    q = np.array([[0.9, 0.1], [0.3, 0.7], [0.2, 0.8]])
    y = np.array([0, 0, 1])
    correct = np.array([1.0, 0.0, 1.0])
    block = multiclass_calibration(q, y, correct, np.array([1.0, 3.0, 0.0]), 2).summary()
    conf = (1 * 0.9 + 3 * 0.7) / 4  # 0.75
    acc = (1 * 1.0 + 3 * 0.0) / 4  # 0.25
    brier = (1 * (0.01 + 0.01) + 3 * (0.49 + 0.49)) / 4 / 2  # halved: C = 2
    assert block == {
        "n_bins": 2,
        "ece": pytest.approx(abs(acc - conf)),
        "mce": pytest.approx(abs(acc - conf)),
        "rmsce": pytest.approx(abs(acc - conf)),
        "brier": pytest.approx(brier),
        "bins": [
            {"lower": 0.0, "upper": 0.5, "count": 0, "weight": 0.0, "mean_confidence": None, "accuracy": None},
            {
                "lower": 0.5,
                "upper": 1.0,
                "count": 3,
                "weight": 4.0,
                "mean_confidence": pytest.approx(conf),
                "accuracy": pytest.approx(acc),
            },
        ],
    }


def test_no_weight_leaves_every_score_null() -> None:
    block = binary_calibration(np.array([[0.3]]), np.array([[1.0]]), np.zeros(1), 3).summary()
    assert (block["ece"], block["mce"], block["rmsce"], block["brier"]) == (None, None, None, None)
    assert [b["count"] for b in block["bins"]] == [1, 0, 0]


def test_merging_calibrations_of_shards_equals_the_whole() -> None:
    rng = np.random.default_rng(11)
    q = _softmax_rows(rng, 97, 3)
    y = rng.integers(0, 3, 97)
    correct = (q.argmax(axis=1) == y).astype(float)
    weights = rng.uniform(0, 2, 97)
    whole = multiclass_calibration(q, y, correct, weights, 7)
    parts = [
        multiclass_calibration(q[a:b], y[a:b], correct[a:b], weights[a:b], 7) for a, b in ((0, 0), (0, 40), (40, 97))
    ]
    merged = parts[0].merge(parts[1]).merge(parts[2])
    assert merged.count.tolist() == whole.count.tolist()
    got, expected = merged.summary(), whole.summary()
    for key in ("ece", "mce", "rmsce", "brier"):
        assert got[key] == pytest.approx(expected[key], rel=1e-12)
    assert Calibration.from_state(merged.to_state(), 0).summary() == got


@pytest.mark.parametrize("value", [0, 10_001, 1.5, True, "3", math.nan])
def test_calibration_bins_outside_its_range_is_refused(value: Any) -> None:
    with pytest.raises(InvalidOption, match=r"^calibration_bins: must be an integer in \[1, 10000\] or null"):
        check_calibration_bins(value)


def _state() -> dict[str, Any]:
    state = binary_calibration(np.array([[0.2], [0.9]]), np.array([[0.0], [1.0]]), np.array([1.0, 2.0]), 2).to_state()
    assert state == {"n_bins": 2, "table": [[1.0, 1.0, 0.2, 0.0], [1.0, 2.0, 1.8, 2.0]], "brier": pytest.approx(0.06)}
    return state


FORGED = [
    # The table: a row a bin of count, Σw, Σw·conf, Σw·acc; the real one is [[1, 1, 0.2, 0], [1, 2, 1.8, 2]].
    ("negative count", {"table": [[-1, 1, 0.2, 0], [1, 2, 1.8, 2]]}, "table.0.0", "expected a count"),
    ("fractional count", {"table": [[1, 1, 0.2, 0], [1.5, 2, 1.8, 2]]}, "table.1.0", "expected a count"),
    ("wrong length", {"table": [[1, 1, 0.2, 0]]}, "table", "expected 2 entries, got 1"),
    ("NaN sum", {"table": [[1, 1, math.nan, 0], [1, 2, 1.8, 2]]}, "table.0.2", "expected a finite number"),
    ("negative sum", {"table": [[1, 1, 0.2, -1], [1, 2, 1.8, 2]]}, "table.0.3", "expected a finite number ≥ 0"),
    ("weight without rows", {"table": [[0, 1, 0.2, 0], [1, 2, 1.8, 2]]}, "table.0.1", "counts no rows"),
    ("mean confidence above 1", {"table": [[1, 1, 0.2, 0], [1, 2, 2.5, 2]]}, "table.1.2", "exceeds the bin's weight"),
    ("Brier above 2", {"brier": 7.0}, "brier", "exceeds twice the total weight"),
    ("negative Brier", {"brier": -1.0}, "brier", "expected a finite number ≥ 0"),
    ("bins past the range", {"n_bins": 0}, "n_bins", r"must lie in \[1, 10000\]"),
    ("unknown key", {"extra": 1}, "extra", "unknown key"),
]


@pytest.mark.parametrize(("change", "path", "message"), [p[1:] for p in FORGED], ids=[p[0] for p in FORGED])
def test_a_forged_calibration_state_is_refused_naming_its_path(change: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(StateError, match=message) as raised:
        Calibration.from_state({**_state(), **change}, 3)
    assert raised.value.index == 3
    assert ".".join(str(part) for part in raised.value.path) == f"accumulators.calibration.{path}"
