"""The answer writer: what the client accepts (Accept, Accept-Encoding), then the result as JSON or NPZ, gzipped.

Both formats are written from the one summary the core's result gives (``ScoreResult.to_summary``).
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from fastapi import Request, Response

from service.core import ScoreResult
from service.core.contract import JSON_MEDIA_TYPE, NPZ_MEDIA_TYPE
from service.core.result import PerSample

#: Where the answer leaves its row count in the request's scope state, for the telemetry middleware.
ROWS_KEY = "scored_rows"


def wants_npz(request: Request) -> bool:
    """Whether the client asked for the binary answer (``Accept: application/x-npz``)."""
    return NPZ_MEDIA_TYPE in request.headers.get("accept", "").lower()


def accepts_gzip(request: Request) -> bool:
    """Whether Accept-Encoding allows gzip (``gzip`` or ``*`` with a non-zero q)."""
    for part in request.headers.get("accept-encoding", "").lower().split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip() in ("gzip", "*"):
            quality = params.strip().removeprefix("q=")
            return not quality or (quality.replace(".", "", 1).isdigit() and float(quality) > 0)
    return False


@dataclass(frozen=True)
class Answer:
    """How the client wants the answer: NPZ or JSON, and whether it may be gzip-compressed."""

    as_npz: bool = False
    gzip_min_bytes: int | None = None  # None: the client does not accept gzip
    #: The request's scope state, where the number of rows answered is left (see ROWS_KEY).
    exchange: dict[str, Any] | None = None

    @classmethod
    def for_request(cls, request: Request, gzip_min_bytes: int) -> Answer:
        """The answer format a request asks for (Accept and Accept-Encoding headers)."""
        exchange = request.scope.setdefault("state", {})
        return cls(wants_npz(request), gzip_min_bytes if accepts_gzip(request) else None, exchange)

    def response(self, content: bytes, media_type: str) -> Response:
        """``content`` as a response, gzip-compressed when large and accepted.

        Compressing here, in the worker thread that encoded the answer, keeps a
        multi-megabyte gzip off the event loop.
        """
        headers = {"Vary": "Accept-Encoding"}
        if self.gzip_min_bytes is not None and len(content) >= self.gzip_min_bytes:
            # Level 4: most of level 9's ratio on float text at a fraction of its time.
            content = zlib_gzip(content)
            headers["Content-Encoding"] = "gzip"
        return Response(content, media_type=media_type, headers=headers)


def zlib_gzip(content: bytes) -> bytes:
    """gzip-compress ``content`` at level 4."""
    compressor = zlib.compressobj(4, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return compressor.compress(content) + compressor.flush()


def encode(result: ScoreResult, *, per_sample: bool, extra: dict[str, Any], answer: Answer | None = None) -> Response:
    """The response for ``result``, as ``answer`` asks (JSON by default); ``extra`` adds top-level fields."""
    answer = answer or Answer()
    if answer.exchange is not None:
        answer.exchange[ROWS_KEY] = result.n
    body = result.to_summary(per_sample=per_sample, extra=extra)
    values = result.per_sample
    if answer.as_npz:
        return answer.response(_npz_bytes(body, result, per_sample), NPZ_MEDIA_TYPE)
    splice = per_sample and result.n > SPLICE_MIN_ROWS
    if per_sample and not splice:
        body["per_sample"] = {name: getattr(values, name) for name in _PER_SAMPLE}
    text = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    if not splice:
        return answer.response(text, JSON_MEDIA_TYPE)
    # The per-sample arrays are megabytes of text: written once each and put in place in one join,
    # rather than copied again by every layer (Fragment, then the whole document).
    # '"per_sample":null' occurs once: inside a JSON string its quotes would be escaped.
    at = text.index(_NO_PER_SAMPLE)
    parts = [text[:at], b'"per_sample":{', *_per_sample_parts(values), b"}", text[at + len(_NO_PER_SAMPLE) :]]
    return answer.response(b"".join(parts), JSON_MEDIA_TYPE)


_NO_PER_SAMPLE = b'"per_sample":null'
_PER_SAMPLE = ("cross_entropy", "kl_divergence", "entropy")
#: Answers of more rows than this have their per-sample arrays spliced in; smaller ones are one orjson call.
SPLICE_MIN_ROWS = 256


def _per_sample_parts(values: PerSample) -> list[bytes]:
    """``"cross_entropy":[...],"kl_divergence":[...],"entropy":[...]`` as pieces of JSON text.

    orjson writes float64 arrays directly (shortest round-trip digits), and writes NaN (an
    ignored row) and +inf (flagged by a NON_FINITE warning) as null, as the contract says.
    With hard labels KL is the very array CE is, and the entropy is all zeros: the one is
    written once and the other without formatting a number, the same bytes for less time.
    """
    written: dict[int, bytes] = {}
    parts: list[bytes] = []
    for name in _PER_SAMPLE:
        array = getattr(values, name)
        text = written.get(id(array))
        if text is None:
            text = written[id(array)] = _array_json(array)
        parts += [b"," if parts else b"", b'"' + name.encode() + b'":', text]
    return parts


def _array_json(array: np.ndarray) -> bytes:
    if array.ndim == 1 and array.dtype == np.float64 and array.size and not array.view(np.uint64).any():
        return b"[" + b"0.0," * (array.size - 1) + b"0.0]"  # every entry +0.0, bit for bit
    text: bytes = orjson.dumps(array, option=orjson.OPT_SERIALIZE_NUMPY)
    return text


def _npz_bytes(summary: dict[str, Any], result: ScoreResult, per_sample: bool) -> bytes:
    """An .npz with the per-sample float64 arrays (NaN on ignored rows, +inf kept) and ``summary`` (JSON text).

    The summary is the JSON answer with ``per_sample`` null; it is a 0-d string array, so
    ``str(np.load(f)["summary"])`` reads it without pickle.
    """
    arrays: dict[str, np.ndarray] = {"summary": np.array(orjson.dumps(summary).decode())}
    if per_sample:
        values = result.per_sample
        arrays |= {
            "cross_entropy": values.cross_entropy,
            "kl_divergence": values.kl_divergence,
            "entropy": values.entropy,
            "scored": result.scored,
        }
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()
