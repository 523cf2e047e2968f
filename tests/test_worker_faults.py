"""Several workers: SIGTERM refuses new connections while requests drain, and a worker killed
outright does not leave its requests counted as in flight (found by ``benchmarks/soak.py``)."""

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from drain_race import random_batch, sigterm_during_slow_upload
from live_server import LiveServer, running_xent

from service.api.operations.metrics import forget_dead_workers
from service.core import score_multiclass


def test_the_live_gauges_of_a_dead_worker_are_forgotten_and_its_counters_kept(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    for name in (f"gauge_livesum_{gone.pid}.db", f"gauge_livesum_{os.getpid()}.db", f"counter_{gone.pid}.db"):
        (tmp_path / name).write_bytes(b"")
    forget_dead_workers(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"gauge_livesum_{os.getpid()}.db", f"counter_{gone.pid}.db"]
    )


@pytest.fixture
def two_workers() -> Iterator[LiveServer]:
    with running_xent("--workers", "2", env={"XENT_GRACEFUL_SHUTDOWN_SECONDS": "20"}) as live:
        yield live


def _refused(url: str) -> bool:
    """Whether a new connection is refused (rather than accepted into a backlog nobody serves)."""
    host, port = url.removeprefix("http://").split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def test_sigterm_with_two_workers_refuses_new_connections_while_a_request_drains(two_workers: LiveServer) -> None:
    url, process = two_workers.url, two_workers.process
    batch = random_batch(12, rows=3000, classes=4)

    # 12 pieces, about 3 s in all; a new connection counts as refused when the socket is (see _refused).
    race = sigterm_during_slow_upload(
        url, process, batch.body, pieces=12, refused=lambda: _refused(url), watch_seconds=10
    )

    assert race.refused_at is not None, "new connections were still accepted after SIGTERM"
    assert race.status == 200, race
    assert isinstance(race.answered_at, float)
    assert race.refused_at < race.answered_at, "new connections were accepted until the request in flight had finished"
    result = race.answer
    assert isinstance(result, dict)
    expected = score_multiclass(batch.labels, batch.predictions)
    assert result["n"] == 3000
    assert result["mean"]["cross_entropy"] == pytest.approx(expected.mean.cross_entropy, rel=1e-12)
    assert process.wait(timeout=30) == 0
