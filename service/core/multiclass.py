"""Multi-class cross-entropy, KL divergence and target entropy.

The reference path here is the specification: ``hard_label_reference`` for class labels
(CE = KL = −log q_y, H = 0) and ``entropy_and_divergence`` for any target distribution
(CE = H + KL). Hard labels are scored by the blocked kernel of ``service.core.kernels``
wherever it applies, chosen in ``_hard_label_rows`` alone; it gives the same bits.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, NamedTuple

import numpy as np

from service.core.arrays import all_finite, check_finite, float_matrix, nonnegative_weights
from service.core.gradient import multiclass_gradient
from service.core.kernels import hard_label_scan
from service.core.labels import Targets, class_names, dense_target, number_of_classes, parse_labels
from service.core.logspace import xlogx
from service.core.options import MulticlassOptions, PredictionType
from service.core.predictions import log_predictions
from service.core.result import ScoreResult, ScoringWarning, WarningCode, empty, finish

#: Below this a negative divergence is rounding noise, not a property of the input.
_ROUNDING = 1e-12
_DEFAULT_OPTIONS = MulticlassOptions()


class _Rows(NamedTuple):
    """Per-row values in nats, from either path."""

    cross_entropy: np.ndarray
    kl_divergence: np.ndarray
    entropy: np.ndarray
    correct: np.ndarray  # 1.0 where argmax q is the target's argmax, else 0.0
    clipped: np.ndarray | None  # rows where the ε clip moved a q under a non-zero target; None: no clip applies
    class_mass: np.ndarray | None  # Σ_c w_c·y'_c per row, times 2^-mass_exponent; None without class weights
    mass_exponent: int = 0
    normaliser: tuple[np.ndarray, np.ndarray] | None = None  # logits' per-row (peak, log_sum), for the gradient


def score_multiclass(
    labels: Any,
    predictions: Any,
    *,
    classes: list[str] | None = None,
    class_weights: Any = None,
    sample_weights: Any = None,
    options: MulticlassOptions | None = None,
) -> ScoreResult:
    """Cross-entropy H(y, q) = H(y) + KL(y ‖ q) of each row, and their weighted means.

    Parameters
    ----------
    labels
        N class indices, N class names (with ``classes``), or N×C target distributions.
    predictions
        N×C probabilities, logits or log-probabilities (``options.prediction_type``).
    classes
        C unique class names, in column order.
    class_weights, sample_weights
        Non-negative weights that change only the aggregates: row i weighs
        sᵢ·Σ_c w_c·y'ᵢ_c.
    options
        Prediction type, label smoothing, ε clip, normalization policy, unit, ignore_index.

    Examples
    --------
    True class B of A/B/C, predicted [0.228, 0.619, 0.153]: −ln 0.619 nats.

    >>> result = score_multiclass([1], [[0.228, 0.619, 0.153]])
    >>> round(result.mean.cross_entropy, 6), round(result.mean.kl_divergence, 6), result.mean.entropy
    (0.47965, 0.47965, 0.0)

    A soft target: CE = H + KL.

    >>> soft = score_multiclass([[0.5, 0.5]], [[0.25, 0.75]])
    >>> h, kl, ce = soft.mean.entropy, soft.mean.kl_divergence, soft.mean.cross_entropy
    >>> round(h, 6), round(kl, 6), round(ce, 6), abs(ce - (h + kl)) < 1e-12
    (0.693147, 0.143841, 0.836988, True)
    """
    options = options or _DEFAULT_OPTIONS
    # The finite check of the predictions runs inside the blocked pass (or before any other
    # error is raised), so that a valid batch is read once, not once more for it.
    preds = float_matrix(predictions, "predictions", finite=False)
    try:
        n = preds.shape[0]
        names = class_names(classes)
        n_classes = number_of_classes(preds, names, class_weights)
        targets = parse_labels(labels, n, n_classes, names, options)
        weights_by_class = (
            None if class_weights is None else nonnegative_weights(class_weights, "class_weights", n_classes, "class")
        )
        weights_by_sample = (
            None if sample_weights is None else nonnegative_weights(sample_weights, "sample_weights", n, "row")
        )
    except Exception:
        check_finite(preds, "predictions")  # a NaN or infinity in the predictions is reported first
        raise
    kind = options.prediction_type
    settings = {
        "compat": "xent",
        "prediction_type": kind.value,
        "label_type": targets.form,
        "unit": options.unit.value,
        "epsilon": options.resolved_epsilon,
        "epsilon_applies": kind is PredictionType.PROBABILITIES,
        "label_smoothing": options.label_smoothing,
        "normalization": options.normalization.value,
        "tolerance": options.tolerance,
        "ignore_index": options.ignore_index,
        "class_weights": None if weights_by_class is None else weights_by_class.tolist(),
        "sample_weights": sample_weights is not None,
    }
    if n == 0:
        return empty(options.unit, settings, np.zeros(preds.shape) if options.gradient else None)

    warnings: list[ScoringWarning] = []
    if targets.indices is not None and options.label_smoothing == 0:
        rows = _hard_label_rows(preds, targets.indices, targets.scored, weights_by_class, options, warnings)
    else:
        rows = _target_rows(preds, targets, weights_by_class, options, warnings)
    clipped_rows = rows.clipped
    if clipped_rows is not None:
        if not targets.all_scored:
            clipped_rows &= targets.scored
        if clipped_rows.any():
            eps = options.resolved_epsilon
            message = (
                f"probabilities outside [epsilon, 1 - epsilon] (epsilon = {eps:.6g}) were clipped "
                "before the logarithm where the target is non-zero"
            )
            warnings.append(ScoringWarning.for_rows(WarningCode.CLIPPED, clipped_rows, message))
    weights, weight_exponent = _row_weights(weights_by_sample, rows.class_mass, rows.mass_exponent)
    result = finish(
        cross_entropy=rows.cross_entropy,
        kl_divergence=rows.kl_divergence,
        entropy=rows.entropy,
        correct=rows.correct,
        scored=targets.scored,
        weights=weights,
        unit=options.unit,
        warnings=warnings,
        settings=settings,
        all_scored=targets.all_scored,
        weight_exponent=weight_exponent,
    )
    if not options.gradient:
        return result
    return replace(result, gradient=multiclass_gradient(preds, targets, options, normaliser=rows.normaliser))


def _row_weights(
    by_sample: np.ndarray | None, class_mass: np.ndarray | None, mass_exponent: int
) -> tuple[np.ndarray | None, int]:
    """wᵢ = sᵢ·massᵢ as (w', k) with wᵢ = w'ᵢ·2^k; scaled by powers of two only where the product overflows.

    A missing factor is 1, and x·1 = x, so it is left out (None: every row weighs 1).
    """
    if by_sample is None or class_mass is None:
        return (class_mass, mass_exponent) if by_sample is None else (by_sample, 0)
    with np.errstate(over="ignore"):
        weights = by_sample * class_mass
    if all_finite(weights):
        return weights, mass_exponent
    # Dividing by a power of two is exact: the means are the same, the sums are scaled back in ``finish``.
    exponent = math.frexp(float(by_sample.max()))[1]
    return np.ldexp(by_sample, -exponent) * class_mass, exponent + mass_exponent


def _hard_label_rows(
    preds: np.ndarray,
    true_class: np.ndarray,
    scored: np.ndarray,
    class_weights: np.ndarray | None,
    options: MulticlassOptions,
    warnings: list[ScoringWarning],
) -> _Rows:
    """CE = KL = −log q_y and H = 0 per row: the one point where the blocked kernel is chosen.

    ``hard_label_scan`` declines (None) an array that is not C-contiguous or holds a value not
    finite or out of range; the reference path then scores it, or names the offending entry.
    """
    scan = hard_label_scan(preds, true_class, scored, options, warnings)
    normaliser = None if scan is None else scan.normaliser
    scores = scan[:3] if scan is not None else hard_label_reference(preds, true_class, scored, options, warnings)
    log_q_true, clipped_rows, correct = scores
    cross_entropy = np.negative(log_q_true, out=log_q_true)  # a fresh array either way
    class_mass = None if class_weights is None else class_weights[true_class]
    zeros = np.zeros(preds.shape[0])
    return _Rows(cross_entropy, cross_entropy, zeros, correct, clipped_rows, class_mass, normaliser=normaliser)


def hard_label_reference(
    preds: np.ndarray,
    true_class: np.ndarray,
    scored: np.ndarray,
    options: MulticlassOptions,
    warnings: list[ScoringWarning],
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """log q_y of each row, the rows whose q_y the ε clip moved, and [argmax q = y] as 1.0 or 0.0.

    With a one-hot target, H(y) = 0 and CE = KL = −log q_y: only the true class's column is
    read. This is the specification that ``kernels.hard_label_scan`` equals bit for bit.

    Examples
    --------
    True class B of A/B/C, predicted [0.228, 0.619, 0.153]: −ln 0.619 nats.

    >>> log_q, clipped, correct = hard_label_reference(
    ...     np.array([[0.228, 0.619, 0.153]]), np.array([1]), np.array([True]), MulticlassOptions(), []
    ... )
    >>> f"{-log_q[0]:.6f}", clipped.tolist(), correct.tolist()
    ('0.479650', [False], [1.0])
    """
    check_finite(preds, "predictions")
    log_q_true, clipped_rows = log_predictions(preds, scored, options, warnings).at(true_class)
    correct = (preds.argmax(axis=1) == true_class).astype(np.float64)
    return log_q_true, clipped_rows, correct


def _target_rows(
    preds: np.ndarray,
    targets: Targets,
    class_weights: np.ndarray | None,
    options: MulticlassOptions,
    warnings: list[ScoringWarning],
) -> _Rows:
    """H, KL and CE = H + KL per row against the dense target y' (distributions, smoothed labels)."""
    check_finite(preds, "predictions")
    log_q, clipped = log_predictions(preds, targets.scored, options, warnings).everywhere()
    target = dense_target(targets, preds.shape[0], preds.shape[1], options.label_smoothing)
    entropy, kl_divergence = entropy_and_divergence(target, log_q)
    # Without class weights every row weighs exactly 1, even a target summing to 1 ± tolerance.
    class_mass, mass_exponent = (None, 0) if class_weights is None else _class_mass(target, class_weights)
    clipped_rows = None if clipped is None else np.asarray((clipped & (target > 0)).any(axis=1))
    # Accuracy is against the true class: the label, or the argmax of the unsmoothed target. The smoothed
    # target's argmax is the same unless ε_ls = 1, where every class ties and the first would win.
    if targets.indices is not None:
        true_class = targets.indices
    else:
        assert targets.distributions is not None
        true_class = targets.distributions.argmax(axis=1)
    correct = (preds.argmax(axis=1) == true_class).astype(np.float64)
    return _Rows(entropy + kl_divergence, kl_divergence, entropy, correct, clipped_rows, class_mass, mass_exponent)


def _class_mass(target: np.ndarray, class_weights: np.ndarray) -> tuple[np.ndarray, int]:
    """Σ_c w_c·y'_c per row as (m', k) with the mass m'·2^k; scaled only where it overflows (y' may sum past 1)."""
    with np.errstate(over="ignore"):
        mass = target @ class_weights
    if all_finite(mass):
        return mass, 0
    exponent = math.frexp(float(class_weights.max()))[1]
    return target @ np.ldexp(class_weights, -exponent), exponent


def entropy_and_divergence(target: np.ndarray, log_q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """H(y) = −Σ_c y_c·log y_c and KL(y ‖ q) = Σ_c y_c·(log y_c − log q_c) per row; CE = H + KL.

    Examples
    --------
    The reference example as a one-hot target: H = 0, and CE = KL = −ln 0.619.

    >>> h, kl = entropy_and_divergence(np.array([[0.0, 1.0, 0.0]]), np.log([[0.228, 0.619, 0.153]]))
    >>> f"{h[0] + kl[0]:.6f}", float(abs(h[0]))
    ('0.479650', 0.0)
    """
    return -xlogx(target).sum(axis=1), _kl_rows(target, log_q)


def _kl_rows(target: np.ndarray, log_q: np.ndarray) -> np.ndarray:
    """KL(t ‖ q) per row: Σ_c t_c·(log t_c − log q_c), with 0·(…) = 0.

    Each term is a difference of logs before weighting, which keeps a tiny divergence
    accurate where CE − H would cancel. Rounding can leave −1e-17 on a perfect match;
    that is set to 0. A clearly negative value is kept: it only arises from a prediction
    row that does not sum to 1 and was scored as given (ROWS_NOT_NORMALIZED).
    """
    positive = target > 0
    log_t = np.log(target, where=positive, out=np.zeros_like(target))
    with np.errstate(invalid="ignore"):
        gaps = np.where(positive, log_t - log_q, 0.0)
    divergence = np.einsum("ij,ij->i", target, gaps)
    return np.where((divergence < 0) & (divergence > -_ROUNDING), 0.0, divergence)
