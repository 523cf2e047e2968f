"""Decompression bombs against a real server with an 8 MiB body limit: each is refused in time and memory bounded.

An NPZ member compressed with bzip2, lzma or deflate that declares 128 bytes but inflates to
a gigabyte is refused once one byte past its declared size has come out, so the server's peak
memory (VmHWM, reset before each request) grows by well under twice the body limit and the
answer comes in well under a few seconds; three at once leave ``/healthz`` answering in under a
second. A gzip-encoded body is inflated in a worker thread, never on the event loop, and a gzip
bomb still stops at the limit with its 413. The bad-input catalogue has the same NPZ bombs as
rows (their exact answers); this module measures what the catalogue cannot: time and memory.
"""

import gzip
import threading
import time
import zipfile
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest
from live_server import LiveServer, running_xent
from npz_bodies import NPZ, ZipMember, bzip2_zeros, deflated_zeros, hand_zip, lzma_zeros, npy

from service.api.transport import body as body_module
from service.settings import Settings

LIMIT = 8 * 2**20
CE = "/v1/cross-entropy"
#: A refused bomb must cost the server less peak memory than this (twice the body limit).
MEMORY_BOUND = 2 * LIMIT
#: And must be answered within this many seconds.
TIME_BOUND = 3.0


def bomb(method: int, data: bytes) -> bytes:
    """An archive whose predictions member declares 128 bytes and inflates to far more (zeros)."""
    member = ZipMember("predictions.npy", data, method, size=128, crc=0)
    return hand_zip(member, ZipMember("labels.npy", npy(np.array([1]))))


BOMBS = {
    "bzip2, 1 GiB": bomb(zipfile.ZIP_BZIP2, bzip2_zeros(211)),
    "deflate, 1 GiB": bomb(zipfile.ZIP_DEFLATED, deflated_zeros(1024)),
    "lzma, 128 MiB": bomb(zipfile.ZIP_LZMA, lzma_zeros(128)),
}
BOMB_ANSWER = {
    "type": "urn:xent:problem:malformed-npz",
    "title": "Malformed NPZ",
    "status": 400,
    "detail": (
        "the body is not a readable .npz archive: member 'predictions': "
        "it inflates to more than the 128 bytes the archive declares for it"
    ),
}


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    """One real server (one worker process) with an 8 MiB body limit."""
    with running_xent(env={"XENT_MAX_BODY_BYTES": str(LIMIT)}) as live:
        yield live


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _peak_growth(server: LiveServer, send: Any) -> tuple[Any, float, int]:
    """What ``send()`` returned, the seconds it took, and how far the server's peak RSS rose above its RSS before."""
    pid = server.process.pid
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    before = _status_kib(pid, "VmRSS")
    started = time.perf_counter()
    result = send()
    elapsed = time.perf_counter() - started
    return result, elapsed, (_status_kib(pid, "VmHWM") - before) * 1024


@pytest.mark.parametrize("name", BOMBS)
def test_an_npz_bomb_is_refused_quickly_with_memory_bounded_by_the_body_limit(server: LiveServer, name: str) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        response, elapsed, growth = _peak_growth(server, lambda: http.post(CE, content=BOMBS[name], headers=NPZ))

    assert response.status_code == 400, response.text
    assert response.json() == BOMB_ANSWER
    assert elapsed < TIME_BOUND
    assert growth < MEMORY_BOUND


def test_three_bombs_at_once_leave_healthz_answering_within_a_second(server: LiveServer) -> None:
    body = BOMBS["bzip2, 1 GiB"]
    latencies: list[float] = []
    with httpx.Client(base_url=server.url, timeout=60) as http, ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(http.post, CE, content=body, headers=NPZ) for _ in range(3)]
        while not all(future.done() for future in futures) or len(latencies) < 5:
            started = time.perf_counter()
            assert http.get("/healthz").status_code == 200
            latencies.append(time.perf_counter() - started)
            time.sleep(0.02)
        answers = [future.result() for future in futures]

    assert [answer.json() for answer in answers] == [BOMB_ANSWER] * 3
    assert max(latencies) < 1.0


GZIP_BOMB = gzip.compress(b" " * (64 * 2**20))  # 64 MiB of spaces in 64 kB
TOO_LARGE_INFLATED = {
    "type": "urn:xent:problem:too-large",
    "title": "Payload too large",
    "status": 413,
    "detail": f"the decompressed request body is larger than the limit of {LIMIT} bytes (XENT_MAX_BODY_BYTES)",
}


def test_a_gzip_bomb_is_a_413_with_memory_bounded_by_the_body_limit(server: LiveServer) -> None:
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    with httpx.Client(base_url=server.url, timeout=60) as http:
        response, elapsed, growth = _peak_growth(server, lambda: http.post(CE, content=GZIP_BOMB, headers=headers))

    assert response.status_code == 413, response.text
    assert response.json() == TOO_LARGE_INFLATED
    assert elapsed < TIME_BOUND
    assert growth < MEMORY_BOUND


class _RecordingDecompressor:
    """A zlib decompressor that notes the thread of every ``decompress`` call in ``threads``."""

    def __init__(self, decompressor: Any, threads: list[int]) -> None:
        self._decompressor, self._threads = decompressor, threads

    def __getattr__(self, name: str) -> Any:
        return getattr(self._decompressor, name)

    def decompress(self, *args: Any) -> bytes:
        self._threads.append(threading.get_ident())
        result: bytes = self._decompressor.decompress(*args)
        return result


def _thread_recording_zlib(threads: list[int]) -> SimpleNamespace:
    """What stands in for ``zlib`` in the body module: the same, but its decompressors record their threads."""
    return SimpleNamespace(
        MAX_WBITS=zlib.MAX_WBITS,
        error=zlib.error,
        decompressobj=lambda *args, **kwargs: _RecordingDecompressor(zlib.decompressobj(*args, **kwargs), threads),
    )


@pytest.mark.anyio
@pytest.mark.parametrize("settings", [Settings(max_body_bytes=LIMIT)])
async def test_a_gzip_body_is_inflated_off_the_event_loop(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[int] = []
    monkeypatch.setattr(body_module, "zlib", _thread_recording_zlib(threads))
    headers = {"content-type": "application/json", "content-encoding": "gzip"}

    response = await client.post(CE, content=GZIP_BOMB, headers=headers)

    assert response.status_code == 413, response.text
    assert response.json() == TOO_LARGE_INFLATED
    assert threads  # it was inflated, and never by the event loop's thread (this test's: the app runs on its loop)
    assert threading.get_ident() not in threads
