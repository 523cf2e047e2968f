"""The gradient of each row's reported loss with respect to its submitted predictions (``gradient: true``).

It is the derivative of the per-sample value xent reports, exactly: unweighted (per-sample values are; class and
sample weights change only the aggregates), in the result's unit (÷ ln base), through the row renormalisation of
``normalization: "renormalize"``, zero where the ε clip is active (a clipped probability does not move the
loss), zero on ignored rows, and ÷ K for a multi-label row (its value is the mean over its K labels).

With y′ the target after label smoothing and s = Σ_c y′_c (1 for a label; within the tolerance of 1 for a
target distribution), the multi-class loss ℓ = −Σ_c y′_c·log q_c gives

- logits (log q = x − logsumexp x), and renormalised log-probabilities:  softmax(x)·s − y′
- log-probabilities scored as given (log q = x):                          −y′
- probabilities, q = clip(p, ε, 1 − ε):                                   −y′/q, 0 where the clip is active
- renormalised probabilities, q = clip(p/S), S = Σ_c p_c:                 (a − ⟨a, p/S⟩)/S, a = −y′/q as above

and the binary loss ℓ = −[w·y′·log q + (1 − y′)·log(1 − q)] (w = ``pos_weight``, 1 without it) gives

- logits (q = σ(x)):                        (1 − y′)·σ(x) − w·y′·σ(−x), which is σ(x) − y′ without pos_weight
- probabilities (q = clip(p, ε, 1 − ε)):    −w·y′/q + (1 − y′)/(1 − q), which is (q − y′)/(q(1 − q)) without
  pos_weight; 0 where the clip is active.

A term whose target weight is zero contributes nothing, so its derivative is 0 even at q = 0 (0·log 0 = 0).
Where the loss itself is +infinity (ε = 0 and a zero probability under a non-zero target) the gradient is
infinite too.
"""

from __future__ import annotations

import numpy as np

from service.core.errors import InvalidOption
from service.core.kernels import NARROW_BLOCK_BYTES, NARROW_CLASSES
from service.core.labels import Targets, dense_target
from service.core.logspace import log_sigmoid
from service.core.options import BinaryOptions, MulticlassOptions, Normalization, PredictionType, Unit

#: A clip [low, high] a probability is moved into before the log; None: no clip.
Bounds = tuple[float, float] | None


def requested_gradient(gradient: bool, per_sample: bool) -> bool:
    """The ``gradient`` option, refused (InvalidOption, a 422) without ``per_sample``: it is a per-sample array."""
    if gradient and not per_sample:
        raise InvalidOption("gradient", "needs per_sample true: the gradient is returned among the per-sample arrays")
    return gradient


def clip_bounds(epsilon: float) -> Bounds:
    """xent's clip [ε, 1 − ε] (None for ε = 0)."""
    return (epsilon, 1.0 - epsilon) if epsilon > 0 else None


def multiclass_gradient(
    preds: np.ndarray,
    targets: Targets,
    options: MulticlassOptions,
    normaliser: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """∂ℓᵢ/∂x_ic: the N×C gradient of each row's reported cross-entropy with respect to its predictions.

    ``preds`` and ``targets`` are the checked predictions and labels the row values were scored from;
    ``normaliser``, for logits, each row's (peak, log Σ exp(x − peak)) as the scoring pass found them.

    Examples
    --------
    The reference example as logits: softmax(x) − y.

    >>> logits = np.log([[0.228, 0.619, 0.153]])
    >>> targets = Targets("class_indices", np.array([True]), indices=np.array([1]))
    >>> options = MulticlassOptions(prediction_type="logits")
    >>> multiclass_gradient(logits, targets, options).round(6).tolist()
    [[0.228, -0.381, 0.153]]

    As probabilities, −y/q: only the true class's column moves the loss.

    >>> multiclass_gradient(np.exp(logits), targets, MulticlassOptions()).round(6).tolist()
    [[0.0, -1.615509, 0.0]]
    """
    n, n_classes = preds.shape
    kind = options.prediction_type
    renormalized = options.normalization is Normalization.RENORMALIZE
    bounds = clip_bounds(options.resolved_epsilon)
    if kind is PredictionType.LOGITS or (kind is PredictionType.LOG_PROBABILITIES and renormalized):
        gradient = softmax_minus_target(preds, targets, options.label_smoothing, normaliser)
    elif targets.indices is not None and not options.label_smoothing and not renormalized:
        gradient = label_column(preds, targets.indices, kind, bounds)
    else:
        target = dense_target(targets, n, n_classes, options.label_smoothing)
        if kind is PredictionType.LOG_PROBABILITIES:
            gradient = np.negative(target)
        else:
            gradient = probability_gradient(preds, target, bounds, renormalized)
    return scored_in_unit(gradient, targets, options.unit)


def softmax_minus_target(
    logits: np.ndarray,
    targets: Targets,
    smoothing: float,
    normaliser: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """softmax(x)·s − y′ per row, for log q = x − logsumexp x; a label's y′ sums to 1 and is never built.

    With ``normaliser`` (each row's peak and log Σ exp(x − peak), from the scoring pass) the softmax is
    exp((x − peak) − log_sum), the very log q the cross-entropy was taken from, in two passes instead of five.
    """
    gradient = softmax(logits) if normaliser is None else _softmax_from(logits, *normaliser)
    if targets.indices is None:
        target = dense_target(targets, logits.shape[0], logits.shape[1], smoothing)
        gradient *= target.sum(axis=1, keepdims=True)
        gradient -= target
        return gradient
    _add_at_labels(gradient, targets.indices, -(1.0 - smoothing))
    if smoothing:
        gradient -= smoothing / logits.shape[1]
    return gradient


def softmax(logits: np.ndarray) -> np.ndarray:
    """exp(x − max x) / Σ_c exp(x_c − max x) per row, a fresh C-contiguous array.

    Narrow rows are taken in blocks, transposed: NumPy's reductions along a short row pay an overhead on every
    row, while across a transposed block they run over whole columns (as ``kernels`` does), and the block
    stays in the L2 cache between the passes. The sums' order differs from ``sum(axis=1)`` by rounding only.

    >>> softmax(np.log([[0.228, 0.619, 0.153]])).round(12).tolist()
    [[0.228, 0.619, 0.153]]
    """
    n, n_classes = logits.shape
    out = np.empty((n, n_classes))
    narrow = n_classes <= NARROW_CLASSES
    if narrow:
        size = max(1, NARROW_BLOCK_BYTES // (8 * n_classes))
        blocks = [(logits[start : start + size], out[start : start + size]) for start in range(0, n, size)]
    else:
        blocks = [(logits, out)]
    axis = 0 if narrow else 1
    for rows, into in blocks:
        shifted = rows.T.copy() if narrow else rows.copy()  # never a view: the predictions are not ours to change
        with np.errstate(over="ignore"):  # a spread past 1.8e308 gives −inf, and exp(−inf) = 0 is right
            shifted -= shifted.max(axis=axis, keepdims=True)
        np.exp(shifted, out=shifted)
        shifted *= 1.0 / shifted.sum(axis=axis, keepdims=True)  # one division a row, then multiplications
        into[...] = shifted.T if narrow else shifted
    return out


def _softmax_from(logits: np.ndarray, peak: np.ndarray, log_sum: np.ndarray) -> np.ndarray:
    """exp((x − peak) − log_sum) per row, a fresh array (a spread past 1.8e308 gives exp(−inf) = 0, as it should)."""
    with np.errstate(over="ignore"):
        out = np.subtract(logits, peak[:, None])
    out -= log_sum[:, None]
    return np.exp(out, out=out)


def label_column(preds: np.ndarray, indices: np.ndarray, kind: PredictionType, bounds: Bounds) -> np.ndarray:
    """A label's gradient, non-zero in its own column only: −1/q_y (0 where clipped), or −1 for log q_y."""
    gradient = np.zeros(preds.shape)
    if kind is PredictionType.LOG_PROBABILITIES:
        _add_at_labels(gradient, indices, -1.0)
        return gradient
    q = preds[np.arange(preds.shape[0]), indices]
    with np.errstate(divide="ignore", over="ignore"):  # q = 0 with no clip: −inf, as the loss is +inf
        value = -1.0 / q
    if bounds is not None:
        value[(q < bounds[0]) | (q > bounds[1])] = 0.0
    _add_at_labels(gradient, indices, value)
    return gradient


def _add_at_labels(gradient: np.ndarray, indices: np.ndarray, value: float | np.ndarray) -> None:
    """gradient[i, yᵢ] += value (or valueᵢ), through the flat index i·C + yᵢ of the C-contiguous array."""
    flat = gradient.reshape(-1)
    at = np.arange(0, flat.size, gradient.shape[1]) + indices if gradient.size else indices
    flat[at] += value


def probability_gradient(preds: np.ndarray, target: np.ndarray, bounds: Bounds, renormalized: bool) -> np.ndarray:
    """−y′/q where q is inside the clip's bounds and y′ > 0, else 0; through q = p/S when rows are renormalised."""
    if renormalized:
        sums = preds.sum(axis=1, keepdims=True)
        sums[sums == 0] = 1.0  # an ignored row may sum to 0; its gradient is set to 0
        q = preds / sums
    else:
        q = preds
    moves = target > 0
    if bounds is not None:
        moves &= (q >= bounds[0]) & (q <= bounds[1])
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        outer = np.where(moves, -target / q, 0.0)
    if not renormalized:
        return outer
    # ∂q_c/∂p_j = (δ_cj − q_c)/S, so ∂ℓ/∂p_j = (a_j − Σ_c a_c·q_c)/S, and a_c·q_c = −y′_c where a_c ≠ 0.
    inner = np.where(moves, target, 0.0).sum(axis=1, keepdims=True)
    return (outer + inner) / sums


def scored_in_unit(gradient: np.ndarray, targets: Targets, unit: Unit) -> np.ndarray:
    """The gradient with the rows that were not scored set to 0, in ``unit``."""
    if not targets.all_scored:
        gradient[~targets.scored] = 0.0
    return in_unit(gradient, unit)


def binary_gradient(
    preds: np.ndarray, smoothed: np.ndarray, pos_weight: np.ndarray | None, options: BinaryOptions
) -> np.ndarray:
    """∂ℓᵢ/∂x_ik: the N×K gradient of each row's reported binary cross-entropy (the mean over its K labels).

    ``preds`` and ``smoothed`` are the N×K predictions and labels after label smoothing.

    Examples
    --------
    σ(x) − y for logits, (q − y)/(q(1 − q)) for probabilities:

    >>> logits = BinaryOptions(prediction_type="logits")
    >>> binary_gradient(np.array([[0.0], [2.0]]), np.array([[1.0], [0.0]]), None, logits).round(6).tolist()
    [[-0.5], [0.880797]]
    >>> binary_gradient(np.array([[0.8]]), np.array([[1.0]]), None, BinaryOptions()).tolist()
    [[-1.25]]
    """
    bounds = clip_bounds(options.resolved_epsilon)
    gradient = bernoulli_gradient(preds, smoothed, pos_weight, options.prediction_type, bounds)
    gradient /= preds.shape[1]
    return in_unit(gradient, options.unit)


def bernoulli_gradient(
    preds: np.ndarray, y: np.ndarray, pos_weight: np.ndarray | None, kind: PredictionType, bounds: Bounds
) -> np.ndarray:
    """∂/∂x of −[w·y·log q + (1 − y)·log(1 − q)] per element, q = σ(x) or clip(x) (0 where the clip is active)."""
    weighted = y if pos_weight is None else pos_weight * y
    if kind is PredictionType.LOGITS:
        positive = np.exp(log_sigmoid(preds))
        if pos_weight is None:
            return positive - y
        return (1.0 - y) * positive - weighted * np.exp(log_sigmoid(-preds))
    # A tiny q under the label gives −y′/q = −inf (no clip: the loss is +inf too) or a value the clip zeroes.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        gradient = np.where(weighted > 0, -weighted / preds, 0.0) + np.where(y < 1, (1.0 - y) / (1.0 - preds), 0.0)
    if bounds is not None:
        gradient[(preds < bounds[0]) | (preds > bounds[1])] = 0.0
    return gradient


def in_unit(gradient: np.ndarray, unit: Unit) -> np.ndarray:
    """The gradient of a value in nats, divided by ln(base) like the value."""
    base = unit.log_base
    if base != 1.0:
        gradient /= base
    return gradient
