"""Multi-class semantics on hand-computed examples: smoothing, weights, ignore_index,
empty batches, normalization policies, clipping, accuracy and warnings.

Row numbers such as "row 10" refer to the edge-case table, loss-library-semantics.md §3.
"""

import dataclasses
import math

import numpy as np
import pytest

from service.core import (
    MulticlassOptions,
    Normalization,
    PredictionType,
    RowsNotNormalized,
    Unit,
    score_multiclass,
)

LOGITS = MulticlassOptions(prediction_type=PredictionType.LOGITS)
#: Row 11: −log_softmax([2, 1, 0.1])[0] = 0.4170300 and −log_softmax([0.5, 0.8, 1.2])[2] = 0.7733000.
TWO_ROWS = [[2.0, 1.0, 0.1], [0.5, 0.8, 1.2]]
TWO_LABELS = [0, 2]
NLL = [0.4170300, 0.7733000]
NO_MEANS = {"cross_entropy": None, "kl_divergence": None, "entropy": None, "perplexity": None, "accuracy": None}
ZERO_SUMS = {"cross_entropy": 0.0, "kl_divergence": 0.0, "entropy": 0.0}


def _warnings(result) -> list[tuple[str, int, tuple[int, ...]]]:
    return [(w.code.value, w.count, w.rows) for w in result.warnings]


# --- label smoothing ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("labels", [[0], [[1.0, 0.0, 0.0]]], ids=["class_index", "one_hot"])
def test_label_smoothing_0_1_on_logits_2_1_0_1_gives_torch_0_513697(labels):
    options = MulticlassOptions(prediction_type=PredictionType.LOGITS, label_smoothing=0.1)

    result = score_multiclass(labels, [[2.0, 1.0, 0.1]], options=options)

    # Target y' = [0.9 + 0.1/3, 0.1/3, 0.1/3]; H(y') = 0.2911398, CE = 0.5136967 (torch, Keras, optax).
    assert dataclasses.asdict(result.sum) == pytest.approx(
        {"cross_entropy": 0.5136967, "entropy": 0.2911398, "kl_divergence": 0.2225568}, abs=1e-6
    )
    assert result.settings["label_smoothing"] == 0.1


def test_label_smoothing_of_one_scores_the_uniform_target():
    result = score_multiclass([0], [[0.5, 0.25, 0.25]], options=MulticlassOptions(label_smoothing=1.0))

    # y' = [1/3, 1/3, 1/3]: H = ln 3 = 1.098612, CE = −(ln 0.5 + 2 ln 0.25)/3 = 1.155245.
    assert result.mean.entropy == pytest.approx(1.098612, abs=1e-6)
    assert result.mean.cross_entropy == pytest.approx(1.155245, abs=1e-6)


# --- class and sample weights ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "labels", [TWO_LABELS, [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]], ids=["class_indices", "one_hot_distributions"]
)
def test_class_weights_give_the_mean_weighted_by_the_true_class_weight(labels):
    result = score_multiclass(labels, TWO_ROWS, class_weights=[1.0, 2.0, 3.0], options=LOGITS)

    assert result.per_sample.cross_entropy.tolist() == pytest.approx(NLL, abs=1e-6)  # weights change aggregates only
    # Σ w_y·ℓ / Σ w_y = (1·0.4170300 + 3·0.7733000) / (1 + 3), torch's index-target mean.
    assert result.mean.cross_entropy == pytest.approx(0.684233, abs=1e-6)
    assert result.sum.cross_entropy == pytest.approx(2.736930, abs=1e-6)
    assert result.settings["class_weights"] == [1.0, 2.0, 3.0]


def test_class_weights_with_smoothing_weigh_each_row_by_its_smoothed_target():
    options = MulticlassOptions(prediction_type=PredictionType.LOGITS, label_smoothing=0.1)

    result = score_multiclass(TWO_LABELS, TWO_ROWS, class_weights=[1.0, 2.0, 3.0], options=options)

    # Row weights Σ_c w_c·y'_c: 0.9333·1 + 0.0333·2 + 0.0333·3 = 1.1 and 0.0333·1 + 0.0333·2 + 0.9333·3 = 2.9.
    # Smoothed CE per row 0.5136967 and 0.8099667: mean (1.1·0.5136967 + 2.9·0.8099667) / 4.
    assert result.per_sample.cross_entropy.tolist() == pytest.approx([0.5136967, 0.8099667], abs=1e-6)
    assert result.mean.cross_entropy == pytest.approx(0.728492, abs=1e-6)


def test_sample_weights_give_the_weighted_mean_and_weighted_sum():
    result = score_multiclass(TWO_LABELS, TWO_ROWS, sample_weights=[2.0, 0.5], options=LOGITS)

    # sum = 2·0.4170300 + 0.5·0.7733000 = 1.220710; mean = sum / 2.5.
    assert result.sum.cross_entropy == pytest.approx(1.220710, abs=1e-6)
    assert result.mean.cross_entropy == pytest.approx(0.488284, abs=1e-6)
    assert result.settings["sample_weights"] is True


def test_class_and_sample_weights_multiply():
    result = score_multiclass(
        TWO_LABELS, TWO_ROWS, class_weights=[1.0, 2.0, 3.0], sample_weights=[0.3, 0.7], options=LOGITS
    )

    # Row weights 0.3·1 = 0.3 and 0.7·3 = 2.1: sum 0.3·0.4170300 + 2.1·0.7733000 = 1.749039, mean ÷ 2.4.
    assert result.sum.cross_entropy == pytest.approx(1.749039, abs=1e-6)
    assert result.mean.cross_entropy == pytest.approx(0.728766, abs=1e-6)


def test_zero_weight_row_with_infinite_loss_adds_nothing():
    options = MulticlassOptions(epsilon=0.0)

    result = score_multiclass([0, 1], [[0.0, 1.0], [0.5, 0.5]], sample_weights=[0.0, 1.0], options=options)

    assert result.per_sample.cross_entropy.tolist() == [math.inf, pytest.approx(0.693147, abs=1e-6)]
    assert result.mean.cross_entropy == pytest.approx(0.693147, abs=1e-6)
    assert result.sum.cross_entropy == pytest.approx(0.693147, abs=1e-6)
    assert _warnings(result) == [("NON_FINITE", 1, (0,))]


def test_all_weights_zero_warns_zero_weight_and_leaves_means_undefined():
    result = score_multiclass(TWO_LABELS, TWO_ROWS, sample_weights=[0.0, 0.0], options=LOGITS)

    assert dataclasses.asdict(result.mean) == NO_MEANS
    assert dataclasses.asdict(result.sum) == ZERO_SUMS
    assert result.per_sample.cross_entropy.tolist() == pytest.approx(NLL, abs=1e-6)
    assert _warnings(result) == [("ZERO_WEIGHT", 2, (0, 1))]


# --- ignore_index, empty batches ---------------------------------------------------------------------------------


def test_ignored_rows_are_nan_per_sample_and_left_out_of_aggregates():
    rows = [*TWO_ROWS, [9.0, 0.0, 0.0]]
    options = MulticlassOptions(prediction_type=PredictionType.LOGITS, ignore_index=-100)

    result = score_multiclass([0, -100, 2], rows, options=options)

    assert (result.n, result.n_scored, result.scored.tolist()) == (3, 2, [True, False, True])
    ce = result.per_sample.cross_entropy
    assert ce[0] == pytest.approx(0.4170300, abs=1e-6)
    assert math.isnan(ce[1])
    assert ce[2] == pytest.approx(9.000247, abs=1e-6)  # −log_softmax([9, 0, 0])[2] = 9 + ln(1 + 2e−9)
    assert math.isnan(result.per_sample.kl_divergence[1])
    assert math.isnan(result.per_sample.entropy[1])
    assert result.mean.cross_entropy == pytest.approx((0.4170300 + 9.000247) / 2, abs=1e-6)
    assert result.sum.cross_entropy == pytest.approx(0.4170300 + 9.000247, abs=1e-6)
    assert result.mean.accuracy == 0.5  # row 0 right, row 2 wrong; row 1 would be wrong but is ignored
    assert result.warnings == ()
    assert result.settings["ignore_index"] == -100


def test_ignore_index_may_be_a_real_class():
    options = MulticlassOptions(ignore_index=1)

    result = score_multiclass([0, 1], [[0.5, 0.5], [0.9, 0.1]], options=options)

    assert result.n_scored == 1
    assert result.mean.cross_entropy == pytest.approx(0.693147, abs=1e-6)


def test_ignored_rows_are_not_checked_for_normalization():
    options = MulticlassOptions(ignore_index=-1, normalization=Normalization.ERROR)

    result = score_multiclass([0, -1], [[0.5, 0.5], [0.0, 0.0]], options=options)

    assert result.mean.cross_entropy == pytest.approx(0.693147, abs=1e-6)
    assert result.warnings == ()


def test_all_rows_ignored_warns_empty_with_undefined_means_and_zero_sums():
    options = MulticlassOptions(prediction_type=PredictionType.LOGITS, ignore_index=-100)

    result = score_multiclass([-100, -100], TWO_ROWS, options=options)

    assert (result.n, result.n_scored) == (2, 0)
    assert np.isnan(result.per_sample.cross_entropy).all()
    assert dataclasses.asdict(result.mean) == NO_MEANS
    assert dataclasses.asdict(result.sum) == ZERO_SUMS
    assert _warnings(result) == [("EMPTY", 0, ())]
    assert "every row is ignored" in result.warnings[0].message


@pytest.mark.parametrize("predictions", [[], np.empty((0, 3))], ids=["json_list", "ndarray"])
def test_empty_batch_warns_empty_with_undefined_means_and_zero_sums(predictions):
    result = score_multiclass([], predictions)

    assert (result.n, result.n_scored) == (0, 0)
    assert result.per_sample.cross_entropy.tolist() == []
    assert dataclasses.asdict(result.mean) == NO_MEANS
    assert dataclasses.asdict(result.sum) == ZERO_SUMS
    assert _warnings(result) == [("EMPTY", 0, ())]
    assert "the batch is empty" in result.warnings[0].message


# --- normalization policy ----------------------------------------------------------------------------------------

UNNORMALIZED = [[0.2, 0.3, 0.1]]  # row 5: sums to 0.6


def _as(prediction_type: PredictionType, rows: list[list[float]]) -> list[list[float]]:
    """Probability rows as given, or as log-probabilities (a zero becomes −1e300, since −inf is refused)."""
    if prediction_type is PredictionType.PROBABILITIES:
        return rows
    with np.errstate(divide="ignore"):
        return np.maximum(np.log(rows), -1e300).tolist()


def _unnormalized(prediction_type: PredictionType) -> list[list[float]]:
    return _as(prediction_type, UNNORMALIZED)


@pytest.mark.parametrize("prediction_type", [PredictionType.PROBABILITIES, PredictionType.LOG_PROBABILITIES])
def test_unnormalized_row_is_scored_as_given_with_a_warning_by_default(prediction_type):
    result = score_multiclass(
        [1], _unnormalized(prediction_type), options=MulticlassOptions(prediction_type=prediction_type)
    )

    assert result.mean.cross_entropy == pytest.approx(1.203973, abs=1e-6)  # −ln 0.3, like sklearn and torch nll
    assert _warnings(result) == [("ROWS_NOT_NORMALIZED", 1, (0,))]


@pytest.mark.parametrize("prediction_type", [PredictionType.PROBABILITIES, PredictionType.LOG_PROBABILITIES])
def test_unnormalized_row_is_divided_by_its_sum_when_renormalizing(prediction_type):
    options = MulticlassOptions(prediction_type=prediction_type, normalization=Normalization.RENORMALIZE)

    result = score_multiclass([1], _unnormalized(prediction_type), options=options)

    assert result.mean.cross_entropy == pytest.approx(0.693147, abs=1e-6)  # −ln(0.3 / 0.6), like scipy and Keras
    assert _warnings(result) == [("RENORMALIZED", 1, (0,))]


@pytest.mark.parametrize("prediction_type", [PredictionType.PROBABILITIES, PredictionType.LOG_PROBABILITIES])
def test_unnormalized_row_raises_naming_the_row_under_policy_error(prediction_type):
    options = MulticlassOptions(prediction_type=prediction_type, normalization=Normalization.ERROR)
    rows = _as(prediction_type, [[0.5, 0.5, 0.0], *UNNORMALIZED])

    with pytest.raises(RowsNotNormalized) as caught:
        score_multiclass([0, 1], rows, options=options)

    assert caught.value.loc == ("predictions", 1)
    assert "row sums to 0.6, not 1 within tolerance 0.001 (1 row is off)" in str(caught.value)
    assert str(caught.value).startswith("predictions row 1: ")


def test_logits_are_always_normalized_by_softmax_without_warning():
    result = score_multiclass([1], np.log(UNNORMALIZED).tolist(), options=LOGITS)

    assert result.mean.cross_entropy == pytest.approx(0.693147, abs=1e-6)  # torch CE on log p, row 5
    assert result.warnings == ()


def test_rows_within_tolerance_are_not_flagged():
    result = score_multiclass([0], [[0.5004, 0.5]])

    assert result.warnings == ()
    assert result.mean.cross_entropy == pytest.approx(-math.log(0.5004), rel=1e-12)


@pytest.mark.parametrize(
    ("predictions", "expected", "warnings"),
    [
        # Sums to 1.2: flagged, and CE = −ln 0.6 = 0.510826 (torch prob-target CE, naive NumPy).
        ([[0.6, 0.6]], 0.510826, [("ROWS_NOT_NORMALIZED", 1, (0,))]),
        # Sums to 1.0008, within tolerance: CE = −ln 0.5004 = 0.692348, as the hard-label path gives.
        ([[0.5004, 0.5004]], 0.692348, []),
    ],
    ids=["off_by_more_than_tolerance", "within_tolerance"],
)
def test_unnormalized_soft_prediction_row_is_scored_as_given(predictions, expected, warnings):
    # Target [0.5, 0.5]. "Scored as given" means CE = −Σ y·log q, the convention of the hard-label
    # row 5 (1.203973). H = ln 2 = 0.693147, so Σ y·log(y/q) is negative here (−0.182322 and
    # −0.000800): an unnormalized q is not a distribution, and CE is not H + a clamped KL.
    result = score_multiclass([[0.5, 0.5]], predictions)

    assert _warnings(result) == warnings
    assert result.mean.cross_entropy == pytest.approx(expected, abs=1e-6)


def test_soft_target_not_summing_to_one_raises_by_default():
    with pytest.raises(RowsNotNormalized) as caught:
        score_multiclass([[0.5, 0.5, 0.0], [0.0, 2.0, 0.0]], [[0.2, 0.5, 0.3]] * 2)

    assert caught.value.loc == ("labels", 1)
    assert "target row sums to 2, not 1 within tolerance 0.001" in str(caught.value)


def test_soft_target_not_summing_to_one_is_rescaled_when_renormalizing():
    options = MulticlassOptions(normalization=Normalization.RENORMALIZE)

    result = score_multiclass([[0.0, 2.0, 0.0]], [[0.2, 0.5, 0.3]], options=options)

    # Row 6: target [0, 2, 0] becomes [0, 1, 0]: −ln 0.5 (scipy), not torch's doubled 1.386294.
    assert dataclasses.asdict(result.sum) == pytest.approx(
        {"cross_entropy": 0.693147, "kl_divergence": 0.693147, "entropy": 0.0}, abs=1e-6
    )
    assert result.warnings == ()


# --- clipping and infinities -------------------------------------------------------------------------------------


def test_zero_true_class_probability_is_clipped_to_machine_epsilon_with_a_warning():
    result = score_multiclass([0, 1], [[0.0, 0.5, 0.5], [0.0, 0.5, 0.5]])

    # Row 1 of §3: −ln(2.220446e-16) = 36.043653 like sklearn; row 2: 0·log 0 = 0, so −ln 0.5.
    assert result.per_sample.cross_entropy.tolist() == pytest.approx([36.043653, 0.693147], abs=1e-6)
    assert _warnings(result) == [("CLIPPED", 1, (0,))]
    assert result.settings["epsilon"] == 2.220446049250313e-16


def test_certain_correct_prediction_costs_machine_epsilon_like_sklearn():
    result = score_multiclass([0], [[1.0, 0.0]])

    assert result.mean.cross_entropy == pytest.approx(2.220446e-16, rel=1e-6)  # row 17: −ln(1 − ε)
    assert _warnings(result) == [("CLIPPED", 1, (0,))]


@pytest.mark.parametrize("labels", [[0], [[1.0, 0.0, 0.0]], [[0.5, 0.0, 0.5]]], ids=["index", "one_hot", "soft"])
def test_epsilon_zero_gives_infinity_and_a_non_finite_warning(labels):
    result = score_multiclass(labels, [[0.0, 0.5, 0.5]], options=MulticlassOptions(epsilon=0.0))

    assert result.per_sample.cross_entropy.tolist() == [math.inf]
    assert result.per_sample.kl_divergence.tolist() == [math.inf]
    assert (result.mean.cross_entropy, result.mean.perplexity, result.sum.cross_entropy) == (math.inf,) * 3
    assert _warnings(result) == [("NON_FINITE", 1, (0,))]


def test_custom_epsilon_clips_at_that_value():
    result = score_multiclass([0], [[0.0, 1.0]], options=MulticlassOptions(epsilon=1e-7))

    assert result.mean.cross_entropy == pytest.approx(16.118096, abs=1e-6)  # −ln 1e−7, Keras's clip
    assert _warnings(result) == [("CLIPPED", 1, (0,))]


def test_epsilon_does_not_apply_to_logits():
    result = score_multiclass([1], [[0.0, -50.0]], options=LOGITS)

    assert result.mean.cross_entropy == pytest.approx(50.0, rel=1e-15)  # e^−50 ≈ 2e−22 < ε, still exact
    assert result.warnings == ()
    assert result.settings["epsilon_applies"] is False


# --- accuracy, perplexity, warning caps -------------------------------------------------------------------------


def test_accuracy_is_the_weighted_share_of_rows_whose_argmax_is_the_true_class():
    predictions = [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3], [0.3, 0.3, 0.4]]

    plain = score_multiclass([0, 1, 1, 2], predictions)
    weighted = score_multiclass([0, 1, 1, 2], predictions, sample_weights=[1.0, 4.0, 2.0, 1.0])

    assert plain.mean.accuracy == 0.75  # rows 0, 2, 3 right
    assert weighted.mean.accuracy == 0.5  # (1 + 2 + 1) / 8


def test_accuracy_of_soft_targets_compares_with_the_targets_argmax():
    result = score_multiclass([[0.6, 0.4], [0.2, 0.8], [0.7, 0.3]], [[0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])

    assert result.mean.accuracy == pytest.approx(1 / 3, rel=1e-15)


@pytest.mark.parametrize("unit", list(Unit))
def test_perplexity_is_exp_of_mean_cross_entropy_in_nats(unit):
    result = score_multiclass([0, 1], [[0.5, 0.5], [0.75, 0.25]], options=MulticlassOptions(unit=unit))

    # mean nats = (ln 2 + ln 4) / 2 = 1.5 ln 2, so perplexity = 2^1.5.
    assert result.mean.perplexity == pytest.approx(2**1.5, rel=1e-12)
    assert result.mean.cross_entropy == pytest.approx(1.5 * math.log(2) / unit.log_base, rel=1e-12)


def test_warning_lists_at_most_20_rows_but_counts_them_all():
    result = score_multiclass([0] * 25, [[0.2, 0.3]] * 25)

    assert _warnings(result) == [("ROWS_NOT_NORMALIZED", 25, tuple(range(20)))]


def test_clipped_warning_counts_only_rows_whose_true_class_was_clipped():
    predictions = [[0.0, 1.0]] * 30 + [[0.5, 0.5]]

    result = score_multiclass([1] * 15 + [0] * 15 + [0], predictions)

    # Rows 0-14: q_y = 1 → 1 − ε; rows 15-29: q_y = 0 → ε; row 30 untouched.
    assert _warnings(result) == [("CLIPPED", 30, tuple(range(20)))]
