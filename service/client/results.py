"""What a scoring call returns: ``Scores`` (or, from ``compare``, a ``Comparison``), read from a JSON or NPZ answer
(``xent score`` reads its in-process answers the NPZ way).

Over 300 lines because it is the typed mirror of both answers, field for field (the core's own result types carry
the math, which this package does not import: ``tests/client`` checks it).
"""

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


#: A confidence interval (low, high).
Interval = tuple[float, float]


@dataclass(frozen=True)
class Stderrs:
    """Standard errors of the means (accuracy as a fraction); None where undefined (a STDERR_UNDEFINED or
    NON_FINITE warning says why)."""

    cross_entropy: float | None
    kl_divergence: float | None
    entropy: float | None
    accuracy: float | None

    @classmethod
    def read(cls, values: Mapping[str, Any] | None) -> Stderrs | None:
        """From the answer's ``stderr`` object (None: the answer has none)."""
        return None if values is None else cls(**values)


@dataclass(frozen=True)
class Intervals:
    """Confidence intervals (low, high) of the means at ``settings["confidence"]``; perplexity's is
    e^(the cross-entropy one in nats). None where undefined."""

    cross_entropy: Interval | None
    kl_divergence: Interval | None
    entropy: Interval | None
    accuracy: Interval | None
    perplexity: Interval | None

    @classmethod
    def read(cls, values: Mapping[str, Any] | None) -> Intervals | None:
        """From the answer's ``ci`` object (None: the answer has none)."""
        return None if values is None else cls(**{name: _interval(value) for name, value in values.items()})


def _interval(value: Any) -> Interval | None:
    return None if value is None else (float(value[0]), float(value[1]))


def _gradient(values: Any) -> np.ndarray | None:
    """A JSON answer's ``per_sample.gradient`` as float64 (null, an infinite entry, as NaN); None when absent."""
    return None if values is None else np.array(values, dtype=np.float64)


def _listed(value: Any) -> Any:
    """A dataclass of numbers and intervals as the answer's JSON object (intervals as 2-lists)."""
    if value is None:
        return None
    return {name: list(v) if isinstance(v, tuple) else v for name, v in vars(value).items()}


@dataclass(frozen=True)
class PerSample:
    """Per-sample float64 arrays: NaN on ignored rows (``ignored`` is True there), +inf where a NON_FINITE
    warning says so (JSON sends both as null; a null on a scored row can only be +inf). ``gradient``: ∂ℓᵢ/∂xᵢ,
    shaped like the predictions, with ``gradient=True`` (None otherwise; from JSON an infinite entry is NaN)."""

    cross_entropy: np.ndarray
    kl_divergence: np.ndarray
    entropy: np.ndarray
    ignored: np.ndarray
    gradient: np.ndarray | None = None


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
    stderr: Stderrs | None = None
    ci: Intervals | None = None
    n_clusters: int | None = None
    #: The answer's breakdowns and calibration, as the API writes them (null where not asked for).
    by_group: Mapping[str, Any] | None = None
    by_class: Mapping[str, Any] | None = None
    calibration: Mapping[str, Any] | None = None
    #: The answer's mergeable state (``POST /v1/merge``; ``score_many`` merges chunks by it).
    state: Mapping[str, Any] | None = None

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
            stderr=Stderrs.read(summary.get("stderr")),
            ci=Intervals.read(summary.get("ci")),
            n_clusters=summary.get("n_clusters"),
            by_group=summary.get("by_group"),
            by_class=summary.get("by_class"),
            calibration=summary.get("calibration"),
            state=summary.get("state"),
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
            per_sample = PerSample(ce, kl, entropy, ignored, _gradient(values.get("gradient")))
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
                arrays["cross_entropy"],
                arrays["kl_divergence"],
                arrays["entropy"],
                ~arrays["scored"],
                arrays.get("gradient"),
            )
        return cls.from_summary(summary, per_sample)

    def summary(self) -> dict[str, Any]:
        """The API's JSON answer without the per-sample arrays (``per_sample`` null)."""
        body: dict[str, Any] = {"n": self.n, "n_scored": self.n_scored}
        if self.stderr is not None:
            body["n_clusters"] = self.n_clusters
        body["unit"] = self.unit
        if "label_type" in self.settings:  # multi-class answers carry the class names
            body["classes"] = None if self.classes is None else list(self.classes)
        return {
            **body,
            "mean": dict(vars(self.mean)),
            "sum": dict(vars(self.sum)),
            **({} if self.stderr is None else {"stderr": _listed(self.stderr), "ci": _listed(self.ci)}),
            **({} if self.stderr is None else self._breakdowns()),
            "per_sample": None,
            "warnings": [{**vars(w), "rows": list(w.rows)} for w in self.warnings],
            "settings": dict(self.settings),
            **({} if self.state is None else {"state": self.state}),
        }

    def _breakdowns(self) -> dict[str, Any]:
        """``by_group``, ``by_class`` and ``calibration`` as the answer has them (answers with ``stderr`` do)."""
        return {"by_group": self.by_group, "by_class": self.by_class, "calibration": self.calibration}


@dataclass(frozen=True)
class Side:
    """One model's aggregates in a comparison: means, sums, their standard errors and intervals."""

    mean: Means
    sum: Sums
    stderr: Stderrs | None
    ci: Intervals | None

    @classmethod
    def read(cls, values: Mapping[str, Any]) -> Side:
        """From the comparison answer's ``model`` or ``baseline`` object."""
        return cls(
            Means(**values["mean"]), Sums(**values["sum"]), Stderrs.read(values["stderr"]), Intervals.read(values["ci"])
        )

    def summary(self) -> dict[str, Any]:
        """As the answer's JSON object."""
        return {
            "mean": dict(vars(self.mean)),
            "sum": dict(vars(self.sum)),
            "stderr": _listed(self.stderr),
            "ci": _listed(self.ci),
        }


@dataclass(frozen=True)
class PairedDifference:
    """One metric's paired difference dᵢ = ℓᵢ(model) − ℓᵢ(baseline): negative means the model is better (for
    accuracy, positive does). ``z`` = mean/stderr and ``p_value`` (two-sided, normal) are None when the standard
    error is 0 or None; ``correlation`` is that of the two models' per-sample values (None when one is constant)."""

    mean: float | None
    stderr: float | None
    ci: Interval | None
    z: float | None
    p_value: float | None
    correlation: float | None

    @classmethod
    def read(cls, values: Mapping[str, Any]) -> PairedDifference:
        """From one entry of the answer's ``difference`` object."""
        return cls(**{**values, "ci": _interval(values["ci"])})


@dataclass(frozen=True)
class Differences:
    """The ``difference`` block: model − baseline, per metric."""

    cross_entropy: PairedDifference
    kl_divergence: PairedDifference
    accuracy: PairedDifference


@dataclass(frozen=True)
class ComparisonWarning:
    """A warning of one side of a comparison: ``source`` is ``"model"`` or ``"baseline"``."""

    code: str
    message: str
    count: int
    rows: tuple[int, ...]
    source: str


@dataclass(frozen=True)
class Comparison:
    """A paired comparison of a model with a baseline on the same rows (``compare``).

    ``per_sample`` is each row's cross-entropy difference model − baseline (NaN on the rows not scored; None
    with ``per_sample=False``). An infinite difference is ±inf from an NPZ answer, NaN from a JSON one (JSON's
    null does not say which; the model's and the baseline's NON_FINITE warnings name the rows). ``gradient`` is
    the model's ∂ℓᵢ/∂xᵢ (of dᵢ with respect to ``predictions``) with ``gradient=True``, else None.
    """

    n: int
    n_scored: int
    n_clusters: int | None
    unit: str
    model: Side
    baseline: Side
    difference: Differences
    per_sample: np.ndarray | None
    warnings: tuple[ComparisonWarning, ...]
    settings: Mapping[str, Any]
    classes: tuple[str, ...] | None = None
    gradient: np.ndarray | None = None

    @classmethod
    def from_summary(
        cls, summary: Mapping[str, Any], per_sample: np.ndarray | None, gradient: np.ndarray | None = None
    ) -> Comparison:
        """From the API's JSON answer (its ``per_sample`` already decoded into ``per_sample`` and ``gradient``)."""
        difference, classes = summary["difference"], summary.get("classes")
        return cls(
            n=int(summary["n"]),
            n_scored=int(summary["n_scored"]),
            n_clusters=summary.get("n_clusters"),
            unit=str(summary["unit"]),
            model=Side.read(summary["model"]),
            baseline=Side.read(summary["baseline"]),
            difference=Differences(
                *(PairedDifference.read(difference[name]) for name in Differences.__dataclass_fields__)
            ),
            per_sample=per_sample,
            warnings=tuple(
                ComparisonWarning(w["code"], w["message"], int(w["count"]), tuple(w["rows"]), w["source"])
                for w in summary["warnings"]
            ),
            settings=dict(summary["settings"]),
            classes=None if classes is None else tuple(classes),
            gradient=gradient,
        )

    @classmethod
    def from_json(cls, content: bytes) -> Comparison:
        """From a JSON answer (null per-sample differences read as NaN)."""
        summary = orjson.loads(content)
        values = summary.get("per_sample")
        if values is None:
            return cls.from_summary(summary, None)
        return cls.from_summary(
            summary, np.array(values["difference"], dtype=np.float64), _gradient(values.get("gradient"))
        )

    @classmethod
    def from_npz(cls, content: bytes) -> Comparison:
        """From an ``application/x-npz`` answer: the JSON ``summary`` and, with ``per_sample``, ``difference``."""
        with np.load(io.BytesIO(content), allow_pickle=False) as archive:
            per_sample = archive["difference"] if "difference" in archive.files else None
            gradient = archive["gradient"] if "gradient" in archive.files else None
            return cls.from_summary(orjson.loads(str(archive["summary"])), per_sample, gradient)

    def summary(self) -> dict[str, Any]:
        """The API's JSON answer without the per-sample differences (``per_sample`` null)."""
        body: dict[str, Any] = {
            "n": self.n,
            "n_scored": self.n_scored,
            "n_clusters": self.n_clusters,
            "unit": self.unit,
        }
        if "label_type" in self.settings:  # multi-class answers carry the class names
            body["classes"] = None if self.classes is None else list(self.classes)
        return {
            **body,
            "model": self.model.summary(),
            "baseline": self.baseline.summary(),
            "difference": {name: _listed(value) for name, value in vars(self.difference).items()},
            "per_sample": None,
            "warnings": [{**vars(w), "rows": list(w.rows)} for w in self.warnings],
            "settings": dict(self.settings),
        }
