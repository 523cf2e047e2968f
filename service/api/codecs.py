"""Bytes in, bytes out: read a bounded JSON body, decode it into a request model,
and encode a core ``ScoreResult`` as the response JSON.
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

import numpy as np
import pydantic_core
from fastapi import Request, Response
from pydantic import BaseModel, ValidationError

from service.api.errors import BodyValidationError, HttpProblem
from service.core import ScoreResult

RequestModel = TypeVar("RequestModel", bound=BaseModel)

_JSON_HINT = "send the body as JSON with Content-Type: application/json (curl --json '{...}' does both)"


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def read_json_body(request: Request, max_bytes: int) -> bytes:
    """The raw body, after checking its media type and size (413 as soon as it passes ``max_bytes``)."""
    content_type = request.headers.get("content-type")
    if content_type is None or not _is_json(content_type):
        got = f"got {content_type!r}" if content_type else "no Content-Type was sent"
        raise HttpProblem(415, "Unsupported media type", f"{_JSON_HINT}; {got}", "unsupported-media-type")
    too_large = HttpProblem(
        413, "Payload too large", f"the request body is larger than the limit of {max_bytes} bytes", "too-large"
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def decode(model: type[RequestModel], body: bytes) -> RequestModel:
    """Parse and validate a JSON body (400 if it is not JSON, 422 if it does not fit ``model``)."""
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        first = error.errors(include_url=False, include_input=False)[0]
        if first["type"] == "json_invalid":
            reason = str(first.get("ctx", {}).get("error", first["msg"]))
            raise HttpProblem(
                400, "Malformed JSON", f"the body is not valid JSON: {reason}", "malformed-json"
            ) from None
        if first["type"] == "model_type" and not first["loc"]:
            raise HttpProblem(
                422 if body.strip() else 400,
                "Invalid input" if body.strip() else "Malformed JSON",
                "the body must be a JSON object with the request's fields" if body.strip() else "the body is empty",
                "invalid-input" if body.strip() else "malformed-json",
            ) from None
        raise BodyValidationError(error, model) from None


def _number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def _numbers(values: np.ndarray) -> list[float | None]:
    """A float array as a JSON-ready list: NaN (ignored row) and ±inf become None."""
    listed: list[float | None] = values.tolist()
    if not np.isfinite(values).all():
        listed = [v if v is not None and math.isfinite(v) else None for v in listed]
    return listed


def encode(result: ScoreResult, *, per_sample: bool, extra: dict[str, Any]) -> Response:
    """The response body for ``result``; ``extra`` adds top-level fields (e.g. ``classes``)."""
    mean, sums = result.mean, result.sum
    body: dict[str, Any] = {
        "n": result.n,
        "n_scored": result.n_scored,
        "unit": result.unit.value,
        **extra,
        "mean": {
            "cross_entropy": _number(mean.cross_entropy),
            "kl_divergence": _number(mean.kl_divergence),
            "entropy": _number(mean.entropy),
            "perplexity": _number(mean.perplexity),
            "accuracy": _number(mean.accuracy),
        },
        "sum": {
            "cross_entropy": _number(sums.cross_entropy),
            "kl_divergence": _number(sums.kl_divergence),
            "entropy": _number(sums.entropy),
        },
        "per_sample": None,
        "warnings": [
            {"code": w.code.value, "message": w.message, "count": w.count, "rows": list(w.rows)}
            for w in result.warnings
        ],
        "settings": {**result.settings, "per_sample": per_sample},
    }
    if per_sample:
        values = result.per_sample
        body["per_sample"] = {
            "cross_entropy": _numbers(values.cross_entropy),
            "kl_divergence": _numbers(values.kl_divergence),
            "entropy": _numbers(values.entropy),
        }
    return Response(pydantic_core.to_json(body), media_type="application/json")
