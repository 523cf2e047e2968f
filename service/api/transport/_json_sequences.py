"""The JSON fast paths of ``token_logprobs`` (issue 16): S lists of log-probabilities or nulls, straight into one
flat float64 array with sequence offsets (``Sequences``), without a Python object per number.

- ``decode_logprob_sequences`` (``json_codec``, first): the field's own text, read before anything else;
- ``decode_completions`` (``json_codec``, before the outline): the ``completions`` form read down to the two
  lists of each object that the core reads, never its ``top_logprobs`` (``json_codec`` then applies the
  outline's batch limits to what it read, so a 413 names the same field as on the other paths).

When the first gives way, ``_json_fast`` leaves the field (kind "sequences") to the reference path, which names
the sequence and position of what is wrong.

simdjson cannot put a null in a float buffer. The first copies the field's text with every ``null`` written as
``8e88`` (as long, and a value no log-probability has: anything above 1e-9 is refused); simdjson then exports
the rows flat (``as_buffer``), and the sentinels become NaN, the core's null (``sequence_forms``). Only what
it can prove well-formed takes this path: no string or object in the field's text, one '[' per row plus the
field's own, and as many sentinels after parsing as nulls replaced (a sentinel sent as a number fails that).
Anything else returns None and the body takes the generic path, whose errors name the sequence and position;
the values themselves (above 0, the −9999 placeholder) are checked by the core either way, so both paths give
the same answers and errors.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import numpy as np
import orjson
import simdjson
from pydantic import BaseModel, ValidationError

from service.api.transport._json_outline import JsonOutline
from service.core.sequence_forms import Sequences

RequestModel = TypeVar("RequestModel", bound=BaseModel)

#: The field this path reads, and the kind its request model gives it in ``array_kinds``.
FIELD = "token_logprobs"
KIND = "sequences"
#: What a null is written as before simdjson reads the field: as long as ``null``, and far above 0.
SENTINEL = b"8e88"
_SENTINEL_VALUE = 8e88
_COMPLETIONS_KEY = re.compile(rb'"completions"')
_N = ord("n")
_NULL = np.frombuffer(b"null", dtype=np.uint8)
_SENTINEL_BYTES = np.frombuffer(SENTINEL, dtype=np.uint8)
_NULL_OFFSETS = np.arange(4)


def _flat(text: bytes | bytearray, nulls: int, opened: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The rows of ``text`` (an array of arrays of numbers, nulls written as the sentinel, ``opened`` '[' in all)
    flat, and their offsets; None unless every row is an array of numbers and exactly ``nulls`` values are the
    sentinel."""
    parser = simdjson.Parser()
    document: Any = None
    try:
        document = parser.parse(text)
        if not isinstance(document, simdjson.Array):
            return None
        lengths = []
        for row in document:
            if not isinstance(row, simdjson.Array):
                return None
            lengths.append(len(row))
        flat = np.frombuffer(document.as_buffer(of_type="d"), dtype=np.float64).copy() if lengths else np.empty(0)
    except (ValueError, TypeError, RuntimeError):
        # Not JSON by simdjson's reading (1e999, NaN), or values as_buffer refuses (booleans, integers past
        # 64 bits): the reference path says which.
        return None
    finally:
        document = None  # every view into the document goes before the parser does
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    # as_buffer flattens: a row like [3, [4]] would pass unseen, so every '[' must be a row's (or the field's).
    if flat.shape[0] != offsets[-1] or opened != len(lengths) + 1:
        return None
    missing = flat == _SENTINEL_VALUE
    if int(np.count_nonzero(missing)) != nulls:
        return None
    flat[missing] = np.nan
    return flat, offsets


def _completion_lists(array: Any) -> list[dict[str, Any]] | None:
    """The ``token_logprobs`` and ``tokens`` of each completions ``logprobs`` object of a parsed array, as plain
    lists; the rest of each object (``top_logprobs``: a dictionary a position) is never built. None unless every
    item is an object without duplicate keys whose two lists are lists (the core checks what they hold)."""
    if not isinstance(array, simdjson.Array):
        return None
    objects = []
    for item in array:
        if not isinstance(item, simdjson.Object) or len(set(item.keys())) != len(item):
            return None  # duplicate keys too: which one wins is the reference parser's call
        read = {}
        for key in ("token_logprobs", "tokens"):
            value = item.get(key)
            if value is not None:
                if not isinstance(value, simdjson.Array):
                    return None
                read[key] = value.as_list()
        objects.append(read)
    return objects


def decode_completions(model: type[RequestModel], body: bytes | bytearray | memoryview) -> RequestModel | None:
    """The request, its ``completions`` read down to the two lists of each object the core reads; None when the
    generic paths must decide (an unknown or duplicate key, anything unexpected: they name it).

    Called before the body's outline: on a body of 10⁶ token strings and as many ``top_logprobs`` objects, the
    outline's string scans cost several times this parse, which builds no Python object but the tokens.
    """
    if getattr(model, "array_kinds", {}).get("completions") != "objects":
        return None
    if _COMPLETIONS_KEY.search(body) is None:  # re reads a memoryview as it is (`in` would look for an integer)
        return None  # another form: parsing it here would cost more than it gives
    parser = simdjson.Parser()
    document: Any = None
    try:
        document = parser.parse(bytes(body))
        if not isinstance(document, simdjson.Object):
            return None
        keys = list(document.keys())
        if "completions" not in keys or len(keys) != len(set(keys)) or not model.model_fields.keys() >= set(keys):
            return None
        objects = _completion_lists(document["completions"])
        if objects is None:
            return None
        options: dict[str, Any] = {}
        for key in keys:
            if key == "completions":
                continue
            value = document[key]
            if isinstance(value, simdjson.Array):
                options[key] = value.as_list()
            else:
                options[key] = value.as_dict() if isinstance(value, simdjson.Object) else value
        request = model.model_validate_json(orjson.dumps({**options, "completions": []}))
    except (ValueError, TypeError, RuntimeError, ValidationError, orjson.JSONEncodeError):
        return None
    finally:
        document = None  # every view into the document goes before the parser does
    return request.model_copy(update={"completions": objects})


def _field_text(outline: JsonOutline, key: str) -> tuple[int, int, int] | None:
    """Where the array that is the value of the top-level ``key`` starts and ends in the body (end exclusive),
    and how many brackets and braces open inside it (its own included), from the outline's marks."""
    spans = [(open_, close) for name, open_, close in outline.top_level_arrays() if name == key]
    if len(spans) != 1:
        return None
    open_, close = spans[0]
    opened = int(np.count_nonzero(outline.opening[open_ : close + 1]))
    return int(outline.marks[open_]), int(outline.marks[close]) + 1, opened


def decode_logprob_sequences(
    model: type[RequestModel], body: bytes | bytearray | memoryview, outline: JsonOutline | None
) -> RequestModel | None:
    """The request, its ``token_logprobs`` read as ``Sequences``; None when the generic paths must decide."""
    span = None
    if outline is not None and getattr(model, "array_kinds", {}).get(FIELD) == KIND:
        span = _field_text(outline, FIELD)
    if span is None:
        return None
    start, end, opened = span
    view = memoryview(body).cast("B")
    sequences = _logprob_lists(bytearray(view[start:end]), opened)
    if sequences is None:
        return None
    try:
        # The rest of the body (the field emptied to []) is small: the model validates it as on the reference path.
        request = model.model_validate_json(b"".join((view[:start], b"[]", view[end:])))
    except ValidationError:
        return None
    return request.model_copy(update={FIELD: sequences})


def _logprob_lists(text: bytearray, opened: int) -> Sequences | None:
    """``token_logprobs`` from its text (a copy, written into), nulls written as the sentinel first; ``opened`` is
    how many '[' the outline found in it (no string or object inside: every mark is a bracket)."""
    if b'"' in text or b"{" in text:
        return None
    data = np.frombuffer(text, dtype=np.uint8)
    # In a text of numbers and brackets an 'n' can only start "null" (or a NaN the reference path refuses).
    starts = np.flatnonzero(data == _N)
    if starts.size:
        if starts[-1] + 4 > data.shape[0]:
            return None
        letters = data[starts[:, None] + _NULL_OFFSETS]
        if not np.array_equal(letters, np.broadcast_to(_NULL, letters.shape)):
            return None
        data[starts[:, None] + _NULL_OFFSETS] = _SENTINEL_BYTES
    read = _flat(text, int(starts.size), opened)
    return None if read is None else Sequences(FIELD, *read)
