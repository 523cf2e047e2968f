"""``compat: "sklearn"``: ``sklearn.metrics.log_loss`` (1.9), computed in the input's dtype.

``log_loss`` clips every probability to [eps, 1 − eps] with eps = ``np.finfo(y_proba.dtype).eps`` and
takes −Σ_c xlogy(Y, P) in that dtype: float32 input scores a zero probability 15.942384719848633, not
36.04. NPZ keeps the dtype of ``predictions`` (float16, float32 or float64); JSON numbers are float64.
Rows off 1 are scored as given (a warning); the mean is Σ sᵢℓᵢ / Σ sᵢ.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from service.core.errors import InvalidInput, RowsNotNormalized
from service.core.options import MulticlassOptions, Normalization, PredictionType
from service.core.predictions import apply_normalization
from service.core.presets.common import (
    BinaryInputs,
    MulticlassInputs,
    PresetRows,
    first_out_of_range,
    one_hot,
    ones_or,
    refuse,
    true_class,
    xlogy,
)

NAME = "sklearn"
#: ``log_loss`` checks row sums with ``isclose(sum, 1, rtol=sqrt(eps))``, whose default atol is 1e-8.
_ISCLOSE_ATOL = 1e-8


def epsilon(dtype: np.dtype[Any]) -> float:
    """The clip ``log_loss`` uses for input of ``dtype``: its machine epsilon."""
    return float(np.finfo(dtype).eps)


def tolerance(dtype: np.dtype[Any]) -> float:
    """How far from 1 a row sum may be before ``log_loss`` warns: atol + rtol·1 with rtol = √eps."""
    return _ISCLOSE_ATOL + math.sqrt(float(np.finfo(dtype).eps))


def _check_probabilities(preds: np.ndarray) -> None:
    """``log_loss``'s ValueError for a value above 1 or below 0, at the first one."""
    for bad, reason in (
        (preds > 1, "y_prob contains values greater than 1"),
        (preds < 0, "y_prob contains values lower than 0"),
    ):
        if bad.any():
            raise first_out_of_range(preds, bad, "predictions", "probability {value}: " + reason)


def _losses(indicator: np.ndarray, preds: np.ndarray, dtype: np.dtype[Any]) -> np.ndarray:
    """−Σ_c xlogy(Y, clip(P, eps, 1 − eps)) per row, in ``dtype`` as ``_log_loss`` computes it.

    SciPy's ``xlogy`` computes each term in double and rounds it to the input's dtype; the row sum is
    then taken in that dtype, as NumPy sums it.
    """
    eps = np.finfo(dtype).eps
    clipped = np.clip(preds.astype(dtype), eps, 1 - eps)
    # SciPy has no float16 loop: float16 terms come out (and are summed) in float64.
    terms = xlogy(indicator, clipped.astype(np.float64)).astype(np.float64 if dtype == np.float16 else dtype)
    return np.asarray(-terms.sum(axis=1), dtype=np.float64)


def _rows(
    losses: np.ndarray, correct: np.ndarray, sample_weights: np.ndarray | None, warnings: list[Any]
) -> PresetRows:
    n = losses.shape[0]
    weights = ones_or(sample_weights, n)
    total = float(weights.sum())
    if total == 0:
        raise InvalidInput("sample_weights", "sum to 0; log_loss raises ZeroDivisionError: Weights sum to zero")
    zeros = np.zeros(n)
    return PresetRows(losses, losses, zeros, correct, np.ones(n, dtype=bool), weights, total, warnings=warnings)


def _unhonoured(options: Any, pos_weight: object = None) -> None:
    if options.prediction_type is not PredictionType.PROBABILITIES:
        raise refuse("prediction_type", NAME, "log_loss takes probabilities only")
    if options.label_smoothing:
        raise refuse("label_smoothing", NAME, "log_loss has no label smoothing")
    if pos_weight is not None:
        raise refuse("pos_weight", NAME, "log_loss has no positive-class weight")


def multiclass(inputs: MulticlassInputs) -> PresetRows:
    """``log_loss(y, P, labels=range(C), sample_weight=s)`` and its per-row losses (before ``_average``)."""
    options, targets = inputs.options, inputs.targets
    _unhonoured(options)
    if options.ignore_index is not None:
        raise refuse("ignore_index", NAME, "log_loss ignores no label")
    if inputs.class_weights is not None:
        raise refuse("class_weights", NAME, "log_loss takes no class weights (only sample_weight)")
    preds = inputs.preds
    _check_probabilities(preds)
    n, n_classes = preds.shape
    indicator = one_hot(targets, n, n_classes)
    if targets.distributions is not None:
        soft = (indicator != 0) & (indicator != 1)
        if soft.any():
            raise first_out_of_range(
                indicator,
                soft,
                "labels",
                "target {value} is not 0 or 1: log_loss takes class labels (or an indicator matrix), not probabilities",
            )
    warnings: list[Any] = []
    check = MulticlassOptions(normalization=Normalization.WARN, tolerance=tolerance(inputs.dtype))
    apply_normalization(
        preds.astype(inputs.dtype).sum(axis=1, dtype=inputs.dtype).astype(np.float64), targets.scored, check, warnings
    )
    correct = (preds.argmax(axis=1) == true_class(targets)).astype(np.float64)
    return _rows(_losses(indicator, preds, inputs.dtype), correct, inputs.sample_weights, warnings)


def binary(inputs: BinaryInputs) -> PresetRows:
    """``log_loss(y, p, labels=[0, 1], sample_weight=s)`` for one probability per sample: P = [1 − p, p]."""
    _unhonoured(inputs.options, inputs.pos_weight)
    preds, target = inputs.preds, inputs.target
    if preds.shape[1] != 1:
        raise InvalidInput(
            "predictions",
            f'has {preds.shape[1]} labels per sample; compat "sklearn" scores one (log_loss on N probabilities)',
        )
    soft = (target != 0) & (target != 1)
    if soft.any():
        raise first_out_of_range(
            inputs.as_sent(target),
            inputs.as_sent(soft),
            "labels",
            "label {value} is not 0 or 1: log_loss takes class labels, not probabilities",
        )
    _check_probabilities(inputs.as_sent(preds))
    p = preds.astype(inputs.dtype)
    two_columns = np.concatenate([1 - p, p], axis=1)  # in the input's dtype, as log_loss builds it
    indicator = np.concatenate([1.0 - target, target], axis=1)
    correct = ((preds > 0.5) == (target > 0.5))[:, 0].astype(np.float64)
    return _rows(_losses(indicator, two_columns, inputs.dtype), correct, inputs.sample_weights, [])


__all__ = ["NAME", "RowsNotNormalized", "binary", "epsilon", "multiclass", "tolerance"]
