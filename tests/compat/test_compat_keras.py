"""``compat: "keras"`` against the expected numbers of Keras' own tests (keras/src/losses/losses_test.py, 3.x).

Keras is not a dependency: its expected numbers are ported as its test file states them, with its own
tolerances (``assertAlmostEqual``: 3 decimals; ``assertAllClose``: 1e-6), plus the numbers of the
reference notes (../shared/reference/loss-library-semantics.md), which ran Keras 3.15.1.
"""

from typing import Any

import numpy as np
import pytest

from service.core import BinaryOptions, InvalidOption, MulticlassOptions, RowsNotNormalized
from service.core.compat import score_binary_preset, score_multiclass_preset

ALMOST = 1.5e-3  # Keras' assertAlmostEqual: 3 decimals
CLOSE = 1e-6  # its assertAllClose

Y_ONE_HOT = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
Y_INDICES = [0, 1, 2]
PROBS = [[0.9, 0.05, 0.05], [0.5, 0.89, 0.6], [0.05, 0.01, 0.94]]  # row 1 sums to 1.99: Keras renormalises it
LOGITS = [[8.0, 1.0, 1.0], [0.0, 9.0, 1.0], [2.0, 3.0, 5.0]]


def _cce(labels: Any, preds: Any, kind: str = "probabilities", weights: Any = None, **options: Any) -> Any:
    return score_multiclass_preset(
        "keras", labels, preds, sample_weights=weights, options=MulticlassOptions(prediction_type=kind, **options)
    )


def _bce(labels: Any, preds: Any, kind: str = "probabilities", weights: Any = None, **options: Any) -> Any:
    return score_binary_preset(
        "keras", labels, preds, sample_weights=weights, options=BinaryOptions(prediction_type=kind, **options)
    )


@pytest.mark.parametrize("labels", [Y_ONE_HOT, Y_INDICES], ids=["CategoricalCrossentropy", "SparseCategorical"])
def test_categorical_crossentropy_test_unweighted_and_weighted(labels: Any) -> None:
    """test_unweighted 0.3239 / logits 0.0573; test_scalar_weighted (2.3) 0.7449 / 0.1317; test_sample_weighted
    ([1.2, 3.4, 5.6], ÷ N) 1.0696 / 0.31829; test_all_correct_unweighted 0."""
    assert _cce(labels, PROBS).mean.cross_entropy == pytest.approx(0.3239, abs=ALMOST)
    assert _cce(labels, LOGITS, "logits").mean.cross_entropy == pytest.approx(0.0573, abs=ALMOST)
    scalar = [2.3] * 3
    assert _cce(labels, PROBS, weights=scalar).mean.cross_entropy == pytest.approx(0.7449, abs=ALMOST)
    assert _cce(labels, LOGITS, "logits", weights=scalar).mean.cross_entropy == pytest.approx(0.1317, abs=ALMOST)
    weights = [1.2, 3.4, 5.6]
    assert _cce(labels, PROBS, weights=weights).mean.cross_entropy == pytest.approx(1.0696, abs=ALMOST)
    assert _cce(labels, LOGITS, "logits", weights=weights).mean.cross_entropy == pytest.approx(0.31829, abs=ALMOST)
    perfect = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    assert _cce(labels, perfect).mean.cross_entropy == pytest.approx(0.0, abs=ALMOST)
    diagonal = [[10.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 10.0]]
    assert _cce(labels, diagonal, "logits").mean.cross_entropy == pytest.approx(0.0, abs=ALMOST)


def test_categorical_crossentropy_test_no_reduction_and_label_smoothing() -> None:
    """test_no_reduction: (0.001822, 0.000459, 0.169846); test_label_smoothing: 400·0.1/3 on logits ±100."""
    per_sample = _cce(Y_ONE_HOT, LOGITS, "logits").per_sample.cross_entropy
    np.testing.assert_allclose(per_sample, [0.001822, 0.000459, 0.169846], atol=CLOSE, rtol=CLOSE)
    smoothed = _cce([[1, 0, 0]], [[100.0, -100.0, -100.0]], "logits", label_smoothing=0.1)
    assert smoothed.mean.cross_entropy == pytest.approx(400.0 * 0.1 / 3.0, abs=ALMOST)


def test_sparse_categorical_crossentropy_test_ignore_class() -> None:
    """test_ignore_class: y = [-1, 2] with ignore_class=-1: per-sample [0, 1.480129] (xent: null, 1.480129)."""
    result = _cce([-1, 2], [[0.854, 0.698, 0.598], [0.088, 0.86, 0.018]], "logits", ignore_index=-1)
    assert result.per_sample.cross_entropy[1] == pytest.approx(1.480129, abs=CLOSE)
    assert result.n_scored == 1
    # "sum_over_batch_size" with a mask divides by the valid entries (+ ε): the one row's value.
    assert result.mean.cross_entropy == pytest.approx(1.480129, rel=1e-6)


def test_binary_crossentropy_test_unweighted_scalar_and_sample_weighted() -> None:
    """test_unweighted: 0.20046903; hard 0/1 labels and predictions: 3.98559 (float32 clip bounds); logits
    3.3333. test_scalar_weighted: 9.1668 / 7.666; test_sample_weighted: 4.7827 / 10.0. test_no_reduction:
    [0, 6.666]; test_label_smoothing: (10 + 5·0.1)/3; test_all_correct_unweighted: 0."""
    eye = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    probs = np.array([[0.9, 0.1, 0.2], [0.3, 0.8, 0.1], [0.1, 0.2, 0.7]], dtype=np.float32)
    assert _bce(eye, probs).mean.cross_entropy == pytest.approx(0.20046903, abs=CLOSE, rel=CLOSE)
    hard_y, hard_p = [[1.0, 0.0], [1.0, 0.0]], [[1.0, 1.0], [1.0, 0.0]]
    assert _bce(hard_y, hard_p).mean.cross_entropy == pytest.approx(3.98559, abs=ALMOST)
    y, logits = [[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]], [[10.0, -10.0, 10.0], [10.0, 10.0, -10.0]]
    assert _bce(y, logits, "logits").mean.cross_entropy == pytest.approx(3.3333, abs=ALMOST)
    assert _bce(hard_y, hard_p, weights=[2.3, 2.3]).mean.cross_entropy == pytest.approx(9.1668, abs=ALMOST)
    assert _bce(y, logits, "logits", weights=[2.3, 2.3]).mean.cross_entropy == pytest.approx(7.666, abs=ALMOST)
    assert _bce(hard_y, hard_p, weights=[1.2, 3.4]).mean.cross_entropy == pytest.approx(4.7827, abs=ALMOST)
    assert _bce(y, logits, "logits", weights=[4.0, 3.0]).mean.cross_entropy == pytest.approx(10.0, abs=ALMOST)
    np.testing.assert_allclose(_bce(y, logits, "logits").per_sample.cross_entropy, [0.0, 6.666], atol=1e-3)
    smoothed = _bce([[1.0, 0.0, 1.0]], [[10.0, -10.0, -10.0]], "logits", label_smoothing=0.1)
    assert smoothed.mean.cross_entropy == pytest.approx((10.0 + 5.0 * 0.1) / 3.0, abs=ALMOST)
    assert _bce(eye, eye).mean.cross_entropy == pytest.approx(0.0, abs=ALMOST)


def test_kl_divergence_test_unweighted_and_sample_weighted() -> None:
    """KLDivergenceTest: neither side renormalised (rows off 1 on both), Σ y·log(y/p) per row, mean ÷ N even
    with sample weights [1.2, 3.4]."""
    y_pred = np.asarray([0.4, 0.9, 0.12, 0.36, 0.3, 0.4], dtype=np.float32).reshape((2, 3))
    y_true = np.asarray([0.5, 0.8, 0.12, 0.7, 0.43, 0.8], dtype=np.float32).reshape((2, 3))
    expected = np.multiply(y_true, np.log(y_true / y_pred))
    result = _cce(y_true, y_pred)
    assert result.mean.kl_divergence == pytest.approx(np.sum(expected) / 2, abs=ALMOST)
    weighted = _cce(y_true, y_pred, weights=[1.2, 3.4])
    expected_weighted = np.sum(expected * np.array([[1.2], [3.4]], dtype=np.float32)) / 2
    assert weighted.mean.kl_divergence == pytest.approx(expected_weighted, abs=ALMOST)


def test_the_reference_numbers_of_keras() -> None:
    """Reference notes, Keras 3.15.1: the example 0.479650 (CCE) and 0.479647 (KLD, the zero targets clipped up);
    [0.001, 0.998, 0.001] 2.001977e-3 in float32; row 1 (true class at p = 0) 16.118095; row 5 (a row summing to
    0.6, renormalised) 0.693147 but KLD 1.203970; row 3 (a negative probability, clipped) 0.510826; row 11
    (sample weights [.3, .7], ÷ N) 0.813599; the mean of the four reference rows 2.122255."""
    example = _cce([1], [[0.228, 0.619, 0.153]])
    assert example.mean.cross_entropy == pytest.approx(0.479650, abs=2e-6)
    assert example.mean.kl_divergence == pytest.approx(0.479647, abs=2e-6)
    assert _cce([1], [[0.001, 0.998, 0.001]]).mean.cross_entropy == pytest.approx(2.001977e-3, rel=1e-5)
    assert _cce([0], [[0.0, 0.5, 0.5]]).mean.cross_entropy == pytest.approx(16.118095, abs=1e-5)
    unnormalised = _cce([1], [[0.2, 0.3, 0.1]])
    assert unnormalised.mean.cross_entropy == pytest.approx(0.693147, abs=1e-6)
    assert unnormalised.mean.kl_divergence == pytest.approx(1.203970, abs=1e-5)
    assert _cce([1], [[-0.1, 0.6, 0.5]]).mean.cross_entropy == pytest.approx(0.510826, abs=1e-6)
    rows = [[0.228, 0.619, 0.153], [0.001, 0.998, 0.001], [0.001, 0.001, 0.998], [0.333, 0.333, 0.334]]
    assert _cce([1, 1, 1, 1], rows).mean.cross_entropy == pytest.approx(2.122255, abs=1e-5)
    assert example.settings["epsilon"] == 1.0000000116860974e-07
    assert example.settings["normalization"] == "renormalize"


def test_ce_need_not_equal_h_plus_kl_under_keras() -> None:
    result = _cce([1], [[0.2, 0.3, 0.1]])
    assert result.mean.cross_entropy is not None
    assert result.mean.kl_divergence is not None
    assert abs(result.mean.cross_entropy - (result.mean.entropy + result.mean.kl_divergence)) > 0.5


@pytest.mark.parametrize(
    ("call", "option"),
    [
        (lambda: _cce([0], [[0.5, 0.5]], label_smoothing=0.1), "label_smoothing"),
        (lambda: _cce([0], [[-0.7, -0.7]], "log_probabilities"), "prediction_type"),
        (
            lambda: score_multiclass_preset("keras", [0], [[0.5, 0.5]], class_weights=[1.0, 1.0]),
            "class_weights",
        ),
        (lambda: score_binary_preset("keras", [1.0], [0.5], pos_weight=2.0), "pos_weight"),
        (
            lambda: score_multiclass_preset(
                "keras", [0], [[0.5, 0.5]], options=MulticlassOptions(normalization="warn"), given={"normalization"}
            ),
            "normalization",
        ),
    ],
)
def test_options_keras_cannot_honour_are_refused_naming_both(call: Any, option: str) -> None:
    with pytest.raises(InvalidOption, match=f'^{option}: cannot be honoured with compat "keras"'):
        call()


def test_a_prediction_row_summing_to_zero_is_refused_not_nan() -> None:
    with pytest.raises(RowsNotNormalized, match="sums to 0"):
        _cce([0], [[0.0, 0.0, 0.0]])
