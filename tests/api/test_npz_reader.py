"""The zero-copy .npz reader (service/api/transport/npz_archive.py) and large bodies read into their own memory map."""

import ast
import gzip
import io
import json
import math
import struct
import threading
import time
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from in_process import post
from npz_bodies import NPZ, ZipMember, deflated, hand_zip, npy, npz, stored_zip

from service.api.transport.body import MAPPED_MIN_BYTES
from service.api.transport.helper_threads import HELPER_THREADS
from service.api.transport.npz_archive import (
    ALIGNING_PEEK_BYTES,
    NotNpy,
    NpzArchive,
    StreamedMembers,
    UnreadableMember,
    aligning_shift,
)
from service.core import score_multiclass


def _read_all(body: bytes) -> dict[str, np.ndarray]:
    with NpzArchive(body) as archive:
        return {name: archive.read(info) for name, info in archive.members()}


ARRAYS = {
    "c_order": np.arange(12.0).reshape(3, 4),
    "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4) / 7),
    "big_endian": np.array([[0.25, 0.75], [0.5, 0.5]], dtype=">f8"),
    "float32": np.array([[0.1, 0.9]], dtype=np.float32),
    "uint8": np.array([3, 1, 2], dtype=np.uint8),
    "names": np.array(["A", "B"]),
    "scalar": np.array(2.5),
    "empty": np.empty((0, 3)),
}


def _zip_of(arrays: dict[str, np.ndarray], method: int) -> bytes:
    """What np.savez writes, with each member compressed by zip ``method``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name, array in arrays.items():
            archive.writestr(f"{name}.npy", npy(array))
    return buffer.getvalue()


METHODS = {
    "stored": zipfile.ZIP_STORED,
    "deflate": zipfile.ZIP_DEFLATED,
    "bzip2": zipfile.ZIP_BZIP2,
    "lzma": zipfile.ZIP_LZMA,
}


@pytest.mark.parametrize("method", METHODS.values(), ids=METHODS.keys())
def test_every_member_reads_as_np_load_reads_it(method: int) -> None:
    body = _zip_of(ARRAYS, method)
    got = _read_all(body)
    with np.load(io.BytesIO(body), allow_pickle=False) as reference:
        assert sorted(got) == sorted(reference.files)
        for name in reference.files:
            want = reference[name]
            assert got[name].dtype == want.dtype, name
            assert got[name].shape == want.shape, name
            np.testing.assert_array_equal(got[name], want)


@pytest.mark.parametrize("method", METHODS.values(), ids=METHODS.keys())
def test_members_are_read_without_ast(method: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # NumPy's header reader calls ast.literal_eval, which CPython 3.11 can fail in when threads race.
    monkeypatch.setattr(ast, "literal_eval", lambda *args: pytest.fail("ast.literal_eval was called"))

    got = _read_all(_zip_of({"predictions": ARRAYS["fortran"]}, method))

    np.testing.assert_array_equal(got["predictions"], ARRAYS["fortran"])


def _refusal(body: bytes) -> str:
    with NpzArchive(body) as archive, pytest.raises(UnreadableMember) as refused:
        archive.read(archive.infolist()[0])
    return str(refused.value)


def test_compressed_data_that_inflates_short_of_its_declared_size_is_refused() -> None:
    content = npy(np.arange(4.0))
    member = ZipMember("p.npy", deflated(content), zipfile.ZIP_DEFLATED, size=len(content) + 8, crc=0)
    assert _refusal(hand_zip(member)) == "it inflates to only 160 bytes, not the 168 bytes the archive declares for it"


def test_damaged_compressed_data_is_refused() -> None:
    content = npy(np.arange(4.0))
    member = ZipMember("p.npy", b"\xff" + deflated(content)[1:], zipfile.ZIP_DEFLATED, size=len(content), crc=0)
    message = "its compressed data is damaged (Error -3 while decompressing data: invalid block type)"
    assert _refusal(hand_zip(member)) == message


def test_a_stored_member_whose_sizes_disagree_is_refused() -> None:
    member = ZipMember("p.npy", npy(np.arange(4.0)), size=1)
    assert _refusal(hand_zip(member)) == "it is stored in 160 bytes but declares 1"


def test_an_uncompressed_aligned_member_is_a_view_into_the_body_not_a_copy() -> None:
    # Whether the data lands 8-byte aligned depends on the sizes before it; find a batch where it does.
    for rows in range(1000, 1016):
        predictions = np.random.default_rng(rows).random((rows, 10))
        raw = npz(labels=np.zeros(rows, dtype=np.int8), predictions=predictions)
        body = np.frombuffer(raw, dtype=np.uint8).copy()  # NumPy's allocation: a 16-byte aligned base
        got = _read_all(body.data)
        np.testing.assert_array_equal(got["predictions"], predictions)
        if np.shares_memory(got["predictions"], body):
            assert got["predictions"].flags.aligned
            return
    raise AssertionError("no batch size put the member's data at an aligned offset")


@pytest.mark.parametrize("name", ["p.npy", "pp.npy", "ppp.npy", "pppp.npy", "ppppp.npy", "pppppp.npy", "ppppppp.npy"])
def test_a_member_at_an_unaligned_offset_comes_back_aligned_and_equal(name: str) -> None:
    # The member's data starts wherever the zip headers end: a name of each length mod 8 shifts it.
    array = np.arange(10.0).reshape(5, 2)
    got = _read_all(stored_zip({name: npy(array)}))[name[:-4]]
    assert got.flags.aligned
    np.testing.assert_array_equal(got, array)


def test_a_member_that_is_not_npy_is_not_npy() -> None:
    body = stored_zip({"predictions.npy": b"just bytes, no magic"})
    with NpzArchive(body) as archive, pytest.raises(NotNpy):
        archive.read(archive.infolist()[0])


def test_a_stored_object_array_is_refused_without_unpickling() -> None:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|O", "fortran_order": False, "shape": (1,)})
    body = stored_zip({"labels.npy": header.getvalue() + b"\x80\x04this would be a pickle"})
    response = post("/v1/cross-entropy", body, NPZ)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "labels"]
    assert "holds Python objects" in response.json()["errors"][0]["msg"]


def _flip_last_data_byte(body: bytes, member: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        info = archive.getinfo(member)
    name_length, extra_length = struct.unpack("<2H", body[info.header_offset + 26 : info.header_offset + 30])
    end = info.header_offset + 30 + name_length + extra_length + info.compress_size
    damaged = bytearray(body)
    damaged[end - 1] ^= 0xFF
    return bytes(damaged)


def test_a_damaged_member_fails_its_crc_and_is_a_400() -> None:
    body = npz(labels=np.array([1]), predictions=np.array([[0.228, 0.619, 0.153]]))
    response = post("/v1/cross-entropy", _flip_last_data_byte(body, "predictions.npy"), NPZ)
    assert response.status_code == 400
    assert response.json()["type"].endswith("malformed-npz")
    detail = "the body is not a readable .npz archive: member 'predictions': bad CRC-32: the archive is damaged"
    assert response.json()["detail"] == detail


def test_a_member_shorter_than_its_header_says_is_a_400() -> None:
    member = npy(np.arange(6.0).reshape(3, 2))
    response = post(
        "/v1/cross-entropy", stored_zip({"predictions.npy": member[:-8], "labels.npy": npy(np.ones(3))}), NPZ
    )
    assert response.status_code == 400
    assert response.json()["detail"] == (
        "the body is not a readable .npz archive: member 'predictions': its .npy header declares "
        "shape (3, 2) of float64: 48 bytes of data; the member holds 40"
    )


def test_a_truncated_archive_is_a_400() -> None:
    body = npz(labels=np.array([1]), predictions=np.array([[0.228, 0.619, 0.153]]))
    response = post("/v1/cross-entropy", body[: len(body) // 2], NPZ)
    assert response.status_code == 400
    assert response.json()["type"].endswith("malformed-npz")


def _large_batch(rows: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(rows, 10))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return rng.integers(0, 10, rows), probabilities


def test_bodies_past_the_memory_map_threshold_score_exactly_on_every_transport() -> None:
    labels, predictions = _large_batch(20_000)
    expected = score_multiclass(labels, predictions).mean.cross_entropy
    npz_body = npz(labels=labels, predictions=predictions)
    json_body = json.dumps({"labels": labels.tolist(), "predictions": predictions.tolist()}).encode()
    assert min(len(npz_body), len(json_body)) >= MAPPED_MIN_BYTES
    for body, headers in (
        (npz_body, NPZ),
        (json_body, {"content-type": "application/json"}),
        (gzip.compress(json_body), {"content-type": "application/json", "content-encoding": "gzip"}),
    ):
        response = post("/v1/cross-entropy", body, headers)
        assert response.status_code == 200, response.text[:300]
        assert response.json()["mean"]["cross_entropy"] == pytest.approx(expected, rel=1e-13)


def test_a_large_json_body_that_leaves_the_fast_path_still_names_the_row() -> None:
    labels, predictions = _large_batch(20_000)
    text = json.dumps({"labels": labels.tolist(), "predictions": predictions.tolist()})
    # NaN is not JSON: simdjson refuses the body and the reference path explains where it is.
    rows = text.split("], [")
    rows[15_000] = "NaN, " + rows[15_000].split(", ", 1)[1]
    body = "], [".join(rows).encode()
    assert len(body) >= MAPPED_MIN_BYTES
    response = post("/v1/cross-entropy", body, {"content-type": "application/json"})
    assert response.status_code == 422, response.text[:300]
    assert response.json()["errors"][0]["loc"][:3] == ["body", "predictions", 15_000]


def _feed_in_chunks(body: bytes, sizes: list[int]) -> StreamedMembers:
    streamed = StreamedMembers()
    buffer = bytearray(len(body))
    view = memoryview(buffer)
    filled, turn = 0, 0
    while filled < len(body):
        size = sizes[turn % len(sizes)]
        view[filled : filled + size] = body[filled : filled + size]
        filled = min(len(body), filled + size)
        streamed.feed(view, filled)
        turn += 1
    _run_to_the_end(streamed)
    return streamed


def _run_to_the_end(streamed: StreamedMembers) -> None:
    """Wait for the watcher's thread to begin (``finish`` calls off one that has not), then for it to end."""
    work = streamed._work
    deadline = time.monotonic() + 10
    while work is not None and not (work.running() or work.done()):
        assert time.monotonic() < deadline
        time.sleep(0.001)
    streamed.finish()


@pytest.mark.parametrize("sizes", [[1 << 20], [4093, 60_001]], ids=["whole", "odd"])
def test_a_large_member_unaligned_in_the_body_is_copied_aligned_as_it_arrives(sizes: list[int]) -> None:
    values = np.random.default_rng(3).random(100_000)
    body = npz(predictions=values, labels=np.arange(3))
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        info = archive.getinfo("predictions.npy")
    name_length, extra_length = struct.unpack_from("<2H", body, info.header_offset + 26)  # the local header's
    start = info.header_offset + 30 + name_length + extra_length
    assert (start + 128) % 8 != 0  # np.savez's layout: the array is not 8-aligned in the body
    streamed = _feed_in_chunks(body, sizes)
    key = (start, info.compress_size)
    assert set(streamed.copies) == {key}  # the small member is left where it is
    copy = streamed.copies[key]
    assert bytes(copy) == body[start : start + info.compress_size]
    with NpzArchive(body, streamed.copies) as archive:
        array = archive.read(archive.zip.getinfo("predictions.npy"))
    assert array.flags.aligned
    assert np.array_equal(array, values)
    assert np.shares_memory(array, np.frombuffer(copy, dtype=np.uint8))  # the copy itself: no second one
    assert array.ctypes.data % 64 == 0


@pytest.mark.parametrize("sizes", [[1], [7, 3, 64], [4096], [10**9]], ids=["bytewise", "odd", "4k", "whole"])
def test_members_followed_as_they_arrive_whatever_the_reads(sizes: list[int]) -> None:
    rng = np.random.default_rng(5)
    values = rng.random(20_000)  # 160 kB: past ALIGN_MIN_BYTES
    body = npz(labels=rng.integers(0, 3, 500), predictions=values, sample_weights=rng.random(500))
    streamed = _feed_in_chunks(body, sizes)
    (copy,) = streamed.copies.values()  # the one large member, unaligned in the body
    with NpzArchive(body, streamed.copies) as archive:
        assert np.array_equal(archive.read(archive.zip.getinfo("predictions.npy")), values)
    assert bytes(copy).endswith(values.tobytes())


def test_members_are_not_followed_past_a_compressed_one() -> None:
    body = npz(True, labels=np.arange(100), predictions=np.ones((100_000, 2)))
    assert _feed_in_chunks(body, [1000]).copies == {}


@pytest.mark.parametrize("placed", [0, 1, 5])
def test_an_archive_placed_by_its_aligning_shift_has_its_first_array_64_aligned(placed: int) -> None:
    values = np.random.default_rng(placed).random(50_000)
    body = npz(token_logprobs=values, sequence_lengths=np.array([50_000]))
    shift = aligning_shift(body[:ALIGNING_PEEK_BYTES])
    buffer = np.zeros(len(body) + 64 + 64, dtype=np.uint8)
    base = (-buffer.ctypes.data) % 64  # a 64-aligned start, as a memory map's
    buffer[base + shift : base + shift + len(body)] = np.frombuffer(body, dtype=np.uint8)
    with NpzArchive(memoryview(buffer)[base + shift : base + shift + len(body)]) as archive:
        array = archive.read(archive.zip.getinfo("token_logprobs.npy"))
    assert array.ctypes.data % 64 == 0
    assert np.shares_memory(array, buffer)  # a view of the body: nothing copied
    assert aligning_shift(body[:40]) == 0  # not all of the first header: no shift
    assert aligning_shift(npz(labels=np.arange(3), predictions=values)[:ALIGNING_PEEK_BYTES]) == 0  # a small first


@pytest.mark.parametrize("extremes", [False, True], ids=["alone", "beside the extremes"])
@pytest.mark.parametrize("rows", [100, 20_000], ids=["small", "large"])
def test_a_damaged_member_fails_its_checksum_as_it_is_read(extremes: bool, rows: int) -> None:
    labels, predictions = _large_batch(rows)
    body = _flip_last_data_byte(npz(labels=labels, predictions=predictions), "predictions.npy")
    with NpzArchive(body) as archive:
        archive.read(archive.zip.getinfo("labels.npy"), extremes=extremes)  # its checksum is right
        with pytest.raises(UnreadableMember, match="bad CRC-32"):
            archive.read(archive.zip.getinfo("predictions.npy"), extremes=extremes)


def test_a_damaged_npy_header_is_a_bad_checksum_first() -> None:
    body = bytearray(npz(predictions=np.ones((20_000, 5))))
    at = body.index(b"'descr'")
    body[at : at + 7] = b"'dexcr'"
    with NpzArchive(bytes(body)) as archive, pytest.raises(UnreadableMember, match="bad CRC-32"):
        archive.read(archive.zip.getinfo("predictions.npy"), extremes=True)


ODD_ARRAYS = {
    "float32, Fortran order": np.asfortranarray(np.linspace(-3, 2, 400_000, dtype=np.float32).reshape(800, 500)),
    "big-endian float64": np.linspace(-1, 1, 200_000).astype(">f8"),
    "float16": np.linspace(-1, 1, 10).astype(np.float16),
    "empty": np.zeros(0),
}


@pytest.mark.parametrize("name", ODD_ARRAYS)
def test_the_extremes_of_any_float_member(name: str) -> None:
    array = ODD_ARRAYS[name]
    with NpzArchive(npz(values=array, lengths=np.arange(3))) as archive:
        info = archive.zip.getinfo("values.npy")
        assert np.array_equal(archive.read(info, extremes=True), array)
        expected = (float(array.min()), float(array.max())) if array.size else (math.inf, -math.inf)
        assert np.array_equal(archive.extremes(info), expected, equal_nan=True)
        lengths = archive.zip.getinfo("lengths.npy")
        assert np.array_equal(archive.read(lengths, extremes=True), np.arange(3))
        assert archive.extremes(lengths) is None  # an integer array has none taken


@pytest.mark.parametrize("busy", [False, True], ids=["threads free", "threads busy"])
@pytest.mark.parametrize("at", [0, 299_999, 300_000, 399_999])  # the CRC-32's thread takes the last quarter
@pytest.mark.parametrize("special", [np.nan, np.inf, -np.inf, 0.0, -1e30])
def test_a_large_members_extremes_split_between_two_threads_are_numpys(busy: bool, at: int, special: float) -> None:
    values = -np.random.default_rng(at).exponential(2.0, 400_000)
    values[at] = special
    body = npz(token_logprobs=values)
    release = threading.Event()
    blockers = [HELPER_THREADS.submit(release.wait, 10) for _ in range(2)] if busy else []
    try:
        with NpzArchive(body) as archive:
            info = archive.zip.getinfo("token_logprobs.npy")
            archive.read(info, extremes=True)
            expected = (float(np.minimum.reduce(values)), float(np.maximum.reduce(values)))
            assert np.array_equal(archive.extremes(info), expected, equal_nan=True)
        damaged = _flip_last_data_byte(body, "token_logprobs.npy")
        with NpzArchive(damaged) as archive, pytest.raises(UnreadableMember, match="bad CRC-32"):
            archive.read(archive.zip.getinfo("token_logprobs.npy"), extremes=True)
    finally:
        release.set()
        for blocker in blockers:
            blocker.result()


SPECIALS = [np.nan, np.inf, -np.inf, 0.0, -1e30]


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(1, 300_000),
    dtype=st.sampled_from([np.float64, np.float32]),
    specials=st.lists(st.tuples(st.integers(0, 299_999), st.sampled_from(SPECIALS)), max_size=3),
)
def test_the_extremes_taken_beside_the_checksum_are_numpys(
    size: int, dtype: type, specials: list[tuple[int, float]]
) -> None:
    values = -np.random.default_rng(size).exponential(2.0, size).astype(dtype)
    for at, special in specials:
        values[at % size] = special
    with NpzArchive(npz(token_logprobs=values)) as archive:
        info = archive.zip.getinfo("token_logprobs.npy")
        assert np.array_equal(archive.read(info, extremes=True), values, equal_nan=True)
        expected = (float(np.minimum.reduce(values)), float(np.maximum.reduce(values)))
        assert np.array_equal(archive.extremes(info), expected, equal_nan=True)


def test_a_damaged_large_archive_is_a_400_naming_the_member() -> None:
    labels, predictions = _large_batch(20_000)
    body = npz(labels=labels, predictions=predictions)
    assert len(body) >= MAPPED_MIN_BYTES
    response = post("/v1/cross-entropy", _flip_last_data_byte(body, "predictions.npy"), NPZ)
    assert response.status_code == 400
    assert response.json()["detail"].endswith("member 'predictions': bad CRC-32: the archive is damaged")


def test_a_damaged_large_archive_is_a_400_even_when_what_it_holds_is_refused_too() -> None:
    labels, predictions = _large_batch(20_000)
    predictions[7, 0] = -1.0  # alone: a 422 naming row 7
    body = npz(labels=labels, predictions=predictions)
    assert post("/v1/cross-entropy", body, NPZ).status_code == 422
    response = post("/v1/cross-entropy", _flip_last_data_byte(body, "predictions.npy"), NPZ)
    assert response.status_code == 400  # checked as it is read: the first word
    assert response.json()["detail"].endswith("member 'predictions': bad CRC-32: the archive is damaged")
