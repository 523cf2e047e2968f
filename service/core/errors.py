"""Typed errors of the scoring core.

Every error names the input field it is about and, for arrays, the row and column,
so that the HTTP layer (``service.api.errors``) can turn it into a precise 422
without knowing anything about the math.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

Location = tuple[str | int, ...]


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
    ) -> None:
        self.field = field
        self.message = message
        self.row = row
        self.column = column
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
            text += f" row {self.row}"
            if self.column is not None:
                text += f", column {self.column}"
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
