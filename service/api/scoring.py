"""Scoring routes: read the body, then decode → score → encode in a worker thread."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from service.api.codecs import decode, encode, read_json_body
from service.api.errors import problem_responses
from service.api.examples import BINARY_EXAMPLES, CROSS_ENTROPY_EXAMPLES
from service.api.schemas import (
    BinaryCrossEntropyRequest,
    BinaryCrossEntropyResponse,
    CrossEntropyRequest,
    CrossEntropyResponse,
)
from service.core import score_binary, score_multiclass
from service.settings import Settings

router = APIRouter(prefix="/v1", tags=["scoring"])


def get_settings(request: Request) -> Settings:
    """The app's settings (built once in ``create_app``)."""
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def json_request_body(model: str, examples: dict[str, dict[str, object]]) -> dict[str, object]:
    """OpenAPI ``requestBody`` for a route that reads its body itself."""
    schema = {"$ref": f"#/components/schemas/{model}"}
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema, "examples": examples}}}
    }


def _cross_entropy(body: bytes) -> Response:
    request = decode(CrossEntropyRequest, body)
    result = score_multiclass(
        request.labels,
        request.predictions,
        classes=request.classes,
        class_weights=request.class_weights,
        sample_weights=request.sample_weights,
        options=request.options(),
    )
    return encode(result, per_sample=request.per_sample, extra={"classes": request.classes})


def _binary_cross_entropy(body: bytes) -> Response:
    request = decode(BinaryCrossEntropyRequest, body)
    result = score_binary(
        request.labels,
        request.predictions,
        pos_weight=request.pos_weight,
        sample_weights=request.sample_weights,
        options=request.options(),
    )
    return encode(result, per_sample=request.per_sample, extra={})


@router.post(
    "/cross-entropy",
    summary="Multi-class cross-entropy, KL divergence and target entropy",
    response_model=CrossEntropyResponse,
    responses=problem_responses(400, 413, 415, 422),
    openapi_extra=json_request_body("CrossEntropyRequest", CROSS_ENTROPY_EXAMPLES),
)
async def cross_entropy(request: Request, settings: SettingsDep) -> Response:
    """Score N×C predictions (probabilities, logits or log-probabilities) against class indices,
    class names or target distributions. Returns per-sample and weighted mean/sum of cross-entropy,
    KL(target ‖ prediction) and target entropy, with CE = H + KL on every row."""
    body = await read_json_body(request, settings.max_body_bytes)
    # Parsing, checking and scoring a large batch is CPU work: keep it off the event loop.
    return await run_in_threadpool(_cross_entropy, body)


@router.post(
    "/binary-cross-entropy",
    summary="Binary and multi-label cross-entropy",
    response_model=BinaryCrossEntropyResponse,
    responses=problem_responses(400, 413, 415, 422),
    openapi_extra=json_request_body("BinaryCrossEntropyRequest", BINARY_EXAMPLES),
)
async def binary_cross_entropy(request: Request, settings: SettingsDep) -> Response:
    """Score N (binary) or N×K (multi-label) probabilities or logits against 0/1 or soft labels.
    A multi-label row scores the mean over its K labels; KL and entropy are the Bernoulli ones."""
    body = await read_json_body(request, settings.max_body_bytes)
    return await run_in_threadpool(_binary_cross_entropy, body)
