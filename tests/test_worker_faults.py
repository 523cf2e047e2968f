"""Several workers: SIGTERM refuses new connections while requests drain, and a worker killed
outright does not leave its requests counted as in flight (found by ``benchmarks/soak.py``)."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.api.metrics import forget_dead_workers
from service.core import score_multiclass

ROOT = Path(__file__).resolve().parent.parent


def test_the_live_gauges_of_a_dead_worker_are_forgotten_and_its_counters_kept(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    for name in (f"gauge_livesum_{gone.pid}.db", f"gauge_livesum_{os.getpid()}.db", f"counter_{gone.pid}.db"):
        (tmp_path / name).write_bytes(b"")
    forget_dead_workers(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"gauge_livesum_{os.getpid()}.db", f"counter_{gone.pid}.db"]
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def two_workers() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = _free_port()
    command = [sys.executable, "-c", "from service.cli import main; raise SystemExit(main())", "serve"]
    process = subprocess.Popen(
        [*command, "--port", str(port), "--workers", "2"],
        cwd=ROOT,
        env={**os.environ, "XENT_GRACEFUL_SHUTDOWN_SECONDS": "20"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield port, process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def _refused(port: int) -> bool:
    """Whether a new connection is refused (rather than accepted into a backlog nobody serves)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def test_sigterm_with_two_workers_refuses_new_connections_while_a_request_drains(
    two_workers: tuple[int, subprocess.Popen[bytes]],
) -> None:
    port, process = two_workers
    rng = np.random.default_rng(12)
    predictions = rng.dirichlet(np.ones(4), size=3000)
    labels = rng.integers(0, 4, 3000)
    body = json.dumps({"labels": labels.tolist(), "predictions": predictions.tolist()}).encode()
    step = len(body) // 12 + 1
    pieces = [body[i : i + step] for i in range(0, len(body), step)]

    def slow_upload() -> Iterator[bytes]:
        for piece in pieces:  # about 3 s in all: SIGTERM lands while the body is still arriving
            time.sleep(0.25)
            yield piece

    answer: dict[str, object] = {}

    def post() -> None:
        response = httpx.post(
            f"http://127.0.0.1:{port}/v1/cross-entropy",
            content=slow_upload(),
            headers={"content-type": "application/json"},
            timeout=60,
        )
        answer.update(status=response.status_code, body=response.json(), at=time.monotonic())

    client = threading.Thread(target=post)
    client.start()
    time.sleep(0.6)
    process.send_signal(signal.SIGTERM)
    refused_at = None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and refused_at is None:
        if _refused(port):
            refused_at = time.monotonic()
        time.sleep(0.05)
    client.join(timeout=60)
    assert refused_at is not None, "new connections were still accepted after SIGTERM"
    assert answer["status"] == 200, answer
    assert isinstance(answer["at"], float)
    assert refused_at < answer["at"], "new connections were accepted until the request in flight had finished"
    result = answer["body"]
    assert isinstance(result, dict)
    expected = score_multiclass(labels, predictions)
    assert result["n"] == 3000
    assert result["mean"]["cross_entropy"] == pytest.approx(expected.mean.cross_entropy, rel=1e-12)
    assert process.wait(timeout=30) == 0
