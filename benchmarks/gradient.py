"""Issue 17's speed targets: what ``gradient: true`` adds to a 100,000 × 10 NPZ request, and what ``compat`` costs.

    .venv/bin/python -m benchmarks.gradient            # prints the section
    .venv/bin/python -m benchmarks.gradient --write    # and rewrites its own section of RESULTS.md

- **Gradient**: ``POST /v1/cross-entropy`` on 100,000 × 10 NPZ (NPZ answer) with ``gradient=true`` against the
  same request without it, end to end to ``xent serve``, interleaved round by round: at most 1.5×. Measured
  for probabilities and for logits (the gradient of logits is a softmax over every cell; that of probabilities
  reads one column per row with hard labels). The answer grows by the N × C float64 gradient member.
- **compat's default path**: the same request without ``compat`` against ``compat=xent`` given explicitly,
  in the same run: the preset machinery must add nothing measurable to the default path.
"""

from __future__ import annotations

import argparse
import datetime
import io
import os
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path
from urllib.parse import urlencode

import numpy as np

from benchmarks import machine, report
from benchmarks.end_to_end import LoopbackClient
from benchmarks.kernels import median_ms
from benchmarks.servers import xent_server
from benchmarks.workloads import Workload
from service.api.transport.npz_writer import npz_bytes
from service.core import MulticlassOptions, score_multiclass

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
ROUNDS = 15
ROWS, CLASSES = 100_000, 10
PATH = "/v1/cross-entropy"
HEADERS = {"content-type": "application/x-npz", "accept": "application/x-npz"}


def _url(query: dict[str, str]) -> str:
    return f"{PATH}?{urlencode(query)}"


def _check_gradient(content: bytes, workload: Workload) -> None:
    """The NPZ answer's ``gradient`` member is the core's, to the bit."""
    labels, predictions = workload.arrays
    options = MulticlassOptions(prediction_type=workload.prediction_type, gradient=True)  # type: ignore[arg-type]
    expected = score_multiclass(labels, predictions, options=options).gradient
    with np.load(io.BytesIO(content), allow_pickle=False) as archive:
        if expected is None or not np.array_equal(archive["gradient"], expected):
            raise AssertionError(f"{workload.prediction_type}: the gradient member differs from the core's")


def _in_process(workloads: dict[str, Workload]) -> dict[str, float]:
    """Seconds the gradient adds to the core as the server runs it (``score_multiclass`` with it, less without:
    for logits it reuses the scoring pass's per-row normaliser) and of writing its NPZ member, in this process."""
    figures = {}
    for kind, workload in workloads.items():
        labels, predictions = workload.arrays
        with_it = MulticlassOptions(prediction_type=kind, gradient=True)  # type: ignore[arg-type]
        without = MulticlassOptions(prediction_type=kind)  # type: ignore[arg-type]
        seconds = [
            median_ms(partial(score_multiclass, labels, predictions, options=options), 20) / 1e3
            for options in (with_it, without)
        ]
        figures[f"{kind} core"] = seconds[0] - seconds[1]
    gradient = np.zeros((ROWS, CLASSES))
    figures["npz member"] = median_ms(lambda: npz_bytes({"gradient": gradient}), 20) / 1e3
    return figures


def measure(rounds: int = ROUNDS) -> tuple[dict[str, float], dict[str, int]]:
    """Median seconds of each request end to end, and the size of each answer in bytes (and the load average)."""
    load = os.getloadavg()[0]
    workloads = {kind: Workload(ROWS, CLASSES, kind) for kind in ("probabilities", "logits")}
    requests: dict[str, tuple[str, bytes]] = {}
    for kind, workload in workloads.items():
        requests[f"{kind}"] = (_url(workload.npz_query), workload.npz_body)
        requests[f"{kind}+gradient"] = (_url({**workload.npz_query, "gradient": "true"}), workload.npz_body)
    probabilities = workloads["probabilities"]
    requests["compat=xent"] = (_url({**probabilities.npz_query, "compat": "xent"}), probabilities.npz_body)
    log_dir = Path(tempfile.mkdtemp(prefix="xent-gradient-"))
    server = xent_server(log_dir, max_body_bytes=1 << 30)
    server.start()
    client = LoopbackClient()
    times: dict[str, list[float]] = {name: [] for name in requests}
    sizes: dict[str, int] = {}
    try:
        for name, (url, body) in list(requests.items()):  # warm-up, and every answer must be a 200
            status, content = client.post(server.port, url, body, HEADERS)
            if status != 200 and name == "compat=xent":
                del requests[name], times[name]  # no compat option in this tree: that figure is left out
                continue
            if status != 200:
                raise RuntimeError(f"{name}: {status} {content[:300]!r}")
            sizes[name] = len(content)
            if name.endswith("+gradient"):
                _check_gradient(content, workloads[name.removesuffix("+gradient")])
        for _ in range(rounds):
            for name, (url, body) in requests.items():
                started = time.perf_counter()
                status, _ = client.post(server.port, url, body, HEADERS)
                times[name].append(time.perf_counter() - started)
                assert status == 200
    finally:
        client.close()
        server.stop()
    figures = {name: statistics.median(values) for name, values in times.items()}
    figures |= _in_process(workloads)
    figures["load"] = load
    # The noise of one request's time: the interquartile range of the rounds, relative to their median.
    quartiles = statistics.quantiles(times["probabilities"], n=4)
    figures["noise"] = (quartiles[2] - quartiles[0]) / figures["probabilities"]
    return figures, sizes


def section(figures: dict[str, float], sizes: dict[str, int], seconds: float, rounds: int = ROUNDS) -> str:
    """The RESULTS.md section, between report's markers."""
    ms = {name: value * 1e3 for name, value in figures.items()}

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    described = dict(machine.describe())
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        report.GRADIENT_BEGIN,
        "## The gradient and compat's default path (issue 17)",
        "",
        f"- Command: `.venv/bin/python -m benchmarks.gradient --write` ({now}, took {seconds:.0f} s)",
        f"- Machine: {described.get('CPU', '?')}; NumPy SIMD: {described.get('NumPy SIMD extensions', '?')}",
        f"- {ROWS:,} × {CLASSES} predictions (6 decimals) with class-index labels, sent and answered as NPZ to "
        f"`xent serve` as shipped; {rounds} interleaved rounds, medians, end to end over loopback HTTP.",
        f"- Load average when the run started: {figures['load']:.1f} on {os.cpu_count()} logical cores (a shared "
        "machine: absolute times, and the ratios with them, move with it).",
        "",
        "| Target | Required | Without | With | Ratio | Verdict |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for kind in ("probabilities", "logits"):
        ratio = figures[f"{kind}+gradient"] / figures[kind]
        lines.append(
            f"| `gradient=true`, {kind} (answer {sizes[kind] / 1e6:.1f} → {sizes[kind + '+gradient'] / 1e6:.1f} MB) "
            f"| ≤ 1.5× | {ms[kind]:.1f} ms | {ms[kind + '+gradient']:.1f} ms | {ratio:.2f}× | {verdict(ratio <= 1.5)} |"
        )
    if "compat=xent" in figures:
        ratio = figures["compat=xent"] / figures["probabilities"]
        noise = max(figures["noise"], 0.03)  # "nothing measurable": within the rounds' own spread (at least 3 %)
        lines.append(
            f"| `compat=xent` given explicitly ÷ no `compat`, probabilities | nothing measurable | "
            f"{ms['probabilities']:.1f} ms | {ms['compat=xent']:.1f} ms | {ratio:.3f}× | "
            f"{verdict(abs(ratio - 1.0) <= noise)} (noise ±{noise:.1%}: the rounds' interquartile range) |"
        )
    else:
        lines.append("| `compat` default path | nothing measurable | – | – | – | not measured: no `compat` option |")
    lines += [
        "",
        f"In process (no HTTP), medians of 20: what the gradient adds to the core, {ms['probabilities core']:.2f} ms "
        f"(probabilities: one column per row) and {ms['logits core']:.2f} ms (logits: a softmax over every cell, "
        "from the scoring pass's own per-row normaliser); writing its "
        f"{ROWS * CLASSES * 8 / 1e6:.0f} MB NPZ member {ms['npz member']:.2f} ms. The rest of the difference is "
        "the larger answer's trip through the server, the loopback and the client.",
        report.GRADIENT_END,
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gradient", description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite this section of benchmarks/RESULTS.md")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"interleaved rounds (default {ROUNDS})")
    args = parser.parse_args(argv)
    started = time.monotonic()
    figures, sizes = measure(args.rounds)
    text = section(figures, sizes, time.monotonic() - started, args.rounds)
    print(text, end="")  # noqa: T201 - the command's output
    if args.write:
        existing = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else ""
        RESULTS.write_text(
            report.replace_marked_section(existing, text, report.GRADIENT_BEGIN, report.GRADIENT_END),
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
