"""Under ``compat``, the gradient is that of the preset's own loss (issue 17: "the preset's loss is the one
differentiated"), checked against torch.autograd in float64.

PyTorch's preset against the library's own functions (``cross_entropy``, ``nll_loss``, ``kl_div``,
``binary_cross_entropy`` with its backward's 1e-12 floor, ``binary_cross_entropy_with_logits``); scikit-learn,
Keras and SciPy against their formulas written in torch (the clip of each, Keras' and SciPy's renormalisation).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from service.core import BinaryOptions, MulticlassOptions
from service.core.compat import score_binary_preset, score_multiclass_preset
from service.core.contract import LOG_BASES

torch = pytest.importorskip("torch")
functional = torch.nn.functional

TOLERANCE = {"rtol": 1e-12, "atol": 1e-12}
KERAS_LOW = float(np.float32(1e-7))
KERAS_HIGH = float(np.float32(1.0) - np.float32(1e-7))


def _tensor(values: Any) -> Any:
    return torch.tensor(np.asarray(values, dtype=np.float64), dtype=torch.float64)


def _autograd(predictions: Any, loss: Any) -> tuple[np.ndarray, np.ndarray]:
    x = torch.tensor(np.asarray(predictions, dtype=np.float64), dtype=torch.float64, requires_grad=True)
    values = loss(x)
    (gradient,) = torch.autograd.grad(values.sum(), x)
    return values.detach().numpy(), gradient.numpy()


def _check(result: Any, predictions: Any, loss: Any, *, values_rtol: float | None = 1e-12) -> np.ndarray:
    """The preset's gradient is torch's of ``loss``; its per-sample values too (to ``values_rtol``; None: not
    compared, for presets that compute in float32)."""
    values, reference = _autograd(predictions, loss)
    if values_rtol is not None:
        scored = result.scored
        np.testing.assert_allclose(
            result.per_sample.cross_entropy[scored], values[scored], rtol=values_rtol, atol=1e-12
        )
    assert result.gradient is not None
    assert result.gradient.shape == np.shape(predictions)
    np.testing.assert_allclose(result.gradient, reference, **TOLERANCE)
    return np.asarray(result.gradient)


def _multiclass(preset: str, labels: Any, predictions: Any, **options: Any) -> Any:
    weights = {k: options.pop(k) for k in ("class_weights", "sample_weights") if k in options}
    return score_multiclass_preset(
        preset, labels, predictions, options=MulticlassOptions(gradient=True, **options), **weights
    )


def _binary(preset: str, labels: Any, predictions: Any, **options: Any) -> Any:
    pos_weight = options.pop("pos_weight", None)
    return score_binary_preset(
        preset, labels, predictions, pos_weight=pos_weight, options=BinaryOptions(gradient=True, **options)
    )


LOGITS = [[2.0, -1.0, 0.5], [-3.0, 4.0, 0.0], [0.1, 0.2, 0.3], [1.0, 1.0, -2.0]]
PROBABILITIES = [[0.228, 0.619, 0.153], [0.7, 0.2, 0.1], [0.0, 0.05, 0.95], [0.3, 0.3, 0.4]]
ROWS_OFF_ONE = [[0.3, 0.5, 0.4], [0.5, 0.2, 0.1], [0.05, 0.05, 0.6], [0.3, 0.3, 0.4]]


# --- pytorch: the library's own functions --------------------------------------------------------


@pytest.mark.parametrize("unit", ["nats", "bits"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_pytorch_logits_with_class_weights_and_ignored_rows_are_cross_entropys(smoothing: float, unit: str) -> None:
    labels = [1, -100, 2, 0]  # −100: torch's default ignore_index, which the preset takes
    weights = [1.0, 2.0, 0.5]
    result = _multiclass(
        "pytorch", labels, LOGITS, prediction_type="logits", label_smoothing=smoothing, unit=unit, class_weights=weights
    )
    base = LOG_BASES[unit]
    index = torch.tensor(labels)
    # Per-sample values are unweighted (reduction "none" without weight); the weights change only the mean.
    gradient = _check(
        result,
        LOGITS,
        lambda x: functional.cross_entropy(x, index, reduction="none", label_smoothing=smoothing) / base,
    )
    assert gradient[1].tolist() == [0.0, 0.0, 0.0]


def test_pytorch_logits_against_target_rows_off_one_are_cross_entropys() -> None:
    targets = [[0.5, 0.7, 0.0], [1.0, 0.0, 0.0], [0.2, 0.2, 0.2], [0.0, 0.0, 1.0]]  # torch takes rows off 1
    result = _multiclass("pytorch", targets, LOGITS, prediction_type="logits")
    _check(result, LOGITS, lambda x: functional.cross_entropy(x, _tensor(targets), reduction="none"))


def test_pytorch_log_probabilities_are_nll_loss_read_as_given() -> None:
    log_q = [[-1.0, -0.5, 0.3], [-2.0, -0.1, -3.0]]  # a positive "log-probability": nll_loss reads it as given
    result = _multiclass("pytorch", [2, 0], log_q, prediction_type="log_probabilities")
    gradient = _check(result, log_q, lambda x: functional.nll_loss(x, torch.tensor([2, 0]), reduction="none"))
    assert gradient.tolist() == [[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]]


def test_pytorch_log_probabilities_against_target_rows_are_kl_divs() -> None:
    log_q = np.log(PROBABILITIES[:2]).tolist()
    targets = [[0.2, 0.5, 0.3], [0.0, 1.0, 0.0]]
    result = _multiclass("pytorch", targets, log_q, prediction_type="log_probabilities")
    _, reference = _autograd(log_q, lambda x: functional.kl_div(x, _tensor(targets), reduction="none").sum(dim=1))
    assert result.gradient is not None
    np.testing.assert_allclose(result.gradient, reference, **TOLERANCE)  # KL and CE differ by H(y), not in x


def test_pytorch_binary_probabilities_are_binary_cross_entropys_backward_even_at_its_clamp() -> None:
    # q = 0 and q = 1 sit where the −100 clamp is active: torch's backward is (q − y)/max(q(1 − q), 1e-12).
    labels = [[1.0, 0.0, 1.0], [0.0, 1.0, 0.3]]
    predictions = [[0.0, 1.0, 1e-13], [0.2, 0.9, 0.5]]
    result = _binary("pytorch", labels, predictions)
    _check(
        result,
        predictions,
        lambda x: functional.binary_cross_entropy(x, _tensor(labels), reduction="none").mean(dim=1),
    )


@pytest.mark.parametrize("pos_weight", [None, [3.0, 0.5]])
def test_pytorch_binary_logits_are_binary_cross_entropy_with_logits(pos_weight: Any) -> None:
    labels, logits = [[1.0, 0.0], [0.0, 1.0], [0.5, 1.0]], [[2.0, -1.0], [40.0, -40.0], [0.0, 3.0]]
    result = _binary("pytorch", labels, logits, prediction_type="logits", pos_weight=pos_weight)
    weight = None if pos_weight is None else _tensor(pos_weight)
    _check(
        result,
        logits,
        lambda x: functional.binary_cross_entropy_with_logits(
            x, _tensor(labels), pos_weight=weight, reduction="none"
        ).mean(dim=1),
    )


# --- scikit-learn, Keras, SciPy: their formulas in torch -------------------------------------------


def _clipped_cross_entropy(target: Any, low: float, high: float, renormalize: bool) -> Any:
    """−Σ_c y_c·log clamp(p_c (/ Σp), low, high), terms of zero target left out."""
    y = _tensor(target)

    def loss(x: Any) -> Any:
        q = x / x.sum(dim=1, keepdim=True) if renormalize else x
        q = q.clamp(low, high)
        return -(y * torch.log(torch.where(y > 0, q, torch.ones_like(q)))).sum(dim=1)

    return loss


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sklearn_gradient_is_minus_y_over_p_inside_its_dtypes_clip(dtype: Any) -> None:
    predictions = np.array([[0.0, 0.5, 0.5], [1e-9, 0.999999999, 0.0], [0.2, 0.3, 0.5]], dtype=dtype)
    result = _multiclass("sklearn", [0, 1, 2], predictions)
    eps = float(np.finfo(dtype).eps)
    high = float(dtype(1) - dtype(eps))
    one_hot = np.eye(3)[[0, 1, 2]]
    # float32 input is scored in float32 (its values are then compared to a few units in the last place).
    values_rtol = 1e-12 if dtype == np.float64 else 1e-6
    gradient = _check(
        result,
        predictions.astype(np.float64),
        _clipped_cross_entropy(one_hot, eps, high, False),
        values_rtol=values_rtol,
    )
    assert gradient[0].tolist() == [0.0, 0.0, 0.0]  # p = 0 < eps: the clip is active


def test_sklearn_binary_gradient_is_of_the_two_column_loss() -> None:
    labels, predictions = [1, 0, 1, 0], [0.8, 0.3, 0.0, 1.0]
    result = _binary("sklearn", labels, predictions)
    eps = float(np.finfo(np.float64).eps)
    y = _tensor(labels)

    def loss(x: Any) -> Any:
        return -(y * torch.log(x.clamp(eps, 1 - eps)) + (1 - y) * torch.log((1 - x).clamp(eps, 1 - eps)))

    gradient = _check(result, predictions, loss)
    assert gradient[2:].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_keras_probabilities_are_renormalised_and_clipped_at_float32s_bounds(smoothing: float) -> None:
    targets = [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.0]]
    predictions = [*ROWS_OFF_ONE[:3], [1e-9, 0.5, 0.5]]
    result = _multiclass("keras", targets, predictions, label_smoothing=smoothing)
    smoothed = (1 - smoothing) * np.asarray(targets) + smoothing / 3
    # Keras computes in float32: its values match to float32's precision, the gradient is the formula's.
    _check(result, predictions, _clipped_cross_entropy(smoothed, KERAS_LOW, KERAS_HIGH, True), values_rtol=1e-6)


def test_keras_logits_are_cross_entropys() -> None:
    targets = [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.0]]
    result = _multiclass("keras", targets, LOGITS, prediction_type="logits", label_smoothing=0.1)
    _check(
        result,
        LOGITS,
        lambda x: functional.cross_entropy(x, _tensor(targets), reduction="none", label_smoothing=0.1),
        values_rtol=1e-6,
    )


@pytest.mark.parametrize("kind", ["probabilities", "logits"])
def test_keras_binary_gradient_is_of_binary_crossentropy(kind: str) -> None:
    labels = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
    predictions = (
        [[0.9, 0.0], [1.0, 0.2], [0.5, 1e-9]] if kind == "probabilities" else [[2.0, -1.0], [0.5, 3.0], [0.0, -9.0]]
    )
    result = _binary("keras", labels, predictions, prediction_type=kind, label_smoothing=0.2)
    y = _tensor(labels) * 0.8 + 0.1

    def loss(x: Any) -> Any:
        if kind == "logits":
            return functional.binary_cross_entropy_with_logits(x, y, reduction="none").mean(dim=1)
        q = x.clamp(KERAS_LOW, KERAS_HIGH)
        return -(y * torch.log(q) + (1 - y) * torch.log(1 - q)).mean(dim=1)

    _check(result, predictions, loss, values_rtol=1e-6)


def test_scipy_gradient_is_through_both_renormalisations_without_a_clip() -> None:
    targets = [[0.2, 0.6, 0.4], [1.0, 0.0, 0.0], [0.0, 3.0, 1.0], [1.0, 1.0, 1.0]]  # SciPy divides targets too
    result = _multiclass("scipy", targets, ROWS_OFF_ONE)
    p = np.asarray(targets) / np.sum(targets, axis=1, keepdims=True)
    _check(result, ROWS_OFF_ONE, _clipped_cross_entropy(p, 0.0, 1.0, True))


def test_scipy_binary_gradient_is_of_the_bernoulli_pair() -> None:
    labels, predictions = [[1.0, 0.0], [0.3, 1.0]], [[0.6, 0.1], [0.5, 0.99]]
    result = _binary("scipy", labels, predictions)
    y = _tensor(labels)
    _check(result, predictions, lambda x: -(y * torch.log(x) + (1 - y) * torch.log(1 - x)).mean(dim=1))


def test_compat_xent_and_presets_leave_the_gradient_out_unless_asked() -> None:
    result = score_multiclass_preset("pytorch", [1], [[0.0, 1.0]], options=MulticlassOptions(prediction_type="logits"))
    assert result.gradient is None
