"""Aggregates too large for float64: means stay exact, sums and perplexities that overflow are null
with an AGGREGATE_OVERFLOW warning naming them, and NON_FINITE keeps naming the rows whose own values
are infinite (issue 12, item 8).

AGGREGATE_OVERFLOW concerns no row (``count`` 0, ``rows`` empty): every value it is taken over is
finite; only the weighted sum, or e^(mean cross-entropy), is beyond float64.
"""

import math
import re
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.core import BinaryOptions, MulticlassOptions, PredictionType, Unit, score_binary, score_multiclass
from service.core.summary import answer_summary

THREE = [[0.2, 0.3, 0.5], [0.2, 0.3, 0.5]]
#: −(ln 0.2 + ln 0.3)/2 = −ln(0.06)/2: the mean of rows 0 and 1 of THREE with labels [0, 1], equally weighted.
MEAN_OF_THREE = 1.4067053583800182
SUMS_OVERFLOW = "sum.cross_entropy and sum.kl_divergence overflow float64 and are reported as null"
PERPLEXITY_OVERFLOWS = (
    "mean.perplexity = e^(mean cross-entropy in nats) overflows float64 (past 709.78 nats) and is reported as null"
)
NON_FINITE_MESSAGE = (
    "some values are +infinity (a zero probability on a non-zero target with epsilon 0, "
    "or an overflow); JSON cannot hold them, so they are reported as null"
)
LOGITS = MulticlassOptions(prediction_type=PredictionType.LOGITS)


def _overflow(message: str) -> dict[str, object]:
    return {"code": "AGGREGATE_OVERFLOW", "message": message, "count": 0, "rows": []}


def test_weights_of_1e308_give_the_exact_mean_and_a_null_sum_named_by_aggregate_overflow():
    result = score_multiclass([0, 1], THREE, sample_weights=[1e308, 1e308])
    summary = answer_summary(result, per_sample=False)

    assert summary["mean"] == {
        "cross_entropy": pytest.approx(MEAN_OF_THREE, rel=1e-15),
        "kl_divergence": pytest.approx(MEAN_OF_THREE, rel=1e-15),
        "entropy": 0.0,
        "perplexity": pytest.approx(math.sqrt(1 / 0.06), rel=1e-15),
        "accuracy": 0.0,
    }
    assert summary["sum"] == {"cross_entropy": None, "kl_divergence": None, "entropy": 0.0}
    assert summary["warnings"] == [_overflow(SUMS_OVERFLOW)]


def test_the_1e308_mean_is_the_one_of_unit_weights_bit_for_bit():
    huge = score_multiclass([0, 1], THREE, sample_weights=[1e308, 1e308])
    plain = score_multiclass([0, 1], THREE)

    assert huge.mean == plain.mean


def test_sample_weights_times_class_weights_that_overflow_keep_the_mean():
    result = score_multiclass([0, 1], THREE, sample_weights=[1e308, 1e308], class_weights=[10.0, 10.0, 1.0])

    assert result.mean == score_multiclass([0, 1], THREE).mean
    assert answer_summary(result, per_sample=False)["sum"] == {
        "cross_entropy": None,
        "kl_divergence": None,
        "entropy": 0.0,
    }
    assert [(w.code, w.message) for w in result.warnings] == [("AGGREGATE_OVERFLOW", SUMS_OVERFLOW)]


def test_class_weights_at_the_float64_maximum_on_targets_summing_past_1_keep_the_mean():
    # Row 0 sums to 1.0005 (within the tolerance), so its class mass Σ w_c·y_c exceeds float64.
    target, predictions = [[0.5, 0.5005], [0.25, 0.75]], [[0.4, 0.6], [0.1, 0.9]]
    biggest = float(np.finfo(np.float64).max)

    result = score_multiclass(target, predictions, class_weights=[biggest, biggest])

    reference = score_multiclass(target, predictions, class_weights=[1.0, 1.0])
    for name in ("cross_entropy", "kl_divergence", "entropy", "accuracy"):
        assert getattr(result.mean, name) == pytest.approx(getattr(reference.mean, name), rel=1e-15)
    assert result.sum.cross_entropy == math.inf
    assert [w.code for w in result.warnings] == ["AGGREGATE_OVERFLOW"]


@pytest.mark.parametrize(("unit", "scale"), [(Unit.NATS, 1.0), (Unit.BITS, math.log(2)), (Unit.HARTLEYS, math.log(10))])
def test_weights_of_1e308_keep_the_mean_in_every_unit(unit, scale):
    result = score_multiclass([0, 1], THREE, sample_weights=[1e308, 1e308], options=MulticlassOptions(unit=unit))

    assert result.mean.cross_entropy == pytest.approx(MEAN_OF_THREE / scale, rel=1e-15)
    assert [w.code for w in result.warnings] == ["AGGREGATE_OVERFLOW"]


def test_ignored_rows_and_zero_weights_beside_weights_of_1e308():
    predictions = [[0.2, 0.3, 0.5]] * 4

    result = score_multiclass(
        [0, -100, 1, 2],
        predictions,
        sample_weights=[1e308, 5.0, 1e308, 0.0],
        options=MulticlassOptions(ignore_index=-100),
    )

    assert result.n_scored == 3
    assert result.mean.cross_entropy == pytest.approx(MEAN_OF_THREE, rel=1e-15)
    assert [w.code for w in result.warnings] == ["AGGREGATE_OVERFLOW"]


def test_huge_per_sample_values_overflow_the_sum_and_the_perplexity_but_not_the_mean():
    # −log_softmax([1e308, 0, 0])[1] = 1e308 nats exactly; two such rows sum past float64.
    result = score_multiclass([1, 1], [[1e308, 0.0, 0.0]] * 2, options=LOGITS)
    summary = answer_summary(result, per_sample=True)

    assert result.per_sample.cross_entropy.tolist() == [1e308, 1e308]
    assert summary["mean"] == {
        "cross_entropy": 1e308,
        "kl_divergence": 1e308,
        "entropy": 0.0,
        "perplexity": None,
        "accuracy": 0.0,
    }
    assert summary["sum"] == {"cross_entropy": None, "kl_divergence": None, "entropy": 0.0}
    assert summary["warnings"] == [_overflow(f"{SUMS_OVERFLOW}; {PERPLEXITY_OVERFLOWS}")]


def test_a_mean_cross_entropy_of_800_nats_overflows_only_the_perplexity():
    # −log_softmax([800, 0, 0])[1] = 800 + ln(1 + 2e^−800) = 800 in float64.
    result = score_multiclass([1], [[800.0, 0.0, 0.0]], options=LOGITS)
    summary = answer_summary(result, per_sample=False)

    assert summary["mean"] == {
        "cross_entropy": 800.0,
        "kl_divergence": 800.0,
        "entropy": 0.0,
        "perplexity": None,
        "accuracy": 0.0,
    }
    assert summary["sum"] == {"cross_entropy": 800.0, "kl_divergence": 800.0, "entropy": 0.0}
    assert summary["warnings"][0] == _overflow(PERPLEXITY_OVERFLOWS)  # then STDERR_UNDEFINED: one row


def test_an_infinite_row_is_non_finite_not_an_aggregate_overflow():
    result = score_multiclass([0, 1], [[0.0, 1.0], [0.5, 0.5]], options=MulticlassOptions(epsilon=0.0))

    assert result.mean.cross_entropy == math.inf
    assert result.mean.perplexity == math.inf
    assert [(w.code, w.message, w.count, w.rows) for w in result.warnings] == [
        ("NON_FINITE", NON_FINITE_MESSAGE, 1, (0,))
    ]


def test_an_infinite_row_of_weight_0_beside_weights_of_1e308_leaves_the_mean_finite():
    predictions = [[0.2, 0.3, 0.5], [0.0, 1.0, 0.0], [0.2, 0.3, 0.5]]

    result = score_multiclass(
        [0, 0, 1], predictions, sample_weights=[1e308, 0.0, 1e308], options=MulticlassOptions(epsilon=0.0)
    )

    assert result.per_sample.cross_entropy[1] == math.inf
    assert result.mean.cross_entropy == pytest.approx(MEAN_OF_THREE, rel=1e-15)
    assert [(w.code, w.count, w.rows) for w in result.warnings] == [
        ("NON_FINITE", 1, (1,)),
        ("AGGREGATE_OVERFLOW", 0, ()),
    ]


def test_a_value_finite_in_nats_but_not_in_bits_is_a_non_finite_row():
    # 1.5e308 nats is 2.16e308 bits: the row is +inf in the answer's unit, and so is the mean over it;
    # e^(1.5e308) overflows although the mean in nats is finite.
    result = score_multiclass(
        [1], [[1.5e308, 0.0, 0.0]], options=MulticlassOptions(prediction_type="logits", unit="bits")
    )

    assert result.per_sample.cross_entropy.tolist() == [math.inf]
    assert [(w.code, w.message, w.count, w.rows) for w in result.warnings] == [
        ("NON_FINITE", NON_FINITE_MESSAGE, 1, (0,)),
        ("AGGREGATE_OVERFLOW", PERPLEXITY_OVERFLOWS, 0, ()),
    ]


def test_binary_weights_of_1e308_give_the_exact_mean():
    result = score_binary([1, 0], [0.2, 0.3], sample_weights=[1e308, 1e308])
    summary = answer_summary(result, per_sample=False)

    # −(ln 0.2 + ln 0.7)/2 = −ln(0.14)/2
    assert summary["mean"]["cross_entropy"] == pytest.approx(-math.log(0.14) / 2, rel=1e-15)
    assert summary["mean"]["accuracy"] == 0.5
    assert summary["sum"] == {"cross_entropy": None, "kl_divergence": None, "entropy": 0.0}
    assert summary["warnings"] == [_overflow(SUMS_OVERFLOW)]


def test_multi_label_weights_of_1e308_give_the_exact_mean():
    labels, predictions = [[1, 0], [0.5, 0.5]], [[0.2, 0.3], [0.5, 0.5]]

    result = score_binary(labels, predictions, sample_weights=[1.5e308, 1.5e308])

    # Σ wᵢ·CEᵢ = 1.5e308 · 1.676 overflows; the KL and entropy sums (1.47e308, 1.04e308) do not.
    unweighted = score_binary(labels, predictions).mean
    for name in ("cross_entropy", "kl_divergence", "entropy", "perplexity", "accuracy"):
        assert getattr(result.mean, name) == pytest.approx(getattr(unweighted, name), rel=1e-15)
    assert result.sum.cross_entropy == math.inf
    assert result.sum.kl_divergence == pytest.approx(1.5e308 * (2 * result.mean.kl_divergence), rel=1e-15)
    assert [(w.code, w.message) for w in result.warnings] == [
        ("AGGREGATE_OVERFLOW", "sum.cross_entropy overflows float64 and is reported as null")
    ]


def test_binary_logit_of_minus_1000_overflows_the_perplexity_only():
    result = score_binary([1], [-1000.0], options=BinaryOptions(prediction_type=PredictionType.LOGITS))

    assert result.mean.cross_entropy == 1000.0
    assert [(w.code, w.message, w.count, w.rows) for w in result.warnings] == [
        ("AGGREGATE_OVERFLOW", PERPLEXITY_OVERFLOWS, 0, ())
    ]


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("weight", [5e-324, 1e-320, 1e-310, 2.0**-600])
def test_weights_too_small_for_full_precision_products_give_the_mean_of_unit_weights(weight, binary):
    # Each wᵢℓᵢ is subnormal: taken plainly, all weights 5e-324 gave a mean of 0.5 (each product rounded to
    # 0 or 5e-324), 1e-320 one off in the fourth digit.
    labels, predictions = ([1.0, 0.0], [0.8, 0.3]) if binary else ([0, 1], THREE)
    score = score_binary if binary else score_multiclass

    tiny = score(labels, predictions, sample_weights=[weight, weight])
    plain = score(labels, predictions)

    assert tiny.mean.cross_entropy == pytest.approx(plain.mean.cross_entropy, rel=1e-15)
    assert tiny.mean.kl_divergence == pytest.approx(plain.mean.kl_divergence, rel=1e-15)
    assert tiny.mean.accuracy == plain.mean.accuracy
    # The sums are the tiny true ones, rounded once: Σ wᵢℓᵢ = w · (the unit-weight sum).
    assert tiny.sum.cross_entropy == pytest.approx(weight * plain.sum.cross_entropy, rel=1e-15, abs=5e-324)


def test_subnormal_weights_in_the_ratio_1_to_2_weigh_the_rows_1_to_2():
    result = score_multiclass([0, 1], THREE, sample_weights=[5e-324, 1e-323])  # 1 and 2 times 2^−1074

    assert result.mean.cross_entropy == pytest.approx((-math.log(0.2) - 2 * math.log(0.3)) / 3, rel=1e-15)


# --- identities ------------------------------------------------------------------------------------------------------


@st.composite
def weighted_batches(draw):
    """Rows of probabilities, labels, and weights from 0.01 to 100 (some 0), a few rows to a few dozen."""
    n = draw(st.integers(1, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    predictions = rng.dirichlet(np.ones(4), n)
    labels = rng.integers(0, 4, n)
    weights = rng.uniform(0.01, 100.0, n)
    weights[rng.random(n) < 0.2] = 0.0
    weights[0] = max(weights[0], 1.0)  # some weight to average with
    return labels.tolist(), predictions, weights


@settings(max_examples=60, deadline=None)
@given(batch=weighted_batches(), power=st.integers(-1015, 1015), binary=st.booleans())
def test_scaling_every_weight_by_a_power_of_two_leaves_the_means_unchanged_bit_for_bit(batch, power, binary):
    # 2^1015 · 100 < 2^1022: the weights stay finite, while Σ wᵢℓᵢ overflows for the larger powers; 2^−1015 · 0.01
    # > 2^−1022: the weights stay normal (exactly the unscaled ones, scaled), while wᵢℓᵢ falls short of it.
    labels, predictions, weights = batch
    if binary:
        labels, predictions = (np.asarray(labels) % 2).astype(float).tolist(), predictions[:, 0]

    def score(w):
        return (score_binary if binary else score_multiclass)(labels, predictions, sample_weights=w)

    assert score(np.ldexp(weights, power)).mean == score(weights).mean


@settings(max_examples=60, deadline=None)
@given(batch=weighted_batches(), power=st.integers(900, 1015))
def test_means_with_huge_weights_equal_an_exact_rational_reference(batch, power):
    labels, predictions, weights = batch
    weights = np.ldexp(weights, power)

    result = score_multiclass(labels, predictions, sample_weights=weights)

    # The per-sample values −ln q_y from the standard library, and exact weighted sums of them.
    losses = [Fraction(-math.log(predictions[i, label])) for i, label in enumerate(labels)]
    exact = [Fraction(float(w)) for w in weights]
    mean = sum(w * v for w, v in zip(exact, losses, strict=True)) / sum(exact)
    hits = [Fraction(int(predictions[i].argmax() == label)) for i, label in enumerate(labels)]
    accuracy = sum(w * h for w, h in zip(exact, hits, strict=True)) / sum(exact)
    assert result.mean.cross_entropy == pytest.approx(float(mean), rel=1e-12)
    assert result.mean.accuracy == pytest.approx(float(accuracy), rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("binary", [False, True])
def test_slices_take_weights_down_to_2_to_the_minus_1000_and_refuse_smaller_or_wider_ones(binary):
    from service.core.errors import InvalidOption
    from service.core.slices import binary_breakdowns, multiclass_breakdowns

    labels, predictions = ([1.0, 0.0, 1.0], [0.8, 0.3, 0.45]) if binary else ([0, 1, 1], [*THREE, [0.6, 0.3, 0.1]])
    score, breakdowns = (score_binary, binary_breakdowns) if binary else (score_multiclass, multiclass_breakdowns)

    def fields(weights, **asked):
        result = score(labels, predictions, sample_weights=weights)
        return breakdowns(result, labels, predictions, groups=["a", "b", "b"], **asked).fields(0.95)

    plain = fields([1.0, 2.0, 3.0], calibration_bins=3)
    small = fields(np.ldexp([1.0, 2.0, 3.0], -999), calibration_bins=3)  # each at least 2^−1000
    for name in ("ece", "mce", "rmsce", "brier"):
        assert small["calibration"][name] == pytest.approx(plain["calibration"][name], rel=1e-15)
    with pytest.raises(InvalidOption, match=re.escape("below 2^-1000 (9.3e-302)")):
        fields(np.ldexp([1.0, 2.0, 3.0], -1001), calibration_bins=3)
    # Groups rescale by the largest weight: all 5e-324 is as good as all 1; 1 beside 5e-324 is refused.
    tiny = fields([5e-324, 1e-323, 1.5e-323])["by_group"]
    same = fields([1.0, 2.0, 3.0])["by_group"]
    assert tiny["b"]["mean"]["cross_entropy"] == pytest.approx(same["b"]["mean"]["cross_entropy"], rel=1e-15)
    with pytest.raises(InvalidOption, match="times the largest"):
        fields([1.0, 5e-324, 5e-324])
    assert fields([0.0, 0.0, 0.0], calibration_bins=3)["calibration"]["ece"] is None  # no weight: as before
