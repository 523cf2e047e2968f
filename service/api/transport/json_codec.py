"""The JSON codec: a JSON body into a request model, on the fast path or the reference one.

Before either parser runs, the outline of the body's top level (``_json_outline``, NumPy scans
of the bytes) refuses its first unknown key (422) and a batch past the limits (413): in time
linear in the body, and before a parser holds an object per number. Then large bodies try the
simdjson fast path (``_json_fast``); it gives way to the reference Pydantic path for anything it
cannot prove well-formed, so both give the same requests and the same errors. Two forms of
``/v1/sequence-cross-entropy`` are read before any outline (``_json_sequences``): ``completions``,
and ``token_logprobs`` placed by its few quotes (``decode_without_containers``); the limits are then
checked on what they read, and the 413 names the same field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from service.api.problems import HttpProblem, ProblemKind, query_parameter_error, unknown_field, validation_error
from service.api.transport._json_fast import decode_fast
from service.api.transport._json_outline import JsonOutline
from service.api.transport._json_sequences import FIELD as LOGPROBS_FIELD
from service.api.transport._json_sequences import decode_completions, decode_logprob_sequences
from service.api.transport._json_states import decode_states
from service.api.transport._json_streamed import StreamedRows
from service.api.transport.body import Body
from service.api.transport.limits import PREDICTION_FIELDS, Limits
from service.core.sequence_forms import Sequences

RequestModel = TypeVar("RequestModel", bound=BaseModel)


def decode(
    model: type[RequestModel], body: Body, query: Mapping[str, str], limits: Limits, *, fast_json_min_bytes: int
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
    if len(body.data) < fast_json_min_bytes and limits.batch_fits_in(len(body.data)):
        request = _decode_small(model, body.data, limits)
        body.release()
        return request
    if len(body.data) >= fast_json_min_bytes:
        merged = decode_states(model, body.data)
        if merged is not None:  # a merge's states: their tables as arrays; the other fields through the model
            states, rest = merged
            request = _decode_reference(model, rest)
            setattr(request, model.json_states, states)  # type: ignore[attr-defined]
            body.release()
            return request
        completions = decode_completions(model, body.data)
        if completions is not None:
            if not limits.batch_fits_in(len(body.data)):
                _screen_decoded(completions, limits)
            body.release()
            return completions
    outline = JsonOutline.of(body.data)
    if outline is not None:
        _screen(model, outline, limits)
    fast = None
    # A model without arrays of numbers (``json_fast_path`` false: the states of a merge) gains nothing there: the
    # fast path would parse its nested objects, write them back and have Pydantic parse them again.
    if len(body.data) >= fast_json_min_bytes and getattr(model, "json_fast_path", True):
        fast = decode_logprob_sequences(model, body.data, outline)
        if fast is None:
            fast = decode_fast(model, body.data, outline)
    request = _decode_reference(model, body.data) if fast is None else fast
    # The arrays are copies: the text can go now, before scoring and the answer need memory too.
    body.release()
    return request


def decode_without_containers(model: type[RequestModel], body: Body, limits: Limits) -> RequestModel | None:
    """The request when a path that builds no Python object per JSON container reads the body: a large
    ``token_logprobs`` one, without an outline (``_json_sequences``); the body is released after. None otherwise:
    the caller then charges the body's containers and ``decode``s it (the first error is the same on every path)."""
    so_far = body.watcher if isinstance(body.watcher, StreamedRows) else None  # rows read while it arrived
    request = decode_logprob_sequences(model, body.data, so_far=so_far)
    if request is None:
        return None
    if not limits.batch_fits_in(len(body.data)):
        _screen_decoded(request, limits)
    body.release()
    return request


def _decode_small(model: type[RequestModel], data: bytes | bytearray | memoryview, limits: Limits) -> RequestModel:
    """A body too small to hold a batch past the limits: Pydantic first, the outline only when it refuses the body.

    On such a body the outline's NumPy scans cost many times Pydantic's whole parse (the fixed cost of
    a small request), and all the screen could find is an unknown key, which Pydantic refuses too
    (``extra="forbid"``). When Pydantic refuses the body, the outline screens it before that error is
    raised, so the first error is the same as on every other path.
    """
    try:
        return _decode_reference(model, data)
    except HttpProblem:
        outline = JsonOutline.of(data)
        if outline is not None:
            _screen(model, outline, limits)
        raise


def _screen(model: type[BaseModel], outline: JsonOutline, limits: Limits) -> None:
    """Refuse what the outline shows already: an unknown key (the first), then arrays past the batch limits.

    ``extra="forbid"`` makes any unknown key a 422, so the first one decides it, whatever the
    rest of the body holds; the predictions' rows and columns are those ``Limits.check_batch``
    checks after decoding, counted from the text, so the 413 is the same on every path.
    """
    unknown = outline.first_unknown(model.model_fields)
    if unknown is not None:
        raise unknown_field(unknown, model)
    if limits.batch_fits_in(outline.data.shape[0]):
        return
    predictions = []
    for name in getattr(model, "array_kinds", {}):
        shape = outline.shape(name)
        if shape is None:
            continue
        rows, columns = shape
        if name in PREDICTION_FIELDS:
            predictions.append((rows, columns))
        else:
            limits.check_values(name, rows * max(columns, 1))
    limits.check_shapes(predictions)


def _screen_decoded(request: BaseModel, limits: Limits) -> None:
    """What ``_screen`` refuses past the batch limits, for a request decoded before any outline (``completions``,
    ``token_logprobs``):
    each array field's entries × its first entry's length (1 if not an array), as ``JsonOutline.shape`` counts
    them in the text, so that the 413 names the same field on every path."""
    for name in getattr(request, "array_kinds", {}):
        value = getattr(request, name, None)
        if isinstance(value, Sequences) and value.n_sequences and value.form == LOGPROBS_FIELD:  # S rows
            limits.check_values(name, value.n_sequences * max(int(value.offsets[1]), 1))
        elif isinstance(value, Sequences) and value.n_sequences:  # completions read by their fast path: S objects
            limits.check_values(name, value.n_sequences)
        elif isinstance(value, list) and value:
            first = value[0]
            limits.check_values(name, len(value) * max(len(first) if isinstance(first, list) else 1, 1))


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
