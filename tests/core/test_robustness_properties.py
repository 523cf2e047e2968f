"""Numerical robustness: no valid input, however extreme, breaks the identities.

Logits of ±1e300, probabilities of 1e-300, 10,000 classes, one-hot rows and batches whose
every row is ignored must still give finite per-sample values (NaN only marks an ignored
row), KL ≥ 0 up to rounding, and CE = H + KL on every row and in every aggregate. And a
batch sent as float32 scores like the same batch in float64, to float32 precision.
"""

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import special

from service.core import (
    BinaryOptions,
    MulticlassOptions,
    PredictionType,
    ScoreResult,
    score_binary,
    score_multiclass,
)

#: Small budgets: the whole module runs in a few seconds.
quick = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
#: "Rounding": a few ulps of the largest magnitude involved.
ROUNDING = 1e-12
#: float32 keeps 24 bits: 2^-23 ≈ 1.2e-7 relative, so agreement "to float32 precision" is to ~1e-6.
FLOAT32_PRECISION = 1e-6

extreme = st.sampled_from([1e300, -1e300, 1e-300, -1e-300, 0.0, -0.0, 5e-324, 1.0, -1.0, 700.0, -745.0])
logit = st.one_of(extreme, st.floats(-1e300, 1e300, allow_nan=False))


def assert_sound(result: ScoreResult, *, scale: float = 1.0) -> None:
    """No NaN but on ignored rows, KL ≥ 0 up to rounding, CE = H + KL per row and in mean and sum.

    ``scale`` is the largest magnitude the values can reach (|logit| for logits): rounding is relative to it.
    """
    tolerance = ROUNDING * max(1.0, scale)
    values = result.per_sample
    scored = result.scored
    for array in (values.cross_entropy, values.kl_divergence, values.entropy):
        assert np.isfinite(array[scored]).all(), array
        assert np.isnan(array[~scored]).all(), array
    ce, kl, h = values.cross_entropy[scored], values.kl_divergence[scored], values.entropy[scored]
    assert (kl >= -tolerance).all(), kl
    assert (h >= -tolerance).all(), h
    np.testing.assert_allclose(ce, h + kl, rtol=1e-12, atol=tolerance)
    for quantities in (result.mean, result.sum):
        parts = (quantities.cross_entropy, quantities.entropy, quantities.kl_divergence)
        if result.n_scored == 0 and quantities is result.mean:
            assert parts == (None, None, None)
            continue
        assert all(part is not None and math.isfinite(part) for part in parts), parts
        ce_total, h_total, kl_total = (float(part) for part in parts)  # type: ignore[arg-type]
        assert kl_total >= -tolerance * max(1, result.n)
        assert ce_total == pytest.approx(h_total + kl_total, rel=1e-12, abs=tolerance * max(1, result.n))


@st.composite
def logit_batches(draw: Any, max_classes: int = 6) -> tuple[np.ndarray, list[int], np.ndarray]:
    """N×C logits mixing ±1e300, denormals and ordinary values; class indices; soft targets."""
    n = draw(st.integers(1, 6))
    c = draw(st.integers(2, max_classes))
    logits = np.array(draw(st.lists(st.lists(logit, min_size=c, max_size=c), min_size=n, max_size=n)))
    indices = draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n))
    raw = np.array(draw(st.lists(st.lists(st.floats(0, 1), min_size=c, max_size=c), min_size=n, max_size=n)))
    raw[:, 0] += 1e-3
    return logits, indices, raw / raw.sum(axis=1, keepdims=True)


@st.composite
def tiny_probability_batches(draw: Any) -> tuple[np.ndarray, list[int]]:
    """Normalized probability rows where most mass sits on one class and the rest is as small as 1e-300 (or 0)."""
    n = draw(st.integers(1, 6))
    c = draw(st.integers(2, 6))
    tiny = st.sampled_from([1e-300, 1e-200, 1e-30, 5e-324, 0.0])
    rows = []
    for _ in range(n):
        row = np.array(draw(st.lists(tiny, min_size=c, max_size=c)))
        row[draw(st.integers(0, c - 1))] = 0.0
        row[np.argmin(row)] = 1.0 - row.sum()  # exact in float64: the tiny values vanish against 1
        rows.append(row)
    return np.array(rows), draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n))


@quick
@given(batch=logit_batches(), smoothing=st.sampled_from([0.0, 0.1, 1.0]))
def test_logits_of_plus_or_minus_1e300_keep_every_identity(
    batch: tuple[np.ndarray, list[int], np.ndarray], smoothing: float
) -> None:
    logits, indices, targets = batch
    options = MulticlassOptions(prediction_type=PredictionType.LOGITS, label_smoothing=smoothing)
    scale = float(np.abs(logits).max())

    for labels in (indices, targets):
        result = score_multiclass(labels, logits, options=options)

        assert_sound(result, scale=scale)
    # Independently of the service's own formula: CE of a hard label is −log_softmax(x)[y].
    hard = score_multiclass(indices, logits, options=MulticlassOptions(prediction_type=PredictionType.LOGITS))
    expected = -special.log_softmax(logits, axis=1)[np.arange(len(indices)), indices]
    np.testing.assert_allclose(hard.per_sample.cross_entropy, expected, rtol=1e-12, atol=ROUNDING * max(1, scale))


@quick
@given(batch=tiny_probability_batches(), soft=st.booleans())
def test_probabilities_of_1e_300_keep_every_identity(batch: tuple[np.ndarray, list[int]], soft: bool) -> None:
    probabilities, indices = batch
    labels: Any = probabilities.tolist() if soft else indices

    for epsilon in (None, 1e-300):
        result = score_multiclass(labels, probabilities, options=MulticlassOptions(epsilon=epsilon))

        assert_sound(result)
        # The clip bounds every loss: −log ε.
        bound = -math.log(epsilon or np.finfo(float).eps)
        assert (result.per_sample.cross_entropy <= bound + 1e-9).all()


@quick
@given(batch=tiny_probability_batches(), soft=st.booleans())
def test_one_hot_predictions_and_targets_keep_every_identity(batch: tuple[np.ndarray, list[int]], soft: bool) -> None:
    probabilities, indices = batch
    one_hot = np.eye(probabilities.shape[1])[probabilities.argmax(axis=1)]
    labels: Any = one_hot.tolist() if soft else indices

    for prediction_type in PredictionType:
        predictions = one_hot if prediction_type is PredictionType.PROBABILITIES else np.log(one_hot + 1e-300)
        options = MulticlassOptions(prediction_type=prediction_type)

        assert_sound(score_multiclass(labels, predictions, options=options), scale=700.0)


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([1.0, 50.0, 1e300]),
    rows=st.integers(1, 3),
    smoothing=st.sampled_from([0.0, 0.05]),
)
def test_ten_thousand_classes_keep_every_identity(seed: int, scale: float, rows: int, smoothing: float) -> None:
    rng = np.random.default_rng(seed)
    c = 10_000
    logits = rng.uniform(-1, 1, size=(rows, c)) * scale
    indices = rng.integers(0, c, size=rows).tolist()
    probabilities = special.softmax(logits, axis=1)
    targets = rng.dirichlet(np.full(c, 0.1), size=rows)

    for labels in (indices, targets):
        as_logits = MulticlassOptions(prediction_type=PredictionType.LOGITS, label_smoothing=smoothing)
        assert_sound(score_multiclass(labels, logits, options=as_logits), scale=scale)
        as_probabilities = MulticlassOptions(label_smoothing=smoothing)
        assert_sound(score_multiclass(labels, probabilities, options=as_probabilities))


@quick
@given(batch=logit_batches(), ignore_index=st.sampled_from([-100, -1, 0]))
def test_a_batch_whose_every_row_is_ignored_has_no_means_zero_sums_and_no_nan_outside_its_rows(
    batch: tuple[np.ndarray, list[int], np.ndarray], ignore_index: int
) -> None:
    logits, _, _ = batch
    labels = [ignore_index] * logits.shape[0]
    options = MulticlassOptions(prediction_type=PredictionType.LOGITS, ignore_index=ignore_index)

    result = score_multiclass(labels, logits, class_weights=np.ones(logits.shape[1]), options=options)

    assert result.n_scored == 0
    assert (result.sum.cross_entropy, result.sum.kl_divergence, result.sum.entropy) == (0.0, 0.0, 0.0)
    assert result.mean.perplexity is None
    assert result.mean.accuracy is None
    assert_sound(result)


binary_probability = st.one_of(st.sampled_from([0.0, 1.0, 1e-300, 1 - 1e-16, 5e-324, 0.5]), st.floats(0, 1))


@quick
@given(
    data=st.data(),
    shape=st.sampled_from([(4,), (3, 2), (1, 5)]),
    prediction_type=st.sampled_from([PredictionType.PROBABILITIES, PredictionType.LOGITS]),
    smoothing=st.sampled_from([0.0, 0.2]),
)
def test_binary_extremes_keep_every_identity(
    data: st.DataObject, shape: tuple[int, ...], prediction_type: PredictionType, smoothing: float
) -> None:
    size = int(np.prod(shape))
    values = logit if prediction_type is PredictionType.LOGITS else binary_probability
    predictions = np.array(data.draw(st.lists(values, min_size=size, max_size=size))).reshape(shape)
    labels = np.array(data.draw(st.lists(binary_probability, min_size=size, max_size=size))).reshape(shape)
    options = BinaryOptions(prediction_type=prediction_type, label_smoothing=smoothing)

    result = score_binary(labels, predictions, options=options)

    assert_sound(result, scale=float(np.abs(predictions).max()))


@st.composite
def float32_batches(draw: Any) -> tuple[np.ndarray, np.ndarray, list[int], PredictionType]:
    """Predictions within float32's normal range (|logit| ≤ 1e4, probabilities ≥ 1e-30), and labels."""
    n = draw(st.integers(1, 6))
    c = draw(st.integers(2, 6))
    prediction_type = draw(st.sampled_from(list(PredictionType)))
    cell = st.floats(-1e4, 1e4) if prediction_type is PredictionType.LOGITS else st.floats(1e-30, 1.0)
    raw = np.array(draw(st.lists(st.lists(cell, min_size=c, max_size=c), min_size=n, max_size=n)))
    if prediction_type is PredictionType.PROBABILITIES:
        raw = raw / raw.sum(axis=1, keepdims=True)
    elif prediction_type is PredictionType.LOG_PROBABILITIES:
        raw = special.log_softmax(raw, axis=1)
    targets = np.array(draw(st.lists(st.lists(st.floats(0, 1), min_size=c, max_size=c), min_size=n, max_size=n)))
    targets[:, 0] += 1e-3
    indices = draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n))
    return raw, targets / targets.sum(axis=1, keepdims=True), indices, prediction_type


@quick
@given(batch=float32_batches(), soft=st.booleans())
def test_float32_and_float64_inputs_agree_to_float32_precision(
    batch: tuple[np.ndarray, np.ndarray, list[int], PredictionType], soft: bool
) -> None:
    predictions, targets, indices, prediction_type = batch
    options = MulticlassOptions(prediction_type=prediction_type)
    labels64: Any = targets if soft else indices
    labels32: Any = targets.astype(np.float32) if soft else indices

    wide = score_multiclass(labels64, predictions, options=options)
    narrow = score_multiclass(labels32, predictions.astype(np.float32), options=options)

    # float32 rounds each input by a relative 2^-24; a loss moves by at most that much of the largest
    # input magnitude (a logit) or, for probabilities, by that relative change of q: −log q shifts by ~2^-24.
    scale = float(np.abs(predictions).max()) if prediction_type is not PredictionType.PROBABILITIES else 1.0
    tolerance = FLOAT32_PRECISION * max(1.0, scale)
    for name in ("cross_entropy", "kl_divergence", "entropy"):
        np.testing.assert_allclose(
            getattr(narrow.per_sample, name), getattr(wide.per_sample, name), rtol=FLOAT32_PRECISION, atol=tolerance
        )
        assert getattr(narrow.mean, name) == pytest.approx(getattr(wide.mean, name), rel=1e-6, abs=tolerance)
    assert_sound(narrow, scale=scale)
