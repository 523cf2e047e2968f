"""Binary and multi-label cross-entropy (``score_binary``): hand-computed rows, scipy and
sklearn cross-checks, and the CE = H + KL identity under hypothesis.

Row numbers refer to the edge-case table, loss-library-semantics.md §3.
"""

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats
from sklearn.metrics import log_loss

from service.core import BinaryOptions, PredictionType, Unit, score_binary

LOGITS = BinaryOptions(prediction_type=PredictionType.LOGITS)
#: Row 9: −ln 0.9, −ln 0.8, −ln 0.6.
ROW_9 = [0.1053605, 0.2231436, 0.5108256]


def _warnings(result) -> list[tuple[str, int, tuple[int, ...]]]:
    return [(w.code.value, w.count, w.rows) for w in result.warnings]


def _logit(p: np.ndarray | list[float]) -> list[float]:
    return special.logit(np.asarray(p)).tolist()


@pytest.mark.parametrize("prediction_type", [PredictionType.PROBABILITIES, PredictionType.LOGITS])
def test_binary_row_9_gives_torch_and_sklearn_per_sample_values(prediction_type):
    p = [0.1, 0.8, 0.6]
    predictions = p if prediction_type is PredictionType.PROBABILITIES else _logit(p)

    result = score_binary([0, 1, 1], predictions, options=BinaryOptions(prediction_type=prediction_type))

    assert result.per_sample.cross_entropy.tolist() == pytest.approx(ROW_9, abs=1e-6)
    assert result.per_sample.kl_divergence.tolist() == pytest.approx(ROW_9, abs=1e-6)
    assert result.per_sample.entropy.tolist() == [0.0, 0.0, 0.0]
    assert dataclasses.asdict(result.mean) == pytest.approx(
        {
            "cross_entropy": 0.279777,
            "kl_divergence": 0.279777,
            "entropy": 0.0,
            "perplexity": 1.322834,  # exp(0.2797766)
            "accuracy": 1.0,
        },
        abs=1e-6,
    )
    assert result.sum.cross_entropy == pytest.approx(0.839330, abs=1e-6)  # sklearn normalize=False
    assert (result.n, result.n_scored, result.warnings) == (3, 3, ())


@pytest.mark.parametrize("pos_weight", [3, 3.0, [3.0]], ids=["int", "float", "list"])
def test_pos_weight_multiplies_the_positive_term(pos_weight):
    result = score_binary([0, 1, 1], [0.1, 0.8, 0.6], pos_weight=pos_weight)

    # torch BCE pos_weight=3: [−ln 0.9, −3 ln 0.8, −3 ln 0.6].
    assert result.per_sample.cross_entropy.tolist() == pytest.approx([0.105361, 0.669431, 1.532477], abs=1e-6)
    assert result.mean.cross_entropy == pytest.approx(0.769090, abs=1e-6)
    # KL and entropy stay the Bernoulli ones: pos_weight only reweights the loss.
    assert result.per_sample.kl_divergence.tolist() == pytest.approx(ROW_9, abs=1e-6)
    assert result.settings["pos_weight"] == [3.0]


def test_sample_weights_match_sklearn_row_9():
    result = score_binary([0, 1, 1], [0.1, 0.8, 0.6], sample_weights=[1, 2, 3])

    assert result.mean.cross_entropy == pytest.approx(0.347354, abs=1e-6)  # sklearn sample_weight [1, 2, 3]


def test_logit_minus_1000_on_a_positive_label_costs_exactly_1000():
    result = score_binary([1, 0], [-1000.0, 1000.0], options=LOGITS)

    assert result.per_sample.cross_entropy.tolist() == [1000.0, 1000.0]
    assert result.mean.cross_entropy == 1000.0


@pytest.mark.parametrize("logit", [1e300, -1e300])
def test_extreme_logits_are_finite_and_exact(logit):
    result = score_binary([1, 0], [logit, logit], options=LOGITS)

    wrong = abs(logit)  # −log σ(−|x|) = |x| for huge x
    expected = [0.0, wrong] if logit > 0 else [wrong, 0.0]
    assert result.per_sample.cross_entropy.tolist() == expected
    assert not np.isnan(result.per_sample.kl_divergence).any()


def test_label_smoothing_0_2_turns_label_1_into_target_0_9():
    result = score_binary([1], [0.9], options=BinaryOptions(label_smoothing=0.2))

    # y' = 1·0.8 + 0.2/2 = 0.9 = q: CE = H(0.9) = −(0.9 ln 0.9 + 0.1 ln 0.1) = 0.325083 (Keras), KL = 0.
    assert dataclasses.asdict(result.sum) == pytest.approx(
        {"cross_entropy": 0.325083, "entropy": 0.325083, "kl_divergence": 0.0}, abs=1e-6
    )


def test_multi_label_row_scores_the_mean_over_its_labels():
    labels = [[0, 1], [1, 0]]
    predictions = [[0.1, 0.8], [0.6, 0.1]]

    result = score_binary(labels, predictions)

    # Row 0: (−ln 0.9 − ln 0.8)/2 = 0.164252; row 1: (−ln 0.6 − ln 0.9)/2 = 0.308093.
    assert result.per_sample.cross_entropy.tolist() == pytest.approx([0.164252, 0.308093], abs=1e-6)
    # The overall mean equals the mean over all four elements.
    assert result.mean.cross_entropy == pytest.approx(0.236173, abs=1e-6)
    assert result.mean.cross_entropy == pytest.approx(log_loss([0, 1, 1, 0], [0.1, 0.8, 0.6, 0.1]), rel=1e-12)
    assert result.mean.accuracy == 1.0
    assert result.settings["labels_per_sample"] == 2


def test_multi_label_pos_weight_applies_per_label():
    result = score_binary([[1, 1]], [[0.8, 0.6]], pos_weight=[1.0, 3.0])

    # (−ln 0.8 − 3 ln 0.6) / 2 = (0.223144 + 1.532477) / 2.
    assert result.per_sample.cross_entropy.tolist() == pytest.approx([0.877810], abs=1e-6)


@pytest.mark.parametrize("shape", [(7,), (9, 3)], ids=["binary", "multi_label"])
def test_soft_labels_match_scipy_bernoulli_entropy_and_kl(shape):
    rng = np.random.default_rng(11)
    y = rng.uniform(size=shape)
    q = rng.uniform(0.01, 0.99, size=shape)

    result = score_binary(y.tolist(), q.tolist())

    entropy = stats.entropy(np.stack([y, 1 - y]), axis=0)
    kl = stats.entropy(np.stack([y, 1 - y]), np.stack([q, 1 - q]), axis=0)
    if len(shape) == 2:
        entropy, kl = entropy.mean(axis=1), kl.mean(axis=1)
    np.testing.assert_allclose(result.per_sample.entropy, entropy, rtol=1e-9)
    np.testing.assert_allclose(result.per_sample.kl_divergence, kl, rtol=1e-9)
    np.testing.assert_allclose(result.per_sample.cross_entropy, entropy + kl, rtol=1e-9)


@pytest.mark.parametrize("weighted", [False, True])
def test_hard_labels_match_sklearn_log_loss(weighted):
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, size=40)
    q = rng.uniform(0.001, 0.999, size=40)
    weights = rng.uniform(0.1, 3.0, size=40) if weighted else None

    result = score_binary(y.tolist(), q.tolist(), sample_weights=None if weights is None else weights.tolist())

    assert result.mean.cross_entropy == pytest.approx(log_loss(y, q, labels=[0, 1], sample_weight=weights), rel=1e-9)
    assert result.sum.cross_entropy == pytest.approx(
        log_loss(y, q, labels=[0, 1], sample_weight=weights, normalize=False), rel=1e-9
    )


def test_accuracy_thresholds_probabilities_at_one_half_and_logits_at_zero():
    labels = [1, 1, 0, 0, 0.5]

    probabilities = score_binary(labels, [0.5, 0.51, 0.49, 0.5, 0.2])
    logits = score_binary(labels, [0.0, 0.1, -0.1, 0.0, -2.0], options=LOGITS)

    # Predicted positive only strictly above 0.5 (logit 0); a target of 0.5 counts as negative.
    # Right: rows 1, 2, 3, 4 → 4/5.
    assert probabilities.mean.accuracy == pytest.approx(0.8, rel=1e-15)
    assert logits.mean.accuracy == pytest.approx(0.8, rel=1e-15)


def test_zero_probability_on_a_positive_label_is_clipped_with_a_warning():
    result = score_binary([1, 0, 0], [0.0, 0.0, 0.3])

    assert result.per_sample.cross_entropy.tolist() == pytest.approx([36.043653, 0.0, 0.356675], abs=1e-6)
    assert _warnings(result) == [("CLIPPED", 1, (0,))]


def test_epsilon_zero_gives_infinity_and_a_non_finite_warning():
    result = score_binary([1, 0, 1], [0.0, 0.0, 1.0], options=BinaryOptions(epsilon=0.0))

    # Row 0 is a certain miss; rows 1 and 2 are 0·log 0 = 0 on the other term.
    assert result.per_sample.cross_entropy.tolist() == [math.inf, 0.0, 0.0]
    assert result.mean.cross_entropy == math.inf
    assert _warnings(result) == [("NON_FINITE", 1, (0,))]


def test_bits_are_nats_divided_by_ln_2():
    result = score_binary([0, 1, 1], [0.1, 0.8, 0.6], options=BinaryOptions(unit=Unit.BITS))

    assert result.per_sample.cross_entropy.tolist() == pytest.approx([v / math.log(2) for v in ROW_9], abs=1e-6)
    assert result.mean.perplexity == pytest.approx(1.322834, abs=1e-6)


def test_empty_binary_batch_warns_empty():
    result = score_binary([], [])

    assert (result.n, result.n_scored) == (0, 0)
    assert result.mean.cross_entropy is None
    assert result.sum.cross_entropy == 0.0
    assert _warnings(result) == [("EMPTY", 0, ())]


@st.composite
def soft_binary_batches(draw):
    n = draw(st.integers(1, 8))
    k = draw(st.sampled_from([None, 1, 2, 4]))
    size = n if k is None else n * k
    y = np.array(draw(st.lists(st.floats(0.0, 1.0), min_size=size, max_size=size)))
    q = np.array(draw(st.lists(st.floats(1e-6, 1 - 1e-6), min_size=size, max_size=size)))
    if k is not None:
        y, q = y.reshape(n, k), q.reshape(n, k)
    smoothing = draw(st.sampled_from([0.0, 0.1, 0.5]))
    return y, q, smoothing


@settings(max_examples=150, deadline=None)
@given(batch=soft_binary_batches())
def test_binary_cross_entropy_is_entropy_plus_kl_and_never_negative(batch):
    y, q, smoothing = batch

    result = score_binary(y.tolist(), q.tolist(), options=BinaryOptions(label_smoothing=smoothing))

    ps = result.per_sample
    np.testing.assert_allclose(ps.cross_entropy, ps.entropy + ps.kl_divergence, rtol=1e-9, atol=1e-12)
    assert result.mean.cross_entropy == pytest.approx(
        result.mean.entropy + result.mean.kl_divergence, rel=1e-9, abs=1e-12
    )
    assert (ps.kl_divergence >= 0).all()
    assert (ps.cross_entropy >= 0).all()


@settings(max_examples=150, deadline=None)
@given(batch=soft_binary_batches())
def test_binary_logits_score_like_their_sigmoid_probabilities(batch):
    y, q, smoothing = batch
    logits = special.logit(q)

    from_logits = score_binary(
        y.tolist(),
        logits.tolist(),
        options=BinaryOptions(prediction_type=PredictionType.LOGITS, label_smoothing=smoothing),
    )
    from_probabilities = score_binary(
        y.tolist(), special.expit(logits).tolist(), options=BinaryOptions(label_smoothing=smoothing)
    )

    np.testing.assert_allclose(
        from_logits.per_sample.cross_entropy, from_probabilities.per_sample.cross_entropy, rtol=1e-9, atol=1e-9
    )
    np.testing.assert_allclose(
        from_logits.per_sample.kl_divergence, from_probabilities.per_sample.kl_divergence, rtol=1e-9, atol=1e-9
    )
    assert from_logits.mean.accuracy == from_probabilities.mean.accuracy
