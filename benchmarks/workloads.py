"""The arrays every benchmark scores, their request bodies, and the check of every answer against the core."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from service.core import MulticlassOptions, ScoreResult, score_multiclass

PREDICTION_TYPES = ("probabilities", "logits")

#: Predictions are rounded to this many decimals before they are sent (both transports).
DECIMALS = 6

#: The README's reference example: true class B of A/B/C, predicted [0.228, 0.619, 0.153].
REFERENCE_BODY = b'{"labels":[1],"predictions":[[0.228,0.619,0.153]]}'
REFERENCE_CROSS_ENTROPY = 0.47965000629754095

# Answers must match the in-process core to well within float64 rounding of a JSON round trip.
RTOL = 1e-9
ATOL = 1e-12


class WrongAnswer(AssertionError):
    """A server answered with numbers that differ from the in-process core."""


@dataclass(frozen=True)
class Workload:
    """N×C predictions of one type with hard labels, generated from a fixed seed."""

    rows: int
    classes: int
    prediction_type: str
    seed: int = 20240611
    #: Predictions are rounded to this many decimals; None: full precision (17 significant digits in JSON).
    decimals: int | None = DECIMALS

    @property
    def label(self) -> str:
        return f"{self.rows:,} × {self.classes:,}"

    @property
    def precision(self) -> str:
        """How the predictions are written: full precision, or rounded."""
        return "full precision" if self.decimals is None else f"{self.decimals} decimals"

    @cached_property
    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(labels int64 (N,), predictions float64 (N, C)), predictions rounded to ``decimals`` (6 by default).

        Probabilities are a softmax (rows sum to 1 within 5e-6 after rounding). Six decimals is
        what an evaluation pipeline that rounds typically writes, and it gives issue 3's reference
        body: 100,000 × 10 probabilities are 9.3 MB of JSON. At full precision (``decimals=None``),
        what ``json.dumps(array.tolist())`` writes of a model's float64 output, they are 20.9 MB.
        """
        rng = np.random.default_rng(self.seed + self.rows + self.classes)
        logits = rng.normal(scale=2.0, size=(self.rows, self.classes))
        labels = rng.integers(0, self.classes, size=self.rows, dtype=np.int64)
        if self.prediction_type == "probabilities":
            shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
            predictions = shifted / shifted.sum(axis=1, keepdims=True)
        else:
            predictions = logits
        return labels, predictions if self.decimals is None else np.round(predictions, self.decimals)

    @cached_property
    def json_body(self) -> bytes:
        """The JSON request as a NumPy user would write it: ``json.dumps(array.tolist())`` (shortest float repr)."""
        labels, predictions = self.arrays
        body = {
            "labels": labels.tolist(),
            "predictions": predictions.tolist(),
            "prediction_type": self.prediction_type,
            "per_sample": True,
        }
        return json.dumps(body, separators=(",", ":")).encode()

    @cached_property
    def npz_body(self) -> bytes:
        """The NPZ request: ``np.savez(labels=..., predictions=...)``, uncompressed."""
        labels, predictions = self.arrays
        buffer = io.BytesIO()
        np.savez(buffer, labels=labels, predictions=predictions)
        return buffer.getvalue()

    @property
    def npz_query(self) -> dict[str, str]:
        return {"prediction_type": self.prediction_type}

    def score(self) -> ScoreResult:
        """The in-process core's answer for these arrays."""
        labels, predictions = self.arrays
        return score_multiclass(labels, predictions, options=MulticlassOptions(prediction_type=self.prediction_type))  # type: ignore[arg-type]

    @cached_property
    def expected(self) -> ScoreResult:
        return self.score()

    def drop(self) -> None:
        """Free the arrays and bodies (the large workloads hold hundreds of MB)."""
        for name in ("arrays", "json_body", "npz_body", "expected"):
            self.__dict__.pop(name, None)


def _close(name: str, got: Any, want: np.ndarray | float) -> None:
    got_array = np.asarray(got, dtype=np.float64)
    want_array = np.asarray(want, dtype=np.float64)
    if got_array.shape != want_array.shape:
        raise WrongAnswer(f"{name}: shape {got_array.shape}, expected {want_array.shape}")
    if not np.allclose(got_array, want_array, rtol=RTOL, atol=ATOL):
        worst = int(np.argmax(np.abs(got_array - want_array).ravel()))
        raise WrongAnswer(
            f"{name}: differs from the in-process core, e.g. at {worst}: "
            f"{got_array.ravel()[worst]!r} != {want_array.ravel()[worst]!r}"
        )


def check_json_answer(content: bytes, expected: ScoreResult, *, full: bool = True) -> None:
    """A JSON answer (xent's, or the baseline's subset of it) against the core: per-sample arrays, mean, sum."""
    answer = json.loads(content)
    per_sample = answer["per_sample"]
    for quantity in ("cross_entropy", "kl_divergence", "entropy"):
        _close(f"per_sample.{quantity}", per_sample[quantity], getattr(expected.per_sample, quantity))
        _close(f"mean.{quantity}", answer["mean"][quantity], getattr(expected.mean, quantity))
        _close(f"sum.{quantity}", answer["sum"][quantity], getattr(expected.sum, quantity))
    if answer["n"] != expected.n:
        raise WrongAnswer(f"n = {answer['n']}, expected {expected.n}")
    if full:
        _close("mean.accuracy", answer["mean"]["accuracy"], expected.mean.accuracy)  # type: ignore[arg-type]


def check_npz_answer(content: bytes, expected: ScoreResult) -> None:
    """An NPZ answer against the core: per-sample arrays, and the JSON summary's mean and sum."""
    with np.load(io.BytesIO(content), allow_pickle=False) as archive:
        for quantity in ("cross_entropy", "kl_divergence", "entropy"):
            _close(quantity, archive[quantity], getattr(expected.per_sample, quantity))
        summary = json.loads(str(archive["summary"]))
    for quantity in ("cross_entropy", "kl_divergence", "entropy"):
        _close(f"summary.mean.{quantity}", summary["mean"][quantity], getattr(expected.mean, quantity))
        _close(f"summary.sum.{quantity}", summary["sum"][quantity], getattr(expected.sum, quantity))


def check_reference_answer(content: bytes) -> None:
    """The small request's answer: the README's 0.479650 nats."""
    answer = json.loads(content)
    _close("mean.cross_entropy", answer["mean"]["cross_entropy"], REFERENCE_CROSS_ENTROPY)
