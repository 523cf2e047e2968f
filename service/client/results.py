"""What a scoring call returns: ``Scores``, read from a JSON or NPZ answer (``xent score`` reads its in-process
answers the NPZ way)."""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson


@dataclass(frozen=True)
class Means:
    """Weighted means over the scored rows; None where the service answered null (undefined or not finite)."""

    cross_entropy: float | None
    kl_divergence: float | None
    entropy: float | None
    perplexity: float | None
    accuracy: float | None


@dataclass(frozen=True)
class Sums:
    """Weighted sums over the scored rows; None only where not finite."""

    cross_entropy: float | None
    kl_divergence: float | None
    entropy: float | None


@dataclass(frozen=True)
class PerSample:
    """Per-sample float64 arrays: NaN on ignored rows (``ignored`` is True there), +inf where a NON_FINITE
    warning says so (JSON sends both as null; a null on a scored row can only be +inf)."""

    cross_entropy: np.ndarray
    kl_divergence: np.ndarray
    entropy: np.ndarray
    ignored: np.ndarray


@dataclass(frozen=True)
class ScoreWarning:
    """Something to know about the numbers: a code, a message, how many rows and the first 20 of them."""

    code: str
    message: str
    count: int
    rows: tuple[int, ...]


@dataclass(frozen=True)
class Scores:
    """One scoring answer (or several chunks' answers merged exactly)."""

    n: int
    n_scored: int
    unit: str
    mean: Means
    sum: Sums
    per_sample: PerSample | None
    warnings: tuple[ScoreWarning, ...]
    settings: Mapping[str, Any]
    classes: tuple[str, ...] | None = None

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any], per_sample: PerSample | None) -> Scores:
        """From the API's JSON answer (its ``per_sample`` already decoded into ``per_sample``)."""
        classes = summary.get("classes")
        return cls(
            n=int(summary["n"]),
            n_scored=int(summary["n_scored"]),
            unit=str(summary["unit"]),
            mean=Means(**summary["mean"]),
            sum=Sums(**summary["sum"]),
            per_sample=per_sample,
            warnings=tuple(
                ScoreWarning(w["code"], w["message"], int(w["count"]), tuple(w["rows"])) for w in summary["warnings"]
            ),
            settings=dict(summary["settings"]),
            classes=None if classes is None else tuple(classes),
        )

    @classmethod
    def from_json(cls, content: bytes) -> Scores:
        """From a JSON answer."""
        summary = orjson.loads(content)
        values = summary.get("per_sample")
        per_sample = None
        if values is not None:
            # float64 turns null into NaN; entropy is finite on every scored row, so its NaNs mark ignored rows.
            entropy = np.array(values["entropy"], dtype=np.float64)
            ignored = np.isnan(entropy)
            ce, kl = (np.array(values[name], dtype=np.float64) for name in ("cross_entropy", "kl_divergence"))
            for array in (ce, kl):
                array[np.isnan(array) & ~ignored] = np.inf  # a null on a scored row is +inf (NON_FINITE)
            per_sample = PerSample(ce, kl, entropy, ignored)
        return cls.from_summary(summary, per_sample)

    @classmethod
    def from_npz(cls, content: bytes) -> Scores:
        """From an ``application/x-npz`` answer: float64 arrays, a ``scored`` mask and the JSON ``summary``."""
        with np.load(io.BytesIO(content), allow_pickle=False) as archive:
            return cls.from_arrays(orjson.loads(str(archive["summary"])), archive)

    @classmethod
    def from_arrays(cls, summary: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Scores:
        """From an answer's summary and the NPZ answer's per-sample members (none without ``per_sample``):
        ``cross_entropy``, ``kl_divergence`` and ``entropy`` (NaN on ignored rows) and the ``scored`` mask."""
        per_sample = None
        if "cross_entropy" in arrays:
            per_sample = PerSample(
                arrays["cross_entropy"], arrays["kl_divergence"], arrays["entropy"], ~arrays["scored"]
            )
        return cls.from_summary(summary, per_sample)

    def summary(self) -> dict[str, Any]:
        """The API's JSON answer without the per-sample arrays (``per_sample`` null)."""
        body: dict[str, Any] = {"n": self.n, "n_scored": self.n_scored, "unit": self.unit}
        if "label_type" in self.settings:  # multi-class answers carry the class names
            body["classes"] = None if self.classes is None else list(self.classes)
        return {
            **body,
            "mean": dict(vars(self.mean)),
            "sum": dict(vars(self.sum)),
            "per_sample": None,
            "warnings": [{**vars(w), "rows": list(w.rows)} for w in self.warnings],
            "settings": dict(self.settings),
        }
