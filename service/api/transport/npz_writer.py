"""NPZ answers written by hand: a stored (uncompressed) zip of .npy members, as ``np.savez`` writes them.

``np.savez`` streams each array through ``numpy.lib.format`` into ``zipfile`` in chunks, growing a BytesIO;
on an 8 MB array (a 100,000 × 10 gradient) that costs several times what a zip needs: each member's CRC-32
(here ISA-L's, ten times as fast as zlib's) and its headers. ``npz_parts`` gives the archive as the headers and
each large array's own buffer, which the answer sends one after the other (``answer.PartsResponse``) without
copying the arrays into one body; ``npz_bytes`` joins them. ``np.load`` and any zip reader read the result. A
member of 4 GiB or more would need zip64: such an answer is left to ``np.savez``.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Mapping

import numpy as np
from isal.isal_zlib import crc32

#: The zip's local file header, central directory entry and end record (the layouts of ``zipfile``).
_LOCAL = struct.Struct("<4s2B4HL2L2H")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_END = struct.Struct("<4s4H2LH")
#: Zip version 2.0 (stored members), and the DOS date of 1980-01-01 00:00 (the earliest a zip can say).
_VERSION = 20
_DATE = (1 << 5) | 1
_ZIP64_SIZE = 0xFFFFFFFF
#: Arrays of at least this many bytes are left where they are (a view); smaller ones are copied in with the headers.
_VIEW_MIN_BYTES = 64 * 1024


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """An .npz archive of ``arrays`` (no object arrays), each member ``<name>.npy``, uncompressed.

    >>> archive = npz_bytes({"x": np.arange(3.0), "summary": np.array('{"n": 3}')})
    >>> with np.load(io.BytesIO(archive), allow_pickle=False) as loaded:
    ...     loaded["x"].tolist(), str(loaded["summary"])
    ([0.0, 1.0, 2.0], '{"n": 3}')
    """
    return b"".join(npz_parts(arrays))


def npz_parts(arrays: Mapping[str, np.ndarray]) -> list[bytes | memoryview]:
    """``npz_bytes(arrays)`` in pieces, in order: the zip's headers joined, and each large array's own buffer as it
    is (a view, not a copy), so that an answer can be sent without joining them into one more copy of itself."""
    members = [(name, np.asarray(array, order="C")) for name, array in arrays.items()]  # 0-d stays 0-d
    if sum(array.nbytes for _, array in members) >= _ZIP64_SIZE:
        buffer = io.BytesIO()
        np.savez(buffer, **dict(members))  # type: ignore[arg-type]
        return [buffer.getvalue()]
    parts: list[bytes | memoryview] = []
    pending = bytearray()  # small pieces, sent together
    central: list[bytes] = []
    offset = 0
    for name, array in members:
        header = _npy_header(array)
        data = array.data.cast("B") if array.nbytes else memoryview(b"")
        crc = crc32(data, crc32(header))
        size = len(header) + array.nbytes
        filename = f"{name}.npy".encode()
        local = _LOCAL.pack(b"PK\x03\x04", _VERSION, 0, 0, 0, 0, _DATE, crc, size, size, len(filename), 0)
        entry = (b"PK\x01\x02", _VERSION, 0, _VERSION, 0, 0, 0, 0, _DATE, crc, size, size, len(filename))
        central.append(_CENTRAL.pack(*entry, 0, 0, 0, 0, 0, offset) + filename)
        pending += local + filename + header
        if data.nbytes >= _VIEW_MIN_BYTES:
            parts += [bytes(pending), data]
            pending = bytearray()
        else:
            pending += data
        offset += _LOCAL.size + len(filename) + size
    directory = b"".join(central)
    end = _END.pack(b"PK\x05\x06", 0, 0, len(central), len(central), len(directory), offset, 0)
    parts.append(bytes(pending + directory + end))
    return parts


def _npy_header(array: np.ndarray) -> bytes:
    """The .npy (format 1.0) header of a C-contiguous ``array``: magic, then its dtype and shape, padded."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, np.lib.format.header_data_from_array_1_0(array))
    return buffer.getvalue()
