"""What a scoring call returns: ``Scores``, read from a JSON or NPZ answer (or from the in-process core)."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

if TYPE_CHECKING:
    from service.core import ScoreResult

#: ln(base) of each unit: a value in nats divided by this is in that unit.
LOG_BASE = {"nats": 1.0, "bits": math.log(2.0), "hartleys": math.log(10.0)}


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
            summary = orjson.loads(str(archive["summary"]))
            per_sample = None
            if "cross_entropy" in archive.files:
                per_sample = PerSample(
                    archive["cross_entropy"], archive["kl_divergence"], archive["entropy"], ~archive["scored"]
                )
        return cls.from_summary(summary, per_sample)

    @classmethod
    def from_core(cls, result: ScoreResult, *, per_sample: bool, classes: list[str] | None = None) -> Scores:
        """From an in-process ``ScoreResult``, with exactly the values the API would send."""
        mean, sums = result.mean, result.sum
        values = result.per_sample
        return cls(
            n=result.n,
            n_scored=result.n_scored,
            unit=result.unit.value,
            mean=Means(
                *map(_finite, (mean.cross_entropy, mean.kl_divergence, mean.entropy, mean.perplexity, mean.accuracy))
            ),
            sum=Sums(*map(_finite, (sums.cross_entropy, sums.kl_divergence, sums.entropy))),
            per_sample=PerSample(values.cross_entropy, values.kl_divergence, values.entropy, ~result.scored)
            if per_sample
            else None,
            warnings=tuple(ScoreWarning(w.code.value, w.message, w.count, w.rows) for w in result.warnings),
            settings={**result.settings, "per_sample": per_sample},
            classes=None if classes is None else tuple(classes),
        )

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


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value
