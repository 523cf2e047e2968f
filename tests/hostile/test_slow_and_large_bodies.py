"""Slow bodies and many large ones against a real ``xent serve`` (issue 12, items 3 and 9).

Trickling clients must not lock out ordinary requests: a scoring slot is taken only once a
body has arrived, and a body slower than XENT_BODY_MIN_BYTES_PER_SECOND (after its grace
period) is cut with 408. Many large requests at once must not take the worker past its memory
budget: each is charged its expected peak, and one that does not fit waits, then gets 503.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from live_server import running_xent
from whole_answers import REFERENCE_BODY

from service.core import score_multiclass

JSON = {"content-type": "application/json"}
TRICKLERS = 80
ORDINARY_CLIENTS = 4


async def _trickle(host: str, port: int, stop: asyncio.Event, cuts: Counter[str]) -> None:
    """Declare a 2,000-byte body, send it a byte every half second; when cut, reconnect at once."""
    head = (
        f"POST /v1/cross-entropy HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        "Content-Length: 2000\r\n\r\n"
    ).encode()
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        try:
            writer.write(head)
            answer = asyncio.ensure_future(reader.read(12))
            while not stop.is_set() and not answer.done():
                writer.write(b" ")
                await writer.drain()
                await asyncio.wait([answer], timeout=0.5)
            if answer.done():
                cuts[answer.result().decode(errors="replace") or "closed"] += 1
            answer.cancel()
        except OSError:
            cuts["reset"] += 1
        finally:
            writer.close()


async def _ordinary(url: str, stop: asyncio.Event, statuses: Counter[int]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        while not stop.is_set():
            try:
                response = await client.post("/v1/cross-entropy", content=REFERENCE_BODY, headers=JSON)
                statuses[response.status_code] += 1
            except httpx.TransportError:
                statuses[0] += 1
            await asyncio.sleep(0.05)


def test_trickling_clients_that_reconnect_do_not_lock_out_ordinary_requests() -> None:
    env = {
        "XENT_MAX_CONCURRENT_SCORING": "8",
        "XENT_BODY_TIMEOUT_SECONDS": "10",
        "XENT_BODY_MIN_BYTES_PER_SECOND": "1024",
        "XENT_BODY_MIN_RATE_GRACE_SECONDS": "1",
    }
    with running_xent(env=env) as server:
        host, port = server.url.removeprefix("http://").split(":")

        async def attack() -> tuple[Counter[int], Counter[str]]:
            stop = asyncio.Event()
            statuses: Counter[int] = Counter()
            cuts: Counter[str] = Counter()
            tricklers = [asyncio.create_task(_trickle(host, int(port), stop, cuts)) for _ in range(TRICKLERS)]
            await asyncio.sleep(1.5)  # every trickler connected and sending
            ordinary = [asyncio.create_task(_ordinary(server.url, stop, statuses)) for _ in range(ORDINARY_CLIENTS)]
            await asyncio.sleep(6)
            stop.set()
            await asyncio.gather(*tricklers, *ordinary)
            return statuses, cuts

        statuses, cuts = asyncio.run(attack())
    answered = statuses[200] / sum(statuses.values())
    assert sum(statuses.values()) >= 100, statuses
    assert answered >= 0.9, f"{answered:.0%} of ordinary requests answered: {statuses}"
    # Each trickler was cut (408) about once a second, and came straight back.
    assert cuts["HTTP/1.1 408"] >= TRICKLERS * 3, cuts


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    fields = (line.partition(":") for line in lines[1:] if line)
    return int(lines[0].split()[1]), {name.lower(): value.strip() for name, _, value in fields}


async def _post_npz(url: str, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    """POST with ``Expect: 100-continue`` (as curl does for a large body): a request refused before its body is
    read gets its answer, where a client already sending the body would see the connection reset."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-npz\r\n"
            f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n".encode()
        )
        status, headers = await _read_head(reader)
        if status == 100:
            writer.write(body)
            await writer.drain()
            status, headers = await _read_head(reader)
        return status, headers, await reader.readexactly(int(headers["content-length"]))
    finally:
        writer.close()


def _worker_pid(pid: int) -> int:
    """The process that serves (uvicorn's one worker runs in the server process itself)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(children[0]) if children else pid


def _status_bytes(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def test_many_large_requests_at_once_stay_within_the_memory_budget() -> None:
    budget = 200_000_000
    baseline = 150_000_000  # PROCESS_BASELINE_BYTES: what an idle worker holds, with slack
    rng = np.random.default_rng(7)
    logits = rng.normal(0, 2, (100_000, 10))
    predictions = np.exp(logits - logits.max(axis=1, keepdims=True))
    predictions /= predictions.sum(axis=1, keepdims=True)
    labels = rng.integers(0, 10, 100_000)
    buffer = io.BytesIO()
    np.savez(buffer, labels=labels, predictions=predictions)
    body = buffer.getvalue()  # 8.8 MB; about 33 MB of peak memory each
    expected = score_multiclass(labels, predictions).mean.cross_entropy

    with running_xent(env={"XENT_MEMORY_BUDGET_BYTES": str(budget)}) as server:
        worker = _worker_pid(server.process.pid)
        idle = _status_bytes(worker, "VmRSS")
        Path(f"/proc/{worker}/clear_refs").write_text("5")  # VmHWM := VmRSS

        async def flood() -> list[tuple[int, dict[str, str], bytes]]:
            path = "/v1/cross-entropy?per_sample=false"
            return list(await asyncio.gather(*(_post_npz(server.url, path, body) for _ in range(24))))

        started = time.monotonic()
        responses = asyncio.run(flood())
        elapsed = time.monotonic() - started
        peak = _status_bytes(worker, "VmHWM")
        assert server.process.poll() is None
    statuses = Counter(status for status, _, _ in responses)
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[200] >= 5, statuses  # the budget holds five at a time
    for status, headers, content in responses:
        if status == 200:
            assert json.loads(content)["n"] == 100_000
            assert json.loads(content)["mean"]["cross_entropy"] == expected
        else:
            assert headers["retry-after"] == "1"
    assert peak <= budget + baseline, (
        f"peak RSS {peak / 1e6:.0f} MB (idle {idle / 1e6:.0f} MB) over {budget / 1e6:.0f} MB budget + "
        f"{baseline / 1e6:.0f} MB baseline; {statuses} in {elapsed:.1f} s"
    )
