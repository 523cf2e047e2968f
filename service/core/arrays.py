"""Decoded values (nested lists from JSON, or NumPy arrays) to checked float64 arrays.

The checks run vectorised on the happy path; only when something is wrong do we
walk the values in Python to find the first offending row and column, so that the
error names it exactly.
"""

from __future__ import annotations

import math
from itertools import chain
from typing import Any

import numpy as np

from service.core.errors import BadShape, NotANumber, NotFinite, OutOfRange, capped, counted, quoted

_NUMBER_TYPES = frozenset({int, float})
_FLAT_NOT_ROWS = (
    "expected N rows of C >= 2 numbers, got a flat array of numbers; "
    "for one probability per sample use binary cross-entropy"
)


def describe(value: object) -> str:
    """Short JSON-flavoured description of a value for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the string {quoted(value)}"
    if isinstance(value, list | np.ndarray):  # an array: a JSON array a parser read as one (``_json_states``)
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return quoted(value)


def _number_problem(value: object) -> str | None:
    """Why ``value`` is not a finite JSON number, or None when it is one."""
    if type(value) not in _NUMBER_TYPES:
        return f"expected a number, got {describe(value)}"
    as_float = float(value) if type(value) is float else None
    if as_float is None:  # an int: only too large is possible
        if abs(value) > 1.7976931348623157e308:  # type: ignore[arg-type]
            return "the number is too large for float64"
        return None
    if as_float != as_float:
        return "NaN is not allowed; every number must be finite"
    if as_float in (float("inf"), float("-inf")):
        sign = "-" if as_float < 0 else ""
        return f"{sign}Infinity is not allowed; every number must be finite (a huge exponent overflows to it)"
    return None


def _raise_for_number(field: str, value: object, row: int | None, column: int | None) -> None:
    problem = _number_problem(value)
    if problem is None:
        return
    error = NotANumber if type(value) not in _NUMBER_TYPES else NotFinite
    raise error(field, problem, row=row, column=column)


def all_finite(array: np.ndarray) -> bool:
    """No NaN or infinity in float64 ``array``.

    A NaN or an infinity makes the sum NaN or infinite; a finite sum proves there is none, in
    one fast pass and without a mask as large as the array. (An overflowing sum only costs the
    exact test.)
    """
    with np.errstate(over="ignore", invalid="ignore"):  # inf − inf and 1e308 + 1e308 are only answers here
        total = array.sum()
    return math.isfinite(total) or bool(np.isfinite(array).all())


def check_finite(array: np.ndarray, field: str) -> None:
    """Raise NotFinite at the first NaN or infinity of float64 ``array`` (1-D or 2-D)."""
    if all_finite(array):
        return
    finite = np.isfinite(array)
    first = tuple(int(i) for i in np.argwhere(~finite)[0])
    value = float(array[first])
    what = "NaN" if value != value else ("-Infinity" if value < 0 else "Infinity")
    message = f"{what} is not allowed; every number must be finite"
    row = first[0]
    column = first[1] if len(first) > 1 else None
    raise NotFinite(field, message, row=row, column=column)


def _from_ndarray(values: np.ndarray, field: str, ndims: tuple[int, ...], finite: bool) -> np.ndarray:
    if values.dtype.kind not in "iuf":
        raise NotANumber(field, f"expected an array of numbers, got dtype {capped(str(values.dtype))}")
    if values.ndim not in ndims:
        if ndims == (2,) and values.ndim == 1:
            raise BadShape(field, _FLAT_NOT_ROWS)
        raise BadShape(field, f"expected {_dims_text(ndims)}, got {counted(values.ndim, 'dimension')}")
    array = np.asarray(values, dtype=np.float64)
    if finite:
        check_finite(array, field)
    return array


def _dims_text(ndims: tuple[int, ...]) -> str:
    names = {1: "an array of numbers", 2: "an array of rows (arrays of numbers)"}
    return " or ".join(names[d] for d in ndims)


def float_vector(values: Any, field: str) -> np.ndarray:
    """A 1-D float64 array of finite numbers from a JSON array (or a NumPy array)."""
    if isinstance(values, np.ndarray):
        return _from_ndarray(values, field, (1,), True)
    if not isinstance(values, list):
        raise BadShape(field, f"expected an array of numbers, got {describe(values)}")
    if not _NUMBER_TYPES.issuperset(map(type, values)):
        for row, value in enumerate(values):
            _raise_for_number(field, value, row, None)
    try:
        array = np.array(values, dtype=np.float64)
    except OverflowError:
        for row, value in enumerate(values):
            _raise_for_number(field, value, row, None)
        raise  # pragma: no cover - the walk above always finds the culprit
    check_finite(array, field)
    return array


def float_matrix(values: Any, field: str, *, allow_vector: bool = False, finite: bool = True) -> np.ndarray:
    """An N×C float64 array from a JSON array of equal-length rows of finite numbers.

    With ``allow_vector`` a flat array of numbers is accepted too and returned 1-D.
    An empty array gives shape (0, 0). With ``finite=False`` the caller takes over the
    finite check (``check_finite``), before it reports any other error.
    """
    if isinstance(values, np.ndarray):
        return _from_ndarray(values, field, (1, 2) if allow_vector else (2,), finite)
    if not isinstance(values, list):
        raise BadShape(field, f"expected {_dims_text((1, 2) if allow_vector else (2,))}, got {describe(values)}")
    if not values:
        return np.empty((0, 0))
    if not isinstance(values[0], list):
        if allow_vector:
            return float_vector(values, field)
        if type(values[0]) in _NUMBER_TYPES:
            raise BadShape(field, _FLAT_NOT_ROWS)
    width = None
    for row, entry in enumerate(values):
        if not isinstance(entry, list):
            expected = "an array of numbers (one row per sample)"
            raise BadShape(field, f"expected {expected}, got {describe(entry)}", row=row)
        if width is None:
            width = len(entry)
        elif len(entry) != width:
            raise BadShape(
                field,
                f"row has {counted(len(entry), 'value')} but row 0 has {width}; every row needs the same length",
                row=row,
            )
    if not _NUMBER_TYPES.issuperset(map(type, chain.from_iterable(values))):
        _raise_first_bad_number(values, field)
    try:
        array = np.array(values, dtype=np.float64)
    except OverflowError:
        _raise_first_bad_number(values, field)
        raise  # pragma: no cover - the walk above always finds the culprit
    if finite:
        check_finite(array, field)
    return array


def _raise_first_bad_number(rows: list[list[Any]], field: str) -> None:
    for row, entry in enumerate(rows):
        for column, value in enumerate(entry):
            _raise_for_number(field, value, row, column)


def nonnegative_weights(values: Any, field: str, length: int | None, what: str) -> np.ndarray:
    """A 1-D array of finite, non-negative weights, of ``length`` entries when given (one per ``what``: "row")."""
    weights = float_vector(values, field)
    if length is not None and weights.shape[0] != length:
        there = "there is" if length == 1 else "there are"
        raise BadShape(field, f"has {counted(weights.shape[0], 'value')} but {there} {counted(length, what)}")
    negative = np.flatnonzero(weights < 0)
    if negative.size:
        row = int(negative[0])
        raise OutOfRange(field, f"weight {quoted(float(weights[row]))} is negative; weights must be >= 0", row=row)
    return weights


def first_rows(mask: np.ndarray, limit: int = 20) -> list[int]:
    """Indices of the first ``limit`` true entries of a 1-D mask."""
    return [int(i) for i in np.flatnonzero(mask)[:limit]]
