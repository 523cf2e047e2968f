"""Request bodies in NumPy's formats: .npz archives as ``np.savez`` writes them, .npy members, hand-made zips.

Importable from every test module (tests/conftest.py puts this folder on sys.path).
"""

import bz2
import io
import lzma
import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

#: The headers of an .npz request body.
NPZ = {"content-type": "application/x-npz"}


def npz(compressed: bool = False, **arrays: Any) -> bytes:
    """An .npz archive of ``arrays`` (object arrays are pickled into it, as np.savez does)."""
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def npy(array: np.ndarray) -> bytes:
    """One array in .npy format (what np.save writes)."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def stored_zip(members: dict[str, bytes]) -> bytes:
    """An uncompressed zip archive whose members (full names, e.g. ``labels.npy``) hold the given raw bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def npy_with_header(header: str, data: bytes = b"") -> bytes:
    """A .npy member (format 1.0) whose header text is exactly ``header``, then ``data`` (np.save would never)."""
    text = header.encode("latin1")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data


@dataclass(frozen=True)
class ZipMember:
    """One member of a hand-made zip: its data as stored, and what its headers declare (which may lie)."""

    name: str
    data: bytes
    method: int = zipfile.ZIP_STORED
    #: The uncompressed size declared; None: ``len(data)`` (true for stored data).
    size: int | None = None
    #: The CRC-32 declared; None: that of ``data`` (true for stored data).
    crc: int | None = None
    flags: int = 0


def hand_zip(*members: ZipMember) -> bytes:
    """A zip archive written byte by byte, so that its headers can say what ``zipfile`` would never write."""
    local, central = bytearray(), bytearray()
    for member in members:
        name = member.name.encode()
        size = len(member.data) if member.size is None else member.size
        crc = zlib.crc32(member.data) if member.crc is None else member.crc
        # version needed, flags, method, time, date (1980-01-01), CRC-32, sizes, name and extra lengths
        fields = (20, member.flags, member.method, 0, 0x21, crc, len(member.data), size, len(name), 0)
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, *fields, 0, 0, 0, 0, len(local)) + name
        local += struct.pack("<4s5H3L2H", b"PK\x03\x04", *fields) + name + member.data
    count = len(members)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(central), len(local), 0)
    return bytes(local + central + end)


def deflated(content: bytes) -> bytes:
    """``content`` as a zip member's deflate data (raw deflate, as np.savez_compressed writes it)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(content) + compressor.flush()


def deflated_zeros(mebibytes: int) -> bytes:
    """Raw deflate data of ``mebibytes`` MiB of zeros (about 1 kB a MiB), built from one repeated MiB in a few ms.

    After a sync flush the compressor's output for each further MiB of zeros is the same bytes, so
    the stream is the first MiB, that piece repeated, and an empty final block.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    first, piece = (compressor.compress(bytes(2**20)) + compressor.flush(zlib.Z_SYNC_FLUSH) for _ in range(2))
    return first + piece * (mebibytes - 1) + b"\x03\x00"  # 0x03 0x00: a final, empty fixed-Huffman block


#: One bzip2 block of zeros at level 1 holds this many (its run-length stage packs 259 zeros in 5 bytes).
BZIP2_BLOCK_ZEROS = 5_099_235


def bzip2_zeros(blocks: int) -> bytes:
    """A bzip2 stream of ``blocks`` × BZIP2_BLOCK_ZEROS zeros (211 blocks: 1 GiB in 6.5 kB), built in a few ms.

    bz2 compresses zeros at 8 s a GiB; its blocks of zeros are all the same bits, so one is cut
    out of a short stream (between two block magics, at any bit offset) and repeated, and the end
    of stream carries the combined CRC: each block's CRC folded in after a one-bit rotation.
    """
    sample = bz2.compress(bytes(2 * BZIP2_BLOCK_ZEROS + 1), 1)
    bits = format(int.from_bytes(sample, "big"), f"0{8 * len(sample)}b")
    magic = format(0x314159265359, "048b")
    first = bits.index(magic)
    block = bits[first : bits.index(magic, first + 48)]
    block_crc, combined = int(block[48:80], 2), 0
    for _ in range(blocks):
        combined = ((combined << 1 | combined >> 31) & 0xFFFFFFFF) ^ block_crc
    stream = bits[:first] + block * blocks + format(0x177245385090, "048b") + format(combined, "032b")
    stream += "0" * (-len(stream) % 8)
    return int(stream, 2).to_bytes(len(stream) // 8, "big")


def lzma_zeros(mebibytes: int) -> bytes:
    """A zip member's lzma data (version, properties, raw LZMA1 with an end marker) of ``mebibytes`` MiB of zeros.

    About 4 ms a MiB: liblzma has no shortcut for zeros.
    """
    options = {"id": lzma.FILTER_LZMA1, "preset": 0, "dict_size": 1 << 20, "lc": 3, "lp": 0, "pb": 2}
    compressor = lzma.LZMACompressor(lzma.FORMAT_RAW, filters=[options])
    stream = b"".join(compressor.compress(bytes(2**20)) for _ in range(mebibytes)) + compressor.flush()
    properties = bytes([(2 * 5 + 0) * 9 + 3]) + struct.pack("<I", 1 << 20)  # (pb·5 + lp)·9 + lc, dictionary size
    return b"\x09\x14" + struct.pack("<H", len(properties)) + properties + stream
