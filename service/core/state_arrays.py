"""A state's number lists checked at once: the vectorised counterparts of ``service.core.state.number_list``.

A merge reads a thousand states, each with tables of numbers: checking them value by value in Python would take
most of its time. Here a field (or several) is flattened, its types checked in one pass, converted in one
``np.array`` and its range checked in one vectorised comparison; only a refusal goes back to find the value at
fault, so that the StateError still names its path (field, row, column) and the state's index.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import chain
from typing import Any

import numpy as np

from service.core.state import StateError
from service.core.state_batch import Rows

Path = tuple[str | int, ...]


def first_bad(bad: np.ndarray, path: Path, message: str, index: int) -> None:
    """StateError at the first true entry of ``bad`` (its row, and column for a matrix), if any."""
    if bad.any():
        raise StateError((*path, *(int(i) for i in np.argwhere(bad)[0])), message, index)


def exact_keys(state: Any, keys: Sequence[str], path: Path, index: int) -> None:
    """StateError unless ``state`` is a JSON object with exactly ``keys``."""
    if not isinstance(state, Mapping):
        raise StateError(path, f"expected a JSON object, got {type(state).__name__}", index)
    for key in keys:
        if key not in state:
            raise StateError(path, f"missing key {key!r}", index)
    for key in state:
        if key not in keys:
            raise StateError((*path, str(key)[:64]), "unknown key", index)


def floats(value: Any, shape: tuple[int, ...], path: Path, index: int, *, nonnegative: bool = False) -> np.ndarray:
    """A list (of lists, for a 2-D ``shape``) of finite JSON numbers, not booleans, as a float64 array of ``shape``."""
    field = path[-1]
    fields: dict[Any, Any] = {field: value}
    return float_fields(fields, {field: shape}, (field,) if nonnegative else (), path[:-1], index)[field]


def float_fields(
    state: Mapping[Any, Any], shapes: Mapping[Any, tuple[int, ...]], nonnegative: Sequence[Any], path: Path, index: int
) -> dict[Any, np.ndarray]:
    """The fields of ``state`` named in ``shapes``, each a list (of lists, for a 2-D shape) of finite JSON numbers
    (not booleans; ≥ 0 for those in ``nonnegative``), as float64 arrays of their shapes.

    All checked at once, in a few passes over their values together rather than number by number: a merge of a
    thousand states reads a thousand tables.
    """
    lists = {name: _flattened(state[name], shape, (*path, name), index) for name, shape in shapes.items()}
    flat = [x for values in lists.values() for x in values]
    if not set(map(type, flat)) <= {int, float}:
        position = next(i for i, x in enumerate(flat) if type(x) not in (int, float))
        raise StateError(_located(position, lists, shapes, path), "expected a number", index)
    try:
        array = np.array(flat, dtype=np.float64)
    except OverflowError:  # an integer past float64
        array = np.array([float(x) if abs(x) < 2**1023 else math.inf for x in flat], dtype=np.float64)
    bad = ~np.isfinite(array)
    sizes = [len(values) for values in lists.values()]
    if nonnegative:
        floor = np.repeat([name in nonnegative for name in lists], sizes)
        bad |= floor & (array < 0)
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        where = _located(position, lists, shapes, path)
        bound = "a finite number ≥ 0" if where[len(path)] in nonnegative else "a finite number"
        raise StateError(where, f"expected {bound}", index)
    parts = np.split(array, np.cumsum(sizes)[:-1])
    return {name: part.reshape(shapes[name]) for name, part in zip(lists, parts, strict=True)}


def _located(position: int, lists: Mapping[Any, list[Any]], shapes: Mapping[Any, tuple[int, ...]], path: Path) -> Path:
    """The path of the ``position``-th of the fields' values taken together: field, row (and column)."""
    for name, values in lists.items():
        if position < len(values):
            return (*path, name, *_where(position, shapes[name]))
        position -= len(values)
    raise AssertionError("position past the values")  # pragma: no cover - callers pass a found position


def integers(value: Any, size: int, path: Path, index: int) -> np.ndarray:
    """A list of ``size`` counts (JSON integers ≥ 0, within int64) as an int64 array."""
    flat = _flattened(value, (size,), path, index)
    if set(map(type, flat)) - {int} or any(not 0 <= x < 2**63 for x in flat):
        position = next(i for i, x in enumerate(flat) if type(x) is not int or not 0 <= x < 2**63)
        raise StateError((*path, position), "expected a count (an integer ≥ 0)", index)
    return np.array(flat, dtype=np.int64).reshape(size)


def _flattened(value: Any, shape: tuple[int, ...], path: Path, index: int) -> list[Any]:
    """The values of a list of ``shape[0]`` entries (each a list of ``shape[1]`` for a 2-D shape), flattened; or of
    a float64 array of that shape (a parser's, ``stacked``)."""
    if isinstance(value, np.ndarray):
        if value.size == int(np.prod(shape)) and (value.ndim == len(shape) or not value.size):
            listed: list[Any] = value.ravel().tolist()
            return listed
        value = value.tolist()
    if not isinstance(value, list) or len(value) != shape[0]:
        got = str(len(value)) if isinstance(value, list) else type(value).__name__
        raise StateError(path, f"expected {shape[0]} entries, got {got}", index)
    if len(shape) == 1:
        return value
    for row, entry in enumerate(value):
        if not isinstance(entry, list) or len(entry) != shape[1]:
            raise StateError((*path, row), f"expected a list of {shape[1]} numbers", index)
    return [x for entry in value for x in entry]


def _where(position: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The row (and column) of the ``position``-th flattened value."""
    return (position,) if len(shape) == 1 else divmod(position, shape[1])


def stacked(values: Sequence[Any], sizes: Sequence[int], width: int = 0) -> np.ndarray | None:
    """Many states' lists read at once: ``values[s]`` a list of ``sizes[s]`` entries (each a list of ``width`` for
    ``width`` > 0), all finite JSON numbers, as one float64 array of their entries one state after another; None
    when any is otherwise.

    The fast path of a merge: a None sends the caller to the state-by-state reading, which names the value at fault.
    The lists may come as float64 arrays already (a merge body's parser reads each table into one), or as a
    parser's ``Rows``, every state's rows in one array already.
    """
    if isinstance(values, Rows):
        if values.sizes.tolist() != list(sizes):
            return None
        return _stacked_arrays([values.whole], [values.whole.shape[0]], width)
    if values and set(map(type, values)) == {np.ndarray}:
        return _stacked_arrays(values, sizes, width)
    if set(map(type, values)) - {list} or list(map(len, values)) != list(sizes):
        return None
    rows = list(chain.from_iterable(values))
    if width:
        if rows and (set(map(type, rows)) != {list} or set(map(len, rows)) != {width}):
            return None
        rows = list(chain.from_iterable(rows))
    if not set(map(type, rows)) <= _NUMBERS:
        return None
    try:
        array = np.array(rows, dtype=np.float64)
    except OverflowError:
        return None
    if not np.isfinite(array).all():
        return None
    return array.reshape(-1, width) if width else array


_NUMBERS: frozenset[type] = frozenset({int, float})


def _stacked_arrays(values: Sequence[np.ndarray], sizes: Sequence[int], width: int) -> np.ndarray | None:
    """``stacked`` of float64 arrays, each of ``sizes[s]`` entries (rows of ``width``), all finite."""
    if list(map(len, values)) != list(sizes):
        return None
    parts = [value for value in values if value.size] if width else values  # no rows: [] reads as a flat array
    try:
        array = (
            parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else np.zeros((0, width) if width else 0)
        )
    except ValueError:  # rows of another width, or a flat list among rows
        return None
    if array.dtype != np.float64 or array.ndim != (2 if width else 1) or (width and array.shape[1] != width):
        return None
    return array if np.isfinite(array).all() else None


#: The state of a class breakdown or calibration that soft targets left undefined: it merges into undefined.
SOFT_TARGETS_STATE: dict[str, bool] = {"soft_targets": True}


def is_soft_targets(state: Any) -> bool:
    """Whether ``state`` is ``SOFT_TARGETS_STATE`` (a piece left undefined by soft targets)."""
    return isinstance(state, Mapping) and state.keys() == {"soft_targets"} and state["soft_targets"] is True
