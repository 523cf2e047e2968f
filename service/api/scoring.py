"""Scoring routes: read the body, then decode → score → encode (in a worker thread unless the body is small)."""

import inspect
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, TypeVar

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from service.api.examples import (
    BINARY_COMPARE_EXAMPLES,
    BINARY_EXAMPLES,
    CROSS_ENTROPY_COMPARE_EXAMPLES,
    CROSS_ENTROPY_EXAMPLES,
)
from service.api.keyed_route import KeyedRoute
from service.api.operation_docs import (
    DIFFERENCE_ARRAYS,
    SCORE_ARRAYS,
    json_body,
    openapi_extra,
    scoring_responses,
)
from service.api.operations.memory import IDLE_TRIM
from service.api.policy.admission import Charge
from service.api.problems import problem_responses
from service.api.schemas import (
    BinaryBatch,
    BinaryCrossEntropyCompareRequest,
    BinaryCrossEntropyCompareResponse,
    BinaryCrossEntropyRequest,
    BinaryCrossEntropyResponse,
    CrossEntropyCompareRequest,
    CrossEntropyCompareResponse,
    CrossEntropyRequest,
    CrossEntropyResponse,
    MulticlassBatch,
)
from service.api.state import ServiceState, service_state
from service.api.transport import (
    Answer,
    Body,
    decode,
    decode_without_containers,
    encode,
    npz_codec,
    read_body,
    watchers_for,
)
from service.api.transport.answer import per_sample_arrays
from service.api.transport.body import Watchers
from service.api.transport.limits import BYTES_PER_JSON_CONTAINER, batch_cells, json_containers
from service.core import ScoreResult, score_binary, score_multiclass
from service.core.baseline import scoring_baseline
from service.core.compat import check_breakdowns, score_binary_preset, score_multiclass_preset
from service.core.contract import BINARY, MULTICLASS
from service.core.score_state import StateOf
from service.core.slices import Breakdowns, binary_breakdowns, multiclass_breakdowns
from service.core.summary import answer_summary, comparison_summary

RequestModel = TypeVar("RequestModel", bound=BaseModel)


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
    thread, bounded by the body limit) and charged by its inflated size before it is parsed. An archive
    with compressed members is charged, before they are inflated, as if it had arrived uncompressed.
    """
    await body.settled()  # what watched it arrive is done with it
    if body.encoding != "identity":
        await run_in_threadpool(body.inflate, state.limits)
        await charge.charge_body(body.kind, body.size)
    if body.kind == "npz":
        inflated = await run_in_threadpool(npz_codec.inflated_size, body)
        if inflated:
            await charge.charge_body(body.kind, body.size + inflated)
    request = None
    if body.kind == "json" and getattr(model, "charge_json_containers", False):
        # Nested objects cost Pydantic more than the charge per byte: charged, before they are built, by count;
        # unless a path that builds none reads the body (a large token_logprobs one, the count costing a tenth).
        if body.size >= state.settings.fast_json_min_bytes:
            request = await run_in_threadpool(decode_without_containers, model, body, query, state.limits)
        if request is None:
            containers = await run_in_threadpool(json_containers, body.data)
            await charge.resize(charge.held + containers * BYTES_PER_JSON_CONTAINER)
    if request is None:
        request = await run_in_threadpool(_decode, model, body, query, state)
    await charge.charge_cells(batch_cells(request))
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
            watchers=watchers_for(model),
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
            large = body.size >= TRIM_MIN_BYTES
            if large:
                IDLE_TRIM.started()
            try:
                return await _score_in_threads(model, handler, body, query, answer, state, charge)
            finally:
                # An archive's arrays viewed the body until now: its memory map goes back for the next large body.
                body.release()
                if large:
                    IDLE_TRIM.finished()


#: A request with a body this large holds off the idle trim of free heap memory (``operations.memory``) while it
#: is in flight, and sets it going when it is the last.
TRIM_MIN_BYTES = 1 << 20

#: Bodies up to this size are scored on the event loop (a few hundred numbers: about 0.1-0.3 ms).
INLINE_MAX_BYTES = 4096

#: Every scoring route's path, and what watches each kind of large body it is sent (``read_body``'s ``watchers``):
#: the app's ``KeptMapPlacer`` places these bodies before the route is called.
BODY_ROUTES: dict[str, Watchers] = {}

#: The request model of every scoring route, in the order they were added: the OpenAPI document lists their
#: schemas, which the routes reference without FastAPI parsing them (the routes read raw bodies).
REQUEST_MODELS: list[type[BaseModel]] = []


def scoring_route(
    path: str,
    response_model: Any,
    examples: dict[str, dict[str, object]],
    npz_arrays: str | None = SCORE_ARRAYS,
) -> Callable[[Callable[[RequestModel, Answer], Response]], Callable[[RequestModel, Answer], Response]]:
    """Add a scoring endpoint at ``path``: the decorated function scores a decoded request and answers it.

    The request model is the type of its first parameter. The function's name names the operation
    in the OpenAPI document, its docstring's first line is the summary and the rest the description.
    ``npz_arrays`` None documents a JSON body and answer alone.
    """

    def add(handler: Callable[[RequestModel, Answer], Response]) -> Callable[[RequestModel, Answer], Response]:
        model: type[BaseModel] = next(iter(inspect.signature(handler).parameters.values())).annotation
        REQUEST_MODELS.append(model)
        summary, _, description = inspect.cleandoc(handler.__doc__ or "").partition("\n\n")

        async def endpoint(request: Request) -> Response:
            return await _score(request, model, handler)

        BODY_ROUTES[router.prefix + path] = watchers_for(model)

        router.add_api_route(
            path,
            endpoint,
            methods=["POST"],
            name=handler.__name__,
            summary=summary,
            description=description,
            response_model=response_model,
            responses=scoring_responses(model, handler, examples, npz_arrays),
            openapi_extra=openapi_extra(model, examples) if npz_arrays is not None else json_body(model, examples),
        )
        return handler

    return add


def _answer(
    result: ScoreResult,
    request: CrossEntropyRequest | BinaryCrossEntropyRequest,
    answer: Answer,
    breakdowns: Breakdowns,
) -> Response:
    """The scoring answer: the core's summary, with its standard errors and intervals, breakdowns and calibration,
    and the per-sample arrays."""
    extra = {"classes": request.classes} if isinstance(request, CrossEntropyRequest) else {}
    summary = answer_summary(
        result,
        per_sample=request.per_sample,
        extra=extra,
        confidence=request.confidence,
        cluster_ids=request.cluster_ids,
        state=StateOf.of_request(request, MULTICLASS if isinstance(request, CrossEntropyRequest) else BINARY),
        breakdowns=breakdowns,
    )
    arrays = per_sample_arrays(result.per_sample, result.gradient) if request.per_sample else None
    return encode(summary, arrays, result.scored, answer)


def _compare_answer(
    model: ScoreResult,
    baseline: ScoreResult,
    request: CrossEntropyCompareRequest | BinaryCrossEntropyCompareRequest,
    answer: Answer,
) -> Response:
    """The comparison's answer: the core's summary of both sides and their paired differences."""
    extra = {"classes": request.classes} if isinstance(request, CrossEntropyCompareRequest) else {}
    summary, differences = comparison_summary(
        model,
        baseline,
        per_sample=request.per_sample,
        confidence=request.confidence,
        cluster_ids=request.cluster_ids,
        extra=extra,
        settings={"baseline_prediction_type": request.baseline_type},
    )
    arrays = {"difference": differences} if request.per_sample else None
    if arrays is not None and model.gradient is not None:
        arrays["gradient"] = model.gradient
    return encode(summary, arrays, model.scored, answer)


def _scorer(request: MulticlassBatch | BinaryBatch, xent: Callable[..., ScoreResult], preset: Any) -> Any:
    """The one dispatch on ``compat``: xent's own scorer, untouched, or the preset's with the options set explicitly."""
    if request.compat == "xent":
        return xent
    return partial(preset, request.compat, given=request.model_fields_set)


def _multiclass(request: MulticlassBatch, predictions: Any, options: Any) -> ScoreResult:
    score = _scorer(request, score_multiclass, score_multiclass_preset)
    result: ScoreResult = score(
        request.labels,
        predictions,
        classes=request.classes,
        class_weights=request.class_weights,
        sample_weights=request.sample_weights,
        options=options,
    )
    return result


def _binary(request: BinaryBatch, predictions: Any, options: Any) -> ScoreResult:
    score = _scorer(request, score_binary, score_binary_preset)
    result: ScoreResult = score(
        request.labels,
        predictions,
        pos_weight=request.pos_weight,
        sample_weights=request.sample_weights,
        options=options,
    )
    return result


@scoring_route("/cross-entropy", CrossEntropyResponse, CROSS_ENTROPY_EXAMPLES)
def cross_entropy(request: CrossEntropyRequest, answer: Answer) -> Response:
    """Multi-class cross-entropy, KL divergence and target entropy

    Score N×C predictions (probabilities, logits or log-probabilities) against class indices,
    class names or target distributions. Returns per-sample and weighted mean/sum of cross-entropy,
    KL(target ‖ prediction) and target entropy, with CE = H + KL on every row, and each mean's
    standard error and confidence interval (clustered with `cluster_ids`); with `groups`, `per_class` and
    `calibration_bins`, the same by group, by class, and the calibration of the top probability."""
    options = request.options()
    check_breakdowns(request.compat, per_class=request.per_class, calibration_bins=request.calibration_bins)
    result = _multiclass(request, request.predictions, options)
    breakdowns = multiclass_breakdowns(
        result,
        request.labels,
        request.predictions,
        classes=request.classes,
        options=options,
        groups=request.groups,
        per_class=request.per_class,
        calibration_bins=request.calibration_bins,
        cluster_ids=request.cluster_ids,
    )
    return _answer(result, request, answer, breakdowns)


@scoring_route("/binary-cross-entropy", BinaryCrossEntropyResponse, BINARY_EXAMPLES)
def binary_cross_entropy(request: BinaryCrossEntropyRequest, answer: Answer) -> Response:
    """Binary and multi-label cross-entropy

    Score N (binary) or N×K (multi-label) probabilities or logits against 0/1 or soft labels.
    A multi-label row scores the mean over its K labels; KL and entropy are the Bernoulli ones.
    Each mean comes with its standard error and confidence interval (clustered with `cluster_ids`); with
    `groups` and `calibration_bins`, the same by group, and the calibration of every element."""
    options = request.options()
    check_breakdowns(request.compat, per_class=False, calibration_bins=request.calibration_bins)
    result = _binary(request, request.predictions, options)
    breakdowns = binary_breakdowns(
        result,
        request.labels,
        request.predictions,
        options=options,
        groups=request.groups,
        calibration_bins=request.calibration_bins,
        cluster_ids=request.cluster_ids,
    )
    return _answer(result, request, answer, breakdowns)


@scoring_route("/cross-entropy/compare", CrossEntropyCompareResponse, CROSS_ENTROPY_COMPARE_EXAMPLES, DIFFERENCE_ARRAYS)
def cross_entropy_compare(request: CrossEntropyCompareRequest, answer: Answer) -> Response:
    """Paired comparison of two multi-class models on the same rows

    Score `predictions` (the model) and `baseline_predictions` (the baseline) against the same labels,
    with the options of `/v1/cross-entropy`, and compare them row by row: the mean difference
    dᵢ = ℓᵢ(model) − ℓᵢ(baseline) of cross-entropy, KL divergence and accuracy, with its paired
    (or clustered) standard error, interval, z, two-sided p-value, and the two models' correlation."""
    model = _multiclass(request, request.predictions, request.options())
    with scoring_baseline(request.baseline_predictions, request.predictions):
        baseline = _multiclass(request, request.baseline_predictions, request.baseline_options())
    return _compare_answer(model, baseline, request, answer)


@scoring_route(
    "/binary-cross-entropy/compare",
    BinaryCrossEntropyCompareResponse,
    BINARY_COMPARE_EXAMPLES,
    DIFFERENCE_ARRAYS,
)
def binary_cross_entropy_compare(request: BinaryCrossEntropyCompareRequest, answer: Answer) -> Response:
    """Paired comparison of two binary / multi-label models on the same rows

    Score `predictions` (the model) and `baseline_predictions` (the baseline) against the same labels,
    with the options of `/v1/binary-cross-entropy`, and compare them row by row, as
    `/v1/cross-entropy/compare` does."""
    model = _binary(request, request.predictions, request.options())
    with scoring_baseline(request.baseline_predictions, request.predictions):
        baseline = _binary(request, request.baseline_predictions, request.baseline_options())
    return _compare_answer(model, baseline, request, answer)
