"""HTTP to the app in-process: the one place in the tests that builds an ``httpx.ASGITransport``.

tests/conftest.py builds its ``client`` fixtures from these; a test that needs an app of its own
(its own settings, two apps side by side, a proxy prefix, a call from synchronous code) uses them
directly. Importable from every test module (tests/conftest.py puts this folder on sys.path).
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI

from service.api.app import create_app
from service.settings import Settings


def asgi_transport(app: Any, *, root_path: str = "") -> httpx.ASGITransport:
    """An in-process transport to ``app`` (an ASGI app; its lifespan is the caller's to enter)."""
    # raise_app_exceptions=False: a crash must reach the test as the 500 a real client would see.
    return httpx.ASGITransport(app=app, raise_app_exceptions=False, root_path=root_path)


def in_process_client(app: Any, *, root_path: str = "") -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` of ``app`` at ``http://test`` (the lifespan is not entered)."""
    return httpx.AsyncClient(transport=asgi_transport(app, root_path=root_path), base_url="http://test")


@contextlib.asynccontextmanager
async def started_client(app: FastAPI, *, root_path: str = "") -> AsyncIterator[httpx.AsyncClient]:
    """A client of ``app`` after its start-up (self-test done, /readyz ready); shut down when the block ends."""
    async with app.router.lifespan_context(app), in_process_client(app, root_path=root_path) as client:
        yield client


def send(settings: Settings, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request, from synchronous code, to a fresh app built from ``settings`` and started for it."""
    app = create_app(settings)

    async def go() -> httpx.Response:
        async with started_client(app) as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


def post(path: str, content: bytes, headers: dict[str, str], settings: Settings | None = None) -> httpx.Response:
    """POST ``content`` with ``headers`` to a fresh app (default settings unless given), from synchronous code."""
    return send(settings or Settings(), "POST", path, content=content, headers=headers)
