"""The states of a merge body read by simdjson, by column (used by ``json_codec``).

A merge of a thousand states with breakdowns is a body of a few MB made of small objects and short lists; a
parser that builds a Python object per number, and a dict per object, spends most of the merge's time there
(issue 15: 50 ms for a thousand states). Here simdjson parses the body once. The first state is read key by
key, and the way each of its objects was read is kept as a plan (which keys; for each a scalar, a list as it
is, a table of numbers, an object of scalars read at once, an object to walk). When every state follows the
first one's plan they become a ``StateBatch`` (``service.core.state_batch``): each value's column, each table
of numbers (under a key the kind names: ``state.array_keys``) read with ``as_buffer`` at C speed and the
tables of a column joined into one float64 array (``Rows``). Else each state is read on its own into dicts and
lists, its tables as float64 arrays. The kind reads an array as it reads the list, with the same checks and the
same errors; indexing a batch gives a state's dict.

``as_buffer`` flattens whatever nests: every '[' in the body must be one that was read (the states' list, a
list of numbers, each row of a table, a list read as it is), else a row like [3, [4]] could pass unseen. And
like the other fast paths, this one gives way to the reference (Pydantic) path for anything it cannot read
plainly: not JSON by simdjson's reading, a top level that is not an object, duplicate or unknown keys,
``states`` missing or not a list, a key simdjson cannot look up. The other fields (``confidence``) are
validated by the request model itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import orjson
import simdjson
from pydantic import BaseModel

from service.api.transport._json_fast import _count_byte, _parsers
from service.core.state import array_keys
from service.core.state_batch import Rows, StateBatch

RequestModel = TypeVar("RequestModel", bound=BaseModel)


def decode_states(
    model: type[RequestModel], data: bytes | bytearray | memoryview
) -> tuple[Sequence[Any], bytes] | None:
    """The states of a merge body, and the body's other fields as a JSON object of their own (to validate with
    the model); None when the model reads no states this way (no ``json_states``) or the reference path decides."""
    field = getattr(model, "json_states", None)
    if field is None:
        return None
    parser = _parsers.take()
    # simdjson copies what it parses into its own padded buffer: a large body (a view of its memory map) is read
    # where it lies, not copied once more first.
    text = memoryview(data).cast("B") if isinstance(data, memoryview) else data
    try:
        try:
            document = parser.parse(text)
        except RuntimeError:  # a view into the parser's last document is alive: a fresh parser
            parser = simdjson.Parser()
            try:
                document = parser.parse(text)
            except (ValueError, RuntimeError):
                return None
        except ValueError:  # not JSON by simdjson's reading (NaN, 1e999, an integer past 64 bits, …)
            return None
        try:
            return _read(document, field, set(model.model_fields), data)
        finally:
            del document  # every view into the document gone before the parser is used again
    finally:
        _parsers.give_back(parser)


def _read(
    document: Any, field: str, fields: set[str], data: bytes | bytearray | memoryview
) -> tuple[Sequence[Any], bytes] | None:
    if not isinstance(document, simdjson.Object):
        return None
    keys = list(document.keys())
    if len(keys) != len(set(keys)) or field not in keys or not fields.issuperset(keys):
        return None  # duplicate keys, no states or an unknown key: the reference path's call and its errors
    states = document[field]
    if not isinstance(states, simdjson.Array):
        return None
    listed = list(states)
    reader = _Reader()
    try:
        read: Sequence[Any] | None = reader.batch(listed)  # by column: states of one shape (the usual merge)
        if read is None:
            reader = _Reader()
            read = [reader.state(state) for state in listed]
        rest = {key: reader.plain(document[key]) for key in keys if key != field}
    except (KeyError, ValueError):  # a key simdjson lists but cannot look up (a NUL in it), a string it cannot hold
        return None
    if reader.duplicates:
        return None  # which of a key's values wins is the reference parser's call
    # ``as_buffer`` flattens: a row like [3, [4]] would pass unseen. Every '[' in the body must be one that was
    # read (the states' list, one per list of numbers and row, those of the plain values); a '[' inside a
    # string sends the body the reference way too.
    if _count_byte(data, b"["[0]) != 1 + reader.brackets:
        return None
    return read, orjson.dumps({field: [], **rest})


class _Reader:
    """Reads states, counting the lists it met (``brackets``).

    The states of a merge mostly share their shape: ``batch`` reads the first state key by key (``state``),
    keeping the way each of its objects was read as a plan (by its path in the state: which keys, and for each a
    scalar, a list as it is, a table of numbers, an object of scalars read at once, an object to walk), then
    every state by those plans into columns, with no more lookups than they have keys. A state of another shape
    ends the batch (None), and the caller reads each state on its own (``state``).
    """

    def __init__(self) -> None:
        self.brackets = 0
        #: Duplicate keys in an object: which value wins is the reference parser's call.
        self.duplicates = False
        # The last settings read, by their text: the states of a merge mostly share them (and then share one dict).
        self._settings: tuple[Any, Any, int] = (None, None, 0)
        self._plans: dict[tuple[str, ...], tuple[tuple[str, int], ...]] = {}
        self._numeric: dict[str, frozenset[str]] = {}

    def state(self, value: Any) -> Any:
        """A state as plain values, its kind's lists of numbers as float64 arrays (not a state: plain)."""
        if type(value) is not _OBJECT:
            return self.plain(value)
        keys = list(value.keys())
        if len(set(keys)) != len(keys):
            self.duplicates = True
        read: dict[str, Any] = {}
        steps = []
        numeric: frozenset[str] = frozenset()
        for key in keys:  # the settings come before the accumulators in the states this service writes
            if key == "settings":
                settings = read[key] = self.settings(value[key])
                endpoint = settings.get("endpoint") if type(settings) is dict else None
                if type(endpoint) is str:
                    found = self._numeric.get(endpoint)
                    numeric = self._numeric[endpoint] = array_keys(endpoint) if found is None else found
                steps.append((key, _SETTINGS))
            else:
                read[key], step = self._item(key, value[key], numeric, ())
                steps.append((key, step))
        self._plans[()] = tuple(steps)
        return read

    def batch(self, states: list[Any]) -> StateBatch | None:
        """``states`` by column when they all have the first one's shape (its plans: the same keys in every
        object, each value of the same kind, numbers where it has numbers); None when one has another shape."""
        if not states:
            return None
        self.state(states[0])  # read key by key: its plans are the shape
        if self.duplicates or type(states[0]) is not _OBJECT:
            return None
        self.brackets = 0
        columns: dict[tuple[str, ...], list[Any]] = {}
        top = self._compiled((), columns)
        try:
            self._columns(states, top)
        except (_Mismatch, KeyError):
            return None
        numbers = {(*path, key) for path, plan in self._plans.items() for key, step in plan if step == _NUMBERS}
        for path in numbers:
            columns[path] = _rows(columns[path])
        objects = {path: tuple(key for key, _ in plan) for path, plan in self._plans.items()}
        return StateBatch(len(states), objects, columns)

    def _compiled(self, path: tuple[str, ...], columns: dict[tuple[str, ...], list[Any]]) -> tuple[Any, ...]:
        """The plan of the object at ``path`` as ``_columns`` follows it: for each key, its step and where its
        values go (their column's ``extend``), or the compiled plan of the object it holds."""
        return tuple(
            (key, step, None, self._compiled((*path, key), columns))
            if step == _WALK
            else (key, step, columns.setdefault((*path, key), []).extend, None)
            for key, step in self._plans[path]
        )

    def _columns(self, values: list[Any], plan: tuple[Any, ...]) -> None:
        """The objects ``values`` (one a state, at one path) read into their columns by the compiled plan, a key at
        a time across all of them: list comprehensions, not a Python step a key and state (``_Mismatch``: one of
        another shape)."""
        size = len(plan)
        if any(type(value) is not _OBJECT for value in values) or any(len(value) != size for value in values):
            raise _Mismatch
        for key, step, extend, child in plan:
            items = [value[key] for value in values]
            kinds = set(map(type, items))
            if step is _SCALAR:
                if _OBJECT in kinds or _ARRAY in kinds:
                    raise _Mismatch
                extend(items)
            elif step is _FLAT:
                if kinds != {_OBJECT}:
                    raise _Mismatch
                # Their lists go uncounted: any sends the body the reference way.
                extend([item.as_dict() for item in items])
            elif step is _NUMBERS:  # each as (bytes, rows, width), joined into one array a column (``_rows``)
                if kinds != {_ARRAY}:
                    raise _Mismatch
                extend([self._numbers_of(item) for item in items])
            elif step is _LIST:
                if kinds != {_ARRAY}:
                    raise _Mismatch
                self.brackets += len(items)  # the lists in them go uncounted: any sends the body the reference way
                extend([item.as_list() for item in items])
            elif step is _SETTINGS:
                extend([self.settings(item) for item in items])
            else:
                self._columns(items, child)

    def _numbers_of(self, item: Any) -> tuple[Any, int, int | None]:
        """A list of numbers (or of rows of them) as (float64 bytes, rows, width); ``_Mismatch`` for anything else."""
        rows = len(item)
        if not rows:
            self.brackets += 1
            return b"", 0, None
        read = self.buffer(item, rows)
        if read is None:
            raise _Mismatch
        return read[0], rows, read[1]

    def settings(self, value: Any) -> Any:
        """A state's settings, plain; the same dict as the last state's when their text is the same."""
        if type(value) is not _OBJECT:
            return self.plain(value)
        text = value.mini
        known, settings, lists = self._settings
        if text != known:
            before = self.brackets
            settings = self.plain(value)
            lists = self.brackets - before
            self._settings = (text, settings, lists)
        else:
            self.brackets += lists
        return settings

    def value(self, value: Any, numeric: frozenset[str], path: tuple[str, ...]) -> Any:
        """Plain values, but the lists of numbers under the keys ``numeric`` names as float64 arrays."""
        if type(value) is not _OBJECT:
            return self.plain(value)  # a list (of names, ids): as it is; a scalar
        keys = list(value.keys())
        if len(set(keys)) != len(keys):
            self.duplicates = True
        if numeric.isdisjoint(keys) and not any(type(value[key]) is _OBJECT for key in keys):
            return self.plain(value)  # nothing to read as arrays here, nor in an object within: all at once
        read = {}
        steps = []
        for key in keys:
            read[key], step = self._item(key, value[key], numeric, path)
            steps.append((key, step))
        self._plans[path] = tuple(steps)
        return read

    def _item(self, key: str, item: Any, numeric: frozenset[str], path: tuple[str, ...]) -> tuple[Any, int]:
        """An object's value at ``key`` read, and how (the plan's step)."""
        kind = type(item)
        if kind is _OBJECT:
            read = self.value(item, numeric, (*path, key))
            return read, _WALK if (*path, key) in self._plans else _FLAT  # walked when it got a plan
        if kind is _ARRAY:
            return (self.numbers(item), _NUMBERS) if key in numeric else (self.plain(item), _LIST)
        return item, _SCALAR

    def numbers(self, value: Any) -> Any:
        """A list of numbers (or of rows of numbers of one length) as a float64 array; anything else plain."""
        rows = len(value)
        if not rows:
            self.brackets += 1
            return np.zeros(0)
        read = self.array(value, rows)
        return self.plain(value) if read is None else read  # not numbers only: as it is, for the kind to name

    def array(self, value: Any, rows: int) -> np.ndarray | None:
        """A list of ``rows`` > 0 numbers, or of rows of numbers of one length, as a float64 array; else None."""
        read = self.buffer(value, rows)
        if read is None:
            return None
        flat = np.frombuffer(read[0], dtype=np.float64)
        return flat if read[1] < 0 else flat.reshape(rows, read[1])

    def buffer(self, value: Any, rows: int) -> tuple[Any, int] | None:
        """``array``'s numbers as float64 bytes, with the rows' width (−1: a flat list of numbers); else None."""
        try:
            numbers = value.as_buffer(of_type="d")
        except TypeError:  # a null, a boolean, a string, an object
            return None
        first = value[0]
        if type(first) is not _ARRAY:
            self.brackets += 1  # a nested list further on shows in the count of brackets
            return numbers, -1
        width = len(first)
        # Rows of ``width`` entries each; an entry that is itself a list shows in the count of brackets.
        for row in value:
            if type(row) is not _ARRAY or len(row) != width:
                return None
        self.brackets += rows + 1
        return numbers, width

    def plain(self, value: Any) -> Any:
        """A value of the document as Python's own values (dicts, lists, numbers, strings, None)."""
        if isinstance(value, simdjson.Object):
            plain: Any = value.as_dict()
        elif isinstance(value, simdjson.Array):
            plain = value.as_list()
        else:
            return value
        self.brackets += _lists(plain)
        return plain


def _rows(read: list[tuple[Any, int, int | None]]) -> Any:
    """A column of lists of numbers (each as bytes, rows and width) as ``Rows``: one array of all their rows, when
    they have one width; else a list of their arrays."""
    widths = {width for _, rows, width in read if rows}
    if len(widths) > 1:
        return [np.zeros(0) if not rows else _shaped(np.frombuffer(data), rows, width) for data, rows, width in read]
    width = widths.pop() if widths else -1
    whole = np.frombuffer(bytearray().join(data for data, _, _ in read), dtype=np.float64)
    sizes = np.array([rows for _, rows, _ in read], dtype=np.int64)
    return Rows(whole if width is None or width < 0 else whole.reshape(-1, width), sizes)


def _shaped(flat: np.ndarray, rows: int, width: int | None) -> np.ndarray:
    return flat if width is None or width < 0 else flat.reshape(rows, width)


def _lists(value: Any) -> int:
    """The lists in a plain value, itself included."""
    kind = type(value)
    if kind is dict:
        found, items = 0, value.values()
    elif kind is list:
        found, items = 1, value
    else:
        return 0
    if _CONTAINERS.isdisjoint(map(type, items)):  # scalars only (a metric's moments, a list of names): at C speed
        return found
    for item in items:
        if type(item) in _CONTAINERS:
            found += _lists(item)
    return found


_CONTAINERS = frozenset({dict, list})
#: How a plan reads a value: a scalar, a list as it is, a list of numbers, an object at once, an object to walk.
_SCALAR, _LIST, _NUMBERS, _FLAT, _WALK, _SETTINGS = range(6)


class _Mismatch(Exception):
    """A state of another shape than the first's."""


_OBJECT = simdjson.Object
_ARRAY = simdjson.Array
