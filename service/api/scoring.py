"""Scoring routes: read the body, then decode → score → encode (in a worker thread unless the body is small)."""

import inspect
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Request, Response, params
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from service.api.examples import BINARY_EXAMPLES, CROSS_ENTROPY_EXAMPLES
from service.api.operation_docs import openapi_extra, scoring_responses
from service.api.operations.memory import give_back_free_memory
from service.api.policy.admission import Charge
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
    WATCHERS,
    Answer,
    Body,
    decode,
    encode,
    read_body,
)
from service.api.transport.limits import batch_cells
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
#: Hence the refusals any request can get (the 500 among them) here: what ``include_router(..., responses=...)``
#: adds to the other routers' operations.
router = APIRouter(prefix="/v1", tags=["scoring"], route_class=KeyedRoute, responses=problem_responses())


Handler = Callable[[Any, Answer], Response]


def _decode(model: type[BaseModel], body: Body, query: Mapping[str, str], state: ServiceState) -> BaseModel:
    """The body (and, for NPZ, the query) decoded into ``model``."""
    return decode(model, body, query, state.limits, fast_json_min_bytes=state.settings.fast_json_min_bytes)


async def _score_in_threads(
    model: type[BaseModel],
    handler: Handler,
    body: Body,
    query: Mapping[str, str],
    answer: Answer,
    state: ServiceState,
    charge: Charge,
) -> Response:
    """Decode in a worker thread, charge the batch by its cells (which may wait, or 503), then score in one.

    A gzip body was charged by its compressed size while it arrived: it is inflated first (in a worker
    thread, bounded by the body limit) and charged by its inflated size before it is parsed.
    """
    if body.encoding != "identity":
        await run_in_threadpool(body.inflate, state.limits)
        await charge.charge_body(body.kind, body.size)
    request = await run_in_threadpool(_decode, model, body, query, state)
    await charge.charge_cells(batch_cells(getattr(request, "predictions", None)))
    return await run_in_threadpool(handler, request, answer)


async def _score(request: Request, model: type[BaseModel], handler: Handler) -> Response:
    """Read the body under a memory charge; then, in a scoring slot, decode, score and answer.

    The slot is taken only once the body has arrived: a slow upload holds its share of the memory
    budget (until the minimum rate cuts it), never a slot that a complete request could use.
    """
    state = service_state(request)
    settings = state.settings
    async with state.memory.charge() as charge:
        body = await read_body(
            request,
            state.limits,
            timeout=settings.body_timeout_seconds,
            min_bytes_per_second=settings.body_min_bytes_per_second,
            grace_seconds=settings.body_min_rate_grace_seconds,
            charge=charge,
            watchers=WATCHERS,
        )
        answer = Answer.for_request(request, settings.compression, settings.compression_min_bytes)
        query = dict(request.query_params) if request.scope["query_string"] else {}
        async with state.scoring_slots.slot():
            if body.kind == "json" and body.encoding == "identity" and body.size <= INLINE_MAX_BYTES:
                # A small batch scores in well under a millisecond: the hop to a worker thread would
                # cost more than it saves, and the event loop is not held for long. Only plain JSON:
                # an NPZ or gzip body is decompressed, and nothing untrusted is inflated on the loop.
                return handler(_decode(model, body, query, state), answer)
            # Parsing, checking and scoring a large batch is CPU work: keep it off the event loop.
            try:
                return await _score_in_threads(model, handler, body, query, answer, state, charge)
            finally:
                if body.size >= TRIM_MIN_BYTES:
                    del body
                    await run_in_threadpool(give_back_free_memory)


#: After a request with a body this large, free heap memory is handed back to the system.
TRIM_MIN_BYTES = 1 << 20

#: Bodies up to this size are scored on the event loop (a few hundred numbers: about 0.1-0.3 ms).
INLINE_MAX_BYTES = 4096

#: The request model of every scoring route, in the order they were added: the OpenAPI document lists their
#: schemas, which the routes reference without FastAPI parsing them (the routes read raw bodies).
REQUEST_MODELS: list[type[BaseModel]] = []


def scoring_route(
    path: str, response_model: type[BaseModel], examples: dict[str, dict[str, object]]
) -> Callable[[Callable[[RequestModel, Answer], Response]], Callable[[RequestModel, Answer], Response]]:
    """Add a scoring endpoint at ``path``: the decorated function scores a decoded request and answers it.

    The request model is the type of its first parameter. The function's name names the operation
    in the OpenAPI document, its docstring's first line is the summary and the rest the description.
    """

    def add(handler: Callable[[RequestModel, Answer], Response]) -> Callable[[RequestModel, Answer], Response]:
        model: type[BaseModel] = next(iter(inspect.signature(handler).parameters.values())).annotation
        REQUEST_MODELS.append(model)
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
            responses=scoring_responses(model, handler, examples),
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
