"""The memory map kept between large bodies (``body._KeptMap``): the next body that fits arrives into it, read only
up to its own length; a map something still views is never kept; an idle worker drops it."""

import asyncio
import gzip
import io
import json
import mmap
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from in_process import in_process_client
from live_server import running_xent

from service.api import create_app
from service.api.transport import WATCHERS
from service.api.transport import body as body_module
from service.api.transport._json_streamed import StreamedRows
from service.api.transport.body import MAPPED_MIN_BYTES, _KeptMap
from service.api.transport.limits import Limits
from service.core.sequence_forms import read_form
from service.core.sequences import score_sequences
from service.settings import Settings


def _map(size: int) -> mmap.mmap:
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


def test_a_map_nothing_views_is_kept_and_taken_by_the_next_body_that_fits() -> None:
    kept = _KeptMap()
    first = _map(4 << 20)
    kept.give_back(first)
    assert kept.kept() == 4 << 20
    assert kept.take(3 << 20) is first  # fits: the same pages
    assert kept.kept() == 0  # taken: one body at a time
    kept.give_back(first)
    larger = kept.take(5 << 20)
    assert larger is not first
    assert len(larger) == 5 << 20
    kept.give_back(larger)
    assert kept.kept() == 5 << 20  # the larger of the two is kept


def test_a_map_still_viewed_is_not_kept() -> None:
    kept = _KeptMap()
    mapped = _map(2 << 20)
    view = memoryview(mapped)[:100]  # e.g. an array still reading the body
    kept.give_back(mapped)
    assert kept.kept() == 0
    view.release()
    kept.give_back(mapped)
    assert kept.kept() == 2 << 20


def test_an_idle_worker_drops_the_kept_map() -> None:
    kept = _KeptMap(idle_seconds=0.05)
    kept.give_back(_map(2 << 20))
    assert kept.kept() == 2 << 20
    deadline = time.monotonic() + 2.0
    while kept.kept() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert kept.kept() == 0


def _body(rows: int, value: float) -> tuple[bytes, list[list[float | None]]]:
    sequences: list[list[float | None]] = [[None, *([value] * 999)] for _ in range(rows)]
    return json.dumps({"token_logprobs": sequences}).encode(), sequences


def test_a_smaller_body_in_the_kept_map_is_read_up_to_its_own_end(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(body_module, "KEPT_MAPS", _KeptMap())
    large, _ = _body(500, -1.2345678901234)
    small, sequences = _body(150, -0.123456789)  # shorter: the large body's bytes lie past its end in the map
    assert len(small) >= MAPPED_MIN_BYTES
    app = create_app(Settings(fast_json_min_bytes=0))

    async def post(content: bytes) -> dict[str, object]:
        async with in_process_client(app) as client:
            response = await client.post(
                "/v1/sequence-cross-entropy", content=content, headers={"content-type": "application/json"}
            )
        assert response.status_code == 200, response.text
        answer: dict[str, object] = response.json()
        return answer

    asyncio.run(post(large))
    assert body_module.KEPT_MAPS.kept() >= len(large)  # given back once the large body was read
    answer = asyncio.run(post(small))
    expected = score_sequences(read_form({"token_logprobs": sequences}))
    token = answer["token"]
    assert isinstance(token, dict)
    assert token["cross_entropy"] == pytest.approx(0.123456789, rel=1e-12)
    assert answer["n_tokens"] == expected.totals.n_tokens == 150 * 999
    assert np.isclose(expected.document_nll.sum(), 0.123456789 * 150 * 999)


def test_large_bodies_of_many_sizes_at_once_each_get_their_own_answer() -> None:
    # Twelve bodies of 0.9-6 MB, six at a time, three rounds, in a real server: maps are kept, taken by bodies that
    # fit and made anew for those that do not, while other requests are still being read; every answer is exact.
    bodies = []
    for index in range(12):
        value = -(index + 1) / 7.0
        rows = [[None, *([value] * (200 + 37 * index))]] * (300 + 11 * index)
        bodies.append((json.dumps({"token_logprobs": rows}).encode(), -value))
    assert min(len(body) for body, _ in bodies) < MAPPED_MIN_BYTES < max(len(body) for body, _ in bodies)

    def post(url: str, body: bytes) -> float:
        with httpx.Client(timeout=60) as client:
            response = client.post(url, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 200, response.text
        cross_entropy: float = response.json()["token"]["cross_entropy"]
        return cross_entropy

    with running_xent() as server, ThreadPoolExecutor(6) as pool:
        url = server.url + "/v1/sequence-cross-entropy"
        for _ in range(3):
            answers = list(pool.map(lambda item: post(url, item[0]), bodies))
            assert answers == pytest.approx([expected for _, expected in bodies], rel=1e-12)


@pytest.mark.parametrize("size", [1000, MAPPED_MIN_BYTES - 1, MAPPED_MIN_BYTES + 1, 3 * MAPPED_MIN_BYTES])
def test_a_gzip_body_past_a_mebibyte_is_inflated_into_a_map_not_a_growing_bytearray(size: int) -> None:
    original = bytes(np.random.default_rng(size).integers(0, 4, size, dtype=np.uint8))  # compresses well
    body = body_module.Body("json", gzip.compress(original), encoding="gzip")
    body.inflate(Limits.from_settings(Settings(max_body_bytes=max(size + 10, 4096))))
    assert bytes(body.data) == original
    assert body.size == size
    # A bytearray's growth copies it (twice its size at the peak); a map grows in place.
    mapped = isinstance(body.data, memoryview) and isinstance(body.data.obj, mmap.mmap)
    assert mapped == (size > MAPPED_MIN_BYTES)
    body.release()


def test_a_body_sent_in_chunks_past_a_mebibyte_grows_in_a_map() -> None:
    buffer = body_module._BodyBuffer(None, None, most=5 * MAPPED_MIN_BYTES)
    pieces = [bytes([index % 251]) * 300_000 for index in range(8)]  # 2.4 MB, no length declared
    for piece in pieces:
        buffer.add(piece)
    contents = buffer.contents()
    assert isinstance(contents, memoryview)
    assert isinstance(contents.obj, mmap.mmap)
    assert bytes(contents) == b"".join(pieces)


# --- KeptMapPlacer: a large body to a scoring route goes into the kept map before the app is called ---


WATCHERS_FOR_ROWS = {**WATCHERS, "json": StreamedRows}


def _placer(monkeypatch: pytest.MonkeyPatch, kept_bytes: int | None = 4 << 20) -> body_module.KeptMapPlacer:
    monkeypatch.setattr(body_module, "KEPT_MAPS", _KeptMap())
    if kept_bytes is not None:
        body_module.KEPT_MAPS.give_back(_map(kept_bytes))
    limits = Limits.from_settings(Settings(max_body_bytes=8 << 20))
    return body_module.KeptMapPlacer(limits, {"/v1/sequence-cross-entropy": WATCHERS_FOR_ROWS})


def _scope(path: str = "/v1/sequence-cross-entropy", content_type: str = "application/json", **extra: object) -> dict:
    headers = [(b"host", b"x"), (b"content-type", content_type.encode())]
    headers += [(name.replace("_", "-").encode(), str(value).encode()) for name, value in extra.items()]
    return {"type": "http", "method": "POST", "path": path, "root_path": "", "headers": headers}


def test_the_placer_puts_a_scoring_routes_large_body_in_the_kept_map(monkeypatch: pytest.MonkeyPatch) -> None:
    placer = _placer(monkeypatch)
    kept = body_module.KEPT_MAPS._kept
    place = placer(_scope(), 2 << 20)
    assert place is not None
    placement = place(b'{"token_logprobs": [')
    assert placement is not None
    assert len(placement.view) == 2 << 20
    assert placement.view.obj is kept  # no new memory: the kept map
    assert body_module.KEPT_MAPS.kept() == 0  # taken: one body at a time
    assert placer(_scope(), 2 << 20) is None  # the next, meanwhile, is the app's to read
    assert place(b"{") is None  # (and so is one taken from the head before the map was)
    assert placement.watcher is not None  # the route's watcher (the rows parsed as they arrive)
    placement.drop()  # the app did not take it: the map is kept again
    assert body_module.KEPT_MAPS.kept() == 4 << 20


def test_the_placer_aligns_an_archives_first_array(monkeypatch: pytest.MonkeyPatch) -> None:
    placer = _placer(monkeypatch)
    buffer = io.BytesIO()
    np.savez(buffer, token_logprobs=np.full(300_000, -1.0), sequence_lengths=np.array([300_000]))
    archive = buffer.getvalue()
    place = placer(_scope(content_type="application/x-npz"), len(archive))
    assert place is not None
    placement = place(archive[:1024])
    assert placement is not None
    placement.view[:] = archive
    start = archive.index(b"\x93NUMPY")
    data = start + 10 + int.from_bytes(archive[start + 8 : start + 10], "little")
    address = np.frombuffer(placement.view, dtype=np.uint8).ctypes.data
    assert (address + data) % 64 == 0
    placement.drop()


@pytest.mark.parametrize(
    ("scope", "length"),
    [
        (_scope("/v1/merge-nothing"), 2 << 20),  # not a scoring route
        (_scope("/healthz"), 2 << 20),
        (_scope(content_type="text/plain"), 2 << 20),  # the app refuses it (415)
        (_scope(content_encoding="gzip"), 2 << 20),  # inflated by the app, not placed
        (_scope(content_encoding="br"), 2 << 20),
        (_scope(), 9 << 20),  # past the body limit: the app answers 413
        (_scope(), 5 << 20),  # larger than the kept map: no new memory before the app charges it
        ({**_scope(), "method": "PUT"}, 2 << 20),
    ],
)
def test_the_placer_leaves_other_bodies_to_the_app(monkeypatch: pytest.MonkeyPatch, scope: dict, length: int) -> None:
    placer = _placer(monkeypatch)
    assert placer(scope, length) is None  # the app is called at once
    assert body_module.KEPT_MAPS.kept() == 4 << 20  # untouched


def test_the_placer_places_nothing_without_a_kept_map(monkeypatch: pytest.MonkeyPatch) -> None:
    placer = _placer(monkeypatch, kept_bytes=None)
    assert placer(_scope(), 2 << 20) is None


def test_the_placer_reads_the_route_under_a_root_path(monkeypatch: pytest.MonkeyPatch) -> None:
    placer = _placer(monkeypatch)
    scope = {**_scope("/xent/v1/sequence-cross-entropy"), "root_path": "/xent"}
    place = placer(scope, 2 << 20)
    assert place is not None
    placement = place(b"{")
    assert placement is not None
    placement.drop()


def test_through_xent_placed_bodies_get_the_same_answers_as_bodies_read_by_the_app() -> None:
    # The first large body of a size is read by the app (no kept map yet); the next ones are placed before it is
    # called: the same answers, JSON and NPZ, one after the other on one connection and on several.
    rows = [[None, *([-0.75] * 499)] for _ in range(600)]
    json_body = json.dumps({"token_logprobs": rows}).encode()
    buffer = io.BytesIO()
    values = np.random.default_rng(3).uniform(-5, 0, 400_000)
    np.savez(buffer, token_logprobs=values, sequence_lengths=np.full(400, 1000))
    npz_body = buffer.getvalue()
    assert min(len(json_body), len(npz_body)) > MAPPED_MIN_BYTES
    with running_xent() as server, httpx.Client(base_url=server.url, timeout=60) as client:
        for _ in range(3):
            answer = client.post(
                "/v1/sequence-cross-entropy", content=json_body, headers={"content-type": "application/json"}
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["token"]["cross_entropy"] == pytest.approx(0.75, rel=1e-15)
            answer = client.post(
                "/v1/sequence-cross-entropy", content=npz_body, headers={"content-type": "application/x-npz"}
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["token"]["cross_entropy"] == pytest.approx(-values.mean(), rel=1e-12)
            damaged = bytearray(npz_body)
            damaged[len(npz_body) // 2] ^= 1  # a placed archive is checked as any other
            refused = client.post(
                "/v1/sequence-cross-entropy", content=bytes(damaged), headers={"content-type": "application/x-npz"}
            )
            assert refused.status_code == 400, refused.text
            assert "CRC" in refused.text or "crc" in refused.text.lower()
