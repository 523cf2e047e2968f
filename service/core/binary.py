"""Binary and multi-label cross-entropy, with Bernoulli KL divergence and entropy.

``_bernoulli_rows`` is the reference path, the formulas written once; ``score_binary`` checks the
inputs, takes the logs (``service.core.logspace``) and hands the rows to ``finish``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, NamedTuple

import numpy as np

from service.core.arrays import describe, float_matrix, nonnegative_weights
from service.core.errors import BadShape, NotANumber, OutOfRange, quoted
from service.core.gradient import binary_gradient
from service.core.logspace import log1m_clipped, log_clipped, log_sigmoid, xlogx
from service.core.options import BinaryOptions, PredictionType
from service.core.result import ScoreResult, ScoringWarning, WarningCode, empty, finish


def score_binary(
    labels: Any,
    predictions: Any,
    *,
    pos_weight: Any = None,
    sample_weights: Any = None,
    options: BinaryOptions | None = None,
) -> ScoreResult:
    """Binary cross-entropy −[pw·y·log q + (1 − y)·log(1 − q)] per sample.

    ``predictions`` is N numbers (binary) or N×K (K independent labels); a
    multi-label row scores the mean over its K labels, so the overall mean equals
    the element-wise mean. KL and entropy are the Bernoulli ones, averaged the same
    way; CE = H + KL when ``pos_weight`` is not given.

    Examples
    --------
    >>> result = score_binary([0, 1, 1], [0.1, 0.8, 0.6])
    >>> result.per_sample.cross_entropy.round(6).tolist(), round(result.mean.cross_entropy, 6)
    ([0.105361, 0.223144, 0.510826], 0.279777)

    A logit of −1000 on a positive label costs exactly 1000 nats:

    >>> score_binary([1], [-1000.0], options=BinaryOptions(prediction_type=PredictionType.LOGITS)).mean.cross_entropy
    1000.0
    """
    options = options or BinaryOptions()
    preds = float_matrix(predictions, "predictions", allow_vector=True)
    target = float_matrix(labels, "labels", allow_vector=True)
    if target.shape != preds.shape:
        raise BadShape("labels", f"has shape {_shape(target)} but predictions have shape {_shape(preds)}")
    n = preds.shape[0]
    # Range checks before the reshape below, so that a flat array's errors name a row, not a column.
    _require_unit_interval(target, "labels", "label {value} is outside [0, 1]")
    if options.prediction_type is PredictionType.PROBABILITIES:
        _require_unit_interval(
            preds,
            "predictions",
            'probability {value} is outside [0, 1] (for scores, set prediction_type to "logits")',
        )
    shape = preds.shape  # the gradient's: N for binary, N×K for multi-label
    if preds.ndim == 1:
        preds, target = preds[:, None], target[:, None]
    n_labels = preds.shape[1]
    if n and n_labels == 0:
        raise BadShape("predictions", "rows are empty; each row needs at least one label's prediction", row=0)
    weights_by_label = _pos_weight(pos_weight, n_labels if n else None)
    weights_by_sample = (
        np.ones(n) if sample_weights is None else nonnegative_weights(sample_weights, "sample_weights", n, "row")
    )
    eps = options.resolved_epsilon
    settings = {
        "compat": "xent",
        "prediction_type": options.prediction_type.value,
        "unit": options.unit.value,
        "epsilon": eps,
        "epsilon_applies": options.prediction_type is PredictionType.PROBABILITIES,
        "label_smoothing": options.label_smoothing,
        "pos_weight": None if weights_by_label is None else weights_by_label.tolist(),
        "sample_weights": sample_weights is not None,
        "labels_per_sample": n_labels if n else None,
    }
    if n == 0:
        return empty(options.unit, settings, np.zeros(shape) if options.gradient else None)

    warnings: list[ScoringWarning] = []
    if options.prediction_type is PredictionType.LOGITS:
        log_q, log_1mq = log_sigmoid(preds), log_sigmoid(-preds)
        predicted_positive = preds > 0
        clipped = False
    else:
        log_q, log_1mq = log_clipped(preds, eps), log1m_clipped(preds, eps)
        predicted_positive = preds > 0.5
        clipped = eps > 0

    smoothed = _smooth(target, options.label_smoothing)
    cross_entropy, kl_divergence, entropy_rows = _bernoulli_rows(smoothed, log_q, log_1mq, weights_by_label)

    if clipped:
        # Only a clip under a term with non-zero weight changes the score.
        clipped_rows = np.asarray(
            ((smoothed.positive & (preds < eps)) | (smoothed.negative & (preds > 1.0 - eps))).any(axis=1)
        )
        if clipped_rows.any():
            message = (
                f"probabilities outside [epsilon, 1 - epsilon] (epsilon = {eps:.6g}) were clipped "
                "before the logarithm where the label gives them weight"
            )
            warnings.append(ScoringWarning.for_rows(WarningCode.CLIPPED, clipped_rows, message))
    correct = (predicted_positive == (target > 0.5)).mean(axis=1)
    result = finish(
        cross_entropy=cross_entropy,
        kl_divergence=kl_divergence,
        entropy=entropy_rows,
        correct=correct,
        scored=np.ones(n, dtype=bool),
        weights=weights_by_sample,
        unit=options.unit,
        warnings=warnings,
        settings=settings,
    )
    if not options.gradient:
        return result
    return replace(result, gradient=binary_gradient(preds, smoothed.y, weights_by_label, options).reshape(shape))


class _Smoothed(NamedTuple):
    """Labels y' = (1 − ε)·y + ε/2, and where y' > 0 and y' < 1: the terms that carry weight."""

    y: np.ndarray
    positive: np.ndarray
    negative: np.ndarray


def _smooth(target: np.ndarray, smoothing: float) -> _Smoothed:
    """Label smoothing towards 1/2: y' = (1 − ε)·y + ε/2."""
    smoothed = target * (1.0 - smoothing) + smoothing / 2.0 if smoothing else target
    return _Smoothed(smoothed, smoothed > 0, smoothed < 1)


def _bernoulli_rows(
    labels: _Smoothed, log_q: np.ndarray, log_1mq: np.ndarray, pos_weight: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CE, KL and H per row: the mean over its K labels of the Bernoulli terms, with 0·log 0 = 0.

    H(y) = −[y·log y + (1 − y)·log(1 − y)];
    KL(y ‖ q) = y·(log y − log q) + (1 − y)·(log(1 − y) − log(1 − q));
    CE = −[pw·y·log q + (1 − y)·log(1 − q)], which is H + KL when ``pos_weight`` is not given.

    Examples
    --------
    >>> q = np.array([[0.1], [0.8], [0.6]])
    >>> ce, kl, h = _bernoulli_rows(_smooth(np.array([[0.0], [1.0], [1.0]]), 0.0), np.log(q), np.log1p(-q), None)
    >>> ce.round(6).tolist(), h.tolist()
    ([0.105361, 0.223144, 0.510826], [0.0, 0.0, 0.0])
    """
    smoothed, positive, negative = labels
    # 0·log 0 = 0: a term whose target weight is zero contributes nothing, even at log q = −inf.
    pos_log = np.where(positive, log_q, 0.0)
    neg_log = np.where(negative, log_1mq, 0.0)
    entropy = -(xlogx(smoothed) + xlogx(1.0 - smoothed))
    with np.errstate(invalid="ignore"):
        gaps = smoothed * (np.log(smoothed, where=positive, out=np.zeros_like(smoothed)) - pos_log) + (
            1.0 - smoothed
        ) * (np.log1p(-smoothed, where=negative, out=np.zeros_like(smoothed)) - neg_log)
    # Rounding can leave −1e-17 where q equals the target; a divergence is never negative.
    kl_divergence = np.maximum(gaps.mean(axis=1), 0.0)
    entropy_rows = entropy.mean(axis=1)
    if pos_weight is None:
        return entropy_rows + kl_divergence, kl_divergence, entropy_rows
    weighted = pos_weight * smoothed
    # A zero weight times log q = −inf must give 0, not NaN: select before multiplying out.
    with np.errstate(invalid="ignore"):
        terms = np.where(weighted > 0, weighted * log_q, 0.0) + (1.0 - smoothed) * neg_log
    return -terms.mean(axis=1), kl_divergence, entropy_rows


def _shape(array: np.ndarray) -> str:
    """An array's shape as Python writes it: ``(3,)``, ``(3, 2)``."""
    return "(" + ", ".join(str(d) for d in array.shape) + ("," if array.ndim == 1 else "") + ")"


def _require_unit_interval(values: np.ndarray, field: str, message: str) -> None:
    """Raise OutOfRange at the first value outside [0, 1]."""
    bad = (values < 0) | (values > 1)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        column = where[1] if len(where) > 1 else None
        raise OutOfRange(field, message.format(value=quoted(float(values[where]))), row=where[0], column=column)


def _pos_weight(pos_weight: Any, n_labels: int | None) -> np.ndarray | None:
    """pos_weight as K non-negative numbers (a single number applies to every label)."""
    if pos_weight is None:
        return None
    if isinstance(pos_weight, bool):
        raise NotANumber("pos_weight", f"expected a number or an array of numbers, got {describe(pos_weight)}")
    if isinstance(pos_weight, int | float):
        pos_weight = [pos_weight] * (n_labels or 1)
    return nonnegative_weights(pos_weight, "pos_weight", n_labels, "label per sample")
