"""A slow upload raced against SIGTERM: the harness of the graceful-drain tests.

A batch is POSTed to a real ``xent serve`` a piece at a time; SIGTERM lands while the body is still
arriving, and new connections are probed until one is refused. The test then states what must hold:
refused early, the request in flight answered whole, the process exited 0.
Importable from every test module (tests/conftest.py puts this folder on sys.path).
"""

import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

#: Seconds between two pieces of the upload.
PAUSE = 0.25


@dataclass(frozen=True)
class Batch:
    """A random batch: its labels, its predictions and the JSON body that carries them."""

    labels: np.ndarray
    predictions: np.ndarray
    body: bytes


def random_batch(seed: int, rows: int, classes: int) -> Batch:
    """``rows`` random rows over ``classes`` classes, the same for the same ``seed``."""
    rng = np.random.default_rng(seed)
    predictions = rng.dirichlet(np.ones(classes), size=rows)
    labels = rng.integers(0, classes, rows)
    body = json.dumps({"labels": labels.tolist(), "predictions": predictions.tolist()}).encode()
    return Batch(labels, predictions, body)


@dataclass(frozen=True)
class Race:
    """What happened: the answer to the upload (if any), when it came, and when a connection was first refused."""

    status: int | None
    answer: Any
    answered_at: float | None
    refused_at: float | None


def sigterm_during_slow_upload(
    url: str,
    process: subprocess.Popen[bytes],
    body: bytes,
    *,
    pieces: int,
    refused: Callable[[], bool],
    watch_seconds: float,
) -> Race:
    """POST ``body`` to ``url``/v1/cross-entropy in about ``pieces`` pieces, PAUSE s apart; 0.6 s in, send
    SIGTERM to ``process``, then ask ``refused()`` every 0.05 s for up to ``watch_seconds`` until it says yes."""
    step = len(body) // pieces + 1
    parts = [body[i : i + step] for i in range(0, len(body), step)]

    def slow_upload() -> Iterator[bytes]:
        for part in parts:  # SIGTERM lands while the body is still arriving
            time.sleep(PAUSE)
            yield part

    answer: dict[str, Any] = {}

    def post() -> None:
        response = httpx.post(
            f"{url}/v1/cross-entropy", content=slow_upload(), headers={"content-type": "application/json"}, timeout=60
        )
        answer.update(status=response.status_code, body=response.json(), at=time.monotonic())

    uploader = threading.Thread(target=post)
    uploader.start()
    time.sleep(0.6)
    process.send_signal(signal.SIGTERM)
    refused_at = None
    deadline = time.monotonic() + watch_seconds
    while time.monotonic() < deadline and refused_at is None:
        if refused():
            refused_at = time.monotonic()
        else:
            time.sleep(0.05)
    uploader.join(timeout=60)
    return Race(answer.get("status"), answer.get("body"), answer.get("at"), refused_at)
