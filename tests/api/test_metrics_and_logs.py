"""GET /metrics, X-Request-ID and the one JSON log line per request, through the real app in-process."""

import dataclasses
import io
import json
import logging
import os
import random
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from prometheus_text import sample
from starlette.types import Message, Receive, Scope, Send

from service.api.operations.metrics import REFUSAL_REASONS, Metrics
from service.api.operations.request_id import RequestIdMiddleware, new_request_id
from service.logs import REQUEST_LOGGER, TRACE, JsonFormatter, dumps, log_config, utc_time
from service.metrics_dir import PROMETHEUS_ENV, UnwritableMetricsDirectory, metrics_directory
from service.settings import Settings

pytestmark = pytest.mark.anyio

REFERENCE = {"labels": [1], "predictions": [[0.228, 0.619, 0.153]]}
LOG_FIELDS = {
    "time",
    "level",
    "logger",
    "message",
    "request_id",
    "method",
    "path",
    "route",
    "status",
    "duration_ms",
    "rows",
    "bytes_in",
    "bytes_out",
    "client",
}
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


async def scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    return response.text


@pytest.fixture
def request_log() -> Iterator[io.StringIO]:
    """What the request logger writes at info level, formatted as in production."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(REQUEST_LOGGER)
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def add_failing_route(app: FastAPI) -> None:
    """A test-only route that crashes, for the 500 path."""

    async def boom() -> None:
        raise RuntimeError("a bug, with secret 0.228 in its message")

    app.add_api_route("/boom", boom, methods=["GET"])


# --- /metrics -----------------------------------------------------------------------------


async def test_metrics_are_prometheus_text_with_every_xent_metric(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    # (Counters with children also get *_created gauges in single-process mode.)
    families = text_string_to_metric_families(response.text)
    names = {family.name for family in families if not family.name.endswith("_created")}
    assert names == {
        "xent_http_requests",
        "xent_http_request_duration_seconds",
        "xent_http_request_body_bytes",
        "xent_scored_rows",
        "xent_http_requests_in_flight",
        "xent_refusals",
    }


async def test_scoring_requests_are_counted_with_their_rows_bytes_and_latency(client: httpx.AsyncClient) -> None:
    bodies = [
        {"labels": [1], "predictions": [[0.228, 0.619, 0.153]]},
        {"labels": [0, 2], "predictions": [[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]},
        {"labels": [0, 1, 1], "predictions": [0.1, 0.8, 0.6]},
    ]
    paths = ["/v1/cross-entropy", "/v1/cross-entropy", "/v1/binary-cross-entropy"]
    sizes = []
    for path, body in zip(paths, bodies, strict=True):
        content = json.dumps(body).encode()
        sizes.append(len(content))
        response = await client.post(path, content=content, headers={"content-type": "application/json"})
        assert response.status_code == 200, response.text

    text = await scrape(client)

    multi = {"endpoint": "/v1/cross-entropy"}
    binary = {"endpoint": "/v1/binary-cross-entropy"}
    assert sample(text, "xent_http_requests_total", **multi, method="POST", status="200") == 2
    assert sample(text, "xent_http_requests_total", **binary, method="POST", status="200") == 1
    assert sample(text, "xent_scored_rows_total", **multi) == 3
    assert sample(text, "xent_scored_rows_total", **binary) == 3
    assert sample(text, "xent_http_request_body_bytes_sum", **multi) == sizes[0] + sizes[1]
    assert sample(text, "xent_http_request_body_bytes_count", **binary) == 1
    assert sample(text, "xent_http_request_duration_seconds_count", **multi, method="POST") == 2
    assert sample(text, "xent_http_request_duration_seconds_sum", **multi, method="POST") > 0
    # Only the scrape itself is in flight while the exposition is written.
    assert sample(text, "xent_http_requests_in_flight") == 1
    assert sample(await scrape(client), "xent_http_requests_in_flight") == 1


@pytest.mark.parametrize("settings", [Settings(max_body_bytes=1024)])
async def test_refusals_are_counted_by_reason(client: httpx.AsyncClient) -> None:
    json_type = {"content-type": "application/json"}
    too_large = await client.post("/v1/cross-entropy", content=b"[" + b"0," * 1024 + b"0]", headers=json_type)
    wrong_type = await client.post("/v1/cross-entropy", content=b"labels=1", headers={"content-type": "text/plain"})
    invalid = await client.post(
        "/v1/cross-entropy", content=b'{"labels":[1],"predictions":[[NaN,1]]}', headers=json_type
    )
    invalid_again = await client.post("/v1/binary-cross-entropy", json={"labels": [2], "predictions": [0.5]})

    assert [too_large.status_code, wrong_type.status_code, invalid.status_code, invalid_again.status_code] == [
        413,
        415,
        422,
        422,
    ]
    text = await scrape(client)
    refusals = {reason: sample(text, "xent_refusals_total", reason=reason) for reason in REFUSAL_REASONS.values()}
    assert refusals == {
        "malformed_body": 0,
        "unauthorized": 0,
        "body_timeout": 0,
        "too_large": 1,
        "unsupported_media_type": 1,
        "invalid_input": 2,
        "unavailable": 0,
    }
    endpoint = {"endpoint": "/v1/cross-entropy", "method": "POST"}
    assert sample(text, "xent_http_requests_total", **endpoint, status="413") == 1
    assert sample(text, "xent_http_requests_total", **endpoint, status="415") == 1
    assert sample(text, "xent_scored_rows_total", endpoint="/v1/cross-entropy") == 0


async def test_not_ready_is_a_refusal_and_probes_are_counted(unstarted_client: httpx.AsyncClient) -> None:
    assert (await unstarted_client.get("/readyz")).status_code == 503
    assert (await unstarted_client.get("/healthz")).status_code == 200

    text = await scrape(unstarted_client)

    assert sample(text, "xent_refusals_total", reason="unavailable") == 1
    assert sample(text, "xent_http_requests_total", endpoint="/readyz", method="GET", status="503") == 1
    assert sample(text, "xent_http_requests_total", endpoint="/healthz", method="GET", status="200") == 1


async def test_unknown_paths_share_one_label_and_odd_methods_are_other(client: httpx.AsyncClient) -> None:
    for path in ("/nope", "/wp-admin/setup.php", "/v1/cross-entropy/extra"):
        assert (await client.get(path)).status_code == 404
    assert (await client.request("BREW", "/v1/cross-entropy")).status_code == 405
    assert (await client.get("/v1/cross-entropy")).status_code == 405

    text = await scrape(client)

    assert sample(text, "xent_http_requests_total", endpoint="unmatched", method="GET", status="404") == 3
    assert sample(text, "xent_http_requests_total", endpoint="/v1/cross-entropy", method="other", status="405") == 1
    assert sample(text, "xent_http_requests_total", endpoint="/v1/cross-entropy", method="GET", status="405") == 1
    assert "wp-admin" not in text


async def test_a_crash_is_counted_as_a_500(app: FastAPI, client: httpx.AsyncClient) -> None:
    add_failing_route(app)

    assert (await client.get("/boom")).status_code == 500

    text = await scrape(client)
    assert sample(text, "xent_http_requests_total", endpoint="/boom", method="GET", status="500") == 1
    assert sample(text, "xent_http_requests_in_flight") == 1  # the scrape only: the crash was let go


async def test_each_app_counts_for_itself() -> None:
    first, second = Metrics(), Metrics()
    first.observe(endpoint="/healthz", method="GET", status=200, seconds=0.001, bytes_in=0, rows=None)

    assert b'status="200"' in first.exposition()
    assert b'status="200"' not in second.exposition()


async def test_a_metrics_dir_without_multiprocess_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="PROMETHEUS_MULTIPROC_DIR was not set"):
        Metrics(multiprocess_dir=tmp_path)


# --- access to /metrics -------------------------------------------------------------------

KEYS = Settings(api_keys="k-123")


@pytest.mark.parametrize("settings", [KEYS])
async def test_metrics_stay_open_with_api_keys_unless_told_otherwise(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")

    assert response.status_code == 200, response.text


@pytest.mark.parametrize("settings", [Settings(api_keys="k-123", metrics_require_key=True)])
async def test_metrics_can_require_the_api_key(client: httpx.AsyncClient) -> None:
    without = await client.get("/metrics")
    wrong = await client.get("/metrics", headers={"X-API-Key": "k-999"})
    bearer = await client.get("/metrics", headers={"Authorization": "Bearer k-123"})
    header = await client.get("/metrics", headers={"X-API-Key": "k-123"})

    assert [without.status_code, wrong.status_code, bearer.status_code, header.status_code] == [401, 401, 200, 200]
    assert without.headers["content-type"] == "application/problem+json"
    assert sample(header.text, "xent_refusals_total", reason="unauthorized") == 2


async def test_metrics_are_in_the_openapi_document(client: httpx.AsyncClient) -> None:
    operation = (await client.get("/openapi.json")).json()["paths"]["/metrics"]["get"]

    assert operation["tags"] == ["operations"]
    assert "xent_http_requests_total" in operation["description"]
    assert list(operation["responses"]["200"]["content"]) == ["text/plain; version=0.0.4; charset=utf-8"]


# --- X-Request-ID -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/v1/cross-entropy", REFERENCE, 200),
        ("POST", "/v1/cross-entropy", {"labels": [1]}, 422),
        ("GET", "/nope", None, 404),
        ("DELETE", "/healthz", None, 405),
        ("GET", "/boom", None, 500),
    ],
)
async def test_a_sane_request_id_is_echoed_on_every_answer(
    app: FastAPI, client: httpx.AsyncClient, method: str, path: str, body: object, status: int
) -> None:
    add_failing_route(app)

    response = await client.request(method, path, json=body, headers={"X-Request-ID": "run-7.batch_3"})

    assert response.status_code == status, response.text
    assert response.headers["x-request-id"] == "run-7.batch_3"


@pytest.mark.parametrize("path", ["/v1/info", "/nope", "/boom"])
async def test_a_request_id_is_generated_when_none_is_sent(app: FastAPI, client: httpx.AsyncClient, path: str) -> None:
    add_failing_route(app)

    first, second = await client.get(path), await client.get(path)

    assert UUID4.fullmatch(first.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


@pytest.mark.parametrize("offered", ["x" * 129, "has space", "line\tbreak", "ünïcode", ""])
async def test_an_unsafe_request_id_is_replaced(client: httpx.AsyncClient, offered: str) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": offered.encode("utf-8")})  # type: ignore[dict-item]

    assert uuid.UUID(response.headers["x-request-id"]).version == 4


async def test_the_longest_sane_request_id_is_kept(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": "a" * 128})

    assert response.headers["x-request-id"] == "a" * 128


# --- the request log ----------------------------------------------------------------------


async def test_one_json_line_per_request_with_every_field(client: httpx.AsyncClient, request_log: io.StringIO) -> None:
    content = json.dumps({"classes": ["cat-secret", "dog", "eel"], **REFERENCE}).encode()
    response = await client.post(
        "/v1/cross-entropy",
        content=content,
        headers={"content-type": "application/json", "x-request-id": "req-1"},
    )

    assert response.status_code == 200, response.text
    [line] = lines(request_log)
    assert set(line) == LOG_FIELDS
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(line["time"]))
    assert isinstance(line["duration_ms"], float)
    assert line["duration_ms"] > 0
    assert {key: value for key, value in line.items() if key not in ("time", "duration_ms")} == {
        "level": "info",
        "logger": "xent.requests",
        "message": "POST /v1/cross-entropy 200",
        "request_id": "req-1",
        "method": "POST",
        "path": "/v1/cross-entropy",
        "route": "/v1/cross-entropy",
        "status": 200,
        "rows": 1,
        "bytes_in": len(content),
        "bytes_out": len(response.content),
        "client": "127.0.0.1",
    }


async def test_log_lines_carry_no_payload(client: httpx.AsyncClient, request_log: io.StringIO) -> None:
    secret = {"classes": ["cat-secret", "dog", "eel"], "labels": ["cat-secret"], "predictions": [[0.228, 0.619, 0.1]]}
    await client.post("/v1/cross-entropy", json=secret)
    await client.post("/v1/cross-entropy", json={**secret, "labels": ["nope-secret"]})  # a 422 that names it

    text = request_log.getvalue()
    assert [line["status"] for line in lines(request_log)] == [200, 422]
    assert "secret" not in text
    assert "0.228" not in text


async def test_refusals_and_unmatched_paths_are_logged_once_each(
    client: httpx.AsyncClient, request_log: io.StringIO
) -> None:
    await client.post("/v1/cross-entropy", content=b"x", headers={"content-type": "text/plain", "x-request-id": "a"})
    await client.get("/nope?token=abc", headers={"x-request-id": "b"})

    assert [(line["request_id"], line["status"], line["route"], line["path"]) for line in lines(request_log)] == [
        ("a", 415, "/v1/cross-entropy", "/v1/cross-entropy"),
        ("b", 404, "unmatched", "/nope"),
    ]
    assert lines(request_log)[1]["rows"] is None


async def test_probes_and_scrapes_are_not_logged_at_info(client: httpx.AsyncClient, request_log: io.StringIO) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await client.get(path)).status_code == 200

    assert request_log.getvalue() == ""


async def test_probes_are_logged_at_debug(client: httpx.AsyncClient, request_log: io.StringIO) -> None:
    logging.getLogger(REQUEST_LOGGER).setLevel(logging.DEBUG)

    await client.get("/healthz")

    [line] = lines(request_log)
    assert (line["level"], line["route"], line["status"]) == ("debug", "/healthz", 200)


async def test_a_crash_is_logged_with_its_request_id_and_answered_without_details(
    app: FastAPI, client: httpx.AsyncClient, request_log: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    add_failing_route(app)

    response = await client.get("/boom", headers={"x-request-id": "crash-1"})

    assert response.status_code == 500
    assert response.json() == {
        "type": "urn:xent:problem:internal",
        "title": "Internal server error",
        "status": 500,
        "detail": "The server failed to answer this request.",
    }
    [error] = [record for record in caplog.records if record.name == "service.api" and record.levelname == "ERROR"]
    assert error.fields == {"request_id": "crash-1", "method": "GET", "path": "/boom"}  # type: ignore[attr-defined]
    formatted = json.loads(JsonFormatter().format(error))
    assert formatted["request_id"] == "crash-1"
    assert "RuntimeError" in formatted["exception"]
    [line] = lines(request_log)
    assert (line["request_id"], line["status"], line["route"]) == ("crash-1", 500, "/boom")


# --- logging configuration and the metrics directory --------------------------------------


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Neither metrics variable set, and whatever the test (or the code) sets is undone afterwards."""
    for name in (PROMETHEUS_ENV, "XENT_METRICS_DIR"):
        monkeypatch.setenv(name, "")  # records the original value (or its absence) for the undo
        monkeypatch.delenv(name)
    return monkeypatch


def test_log_config_sends_every_logger_to_stdout_as_json() -> None:
    config = log_config("TRACE")

    assert config["loggers"]["uvicorn.error"]["level"] == TRACE
    assert config["loggers"][REQUEST_LOGGER.split(".")[0]]["level"] == TRACE
    assert config["handlers"]["stdout"]["stream"] == "ext://sys.stdout"
    assert config["formatters"]["json"]["()"] is JsonFormatter
    assert log_config("warning")["loggers"]["service"]["level"] == logging.WARNING


@pytest.mark.usefixtures("environ")
def test_one_worker_needs_no_metrics_directory() -> None:
    with metrics_directory(None, workers=1) as directory:
        assert directory is None
        assert PROMETHEUS_ENV not in os.environ


def test_several_workers_get_a_temporary_directory_removed_at_exit(environ: pytest.MonkeyPatch, tmp_path: Path) -> None:
    environ.setenv("TMPDIR", str(tmp_path))
    environ.setattr("tempfile.tempdir", None)  # so tempfile reads TMPDIR again

    with metrics_directory(None, workers=2) as directory:
        assert directory is not None
        assert directory.parent == tmp_path
        assert os.environ[PROMETHEUS_ENV] == os.environ["XENT_METRICS_DIR"] == str(directory)

    assert list(tmp_path.iterdir()) == []


@pytest.mark.usefixtures("environ")
def test_a_configured_directory_is_kept_but_its_stale_values_are_wiped(tmp_path: Path) -> None:
    (tmp_path / "counter_123.db").write_bytes(b"stale")
    (tmp_path / "notes.txt").write_text("not ours")

    with metrics_directory(tmp_path, workers=1) as directory:
        assert directory == tmp_path
        assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]

    assert tmp_path.is_dir()


@pytest.mark.usefixtures("environ")
def test_an_unwritable_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")

    with pytest.raises(UnwritableMetricsDirectory, match="XENT_METRICS_DIR"), metrics_directory(blocker / "x", 2):
        pass  # pragma: no cover - never entered


# --- the cheap paths: same answers as the obvious code ------------------------------------


@pytest.mark.parametrize(
    "timestamp",
    [
        0.0,
        1.5,
        1.0004999,
        1.0005,
        1.9994999,
        1.9995,
        1.9999994,
        1.9999996,  # rounds up into the next second, as datetime does
        1_700_000_000.9999996,
        1_795_617_406.2068222,
        4_102_444_799.999,
    ],
)
def test_log_times_are_what_datetime_writes(timestamp: float) -> None:
    expected = datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert utc_time(timestamp) == expected


def test_log_times_agree_with_datetime_on_many_instants() -> None:
    rng = random.Random(7)
    for _ in range(20_000):
        timestamp = rng.uniform(0, 4e9)
        expected = datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
        assert utc_time(timestamp) == expected.replace("+00:00", "Z")


@dataclasses.dataclass
class _Point:
    x: int


@pytest.mark.parametrize(
    "line",
    [
        {"text": 'é "quoted"\n\ttab', "n": 3, "f": 0.125, "none": None, "flag": True, "list": [1, "a", []]},
        {"dataclass": _Point(1), "when": datetime(2026, 11, 25, tzinfo=UTC), "path": Path("/tmp/x")},
        {"numpy float": np.float64(0.5), "numpy int": np.int64(3)},
        {1: "an int key"},
        {"huge": 2**70},
    ],
    ids=["plain", "str fallbacks", "numpy", "int key", "huge int"],
)
def test_log_lines_hold_what_json_would_write(line: dict[object, object]) -> None:
    assert json.loads(dumps(line)) == json.loads(json.dumps(line, ensure_ascii=False, default=str))  # type: ignore[arg-type]


def test_generated_request_ids_are_uuid4() -> None:
    ids = [new_request_id() for _ in range(2000)]
    for text in ids:
        value = uuid.UUID(text)
        assert (value.version, value.variant, str(value)) == (4, uuid.RFC_4122, text)
    assert len(set(ids)) == len(ids)
    assert {text[19] for text in ids} == set("89ab")


async def test_the_request_id_replaces_one_the_app_set() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"x-request-id", b"inner"), (b"content-type", b"text/plain"), (b"x-request-id", b"again")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "headers": [(b"x-request-id", b"outer-1")]}
    await RequestIdMiddleware(app)(scope, None, send)  # type: ignore[arg-type]

    assert sent[0]["headers"] == [(b"x-request-id", b"outer-1"), (b"content-type", b"text/plain")]


async def test_a_get_adds_no_body_size_series(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")
    await client.get("/healthz")

    text = await scrape(client)

    assert sample(text, "xent_http_requests_total", endpoint="/healthz", method="GET", status="200") == 2
    assert 'xent_http_request_body_bytes_count{endpoint="/healthz"}' not in text
    assert 'xent_scored_rows_total{endpoint="/healthz"}' not in text


async def test_no_log_record_is_made_when_the_level_is_off(
    client: httpx.AsyncClient, request_log: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger = logging.getLogger(REQUEST_LOGGER)
    logger.setLevel(logging.WARNING)
    made: list[logging.LogRecord] = []
    make_record = logger.makeRecord
    monkeypatch.setattr(logger, "makeRecord", lambda *args: made.append(make_record(*args)) or made[-1])

    assert (await client.post("/v1/cross-entropy", json=REFERENCE)).status_code == 200

    assert made == []
    assert request_log.getvalue() == ""
