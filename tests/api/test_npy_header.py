"""The strict .npy header parser (service/api/transport/npy_header.py): NumPy's answers on what np.save writes,
a clear refusal of anything else, no ``ast``, and safe from many threads at once."""

import ast
import io
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from npz_bodies import npy, npy_with_header

from service.api.transport.npy_header import BadNpyHeader, NotNpy, PickledNpy, read_header

ARRAYS = [
    np.zeros((2, 3)),
    np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    np.array(2.5),
    np.empty((0, 4), dtype=np.float32),
    np.array([1, 2], dtype=">i8"),
    np.array([3], dtype=np.uint8),
    np.array([True, False]),
    np.array(["A", "Bee"]),
    np.array([b"xy"]),
    np.array([1 + 2j]),
    np.zeros((1,) * 32),
]


def _npy(array: np.ndarray, version: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, version=version)
    return buffer.getvalue()


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
@pytest.mark.parametrize("array", ARRAYS, ids=lambda array: f"{array.dtype.str}{array.shape}")
def test_what_np_save_writes_reads_as_the_array_it_holds(array: np.ndarray, version: tuple[int, int]) -> None:
    content = _npy(array, version)

    header = read_header(content)

    fortran_order = array.flags.f_contiguous and not array.flags.c_contiguous
    assert (header.shape, header.fortran_order, header.dtype) == (array.shape, fortran_order, array.dtype)
    assert header.nbytes == array.nbytes == len(content) - header.data_offset
    assert header.data_offset % 16 == 0  # np.save aligns the data; a view of it stays aligned


def _header(**entries: str) -> str:
    """A header dict with the usual three entries, some replaced (or, given "", left out)."""
    fields = {"descr": "'<f8'", "fortran_order": "False", "shape": "(3,)"} | entries
    return "{" + "".join(f"'{key}': {value}, " for key, value in fields.items() if value) + "}\n"


NOT_WRITTEN = "its .npy header is not a dict as np.save writes it: expected "
NOT_READ = "is not read; arrays of numbers or strings are (e.g. '<f8', '<i8', '<U5')"
REFUSED = [
    (_header(shape="(-1, 3)"), "its .npy header declares shape (-1, 3), with a negative dimension"),
    (_header(shape="(3)"), "its .npy header's shape is a bare number in parentheses, not a tuple"),
    (_header(shape="3"), NOT_WRITTEN + "a string, True, False or a tuple, found 3"),
    (_header(shape="('3',)"), NOT_WRITTEN + "an integer, found '3'"),
    (_header(shape="(3.0,)"), "its .npy header is not a dict literal (at character 52)"),
    (_header(shape=f"({2**64},)"), "its .npy header holds a number too large for a dimension"),
    (_header(shape=str((1,) * 65)), "its .npy header declares 65 dimensions; at most 64 are read"),
    (_header(shape=""), "its .npy header has no 'shape'"),
    (_header(fortran_order="0"), NOT_WRITTEN + "a string, True, False or a tuple, found 0"),
    (_header(fortran_order="'False'"), "its .npy header's fortran_order is 'False', not True or False"),
    (_header(descr="'<M8[ns]'"), f"its dtype '<M8[ns]' {NOT_READ}"),
    (_header(descr="'|V8'"), f"its dtype '|V8' {NOT_READ}"),
    (_header(descr="'<i3'"), "its dtype '<i3' is not a NumPy dtype"),
    (_header(descr="'|S0'"), "its dtype '|S0' has items of no size"),
    (_header(descr="True"), "its .npy header's descr is True, not a dtype string"),
    (_header(descr="[('a', '<f8')]"), "its .npy header is not a dict literal (at character 9)"),
    (_header(descr="'<f8', 'descr': '<f8'"), "its .npy header has the key 'descr' twice"),
    (_header(x="1"), NOT_WRITTEN + "a key 'descr', 'fortran_order' or 'shape', found 'x'"),
    (_header().replace("False,", "False"), NOT_WRITTEN + "',', found 'shape'"),
    (_header() + "{}", "its .npy header has more after the dict than padding"),
    ("__import__('os').system('true')\n", "its .npy header is not a dict literal (at character 0)"),
    (_header().split("3,")[0], NOT_WRITTEN + "an integer, found the end"),
    (_header().ljust(10_001), "its .npy header is 10,001 bytes long; at most 10,000 are read (as by np.load)"),
]
BAD_VERSION = "is not read (np.save writes 1.0, or 2.0 and 3.0 if needed)"


@pytest.mark.parametrize(("header", "message"), REFUSED)
def test_anything_else_is_refused_saying_what_is_wrong(header: str, message: str) -> None:
    with pytest.raises(BadNpyHeader) as refused:
        read_header(npy_with_header(header, bytes(24)))

    assert str(refused.value) == message


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x93NUMPY\x04\x00\x10\x00", f".npy format version 4.0 {BAD_VERSION}"),
        (b"\x93NUMPY", f".npy format version missing {BAD_VERSION}"),
        (b"\x93NUMPY\x02\x00\x10", "the member ends inside its .npy preamble"),
        (b"\x93NUMPY\x01\x00\x40\x00{'descr'", "the member ends inside its .npy header (64 bytes declared)"),
        (b"\x93NUMPY\x03\x00\x02\x00\x00\x00\xff\n", "its .npy header is not utf8 text: invalid start byte"),
    ],
)
def test_a_broken_preamble_is_refused_saying_what_is_wrong(content: bytes, message: str) -> None:
    with pytest.raises(BadNpyHeader) as refused:
        read_header(content)

    assert str(refused.value) == message


def test_an_object_array_is_refused_as_pickled_without_reading_further() -> None:
    with pytest.raises(PickledNpy):
        read_header(npy_with_header(_header(descr="'|O'"), b"\x80\x04 a pickle"))


def test_content_without_the_magic_is_not_npy() -> None:
    with pytest.raises(NotNpy):
        read_header(b"PK\x03\x04 not a .npy at all")


def test_headers_are_read_without_ast(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any) -> None:
        raise AssertionError("ast.literal_eval was called")

    monkeypatch.setattr(ast, "literal_eval", refuse)

    assert read_header(npy(np.zeros((3, 2)))).shape == (3, 2)


def test_many_threads_read_headers_at_once_and_agree() -> None:
    # CPython 3.11's ast.literal_eval (NumPy's header parser) can fail with SystemError under this load.
    contents = [npy(array) for array in ARRAYS]
    expected = [read_header(content) for content in contents]

    def read_all(_: int) -> list[Any]:
        return [read_header(content) for content in contents for _ in range(50)][::50]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(read_all, range(64)))

    assert results == [expected] * 64
