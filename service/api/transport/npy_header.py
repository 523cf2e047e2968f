"""The header of one ``.npy`` array, read by a strict parser of exactly what ``np.save`` writes.

A ``.npy`` file is the magic ``\\x93NUMPY``, a version, the header's length, then the header:
a Python dict literal such as ``{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }``
padded with spaces to a newline, then the array's bytes. NumPy parses that literal with
``ast.literal_eval``, which accepts any Python literal for later checks to refuse (a negative
dimension passes it) and which, on CPython 3.11, can fail with ``SystemError`` when several
threads call it at once. Here the header is read by a grammar of that one dict: its three keys
once each, a dtype string, ``True`` or ``False``, a tuple of non-negative integers; anything
else is refused, saying what was found. Nothing is allocated from what a header declares.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass

import numpy as np

from service.core.errors import quoted

#: How every .npy file starts.
MAGIC = b"\x93NUMPY"
#: Longest header read, in bytes: ``np.load``'s own bound (its ``max_header_size``).
MAX_HEADER_BYTES = 10_000
#: The most dimensions an array may have (NumPy's own limit since 2.0).
MAX_DIMENSIONS = 64

#: Header length field and text encoding of each format version (3.0 only changes the encoding).
_VERSIONS = {(1, 0): ("<H", "latin1"), (2, 0): ("<I", "latin1"), (3, 0): ("<I", "utf8")}
#: The tokens of the header's grammar; whitespace between them is skipped.
_TOKEN = re.compile(r"""\s*(?:('[^'\\\n]*'|"[^"\\\n]*")|(-?\d+)|(True|False)|([{}():,]))""")
#: A dtype string as ``np.save`` writes it for an array of plain items: byte order, kind, size.
_DESCR = re.compile(r"[<>|=]?([biufcSUO])(\d{0,9})")
#: Kinds whose items are numbers or strings, which the service reads (complex arrays are refused later, by name).
_PLAIN_KINDS = frozenset("biufcSU")
_MAX_DIGITS = 19  # a dimension must fit in int64


class NotNpy(Exception):
    """Content that is not in ``.npy`` format at all (no magic): ``np.load`` would hand back its bytes."""


class BadNpyHeader(ValueError):
    """A ``.npy`` header that is not what ``np.save`` writes; the message says what is wrong."""


class PickledNpy(Exception):
    """An array of Python objects, which only unpickling could read; it is refused, never unpickled."""


@dataclass(frozen=True)
class NpyHeader:
    """What a ``.npy`` header declares, checked: the array's shape, layout and dtype, and where its data starts."""

    shape: tuple[int, ...]
    fortran_order: bool
    dtype: np.dtype
    data_offset: int

    @property
    def count(self) -> int:
        """How many items the array has."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """How many bytes of data the header declares (a Python int: it cannot overflow)."""
        return self.count * self.dtype.itemsize

    def describe(self) -> str:
        """``shape (3, 2) of float64``, for messages."""
        return f"shape {quoted(self.shape)} of {self.dtype}"


def read_header(content: bytes | bytearray | memoryview) -> NpyHeader:
    """The header at the start of ``content``; NotNpy without the magic, BadNpyHeader or PickledNpy if refused."""
    if bytes(content[: len(MAGIC)]) != MAGIC:
        raise NotNpy
    version = tuple(content[len(MAGIC) : len(MAGIC) + 2])
    found = _VERSIONS.get((version[0], version[1])) if len(version) == 2 else None
    if found is None:
        shown = ".".join(map(str, version)) or "missing"
        raise BadNpyHeader(f".npy format version {shown} is not read (np.save writes 1.0, or 2.0 and 3.0 if needed)")
    length_format, encoding = found
    start = len(MAGIC) + 2 + struct.calcsize(length_format)
    if len(content) < start:
        raise BadNpyHeader("the member ends inside its .npy preamble")
    (length,) = struct.unpack(length_format, content[start - struct.calcsize(length_format) : start])
    if length > MAX_HEADER_BYTES:
        raise BadNpyHeader(
            f"its .npy header is {length:,} bytes long; at most {MAX_HEADER_BYTES:,} are read (as by np.load)"
        )
    if len(content) < start + length:
        raise BadNpyHeader(f"the member ends inside its .npy header ({length:,} bytes declared)")
    try:
        text = bytes(content[start : start + length]).decode(encoding)
    except UnicodeDecodeError as error:
        raise BadNpyHeader(f"its .npy header is not {encoding} text: {error.reason}") from None
    fields = _HeaderParser(text).fields()
    return NpyHeader(
        _shape(fields["shape"]), _fortran_order(fields["fortran_order"]), _dtype(fields["descr"]), start + length
    )


class _HeaderParser:
    """Recursive descent over the header's one dict: ``{ key : value , ... }`` then padding."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._position = 0

    def fields(self) -> dict[str, object]:
        """The three entries (values as parsed: str, bool or a tuple of ints); BadNpyHeader otherwise."""
        self._expect("{")
        fields: dict[str, object] = {}
        while self._peek() != "}":
            key = self._next()
            if not isinstance(key, _Quoted) or key.text not in ("descr", "fortran_order", "shape"):
                raise self._refuse("a key 'descr', 'fortran_order' or 'shape'", key)
            if key.text in fields:
                raise BadNpyHeader(f"its .npy header has the key {key.text!r} twice")
            self._expect(":")
            fields[key.text] = self._value()
            if self._peek() != "}":
                self._expect(",")
        self._expect("}")
        if self._text[self._position :].strip():
            raise BadNpyHeader("its .npy header has more after the dict than padding")
        missing = [key for key in ("descr", "fortran_order", "shape") if key not in fields]
        if missing:
            raise BadNpyHeader(f"its .npy header has no {missing[0]!r}")
        return fields

    def _value(self) -> object:
        token = self._next()
        if isinstance(token, _Quoted):
            return token.text
        if token in ("True", "False"):
            return token == "True"
        if token != "(":
            raise self._refuse("a string, True, False or a tuple", token)
        items: list[int] = []
        while self._peek() != ")":
            item = self._next()
            if not isinstance(item, int):
                raise self._refuse("an integer", item)
            items.append(item)
            if self._peek() != ")":
                self._expect(",")
            elif len(items) == 1:  # (3) is the number 3: NumPy refuses it too
                raise BadNpyHeader("its .npy header's shape is a bare number in parentheses, not a tuple")
        self._expect(")")
        return tuple(items)

    def _peek(self) -> str | int | _Quoted | None:
        position = self._position
        token = self._next()
        self._position = position
        return token

    def _next(self) -> str | int | _Quoted | None:
        """The next token: a punctuation mark, True/False, an int or a quoted string; None at the end."""
        match = _TOKEN.match(self._text, self._position)
        if match is None:
            if not self._text[self._position :].strip():
                return None
            raise BadNpyHeader(f"its .npy header is not a dict literal (at character {self._position})")
        self._position = match.end()
        string, number, name, mark = match.groups()
        if string is not None:
            return _Quoted(string[1:-1])
        if number is not None:
            if len(number.lstrip("-")) > _MAX_DIGITS:
                raise BadNpyHeader("its .npy header holds a number too large for a dimension")
            return int(number)
        return name if name is not None else str(mark)

    def _expect(self, mark: str) -> None:
        token = self._next()
        if token != mark:
            raise self._refuse(repr(mark), token)

    def _refuse(self, wanted: str, found: object) -> BadNpyHeader:
        shown = "the end" if found is None else quoted(found)
        return BadNpyHeader(f"its .npy header is not a dict as np.save writes it: expected {wanted}, found {shown}")


@dataclass(frozen=True)
class _Quoted:
    """A quoted string of the header (apart from bare tokens such as ``True``)."""

    text: str

    def __repr__(self) -> str:
        return repr(self.text)


def _shape(value: object) -> tuple[int, ...]:
    if not isinstance(value, tuple):
        raise BadNpyHeader(f"its .npy header's shape is {quoted(value)}, not a tuple of dimensions")
    if len(value) > MAX_DIMENSIONS:
        raise BadNpyHeader(f"its .npy header declares {len(value)} dimensions; at most {MAX_DIMENSIONS} are read")
    if any(size < 0 for size in value):
        raise BadNpyHeader(f"its .npy header declares shape {quoted(value)}, with a negative dimension")
    return value


def _fortran_order(value: object) -> bool:
    if not isinstance(value, bool):
        raise BadNpyHeader(f"its .npy header's fortran_order is {quoted(value)}, not True or False")
    return value


def _dtype(value: object) -> np.dtype:
    if not isinstance(value, str):
        raise BadNpyHeader(f"its .npy header's descr is {quoted(value)}, not a dtype string")
    match = _DESCR.fullmatch(value)
    if match is not None and match[1] == "O":
        raise PickledNpy
    if match is None or match[1] not in _PLAIN_KINDS:
        raise BadNpyHeader(
            f"its dtype {quoted(value)} is not read; arrays of numbers or strings are (e.g. '<f8', '<i8', '<U5')"
        )
    try:
        dtype = np.dtype(value)
    except (TypeError, ValueError, OverflowError):
        raise BadNpyHeader(f"its dtype {value!r} is not a NumPy dtype") from None
    if dtype.itemsize == 0:
        raise BadNpyHeader(f"its dtype {value!r} has items of no size")
    return dtype
