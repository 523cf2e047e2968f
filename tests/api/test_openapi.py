"""The OpenAPI document: committed copy up to date, every field described, every example scores."""

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.api.app import create_app
from service.api.schemas import BinaryCrossEntropyResponse, CrossEntropyResponse
from service.cli import openapi_document
from service.settings import Settings

pytestmark = pytest.mark.anyio

COMMITTED = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"
SCORING = {"/v1/cross-entropy": CrossEntropyResponse, "/v1/binary-cross-entropy": BinaryCrossEntropyResponse}


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


@pytest.mark.parametrize("model", ["CrossEntropyRequest", "BinaryCrossEntropyRequest"])
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

    expected = {("/v1/cross-entropy", "post"), ("/v1/binary-cross-entropy", "post")}
    if metrics_require_key:
        expected.add(("/metrics", "get"))
    assert {key for key, security in secured.items() if security is not None} == expected
    assert all(secured[key] == KEY_SECURITY for key in expected)
    assert list(document["components"]["securitySchemes"]) == ["HTTPBearer", "APIKeyHeader"]
