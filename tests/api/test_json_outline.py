"""The outline of a JSON body (NumPy scans of its bytes) reads what ``json.loads`` reads.

For random objects written in every style (compact, spaced, indented, ASCII-escaped or not;
keys with quotes, backslashes and non-ASCII text, duplicated keys; strings holding brackets,
braces, commas and colons) the outline finds the same first unknown key and, for each array
field, the same number of entries and length of the first, as the parsed document.
"""

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.api.transport import _json_outline
from service.api.transport._json_outline import JsonOutline

FIELDS = ["predictions", "labels", "unit"]
TRICKY_TEXT = st.text(alphabet=st.sampled_from(list('ab"\\[]{}:, é\n\t\u2028')), max_size=6)
SCALARS = st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False) | TRICKY_TEXT
VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TRICKY_TEXT, inner, max_size=3), max_leaves=12
)
KEYS = st.sampled_from(FIELDS) | TRICKY_TEXT
STYLES = [
    {"separators": (",", ":")},
    {},
    {"indent": 2},
    {"indent": "\t", "ensure_ascii": False},
    {"separators": (" ,\r\n", " :  "), "ensure_ascii": False},
]


def _expected_shape(value: Any) -> tuple[int, int] | None:
    """What ``JsonOutline.shape`` must say of a parsed value (``Limits.check_batch``'s reading of a list)."""
    if not isinstance(value, list):
        return None
    if not value:
        return 0, 0
    return len(value), (len(value[0]) if isinstance(value[0], list) else 1)


@settings(max_examples=400, deadline=None)
@given(pairs=st.lists(st.tuples(KEYS, VALUES), max_size=6), style=st.sampled_from(STYLES))
def test_the_outline_reads_keys_and_array_shapes_as_the_parser_does(
    pairs: list[tuple[str, Any]], style: dict[str, Any]
) -> None:
    _assert_outline_reads(pairs, style)


@settings(max_examples=60, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.sampled_from(FIELDS) | st.sampled_from(["a", 'a"', "é", "\\"]), SCALARS), min_size=65),
    style=st.sampled_from(STYLES),
)
def test_the_outline_reads_many_keys_at_once_as_the_parser_does(
    pairs: list[tuple[str, Any]], style: dict[str, Any]
) -> None:
    _assert_outline_reads(pairs, style)


def _assert_outline_reads(pairs: list[tuple[str, Any]], style: dict[str, Any]) -> None:
    # Written pair by pair, so that a key may occur twice (json.dumps of a dict cannot say that).
    separator, colon = style.get("separators", (", ", ": "))
    text = "{" + separator.join(json.dumps(k, **style) + colon + json.dumps(v, **style) for k, v in pairs) + "}"
    outline = JsonOutline.of(text.encode())
    assert outline is not None, text
    unknown = [key for key, _ in pairs if key not in FIELDS]
    assert outline.first_unknown(FIELDS) == (unknown[0] if unknown else None), text
    last = dict(pairs)  # the last of duplicated keys wins, as it does for the parsers
    for key in {*FIELDS, *last}:
        assert outline.shape(key) == (_expected_shape(last[key]) if key in last else None), (key, text)


@pytest.mark.parametrize(
    "body",
    [b"", b"  ", b"[1]", b'"x"', b"{", b'{"a":1', b'{"a":1}}', b'{"a":1} x', b'{"a":"1}', b'{"a\\":1}', b"{]"],
)
def test_what_is_not_one_object_has_no_outline(body: bytes) -> None:
    assert JsonOutline.of(body) is None


@pytest.mark.parametrize("body", [b'{"\\ud800":1}', b'{"\\x":1}', b'{"caf\xe9":1}'])
def test_an_unreadable_key_is_left_to_the_parser(body: bytes) -> None:
    outline = JsonOutline.of(body)
    assert outline is None or outline.first_unknown(FIELDS) is None


def test_the_structure_scan_finds_every_structural_byte_and_nothing_else() -> None:
    data = np.random.default_rng(5).integers(0, 256, 600_000).astype(np.uint8)  # past one block, every byte value
    offsets, values = _json_outline.structure(data)
    expected = np.flatnonzero(np.isin(data, list(b'[]{}"\\')))
    np.testing.assert_array_equal(offsets, expected)
    np.testing.assert_array_equal(values, data[expected])


def test_long_runs_of_whitespace_cost_one_pass() -> None:
    body = b"{" + b" " * 3_000_000 + b'"labels"' + b"\n" * 3_000_000 + b":" + b"\t" * 100 + b"[1,2]" + b" " * 10 + b"}"
    outline = JsonOutline.of(body)
    assert outline is not None
    assert outline.first_unknown(FIELDS) is None
    assert outline.shape("labels") == (2, 1)
