"""Shared fixtures: an app built from settings, and an HTTP client that talks to it in-process.

Pytest puts this folder on sys.path (a rootdir conftest.py without __init__.py), so every test module
can import the shared modules beside it instead of copying helpers:

- ``in_process``: HTTP to the app in-process (the one ``httpx.ASGITransport``; these fixtures use it);
- ``live_server``: a real ``xent serve`` on a free loopback port;
- ``drain_race``: a slow upload raced against SIGTERM;
- ``npz_bodies``: .npz and .npy request bodies;
- ``whole_answers``: tolerances, shared messages and the reference example's whole answer;
- ``prometheus_text``: samples read from GET /metrics.

Bad inputs of every kind live in one table: tests/hostile/test_bad_inputs_catalogue.py.
"""

from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from fastapi import FastAPI
from in_process import in_process_client, started_client
from threadpoolctl import threadpool_limits

from service.api.app import create_app
from service.settings import Settings

# `xent serve` holds the BLAS library to one thread (service/cli/serve.py); so does the test process, so that
# a live server's sums and the in-process core's agree to the last bit: a dot product that OpenBLAS splits
# over two threads adds its halves in another order, and may round differently.
threadpool_limits(limits=1)

PostRaw = Callable[..., Awaitable[httpx.Response]]


@pytest.fixture
def anyio_backend() -> str:
    """Run the anyio-marked tests on asyncio only (the server runs on uvicorn's asyncio loop)."""
    return "asyncio"


@pytest.fixture
def settings() -> Settings:
    """The app's settings; a test overrides them with ``@pytest.mark.parametrize("settings", [...])``."""
    return Settings()


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    """A fresh app whose lifespan has not been entered (so it is not ready yet)."""
    return create_app(settings)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of ``app`` after its start-up (self-test done, /readyz ready); shut down afterwards."""
    async with started_client(app) as started:
        yield started


@pytest.fixture
async def unstarted_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of ``app`` whose lifespan was never entered."""
    async with in_process_client(app) as client:
        yield client


@pytest.fixture
def post_raw(client: httpx.AsyncClient) -> PostRaw:
    """POST raw bytes (or text) exactly as given, with Content-Type application/json unless told otherwise."""

    async def post(
        path: str, body: bytes | str, content_type: str | None = "application/json", **kwargs: object
    ) -> httpx.Response:
        headers = {} if content_type is None else {"Content-Type": content_type}
        content = body.encode() if isinstance(body, str) else body
        return await client.post(path, content=content, headers=headers, **kwargs)  # type: ignore[arg-type]

    return post
