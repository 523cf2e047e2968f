"""The JSON fast paths of ``token_logprobs`` and ``completions`` (issue 16): S lists of log-probabilities or
nulls, straight into one flat float64 array with sequence offsets (``Sequences``), without a Python object per
number (``token_logprobs``) or per token text (``completions``).

- ``decode_logprob_sequences``: the field's own text. Called first without an outline (``json_codec.
  decode_without_containers``, before the body's containers are counted): the body's few quotes, found one by one
  with memchr, place the field (the key once, at depth 1, outside any string; its array up to the last ']' before
  the next string), where the outline's NumPy scans and the count of containers cost a third of the parse on a
  20 MB body of numbers. A body it cannot place so (an escape in a string, more than ``_QUOTE_HOPS`` quotes, a
  duplicate key, options the model refuses) goes the generic way, where it is called again with the outline;
- ``decode_completions`` (``json_codec``, before the outline): the ``completions`` form read into ``Sequences``,
  never its ``top_logprobs``: the log-probabilities as numbers, and each token's UTF-8 byte count from simdjson's
  own writing of the ``tokens`` (``mini``: UTF-8 as it is, escapes only for ``"``, ``\\`` and the control
  characters, each one byte), counted with NumPy; anything unusual (a token that is no string, a log-probability
  other than a number or a sequence's first null) reads the two lists of each object instead, for the core to
  read and name (``json_codec`` then applies the outline's batch limits to what it read, so a 413 names the
  same field as on the other paths).

When the first gives way, ``_json_fast`` leaves the field (kind "sequences") to the reference path, which names
the sequence and position of what is wrong.

simdjson cannot put a null in a float buffer. The first writes every ``null`` of the field's text as ``8e88``
(as long, and a value no log-probability has: anything above 1e-9 is refused; in place in a writable body, put
back once simdjson has copied it); simdjson then exports the rows flat (``as_buffer``), and the sentinels become
NaN, the core's null (``sequence_forms``), their positions handed to the core as ``Sequences.missing``. Only what
it can prove well-formed takes this path: no string or object in the field's text, one '[' per row plus the
field's own, and as many sentinels after parsing as nulls replaced (a sentinel sent as a number fails that).
Anything else returns None and the body takes the generic path, whose errors name the sequence and position;
the values themselves (above 0, the −9999 placeholder) are checked by the core either way, so both paths give
the same answers and errors.

Over 300 lines: two fast paths, each with the checks that prove what it reads well-formed.
"""

from __future__ import annotations

import array as array_module
import math
import mmap
import re
from typing import Any, Protocol, TypeVar

import numpy as np
import orjson
import simdjson
from pydantic import BaseModel, ValidationError

from service.api.transport._json_fast import _parsers
from service.api.transport._json_outline import JsonOutline
from service.core.sequence_forms import Sequences, with_token_bytes

RequestModel = TypeVar("RequestModel", bound=BaseModel)

#: The field this path reads, and the kind its request model gives it in ``array_kinds``.
FIELD = "token_logprobs"
KIND = "sequences"
#: What a null is written as before simdjson reads the field: as long as ``null``, and far above 0.
SENTINEL = b"8e88"
_SENTINEL_VALUE = 8e88
_COMPLETIONS_KEY = re.compile(rb'"completions"')
_KEY = b'"' + FIELD.encode() + b'"'
#: What follows the key of the field this path reads: a colon and the array's '[', JSON whitespace around.
_VALUE_ARRAY = re.compile(rb"[ \t\n\r]*:[ \t\n\r]*\[")
#: How much of a ``token_logprobs`` field simdjson parses at a time (whole rows: ``_pieces``): its copy, index and
#: tape stay in the cache, and the parser kept between requests grows to a few megabytes, not three times the field.
PIECE_BYTES = 1 << 20
#: How many quotes a body may hold for ``_field_span`` to find them one by one (memchr): a ``token_logprobs``
#: body has its keys' and its options' (two a document id); one with more is read by the outline.
_QUOTE_HOPS = 4096
#: How much of a body's end ``_last_bracket`` reads for the field's last ']' and the body's '}'.
_TAIL_BYTES = 256
#: How many quotes ``_mentions`` looks at one by one (memchr from each to the next) before a regular expression
#: reads the rest: a body of another form has a handful, a completions body its key among its first few.
_KEY_HOPS = 4096
#: How many nulls ``_null_starts`` finds one by one (memchr) before NumPy compares every byte.
_NULL_HOPS = 4096
_N = ord("n")
_NULL = np.frombuffer(b"null", dtype=np.uint8)
_SENTINEL_BYTES = np.frombuffer(SENTINEL, dtype=np.uint8)
_NULL_OFFSETS = np.arange(4)
_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_OPEN_ARRAY, _CLOSE_ARRAY = ord("["), ord("]")
#: What follows the backslash of an escape in simdjson's own writing of a string (``mini``), each escape one byte
#: of the string: two characters (``\n``, ``\"``, …), or six (``\u00XX``, written for the control characters).
_SHORT_ESCAPES = np.frombuffer(b'"\\/bfnrt', dtype=np.uint8)
_UNICODE_ESCAPE = ord("u")
_ZERO = ord("0")
_LOW = np.frombuffer(b"01", dtype=np.uint8)
#: U+FFFD in UTF-8.
_REPLACEMENT = np.frombuffer("\ufffd".encode(), dtype=np.uint8)
_REPLACEMENT_LEAD = b"\xef"
#: How much token text ``_token_bytes`` reads at a time.
CHUNK_BYTES = 1 << 18


def _parse_rows(text: bytearray | memoryview) -> tuple[np.ndarray, list[int]] | None:
    """The rows of ``text``, an array of arrays of numbers (its nulls written as the sentinel), flat, and their
    lengths; None unless simdjson reads it so (``as_buffer`` flattens nested arrays: the caller counts '[')."""
    parser = _parsers.take()
    document: Any = None
    try:
        try:
            document = parser.parse(text)
        except RuntimeError:  # a view into the kept parser's last document is alive: a fresh parser
            parser = simdjson.Parser()
            document = parser.parse(text)
        if not isinstance(document, simdjson.Array):
            return None
        lengths = []
        for row in document:
            if not isinstance(row, simdjson.Array):
                return None
            lengths.append(len(row))
        # as_buffer's buffer is the array's own (writable, and no view into the parser): no copy.
        flat = np.frombuffer(document.as_buffer(of_type="d"), dtype=np.float64) if lengths else np.empty(0)
    except (ValueError, TypeError, RuntimeError):
        # Not JSON by simdjson's reading (1e999, NaN), or values as_buffer refuses (booleans, objects, integers
        # past 64 bits): the reference path says which.
        return None
    finally:
        document = row = None  # every view into the document goes before the parser does
        _parsers.give_back(parser)
    return (flat, lengths) if flat.shape[0] == sum(lengths) else None


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


def _completion_sequences(array: Any) -> Sequences | None:
    """The completions ``logprobs`` objects of a parsed array as ``Sequences``, token byte counts included, without
    a Python object per token; None unless every item is an object without duplicate keys whose ``token_logprobs``
    are numbers (a null first) and whose ``tokens`` are as many strings (the list path, then the core, read the
    rest and say what is wrong)."""
    parts = completion_parts(array)
    return None if parts is None else completion_sequences(*parts)


def completion_parts(array: Any) -> tuple[np.ndarray, list[bytes], list[int]] | None:
    """What ``completion_sequences`` reads of a parsed array of completions objects: their ``token_logprobs`` in
    one float64 array (NaN for a sequence's first null, as an echo gives it), each ``tokens`` array's minified
    text and length; None unless every item is an object without duplicate keys holding the two arrays, as long as
    each other, the log-probabilities numbers but for a first null.

    Each sequence's numbers go into the array while they are read (``array("d")`` refuses None, strings and
    containers, which ``np.array`` would take or parse), so their Python floats die at once: the next sequence's
    reuse their memory, and the garbage collector never walks a thousand young lists of a thousand numbers.
    """
    if not isinstance(array, simdjson.Array):
        return None
    values = array_module.array("d")
    texts: list[bytes] = []
    counts: list[int] = []
    nulls = 0
    for item in array:
        if not isinstance(item, simdjson.Object) or len(set(item.keys())) != len(item):
            return None
        logprobs, tokens = item.get("token_logprobs"), item.get("tokens")
        if not isinstance(logprobs, simdjson.Array) or not isinstance(tokens, simdjson.Array):
            return None
        if len(tokens) != len(logprobs):
            return None
        # simdjson's own writing of the strings: no Python object per token (bytes, whatever its stub says).
        text: Any = tokens.mini
        if not isinstance(text, bytes):
            return None
        row: list[Any] = logprobs.as_list()
        if row and row[0] is None:
            row[0] = math.nan
            nulls += 1
        try:
            values.extend(row)
        except (TypeError, OverflowError):
            return None
        texts.append(text)
        counts.append(len(tokens))
    flat = np.frombuffer(values, dtype=np.float64) if values else np.empty(0)
    # Neither can come from JSON (simdjson refuses NaN and numbers past float64): the core names what it is.
    if np.isinf(flat).any() or np.count_nonzero(np.isnan(flat)) != nulls:
        return None
    if _booleans(array, flat, counts):
        return None
    return flat, texts, counts


def _booleans(array: Any, values: np.ndarray, counts: list[int]) -> bool:
    """Whether a log-probability read as 0 or 1 was a boolean (``array("d")`` takes ``true`` as 1): the sequences
    holding such a value are read again as lists, in one pass over the array."""
    suspects = np.flatnonzero((values == 0.0) | (values == 1.0))
    if not suspects.size:
        return False
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    rows = set((np.searchsorted(offsets, suspects, side="right") - 1).tolist())
    return any(
        index in rows and any(type(value) is bool for value in item["token_logprobs"].as_list())
        for index, item in enumerate(array)
    )


def completion_sequences(values: np.ndarray, texts: list[bytes], counts: list[int]) -> Sequences | None:
    """``Sequences`` of the completions form from ``completion_parts``: the log-probabilities, and each token's
    UTF-8 byte count from its array's text; None when a token is no string."""
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    read = _token_bytes(texts, np.array(counts, dtype=np.int64))
    return None if read is None else with_token_bytes(Sequences("completions", values, offsets), *read)


def _escape_starts(data: np.ndarray) -> np.ndarray:
    r"""Where each escape of a JSON text's strings starts: the backslashes at an even place in their run (in a run,
    ``\\`` pairs up and a last odd one escapes the next character; outside strings there is no backslash)."""
    slashes = np.flatnonzero(data == _BACKSLASH)
    if not slashes.size:
        return slashes
    index = np.arange(slashes.shape[0])
    run_start = np.ones(slashes.shape[0], dtype=bool)
    run_start[1:] = slashes[1:] != slashes[:-1] + 1
    first = np.maximum.accumulate(np.where(run_start, index, 0))
    starts: np.ndarray = slashes[(index - first) % 2 == 0]
    return starts


def _control_escapes(data: np.ndarray, starts: np.ndarray) -> bool:
    r"""Whether every ``\uXXXX`` escape at ``starts`` is ``\u0000``-``\u001F`` (a control character: one byte)."""
    return bool(
        (data[starts + 2] == _ZERO).all()
        and (data[starts + 3] == _ZERO).all()
        and np.isin(data[starts + 4], _LOW).all()
    )


def _token_bytes(texts: list[bytes], counts: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``_bytes_of_texts`` of the arrays a few hundred kilobytes of text at a time: its temporaries (some ten bytes a
    byte of text) then come from memory the allocator holds already, where tens of megabytes of fresh pages cost
    more than the counting itself when the system is short of free huge pages."""
    sizes = np.empty(int(counts.sum()), dtype=np.int64)
    replacement = np.empty(sizes.shape[0], dtype=bool)
    ends = np.cumsum(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)))
    first = entry = 0
    while first < len(texts):
        # The arrays up to the one past CHUNK_BYTES more of text (at least one).
        last = max(int(np.searchsorted(ends, (ends[first - 1] if first else 0) + CHUNK_BYTES, side="right")), first + 1)
        read = _bytes_of_texts(texts[first:last], counts[first:last])
        if read is None:
            return None
        done = entry + read[0].shape[0]
        sizes[entry:done], replacement[entry:done] = read
        first, entry = last, done
    return sizes, replacement


def _bytes_of_texts(texts: list[bytes], counts: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    r"""The UTF-8 length of every token text and which hold U+FFFD, from simdjson's minified text of each ``tokens``
    array (``counts[i]`` entries in ``texts[i]``): the bytes between a string's quotes, less what its escapes add.
    None unless every entry is a string, or at an escape simdjson does not write.

    The text is simdjson's writing, not the caller's: UTF-8 as it is, escapes only for ``"``, ``\`` and the
    control characters (``\n``, ``\t``, … and ``\u00XX``), each escape one byte of the string.
    """
    text = b"".join(texts)
    data = np.frombuffer(text, dtype=np.uint8)
    quotes = data == _QUOTE
    escapes = _escape_starts(data)
    extra = np.ones(escapes.shape[0], dtype=np.int64)  # the characters an escape has beyond its one byte
    if escapes.size:
        if escapes[-1] + 1 >= data.shape[0]:
            return None
        follows = data[escapes + 1]
        quotes[escapes + 1] = False  # an escaped quote is inside its string
        unicode = follows == _UNICODE_ESCAPE
        starts = escapes[unicode]
        if starts.size and (starts[-1] + 6 > data.shape[0] or not _control_escapes(data, starts)):
            return None  # \u other than \u0000-\u001F: not simdjson's writing (it writes other characters as UTF-8)
        if not np.isin(follows[~unicode], _SHORT_ESCAPES).all():
            return None
        extra[unicode] = 5
    delimiters = np.flatnonzero(quotes)
    ends = np.zeros(counts.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)), out=ends[1:])
    # Every string has its two quotes in its own array's text: as many as twice the entries of each.
    if not np.array_equal(np.diff(np.searchsorted(delimiters, ends)), 2 * counts):
        return None
    opening = delimiters[0::2]
    sizes = delimiters[1::2] - opening
    sizes -= 1
    # Only strings: the text of an array of n entries is its 2 brackets, n − 1 commas and the entries, so what is
    # outside the quoted strings (each its size + 2 quotes) is n + 1 bytes (2 when empty) when every entry is a
    # string, and more otherwise (a number, a literal or a container has at least one byte outside quotes).
    quoted = np.zeros(sizes.shape[0] + 1, dtype=np.int64)
    np.cumsum(sizes, out=quoted[1:])
    entries = np.zeros(counts.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=entries[1:])
    outside = np.diff(ends) - (quoted[entries[1:]] - quoted[entries[:-1]]) - 2 * counts
    if not np.array_equal(outside, np.maximum(counts + 1, 2)):
        return None
    if escapes.size:  # each escape is in the string opened last before it
        np.subtract.at(sizes, np.searchsorted(opening, escapes) - 1, extra)
    replacement = np.zeros(sizes.shape[0], dtype=bool)
    # Rare: a character split between tokens. Its first byte looked for first (memchr): it leads only U+F000-U+FFFF.
    if _REPLACEMENT_LEAD in text and _REPLACEMENT.tobytes() in text:
        lead = np.flatnonzero(data[:-2] == _REPLACEMENT[0])
        lead = lead[(data[lead + 1] == _REPLACEMENT[1]) & (data[lead + 2] == _REPLACEMENT[2])]
        replacement[np.searchsorted(opening, lead, side="right") - 1] = True
    return sizes, replacement


def decode_completions(model: type[RequestModel], body: bytes | bytearray | memoryview) -> RequestModel | None:
    """The request, its ``completions`` read as ``Sequences`` (or, when anything is unusual, down to the two lists
    of each object the core reads); None when the generic paths must decide (an unknown or duplicate key,
    anything unexpected: they name it).

    Called before the body's outline: on a body of 10⁶ token strings and as many ``top_logprobs`` objects, the
    outline's string scans cost several times this parse, which builds no Python object but the numbers.
    """
    if getattr(model, "array_kinds", {}).get("completions") != "objects":
        return None
    if not _mentions(body, _COMPLETIONS_KEY):
        return None  # another form: parsing it here would cost more than it gives
    parser = _parsers.take()
    document: Any = None
    try:
        # simdjson copies what it parses into its own padded buffer: the body is read where it is (no bytes() copy).
        text = body if isinstance(body, bytes) else memoryview(body).cast("B")
        try:
            document = parser.parse(text)
        except RuntimeError:  # a view into the kept parser's last document is alive: a fresh parser
            parser = simdjson.Parser()
            document = parser.parse(text)
        if not isinstance(document, simdjson.Object):
            return None
        keys = list(document.keys())
        if "completions" not in keys or len(keys) != len(set(keys)) or not model.model_fields.keys() >= set(keys):
            return None
        objects: Sequences | list[dict[str, Any]] | None = _completion_sequences(document["completions"])
        if objects is None:  # anything unusual: the two lists of each object, for the core to read and name
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
        _parsers.give_back(parser)
    return request.model_copy(update={"completions": objects})


class RowsSoFar(Protocol):
    """Rows of a field read before the body was complete (``_json_streamed.StreamedRows``)."""

    def rows_before(self, start: int, end: int) -> tuple[list[np.ndarray], list[int], list[np.ndarray], int] | None:
        """What was read of the field whose array is ``body[start:end]``: each piece's values (NaN for a null), the
        rows' lengths, each piece's null positions, and the ',' the rest begins at; None if nothing was."""


def decode_logprob_sequences(
    model: type[RequestModel],
    body: bytes | bytearray | memoryview,
    outline: JsonOutline | None = None,
    so_far: RowsSoFar | None = None,
) -> RequestModel | None:
    """The request, its ``token_logprobs`` read as ``Sequences``; None when the generic paths must decide.

    The field's array is placed by ``outline`` when there is one, else by the body's quotes (``_field_span``:
    found one by one, as a body of numbers has few); simdjson parses its rows, but for those ``so_far`` read
    while the body arrived. The rest of the body (the field emptied to ``[]``) is small: the model validates it as
    on the reference path.
    """
    if getattr(model, "array_kinds", {}).get(FIELD) != KIND:
        return None
    if outline is not None:
        span = _field_text(outline, FIELD)
        if span is None or not _numbers_only(outline, *span):
            return None
    else:
        findable = _findable(body)
        span = None if findable is None else _field_span(findable, len(body))
        if span is None:
            return None
    start, end = span
    read = _rest_of_rows(body, start, end, so_far)
    if read is None:
        return None
    view = memoryview(body).cast("B")
    try:
        # The rest of the body (the field emptied to []) is small: the model validates it as on the reference path.
        request = model.model_validate_json(b"".join((view[:start], b"[]", view[end:])))
    except ValidationError:
        return None
    flat, lengths, missing = read
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return request.model_copy(update={FIELD: Sequences(FIELD, flat, offsets, missing=missing)})


def _rest_of_rows(
    body: bytes | bytearray | memoryview, start: int, end: int, so_far: RowsSoFar | None
) -> tuple[np.ndarray, list[int], np.ndarray] | None:
    """``_region_rows`` of the field ``body[start:end]``, but for the whole rows ``so_far`` read from its start (their
    text is then read as it was: the rest begins at the ',' after the last of them, read as the '[')."""
    before = None if so_far is None else so_far.rows_before(start, end)
    if before is None:
        return _region_rows(body, start, end)
    flats, lengths, missings, resume = before
    rest = _region_rows(body, resume, end)
    if rest is None:
        return None
    firsts = np.cumsum([0, *(flat.shape[0] for flat in flats)])  # each piece's first value in the whole
    missing = np.concatenate(
        [
            *(found + first for found, first in zip(missings, firsts, strict=False)),
            rest[2] + firsts[-1],
        ]
    )
    return np.concatenate([*flats, rest[0]]), [*lengths, *rest[1]], missing


def _field_text(outline: JsonOutline, key: str) -> tuple[int, int] | None:
    """Where the array that is the value of the top-level ``key`` starts and ends in the body (end exclusive),
    from the outline's marks."""
    spans = [(open_, close) for name, open_, close in outline.top_level_arrays() if name == key]
    if len(spans) != 1:
        return None
    open_, close = spans[0]
    return int(outline.marks[open_]), int(outline.marks[close]) + 1


def _field_span(text: bytes | bytearray | mmap.mmap, size: int) -> tuple[int, int] | None:
    """Where the top-level ``token_logprobs`` array starts and ends in ``text[:size]`` (end exclusive), without an
    outline: its key found by the quotes before it (found one by one, at most ``_QUOTE_HOPS``, none with an
    escape), outside any string, at depth 1, an array after its colon. When only a '}' follows the body's last
    ']', the field runs to it (the options, if any, came before: the usual body, whose 20 MB of numbers then
    need no search for quotes); else to the last ']' before the next quote (the next key's), the rest of the
    body's strings found too and none the key again. None for anything else: the outline reads it. Whatever lies
    outside the field is validated by the model, and the field by simdjson, which refuses a string in it.
    """
    strings: list[tuple[int, int]] = []
    found: tuple[int, re.Match[bytes]] | None = None
    at = text.find(b'"', 0, size)
    while at >= 0:
        close = _string_end(text, at, size, len(strings))
        if close is None:
            return None
        strings.append((at, close))
        if close - at == len(_KEY) - 1 and text[at : close + 1] == _KEY:
            match = _VALUE_ARRAY.match(text, close + 1, size)
            if match is not None:
                found = (len(strings) - 1, match)
                break
        at = text.find(b'"', close + 1, size)
    if found is None:
        return None
    index, match = found
    # Depth 1: the brackets and braces before the key, outside the strings there, leave one open (the body's '{').
    prefix = bytearray(text[: strings[index][0]])
    for open_, string_close in strings[:index]:
        prefix[open_ : string_close + 1] = bytes(string_close + 1 - open_)
    opened = prefix.count(b"{") + prefix.count(b"[") - prefix.count(b"}") - prefix.count(b"]")
    if opened != 1 or not prefix.lstrip(b" \t\n\r").startswith(b"{"):
        return None
    start = match.end() - 1
    last = _last_bracket(text, start, size)
    if last is not None:
        return start, last + 1
    following = text.find(b'"', start + 1, size)
    at = following
    while at >= 0:  # the strings after the field: none may be the key again
        close = _string_end(text, at, size, len(strings))
        if close is None:
            return None
        strings.append((at, close))
        if text[at : close + 1] == _KEY and _VALUE_ARRAY.match(text, close + 1, size):
            return None
        at = text.find(b'"', close + 1, size)
    end = text.rfind(b"]", start + 1, following if following >= 0 else size) + 1
    return (start, end) if end > start else None


def _string_end(text: bytes | bytearray | mmap.mmap, opening: int, size: int, found: int) -> int | None:
    """The closing quote of the string opened at ``opening``; None past ``_QUOTE_HOPS`` quotes (``found`` strings
    so far), for an unclosed one, or one with an escape (an escaped quote would pair the quotes wrongly)."""
    close = text.find(b'"', opening + 1, size)
    if close < 0 or 2 * found + 2 > _QUOTE_HOPS or text.find(b"\\", opening, close) >= 0:
        return None
    return close


def _last_bracket(text: bytes | bytearray | mmap.mmap, start: int, size: int) -> int | None:
    """Where the body's last ']' is, when nothing but whitespace and one '}' follows it, it closes an array of
    arrays (a row's ']' before it) or the empty array opened at ``start``, all within the last ``_TAIL_BYTES``: the
    field's end, if the field is the body's last value (options after it end otherwise: a number, a string, a
    literal, a flat list). A wrong guess only costs a parse that fails."""
    tail_start = max(start, size - _TAIL_BYTES)
    tail = bytes(text[tail_start:size]).rstrip(b" \t\n\r")
    if not tail.endswith(b"}"):
        return None
    tail = tail[:-1].rstrip(b" \t\n\r")
    last = tail_start + len(tail) - 1
    if not tail.endswith(b"]") or last <= start:
        return None
    inside = tail[:-1].rstrip(b" \t\n\r")
    return last if inside.endswith(b"]") or tail_start + len(inside) - 1 == start else None


def _mentions(body: bytes | bytearray | memoryview, key: re.Pattern[bytes]) -> bool:
    """Whether ``key`` (a literal starting with a quote) occurs in ``body``. memchr hops from quote to quote (the
    regular expression alone reads a 20 MB body of numbers at about 1 byte a nanosecond); past ``_KEY_HOPS``
    quotes, or for a view that cannot be searched in place, the regular expression reads the rest."""
    findable = _findable(body)
    at = 0
    if findable is not None:
        literal = key.pattern
        at = findable.find(b'"', 0, len(body))
        for _ in range(_KEY_HOPS):
            if at < 0:
                return False
            if at + len(literal) <= len(body) and findable[at : at + len(literal)] == literal:
                return True  # (a memory map goes on past the body: the key must end inside it)
            at = findable.find(b'"', at + 1, len(body))
        at = max(at, 0)
    return key.search(body, at) is not None


def _findable(body: bytes | bytearray | memoryview) -> bytes | bytearray | mmap.mmap | None:
    """What holds ``body`` from its first byte and can be searched with ``find`` (a memoryview has no ``find``: a
    large body is a view of its memory map from the start, ``body.Body``); None for any other view."""
    if isinstance(body, bytes | bytearray):
        return body
    owner = body.obj
    if not isinstance(owner, bytes | bytearray | mmap.mmap) or body.nbytes > len(owner):
        return None
    start = np.frombuffer(body, dtype=np.uint8).__array_interface__["data"][0] if body.nbytes else None
    return owner if start == np.frombuffer(owner, dtype=np.uint8).__array_interface__["data"][0] else None


def null_starts(body: bytes | bytearray | memoryview, start: int, end: int) -> np.ndarray:
    """Where each 'n' of ``body[start:end]`` is, from ``start``: memchr from one to the next while they are few (a
    null first in each of 1,000 sequences: 1 ms where comparing every byte of 20 MB takes 5), then NumPy."""
    found, at = _hops(body, b"n", start, end)
    starts = np.array(found, dtype=np.intp) - start
    if at < 0:
        return starts
    rest = np.flatnonzero(np.frombuffer(body, dtype=np.uint8)[at:end] == _N) + (at - start)
    return np.concatenate([starts, rest])


def _hops(body: bytes | bytearray | memoryview, byte: bytes, start: int, end: int) -> tuple[list[int], int]:
    """Where ``byte`` lies in ``body[start:end]``, found by memchr one by one, at most ``_NULL_HOPS`` of them (none in
    a body that cannot be searched in place), and where NumPy must read on from (-1: nowhere, all were found)."""
    findable = _findable(body)
    if findable is None:
        return [], start
    found: list[int] = []
    at = findable.find(byte, start, end)
    while at >= 0 and len(found) < _NULL_HOPS:
        found.append(at)
        at = findable.find(byte, at + 1, end)
    return found, at


def _numbers_only(outline: JsonOutline, start: int, end: int) -> bool:
    """Whether ``body[start:end]`` holds no string, object or escape: none of the outline's quotes, braces and
    backslashes (it lists every one, strings included) lies inside; only brackets do."""
    low, high = np.searchsorted(outline.offsets, (start, end))
    values = outline.values[low:high]
    return bool(np.all((values == _OPEN_ARRAY) | (values == _CLOSE_ARRAY)))


def _null_bytes(data: np.ndarray, starts: np.ndarray) -> np.ndarray | None:
    """The bytes of the ``null`` starting at each of ``starts`` in ``data``, one row of four a null (for the sentinel
    to be written there); None if one of them starts anything else."""
    where: np.ndarray = starts[:, None] + _NULL_OFFSETS
    if starts.size and (
        starts[-1] + 4 > data.shape[0] or not np.array_equal(data[where], np.broadcast_to(_NULL, where.shape))
    ):
        return None
    return where


def _count_of(body: bytes | bytearray | memoryview, byte: bytes, start: int, end: int) -> int:
    """How many ``byte`` lie in ``body[start:end]``: memchr from one to the next while they are few, then NumPy."""
    found, at = _hops(body, byte, start, end)
    if at < 0:
        return len(found)
    return len(found) + int(np.count_nonzero(np.frombuffer(body, dtype=np.uint8)[at:end] == byte[0]))


def _region_rows(
    body: bytes | bytearray | memoryview, start: int, end: int
) -> tuple[np.ndarray, list[int], np.ndarray] | None:
    """The rows of the array whose text is ``body[start:end]`` flat, NaN for each null, their lengths and where the
    nulls are; None unless every row is an array of numbers (or nulls).

    The nulls are written as the sentinel for simdjson to read, and the rows parsed ``PIECE_BYTES`` at a time
    (``_pieces``). A writable body (a large one is its own memory map) is written in place and put back as it
    came once simdjson has copied each piece (the reference path may read it next); a read-only one has the region
    copied first. Every '[' must then be a row's or the array's (``as_buffer`` flattens a row like [3, [4]]), and
    as many values be the sentinel as nulls were written (a sentinel sent as a number fails that).
    """
    view = memoryview(body).cast("B")
    in_place = not view.readonly
    text: bytearray | memoryview
    searched: bytes | bytearray | mmap.mmap | None
    if in_place:
        text, searched, offset = view[start:end], _findable(body), start
    else:
        copy = bytearray(view[start:end])
        text, searched, offset = copy, copy, 0
    data = np.frombuffer(text, dtype=np.uint8)
    # In a text of numbers and brackets an 'n' can only start "null" (or a NaN the reference path refuses).
    where = _null_bytes(data, null_starts(body, start, end))
    if where is None:
        return None
    opened = 1 + _count_of(body, b"[", start + 1, end)
    data[where] = _SENTINEL_BYTES
    try:
        read = _pieces(text, data, searched, offset)
    finally:
        if in_place:  # the body is the request's: as it came
            data[where] = _NULL
    if read is None or opened != len(read[1]) + 1:
        return None
    flat, lengths, missing = read
    if missing.shape[0] != where.shape[0]:
        return None
    return flat, lengths, missing


def whole_rows(body: memoryview, first: int, last: int) -> tuple[np.ndarray, list[int], np.ndarray] | None:
    """The rows of ``body[first : last + 1]``, where ``body[first]`` is a field's '[' or the ',' after one of its
    rows and ``body[last]`` the ',' after a row's ']': read as ``_region_rows`` reads a field (its nulls, its
    brackets, one piece), in place in the writable ``body`` and put back. For the rows of a body parsed while it
    arrives (``_json_streamed``); None unless every row there is an array of numbers (or nulls)."""
    text = body[first : last + 1]
    data = np.frombuffer(text, dtype=np.uint8)
    where = _null_bytes(data, null_starts(body, first, last))
    if where is None:
        return None
    opened = _count_of(body, b"[", first + 1, last)
    data[where] = _SENTINEL_BYTES
    try:
        read = _pieces(text, data, None, 0)
    finally:
        data[where] = _NULL
    if read is None or opened != len(read[1]) or read[2].shape[0] != where.shape[0]:
        return None
    return read


def _pieces(
    text: bytearray | memoryview, data: np.ndarray, searched: bytes | bytearray | mmap.mmap | None, offset: int
) -> tuple[np.ndarray, list[int], np.ndarray] | None:
    """``_parse_rows`` of ``text`` (an array's text but for its first byte, read as '['), its sentinels made NaN, and
    where they are; a piece of some ``PIECE_BYTES`` of whole rows at a time: each from the ',' after the last row
    read (written '[' while it is parsed) to the ',' after a row's ']' (written ']'), so that simdjson's copy,
    index and tape of it stay in the cache (a 20 MB field of numbers: 31 ms in 1 MiB pieces, 37 ms whole).
    ``searched`` holds ``text`` from ``offset``, for ``rfind`` (None: one piece)."""
    size = data.shape[0]
    flats: list[np.ndarray] = []
    lengths: list[int] = []
    missings: list[np.ndarray] = []
    values = 0  # values read so far
    first = 0
    while first < size - 1:
        last = size - 1  # the array's own ']'
        if searched is not None and first + PIECE_BYTES < size - 1:
            cut = searched.rfind(b"],", offset + first + 1, offset + first + PIECE_BYTES)
            if cut >= 0:
                last = cut - offset + 1  # the ',' after a row
        opening, closing = int(data[first]), int(data[last])
        data[first], data[last] = _OPEN_ARRAY, _CLOSE_ARRAY
        try:
            read = _parse_rows(text[first : last + 1])
        finally:
            data[first], data[last] = opening, closing
        if read is None:
            return None
        # The sentinels become NaN while the piece's values are in the cache.
        missing = np.flatnonzero(read[0] == _SENTINEL_VALUE)
        read[0][missing] = np.nan
        missings.append(missing + values)
        values += read[0].shape[0]
        flats.append(read[0])
        lengths.extend(read[1])
        first = last
    if not flats:
        return None
    if len(flats) == 1:
        return flats[0], lengths, missings[0]
    return np.concatenate(flats), lengths, np.concatenate(missings)
