"""The NPZ codec: an ``.npz`` request body into a request model, its arrays read without copies.

Long because the zip reading it needs is all here, and nowhere else: the member checksums
computed while the body arrives, the zero-copy member reader, and the decoding itself.

``np.load`` on a body copies every member at least twice (the body into a ``BytesIO``,
then each member out of the zip stream in 256 KiB pieces). An uncompressed member
(``np.savez``) is already laid out as a ``.npy`` header followed by the raw array, so
here the array is a view into the body itself: the zip directory is read, the member's
CRC-32 is checked (a damaged archive is refused, as by ``np.load``), its ``.npy`` header
is parsed by NumPy's own reader, and ``np.frombuffer`` does the rest. A member that is
compressed (``np.savez_compressed``) or in an unusual ``.npy`` version is read the way
``np.load`` reads it. Object arrays are never unpickled: they raise the same ValueError
as ``np.load(..., allow_pickle=False)``.
"""

from __future__ import annotations

import contextlib
import io
import struct
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

import numpy as np
from numpy.lib import format as npy_format
from pydantic import BaseModel, ValidationError

from service.api.problems import HttpProblem, ProblemKind, query_parameter_error, validation_error
from service.api.transport.body import Body
from service.api.transport.limits import Limits
from service.core import InvalidInput

RequestModel = TypeVar("RequestModel", bound=BaseModel)

#: The .npy header versions whose header reader NumPy makes public.
_HEADER_READERS = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}

#: Local file header: signature, version, flags, method, time, date, crc, sizes, name and extra lengths.
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")
_LOCAL_SIGNATURE = b"PK\x03\x04"


class NotNpy(Exception):
    """A member whose content is not in ``.npy`` format (``np.load`` would hand back its bytes)."""


class _ViewReader(io.RawIOBase):
    """A read-only, seekable file over a memoryview: what ``zipfile`` and NumPy's header reader need."""

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view = view
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        size = max(0, min(len(buffer), len(self._view) - self._position))
        buffer[:size] = self._view[self._position : self._position + size]
        self._position += size
        return size


class StreamedChecksums:
    """The CRC-32 of each uncompressed member, computed while the archive is still arriving.

    Fed the body so far after every chunk, it walks the local file headers in order and runs
    each member's checksum over the bytes as they come, so that checking an 80 MB archive
    overlaps its upload instead of following it. It stops quietly at anything it does not
    follow (a compressed member, sizes only in a trailing data descriptor, the central
    directory); members it did not finish are checksummed when they are read.
    """

    def __init__(self) -> None:
        #: (start of the data, its length) → CRC-32, for every member finished so far.
        self.found: dict[tuple[int, int], int] = {}
        self._next_header = 0  # offset of the next local header; -1 once lost
        self._start = self._end = self._position = -1  # the member being checksummed
        self._crc = 0

    def feed(self, view: memoryview, filled: int) -> None:
        """Advance over ``view[:filled]``, everything received so far."""
        while True:
            if self._start >= 0:
                upto = min(filled, self._end)
                if upto > self._position:
                    self._crc = zlib.crc32(view[self._position : upto], self._crc)
                    self._position = upto
                if self._position < self._end:
                    return
                self.found[(self._start, self._end - self._start)] = self._crc
                self._next_header, self._start = self._end, -1
            if self._next_header < 0 or not self._enter_member(view, filled):
                return

    def _enter_member(self, view: memoryview, filled: int) -> bool:
        """Read the local header at ``_next_header`` if it has arrived; False to wait (or when lost)."""
        header = self._next_header
        if filled < header + _LOCAL_HEADER.size:
            return False
        fields = _LOCAL_HEADER.unpack(view[header : header + _LOCAL_HEADER.size])
        signature, flags, method, size, name_length, extra_length = (fields[i] for i in (0, 2, 3, 7, 9, 10))
        if signature != _LOCAL_SIGNATURE or flags & 0x9 or method != zipfile.ZIP_STORED:
            self._next_header = -1  # the central directory, or a member this does not follow
            return False
        start = header + _LOCAL_HEADER.size + name_length + extra_length
        if filled < start:
            return False
        if size == 0xFFFFFFFF:
            size = _zip64_compressed_size(bytes(view[start - extra_length : start]), fields[8] == 0xFFFFFFFF)
            if size is None:
                self._next_header = -1
                return False
        self._start, self._end, self._position, self._crc = start, start + size, start, 0
        return True


def _zip64_compressed_size(extra: bytes, uncompressed_too: bool) -> int | None:
    """The compressed size from a local header's zip64 extra field (after the uncompressed one, if there)."""
    position = 0
    while position + 4 <= len(extra):
        kind, length = struct.unpack_from("<2H", extra, position)
        if kind == 0x0001:
            offset = position + 4 + (8 if uncompressed_too else 0)
            if offset + 8 <= position + 4 + length <= len(extra):
                size: int = struct.unpack_from("<Q", extra, offset)[0]
                return size
            return None
        position += 4 + length
    return None


class NpzArchive:
    """The members of an ``.npz`` held in ``data`` (bytes, bytearray or a memoryview).

    ``checksums``: CRC-32s already computed while the body arrived (``StreamedChecksums``).
    Raises ``zipfile.BadZipFile`` (or OSError / EOFError / ValueError) for something
    that is not a readable zip archive, as ``np.load`` would.
    """

    def __init__(
        self, data: bytes | bytearray | memoryview, checksums: Mapping[tuple[int, int], int] | None = None
    ) -> None:
        self._view = memoryview(data).cast("B")
        self._checksums = checksums or {}
        self.zip = zipfile.ZipFile(_ViewReader(self._view))

    def __enter__(self) -> NpzArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.zip.close()

    def infolist(self) -> list[zipfile.ZipInfo]:
        return self.zip.infolist()

    def members(self) -> Iterator[tuple[str, zipfile.ZipInfo]]:
        """(name as ``np.load`` gives it: without ``.npy``, entry) for every entry."""
        for info in self.zip.infolist():
            name = info.filename
            yield (name[:-4] if name.endswith(".npy") else name), info

    def read(self, info: zipfile.ZipInfo) -> np.ndarray:
        """The array in ``info``; NotNpy if it is not a .npy member; ValueError for object arrays."""
        content = self._stored_content(info)
        if content is None:
            with self.zip.open(info) as member:
                return _read_copy(member)
        reader = _ViewReader(content)
        if bytes(content[: len(npy_format.MAGIC_PREFIX)]) != npy_format.MAGIC_PREFIX:
            raise NotNpy
        version = npy_format.read_magic(reader)
        header_reader = _HEADER_READERS.get(version)
        if header_reader is None:
            reader.seek(0)
            return _read_copy(reader)
        shape, fortran_order, dtype = header_reader(reader)
        if dtype.hasobject:
            raise ValueError("Object arrays cannot be loaded when allow_pickle=False")
        count = int(np.prod(shape, dtype=np.int64))
        start = reader.tell()
        needed = count * dtype.itemsize
        if len(content) - start < needed:
            raise ValueError(f"EOF: reading array data, expected {needed} bytes got {len(content) - start}")
        array = np.frombuffer(content, dtype=dtype, count=count, offset=start)
        if not array.flags.aligned:
            array = array.copy()  # unaligned float64 would slow every NumPy loop that reads it
        return array.reshape(shape, order="F" if fortran_order else "C")

    def _stored_content(self, info: zipfile.ZipInfo) -> memoryview | None:
        """The bytes of an uncompressed member, CRC-checked; None for a compressed one."""
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:  # encrypted: let zipfile refuse it
            return None
        header = bytes(self._view[info.header_offset : info.header_offset + _LOCAL_HEADER.size])
        if len(header) != _LOCAL_HEADER.size or header[:4] != _LOCAL_SIGNATURE:
            raise zipfile.BadZipFile(f"Bad magic number for file header of {info.filename!r}")
        *_, name_length, extra_length = _LOCAL_HEADER.unpack(header)
        start = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
        content = self._view[start : start + info.compress_size]
        if len(content) != info.compress_size:
            raise EOFError(f"the archive ends inside member {info.filename!r}")
        checksum = self._checksums.get((start, info.compress_size))
        if (zlib.crc32(content) if checksum is None else checksum) != info.CRC:
            raise zipfile.BadZipFile(f"Bad CRC-32 for file {info.filename!r}")
        return content


def _read_copy(member: Any) -> np.ndarray:
    """``np.load``'s own way: NotNpy for non-.npy content, else a copy, never unpickling."""
    magic = member.read(len(npy_format.MAGIC_PREFIX))
    if magic != npy_format.MAGIC_PREFIX:
        raise NotNpy
    member.seek(0)
    array: np.ndarray = npy_format.read_array(member, allow_pickle=False)
    return array


#: How a zip archive starts: a local file header, or the end record of an empty archive (np.savez()).
#: A single .npy array (its own magic) gets a message of its own.
_NPY_MAGIC = b"\x93NUMPY"
_ARCHIVE_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06", _NPY_MAGIC)


def _malformed_npz(reason: str) -> HttpProblem:
    return ProblemKind.MALFORMED_NPZ.error(f"the body is not a readable .npz archive: {reason}")


def decode(model: type[RequestModel], body: Body, query: Mapping[str, str], limits: Limits) -> RequestModel:
    """The request model from an NPZ body: arrays from the archive, options from the query.

    Pickled objects are refused, never loaded. The arrays may be views into the body, which
    therefore stays until they are gone.
    """
    data = body.data
    checksums = body.watcher.found if isinstance(body.watcher, StreamedChecksums) else None
    members: frozenset[str] = getattr(model, "array_fields", frozenset())
    head = bytes(data[:64])
    if not head.startswith(_ARCHIVE_SIGNATURES):
        # np.load would try anything else as a pickle and say so ("contains pickled data"), which
        # misleads the usual sender: a JSON body sent with the NPZ content type.
        looks_like_json = head.lstrip()[:1] in (b"{", b"[")
        hint = "; it looks like JSON: send it with Content-Type: application/json" if looks_like_json else ""
        raise _malformed_npz(f"it does not start with a zip signature (PK\\x03\\x04), as np.savez writes{hint}")
    if head.startswith(_NPY_MAGIC):
        raise _malformed_npz("it holds a single .npy array; send an .npz with named members (np.savez)")
    fields: dict[str, Any] = {}
    try:
        archive = NpzArchive(data, checksums)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise _malformed_npz(str(error) or type(error).__name__) from None
    with archive:
        # A compressed member can inflate far past the body it came in: hold the archive's
        # uncompressed size to the body limit before reading any member.
        limits.check_archive(sum(int(entry.file_size) for entry in archive.infolist()))
        for name, entry in archive.members():
            if name not in members:
                allowed = ", ".join(sorted(members))
                raise InvalidInput(name, f"unexpected member {name!r} in the archive; members are: {allowed}")
            try:
                fields[name] = archive.read(entry)
            except NotNpy:
                raise _malformed_npz(f"member {name!r} is not a .npy array (np.save format)") from None
            except ValueError as error:
                if "allow_pickle" in str(error):
                    raise InvalidInput(
                        name, "holds Python objects (pickled); only numeric and string arrays are accepted"
                    ) from None
                raise _malformed_npz(f"member {name!r}: {error}") from None
            except (OSError, EOFError, zipfile.BadZipFile) as error:
                raise _malformed_npz(f"member {name!r}: {error}") from None
    for name in ("classes", "pos_weight"):
        if name in fields and isinstance(fields[name], np.ndarray) and fields[name].dtype.kind in "USf":
            # Names become a list of str; a 0-d pos_weight becomes a number.
            value = fields[name]
            fields[name] = value.tolist() if value.ndim else value.item()
    options: dict[str, Any] = dict(query)
    # Numbers in the query stay strings if they do not parse, and validation then names them.
    if options.get("epsilon", "auto") != "auto":
        with contextlib.suppress(ValueError):
            options["epsilon"] = float(options["epsilon"])
    if "pos_weight" in options and "pos_weight" not in fields:  # one number fits in the query
        with contextlib.suppress(ValueError):
            options["pos_weight"] = float(options["pos_weight"])
    misplaced = sorted(name for name in members & options.keys() if isinstance(options[name], str))
    if misplaced:
        raise query_parameter_error(
            misplaced[0], "is an array: send it as a member of the .npz archive, not in the query"
        )
    try:
        return model.model_validate({**options, **fields}, strict=False)
    except ValidationError as error:
        raise validation_error(error, model, from_query=True) from None
