"""The answer for the rows of a merged scoring state (``POST /v1/merge``): the scoring answer without ``per_sample``.

Its numbers come from the state's sufficient statistics by the formulas of ``service.core.score_state``: the
means, sums and perplexity; the standard errors SE² = n/(n−1)·q (HC1) or G/(G−1)·Σ_g f_g²(m_g − m)² (CR1),
and their intervals by ``intervals``; ``by_group``, ``by_class`` and ``calibration`` by their accumulators; the
warnings with their counts, those about the whole batch found again for the merged rows.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from service.core.contract import LOG_BASES, MAX_EXP_NATS, MULTICLASS, aggregate_overflow_message
from service.core.intervals import interval, perplexity_interval
from service.core.score_state import METRICS, PIECES, ScoreState
from service.core.state_moments import Clusters, Moments
from service.core.statistics import StandardError, too_few
from service.core.summary import uncertainty_blocks
from service.core.uncertainty import Intervals, StatisticsWarning, Stderrs, Uncertainty, undefined_warning

#: The metrics with a sum.
_WITH_SUM = METRICS[:3]
#: The order in which the service lists warnings (others follow, in the order they were first seen).
_ORDER = ("ROWS_NOT_NORMALIZED", "RENORMALIZED", "CLIPPED", "EMPTY", "ZERO_WEIGHT", "NON_FINITE")


def merged_answer(parsed: ScoreState, confidence: float) -> dict[str, Any]:
    """The answer for a merged state's rows: the scoring answer's fields without ``per_sample``."""
    unit = parsed.settings["unit"]  # a setting every state has, checked when it was parsed
    base = LOG_BASES[unit]
    metrics = parsed.metrics
    has_means = parsed.n_weighted > 0
    means = {name: metrics[name].mean if has_means else None for name in METRICS}
    ce = means["cross_entropy"]
    perplexity = None if ce is None or ce * base >= MAX_EXP_NATS else math.exp(ce * base)
    sums = {name: metrics[name].total if parsed.n_scored else 0.0 for name in _WITH_SUM}
    spread = _uncertainty(parsed, means, confidence, base)
    blocks = uncertainty_blocks(spread)
    answer: dict[str, Any] = {
        "n": parsed.n,
        "n_scored": parsed.n_scored,
        "n_clusters": blocks.pop("n_clusters"),
        "unit": unit,
    }
    if parsed.endpoint == MULTICLASS:
        answer["classes"] = parsed.settings.get("classes")
    answer["mean"] = {
        "cross_entropy": ce,
        "kl_divergence": means["kl_divergence"],
        "entropy": means["entropy"],
        "perplexity": perplexity,
        "accuracy": means["accuracy"],
    }
    answer["sum"] = sums
    answer.update(blocks)
    for key, answer_key in PIECES.items():
        piece = parsed.pieces[key]
        answer[answer_key] = None if piece is None else piece.summary(confidence)
    answer["warnings"] = [*_warnings(parsed, perplexity), *_wire(spread.warnings)]
    answer["settings"] = {"endpoint": parsed.endpoint, **parsed.settings, "confidence": confidence}
    return answer


def _uncertainty(parsed: ScoreState, means: dict[str, float | None], level: float, base: float) -> Uncertainty:
    """Standard errors and intervals from the moments, as ``uncertainty.uncertainty`` takes them from rows."""
    n, clusters = parsed.n_weighted, parsed.clusters
    n_clusters = None if clusters is None else len(clusters.ids)
    errors = [_standard_error(parsed.metrics[name], name, n, clusters, means[name]) for name in METRICS]
    ce, kl, h, accuracy = (
        interval(means[name], error.stderr, level) for name, error in zip(METRICS, errors, strict=True)
    )
    return Uncertainty(
        stderr=Stderrs(*(error.stderr for error in errors)),
        ci=Intervals(ce, kl, h, accuracy, perplexity_interval(ce, base)),
        n_clusters=n_clusters,
        confidence=level,
        warnings=undefined_warning(errors),
    )


def _warnings(parsed: ScoreState, perplexity: float | None) -> list[dict[str, Any]]:
    """The warnings of the merged rows: the kept counts, and those about the whole batch found again."""
    found: dict[str, tuple[int, str]] = dict(parsed.warnings)
    if parsed.n_scored == 0:
        reason = "the batch is empty" if parsed.n == 0 else "every row is ignored"
        found["EMPTY"] = (0, f"nothing was scored: {reason}; means are null")
    elif parsed.n_weighted == 0:
        message = "the weights of the scored rows sum to 0, so the weighted means are undefined (null)"
        found["ZERO_WEIGHT"] = (parsed.n_scored, message)
    overflowing = [
        f"sum.{name}" for name in _WITH_SUM if parsed.metrics[name].total is None and parsed.metrics[name].finite
    ]
    mean_ce = parsed.metrics["cross_entropy"].mean
    if parsed.n_weighted and mean_ce is not None and perplexity is None:
        overflowing.append("mean.perplexity")
    if overflowing:
        found["AGGREGATE_OVERFLOW"] = (0, aggregate_overflow_message(overflowing))
    order = {code: i for i, code in enumerate((*_ORDER, "AGGREGATE_OVERFLOW"))}
    codes = sorted(found, key=lambda code: order.get(code, len(order)))
    return [{"code": code, "message": found[code][1], "count": found[code][0], "rows": []} for code in codes]


def _standard_error(
    moments: Moments, name: str, n: int, clusters: Clusters | None, mean: float | None
) -> StandardError:
    """SE of one metric from its moments (HC1), or from the cluster shares and means (CR1)."""
    n_clusters = None if clusters is None else len(clusters.ids)
    if n == 0:
        return StandardError(None, None, 0, n_clusters, "no scored row has a positive weight")
    if not moments.finite:
        return StandardError(None, None, n, n_clusters, "some per-sample values are infinite", non_finite=True)
    reason = too_few(n, n_clusters)
    if reason is not None:
        return StandardError(mean, None, n, n_clusters, reason)
    if moments.low == moments.high:
        return StandardError(mean, 0.0, n, n_clusters, None)
    if clusters is None:
        variance = n / (n - 1) * moments.q
    else:
        assert n_clusters is not None
        assert mean is not None
        variance = n_clusters / (n_clusters - 1) * clusters.sum_of_squares(name, mean)
    with np.errstate(over="ignore"):
        stderr = float(np.sqrt(np.float64(variance)))
    return StandardError(mean, stderr, n, n_clusters, None)


def _wire(warnings: tuple[StatisticsWarning, ...]) -> list[dict[str, Any]]:
    return [{"code": w.code, "message": w.message, "count": w.count, "rows": list(w.rows)} for w in warnings]
