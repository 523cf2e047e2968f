"""A large stored member's CRC-32 and extremes taken in the upload's pauses (``StreamedMembers.checked``,
``CheckedPrefix``), and its reader going on from there (``NpzArchive.read``): the same arrays, extremes and refusals
as a member checked whole when it is read."""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import json
import math
import time
import zipfile
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from live_server import running_xent
from npz_bodies import npz

from service.api.transport import npz_archive
from service.api.transport.npz_archive import (
    ALIGNING_PEEK_BYTES,
    CheckedPrefix,
    NpzArchive,
    StreamedMembers,
    UnreadableMember,
    aligning_shift,
)
from service.core.sequence_forms import flat_sequences
from service.core.sequences import score_sequences, sequence_summary

SPECIALS = [math.nan, math.inf, -math.inf, 0.0, -1e30]


def _member(body: bytes, name: str) -> tuple[zipfile.ZipInfo, int]:
    """A member's entry and where its data starts in the body."""
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        info = archive.getinfo(name)
    name_length, extra_length = np.frombuffer(body, np.uint16, 2, info.header_offset + 26)
    return info, info.header_offset + 30 + int(name_length) + int(extra_length)


def _npy_offset(body: bytes, start: int) -> int:
    return 10 + int.from_bytes(body[start + 8 : start + 10], "little")


def _extremes(values: np.ndarray) -> tuple[float, float]:
    if not values.size:
        return math.inf, -math.inf
    return float(np.minimum.reduce(values)), float(np.maximum.reduce(values))


def _values(size: int, dtype: str, specials: list[tuple[int, float]]) -> np.ndarray:
    values = (-np.random.default_rng(size).exponential(2.0, size)).astype(dtype)
    for at, special in specials:
        values[at % size] = special
    return values


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(1, 200_000),
    dtype=st.sampled_from(["<f8", "<f4", ">f8"]),
    specials=st.lists(st.tuples(st.integers(0, 199_999), st.sampled_from(SPECIALS)), max_size=3),
    arrived=st.floats(0, 1),
    slices=st.lists(st.integers(1, 300_000), min_size=1, max_size=4),
)
def test_a_member_checked_in_slices_as_it_arrives_is_checked_as_a_whole(
    size: int, dtype: str, specials: list[tuple[int, float]], arrived: float, slices: list[int]
) -> None:
    values = _values(size, dtype, specials)
    body = npz(token_logprobs=values, sequence_lengths=np.array([size]))
    info, start = _member(body, "token_logprobs.npy")
    member = memoryview(body)[start : start + info.compress_size]
    upto = int(arrived * len(member))  # what had arrived by the last pause
    prefix = CheckedPrefix(_npy_offset(body, start))
    turn = 0
    while prefix.crc_bytes < upto:
        prefix.advance(member[:upto], slices[turn % len(slices)])
        turn += 1
    assert prefix.crc_bytes == upto
    assert prefix.crc == zlib.crc32(member[:upto])
    elements = max(0, (upto - prefix.data_offset) // values.itemsize)
    if upto >= prefix.data_offset:  # the header had come: its type is known, and the extremes of what followed
        assert prefix.dtype == np.dtype(dtype)
        assert prefix.elements == elements
        assert np.array_equal((prefix.low, prefix.high), _extremes(values[:elements]), equal_nan=True)
    else:
        assert (prefix.dtype, prefix.elements) == (None, 0)
    # The reader goes on from there: the same array, its extremes, and a checksum that holds.
    with NpzArchive(body, None, {(start, info.compress_size): prefix}) as archive:
        entry = archive.zip.getinfo("token_logprobs.npy")
        assert np.array_equal(archive.read(entry, extremes=True), values, equal_nan=True)
        assert np.array_equal(archive.extremes(entry), _extremes(values), equal_nan=True)
        assert np.array_equal(archive.read(entry), values, equal_nan=True)  # the checksum alone, from there too


class _Busy(concurrent.futures.Executor):
    """A helper that never starts what it is given: its reader calls it off and does it itself."""

    def __init__(self) -> None:
        self.given = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        self.given += 1
        return concurrent.futures.Future()


@settings(max_examples=80, deadline=None)
@given(
    size=st.integers(0, 5_000),
    dtype=st.sampled_from(["<f8", "<f4", ">f8"]),
    specials=st.lists(st.tuples(st.integers(0, 4_999), st.sampled_from(SPECIALS)), max_size=3),
    arrived=st.floats(0, 1),
    slice_bytes=st.integers(1, 3_000),
    busy=st.booleans(),
)
def test_the_rest_of_a_member_checked_in_halves_and_slices_is_checked_as_a_whole(
    size: int, dtype: str, specials: list[tuple[int, float]], arrived: float, slice_bytes: int, busy: bool
) -> None:
    # Thresholds lowered so that a few kilobytes are read in two halves (their CRC-32s combined) and many slices.
    values = _values(size, dtype, specials) if size else np.empty(0, dtype)
    body = npz(token_logprobs=values, sequence_lengths=np.array([size]))
    info, start = _member(body, "token_logprobs.npy")
    member = memoryview(body)[start : start + info.compress_size]
    upto = int(arrived * len(member))  # what was checked while it arrived
    prefix = CheckedPrefix(_npy_offset(body, start))
    prefix.advance(member[:upto], upto)
    helper = _Busy()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(npz_archive, "PARALLEL_MIN_BYTES", 64)
        patch.setattr(npz_archive, "READ_SLICE_BYTES", slice_bytes)
        if busy:
            patch.setattr(npz_archive, "HELPER_THREADS", helper)
        state = NpzArchive._checked_from(prefix.data_offset, np.dtype(dtype), prefix)
        crc, found = npz_archive._checksum_and_extremes(member, state)
    assert crc == zlib.crc32(member)
    assert np.array_equal(found, _extremes(values), equal_nan=True)


def test_a_large_rest_is_checked_in_two_halves_the_second_on_a_helper() -> None:
    values = _values(300_000, "<f8", [(250_000, math.nan)])  # a NaN in the helper's half
    body = npz(token_logprobs=values)
    info, start = _member(body, "token_logprobs.npy")
    member = memoryview(body)[start : start + info.compress_size]
    shares: list[tuple[int, CheckedPrefix]] = []

    class Helper(concurrent.futures.ThreadPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
            shares.append((args[1].crc_bytes, args[1]))  # where it starts, and what it ends as
            return super().submit(fn, *args, **kwargs)

    with Helper(1) as helper, pytest.MonkeyPatch.context() as patch:
        patch.setattr(npz_archive, "HELPER_THREADS", helper)
        state = NpzArchive._checked_from(_npy_offset(body, start), np.dtype("<f8"), None)
        crc, found = npz_archive._checksum_and_extremes(member, state)
    assert crc == zlib.crc32(member)
    assert math.isnan(found[0])
    assert math.isnan(found[1])
    ((middle, later),) = shares
    # The second half starts on an item in the middle; its CRC-32 is of its own bytes, its extremes of its items.
    assert (middle - later.data_offset) % 8 == 0
    assert abs(middle - len(member) // 2) < 8
    assert later.crc_bytes == len(member)
    assert later.crc == zlib.crc32(member[middle:])
    assert later.elements == 300_000
    assert math.isnan(later.low)


@pytest.mark.parametrize("extremes", [False, True], ids=["checksum alone", "beside the extremes"])
@pytest.mark.parametrize("where", ["in the checked part", "after it"])
def test_a_byte_damaged_before_or_after_the_pause_fails_the_checksum(extremes: bool, where: str) -> None:
    values = _values(300_000, "<f8", [])
    body = bytearray(npz(token_logprobs=values))
    info, start = _member(bytes(body), "token_logprobs.npy")
    half = info.compress_size // 2
    body[start + (half // 2 if where == "in the checked part" else half + 1000)] ^= 0x40
    member = memoryview(bytes(body))[start : start + info.compress_size]
    prefix = CheckedPrefix(_npy_offset(bytes(body), start))
    prefix.advance(member[:half], half)  # checked as it arrived: damaged or not, it does not know the archive's CRC
    checked = {(start, info.compress_size): prefix}
    with NpzArchive(bytes(body), None, checked) as archive, pytest.raises(UnreadableMember, match="bad CRC-32"):
        archive.read(archive.zip.getinfo("token_logprobs.npy"), extremes=extremes)


def test_a_member_that_is_not_a_float_array_has_its_checksum_taken_alone() -> None:
    values = np.arange(300_000, dtype=np.int64)
    body = npz(sequence_lengths=values)
    info, start = _member(body, "sequence_lengths.npy")
    member = memoryview(body)[start : start + info.compress_size]
    prefix = CheckedPrefix(_npy_offset(body, start))
    prefix.advance(member, len(member))
    assert (prefix.crc, prefix.dtype, prefix.elements) == (zlib.crc32(member), None, 0)
    with NpzArchive(body, None, {(start, info.compress_size): prefix}) as archive:
        entry = archive.zip.getinfo("sequence_lengths.npy")
        assert np.array_equal(archive.read(entry, extremes=True), values)
        assert archive.extremes(entry) is None


def _placed(body: bytes) -> tuple[np.ndarray, memoryview]:
    """A buffer of the body's length placed as xent places an archive (its first array 64-aligned), still empty."""
    shift = aligning_shift(body[:ALIGNING_PEEK_BYTES])
    buffer = np.zeros(len(body) + 128, dtype=np.uint8)
    base = (-buffer.ctypes.data) % 64 + shift
    return buffer, memoryview(buffer)[base : base + len(body)]


@pytest.mark.anyio
async def test_the_checks_run_in_the_pauses_of_the_upload_and_stop_when_it_is_complete() -> None:
    values = _values(1_000_000, "<f8", [(123_456, math.nan)])
    body = npz(token_logprobs=values, sequence_lengths=np.array([1_000_000]))
    info, start = _member(body, "token_logprobs.npy")
    _buffer, view = _placed(body)
    streamed = StreamedMembers()

    def arrive(upto: int) -> None:  # the body up to ``upto`` in 256 KiB reads, each reported as the reader does
        filled = arrive.filled  # type: ignore[attr-defined]
        while filled < upto:
            end = min(upto, filled + (256 << 10))
            view[filled:end] = body[filled:end]
            streamed.feed(view, end)
            filled = end
        arrive.filled = filled  # type: ignore[attr-defined]

    arrive.filled = 0  # type: ignore[attr-defined]
    arrive(3_000_000)  # a send: the bytes flow, with no pause for the event loop to see
    (prefix,) = streamed.checked.values()
    assert prefix.crc_bytes == 0
    await asyncio.sleep(0.05)  # the client copies its unsent rest: a pause, in which what came is checked
    assert prefix.crc_bytes == 3_000_000 - start
    assert prefix.crc == zlib.crc32(body[start:3_000_000])
    arrive(5_500_000)
    await asyncio.sleep(0.05)
    assert prefix.crc_bytes == 5_500_000 - start
    assert np.isnan(prefix.low)  # the NaN at item 123,456 (byte 987,776 of the array) was in the first part
    arrive(len(body) - 100)
    arrive(len(body))  # complete, with no pause before: the rest is the reader's
    checked = prefix.crc_bytes
    await asyncio.sleep(0.05)
    assert prefix.crc_bytes == checked < info.compress_size
    assert streamed._pause is None
    with NpzArchive(view, streamed.copies, streamed.checked) as archive:
        entry = archive.zip.getinfo("token_logprobs.npy")
        assert np.array_equal(archive.read(entry, extremes=True), values, equal_nan=True)
        assert np.array_equal(archive.extremes(entry), (math.nan, math.nan), equal_nan=True)


@pytest.mark.anyio
async def test_a_failed_upload_stops_the_checks() -> None:
    body = npz(token_logprobs=_values(1_000_000, "<f8", []))
    _buffer, view = _placed(body)
    streamed = StreamedMembers()
    view[:4_000_000] = body[:4_000_000]
    streamed.feed(view, 4_000_000)
    streamed.close()  # the client went away
    await asyncio.sleep(0.02)
    (prefix,) = streamed.checked.values()
    assert prefix.crc_bytes == 0
    assert streamed._pause is None


def test_an_unaligned_member_copied_as_it_arrives_is_not_checked_in_the_pauses() -> None:
    body = npz(labels=np.arange(3), predictions=np.ones(300_000))  # the large member second: unaligned in the body
    buffer = bytearray(body)
    streamed = StreamedMembers()
    streamed.feed(memoryview(buffer), len(buffer))
    streamed.finish()
    assert len(streamed.copies) == 1
    assert streamed.checked == {}


def _pieces(body: bytes, pause: float) -> Iterator[bytes]:
    """The body in 2 MiB pieces with a pause after each, as httpx's sends stop and start again."""
    for at in range(0, len(body), 2 << 20):
        yield body[at : at + (2 << 20)]
        time.sleep(pause)


def test_over_http_an_upload_with_pauses_is_scored_and_refused_as_one_without() -> None:
    values = -np.random.default_rng(9).exponential(2.0, 1_000_000)
    lengths = np.full(1_000, 1_000)
    good = npz(token_logprobs=values, sequence_lengths=lengths)
    bad = values.copy()
    bad[123 * 1_000 + 45] = math.nan  # in the first piece: checked in a pause
    refused = npz(token_logprobs=bad, sequence_lengths=lengths)
    damaged = bytearray(good)
    damaged[3 << 20] ^= 0x01  # in the second piece
    expected = json.loads(json.dumps(sequence_summary(score_sequences(flat_sequences(values, lengths)))))
    headers = {"content-type": "application/x-npz", "content-length": str(len(good))}
    route = "/v1/sequence-cross-entropy"
    with running_xent() as server, httpx.Client(base_url=server.url, timeout=60) as client:
        for pause in (0.0, 0.01):
            answer = client.post(route, content=_pieces(good, pause), headers=headers)
            assert answer.status_code == 200, answer.text[:300]
            assert answer.json() == expected
            answer = client.post(route, content=_pieces(refused, pause), headers=headers)
            assert answer.status_code == 422, answer.text[:300]
            assert answer.json()["errors"][0]["loc"] == ["body", "token_logprobs", 123, 45]
            answer = client.post(route, content=_pieces(bytes(damaged), pause), headers=headers)
            assert answer.status_code == 400, answer.text[:300]
            assert answer.json()["detail"].endswith("member 'token_logprobs': bad CRC-32: the archive is damaged")


def test_the_slices_are_small_enough_for_the_event_loop_to_read_between_them() -> None:
    assert npz_archive.PAUSE_SLICE_BYTES <= 1 << 20
    assert npz_archive.PAUSE_CHECK_MIN_BYTES >= npz_archive.ALIGN_MIN_BYTES
