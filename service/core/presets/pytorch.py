"""``compat: "pytorch"``: the numbers of ``torch.nn.functional`` (2.13), in float64.

Multi-class: logits are ``F.cross_entropy`` (log_softmax inside), log-probabilities ``F.nll_loss`` (read
as given: positive values too; with target rows, ``F.kl_div(input, target)``, whose "batchmean" is xent's
mean). Binary: probabilities are ``F.binary_cross_entropy`` (each log clamped at −100), logits
``F.binary_cross_entropy_with_logits`` (with ``pos_weight``); an N×K mean is torch's element mean.
"""

from __future__ import annotations

import numpy as np

from service.core.logspace import log_sum_exp_rows, xlogx
from service.core.options import PredictionType
from service.core.presets.common import (
    BinaryInputs,
    MulticlassInputs,
    PresetRows,
    entropy_rows,
    first_out_of_range,
    one_hot,
    ones_or,
    refuse,
    true_class,
    xlogy,
)

NAME = "pytorch"
#: ``F.binary_cross_entropy`` clamps each log at −100 ("so that the loss is finite", torch/nn/modules/loss.py).
LOG_CLAMP = -100.0


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """x − max x − log Σ exp(x − max x) per row, as ATen's CPU log_softmax computes it."""
    peak, log_sum = log_sum_exp_rows(logits)
    return (logits - peak[:, None]) - log_sum[:, None]


def multiclass(inputs: MulticlassInputs) -> PresetRows:
    """``F.cross_entropy`` (logits) or ``F.nll_loss`` / ``F.kl_div`` (log-probabilities), reduction "none" and
    "mean": index targets weigh row i by w_{yᵢ} (mean = Σℓᵢ / Σ w_{yᵢ} over rows not ignored); target rows
    weigh each row 1 (mean = Σℓᵢ / N), class weights inside ℓᵢ = −Σ_c w_c·y'_c·log q_c."""
    options, targets = inputs.options, inputs.targets
    kind, smoothing = options.prediction_type, options.label_smoothing
    if kind is PredictionType.PROBABILITIES:
        raise refuse(
            "prediction_type",
            NAME,
            'PyTorch has no multi-class loss of probabilities: send "logits" (F.cross_entropy) or '
            '"log_probabilities" (F.nll_loss)',
        )
    if inputs.sample_weights is not None:
        raise refuse("sample_weights", NAME, "F.cross_entropy and F.nll_loss take no per-sample weights")
    if kind is PredictionType.LOG_PROBABILITIES and smoothing:
        raise refuse("label_smoothing", NAME, 'F.nll_loss has no label_smoothing (send "logits": F.cross_entropy)')
    log_q = log_softmax(inputs.preds) if kind is PredictionType.LOGITS else inputs.preds
    n, n_classes = log_q.shape
    weights_by_class = inputs.class_weights
    target = one_hot(targets, n, n_classes)
    if targets.distributions is not None:
        if kind is PredictionType.LOG_PROBABILITIES and weights_by_class is not None:
            raise refuse("class_weights", NAME, "F.kl_div (log-probabilities against target rows) takes no weights")
        negative = target < 0
        if negative.any():
            # torch's cross_entropy would score it, but its kl_div and the entropy are NaN: no number to report.
            raise first_out_of_range(
                target, negative, "labels", "target probability {value} is negative; F.kl_div of it is NaN"
            )
    if smoothing:
        target = (1.0 - smoothing) * target + smoothing / n_classes
    entropy = entropy_rows(target)
    cross_entropy = -np.einsum("ij,ij->i", target, log_q)
    # Term by term, as F.kl_div(log_q, target, reduction="none") gives them: xlogy(y, y) − y·log q.
    kl_divergence = (xlogy(target, target) - target * log_q).sum(axis=1)
    scored = targets.scored
    if targets.indices is not None:
        # Exactly −log q_y where torch reads one column (nll_loss), not a sum that adds zeros times logs.
        nll = -log_q[np.arange(n), targets.indices]
        if not smoothing:
            cross_entropy = kl_divergence = nll
        class_weight = ones_or(weights_by_class, n_classes)[targets.indices]
        weights = np.where(scored, class_weight, 0.0)
        numerator = None
        if weights_by_class is not None and smoothing:
            # ATen's cross_entropy_loss_label_smoothing: (1 − ε)·w_y·NLL + (ε/C)·Σ_c w_c·(−log q_c), ÷ Σ w_y.
            spread = -(log_q @ weights_by_class)
            numerator = np.where(scored, (1.0 - smoothing) * class_weight * nll + smoothing / n_classes * spread, 0.0)
        return PresetRows(
            cross_entropy,
            kl_divergence,
            entropy,
            _correct(inputs),
            scored,
            weights,
            float(weights.sum()),
            numerator,
        )
    numerator = None if weights_by_class is None else -((target * log_q) @ weights_by_class)
    return PresetRows(cross_entropy, kl_divergence, entropy, _correct(inputs), scored, np.ones(n), float(n), numerator)


def _correct(inputs: MulticlassInputs) -> np.ndarray:
    return (inputs.preds.argmax(axis=1) == true_class(inputs.targets)).astype(np.float64)


def binary(inputs: BinaryInputs) -> PresetRows:
    """``F.binary_cross_entropy`` (probabilities, logs clamped at −100) or ``F.binary_cross_entropy_with_logits``
    (with ``pos_weight``); a row's value is the mean over its K labels, the batch mean Σ sᵢ·ℓᵢ / N (``weight``
    broadcast per element, the element mean)."""
    options, x, y = inputs.options, inputs.preds, inputs.target
    if options.label_smoothing:
        raise refuse("label_smoothing", NAME, "F.binary_cross_entropy has no label_smoothing")
    if options.prediction_type is PredictionType.LOGITS:
        # ATen: (1 − y)·x − (1 + (pw − 1)·y)·log σ(x), with log σ(x) = min(x, 0) − log1p(e^−|x|).
        log_q = np.minimum(x, 0.0) - np.log1p(np.exp(-np.abs(x)))
        log_1mq = log_q - x
        log_weight = 1.0 if inputs.pos_weight is None else 1.0 + (inputs.pos_weight - 1.0) * y
        elements = (1.0 - y) * x - log_weight * log_q
        predicted_positive = x > 0
    else:
        if inputs.pos_weight is not None:
            raise refuse("pos_weight", NAME, 'F.binary_cross_entropy takes no pos_weight (send "logits")')
        outside = (x < 0) | (x > 1)
        if outside.any():
            raise first_out_of_range(
                inputs.as_sent(x),
                inputs.as_sent(outside),
                "predictions",
                "probability {value}: all elements of input should be between 0 and 1",
            )
        with np.errstate(divide="ignore"):
            log_q = np.maximum(np.log(x), LOG_CLAMP)
            log_1mq = np.maximum(np.log1p(-x), LOG_CLAMP)
        elements = -(y * log_q + (1.0 - y) * log_1mq)
        predicted_positive = x > 0.5
    entropy = -(xlogx(y) + xlogx(1.0 - y))
    kl = -entropy - (np.where(y > 0, y * log_q, 0.0) + np.where(y < 1, (1.0 - y) * log_1mq, 0.0))
    n = x.shape[0]
    weights = ones_or(inputs.sample_weights, n)
    return PresetRows(
        elements.mean(axis=1),
        kl.mean(axis=1),
        entropy.mean(axis=1),
        (predicted_positive == (y > 0.5)).mean(axis=1),
        np.ones(n, dtype=bool),
        weights,
        float(n),
    )
