"""``compat: "pytorch"`` against torch.nn.functional itself (2.13, float64): ported cases and hypothesis inputs.

The cases are those of PyTorch's own tests and of the reference notes (../shared/reference): weighted
means with class weights (Σ w_{yᵢ}), label smoothing with weights, ignore_index (−100 by default),
probability targets (÷ N), nll_loss reading log-probabilities as given, kl_div "batchmean", BCE's −100
log clamp and BCE-with-logits' pos_weight. Every mean to 1e-12 relative, every per-sample value too.
"""

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from service.core import BinaryOptions, InvalidInput, InvalidOption, MulticlassOptions, OutOfRange
from service.core.compat import score_binary_preset, score_multiclass_preset

torch = pytest.importorskip("torch", reason="torch is a test dependency (torch==2.13.0, CPU)")
F = torch.nn.functional

RTOL = 1e-12


def _t(values: Any, dtype: Any = None) -> Any:
    return torch.tensor(np.asarray(values), dtype=dtype or torch.float64)


def _close(ours: Any, theirs: Any, rtol: float = RTOL) -> None:
    np.testing.assert_allclose(np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float), rtol=rtol, atol=1e-300)


def _multiclass(labels: Any, preds: Any, kind: str = "logits", **options: Any) -> Any:
    weights = options.pop("class_weights", None)
    return score_multiclass_preset(
        "pytorch", labels, preds, class_weights=weights, options=MulticlassOptions(prediction_type=kind, **options)
    )


LOGITS = [[2.0, 1.0, 0.1], [0.5, -1.0, 3.0], [-2.0, 0.0, 2.0], [1.0, 1.0, 1.0]]
INDICES = [0, 2, 1, 2]
WEIGHTS = [1.0, 2.0, 3.0]


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("weights", [None, WEIGHTS])
def test_cross_entropy_with_class_indices_equals_torch(smoothing: float, weights: list[float] | None) -> None:
    result = _multiclass(INDICES, LOGITS, class_weights=weights, label_smoothing=smoothing)
    x, y = _t(LOGITS), torch.tensor(INDICES)
    w = None if weights is None else _t(weights)
    _close(result.mean.cross_entropy, F.cross_entropy(x, y, weight=w, label_smoothing=smoothing).item())
    _close(result.sum.cross_entropy, F.cross_entropy(x, y, weight=w, label_smoothing=smoothing, reduction="sum"))
    # Per-sample values stay unweighted: torch's reduction="none" without the class weights.
    _close(result.per_sample.cross_entropy, F.cross_entropy(x, y, label_smoothing=smoothing, reduction="none"))


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weights", [None, WEIGHTS])
def test_cross_entropy_with_probability_targets_divides_by_n(smoothing: float, weights: list[float] | None) -> None:
    soft = [[0.2, 0.5, 0.3], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.1, 0.1, 0.8]]  # torch checks no target row
    result = _multiclass(soft, LOGITS, class_weights=weights, label_smoothing=smoothing)
    x, y = _t(LOGITS), _t(soft)
    w = None if weights is None else _t(weights)
    _close(result.mean.cross_entropy, F.cross_entropy(x, y, weight=w, label_smoothing=smoothing).item())
    _close(result.per_sample.cross_entropy, F.cross_entropy(x, y, label_smoothing=smoothing, reduction="none"))
    assert result.settings["label_type"] == "distributions"
    assert result.settings["ignore_index"] is None


def test_reference_rows_10_and_11() -> None:
    """Label smoothing 0.1 on logits [2, 1, 0.1], class 0: 0.513697 (reference row 10). Class weights [1, 2, 3] on
    y = [0, 2] (row 11): index targets divide by Σ w_y = 4, the same rows as one-hot targets by N = 2, so the
    one-hot mean is twice the index mean, with label smoothing too (0.754492 vs 1.508985 in the notes)."""
    assert _multiclass([0], [[2.0, 1.0, 0.1]], label_smoothing=0.1).mean.cross_entropy == pytest.approx(
        0.513697, abs=1e-6
    )
    one_hot = [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    for smoothing in (0.0, 0.1):
        index = _multiclass([0, 2], LOGITS[:2], class_weights=WEIGHTS, label_smoothing=smoothing).mean.cross_entropy
        rows = _multiclass(one_hot, LOGITS[:2], class_weights=WEIGHTS, label_smoothing=smoothing).mean.cross_entropy
        assert rows == pytest.approx(2 * index, rel=1e-12)


def test_ignore_index_defaults_to_minus_100_as_in_torch() -> None:
    result = _multiclass([0, -100], [[2.0, 1.0, 0.1], [0.0, 0.0, 0.0]])
    assert result.settings["ignore_index"] == -100
    assert result.n_scored == 1
    assert result.mean.cross_entropy == pytest.approx(0.417030, abs=1e-6)  # reference row 12
    _close(result.mean.cross_entropy, F.cross_entropy(_t([[2.0, 1.0, 0.1], [0.0, 0.0, 0.0]]), torch.tensor([0, -100])))


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_ignore_index_with_weights_and_smoothing_equals_torch(smoothing: float) -> None:
    labels = [0, 1, 2, 1]
    result = _multiclass(labels, LOGITS, class_weights=WEIGHTS, label_smoothing=smoothing, ignore_index=1)
    expected = F.cross_entropy(
        _t(LOGITS), torch.tensor(labels), weight=_t(WEIGHTS), ignore_index=1, label_smoothing=smoothing
    )
    _close(result.mean.cross_entropy, expected.item())
    assert result.per_sample.cross_entropy[1] != result.per_sample.cross_entropy[1]  # NaN: ignored, null on the wire


def test_nll_loss_reads_log_probabilities_as_given_even_positive() -> None:
    """PyTorch accepts positive "log-probabilities" (xent refuses them): nll_loss reads only the target column."""
    inputs = [[-0.5, 0.3, -2.0], [0.1, -1.0, -0.2]]
    result = _multiclass([1, 0], inputs, kind="log_probabilities", class_weights=WEIGHTS)
    expected = F.nll_loss(_t(inputs), torch.tensor([1, 0]), weight=_t(WEIGHTS))
    _close(result.mean.cross_entropy, expected.item())
    _close(result.per_sample.cross_entropy, F.nll_loss(_t(inputs), torch.tensor([1, 0]), reduction="none"))


def test_kl_div_batchmean_is_the_mean_kl_divergence() -> None:
    """Reference row 14: p = [.36, .48, .16] against uniform, two rows: batchmean 0.085300."""
    p = [[0.36, 0.48, 0.16], [0.36, 0.48, 0.16]]
    log_q = np.log(np.full((2, 3), 1 / 3)).tolist()
    result = _multiclass(p, log_q, kind="log_probabilities")
    expected = F.kl_div(_t(log_q), _t(p), reduction="batchmean")
    _close(result.mean.kl_divergence, expected.item())
    _close(result.per_sample.kl_divergence, F.kl_div(_t(log_q), _t(p), reduction="none").sum(dim=1))
    assert result.mean.kl_divergence == pytest.approx(0.085300, abs=1e-6)


def test_extreme_logits_give_2000() -> None:
    assert _multiclass([2], [[1000.0, 0.0, -1000.0]]).mean.cross_entropy == 2000.0


@pytest.mark.parametrize("pos_weight", [None, 3.0])
def test_binary_cross_entropy_with_logits_and_pos_weight(pos_weight: float | None) -> None:
    """Reference row 9: y = [0, 1, 1], p = [.1, .8, .6] as logits; pos_weight 3: [0.105361 0.669431 1.532477]."""
    y = [0.0, 1.0, 1.0]
    logits = np.log(np.array([0.1, 0.8, 0.6]) / (1 - np.array([0.1, 0.8, 0.6]))).tolist()
    result = score_binary_preset(
        "pytorch", y, logits, pos_weight=pos_weight, options=BinaryOptions(prediction_type="logits")
    )
    pw = None if pos_weight is None else _t([pos_weight])
    expected = F.binary_cross_entropy_with_logits(_t(logits), _t(y), pos_weight=pw, reduction="none")
    _close(result.per_sample.cross_entropy, expected)
    if pos_weight:
        np.testing.assert_allclose(result.per_sample.cross_entropy, [0.105361, 0.669431, 1.532477], atol=1e-6)


def test_binary_cross_entropy_clamps_the_log_at_minus_100() -> None:
    """p = 0 on a positive label costs exactly 100; p = 1e-50 too (the exact value is 115.13)."""
    result = score_binary_preset("pytorch", [1.0, 1.0, 0.0], [0.0, 1e-50, 0.3])
    expected = F.binary_cross_entropy(_t([0.0, 1e-50, 0.3]), _t([1.0, 1.0, 0.0]), reduction="none")
    _close(result.per_sample.cross_entropy, expected)
    assert result.per_sample.cross_entropy[:2].tolist() == [100.0, 100.0]
    assert result.settings["epsilon"] == 0.0
    assert result.settings["epsilon_applies"] is False


def test_binary_multi_label_mean_is_the_element_mean_with_weights() -> None:
    y = [[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]
    q = [[0.9, 0.2, 0.6], [0.3, 0.1, 0.99]]
    weights = [2.0, 0.5]
    result = score_binary_preset("pytorch", y, q, sample_weights=weights)
    expected = F.binary_cross_entropy(_t(q), _t(y), weight=_t(weights)[:, None])
    _close(result.mean.cross_entropy, expected.item())
    _close(result.per_sample.cross_entropy, F.binary_cross_entropy(_t(q), _t(y), reduction="none").mean(dim=1))


@pytest.mark.parametrize(
    ("call", "option"),
    [
        (lambda: _multiclass([0], [[0.5, 0.5]], kind="probabilities"), "prediction_type"),
        (
            lambda: score_multiclass_preset(
                "pytorch", [0], [[0.5, 0.5]], sample_weights=[1.0], options=MulticlassOptions(prediction_type="logits")
            ),
            "sample_weights",
        ),
        (lambda: _multiclass([0], [[-0.7, -0.7]], kind="log_probabilities", label_smoothing=0.1), "label_smoothing"),
        (lambda: _multiclass([[1.0, 0.0]], [[0.5, 0.5]], ignore_index=0), "ignore_index"),
        (
            lambda: score_binary_preset("pytorch", [1], [0.5], options=BinaryOptions(label_smoothing=0.1)),
            "label_smoothing",
        ),
        (lambda: score_binary_preset("pytorch", [1], [0.5], pos_weight=2.0), "pos_weight"),
        (
            lambda: score_multiclass_preset(
                "pytorch", [0], [[0.5, 0.5]], options=MulticlassOptions(epsilon=1e-7), given={"epsilon"}
            ),
            "epsilon",
        ),
    ],
)
def test_options_pytorch_cannot_honour_are_refused_naming_both(call: Any, option: str) -> None:
    with pytest.raises(InvalidOption, match=f'^{option}: cannot be honoured with compat "pytorch"'):
        call()


def test_binary_probability_outside_the_unit_interval_is_torchs_runtime_error() -> None:
    with pytest.raises(OutOfRange, match="all elements of input should be between 0 and 1"):
        score_binary_preset("pytorch", [1.0], [1.5])


def test_class_index_out_of_range_is_refused_as_torch_does() -> None:
    with pytest.raises(InvalidInput, match="out of range"):
        _multiclass([3], [[0.0, 0.0, 0.0]])


# --- hypothesis: any batch torch accepts, against torch ----------------------------------------------------------

_FINITE = st.floats(-30, 30, allow_nan=False, allow_infinity=False)


@st.composite
def _batches(draw: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, float]:
    n = draw(st.integers(1, 8))
    c = draw(st.integers(2, 5))
    logits = draw(hnp.arrays(np.float64, (n, c), elements=_FINITE))
    labels = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, c - 1)))
    weights = draw(st.none() | hnp.arrays(np.float64, (c,), elements=st.floats(0.1, 5)))
    smoothing = draw(st.sampled_from([0.0, 0.05, 0.3]))
    return logits, labels, weights, smoothing


@settings(max_examples=60, deadline=None)
@given(_batches())
def test_any_index_batch_equals_torch_cross_entropy(batch: tuple[np.ndarray, np.ndarray, Any, float]) -> None:
    logits, labels, weights, smoothing = batch
    result = _multiclass(labels, logits, class_weights=weights, label_smoothing=smoothing)
    w = None if weights is None else torch.from_numpy(weights)
    x, y = torch.from_numpy(logits), torch.from_numpy(labels)
    _close(result.mean.cross_entropy, F.cross_entropy(x, y, weight=w, label_smoothing=smoothing).item(), 1e-11)
    _close(result.per_sample.cross_entropy, F.cross_entropy(x, y, label_smoothing=smoothing, reduction="none"), 1e-11)


@settings(max_examples=60, deadline=None)
@given(_batches(), st.booleans())
def test_any_binary_batch_equals_torch(batch: tuple[np.ndarray, np.ndarray, Any, float], logits: bool) -> None:
    x = batch[0]
    y = (batch[1][:, None] % 2 == 0).astype(np.float64) * np.ones_like(x)
    if logits:
        result = score_binary_preset("pytorch", y, x, options=BinaryOptions(prediction_type="logits"))
        expected = F.binary_cross_entropy_with_logits(torch.from_numpy(x), torch.from_numpy(y))
    else:
        q = 1.0 / (1.0 + np.exp(-x))
        result = score_binary_preset("pytorch", y, q)
        expected = F.binary_cross_entropy(torch.from_numpy(q), torch.from_numpy(y))
    _close(result.mean.cross_entropy, expected.item(), 1e-11)


@settings(max_examples=60, deadline=None)
@given(_batches(), st.data())
def test_any_target_rows_equal_torch_cross_entropy_and_kl_div(batch: tuple[Any, Any, Any, float], data: Any) -> None:
    """Target rows (torch checks none: rows off 1 too) against cross_entropy (÷ N, class weights inside ℓᵢ) and,
    as log-probabilities, against kl_div's "batchmean"."""
    logits, _, weights, smoothing = batch
    target = data.draw(hnp.arrays(np.float64, logits.shape, elements=st.floats(0, 2)))
    result = _multiclass(target, logits, class_weights=weights, label_smoothing=smoothing)
    x, y = torch.from_numpy(logits), torch.from_numpy(target)
    w = None if weights is None else torch.from_numpy(weights)
    _close(result.mean.cross_entropy, F.cross_entropy(x, y, weight=w, label_smoothing=smoothing).item(), 1e-11)
    log_q = F.log_softmax(x, dim=1)
    divergence = _multiclass(target, log_q.numpy(), kind="log_probabilities")
    expected = F.kl_div(log_q, y, reduction="batchmean").item()
    assert divergence.mean.kl_divergence == pytest.approx(expected, rel=1e-11, abs=1e-12)
