"""Read the members of an ``.npz`` request body without copying them.

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

import io
import struct
import zipfile
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

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


class NpzArchive:
    """The members of an ``.npz`` held in ``data`` (bytes, bytearray or a memoryview).

    Raises ``zipfile.BadZipFile`` (or OSError / EOFError / ValueError) for something
    that is not a readable zip archive, as ``np.load`` would.
    """

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._view = memoryview(data).cast("B")
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
        if zlib.crc32(content) != info.CRC:
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
