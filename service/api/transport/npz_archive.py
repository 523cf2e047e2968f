"""An ``.npz`` archive's members as arrays: zero-copy when stored, decompressed in bounded pieces otherwise.

Long because the zip reading the NPZ codec needs is all here, and nowhere else: the members
placed aligned while the body arrives, the walk from the zip directory to each member's
data, the checksums (and a float array's extremes, when asked for) taken in the upload's
pauses and as a member is read, and the bounded decompression. The ``.npy`` header grammar
is in ``npy_header``.

``np.load`` on a body copies every member at least twice (the body into a ``BytesIO``,
then each member out of the zip stream in 256 KiB pieces). An uncompressed member
(``np.savez``) is already laid out as a ``.npy`` header followed by the raw array, so
here the array is a view into the body itself: the zip directory is read, the member's
CRC-32 is checked (a damaged archive is refused, as by ``np.load``; ISA-L's, ten times as
fast as zlib's), its ``.npy`` header
is parsed strictly, and ``np.frombuffer`` does the rest. A compressed member
(``np.savez_compressed``: deflate; bzip2 and lzma too) is decompressed in bounded pieces
into one buffer of the size the archive declares for it, and no further (``zipfile``
inflates a whole bzip2 or lzma block at once, whatever size the archive declares).
Encrypted members and other methods are refused; object arrays are never unpickled.
"""

from __future__ import annotations

import asyncio
import bz2
import contextlib
import io
import lzma
import math
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from isal.isal_zlib import crc32, crc32_combine

from service.api.transport._watching import ThreadedWatcher
from service.api.transport.helper_threads import HELPER_THREADS
from service.api.transport.npy_header import BadNpyHeader, NotNpy, PickledNpy, read_header

__all__ = [
    "BadNpyHeader",
    "CheckedPrefix",
    "NotNpy",
    "NpzArchive",
    "PickledNpy",
    "StreamedMembers",
    "UnreadableMember",
]

#: Where an archive's large arrays are placed: on a boundary of this many bytes (a cache line; NumPy needs 8).
ALIGNMENT = 64
#: A stored member at least this large whose array is unaligned in the body is copied while it arrives.
ALIGN_MIN_BYTES = 1 << 16
#: A stored member at least this large, whose array's extremes are asked for too (``NpzArchive.read``), is checked in
#: two halves side by side, the second on a helper thread, their CRC-32s then combined.
PARALLEL_MIN_BYTES = 1 << 20
#: A member's CRC-32 and extremes are taken this much at a time, the three passes over each slice while it is in the
#: core's cache: 12 ms for 80 MB on one thread where the whole member's three passes took 20 (not in cache either way).
READ_SLICE_BYTES = 1 << 20
#: A stored member at least this large, lying where it arrives (not copied), has its CRC-32, and a float array's
#: extremes, taken in the pauses of the upload as far as it has come (``StreamedMembers``), and its reader goes on from
#: there (``NpzArchive.read``). A client that sends a large body in one ``send`` (httpx) stops when the kernel's
#: buffers are full and copies the unsent rest before it sends again: for 20–70 ms nothing arrives, and the event loop,
#: which only waits, takes the checks of what has. Taken on a thread while the bytes flow, they slowed the reads and the
#: client's sends stopped earlier (``benchmarks/first_send.py``).
PAUSE_CHECK_MIN_BYTES = PARALLEL_MIN_BYTES
#: The upload has paused when nothing more has arrived for this long.
PAUSE_SECONDS = 0.001
#: Bytes checked at a time in a pause (about 0.2 ms); then the event loop reads whatever has come before it goes on: a
#: client that sends again finds the reader waiting, not its window shut for a whole member's checks.
PAUSE_SLICE_BYTES = 1 << 20
#: The bytes of a ``.npy`` member that say where its array starts: the magic, the version, the header's length.
_NPY_PREFIX = 12
#: How much of an archive's start ``aligning_shift`` looks at: the first member's local header, name and extra.
ALIGNING_PEEK_BYTES = 1024
#: Local file header: signature, version, flags, method, time, date, crc, sizes, name and extra lengths.
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")
_LOCAL_SIGNATURE = b"PK\x03\x04"


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


@dataclass
class CheckedPrefix:
    """What was checked of one stored member while the body arrived (``StreamedMembers``): the CRC-32 of its first
    ``crc_bytes`` bytes and, when it holds a float array, the extremes (as ``_extremes`` takes them: NaN if one is) of
    the array's first ``elements`` items, which start ``data_offset`` bytes into the member."""

    data_offset: int  # where the array starts in the member (0: not a .npy member; its CRC-32 alone is taken)
    crc_bytes: int = 0
    crc: int = 0
    dtype: np.dtype | None = None  # a float array's, once its .npy header has come; else None (no extremes)
    elements: int = 0
    low: float = math.inf
    high: float = -math.inf

    def advance(self, member: memoryview, most: int) -> None:
        """Check up to ``most`` more of ``member``: the member's bytes that have arrived (a prefix of it)."""
        end = min(len(member), self.crc_bytes + most)
        if end <= self.crc_bytes:
            return
        if self.crc_bytes < self.data_offset <= end:  # its .npy header is in: the array's type
            with contextlib.suppress(NotNpy, BadNpyHeader, PickledNpy):
                header = read_header(member[: self.data_offset])
                if header.dtype.kind == "f" and header.data_offset == self.data_offset:
                    self.dtype = header.dtype
        self.crc, self.crc_bytes = crc32(member[self.crc_bytes : end], self.crc), end
        if self.dtype is not None:
            count = (end - self.data_offset) // self.dtype.itemsize
            if count > self.elements:
                offset = self.data_offset + self.elements * self.dtype.itemsize
                part = np.frombuffer(member, self.dtype, count - self.elements, offset)
                self.low, self.high = _combined((self.low, self.high), _extremes(part))
                self.elements = count


class StreamedMembers(ThreadedWatcher):
    """An aligned copy of each large stored member whose array would not be aligned where it lies in the body,
    made while the archive is still arriving.

    ``np.savez`` lays a member's array out wherever its headers end: a float64 array 3 bytes past a multiple of 8
    would be copied when read (every NumPy loop over an unaligned array is about three times slower). The body's
    first member is placed aligned in its map from the start (``aligning_shift``); fed the body so far as it
    arrives, this follows the local file headers in order (on the event loop: they cost it next to nothing) and
    copies any other member of ``ALIGN_MIN_BYTES`` or more whose array is not 8-aligned, as it arrives, to where
    it is 64-aligned (``copies``), on a worker thread (``_watching``; NumPy's copy lets go of the GIL). It stops
    quietly at anything it does not follow (a compressed member, sizes only in a trailing data descriptor, the
    central directory). A large member that lies where it arrives has its CRC-32 (and a float array's extremes) taken
    in the upload's pauses, on the event loop (``checked``, ``PAUSE_CHECK_MIN_BYTES``); its reader checks the rest
    (``NpzArchive.read``).
    """

    def __init__(self) -> None:
        super().__init__()
        #: (start of the data, its length) → the member's bytes, placed so that its array is aligned.
        self.copies: dict[tuple[int, int], memoryview] = {}
        #: (start of the data, its length) → what of the member was checked in the upload's pauses.
        self.checked: dict[tuple[int, int], CheckedPrefix] = {}
        self._body: memoryview | None = None  # the body, while the pauses are watched
        self._arrived = 0  # how much of it had arrived at the last feed, and when (the event loop's clock)
        self._arrived_at = 0.0
        self._pause: asyncio.TimerHandle | asyncio.Handle | None = None  # the next look for a pause, or check in one
        self._next_header = 0  # offset of the next local header; -1 once lost
        self._start = self._end = self._position = -1  # the member being followed
        self._copy: np.ndarray | None = None  # where it is copied to, if it is

    def feed(self, view: memoryview, filled: int) -> None:
        """Follow the members on the event loop while none needs copying (their headers cost it next to nothing,
        where waking a thread every megabyte cost an 80 MB upload 30 ms); the thread only once one does."""
        if self._work is None and self._copy is None and not self._stopped:
            if not self._advance(view, filled):
                self._stopped = True
            if self._copy is None or self._stopped:
                self._watch_pauses(view, filled)
                return
        super().feed(view, filled)
        self._watch_pauses(view, filled)

    def close(self) -> None:
        self._end_pauses()
        super().close()

    # --- the upload's pauses, on the event loop ---

    def _watch_pauses(self, view: memoryview, filled: int) -> None:
        """Note what has arrived, and when; look for a pause a little later. A complete body's rest is its reader's."""
        if filled >= len(view):
            self._end_pauses()
            return
        if not self.checked:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # fed outside an event loop: no pauses to use
            return
        self._body, self._arrived, self._arrived_at = view, filled, loop.time()
        if self._pause is None:
            self._pause = loop.call_later(PAUSE_SECONDS, self._look_for_pause, loop)

    def _look_for_pause(self, loop: asyncio.AbstractEventLoop) -> None:
        self._pause = None
        if self._body is None:
            return
        quiet = loop.time() - self._arrived_at
        if quiet < PAUSE_SECONDS:
            self._pause = loop.call_later(PAUSE_SECONDS - quiet, self._look_for_pause, loop)
        else:
            self._check_in_pause(loop, self._arrived)

    def _check_in_pause(self, loop: asyncio.AbstractEventLoop, arrived: int) -> None:
        """Check one slice of what has arrived, then (the event loop having read whatever came meanwhile) the next,
        while nothing more arrives; once something does, wait for the next pause."""
        self._pause = None
        body = self._body
        if body is None:
            return
        if self._arrived != arrived:
            self._pause = loop.call_later(PAUSE_SECONDS, self._look_for_pause, loop)
            return
        for (start, size), prefix in list(self.checked.items()):
            upto = min(arrived, start + size) - start
            if prefix.crc_bytes < upto:
                prefix.advance(body[start : start + upto], PAUSE_SLICE_BYTES)
                self._pause = loop.call_soon(self._check_in_pause, loop, arrived)
                return

    def _end_pauses(self) -> None:
        if self._pause is not None:
            self._pause.cancel()
        self._pause = self._body = None

    @staticmethod
    def _address(view: memoryview) -> int:
        """Where the body's first byte is in memory (a body may lie a few bytes into its map: ``aligning_shift``)."""
        address: int = np.frombuffer(view, dtype=np.uint8, count=1).ctypes.data
        return address

    def _advance(self, view: memoryview, filled: int) -> bool:
        """Advance over ``view[:filled]``, everything received so far; False once lost."""
        while True:
            if self._start >= 0:
                upto = min(filled, self._end)
                if upto > self._position and self._copy is not None:
                    at = self._position - self._start
                    np.copyto(self._copy[at : upto - self._start], np.frombuffer(view[self._position : upto], np.uint8))
                self._position = max(self._position, upto)
                if self._position < self._end:
                    return True
                if self._copy is not None:
                    self.copies[(self._start, self._end - self._start)] = self._copy.data
                self._next_header, self._start, self._copy = self._end, -1, None
            if self._next_header < 0:
                return False
            if not self._enter_member(view, filled):
                return self._next_header >= 0

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
        if size >= ALIGN_MIN_BYTES:
            if filled < start + _NPY_PREFIX:
                return False
            offset = _npy_data_offset(bytes(view[start : start + _NPY_PREFIX]))
            if (self._address(view) + start + offset) % 8:  # the array would be unaligned: copied where it is aligned
                room = np.empty(size + ALIGNMENT, dtype=np.uint8)
                pad = (-(room.ctypes.data + offset)) % ALIGNMENT
                self._copy = room[pad : pad + size]
            elif size >= PAUSE_CHECK_MIN_BYTES:  # read where it lies: checked in the upload's pauses
                self.checked[(start, size)] = CheckedPrefix(offset)
        self._start, self._end, self._position = start, start + size, start
        return True


def aligning_shift(head: bytes) -> int:
    """How far past a 64-byte boundary to place an archive whose first bytes are ``head`` for its first member's
    array to start on one: 0 unless ``head`` holds that member's local header and ``.npy`` prefix and the member
    is stored and at least ``ALIGN_MIN_BYTES`` (``np.savez`` writes the arrays in the order given: the large one
    is often first). Any other member unaligned in the body is copied as it arrives (``StreamedMembers``)."""
    if len(head) < _LOCAL_HEADER.size:
        return 0
    fields = _LOCAL_HEADER.unpack_from(head)
    signature, flags, method, size, name_length, extra_length = (fields[i] for i in (0, 2, 3, 7, 9, 10))
    start = _LOCAL_HEADER.size + name_length + extra_length
    if signature != _LOCAL_SIGNATURE or flags & 0x9 or method != zipfile.ZIP_STORED or len(head) < start + _NPY_PREFIX:
        return 0
    if size == 0xFFFFFFFF:
        size = _zip64_compressed_size(head[start - extra_length : start], fields[8] == 0xFFFFFFFF) or 0
    if size < ALIGN_MIN_BYTES:
        return 0
    offset = _npy_data_offset(head[start : start + _NPY_PREFIX])
    return (-(start + offset)) % ALIGNMENT if offset else 0


def _npy_data_offset(prefix: bytes) -> int:
    """Where the array starts in a ``.npy`` member whose first ``_NPY_PREFIX`` bytes are ``prefix`` (the magic, the
    version, the header's length); 0 if they are not a ``.npy`` prefix (then nothing is moved: the reader refuses it).
    """
    if not prefix.startswith(b"\x93NUMPY"):
        return 0
    if prefix[6] == 1:
        return 10 + int.from_bytes(prefix[8:10], "little")
    return 12 + int.from_bytes(prefix[8:12], "little")


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


#: The largest zip directory (central directory) read: room for a member name of 60,000 characters.
MAX_DIRECTORY_BYTES = 1 << 16
_END_RECORD = struct.Struct("<4s4H2LH")  # signature, disks, entries, directory size and offset, comment length


def _directory_size(view: memoryview) -> int:
    """The size of the zip directory as the end record says, found where ``zipfile`` finds it; 0 if there is none.

    The end record is the last 22 bytes, or else the last one within a comment's reach of the end;
    a zip64 locator just before it points to the zip64 end record, whose size ``zipfile`` uses instead.
    """
    reach = max(0, len(view) - _END_RECORD.size - 0xFFFF)
    if bytes(view[-_END_RECORD.size :][:4]) == b"PK\x05\x06" and bytes(view[-2:]) == b"\0\0":
        end = len(view) - _END_RECORD.size
    else:
        end = reach + bytes(view[reach:]).rfind(b"PK\x05\x06")
        if end < reach or end + _END_RECORD.size > len(view):
            return 0
    size: int = _END_RECORD.unpack_from(view, end)[5]
    if (
        end >= 76
        and bytes(view[end - 20 : end - 16]) == b"PK\x06\x07"
        and bytes(view[end - 76 : end - 72]) == b"PK\x06\x06"
    ):
        size = struct.unpack_from("<Q", view, end - 76 + 40)[0]
    return size


class NpzArchive:
    """The members of an ``.npz`` held in ``data`` (bytes, bytearray or a memoryview).

    ``copies``: members placed while the body arrived for their arrays to be aligned (``StreamedMembers``; the same
    bytes). Every member's CRC-32 is checked as it is read (``read``).
    Raises ``zipfile.BadZipFile`` (or OSError / EOFError / ValueError) for something
    that is not a readable zip archive, as ``np.load`` would.
    """

    def __init__(
        self,
        data: bytes | bytearray | memoryview,
        copies: Mapping[tuple[int, int], memoryview] | None = None,
        checked: Mapping[tuple[int, int], CheckedPrefix] | None = None,
    ) -> None:
        self._view = memoryview(data).cast("B")
        self._copies = copies or {}
        self._checked = checked or {}
        self._extremes: dict[str, tuple[float, float]] = {}
        directory = _directory_size(self._view)
        if directory > MAX_DIRECTORY_BYTES:
            # zipfile builds an object per entry of the directory: 60 MB of empty entries would take
            # 15 s and half a gigabyte. The few members of a request need a few hundred bytes.
            raise zipfile.BadZipFile(
                f"its zip directory is {directory:,} bytes long; at most {MAX_DIRECTORY_BYTES:,} are read"
            )
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

    def read(self, info: zipfile.ZipInfo, *, extremes: bool = False) -> np.ndarray:
        """The array in ``info``: NotNpy if it is not a .npy member, UnreadableMember or PickledNpy if refused.

        Nothing is allocated from what the member's .npy header declares: the header must declare
        exactly the bytes that follow it, and the array is a view of them. ``extremes``: take the least and
        greatest value of a float array too (``np.minimum`` / ``np.maximum``: NaN if one is NaN; +inf and -inf
        for an empty one), for ``extremes(info)``: taken with the CRC-32, a slice at a time, a large member in two
        halves side by side (``_checksum_and_extremes``). What was checked while the body arrived (``checked``)
        is not checked again: the CRC-32 goes on from there, and so do the extremes.
        """
        content, checked, prefix = self._content(info)
        try:
            header = read_header(content)
            held = len(content) - header.data_offset
            if held != header.nbytes:
                raise UnreadableMember(
                    f"its .npy header declares {header.describe()}: {header.nbytes:,} bytes of data; "
                    f"the member holds {held:,}"
                )
        except (NotNpy, BadNpyHeader, PickledNpy, UnreadableMember):
            if not checked:
                _check_crc(content, info.CRC)  # a damaged archive says so first
            raise
        array = np.frombuffer(content, dtype=header.dtype, count=header.count, offset=header.data_offset)
        if not array.flags.aligned:
            array = array.copy()  # unaligned float64 would slow every NumPy loop that reads it
        crc_bytes, crc = (0, 0) if prefix is None else (prefix.crc_bytes, prefix.crc)
        if extremes and array.dtype.kind == "f":
            if checked:  # inflated, its CRC-32 checked as it was: the extremes alone
                self._extremes[info.filename] = _extremes(array)
            else:
                state = self._checked_from(header.data_offset, header.dtype, prefix)
                crc, found = _checksum_and_extremes(content, state)
                if crc != info.CRC:
                    raise UnreadableMember(_BAD_CRC)
                checked = True
                self._extremes[info.filename] = found
        if not checked:
            _check_crc(content[crc_bytes:], info.CRC, crc)
        return array.reshape(header.shape, order="F" if header.fortran_order else "C")

    @staticmethod
    def _checked_from(data_offset: int, dtype: np.dtype, prefix: CheckedPrefix | None) -> CheckedPrefix:
        """Where the checks of a float member go on from: what was checked while it arrived (its CRC-32, and its
        extremes if they were taken of this array), or its start."""
        state = CheckedPrefix(data_offset, dtype=dtype)
        if prefix is not None:
            state.crc_bytes, state.crc = prefix.crc_bytes, prefix.crc
            if prefix.dtype == dtype and prefix.data_offset == data_offset:
                state.elements, state.low, state.high = prefix.elements, prefix.low, prefix.high
        return state

    def extremes(self, info: zipfile.ZipInfo) -> tuple[float, float] | None:
        """The least and greatest value of the float array in ``info``, if ``read`` was asked for them."""
        return self._extremes.get(info.filename)

    def _content(self, info: zipfile.ZipInfo) -> tuple[memoryview, bool, CheckedPrefix | None]:
        """The member's bytes, uncompressed (a view into the body when it is stored), whether their CRC-32 was
        checked (a stored member's is left to ``read``), and what of them was checked while the body arrived."""
        if info.flag_bits & 0x1:
            raise UnreadableMember("it is encrypted; send the arrays unencrypted, as np.savez writes them")
        method = info.compress_type
        if method != zipfile.ZIP_STORED and method not in _INFLATERS:
            raise UnreadableMember(
                f"it is compressed with zip method {method}, which is not read: send it stored (np.savez), "
                "deflated (np.savez_compressed), or compressed with bzip2 or lzma"
            )
        header = bytes(self._view[info.header_offset : info.header_offset + _LOCAL_HEADER.size])
        if len(header) != _LOCAL_HEADER.size or header[:4] != _LOCAL_SIGNATURE:
            raise UnreadableMember("its local header is not where the archive's directory says")
        *_, name_length, extra_length = _LOCAL_HEADER.unpack(header)
        start = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
        data = self._view[start : start + info.compress_size]
        if len(data) != info.compress_size:
            raise UnreadableMember("the archive ends inside it")
        if method == zipfile.ZIP_STORED:
            if info.file_size != info.compress_size:
                raise UnreadableMember(f"it is stored in {info.compress_size:,} bytes but declares {info.file_size:,}")
            key = (start, info.compress_size)
            copy = self._copies.get(key)
            return (data, False, self._checked.get(key)) if copy is None else (copy, False, None)
        content = _inflate(method, data, info.file_size)
        _check_crc(content, info.CRC)
        return content, True, None


_BAD_CRC = "bad CRC-32: the archive is damaged"


def _extremes(array: np.ndarray) -> tuple[float, float]:
    """The least and greatest value of a float array, NaN if one is (+inf and -inf for none, which any value
    replaces: ``np.minimum`` / ``np.maximum`` combine the extremes of its parts)."""
    if not array.size:
        return math.inf, -math.inf
    return float(np.minimum.reduce(array, axis=None)), float(np.maximum.reduce(array, axis=None))


def _checksum_and_extremes(member: memoryview, state: CheckedPrefix) -> tuple[int, tuple[float, float]]:
    """The CRC-32 and the array's extremes of a stored float ``member``, going on from ``state`` (advanced to the end):
    a slice at a time (``READ_SLICE_BYTES``), and for a large rest in two halves side by side, the second on a helper
    thread from a state of its own (its CRC-32 from 0, combined after)."""
    size, itemsize = len(member), state.dtype.itemsize if state.dtype is not None else 1
    # The second half starts on an item of the array, past where the first goes on from.
    middle = state.data_offset + ((state.crc_bytes + size) // 2 - state.data_offset) // itemsize * itemsize
    if size - state.crc_bytes < PARALLEL_MIN_BYTES or middle <= max(state.crc_bytes, state.data_offset):
        _advance_to_end(member, state)
        return state.crc, (state.low, state.high)
    later = CheckedPrefix(state.data_offset, middle, 0, state.dtype, (middle - state.data_offset) // itemsize)
    pending = HELPER_THREADS.submit(_advance_to_end, member, later)
    _advance_to_end(member[:middle], state)
    if pending.cancel():  # (not started, both helpers busy with other bodies: taken here)
        _advance_to_end(member, later)
    else:
        pending.result()
    crc = crc32_combine(state.crc, later.crc, size - middle)
    return crc, _combined((state.low, state.high), (later.low, later.high))


def _advance_to_end(member: memoryview, state: CheckedPrefix) -> None:
    while state.crc_bytes < len(member):
        state.advance(member, READ_SLICE_BYTES)


def _combined(first: tuple[float, float], second: tuple[float, float]) -> tuple[float, float]:
    """The extremes of two parts of an array, from each one's: NaN if either has it (Python's ``min`` would drop it)."""
    return float(np.minimum(first[0], second[0])), float(np.maximum(first[1], second[1]))


def _check_crc(content: bytes | bytearray | memoryview, expected: int, crc: int = 0) -> None:
    """UnreadableMember unless ``content``'s CRC-32, going on from ``crc`` (that of the bytes before it), is
    ``expected``."""
    if crc32(content, crc) != expected:
        raise UnreadableMember(_BAD_CRC)


class UnreadableMember(Exception):
    """A member that cannot be read as an array; the message says why."""


#: Bytes of compressed input handed to a decompressor at a time, and most bytes of output taken from it at once.
_INPUT_PIECE = 1 << 18
_OUTPUT_PIECE = 1 << 20


class _Inflater(Protocol):
    """What ``bz2.BZ2Decompressor`` and ``lzma.LZMADecompressor`` offer, and ``_RawDeflate`` too."""

    @property
    def needs_input(self) -> bool: ...

    @property
    def eof(self) -> bool: ...

    def decompress(self, data: bytes | memoryview, max_length: int = -1) -> bytes: ...


class _RawDeflate:
    """zlib's raw deflate decompressor with the interface of bz2's and lzma's (it keeps its unused input)."""

    def __init__(self) -> None:
        self._decompressor = zlib.decompressobj(-zlib.MAX_WBITS)
        self.needs_input = True

    @property
    def eof(self) -> bool:
        return self._decompressor.eof

    def decompress(self, data: bytes | memoryview, max_length: int = -1) -> bytes:
        piece = self._decompressor.decompress(data or self._decompressor.unconsumed_tail, max_length)
        # Input left over, or output up to the brim (zlib may hold more): ask again before new input.
        self.needs_input = not self._decompressor.unconsumed_tail and len(piece) < max_length
        return piece


def _lzma(data: memoryview, size: int) -> tuple[_Inflater, int]:
    """An LZMA decompressor for a zip member (version, properties, then raw LZMA1) and where its stream starts.

    The dictionary is held to the member's declared size: a match never reaches further back
    than the output so far, and a header that asks for gigabytes must not get them.
    """
    if len(data) < 9 or struct.unpack_from("<H", data, 2)[0] != 5:
        raise UnreadableMember("its lzma properties are missing or not 5 bytes")
    properties, dictionary = data[4], struct.unpack_from("<I", data, 5)[0]
    literal_context, rest = properties % 9, properties // 9
    lzma_filter = {
        "id": lzma.FILTER_LZMA1,
        "lc": literal_context,
        "lp": rest % 5,
        "pb": rest // 5,
        "dict_size": max(4096, min(dictionary, size + 1)),
    }
    return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[lzma_filter]), 9


#: Each compression method read, and how to start decompressing a member of it (from the member's data and size).
_INFLATERS: dict[int, Callable[[memoryview, int], tuple[_Inflater, int]]] = {
    zipfile.ZIP_DEFLATED: lambda data, size: (_RawDeflate(), 0),
    zipfile.ZIP_BZIP2: lambda data, size: (bz2.BZ2Decompressor(), 0),
    zipfile.ZIP_LZMA: _lzma,
}


def _inflate(method: int, data: memoryview, size: int) -> memoryview:
    """A compressed member's ``size`` bytes, decompressed in bounded pieces; UnreadableMember if they differ.

    The archive's declared sizes are held to the body limit before any member is read
    (``Limits.check_archive``), and decompression stops one byte past the declared size of
    the member, whatever its data would inflate to: a bomb costs at most what the archive
    admits to, and no more CPU than that either.
    """
    try:
        inflater, position = _INFLATERS[method](data, size)
        output = np.empty(size + 1, dtype=np.uint8)  # pages are only touched as they are filled
        filled = 0
        while filled <= size:
            if inflater.eof:
                break
            chunk = data[position : position + _INPUT_PIECE] if inflater.needs_input else b""
            if inflater.needs_input and not chunk:
                break  # the data ended before the stream did
            position += len(chunk)
            piece = inflater.decompress(chunk, min(_OUTPUT_PIECE, size + 1 - filled))
            output[filled : filled + len(piece)] = np.frombuffer(piece, dtype=np.uint8)
            filled += len(piece)
    except (OSError, EOFError, ValueError, lzma.LZMAError, zlib.error) as error:
        raise UnreadableMember(f"its compressed data is damaged ({error})") from None
    if filled != size:
        more = "more than" if filled > size else f"only {filled:,} bytes, not"
        raise UnreadableMember(f"it inflates to {more} the {size:,} bytes the archive declares for it")
    return output.data[:size]
