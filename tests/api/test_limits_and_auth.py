"""Limits (rows, classes, cells, decompressed size, slow bodies, concurrency), gzip bodies, and API keys.

Compressed answers: tests/api/test_answer_compression.py.
"""

import asyncio
import dataclasses
import gzip
import io
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPBearer
from in_process import send, started_client

from service.api import create_app
from service.api.keyed_route import KeyedRoute
from service.api.policy.auth import offered_key
from service.api.transport import Limits
from service.settings import Settings

REFERENCE = {"labels": [1], "predictions": [[0.228, 0.619, 0.153]]}
JSON = {"content-type": "application/json"}


def _post(settings: Settings, body: bytes, headers: dict[str, str] | None = None, path: str = "/v1/cross-entropy"):
    return send(settings, "POST", path, content=body, headers={**JSON, **(headers or {})})


def _problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert problem["type"] == f"urn:xent:problem:{slug}"
    return problem


def _batch(rows: int, columns: int) -> bytes:
    predictions = np.full((rows, columns), 1.0 / columns).tolist()
    return json.dumps({"labels": [0] * rows, "predictions": predictions}).encode()


@pytest.mark.parametrize(
    ("settings", "rows", "columns", "detail"),
    [
        (Settings(max_rows=10), 11, 2, "the batch has 11 rows; the limit is 10 (XENT_MAX_ROWS)"),
        (Settings(max_classes=4), 1, 5, "the batch has 5 classes (columns); the limit is 4 (XENT_MAX_CLASSES)"),
        (Settings(max_cells=99), 10, 10, "the batch has 100 rows × classes; the limit is 99 (XENT_MAX_CELLS)"),
    ],
    ids=["rows", "classes", "cells"],
)
@pytest.mark.parametrize("fast_json_min_bytes", [0, 10**9], ids=["fast", "reference"])
def test_batch_size_limits_are_413_naming_limit_and_value(
    settings: Settings, rows: int, columns: int, detail: str, fast_json_min_bytes: int
) -> None:
    tuned = settings.model_copy(update={"fast_json_min_bytes": fast_json_min_bytes})
    problem = _problem(_post(tuned, _batch(rows, columns)), 413, "too-large")
    assert problem["detail"] == detail


def test_batch_at_the_limits_is_scored() -> None:
    response = _post(Settings(max_rows=10, max_classes=5, max_cells=50), _batch(10, 5))
    assert response.status_code == 200, response.text
    assert response.json()["mean"]["cross_entropy"] == pytest.approx(np.log(5))


def test_npz_batch_limits_apply_too() -> None:
    buffer = io.BytesIO()
    np.savez(buffer, labels=np.zeros(11, dtype=np.int64), predictions=np.full((11, 2), 0.5))
    response = _post(Settings(max_rows=10), buffer.getvalue(), {"content-type": "application/x-npz"})
    assert _problem(response, 413, "too-large")["detail"] == "the batch has 11 rows; the limit is 10 (XENT_MAX_ROWS)"


def test_gzip_request_body_gives_the_same_answer() -> None:
    plain = _post(Settings(), json.dumps(REFERENCE).encode())
    zipped = _post(Settings(), gzip.compress(json.dumps(REFERENCE).encode()), {"content-encoding": "gzip"})
    assert zipped.status_code == 200, zipped.text
    assert zipped.json() == plain.json()


def test_gzip_bomb_is_413_and_stops_inflating_at_the_limit() -> None:
    bomb = gzip.compress(b'{"labels":[' + b" " * 10_000_000 + b"]}")
    assert len(bomb) < 20_000
    problem = _problem(_post(Settings(max_body_bytes=65536), bomb, {"content-encoding": "gzip"}), 413, "too-large")
    assert problem["detail"] == (
        "the decompressed request body is larger than the limit of 65536 bytes (XENT_MAX_BODY_BYTES)"
    )


def test_compressed_npz_bomb_is_413() -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, labels=np.zeros(1_000_000, dtype=np.int64), predictions=np.zeros((1_000_000, 2)))
    assert len(buffer.getvalue()) < 200_000
    response = _post(Settings(max_body_bytes=1_000_000), buffer.getvalue(), {"content-type": "application/x-npz"})
    assert "uncompressed archive" in _problem(response, 413, "too-large")["detail"]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"not gzip at all", "the body is not valid gzip"),
        (gzip.compress(json.dumps(REFERENCE).encode())[:-12], "the gzip body is truncated"),
    ],
    ids=["garbage", "truncated"],
)
def test_broken_gzip_is_400(body: bytes, detail: str) -> None:
    problem = _problem(_post(Settings(), body, {"content-encoding": "gzip"}), 400, "malformed-gzip")
    assert problem["detail"].startswith(detail)


def test_unknown_content_encoding_is_415() -> None:
    problem = _problem(_post(Settings(), b"{}", {"content-encoding": "br"}), 415, "unsupported-media-type")
    assert "Content-Encoding 'br' is not supported" in problem["detail"]


def test_a_body_that_arrives_too_slowly_is_408() -> None:
    async def trickle() -> AsyncIterator[bytes]:
        yield b'{"labels":[1],'
        await asyncio.sleep(1.0)
        yield b'"predictions":[[0.228,0.619,0.153]]}'

    response = send(Settings(body_timeout_seconds=0.2), "POST", "/v1/cross-entropy", content=trickle(), headers=JSON)
    problem = _problem(response, 408, "timeout")
    assert "did not arrive within 0.2 seconds" in problem["detail"]


def test_past_the_concurrency_limit_the_answer_is_503_at_once() -> None:
    app = create_app(Settings(max_concurrent_scoring=2))

    async def go() -> tuple[httpx.Response, httpx.Response, httpx.Response, int]:
        async with started_client(app) as client:
            app.state.xent.scoring_slots.busy = 2  # two requests in progress
            refused = await client.post("/v1/cross-entropy", json=REFERENCE)
            health = await client.get("/healthz")
            app.state.xent.scoring_slots.busy = 1
            admitted = await client.post("/v1/cross-entropy", json=REFERENCE)
            return refused, health, admitted, app.state.xent.scoring_slots.busy

    refused, health, admitted, busy_after = asyncio.run(go())
    assert health.status_code == 200  # health checks are never limited
    problem = _problem(refused, 503, "overloaded")
    assert refused.headers["retry-after"] == "1"
    assert "2 scoring requests are already in progress" in problem["detail"]
    assert admitted.status_code == 200, admitted.text
    assert busy_after == 1  # the admitted request gave its slot back


def test_slots_are_given_back_after_errors() -> None:
    app = create_app(Settings(max_concurrent_scoring=1, max_rows=1))

    async def go() -> list[int]:
        async with started_client(app) as client:
            statuses = []
            for body in (b"{", _batch(2, 2), b'{"labels":[9],"predictions":[[0.5,0.5]]}', json.dumps(REFERENCE)):
                statuses.append((await client.post("/v1/cross-entropy", content=body, headers=JSON)).status_code)
            assert app.state.xent.scoring_slots.busy == 0
            return statuses

    assert asyncio.run(go()) == [400, 413, 422, 200]


# --- API keys -------------------------------------------------------------------------------------

KEYED = Settings(api_keys="alpha, beta")


@pytest.mark.parametrize(
    "headers",
    [{"authorization": "Bearer alpha"}, {"authorization": "Bearer beta"}, {"x-api-key": "beta"}],
    ids=["bearer", "second key", "x-api-key"],
)
def test_a_configured_key_lets_the_request_through(headers: dict[str, str]) -> None:
    response = _post(KEYED, json.dumps(REFERENCE).encode(), headers)
    assert response.status_code == 200, response.text
    assert response.json()["mean"]["cross_entropy"] == pytest.approx(0.4796500062975, rel=1e-12)


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "this endpoint needs an API key"),
        ({"authorization": "Bearer gamma"}, "the API key is not valid"),
        ({"x-api-key": "alph"}, "the API key is not valid"),
        ({"authorization": "Basic YWxwaGE6"}, "this endpoint needs an API key"),
    ],
    ids=["missing", "wrong bearer", "wrong header", "other scheme"],
)
def test_without_a_valid_key_scoring_is_401(headers: dict[str, str], detail: str) -> None:
    for path in ("/v1/cross-entropy", "/v1/binary-cross-entropy"):
        response = _post(KEYED, json.dumps(REFERENCE).encode(), headers, path=path)
        problem = _problem(response, 401, "unauthorized")
        assert problem["detail"].startswith(detail)
        assert response.headers["www-authenticate"] == 'Bearer realm="xent"'


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/v1/info"])
def test_health_and_info_stay_open_with_keys(path: str) -> None:
    assert send(KEYED, "GET", path).status_code == 200


def test_keys_come_from_a_file_one_per_line(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# rotated 2026-11\nfirst-key\n\n  second-key  \n")
    settings = Settings(api_keys_file=keys)
    assert _post(settings, json.dumps(REFERENCE).encode(), {"x-api-key": "second-key"}).status_code == 200
    assert _post(settings, json.dumps(REFERENCE).encode(), {"x-api-key": "# rotated 2026-11"}).status_code == 401


def test_an_unreadable_keys_file_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        create_app(Settings(api_keys_file=tmp_path / "missing"))


def test_an_open_service_says_so_once_at_start_up(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="service.api"):
        send(Settings(), "GET", "/healthz")
        send(KEYED, "GET", "/healthz")
    warnings = [r.getMessage() for r in caplog.records if "no API keys are configured" in r.getMessage()]
    assert len(warnings) == 1


def test_openapi_declares_both_key_schemes_on_scoring_operations() -> None:
    document = create_app(Settings()).openapi()
    schemes = document["components"]["securitySchemes"]
    assert schemes["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["HTTPBearer"]["description"],
    }
    assert schemes["APIKeyHeader"]["in"] == "header"
    assert schemes["APIKeyHeader"]["name"] == "X-API-Key"
    for path in ("/v1/cross-entropy", "/v1/binary-cross-entropy"):
        operation = document["paths"][path]["post"]
        assert {"HTTPBearer": []} in operation["security"]
        assert {"APIKeyHeader": []} in operation["security"]
        assert {"401", "408", "413", "415", "422", "503"} <= set(operation["responses"])
    assert "security" not in document["paths"]["/healthz"]["get"]


SCORING_PATHS = ("/v1/cross-entropy", "/v1/binary-cross-entropy")


@pytest.mark.parametrize("path", SCORING_PATHS)
@pytest.mark.parametrize(
    "headers",
    [
        {"authorization": "Bearer alpha"},
        {"authorization": "bearer   beta  "},  # the scheme in any case, the token stripped
        {"x-api-key": "beta"},
        {"x-api-key": "", "authorization": "Bearer alpha"},  # an empty X-API-Key counts as not sent
    ],
    ids=["bearer", "lower-case scheme", "x-api-key", "empty x-api-key"],
)
def test_both_key_forms_open_both_scoring_endpoints(path: str, headers: dict[str, str]) -> None:
    body = {"labels": [1], "predictions": [0.7]} if "binary" in path else REFERENCE
    response = _post(KEYED, json.dumps(body).encode(), headers, path=path)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", SCORING_PATHS)
def test_a_wrong_x_api_key_is_not_rescued_by_a_good_bearer(path: str) -> None:
    headers = {"x-api-key": "gamma", "authorization": "Bearer alpha"}
    response = _post(KEYED, json.dumps(REFERENCE).encode(), headers, path=path)
    assert _problem(response, 401, "unauthorized")["detail"] == "the API key is not valid"


def test_the_key_is_checked_before_the_body_is_read() -> None:
    response = _post(KEYED, b"not json at all", {"content-type": "text/plain"})
    assert _problem(response, 401, "unauthorized")["detail"].startswith("this endpoint needs an API key")


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"x-api-key", b"k1")],
        [(b"x-api-key", b"")],
        [(b"x-api-key", b""), (b"x-api-key", b"k2")],
        [(b"x-api-key", b"k1"), (b"x-api-key", b"k2")],
        [(b"authorization", b"Bearer k3")],
        [(b"authorization", b"BEARER  k3 ")],
        [(b"authorization", b"Bearer")],
        [(b"authorization", b"Bearer ")],
        [(b"authorization", b" Bearer k3")],
        [(b"authorization", b"Basic k3")],
        [(b"authorization", b"")],
        [(b"authorization", b"Bearer k3"), (b"authorization", b"Bearer k4")],
        [(b"authorization", b"Bearer k3"), (b"x-api-key", b"k1")],
        [(b"x-api-key", "k\xe9y".encode("latin-1"))],
    ],
)
def test_the_offered_key_is_what_fastapis_security_schemes_read(headers: list[tuple[bytes, bytes]]) -> None:
    request = Request({"type": "http", "headers": headers})

    async def fastapi_reads() -> str | None:
        header = await APIKeyHeader(name="X-API-Key", auto_error=False)(request)
        bearer = await HTTPBearer(auto_error=False)(request)
        return header if header is not None else (bearer.credentials if bearer is not None else None)

    assert offered_key(headers) == asyncio.run(fastapi_reads())


def test_scoring_routes_are_plain_keyed_routes_on_the_app_itself() -> None:
    app = create_app(KEYED)
    routes = {route.path: route for route in app.router.routes if isinstance(route, APIRoute)}
    for path in SCORING_PATHS:
        assert isinstance(routes[path], KeyedRoute)
        # Nothing for FastAPI to solve per request: the key dependency is there for the document only.
        assert [sub.call for sub in routes[path].dependant.dependencies] == [routes[path].dependencies[0].dependency]
        assert routes[path].dependant.query_params == routes[path].dependant.body_params == []


def test_a_keyed_route_refuses_what_it_would_not_run() -> None:
    async def endpoint(request: Request) -> Response:
        return Response()

    async def with_query(request: Request, n: int = 1) -> Response:
        return Response()

    def other() -> None:
        return None

    with pytest.raises(TypeError, match="runs no dependencies"):
        KeyedRoute("/x", endpoint, dependencies=[Depends(other)])
    with pytest.raises(TypeError, match="takes the Request alone"):
        KeyedRoute("/x", with_query)


def test_every_request_limit_and_its_default_come_from_the_settings() -> None:
    # One fact, one place: XENT_MAX_GROUPS' default is Settings', never a second copy in the transport's Limits.
    assert [field.name for field in dataclasses.fields(Limits) if field.default is not dataclasses.MISSING] == []
    limits = Limits.from_settings(Settings(max_groups=7, max_merge_states=9))
    assert (limits.groups, limits.merge_states) == (7, 9)
