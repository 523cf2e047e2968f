"""``xent score`` without a service: the core scores (or compares) the arrays in this process.

The answer is built as the service builds it (``core.summary.answer_summary``, with the breakdowns and calibration
of ``core.slices`` when asked) and read into ``Scores`` as
the client reads the service's NPZ answer (``Scores.from_arrays``), so that in-process and remote
scoring print the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from service.client import Comparison, Scores
from service.client.wire import DEFAULTS, check_options, prepare, prepare_predictions
from service.core import BinaryOptions, MulticlassOptions, ScoreResult, score_binary, score_multiclass
from service.core.baseline import scoring_baseline
from service.core.compat import check_breakdowns, score_binary_preset, score_multiclass_preset
from service.core.contract import BINARY, MULTICLASS, resolve_epsilon
from service.core.gradient import requested_gradient
from service.core.score_state import StateOf
from service.core.slices import binary_breakdowns, multiclass_breakdowns
from service.core.summary import answer_summary, comparison_summary


def score_locally(labels: Any, predictions: Any, *, binary: bool, options: Mapping[str, Any]) -> Scores:
    """Score in this process with the service's core: the numbers the service would send.

    ``options`` are the client's (``"auto"`` epsilon and all); those not given take the API's defaults.
    """
    endpoint = BINARY if binary else MULTICLASS
    given = check_options(endpoint, options)
    targets, preds = prepare(endpoint, labels, predictions)
    per_sample = bool(given["per_sample"])
    gradient = requested_gradient(bool(given["gradient"]), per_sample)
    check_breakdowns(
        given["compat"], per_class=bool(given.get("per_class")), calibration_bins=given["calibration_bins"]
    )
    result, scoring = _scored(targets, preds, binary, given, given["prediction_type"], gradient=gradient)
    asked = {"groups": given["groups"], "calibration_bins": given["calibration_bins"]}
    asked["cluster_ids"] = _ids(given["cluster_ids"])
    if isinstance(scoring, BinaryOptions):
        breakdowns = binary_breakdowns(result, targets, preds, options=scoring, **asked)
    else:  # the service's by_group, by_class and calibration, as the routes build them
        per_class = bool(given["per_class"])
        breakdowns = multiclass_breakdowns(
            result, targets, preds, classes=given["classes"], options=scoring, per_class=per_class, **asked
        )
    summary = answer_summary(
        result,
        per_sample=per_sample,
        extra=None if binary else {"classes": given["classes"]},  # multi-class answers echo the class names
        confidence=given["confidence"],
        cluster_ids=_ids(given["cluster_ids"]),
        state=StateOf.of_options(endpoint, given, preds),
        breakdowns=breakdowns,
    )
    return Scores.from_arrays(summary, _answer_arrays(result) if per_sample else {})


def compare_locally(
    labels: Any, predictions: Any, baseline_predictions: Any, *, binary: bool, options: Mapping[str, Any]
) -> Comparison:
    """Compare two models' predictions in this process with the service's core: the answer ``/compare`` sends.

    ``options`` are ``Client.compare``'s (``baseline_prediction_type`` among them; None: ``prediction_type``).
    """
    endpoint = BINARY if binary else MULTICLASS
    given = check_options(endpoint, options, compare=True)
    targets, preds = prepare(endpoint, labels, predictions)
    baseline_type = given["baseline_prediction_type"] or given["prediction_type"]
    gradient = requested_gradient(bool(given["gradient"]), bool(given["per_sample"]))
    model = _score(targets, preds, binary, given, given["prediction_type"], gradient=gradient)
    with scoring_baseline(baseline := prepare_predictions(baseline_predictions), preds):
        baseline_result = _score(targets, baseline, binary, given, baseline_type)
    per_sample = bool(given["per_sample"])
    summary, differences = comparison_summary(
        model,
        baseline_result,
        per_sample=per_sample,
        confidence=given["confidence"],
        cluster_ids=_ids(given["cluster_ids"]),
        extra=None if binary else {"classes": given["classes"]},
        settings={"baseline_prediction_type": baseline_type},
    )
    return Comparison.from_summary(summary, differences if per_sample else None, model.gradient)


def _ids(cluster_ids: Any) -> Any:
    """Cluster ids as the service decodes them: an array as it is, anything else as a list."""
    return cluster_ids if cluster_ids is None or isinstance(cluster_ids, np.ndarray) else list(cluster_ids)


def _score(
    targets: np.ndarray,
    preds: np.ndarray,
    binary: bool,
    given: Mapping[str, Any],
    prediction_type: str,
    *,
    gradient: bool = False,
) -> ScoreResult:
    """One model's ``ScoreResult`` with the options ``given`` (every one filled in) and ``prediction_type``; the
    gradient only when ``gradient`` says (a comparison's baseline has none)."""
    return _scored(targets, preds, binary, given, prediction_type, gradient=gradient)[0]


def _scored(
    targets: np.ndarray,
    preds: np.ndarray,
    binary: bool,
    given: Mapping[str, Any],
    prediction_type: str,
    *,
    gradient: bool = False,
) -> tuple[ScoreResult, BinaryOptions | MulticlassOptions]:
    """``_score``'s result, with the scoring options it used (the breakdowns read them)."""
    common: dict[str, Any] = {
        "gradient": gradient,
        "prediction_type": prediction_type,
        "label_smoothing": float(given["label_smoothing"]),
        "epsilon": resolve_epsilon(given["epsilon"]),
        "unit": given["unit"],
    }
    preset = given["compat"]
    # The options a preset holds to its own values count as set explicitly when they are not the API's default.
    defaults = DEFAULTS[BINARY if binary else MULTICLASS]
    explicit = {name for name in ("epsilon", "normalization", "tolerance") if given.get(name) != defaults.get(name)}
    if binary:
        data: dict[str, Any] = {"pos_weight": given["pos_weight"], "sample_weights": given["sample_weights"]}
        options = BinaryOptions(**common)
        if preset != "xent":
            return score_binary_preset(preset, targets, preds, options=options, given=explicit, **data), options
        return score_binary(targets, preds, options=options, **data), options
    data = {k: given[k] for k in ("classes", "class_weights", "sample_weights")}
    multiclass = MulticlassOptions(
        **common,
        normalization=given["normalization"],
        tolerance=float(given["tolerance"]),
        ignore_index=given["ignore_index"],
    )
    if preset != "xent":
        return score_multiclass_preset(preset, targets, preds, options=multiclass, given=explicit, **data), multiclass
    return score_multiclass(targets, preds, options=multiclass, **data), multiclass


def _answer_arrays(result: ScoreResult) -> dict[str, np.ndarray]:
    """The per-sample members of the service's NPZ answer (NaN on ignored rows, +inf kept)."""
    values = result.per_sample
    return {
        "cross_entropy": values.cross_entropy,
        "kl_divergence": values.kl_divergence,
        "entropy": values.entropy,
        "scored": result.scored,
        **({} if result.gradient is None else {"gradient": result.gradient}),
    }
