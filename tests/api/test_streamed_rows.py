"""The rows of a ``token_logprobs`` body parsed by a worker thread while it arrives (``_json_streamed``): whatever
the reads and the pieces, the decoder then reads the same request as from the whole body, the body is left as it
came, and anything the thread does not follow or refuses leaves the field to the decoder."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import mmap
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from in_process import in_process_client

from service.api import create_app
from service.api.sequence_schemas import SequenceCrossEntropyRequest
from service.api.transport import _json_sequences, _json_streamed, _watching
from service.api.transport._json_sequences import decode_logprob_sequences
from service.api.transport._json_streamed import StreamedRows
from service.core.sequence_forms import read_form
from service.settings import Settings


def _mapped(body: bytes) -> memoryview:
    """A view of a memory map the body's length, as ``body._BodyBuffer`` holds a large body (zeros yet)."""
    return memoryview(mmap.mmap(-1, len(body), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS))[: len(body)]


def _arrive(body: bytes, reads: list[int], watcher: StreamedRows, *, start: bool = True) -> memoryview:
    """``body`` into a map read by read (sizes taken in turn), the watcher fed after each, as the server does;
    then (``start``) wait for its thread to begin: a body that arrives in a moment may beat it."""
    view = _mapped(body)
    filled, turn = 0, 0
    while filled < len(body):
        size = max(1, reads[turn % len(reads)])
        view[filled : filled + size] = body[filled : filled + size]
        filled = min(len(body), filled + size)
        turn += 1
        watcher.feed(view, filled)
    if start:
        _started(watcher)
    return view


def _started(watcher: StreamedRows) -> None:
    """Wait until the watcher's thread has begun, if it has one (``finish`` calls off one that has not)."""
    work = watcher._work
    deadline = time.monotonic() + 10
    while work is not None and not (work.running() or work.done()):
        assert time.monotonic() < deadline
        time.sleep(0.001)


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pieces of some tens of bytes, so that a small body is read in many."""
    monkeypatch.setattr(_json_streamed, "PIECE_BYTES", 40)
    monkeypatch.setattr(_watching, "WAKE_BYTES", 40)  # the thread woken as often


def _text(rows: list[list[float | None]], separator: str = ", ") -> str:
    return "[" + separator.join("[" + separator.join(json.dumps(value) for value in row) + "]" for row in rows) + "]"


def _expect_rows(request: SequenceCrossEntropyRequest | None, rows: list[list[float | None]]) -> None:
    assert request is not None
    expected = read_form({"token_logprobs": rows})
    read = request.token_logprobs
    assert np.array_equal(read.logprobs, expected.logprobs, equal_nan=True)
    assert np.array_equal(read.offsets, expected.offsets)
    assert np.array_equal(read.missing, np.flatnonzero(np.isnan(expected.logprobs)))


_LOGPROB = st.one_of(st.none(), st.floats(min_value=-50.0, max_value=0.0), st.integers(min_value=-3, max_value=0))


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(st.lists(_LOGPROB, max_size=8), max_size=14),
    separator=st.sampled_from([", ", ",", " , ", ",\n  "]),
    piece_bytes=st.integers(min_value=1, max_value=90),
    reads=st.lists(st.integers(min_value=1, max_value=200), min_size=1, max_size=6),
    after=st.sampled_from(["", ', "unit": "bits"', ', "score_from": 1']),
)
def test_rows_read_as_they_arrive_are_the_rows_read_whole(
    rows: list[list[float | None]], separator: str, piece_bytes: int, reads: list[int], after: str
) -> None:
    original = f'{{"token_logprobs": {_text(rows, separator)}{after}}}'.encode()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_json_streamed, "PIECE_BYTES", piece_bytes)
        watcher = StreamedRows()
        view = _arrive(original, reads, watcher)
        watcher.finish()
        assert bytes(view) == original  # the thread wrote in place, and put every byte back
        request = decode_logprob_sequences(SequenceCrossEntropyRequest, view, so_far=watcher)
    assert bytes(view) == original
    _expect_rows(request, rows)


def test_the_thread_reads_the_rows_before_the_body_is_complete(small_pieces: None) -> None:
    rows = [[None, -1.5, -0.25], [-2.0], [], [None, None, -3.0]] * 20
    body = f'{{"token_logprobs": {_text(rows)}, "unit": "bits"}}'.encode()
    watcher = StreamedRows()
    view = _arrive(body[: len(body) // 2], [64], watcher)  # the first half (the rest would come later)
    watcher.finish()
    assert watcher.resume > watcher.start > 0
    read = watcher.rows_before(watcher.start, len(body))
    assert read is not None
    flats, lengths, _, resume = read
    assert resume == watcher.resume
    count = len(lengths)
    assert 0 < count < len(rows)
    assert lengths == [len(row) for row in rows[:count]]
    expected = read_form({"token_logprobs": rows[:count]}).logprobs
    assert np.array_equal(np.concatenate(flats), expected, equal_nan=True)
    assert bytes(view) == body[: len(body) // 2]


@pytest.mark.parametrize(
    "opening",
    [
        '{"unit": "bits", "token_logprobs": ',  # the field not first: not followed
        '{"token_logprobs": {"a": ',  # not an array
        '[{"token_logprobs": ',  # not an object
    ],
)
def test_a_body_that_does_not_open_with_the_field_is_left_to_the_decoder(opening: str, small_pieces: None) -> None:
    rows = [[-1.0, -2.0]] * 40
    body = (opening + _text(rows) + "}" * opening.count("{") + "]" * opening.startswith("[")).encode()
    watcher = StreamedRows()
    _arrive(body, [50], watcher)
    watcher.finish()
    assert watcher.start == -1
    assert watcher.rows_before(0, len(body)) is None


#: Rows the field's checks refuse somewhere after the first pieces: the thread gives up, and what it read is
#: never used; the decoder's own reading of the whole field then decides (None: the reference path names it).
REFUSED = [
    "[-2, [-3]]",  # a nested row
    "[-2, 8e88]",  # the sentinel sent as a number
    '[-2, "x"]',
    "[-2, true]",
    "[-2, nul]",
]


@pytest.mark.parametrize("odd", REFUSED)
def test_rows_the_checks_refuse_are_left_to_the_decoder_and_the_body_as_it_came(odd: str, small_pieces: None) -> None:
    rows = ", ".join(["[null, -1.5]"] * 30 + [odd] + ["[-0.5]"] * 30)
    body = f'{{"token_logprobs": [{rows}]}}'.encode()
    watcher = StreamedRows()
    view = _arrive(body, [37, 11, 256], watcher)
    watcher.finish()
    assert bytes(view) == body
    assert watcher.rows_before(watcher.start, len(body) - 1) is None
    assert decode_logprob_sequences(SequenceCrossEntropyRequest, view, so_far=watcher) is None
    assert decode_logprob_sequences(SequenceCrossEntropyRequest, body) is None
    assert bytes(view) == body


def test_rows_read_from_another_array_are_not_used(small_pieces: None) -> None:
    # The thread reads the first field's rows; the decoder finds the key twice and gives the body to the outline.
    rows = _text([[-1.0, -2.0]] * 30)
    body = f'{{"token_logprobs": {rows}, "token_logprobs": {rows}}}'.encode()
    watcher = StreamedRows()
    view = _arrive(body, [64], watcher)
    assert decode_logprob_sequences(SequenceCrossEntropyRequest, view, so_far=watcher) is None
    assert watcher.rows_before(watcher.start + 1, len(body)) is None  # another start: not this field's rows


def test_a_failed_read_stops_the_thread(small_pieces: None) -> None:
    rows = [[-1.0, -2.0]] * 200
    body = f'{{"token_logprobs": {_text(rows)}}}'.encode()
    watcher = StreamedRows()
    view = _mapped(body)
    view[:600] = body[:600]
    watcher.feed(view, 600)
    _started(watcher)
    watcher.close()  # what read_body does when the body never completes
    work = watcher._work
    assert work is not None
    work.result(timeout=10)
    assert watcher._view is None  # let go of: the map can be kept for the next body


def test_a_stalled_body_stops_the_thread_and_the_decoder_reads_the_rest(
    small_pieces: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_watching, "STALL_SECONDS", 0.05)
    rows = [[None, -1.0, -2.0]] * 60
    body = f'{{"token_logprobs": {_text(rows)}}}'.encode()
    watcher = StreamedRows()
    view = _mapped(body)
    view[:700] = body[:700]
    watcher.feed(view, 700)
    _started(watcher)
    work = watcher._work
    assert work is not None
    work.result(timeout=10)  # gave up waiting
    view[700:] = body[700:]
    watcher.feed(view, len(body))  # no thread any more: the decoder reads the rest
    _expect_rows(decode_logprob_sequences(SequenceCrossEntropyRequest, view, so_far=watcher), rows)
    assert bytes(view) == body


def test_a_body_that_finds_the_threads_busy_is_read_by_its_decoder(
    small_pieces: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    busy = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    release = threading.Event()
    busy.submit(release.wait)
    monkeypatch.setattr(_watching, "WATCH_THREADS", busy)
    try:
        rows = [[-1.0, None]] * 50
        body = f'{{"token_logprobs": {_text(rows)}}}'.encode()
        watcher = StreamedRows()
        view = _arrive(body, [100], watcher, start=False)
        asyncio.run(watcher.settled())  # never started: called off, without waiting
        assert watcher.resume == watcher.start
        assert watcher._view is None
        _expect_rows(decode_logprob_sequences(SequenceCrossEntropyRequest, view, so_far=watcher), rows)
    finally:
        release.set()
        busy.shutdown()


def test_over_http_the_rows_read_as_the_body_arrived_give_the_reference_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = [[None, *(-0.001 * ((row * 7 + column) % 997) for column in range(300))] for row in range(900)]
    body = json.dumps({"token_logprobs": rows, "unit": "bits"}).encode()
    assert len(body) > 2 * _json_sequences.PIECE_BYTES
    used: list[int] = []
    rows_before = StreamedRows.rows_before

    def recorded(self: StreamedRows, start: int, end: int) -> object:
        read = rows_before(self, start, end)
        used.append(0 if read is None else len(read[1]))
        return read

    monkeypatch.setattr(StreamedRows, "rows_before", recorded)

    async def chunks() -> AsyncIterator[bytes]:  # as a socket delivers it, a read at a time
        for first in range(0, len(body), 1 << 18):
            yield body[first : first + (1 << 18)]
            await asyncio.sleep(0.002)

    async def post(threshold: int) -> tuple[int, object]:
        headers = {"content-type": "application/json", "content-length": str(len(body))}
        async with in_process_client(create_app(Settings(fast_json_min_bytes=threshold))) as client:
            answer = await client.post("/v1/sequence-cross-entropy", content=chunks(), headers=headers)
        return answer.status_code, answer.json()

    fast = asyncio.run(post(0))
    assert used
    assert used[-1] > 0  # rows were read while the body arrived
    reference = asyncio.run(post(10**12))
    assert fast == reference
    assert fast[0] == 200


def test_the_thread_parses_while_the_event_loop_reads(small_pieces: None) -> None:
    """The parse is on the thread, not in ``feed``: a feed returns at once, long before the rows are read."""
    rows = [[-1.0, -2.0, None]] * 3000  # some 2,000 pieces of 40 bytes: tens of milliseconds
    body = f'{{"token_logprobs": {_text(rows)}}}'.encode()
    watcher = StreamedRows()
    view = _mapped(body)
    view[:] = body
    watcher.feed(view, len(body))
    work = watcher._work
    assert work is not None
    assert not work.done()
    _started(watcher)
    watcher.finish()
    assert watcher.resume > len(body) - 100
    _expect_rows(decode_logprob_sequences(SequenceCrossEntropyRequest, view, so_far=watcher), rows)


def test_the_server_reads_in_small_pieces_unless_the_thread_is_at_work(
    small_pieces: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.api.transport import body as body_module

    rows = [[-1.0, None, -2.0]] * 100
    body = f'{{"token_logprobs": {_text(rows)}}}'.encode() + b" " * (1 << 20)
    parsing, release = threading.Event(), threading.Event()
    whole_rows = _json_streamed.whole_rows

    def held(*args: Any) -> Any:  # the thread at work until released
        parsing.set()
        release.wait(10)
        return whole_rows(*args)

    monkeypatch.setattr(_json_streamed, "whole_rows", held)
    seen: list[int] = []

    class Server:
        received = 0

        async def read_into(self, view: memoryview, arrived: Any, read_bytes: Any) -> bool:
            seen.append(read_bytes())  # before the first read: no thread yet
            view[:4096] = body[:4096]
            arrived(4096)  # the field's opening: the thread starts, and parses
            assert parsing.wait(10)
            seen.append(read_bytes())
            release.set()
            view[4096:] = body[4096:]
            arrived(len(body))
            return True

    async def read() -> None:
        buffer = body_module._BodyBuffer(len(body), StreamedRows)
        deadline = body_module._Deadline(60, 0, 0)
        try:
            assert await buffer.read_directly(Server(), deadline)
        finally:
            deadline.close()
        assert buffer.watcher is not None
        await buffer.watcher.settled()
        assert not buffer.watcher.working()

    asyncio.run(read())
    assert seen == [body_module.DIRECT_READ_BYTES, 0]
