"""Graceful drain: on SIGTERM readiness turns false at once, new connections are refused,
the request in flight gets its whole answer, and the process exits 0."""

import asyncio
import signal
import subprocess
from collections.abc import Iterator
from types import FrameType

import httpx
import pytest
from drain_race import random_batch, sigterm_during_slow_upload
from in_process import started_client
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
            async with started_client(app) as client:
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


def _healthz_refused(url: str) -> bool:
    """Whether GET /healthz is no longer served: the connection is refused, or (when the kernel had already
    queued it as the listening socket closed) reset or closed with no answer."""
    try:
        httpx.get(f"{url}/healthz", timeout=1)
    except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError):
        return True
    return False


@pytest.fixture
def server() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    with running_xent(env={"XENT_GRACEFUL_SHUTDOWN_SECONDS": "20"}) as live:
        yield live.url, live.process


def test_sigterm_during_a_batch_lets_it_finish_whole_and_exits_zero(
    server: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, process = server
    batch = random_batch(11, rows=2000, classes=5)

    # 8 pieces, about 2 s in all; a new connection counts as refused when GET /healthz gets no answer.
    race = sigterm_during_slow_upload(
        url, process, batch.body, pieces=8, refused=lambda: _healthz_refused(url), watch_seconds=5
    )

    assert race.refused_at is not None, "new connections were still accepted after SIGTERM"
    assert race.status == 200, race
    expected = score_multiclass(batch.labels, batch.predictions)
    result = race.answer
    assert isinstance(result, dict)
    assert result["n"] == 2000
    assert result["mean"]["cross_entropy"] == pytest.approx(expected.mean.cross_entropy, rel=1e-12)
    assert result["per_sample"]["cross_entropy"] == pytest.approx(expected.per_sample.cross_entropy.tolist(), rel=1e-12)
    assert process.wait(timeout=30) == 0
