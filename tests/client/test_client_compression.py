"""The client offers zstd and nothing else (never gzip, whose cost is the server's), and reads a zstd answer."""

from typing import Any

import numpy as np
import pytest
from client_servers import Scope, assert_same_scores
from in_process import asgi_transport

from service.api.app import create_app
from service.cli.local import score_locally
from service.client import AsyncClient
from service.settings import Settings


class Recorder:
    """An ASGI app that records the Accept-Encoding of each request and the Content-Encoding of each answer."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.accepted: list[str | None] = []
        self.answered: list[str | None] = []

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.accepted.append(dict(scope["headers"]).get(b"accept-encoding", b"").decode() or None)

        async def recording_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.answered.append(dict(message["headers"]).get(b"content-encoding", b"").decode() or None)
            await send(message)

        await self.app(scope, receive, recording_send)


@pytest.mark.anyio
@pytest.mark.parametrize(("compression", "coding"), [("off", None), ("auto", "zstd")])
async def test_the_client_offers_zstd_only_and_reads_the_answer(compression: Any, coding: str | None) -> None:
    app = create_app(Settings(compression=compression))
    rng = np.random.default_rng(13)
    labels = rng.integers(0, 3, size=3000)
    predictions = rng.dirichlet(np.ones(3), size=3000)
    recorder = Recorder(app)
    async with app.router.lifespan_context(app), AsyncClient("http://test", transport=asgi_transport(recorder)) as xent:
        scores = await xent.cross_entropy(labels, predictions, transport="json")
    assert recorder.accepted == ["zstd"]
    assert recorder.answered == [coding]  # a JSON answer of ~200 kB: zstd when the server compresses at all
    assert_same_scores(scores, score_locally(labels, predictions, binary=False, options={}))
