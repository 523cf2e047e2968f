"""Sans-I/O request building and answer reading, shared by the sync and async clients.

A request is built as JSON (small batches: readable, no NumPy on the wire) or as an NPZ
archive with the options in the query (large batches: float64 bytes as they are, no
decimal round trip); the answer comes back in the same form.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

import httpx
import numpy as np
import orjson

from service.client.errors import InvalidInputError, ProblemError
from service.client.results import Comparison, Scores
from service.core.contract import (
    ARRAY_OPTIONS,
    JSON_MEDIA_TYPE,
    NPZ_MEDIA_TYPE,
    OPTIONS,
    Endpoint,
    defaults,
    label_array_refusal,
)

TransportChoice = Literal["auto", "json", "npz"]

#: ``transport="auto"`` sends NPZ from this many prediction values on (e.g. 1,000 rows × 10 classes), JSON below.
#: Below it JSON costs little and stays readable in logs; above it NPZ skips printing and parsing decimals.
NPZ_MIN_VALUES = 10_000


class CrossEntropyOptions(TypedDict, total=False):
    """The options of ``POST /v1/cross-entropy`` (same names and defaults as the API).

    Written out for the type checker; ``tests/test_contract.py`` holds them to ``service.core.contract``.
    """

    compat: Literal["xent", "pytorch", "sklearn", "keras", "scipy"]
    prediction_type: Literal["probabilities", "logits", "log_probabilities"]
    classes: Sequence[str] | None
    label_smoothing: float
    class_weights: Any
    sample_weights: Any
    ignore_index: int | None
    epsilon: float | Literal["auto"]
    normalization: Literal["warn", "renormalize", "error"]
    tolerance: float
    unit: Literal["nats", "bits", "hartleys"]
    per_sample: bool
    gradient: bool
    confidence: float
    cluster_ids: Any
    groups: Any
    per_class: bool
    calibration_bins: int | None


class BinaryCrossEntropyOptions(TypedDict, total=False):
    """The options of ``POST /v1/binary-cross-entropy`` (same names and defaults as the API; checked as above)."""

    compat: Literal["xent", "pytorch", "sklearn", "keras", "scipy"]
    prediction_type: Literal["probabilities", "logits"]
    pos_weight: Any
    label_smoothing: float
    sample_weights: Any
    epsilon: float | Literal["auto"]
    unit: Literal["nats", "bits", "hartleys"]
    per_sample: bool
    gradient: bool
    confidence: float
    cluster_ids: Any
    groups: Any
    calibration_bins: int | None


#: The API's defaults, per endpoint (the keys are every option it accepts), from the contract.
DEFAULTS: dict[Endpoint, dict[str, Any]] = {endpoint: defaults(endpoint) for endpoint in OPTIONS}


#: The options of each ``/compare`` endpoint: the base endpoint's and the baseline's prediction type (None: the
#: model's).
COMPARE_DEFAULTS: dict[Endpoint, dict[str, Any]] = {
    endpoint: {**DEFAULTS[endpoint], "baseline_prediction_type": None} for endpoint in OPTIONS
}


def check_options(endpoint: Endpoint, options: Mapping[str, Any], *, compare: bool = False) -> dict[str, Any]:
    """Every option of ``endpoint`` (of its ``/compare`` twin), defaults filled in; a misspelt name is a TypeError
    naming the right ones."""
    known = (COMPARE_DEFAULTS if compare else DEFAULTS)[endpoint]
    unknown = sorted(options.keys() - known.keys())
    if unknown:
        allowed = ", ".join(known)
        path = f"/v1/{endpoint}/compare" if compare else f"/v1/{endpoint}"
        raise TypeError(f"unknown option {unknown[0]!r} for {path}; options are: {allowed}")
    return {**known, **options}


def as_array(value: Any) -> np.ndarray:
    """Anything ``numpy.asarray`` takes (lists, arrays, CPU torch tensors, pandas objects) as an array.

    Object arrays (pandas strings, mixed lists) are re-read so that names become a string array
    and numbers a numeric one: the NPZ transport refuses pickled objects.
    """
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor: drop autograd, keep the data
        value = value.detach().cpu()
    try:
        array = np.asarray(value)
        if array.dtype.kind == "O":
            array = np.array(array.tolist())
    except ValueError:
        # Ragged rows: send them as they are (JSON), so that the service's 422 names the row.
        array = np.empty(len(value), dtype=object)
        array[:] = list(value)
    return array


def prepare_predictions(predictions: Any) -> np.ndarray:
    """Predictions as an array the service reads as meant: integers, booleans and float16 as float64."""
    preds = as_array(predictions)
    return preds.astype(np.float64) if preds.dtype.kind in "iub" or preds.dtype == np.float16 else preds


def prepare(endpoint: Endpoint, labels: Any, predictions: Any) -> tuple[np.ndarray, np.ndarray]:
    """Labels and predictions as arrays the service reads as meant, whichever the transport: float predictions,
    float binary labels, float target rows.

    Multi-class labels the service refuses as an array are refused here, before anything is sent, with its 422
    (``InvalidInputError``): class indices must be integers, so ``[1.0, 2.0]`` (or a pandas integer column that
    became float through a missing value) is refused, not rounded, just as the API refuses it.
    """
    preds = prepare_predictions(predictions)
    targets = as_array(labels)
    if endpoint == "binary-cross-entropy":
        return (targets.astype(np.float64) if targets.dtype.kind in "iub" else targets), preds
    if targets.size == 0 and targets.ndim == 1:
        targets = targets.astype(np.int64)  # no rows: ``[]`` reads as float, but it holds no float label
    elif targets.ndim == 2 and targets.dtype.kind in "iu":
        targets = targets.astype(np.float64)  # integer target rows (one-hot) are distributions, as JSON reads them
    kind = targets.dtype.kind
    # Ragged rows (an object array) go as they are, as JSON, so that the service names the row.
    refusal = None if kind == "O" else label_array_refusal(kind, targets.ndim, str(targets.dtype))
    if refusal is not None:
        raise InvalidInputError("labels", refusal, "bad_shape")
    return targets, preds


#: A body at least this large is handed to the connection in pieces of this size (``Request.pieces``).
SEND_PIECE_BYTES = 1 << 20


@dataclass(frozen=True)
class Request:
    """An HTTP request, ready to send."""

    path: str
    content: bytes
    headers: dict[str, str]
    params: dict[str, str]

    def pieces(self) -> tuple[bytes | Iterator[bytes], dict[str, str]]:
        """The body and headers for a synchronous send: a large body in ``SEND_PIECE_BYTES`` pieces, with the
        Content-Length of the whole (the same request on the wire). httpcore's synchronous write copies the unsent
        rest of what it is given after every ``send`` that takes only part of it: given 80 MB at once, it copies
        some hundreds of megabytes before the last byte leaves (``benchmarks/first_send.py``: 50–300 ms of
        copying where fresh memory faults in slowly)."""
        if not self._in_pieces:
            return self.content, self.headers
        return self._each_piece(), self._whole_length()

    def async_pieces(self) -> tuple[bytes | AsyncIterator[bytes], dict[str, str]]:
        """``pieces`` for an asynchronous send: asyncio's transport keeps a copy of the unsent rest of what it is
        given, up to 80 MB of fresh memory for an 80 MB archive (``benchmarks/RESULTS.md``, issue 16: 192 ms against
        72 ms in pieces, to ``xent serve`` on loopback)."""
        if not self._in_pieces:
            return self.content, self.headers

        async def each_piece() -> AsyncIterator[bytes]:
            for piece in self._each_piece():
                yield piece

        return each_piece(), self._whole_length()

    @property
    def _in_pieces(self) -> bool:
        return len(self.content) >= 2 * SEND_PIECE_BYTES

    def _each_piece(self) -> Iterator[bytes]:
        view = memoryview(self.content)
        return (bytes(view[start : start + SEND_PIECE_BYTES]) for start in range(0, len(view), SEND_PIECE_BYTES))

    def _whole_length(self) -> dict[str, str]:
        return {**self.headers, "content-length": str(len(self.content))}


def build_request(
    endpoint: Endpoint,
    labels: np.ndarray,
    predictions: np.ndarray,
    options: Mapping[str, Any],
    *,
    npz: bool,
    baseline: np.ndarray | None = None,
) -> Request:
    """The request scoring ``labels`` against ``predictions`` with ``options`` (defaults already filled in); with
    ``baseline`` predictions, the request comparing the two (``/compare``, a ``baseline_predictions`` field or
    NPZ member)."""
    path = f"/v1/{endpoint}" if baseline is None else f"/v1/{endpoint}/compare"
    known = DEFAULTS[endpoint] if baseline is None else COMPARE_DEFAULTS[endpoint]
    # Only what differs from the API's default is sent: shorter requests, the same answer.
    given = {k: v for k, v in options.items() if v is not None and not _same(v, known[k])}
    if not npz:
        body = {"labels": _jsonable(labels), "predictions": _jsonable(predictions)}
        if baseline is not None:
            body["baseline_predictions"] = _jsonable(baseline)
        body |= {k: _jsonable(as_array(v)) if k in ARRAY_OPTIONS and np.ndim(v) else v for k, v in given.items()}
        content = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
        return Request(path, content, {"Content-Type": JSON_MEDIA_TYPE, "Accept": JSON_MEDIA_TYPE}, {})
    members = {"labels": labels, "predictions": predictions}
    if baseline is not None:
        members["baseline_predictions"] = baseline
    params: dict[str, str] = {}
    for name, value in given.items():
        if name in ARRAY_OPTIONS and not (name == "pos_weight" and np.ndim(value) == 0):
            array = as_array(value)
            members[name] = array.astype(str) if name == "classes" else array
        else:
            params[name] = _query_value(value)
    buffer = io.BytesIO()
    np.savez(buffer, **members)  # type: ignore[arg-type]
    headers = {"Content-Type": NPZ_MEDIA_TYPE, "Accept": NPZ_MEDIA_TYPE}
    return Request(path, buffer.getvalue(), headers, params)


def _same(value: Any, default: Any) -> bool:
    return type(value) is type(default) and bool(value == default)


def _jsonable(array: np.ndarray) -> Any:
    """orjson writes numeric arrays natively (C-contiguous, native byte order); anything else as lists."""
    if array.dtype.kind in "fiub" and array.dtype.isnative and array.dtype.itemsize in (1, 2, 4, 8):
        if array.dtype.kind == "f" and array.dtype != np.float64:
            array = array.astype(np.float64)  # float32 → float64 exactly, so JSON and NPZ agree
        return np.ascontiguousarray(array)
    return array.tolist()


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back as the same float
    return str(value)


def read_response(response: httpx.Response) -> Scores:
    """The scores of a 200 answer; a ``ProblemError`` for any other."""
    return read_answer(response.status_code, response.headers.get("content-type", ""), response.content)


def read_comparison(response: httpx.Response) -> Comparison:
    """The comparison of a 200 answer to ``/compare``; a ``ProblemError`` for any other."""
    npz = _is_npz_answer(response.status_code, response.headers.get("content-type", ""), response.content)
    return Comparison.from_npz(response.content) if npz else Comparison.from_json(response.content)


def read_answer(status: int, content_type: str, content: bytes) -> Scores:
    """The scores of a 200 answer; a ``ProblemError`` for any other."""
    return Scores.from_npz(content) if _is_npz_answer(status, content_type, content) else Scores.from_json(content)


def _is_npz_answer(status: int, content_type: str, content: bytes) -> bool:
    """Whether a 200 answer is NPZ (else JSON); a ``ProblemError`` for any other status."""
    media = content_type.split(";", 1)[0].strip().lower()
    if status == 200:
        return media == NPZ_MEDIA_TYPE
    document = None
    if media.endswith("json"):
        try:
            parsed = orjson.loads(content)
        except orjson.JSONDecodeError:
            parsed = None
        document = parsed if isinstance(parsed, dict) else None
    text = content[:200].decode("utf-8", "replace").strip()
    raise ProblemError.from_document(status, document, text or f"the service answered {status} with no body")
