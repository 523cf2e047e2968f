"""A real `xent serve --workers 2`: /metrics adds up every worker's counts, whichever worker answers."""

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from live_server import running_xent
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_text import sample

TWO_ROWS = b'{"labels": [1, 0], "predictions": [[0.228, 0.619, 0.153], [0.5, 0.25, 0.25]]}'
JSON = {"content-type": "application/json"}
SCORING = {"endpoint": "/v1/cross-entropy", "method": "POST"}


@dataclass
class Server:
    url: str
    tmpdir: Path
    process: subprocess.Popen[bytes]


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[Server]:
    """`xent serve --workers 2` on a free loopback port, with $TMPDIR (where it puts the metrics) in tmp_path."""
    with running_xent("--workers", "2", env={"TMPDIR": str(tmp_path)}) as live:
        yield Server(live.url, tmp_path, live.process)


def _per_worker_scoring_counts(directory: Path) -> dict[str, float]:
    """Each worker's own count of 200s on /v1/cross-entropy, read from its value file."""
    counts = {}
    for path in directory.glob("counter_*.db"):
        for metric in MultiProcessCollector.merge([str(path)], accumulate=False):
            for found in metric.samples:
                if found.name == "xent_http_requests_total" and found.labels == {**SCORING, "status": "200"}:
                    counts[path.stem.removeprefix("counter_")] = found.value
    return counts


def test_metrics_add_up_across_two_workers(two_workers: Server) -> None:
    [directory] = list(two_workers.tmpdir.glob("xent-metrics-*"))
    sent = 0
    # Each request on a new connection, until both workers have answered some (the kernel picks the worker).
    deadline = time.monotonic() + 30
    while sent < 40 or len(_per_worker_scoring_counts(directory)) < 2:
        assert time.monotonic() < deadline, f"after {sent} requests only {_per_worker_scoring_counts(directory)}"
        response = httpx.post(f"{two_workers.url}/v1/cross-entropy", content=TWO_ROWS, headers=JSON, timeout=10)
        assert response.status_code == 200, response.text
        sent += 1
    refused = httpx.post(
        f"{two_workers.url}/v1/cross-entropy", content=b"x", headers={"content-type": "text/plain"}, timeout=10
    )
    assert refused.status_code == 415

    per_worker = _per_worker_scoring_counts(directory)
    assert len(per_worker) == 2
    assert all(count > 0 for count in per_worker.values())
    assert sum(per_worker.values()) == sent
    # Every scrape, whichever worker serves it, shows the sum over both.
    for _ in range(6):
        text = httpx.get(f"{two_workers.url}/metrics", timeout=10).text
        assert sample(text, "xent_http_requests_total", **SCORING, status="200") == sent
        assert sample(text, "xent_http_requests_total", **SCORING, status="415") == 1
        assert sample(text, "xent_scored_rows_total", endpoint="/v1/cross-entropy") == 2 * sent
        # The 415 was refused before its body was read: no bytes counted for it.
        assert sample(text, "xent_http_request_body_bytes_sum", endpoint="/v1/cross-entropy") == sent * len(TWO_ROWS)
        assert sample(text, "xent_http_request_duration_seconds_count", **SCORING) == sent + 1
        assert sample(text, "xent_refusals_total", reason="unsupported_media_type") == 1
        assert sample(text, "xent_http_requests_in_flight") == 1  # the scrape itself

    two_workers.process.terminate()
    assert two_workers.process.wait(timeout=20) == 0
    assert not directory.exists(), "the temporary metrics directory outlived the server"
