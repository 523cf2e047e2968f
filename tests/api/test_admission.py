"""Memory-aware admission: the budget's arithmetic, where it comes from, and that every request gives its charge back.

Also the two rules that keep slow or compressed bodies from hurting others: a scoring slot is taken
only once the body has arrived, and only plain JSON is decoded on the event loop.
"""

import asyncio
import gzip
import io
import math
import threading
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from in_process import started_client
from npz_bodies import NPZ, npz
from whole_answers import REFERENCE_ANSWER, REFERENCE_BODY

from service.api import create_app, scoring
from service.api.policy.admission import (
    BYTES_PER_CELL,
    MIN_BUDGET_BYTES,
    PEAK_PER_BODY_BYTE,
    PROCESS_BASELINE_BYTES,
    MemoryBudget,
    cgroup_memory_limit,
    memory_budget,
    physical_memory,
)
from service.api.problems import HttpProblem
from service.api.transport.limits import GRADIENT_CELLS
from service.settings import Settings

pytestmark = pytest.mark.anyio

JSON = {"content-type": "application/json"}
GIB = 1 << 30


# --- the arithmetic ---------------------------------------------------------------------------


async def test_a_charge_that_fits_is_taken_at_once_and_given_back_at_the_end() -> None:
    budget = MemoryBudget(1000)
    async with budget.charge() as charge:
        await charge.resize(600)
        assert (charge.held, budget.in_use) == (600, 600)
        await charge.resize(200)  # shrinking gives the difference back at once
        assert (charge.held, budget.in_use) == (200, 200)
    assert budget.in_use == 0


async def test_a_charge_that_does_not_fit_waits_for_one_to_end() -> None:
    budget = MemoryBudget(1000, wait_seconds=5)
    order: list[str] = []

    async def first() -> None:
        async with budget.charge() as charge:
            await charge.resize(700)
            order.append("first admitted")
            await asyncio.sleep(0.1)
        order.append("first done")

    async def second() -> None:
        await asyncio.sleep(0.02)
        async with budget.charge() as charge:
            await charge.resize(700)
            order.append(f"second admitted, {budget.in_use} in use")

    await asyncio.gather(first(), second())
    assert order == ["first admitted", "first done", "second admitted, 700 in use"]
    assert budget.in_use == 0


async def test_a_charge_that_waits_too_long_is_503_with_retry_after() -> None:
    budget = MemoryBudget(1000, wait_seconds=0.05)
    async with budget.charge() as holder:
        await holder.resize(900)
        with pytest.raises(HttpProblem) as refused:
            async with budget.charge() as charge:
                await charge.resize(200)
        assert budget.in_use == 900  # the refused charge took nothing
    assert budget.in_use == 0
    problem = refused.value
    assert (problem.kind.status, problem.kind.slug, problem.headers) == (503, "overloaded", {"Retry-After": "1"})
    assert problem.detail == (
        "not enough memory is free for this request (it needs about 200 more bytes; 900 of this worker's 1,000 "
        "are in use, XENT_MEMORY_BUDGET_BYTES); retry shortly"
    )


async def test_a_charge_larger_than_the_whole_budget_is_413_at_once() -> None:
    budget = MemoryBudget(1000)
    with pytest.raises(HttpProblem) as refused:
        async with budget.charge() as charge:
            await charge.resize(1001)
    assert (refused.value.kind.status, budget.in_use) == (413, 0)
    assert refused.value.detail == (
        "this request would need about 1,001 bytes of memory, more than this worker's whole budget of 1,000 "
        "(XENT_MEMORY_BUDGET_BYTES); send fewer rows at a time"
    )


async def test_waiting_charges_are_admitted_first_come_first_served() -> None:
    budget = MemoryBudget(1000, wait_seconds=5)
    admitted: list[int] = []
    release = asyncio.Event()

    async def request(number: int, size: int, delay: float) -> None:
        await asyncio.sleep(delay)
        async with budget.charge() as charge:
            await charge.resize(size)
            admitted.append(number)
            await release.wait()

    tasks = [asyncio.create_task(request(n, size, n * 0.01)) for n, size in enumerate((1000, 600, 100, 300))]
    await asyncio.sleep(0.1)
    assert admitted == [0]  # 2 waits for 0; 3 (which would fit beside 2) waits behind it, not past it
    release.set()
    await asyncio.gather(*tasks)
    assert admitted == [0, 1, 2, 3]
    assert budget.in_use == 0


async def test_a_cancelled_waiter_leaves_the_line_and_takes_nothing() -> None:
    budget = MemoryBudget(1000, wait_seconds=5)
    async with budget.charge() as holder:
        await holder.resize(1000)

        async def wait() -> None:
            async with budget.charge() as charge:
                await charge.resize(10)

        waiter = asyncio.create_task(wait())
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    assert budget.in_use == 0
    async with budget.charge() as charge:  # the line is empty again: a new charge is taken at once
        await charge.resize(1000)


async def test_a_charge_given_back_as_a_waiter_is_cancelled_neither_fails_nor_leaks() -> None:
    """The race the container test found (24 large requests at once, a 500 now and then): a waiter's wait ends
    (timeout or disconnect: its future is cancelled) and, before its task runs again, another request gives its
    charge back. ``_wake`` set a result on the cancelled future (InvalidStateError in the giver: a 500) and
    charged it; the waiter then failed to find itself in the line (ValueError: a second 500)."""
    budget = MemoryBudget(1000, wait_seconds=5)
    async with budget.charge() as holder:
        await holder.resize(1000)

        async def wait() -> None:
            async with budget.charge() as charge:
                await charge.resize(10)

        waiter = asyncio.create_task(wait())
        await asyncio.sleep(0.01)
        waiter.cancel()  # its future is cancelled now; its task runs again only at the next turn of the loop
        holder.resize_down(0)  # the giver wakes the line in the same turn
        with pytest.raises(asyncio.CancelledError):
            await waiter
    assert budget.in_use == 0
    async with budget.charge() as charge:  # nothing leaked: the whole budget is free again
        await charge.resize(1000)


async def test_without_a_budget_nothing_is_counted_or_refused() -> None:
    budget = MemoryBudget(None)
    async with budget.charge() as charge:
        await charge.resize(1 << 60)
        assert budget.in_use == 0


# --- where the budget comes from ------------------------------------------------------------------


def test_the_cgroup_limit_is_read_from_v2_then_v1(tmp_path: Path) -> None:
    v2, v1 = tmp_path / "memory.max", tmp_path / "memory.limit_in_bytes"
    assert cgroup_memory_limit([v2, v1]) is None  # no cgroup files: no limit
    v1.write_text("536870912\n")
    assert cgroup_memory_limit([v2, v1]) == 512 * 1024 * 1024
    v2.write_text("1073741824\n")
    assert cgroup_memory_limit([v2, v1]) == GIB
    v2.write_text("max\n")
    assert cgroup_memory_limit([v2, v1]) is None
    v1.write_text("9223372036854771712\n")  # what cgroup v1 says when there is no limit
    assert cgroup_memory_limit([v1]) is None


def test_the_budget_is_the_limit_per_worker_less_the_baseline(tmp_path: Path) -> None:
    limit = tmp_path / "memory.max"
    limit.write_text(f"{GIB}\n")
    assert memory_budget(None, 1, cgroup_files=[limit]) == GIB - PROCESS_BASELINE_BYTES == 923_741_824
    assert memory_budget(None, 2, cgroup_files=[limit]) == GIB // 2 - PROCESS_BASELINE_BYTES == 386_870_912
    assert memory_budget(None, 8, cgroup_files=[limit]) == MIN_BUDGET_BYTES  # never below the floor
    assert memory_budget(123_456_789, 2, cgroup_files=[limit]) == 123_456_789  # the setting wins
    assert memory_budget(0, 1, cgroup_files=[limit]) is None  # 0: no budget
    physical = physical_memory()
    assert physical is not None
    no_cgroup = [tmp_path / "absent"]
    assert memory_budget(None, 2, cgroup_files=no_cgroup) == physical // 2 - PROCESS_BASELINE_BYTES


def test_the_app_builds_its_budget_from_the_settings() -> None:
    assert create_app(Settings(memory_budget_bytes=10**8)).state.xent.memory.total == 10**8
    assert create_app(Settings(memory_budget_bytes=0)).state.xent.memory.total is None


# --- every request gives its charge back ------------------------------------------------------------


class _Boom(Exception):
    pass


async def test_every_way_a_request_ends_gives_its_charge_back(monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(Settings(memory_budget_bytes=10**9, max_rows=2, body_timeout_seconds=0.2))
    memory = app.state.xent.memory
    big = b'{"labels":[1],"predictions":[[0.228,0.619,0.153]],"per_sample":false' + b" " * 8000 + b"}"

    async def stalls() -> AsyncIterator[bytes]:
        yield b'{"labels":'
        await asyncio.sleep(1)

    async with started_client(app) as client:
        statuses = {}
        for name, body, headers in [
            ("ok", REFERENCE_BODY, JSON),
            ("ok, large", big, JSON),
            ("400", b"{" + b" " * 8000, JSON),
            ("413 rows", b'{"labels":[1,1,1],"predictions":[[0.5,0.5],[0.5,0.5],[0.5,0.5]]}', JSON),
            ("413 body", b"x", {**JSON, "content-length": str(2 << 30)}),
            ("415", b"x", {"content-type": "text/plain"}),
            ("422", b'{"labels":[7],"predictions":[[0.5,0.5]]}' + b" " * 8000, JSON),
            ("408", stalls(), JSON),
        ]:
            response = await client.post("/v1/cross-entropy", content=body, headers=headers)
            statuses[name] = response.status_code
            assert memory.in_use == 0, name
        with monkeypatch.context() as patch:

            def fail(*args: Any, **kwargs: Any) -> None:
                raise _Boom

            patch.setattr(scoring, "decode", fail)
            statuses["500"] = (await client.post("/v1/cross-entropy", content=big, headers=JSON)).status_code
            assert memory.in_use == 0
    assert statuses == {
        "ok": 200,
        "ok, large": 200,
        "400": 400,
        "413 rows": 413,
        "413 body": 413,
        "415": 415,
        "422": 422,
        "408": 408,
        "500": 500,
    }


async def test_a_client_that_disconnects_mid_body_gives_its_charge_back() -> None:
    app = create_app(Settings(memory_budget_bytes=10**9))
    memory = app.state.xent.memory
    charged: list[int] = []

    async def receive() -> dict[str, Any]:
        if not charged:
            await asyncio.sleep(0.05)
            charged.append(memory.in_use)
            return {"type": "http.request", "body": b'{"labels":', "more_body": True}
        return {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/cross-entropy",
        "raw_path": b"/v1/cross-entropy",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"1000")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    async with app.router.lifespan_context(app):
        await app(scope, receive, send)
    assert charged == [12_000]  # 1,000 declared JSON bytes × 12, before the first byte was read
    assert sent[0]["status"] == 400
    assert memory.in_use == 0


# --- what a body is charged -------------------------------------------------------------------------


async def test_a_body_is_charged_its_expected_peak_while_it_arrives_then_by_its_cells(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = create_app(Settings(memory_budget_bytes=10**9))
    memory = app.state.xent.memory
    seen: dict[str, int] = {}
    body = npz(labels=np.array([1, 0]), predictions=np.array([[0.2, 0.8], [0.6, 0.4]]))
    decode, score = scoring.decode, scoring.score_multiclass

    def decoding(*args: Any, **kwargs: Any) -> Any:
        seen["decoding"] = memory.in_use
        return decode(*args, **kwargs)

    def scoring_(*args: Any, **kwargs: Any) -> Any:
        seen["scoring"] = memory.in_use
        return score(*args, **kwargs)

    async def arrives() -> AsyncIterator[bytes]:
        yield body[:100]
        await asyncio.sleep(0.05)
        seen["arriving"] = memory.in_use
        yield body[100:]

    monkeypatch.setattr(scoring, "decode", decoding)
    monkeypatch.setattr(scoring, "score_multiclass", scoring_)
    async with started_client(app) as client:
        headers = {**NPZ, "content-length": str(len(body))}
        response = await client.post("/v1/cross-entropy", content=arrives(), headers=headers)
    assert response.status_code == 200, response.text
    expected = math.ceil(len(body) * PEAK_PER_BODY_BYTE["npz"])  # the declared length's expected peak
    assert seen == {"arriving": expected, "decoding": expected, "scoring": 4 * BYTES_PER_CELL}
    assert memory.in_use == 0


@pytest.mark.parametrize("path", ["/v1/cross-entropy", "/v1/cross-entropy/compare"])
async def test_a_gradient_is_charged_as_more_cells_of_the_models_predictions(
    monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    app = create_app(Settings(memory_budget_bytes=10**9))
    memory = app.state.xent.memory
    seen: list[int] = []
    score = scoring.score_multiclass

    def scoring_(*args: Any, **kwargs: Any) -> Any:
        seen.append(memory.in_use)
        return score(*args, **kwargs)

    predictions = np.array([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
    arrays = {"labels": np.array([1, 0, 1]), "predictions": predictions}
    if path.endswith("/compare"):
        arrays["baseline_predictions"] = predictions
    monkeypatch.setattr(scoring, "score_multiclass", scoring_)
    async with started_client(app) as client:
        response = await client.post(path, content=npz(**arrays), params={"gradient": "true"}, headers=NPZ)
    assert response.status_code == 200, response.text
    cells = 6 * (len(arrays) - 1)  # 3 × 2 predictions, and as many baseline ones in a comparison
    assert seen[0] == (cells + GRADIENT_CELLS * 6) * BYTES_PER_CELL  # only the model's predictions have a gradient
    assert memory.in_use == 0


async def test_a_body_of_no_declared_length_is_charged_as_it_arrives() -> None:
    app = create_app(Settings(memory_budget_bytes=10**9))
    memory = app.state.xent.memory
    seen: list[int] = []

    async def arrives() -> AsyncIterator[bytes]:  # httpx sends a generator without Content-Length (chunked)
        for piece in (b'{"labels":[1],', b" " * 1000, b'"predictions":[[0.228,0.619,0.153]]}'):
            yield piece
            await asyncio.sleep(0.01)
            seen.append(memory.in_use)

    async with started_client(app) as client:
        response = await client.post("/v1/cross-entropy", content=arrives(), headers=JSON)
    assert response.status_code == 200, response.text
    # 14 bytes, then 1,014, then 1,050 held: charged a quarter ahead (17, then 1,267 bytes) × 12.
    assert seen == [17 * 12, 1267 * 12, 1267 * 12]
    assert memory.in_use == 0


async def test_a_gzip_body_is_charged_by_its_inflated_size_before_it_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(Settings(memory_budget_bytes=10**9))
    memory = app.state.xent.memory
    seen: dict[str, int] = {}
    decode = scoring.decode
    text = REFERENCE_BODY[:-1] + b"," + b'"unit":"nats"' + b" " * 100_000 + b"}"  # inflates 100 KB from ~200 bytes
    packed = gzip.compress(text)

    def decoding(*args: Any, **kwargs: Any) -> Any:
        seen["decoding"] = memory.in_use
        return decode(*args, **kwargs)

    monkeypatch.setattr(scoring, "decode", decoding)
    async with started_client(app) as client:
        response = await client.post("/v1/cross-entropy", content=packed, headers={**JSON, "content-encoding": "gzip"})
    assert response.status_code == 200, response.text
    assert seen == {"decoding": math.ceil(len(text) * PEAK_PER_BODY_BYTE["json"])}
    assert memory.in_use == 0


async def test_an_archive_with_compressed_members_is_charged_as_if_it_came_uncompressed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = create_app(Settings(memory_budget_bytes=10**9))
    memory = app.state.xent.memory
    seen: dict[str, int] = {}
    decode = scoring.decode
    predictions = np.full((20_000, 10), 0.1)  # 1.6 MB of float64 that deflate to a few kilobytes
    buffer = io.BytesIO()
    np.savez_compressed(buffer, labels=np.zeros(20_000, dtype=np.int64), predictions=predictions)
    body = buffer.getvalue()
    inflated = sum(info.file_size for info in zipfile.ZipFile(io.BytesIO(body)).infolist())

    def decoding(*args: Any, **kwargs: Any) -> Any:
        seen["decoding"] = memory.in_use
        return decode(*args, **kwargs)

    monkeypatch.setattr(scoring, "decode", decoding)
    async with started_client(app) as client:
        response = await client.post("/v1/cross-entropy", content=body, headers=NPZ)
    assert response.status_code == 200, response.text
    assert len(body) < 20_000 < inflated
    assert seen == {"decoding": math.ceil((len(body) + inflated) * PEAK_PER_BODY_BYTE["npz"])}
    assert memory.in_use == 0


# --- slots and the event loop -------------------------------------------------------------------


async def test_a_slow_body_does_not_hold_a_scoring_slot() -> None:
    app = create_app(Settings(max_concurrent_scoring=1))
    arrived = asyncio.Event()
    finish = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b'{"labels":[1],'
        arrived.set()
        await finish.wait()
        yield b'"predictions":[[0.228,0.619,0.153]]}'

    async with started_client(app) as client:
        upload = asyncio.create_task(client.post("/v1/cross-entropy", content=slow(), headers=JSON))
        await arrived.wait()
        ordinary = await client.post("/v1/cross-entropy", content=REFERENCE_BODY, headers=JSON)
        finish.set()
        uploaded = await upload
    assert ordinary.status_code == 200, ordinary.text
    assert ordinary.json() == REFERENCE_ANSWER
    assert uploaded.status_code == 200, uploaded.text


@pytest.mark.parametrize(
    ("body", "headers", "on_the_loop"),
    [
        (REFERENCE_BODY, JSON, True),
        (gzip.compress(REFERENCE_BODY), {**JSON, "content-encoding": "gzip"}, False),
        (npz(labels=np.array([1]), predictions=np.array([[0.228, 0.619, 0.153]])), NPZ, False),
    ],
    ids=["plain JSON", "gzip JSON", "NPZ"],
)
async def test_only_plain_json_is_decoded_on_the_event_loop(
    monkeypatch: pytest.MonkeyPatch, body: bytes, headers: dict[str, str], on_the_loop: bool
) -> None:
    assert len(body) <= scoring.INLINE_MAX_BYTES
    threads: list[bool] = []
    original = scoring.decode

    def decode(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread() is threading.main_thread())
        return original(*args, **kwargs)

    monkeypatch.setattr(scoring, "decode", decode)
    async with started_client(create_app(Settings())) as client:
        response = await client.post("/v1/cross-entropy", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert threads == [on_the_loop]


async def test_a_body_that_trickles_after_the_grace_period_is_408_and_gives_its_charge_back() -> None:
    settings = Settings(body_min_bytes_per_second=1000, body_min_rate_grace_seconds=0.2, memory_budget_bytes=10**9)
    app = create_app(settings)

    async def trickle() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b" "
            await asyncio.sleep(0.05)

    async with started_client(app) as client:
        started = asyncio.get_running_loop().time()
        response = await client.post("/v1/cross-entropy", content=trickle(), headers=JSON)
        elapsed = asyncio.get_running_loop().time() - started
    assert response.status_code == 408, response.text
    assert response.headers["connection"] == "close"
    detail = response.json()["detail"]
    assert detail.startswith("the request body arrived too slowly: ")
    assert detail.endswith(" seconds, under 1000 bytes per second after the first 0.2 (XENT_BODY_MIN_BYTES_PER_SECOND)")
    assert elapsed < 0.6  # cut at 0.2 s + a few bytes ÷ 1000 B/s, not at the 60 s total timeout
    assert app.state.xent.memory.in_use == 0


async def test_a_body_at_the_minimum_rate_is_read_to_the_end() -> None:
    settings = Settings(body_min_bytes_per_second=1000, body_min_rate_grace_seconds=0.1)
    body = REFERENCE_BODY[:-1] + b" " * 300 + b"}"

    async def steady() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 100):  # 100 bytes every 50 ms: 2,000 bytes a second
            yield body[start : start + 100]
            await asyncio.sleep(0.05)

    async with started_client(create_app(settings)) as client:
        response = await client.post("/v1/cross-entropy", content=steady(), headers=JSON)
    assert response.status_code == 200, response.text
    assert response.json() == REFERENCE_ANSWER
