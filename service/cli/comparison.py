"""``xent score --baseline-predictions FILE``: the paired comparison of a model with a baseline, in-process or
against a service (one request: the paired standard errors need every row at once), and its table."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from service.cli.local import compare_locally
from service.client import Client, Comparison, PairedDifference
from service.client.results import Interval
from service.core.errors import counted


def compare_arrays(
    client: Client | None,
    labels: np.ndarray,
    predictions: np.ndarray,
    baseline: np.ndarray,
    *,
    binary: bool,
    options: dict[str, Any],
) -> Comparison:
    """The comparison of ``predictions`` (the model) with ``baseline``: by ``client``, or in this process (None)."""
    if client is None:
        return compare_locally(labels, predictions, baseline, binary=binary, options=options)
    if binary:
        return client.compare(labels, predictions, baseline, binary=True, **options)
    return client.compare(labels, predictions, baseline, **options)


def _number(value: float | None, digits: int = 6) -> str:
    return "null" if value is None else f"{value:.{digits}g}" if math.isfinite(value) else str(value)


def _interval(bounds: Interval | None) -> str:
    return "null" if bounds is None else f"[{_number(bounds[0], 4)}, {_number(bounds[1], 4)}]"


def _p_value(p: float | None) -> str:
    if p is None:
        return "null"
    return "<1e-300" if p == 0.0 else f"{p:.2g}"


def comparison_table(comparison: Comparison) -> str:
    """A readable comparison: each model's mean, the paired difference model − baseline with its interval, z and
    p (negative cross-entropy and KL differences: the model is better; for accuracy, positive), then the rows,
    clusters and both sides' warnings."""
    model, baseline, level = comparison.model.mean, comparison.baseline.mean, comparison.settings["confidence"]
    ci = f"{level:.0%} CI" if round(level * 100, 9) == round(level * 100) else f"{level:g} CI"
    lines = [
        f"{'':<16}{'model':>12}{'baseline':>12}{'difference':>13}  {ci + ' of the difference':<26}"
        f"{'z':>8}{'p':>10}   ({comparison.unit})"
    ]
    rows: tuple[tuple[str, str, PairedDifference], ...] = (
        ("cross-entropy", "cross_entropy", comparison.difference.cross_entropy),
        ("KL divergence", "kl_divergence", comparison.difference.kl_divergence),
        ("accuracy", "accuracy", comparison.difference.accuracy),
    )
    for label, name, difference in rows:
        z = "null" if difference.z is None else f"{difference.z:.2f}"
        lines.append(
            f"{label:<16}{_number(getattr(model, name)):>12}{_number(getattr(baseline, name)):>12}"
            f"{_number(difference.mean):>13}  {_interval(difference.ci):<26}{z:>8}{_p_value(difference.p_value):>10}"
        )
    lines.append(f"{'perplexity':<16}{_number(model.perplexity):>12}{_number(baseline.perplexity):>12}")
    correlation = comparison.difference.cross_entropy.correlation
    lines.append(
        f"{'n':<16}{comparison.n:>12}   ({comparison.n_scored} scored, paired; "
        f"correlation of the per-sample cross-entropies {_number(correlation, 3)})"
    )
    if comparison.n_clusters is not None:
        lines.append(f"{'clusters':<16}{comparison.n_clusters:>12}   (cluster-robust standard errors)")
    if not comparison.warnings:
        lines.append("warnings        none")
    for warning in comparison.warnings:
        shown = ", ".join(map(str, warning.rows)) + (", ..." if warning.count > len(warning.rows) else "")
        where = f" ({counted(warning.count, 'row')}: {shown})" if shown else ""
        lines.append(f"warning         {warning.source}: {warning.code}{where}: {warning.message}")
    return "\n".join(lines) + "\n"
