"""The idle trim (``operations.memory.IdleTrim``): free heap memory is handed back once no large request has been in
flight for a while, never while one is, and the next large request calls off a trim that has not run yet."""

import asyncio
import threading

import pytest

from service.api.operations import memory


@pytest.fixture
def trims(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The threads ``give_back_free_memory`` ran in, one entry a call."""
    calls: list[str] = []
    monkeypatch.setattr(memory, "give_back_free_memory", lambda: calls.append(threading.current_thread().name))
    return calls


def _run(steps: object) -> None:
    asyncio.run(steps)  # type: ignore[arg-type]


def test_the_last_large_request_to_finish_sets_a_trim_going_after_the_idle_time(trims: list[str]) -> None:
    trim = memory.IdleTrim(idle_seconds=0.05)

    async def steps() -> None:
        trim.started()
        trim.started()
        trim.finished()
        await asyncio.sleep(0.1)
        assert trims == []  # one is still in flight
        trim.finished()
        await asyncio.sleep(0.02)
        assert trims == []  # not idle long enough yet
        await asyncio.sleep(0.1)

    _run(steps())
    assert len(trims) == 1
    assert trim.trims == 1
    assert trims[0] != threading.main_thread().name  # in a worker thread, not on the event loop


def test_a_large_request_that_starts_before_the_trim_calls_it_off(trims: list[str]) -> None:
    trim = memory.IdleTrim(idle_seconds=0.05)

    async def steps() -> None:
        trim.started()
        trim.finished()
        await asyncio.sleep(0.02)
        trim.started()  # the pending trim is called off
        await asyncio.sleep(0.1)
        assert trims == []
        trim.finished()
        await asyncio.sleep(0.1)

    _run(steps())
    assert len(trims) == 1


def test_this_glibc_accepts_the_allocator_settings_that_keep_freed_memory() -> None:
    # 64 MiB blocks come from the heap and a free trims nothing below 256 MiB (glibc; elsewhere no-ops).
    assert memory.MMAP_THRESHOLD == 64 << 20
    assert memory.TRIM_THRESHOLD == 256 << 20
    assert memory.IDLE_TRIM_SECONDS == 10.0
    memory.tune_allocator()  # accepted by this glibc (mallopt returns 0 for a value it refuses)
    if memory._LIBC is not None:
        assert memory._LIBC.mallopt(memory._M_MMAP_THRESHOLD, memory.MMAP_THRESHOLD) == 1
        assert memory._LIBC.mallopt(memory._M_TRIM_THRESHOLD, memory.TRIM_THRESHOLD) == 1
