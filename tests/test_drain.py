"""Graceful drain: on SIGTERM readiness turns false at once, new connections are refused,
the request in flight gets its whole answer, and the process exits 0."""

import asyncio
import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from types import FrameType

import httpx
import numpy as np
import pytest
from live_server import running_xent

from service.api import create_app
from service.core import score_multiclass
from service.settings import Settings


def test_sigterm_turns_readiness_off_at_once_and_hands_the_signal_on() -> None:
    received: list[int] = []

    def previous(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    original = signal.signal(signal.SIGTERM, previous)
    try:
        app = create_app(Settings())

        async def go() -> list[int]:
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                    before = (await client.get("/readyz")).status_code
                    signal.raise_signal(signal.SIGTERM)
                    after = await client.get("/readyz")
                    assert after.headers["retry-after"] == "1"
                    return [before, after.status_code]

        assert asyncio.run(go()) == [200, 503]
        assert received == [signal.SIGTERM]  # uvicorn's handler (here: the stand-in) still gets it
        assert signal.getsignal(signal.SIGTERM) is previous  # and it is put back after shutdown
    finally:
        signal.signal(signal.SIGTERM, original)


@pytest.fixture
def server() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    with running_xent(env={"XENT_GRACEFUL_SHUTDOWN_SECONDS": "20"}) as live:
        yield live.url, live.process


def test_sigterm_during_a_batch_lets_it_finish_whole_and_exits_zero(
    server: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, process = server
    rng = np.random.default_rng(11)
    predictions = rng.dirichlet(np.ones(5), size=2000)
    labels = rng.integers(0, 5, 2000)
    body = json.dumps({"labels": labels.tolist(), "predictions": predictions.tolist()}).encode()
    pieces = [body[i : i + len(body) // 8 + 1] for i in range(0, len(body), len(body) // 8 + 1)]

    def slow_upload() -> Iterator[bytes]:
        for piece in pieces:  # about 2 s in all: SIGTERM lands while the body is still arriving
            time.sleep(0.25)
            yield piece

    answer: dict[str, object] = {}

    def post() -> None:
        response = httpx.post(
            f"{url}/v1/cross-entropy", content=slow_upload(), headers={"content-type": "application/json"}, timeout=60
        )
        answer.update(status=response.status_code, body=response.json())

    worker = threading.Thread(target=post)
    worker.start()
    time.sleep(0.6)
    process.send_signal(signal.SIGTERM)
    refused = False
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not refused:
        try:
            httpx.get(f"{url}/healthz", timeout=1)
            time.sleep(0.05)
        except httpx.ConnectError:
            refused = True
    worker.join(timeout=60)
    assert refused, "new connections were still accepted after SIGTERM"
    assert answer["status"] == 200, answer
    expected = score_multiclass(labels, predictions)
    result = answer["body"]
    assert isinstance(result, dict)
    assert result["n"] == 2000
    assert result["mean"]["cross_entropy"] == pytest.approx(expected.mean.cross_entropy, rel=1e-12)
    assert result["per_sample"]["cross_entropy"] == pytest.approx(expected.per_sample.cross_entropy.tolist(), rel=1e-12)
    assert process.wait(timeout=30) == 0
