"""The NPZ answer writer: what ``np.load`` reads back from it is what ``np.savez`` would have written."""

import io
import zipfile

import numpy as np
import pytest

from service.api.transport.npz_writer import npz_bytes, npz_parts

ARRAYS = {
    "summary": np.array('{"n": 2, "name": "é ✓"}'),  # 0-d unicode, as the answer's summary
    "cross_entropy": np.array([0.5, np.nan, np.inf]),
    "scored": np.array([True, False, True]),
    "gradient": np.asfortranarray(np.arange(12.0).reshape(3, 4)),  # not C-contiguous
    "empty": np.empty((0, 3)),
    "indices": np.array([1, -2], dtype=np.int32),
}


def _loaded(content: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(content), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def test_np_load_reads_back_what_np_savez_would_have_written() -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **ARRAYS)  # type: ignore[arg-type]
    ours, numpys = _loaded(npz_bytes(ARRAYS)), _loaded(buffer.getvalue())
    assert list(ours) == list(numpys) == list(ARRAYS)
    for name, array in numpys.items():
        assert ours[name].dtype == array.dtype, name
        assert ours[name].shape == array.shape, name
        np.testing.assert_array_equal(ours[name], array)
    assert str(ours["summary"]) == '{"n": 2, "name": "é ✓"}'


def test_the_archive_is_a_valid_stored_zip_with_checked_crcs() -> None:
    with zipfile.ZipFile(io.BytesIO(npz_bytes(ARRAYS))) as archive:
        assert archive.testzip() is None  # every member's CRC-32 is right
        assert [info.compress_type for info in archive.infolist()] == [zipfile.ZIP_STORED] * len(ARRAYS)
        assert archive.namelist() == [f"{name}.npy" for name in ARRAYS]


@pytest.mark.parametrize("arrays", [{}, {"x": np.zeros(0)}])
def test_empty_archives_and_members_load(arrays: dict[str, np.ndarray]) -> None:
    assert {name: value.tolist() for name, value in _loaded(npz_bytes(arrays)).items()} == {
        name: value.tolist() for name, value in arrays.items()
    }


def test_parts_join_to_the_archive_and_leave_large_arrays_where_they_are() -> None:
    large = np.arange(100_000.0)  # 800 kB: sent as the array's own buffer
    parts = npz_parts({"summary": np.array("{}"), "large": large, "small": np.arange(3.0)})
    assert b"".join(parts) == npz_bytes({"summary": np.array("{}"), "large": large, "small": np.arange(3.0)})
    views = [part for part in parts if isinstance(part, memoryview)]
    assert len(views) == 1
    assert np.shares_memory(np.frombuffer(views[0], dtype=np.float64), large)
