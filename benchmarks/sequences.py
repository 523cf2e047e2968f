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

Bodies are full precision (``json.dumps`` of float64); the client is httpx with its default headers, one
keep-alive connection per server; every answer's token cross-entropy is checked against a direct sum.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks import machine, report
from benchmarks.servers import Server, baseline_server, xent_server

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
    expected: float
    path: str = ROUTE


#: Bodies are handed to httpx in pieces of this size: httpcore's sync write sends a bytes body with
#: ``buffer = buffer[n:]`` after every ``send()``, copying the unsent rest each time (quadratic: 1–2.6 s of
#: client time for the 80 MB NPZ body on this machine). In pieces, with the Content-Length httpx would send
#: for the whole body, the request on the wire is the same.
PIECE_BYTES = 1 << 20


def _pieces(body: bytes) -> Iterator[memoryview]:
    view = memoryview(body)
    for start in range(0, len(body), PIECE_BYTES):
        yield view[start : start + PIECE_BYTES]


def _post(client: httpx.Client, request: Request) -> float:
    """Send the request, check the answer, and return its seconds."""
    headers = {**request.headers, "content-length": str(len(request.body))}
    started = time.perf_counter()
    response = client.post(request.server.url + request.path, content=_pieces(request.body), headers=headers)
    seconds = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"{request.name}: {response.status_code} {response.text[:300]}")
    got = _cross_entropy(response.content, request.server.name)
    if not math.isclose(got, request.expected, rel_tol=1e-9):
        raise RuntimeError(f"{request.name}: token cross-entropy {got!r}, expected {request.expected!r}")
    return seconds


def _median_seconds(function: Callable[[], object], repeat: int) -> float:
    function()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def core_seconds(arrays: dict[str, np.ndarray], repeat: int = ROUNDS) -> float:
    """The in-process core on the NPZ's arrays: what the service does to them between decoding and encoding."""
    from service.core.sequence_forms import flat_sequences
    from service.core.sequences import score_sequences, sequence_summary

    values, lengths = arrays["token_logprobs"], arrays["sequence_lengths"]
    return _median_seconds(lambda: sequence_summary(score_sequences(flat_sequences(values, lengths))), repeat)


def measure(rounds: int = ROUNDS) -> dict[str, Any]:
    """Median seconds of each request end to end (interleaved round by round), and of the core in process."""
    json_corpus, npz_corpus = Corpus(1_000, 1_001), Corpus(10_000, 1_001, seed=7)
    json_headers = {"content-type": "application/json"}
    npz_headers = {"content-type": "application/x-npz", "accept": "application/x-npz"}
    log_dir = Path(tempfile.mkdtemp(prefix="xent-sequences-"))
    xent, baseline = xent_server(log_dir, max_body_bytes=1 << 30), baseline_server(log_dir)
    token_body, completions_body = json_corpus.token_logprobs_body(), json_corpus.completions_body()
    npz_body = npz_corpus.npz_body()
    expected = json_corpus.expected_cross_entropy
    requests = [
        Request("xent token_logprobs", xent, token_body, json_headers, expected),
        Request("baseline token_logprobs", baseline, token_body, json_headers, expected),
        Request("xent completions", xent, completions_body, json_headers, expected),
        Request("baseline completions", baseline, completions_body, json_headers, expected),
        Request("xent npz", xent, npz_body, npz_headers, npz_corpus.expected_npz_cross_entropy()),
    ]
    times: dict[str, list[float]] = {request.name: [] for request in requests}
    load_before = os.getloadavg()[0]
    # Each target's requests are timed together, round by round (xent and the baseline side by side), and the
    # targets one after the other: a 64 MB body parsed just before would otherwise weigh on the next request.
    groups = [requests[0:2], requests[2:4], requests[4:5]]
    xent.start()
    try:
        baseline.start()
        try:
            with httpx.Client(timeout=600.0) as client:
                for group in groups:
                    for request in group:  # warm-up, and every answer checked
                        _post(client, request)
                    for _ in range(rounds):
                        for request in group:
                            times[request.name].append(_post(client, request))
        finally:
            baseline.stop()
    finally:
        xent.stop()
    figures: dict[str, Any] = {name: statistics.median(values) for name, values in times.items()}
    figures["load"] = (load_before, os.getloadavg()[0], os.cpu_count() or 1)
    figures["core npz"] = core_seconds(npz_corpus.npz_arrays())
    figures["bytes"] = {
        "token_logprobs": len(token_body),
        "completions": len(completions_body),
        "npz": len(npz_body),
    }
    return figures


def section(figures: dict[str, Any], seconds: float, rounds: int = ROUNDS) -> str:
    """The RESULTS.md section, between report's markers."""
    ms = {name: value * 1e3 for name, value in figures.items() if isinstance(value, float)}
    size = {name: value / 1e6 for name, value in figures["bytes"].items()}
    token = figures["baseline token_logprobs"] / figures["xent token_logprobs"]
    completions = figures["baseline completions"] / figures["xent completions"]
    npz = figures["xent npz"] / figures["core npz"]

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    described = dict(machine.describe())
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        report.SEQUENCES_BEGIN,
        "## Sequence log-probabilities (issue 16)",
        "",
        f"- Command: `.venv/bin/python -m benchmarks.sequences --write` ({now}, took {seconds:.0f} s)",
        f"- Machine: {described.get('CPU', '?')}; NumPy SIMD: {described.get('NumPy SIMD extensions', '?')}",
        f"- `xent serve` as shipped (body limit raised) and the plain FastAPI + Pydantic endpoint of "
        f"`benchmarks/baseline_app.py`; httpx, default headers (bodies handed over in 1 MiB pieces, see "
        f"`PIECE_BYTES`); per target, {rounds} interleaved rounds after a checked "
        "warm-up, medians. Bodies at full precision (`json.dumps` of float64): 1,000 sequences × 1,000 scored "
        f"tokens (each with a null first position) as `token_logprobs` ({size['token_logprobs']:.1f} MB) and as "
        f"vLLM completions `logprobs` objects ({size['completions']:.1f} MB); 10⁷ tokens as NPZ "
        f"({size['npz']:.1f} MB).",
        "- Load average (1 min) {:.1f} before and {:.1f} after, on {} logical cores: the machine is shared, and the "
        "figures move with what else runs.".format(*figures["load"]),
        "",
        "| Target | Required | Measured | Verdict |",
        "| --- | --- | --- | --- |",
        f"| `token_logprobs` JSON: baseline ({ms['baseline token_logprobs']:.0f} ms) ÷ xent "
        f"({ms['xent token_logprobs']:.0f} ms) | ≥ 5× | {token:.1f}× | {verdict(token >= 5)} |",
        f"| `completions` JSON: baseline ({ms['baseline completions']:.0f} ms) ÷ xent "
        f"({ms['xent completions']:.0f} ms) | ≥ 3× | {completions:.1f}× | {verdict(completions >= 3)} |",
        f"| NPZ 10⁷ tokens end to end ({ms['xent npz']:.0f} ms) ÷ the in-process core "
        f"({ms['core npz']:.0f} ms) | ≤ 3× | {npz:.2f}× | {verdict(npz <= 3)} |",
        report.SEQUENCES_END,
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sequences", description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite this section of benchmarks/RESULTS.md")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"timed rounds (default {ROUNDS})")
    args = parser.parse_args(argv)
    started = time.monotonic()
    text = section(measure(args.rounds), time.monotonic() - started, args.rounds)
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
