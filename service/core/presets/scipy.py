"""``compat: "scipy"``: ``scipy.stats.entropy`` (1.17), in float64, no clip.

``entropy(pk, qk)`` divides both distributions by their sums, then KL = Σ rel_entr(pk, qk) and
H = Σ entr(pk); the cross-entropy is H + KL, as SciPy's documentation defines it. A zero probability
under a positive target is +inf (reported as null with a NON_FINITE warning). Binary: each label's
Bernoulli pair [1 − y, y] against [1 − q, q], averaged over the K labels of a row.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from service.core.errors import RowsNotNormalized
from service.core.options import Normalization, PredictionType
from service.core.predictions import apply_normalization
from service.core.presets.common import (
    BinaryInputs,
    MulticlassInputs,
    PresetRows,
    entr,
    first_out_of_range,
    one_hot,
    ones_or,
    refuse,
    rel_entr,
    true_class,
)
from service.core.result import ScoringWarning

NAME = "scipy"


def _unhonoured(kind: PredictionType, smoothing: float, weights: object, weights_name: str) -> None:
    if kind is not PredictionType.PROBABILITIES:
        raise refuse("prediction_type", NAME, "scipy.stats.entropy takes probabilities (or unnormalised weights)")
    if smoothing:
        raise refuse("label_smoothing", NAME, "scipy.stats.entropy has no label smoothing")
    if weights is not None:
        raise refuse(weights_name, NAME, f"scipy.stats.entropy has no {weights_name.replace('_', ' ')}")


def _rows(pk: np.ndarray, qk: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CE = H + KL, KL = Σ rel_entr(pk, qk) and H = Σ entr(pk) along the last axis."""
    kl_divergence = rel_entr(pk, qk).sum(axis=-1)
    entropy = entr(pk).sum(axis=-1)
    return entropy + kl_divergence, kl_divergence, entropy


def multiclass(inputs: MulticlassInputs) -> PresetRows:
    """``entropy(y, q, axis=1)`` and ``entropy(y, axis=1)``: both rows divided by their sums first."""
    options, targets = inputs.options, inputs.targets
    _unhonoured(options.prediction_type, options.label_smoothing, inputs.class_weights, "class_weights")
    preds = inputs.preds
    # entropy gives −inf or NaN for a negative entry: no number to report.
    for values, name in ((preds, "predictions"), (targets.distributions, "labels")):
        if values is not None and (values < 0).any():
            message = "probability {value} is negative; scipy.stats.entropy of it is not a number"
            raise first_out_of_range(values, values < 0, name, message)
    n, n_classes = preds.shape
    warnings: list[ScoringWarning] = []
    renormalize = replace(options, normalization=Normalization.RENORMALIZE)
    target = one_hot(targets, n, n_classes)
    target_sums = target.sum(axis=1)
    if targets.distributions is not None and (target_sums == 0).any():
        row = int(np.flatnonzero(target_sums == 0)[0])
        raise RowsNotNormalized("labels", "target row sums to 0 and cannot be renormalized", row=row)
    sums = preds.sum(axis=1)
    apply_normalization(sums, targets.scored, renormalize, warnings)
    safe = np.where(sums > 0, sums, 1.0)  # ignored rows may sum to 0; they are not scored
    cross_entropy, kl_divergence, entropy = _rows(target / target_sums[:, None], preds / safe[:, None])
    correct = (preds.argmax(axis=1) == true_class(targets)).astype(np.float64)
    weights = np.where(targets.scored, ones_or(inputs.sample_weights, n), 0.0)
    return PresetRows(
        cross_entropy, kl_divergence, entropy, correct, targets.scored, weights, float(weights.sum()), warnings=warnings
    )


def binary(inputs: BinaryInputs) -> PresetRows:
    """``entropy([1 − y, y], [1 − q, q])`` per label, the mean over a row's K labels."""
    options = inputs.options
    _unhonoured(options.prediction_type, options.label_smoothing, inputs.pos_weight, "pos_weight")
    q, y = inputs.preds, inputs.target
    outside = (q < 0) | (q > 1)
    if outside.any():
        message = "probability {value} is outside [0, 1]; the pair [1 - q, q] has a negative entry"
        raise first_out_of_range(inputs.as_sent(q), inputs.as_sent(outside), "predictions", message)
    cross_entropy, kl_divergence, entropy = _rows(np.stack([1.0 - y, y], axis=-1), np.stack([1.0 - q, q], axis=-1))
    n = q.shape[0]
    weights = ones_or(inputs.sample_weights, n)
    return PresetRows(
        cross_entropy.mean(axis=1),
        kl_divergence.mean(axis=1),
        entropy.mean(axis=1),
        ((q > 0.5) == (y > 0.5)).mean(axis=1),
        np.ones(n, dtype=bool),
        weights,
        float(weights.sum()),
    )
