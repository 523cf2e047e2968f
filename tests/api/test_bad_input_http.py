"""Bad requests: each gets its status and a problem+json body naming the field, row and column."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from service.settings import Settings

pytestmark = pytest.mark.anyio

CE = "/v1/cross-entropy"
BCE = "/v1/binary-cross-entropy"
PROBLEM = "application/problem+json"
REFERENCE = '{"labels":[1],"predictions":[[0.228,0.619,0.153]]}'
CE_FIELDS = (
    "predictions, labels, prediction_type, classes, label_smoothing, class_weights, sample_weights, ignore_index, "
    "epsilon, normalization, tolerance, unit, per_sample"
)
BCE_FIELDS = (
    "predictions, labels, prediction_type, pos_weight, label_smoothing, sample_weights, epsilon, unit, per_sample"
)
OUTSIDE = 'is outside [0, 1] (for scores, set prediction_type to "logits")'


def invalid(where: str, loc: list[Any], msg: str, kind: str) -> dict[str, Any]:
    """The whole 422 answer for one error at ``loc``; ``where`` is how the detail names it."""
    return {
        "type": "urn:xent:problem:invalid-input",
        "title": "Invalid input",
        "status": 422,
        "detail": f"{where}: {msg}",
        "errors": [{"loc": ["body", *loc], "msg": msg, "type": kind}],
    }


def problem(status: int, slug: str, title: str, detail: str) -> dict[str, Any]:
    return {"type": f"urn:xent:problem:{slug}", "title": title, "status": status, "detail": detail}


INVALID = [
    pytest.param(
        CE,
        '{"labels":[0,1],"predictions":[[0.5,0.5],[0.2,0.3,0.5]]}',
        invalid(
            "predictions row 1",
            ["predictions", 1],
            "row has 3 values but row 0 has 2; every row needs the same length",
            "bad_shape",
        ),
        id="ragged prediction rows",
    ),
    pytest.param(
        BCE,
        '{"labels":[[1,0],[1]],"predictions":[[0.5,0.5],[0.5,0.5]]}',
        invalid(
            "labels row 1",
            ["labels", 1],
            "row has 1 values but row 0 has 2; every row needs the same length",
            "bad_shape",
        ),
        id="ragged binary label rows",
    ),
    pytest.param(
        CE,
        '{"labels":[0],"predictions":[[0.5,0.5],[0.2,0.8]]}',
        invalid("labels", ["labels"], "has 1 entries but predictions have 2 rows", "bad_shape"),
        id="fewer labels than prediction rows",
    ),
    pytest.param(
        BCE,
        '{"labels":[1,0],"predictions":[0.5]}',
        invalid("labels", ["labels"], "has shape (2,) but predictions have shape (1,)", "bad_shape"),
        id="binary labels and predictions of different shapes",
    ),
    pytest.param(
        CE,
        '{"labels":[0,1],"predictions":[[0.5,0.5],[0.2,0.8]],"sample_weights":[1]}',
        invalid("sample_weights", ["sample_weights"], "has 1 values but there are 2 rows", "bad_shape"),
        id="sample_weights length",
    ),
    pytest.param(
        CE,
        '{"labels":[0,1],"predictions":[[0.5,0.5],[0.2,0.8]],"class_weights":[1,2,3]}',
        invalid("class_weights", ["class_weights"], "has 3 values but there are 2 classes", "bad_shape"),
        id="class_weights length",
    ),
    pytest.param(
        CE,
        '{"labels":["a"],"predictions":[[0.5,0.5]],"classes":["a","b","c"]}',
        invalid("classes", ["classes"], "has 3 names but predictions have 2 columns", "bad_shape"),
        id="classes length",
    ),
    pytest.param(
        BCE,
        '{"labels":[[1,0]],"predictions":[[0.5,0.5]],"pos_weight":[1,2,3]}',
        invalid("pos_weight", ["pos_weight"], "has 3 values but there are 2 labels per sample", "bad_shape"),
        id="pos_weight length",
    ),
    pytest.param(
        CE,
        '{"labels":[0],"predictions":[[1.0]]}',
        invalid(
            "predictions",
            ["predictions"],
            "each row needs at least 2 classes (columns), got 1; for one probability per sample use binary "
            "cross-entropy",
            "bad_shape",
        ),
        id="one class",
    ),
    pytest.param(
        CE,
        '{"labels":[0],"predictions":[[NaN,0.5]]}',
        invalid(
            "predictions row 0, column 0",
            ["predictions", 0, 0],
            "NaN is not allowed; every number must be finite",
            "not_finite",
        ),
        id="NaN token",
    ),
    pytest.param(
        CE,
        '{"labels":[0],"predictions":[[0.5,Infinity]]}',
        invalid(
            "predictions row 0, column 1",
            ["predictions", 0, 1],
            "Infinity is not allowed; every number must be finite",
            "not_finite",
        ),
        id="Infinity token",
    ),
    pytest.param(
        CE,
        '{"labels":[0,0],"predictions":[[0.5,0.5],[-Infinity,0.5]]}',
        invalid(
            "predictions row 1, column 0",
            ["predictions", 1, 0],
            "-Infinity is not allowed; every number must be finite",
            "not_finite",
        ),
        id="-Infinity token",
    ),
    pytest.param(
        CE,
        '{"labels":[0,0],"predictions":[[0.5,0.5],[0.5,1e999]]}',
        invalid(
            "predictions row 1, column 1",
            ["predictions", 1, 1],
            "Infinity is not allowed; every number must be finite",
            "not_finite",
        ),
        id="1e999 overflows",
    ),
    pytest.param(
        CE,
        '{"labels":[0,0],"predictions":[[0.5,0.5],[0.5,0.5]],"sample_weights":[1,NaN]}',
        invalid(
            "sample_weights row 1",
            ["sample_weights", 1],
            "NaN is not allowed; every number must be finite",
            "not_finite",
        ),
        id="NaN weight",
    ),
    pytest.param(
        CE,
        '{"labels":[0,0],"predictions":[[0.5,0.5],[0.5,1.5]]}',
        invalid("predictions row 1, column 1", ["predictions", 1, 1], f"probability 1.5 {OUTSIDE}", "out_of_range"),
        id="probability above 1",
    ),
    pytest.param(
        CE,
        '{"labels":[0,0],"predictions":[[0.5,0.5],[-0.1,1.1]],"normalization":"renormalize"}',
        invalid("predictions row 1, column 0", ["predictions", 1, 0], f"probability -0.1 {OUTSIDE}", "out_of_range"),
        id="negative probability",
    ),
    pytest.param(
        BCE,
        '{"labels":[1,0],"predictions":[0.5,1.5]}',
        invalid("predictions row 1", ["predictions", 1], f"probability 1.5 {OUTSIDE}", "out_of_range"),
        id="binary probability above 1 in an N-vector",
    ),
    pytest.param(
        BCE,
        '{"labels":[1,2],"predictions":[0.5,0.5]}',
        invalid("labels row 1", ["labels", 1], "label 2.0 is outside [0, 1]", "out_of_range"),
        id="binary label above 1 in an N-vector",
    ),
    pytest.param(
        BCE,
        '{"labels":[[1,0],[0,1]],"predictions":[[0.5,0.5],[0.5,-0.5]]}',
        invalid("predictions row 1, column 1", ["predictions", 1, 1], f"probability -0.5 {OUTSIDE}", "out_of_range"),
        id="binary probability below 0 in an NxK matrix",
    ),
    pytest.param(
        CE,
        '{"labels":[0,0],"predictions":[[0.5,0.5],[0.5,0.5]],"sample_weights":[1,-2]}',
        invalid(
            "sample_weights row 1",
            ["sample_weights", 1],
            "weight -2.0 is negative; weights must be >= 0",
            "out_of_range",
        ),
        id="negative sample weight",
    ),
    pytest.param(
        CE,
        '{"labels":[0,0],"predictions":[[0.5,0.5],[0.5,0.5]],"class_weights":[1,-2]}',
        invalid(
            "class_weights row 1", ["class_weights", 1], "weight -2.0 is negative; weights must be >= 0", "out_of_range"
        ),
        id="negative class weight",
    ),
    pytest.param(
        BCE,
        '{"labels":[1],"predictions":[0.5],"pos_weight":-1}',
        invalid("pos_weight row 0", ["pos_weight", 0], "weight -1.0 is negative; weights must be >= 0", "out_of_range"),
        id="negative pos_weight",
    ),
    pytest.param(
        CE,
        '{"labels":[[1.5,-0.5]],"predictions":[[0.5,0.5]]}',
        invalid("labels row 0, column 1", ["labels", 0, 1], "target probability -0.5 is negative", "out_of_range"),
        id="negative target probability",
    ),
    pytest.param(
        CE,
        '{"labels":[[0.5,0.6]],"predictions":[[0.5,0.5]]}',
        invalid(
            "labels row 0",
            ["labels", 0],
            'target row sums to 1.1, not 1 within tolerance 0.001 (1 rows are off); set normalization to "renormalize" '
            "to rescale targets",
            "rows_not_normalized",
        ),
        id="target row off 1",
    ),
    pytest.param(
        CE,
        '{"labels":[0,2],"predictions":[[0.5,0.5],[0.5,0.5]]}',
        invalid("labels row 1", ["labels", 1], "class index 2 is out of range [0, 2)", "unknown_class"),
        id="label C",
    ),
    pytest.param(
        CE,
        '{"labels":[0,-1],"predictions":[[0.5,0.5],[0.5,0.5]]}',
        invalid("labels row 1", ["labels", 1], "class index -1 is out of range [0, 2)", "unknown_class"),
        id="label -1",
    ),
    pytest.param(
        CE,
        '{"labels":[0,-1],"predictions":[[0.5,0.5],[0.5,0.5]],"ignore_index":-100}',
        invalid(
            "labels row 1",
            ["labels", 1],
            "class index -1 is out of range [0, 2) (ignore_index is -100)",
            "unknown_class",
        ),
        id="label -1 beside ignore_index",
    ),
    pytest.param(
        CE,
        '{"labels":["a","z"],"predictions":[[0.5,0.5],[0.5,0.5]],"classes":["a","b"]}',
        invalid("labels row 1", ["labels", 1], "unknown class 'z'; classes are ['a', 'b']", "unknown_class"),
        id="unknown class name",
    ),
    pytest.param(
        CE,
        '{"labels":["a"],"predictions":[[0.5,0.5]]}',
        invalid(
            "classes",
            ["classes"],
            "is required when labels are class names (it gives the column of each name)",
            "invalid_input",
        ),
        id="class names without classes",
    ),
    pytest.param(
        CE,
        '{"labels":["a","b"],"predictions":[[0.5,0.5],[0.5,0.5]],"classes":["a","a"]}',
        invalid("classes row 1", ["classes", 1], "duplicate class name 'a' (also at position 0)", "invalid_input"),
        id="duplicate class names",
    ),
    pytest.param(
        CE,
        '{"labels":["a","b"],"predictions":[[0.5,0.5],[0.5,0.5]],"classes":["a","b"],"ignore_index":-100}',
        invalid(
            "ignore_index",
            ["ignore_index"],
            "applies only to class-index labels, not to class names",
            "invalid_option",
        ),
        id="ignore_index with class names",
    ),
    pytest.param(
        CE,
        '{"labels":[[1,0],[0,1]],"predictions":[[0.5,0.5],[0.5,0.5]],"ignore_index":-100}',
        invalid(
            "ignore_index",
            ["ignore_index"],
            "applies only to class-index labels, not to probability rows",
            "invalid_option",
        ),
        id="ignore_index with distributions",
    ),
    pytest.param(
        CE,
        '{"labels":[0],"predictions":[[0.5,0.5]],"label_smoothing":1.5}',
        invalid("label_smoothing", ["label_smoothing"], "Input should be less than or equal to 1", "less_than_equal"),
        id="label_smoothing above 1",
    ),
    pytest.param(
        BCE,
        '{"labels":[1],"predictions":[0.5],"label_smoothing":-0.1}',
        invalid(
            "label_smoothing", ["label_smoothing"], "Input should be greater than or equal to 0", "greater_than_equal"
        ),
        id="label_smoothing below 0",
    ),
    pytest.param(
        CE,
        '{"labels":[0],"predictions":[[0.5,0.5]],"epsilon":0.5}',
        invalid("epsilon", ["epsilon"], 'must be "auto" or a number in [0, 0.5)', "epsilon"),
        id="epsilon 0.5",
    ),
    pytest.param(
        CE,
        '{"labels":[0],"predictions":[[0.5,0.5]],"label_smothing":0.1}',
        invalid(
            "label_smothing",
            ["label_smothing"],
            f"unknown field 'label_smothing'; did you mean 'label_smoothing'? (fields: {CE_FIELDS})",
            "extra_forbidden",
        ),
        id="misspelt label_smoothing",
    ),
    pytest.param(
        BCE,
        '{"labels":[1],"predictions":[0.5],"pos_weights":2}',
        invalid(
            "pos_weights",
            ["pos_weights"],
            f"unknown field 'pos_weights'; did you mean 'pos_weight'? (fields: {BCE_FIELDS})",
            "extra_forbidden",
        ),
        id="misspelt pos_weight",
    ),
    pytest.param(
        CE,
        '{"labels":[0],"predictions":[[true,0.5]]}',
        invalid("predictions row 0, column 0", ["predictions", 0, 0], "expected a number, got true", "not_a_number"),
        id="boolean prediction",
    ),
    pytest.param(
        BCE,
        '{"labels":[1],"predictions":[false]}',
        invalid("predictions row 0", ["predictions", 0], "expected a number, got false", "not_a_number"),
        id="boolean binary prediction",
    ),
    pytest.param(
        CE,
        '{"labels":[true],"predictions":[[0.5,0.5]]}',
        invalid(
            "labels row 0",
            ["labels", 0],
            "expected a class index, a class name or a row of probabilities, got true",
            "invalid_input",
        ),
        id="boolean label",
    ),
    pytest.param(
        CE,
        '{"labels":[0,false],"predictions":[[0.5,0.5],[0.5,0.5]]}',
        invalid(
            "labels row 1",
            ["labels", 1],
            "expected a class index like row 0, got false; all labels must be of one kind",
            "invalid_input",
        ),
        id="boolean label after an index",
    ),
    pytest.param(
        CE,
        '{"labels":[0],"predictions":[[0.5,0.5]],"label_smoothing":true}',
        invalid("label_smoothing", ["label_smoothing"], "Input should be a valid number", "float_type"),
        id="boolean label_smoothing",
    ),
    pytest.param(
        CE,
        '{"labels":[0],"predictions":[[0.5,0.5]],"ignore_index":true}',
        invalid("ignore_index", ["ignore_index"], "Input should be a valid integer", "int_type"),
        id="boolean ignore_index",
    ),
    pytest.param(
        BCE,
        '{"labels":[1],"predictions":[0.5],"pos_weight":true}',
        invalid("pos_weight", ["pos_weight"], "expected a number or an array of numbers, got true", "not_a_number"),
        id="boolean pos_weight",
    ),
    pytest.param(
        CE,
        '{"labels":[0],"predictions":[[0.5,"0.5"]]}',
        invalid(
            "predictions row 0, column 1",
            ["predictions", 0, 1],
            "expected a number, got the string '0.5'",
            "not_a_number",
        ),
        id="string prediction",
    ),
    pytest.param(
        CE,
        '{"labels":[0],"predictions":[[0.5,0.5]],"label_smoothing":"0.1"}',
        invalid("label_smoothing", ["label_smoothing"], "Input should be a valid number", "float_type"),
        id="string label_smoothing",
    ),
    pytest.param(
        CE,
        '{"labels":[0],"predictions":[[0.5,0.5]],"unit":"bit"}',
        invalid("unit", ["unit"], "Input should be 'nats', 'bits' or 'hartleys'", "literal_error"),
        id="unknown unit",
    ),
    pytest.param(
        BCE,
        '{"labels":[1],"predictions":[0.5],"prediction_type":"log_probabilities"}',
        invalid("prediction_type", ["prediction_type"], "Input should be 'probabilities' or 'logits'", "literal_error"),
        id="binary log-probabilities",
    ),
    pytest.param(
        CE,
        '{"labels":[0],"predictions":[0.5,0.5]}',
        invalid(
            "predictions",
            ["predictions"],
            "expected N rows of C >= 2 numbers, got a flat array of numbers; for one probability per sample use "
            "binary cross-entropy",
            "bad_shape",
        ),
        id="flat predictions",
    ),
]


@pytest.mark.parametrize(("path", "body", "expected"), INVALID)
async def test_invalid_input_is_a_422_problem_naming_field_row_and_column(
    post_raw: Any, path: str, body: str, expected: dict[str, Any]
) -> None:
    response = await post_raw(path, body)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json() == expected


async def test_missing_fields_are_listed_together(post_raw: Any) -> None:
    response = await post_raw(CE, "{}")

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json() == {
        "type": "urn:xent:problem:invalid-input",
        "title": "Invalid input",
        "status": 422,
        "detail": "predictions: Field required (and 1 more)",
        "errors": [
            {"loc": ["body", "predictions"], "msg": "Field required", "type": "missing"},
            {"loc": ["body", "labels"], "msg": "Field required", "type": "missing"},
        ],
    }


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        pytest.param(
            '{"labels":[0],"predictions":[[0.5,0.5]',
            "the body is not valid JSON: EOF while parsing a list at line 1 column 38",
            id="truncated",
        ),
        pytest.param(
            '{"labels":[0],,}',
            "the body is not valid JSON: key must be a string at line 1 column 15",
            id="malformed",
        ),
        pytest.param("", "the body is empty", id="empty"),
        pytest.param("  \n", "the body is empty", id="whitespace only"),
    ],
)
async def test_a_body_that_is_not_json_is_a_400(post_raw: Any, body: str, detail: str) -> None:
    response = await post_raw(CE, body)

    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json() == problem(400, "malformed-json", "Malformed JSON", detail)


@pytest.mark.parametrize("body", ["[1, 2]", '"labels"', "null"])
async def test_json_that_is_not_an_object_is_a_422(post_raw: Any, body: str) -> None:
    response = await post_raw(BCE, body)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json() == problem(
        422, "invalid-input", "Invalid input", "the body must be a JSON object with the request's fields"
    )


@pytest.mark.parametrize(
    ("content_type", "got"),
    [
        ("text/plain", "got 'text/plain'"),
        ("application/x-www-form-urlencoded", "got 'application/x-www-form-urlencoded'"),
        (None, "no Content-Type was sent"),
    ],
)
async def test_a_body_that_is_not_declared_json_is_a_415(post_raw: Any, content_type: str | None, got: str) -> None:
    response = await post_raw(CE, REFERENCE, content_type=content_type)

    assert response.status_code == 415, response.text
    assert response.headers["content-type"] == PROBLEM
    answer = response.json()
    # The hint lists every accepted media type (a list that grows); the rest is fixed.
    assert answer == problem(415, "unsupported-media-type", "Unsupported media type", answer["detail"])
    assert "Content-Type: application/json" in answer["detail"]
    assert answer["detail"].endswith(f"; {got}")


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "APPLICATION/JSON", "application/x+json"])
async def test_json_media_types_with_parameters_or_suffixes_are_accepted(post_raw: Any, content_type: str) -> None:
    response = await post_raw(CE, REFERENCE, content_type=content_type)

    assert response.status_code == 200, response.text
    assert response.json()["mean"]["cross_entropy"] == pytest.approx(0.47965000629754095, abs=1e-9)


TOO_LARGE = problem(
    413,
    "too-large",
    "Payload too large",
    "the request body is larger than the limit of 1024 bytes (XENT_MAX_BODY_BYTES)",
)
SMALL = pytest.mark.parametrize("settings", [Settings(max_body_bytes=1024)])


@SMALL
async def test_a_body_over_the_limit_with_a_content_length_is_a_413(post_raw: Any) -> None:
    body = REFERENCE[:-1] + ',"tolerance":0.001' + " " * 1024 + "}"

    response = await post_raw(CE, body)

    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json() == TOO_LARGE


@SMALL
async def test_a_streamed_body_over_the_limit_without_a_content_length_is_a_413(client: httpx.AsyncClient) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(100):
            sent += 1
            yield b" " * 256

    response = await client.post(BCE, content=chunks(), headers={"Content-Type": "application/json"})

    assert "content-length" not in response.request.headers
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json() == TOO_LARGE


@SMALL
async def test_a_body_at_the_limit_is_read(post_raw: Any) -> None:
    body = REFERENCE + " " * (1024 - len(REFERENCE))

    response = await post_raw(CE, body)

    assert len(body) == 1024
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", [CE, BCE])
async def test_get_on_a_scoring_route_is_a_405_problem(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)

    assert response.status_code == 405, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["allow"] == "POST"
    assert response.json() == problem(405, "method-not-allowed", "Method not allowed", "Method Not Allowed")


async def test_an_unknown_path_is_a_404_problem(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/cross_entropy", json={})

    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json() == problem(404, "not-found", "Not found", "Not Found")


async def test_the_app_still_scores_the_reference_example_exactly_after_bad_requests(
    client: httpx.AsyncClient, post_raw: Any
) -> None:
    for param in INVALID:
        path, body, _ = param.values
        assert (await post_raw(path, body)).status_code == 422
    assert (await post_raw(CE, "{")).status_code == 400
    assert (await post_raw(CE, REFERENCE, content_type="text/plain")).status_code == 415
    assert (await client.get(CE)).status_code == 405

    response = await post_raw(CE, REFERENCE)

    assert response.status_code == 200, response.text
    result = response.json()
    assert result["mean"] == {
        "cross_entropy": pytest.approx(0.47965000629754095, abs=1e-9),
        "kl_divergence": pytest.approx(0.47965000629754095, abs=1e-9),
        "entropy": 0.0,
        "perplexity": pytest.approx(1 / 0.619, abs=1e-9),
        "accuracy": 1.0,
    }
    assert result["warnings"] == []
