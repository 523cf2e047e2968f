"""The states of a merge by column: the same accessors over a list of states and over a ``StateBatch``.

A merge reads a thousand states. Read into a thousand nested dicts, and then each value taken out of every
dict again, they cost more than the merging. So a merge body's parser (``service.api.transport._json_states``)
gives the states of one shape (the same keys in every object, each value of the same kind) as a ``StateBatch``:
for each path of an object, its keys; for each path of a value, the values of all the states in one list
(``column``). The merge's fast paths (``score_states``, the breakdowns' and calibration's ``read_merged``,
``MomentTable.read_many``) read them through ``shared_keys``, ``column``, ``present`` and ``part``, which do
the same over a plain list of states (what the Python client and the tests pass). Indexing a batch rebuilds
that state's dict, for the state-by-state reading that names a fault.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, overload

import numpy as np

Path = tuple[str, ...]


class StateBatch(Sequence[Any]):
    """States of one shape held by column: ``objects`` the keys of each object by its path (``()`` the state
    itself), ``columns`` the values of every state by path (for each path that is not an object's)."""

    def __init__(self, size: int, objects: Mapping[Path, tuple[str, ...]], columns: Mapping[Path, list[Any]]) -> None:
        self.size = size
        self.objects = dict(objects)
        self.columns = dict(columns)

    def __len__(self) -> int:
        return self.size

    @overload
    def __getitem__(self, index: int) -> Any: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Any]: ...

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.size))]
        if not -self.size <= index < self.size:
            raise IndexError(index)
        return self._rebuilt((), index % self.size)

    def _rebuilt(self, path: Path, index: int) -> Any:
        keys = self.objects.get(path)
        if keys is None:
            return self.columns[path][index]
        return {key: self._rebuilt((*path, key), index) for key in keys}

    def part(self, path: Path) -> StateBatch:
        """The values at ``path`` of every state (an object in each), as a batch of their own."""
        size = len(path)
        objects = {key[size:]: keys for key, keys in self.objects.items() if key[:size] == path}
        columns = {key[size:]: values for key, values in self.columns.items() if key[:size] == path}
        return StateBatch(self.size, objects, columns)


class Rows(Sequence[np.ndarray]):
    """A column of tables (or lists) of numbers held as one float64 array: ``whole`` their rows one state after
    another, ``sizes`` each state's number of rows. Indexing gives one state's (a view: a table of no rows is an
    empty flat array, as the parser reads ``[]``); ``state_arrays.stacked`` takes ``whole`` as it is."""

    def __init__(self, whole: np.ndarray, sizes: np.ndarray) -> None:
        self.whole = whole
        self.sizes = sizes
        self.offsets = np.concatenate(([0], np.cumsum(sizes))).tolist()

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @overload
    def __getitem__(self, index: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[np.ndarray]: ...

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        index %= len(self)
        start, end = self.offsets[index], self.offsets[index + 1]
        return self.whole[start:end] if end > start else np.zeros(0)


def shared_keys(states: Sequence[Any], path: Path = ()) -> frozenset[str] | None:
    """The keys of the objects at ``path`` when every state has one there, with the same keys; else None."""
    if isinstance(states, StateBatch):
        keys = states.objects.get(path)
        return None if keys is None else frozenset(keys)
    values = list(states)
    for depth in range(len(path) + 1):
        if not values or set(map(type, values)) != {dict}:
            return None
        first = values[0].keys()
        if not all(value.keys() == first for value in values):
            return None
        if depth == len(path):
            return frozenset(first)
        if path[depth] not in first:
            return None
        values = [value[path[depth]] for value in values]
    return None  # pragma: no cover - the loop returns at depth == len(path)


def column(states: Sequence[Any], path: Path) -> list[Any]:
    """The value at ``path`` of every state (each object along the path a dict with the key; else KeyError or
    TypeError, which callers avoid by checking ``shared_keys`` first)."""
    if isinstance(states, StateBatch):
        return states.columns[path]
    values = list(states)
    for key in path:
        values = [value[key] for value in values]
    return values


def present(states: Sequence[Any], path: Path) -> bool | None:
    """Whether every state has an object at ``path`` (True), every state null there (False); None otherwise."""
    if shared_keys(states, path) is not None:
        return True
    if isinstance(states, StateBatch):
        values = states.columns.get(path)
    else:
        parent = shared_keys(states, path[:-1])
        values = column(states, path) if parent is not None and path[-1] in parent else None
    return False if values is not None and all(value is None for value in values) else None


def part(states: Sequence[Any], path: Path) -> Sequence[Any]:
    """The objects at ``path`` of every state, as states of their own (``present`` is true there)."""
    return states.part(path) if isinstance(states, StateBatch) else column(states, path)
