"""How the scoring operations are documented: their request bodies (JSON, or NPZ with options in the query),
their answers (computed examples, the NPZ form) and the problems they can answer with.

``service.api.scoring`` passes these to FastAPI when it adds a route; nothing here runs per request.
"""

from collections.abc import Callable
from typing import Any

import orjson
from fastapi import Response
from pydantic import BaseModel

from service.api.problems import ProblemKind, problem_responses
from service.api.transport import JSON_MEDIA_TYPE, NPZ_MEDIA_TYPE, Answer


def openapi_extra(model: type[BaseModel], examples: dict[str, dict[str, object]]) -> dict[str, Any]:
    """OpenAPI for a route that reads its body itself: JSON or NPZ in, the NPZ form's query options beside it.

    OpenAPI has one operation per path and method, and its parameters hold for every media type of
    the body; but the options of an NPZ body come in the query, and a JSON body carries its own (the
    query beside one is refused). Listing them as the operation's parameters would promise them
    with JSON too (Swagger UI filled them in; schemathesis found the promise broken), so they are
    documented under the NPZ media type alone: as Parameter Objects in ``x-query-parameters``, for
    tools, and as a table in the request body's description, which Swagger UI and ReDoc show above
    the body.
    """
    members: frozenset[str] = getattr(model, "array_fields", frozenset())
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    properties, required = schema["properties"], set(schema.get("required", ()))
    query = [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": schema.get("description", ""),
            "schema": {key: value for key, value in schema.items() if key not in ("description", "title")},
        }
        for name, schema in properties.items()
        if name not in members and "$ref" not in schema  # an object (a comparison's side) is no query parameter
    ]
    npz = (
        "A NumPy `.npz` archive (`np.savez` or `np.savez_compressed`) with members "
        + ", ".join(f"`{m}`" + (" (required)" if m in required else "") for m in sorted(members))
        + ". Integer labels of any dtype, float32 or float64 predictions; pickled objects are refused. "
        "The other options (and a single-number `pos_weight`) come as query parameters."
    )
    rows = "\n".join(_query_row(parameter) for parameter in query)
    description = (
        f"**`{JSON_MEDIA_TYPE}`**: the request, options included, as one JSON object (below); "
        "no query parameters.\n\n"
        f"**`{NPZ_MEDIA_TYPE}`**: {npz} For example `POST ...?unit=bits&per_sample=false`:\n\n"
        f"| Query parameter | Type | Default | Description |\n|---|---|---|---|\n{rows}"
    )
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {
                JSON_MEDIA_TYPE: {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}, "examples": examples},
                NPZ_MEDIA_TYPE: {
                    "schema": {"type": "string", "format": "binary", "description": npz},
                    "x-query-parameters": query,
                },
            },
        },
    }


def json_body(model: type[BaseModel], examples: dict[str, dict[str, object]]) -> dict[str, Any]:
    """OpenAPI for a route that reads a JSON body alone (``POST /v1/merge``)."""
    content = {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}, "examples": examples}
    return {"requestBody": {"required": True, "content": {JSON_MEDIA_TYPE: content}}}


def _query_row(parameter: dict[str, Any]) -> str:
    """A query parameter as a row of a Markdown table: name, type (or choices), default, description."""
    schema = parameter["schema"]
    kinds = []
    for branch in schema.get("anyOf", [schema]):
        if "enum" in branch or "const" in branch:
            kinds.append(" or ".join(f"`{choice}`" for choice in branch.get("enum", [branch.get("const")])))
        elif branch.get("type") != "null":  # an option left out of the query is its default
            kinds.append(branch["type"])
    value = schema.get("default")
    default = "none" if value is None else f"`{value if isinstance(value, str) else orjson.dumps(value).decode()}`"
    cells = [f"`{parameter['name']}`", " or ".join(kinds), default, parameter["description"]]
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


#: The per-sample arrays of an NPZ answer: a scoring answer's, and a comparison's.
SCORE_ARRAYS = "float64 `cross_entropy`, `kl_divergence`, `entropy`"
DIFFERENCE_ARRAYS = "float64 `difference` (the per-sample CE differences, model − baseline)"
#: What an NPZ answer of either adds with ``gradient`` true.
_GRADIENT_MEMBER = (
    " With `gradient` true it also holds float64 `gradient`: ∂ℓᵢ/∂xᵢ, shaped like `predictions`, 0 on ignored rows "
    "(on `/compare`, the model's)."
)


def _npz_response(arrays: str) -> dict[str, Any]:
    """The NPZ form of a 200 answer holding ``arrays`` (in words)."""
    description = (
        f"With `Accept: application/x-npz`: an `.npz` holding {arrays} (NaN on ignored rows) and boolean `scored` "
        "arrays (when `per_sample` is true), and `summary`, the JSON answer (with `per_sample` null) as a 0-d string "
        'array: `json.loads(str(np.load(f)["summary"]))`.'
    )
    if arrays in (SCORE_ARRAYS, DIFFERENCE_ARRAYS):
        description += _GRADIENT_MEMBER
    return {NPZ_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary", "description": description}}}


_ERRORS = problem_responses(
    ProblemKind.MALFORMED_JSON,
    ProblemKind.MALFORMED_NPZ,
    ProblemKind.MALFORMED_GZIP,
    ProblemKind.INCOMPLETE_BODY,
    ProblemKind.UNAUTHORIZED,
    ProblemKind.TIMEOUT,
    ProblemKind.TOO_LARGE,
    ProblemKind.UNSUPPORTED_MEDIA_TYPE,
    ProblemKind.INVALID_INPUT,
    ProblemKind.OVERLOADED,
)


def _answers(
    model: type[BaseModel], handler: Callable[[Any, Answer], Response], examples: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """The 200 examples: the answer to each request example, as ``handler`` gives it (computed, never copied)."""
    answers = {}
    for name, example in examples.items():
        response = handler(model.model_validate_json(orjson.dumps(example["value"])), Answer())
        answers[name] = {"summary": example["summary"], "value": orjson.loads(bytes(response.body))}
    return answers


def scoring_responses(
    model: type[BaseModel],
    handler: Callable[[Any, Answer], Response],
    examples: dict[str, dict[str, Any]],
    npz_arrays: str | None = SCORE_ARRAYS,
) -> dict[int | str, dict[str, Any]]:
    """The documented answers of a scoring operation: 200 (JSON with computed examples, or NPZ) and its problems.

    ``npz_arrays`` None: the operation takes and gives JSON alone (``POST /v1/merge``).
    """
    npz = {} if npz_arrays is None else _npz_response(npz_arrays)
    content = {JSON_MEDIA_TYPE: {"examples": _answers(model, handler, examples)}, **npz}
    return {
        200: {"content": content},
        **_ERRORS,
    }
