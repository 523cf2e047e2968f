"""The JSON fast path: large bodies parsed straight into NumPy arrays.

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
from typing import Any, TypeVar

import numpy as np
import orjson
import simdjson
from pydantic import BaseModel, ValidationError

RequestModel = TypeVar("RequestModel", bound=BaseModel)


class _ParserPool:
    """A few reusable simdjson parsers, shared by the worker threads.

    A parser keeps the buffers of the largest document it has parsed, which makes the
    next parse about twice as fast, but is not thread-safe. One per thread would keep
    that memory in every thread of the pool for ever; here at most ``keep`` parsers are
    kept, and a thread that finds none free parses with a fresh one that is dropped.
    """

    def __init__(self, keep: int = 1) -> None:
        self.keep = keep
        self._idle: list[simdjson.Parser] = []
        self._lock = threading.Lock()

    def take(self) -> simdjson.Parser:
        """An idle parser, or a new one."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return simdjson.Parser()

    def give_back(self, parser: simdjson.Parser) -> None:
        """Keep ``parser`` for the next request, unless enough are kept already."""
        with self._lock:
            if len(self._idle) < self.keep:
                self._idle.append(parser)


# One kept parser per process: a second one, kept after two large bodies arrived at once,
# held ~25 MB per worker for good (the soak's memory grew 13 % with two, fell with one).
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
    "numbers_or_rows", or "labels" (N class indices, N class names or N×C numbers).
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
        if isinstance(first, str) and kind == "labels":
            return array.as_list(), 1
        if isinstance(first, int) and kind == "labels":
            return np.frombuffer(array.as_buffer(of_type="i"), dtype=np.int64), 1
        if isinstance(first, int | float) and kind in ("numbers", "numbers_or_rows"):
            return np.frombuffer(array.as_buffer(of_type="d"), dtype=np.float64), 1
    except (TypeError, ValueError):
        # as_buffer refuses booleans, nulls, strings, arrays where numbers belong, and
        # integers past int64: the reference path will say which row.
        raise _NotFast from None
    raise _NotFast


def decode_fast(model: type[RequestModel], body: bytes | bytearray) -> RequestModel | None:
    """The request from a large JSON body, or None when the reference path must decide."""
    parser = _parsers.take()
    try:
        try:
            try:
                document = parser.parse(body)
            except RuntimeError:
                # Something still holds a view into this parser's last document: use a fresh parser.
                parser = simdjson.Parser()
                document = parser.parse(body)
        except (ValueError, RuntimeError):
            # Not JSON by simdjson's reading (NaN tokens, 1e999, …), or JSON it cannot hold: an integer
            # past 64 bits (BIGINT_ERROR) or nesting past its depth limit (DEPTH_ERROR) are RuntimeErrors,
            # raised again by the fresh parser above. The reference path explains either way.
            return None
        try:
            return _decode(model, body, document)
        except _NotFast:
            return None
        finally:
            # Every view into the document must be gone before the parser is used again.
            del document
    finally:
        _parsers.give_back(parser)


def _decode(model: type[RequestModel], body: bytes | bytearray, document: Any) -> RequestModel:
    if not isinstance(document, simdjson.Object):
        raise _NotFast
    keys = list(document.keys())
    if len(keys) != len(set(keys)):
        raise _NotFast  # duplicate keys: which one wins is the reference parser's call
    kinds: dict[str, str] = getattr(model, "array_kinds", {})
    arrays: dict[str, Any] = {}
    options: dict[str, Any] = {}
    brackets = 0
    for key in keys:
        value = document[key]
        if kinds.get(key, "names") != "names" and isinstance(value, simdjson.Array):
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
    if body.count(b"[") != brackets:
        raise _NotFast
    placeholders: dict[str, list[Any]] = {key: [] for key in arrays}
    try:
        request = model.model_validate_json(orjson.dumps(options | placeholders))
    except ValidationError:
        raise _NotFast from None  # let the reference path produce the very same error list
    return request.model_copy(update=arrays)
