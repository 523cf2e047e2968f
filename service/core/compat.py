"""``compat``: score a batch by a library's rules, to get the number PyTorch, scikit-learn, Keras or SciPy printed.

How a preset works (for readers and for the gradient, ``service.core.gradient``, which differentiates it):

1. **Dispatch, once.** ``compat: "xent"`` never reaches this module: the routes call ``score_multiclass`` /
   ``score_binary`` as before. Any other preset calls ``score_multiclass_preset`` / ``score_binary_preset``.
2. **Resolve the options** (``resolve``): each preset fixes the clip ε, whether it applies, the row
   normalisation and (scikit-learn) the tolerance of its row-sum check:

   ========  =============================  ===============  ============  ==========================
   preset    epsilon                        epsilon_applies  normalization tolerance
   ========  =============================  ===============  ============  ==========================
   pytorch   0 (never clips; BCE's log      false            warn          as given
             is clamped at −100 instead)
   sklearn   finfo(input dtype).eps         true             warn          1e-8 + √eps (isclose)
   keras     float32(1e-7) = 1.00000001e-7  true (probs)     renormalize   as given
   scipy     0                              false            renormalize   as given
   ========  =============================  ===============  ============  ==========================

   An option the request sets explicitly (``given``) that contradicts this is a 422 naming the option and
   the preset (``"auto"`` for ε means "the preset's own clip"); so is an option the library does not have
   (each preset module raises ``presets.common.refuse``). ``ignore_index`` resolves to −100 under
   ``"pytorch"`` for class-index labels (torch's default).
3. **Compute the library's per-sample values** (``service.core.presets.<library>``), each a plain function of
   (targets, predictions, options) returning ``PresetRows``: unweighted CE, KL and H per row in nats (the
   library's ``reduction="none"``), and its reduction. The loss each preset computes, per row i:

   * pytorch, logits: ℓᵢ = −Σ_c y'_c·log_softmax(xᵢ)_c (y' = (1 − ε_ls)·y + ε_ls/C); log-probabilities:
     ℓᵢ = −Σ_c y_c·xᵢ_c (read as given, no renormalisation, no clip). KL = Σ_c xlogy(y', y') − y'·log q.
     Binary probabilities: −[y·max(log q, −100) + (1 − y)·max(log(1 − q), −100)]; binary logits:
     (1 − y)·x − (1 + (pw − 1)·y)·log σ(x). Mean: index targets Σ_i w_{yᵢ}ℓᵢ / Σ_i w_{yᵢ} (with label
     smoothing the numerator is (1 − ε)·w_y·NLL + (ε/C)·Σ_c w_c·(−log q_c)); target rows Σ_i ℓᵢʷ / N with
     ℓᵢʷ = −Σ_c w_c·y'_c·log q_c; binary Σ_i sᵢ·ℓᵢ / N (ℓᵢ the mean over K).
   * sklearn: ℓᵢ = −Σ_c Y_c·log clip(P_c, eps, 1 − eps), computed in the input's dtype (binary: P = [1 − q, q]);
     mean Σ sᵢℓᵢ / Σ sᵢ. KL = CE, H = 0.
   * keras (float32): ℓᵢ = −Σ_c y'_c·log clip(p_c / Σ p, ε, 1 − ε) (logits: log_softmax);
     KL = Σ_c ŷ·log(ŷ / p̂) with ŷ, p̂ = clip(·, ε, 1), no renormalisation; H = −Σ_c ŷ·log ŷ. Binary:
     mean over K of −[y'·log clip(q) + (1 − y')·log(1 − clip(q))], y' = y·(1 − ε_ls) + ε_ls/2; KL of the
     Bernoulli pairs. Mean Σ sᵢℓᵢ / N ("sum_over_batch_size"; with ignore_index, / (valid rows + ε)).
   * scipy: p = y/Σy and q = q/Σq; KL = Σ rel_entr(p, q), H = Σ entr(p), CE = H + KL, no clip;
     mean Σ sᵢℓᵢ / Σ sᵢ.
4. **Reduce** (``_finish``): ``result.finish`` builds the answer's shape (per-sample values in the unit,
   warnings, row weights for the standard errors), then the means and sums are the library's:
   Σ numeratorᵢ / denominator.

Over 300 lines only because this docstring writes out every preset's loss, the one place the gradient reads them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import numpy as np

from service.core.arrays import float_matrix, nonnegative_weights
from service.core.binary import _pos_weight, _require_unit_interval, _shape
from service.core.compat_gradient import with_binary_gradient, with_multiclass_gradient
from service.core.contract import MAX_EXP_NATS
from service.core.errors import BadShape, InvalidInput
from service.core.labels import class_names, number_of_classes
from service.core.options import BinaryOptions, MulticlassOptions, Normalization, PredictionType, Unit
from service.core.presets import keras, pytorch, scipy, sklearn
from service.core.presets.common import BinaryInputs, MulticlassInputs, PresetRows, refuse, targets_as_given
from service.core.result import Means, Quantities, ScoreResult, empty, finish


class Preset(StrEnum):
    """Whose rules a batch is scored by (the ``compat`` option)."""

    XENT = "xent"
    PYTORCH = "pytorch"
    SKLEARN = "sklearn"
    KERAS = "keras"
    SCIPY = "scipy"


_MULTICLASS: dict[Preset, Callable[[MulticlassInputs], PresetRows]] = {
    Preset.PYTORCH: pytorch.multiclass,
    Preset.SKLEARN: sklearn.multiclass,
    Preset.KERAS: keras.multiclass,
    Preset.SCIPY: scipy.multiclass,
}
_BINARY: dict[Preset, Callable[[BinaryInputs], PresetRows]] = {
    Preset.PYTORCH: pytorch.binary,
    Preset.SKLEARN: sklearn.binary,
    Preset.KERAS: keras.binary,
    Preset.SCIPY: scipy.binary,
}
_FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


@dataclass(frozen=True)
class Resolution:
    """The options a preset fixes, as ``settings`` reports them."""

    epsilon: float
    epsilon_applies: bool
    normalization: Normalization
    tolerance: float | None = None  # None: the request's (only scikit-learn fixes it)


def input_dtype(predictions: Any) -> np.dtype[Any]:
    """The float dtype a library would compute ``predictions`` in: an NPZ array's own, else float64."""
    if isinstance(predictions, np.ndarray) and predictions.dtype in _FLOAT_DTYPES:
        return predictions.dtype
    return np.dtype(np.float64)


def resolve(preset: Preset, dtype: np.dtype[Any], prediction_type: PredictionType) -> Resolution:
    """The clip, its use, the normalisation and the tolerance of ``preset`` for input of ``dtype``."""
    probabilities = prediction_type is PredictionType.PROBABILITIES
    if preset is Preset.SKLEARN:
        return Resolution(sklearn.epsilon(dtype), True, Normalization.WARN, sklearn.tolerance(dtype))
    if preset is Preset.KERAS:
        return Resolution(keras.EPSILON, probabilities, Normalization.RENORMALIZE)
    if preset is Preset.SCIPY:
        return Resolution(0.0, False, Normalization.RENORMALIZE)
    return Resolution(0.0, False, Normalization.WARN)


def check_breakdowns(preset: str, *, per_class: bool, calibration_bins: int | None) -> None:
    """422 for ``per_class`` or ``calibration_bins`` under a preset other than ``"xent"``.

    Both read each row's probabilities and its argmax by xent's rules (clip, normalisation), which a preset
    replaces with its library's (Keras and SciPy renormalise and accept what xent refuses): binned under
    xent's reading they would describe other probabilities than the ones scored, and a negative one has
    no bin at all. ``groups`` needs only the per-sample values and weights, so it stays allowed.
    """
    if preset == Preset.XENT.value:
        return
    reason = "it reads probabilities by xent's rules, not the library's; ask for it with compat \"xent\""
    if calibration_bins is not None:
        raise refuse("calibration_bins", preset, reason)
    if per_class:
        raise refuse("per_class", preset, reason)


def _check_given(
    preset: Preset, options: MulticlassOptions | BinaryOptions, given: Collection[str], resolution: Resolution
) -> None:
    """422 for an option set explicitly to something the preset contradicts."""
    if "epsilon" in given and options.epsilon is not None:
        same = (
            np.float32(options.epsilon) == np.float32(resolution.epsilon)
            if preset is Preset.KERAS
            else options.epsilon == resolution.epsilon
        )
        if not same:
            raise refuse(
                "epsilon", preset, f'the library clips at {resolution.epsilon!r} (send "auto" or leave it out)'
            )
    if not isinstance(options, MulticlassOptions):
        return
    if "normalization" in given and options.normalization is not resolution.normalization:
        raise refuse("normalization", preset, f'the library\'s rows are "{resolution.normalization.value}"')
    if "tolerance" in given and resolution.tolerance is not None and options.tolerance != resolution.tolerance:
        raise refuse("tolerance", preset, f"log_loss checks row sums to within {resolution.tolerance!r}")


def _is_class_indices(labels: Any) -> bool:
    """Whether ``labels`` are class indices (integers), the only labels ``ignore_index`` applies to."""
    if isinstance(labels, np.ndarray):
        return labels.dtype.kind in "iu"
    return isinstance(labels, list) and bool(labels) and type(labels[0]) is int


def _ignore_index(preset: Preset, labels: Any, ignore_index: int | None) -> int | None:
    """The ``ignore_index`` the preset scores with: PyTorch's default −100 for class indices."""
    if preset is not Preset.PYTORCH:
        return ignore_index
    if _is_class_indices(labels):
        return -100 if ignore_index is None else ignore_index
    rows = isinstance(labels, list | np.ndarray) and len(labels) > 0 and not isinstance(labels[0], str)
    if rows and ignore_index is not None and ignore_index >= 0:
        raise refuse("ignore_index", preset, "ignore_index is not supported for floating point target")
    return None if rows else ignore_index


def score_multiclass_preset(
    preset: Preset | str,
    labels: Any,
    predictions: Any,
    *,
    classes: list[str] | None = None,
    class_weights: Any = None,
    sample_weights: Any = None,
    options: MulticlassOptions | None = None,
    given: Collection[str] = (),
) -> ScoreResult:
    """Multi-class scores by ``preset``'s rules; ``given`` names the options the request set explicitly.

    Examples
    --------
    scikit-learn clips a zero probability at float32's epsilon when the input is float32:

    >>> preds = np.array([[0.0, 0.5, 0.5]], dtype=np.float32)
    >>> result = score_multiclass_preset("sklearn", [0], preds)
    >>> result.mean.cross_entropy, result.settings["epsilon"]
    (15.942384719848633, 1.1920928955078125e-07)

    PyTorch's class-weighted mean divides by Σ w_{yᵢ} (per-sample values stay unweighted):

    >>> logits = [[2.0, 1.0, 0.1], [2.0, 1.0, 0.1]]
    >>> options = MulticlassOptions(prediction_type="logits")
    >>> result = score_multiclass_preset("pytorch", [0, 2], logits, class_weights=[1, 2, 3], options=options)
    >>> round(result.mean.cross_entropy, 6), result.per_sample.cross_entropy.round(6).tolist()
    (1.84203, [0.41703, 2.31703])
    """
    preset = Preset(preset)
    options = options or MulticlassOptions()
    dtype = input_dtype(predictions)
    preds = float_matrix(predictions, "predictions")
    n = preds.shape[0]
    names = class_names(classes)
    n_classes = number_of_classes(preds, names, class_weights)
    resolution = resolve(preset, dtype, options.prediction_type)
    _check_given(preset, options, given, resolution)
    options = replace(options, ignore_index=_ignore_index(preset, labels, options.ignore_index))
    targets = targets_as_given(labels, n, n_classes, names, options)
    weights_by_class = (
        None if class_weights is None else nonnegative_weights(class_weights, "class_weights", n_classes, "class")
    )
    weights_by_sample = (
        None if sample_weights is None else nonnegative_weights(sample_weights, "sample_weights", n, "row")
    )
    settings = {
        "compat": preset.value,
        "prediction_type": options.prediction_type.value,
        "label_type": targets.form,
        "unit": options.unit.value,
        "epsilon": resolution.epsilon,
        "epsilon_applies": resolution.epsilon_applies,
        "label_smoothing": options.label_smoothing,
        "normalization": resolution.normalization.value,
        "tolerance": options.tolerance if resolution.tolerance is None else resolution.tolerance,
        "ignore_index": options.ignore_index,
        "class_weights": None if weights_by_class is None else weights_by_class.tolist(),
        "sample_weights": sample_weights is not None,
    }
    inputs = MulticlassInputs(preds, dtype, targets, weights_by_class, weights_by_sample, options)
    if n == 0:
        return with_multiclass_gradient(_empty(preset, options, settings), preset, inputs)
    return with_multiclass_gradient(_finish(_MULTICLASS[preset](inputs), options.unit, settings), preset, inputs)


def score_binary_preset(
    preset: Preset | str,
    labels: Any,
    predictions: Any,
    *,
    pos_weight: Any = None,
    sample_weights: Any = None,
    options: BinaryOptions | None = None,
    given: Collection[str] = (),
) -> ScoreResult:
    """Binary / multi-label scores by ``preset``'s rules; ``given`` names the options the request set explicitly.

    Examples
    --------
    Keras clips hard 0/1 predictions to float32's [1e-7, 1 − 1e-7] (its own test: 3.98559):

    >>> result = score_binary_preset("keras", [[1, 0], [1, 0]], [[1.0, 1.0], [1.0, 0.0]])
    >>> f"{result.mean.cross_entropy:.6f}"
    '3.985596'

    PyTorch clamps each log at −100, so a zero probability of a positive label costs 100:

    >>> score_binary_preset("pytorch", [1, 0], [0.0, 0.0]).per_sample.cross_entropy.tolist()
    [100.0, 0.0]
    """
    preset = Preset(preset)
    options = options or BinaryOptions()
    dtype = input_dtype(predictions)
    preds = float_matrix(predictions, "predictions", allow_vector=True)
    target = float_matrix(labels, "labels", allow_vector=True)
    if target.shape != preds.shape:
        raise BadShape("labels", f"has shape {_shape(target)} but predictions have shape {_shape(preds)}")
    _require_unit_interval(target, "labels", "label {value} is outside [0, 1]")
    vector = preds.ndim == 1
    if vector:
        preds, target = preds[:, None], target[:, None]
    n, n_labels = preds.shape
    if n and n_labels == 0:
        raise BadShape("predictions", "rows are empty; each row needs at least one label's prediction", row=0)
    resolution = resolve(preset, dtype, options.prediction_type)
    _check_given(preset, options, given, resolution)
    weights_by_label = _pos_weight(pos_weight, n_labels if n else None)
    weights_by_sample = (
        None if sample_weights is None else nonnegative_weights(sample_weights, "sample_weights", n, "row")
    )
    settings = {
        "compat": preset.value,
        "prediction_type": options.prediction_type.value,
        "unit": options.unit.value,
        "epsilon": resolution.epsilon,
        "epsilon_applies": resolution.epsilon_applies,
        "label_smoothing": options.label_smoothing,
        "pos_weight": None if weights_by_label is None else weights_by_label.tolist(),
        "sample_weights": sample_weights is not None,
        "labels_per_sample": n_labels if n else None,
    }
    inputs = BinaryInputs(preds, dtype, target, weights_by_label, weights_by_sample, options, vector)
    if n == 0:
        return with_binary_gradient(_empty(preset, options, settings), preset, inputs)
    return with_binary_gradient(_finish(_BINARY[preset](inputs), options.unit, settings), preset, inputs)


def _empty(preset: Preset, options: MulticlassOptions | BinaryOptions, settings: dict[str, Any]) -> ScoreResult:
    """The answer to a batch of no rows; scikit-learn raises on it."""
    if preset is Preset.SKLEARN:
        raise InvalidInput(
            "predictions", "has 0 rows; log_loss raises: Found array with 0 sample(s) while a minimum of 1 is required"
        )
    return empty(options.unit, settings)


def _finish(rows: PresetRows, unit: Unit, settings: dict[str, Any]) -> ScoreResult:
    """The result: ``finish``'s shape and per-sample values, with the library's means and sums."""
    values = ("cross_entropy", "kl_divergence", "entropy", "correct", "scored", "weights", "warnings")
    result = finish(**{name: getattr(rows, name) for name in values}, unit=unit, settings=settings)
    if result.n_scored == 0:
        return result
    keep = rows.weights > 0  # a row of weight 0 adds nothing, even where its value is infinite

    def weighted(values: np.ndarray) -> float:
        return float(np.dot(rows.weights[keep], values[keep]))

    with np.errstate(over="ignore", invalid="ignore"):
        ce_sum = weighted(rows.cross_entropy) if rows.ce_numerator is None else float(rows.ce_numerator.sum())
        sums = [ce_sum, weighted(rows.kl_divergence), weighted(rows.entropy)]
    base = unit.log_base
    totals = Quantities(*(total / base for total in sums))
    if rows.denominator == 0:
        return replace(result, sum=totals)
    mean_nats = [total / rows.denominator for total in sums]
    perplexity = math.exp(mean_nats[0]) if mean_nats[0] < MAX_EXP_NATS else math.inf
    ce, kl, h = (mean / base for mean in mean_nats)
    means = Means(ce, kl, h, perplexity=perplexity, accuracy=result.mean.accuracy)
    return replace(result, mean=means, sum=totals, unmergeable=_unmergeable(rows, keep))


def _unmergeable(rows: PresetRows, keep: np.ndarray) -> str | None:
    """Why the preset's means are not Σwᵢℓᵢ / Σwᵢ over the rows' weights (a state keeps only those), or None."""
    weight = float(rows.weights[keep].sum())
    if not math.isclose(rows.denominator, weight, rel_tol=1e-12):
        return (
            f"this preset divides by {rows.denominator!r}, not by the rows' weight {weight!r} (its own reduction: "
            "sample weights or ignored rows under keras, sample weights under pytorch's binary loss)"
        )
    if rows.ce_numerator is not None:
        ours = rows.weights[keep] * rows.cross_entropy[keep]
        with np.errstate(invalid="ignore", over="ignore"):
            if not np.allclose(rows.ce_numerator[keep], ours, rtol=1e-12, atol=0.0):
                return "this preset weighs the cross-entropy by class (pytorch's class weights with label smoothing "
                "or target rows), not by the rows' weights"
    return None
