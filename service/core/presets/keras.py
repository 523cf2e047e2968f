"""``compat: "keras"``: the numbers of Keras 3 losses, in float32 as Keras computes them.

``cross_entropy`` is ``CategoricalCrossentropy`` (class indices: ``SparseCategoricalCrossentropy``,
``ignore_index`` its ``ignore_class``): each row divided by its sum, then clipped to [ε, 1 − ε] with
ε = ``keras.config.epsilon()`` = 1e-7 (both bounds rounded to float32); negative probabilities are
clipped like any other, as Keras does. ``kl_divergence`` is ``KLDivergence``: both sides clipped to
[ε, 1], neither renormalised, so CE = H + KL need not hold. Binary: ``BinaryCrossentropy``, the mean
over the last axis. The mean is "sum_over_batch_size": Σ sᵢℓᵢ / N, even with sample weights (with
``ignore_class``, / (valid rows + ε)).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from service.core.options import Normalization, PredictionType
from service.core.predictions import apply_normalization
from service.core.presets.common import (
    BinaryInputs,
    MulticlassInputs,
    PresetRows,
    one_hot,
    ones_or,
    refuse,
    true_class,
)
from service.core.result import ScoringWarning

NAME = "keras"
_F32 = np.float32
#: ``keras.config.epsilon()``, as the float32 constant the clip uses: 1.0000000116860974e-07.
EPSILON = float(_F32(1e-7))
_EPS = _F32(1e-7)
_ONE_MINUS_EPS = _F32(1.0) - _EPS  # 0.9999999 rounded to float32: 0.99999988079071


def _log_softmax32(logits: np.ndarray) -> np.ndarray:
    """log_softmax in float32 (``from_logits=True``)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _kl_divergence(target: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """``kl_divergence``: Σ_c y·log(y / p) with y and p clipped to [ε, 1], per row, float32."""
    y = np.clip(target, _EPS, _F32(1.0))
    p = np.clip(probabilities, _EPS, _F32(1.0))
    return np.asarray((y * np.log(y / p)).sum(axis=-1))


def _entropy(target: np.ndarray) -> np.ndarray:
    """−Σ_c y·log y of the target clipped as ``KLDivergence`` clips it, per row, float32."""
    y = np.clip(target, _EPS, _F32(1.0))
    return np.asarray(-(y * np.log(y)).sum(axis=-1))


def _mean_over_batch(
    values: np.ndarray, inputs_weights: np.ndarray | None, scored: np.ndarray, masked: bool
) -> tuple[np.ndarray, float]:
    """Row weights sᵢ (0 where masked) and the "sum_over_batch_size" denominator: N, or valid rows + ε."""
    n = values.shape[0]
    weights = np.where(scored, ones_or(inputs_weights, n), 0.0)
    return weights, (float(_F32(np.count_nonzero(scored)) + _EPS) if masked else float(n))


def multiclass(inputs: MulticlassInputs) -> PresetRows:
    """``CategoricalCrossentropy`` / ``SparseCategoricalCrossentropy`` and ``KLDivergence``, reduction None."""
    options, targets = inputs.options, inputs.targets
    kind, smoothing = options.prediction_type, options.label_smoothing
    if kind is PredictionType.LOG_PROBABILITIES:
        raise refuse(
            "prediction_type", NAME, 'Keras losses take probabilities or logits ("from_logits"), not log-probabilities'
        )
    if inputs.class_weights is not None:
        raise refuse("class_weights", NAME, "Keras losses take no class weights (only sample_weight)")
    if smoothing and targets.indices is not None:
        raise refuse(
            "label_smoothing",
            NAME,
            "SparseCategoricalCrossentropy (class-index labels) has no label_smoothing; send one-hot target rows",
        )
    preds = inputs.preds
    n, n_classes = preds.shape
    warnings: list[ScoringWarning] = []
    target = one_hot(targets, n, n_classes).astype(_F32)
    if smoothing:
        target = target * (_F32(1.0) - _F32(smoothing)) + _F32(smoothing) / _F32(n_classes)
    x = preds.astype(_F32)
    if kind is PredictionType.LOGITS:
        log_softmax = _log_softmax32(x)
        cross_entropy = -(target * log_softmax).sum(axis=-1)
        probabilities = np.exp(log_softmax)
    else:
        sums = x.sum(axis=-1, keepdims=True)
        # Keras divides by the sum unconditionally; a row summing to 0 would be NaN (0/0): refused, with xent's words.
        apply_normalization(
            sums[:, 0].astype(np.float64),
            targets.scored,
            replace(options, normalization=Normalization.RENORMALIZE),
            warnings,
        )
        probabilities = x / sums
        cross_entropy = -(target * np.log(np.clip(probabilities, _EPS, _ONE_MINUS_EPS))).sum(axis=-1)
        probabilities = x  # KLDivergence reads y_pred as given, not renormalised
    kl_divergence = _kl_divergence(target, probabilities)
    entropy = _entropy(target)
    weights, denominator = _mean_over_batch(
        cross_entropy, inputs.sample_weights, targets.scored, options.ignore_index is not None
    )
    correct = (preds.argmax(axis=1) == true_class(targets)).astype(np.float64)
    return PresetRows(
        cross_entropy.astype(np.float64),
        kl_divergence.astype(np.float64),
        entropy.astype(np.float64),
        correct,
        targets.scored,
        weights,
        denominator,
        warnings=warnings,
    )


def binary(inputs: BinaryInputs) -> PresetRows:
    """``BinaryCrossentropy`` (mean over the K labels of a row), and ``KLDivergence`` of each label's
    Bernoulli pair [1 − y, y] ‖ [1 − q, q], averaged the same way."""
    options = inputs.options
    if inputs.pos_weight is not None:
        raise refuse("pos_weight", NAME, "BinaryCrossentropy has no positive-class weight")
    x = inputs.preds.astype(_F32)
    y = inputs.target.astype(_F32)
    if options.label_smoothing:
        y = y * (_F32(1.0) - _F32(options.label_smoothing)) + _F32(0.5) * _F32(options.label_smoothing)
    if options.prediction_type is PredictionType.LOGITS:
        # The TF, torch and JAX backends: max(x, 0) − x·y + log1p(e^−|x|).
        elements = np.maximum(x, _F32(0)) - x * y + np.log1p(np.exp(-np.abs(x)))
        probabilities = _F32(1.0) / (_F32(1.0) + np.exp(-x))
        predicted_positive = x > 0
    else:
        p = np.clip(x, _EPS, _ONE_MINUS_EPS)
        elements = -(y * np.log(p) + (_F32(1.0) - y) * np.log(_F32(1.0) - p))
        probabilities = x
        predicted_positive = x > 0.5
    pairs_y = np.stack([_F32(1.0) - y, y], axis=-1)
    pairs_q = np.stack([_F32(1.0) - probabilities, probabilities], axis=-1)
    n = x.shape[0]
    weights, denominator = _mean_over_batch(x, inputs.sample_weights, np.ones(n, dtype=bool), False)
    return PresetRows(
        elements.mean(axis=-1).astype(np.float64),
        _kl_divergence(pairs_y, pairs_q).mean(axis=-1).astype(np.float64),
        _entropy(pairs_y).mean(axis=-1).astype(np.float64),
        (predicted_positive == (inputs.target > 0.5)).mean(axis=1),
        np.ones(n, dtype=bool),
        weights,
        denominator,
    )
