"""Bytes in, bytes out: read a bounded body (JSON or NPZ), decode it into a request
model, and encode a core ``ScoreResult`` as JSON or NPZ.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
import mmap
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import numpy as np
import orjson
from fastapi import Request, Response
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from service.api.errors import BodyValidationError, HttpProblem, QueryParameterError
from service.api.fastjson import decode_fast
from service.api.npz import NotNpy, NpzArchive, StreamedChecksums
from service.core import InvalidInput, ScoreResult
from service.core.result import PerSample

RequestModel = TypeVar("RequestModel", bound=BaseModel)

JSON_MEDIA_TYPE = "application/json"
NPZ_MEDIA_TYPE = "application/x-npz"
_MEDIA_HINT = (
    "send JSON with Content-Type: application/json (curl --json '{...}' does both), "
    "or a NumPy .npz archive with Content-Type: application/x-npz"
)

BodyKind = Literal["json", "npz"]


@dataclass
class Body:
    """A request body and the transport it came in."""

    kind: BodyKind
    data: bytes | bytearray | memoryview  # memoryview: a large body in its own memory map
    #: CRC-32s of .npz members computed while the body arrived: (data offset, length) → CRC.
    checksums: Mapping[tuple[int, int], int] = field(default_factory=dict)
    #: Its length in bytes (kept after ``release``).
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = len(self.data)

    def release(self) -> None:
        """Let go of the bytes (a large body's memory map is unmapped) once nothing else needs them."""
        data, self.data = self.data, b""
        if isinstance(data, memoryview):
            with contextlib.suppress(BufferError):  # something still views it: it goes when that does
                data.release()


def _body_kind(content_type: str | None) -> BodyKind:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == JSON_MEDIA_TYPE or (media.startswith("application/") and media.endswith("+json")):
        return "json"
    if media == NPZ_MEDIA_TYPE:
        return "npz"
    got = f"got {content_type!r}" if content_type else "no Content-Type was sent"
    raise HttpProblem(415, "Unsupported media type", f"{_MEDIA_HINT}; {got}", "unsupported-media-type")


def wants_npz(request: Request) -> bool:
    """Whether the client asked for the binary answer (``Accept: application/x-npz``)."""
    return NPZ_MEDIA_TYPE in request.headers.get("accept", "").lower()


def _too_large(max_bytes: int, what: str = "the request body") -> HttpProblem:
    return HttpProblem(
        413,
        "Payload too large",
        f"{what} is larger than the limit of {max_bytes} bytes (XENT_MAX_BODY_BYTES)",
        "too-large",
    )


class _Gunzip:
    """Streaming gzip decoding whose output is held to ``max_bytes`` (a gzip bomb stops there)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._decoder = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)

    def feed(self, data: bytes) -> bytes:
        """The bytes ``data`` decodes to; 413 past the limit, 400 if it is not gzip."""
        out: list[bytes] = []
        try:
            while data:
                # max_length: never inflate more than one byte past what the limit allows.
                piece = self._decoder.decompress(data, self.max_bytes - self.size + 1)
                self.size += len(piece)
                if self.size > self.max_bytes:
                    raise _too_large(self.max_bytes, "the decompressed request body")
                out.append(piece)
                data = self._decoder.unconsumed_tail
        except zlib.error as error:
            raise HttpProblem(400, "Malformed gzip", f"the body is not valid gzip: {error}", "malformed-gzip") from None
        return b"".join(out)

    def finish(self) -> None:
        """400 unless the gzip stream ended properly."""
        if not self._decoder.eof:
            raise HttpProblem(400, "Malformed gzip", "the gzip body is truncated", "malformed-gzip")


def _decoder_for(content_encoding: str | None, max_bytes: int) -> _Gunzip | None:
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return _Gunzip(max_bytes)
    if encoding == "identity":
        return None
    raise HttpProblem(
        415,
        "Unsupported media type",
        f"Content-Encoding {content_encoding!r} is not supported; send the body as is or gzip-compressed",
        "unsupported-media-type",
    )


async def read_body(request: Request, *, max_bytes: int, timeout: float) -> Body:
    """The (decompressed) body, after checking its media type and size.

    413 as soon as the declared, streamed or decompressed size passes ``max_bytes``,
    without reading the rest; 408 if the client takes longer than ``timeout`` seconds
    to send it (a slow client must not hold a worker forever).
    """
    kind = _body_kind(request.headers.get("content-type"))
    gunzip = _decoder_for(request.headers.get("content-encoding"), max_bytes)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    # Filled in place as chunks arrive (see _BodyBuffer), never a list of chunks joined at the end:
    # the join would hold the body twice at its peak.
    buffer = _BodyBuffer(int(declared) if declared is not None and declared.isdigit() and not gunzip else None, kind)
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_bytes:
                    raise _too_large(max_bytes)
                buffer.add(gunzip.feed(chunk) if gunzip else chunk)
    except TimeoutError:
        detail = f"the request body did not arrive within {timeout:g} seconds (XENT_BODY_TIMEOUT_SECONDS)"
        raise HttpProblem(408, "Request timeout", detail, "timeout", {"Connection": "close"}) from None
    except ClientDisconnect:
        # The client closed the connection before its body was complete. Nobody will read this answer,
        # but the log line and the metrics say what happened: a 400, not a 500 with a stack trace.
        of = f" of the {declared} it declared" if declared is not None else ""
        detail = f"the connection closed after {size} bytes of the body{of}"
        raise HttpProblem(400, "Incomplete body", detail, "incomplete-body") from None
    if gunzip:
        gunzip.finish()
    return Body(kind, buffer.contents(), buffer.checksums.found if buffer.checksums is not None else {})


#: A body declared at least this large is read into its own anonymous memory map.
MAPPED_MIN_BYTES = 1 << 20


class _BodyBuffer:
    """Where a body accumulates as it arrives.

    A large body whose length is declared goes into one private anonymous memory map of
    that length: no copies as it grows, pages are only touched (and counted as resident)
    as bytes arrive, the kernel may back it with huge pages (page faults are a large part
    of reading tens of megabytes), and the whole map goes back to the system as soon as
    the request is done with it. Anything else (small, gzip, no Content-Length) grows a
    bytearray in place.
    """

    def __init__(self, declared: int | None, kind: BodyKind) -> None:
        self._view: memoryview | None = None  # over the memory map, which it keeps alive
        self._bytes = bytearray()
        self._filled = 0
        #: An .npz's member checksums, computed as it arrives (large archives only).
        self.checksums: StreamedChecksums | None = None
        if declared is not None and declared >= MAPPED_MIN_BYTES:
            mapped = mmap.mmap(-1, declared, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            with contextlib.suppress(AttributeError, OSError):  # not on every platform
                mapped.madvise(mmap.MADV_HUGEPAGE)
            self._view = memoryview(mapped)
            self.checksums = StreamedChecksums() if kind == "npz" else None

    def add(self, chunk: bytes) -> None:
        end = self._filled + len(chunk)
        if self._view is not None and end <= len(self._view):
            self._view[self._filled : end] = chunk
            if self.checksums is not None:
                self.checksums.feed(self._view, end)
        else:
            if self._view is not None:  # more than declared (the HTTP parser does not let this happen)
                self._bytes = bytearray(self._view[: self._filled])
                self._view = self.checksums = None
            self._bytes += chunk
        self._filled = end

    def contents(self) -> bytearray | memoryview:
        if self._view is None:
            return self._bytes
        return self._view[: self._filled]


def accepts_gzip(request: Request) -> bool:
    """Whether Accept-Encoding allows gzip (``gzip`` or ``*`` with a non-zero q)."""
    for part in request.headers.get("accept-encoding", "").lower().split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip() in ("gzip", "*"):
            quality = params.strip().removeprefix("q=")
            return not quality or (quality.replace(".", "", 1).isdigit() and float(quality) > 0)
    return False


def decode(
    model: type[RequestModel], body: Body, query: Mapping[str, str], *, fast_json_min_bytes: int, max_bytes: int
) -> RequestModel:
    """The request model from a JSON body, or from an NPZ body plus query options.

    JSON bodies of at least ``fast_json_min_bytes`` try the fast path first; it gives way to
    the reference path for anything it cannot prove well-formed.
    """
    if body.kind == "npz":
        return _decode_npz(model, body.data, query, max_bytes, body.checksums)
    if query:
        name = next(iter(query))
        raise QueryParameterError(
            name, "options of a JSON request go in the body; query parameters are only for application/x-npz bodies"
        )
    _refuse_byte_order_mark(body.data)
    request = decode_fast(model, body.data) if len(body.data) >= fast_json_min_bytes else None
    if request is None:
        request = _decode_json(model, body.data)
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
            raise HttpProblem(400, "Malformed JSON", detail, "malformed-json")


def _decode_json(model: type[RequestModel], data: bytes | bytearray | memoryview) -> RequestModel:
    """Parse and validate a JSON body (400 if it is not JSON, 422 if it does not fit ``model``)."""
    if isinstance(data, memoryview):
        data = bytes(data)
    if not data.strip():
        raise HttpProblem(400, "Malformed JSON", "the body is empty", "malformed-json")
    try:
        return model.model_validate_json(data)
    except ValidationError as error:
        first = error.errors(include_url=False, include_input=False)[0]
        if first["type"] == "json_invalid":
            reason = str(first.get("ctx", {}).get("error", first["msg"]))
            raise HttpProblem(
                400, "Malformed JSON", f"the body is not valid JSON: {reason}", "malformed-json"
            ) from None
        if first["type"] == "model_type" and not first["loc"]:
            detail = "the body must be a JSON object with the request's fields"
            raise HttpProblem(422, "Invalid input", detail, "invalid-input") from None
        raise BodyValidationError(error, model) from None


#: How a zip archive starts: a local file header, or the end record of an empty archive (np.savez()).
#: A single .npy array (its own magic) gets a message of its own.
_NPY_MAGIC = b"\x93NUMPY"
_ARCHIVE_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06", _NPY_MAGIC)


def _malformed_npz(reason: str) -> HttpProblem:
    return HttpProblem(400, "Malformed NPZ", f"the body is not a readable .npz archive: {reason}", "malformed-npz")


def _decode_npz(
    model: type[RequestModel],
    data: bytes | bytearray | memoryview,
    query: Mapping[str, str],
    max_bytes: int,
    checksums: Mapping[tuple[int, int], int],
) -> RequestModel:
    """Arrays from the archive, options from the query; pickled objects are refused, never loaded."""
    members: frozenset[str] = getattr(model, "array_fields", frozenset())
    head = bytes(data[:64])
    if not head.startswith(_ARCHIVE_SIGNATURES):
        # np.load would try anything else as a pickle and say so ("contains pickled data"), which
        # misleads the usual sender: a JSON body sent with the NPZ content type.
        looks_like_json = head.lstrip()[:1] in (b"{", b"[")
        hint = "; it looks like JSON: send it with Content-Type: application/json" if looks_like_json else ""
        raise _malformed_npz(f"it does not start with a zip signature (PK\\x03\\x04), as np.savez writes{hint}")
    if head.startswith(_NPY_MAGIC):
        raise _malformed_npz("it holds a single .npy array; send an .npz with named members (np.savez)")
    fields: dict[str, Any] = {}
    try:
        archive = NpzArchive(data, checksums)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise _malformed_npz(str(error) or type(error).__name__) from None
    with archive:
        # A compressed member can inflate far past the body it came in: hold the archive's
        # uncompressed size to the body limit before reading any member.
        if sum(int(entry.file_size) for entry in archive.infolist()) > max_bytes:
            raise _too_large(max_bytes, "the uncompressed archive")
        for name, entry in archive.members():
            if name not in members:
                allowed = ", ".join(sorted(members))
                raise InvalidInput(name, f"unexpected member {name!r} in the archive; members are: {allowed}")
            try:
                fields[name] = archive.read(entry)
            except NotNpy:
                raise _malformed_npz(f"member {name!r} is not a .npy array (np.save format)") from None
            except ValueError as error:
                if "allow_pickle" in str(error):
                    raise InvalidInput(
                        name, "holds Python objects (pickled); only numeric and string arrays are accepted"
                    ) from None
                raise _malformed_npz(f"member {name!r}: {error}") from None
            except (OSError, EOFError, zipfile.BadZipFile) as error:
                raise _malformed_npz(f"member {name!r}: {error}") from None
    for name in ("classes", "pos_weight"):
        if name in fields and isinstance(fields[name], np.ndarray) and fields[name].dtype.kind in "USf":
            # Names become a list of str; a 0-d pos_weight becomes a number.
            value = fields[name]
            fields[name] = value.tolist() if value.ndim else value.item()
    options: dict[str, Any] = dict(query)
    # Numbers in the query stay strings if they do not parse, and validation then names them.
    if options.get("epsilon", "auto") != "auto":
        with contextlib.suppress(ValueError):
            options["epsilon"] = float(options["epsilon"])
    if "pos_weight" in options and "pos_weight" not in fields:  # one number fits in the query
        with contextlib.suppress(ValueError):
            options["pos_weight"] = float(options["pos_weight"])
    misplaced = sorted(name for name in members & options.keys() if isinstance(options[name], str))
    if misplaced:
        raise QueryParameterError(
            misplaced[0], "is an array: send it as a member of the .npz archive, not in the query"
        )
    try:
        return model.model_validate({**options, **fields}, strict=False)
    except ValidationError as error:
        raise BodyValidationError(error, model, from_query=True) from None


def _number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def _summary(result: ScoreResult, per_sample: bool, extra: dict[str, Any]) -> dict[str, Any]:
    mean, sums = result.mean, result.sum
    return {
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


@dataclass(frozen=True)
class Answer:
    """How the client wants the answer: NPZ or JSON, and whether it may be gzip-compressed."""

    as_npz: bool = False
    gzip_min_bytes: int | None = None  # None: the client does not accept gzip

    @classmethod
    def for_request(cls, request: Request, gzip_min_bytes: int) -> Answer:
        """The answer format a request asks for (Accept and Accept-Encoding headers)."""
        return cls(wants_npz(request), gzip_min_bytes if accepts_gzip(request) else None)

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
    body = _summary(result, per_sample, extra)
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
