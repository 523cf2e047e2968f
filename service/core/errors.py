"""Typed errors of the scoring core.

Every error names the input field it is about and, for arrays, the row and column,
so that the HTTP layer (``service.api.problems``) can turn it into a precise 422
without knowing anything about the math.
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Iterable
from typing import Any, ClassVar

Location = tuple[str | int, ...]

#: How many characters of a caller's value a message quotes: an error must not echo a large input.
QUOTE_LIMIT = 64
#: How many items a message lists (allowed names, say) before it says how many more there are.
LIST_LIMIT = 10
# Containers and other objects are shown a few items deep, so that quoting one costs little however large it is.
_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlevel, _SHORT_REPR.maxlist, _SHORT_REPR.maxdict = 2, 4, 4
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = QUOTE_LIMIT


def capped(text: str) -> str:
    """``text`` cut to QUOTE_LIMIT characters, then "…" where it was cut."""
    return text if len(text) <= QUOTE_LIMIT else text[:QUOTE_LIMIT] + "…"


def quoted(value: object) -> str:
    """``repr(value)`` for an error message, showing at most QUOTE_LIMIT characters of it, then "…".

    A string shows its first QUOTE_LIMIT characters inside the quotes (escapes may lengthen
    them); an integer too long to print whole says how long it is.

    Examples
    --------
    >>> quoted("B"), quoted(0.25), quoted(None)
    ("'B'", '0.25', 'None')
    >>> quoted("x" * 1_000_000) == "'" + "x" * 64 + "…'"
    True
    >>> quoted(10**5000)
    '<an integer of 16610 bits>'
    """
    if isinstance(value, str):
        return repr(capped(value))
    if isinstance(value, int):
        if value.bit_length() > 4 * QUOTE_LIMIT:
            # str() of an int is quadratic in its length and refused past 4,300 digits.
            return f"<an integer of {value.bit_length()} bits>"
        return capped(repr(value))
    return capped(_SHORT_REPR.repr(value))


#: The plurals that are not the noun + "s".
_PLURALS = {"entry": "entries", "class": "classes", "label per sample": "labels per sample"}


def counted(count: int, noun: str) -> str:
    """``count`` and ``noun``, in the plural unless the count is 1.

    >>> counted(1, "row"), counted(2, "row"), counted(0, "row"), counted(1, "entry"), counted(3, "class")
    ('1 row', '2 rows', '0 rows', '1 entry', '3 classes')
    """
    return f"{count} {noun if count == 1 else _PLURALS.get(noun, noun + 's')}"


def rows_off(count: int) -> str:
    """How many rows are off 1, for the messages refusing them: "1 row is off", "2 rows are off"."""
    return f"{counted(count, 'row')} {'is' if count == 1 else 'are'} off"


def quoted_list(values: Iterable[object]) -> str:
    """The first LIST_LIMIT of ``values``, each ``quoted``, then how many more there are.

    >>> quoted_list(["A", "B"]), quoted_list(range(12))
    ("'A', 'B'", '0, 1, 2, 3, 4, 5, 6, 7, 8, 9, … (12 in all)')
    """
    listed = list(values)
    shown = ", ".join(quoted(v) for v in listed[:LIST_LIMIT])
    return shown if len(listed) <= LIST_LIMIT else f"{shown}, … ({len(listed)} in all)"


class ScoringError(Exception):
    """Base class of every error the core raises."""


class InvalidInput(ScoringError):
    """An input value cannot be scored; ``field``/``row``/``column`` say where."""

    #: The machine-readable kind of error; a subclass's is its name in snake case (``NotANumber``: ``not_a_number``).
    code: ClassVar[str] = "invalid_input"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.code = re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()

    def __init__(
        self,
        field: str,
        message: str,
        *,
        row: int | None = None,
        column: int | None = None,
        names: tuple[str, str] = ("row", "column"),
    ) -> None:
        self.field = field
        self.message = message
        self.row = row
        self.column = column
        #: What ``row`` and ``column`` are called in ``where`` (a sequence and a position, for token sequences).
        self.names = names
        super().__init__(str(self))

    @property
    def loc(self) -> Location:
        """The path to the offending value: field, then row and column when known."""
        parts: list[str | int] = [self.field]
        if self.row is not None:
            parts.append(self.row)
            if self.column is not None:
                parts.append(self.column)
        return tuple(parts)

    @property
    def where(self) -> str:
        """Human form of ``loc``: ``predictions row 17, column 2``."""
        text = self.field
        if self.row is not None:
            text += f" {self.names[0]} {self.row}"
            if self.column is not None:
                text += f", {self.names[1]} {self.column}"
        return text

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class NotANumber(InvalidInput):
    """A value that should be a number is a string, boolean, null or nested array."""


class NotFinite(InvalidInput):
    """A number is NaN, +Infinity or -Infinity (or too large for float64)."""


class BadShape(InvalidInput):
    """An array has the wrong number of dimensions, rows or columns (ragged rows too)."""


class OutOfRange(InvalidInput):
    """A number lies outside its domain: a probability above 1, a negative weight, …"""


class UnknownClass(InvalidInput):
    """A label names a class that is not in ``classes`` or indexes past the last column."""


class RowsNotNormalized(InvalidInput):
    """Rows that must sum to 1 do not, and the options do not allow it."""


class InvalidOption(InvalidInput):
    """An option is outside its range or cannot be combined with the others."""
