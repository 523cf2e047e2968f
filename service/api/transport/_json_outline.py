"""The top level of a JSON object body, found by NumPy scans of its bytes (used by ``json_codec`` alone).

Before either JSON path parses a value, ``json_codec`` asks the outline two questions: is a
key unknown to the request model (the first one is refused at once: a linear-time answer,
however many keys follow), and how many rows and columns does each array field hold (a batch
past the limits is refused before a parser builds a value per number: Pydantic's reference
path holds ~20 bytes of Python objects per byte of numbers).

The scans handle what the fast path's slicing refuses (backslash escapes, brackets and
braces inside strings, duplicate keys: the last one counts, as for the parsers), and build
nothing per number: offsets of the structural characters and of the few commas they must
count. A body they cannot read as one object (unbalanced, not an object, a key that is not
valid UTF-8) gets no outline, and the parsers say what is wrong with it.

Long because it is one scanner: the structure, strings, keys and entry counts share its arrays
(and ``_json_fast`` reuses them to slice large rows fields).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np

_QUOTE, _BACKSLASH, _COLON, _COMMA = 0x22, 0x5C, 0x3A, 0x2C
_OPEN_ARRAY, _OPEN_OBJECT, _CLOSE_OBJECT = 0x5B, 0x7B, 0x7D
#: JSON's whitespace (RFC 8259 §2): space, tab, line feed, carriage return.
_WHITESPACE = np.zeros(256, dtype=bool)
_WHITESPACE[[0x20, 0x09, 0x0A, 0x0D]] = True
#: Bytes per NumPy step of a scan: big enough to amortise the call, small enough to stay in cache.
_BLOCK = 1 << 18
#: Up to this many keys are compared one by one in Python (cheaper than NumPy calls); more, all at once.
_FEW_KEYS = 64
#: Gaps between the rows of an array at most this long are checked in one vectorised pass per byte.
_SHORT_GAP = 16


def structure(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and values of every [ ] { } " and backslash in ``data`` (strings included), in one blockwise scan.

    The offsets are int32 when the body allows (half the memory of a body made of brackets).
    """
    block = _BLOCK
    offset_type = np.int32 if data.shape[0] < 2**31 else np.int64
    masked = np.empty(min(block, data.shape[0]), dtype=np.uint8)
    hits = np.empty(masked.shape[0], dtype=bool)
    other = np.empty(masked.shape[0], dtype=bool)
    found = []
    for start in range(0, data.shape[0], block):
        piece = data[start : start + block]
        size = piece.shape[0]
        # [ ] { } are the bytes b with b & 0xD9 == 0x59, as are Y _ y and DEL (dropped below): one test for four.
        np.bitwise_and(piece, 0xD9, out=masked[:size])
        np.equal(masked[:size], 0x59, out=hits[:size])
        np.equal(piece, _QUOTE, out=other[:size])
        hits[:size] |= other[:size]
        np.equal(piece, _BACKSLASH, out=other[:size])
        hits[:size] |= other[:size]
        found.append(np.flatnonzero(hits[:size]).astype(offset_type) + start)
    offsets = np.concatenate(found) if found else np.empty(0, dtype=offset_type)
    values = data[offsets]
    lookalike = (values == 0x59) | (values == 0x5F) | (values == 0x79) | (values == 0x7F)
    if np.any(lookalike):
        offsets, values = offsets[~lookalike], values[~lookalike]
    return offsets, values


@dataclass
class JsonOutline:
    """Where each top-level key of a JSON object body sits, and its value's brackets; see :meth:`of`."""

    data: np.ndarray
    #: Every [ ] { } " and backslash, strings included (the fast path's slicing reads these).
    offsets: np.ndarray
    values: np.ndarray
    #: Brackets and braces outside strings, and the depth after each (the outer object is depth 1).
    marks: np.ndarray
    opening: np.ndarray
    depth: np.ndarray
    #: Real (unescaped) quotes: string i runs from quotes[2i] to quotes[2i + 1].
    quotes: np.ndarray
    #: Each top-level key: its opening and closing quote, and its colon.
    key_opens: np.ndarray
    key_closes: np.ndarray
    colons: np.ndarray
    #: No backslash, no bracket or brace inside a string, no object but the outer one: what the fast path slices.
    plain: bool = False
    #: Keys that hold a backslash escape, decoded (the others are their bytes).
    escaped: dict[int, str] = field(default_factory=dict)
    #: The children of each array looked at (by the index of its opening mark), for the fast path to reuse.
    _children_of: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @classmethod
    def of(cls, body: bytes | bytearray | memoryview) -> JsonOutline | None:
        """The outline of ``body``, or None when it is not one balanced JSON object with readable keys."""
        data = np.frombuffer(body, dtype=np.uint8)
        offsets, values = structure(data)
        quotes = _real_quotes(offsets, values)
        if quotes is None:
            return None
        is_mark = (values | 0x20) >= _OPEN_OBJECT  # [ ] { }: 0x5B 0x5D 0x7B 0x7D fold to 0x7B / 0x7D
        marks, mark_values = offsets[is_mark], values[is_mark]
        quoted = _quoted_marks(quotes, marks)
        if quoted is not None:
            marks, mark_values = marks[~quoted], mark_values[~quoted]
        if marks.size < 2 or mark_values[0] != _OPEN_OBJECT or mark_values[-1] != _CLOSE_OBJECT:
            return None
        opening = (mark_values | 0x20) == _OPEN_OBJECT
        depth = np.cumsum(opening.view(np.int8) * np.int8(2) - np.int8(1), dtype=np.int32)
        # One object: it closes at the last mark and not before, and nothing but whitespace lies outside it.
        if depth[-1] != 0 or depth[:-1].min() < 1:
            return None
        if _next_significant(data, np.array([0]))[0] != marks[0] or _last_significant(data) != marks[-1]:
            return None
        keys = _top_level_keys(data, marks, depth, quotes)
        plain = (
            quoted is None and not np.any(values == _BACKSLASH) and np.count_nonzero(mark_values >= _OPEN_OBJECT) == 2
        )
        outline = cls(data, offsets, values, marks, opening, depth, quotes, *keys, plain=plain)
        return outline if outline._decode_escaped_keys() else None

    def first_unknown(self, names: Collection[str]) -> str | None:
        """The first key (in the body's order) that is not one of ``names``, or None if every key is one.

        None too when that key is not valid UTF-8: the body is not JSON, and the parser will say so.
        """
        if self.key_opens.shape[0] <= _FEW_KEYS:
            for index in range(self.key_opens.shape[0]):
                name = self._key_name(index)
                if name not in names:
                    return name
            return None
        known = np.zeros(self.key_opens.shape[0], dtype=bool)
        for name in names:
            known |= self._keys_equal(name.encode())
        for index, text in self.escaped.items():
            known[index] = text in names
        unknown = np.flatnonzero(~known)
        return self._key_name(int(unknown[0])) if unknown.size else None

    def shape(self, name: str) -> tuple[int, int] | None:
        """Entries and the first entry's length (1 if it is not an array) of the array ``name`` holds, if it does.

        The last ``name`` key counts, as it does for the parsers; an empty array is (0, 0).
        None when ``name`` is absent or holds no array.
        """
        index = self._last_key(name)
        if index is None:
            return None
        start = int(_next_significant(self.data, np.array([int(self.colons[index]) + 1]))[0])
        if start >= self.data.shape[0] or self.data[start] != _OPEN_ARRAY:
            return None
        open_ = int(np.searchsorted(self.marks, start))
        close = self._closing(open_)
        children = self.children(open_, close)
        rows = self._entries(open_, close, children)
        if rows == 0:
            return 0, 0
        first = int(_next_significant(self.data, np.array([int(self.marks[open_]) + 1]))[0])
        if self.data[first] != _OPEN_ARRAY:
            return rows, 1
        child = int(np.searchsorted(self.marks, first))
        child_close = self._closing(child)
        return rows, self._entries(child, child_close, self.children(child, child_close))

    def top_level_arrays(self) -> list[tuple[str, int, int]]:
        """Each array that is the value of a top-level key: the key, and the indices of its brackets in ``marks``."""
        opens = np.flatnonzero(self.depth == 2)
        opens = opens[self.opening[opens]]
        found = []
        for open_ in opens[self.data[self.marks[opens]] == _OPEN_ARRAY].tolist():
            index = int(np.searchsorted(self.colons, self.marks[open_])) - 1
            name = self.escaped.get(index) or self._key_bytes(index).decode("utf-8", "replace")
            found.append((name, open_, self._closing(open_)))
        return found

    def children(self, open_: int, close: int) -> tuple[np.ndarray, np.ndarray]:
        """Offsets of the opening and closing brackets (or braces) of the arrays and objects directly inside."""
        if open_ not in self._children_of:
            self._children_of[open_] = self._find_children(open_, close)
        return self._children_of[open_]

    # --- keys -------------------------------------------------------------------------------------

    def _key_bytes(self, index: int) -> bytes:
        return bytes(self.data[int(self.key_opens[index]) + 1 : int(self.key_closes[index])])

    def _keys_equal(self, name: bytes) -> np.ndarray:
        """Which keys are exactly the bytes ``name`` (a key with an escape never is: see ``escaped``)."""
        equal: np.ndarray = (self.key_closes - self.key_opens - 1) == len(name)
        candidates = np.flatnonzero(equal)
        for position, byte in enumerate(name):
            if not candidates.size:
                break
            same = self.data[self.key_opens[candidates] + 1 + position] == byte
            equal[candidates[~same]] = False
            candidates = candidates[same]
        return equal

    def _key_name(self, index: int) -> str | None:
        """Key ``index`` as text (None if it is not UTF-8)."""
        if index in self.escaped:
            return self.escaped[index]
        try:
            return self._key_bytes(index).decode("utf-8")
        except UnicodeDecodeError:
            return None

    def _last_key(self, name: str) -> int | None:
        if self.key_opens.shape[0] <= _FEW_KEYS:
            indices = [i for i in range(self.key_opens.shape[0]) if self._key_name(i) == name]
            return indices[-1] if indices else None
        matches = self._keys_equal(name.encode())
        for index, text in self.escaped.items():
            matches[index] = text == name
        found = np.flatnonzero(matches)
        return int(found[-1]) if found.size else None

    def _decode_escaped_keys(self) -> bool:
        """Decode the keys that hold a backslash; False if one is not a valid JSON string of UTF-8 text."""
        backslashes = self.offsets[self.values == _BACKSLASH]
        if not backslashes.size:
            return True
        holding = np.searchsorted(backslashes, self.key_closes) - np.searchsorted(backslashes, self.key_opens)
        for index in np.flatnonzero(holding).tolist():
            raw = bytes(self.data[int(self.key_opens[index]) : int(self.key_closes[index]) + 1])
            try:
                text = json.loads(raw)
                text.encode("utf-8")  # a lone surrogate (\ud800) is no text: Pydantic refuses it too
            except (ValueError, UnicodeError):
                return False
            self.escaped[index] = text
        return True

    # --- arrays -----------------------------------------------------------------------------------

    def _closing(self, open_: int) -> int:
        """The index (in ``marks``) of the bracket that closes the one at ``open_``."""
        level = self.depth[open_] - 1
        return open_ + 1 + int(np.argmax(self.depth[open_ + 1 :] == level))

    def _find_children(self, open_: int, close: int) -> tuple[np.ndarray, np.ndarray]:
        inner = slice(open_ + 1, close)
        depth, marks = self.depth[inner], self.marks[inner]
        level = self.depth[open_]
        if not depth.size or depth.max() == level + 1:
            return marks[0::2], marks[1::2]  # no grandchildren (rows of numbers): opens and closes alternate
        opening = self.opening[inner]
        return marks[opening & (depth == level + 1)], marks[~opening & (depth == level)]

    def _entries(self, open_: int, close: int, children: tuple[np.ndarray, np.ndarray]) -> int:
        """How many entries the array between marks ``open_`` and ``close`` holds: its top-level commas + 1."""
        start, end = int(self.marks[open_]) + 1, int(self.marks[close])
        if int(_next_significant(self.data, np.array([start]))[0]) == end:
            return 0
        opens, closes = children
        if opens.size and self._rows_only(start, end, opens, closes):
            return int(opens.size)
        return self._commas_outside(start, end, opens, closes) + 1

    def _rows_only(self, start: int, end: int, opens: np.ndarray, closes: np.ndarray) -> bool:
        """Whether the array holds only its children, one comma (and whitespace) between each two.

        The usual case, decided in a few vectorised passes over the short gaps between rows
        instead of a pass over every comma of the array.
        """
        data = self.data
        if not (
            np.all(_WHITESPACE[data[start : int(opens[0])]]) and np.all(_WHITESPACE[data[int(closes[-1]) + 1 : end]])
        ):
            return False
        gap_starts = closes[:-1].astype(np.int64) + 1
        lengths = opens[1:] - gap_starts
        if not lengths.size:
            return True
        shortest, longest = int(lengths.min()), int(lengths.max())
        if shortest < 1 or longest > _SHORT_GAP:
            return False
        commas = np.zeros(lengths.shape[0], dtype=np.int8)
        for position in range(longest):
            # The usual gaps ("," or ", ") are all one length: then no mask is needed.
            within = None if position < shortest else lengths > position
            byte = data[gap_starts + position] if within is None else data[np.where(within, gap_starts + position, 0)]
            is_comma = byte == _COMMA
            blank_or_comma = is_comma | (byte == 0x20)
            if not np.all(blank_or_comma):
                blank_or_comma |= _WHITESPACE[byte]
            if within is not None:
                is_comma &= within
                blank_or_comma |= ~within
            if not np.all(blank_or_comma):
                return False
            commas += is_comma
        return bool(np.all(commas == 1))

    def _commas_outside(self, start: int, end: int, opens: np.ndarray, closes: np.ndarray) -> int:
        """Commas in data[start:end] that are neither inside one of the children nor inside a string."""
        quotes = self.quotes[np.searchsorted(self.quotes, start) : np.searchsorted(self.quotes, end)]
        count = 0
        for first in range(start, end, _BLOCK):
            is_comma = self.data[first : min(end, first + _BLOCK)] == _COMMA
            if not opens.size and not quotes.size:
                count += int(np.count_nonzero(is_comma))  # a flat array of numbers: every comma counts
                continue
            commas = np.flatnonzero(is_comma) + first
            if opens.size:
                child = np.searchsorted(opens, commas, side="right") - 1
                inside = (child >= 0) & (commas < closes[np.maximum(child, 0)])
                commas = commas[~inside]
            if quotes.size:
                commas = commas[~_inside_strings(quotes, commas)]
            count += int(commas.shape[0])
        return count


def _real_quotes(offsets: np.ndarray, values: np.ndarray) -> np.ndarray | None:
    """The quotes that open or close a string (not escaped by an odd run of backslashes); None if they are odd."""
    quotes = offsets[values == _QUOTE]
    backslashes = offsets[values == _BACKSLASH]
    if backslashes.size:
        # A run of backslashes escapes the byte after it when it is odd: "\\" ends a string, "\"" does not.
        run_breaks = np.flatnonzero(np.diff(backslashes) != 1)
        run_ends = np.append(run_breaks, backslashes.shape[0] - 1)
        run_starts = np.insert(run_breaks + 1, 0, 0)
        odd = (run_ends - run_starts) % 2 == 0
        escaped = backslashes[run_ends[odd]] + 1
        quotes = quotes[~np.isin(quotes, escaped, assume_unique=True)]
    return quotes if quotes.size % 2 == 0 else None


def _quoted_marks(quotes: np.ndarray, marks: np.ndarray) -> np.ndarray | None:
    """Which brackets and braces lie inside strings, or None if none does (the usual case, found cheaply).

    Looks each string's ends up among the marks (there are few strings in a body of numbers).
    """
    ends = np.searchsorted(marks, quotes)
    starts, stops = ends[0::2], ends[1::2]
    holding = stops > starts
    if not np.any(holding):
        return None
    # +1 where a string holding marks begins, -1 where it ends: the running sum is 1 inside one.
    change = np.zeros(marks.shape[0] + 1, dtype=np.int32)
    np.add.at(change, starts[holding], 1)
    np.add.at(change, stops[holding], -1)
    return np.cumsum(change[:-1]) > 0


def _inside_strings(quotes: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Which ``positions`` lie inside a string (after an odd number of real quotes), a million at a time."""
    inside = np.empty(positions.shape[0], dtype=bool)
    step = 1 << 20
    for first in range(0, positions.shape[0], step):
        inside[first : first + step] = np.searchsorted(quotes, positions[first : first + step]) % 2 == 1
    return inside


def _top_level_keys(
    data: np.ndarray, marks: np.ndarray, depth: np.ndarray, quotes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The opening and closing quotes of each key of the outer object, and its colon, in the body's order."""
    opens, closes = quotes[0::2], quotes[1::2]
    # A string's depth is the depth after the last bracket or brace before it.
    at_top = depth[np.searchsorted(marks, opens) - 1] == 1
    opens, closes = opens[at_top], closes[at_top]
    after = _next_significant(data, closes.astype(np.int64) + 1)
    is_key = data[np.minimum(after, data.shape[0] - 1)] == _COLON
    return opens[is_key], closes[is_key], after[is_key]


def _next_significant(data: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """For each of the ascending ``positions``, the offset of the first byte at or after it that is not
    whitespace (len(data) if there is none).

    A few vectorised steps settle the usual case (no whitespace, or a space or two); the rest are
    found block by block, each block of the body scanned at most once, however long the runs.
    """
    n = data.shape[0]
    found = np.asarray(positions, dtype=np.int64).copy()
    pending = np.arange(found.shape[0])
    for _ in range(4):
        if not pending.size:
            return found
        inside = found[pending] < n
        blank = np.zeros(pending.shape[0], dtype=bool)
        blank[inside] = _WHITESPACE[data[found[pending[inside]]]]
        pending = pending[blank]
        found[pending] += 1
    while pending.size:
        start = int(found[pending[0]])
        if start >= n:
            found[pending] = n
            break
        stop = min(n, start + _BLOCK // 16)
        significant = np.flatnonzero(~_WHITESPACE[data[start:stop]]) + start
        here = found[pending] < stop
        local = pending[here]
        index = np.searchsorted(significant, found[local])
        resolved = index < significant.shape[0]
        found[local[resolved]] = significant[index[resolved]]
        found[local[~resolved]] = stop
        pending = np.concatenate([local[~resolved], pending[~here]])
    return found


def _last_significant(data: np.ndarray) -> int:
    """The offset of the last byte that is not whitespace (-1 if none)."""
    end, width = int(data.shape[0]), 64
    while end > 0:
        start = max(0, end - width)
        significant = np.flatnonzero(~_WHITESPACE[data[start:end]])
        if significant.size:
            return start + int(significant[-1])
        end, width = start, width * 2
    return -1
