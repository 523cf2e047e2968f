"""The OpenAPI document: committed copy up to date, every field described, every example scores."""

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from fastapi import FastAPI
from in_process import started_client

from service.api.app import create_app
from service.api.operations.health import EXAMPLE_SETTINGS
from service.api.problems import ProblemKind
from service.api.schemas import BinaryCrossEntropyResponse, CrossEntropyResponse
from service.api.sequence_schemas import SequenceCrossEntropyResponse
from service.cli import openapi_document
from service.settings import Settings

pytestmark = pytest.mark.anyio

COMMITTED = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"
SCORING = {
    "/v1/cross-entropy": CrossEntropyResponse,
    "/v1/binary-cross-entropy": BinaryCrossEntropyResponse,
    "/v1/sequence-cross-entropy": SequenceCrossEntropyResponse,
}


def _document() -> dict[str, Any]:
    document: dict[str, Any] = create_app(Settings()).openapi()
    return document


def _examples(path: str) -> dict[str, Any]:
    examples: dict[str, Any] = _document()["paths"][path]["post"]["requestBody"]["content"]["application/json"][
        "examples"
    ]
    return examples


EXAMPLES = [
    pytest.param(path, example["value"], id=f"{path} {name}")
    for path in SCORING
    for name, example in _examples(path).items()
]


def test_committed_document_is_what_the_app_generates() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == openapi_document(), (
        "openapi/openapi.json is out of date: run `make openapi`"
    )


async def test_openapi_json_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")

    assert response.status_code == 200, response.text
    assert response.json() == json.loads(openapi_document())


@pytest.mark.parametrize("model", ["CrossEntropyRequest", "BinaryCrossEntropyRequest", "SequenceCrossEntropyRequest"])
def test_every_request_property_has_a_description(model: str) -> None:
    properties = _document()["components"]["schemas"][model]["properties"]

    undescribed = [name for name, schema in properties.items() if not schema.get("description")]

    assert properties
    assert undescribed == []


@pytest.mark.parametrize(
    ("path", "model"), [(p, m.__name__.replace("Response", "Request")) for p, m in SCORING.items()]
)
def test_scoring_request_bodies_point_at_their_schema_and_carry_examples(path: str, model: str) -> None:
    body = _document()["paths"][path]["post"]["requestBody"]

    assert body["required"] is True
    assert body["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{model}"}
    assert len(_examples(path)) >= 2


def test_the_first_cross_entropy_example_is_the_reference_example() -> None:
    first = next(iter(_examples("/v1/cross-entropy").values()))

    assert first["value"] == {"labels": [1], "predictions": [[0.228, 0.619, 0.153]]}
    assert "0.479650" in first["summary"]


def test_the_first_binary_example_is_the_binary_reference() -> None:
    first = next(iter(_examples("/v1/binary-cross-entropy").values()))

    assert first["value"] == {"labels": [0, 1, 1], "predictions": [0.1, 0.8, 0.6]}
    assert "0.279777" in first["summary"]


@pytest.mark.parametrize(("path", "body"), EXAMPLES)
async def test_every_request_example_scores(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> None:
    response = await client.post(path, json=body)

    assert response.status_code == 200, response.text
    SCORING[path].model_validate_json(response.content)


@pytest.mark.parametrize(
    ("path", "body", "mean"),
    [
        ("/v1/cross-entropy", {"labels": [1], "predictions": [[0.228, 0.619, 0.153]]}, 0.479650),
        ("/v1/cross-entropy", {"labels": [2], "predictions": [[1000, 0, -1000]], "prediction_type": "logits"}, 2000.0),
        ("/v1/binary-cross-entropy", {"labels": [0, 1, 1], "predictions": [0.1, 0.8, 0.6]}, 0.279777),
    ],
)
async def test_responses_fit_the_response_models_with_the_numbers_the_summaries_promise(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], mean: float
) -> None:
    response = await client.post(path, json=body)

    assert response.status_code == 200, response.text
    parsed = SCORING[path].model_validate_json(response.content)
    assert parsed.mean.cross_entropy is not None
    assert round(parsed.mean.cross_entropy, 6) == mean


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_documentation_pages_are_html(client: httpx.AsyncClient, page: str) -> None:
    response = await client.get(page)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "/openapi.json" in response.text


KEY_SECURITY = [{"HTTPBearer": []}, {"APIKeyHeader": []}]


@pytest.mark.parametrize("metrics_require_key", [False, True])
def test_every_keyed_operation_lists_both_schemes(metrics_require_key: bool) -> None:
    document = create_app(Settings(metrics_require_key=metrics_require_key)).openapi()

    secured = {
        (path, method): operation.get("security")
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }

    expected = {
        ("/v1/cross-entropy", "post"),
        ("/v1/binary-cross-entropy", "post"),
        ("/v1/cross-entropy/compare", "post"),
        ("/v1/binary-cross-entropy/compare", "post"),
        ("/v1/sequence-cross-entropy", "post"),
        ("/v1/sequence-cross-entropy/compare", "post"),
        ("/v1/merge", "post"),
    }
    if metrics_require_key:
        expected.add(("/metrics", "get"))
    assert {key for key, security in secured.items() if security is not None} == expected
    assert all(secured[key] == KEY_SECURITY for key in expected)
    assert list(document["components"]["securitySchemes"]) == ["HTTPBearer", "APIKeyHeader"]


# --- the documented contract is the served one (issue 12, item 13) -------------------------------

OPERATIONS = [(path, method) for path, operations in _document()["paths"].items() for method in operations]


def _operation(path: str, method: str) -> dict[str, Any]:
    operation: dict[str, Any] = _document()["paths"][path][method]
    return operation


def _media_types(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every media type object of the document with what holds it: request bodies and responses."""
    found = []
    for path, method in OPERATIONS:
        operation = document["paths"][path][method]
        for media_type, content in operation.get("requestBody", {}).get("content", {}).items():
            found.append((f"{method} {path} request {media_type}", content))
        for status, response in operation["responses"].items():
            for media_type, content in response.get("content", {}).items():
                found.append((f"{method} {path} {status} {media_type}", content))
    return found


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_every_error_response_is_documented_as_problem_json_only_with_examples(path: str, method: str) -> None:
    errors = {status: r for status, r in _operation(path, method)["responses"].items() if int(status) >= 400}

    assert {"400", "431", "500"} <= set(errors)  # refusals of the server layer, and the unexpected error
    for status, response in errors.items():
        assert list(response["content"]) == ["application/problem+json"], status
        content = response["content"]["application/problem+json"]
        assert content["schema"] == {"$ref": "#/components/schemas/Problem"}
        assert content["examples"], status
        assert {example["value"]["status"] for example in content["examples"].values()} == {int(status)}


def test_every_example_in_the_document_fits_its_schema() -> None:
    document = _document()
    checked = 0
    for where, content in _media_types(document):
        schema = content.get("schema", {})
        if "$ref" not in schema and "anyOf" not in schema:  # NPZ bodies and the metrics text carry no JSON example
            assert "example" not in content, where
            assert "examples" not in content, where
            continue
        validator = jsonschema.Draft202012Validator({**schema, "components": document["components"]})
        values = [content["example"]] if "example" in content else [e["value"] for e in content["examples"].values()]
        assert values, f"{where} has no example: Swagger UI would show placeholders"
        for value in values:
            validator.validate(value)
            checked += 1
    assert checked >= 40


@pytest.mark.parametrize(("path", "name"), [(p, n) for p in SCORING for n in _examples(p)])
async def test_every_scoring_answer_example_is_what_the_server_answers_to_its_request(
    client: httpx.AsyncClient, path: str, name: str
) -> None:
    response = await client.post(path, json=_examples(path)[name]["value"])

    assert response.status_code == 200, response.text
    answers = _operation(path, "post")["responses"]["200"]["content"]["application/json"]["examples"]
    assert response.json() == answers[name]["value"]
    assert answers[name]["summary"] == _examples(path)[name]["summary"]


@pytest.mark.parametrize(("path", "status"), [("/healthz", "ok"), ("/readyz", "ready")])
async def test_health_examples_are_what_the_server_answers(client: httpx.AsyncClient, path: str, status: str) -> None:
    response = await client.get(path)

    example = _operation(path, "get")["responses"]["200"]["content"]["application/json"]["example"]
    assert example == {"status": status}
    assert response.json() == example


@pytest.mark.parametrize("settings", [EXAMPLE_SETTINGS.model_copy()])
async def test_the_info_example_is_what_an_instance_with_its_settings_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/info")

    assert response.status_code == 200, response.text
    assert (
        response.json() == _operation("/v1/info", "get")["responses"]["200"]["content"]["application/json"]["example"]
    )


def test_each_operation_is_listed_once_under_one_tag() -> None:
    document = _document()

    tags = {(path, method): _operation(path, method).get("tags") for path, method in OPERATIONS}

    assert all(len(listed or []) == 1 for listed in tags.values()), tags
    assert tags[("/v1/info", "get")] == ["scoring"]
    assert [tag["name"] for tag in document["tags"]] == ["scoring", "operations"]


async def test_the_root_leads_to_the_docs(client: httpx.AsyncClient) -> None:
    response = await client.get("/")

    assert response.status_code == 307, response.text
    assert response.headers["location"] == "/docs"
    assert (await client.get("/", follow_redirects=True)).url.path == "/docs"


@pytest.mark.parametrize("path", list(SCORING))
def test_scoring_operations_take_no_query_parameters_but_the_npz_form_documents_its_own(path: str) -> None:
    operation = _operation(path, "post")
    npz = operation["requestBody"]["content"]["application/x-npz"]

    # A query parameter of the operation would hold with a JSON body too, where the server refuses it.
    assert "parameters" not in operation
    assert npz["x-query-parameters"]
    assert {parameter["in"] for parameter in npz["x-query-parameters"]} == {"query"}
    assert "| `unit` | `nats` or `bits` or `hartleys` | `nats` |" in operation["requestBody"]["description"]


@pytest.mark.parametrize("body", [b'"ignore_index": 1.0', b'"ignore_index": 1'])
async def test_ignore_index_is_a_json_schema_integer_so_1_0_counts(client: httpx.AsyncClient, body: bytes) -> None:
    content = b'{"labels": [1, 0], "predictions": [[0.228, 0.619, 0.153], [0.228, 0.619, 0.153]], ' + body + b"}"

    response = await client.post("/v1/cross-entropy", content=content, headers={"Content-Type": "application/json"})

    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["n_scored"], answer["settings"]["ignore_index"]) == (1, 1)
    assert answer["per_sample"]["cross_entropy"] == [None, 1.4784096500276962]  # −ln 0.228


@pytest.mark.parametrize("value", ["1.5", "true", '"1"'])
async def test_ignore_index_refuses_what_is_not_an_integer(client: httpx.AsyncClient, value: str) -> None:
    content = f'{{"labels": [1], "predictions": [[0.228, 0.619, 0.153]], "ignore_index": {value}}}'.encode()

    response = await client.post("/v1/cross-entropy", content=content, headers={"Content-Type": "application/json"})

    assert response.status_code == 422, response.text
    assert response.json()["detail"] == "ignore_index: Input should be a valid integer"


# --- every problem example is word for word what the service answers ------------------------------

REFERENCE_TEXT = b'{"labels": [1], "predictions": [[0.228, 0.619, 0.153]]}'


def _problem_example(kind: ProblemKind) -> dict[str, Any]:
    """The example of ``kind`` as the document shows it (under any operation that documents it)."""
    spec = kind.value
    for path, method in OPERATIONS:
        response = _operation(path, method)["responses"].get(str(spec.status), {})
        examples = response.get("content", {}).get("application/problem+json", {}).get("examples", {})
        if spec.slug in examples:
            value: dict[str, Any] = examples[spec.slug]["value"]
            return value
    raise AssertionError(f"{kind.name} is documented nowhere")


async def _asgi_post(app: FastAPI, headers: dict[str, str], events: list[dict[str, Any]]) -> dict[str, Any]:
    """POST to ``app`` with ``headers`` and then ``events`` as the request's messages (after them, nothing more
    arrives unless the last is a disconnect); the problem it answers."""
    sent: list[dict[str, Any]] = []
    pending = list(events)

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop(0)
        await asyncio.sleep(3600)  # a client that sends nothing more
        raise AssertionError("unreachable")  # pragma: no cover

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    path = "/v1/cross-entropy"
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http"}
    scope |= {"path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": raw}
    scope |= {"client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    async with app.router.lifespan_context(app):
        await app(scope, receive, send)
    problem: dict[str, Any] = json.loads(b"".join(m.get("body", b"") for m in sent if "body" in m))
    return problem


JSON_HEADERS = {"Content-Type": "application/json"}

#: A request that gets each kind's example answer, in process, with the default settings unless given.
PROVOKED = [
    (ProblemKind.MALFORMED_JSON, Settings(), JSON_HEADERS, REFERENCE_TEXT[:45]),
    (ProblemKind.MALFORMED_GZIP, Settings(), {**JSON_HEADERS, "Content-Encoding": "gzip"}, b"not gzip"),
    (ProblemKind.MALFORMED_NPZ, Settings(), {"Content-Type": "application/x-npz"}, REFERENCE_TEXT),
    (ProblemKind.UNAUTHORIZED, Settings(api_keys="a-key"), JSON_HEADERS, REFERENCE_TEXT),
    (ProblemKind.UNSUPPORTED_MEDIA_TYPE, Settings(), {"Content-Type": "text/plain"}, REFERENCE_TEXT),
    (ProblemKind.INVALID_INPUT, Settings(), JSON_HEADERS, REFERENCE_TEXT.replace(b"[1]", b"[3]")),
]


@pytest.mark.parametrize(("kind", "settings", "headers", "body"), [pytest.param(*p, id=p[0].name) for p in PROVOKED])
async def test_the_problem_example_of_each_kind_is_what_the_service_answers(
    client: httpx.AsyncClient, kind: ProblemKind, headers: dict[str, str], body: bytes
) -> None:
    response = await client.post("/v1/cross-entropy", content=body, headers=headers)

    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == _problem_example(kind)


async def test_the_too_large_example_is_the_answer_to_a_body_declared_past_the_default_limit() -> None:
    headers = {**JSON_HEADERS, "Content-Length": str(Settings().max_body_bytes + 1)}

    problem = await _asgi_post(create_app(Settings()), headers, [{"type": "http.request", "body": b"{"}])

    assert problem == _problem_example(ProblemKind.TOO_LARGE)


async def test_the_incomplete_body_example_is_the_answer_to_a_client_that_hung_up() -> None:
    headers = {**JSON_HEADERS, "Content-Length": str(len(REFERENCE_TEXT))}
    events = [{"type": "http.request", "body": REFERENCE_TEXT[:20], "more_body": True}, {"type": "http.disconnect"}]

    problem = await _asgi_post(create_app(Settings()), headers, events)

    assert problem == _problem_example(ProblemKind.INCOMPLETE_BODY)


async def test_the_timeout_example_is_the_answer_to_a_body_that_never_arrives() -> None:
    # The example is for the default 60 s; the same words come after 0.2 s with XENT_BODY_TIMEOUT_SECONDS=0.2.
    app = create_app(Settings(body_timeout_seconds=0.2))
    headers = {**JSON_HEADERS, "Content-Length": str(len(REFERENCE_TEXT))}

    problem = await _asgi_post(app, headers, [{"type": "http.request", "body": b"{", "more_body": True}])

    expected = _problem_example(ProblemKind.TIMEOUT)
    assert problem == {**expected, "detail": expected["detail"].replace("within 60 seconds", "within 0.2 seconds")}


async def test_the_overloaded_example_is_the_answer_when_every_scoring_slot_is_busy(app: FastAPI) -> None:
    async with started_client(app) as client:
        app.state.xent.scoring_slots.busy = Settings().max_concurrent_scoring
        response = await client.post("/v1/cross-entropy", content=REFERENCE_TEXT, headers=JSON_HEADERS)

    assert response.status_code == 503, response.text
    assert response.json() == _problem_example(ProblemKind.OVERLOADED)


async def test_the_not_ready_example_is_the_answer_before_start_up(unstarted_client: httpx.AsyncClient) -> None:
    response = await unstarted_client.get("/readyz")

    assert response.json() == _problem_example(ProblemKind.NOT_READY)


async def test_the_internal_example_is_the_answer_to_an_unexpected_error(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("service.api.scoring.score_multiclass", broken)

    response = await client.post("/v1/cross-entropy", content=REFERENCE_TEXT, headers=JSON_HEADERS)

    assert response.status_code == 500
    assert response.json() == _problem_example(ProblemKind.INTERNAL)


def test_every_documented_kind_has_a_test_that_provokes_its_example() -> None:
    provoked = {kind for kind, *_ in PROVOKED}
    provoked |= {ProblemKind.TOO_LARGE, ProblemKind.INCOMPLETE_BODY, ProblemKind.TIMEOUT, ProblemKind.OVERLOADED}
    provoked |= {ProblemKind.NOT_READY, ProblemKind.INTERNAL, ProblemKind.HEADERS_TOO_LARGE}
    # The server layer's, on a real socket: tests/hostile/test_header_limits.py.
    provoked |= {ProblemKind.MALFORMED_REQUEST}

    assert {kind for kind in ProblemKind if kind.value.description} == provoked
