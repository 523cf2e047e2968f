"""What the client tests share: the real app on a real uvicorn server (in a thread), a flaky stand-in, and
a comparison of whole answers; the in-process transport is ``in_process.asgi_transport``. (Not a conftest.py:
a second one would clash with tests/conftest.py under --doctest-modules, so each test module imports what it
uses and defines its own server fixture.)"""

import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

import numpy as np
import pytest
import uvicorn
from live_server import free_port
from whole_answers import same_numbers

from service.client import Scores
from service.client.results import _listed
from service.server import HeaderLimitedProtocol

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


def serve_in_thread(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port until the generator is closed; yields the URL."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", ws="none", lifespan="on", http=HeaderLimitedProtocol
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "uvicorn exited before it started"
        assert time.monotonic() < deadline, "uvicorn did not start in 30 s"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


class Flaky:
    """An ASGI app that answers the first ``failures`` scoring requests with 503, then hands over to ``app``;
    it records the headers of every request."""

    def __init__(self, app: Any, failures: int) -> None:
        self.app, self.failures, self.requests = app, failures, 0
        self.headers: list[dict[str, str]] = []

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            self.requests += 1
            self.headers.append({k.decode(): v.decode() for k, v in scope["headers"]})
            if self.requests <= self.failures:
                body = b'{"type":"urn:xent:problem:not-ready","title":"Not ready","status":503,"detail":"starting"}'
                await send(
                    {
                        "type": "http.response.start",
                        "status": 503,
                        "headers": [(b"content-type", b"application/problem+json"), (b"retry-after", b"0")],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def assert_same_scores(actual: Scores, expected: Scores, rel: float = 0.0) -> None:
    """Two answers agree: every aggregate (to ``rel``), every per-sample value, mask, warning and setting."""
    assert (actual.n, actual.n_scored, actual.unit, actual.classes) == (
        expected.n,
        expected.n_scored,
        expected.unit,
        expected.classes,
    )
    for group in ("mean", "sum"):
        got, want = vars(getattr(actual, group)), vars(getattr(expected, group))
        assert got.keys() == want.keys()
        for name, value in want.items():
            if value is None:
                assert got[name] is None, (group, name)
            else:
                assert got[name] == pytest.approx(value, rel=rel, abs=1e-300), (group, name)
    # A merged answer's standard errors come from its chunks' states (issue 15): the same to 1e-9.
    assert actual.warnings == expected.warnings
    assert actual.n_clusters == expected.n_clusters
    for group in ("stderr", "ci"):
        got, want = getattr(actual, group), getattr(expected, group)
        assert (got is None) == (want is None), group
        if want is not None:
            assert same_numbers(_listed(got), _listed(want), max(rel, 1e-9)), (group, got, want)
    assert dict(actual.settings) == dict(expected.settings)
    if expected.per_sample is None:
        assert actual.per_sample is None
    else:
        assert actual.per_sample is not None
        for name in ("cross_entropy", "kl_divergence", "entropy", "ignored"):
            np.testing.assert_array_equal(getattr(actual.per_sample, name), getattr(expected.per_sample, name))
