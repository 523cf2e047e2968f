"""The floors under xent's figures: the least any server in this stack can do for the same request.

Two raw ASGI endpoints under the same uvicorn configuration as xent and the baseline (no FastAPI,
no middleware, no limits, no logs, no metrics):

- ``POST /echo?answer_bytes=N`` reads the whole body and sends N bytes back (made once, then
  reused): what the client, uvicorn and the loopback cost for a request of this size with an
  answer of that size, and nothing else. No server can answer faster. Under xent's protocol (as
  ``benchmarks/servers.floor_server`` runs it) it reads a body of declared length as xent does,
  from the socket straight into a buffer kept from request to request, ``DIRECT_READ_BYTES`` a read,
  a large one placed there before the echo is called (its lifespan state offers a placer, as xent's
  does: ``service/server/direct_body.py``); through ``receive`` otherwise.
- ``POST /token-logprobs?segment_bytes=S&threaded=0|1`` (issue 16) is the least an ASGI app in this
  stack does for a ``token_logprobs`` body, reading it through ``receive``: its rows parsed by simdjson
  into float64 (nulls written as a sentinel first), xent's core, the answer's summary. With
  ``segment_bytes`` 0 the rows are parsed once the body is in; with S > 0 *while it arrives*: every S
  bytes the complete rows (up to the last ``]``) are cut out and parsed, on the event loop between
  chunks, or with ``threaded=1`` on a second thread (simdjson holds the GIL while it parses). It trusts the body
  (``{"token_logprobs": [[...], ...]}``, numbers and nulls) and checks nothing: a floor, not a product.
- ``POST /v1/cross-entropy`` is xent's own work and nothing around it: the body parsed the
  fastest way this stack has (simdjson straight into float64 buffers for JSON; ``np.load`` for
  NPZ), then xent's core (``score_multiclass``), its answer (``answer_summary``), and xent's own
  encoder (JSON or NPZ, as ``Accept`` asks). What xent would take with an HTTP layer that cost
  nothing; the difference to xent is what its HTTP layer costs (limits, memory budget, slots,
  checks, request id, metrics, the log line).

Used by ``benchmarks/run.py`` (``make bench``) beside xent and the baseline, in the same rounds.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs

import numpy as np
import orjson
import simdjson
from starlette.responses import Response

from service.api.transport._json_sequences import null_starts
from service.api.transport.answer import Answer, encode, per_sample_arrays
from service.api.transport.body import BODY_PLACER_KEY, DIRECT_BODY_KEY, DIRECT_READ_BYTES, MAPPED_MIN_BYTES
from service.core import score_multiclass
from service.core.contract import NPZ_MEDIA_TYPE
from service.core.sequence_forms import Sequences
from service.core.sequences import score_sequences, sequence_summary
from service.core.summary import answer_summary

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_ANSWERS: dict[int, bytes] = {}


def _answer_of(size: int) -> bytes:
    if size not in _ANSWERS:
        _ANSWERS[size] = b"0" * size
    return _ANSWERS[size]


def _arrays(body: bytes, content_type: str) -> tuple[np.ndarray, np.ndarray]:
    """(labels, predictions) from a JSON or NPZ body, by the fastest route this stack offers."""
    if content_type.startswith(NPZ_MEDIA_TYPE):
        with np.load(io.BytesIO(body), allow_pickle=False) as archive:
            return archive["labels"], archive["predictions"]
    return parse_json(body)


def parse_json(body: bytes) -> tuple[np.ndarray, np.ndarray]:
    """``labels`` and ``predictions`` of a JSON body: one simdjson parse, each array exported as one buffer."""
    document: Any = simdjson.Parser().parse(body)
    labels = np.frombuffer(document["labels"].as_buffer(of_type="i"), dtype=np.int64).copy()
    rows = document["predictions"]
    flat = np.frombuffer(rows.as_buffer(of_type="d"), dtype=np.float64).copy()
    return labels, flat.reshape(len(rows), -1)


def pieces(json_body: bytes, npz_body: bytes, repetitions: int) -> dict[str, float]:
    """Seconds (median of ``repetitions``, in process, one thread) of the work any server must do besides the
    core: read each body into arrays (simdjson for JSON, ``np.load`` for NPZ) and encode the answer (xent's
    encoder, JSON and NPZ, per-sample values included)."""
    labels, predictions = _arrays(npz_body, NPZ_MEDIA_TYPE)
    result = score_multiclass(labels, predictions)
    summary = answer_summary(result, per_sample=True)
    arrays = per_sample_arrays(result.per_sample)
    calls: dict[str, Callable[[], object]] = {
        "read JSON": lambda: parse_json(json_body),
        "read NPZ": lambda: _arrays(npz_body, NPZ_MEDIA_TYPE),
        "encode JSON": lambda: encode(summary, arrays, result.scored, Answer(as_npz=False)),
        "encode NPZ": lambda: encode(summary, arrays, result.scored, Answer(as_npz=True)),
    }
    found = {}
    for name, call in calls.items():
        call()  # warm
        times = []
        for _ in range(repetitions):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        found[name] = sorted(times)[repetitions // 2]
    return found


def _score(body: bytes, content_type: str, accept: str) -> Response:
    labels, predictions = _arrays(body, content_type)
    result = score_multiclass(labels, predictions)
    summary = answer_summary(result, per_sample=True)
    answer = Answer(as_npz=NPZ_MEDIA_TYPE in accept)
    return encode(summary, per_sample_arrays(result.per_sample), result.scored, answer)


_SENTINEL = 8e88
_PIPELINE_PARSER = simdjson.Parser()
_PIPELINE_THREAD = ThreadPoolExecutor(1, thread_name_prefix="pipelined-parse")


def _parse_rows(text: bytearray | memoryview) -> tuple[np.ndarray, list[int]]:
    """Rows of numbers and nulls (``[[...], ...]``): flat float64, NaN for null, and each row's length. The nulls
    are found as xent finds them (memchr from one to the next while they are few: comparing every byte of a
    20 MB body, and its fresh 20 MB mask, cost several times more)."""
    data = np.frombuffer(text, dtype=np.uint8)
    owner = text.obj if isinstance(text, memoryview) else text
    offset = (
        0
        if owner is text
        else int(
            data.__array_interface__["data"][0] - np.frombuffer(owner, dtype=np.uint8).__array_interface__["data"][0]
        )
    )
    starts = null_starts(owner, offset, offset + data.shape[0])
    data[starts[:, None] + np.arange(4)] = np.frombuffer(b"8e88", dtype=np.uint8)
    document: Any = _PIPELINE_PARSER.parse(text)
    lengths = [len(row) for row in document]
    flat = np.frombuffer(document.as_buffer(of_type="d"), dtype=np.float64)
    document = None
    flat[flat == _SENTINEL] = np.nan
    return flat, lengths


async def _token_logprobs(receive: Receive, length: int, segment_bytes: int, threaded: bool) -> bytes:
    """The answer to a ``token_logprobs`` body of ``length`` bytes, its rows parsed ``segment_bytes`` at a time as
    it arrives (0: once it is in), on the event loop or (``threaded``) on a second thread.

    The body goes into one buffer of its length as it arrives. A segment is copied out (a few hundred kB, its
    brackets added); the last one (the whole body with ``segment_bytes`` 0) is parsed where it lies."""
    loop = asyncio.get_running_loop()
    parts: list[Awaitable[tuple[np.ndarray, list[int]]] | tuple[np.ndarray, list[int]]] = []

    def parse(text: bytearray | memoryview) -> None:
        parts.append(loop.run_in_executor(_PIPELINE_THREAD, _parse_rows, text) if threaded else _parse_rows(text))

    buffer = bytearray(length)
    view = memoryview(buffer)
    filled, before, more = 0, -1, True  # before: the byte before the next unparsed row (the field's '[' or a ',')
    while more:
        message = await receive()
        chunk, more = message.get("body", b""), message.get("more_body", False)
        view[filled : filled + len(chunk)] = chunk
        filled += len(chunk)
        if before < 0:  # '{"token_logprobs": [': the first '[' is the field's
            before = buffer.find(b"[", 0, filled)
        if more and before >= 0 and 0 < segment_bytes <= filled - before:
            cut = buffer.rfind(b"],", before, filled - 1)  # a row's end, with more rows after it
            if cut > before:
                parse(bytearray(b"[") + view[before + 1 : cut + 1] + b"]")
                before = cut + 1
    end = buffer.rfind(b"]", 0, filled)  # the field's own
    if buffer[before + 1 : end].strip(b", \n"):
        buffer[before] = ord("[")
        parse(view[before : end + 1])
    read = [await part if isinstance(part, Awaitable) else part for part in parts]
    flat = np.concatenate([values for values, _ in read]) if read else np.empty(0)
    offsets = np.concatenate([[0], np.cumsum([length for _, lengths in read for length in lengths])]).astype(np.int64)
    summary = sequence_summary(score_sequences(Sequences("token_logprobs", flat, offsets)))
    # The summary alone (no per-document arrays: a few kB less than xent sends, in the floor's favour).
    return orjson.dumps(summary, option=orjson.OPT_SERIALIZE_NUMPY)


#: The echo's buffer, kept from one body to the next (as xent keeps its memory map).
_ECHO_BUFFER = bytearray()


class _EchoPlacement:
    """The echo's place for a body read before it is called, as xent's ``KeptMapPlacer`` gives one: the kept buffer."""

    def __init__(self, view: memoryview) -> None:
        self.view = view

    def arrived(self, filled: int) -> None:
        pass

    def read_bytes(self) -> int:
        return DIRECT_READ_BYTES

    def drop(self) -> None:
        pass


class _EchoPlacer:
    """Places an ``/echo`` body in the kept buffer before the echo is called, as xent places a scoring route's."""

    head_bytes = 1024
    min_bytes = MAPPED_MIN_BYTES

    def __call__(self, scope: Scope, length: int) -> Callable[[bytes], _EchoPlacement] | None:
        return (lambda head: _EchoPlacement(_echo_buffer(length))) if scope["path"] == "/echo" else None


def _echo_buffer(length: int) -> memoryview:
    global _ECHO_BUFFER
    if len(_ECHO_BUFFER) < length:
        _ECHO_BUFFER = bytearray(length)
    return memoryview(_ECHO_BUFFER)[:length]


async def _echo(scope: Scope, receive: Receive, length: int) -> None:
    """Read the body as xent does (``DIRECT_BODY_KEY``, when the server offers it: placed before the echo is called
    if it is large, as xent's are), into the kept buffer."""
    direct = scope.get(DIRECT_BODY_KEY)
    if direct is not None and length:
        view = direct.placement.view if direct.placement is not None else _echo_buffer(length)
        if await direct.read_into(view, lambda filled: None, lambda: DIRECT_READ_BYTES):
            return
    await _read(receive)


async def _read(receive: Receive) -> bytes:
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The two floor endpoints, and ``GET /healthz`` for the benchmark's readiness check."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            scope["state"][BODY_PLACER_KEY] = _EchoPlacer()  # (xent's protocol reads it; others ignore it)
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    headers = {name.decode().lower(): value.decode() for name, value in scope["headers"]}
    if scope["path"] == "/token-logprobs":
        query = parse_qs(scope["query_string"].decode())
        segment_bytes, threaded = int(query.get("segment_bytes", ["0"])[0]), query.get("threaded", ["0"])[0] == "1"
        content = await _token_logprobs(receive, int(headers["content-length"]), segment_bytes, threaded)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": content})
        return
    if scope["path"] == "/echo":
        await _echo(scope, receive, int(headers.get("content-length", "0")))
        body = b""
    else:
        body = await _read(receive)
    if scope["path"] == "/echo":
        size = int(parse_qs(scope["query_string"].decode()).get("answer_bytes", ["0"])[0])
        content, media_type = _answer_of(size), "application/octet-stream"
    elif scope["path"] == "/v1/cross-entropy":
        # xent's own response object, sent as xent sends it (an NPZ answer goes out in parts).
        response = _score(body, headers.get("content-type", ""), headers.get("accept", ""))
        await response(scope, receive, send)
        return
    else:
        content, media_type = b"{}", "application/json"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", media_type.encode()), (b"content-length", str(len(content)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": content})
