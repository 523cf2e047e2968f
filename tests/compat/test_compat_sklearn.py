"""``compat: "sklearn"`` against ``sklearn.metrics.log_loss`` (1.9): its own test_log_loss* cases, and hypothesis.

float64 input to 1e-12 relative; float32 and float16 input (the NPZ transport keeps the dtype) to a few
units in the last place of that dtype, since log_loss clips at, and computes in, the input's dtype.
"""

import math
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from service.core import InvalidInput, InvalidOption, MulticlassOptions, OutOfRange, WarningCode
from service.core.compat import score_binary_preset, score_multiclass_preset

metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn is a test dependency")
log_loss = metrics.log_loss


def _ulps(dtype: Any) -> float:
    return 4 * float(np.finfo(dtype).eps)


def test_log_loss_binary_with_symbolic_labels() -> None:
    """test_log_loss: "no" < "yes", P(yes) in the second column."""
    y_true = ["no", "no", "no", "yes", "yes", "yes"]
    y_pred = [[0.5, 0.5], [0.1, 0.9], [0.01, 0.99], [0.9, 0.1], [0.75, 0.25], [0.001, 0.999]]
    result = score_multiclass_preset("sklearn", y_true, y_pred, classes=["no", "yes"])
    assert result.mean.cross_entropy == pytest.approx(log_loss(y_true, y_pred), rel=1e-12)
    assert result.mean.cross_entropy == pytest.approx(1.881797068998267, rel=1e-12)


def test_log_loss_multiclass_and_normalize_false() -> None:
    """test_log_loss: 0.6904911, and six times it summed (normalize=False) for the rows doubled."""
    y_true = [1, 0, 2]
    y_pred = [[0.2, 0.7, 0.1], [0.6, 0.2, 0.2], [0.6, 0.1, 0.3]]
    assert score_multiclass_preset("sklearn", y_true, y_pred).mean.cross_entropy == pytest.approx(0.6904911, rel=1e-7)
    doubled = score_multiclass_preset("sklearn", y_true * 2, y_pred * 2)
    assert doubled.sum.cross_entropy == pytest.approx(log_loss(y_true * 2, y_pred * 2, normalize=False), rel=1e-12)
    assert doubled.sum.cross_entropy == pytest.approx(0.6904911 * 6, rel=1e-7)


def test_log_loss_string_labels_and_labels_argument() -> None:
    """test_log_loss: "ham"/"spam" 0.7469410; labels=[1, 2, 3] with classes absent from y_true: −ln 0.7."""
    y_pred = [[0.3, 0.7], [0.6, 0.4], [0.4, 0.6], [0.7, 0.3]]
    ham = score_multiclass_preset("sklearn", ["ham", "spam", "spam", "ham"], y_pred, classes=["ham", "spam"])
    assert ham.mean.cross_entropy == pytest.approx(0.7469410, rel=1e-7)
    score = [[0.7, 0.1, 0.2], [0.2, 0.7, 0.1], [0.1, 0.7, 0.2]]
    three = score_multiclass_preset("sklearn", ["1", "2", "2"], score, classes=["1", "2", "3"])
    assert three.mean.cross_entropy == pytest.approx(-np.log(0.7), rel=1e-12)
    # A single class present is scored: xent always knows the classes, as log_loss does with labels=.
    single = score_multiclass_preset("sklearn", [1, 1], [[0.1, 0.9], [0.1, 0.9]])
    assert single.mean.cross_entropy == pytest.approx(log_loss([1, 1], [[0.1, 0.9], [0.1, 0.9]], labels=[0, 1]))


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_log_loss_eps_is_the_machine_epsilon_of_the_dtype(dtype: Any) -> None:
    """test_log_loss_eps: y_true [0, 1], y_pred [1, 0] (each certain and wrong) is finite in every dtype."""
    y_pred = np.array([1, 0], dtype=dtype)
    result = score_binary_preset("sklearn", [0.0, 1.0], y_pred)
    expected = log_loss(np.array([0, 1], dtype=dtype), y_pred)
    assert result.mean.cross_entropy == pytest.approx(expected, rel=_ulps(dtype))
    assert result.settings["epsilon"] == float(np.finfo(dtype).eps)


def test_float32_input_scores_15_94_not_36_04() -> None:
    """The issue's number: a zero probability, float32 input: −ln(1.1920928955078125e-07) in float32."""
    preds = np.array([[0.0, 0.5, 0.5]], dtype=np.float32)
    result = score_multiclass_preset("sklearn", [0], preds)
    assert result.mean.cross_entropy == 15.942384719848633 == log_loss([0], preds, labels=[0, 1, 2])
    assert result.settings["epsilon"] == 1.1920928955078125e-07
    assert score_multiclass_preset("sklearn", [0], preds.astype(np.float64)).mean.cross_entropy == pytest.approx(
        36.04365338911715, rel=1e-12
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_log_loss_not_probabilities_warning(dtype: Any) -> None:
    """test_log_loss_not_probabilities_warning: rows off 1 are scored as given, with a warning."""
    y_true = [0, 1, 1, 0]
    y_pred = np.array([[0.2, 0.7], [0.6, 0.3], [0.4, 0.7], [0.8, 0.3]], dtype=dtype)
    result = score_multiclass_preset("sklearn", y_true, y_pred)
    with pytest.warns(UserWarning, match="The y_prob values do not sum to one."):
        expected = log_loss(y_true, y_pred)
    assert result.mean.cross_entropy == pytest.approx(expected, rel=_ulps(dtype))
    assert [w.code for w in result.warnings] == [WarningCode.ROWS_NOT_NORMALIZED]


def test_log_loss_perfect_predictions() -> None:
    """test_log_loss_perfect_predictions: 2.2e-16 per row in float64 (the 1 − eps clip), not 0."""
    y_pred = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    result = score_multiclass_preset("sklearn", [0, 1, 2], y_pred)
    assert result.mean.cross_entropy == pytest.approx(log_loss([0, 1, 2], y_pred), rel=1e-12)
    assert result.mean.cross_entropy == pytest.approx(2.220446049250313e-16, rel=1e-12)


def test_sample_weights_and_the_reference_row_9() -> None:
    """Reference row 9: y = [0, 1, 1], p = [.1, .8, .6]: 0.279777; sample_weight [1, 2, 3]: 0.347354."""
    plain = score_binary_preset("sklearn", [0.0, 1.0, 1.0], [0.1, 0.8, 0.6])
    weighted = score_binary_preset("sklearn", [0.0, 1.0, 1.0], [0.1, 0.8, 0.6], sample_weights=[1.0, 2.0, 3.0])
    assert plain.mean.cross_entropy == pytest.approx(0.279777, abs=1e-6)
    assert weighted.mean.cross_entropy == pytest.approx(
        log_loss([0, 1, 1], [0.1, 0.8, 0.6], sample_weight=[1, 2, 3]), rel=1e-12
    )
    assert weighted.mean.cross_entropy == pytest.approx(0.347354, abs=1e-6)


@pytest.mark.parametrize(
    ("predictions", "reason"),
    [
        ([[1.2, -0.2]], "y_prob contains values greater than 1"),
        ([[-0.2, 1.2]], "y_prob contains values greater than 1"),
        ([[0.5, -0.1]], "y_prob contains values lower than 0"),
    ],
)
def test_values_outside_the_unit_interval_are_log_loss_value_errors(predictions: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        log_loss([0], predictions, labels=[0, 1])
    with pytest.raises(OutOfRange, match=reason):
        score_multiclass_preset("sklearn", [0], predictions)


def test_soft_targets_and_empty_batches_are_refused_as_log_loss_refuses_them() -> None:
    with pytest.raises(OutOfRange, match="log_loss takes class labels"):
        score_multiclass_preset("sklearn", [[0.5, 0.5]], [[0.5, 0.5]])
    with pytest.raises(InvalidInput, match="Found array with 0 sample"):
        score_multiclass_preset("sklearn", [], [])
    with pytest.raises(InvalidInput, match="Weights sum to zero"):
        score_multiclass_preset("sklearn", [0], [[0.5, 0.5]], sample_weights=[0.0])


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"options": MulticlassOptions(prediction_type="logits")}, "prediction_type"),
        ({"options": MulticlassOptions(label_smoothing=0.1)}, "label_smoothing"),
        ({"options": MulticlassOptions(ignore_index=-100)}, "ignore_index"),
        ({"class_weights": [1.0, 2.0]}, "class_weights"),
        ({"options": MulticlassOptions(normalization="renormalize"), "given": {"normalization"}}, "normalization"),
        ({"options": MulticlassOptions(tolerance=1e-3), "given": {"tolerance"}}, "tolerance"),
        ({"options": MulticlassOptions(epsilon=1e-15), "given": {"epsilon"}}, "epsilon"),
    ],
)
def test_options_log_loss_cannot_honour_are_refused_naming_both(kwargs: dict[str, Any], option: str) -> None:
    with pytest.raises(InvalidOption, match=f'^{option}: cannot be honoured with compat "sklearn"'):
        score_multiclass_preset("sklearn", [0], [[0.5, 0.5]], **kwargs)


def test_explicit_auto_epsilon_and_the_resolved_values_are_accepted() -> None:
    preds = np.array([[0.25, 0.75]], dtype=np.float32)
    eps = float(np.finfo(np.float32).eps)
    options = MulticlassOptions(epsilon=eps, tolerance=1e-8 + math.sqrt(eps))
    result = score_multiclass_preset("sklearn", [1], preds, options=options, given={"epsilon", "tolerance"})
    assert result.settings["epsilon"] == 1.1920928955078125e-07
    auto = score_multiclass_preset("sklearn", [1], preds, options=MulticlassOptions(), given={"epsilon"})
    assert auto.settings["epsilon"] == 1.1920928955078125e-07


# --- hypothesis ----------------------------------------------------------------------------------------------------


@st.composite
def _batches(draw: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    n = draw(st.integers(1, 8))
    c = draw(st.integers(2, 5))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    raw = draw(hnp.arrays(np.float64, (n, c), elements=st.floats(0, 1)))
    # Mostly normalised rows, with exact zeros and ones among them, to reach the clip.
    sums = raw.sum(axis=1, keepdims=True)
    preds = np.where(sums > 0, raw / np.where(sums > 0, sums, 1), 1.0 / c).astype(dtype)
    labels = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, c - 1)))
    weights = draw(st.none() | hnp.arrays(np.float64, (n,), elements=st.floats(0.5, 4)))
    return preds, labels, weights


@settings(max_examples=80, deadline=None)
@given(_batches())
def test_any_batch_equals_log_loss(batch: tuple[np.ndarray, np.ndarray, Any]) -> None:
    preds, labels, weights = batch
    result = score_multiclass_preset("sklearn", labels, preds, sample_weights=weights)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # rows of float32 may be off 1 by more than √eps
        expected = log_loss(labels, preds, sample_weight=weights, labels=list(range(preds.shape[1])))
    assert result.mean.cross_entropy == pytest.approx(
        expected, rel=1e-12 if preds.dtype == np.float64 else _ulps(np.float32)
    )
