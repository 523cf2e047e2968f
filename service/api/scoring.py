"""Scoring routes: read the body, then decode → score → encode (in a worker thread unless the body is small)."""

import inspect
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Request, Response, params
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from service.api.examples import BINARY_EXAMPLES, CROSS_ENTROPY_EXAMPLES
from service.api.operations.memory import give_back_free_memory
from service.api.policy.auth import check_api_key, require_api_key
from service.api.problems import problem_responses
from service.api.schemas import (
    BinaryCrossEntropyRequest,
    BinaryCrossEntropyResponse,
    CrossEntropyRequest,
    CrossEntropyResponse,
)
from service.api.state import ServiceState, service_state
from service.api.transport import (
    JSON_MEDIA_TYPE,
    NPZ_MEDIA_TYPE,
    WATCHERS,
    Answer,
    Body,
    decode,
    encode,
    read_body,
)
from service.core import score_binary, score_multiclass

RequestModel = TypeVar("RequestModel", bound=BaseModel)

Endpoint = Callable[[Request], Awaitable[Response]]


class KeyedRoute(APIRoute):
    """A route that needs the API key: documented by FastAPI like any other, run as a plain Starlette endpoint.

    The endpoint takes the ``Request`` alone and returns a ``Response``, so there is nothing for
    FastAPI to solve per request (no dependency tree, no parameters, no thread hop for a sync
    dependency): the handler checks the key with a plain call, then awaits the endpoint.
    ``Depends(require_api_key)`` is declared on the route only for the OpenAPI document, which
    lists both key schemes on the operation from it; any other dependency is refused here, since
    it would be documented but never run.
    """

    def __init__(
        self,
        path: str,
        endpoint: Callable[..., Any],
        *,
        dependencies: Sequence[params.Depends] | None = None,
        **kwargs: Any,
    ) -> None:
        unsupported = [d.dependency for d in dependencies or () if d.dependency is not require_api_key]
        if unsupported:
            raise TypeError(f"{path}: a KeyedRoute runs no dependencies, so it cannot take {unsupported}")
        parameters = list(inspect.signature(endpoint).parameters.values())
        if [parameter.annotation for parameter in parameters] != [Request]:
            raise TypeError(f"{path}: a KeyedRoute endpoint takes the Request alone, not {parameters}")
        super().__init__(path, endpoint, dependencies=[Depends(require_api_key)], **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint: Endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            check_api_key(service_state(request).api_keys, request.scope["headers"])
            return await endpoint(request)

        return handler


#: The scoring routes. ``create_app`` puts them on the app's own router (not ``include_router``), so a
#: request is matched against each route once, not against the included router and then again inside it.
#: Hence the 500 here: what ``include_router(..., responses=...)`` adds to the other routers' operations.
router = APIRouter(prefix="/v1", tags=["scoring"], route_class=KeyedRoute, responses=problem_responses(500))


def openapi_extra(model: type[BaseModel], examples: dict[str, dict[str, object]]) -> dict[str, Any]:
    """OpenAPI for a route that reads its body itself: JSON or NPZ in, JSON or NPZ out, options in the query for NPZ."""
    members: frozenset[str] = getattr(model, "array_fields", frozenset())
    properties = model.model_json_schema(ref_template="#/components/schemas/{model}")["properties"]
    required = {"predictions", "labels"}
    npz = (
        "A NumPy `.npz` archive (`np.savez` or `np.savez_compressed`) with members "
        + ", ".join(f"`{m}`" + (" (required)" if m in required else "") for m in sorted(members))
        + ". Integer labels of any dtype, float32 or float64 predictions; pickled objects are refused. "
        "The other options (and a single-number `pos_weight`) come as query parameters."
    )
    parameters = [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": f"Only with an `application/x-npz` body: {schema.get('description', '')}",
            # No `default` here: Swagger UI would pre-fill it into every JSON "Try it out", and the
            # server refuses query options beside a JSON body. The description names the default.
            "schema": {key: value for key, value in schema.items() if key not in ("description", "title", "default")},
        }
        for name, schema in properties.items()
        if name not in members
    ]
    return {
        "parameters": parameters,
        "requestBody": {
            "required": True,
            "content": {
                JSON_MEDIA_TYPE: {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}, "examples": examples},
                NPZ_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary", "description": npz}},
            },
        },
    }


NPZ_RESPONSE = {
    NPZ_MEDIA_TYPE: {
        "schema": {
            "type": "string",
            "format": "binary",
            "description": (
                "With `Accept: application/x-npz`: an `.npz` holding float64 `cross_entropy`, `kl_divergence`, "
                "`entropy` (NaN on ignored rows) and boolean `scored` arrays, and `summary`, the JSON answer "
                '(with `per_sample` null) as a 0-d string array: `json.loads(str(np.load(f)["summary"]))`.'
            ),
        }
    }
}


Handler = Callable[[Any, Answer], Response]


def _decode_and_score(
    model: type[BaseModel], handler: Handler, body: Body, query: Mapping[str, str], answer: Answer, state: ServiceState
) -> Response:
    """Decode the body into ``model``, then score and answer it with ``handler``."""
    request = decode(model, body, query, state.limits, fast_json_min_bytes=state.settings.fast_json_min_bytes)
    return handler(request, answer)


async def _score(request: Request, model: type[BaseModel], handler: Handler) -> Response:
    """Hold a scoring slot, read the body, then decode, score and answer (off the event loop unless it is small)."""
    state = service_state(request)
    settings = state.settings
    async with state.scoring_slots.slot():
        body = await read_body(request, state.limits, timeout=settings.body_timeout_seconds, watchers=WATCHERS)
        answer = Answer.for_request(request, settings.gzip_min_bytes)
        query = dict(request.query_params) if request.scope["query_string"] else {}
        if body.size <= INLINE_MAX_BYTES:
            # A small batch scores in well under a millisecond: the hop to a worker thread would
            # cost more than it saves, and the event loop is not held for long.
            return _decode_and_score(model, handler, body, query, answer, state)
        # Parsing, checking and scoring a large batch is CPU work: keep it off the event loop.
        try:
            return await run_in_threadpool(_decode_and_score, model, handler, body, query, answer, state)
        finally:
            if body.size >= TRIM_MIN_BYTES:
                del body
                await run_in_threadpool(give_back_free_memory)


#: After a request with a body this large, free heap memory is handed back to the system.
TRIM_MIN_BYTES = 1 << 20

#: Bodies up to this size are scored on the event loop (a few hundred numbers: about 0.1-0.3 ms).
INLINE_MAX_BYTES = 4096

_ERRORS = problem_responses(400, 401, 408, 413, 415, 422, 503)


def scoring_route(
    path: str, response_model: type[BaseModel], examples: dict[str, dict[str, object]]
) -> Callable[[Callable[[RequestModel, Answer], Response]], Callable[[RequestModel, Answer], Response]]:
    """Add a scoring endpoint at ``path``: the decorated function scores a decoded request and answers it.

    The request model is the type of its first parameter. The function's name names the operation
    in the OpenAPI document, its docstring's first line is the summary and the rest the description.
    """

    def add(handler: Callable[[RequestModel, Answer], Response]) -> Callable[[RequestModel, Answer], Response]:
        model: type[BaseModel] = next(iter(inspect.signature(handler).parameters.values())).annotation
        summary, _, description = inspect.cleandoc(handler.__doc__ or "").partition("\n\n")

        async def endpoint(request: Request) -> Response:
            return await _score(request, model, handler)

        router.add_api_route(
            path,
            endpoint,
            methods=["POST"],
            name=handler.__name__,
            summary=summary,
            description=description,
            response_model=response_model,
            responses={200: {"content": NPZ_RESPONSE}, **_ERRORS},
            openapi_extra=openapi_extra(model, examples),
        )
        return handler

    return add


@scoring_route("/cross-entropy", CrossEntropyResponse, CROSS_ENTROPY_EXAMPLES)
def cross_entropy(request: CrossEntropyRequest, answer: Answer) -> Response:
    """Multi-class cross-entropy, KL divergence and target entropy

    Score N×C predictions (probabilities, logits or log-probabilities) against class indices,
    class names or target distributions. Returns per-sample and weighted mean/sum of cross-entropy,
    KL(target ‖ prediction) and target entropy, with CE = H + KL on every row."""
    result = score_multiclass(
        request.labels,
        request.predictions,
        classes=request.classes,
        class_weights=request.class_weights,
        sample_weights=request.sample_weights,
        options=request.options(),
    )
    return encode(result, per_sample=request.per_sample, extra={"classes": request.classes}, answer=answer)


@scoring_route("/binary-cross-entropy", BinaryCrossEntropyResponse, BINARY_EXAMPLES)
def binary_cross_entropy(request: BinaryCrossEntropyRequest, answer: Answer) -> Response:
    """Binary and multi-label cross-entropy

    Score N (binary) or N×K (multi-label) probabilities or logits against 0/1 or soft labels.
    A multi-label row scores the mean over its K labels; KL and entropy are the Bernoulli ones."""
    result = score_binary(
        request.labels,
        request.predictions,
        pos_weight=request.pos_weight,
        sample_weights=request.sample_weights,
        options=request.options(),
    )
    return encode(result, per_sample=request.per_sample, extra={}, answer=answer)
