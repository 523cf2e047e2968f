"""Issue 14's speed targets: what the standard errors add to a 100,000 × 10 request, and what /compare costs.

    .venv/bin/python -m benchmarks.uncertainty            # prints the section
    .venv/bin/python -m benchmarks.uncertainty --write    # and rewrites its own section of RESULTS.md

- **Standard errors**: every scoring answer carries them (``answer_summary`` runs
  ``uncertainty.uncertainty`` on the result). Their cost is that call on the request's own result,
  in process, set against the end-to-end time of the same request to ``xent serve`` over JSON and
  over NPZ: the share must be at most 10 %.
- **/compare**: ``POST /v1/cross-entropy/compare`` on 100,000 × 10 NPZ (model and baseline
  predictions) against ``POST /v1/cross-entropy`` on the model's alone, end to end, interleaved
  round by round: at most 2.2×.
"""

from __future__ import annotations

import argparse
import datetime
import io
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import machine, report
from benchmarks.end_to_end import LoopbackClient
from benchmarks.kernels import median_ms
from benchmarks.servers import xent_server
from benchmarks.workloads import Workload
from service.core.uncertainty import paired_difference, uncertainty

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
ROUNDS = 9


def _compare_body(model: Workload, baseline: Workload) -> bytes:
    labels, predictions = model.arrays
    buffer = io.BytesIO()
    np.savez(buffer, labels=labels, predictions=predictions, baseline_predictions=baseline.arrays[1])
    return buffer.getvalue()


def measure(rounds: int = ROUNDS) -> dict[str, float]:
    """Median seconds of each request end to end, and of the standard errors in process."""
    model = Workload(100_000, 10, "probabilities")
    baseline = Workload(100_000, 10, "probabilities", seed=7)
    compare_body = _compare_body(model, baseline)
    log_dir = Path(tempfile.mkdtemp(prefix="xent-uncertainty-"))
    server = xent_server(log_dir, max_body_bytes=1 << 30)
    server.start()
    client = LoopbackClient()
    json_headers = {"content-type": "application/json"}
    npz_headers = {"content-type": "application/x-npz", "accept": "application/x-npz"}
    requests = {
        "json": ("/v1/cross-entropy", model.json_body, json_headers),
        "npz": ("/v1/cross-entropy", model.npz_body, npz_headers),
        "compare_npz": ("/v1/cross-entropy/compare", compare_body, npz_headers),
    }
    times: dict[str, list[float]] = {name: [] for name in requests}
    try:
        for name, (path, body, headers) in requests.items():  # warm-up, and every answer must be a 200
            status, content = client.post(server.port, path, body, headers)
            if status != 200:
                raise RuntimeError(f"{name}: {status} {content[:300]!r}")
        for _ in range(rounds):
            for name, (path, body, headers) in requests.items():
                started = time.perf_counter()
                status, _ = client.post(server.port, path, body, headers)
                times[name].append(time.perf_counter() - started)
                assert status == 200
    finally:
        client.close()
        server.stop()
    result, other = model.expected, baseline.expected
    figures = {name: statistics.median(values) for name, values in times.items()}
    figures["uncertainty"] = median_ms(lambda: uncertainty(result), repeat=20) / 1e3
    figures["paired_difference"] = median_ms(lambda: paired_difference(result, other), repeat=20) / 1e3
    return figures


def section(figures: dict[str, float], seconds: float) -> str:
    """The RESULTS.md section, between report's markers."""
    ms = {name: value * 1e3 for name, value in figures.items()}
    share_json = figures["uncertainty"] / figures["json"]
    share_npz = figures["uncertainty"] / figures["npz"]
    compare = figures["compare_npz"] / figures["npz"]

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    described = dict(machine.describe())
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        report.UNCERTAINTY_BEGIN,
        "## Standard errors and /compare (issue 14)",
        "",
        f"- Command: `.venv/bin/python -m benchmarks.uncertainty --write` ({now}, took {seconds:.0f} s)",
        f"- Machine: {described.get('CPU', '?')}; NumPy SIMD: {described.get('NumPy SIMD extensions', '?')}",
        f"- 100,000 × 10 probabilities (6 decimals), `xent serve` as shipped; {ROUNDS} interleaved rounds, medians.",
        "  The standard errors' cost: `uncertainty()` on the request's own result in process (median of 20).",
        "",
        "| Target | Required | Measured | Verdict |",
        "| --- | --- | --- | --- |",
        f"| Standard errors ÷ JSON request end to end ({ms['json']:.1f} ms) | ≤ 10 % | "
        f"{ms['uncertainty']:.2f} ms = {share_json:.1%} | {verdict(share_json <= 0.10)} |",
        f"| Standard errors ÷ NPZ request end to end ({ms['npz']:.1f} ms) | ≤ 10 % | "
        f"{ms['uncertainty']:.2f} ms = {share_npz:.1%} | {verdict(share_npz <= 0.10)} |",
        f"| `/compare` NPZ ({ms['compare_npz']:.1f} ms) ÷ one NPZ scoring request | ≤ 2.2× | "
        f"{compare:.2f}× | {verdict(compare <= 2.2)} |",
        "",
        f"In process: `paired_difference` on the same 100,000 rows {ms['paired_difference']:.2f} ms.",
        report.UNCERTAINTY_END,
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.uncertainty", description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite this section of benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    started = time.monotonic()
    text = section(measure(), time.monotonic() - started)
    print(text, end="")  # noqa: T201 - the command's output
    if args.write:
        existing = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else ""
        RESULTS.write_text(
            report.replace_marked_section(existing, text, report.UNCERTAINTY_BEGIN, report.UNCERTAINTY_END),
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
