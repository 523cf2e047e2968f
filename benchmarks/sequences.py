"""Issue 16's speed targets: per-token log-probabilities from model servers, end to end.

    .venv/bin/python -m benchmarks.sequences            # prints the section
    .venv/bin/python -m benchmarks.sequences --write    # and rewrites its own section of RESULTS.md

- **token_logprobs JSON**: 1,000 sequences × 1,000 tokens (the first of each null, as a server's echo gives
  it) to ``POST /v1/sequence-cross-entropy`` of ``xent serve``, against the same body to the plain FastAPI +
  Pydantic endpoint of ``benchmarks/baseline_app.py`` (``list[list[float | None]]``, the sums in Python
  loops): at least 5× faster.
- **completions JSON**: the same log-probabilities as 1,000 vLLM completions ``logprobs`` objects (tokens,
  token_logprobs, text_offset, top_logprobs with one entry a position): at least 3× faster than the baseline.
- **NPZ**: 10⁷ tokens (10,000 sequences × 1,000) as a flat float64 ``token_logprobs`` with
  ``sequence_lengths``, end to end, within 3× of the in-process core scoring the same arrays.

Bodies are full precision (``json.dumps`` of float64). The figure each target is judged on is
``httpx.Client().post(url, content=body)`` with default headers, as users run it; ``requests.Session().post`` and
httpx fed the body in 1 MiB pieces (dodging httpcore's copy of the unsent rest after every send) are extra rows, and
for NPZ so are ``httpx.AsyncClient`` given one ``bytes`` and given 1 MiB pieces (as xent's own ``AsyncClient`` sends
a large body). Every answer's token cross-entropy is checked against a direct sum. In the same rounds the floors of
``benchmarks/floor_app.py`` are measured, as for issue 13: *transport only* (``/echo``: the body read, an answer of
xent's size sent back), and, in process, the fastest parse of each body in this stack (simdjson into float64
buffers; for completions, of each object the log-probabilities into float64 and the tokens as simdjson writes them;
``np.load``) and xent's core (for completions, what xent does beyond that parse: the tokens' UTF-8 byte counts from
their text): a target whose budget (baseline ÷ required) is below transport + parse + core cannot be met by any
server in this stack. Over ~300 lines: one benchmark, its floors and its section, read together.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import io
import json
import math
import mmap
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import simdjson

from benchmarks import machine, report
from benchmarks.real_clients import Client, HttpxClient, Reply, RequestsClient
from benchmarks.servers import Server, baseline_server, floor_server, xent_server
from service.client.wire import Request as WireRequest

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
ROUTE = "/v1/sequence-cross-entropy"
ROUNDS = 5
#: Token texts of the completions form: byte-level BPE pieces, a few multi-byte.
VOCABULARY = (" the", " of", ",", " and", " to", ".", " in", " a", " is", " that", "ing", " on", "é", " über", "\n")


@dataclass(frozen=True)
class Corpus:
    """S sequences × T log-probabilities from a fixed seed (natural logs ≤ 0; the first of each sequence null)."""

    sequences: int
    tokens: int
    seed: int = 20260516

    @cached_property
    def values(self) -> np.ndarray:
        """S × T float64 log-probabilities, column 0 the position without one."""
        rng = np.random.default_rng(self.seed)
        return -rng.exponential(2.5, size=(self.sequences, self.tokens))

    @cached_property
    def expected_cross_entropy(self) -> float:
        """Σnll/Σtokens in nats over every position but the first of each sequence."""
        scored = self.values[:, 1:]
        return float(-scored.sum() / scored.size)

    def token_logprobs_body(self) -> bytes:
        rows = [[None, *row[1:].tolist()] for row in self.values]
        return json.dumps({"token_logprobs": rows}).encode()

    def completions_body(self) -> bytes:
        rng = np.random.default_rng(self.seed + 1)
        picks = rng.integers(0, len(VOCABULARY), size=self.values.shape)
        objects = []
        for row, pick in zip(self.values, picks, strict=True):
            tokens = [VOCABULARY[i] for i in pick.tolist()]
            offsets = np.concatenate([[0], np.cumsum([len(token) for token in tokens])[:-1]]).tolist()
            logprobs = [None, *row[1:].tolist()]
            top = [None, *({token: value} for token, value in zip(tokens[1:], logprobs[1:], strict=True))]
            objects.append({"tokens": tokens, "token_logprobs": logprobs, "text_offset": offsets, "top_logprobs": top})
        return json.dumps({"completions": objects}).encode()

    def npz_arrays(self) -> dict[str, np.ndarray]:
        """The flat NPZ members: every position with a log-probability (the null first ones left out)."""
        scored = np.ascontiguousarray(self.values[:, 1:])
        lengths = np.full(self.sequences, scored.shape[1], dtype=np.int64)
        return {"token_logprobs": scored.reshape(-1), "sequence_lengths": lengths}

    def npz_body(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, **self.npz_arrays())  # type: ignore[arg-type]
        return buffer.getvalue()

    def expected_npz_cross_entropy(self) -> float:
        return self.expected_cross_entropy


def _cross_entropy(content: bytes, server: str) -> float:
    """The token cross-entropy of an answer (xent: ``token.cross_entropy``; the baseline the same)."""
    if content[:2] == b"PK":
        with np.load(io.BytesIO(content), allow_pickle=False) as archive:
            answer = json.loads(str(archive["summary"]))
    else:
        answer = json.loads(content)
    return float(answer["token"]["cross_entropy"])


@dataclass(frozen=True)
class Request:
    """One request to time: the server, the path, the body, its headers and the expected cross-entropy."""

    name: str
    server: Server
    body: bytes
    headers: dict[str, str]
    expected: float | None  # None: an echo, whose answer is checked by its size
    path: str = ROUTE


class HttpxPieces(HttpxClient):
    """httpx with the body in 1 MiB pieces and the Content-Length of the whole, as xent's ``Client`` sends a large
    body (``service.client.wire.Request.pieces``): the same request on the wire, without httpcore's copy of the
    unsent rest after every ``send``."""

    name = "httpx, 1 MiB pieces"

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Reply:
        pieces, whole = WireRequest(url, body, headers, {}).pieces()
        started = time.perf_counter()
        response = self.client.post(url, content=pieces, headers=whole)
        content = response.content
        return Reply(response.status_code, content, len(content), "", time.perf_counter() - started)


class AsyncHttpx:
    """``httpx.AsyncClient()`` (on an event loop of its own), given the body as one ``bytes``: asyncio's transport
    keeps a copy of what the first ``send`` left. ``pieces``: in 1 MiB pieces with the whole Content-Length, as
    xent's ``AsyncClient`` sends a large body (``service.client.wire.Request.async_pieces``)."""

    def __init__(self, pieces: bool = False) -> None:
        self.pieces = pieces
        self.name = "httpx AsyncClient, 1 MiB pieces" if pieces else "httpx AsyncClient"
        self.loop = asyncio.new_event_loop()
        self.client = httpx.AsyncClient(timeout=600.0)
        self.accept_encoding = self.client.headers["accept-encoding"]

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> Reply:
        sent, sent_headers = WireRequest(url, body, headers, {}).async_pieces() if self.pieces else (body, headers)
        started = time.perf_counter()
        response = await self.client.post(url, content=sent, headers=sent_headers)
        content = response.content
        return Reply(response.status_code, content, len(content), "", time.perf_counter() - started)

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Reply:
        return self.loop.run_until_complete(self._post(url, body, headers))

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()


class Httpx2:
    """``httpx2.Client()`` (a benchmark extra: pydantic's fork of httpx, the same API), given the body as one
    ``bytes`` as the judged client is: its ``httpcore2`` goes on after a partial ``send`` with a ``memoryview`` of
    the unsent rest, where httpcore 1.0.9 copies it (encode/httpcore#1029, fixed in pydantic/httpx2#954)."""

    name = "httpx2"

    def __init__(self) -> None:
        import httpx2

        self.client = httpx2.Client(timeout=600.0)
        self.accept_encoding = self.client.headers["accept-encoding"]

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Reply:
        started = time.perf_counter()
        response = self.client.post(url, content=body, headers=headers)
        content = response.content
        return Reply(response.status_code, content, len(content), "", time.perf_counter() - started)

    def close(self) -> None:
        self.client.close()


#: Clients measured on the NPZ target only (extra rows): what an asynchronous pipeline sees, and httpx's API with
#: httpcore's copy of the unsent rest fixed.
NPZ_ONLY = frozenset({"httpx AsyncClient", "httpx AsyncClient, 1 MiB pieces", "httpx2"})


def _post(client: Client, request: Request) -> Reply:
    """Send the request, check the answer, and return it; then wait until the server is idle (``Server.settle``: the
    baseline frees gigabytes of Python objects after it answers)."""
    reply = client.post(request.server.url + request.path, request.body, request.headers)
    request.server.settle()
    if reply.status != 200:
        raise RuntimeError(f"{request.name}: {reply.status} {reply.content[:300]!r}")
    if request.expected is not None:
        got = _cross_entropy(reply.content, request.server.name)
        if not math.isclose(got, request.expected, rel_tol=1e-9):
            raise RuntimeError(f"{request.name}: token cross-entropy {got!r}, expected {request.expected!r}")
    return reply


def _note(times: dict[tuple[str, str, str], list[float]], key: tuple[str, str, str], reply: Reply) -> None:
    """Add a timed reply to ``times``; and, when its client traced it (the judged one), the parts of its latency:
    until the client had sent the last byte (``SENT``), the client thread's CPU until then (``SENDING_CPU``), and the
    server's answer after it (``AFTER``)."""
    form, client, name = key
    times.setdefault(key, []).append(reply.seconds)
    if reply.sent_seconds is not None and reply.sending_cpu_seconds is not None:
        times.setdefault((form, client, f"{name} {SENT}"), []).append(reply.sent_seconds)
        times.setdefault((form, client, f"{name} {SENDING_CPU}"), []).append(reply.sending_cpu_seconds)
        times.setdefault((form, client, f"{name} {AFTER}"), []).append(reply.seconds - reply.sent_seconds)


#: The parts of a traced latency (``_note``), by the names they are kept under after the server's.
SENT, SENDING_CPU, AFTER = "sent", "sending CPU", "after the last byte"


def _core_of(npz_body: bytes) -> Callable[[], object]:
    """The in-process core on the arrays of ``npz_body`` (read once, outside the time): what the service does to them
    between decoding and encoding, and what the NPZ target divides by."""
    from service.core.sequence_forms import flat_sequences
    from service.core.sequences import score_sequences, sequence_summary

    values, lengths = _read_npz(npz_body)
    return lambda: sequence_summary(score_sequences(flat_sequences(values, lengths)))


#: The in-process core timed in the NPZ rounds (``measure``), kept beside the servers' requests.
CORE = "core"


def _median_seconds(function: Callable[[], object], repeat: int) -> float:
    function()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


#: One parser for every parse in process, its buffers warm after the first: the fastest way, as the server keeps one.
_PARSER = simdjson.Parser()


def _read_token_logprobs(field: bytearray) -> tuple[np.ndarray, np.ndarray]:
    """The fastest parse of the ``token_logprobs`` body here: simdjson, about 1 MiB of whole rows at a time (its
    copy, index and tape then stay in the cache: faster than the whole field at once), each piece's rows straight
    into a float64 buffer, and the rows' lengths. ``field`` is the field's text with its nulls already written as
    a number (``_sentinels``): that writing is left out of the time, in the floor's favour."""
    from service.api.transport._json_sequences import _pieces

    read = _pieces(field, np.frombuffer(field, dtype=np.uint8), field, 0)
    if read is None:
        raise RuntimeError("the token_logprobs body does not parse")
    flat, lengths, _ = read  # the sentinels already NaN
    return flat, np.array(lengths, dtype=np.int64)


def _sentinels(body: bytes) -> bytearray:
    """The ``token_logprobs`` field's text with every null written as ``8e88`` (as long; a number the parse can
    put in a float buffer)."""
    return bytearray(body[body.index(b"[") : body.rindex(b"]") + 1].replace(b"null", b"8e88"))


def _read_completions(body: bytes) -> tuple[np.ndarray, list[bytes], list[int]]:
    """The fastest parse of the completions body here: simdjson, and of each object what xent reads of it, its
    log-probabilities into float64 and its tokens as simdjson writes them (no Python string per token)."""
    from service.api.transport._json_sequences import completion_parts

    document: Any = _PARSER.parse(body)
    try:
        parts = completion_parts(document["completions"])
    finally:
        document = None
    if parts is None:
        raise RuntimeError("the completions body does not take xent's fast path")
    return parts


def _read_npz(body: bytes) -> tuple[np.ndarray, np.ndarray]:
    with np.load(io.BytesIO(body), allow_pickle=False) as archive:
        return archive["token_logprobs"], archive["sequence_lengths"]


def in_process(bodies: dict[str, bytes], repeat: int = ROUNDS) -> dict[str, float]:
    """Seconds of the fastest parse of each body, and of xent's core on what that parse gives (reading the form,
    scoring, the answer)."""
    from service.api.transport._json_sequences import completion_sequences
    from service.core.sequence_forms import Sequences, flat_sequences, read_form
    from service.core.sequences import score_sequences, sequence_summary

    def rows(read: tuple[np.ndarray, np.ndarray]) -> Sequences:
        """The Sequences the fast path builds (nulls as NaN: flat_sequences, the NPZ reader, refuses them)."""
        return Sequences("token_logprobs", read[0], np.concatenate([[0], np.cumsum(read[1])]))

    reads: dict[str, Callable[[bytes], Any]] = {
        "token_logprobs": lambda body: _read_token_logprobs(written),
        "completions": _read_completions,
        "npz": _read_npz,
    }
    forms: dict[str, Callable[[Any], Any]] = {
        "token_logprobs": rows,
        # The tokens' byte counts from their text: what xent does beyond the parse.
        "completions": lambda read: read_form({"completions": completion_sequences(*read)}),
        "npz": lambda read: flat_sequences(*read),
    }
    written = _sentinels(bodies["token_logprobs"])
    figures = {}
    for form, read in reads.items():
        body, parsed = bodies[form], read(bodies[form])
        figures[f"read {form}"] = _median_seconds(lambda read=read, body=body: read(body), repeat)  # type: ignore[misc]
        to_form = forms[form]
        figures[f"core {form}"] = _median_seconds(
            lambda to_form=to_form, parsed=parsed: sequence_summary(score_sequences(to_form(parsed))),  # type: ignore[misc]
            repeat,
        )
    return figures


#: The extra measurement of xent's requests back to back, without the baseline's in between.
ALONE = "xent alone"

#: The least servers for the ``token_logprobs`` body in ``benchmarks/floor_app.py`` (``/token-logprobs``, its query):
#: the rows parsed once the body is in, or while it arrives, every 256 KiB or 1 MiB, on the event loop or a second
#: thread. Measured with the judged client in the same rounds.
LEAST_SERVERS = ("segment_bytes=0", "segment_bytes=262144", "segment_bytes=1048576", "segment_bytes=1048576&threaded=1")

#: The targets: the form, the bound, and whether it is a speed-up over the baseline (else a ratio to the core).
TARGETS = (("token_logprobs", 5.0, True), ("completions", 3.0, True), ("npz", 3.0, False))


#: The fresh memory ``fault_seconds`` faults in: the NPZ body's size.
FAULT_BYTES = 80_000_000


def fault_seconds(tries: int = 3) -> float:
    """The least seconds, of ``tries``, to fault in a fresh anonymous map of ``FAULT_BYTES`` (NumPy fills it; small
    pages, as a Python bytes object of that size gets): how fast this machine gives a process new memory, which
    httpcore's copy of an unsent rest is. It moves from hour to hour on this machine, and the NPZ figure with it."""
    times = []
    for _ in range(tries):
        with mmap.mmap(-1, FAULT_BYTES, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS) as mapped:
            started = time.perf_counter()
            view = np.frombuffer(mapped, dtype=np.uint8)
            view.fill(1)
            times.append(time.perf_counter() - started)
            del view
    return min(times)


def measure(rounds: int = ROUNDS) -> dict[str, Any]:
    """Median seconds of each request per client end to end (interleaved round by round), the floors, the core."""
    json_corpus, npz_corpus = Corpus(1_000, 1_001), Corpus(10_000, 1_001, seed=7)
    json_headers = {"content-type": "application/json"}
    # Only the Content-Type a user must set: with httpx's default Accept (*/*) the answer is JSON, as users get it.
    npz_headers = {"content-type": "application/x-npz"}
    log_dir = Path(tempfile.mkdtemp(prefix="xent-sequences-"))
    xent, baseline = xent_server(log_dir, max_body_bytes=1 << 30), baseline_server(log_dir)
    floor = floor_server(log_dir)
    bodies = {
        "token_logprobs": json_corpus.token_logprobs_body(),
        "completions": json_corpus.completions_body(),
        "npz": npz_corpus.npz_body(),
    }
    expected = {"token_logprobs": json_corpus.expected_cross_entropy, "completions": json_corpus.expected_cross_entropy}
    expected["npz"] = npz_corpus.expected_npz_cross_entropy()
    times: dict[tuple[str, str, str], list[float]] = {}
    load_before = os.getloadavg()[0]
    faults_before = fault_seconds()
    # The judged client notes when it has sent the last byte, and its own CPU until then (``HttpxClient(trace=True)``).
    clients: list[Client] = [HttpxClient(trace=True), HttpxPieces()]
    with contextlib.suppress(ImportError):  # requests is a benchmark extra (benchmarks/requirements.txt)
        clients.append(RequestsClient())
    clients += [AsyncHttpx(), AsyncHttpx(pieces=True)]
    with contextlib.suppress(ImportError):  # httpx2 too
        clients.append(Httpx2())
    npz_core = _core_of(bodies["npz"])
    servers = [xent, baseline, floor]
    for server in servers:
        server.start()
    try:
        # Per target and client, xent, the baseline and the echo side by side round by round, and the targets one
        # after the other: a 64 MB body parsed just before would otherwise weigh on the next request.
        for form, _, over_baseline in TARGETS:
            headers = npz_headers if form == "npz" else json_headers
            for client in clients:
                if form != "npz" and client.name in NPZ_ONLY:
                    continue
                xent_request = Request("xent", xent, bodies[form], headers, expected[form])
                answer_bytes = len(_post(client, xent_request).content)  # warm-up, checked
                group = [
                    xent_request,
                    Request("echo", floor, bodies[form], headers, None, f"/echo?answer_bytes={answer_bytes}"),
                ]
                if over_baseline:
                    group.append(Request("baseline", baseline, bodies[form], headers, expected[form]))
                if form == "token_logprobs" and client is clients[0]:
                    group += [
                        Request(
                            f"least {query}", floor, bodies[form], headers, expected[form], f"/token-logprobs?{query}"
                        )
                        for query in LEAST_SERVERS
                    ]
                for request in group[1:]:
                    _post(client, request)
                for _ in range(rounds):
                    for request in group:
                        _note(times, (form, client.name, request.name), _post(client, request))
                    if form == "npz":  # the core beside xent's requests, in the same rounds: the target's divisor
                        # (once to warm it, as repeated runs are, then timed once)
                        times.setdefault((form, client.name, CORE), []).append(_median_seconds(npz_core, 1))
                if over_baseline and client is clients[0]:
                    # xent's requests back to back, with no baseline request in between: the baseline builds and
                    # frees gigabytes of Python objects, after which the next request's fresh pages fault in slowly.
                    for _ in range(rounds):
                        times.setdefault((form, client.name, ALONE), []).append(_post(client, xent_request).seconds)
    finally:
        for client in clients:
            client.close()
        for server in servers:
            server.stop()
    figures: dict[str, Any] = {"e2e": {key: statistics.median(values) for key, values in times.items()}}
    figures["clients"] = [client.name for client in clients]
    figures["load"] = (load_before, os.getloadavg()[0], os.cpu_count() or 1)
    figures["faults"] = (faults_before, fault_seconds())
    figures["in process"] = in_process(bodies)
    figures["bytes"] = {form: len(body) for form, body in bodies.items()}
    return figures


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.0f} ms"


def _target_rows(figures: dict[str, Any]) -> list[str]:
    """One row per target and client: the first client's (plain httpx) is the figure the target is judged on."""
    e2e = figures["e2e"]
    rows = []
    for form, bound, over_baseline in TARGETS:
        for index, client in enumerate(figures["clients"]):
            if (form, client, "xent") not in e2e:  # (a client measured on NPZ only)
                continue
            xent = e2e[form, client, "xent"]
            label = f"`{form}`, {client}" + (" — **judged**" if index == 0 else " (extra row)")
            ratio, met = target_ratio(figures, form, client)
            if over_baseline:
                baseline = e2e[form, client, "baseline"]
                required, measured = f"≥ {bound:g}×", f"baseline {_ms(baseline)} ÷ xent {_ms(xent)} = {ratio:.2f}×"
            else:
                core = npz_core(figures, client)
                required, measured = f"≤ {bound:g}×", f"xent {_ms(xent)} ÷ core {_ms(core)} = {ratio:.2f}×"
            measured += f" (transport only: {_ms(e2e[form, client, 'echo'])})"
            if form == "npz" and index == 0:
                sent, cpu, after = _npz_client_share(figures)
                measured += (
                    f"; the client sent its last byte after {_ms(sent)} (its own CPU: {_ms(cpu)}), xent answered "
                    f"{_ms(after)} later"
                )
            verdict = ("met" if met else "**not met**") if index == 0 else "—"
            rows.append(f"| {label} | {required} | {measured} | {verdict} |")
            if (form, client, ALONE) in e2e:
                alone = e2e[form, client, ALONE]
                measured = f"baseline {_ms(baseline)} ÷ xent {_ms(alone)} = {baseline / alone:.2f}×"
                rows.append(f"| `{form}`, {client}, xent back to back (extra row) | {required} | {measured} | — |")
    return rows


def npz_core(figures: dict[str, Any], client: str | None = None) -> float:
    """The in-process core the NPZ target divides by: its median over the same rounds as ``client``'s requests (the
    judged one by default), timed warm after each round (``measure``)."""
    return float(figures["e2e"]["npz", client or figures["clients"][0], CORE])


def target_ratio(figures: dict[str, Any], form: str, client: str | None = None) -> tuple[float, bool]:
    """A target's figure (a speed-up over the baseline, or xent ÷ the in-process core for NPZ) on ``client`` (the
    judged one by default), and whether it meets the target."""
    e2e, client = figures["e2e"], client or figures["clients"][0]
    bound, over_baseline = next((bound, over) for name, bound, over in TARGETS if name == form)
    if over_baseline:
        ratio = e2e[form, client, "baseline"] / e2e[form, client, "xent"]
        return ratio, ratio >= bound
    ratio = e2e[form, client, "xent"] / npz_core(figures, client)
    return ratio, ratio <= bound


def _run_rows(runs: list[dict[str, Any]]) -> list[str]:
    """One row per run: each target's judged figure; then how many runs met it."""
    rows = []
    for number, figures in enumerate(runs, 1):
        cells = []
        for form, _, over_baseline in TARGETS:
            ratio, met = target_ratio(figures, form)
            detail = ""
            if not over_baseline:
                client = figures["clients"][0]
                xent, core = figures["e2e"][form, client, "xent"], npz_core(figures)
                detail = f" ({_ms(xent)} ÷ {_ms(core)})"
            cells.append(f"{ratio:.2f}×{detail} {'met' if met else '**not met**'}")
        cells.append(_npz_floor(figures))
        cells.append("; ".join(f"{client} {ratio:.2f}×" for client, ratio, _ in _npz_others(figures)))
        cells.append(_faults(figures))
        rows.append(f"| {number} | " + " | ".join(cells) + " |")
    counts = [sum(target_ratio(figures, form)[1] for figures in runs) for form, _, _ in TARGETS]
    out_of_reach = sum(_npz_out_of_reach(figures) for figures in runs)
    others: dict[str, int] = {}
    for figures in runs:
        for client, _, met in _npz_others(figures):
            others[client] = others.get(client, 0) + met
    rows.append(
        "| met in | "
        + " | ".join(f"{count} of {len(runs)} runs" for count in counts)
        + f" | out of reach in {out_of_reach} of {len(runs)} runs | "
        + "; ".join(f"{client} {count} of {len(runs)}" for client, count in others.items())
        + " | |"
    )
    return rows


def _npz_others(figures: dict[str, Any]) -> list[tuple[str, float, bool]]:
    """The NPZ figure of each client of a run but the judged one (the extra rows), each over the core timed beside its
    own requests: (client, xent ÷ core, whether within the target)."""
    return [
        (client, *target_ratio(figures, "npz", client))
        for client in figures["clients"][1:]
        if ("npz", client, "xent") in figures["e2e"]
    ]


def _npz_budget(figures: dict[str, Any]) -> float:
    """The NPZ target's budget: 3 × the in-process core."""
    bound = next(bound for name, bound, _ in TARGETS if name == "npz")
    return bound * npz_core(figures)


def _npz_least(figures: dict[str, Any]) -> float:
    """The least the judged NPZ requests could have taken in this stack: the judged client's own CPU until its last
    byte left, in xent's rounds themselves (a server answers after that byte, and the client's CPU does not count
    the time it waited for the server to read). Not + the core: a server can check and sum an archive's members as
    they arrive."""
    return _npz_client_share(figures)[1]


def _npz_client_share(figures: dict[str, Any]) -> tuple[float, float, float]:
    """The judged NPZ requests to xent split where the client sent the last byte (medians over the same rounds as the
    judged figure): the time until then, the client thread's CPU until then, and xent's answer after it."""
    e2e, client = figures["e2e"], figures["clients"][0]
    sent, cpu, after = (float(e2e["npz", client, f"xent {part}"]) for part in (SENT, SENDING_CPU, AFTER))
    return sent, cpu, after


def _npz_out_of_reach(figures: dict[str, Any]) -> bool:
    """Whether no server in this stack could have met the NPZ target in this run: xent did not, and the least the
    judged requests could have taken (``_npz_least``) is over the budget."""
    return not target_ratio(figures, "npz")[1] and _npz_least(figures) > _npz_budget(figures)


def _npz_floor(figures: dict[str, Any]) -> str:
    """Where a run's judged NPZ time went, beside its budget: whether any server in this stack could have met it."""
    if target_ratio(figures, "npz")[1]:
        verdict = "met"
    elif _npz_out_of_reach(figures):
        verdict = "**out of reach**"
    else:
        verdict = "within reach"
    sent, cpu, after = _npz_client_share(figures)
    echo = figures["e2e"]["npz", figures["clients"][0], "echo"]
    return (
        f"client {_ms(sent)} (its CPU {_ms(cpu)}) + xent {_ms(after)}; echo {_ms(echo)}; "
        f"budget {_ms(_npz_budget(figures))}: {verdict}"
    )


def _faults(figures: dict[str, Any]) -> str:
    """How fast the machine faulted in fresh memory before and after the run (runs written before it was taken: —)."""
    faults = figures.get("faults")
    return "—" if faults is None else f"{_ms(faults[0])}, {_ms(faults[1])}"


def _floor_rows(figures: dict[str, Any]) -> list[str]:
    """Per target (judged client): budget, transport only, fastest parse, core, least possible, reachable?"""
    e2e, local = figures["e2e"], figures["in process"]
    client = figures["clients"][0]
    rows = []
    for form, bound, over_baseline in TARGETS:
        base = e2e[form, client, "baseline"] if over_baseline else npz_core(figures)
        budget = base / bound if over_baseline else base * bound
        echo, read, core = e2e[form, client, "echo"], local[f"read {form}"], local[f"core {form}"]
        # An archive's members are read as views of the body and can be checked and summed as they arrive (no parse
        # to speak of, and a core that need not wait for the last byte): its floor is the client's own send.
        least = _npz_least(figures) if form == "npz" else echo + read + core
        servers = {
            query: e2e[form, client, f"least {query}"]
            for query in LEAST_SERVERS
            if (form, client, f"least {query}") in e2e
        }
        fastest = min(servers, key=servers.__getitem__) if servers else None
        measured = f"{_ms(servers[fastest])} (`{fastest}`)" if fastest is not None else "—"
        if e2e[form, client, "xent"] <= budget:
            reachable = "yes: xent is within it in this run"
        elif least > budget and (fastest is None or servers[fastest] > budget):
            reachable = "no: the least possible exceeds the budget" + (
                ", and so does every least server" if servers else ""
            )
        else:
            reachable = "not excluded by these floors"
        rows.append(
            f"| `{form}` ({'≥' if over_baseline else '≤'} {bound:g}×) | {_ms(base)} | {_ms(budget)} | "
            f"{_ms(e2e[form, client, 'xent'])} | {_ms(echo)} | {_ms(read)} | {_ms(core)} | {_ms(least)} | "
            f"{measured} | {reachable} |"
        )
    return rows


def _runs_part(runs: list[dict[str, Any]]) -> list[str]:
    """The run-to-run table, when the command made more than one run."""
    if len(runs) < 2:
        return []
    return [
        f"Run to run ({len(runs)} runs of the same command, one after the other; the judged client):",
        "",
        "| Run | `token_logprobs` (≥ 5×) | `completions` (≥ 3×) | `npz` (≤ 3×: xent ÷ in-process core) | "
        "`npz`: the client until its last byte left (its own CPU) + xent after it; the echo; the budget (3 × core) | "
        "`npz`, the other clients (extra rows: each over the core timed beside its requests) | "
        "Fresh 80 MB faulted in (before, after) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *_run_rows(runs),
        "",
        "Why the NPZ figure moves from run to run, and what the server can and cannot do about it: the section "
        "*The client's first send of a large body* below (`benchmarks/first_send.py`).",
        "",
    ]


def section(
    figures: dict[str, Any], seconds: float, rounds: int = ROUNDS, runs: list[dict[str, Any]] | None = None
) -> str:
    """The RESULTS.md section, between report's markers: ``figures`` in full, and each of ``runs`` (``figures``
    the last of them) by its judged figures."""
    runs = runs or [figures]
    command = "--write" if len(runs) == 1 else f"--runs {len(runs)} --write"
    size = {name: value / 1e6 for name, value in figures["bytes"].items()}
    described = dict(machine.describe())
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        report.SEQUENCES_BEGIN,
        "## Sequence log-probabilities (issue 16)",
        "",
        f"- Command: `.venv/bin/python -m benchmarks.sequences {command}` ({now}, took {seconds:.0f} s)",
        f"- Machine: {described.get('CPU', '?')}; NumPy SIMD: {described.get('NumPy SIMD extensions', '?')}",
        "- `xent serve` as shipped (body limit raised), the plain FastAPI + Pydantic endpoint of "
        "`benchmarks/baseline_app.py` and the echo of `benchmarks/floor_app.py`; per target and client, "
        f"{rounds} interleaved rounds after a checked warm-up, medians; after every request the next waits until "
        "that server has used no CPU for 50 ms (at most 3 s: the baseline frees gigabytes of Python objects after "
        "it has answered, which would otherwise run into the next measurement). The NPZ target's in-process core "
        "(the arrays read once beforehand; `flat_sequences`, `score_sequences`, `sequence_summary`) is timed in "
        "the same rounds, after each round's requests and a first run to warm it, as the baseline is for the JSON "
        "targets: this host's speed moves by twice within minutes. The target is judged on "
        "`httpx.Client().post(url, content=body)` with default headers; `httpx, 1 MiB pieces` (the body handed "
        "over in pieces, dodging httpcore's copy of the unsent rest after every send) and `requests` are extra "
        "rows, and for NPZ `httpx AsyncClient` (one `bytes`: asyncio's transport keeps a copy of the unsent rest) "
        "and `httpx AsyncClient, 1 MiB pieces` (as xent's `AsyncClient` sends a large body), and `httpx2` "
        "(pydantic's fork of httpx, the same call with one `bytes`, whose httpcore2 does not copy the unsent rest: "
        "encode/httpcore#1029, fixed in pydantic/httpx2#954); *xent back to back* "
        "is the judged client's xent requests again, after the rounds, one after the "
        "other with no baseline request in between (the baseline builds and frees gigabytes of Python objects, "
        "after which the fresh memory of the next request faults in slowly). Bodies at full precision "
        "(`json.dumps` of float64): 1,000 sequences × 1,000 scored tokens (each "
        f"with a null first position) as `token_logprobs` ({size['token_logprobs']:.1f} MB) and as vLLM "
        f"completions `logprobs` objects ({size['completions']:.1f} MB); 10⁷ tokens as NPZ ({size['npz']:.1f} MB), "
        "sent with its Content-Type alone, so that the answer is JSON, as httpx's default `Accept: */*` gets it.",
        "- Load average (1 min) {:.1f} before and {:.1f} after, on {} logical cores: the machine is shared, and the "
        "figures move with what else runs.".format(*figures["load"]),
        f"- A fresh 80 MB map faulted in in {_faults(figures)} (before the run, after it; `fault_seconds`): the "
        "new memory httpcore's copy of an unsent rest pays for (NPZ), whose speed moves from hour to hour here.",
        "",
        f"| Target, client{' (the last run)' if len(runs) > 1 else ''} | Required | Measured | Verdict |",
        "| --- | --- | --- | --- |",
        *_target_rows(figures),
        "",
        *_runs_part(runs),
        "### The floors under the targets (same run)",
        "",
        "As for issue 13 (`benchmarks/floor_app.py`): each target leaves a *budget*, the baseline's latency "
        "(judged client) ÷ the required speed-up (for NPZ: 3 × the in-process core). *Transport only* is the "
        "echo under the same uvicorn configuration and xent's protocol, reading the body as xent does (from the "
        "socket straight into a kept buffer, 16 KiB a read, a large one before the echo is called) and sending an "
        "answer of xent's size made in advance: "
        "the client, uvicorn and loopback alone. *Fastest parse* is, in process on one thread with one "
        "simdjson parser reused (its buffers warm, as the server keeps one), the "
        "body read the fastest way this stack has (simdjson straight into float64 buffers, about 1 MiB of whole "
        "rows at a time as xent does, its nulls written as a number beforehand and outside the time; simdjson, "
        "and of each completions object its log-probabilities "
        "into float64 and its tokens as simdjson writes them, with no Python string per token; `np.load`), "
        "*core* what xent does beyond "
        "that parse: for completions each token's UTF-8 byte count from its array's text "
        "(`_json_sequences.completion_sequences`), then `read_form` / `flat_sequences`, `score_sequences` "
        "and `sequence_summary` on what it holds. *Least "
        "possible* = transport only + fastest parse + core: what no server in this stack that reads this body "
        "and answers it can go under if it parses after the body is in. For NPZ it is the judged client's own CPU "
        "until its last byte left, in xent's rounds themselves (httpx's `trace` extension marks the moment, "
        "`time.thread_time` the client thread's CPU: user and system, not the time it waited for the server to "
        "read): any server answers after that byte, and xent reads an archive's members as views of the body, "
        "with no parse to speak of, and a server could check and sum them as they arrive.",
        "",
        "A server could instead parse while the body arrives. *Least server* measures that for `token_logprobs`: "
        "`/token-logprobs` of `benchmarks/floor_app.py`, the least an ASGI app in this stack does for that body (the "
        "body into one buffer, its rows parsed by simdjson into float64, xent's core, the summary; no checks, no "
        "HTTP layer), the rows parsed once the body is in (`segment_bytes=0`) or while it arrives, every 256 KiB "
        "or 1 MiB, on the event loop between chunks or on a second thread (`threaded=1`; simdjson holds the GIL "
        "while it parses), with the judged client in the same rounds; the fastest of the four is shown. Through "
        "ASGI's `receive`, as any app on uvicorn reads a body, parsing while it arrives gains less than the echo's "
        "time: the event loop copies every byte five times on its way, and it and the parse take turns. xent reads "
        "a large body past `receive`, from the socket straight into its memory map (`service/server/"
        "direct_body.py`: one copy, by the kernel, outside the GIL), and parses the rows on a worker thread as "
        "they arrive (`service/api/transport/_json_streamed.py`), so it can go under these floors.",
        "",
        "| Target | Baseline (NPZ: core) | Budget | xent | Transport only | Fastest parse | Core | "
        "Least possible | Least server, measured | Reachable in this stack? |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *_floor_rows(figures),
        report.SEQUENCES_END,
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sequences", description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite this section of benchmarks/RESULTS.md")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"timed rounds (default {ROUNDS})")
    parser.add_argument(
        "--runs", type=int, default=1, help="whole runs, one after the other (the tables show the last; default 1)"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    runs = [measure(args.rounds) for _ in range(max(1, args.runs))]
    text = section(runs[-1], time.monotonic() - started, args.rounds, runs)
    print(text, end="")  # noqa: T201 - the command's output
    if args.write:
        existing = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else ""
        RESULTS.write_text(
            report.replace_marked_section(existing, text, report.SEQUENCES_BEGIN, report.SEQUENCES_END),
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
