"""Every error answer, in one place: RFC 9457 ``application/problem+json``.

The core raises typed ``ScoringError``s, the decoders raise ``HttpProblem``s or
Pydantic ``ValidationError``s; the handlers below turn each into a problem
document. Routes contain no ``try``/``except`` of their own.
"""

from __future__ import annotations

import difflib
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.core import InvalidInput

PROBLEM_MEDIA_TYPE = "application/problem+json"
#: A batch can hold a million bad numbers: answer with the first few, never echo them all.
MAX_ERRORS_SHOWN = 20

logger = logging.getLogger("service.api")


class ProblemError(BaseModel):
    """One thing wrong with the request."""

    loc: list[str | int] = Field(description='Where: `["body", "predictions", 17, 2]` is row 17, column 2.')
    msg: str = Field(description="What is wrong there.")
    type: str = Field(description="Machine-readable kind of error.")


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str = Field(description="A URI naming the kind of problem.")
    title: str = Field(description="Short summary of the kind of problem.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong with this request, naming the field and row.")
    errors: list[ProblemError] | None = Field(None, description=f"The first {MAX_ERRORS_SHOWN} validation errors.")


class HttpProblem(Exception):
    """An error answer decided in the HTTP layer (bad media type, body too large, bad JSON)."""

    def __init__(self, status: int, title: str, detail: str, slug: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.title, self.detail, self.slug, self.headers = status, title, detail, slug, headers


def problem(
    status: int,
    title: str,
    detail: str,
    slug: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A problem+json response."""
    body: dict[str, Any] = {"type": f"urn:xent:problem:{slug}", "title": title, "status": status, "detail": detail}
    if errors is not None:
        body["errors"] = errors[:MAX_ERRORS_SHOWN]
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _field_names(model: type[BaseModel] | None) -> list[str]:
    return list(model.model_fields) if model is not None else []


def pydantic_errors(
    error: ValidationError, prefix: str, model: type[BaseModel] | None = None, body_fields: frozenset[str] | None = None
) -> list[dict[str, Any]]:
    """Pydantic's errors as ``{loc, msg, type}``, without the echoed input, misspellings explained.

    ``loc`` starts with ``prefix`` ("body" or "query"); with ``body_fields`` given, those fields
    are located in the body whatever the prefix (NPZ members beside query options).
    """
    fields = _field_names(model)
    shown = []
    for item in error.errors(include_url=False, include_input=False, include_context=False):
        first = item["loc"][0] if item["loc"] else None
        # A key the client invented (an unknown field) can be a megabyte long: name it, never echo it whole.
        loc = ["body" if body_fields is not None and first in body_fields else prefix, *map(_shorten, item["loc"])]
        msg = item["msg"]
        if item["type"] == "extra_forbidden" and fields:
            name = str(loc[-1])
            guess = difflib.get_close_matches(name, fields, n=1)
            msg = f"unknown field {name!r}" + (f"; did you mean {guess[0]!r}?" if guess else "")
            msg += f" (fields: {', '.join(fields)})"
        shown.append({"loc": loc, "msg": msg, "type": item["type"]})
    return shown


def _shorten(part: str | int, limit: int = 40) -> str | int:
    """A ``loc`` part cut to ``limit`` characters (with "...") when it is a long string."""
    return part[: limit - 3] + "..." if isinstance(part, str) and len(part) > limit else part


def _describe(errors: list[dict[str, Any]], total: int) -> str:
    first = errors[0]
    where = " → ".join(str(part) for part in first["loc"][1:]) or "body"
    more = f" (and {total - 1} more)" if total > 1 else ""
    return f"{where}: {first['msg']}{more}"


class BodyValidationError(Exception):
    """A request that parsed but does not fit ``model``; options came from the query when ``from_query``."""

    def __init__(self, error: ValidationError, model: type[BaseModel], *, from_query: bool = False):
        super().__init__(str(error))
        self.error, self.model, self.from_query = error, model, from_query


class QueryParameterError(Exception):
    """A query parameter that does not belong or cannot be read."""

    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}")
        self.name, self.message = name, message


async def _query_parameter(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, QueryParameterError)
    errors = [{"loc": ["query", exc.name], "msg": exc.message, "type": "invalid_query_parameter"}]
    return problem(422, "Invalid input", str(exc), "invalid-input", errors)


async def _invalid_input(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvalidInput)
    errors = [{"loc": ["body", *exc.loc], "msg": exc.message, "type": exc.code}]
    return problem(422, "Invalid input", str(exc), "invalid-input", errors)


async def _body_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BodyValidationError)
    if exc.from_query:
        errors = pydantic_errors(exc.error, "query", exc.model, getattr(exc.model, "array_fields", frozenset()))
    else:
        errors = pydantic_errors(exc.error, "body", exc.model)
    return problem(422, "Invalid input", _describe(errors, len(errors)), "invalid-input", errors)


async def _request_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in list(exc.errors())[:MAX_ERRORS_SHOWN]
    ]
    return problem(422, "Invalid input", _describe(errors, len(exc.errors())), "invalid-input", errors)


async def _http_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HttpProblem)
    return problem(exc.status, exc.title, exc.detail, exc.slug, headers=exc.headers)


async def _http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error")
    slug = title.lower().replace(" ", "-")
    headers = dict(exc.headers) if exc.headers else None
    return problem(exc.status_code, title, str(exc.detail), slug, headers=headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Never show a stack trace or a path to the client; the log has the details, under the request id
    # the client gets back (this answer is sent outside RequestIdMiddleware, so the header is set here).
    request_id = getattr(request.state, "request_id", None)
    fields = {"request_id": request_id, "method": request.method, "path": request.url.path}
    logger.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc, extra={"fields": fields})
    headers = {"X-Request-ID": request_id} if request_id else None
    return problem(
        500, "Internal server error", "The server failed to answer this request.", "internal", headers=headers
    )


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception the app may raise to its problem+json answer."""
    app.add_exception_handler(InvalidInput, _invalid_input)
    app.add_exception_handler(BodyValidationError, _body_validation)
    app.add_exception_handler(QueryParameterError, _query_parameter)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(HttpProblem, _http_problem)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(Exception, _unexpected)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the given error statuses."""
    described = {
        400: "The body is not valid JSON (or not a valid NPZ archive, or not valid gzip), or it ended early.",
        401: "An API key is required (XENT_API_KEYS; for /metrics, XENT_METRICS_REQUIRE_KEY) and was missing or wrong.",
        408: "The body took longer than XENT_BODY_TIMEOUT_SECONDS to arrive.",
        413: "The body (or its decompressed size) is larger than the limit, or the batch has too many rows or classes.",
        415: "The body is neither `application/json` nor `application/x-npz`.",
        422: "The body is JSON but not a valid request; `errors` names the field, row and column.",
        500: "An unexpected error; the answer holds no details, the log has them under the request id.",
        503: "The service is not ready, or too many scoring requests are in progress; see Retry-After.",
    }
    return {
        status: {"description": described[status], "model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}}
        for status in statuses
    }
