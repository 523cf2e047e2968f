"""The gradient under ``compat``: each preset's own per-sample loss, differentiated (``service.core.compat``).

The presets' losses (written out in ``service.core.compat``'s docstring) differ from xent's in their clip, their
renormalisation and PyTorch's log clamp, so the gradient is built from ``service.core.gradient``'s pieces with
the preset's bounds, in float64 at the values the request sent:

- multi-class logits (pytorch, keras): softmax(x)·Σ_c y′_c − y′, the target as given (PyTorch does not
  require it to sum to 1); log-probabilities (pytorch, read as given): −y;
- scikit-learn: −Y/P, 0 where P is outside [eps, 1 − eps] (eps of the input's dtype), rows as given;
- Keras: through q = p/Σp, 0 where q is outside float32's [1e-7, 1 − 1e-7];
- SciPy: through q = p/Σp against the target divided by its sum, no clip;
- binary logits (pytorch with ``pos_weight``, keras): (1 − y′)·σ(x) − w·y′·σ(−x);
- binary probabilities: −y′/q + (1 − y′)/(1 − q) with the preset's clip (none for SciPy), except PyTorch, whose
  ``binary_cross_entropy`` backward is (q − y)/max(q(1 − q), 1e-12) (1e-12 as a float32): what its autograd
  gives, also where the −100 clamp of the logs is active.

Each is ÷ K for a multi-label row, in the unit, 0 on rows not scored.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from service.core.gradient import (
    Bounds,
    bernoulli_gradient,
    in_unit,
    label_column,
    probability_gradient,
    scored_in_unit,
    softmax_minus_target,
)
from service.core.options import PredictionType
from service.core.presets import keras, sklearn
from service.core.presets.common import BinaryInputs, MulticlassInputs, one_hot
from service.core.result import ScoreResult

#: The ε of ATen's ``binary_cross_entropy_backward``: a float literal 1e-12, i.e. float32's 9.99999996e-13.
TORCH_BCE_EPSILON = float(np.float32(1e-12))
_KERAS_BOUNDS = (keras.EPSILON, float(np.float32(1.0) - np.float32(keras.EPSILON)))


def _sklearn_bounds(dtype: np.dtype[Any]) -> Bounds:
    """[eps, 1 − eps] of ``log_loss``'s clip in the input's dtype (1 − eps rounded there)."""
    eps = sklearn.epsilon(dtype)
    return (eps, float(dtype.type(1) - dtype.type(eps)))


def with_multiclass_gradient(result: ScoreResult, preset: str, inputs: MulticlassInputs) -> ScoreResult:
    """``result`` with the gradient of ``preset``'s per-sample loss when the options ask for it."""
    if not inputs.options.gradient:
        return result
    return replace(result, gradient=_multiclass(preset, inputs) if result.n else np.zeros(inputs.preds.shape))


def with_binary_gradient(result: ScoreResult, preset: str, inputs: BinaryInputs) -> ScoreResult:
    """``result`` with the gradient of ``preset``'s per-sample binary loss (shaped as sent) when asked for."""
    if not inputs.options.gradient:
        return result
    gradient = _binary(preset, inputs) if result.n else np.zeros(inputs.preds.shape)
    return replace(result, gradient=inputs.as_sent(gradient))


def _multiclass(preset: str, inputs: MulticlassInputs) -> np.ndarray:
    """∂ℓᵢ/∂x of the preset's multi-class loss (the presets refuse the prediction types they have no loss for)."""
    options, targets, preds = inputs.options, inputs.targets, inputs.preds
    kind, smoothing = options.prediction_type, options.label_smoothing
    if kind is PredictionType.LOGITS:
        gradient = softmax_minus_target(preds, targets, smoothing)
    elif kind is PredictionType.LOG_PROBABILITIES:  # PyTorch's nll_loss / kl_div: read as given
        if targets.indices is not None:
            gradient = label_column(preds, targets.indices, kind, None)
        else:
            gradient = -one_hot(targets, *preds.shape)
    elif preset == sklearn.NAME:
        bounds = _sklearn_bounds(inputs.dtype)
        if targets.indices is not None:
            gradient = label_column(preds, targets.indices, kind, bounds)
        else:
            gradient = probability_gradient(preds, one_hot(targets, *preds.shape), bounds, renormalized=False)
    else:
        target = one_hot(targets, *preds.shape)
        if smoothing:
            target = (1.0 - smoothing) * target + smoothing / preds.shape[1]
        if preset == keras.NAME:
            gradient = probability_gradient(preds, target, _KERAS_BOUNDS, renormalized=True)
        else:  # scipy: both distributions divided by their sums, no clip
            gradient = probability_gradient(preds, target / target.sum(axis=1, keepdims=True), None, renormalized=True)
    return scored_in_unit(gradient, targets, options.unit)


def _binary(preset: str, inputs: BinaryInputs) -> np.ndarray:
    """∂ℓᵢ/∂x of the preset's binary loss, N×K."""
    options, q, y = inputs.options, inputs.preds, inputs.target
    if options.label_smoothing:  # only Keras smooths (the others refuse it)
        y = y * (1.0 - options.label_smoothing) + options.label_smoothing / 2.0
    kind = options.prediction_type
    if kind is PredictionType.PROBABILITIES and preset == "pytorch":
        gradient = (q - y) / np.maximum(q * (1.0 - q), TORCH_BCE_EPSILON)
    else:
        bounds = {keras.NAME: _KERAS_BOUNDS, sklearn.NAME: _sklearn_bounds(inputs.dtype)}.get(preset)
        gradient = bernoulli_gradient(q, y, inputs.pos_weight, kind, bounds)
    gradient /= q.shape[1]
    return in_unit(gradient, options.unit)
