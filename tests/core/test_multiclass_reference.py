"""The four well-known reference rows (true class 1 of A/B/C), in every input form.

Exact values are −ln p₁ written out to 7 decimals (loss-library-semantics.md §0); torch,
sklearn, scipy, torchmetrics and optax all agree on them.
"""

import dataclasses
import math

import numpy as np
import pytest

from service.core import MulticlassOptions, PredictionType, Unit, score_multiclass

PREDICTIONS = [
    [0.228, 0.619, 0.153],
    [0.001, 0.998, 0.001],
    [0.001, 0.001, 0.998],
    [0.333, 0.333, 0.334],
]
#: −ln 0.619, −ln 0.998, −ln 0.001, −ln 0.333
NATS = [0.4796500, 0.0020020, 6.9077553, 1.0996128]
#: (0.4796500 + 0.0020020 + 6.9077553 + 1.0996128) / 4
MEAN_NATS = 2.122255
CLASSES = ["A", "B", "C"]

LABEL_FORMS = {
    "class_indices": ([1, 1, 1, 1], None),
    "class_names": (["B", "B", "B", "B"], CLASSES),
    "distributions": ([[0.0, 1.0, 0.0]] * 4, None),
}


def _predictions_as(prediction_type: PredictionType) -> list[list[float]]:
    """The reference rows as probabilities, or their logs (which are also valid logits)."""
    if prediction_type is PredictionType.PROBABILITIES:
        return PREDICTIONS
    return np.log(PREDICTIONS).tolist()


@pytest.mark.parametrize("prediction_type", list(PredictionType))
@pytest.mark.parametrize("label_form", list(LABEL_FORMS))
def test_reference_rows_score_minus_log_of_true_class_probability(label_form, prediction_type):
    labels, classes = LABEL_FORMS[label_form]
    result = score_multiclass(
        labels,
        _predictions_as(prediction_type),
        classes=classes,
        options=MulticlassOptions(prediction_type=prediction_type),
    )

    assert result.per_sample.cross_entropy.tolist() == pytest.approx(NATS, abs=1e-6)
    # A one-hot target has no entropy, so all of the cross-entropy is divergence.
    assert result.per_sample.kl_divergence.tolist() == pytest.approx(NATS, abs=1e-6)
    assert result.per_sample.entropy.tolist() == pytest.approx([0.0] * 4, abs=1e-12)
    assert dataclasses.asdict(result.mean) == pytest.approx(
        {
            "cross_entropy": MEAN_NATS,
            "kl_divergence": MEAN_NATS,
            "entropy": 0.0,
            "perplexity": 8.349946,  # exp(2.122255)
            "accuracy": 0.5,  # argmax is B, B, C, C
        },
        abs=1e-6,
    )
    assert dataclasses.asdict(result.sum) == pytest.approx(
        {"cross_entropy": 8.489020, "kl_divergence": 8.489020, "entropy": 0.0}, abs=1e-6
    )
    assert (result.n, result.n_scored, result.warnings) == (4, 4, ())
    assert result.settings["label_type"] == label_form
    assert result.settings["prediction_type"] == prediction_type.value


def test_first_reference_row_is_0_479650_nats_as_in_the_docstring():
    result = score_multiclass(["B"], [PREDICTIONS[0]], classes=CLASSES)

    assert result.mean.cross_entropy == pytest.approx(0.4796500, abs=1e-6)
    assert result.mean.cross_entropy == pytest.approx(-math.log(0.619), rel=1e-15)


@pytest.mark.parametrize(
    ("unit", "expected"),
    [
        (Unit.NATS, [0.4796500, 0.0020020, 6.9077553, 1.0996128]),
        # nats / ln 2; the first is the scipy entropy(base=2) figure 0.691989.
        (Unit.BITS, [0.6919887, 0.0028883, 9.9657843, 1.5864059]),
        # nats / ln 10; −log10(0.001) is exactly 3.
        (Unit.HARTLEYS, [0.2083094, 0.0008695, 3.0000000, 0.4775558]),
    ],
)
def test_units_divide_nats_by_the_log_of_the_base(unit, expected):
    result = score_multiclass([1, 1, 1, 1], PREDICTIONS, options=MulticlassOptions(unit=unit))

    assert result.unit is unit
    assert result.per_sample.cross_entropy.tolist() == pytest.approx(expected, abs=1e-6)
    assert result.mean.cross_entropy == pytest.approx(MEAN_NATS / unit.log_base, abs=1e-6)
    assert result.sum.cross_entropy == pytest.approx(4 * MEAN_NATS / unit.log_base, abs=1e-6)
    assert result.settings["unit"] == unit.value


def test_first_reference_row_is_0_691989_bits():
    result = score_multiclass([1], [PREDICTIONS[0]], options=MulticlassOptions(unit=Unit.BITS))

    assert result.mean.cross_entropy == pytest.approx(0.691989, abs=1e-6)


@pytest.mark.parametrize("unit", list(Unit))
def test_perplexity_is_exp_of_mean_nats_whatever_the_unit(unit):
    result = score_multiclass([1, 1, 1, 1], PREDICTIONS, options=MulticlassOptions(unit=unit))

    assert result.mean.perplexity == pytest.approx(math.exp(2.122255019), rel=1e-9)
    assert result.mean.perplexity == pytest.approx(8.349946, abs=1e-6)


def test_logits_1000_0_minus_1000_on_class_2_cost_exactly_2000_nats():
    result = score_multiclass(
        [2], [[1000.0, 0.0, -1000.0]], options=MulticlassOptions(prediction_type=PredictionType.LOGITS)
    )

    assert result.per_sample.cross_entropy.tolist() == [2000.0]
    assert result.per_sample.kl_divergence.tolist() == [2000.0]
    assert result.mean.cross_entropy == 2000.0
    # exp(2000) overflows float64, so the perplexity is +inf and flagged as an aggregate: no row is infinite.
    assert result.mean.perplexity == math.inf
    assert [(w.code, w.count, w.rows) for w in result.warnings] == [("AGGREGATE_OVERFLOW", 0, ())]


@pytest.mark.parametrize("label", [0, 1, 2])
def test_extreme_logits_of_1e300_give_finite_exact_values(label):
    logits = [[1e300, 0.0, -1e300]]
    result = score_multiclass([label], logits, options=MulticlassOptions(prediction_type=PredictionType.LOGITS))

    # −log_softmax: the spread to the largest logit, exactly.
    expected = [0.0, 1e300, 2e300][label]
    assert result.per_sample.cross_entropy.tolist() == [expected]
    assert result.per_sample.kl_divergence.tolist() == [expected]
    assert result.per_sample.entropy.tolist() == [0.0]
    assert result.mean.cross_entropy == expected
    assert result.sum.cross_entropy == expected


def test_extreme_logits_never_produce_nan_in_any_output():
    logits = [[1e300, 0.0, -1e300], [-1e300, 1e300, 0.0], [0.0, 0.0, -1e300], [5.0, -1e300, -1e300]]
    for labels in ([0, 1, 2, 0], [[0.2, 0.3, 0.5], [0.0, 0.0, 1.0], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]):
        for smoothing in (0.0, 0.1):
            result = score_multiclass(
                labels,
                logits,
                options=MulticlassOptions(prediction_type=PredictionType.LOGITS, label_smoothing=smoothing),
            )
            per_sample = np.stack(
                [result.per_sample.cross_entropy, result.per_sample.kl_divergence, result.per_sample.entropy]
            )
            aggregates = [*dataclasses.asdict(result.sum).values(), *dataclasses.asdict(result.mean).values()]
            assert np.isfinite(per_sample).all(), (labels, smoothing, per_sample)
            assert not any(math.isnan(v) for v in aggregates if v is not None), (labels, smoothing, aggregates)
