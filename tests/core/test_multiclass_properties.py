"""Identities that hold for every batch, checked with hypothesis."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special

from service.core import MulticlassOptions, PredictionType, Unit, WarningCode, score_multiclass

#: Modest budgets keep tests/core well under a minute; set per test, not as a global profile.
modest = settings(max_examples=100, deadline=None)

CLOSE = {"rel": 1e-9, "abs": 1e-12}


@st.composite
def batches(draw, min_value: float = 0.01):
    """N×C soft targets, hard labels and strictly positive normalized probabilities."""
    n = draw(st.integers(1, 8))
    c = draw(st.integers(2, 6))
    cell = st.floats(min_value, 1.0, allow_nan=False)
    raw_q = np.array(draw(st.lists(st.lists(cell, min_size=c, max_size=c), min_size=n, max_size=n)))
    raw_t = np.array(draw(st.lists(st.lists(st.floats(0.0, 1.0), min_size=c, max_size=c), min_size=n, max_size=n)))
    raw_t[:, 0] += 1e-3  # no all-zero target row
    indices = draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n))
    return {
        "probabilities": raw_q / raw_q.sum(axis=1, keepdims=True),
        "targets": raw_t / raw_t.sum(axis=1, keepdims=True),
        "indices": indices,
    }


@st.composite
def logit_batches(draw):
    """Moderate logits (|x| ≤ 10, so softmax stays far above the ε clip) and hard labels."""
    n = draw(st.integers(1, 8))
    c = draw(st.integers(2, 6))
    logits = draw(st.lists(st.lists(st.floats(-10.0, 10.0), min_size=c, max_size=c), min_size=n, max_size=n))
    indices = draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n))
    return np.array(logits), indices


def _as(prediction_type: PredictionType, probabilities: np.ndarray) -> list[list[float]]:
    """Probabilities, or their logs, which are both valid logits and log-probabilities."""
    if prediction_type is PredictionType.PROBABILITIES:
        return probabilities.tolist()
    with np.errstate(divide="ignore"):
        return np.maximum(np.log(probabilities), -1e300).tolist()


def _labels(batch, soft: bool) -> list:
    return batch["targets"].tolist() if soft else batch["indices"]


prediction_types = pytest.mark.parametrize("prediction_type", list(PredictionType))
label_kinds = pytest.mark.parametrize("soft", [False, True], ids=["class_indices", "distributions"])


@prediction_types
@label_kinds
@modest
@given(batch=batches())
def test_cross_entropy_is_entropy_plus_kl_per_sample_in_mean_and_in_sum(prediction_type, soft, batch):
    options = MulticlassOptions(prediction_type=prediction_type)
    result = score_multiclass(_labels(batch, soft), _as(prediction_type, batch["probabilities"]), options=options)

    per_sample = result.per_sample
    np.testing.assert_allclose(
        per_sample.cross_entropy, per_sample.entropy + per_sample.kl_divergence, rtol=1e-9, atol=1e-12
    )
    for totals in (result.mean, result.sum):
        assert totals.cross_entropy == pytest.approx(totals.entropy + totals.kl_divergence, **CLOSE)


@prediction_types
@label_kinds
@modest
@given(batch=batches())
def test_cross_entropy_and_kl_are_never_negative(prediction_type, soft, batch):
    options = MulticlassOptions(prediction_type=prediction_type)
    result = score_multiclass(_labels(batch, soft), _as(prediction_type, batch["probabilities"]), options=options)

    assert (result.per_sample.kl_divergence >= 0).all()
    assert (result.per_sample.cross_entropy >= 0).all()
    assert (result.per_sample.entropy >= 0).all()
    assert result.mean.kl_divergence >= 0
    assert result.mean.cross_entropy >= 0


@modest
@given(batch=batches())
def test_one_hot_distributions_score_like_class_indices(batch):
    one_hot = np.eye(batch["probabilities"].shape[1])[batch["indices"]]

    hard = score_multiclass(batch["indices"], batch["probabilities"].tolist())
    soft = score_multiclass(one_hot.tolist(), batch["probabilities"].tolist())

    for name in ("cross_entropy", "kl_divergence", "entropy"):
        np.testing.assert_allclose(
            getattr(soft.per_sample, name), getattr(hard.per_sample, name), rtol=1e-9, atol=1e-12
        )
    assert soft.mean.accuracy == hard.mean.accuracy


@pytest.mark.parametrize("unit", [Unit.BITS, Unit.HARTLEYS])
@label_kinds
@modest
@given(batch=batches())
def test_other_units_are_nats_divided_by_log_base(unit, soft, batch):
    labels, predictions = _labels(batch, soft), batch["probabilities"].tolist()

    nats = score_multiclass(labels, predictions)
    other = score_multiclass(labels, predictions, options=MulticlassOptions(unit=unit))

    base = math.log(2.0) if unit is Unit.BITS else math.log(10.0)
    for name in ("cross_entropy", "kl_divergence", "entropy"):
        np.testing.assert_allclose(getattr(other.per_sample, name), getattr(nats.per_sample, name) / base, rtol=1e-12)
        assert getattr(other.mean, name) == pytest.approx(getattr(nats.mean, name) / base, **CLOSE)
        assert getattr(other.sum, name) == pytest.approx(getattr(nats.sum, name) / base, **CLOSE)
    assert other.mean.perplexity == nats.mean.perplexity
    assert other.mean.accuracy == nats.mean.accuracy


@label_kinds
@modest
@given(batch=batches(), data=st.data())
def test_permuting_rows_changes_neither_mean_nor_sum(soft, batch, data):
    n = len(batch["indices"])
    order = data.draw(st.permutations(range(n)))
    weights = np.array(data.draw(st.lists(st.floats(0.1, 10.0), min_size=n, max_size=n)))
    labels = np.array(_labels(batch, soft))

    original = score_multiclass(labels.tolist(), batch["probabilities"].tolist(), sample_weights=weights.tolist())
    permuted = score_multiclass(
        labels[order].tolist(), batch["probabilities"][order].tolist(), sample_weights=weights[order].tolist()
    )

    for name in ("cross_entropy", "kl_divergence", "entropy"):
        assert getattr(permuted.mean, name) == pytest.approx(getattr(original.mean, name), **CLOSE)
        assert getattr(permuted.sum, name) == pytest.approx(getattr(original.sum, name), **CLOSE)
        np.testing.assert_allclose(getattr(permuted.per_sample, name), getattr(original.per_sample, name)[order])
    assert permuted.mean.accuracy == pytest.approx(original.mean.accuracy, **CLOSE)


@modest
@given(batch=logit_batches())
def test_logits_score_like_their_softmax_probabilities(batch):
    logits, labels = batch

    from_logits = score_multiclass(
        labels, logits.tolist(), options=MulticlassOptions(prediction_type=PredictionType.LOGITS)
    )
    from_probabilities = score_multiclass(labels, special.softmax(logits, axis=1).tolist())

    np.testing.assert_allclose(
        from_logits.per_sample.cross_entropy, from_probabilities.per_sample.cross_entropy, rtol=1e-9, atol=1e-12
    )
    assert from_logits.mean.cross_entropy == pytest.approx(from_probabilities.mean.cross_entropy, **CLOSE)


@modest
@given(batch=logit_batches())
def test_logits_score_minus_scipy_log_softmax_of_the_true_class(batch):
    logits, labels = batch

    result = score_multiclass(labels, logits.tolist(), options=MulticlassOptions(prediction_type=PredictionType.LOGITS))

    expected = -special.log_softmax(logits, axis=1)[np.arange(len(labels)), labels]
    np.testing.assert_allclose(result.per_sample.cross_entropy, expected, rtol=1e-12, atol=1e-15)


@prediction_types
@label_kinds
@modest
@given(batch=batches())
def test_zero_label_smoothing_is_the_identity(prediction_type, soft, batch):
    labels, predictions = _labels(batch, soft), _as(prediction_type, batch["probabilities"])

    plain = score_multiclass(labels, predictions, options=MulticlassOptions(prediction_type=prediction_type))
    smoothed = score_multiclass(
        labels, predictions, options=MulticlassOptions(prediction_type=prediction_type, label_smoothing=0.0)
    )

    for name in ("cross_entropy", "kl_divergence", "entropy"):
        assert getattr(smoothed.per_sample, name).tolist() == getattr(plain.per_sample, name).tolist()
    assert smoothed.mean == plain.mean


@label_kinds
@modest
@given(batch=batches(), smoothing=st.floats(0.0, 1.0))
def test_label_smoothing_scores_the_target_mixed_with_uniform(soft, batch, smoothing):
    c = batch["probabilities"].shape[1]
    dense = batch["targets"] if soft else np.eye(c)[batch["indices"]]
    mixed = (1.0 - smoothing) * dense + smoothing / c

    smoothed = score_multiclass(
        _labels(batch, soft), batch["probabilities"].tolist(), options=MulticlassOptions(label_smoothing=smoothing)
    )
    explicit = score_multiclass(mixed.tolist(), batch["probabilities"].tolist())

    for name in ("cross_entropy", "kl_divergence", "entropy"):
        np.testing.assert_allclose(
            getattr(smoothed.per_sample, name), getattr(explicit.per_sample, name), rtol=1e-9, atol=1e-12
        )


@label_kinds
@modest
@given(batch=batches(), weight=st.floats(1e-3, 1e3))
def test_equal_sample_weights_give_the_plain_mean(soft, batch, weight):
    labels, predictions = _labels(batch, soft), batch["probabilities"].tolist()
    n = len(batch["indices"])

    plain = score_multiclass(labels, predictions)
    weighted = score_multiclass(labels, predictions, sample_weights=[weight] * n)

    for name in ("cross_entropy", "kl_divergence", "entropy", "perplexity", "accuracy"):
        assert getattr(weighted.mean, name) == pytest.approx(getattr(plain.mean, name), **CLOSE)
    for name in ("cross_entropy", "kl_divergence", "entropy"):
        assert getattr(weighted.sum, name) == pytest.approx(weight * getattr(plain.sum, name), **CLOSE)


@prediction_types
@modest
@given(batch=batches(), data=st.data())
def test_zero_target_with_zero_probability_is_zero_not_nan(prediction_type, batch, data):
    # Put zeros in the predictions and zero the targets there: every 0·log 0 must count as 0.
    q = batch["probabilities"].copy()
    n, c = q.shape
    zero_at = np.array(data.draw(st.lists(st.lists(st.booleans(), min_size=c, max_size=c), min_size=n, max_size=n)))
    zero_at[:, 0] = False  # keep one non-zero cell per row
    q[zero_at] = 0.0
    q /= q.sum(axis=1, keepdims=True)
    target = np.where(zero_at, 0.0, batch["targets"])
    target /= target.sum(axis=1, keepdims=True)

    result = score_multiclass(
        target.tolist(), _as(prediction_type, q), options=MulticlassOptions(prediction_type=prediction_type)
    )

    positive = target > 0
    expected_entropy = -(target * np.log(target, where=positive, out=np.zeros_like(target))).sum(axis=1)
    per_sample = np.stack([result.per_sample.cross_entropy, result.per_sample.kl_divergence, result.per_sample.entropy])
    assert np.isfinite(per_sample).all()
    np.testing.assert_allclose(result.per_sample.entropy, expected_entropy, rtol=1e-9, atol=1e-12)
    # The only clip left is a certain prediction (q = 1 → 1 − ε) under a non-zero target.
    certain = ((target > 0) & (q == 1.0)).any(axis=1)
    expected_warnings = [] if prediction_type is not PredictionType.PROBABILITIES or not certain.any() else ["CLIPPED"]
    assert [w.code for w in result.warnings] == expected_warnings


@label_kinds
@modest
@given(batch=batches(), data=st.data())
def test_zero_probability_on_a_nonzero_target_is_infinite_with_epsilon_zero(soft, batch, data):
    q = batch["probabilities"].copy()
    n = q.shape[0]
    row = data.draw(st.integers(0, n - 1))
    column = batch["indices"][row]
    q[row, column] = 0.0
    q[row] /= q[row].sum()  # x / Σ ≤ 1 exactly, unlike adding the mass elsewhere
    target = batch["targets"].copy()
    target[row, column] = max(target[row, column], 0.5)
    target /= target.sum(axis=1, keepdims=True)
    labels = target.tolist() if soft else batch["indices"]

    result = score_multiclass(labels, q.tolist(), options=MulticlassOptions(epsilon=0.0))

    assert result.per_sample.cross_entropy[row] == math.inf
    assert result.per_sample.kl_divergence[row] == math.inf
    assert result.mean.cross_entropy == math.inf
    assert not np.isnan(result.per_sample.cross_entropy).any()
    non_finite = [w for w in result.warnings if w.code is WarningCode.NON_FINITE]
    assert len(non_finite) == 1
    assert row in non_finite[0].rows
