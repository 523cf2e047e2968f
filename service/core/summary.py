"""The uncertainty blocks of an answer (``stderr``, ``ci``, ``n_clusters``) and the paired comparison's answer.

``answer_summary`` builds a scoring answer with ``uncertainty_fields``; ``comparison_summary`` builds the
answer of ``/compare`` from the same blocks, so both answers read the same shape.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from service.core.result import DEFAULT_CONFIDENCE, ScoreResult, WarningCode, finite_or_none, wire_warnings
from service.core.score_state import StateOf, answer_state
from service.core.slices import Breakdowns
from service.core.uncertainty import (
    Intervals,
    PairedDifference,
    Stderrs,
    Uncertainty,
    paired_difference,
    uncertainty,
)

_STDERR_METRICS = ("cross_entropy", "kl_divergence", "entropy", "accuracy")
_INTERVAL_METRICS = (*_STDERR_METRICS, "perplexity")
_DIFFERENCE_METRICS = ("cross_entropy", "kl_divergence", "accuracy")


def wire_interval(bounds: tuple[float, float] | None) -> list[float] | None:
    """An interval as ``[low, high]``; None when it is undefined or a bound is not finite (JSON has no infinity)."""
    if bounds is None or not all(math.isfinite(bound) for bound in bounds):
        return None
    return [bounds[0], bounds[1]]


def _blocks(stderr: Stderrs, ci: Intervals) -> dict[str, Any]:
    """The answer's ``stderr`` and ``ci`` blocks."""
    return {
        "stderr": {name: finite_or_none(getattr(stderr, name)) for name in _STDERR_METRICS},
        "ci": {name: wire_interval(getattr(ci, name)) for name in _INTERVAL_METRICS},
    }


def answer_summary(
    result: ScoreResult,
    *,
    per_sample: bool,
    extra: Mapping[str, Any] | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    cluster_ids: Any = None,
    state: StateOf | None = None,
    breakdowns: Breakdowns | None = None,
) -> dict[str, Any]:
    """The answer's wire dict (the JSON answer, and the NPZ answer's ``summary``), built here only.

    Non-finite numbers are None (JSON has no infinity); ``per_sample`` there is None,
    for the writer to fill in, while ``settings.per_sample`` records the flag; ``extra``
    adds top-level fields after ``unit``. ``stderr``, ``ci`` and ``n_clusters`` are those of
    ``service.core.uncertainty.uncertainty`` at ``confidence``, clustered by ``cluster_ids``.
    With ``state`` (the endpoint and options), the answer ends with its mergeable ``state``
    (``service.core.score_state``). ``breakdowns`` (``service.core.slices``) gives ``by_group``, ``by_class``
    and ``calibration`` (null without), their warnings, and their accumulators to the state.
    """
    spread, warnings, level = uncertainty_fields(result, confidence, cluster_ids)
    breakdowns = breakdowns or Breakdowns()
    answer = {
        "n": result.n,
        "n_scored": result.n_scored,
        "n_clusters": spread.pop("n_clusters"),
        "unit": result.unit.value,
        **(extra or {}),
        **result.aggregates(),
        **spread,
        **breakdowns.fields(level),
        "per_sample": None,
        "warnings": [*wire_warnings(result.warnings), *wire_warnings(breakdowns.warnings), *warnings],
        "settings": {
            **result.settings,
            "per_sample": per_sample,
            "gradient": result.gradient is not None,
            "confidence": level,
        },
    }
    if state is not None and result.unmergeable is not None:
        answer["state"] = None
        answer["warnings"].append(_not_mergeable(result.unmergeable))
    elif state is not None:
        answer["state"] = answer_state(
            result, state, cluster_ids=cluster_ids, pieces=breakdowns.pieces(), warnings=breakdowns.warnings
        )
    return answer


def _not_mergeable(reason: str) -> dict[str, Any]:
    """The warning of an answer whose ``state`` is null: its means are not the row-weighted means a state merges."""
    message = (
        "state is null: the means are not row-weighted means of the per-sample values, so no merge of states "
        f"gives them; {reason}"
    )
    return {"code": str(WarningCode.STATE_NOT_MERGEABLE), "message": message, "count": 1, "rows": []}


def uncertainty_fields(
    result: ScoreResult, confidence: Any, cluster_ids: Any
) -> tuple[dict[str, Any], list[dict[str, Any]], float]:
    """``n_clusters``, ``stderr`` and ``ci`` of ``result``, the warnings they bring, and the confidence level."""
    spread = uncertainty(result, confidence, cluster_ids)
    return uncertainty_blocks(spread), wire_warnings(spread.warnings), spread.confidence


def uncertainty_blocks(spread: Uncertainty) -> dict[str, Any]:
    """``n_clusters``, ``stderr`` and ``ci`` of an answer (a scoring one, or merged states': ``score_state``)."""
    return {"n_clusters": spread.n_clusters, **_blocks(spread.stderr, spread.ci)}


def _difference(paired: PairedDifference) -> dict[str, Any]:
    """One metric's ``difference`` entry (null where not finite)."""
    return {
        "mean": finite_or_none(paired.mean),
        "stderr": finite_or_none(paired.stderr),
        "ci": wire_interval(paired.ci),
        "z": finite_or_none(paired.z),
        "p_value": finite_or_none(paired.p_value),
        "correlation": paired.correlation,
    }


def comparison_summary(
    model: ScoreResult,
    baseline: ScoreResult,
    *,
    per_sample: bool,
    confidence: Any,
    cluster_ids: Any,
    extra: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
    """The answer of a paired comparison, with ``per_sample`` None for the writer, and the per-sample differences.

    ``model`` and ``baseline`` each get the scoring answer's ``mean``, ``sum``, ``stderr`` and ``ci``;
    ``difference`` is ``paired_difference``'s. The warnings are both sides', each marked with its ``source``;
    the difference's own STDERR_UNDEFINED is left out, as it repeats the model's (the same rows, weights and
    clusters). ``settings`` are the model's, with ``settings`` added.
    """
    sides: dict[str, Any] = {}
    warnings: list[dict[str, Any]] = []
    for source, result in (("model", model), ("baseline", baseline)):
        spread = uncertainty(result, confidence, cluster_ids)
        fields = _blocks(spread.stderr, spread.ci)
        sides[source] = {**result.aggregates(), **fields}
        for warning in (*wire_warnings(result.warnings), *wire_warnings(spread.warnings)):
            warnings.append({**warning, "source": source})
    difference = paired_difference(model, baseline, confidence, cluster_ids)
    summary = {
        "n": model.n,
        "n_scored": model.n_scored,
        "n_clusters": difference.n_clusters,
        "unit": model.unit.value,
        **(extra or {}),
        **sides,
        "difference": {name: _difference(getattr(difference, name)) for name in _DIFFERENCE_METRICS},
        "per_sample": None,
        "warnings": warnings,
        "settings": {
            **model.settings,
            **(settings or {}),
            "per_sample": per_sample,
            "gradient": model.gradient is not None,
            "confidence": difference.confidence,
        },
    }
    return summary, difference.per_sample
