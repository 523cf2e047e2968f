"""Bad input raises the specific ``ScoringError`` subclass, located by field, row and column,
with a message that names the problem."""

import math

import numpy as np
import pytest

from service.core import (
    BadShape,
    BinaryOptions,
    InvalidInput,
    InvalidOption,
    MulticlassOptions,
    Normalization,
    NotANumber,
    NotFinite,
    OutOfRange,
    PredictionType,
    RowsNotNormalized,
    ScoringError,
    UnknownClass,
    score_binary,
    score_multiclass,
)

NAN, INF = math.nan, math.inf
P2 = [[0.5, 0.5], [0.25, 0.75]]
P3 = [[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]]


def multiclass(labels, predictions, **kwargs):
    return lambda: score_multiclass(labels, predictions, **kwargs)


def binary(labels, predictions, **kwargs):
    return lambda: score_binary(labels, predictions, **kwargs)


CASES = {
    # --- numbers ---
    "nan_in_predictions": (
        multiclass([0, 1], [[0.5, 0.5, 0.0], [0.2, 0.3, NAN]]),
        NotFinite,
        ("predictions", 1, 2),
        "NaN is not allowed; every number must be finite",
    ),
    "infinity_in_predictions": (
        multiclass([0, 1], [[INF, 0.0], [0.0, 0.0]], options=MulticlassOptions(prediction_type=PredictionType.LOGITS)),
        NotFinite,
        ("predictions", 0, 0),
        "Infinity is not allowed",
    ),
    "minus_infinity_in_ndarray_predictions": (
        multiclass([0, 1], np.array([[0.5, 0.5], [-INF, 0.0]])),
        NotFinite,
        ("predictions", 1, 0),
        "Infinity is not allowed",
    ),
    "huge_int_in_predictions": (
        multiclass([0], [[1, 10**400]]),
        NotFinite,
        ("predictions", 0, 1),
        "the number is too large for float64",
    ),
    "string_in_predictions": (
        multiclass([0, 1], [[0.5, 0.5], [0.5, "0.5"]]),
        NotANumber,
        ("predictions", 1, 1),
        "expected a number, got the string '0.5'",
    ),
    "bool_in_predictions": (
        multiclass([0], [[True, 0.0]]),
        NotANumber,
        ("predictions", 0, 0),
        "expected a number, got true",
    ),
    "null_in_predictions": (
        multiclass([0], [[0.5, None]]),
        NotANumber,
        ("predictions", 0, 1),
        "expected a number, got null",
    ),
    "nested_array_in_predictions": (
        multiclass([0], [[0.5, [0.5]]]),
        NotANumber,
        ("predictions", 0, 1),
        "expected a number, got an array",
    ),
    "string_dtype_ndarray": (
        multiclass([0], np.array([["a", "b"]])),
        NotANumber,
        ("predictions",),
        "expected an array of numbers, got dtype <U1",
    ),
    # --- shapes ---
    "ragged_rows": (
        multiclass([0, 1, 0], [[0.5, 0.5], [0.5, 0.5], [1.0]]),
        BadShape,
        ("predictions", 2),
        "row has 1 value but row 0 has 2; every row needs the same length",
    ),
    "row_that_is_not_an_array": (
        multiclass([0, 1], [[0.5, 0.5], {"a": 1}]),
        BadShape,
        ("predictions", 1),
        "expected an array of numbers (one row per sample), got an object",
    ),
    "predictions_not_an_array": (
        multiclass([0], "0.5"),
        BadShape,
        ("predictions",),
        "got the string '0.5'",
    ),
    "flat_array_to_multiclass": (
        multiclass([0, 1], [0.2, 0.8]),
        BadShape,
        ("predictions",),
        "got a flat array of numbers; for one probability per sample use binary",
    ),
    "three_dimensional_ndarray": (
        multiclass([0], np.zeros((1, 2, 2))),
        BadShape,
        ("predictions",),
        "got 3 dimensions",
    ),
    "fewer_than_two_classes": (
        multiclass([0, 0], [[1.0], [1.0]]),
        BadShape,
        ("predictions",),
        "each row needs at least 2 classes (columns), got 1",
    ),
    "labels_length_mismatch": (
        multiclass([0], P2),
        BadShape,
        ("labels",),
        "has 1 entry but predictions have 2 rows",
    ),
    "labels_not_an_array": (
        multiclass(1, [[0.5, 0.5]]),
        BadShape,
        ("labels",),
        "expected an array (class indices, class names or probability rows), got 1",
    ),
    "distribution_width_mismatch": (
        multiclass([[0.5, 0.5]], [[0.2, 0.5, 0.3]]),
        BadShape,
        ("labels", 0),
        "rows have 2 values but predictions have 3 classes",
    ),
    "classes_count_mismatch": (
        multiclass(["A", "B"], P3, classes=["A", "B"]),
        BadShape,
        ("classes",),
        "has 2 names but predictions have 3 columns",
    ),
    # --- labels ---
    "class_index_too_large": (
        multiclass([0, 3], P3),
        UnknownClass,
        ("labels", 1),
        "class index 3 is out of range [0, 3)",
    ),
    "negative_class_index": (
        multiclass([-1, 0], P3),
        UnknownClass,
        ("labels", 0),
        "class index -1 is out of range [0, 3)",
    ),
    "negative_class_index_not_equal_to_ignore_index": (
        multiclass([-1, 0], P3, options=MulticlassOptions(ignore_index=-100)),
        UnknownClass,
        ("labels", 0),
        "class index -1 is out of range [0, 3) (ignore_index is -100)",
    ),
    "huge_class_index": (
        multiclass([0, 10**400], P3),
        UnknownClass,
        ("labels", 1),
        "is out of range",
    ),
    "unknown_class_name": (
        multiclass(["A", "D"], P3, classes=["A", "B", "C"]),
        UnknownClass,
        ("labels", 1),
        "unknown class 'D'; classes are ['A', 'B', 'C']",
    ),
    "duplicate_class_names": (
        multiclass(["A", "B"], P3, classes=["A", "B", "A"]),
        InvalidInput,
        ("classes", 2),
        "duplicate class name 'A' (also at position 0)",
    ),
    "class_name_not_a_string": (
        multiclass(["A", "B"], P3, classes=["A", "B", 3]),
        InvalidInput,
        ("classes", 2),
        "expected a class name (string), got 3",
    ),
    "class_names_without_classes": (
        multiclass(["A", "B"], P3),
        InvalidInput,
        ("classes",),
        "is required when labels are class names",
    ),
    "mixed_index_and_name_labels": (
        multiclass([0, "B"], P3, classes=["A", "B", "C"]),
        InvalidInput,
        ("labels", 1),
        "expected a class index like row 0, got the string 'B'; all labels must be of one kind",
    ),
    "mixed_name_and_index_labels": (
        multiclass(["A", 1], P3, classes=["A", "B", "C"]),
        InvalidInput,
        ("labels", 1),
        "expected a class name like row 0, got 1; all labels must be of one kind",
    ),
    "bool_label": (
        multiclass([True, False], P2),
        InvalidInput,
        ("labels", 0),
        "expected a class index, a class name or a row of probabilities, got true",
    ),
    "float_label": (
        multiclass([1.0, 0.0], P2),
        InvalidInput,
        ("labels", 0),
        "got 1.0",
    ),
    "negative_target_probability": (
        multiclass([[0.5, 0.5], [1.2, -0.2]], P2),
        OutOfRange,
        ("labels", 1, 1),
        "target probability -0.2 is negative",
    ),
    "target_row_sums_to_zero_when_renormalizing": (
        multiclass([[0.5, 0.5], [0.0, 0.0]], P2, options=MulticlassOptions(normalization=Normalization.RENORMALIZE)),
        RowsNotNormalized,
        ("labels", 1),
        "target row sums to 0 and cannot be renormalized",
    ),
    # --- options that cannot combine ---
    "ignore_index_with_class_names": (
        multiclass(["A", "B"], P3, classes=["A", "B", "C"], options=MulticlassOptions(ignore_index=-100)),
        InvalidOption,
        ("ignore_index",),
        "applies only to class-index labels, not to class names",
    ),
    "ignore_index_with_distributions": (
        multiclass([[0.5, 0.5], [1.0, 0.0]], P2, options=MulticlassOptions(ignore_index=-100)),
        InvalidOption,
        ("ignore_index",),
        "applies only to class-index labels, not to probability rows",
    ),
    # --- prediction domains ---
    "probability_above_one": (
        multiclass([0, 1], [[0.5, 0.5], [-0.0, 1.2]]),
        OutOfRange,
        ("predictions", 1, 1),
        'probability 1.2 is outside [0, 1] (for scores, set prediction_type to "logits")',
    ),
    "negative_probability": (
        multiclass([1], [[-0.1, 0.6, 0.5]]),
        OutOfRange,
        ("predictions", 0, 0),
        "probability -0.1 is outside [0, 1]",
    ),
    "positive_log_probability": (
        multiclass([0], [[0.5, -1.0]], options=MulticlassOptions(prediction_type=PredictionType.LOG_PROBABILITIES)),
        OutOfRange,
        ("predictions", 0, 0),
        "log-probability 0.5 is positive; log-probabilities are <= 0",
    ),
    "prediction_row_sums_to_zero_when_renormalizing": (
        multiclass(
            [0, 1], [[0.5, 0.5], [0.0, 0.0]], options=MulticlassOptions(normalization=Normalization.RENORMALIZE)
        ),
        RowsNotNormalized,
        ("predictions", 1),
        "row sums to 0 and cannot be renormalized",
    ),
    # --- weights ---
    "negative_sample_weight": (
        multiclass([0, 1], P2, sample_weights=[1.0, -2.0]),
        OutOfRange,
        ("sample_weights", 1),
        "weight -2.0 is negative; weights must be >= 0",
    ),
    "negative_class_weight": (
        multiclass([0, 1], P3, class_weights=[1.0, -1.0, 1.0]),
        OutOfRange,
        ("class_weights", 1),
        "weight -1.0 is negative",
    ),
    "sample_weights_too_short": (
        multiclass([0, 1], P2, sample_weights=[1.0]),
        BadShape,
        ("sample_weights",),
        "has 1 value but there are 2 rows",
    ),
    "class_weights_wrong_length": (
        multiclass([0, 1], P3, class_weights=[1.0, 2.0]),
        BadShape,
        ("class_weights",),
        "has 2 values but there are 3 classes",
    ),
    "nan_sample_weight": (
        multiclass([0, 1], P2, sample_weights=[NAN, 1.0]),
        NotFinite,
        ("sample_weights", 0),
        "NaN is not allowed",
    ),
    "huge_int_sample_weight": (
        multiclass([0, 1], P2, sample_weights=[1, 10**400]),
        NotFinite,
        ("sample_weights", 1),
        "the number is too large for float64",
    ),
    "string_sample_weight": (
        multiclass([0, 1], P2, sample_weights=["1", 1]),
        NotANumber,
        ("sample_weights", 0),
        "expected a number, got the string '1'",
    ),
    "sample_weights_not_an_array": (
        multiclass([0, 1], P2, sample_weights=2.0),
        BadShape,
        ("sample_weights",),
        "expected an array of numbers, got 2.0",
    ),
    # --- binary ---
    "binary_shape_mismatch": (
        binary([0, 1], [0.2, 0.3, 0.4]),
        BadShape,
        ("labels",),
        "has shape (2,) but predictions have shape (3,)",
    ),
    "binary_multi_label_shape_mismatch": (
        binary([0, 1], [[0.2, 0.3], [0.4, 0.5]]),
        BadShape,
        ("labels",),
        "has shape (2,) but predictions have shape (2, 2)",
    ),
    "binary_label_above_one": (
        binary([0, 2], [0.2, 0.3]),
        OutOfRange,
        ("labels", 1),
        "label 2.0 is outside [0, 1]",
    ),
    "binary_negative_label_in_multi_label_row": (
        binary([[0, 1], [1, -0.5]], [[0.2, 0.3], [0.4, 0.5]]),
        OutOfRange,
        ("labels", 1, 1),
        "label -0.5 is outside [0, 1]",
    ),
    "binary_probability_above_one": (
        binary([0, 1], [0.2, 1.5]),
        OutOfRange,
        ("predictions", 1),
        "probability 1.5 is outside [0, 1]",
    ),
    "binary_nan_prediction": (
        binary([0, 1], [NAN, 0.5]),
        NotFinite,
        ("predictions", 0),
        "NaN is not allowed",
    ),
    "binary_string_label": (
        binary([0, "1"], [0.2, 0.3]),
        NotANumber,
        ("labels", 1),
        "expected a number, got the string '1'",
    ),
    "binary_empty_rows": (
        binary([[], []], [[], []]),
        BadShape,
        ("predictions", 0),
        "rows are empty",
    ),
    "binary_bool_pos_weight": (
        binary([0, 1], [0.2, 0.3], pos_weight=True),
        NotANumber,
        ("pos_weight",),
        "expected a number or an array of numbers, got true",
    ),
    "binary_negative_pos_weight": (
        binary([0, 1], [0.2, 0.3], pos_weight=-1.0),
        OutOfRange,
        ("pos_weight", 0),
        "weight -1.0 is negative",
    ),
    "binary_pos_weight_wrong_length": (
        binary([[0, 1]], [[0.2, 0.3]], pos_weight=[1.0, 2.0, 3.0]),
        BadShape,
        ("pos_weight",),
        "has 3 values but there are 2 labels per sample",
    ),
    "binary_sample_weights_wrong_length": (
        binary([0, 1], [0.2, 0.3], sample_weights=[1.0, 1.0, 1.0]),
        BadShape,
        ("sample_weights",),
        "has 3 values but there are 2 rows",
    ),
}


@pytest.mark.parametrize(("call", "error", "loc", "message"), list(CASES.values()), ids=list(CASES))
def test_bad_input_raises_the_specific_error_at_its_location(call, error, loc, message):
    with pytest.raises(ScoringError) as caught:
        call()

    assert type(caught.value) is error
    assert caught.value.loc == loc
    assert message in caught.value.message
    assert str(caught.value) == f"{caught.value.where}: {caught.value.message}"


OPTION_CASES = {
    "multiclass_smoothing_above_one": (
        lambda: MulticlassOptions(label_smoothing=1.5),
        "label_smoothing",
        "must lie in [0, 1], got 1.5",
    ),
    "multiclass_negative_smoothing": (lambda: MulticlassOptions(label_smoothing=-0.1), "label_smoothing", "got -0.1"),
    "multiclass_nan_smoothing": (lambda: MulticlassOptions(label_smoothing=NAN), "label_smoothing", "got nan"),
    "binary_smoothing_above_one": (
        lambda: BinaryOptions(label_smoothing=1.01),
        "label_smoothing",
        "must lie in [0, 1]",
    ),
    "epsilon_one_half": (
        lambda: MulticlassOptions(epsilon=0.5),
        "epsilon",
        'must be "auto" or a number in [0, 0.5), got 0.5',
    ),
    "negative_epsilon": (lambda: BinaryOptions(epsilon=-1e-9), "epsilon", "got -1e-09"),
    "zero_tolerance": (lambda: MulticlassOptions(tolerance=0.0), "tolerance", "must lie in (0, 1), got 0.0"),
    "tolerance_one": (lambda: MulticlassOptions(tolerance=1.0), "tolerance", "must lie in (0, 1), got 1.0"),
    "binary_log_probabilities": (
        lambda: BinaryOptions(prediction_type=PredictionType.LOG_PROBABILITIES),
        "prediction_type",
        'must be "probabilities" or "logits" for binary cross-entropy',
    ),
}


@pytest.mark.parametrize(("build", "field", "message"), list(OPTION_CASES.values()), ids=list(OPTION_CASES))
def test_options_out_of_range_raise_invalid_option(build, field, message):
    with pytest.raises(InvalidOption) as caught:
        build()

    assert caught.value.loc == (field,)
    assert message in caught.value.message
    assert caught.value.code == "invalid_option"


def test_error_text_names_field_row_and_column():
    with pytest.raises(NotFinite) as caught:
        score_multiclass([0, 1], [[0.5, 0.5, 0.0], [0.2, 0.3, NAN]])

    assert str(caught.value) == "predictions row 1, column 2: NaN is not allowed; every number must be finite"
    assert (caught.value.field, caught.value.row, caught.value.column) == ("predictions", 1, 2)


def test_every_error_is_a_scoring_error_with_its_own_code():
    codes = {
        cls: cls.code
        for cls in (NotANumber, NotFinite, BadShape, OutOfRange, UnknownClass, RowsNotNormalized, InvalidOption)
    }

    assert codes == {
        NotANumber: "not_a_number",
        NotFinite: "not_finite",
        BadShape: "bad_shape",
        OutOfRange: "out_of_range",
        UnknownClass: "unknown_class",
        RowsNotNormalized: "rows_not_normalized",
        InvalidOption: "invalid_option",
    }
    assert all(issubclass(cls, InvalidInput) and issubclass(cls, ScoringError) for cls in codes)
    assert InvalidInput.code == "invalid_input"
