"""The answer writer: what the client accepts (Accept, Accept-Encoding), then the result as JSON or NPZ, compressed
when the policy (``XENT_COMPRESSION``) says it pays.

Both formats are written from the one summary the core builds (``core.summary.answer_summary``, or
``service.core.summary.comparison_summary``) and the per-sample arrays beside it.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import orjson
import zstandard
from fastapi import Request, Response
from starlette.types import Receive, Scope, Send

from service.api.transport.npz_writer import npz_parts
from service.core.contract import JSON_MEDIA_TYPE, NPZ_MEDIA_TYPE
from service.core.result import PerSample
from service.settings import Compression

#: The content codings an answer can be written in (besides as is).
Coding = Literal["zstd", "gzip"]

#: Where the answer leaves its row count in the request's scope state, for the telemetry middleware.
ROWS_KEY = "scored_rows"


def wants_npz(request: Request) -> bool:
    """Whether the client asked for the binary answer (``Accept: application/x-npz``)."""
    return NPZ_MEDIA_TYPE in request.headers.get("accept", "").lower()


def accepted_codings(accept_encoding: str) -> dict[str, float]:
    """Each content coding of an Accept-Encoding header with its q-value (1 when it has none; 0 for a malformed one).

    >>> accepted_codings("gzip, deflate, zstd;q=0.5, br;q=0")
    {'gzip': 1.0, 'deflate': 1.0, 'zstd': 0.5, 'br': 0.0}
    """
    codings: dict[str, float] = {}
    for part in accept_encoding.lower().split(","):
        coding, _, params = part.partition(";")
        quality = params.strip().removeprefix("q=").strip()
        try:
            codings[coding.strip()] = float(quality) if quality else 1.0
        except ValueError:
            codings[coding.strip()] = 0.0
    return codings


def chosen_coding(accept_encoding: str, compression: Compression) -> Coding | None:
    """The content coding an answer may be written in, as the policy allows and the client accepts; None: as is.

    ``off`` never compresses. ``zstd`` answers in zstd when the client accepts it (``zstd`` or ``*``
    with a non-zero q). ``auto`` does too, else gzip when the client accepts that. zstd comes first
    whatever the client's q-values: at level 1 it writes about the same ratio as gzip at level 1
    for several times less CPU (figures in benchmarks/RESULTS.md), and its cost is the server's.
    """
    if compression == "off" or not accept_encoding:
        return None
    codings = accepted_codings(accept_encoding)
    anything = codings.get("*", 0.0)
    for coding in _PREFERRED[compression]:
        if codings.get(coding, anything) > 0:
            return coding
    return None


#: The codings each policy may use, in the server's order of preference.
_PREFERRED: dict[Compression, tuple[Coding, ...]] = {"off": (), "zstd": ("zstd",), "auto": ("zstd", "gzip")}


@dataclass(frozen=True)
class Answer:
    """How the client wants the answer: NPZ or JSON, and the content coding a large JSON answer may be written in."""

    as_npz: bool = False
    coding: Coding | None = None  # None: as is (compression off, or the client accepts none the policy allows)
    compression_min_bytes: int = 0
    #: The request's scope state, where the number of rows answered is left (see ROWS_KEY).
    exchange: dict[str, Any] | None = None

    @classmethod
    def for_request(cls, request: Request, compression: Compression, compression_min_bytes: int) -> Answer:
        """The answer format a request asks for (Accept and Accept-Encoding headers), as the policy allows."""
        exchange = request.scope.setdefault("state", {})
        as_npz = wants_npz(request)
        # An NPZ answer is float64 arrays: compressing them costs time and saves next to nothing.
        coding = None if as_npz else chosen_coding(request.headers.get("accept-encoding", ""), compression)
        return cls(as_npz, coding, compression_min_bytes, exchange)

    def response(self, content: bytes, media_type: str) -> Response:
        """``content`` as a response, compressed when the policy and the client allow it and it is large enough.

        Compressing here, in the worker thread that encoded the answer, keeps it off the event loop.
        ``Vary: Accept-Encoding`` either way: the answer depends on that header whenever compression is on.
        """
        headers = {"Vary": "Accept-Encoding"}
        if self.coding is not None and len(content) >= self.compression_min_bytes:
            content = _COMPRESSORS[self.coding](content)
            headers["Content-Encoding"] = self.coding
        return Response(content, media_type=media_type, headers=headers)


def zstd_compress(content: bytes) -> bytes:
    """zstd-compress ``content`` at level 1, the fastest regular level: higher ones cost more time than they save."""
    return zstandard.ZstdCompressor(level=1).compress(content)


def gzip_compress(content: bytes) -> bytes:
    """gzip-compress ``content`` at level 1: on float text nearly the ratio of higher levels, for less of their time."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return compressor.compress(content) + compressor.flush()


_COMPRESSORS: dict[Coding, Callable[[bytes], bytes]] = {"zstd": zstd_compress, "gzip": gzip_compress}


def encode(
    summary: dict[str, Any],
    per_sample: Mapping[str, np.ndarray] | None,
    scored: np.ndarray | None,
    answer: Answer | None = None,
) -> Response:
    """The response for an answer's ``summary`` (built by the core, ``per_sample`` null in it) and its per-sample
    arrays (None: not asked for), as ``answer`` asks (JSON by default). ``scored`` marks the rows scored: an NPZ
    answer carries it beside the arrays."""
    answer = answer or Answer()
    if answer.exchange is not None:
        answer.exchange[ROWS_KEY] = summary["n"] if "n" in summary else summary["n_sequences"]
    if answer.as_npz:
        # Never compressed (see Answer.for_request), and sent in its parts: the arrays as the buffers they are.
        return PartsResponse(_npz_parts(summary, per_sample, scored), NPZ_MEDIA_TYPE, {"Vary": "Accept-Encoding"})
    splice = per_sample is not None and summary["n"] > SPLICE_MIN_ROWS
    if per_sample is not None and not splice:
        summary = {**summary, "per_sample": dict(per_sample)}
    text = orjson.dumps(summary, option=orjson.OPT_SERIALIZE_NUMPY)
    if per_sample is None or not splice:
        return answer.response(text, JSON_MEDIA_TYPE)
    # The per-sample arrays are megabytes of text: written once each and put in place in one join,
    # rather than copied again by every layer (Fragment, then the whole document).
    # '"per_sample":null' occurs once: inside a JSON string its quotes would be escaped.
    at = text.index(_NO_PER_SAMPLE)
    parts = [text[:at], b'"per_sample":{', *_per_sample_parts(per_sample), b"}", text[at + len(_NO_PER_SAMPLE) :]]
    return answer.response(b"".join(parts), JSON_MEDIA_TYPE)


def per_sample_arrays(values: PerSample, gradient: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """A scoring answer's per-sample arrays by wire name (with hard labels, KL is the very CE array), and the
    ``gradient`` when one was asked for."""
    arrays = {name: getattr(values, name) for name in _PER_SAMPLE}
    return arrays if gradient is None else {**arrays, "gradient": gradient}


_NO_PER_SAMPLE = b'"per_sample":null'
_PER_SAMPLE = ("cross_entropy", "kl_divergence", "entropy")
#: Answers of more rows than this have their per-sample arrays spliced in; smaller ones are one orjson call.
SPLICE_MIN_ROWS = 256


def _per_sample_parts(arrays: Mapping[str, np.ndarray]) -> list[bytes]:
    """``"cross_entropy":[...],"kl_divergence":[...],"entropy":[...]`` (or a comparison's ``"difference":[...]``)
    as pieces of JSON text.

    orjson writes float64 arrays directly (shortest round-trip digits), and writes NaN (an
    ignored row) and +inf (flagged by a NON_FINITE warning) as null, as the contract says.
    With hard labels KL is the very array CE is, and the entropy is all zeros: the one is
    written once and the other without formatting a number, the same bytes for less time.
    """
    written: dict[int, bytes] = {}
    parts: list[bytes] = []
    for name, array in arrays.items():
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


def _npz_parts(
    summary: dict[str, Any], per_sample: Mapping[str, np.ndarray] | None, scored: np.ndarray | None
) -> list[bytes | memoryview]:
    """An .npz with the per-sample float64 arrays (NaN on ignored rows, +inf kept), ``scored``, and ``summary``
    (JSON text).

    The summary is the JSON answer with ``per_sample`` null; it is a 0-d string array, so
    ``str(np.load(f)["summary"])`` reads it without pickle.
    """
    arrays: dict[str, np.ndarray] = {"summary": np.array(orjson.dumps(summary).decode())}
    if per_sample is not None:
        arrays |= per_sample if scored is None else {**per_sample, "scored": scored}
    return npz_parts(arrays)


class PartsResponse(Response):
    """A response whose body is ``parts``, sent in order with their total as Content-Length: a large NPZ answer's
    arrays go out as the buffers they are, never joined into one more copy of the whole answer (``body`` is empty)."""

    def __init__(self, parts: list[bytes | memoryview], media_type: str, headers: Mapping[str, str]) -> None:
        self.parts = parts
        super().__init__(b"", media_type=media_type, headers=dict(headers))
        self.headers["content-length"] = str(sum(len(part) for part in parts))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        last = len(self.parts) - 1
        for index, part in enumerate(self.parts):
            await send({"type": "http.response.body", "body": part, "more_body": index < last})
