"""The core in process, on one thread, against torch, scikit-learn and SciPy on the same arrays.

xent's figure is the whole ``score_multiclass`` call: input checks, log-softmax or clipped log,
per-sample cross-entropy, KL divergence and entropy, and the aggregates. Each competitor does
only what it does natively:

* torch: ``cross_entropy(reduction="none")`` on logits; ``nll_loss(log(clamp(p)))`` on probabilities
  (per-sample CE only), float64 tensors sharing the NumPy arrays' memory, ``torch.set_num_threads(1)``.
* scikit-learn: ``log_loss`` (the mean CE only); it takes probabilities, so on logits it is handed
  ``softmax(logits)`` computed beforehand, outside the timing.
* SciPy: per-sample CE + KL + entropy from ``special.log_softmax`` / ``rel_entr`` / ``stats.entropy``,
  with the one-hot target built beforehand.

NumPy's BLAS/OpenMP pools are limited to one thread (threadpoolctl) for every competitor.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks.workloads import ATOL, RTOL, Workload, WrongAnswer

EPSILON = float(np.finfo(np.float64).eps)

#: What each column times, for RESULTS.md.
METHOD = (
    "xent's figure is the whole `score_multiclass` call: input checks, log-softmax or clipped log, per-sample "
    "cross-entropy, KL divergence and entropy, and the aggregates. Each competitor does only what it does natively: "
    'torch `cross_entropy(reduction="none")` on logits and `nll_loss(log(clamp(p)))` on probabilities (per-sample '
    "CE only, float64 tensors sharing the arrays' memory); scikit-learn `log_loss` (the mean CE only; it takes "
    "probabilities, so on logits it is handed `softmax(logits)` computed beforehand, outside the timing); SciPy "
    "per-sample CE + KL + entropy from `special.log_softmax` (or `np.log` of clipped probabilities), "
    "`special.rel_entr` and `stats.entropy`, with the one-hot target built beforehand."
)


@dataclass
class CoreComparison:
    """Median seconds per implementation for one workload; None means not measured (with the reason)."""

    workload: Workload
    seconds: dict[str, float | None] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


@contextlib.contextmanager
def one_thread() -> Iterator[str]:
    """Limit NumPy's (and torch's) thread pools to one thread; yields a sentence saying what was done."""
    notes = []
    with contextlib.ExitStack() as stack:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            notes.append("threadpoolctl is not installed: NumPy's BLAS ran with its default threads")
        else:
            stack.enter_context(threadpool_limits(limits=1))
            notes.append("NumPy's BLAS/OpenMP pools limited to 1 thread with threadpoolctl")
        torch = _torch()
        if torch is not None:
            previous = torch.get_num_threads()
            torch.set_num_threads(1)
            stack.callback(torch.set_num_threads, previous)
            notes.append("torch.set_num_threads(1)")
        yield "; ".join(notes)


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch


def torch_skip_reason() -> str | None:
    """Why the torch comparison is skipped, or None when torch is importable."""
    if _torch() is not None:
        return None
    return (
        "torch is not installed, so the torch comparison is skipped "
        "(install it with `.venv/bin/pip install torch==2.13.0`, a CPU build)"
    )


def _interleaved_medians(functions: dict[str, Callable[[], object]], repetitions: int) -> dict[str, float]:
    """Median seconds of each function, timed in turn, round after round.

    Round-robin rather than one function's repetitions after another's: on a shared machine a
    slow spell then slows every competitor alike instead of whichever was running. Within a
    round each function is called twice and the second call is timed, so that it runs warm
    (its own caches and freed memory), as in a loop of its own, not after another's temporaries.
    """
    for function in functions.values():
        function()  # warm-up: imports, caches, first-touch page faults
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repetitions):
        for name, function in functions.items():
            function()
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _same(name: str, got: Any, want: Any) -> None:
    if not np.allclose(np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64), rtol=RTOL, atol=ATOL):
        raise WrongAnswer(f"{name} disagrees with xent's core; the comparison would not be like for like")


def compare(workload: Workload, repetitions: int) -> CoreComparison:
    """Time xent's core and each competitor on the workload's arrays (call inside ``one_thread``)."""
    from scipy import special, stats
    from sklearn.metrics import log_loss

    labels, predictions = workload.arrays
    n, c = predictions.shape
    logits = workload.prediction_type == "logits"
    probabilities = special.softmax(predictions, axis=1) if logits else predictions
    one_hot = np.zeros_like(predictions)
    one_hot[np.arange(n), labels] = 1.0
    expected = workload.score()
    comparison = CoreComparison(workload)
    functions: dict[str, Callable[[], object]] = {"xent": workload.score}

    torch = _torch()
    if torch is None:
        comparison.seconds["torch"] = None
        comparison.skipped["torch"] = "not installed"
    else:
        functional = torch.nn.functional
        x, y = torch.from_numpy(predictions), torch.from_numpy(labels)

        def torch_loss() -> Any:
            if logits:
                return functional.cross_entropy(x, y, reduction="none")
            return functional.nll_loss(torch.log(x.clamp(EPSILON, 1 - EPSILON)), y, reduction="none")

        _same("torch", torch_loss().numpy(), expected.per_sample.cross_entropy)
        functions["torch"] = torch_loss

    def sklearn_loss() -> float:
        return float(log_loss(labels, probabilities, labels=np.arange(c)))

    _same("sklearn", sklearn_loss(), expected.mean.cross_entropy)
    functions["sklearn"] = sklearn_loss

    def scipy_scores() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        log_q = special.log_softmax(predictions, axis=1) if logits else np.log(np.clip(predictions, EPSILON, 1))
        kl = special.rel_entr(one_hot, np.exp(log_q)).sum(axis=1)
        entropy = stats.entropy(one_hot, axis=1)
        return entropy + kl, kl, entropy

    cross_entropy, kl, _ = scipy_scores()
    _same("scipy", cross_entropy, expected.per_sample.cross_entropy)
    _same("scipy", kl, expected.per_sample.kl_divergence)
    functions["scipy"] = scipy_scores
    comparison.seconds |= _interleaved_medians(functions, repetitions)
    return comparison
