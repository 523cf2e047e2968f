"""The JSON codec: a JSON body into a request model, on the fast path or the reference one.

Large bodies try the simdjson fast path first (``_json_fast``); it gives way to the
reference Pydantic path for anything it cannot prove well-formed, so both give the same
requests and the same errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from service.api.problems import ProblemKind, query_parameter_error, validation_error
from service.api.transport._json_fast import decode_fast
from service.api.transport.body import Body

RequestModel = TypeVar("RequestModel", bound=BaseModel)


def decode(
    model: type[RequestModel], body: Body, query: Mapping[str, str], *, fast_json_min_bytes: int
) -> RequestModel:
    """The request model from a JSON body (and no query options); the body is released after.

    Bodies of at least ``fast_json_min_bytes`` try the fast path first.
    """
    if query:
        name = next(iter(query))
        raise query_parameter_error(
            name, "options of a JSON request go in the body; query parameters are only for application/x-npz bodies"
        )
    _refuse_byte_order_mark(body.data)
    request = decode_fast(model, body.data) if len(body.data) >= fast_json_min_bytes else None
    if request is None:
        request = _decode_reference(model, body.data)
    # The arrays are copies: the text can go now, before scoring and the answer need memory too.
    body.release()
    return request


#: Byte order marks, longest first (UTF-32's starts with UTF-16's).
_BYTE_ORDER_MARKS = (
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\xef\xbb\xbf", "UTF-8"),
    (b"\xfe\xff", "UTF-16"),
    (b"\xff\xfe", "UTF-16"),
)


def _refuse_byte_order_mark(data: bytes | bytearray | memoryview) -> None:
    """400 for a body that starts with a byte order mark.

    JSON is UTF-8 without a BOM (RFC 8259 §8.1). simdjson skips a UTF-8 BOM while Pydantic refuses
    it, so without this check the same body would score on the fast path and fail on the reference
    one; and "expected value at line 1 column 1" would not say what is wrong.
    """
    head = bytes(data[:4])
    for mark, encoding in _BYTE_ORDER_MARKS:
        if head.startswith(mark):
            detail = f"the body starts with a {encoding} byte order mark; send JSON as UTF-8 without one"
            raise ProblemKind.MALFORMED_JSON.error(detail)


def _decode_reference(model: type[RequestModel], data: bytes | bytearray | memoryview) -> RequestModel:
    """Parse and validate a JSON body with Pydantic (400 if it is not JSON, 422 if it does not fit ``model``)."""
    if isinstance(data, memoryview):
        data = bytes(data)
    if not data.strip():
        raise ProblemKind.MALFORMED_JSON.error("the body is empty")
    try:
        return model.model_validate_json(data)
    except ValidationError as error:
        first = error.errors(include_url=False, include_input=False)[0]
        if first["type"] == "json_invalid":
            reason = str(first.get("ctx", {}).get("error", first["msg"]))
            raise ProblemKind.MALFORMED_JSON.error(f"the body is not valid JSON: {reason}") from None
        if first["type"] == "model_type" and not first["loc"]:
            raise ProblemKind.INVALID_INPUT.error("the body must be a JSON object with the request's fields") from None
        raise validation_error(error, model) from None
