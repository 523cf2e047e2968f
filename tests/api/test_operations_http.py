"""Liveness, readiness and /v1/info."""

import httpx
import pytest
from fastapi import FastAPI

from service import __version__
from service.settings import Settings

pytestmark = pytest.mark.anyio

NOT_READY = {
    "type": "urn:xent:problem:not-ready",
    "title": "Not ready",
    "status": 503,
    "detail": "the service is starting or stopping",
}


async def test_healthz_answers_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")

    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ok"}


async def test_healthz_answers_ok_even_before_start_up(unstarted_client: httpx.AsyncClient) -> None:
    response = await unstarted_client.get("/healthz")

    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ok"}


async def test_readyz_is_ready_after_start_up(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")

    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready"}


async def test_readyz_is_a_503_problem_before_start_up(unstarted_client: httpx.AsyncClient) -> None:
    response = await unstarted_client.get("/readyz")

    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "1"
    assert response.json() == NOT_READY


async def test_readyz_is_a_503_problem_again_after_shutdown(app: FastAPI, unstarted_client: httpx.AsyncClient) -> None:
    async with app.router.lifespan_context(app):
        assert (await unstarted_client.get("/readyz")).status_code == 200

    response = await unstarted_client.get("/readyz")

    assert response.status_code == 503, response.text
    assert response.json() == NOT_READY


async def test_what_exists_at_start_up_is_frozen_out_of_garbage_collection_until_shutdown(app: FastAPI) -> None:
    import gc

    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    async with app.router.lifespan_context(app):
        # The app's modules, routes and schemas: tens of thousands of objects a full collection no longer walks.
        assert gc.get_freeze_count() > 10_000
    assert gc.get_freeze_count() == 0


def _info(max_body_bytes: int, **limits: object) -> dict[str, object]:
    return {
        "name": "xent",
        "version": __version__,
        "units": ["nats", "bits", "hartleys"],
        "prediction_types": {
            "/v1/cross-entropy": ["probabilities", "logits", "log_probabilities"],
            "/v1/binary-cross-entropy": ["probabilities", "logits"],
        },
        "warning_codes": [
            "ROWS_NOT_NORMALIZED",
            "RENORMALIZED",
            "CLIPPED",
            "NON_FINITE",
            "EMPTY",
            "ZERO_WEIGHT",
            "AGGREGATE_OVERFLOW",
            "STDERR_UNDEFINED",
            "SOFT_TARGETS",
            "STATE_NOT_MERGEABLE",
        ],
        "limits": {
            "max_body_bytes": max_body_bytes,
            "max_rows": 2_000_000,
            "max_classes": 100_000,
            "max_cells": 8_000_000,
            "max_groups": 10_000,
            "max_merge_states": 10_000,
            "max_concurrent_scoring": 64,
            "body_timeout_seconds": 60.0,
            "body_min_bytes_per_second": 1024,
            "body_min_rate_grace_seconds": 5.0,
            "memory_budget_bytes": 923_741_824,
            "api_keys_required": False,
        }
        | limits,
    }


@pytest.mark.parametrize("settings", [Settings(max_body_bytes=64 * 1024 * 1024, memory_budget_bytes=923_741_824)])
async def test_info_names_version_units_and_the_default_limit(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/info")

    assert response.status_code == 200, response.text
    assert response.json() == _info(67108864)


@pytest.mark.parametrize(
    "settings",
    [
        Settings(
            max_body_bytes=4096,
            max_rows=10,
            max_classes=3,
            max_cells=30,
            max_concurrent_scoring=2,
            body_min_bytes_per_second=0,
            memory_budget_bytes=0,
            api_keys="k",
        )
    ],
)
async def test_info_limits_reflect_the_settings(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/info")

    assert response.status_code == 200, response.text
    assert response.json() == _info(
        4096,
        max_rows=10,
        max_classes=3,
        max_cells=30,
        max_concurrent_scoring=2,
        body_min_bytes_per_second=0,
        memory_budget_bytes=None,
        api_keys_required=True,
    )
