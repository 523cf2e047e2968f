"""Error messages quote at most 64 characters of a caller's value, then "…", and list at most 10 things
(issue 12, item 7): a megabyte of input never comes back in a message."""

import pytest

from service.core import (
    BinaryOptions,
    InvalidInput,
    InvalidOption,
    MulticlassOptions,
    NotANumber,
    UnknownClass,
    score_binary,
    score_multiclass,
)
from service.core.errors import quoted, quoted_list

MB = 1_000_000
BIG = "x" * MB
#: How a 1 MB string is quoted: its first 64 characters, then "…".
BIG_QUOTED = "'" + "x" * 64 + "…'"
#: No message may come near this.
MESSAGE_LIMIT = 10_000
P2 = [[0.5, 0.5]]


def _message(call, error):
    with pytest.raises(error) as caught:
        call()
    message = str(caught.value)
    assert len(message) < MESSAGE_LIMIT
    return message


def test_an_unknown_1_mb_class_name_is_quoted_to_64_characters():
    message = _message(lambda: score_multiclass([BIG], P2, classes=["a", "b"]), UnknownClass)

    assert message == f"labels row 0: unknown class {BIG_QUOTED}; classes are ['a', 'b']"


def test_ten_classes_of_1_mb_each_are_listed_to_64_characters_each():
    classes = [chr(ord("A") + i) * MB for i in range(10)]

    message = _message(lambda: score_multiclass(["z"], [[0.1] * 10], classes=classes), UnknownClass)

    shown = ", ".join("'" + chr(ord("A") + i) * 64 + "…'" for i in range(10))
    assert message == f"labels row 0: unknown class 'z'; classes are [{shown}]"


def test_a_thousand_classes_are_listed_to_the_first_ten_and_a_count():
    classes = [f"c{i}" for i in range(1000)]

    message = _message(lambda: score_multiclass(["z"], [[0.001] * 1000], classes=classes), UnknownClass)

    assert message == (
        "labels row 0: unknown class 'z'; classes are "
        "['c0', 'c1', 'c2', 'c3', 'c4', 'c5', 'c6', 'c7', 'c8', 'c9', … (1000 in all)]"
    )


def test_a_duplicated_1_mb_class_name_is_quoted_to_64_characters():
    message = _message(lambda: score_multiclass([0], P2, classes=[BIG, BIG]), InvalidInput)

    assert message == f"classes row 1: duplicate class name {BIG_QUOTED} (also at position 0)"


@pytest.mark.parametrize(
    ("call", "error", "expected"),
    [
        (
            lambda: score_multiclass([0, BIG], P2 * 2),
            InvalidInput,
            f"labels row 1: expected a class index like row 0, got the string {BIG_QUOTED}; "
            "all labels must be of one kind",
        ),
        (
            lambda: score_binary([BIG], [0.5]),
            NotANumber,
            f"labels row 0: expected a number, got the string {BIG_QUOTED}",
        ),
        (
            lambda: score_multiclass([0], [[0.5, BIG]]),
            NotANumber,
            f"predictions row 0, column 1: expected a number, got the string {BIG_QUOTED}",
        ),
        (
            lambda: score_multiclass([0], P2, sample_weights=[BIG]),
            NotANumber,
            f"sample_weights row 0: expected a number, got the string {BIG_QUOTED}",
        ),
    ],
    ids=["class_index_then_string", "binary_label", "prediction", "sample_weight"],
)
def test_a_1_mb_string_where_a_label_or_number_belongs_is_quoted_to_64_characters(call, error, expected):
    assert _message(call, error) == expected


def test_a_1_mb_option_value_is_quoted_to_64_characters():
    message = _message(lambda: MulticlassOptions(prediction_type=BIG), InvalidOption)

    assert message == (
        f"prediction_type: must be one of 'probabilities', 'logits', 'log_probabilities', got {BIG_QUOTED}"
    )


def test_an_integer_of_5000_digits_is_described_not_printed():
    # str() refuses integers past 4,300 digits: the message must not depend on it.
    huge = 10**5000

    index = _message(lambda: score_multiclass([0, huge], P2 * 2), UnknownClass)
    option = _message(lambda: BinaryOptions(label_smoothing=huge), InvalidOption)

    assert index == "labels row 1: class index <an integer of 16610 bits> is out of range"
    assert option == "label_smoothing: must lie in [0, 1], got <an integer of 16610 bits>"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("B", "'B'"),
        ("x" * 64, "'" + "x" * 64 + "'"),
        ("x" * 65, "'" + "x" * 64 + "…'"),
        (0.25, "0.25"),
        (-100, "-100"),
        (None, "None"),
        (10**70, "1" + "0" * 63 + "…"),
    ],
    ids=["short", "64", "65", "float", "int", "none", "long_int"],
)
def test_quoted_shows_at_most_64_characters_then_an_ellipsis(value, expected):
    assert quoted(value) == expected


def test_quoted_shows_a_large_list_by_its_first_characters():
    text = quoted([BIG] * 1000)

    assert text.startswith("['xxxxxxxx")
    assert text.endswith("…")
    assert len(text) == 65


def test_quoted_bounds_escapes_too():
    assert len(quoted("\x00" * MB)) <= 4 * 64 + 3


def test_quoted_list_shows_ten_and_counts_the_rest():
    assert quoted_list(["A", "B"]) == "'A', 'B'"
    assert quoted_list([BIG] * 11) == ", ".join([BIG_QUOTED] * 10) + ", … (11 in all)"
