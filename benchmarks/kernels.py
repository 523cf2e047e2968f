"""The blocked kernels of the core against its reference path, and the NumPy costs they were tuned on.

Writes benchmarks/KERNELS.md with ``--write``. One thread (threadpoolctl when installed), medians
of repeated in-process calls; the arrays are the benchmark workloads (``benchmarks.workloads``).
The decisions these figures back are explained in ``service/core/kernels.py``; the figures
themselves live here, where a rerun replaces them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from unittest import mock

import numpy as np

from benchmarks import machine
from benchmarks.core_inprocess import one_thread
from benchmarks.workloads import Workload

KERNELS = Path(__file__).with_name("KERNELS.md")
COMMAND = ".venv/bin/python -m benchmarks.kernels --write"
#: (rows, classes, prediction type) scored with hard labels, with and without the blocked kernel.
SHAPES = [
    (100_000, 10, "logits"),
    (100_000, 10, "probabilities"),
    (400_000, 2, "logits"),
    (100_000, 4, "logits"),
    (10_000, 1000, "logits"),
]


def median_ms(function: Callable[[], object], repeat: int = 15) -> float:
    """Median wall time of ``function`` in milliseconds, after one warm-up call."""
    function()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def kernel_against_reference() -> list[tuple[str, float, float]]:
    """(workload, ms with the kernel, ms on the reference path) for ``score_multiclass``."""
    from service.core import MulticlassOptions, PredictionType, multiclass, score_multiclass

    rows = []
    for n, classes, kind in SHAPES:
        workload = Workload(n, classes, kind)
        labels, predictions = workload.arrays
        options = MulticlassOptions(prediction_type=PredictionType(kind))
        score = partial(score_multiclass, labels, predictions, options=options)
        fast = median_ms(score)
        with mock.patch.object(multiclass, "hard_label_scan", return_value=None):  # the kernel declines
            reference = median_ms(score)
        rows.append((f"{workload.label} {kind}", fast, reference))
    return rows


def narrow_reductions() -> list[tuple[int, float, float]]:
    """(classes, ns per element along short rows (axis=1), ns per element down a transposed copy (axis=0))."""
    from service.core.kernels import block_rows

    rows = []
    for classes in (2, 4, 10, 32, 100):
        _, values = Workload(1_000_000 // classes, classes, "logits").arrays
        size = block_rows(classes)
        scratch = np.empty((classes, size))

        def transposed(values: np.ndarray = values, scratch: np.ndarray = scratch, size: int = size) -> None:
            for start in range(0, values.shape[0], size):
                rows = values[start : start + size]
                block = scratch[:, : rows.shape[0]]
                np.copyto(block, rows.T)
                np.maximum.reduce(block, axis=0)

        along = median_ms(partial(values.max, axis=1))
        rows.append((classes, 1e6 * along / values.size, 1e6 * median_ms(transposed) / values.size))
    return rows


def exp_of_zeros() -> list[tuple[str, float]]:
    """ms of exp over 1,000,000 shifted values x − peak, half of them exact zeros (two classes)."""
    from service.core.kernels import _exp_shifted

    _, values = Workload(500_000, 2, "logits").arrays
    shifted = (values - values.max(axis=1, keepdims=True)).T.copy()
    block = np.empty_like(shifted)
    zeros = np.empty(shifted.shape, dtype=bool)

    def plain() -> None:
        np.copyto(block, shifted)
        _exp_shifted(block, None)

    def round_the_zeros() -> None:
        np.copyto(block, shifted)
        _exp_shifted(block, zeros)

    return [
        ("np.exp in place", median_ms(plain)),
        ("zeros moved out of exp's way (`_exp_shifted`)", median_ms(round_the_zeros)),
    ]


def standard_errors() -> list[tuple[str, float]]:
    """ms of ``uncertainty`` and ``paired_difference`` on 100,000 × 10 logits, by kind of cluster ids."""
    from service.core import MulticlassOptions, PredictionType, score_multiclass
    from service.core.uncertainty import paired_difference, uncertainty

    workload = Workload(100_000, 10, "logits")
    labels, predictions = workload.arrays
    options = MulticlassOptions(prediction_type=PredictionType.LOGITS)
    model = score_multiclass(labels, predictions, options=options)
    baseline = score_multiclass(labels, np.roll(predictions, 1, axis=1), options=options)
    codes = np.random.default_rng(14).integers(0, 5_000, workload.rows)
    distinct = np.random.default_rng(15).permutation(workload.rows)
    clusters = {
        "none": None,
        "5,000 as an int64 array": codes,
        "5,000 as a list of int": codes.tolist(),
        "5,000 as a list of str": [f"doc-{c}" for c in codes.tolist()],
        "100,000 (one per row) as a list of str": [f"doc-{c}" for c in distinct.tolist()],
    }
    rows = [
        (
            f"score_multiclass {workload.label} logits (for scale)",
            median_ms(partial(score_multiclass, labels, predictions, options=options)),
        )
    ]
    for what, ids in clusters.items():
        rows.append((f"uncertainty, clusters: {what}", median_ms(partial(uncertainty, model, cluster_ids=ids))))
    for what in ("none", "5,000 as a list of str"):
        ids = clusters[what]
        rows.append(
            (
                f"paired_difference, clusters: {what}",
                median_ms(partial(paired_difference, model, baseline, cluster_ids=ids)),
            )
        )
    return rows


def render(
    threads: str,
    kernel: list[tuple[str, float, float]],
    narrow: list[tuple[int, float, float]],
    exp: list[tuple[str, float]],
    errors: list[tuple[str, float]],
) -> str:
    """KERNELS.md."""
    lines = [
        "# The core's blocked kernels",
        "",
        "Written by `benchmarks/kernels.py`; the figures behind the choices explained in",
        "`service/core/kernels.py` (which keeps the *why*, not the numbers). Medians on a shared machine.",
        "",
        f"- Command: `{COMMAND}`",
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- Threads: {threads}",
        *(f"- {what}: {value}" for what, value in machine.describe()),
        "",
        "## score_multiclass with hard labels: the blocked kernel and the reference path",
        "",
        "The reference path (`multiclass.hard_label_reference`) is timed by making the kernel decline",
        "every batch, as it does for a non-C-contiguous array; both give the same bits.",
        "",
        "| Workload | kernel (ms) | reference path (ms) | reference / kernel |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {what} | {fast:.2f} | {ref:.2f} | {ref / fast:.2f} |" for what, fast, ref in kernel]
    lines += [
        "",
        "## Why narrow rows are scanned transposed (`NARROW_CLASSES`)",
        "",
        "The maximum of each row of about 1,000,000 numbers, ns per element: `x.max(axis=1)` along the",
        "rows, against copying each block of rows (`block_rows`) transposed and reducing down its",
        "columns, as `_scan_narrow` does.",
        "",
        "| Classes | along rows (axis=1) | transposed copy + axis=0 |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {classes} | {along:.2f} | {down:.2f} |" for classes, along, down in narrow]
    lines += [
        "",
        "## Why exact zeros go round exp for few classes (`_FEW_CLASSES`)",
        "",
        "exp of x − peak for 500,000 rows of 2 classes (half the entries are exact zeros), in place.",
        "What it saves depends on the CPU and on whether NumPy's exp is a SIMD loop or libm's.",
        "",
        "| What | ms |",
        "| --- | --- |",
    ]
    lines += [f"| {what} | {ms:.2f} |" for what, ms in exp]
    lines += [
        "",
        "## Standard errors (`service/core/statistics.py`)",
        "",
        "`uncertainty` (SEs and intervals of the four means) and `paired_difference` (model against a",
        "baseline of rolled logits) of 100,000 × 10 logits scored with hard labels; cluster ids as the",
        "JSON decoder hands them (lists) or as an NPZ array. Every metric shares one row selection;",
        "a list of strings is labelled by a dict (no sort), integers by their offset from the smallest.",
        "",
        "| What | ms |",
        "| --- | --- |",
    ]
    lines += [f"| {what} | {ms:.2f} |" for what, ms in errors]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kernels", description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="write benchmarks/KERNELS.md")
    args = parser.parse_args(argv)
    with one_thread() as threads:
        text = render(threads, kernel_against_reference(), narrow_reductions(), exp_of_zeros(), standard_errors())
    sys.stdout.write(text)
    if args.write:
        KERNELS.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
