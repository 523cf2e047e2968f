"""The rows of a large ``token_logprobs`` body parsed while it arrives (issue 16), on a body watcher's thread.

A body watcher (``body.BodyWatcher``) of the JSON bodies of the routes that read ``token_logprobs`` rows
(``watches_rows``). When the body opens with that field's array (``{"token_logprobs": [``, as a request built that
way is written), each read of the body wakes a worker thread (``_watching.WATCH_THREADS``) that parses
the whole rows that have arrived, ``PIECE_BYTES`` at a time, each piece copied out first (the body is never written
while it arrives) and read as ``_json_sequences.whole_rows`` reads it, with the field's own checks.

Why a thread: simdjson holds the GIL while it parses, but the event loop does not need it to read the body (the
server reads a large body straight into its memory map, ``service.server.direct_body``: the kernel's copy, outside
the GIL), so the two cores each do half, and what is left once the body is in is its last megabyte. Parsed on the
event loop instead, between reads, the reads wait for the parse and an upload takes as long as before
(``benchmarks/sequences.py``).

It stops at anything it does not follow (the field's end, a row over the rest of the body) and gives up at anything
the field's checks refuse; ``decode_logprob_sequences`` then reads the rest, or the whole field. What it read is used
only when the decoder, by its own rules, finds the field where it began (``rows_before``, which first waits for the
thread), and only up to where it stopped: the field is read once, either way, and the model validates everything
around it. A read that fails closes the watcher, and its thread stops.
"""

from __future__ import annotations

import mmap
import re

import numpy as np
from pydantic import BaseModel

from service.api.transport._json_sequences import FIELD, KIND, PIECE_BYTES, whole_rows
from service.api.transport._watching import ThreadedWatcher

#: How the body opens for the rows to be read as it arrives: the field first, its array open.
_OPENING = re.compile(rb'[ \t\n\r]*\{[ \t\n\r]*"' + FIELD.encode() + rb'"[ \t\n\r]*:[ \t\n\r]*\[')
#: The longest opening looked at (whitespace included); a body whose first read is shorter waits for more.
_OPENING_BYTES = 256
#: What may follow a row's ',' before the next row's '['.
_WHITESPACE = b" \t\n\r"


def watches_rows(model: type[BaseModel]) -> bool:
    """Whether ``model``'s body may be a ``token_logprobs`` one, whose rows ``StreamedRows`` reads as it arrives."""
    return getattr(model, "array_kinds", {}).get(FIELD) == KIND


class StreamedRows(ThreadedWatcher):
    """Parses the whole rows of a ``token_logprobs`` body's field as they arrive; see the module's docstring."""

    def __init__(self) -> None:
        super().__init__()
        #: The field's '[' in the body (-1 until found), and the ',' after the last row read (the '[' at first).
        self.start = -1
        self.resume = -1
        self._flats: list[np.ndarray] = []
        self._lengths: list[int] = []
        self._missings: list[np.ndarray] = []

    def _begin(self, view: memoryview, filled: int) -> bool:
        """Once the body shows whether it opens with the field's array: begin if it does, stop if not."""
        if filled < _OPENING_BYTES and filled < len(view):
            return False
        opening = _OPENING.match(bytes(view[: min(filled, _OPENING_BYTES)]))
        if opening is None or not isinstance(view.obj, mmap.mmap | bytes | bytearray):
            self._stopped = True
            return False
        self.start = self.resume = opening.end() - 1
        return True

    def working(self) -> bool:
        """Whether the thread is parsing (simdjson holds the GIL meanwhile)."""
        return self._busy()

    def rows_before(self, start: int, end: int) -> tuple[list[np.ndarray], list[int], list[np.ndarray], int] | None:
        """What was read of the field whose array is ``body[start:end]``: each piece's values (NaN for a null), the
        rows' lengths, each piece's null positions, and the ',' the rest begins at; None when nothing was, or the
        rows read belong to another array. Waits for the thread to finish first (or calls it off, not started)."""
        self.finish()
        if self.start != start or not self._flats or not start < self.resume < end:
            return None
        return self._flats, self._lengths, self._missings, self.resume

    def _advance(self, view: memoryview, filled: int) -> bool:
        """Read the whole rows in ``view[:filled]`` past those read; False once nothing more will be read."""
        searched = view.obj
        assert isinstance(searched, mmap.mmap | bytes | bytearray)  # _begin checked it
        while filled - self.resume > PIECE_BYTES:
            cut = self._cut(searched, filled)
            if cut is None:
                return not self._stopped  # the row under way ends in what is still to come (or the field did)
            read = whole_rows(view, self.resume, cut)
            if read is None:
                self._stopped = True
                self._flats, self._lengths, self._missings = [], [], []
                return False
            self._flats.append(read[0])
            self._lengths.extend(read[1])
            self._missings.append(read[2])
            self.resume = cut
        return True

    def _cut(self, searched: mmap.mmap | bytes | bytearray, filled: int) -> int | None:
        """The ',' after the last row that ends within ``PIECE_BYTES`` (or, for a longer row, the first that ends),
        with another row's '[' after it; None to wait for more. Stops at the field's end (or anything else)."""
        window = self.resume + PIECE_BYTES
        cut = searched.rfind(b"],", self.resume + 1, min(window, filled))
        if cut < 0:
            cut = searched.find(b"],", window - 1, filled)
            if cut < 0:
                return None
        after = cut + 2
        while after < filled and searched[after] in _WHITESPACE:
            after += 1
        if after >= filled:
            return None
        if searched[after] != ord("["):
            self._stopped = True  # the field's end, followed by another key: the decoder reads the rest
            return None
        return cut + 1
