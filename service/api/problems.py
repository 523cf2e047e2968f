"""Every error answer, in one place: RFC 9457 ``application/problem+json``.

:class:`ProblemKind` is the catalogue: each kind of error once, with its status, title, type
URI and what the OpenAPI document says about its status. Code that refuses a request
raises ``ProblemKind.<KIND>.error(detail)``; :func:`problem_responses` documents the same
kinds; :func:`as_problem` is the one place where other exceptions (the core's, FastAPI's,
Starlette's) become problems. Routes contain no ``try``/``except`` of their own.

Over 300 lines because the catalogue is one table, each kind with its real example answer: it is
read (and documented) whole, so it stays in one file.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, get_args

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.core import InvalidInput
from service.core.errors import capped

PROBLEM_MEDIA_TYPE = "application/problem+json"
#: A batch can hold a million bad numbers: answer with the first few, never echo them all.
MAX_ERRORS_SHOWN = 20

logger = logging.getLogger("service.api")


class FieldError(BaseModel):
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
    errors: list[FieldError] | None = Field(None, description=f"The first {MAX_ERRORS_SHOWN} validation errors.")


# What the OpenAPI document says about each status; kinds that share a status share its text.
_BAD_BODY = "The body is not valid JSON (or not a valid NPZ archive, or not valid gzip), or it ended early."
_UNAVAILABLE = (
    "The service is not ready, or too many scoring requests (or too much of the memory budget) are in use; "
    "see Retry-After."
)


@dataclass(frozen=True)
class ProblemSpec:
    """One kind of problem: its status, title, type slug, documentation, usual headers and an example.

    ``example`` is the detail of a representative answer, word for word what the service says
    (``tests/api/test_openapi.py`` provokes each one and compares); ``example_errors`` its ``errors``.
    """

    status: int
    title: str
    slug: str
    description: str | None = None  # None: not in the OpenAPI document
    headers: Mapping[str, str] = field(default_factory=dict)
    example: str = ""
    example_errors: tuple[dict[str, Any], ...] | None = None

    @property
    def type(self) -> str:
        """The problem's type URI."""
        return f"urn:xent:problem:{self.slug}"

    def body(self, detail: str, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The problem document: the one place its shape is written (the app's answers and the server layer's)."""
        body: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status, "detail": detail}
        if errors is not None:
            body["errors"] = errors[:MAX_ERRORS_SHOWN]
        return body


class ProblemKind(Enum):
    """The catalogue: every kind of error answer the service gives, each with a real example."""

    MALFORMED_GZIP = ProblemSpec(
        400,
        "Malformed gzip",
        "malformed-gzip",
        _BAD_BODY,
        example="the body is not valid gzip: Error -3 while decompressing data: incorrect header check",
    )
    MALFORMED_JSON = ProblemSpec(
        400,
        "Malformed JSON",
        "malformed-json",
        _BAD_BODY,
        example="the body is not valid JSON: EOF while parsing a list at line 1 column 45",
    )
    MALFORMED_NPZ = ProblemSpec(
        400,
        "Malformed NPZ",
        "malformed-npz",
        _BAD_BODY,
        example=(
            "the body is not a readable .npz archive: it does not start with a zip signature (PK\\x03\\x04), "
            "as np.savez writes; it looks like JSON: send it with Content-Type: application/json"
        ),
    )
    INCOMPLETE_BODY = ProblemSpec(
        400,
        "Incomplete body",
        "incomplete-body",
        _BAD_BODY,
        example="the connection closed after 20 bytes of the body of the 55 it declared",
    )
    #: Refused by the server layer (``service/server/protocol.py``) before the request reaches the app.
    MALFORMED_REQUEST = ProblemSpec(
        400,
        "Malformed request",
        "malformed-request",
        "The request is not valid HTTP/1.1 (the connection is then closed).",
        {"Connection": "close"},
        example="The request is not valid HTTP/1.1 (Invalid header token).",
    )
    UNAUTHORIZED = ProblemSpec(
        401,
        "Unauthorized",
        "unauthorized",
        "An API key is required (XENT_API_KEYS; for /metrics, XENT_METRICS_REQUIRE_KEY) and was missing or wrong.",
        {"WWW-Authenticate": 'Bearer realm="xent"'},
        example="this endpoint needs an API key: send Authorization: Bearer <key> or X-API-Key: <key>",
    )
    NOT_FOUND = ProblemSpec(404, "Not found", "not-found")
    METHOD_NOT_ALLOWED = ProblemSpec(405, "Method not allowed", "method-not-allowed")
    TIMEOUT = ProblemSpec(
        408,
        "Request timeout",
        "timeout",
        "The body took longer than XENT_BODY_TIMEOUT_SECONDS to arrive, or arrived slower than "
        "XENT_BODY_MIN_BYTES_PER_SECOND after its grace period.",
        {"Connection": "close"},
        example="the request body did not arrive within 60 seconds (XENT_BODY_TIMEOUT_SECONDS)",
    )
    TOO_LARGE = ProblemSpec(
        413,
        "Payload too large",
        "too-large",
        "The body (or its decompressed size) is larger than the limit, or the batch has too many rows or classes.",
        example="the request body is larger than the limit of 67108864 bytes (XENT_MAX_BODY_BYTES)",
    )
    UNSUPPORTED_MEDIA_TYPE = ProblemSpec(
        415,
        "Unsupported media type",
        "unsupported-media-type",
        "The body is neither `application/json` nor `application/x-npz`.",
        example=(
            "send JSON with Content-Type: application/json (curl --json '{...}' does both), "
            "or a NumPy .npz archive with Content-Type: application/x-npz; got 'text/plain'"
        ),
    )
    INVALID_INPUT = ProblemSpec(
        422,
        "Invalid input",
        "invalid-input",
        "The body is JSON but not a valid request; `errors` names the field, row and column.",
        example="labels row 0: class index 3 is out of range [0, 3)",
        example_errors=(
            {"loc": ["body", "labels", 0], "msg": "class index 3 is out of range [0, 3)", "type": "unknown_class"},
        ),
    )
    #: Refused by the server layer (``service/server/protocol.py``): answered, then the connection is closed.
    HEADERS_TOO_LARGE = ProblemSpec(
        431,
        "Request header fields too large",
        "headers-too-large",
        "The request's head is longer than XENT_MAX_HEADER_BYTES, or it has more than XENT_MAX_HEADERS header "
        "fields (the connection is then closed).",
        {"Connection": "close"},
        example=(
            "The request's head (request line and header fields) is longer than 16384 bytes, "
            "the limit set by XENT_MAX_HEADER_BYTES."
        ),
    )
    INTERNAL = ProblemSpec(
        500,
        "Internal server error",
        "internal",
        "An unexpected error; the answer holds no details, the log has them under the request id.",
        example="The server failed to answer this request.",
    )
    OVERLOADED = ProblemSpec(
        503,
        "Service unavailable",
        "overloaded",
        _UNAVAILABLE,
        example="64 scoring requests are already in progress (XENT_MAX_CONCURRENT_SCORING); retry shortly",
    )
    NOT_READY = ProblemSpec(
        503, "Not ready", "not-ready", _UNAVAILABLE, {"Retry-After": "1"}, example="the service is starting or stopping"
    )

    def error(
        self, detail: str, *, errors: list[dict[str, Any]] | None = None, headers: Mapping[str, str] | None = None
    ) -> HttpProblem:
        """The exception that answers with this problem (``headers`` replace the kind's usual ones)."""
        return HttpProblem(self.value, detail, errors, self.value.headers if headers is None else headers)


class HttpProblem(Exception):
    """A request refused with a problem from the catalogue (or an HTTP error of another status)."""

    def __init__(
        self,
        kind: ProblemSpec,
        detail: str,
        errors: list[dict[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.kind, self.detail, self.errors, self.headers = kind, detail, errors, headers

    def response(self) -> JSONResponse:
        """The problem+json answer."""
        headers = dict(self.headers) if self.headers else None
        body = self.kind.body(self.detail, self.errors)
        return JSONResponse(body, status_code=self.kind.status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def invalid_input(errors: list[dict[str, Any]], total: int | None = None, detail: str | None = None) -> HttpProblem:
    """422 listing ``errors`` (``total`` of them in all); the detail describes the first unless given."""
    if detail is None:
        first = errors[0]
        where = " → ".join(str(part) for part in first["loc"][1:]) or "body"
        count = len(errors) if total is None else total
        detail = f"{where}: {first['msg']}" + (f" (and {count - 1} more)" if count > 1 else "")
    return ProblemKind.INVALID_INPUT.error(detail, errors=errors)


def query_parameter_error(name: str, message: str) -> HttpProblem:
    """422 for a query parameter that does not belong or cannot be read (a long name is ``capped``, as in ``loc``)."""
    name = capped(name)
    errors = [{"loc": ["query", name], "msg": message, "type": "invalid_query_parameter"}]
    return invalid_input(errors, detail=f"{name}: {message}")


def validation_error(error: ValidationError, model: type[BaseModel], *, from_query: bool = False) -> HttpProblem:
    """422 for a request that parsed but does not fit ``model``; options came from the query when ``from_query``.

    Pydantic's errors become ``{loc, msg, type}``, without the echoed input, misspellings explained.
    ``loc`` starts with "body", or with "query" for options from the query (NPZ members beside
    them are still located in the body).
    """
    body_fields: frozenset[str] = getattr(model, "array_fields", frozenset()) if from_query else frozenset()
    prefix = "query" if from_query else "body"
    shown = []
    for item in error.errors(include_url=False, include_input=False, include_context=False):
        first = item["loc"][0] if item["loc"] else None
        # A key the client invented (an unknown field) can be a megabyte long: name it, never echo it whole.
        loc = ["body" if first in body_fields else prefix, *map(_shorten, item["loc"])]
        msg = item["msg"]
        known = _fields_at(model, item["loc"][:-1]) if item["type"] == "extra_forbidden" else []
        if known:
            msg = _unknown_field_message(str(loc[-1]), known)
        shown.append({"loc": loc, "msg": msg, "type": item["type"]})
    return invalid_input(shown)


def unknown_field(name: str, model: type[BaseModel]) -> HttpProblem:
    """422 for a body key ``model`` has no field for: the error Pydantic's ``extra_forbidden`` becomes above.

    The JSON codec raises it for the first unknown key before any value is parsed.
    """
    loc: list[str | int] = ["body", _shorten(name)]
    msg = _unknown_field_message(str(loc[-1]), list(model.model_fields))
    return invalid_input([{"loc": loc, "msg": msg, "type": "extra_forbidden"}])


def _fields_at(model: type[BaseModel], path: tuple[int | str, ...]) -> list[str]:
    """The fields of the object at ``path`` in ``model``: a nested object (a compare side) has its own."""
    for part in path:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        annotation = field.annotation if field is not None else None
        nested = [kind for kind in (annotation, *get_args(annotation)) if isinstance(kind, type)]
        models = [kind for kind in nested if issubclass(kind, BaseModel)]
        if not models:
            return []
        model = models[0]
    return list(model.model_fields)


def _unknown_field_message(name: str, fields: list[str]) -> str:
    """What an unknown field ``name`` (already shortened) is told: the closest field, and every field."""
    guess = difflib.get_close_matches(name, fields, n=1)
    msg = f"unknown field {name!r}" + (f"; did you mean {guess[0]!r}?" if guess else "")
    return msg + f" (fields: {', '.join(fields)})"


def _shorten(part: str | int) -> str | int:
    """A ``loc`` part cut as every quoted input is (``capped``: 64 characters, then "…") when it is a string."""
    return capped(part) if isinstance(part, str) else part


#: Starlette's own HTTP errors (no route, wrong method) by status; any other status is a generic "HTTP error".
_STARLETTE = {kind.value.status: kind for kind in (ProblemKind.NOT_FOUND, ProblemKind.METHOD_NOT_ALLOWED)}


def as_problem(exc: Exception) -> HttpProblem:
    """The problem an exception answers with: the one place where the core's and the frameworks' errors map."""
    if isinstance(exc, HttpProblem):
        return exc
    if isinstance(exc, InvalidInput):
        errors = [{"loc": ["body", *exc.loc], "msg": exc.message, "type": exc.code}]
        return ProblemKind.INVALID_INPUT.error(str(exc), errors=errors)
    if isinstance(exc, RequestValidationError):
        found = exc.errors()
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in list(found)[:MAX_ERRORS_SHOWN]]
        return invalid_input(errors, len(found))
    if isinstance(exc, StarletteHTTPException):
        known = _STARLETTE.get(exc.status_code)
        kind = known.value if known is not None else ProblemSpec(exc.status_code, "HTTP error", "http-error")
        return HttpProblem(kind, str(exc.detail), headers=exc.headers)
    raise TypeError(f"no problem is mapped for {type(exc).__name__}")  # pragma: no cover - see install


async def _answer(request: Request, exc: Exception) -> JSONResponse:
    return as_problem(exc).response()


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Never show a stack trace or a path to the client; the log has the details, under the request id
    # the client gets back (this answer is sent outside RequestIdMiddleware, so the header is set here).
    request_id = getattr(request.state, "request_id", None)
    fields = {"request_id": request_id, "method": request.method, "path": request.url.path}
    logger.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc, extra={"fields": fields})
    headers = {"X-Request-ID": request_id} if request_id else None
    return ProblemKind.INTERNAL.error("The server failed to answer this request.", headers=headers).response()


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception the app may raise to its problem+json answer."""
    for mapped in (HttpProblem, InvalidInput, RequestValidationError, StarletteHTTPException):
        app.add_exception_handler(mapped, _answer)
    app.add_exception_handler(Exception, _unexpected)


#: Refusals any request can get, whatever its operation: the server layer's (``service/server/protocol.py``,
#: before the app sees the request) and the unexpected error. :func:`problem_responses` adds them to every operation.
EVERY_REQUEST = (ProblemKind.MALFORMED_REQUEST, ProblemKind.HEADERS_TOO_LARGE, ProblemKind.INTERNAL)

#: Where the OpenAPI document finds the schema of every problem answer (``create_app`` adds :class:`Problem` there).
PROBLEM_SCHEMA_REF = "#/components/schemas/Problem"


def problem_responses(*kinds: ProblemKind) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` of an operation that refuses with ``kinds`` and :data:`EVERY_REQUEST`, from the catalogue.

    One entry per status, ``application/problem+json`` only (the one media type an error is sent
    with), its description the kinds' and one example per kind: the answer the service gives.
    """
    by_status: dict[int, list[ProblemSpec]] = {}
    for kind in (*kinds, *EVERY_REQUEST):
        spec = kind.value
        if spec.description is None:
            raise ValueError(f"{kind.name} is not documented: give it a description in the catalogue")
        if spec not in by_status.setdefault(spec.status, []):
            by_status[spec.status].append(spec)
    responses: dict[int | str, dict[str, Any]] = {}
    for status, specs in sorted(by_status.items()):
        description = " ".join(dict.fromkeys(spec.description or "" for spec in specs))
        examples = {
            spec.slug: {
                "summary": spec.title,
                "value": spec.body(spec.example, None if spec.example_errors is None else list(spec.example_errors)),
            }
            for spec in specs
        }
        content = {"schema": {"$ref": PROBLEM_SCHEMA_REF}, "examples": examples}
        responses[status] = {"description": description, "content": {PROBLEM_MEDIA_TYPE: content}}
    return responses
