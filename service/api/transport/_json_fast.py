"""The JSON fast path: large bodies parsed straight into NumPy arrays (used by ``json_codec`` alone).

Long because it is one parser: the whole-document parse and the slice-by-slice one share its checks.

``simdjson`` parses the body once; each array field is exported with ``as_buffer``
as a contiguous float64 / int64 buffer, without a Python object per number. The
scalar options are re-serialised (a few bytes) and validated by the same Pydantic
model as on the reference path.

The fast path only ever accepts what it can prove well-formed. Anything else (NaN
tokens, non-numbers, ragged or nested rows, duplicate keys, an odd bracket count)
makes it return None, and the caller decodes the body on the reference path, whose
checks name the field, row and column. So both paths give the same numbers and the
same errors by construction, and the fast one never has to reproduce a message.
"""

from __future__ import annotations

import threading
from typing import Any, NamedTuple, TypeVar

import numpy as np
import orjson
import simdjson
from pydantic import BaseModel, ValidationError

from service.api.transport._idle import IdleDrop
from service.api.transport._json_outline import JsonOutline

RequestModel = TypeVar("RequestModel", bound=BaseModel)


class _ParserPool:
    """A few reusable simdjson parsers, shared by the worker threads.

    A parser keeps the buffers of the largest document it has parsed (about 3× the text), which makes
    the next parse about twice as fast, and spares it fresh memory, whose page faults cost most on a
    busy machine (a 64 MB completions body: 210 MB to fault in, 100–400 ms). But a parser is not
    thread-safe, and one per thread would keep that memory in every thread of the pool for ever: here
    at most ``keep`` parsers are kept, a thread that finds none free parses with a fresh one that is
    dropped, and the kept ones are dropped too once ``idle_seconds`` pass with no parse, so that a
    worker holds the memory while large bodies keep coming and gives it back soon after.
    """

    def __init__(self, keep: int = 1, idle_seconds: float = 10.0) -> None:
        self.keep = keep
        self._idle: list[simdjson.Parser] = []
        self._lock = threading.Lock()
        self._idle_drop = IdleDrop(idle_seconds, self._lock, self._idle.clear)

    def take(self) -> simdjson.Parser:
        """An idle parser, or a new one."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return simdjson.Parser()

    def give_back(self, parser: simdjson.Parser) -> None:
        """Keep ``parser`` for the next request, unless enough are kept already; drop it when unused."""
        with self._lock:
            if len(self._idle) < self.keep:
                self._idle.append(parser)
            self._idle_drop.used()

    def kept(self) -> int:
        """How many parsers are kept now."""
        with self._lock:
            return len(self._idle)


# One kept parser per process, given back 10 s after the last parse: a second one, kept after two large bodies
# arrived at once, held ~25 MB more per worker (the soak's memory grew 13 % with two, fell with one).
_parsers = _ParserPool()


class _NotFast(Exception):
    """The body is not provably well-formed; decode it on the reference path."""


def _matrix(array: Any, n: int) -> np.ndarray:
    """An N×C float64 array from rows of equal length holding only numbers."""
    width = len(array[0])
    flat = np.frombuffer(array.as_buffer(of_type="d"), dtype=np.float64)
    if flat.shape[0] != n * width or any(len(row) != width for row in array):
        raise _NotFast
    return flat.reshape(n, width)


def _convert(kind: str, array: Any) -> tuple[Any, int]:
    """The field as an array (or a list of names), and how many '[' its JSON text holds.

    ``kind`` says what the field may hold: "rows" (N×C numbers), "numbers" (N numbers),
    "numbers_or_rows", "labels" (N class indices, N class names or N×C numbers), or "ids" (N strings or N
    integers).
    """
    n = len(array)
    if n == 0:
        return [], 1
    first = array[0]
    try:
        if isinstance(first, simdjson.Array) and kind in ("rows", "numbers_or_rows", "labels"):
            return _matrix(array, n), n + 1
        if isinstance(first, bool):
            raise _NotFast
        if isinstance(first, str) and kind in ("labels", "ids"):
            return array.as_list(), 1
        if isinstance(first, int) and kind in ("labels", "ids"):
            return np.frombuffer(array.as_buffer(of_type="i"), dtype=np.int64), 1
        if isinstance(first, int | float) and kind in ("numbers", "numbers_or_rows"):
            return np.frombuffer(array.as_buffer(of_type="d"), dtype=np.float64), 1
    except (TypeError, ValueError):
        # as_buffer refuses booleans, nulls, strings, arrays where numbers belong, and
        # integers past int64: the reference path will say which row.
        raise _NotFast from None
    raise _NotFast


def _count_byte(body: bytes | bytearray | memoryview, value: int) -> int:
    """How many times the byte ``value`` occurs in ``body``: NumPy in cache-sized blocks (~4× bytes.count)."""
    data = np.frombuffer(body, dtype=np.uint8)
    block = 1 << 18
    found = np.empty(min(block, data.shape[0]), dtype=bool)
    count = 0
    for start in range(0, data.shape[0], block):
        piece = data[start : start + block]
        hits = found[: piece.shape[0]]
        np.equal(piece, value, out=hits)
        count += int(np.count_nonzero(hits))
    return count


def decode_fast(
    model: type[RequestModel],
    body: bytes | bytearray | memoryview,
    outline: JsonOutline | None = None,
) -> RequestModel | None:
    """The request from a large JSON body, or None when the reference path must decide.

    ``outline`` is the body's ``JsonOutline`` when the caller has it already.
    """
    parser = _parsers.take()
    try:
        try:
            matrices = _outline(body, getattr(model, "array_kinds", {}), outline)
            sliced: dict[str, np.ndarray] = {}
            if matrices is not None:
                body, sliced = _parse_sliced(parser, body, matrices)
            try:
                document = parser.parse(body)
            except RuntimeError:
                # Something still holds a view into this parser's last document: use a fresh parser.
                parser = simdjson.Parser()
                document = parser.parse(body)
        except (ValueError, RuntimeError, _NotFast):
            # Not JSON by simdjson's reading (NaN tokens, 1e999, …), or JSON it cannot hold: an integer
            # past 64 bits (BIGINT_ERROR) or nesting past its depth limit (DEPTH_ERROR) are RuntimeErrors,
            # raised again by the fresh parser above; or rows a slice could not vouch for (_NotFast).
            # The reference path explains either way.
            return None
        try:
            return _decode(model, body, document, sliced)
        except _NotFast:
            return None
        finally:
            # Every view into the document must be gone before the parser is used again.
            del document
    finally:
        _parsers.give_back(parser)


def _decode(
    model: type[RequestModel], body: bytes | bytearray | memoryview, document: Any, sliced: dict[str, np.ndarray]
) -> RequestModel:
    if not isinstance(document, simdjson.Object):
        raise _NotFast
    keys = list(document.keys())
    if len(keys) != len(set(keys)):
        raise _NotFast  # duplicate keys: which one wins is the reference parser's call
    if not model.model_fields.keys() >= set(keys):
        # An unknown key: json_codec names the first one. Checked before any lookup, as document[key]
        # scans the object: 100,000 keys took a minute. Past here there are at most as many as fields.
        raise _NotFast
    kinds: dict[str, str] = getattr(model, "array_kinds", {})
    arrays: dict[str, Any] = {}
    options: dict[str, Any] = {}
    brackets = 0
    for key in keys:
        value = document[key]
        if key in sliced:
            arrays[key] = sliced[key]  # parsed slice by slice; here it is an empty placeholder array
            brackets += 1
        elif kinds.get(key, "names") != "names" and isinstance(value, simdjson.Array):
            arrays[key], count = _convert(kinds[key], value)
            brackets += count
        elif isinstance(value, simdjson.Array | simdjson.Object):
            if len(value) > 1000:
                raise _NotFast
            options[key] = value.as_list() if isinstance(value, simdjson.Array) else value.as_dict()
            brackets += orjson.dumps(options[key]).count(b"[")
        else:
            options[key] = value
    # as_buffer flattens: a row like [3, [4]] would pass unseen. Every '[' in the body must
    # be one we accounted for (a '[' inside a string also sends the body the reference way).
    if _count_byte(body, b"["[0]) != brackets:
        raise _NotFast
    placeholders: dict[str, list[Any]] = {key: [] for key in arrays}
    try:
        request = model.model_validate_json(orjson.dumps(options | placeholders))
    except ValidationError:
        raise _NotFast from None  # let the reference path produce the very same error list
    return request.model_copy(update=arrays)


# --- Large matrices, slice by slice -------------------------------------------------------------
#
# simdjson's document for a whole body takes about 4× the body in memory (a tape entry of 16 bytes
# per number, 4 bytes per structural character, a padded copy of the text): 40 MB for the 9.3 MB of
# 100,000 × 10 probabilities. So a large N×C field is located in the text first, with NumPy scans
# for brackets, quotes and commas, and its rows are parsed by simdjson a slice of about
# SLICE_BYTES at a time, straight into the float64 result. What is left of the body (the field
# replaced by []) is parsed as before. Anything the scans cannot vouch for (a backslash anywhere,
# a bracket or brace inside a string, nesting past rows, a row of another length, a key that is
# not followed by ':') leaves the body to the whole-document parse, and so to the same checks.

#: A rows field whose text is at least this long is parsed slice by slice.
SLICED_MIN_BYTES = 1 << 20
#: About this much text per simdjson parse of a slice of rows: the slice and simdjson's padded copy of it stay
#: small, in the cache and in heap memory the next slice reuses.
SLICE_BYTES = 1 << 18


class _Matrix(NamedTuple):
    """Where a large rows field sits in the body: its key, its brackets, and its rows' brackets."""

    key: str
    open: int
    close: int
    row_opens: np.ndarray
    row_closes: np.ndarray


def _outline(
    body: bytes | bytearray | memoryview, kinds: dict[str, str], outline: JsonOutline | None = None
) -> list[_Matrix] | None:
    """The large rows fields of a JSON object body, or None to parse the body whole.

    ``outline`` is the body's, when the caller has it already (json_codec screens every body with it).
    """
    if len(body) < SLICED_MIN_BYTES:
        return None
    outline = JsonOutline.of(body) if outline is None else outline
    # Escapes (a quote might not end a string), brackets in strings, objects inside, rows nested deeper.
    if outline is None or not outline.plain or outline.depth.max() > 3:
        return None
    matrices: list[_Matrix] = []
    for key, open_, close in outline.top_level_arrays():
        start, end = int(outline.marks[open_]), int(outline.marks[close])
        if end - start < SLICED_MIN_BYTES or close - open_ < 3:
            continue
        if kinds.get(key) not in ("rows", "numbers_or_rows", "labels"):
            return None
        row_opens, row_closes = outline.children(open_, close)
        matrices.append(_Matrix(key, start, end, row_opens, row_closes))
    return matrices or None


def _parse_sliced(
    parser: Any, body: bytes | bytearray | memoryview, outline: list[_Matrix]
) -> tuple[bytes, dict[str, np.ndarray]]:
    """Each outlined field as an N×C float64 array, and the body with those fields emptied to []."""
    data = np.frombuffer(body, dtype=np.uint8)
    view = memoryview(body).cast("B")
    matrices: dict[str, np.ndarray] = {}
    for matrix in outline:
        matrices[matrix.key] = _rows(parser, data, view, matrix)
    pieces, position = [], 0
    for matrix in outline:
        pieces.append(view[position : matrix.open + 1])
        position = matrix.close
    pieces.append(view[position:])
    return b"".join(pieces), matrices


def _rows(parser: Any, data: np.ndarray, view: memoryview, matrix: _Matrix) -> np.ndarray:
    """The rows of ``matrix`` parsed a slice at a time; _NotFast unless every row holds C numbers."""
    opens, closes = matrix.row_opens, matrix.row_closes
    if not np.all(opens[1:] > closes[:-1]) or not np.all(closes > opens):
        raise _NotFast
    n = opens.shape[0]
    # Only whitespace before the first row and after the last one; the text between rows is
    # checked by simdjson within a slice, and here where one slice ends and the next begins.
    if bytes(view[matrix.open + 1 : int(opens[0])]).strip() or bytes(view[int(closes[-1]) + 1 : matrix.close]).strip():
        raise _NotFast
    mean_row = max(1, (matrix.close - matrix.open) // n)
    per_slice = max(1, SLICE_BYTES // mean_row)
    width = -1
    result: np.ndarray | None = None
    scratch = np.empty(0, dtype=bool)  # one buffer for every slice's comma mask
    for first in range(0, n, per_slice):
        last = min(n, first + per_slice)
        start, end = int(opens[first]), int(closes[last - 1]) + 1
        if scratch.shape[0] < end - start:
            scratch = np.empty(end - start, dtype=bool)
        is_comma = scratch[: end - start]
        np.equal(data[start:end], ord(","), out=is_comma)
        commas = np.flatnonzero(is_comma)
        # Commas inside each row: its C − 1.
        inside = np.searchsorted(commas, closes[first:last] - start) - np.searchsorted(
            commas, opens[first:last] - start
        )
        if width < 0:
            width = int(inside[0]) + 1
            if width < 2:
                raise _NotFast  # [] and [x] rows look alike to a comma count; let the reference path decide
            result = np.empty((n, width))
        if np.any(inside != width - 1):
            raise _NotFast
        try:
            document = parser.parse(b"".join((b"[", view[start:end], b"]")))
            flat = np.frombuffer(document.as_buffer(of_type="d"), dtype=np.float64)
        except (ValueError, TypeError, RuntimeError):
            raise _NotFast from None
        finally:
            document = None
        if flat.shape[0] != (last - first) * width:
            raise _NotFast
        if last < n and bytes(view[end : int(opens[last])]).strip() != b",":
            raise _NotFast
        assert result is not None
        result[first:last] = flat.reshape(last - first, width)
    assert result is not None
    return result
