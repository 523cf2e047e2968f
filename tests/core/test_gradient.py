"""The gradient (``gradient: true``, issue 17 section 2) equals ``torch.autograd`` of the same per-sample loss.

Each reference is PyTorch in float64: the library's own loss where it computes xent's rule (``cross_entropy`` for
logits, hard or soft targets, with ε/C label smoothing; ``nll_loss`` for log-probabilities;
``binary_cross_entropy_with_logits`` with ``pos_weight``; ``binary_cross_entropy`` where its −100 log clamp does
not bite), otherwise the formula written in torch (probabilities under the ε clip, renormalised rows). Every test
also checks that the reference's loss is the per-sample value xent reports, so the gradient is of that value.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.core import BinaryOptions, MulticlassOptions, score_binary, score_multiclass
from service.core.contract import LOG_BASES

torch = pytest.importorskip("torch")
functional = torch.nn.functional

EPSILON = 2.220446049250313e-16
TOLERANCE = {"rtol": 1e-12, "atol": 1e-12}


def _close(ours: np.ndarray, reference: Any) -> None:
    np.testing.assert_allclose(ours, np.asarray(reference, dtype=np.float64), **TOLERANCE)


def _autograd(predictions: Any, loss: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample losses of ``loss(x)`` and ∂(Σᵢ ℓᵢ)/∂x, which is each row's own gradient (rows are independent)."""
    x = torch.tensor(np.asarray(predictions, dtype=np.float64), dtype=torch.float64, requires_grad=True)
    values = loss(x)
    (gradient,) = torch.autograd.grad(values.sum(), x)
    return values.detach().numpy(), gradient.numpy()


# --- multi-class ---------------------------------------------------------------------------------


def _dense(labels: Any, n_classes: int, smoothing: float) -> Any:
    """y′ = (1 − ε)·y + ε/C as a float64 tensor (one-hot y for class indices)."""
    array = np.asarray(labels)
    target = np.eye(n_classes)[array] if array.ndim == 1 else array.astype(np.float64)
    return torch.tensor((1.0 - smoothing) * target + smoothing / n_classes, dtype=torch.float64)


def _torch_multiclass(labels: Any, n_classes: int, options: MulticlassOptions) -> Any:
    """The per-sample loss xent reports, as torch computes it (the library's function where it has one)."""
    smoothing, kind = options.label_smoothing, options.prediction_type.value
    renormalize = options.normalization.value == "renormalize"
    hard = np.asarray(labels).ndim == 1
    kept = torch.ones(len(labels), dtype=torch.float64)
    if options.ignore_index is not None:
        kept = torch.tensor(np.asarray(labels) != options.ignore_index, dtype=torch.float64)
    target = _dense(np.where(kept.numpy() > 0, labels, 0) if hard else labels, n_classes, smoothing)
    base = LOG_BASES[options.unit.value]

    def loss(x: Any) -> Any:
        if kind == "logits" or (kind == "log_probabilities" and renormalize):
            if hard:
                index = torch.tensor(np.asarray(labels), dtype=torch.int64)
                ignore = -100 if options.ignore_index is None else options.ignore_index
                values = functional.cross_entropy(
                    x, index, reduction="none", label_smoothing=smoothing, ignore_index=ignore
                )
            else:
                values = functional.cross_entropy(
                    x, torch.tensor(labels, dtype=torch.float64), reduction="none", label_smoothing=smoothing
                )
        elif kind == "log_probabilities":
            if hard and not smoothing:
                values = functional.nll_loss(x, torch.tensor(np.asarray(labels), dtype=torch.int64), reduction="none")
            else:
                values = -(target * x).sum(dim=1)
        else:
            eps = options.resolved_epsilon
            q = x / x.sum(dim=1, keepdim=True) if renormalize else x
            q = q.clamp(eps, 1.0 - eps) if eps > 0 else q
            # 0·log 0 = 0: where y′ = 0 the term is left out (log 1 there keeps NaN out of the backward pass).
            values = -(target * torch.log(torch.where(target > 0, q, torch.ones_like(q)))).sum(dim=1)
        return values * kept / base  # an ignored row is no part of the loss

    return loss


def _check_multiclass(labels: Any, predictions: Any, options: MulticlassOptions, **weights: Any) -> np.ndarray:
    """Score with ``gradient`` on; assert the value and the gradient are torch's; return the gradient."""
    gradient_options = MulticlassOptions(**{**vars(options), "gradient": True})
    result = score_multiclass(labels, predictions, options=gradient_options, **weights)
    n_classes = np.asarray(predictions).shape[1]
    values, reference = _autograd(predictions, _torch_multiclass(labels, n_classes, options))
    scored = result.scored
    _close(result.per_sample.cross_entropy[scored], values[scored])
    assert result.gradient is not None
    assert result.gradient.shape == np.asarray(predictions).shape
    _close(result.gradient, reference)
    return result.gradient


LOGITS = [[2.0, -1.0, 0.5], [-3.0, 4.0, 0.0], [0.1, 0.2, 0.3], [30.0, -30.0, 1.0]]
PROBABILITIES = [[0.228, 0.619, 0.153], [0.7, 0.2, 0.1], [0.05, 0.05, 0.9], [0.3, 0.3, 0.4]]
INDICES = [1, 0, 2, 1]
SOFT = [[0.2, 0.5, 0.3], [1.0, 0.0, 0.0], [0.0, 0.4, 0.6], [1 / 3, 1 / 3, 1 / 3]]
KINDS = {
    "logits": LOGITS,
    "log_probabilities": np.log(PROBABILITIES).tolist(),
    "probabilities": PROBABILITIES,
}


@pytest.mark.parametrize("unit", ["nats", "bits", "hartleys"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("labels", [INDICES, SOFT], ids=["indices", "soft"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_multiclass_gradient_is_torch_autograd(kind: str, labels: Any, smoothing: float, unit: str) -> None:
    options = MulticlassOptions(prediction_type=kind, label_smoothing=smoothing, unit=unit)
    _check_multiclass(labels, KINDS[kind], options)


def test_reference_example_logits_gradient_is_softmax_minus_one_hot() -> None:
    gradient = _check_multiclass([1], np.log([[0.228, 0.619, 0.153]]), MulticlassOptions(prediction_type="logits"))
    np.testing.assert_allclose(gradient, [[0.228, 0.619 - 1.0, 0.153]], rtol=1e-15)


def test_probability_gradient_is_minus_target_over_q() -> None:
    gradient = _check_multiclass(SOFT, PROBABILITIES, MulticlassOptions())
    expected = -np.asarray(SOFT) / np.asarray(PROBABILITIES)
    np.testing.assert_allclose(gradient, expected, rtol=1e-15)


@pytest.mark.parametrize("labels", [INDICES, SOFT], ids=["indices", "soft"])
@pytest.mark.parametrize("kind", ["probabilities", "log_probabilities"])
def test_renormalized_rows_are_differentiated_through_the_division(kind: str, labels: Any) -> None:
    off = [[0.3, 0.5, 0.4], [0.5, 0.2, 0.1], [0.05, 0.05, 0.6], [0.3, 0.3, 0.4]]  # sums 1.2, 0.8, 0.7, 1
    predictions = off if kind == "probabilities" else np.log(off).tolist()
    gradient = _check_multiclass(
        labels, predictions, MulticlassOptions(prediction_type=kind, normalization="renormalize")
    )
    # The loss does not change when a row is scaled, so the gradient is orthogonal to the row: Σ_c p_c·∂ℓ/∂p_c = 0.
    if kind == "probabilities":
        np.testing.assert_allclose((gradient * np.asarray(off)).sum(axis=1), 0.0, atol=1e-15)


def test_rows_scored_as_given_are_differentiated_as_given() -> None:
    off = [[0.3, 0.5, 0.4], [0.5, 0.2, 0.1]]
    gradient = _check_multiclass([1, 0], off, MulticlassOptions(normalization="warn"))
    assert gradient.tolist() == [[0.0, -2.0, 0.0], [-2.0, 0.0, 0.0]]


@pytest.mark.parametrize("epsilon", [None, 1e-3, 0.0])
def test_gradient_is_zero_where_the_clip_is_active(epsilon: float | None) -> None:
    # Row 0: the true class has p = 0 (+inf with ε = 0); row 1: p = 1e-20 on the target, p ≈ 1 above 1 − ε;
    # row 2: a zero probability where the target is zero, which costs nothing and has gradient 0, not NaN.
    predictions = [[0.0, 0.5, 0.5], [1e-20, 1.0 - 1e-20, 0.0], [0.0, 0.4, 0.6]]
    soft = [[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.5, 0.5]]
    options = MulticlassOptions(epsilon=epsilon)
    if epsilon == 0.0:
        result = score_multiclass(soft, predictions, options=MulticlassOptions(epsilon=0.0, gradient=True))
        assert result.gradient is not None
        assert result.gradient[0].tolist() == [-math.inf, -1.0, 0.0]
        assert result.gradient[2].tolist() == [0.0, -1.25, -0.5 / 0.6]
        _check_multiclass(soft[1:], predictions[1:], options)
        return
    gradient = _check_multiclass(soft, predictions, options)
    assert gradient[0].tolist() == [0.0, -1.0, 0.0]
    assert gradient[1, 0] == 0.0  # 1e-20 < ε: clipped
    assert gradient[1, 1] == 0.0  # 1 − 1e-20 rounds to 1, above 1 − ε: clipped
    assert gradient[2].tolist() == [0.0, -1.25, -0.5 / 0.6]


def test_gradient_is_unweighted_like_the_per_sample_values() -> None:
    plain = _check_multiclass(INDICES, PROBABILITIES, MulticlassOptions())
    weighted = _check_multiclass(
        INDICES, PROBABILITIES, MulticlassOptions(), sample_weights=[1.0, 0.0, 3.0, 2.5], class_weights=[2.0, 1.0, 0.5]
    )
    assert weighted.tolist() == plain.tolist()


@pytest.mark.parametrize("kind", list(KINDS))
def test_ignored_rows_have_a_zero_gradient(kind: str) -> None:
    labels = [1, -100, 2, -100]
    options = MulticlassOptions(prediction_type=kind, ignore_index=-100)
    gradient = _check_multiclass(labels, KINDS[kind], options)
    assert gradient[[1, 3]].tolist() == [[0.0] * 3] * 2
    assert np.count_nonzero(gradient[[0, 2]]) > 0


def test_huge_logits_give_a_finite_gradient() -> None:
    gradient = _check_multiclass(
        [0, 1], [[1e300, -1e300], [-1000.0, 1000.0]], MulticlassOptions(prediction_type="logits")
    )
    assert gradient.tolist() == [[0.0, 0.0], [0.0, 0.0]]


@pytest.mark.parametrize(("rows", "classes"), [(1, 3), (20_000, 3), (300, 40)], ids=["one-row", "blocks", "wide"])
@pytest.mark.parametrize("kind", ["logits", "probabilities"])
def test_every_block_and_width_is_torch_autograd_and_leaves_the_predictions_as_they_were(
    kind: str, rows: int, classes: int
) -> None:
    rng = np.random.default_rng(rows + classes)
    logits = rng.normal(scale=3.0, size=(rows, classes))
    predictions = logits if kind == "logits" else np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    sent = predictions.copy()
    _check_multiclass(rng.integers(0, classes, rows), predictions, MulticlassOptions(prediction_type=kind))
    assert np.array_equal(predictions, sent)


def test_gradient_is_left_out_unless_asked_for_and_empty_for_an_empty_batch() -> None:
    assert score_multiclass([1], [[0.5, 0.5]]).gradient is None
    empty = score_multiclass([], [], classes=["a", "b"], options=MulticlassOptions(gradient=True))
    assert empty.gradient is not None
    assert empty.gradient.size == 0


_finite = st.floats(-20.0, 20.0, allow_nan=False, allow_subnormal=False)


@st.composite
def _multiclass_case(draw: Any) -> tuple[Any, np.ndarray, MulticlassOptions]:
    n = draw(st.integers(1, 6))
    n_classes = draw(st.integers(2, 5))
    logits = np.array(draw(st.lists(st.lists(_finite, min_size=n_classes, max_size=n_classes), min_size=n, max_size=n)))
    kind = draw(st.sampled_from(["logits", "log_probabilities", "probabilities"]))
    renormalize = draw(st.booleans())
    log_q = logits - np.log(np.exp(logits - logits.max(axis=1, keepdims=True)).sum(axis=1, keepdims=True))
    log_q -= logits.max(axis=1, keepdims=True)
    predictions = {"logits": logits, "log_probabilities": log_q, "probabilities": np.exp(log_q)}[kind]
    if draw(st.booleans()):
        labels: Any = draw(st.lists(st.integers(0, n_classes - 1), min_size=n, max_size=n))
    else:
        raw = np.array(
            draw(
                st.lists(st.lists(st.floats(0.0, 1.0), min_size=n_classes, max_size=n_classes), min_size=n, max_size=n)
            )
        )
        raw[:, 0] += 1e-3
        labels = (raw / raw.sum(axis=1, keepdims=True)).tolist()
    options = MulticlassOptions(
        prediction_type=kind,
        label_smoothing=draw(st.sampled_from([0.0, 0.05, 0.5])),
        unit=draw(st.sampled_from(["nats", "bits"])),
        normalization="renormalize" if renormalize else "warn",
        epsilon=draw(st.sampled_from([None, 1e-6])),
    )
    return labels, predictions, options


@settings(max_examples=60, deadline=None)
@given(_multiclass_case())
def test_multiclass_gradient_is_torch_autograd_on_generated_inputs(
    case: tuple[Any, np.ndarray, MulticlassOptions],
) -> None:
    labels, predictions, options = case
    _check_multiclass(labels, predictions, options)


# --- binary and multi-label ----------------------------------------------------------------------


def _torch_binary(labels: Any, pos_weight: Any, options: BinaryOptions, library: bool) -> Any:
    """The per-sample binary loss xent reports (the mean over K labels), as torch computes it."""
    y = torch.tensor(np.asarray(labels, dtype=np.float64))
    smoothing = options.label_smoothing
    y = y * (1.0 - smoothing) + smoothing / 2.0
    weight = None if pos_weight is None else torch.tensor(np.broadcast_to(pos_weight, y.shape[-1:]).astype(np.float64))
    base = LOG_BASES[options.unit.value]

    def loss(x: Any) -> Any:
        if options.prediction_type.value == "logits":
            values = functional.binary_cross_entropy_with_logits(x, y, pos_weight=weight, reduction="none")
        elif library:
            values = functional.binary_cross_entropy(x, y, reduction="none")
        else:
            eps = options.resolved_epsilon
            q = x.clamp(eps, 1.0 - eps) if eps > 0 else x
            w = torch.ones_like(y) if weight is None else weight.expand_as(y)
            one = torch.ones_like(q)
            positive = torch.log(torch.where(w * y > 0, q, one))
            negative = torch.log1p(-torch.where(y < 1, q, 0 * one))
            values = -(w * y * positive + (1.0 - y) * negative)
        values = values.mean(dim=-1) if values.ndim == 2 else values
        return values / base

    return loss


def _check_binary(
    labels: Any, predictions: Any, options: BinaryOptions, pos_weight: Any = None, library: bool = False, **extra: Any
) -> np.ndarray:
    gradient_options = BinaryOptions(**{**vars(options), "gradient": True})
    result = score_binary(labels, predictions, pos_weight=pos_weight, options=gradient_options, **extra)
    values, reference = _autograd(predictions, _torch_binary(labels, pos_weight, options, library))
    _close(result.per_sample.cross_entropy, values)
    assert result.gradient is not None
    assert result.gradient.shape == np.asarray(predictions).shape
    _close(result.gradient, reference)
    return result.gradient


BINARY_LABELS = [0.0, 1.0, 1.0, 0.0, 0.3]
BINARY_LOGITS = [-2.0, 0.5, 40.0, -40.0, 1.5]
BINARY_PROBABILITIES = [0.1, 0.8, 0.6, 0.35, 0.5]
MULTI_LABELS = [[0.0, 1.0, 1.0], [1.0, 0.0, 0.2], [0.0, 0.0, 1.0]]
MULTI_LOGITS = [[-1.0, 2.0, 0.3], [3.0, -0.5, -2.0], [0.0, 10.0, -10.0]]
MULTI_PROBABILITIES = [[0.2, 0.9, 0.6], [0.7, 0.4, 0.3], [0.5, 0.01, 0.99]]
BINARY_CASES = {
    ("logits", 1): (BINARY_LABELS, BINARY_LOGITS),
    ("logits", 3): (MULTI_LABELS, MULTI_LOGITS),
    ("probabilities", 1): (BINARY_LABELS, BINARY_PROBABILITIES),
    ("probabilities", 3): (MULTI_LABELS, MULTI_PROBABILITIES),
}


@pytest.mark.parametrize("unit", ["nats", "bits"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("pos_weight", [None, 2.5, [0.5, 0.0, 3.0]], ids=["no-pos-weight", "pos-weight", "per-label"])
@pytest.mark.parametrize(("kind", "width"), list(BINARY_CASES))
def test_binary_gradient_is_torch_autograd(kind: str, width: int, pos_weight: Any, smoothing: float, unit: str) -> None:
    if isinstance(pos_weight, list) and width == 1:
        pos_weight = pos_weight[:1]
    labels, predictions = BINARY_CASES[(kind, width)]
    _check_binary(
        labels, predictions, BinaryOptions(prediction_type=kind, label_smoothing=smoothing, unit=unit), pos_weight
    )


def test_binary_probability_gradient_is_torchs_binary_cross_entropy_where_its_clamp_does_not_bite() -> None:
    gradient = _check_binary(MULTI_LABELS, MULTI_PROBABILITIES, BinaryOptions(epsilon=0.0), library=True)
    q, y = np.asarray(MULTI_PROBABILITIES), np.asarray(MULTI_LABELS)
    np.testing.assert_allclose(gradient, (q - y) / (q * (1 - q)) / 3, rtol=1e-14)


def test_binary_logit_gradient_is_sigmoid_minus_label() -> None:
    gradient = _check_binary(BINARY_LABELS, BINARY_LOGITS, BinaryOptions(prediction_type="logits"))
    x = np.asarray(BINARY_LOGITS)
    np.testing.assert_allclose(gradient, 1 / (1 + np.exp(-x)) - np.asarray(BINARY_LABELS), rtol=1e-14, atol=1e-17)


@pytest.mark.parametrize("epsilon", [None, 1e-3])
def test_binary_gradient_is_zero_where_the_clip_is_active(epsilon: float | None) -> None:
    labels, predictions = [1.0, 0.0, 1.0, 0.5], [0.0, 1.0, 1e-4, 0.5]
    gradient = _check_binary(labels, predictions, BinaryOptions(epsilon=epsilon))
    assert gradient[:2].tolist() == [0.0, 0.0]
    assert gradient[2] == (0.0 if epsilon == 1e-3 else pytest.approx(-1e4))
    assert gradient[3] == 0.0  # (q − y)/(q(1 − q)) at q = y


def test_binary_gradient_at_zero_weight_terms_is_finite_with_epsilon_zero() -> None:
    # y = 0 at q = 0 costs −log 1 = 0 and its gradient is 1/(1 − q) = 1; pos_weight 0 leaves the positive term out.
    gradient = _check_binary([0.0, 1.0], [0.0, 0.5], BinaryOptions(epsilon=0.0), pos_weight=[0.0])
    assert gradient.tolist() == [1.0, 0.0]


def test_binary_gradient_is_unweighted_by_sample_weights() -> None:
    plain = _check_binary(BINARY_LABELS, BINARY_PROBABILITIES, BinaryOptions())
    weighted = _check_binary(BINARY_LABELS, BINARY_PROBABILITIES, BinaryOptions(), sample_weights=[0, 1, 2, 3, 4])
    assert weighted.tolist() == plain.tolist()


def test_binary_gradient_of_an_empty_batch_is_empty() -> None:
    result = score_binary([], [], options=BinaryOptions(gradient=True))
    assert result.gradient is not None
    assert result.gradient.size == 0


@st.composite
def _binary_case(draw: Any) -> tuple[Any, Any, BinaryOptions, Any]:
    n = draw(st.integers(1, 6))
    width = draw(st.sampled_from([None, 1, 3]))
    shape = (n,) if width is None else (n, width)
    size = int(np.prod(shape))
    kind = draw(st.sampled_from(["logits", "probabilities"]))
    element = _finite if kind == "logits" else st.floats(0.0, 1.0)
    predictions = np.array(draw(st.lists(element, min_size=size, max_size=size))).reshape(shape)
    labels = np.array(draw(st.lists(st.sampled_from([0.0, 1.0, 0.25]), min_size=size, max_size=size))).reshape(shape)
    pos_weight = draw(st.sampled_from([None, 0.5, 4.0]))
    options = BinaryOptions(
        prediction_type=kind,
        label_smoothing=draw(st.sampled_from([0.0, 0.1])),
        unit=draw(st.sampled_from(["nats", "bits"])),
        epsilon=draw(st.sampled_from([None, 1e-7])),
    )
    return labels, predictions, options, pos_weight


@settings(max_examples=60, deadline=None)
@given(_binary_case())
def test_binary_gradient_is_torch_autograd_on_generated_inputs(case: tuple[Any, Any, BinaryOptions, Any]) -> None:
    labels, predictions, options, pos_weight = case
    _check_binary(labels, predictions, options, pos_weight)
