"""``xent score`` without a service: the core scores the arrays in this process.

The answer is built as the service builds it (``ScoreResult.to_summary``) and read into ``Scores`` as
the client reads the service's NPZ answer (``Scores.from_arrays``), so that in-process and remote
scoring print the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from service.client import Scores
from service.client.wire import check_options, prepare
from service.core import BinaryOptions, MulticlassOptions, ScoreResult, score_binary, score_multiclass
from service.core.contract import BINARY, MULTICLASS, resolve_epsilon


def score_locally(labels: Any, predictions: Any, *, binary: bool, options: Mapping[str, Any]) -> Scores:
    """Score in this process with the service's core: the numbers the service would send.

    ``options`` are the client's (``"auto"`` epsilon and all); those not given take the API's defaults.
    """
    endpoint = BINARY if binary else MULTICLASS
    given = check_options(endpoint, options)
    targets, preds = prepare(endpoint, labels, predictions)
    common: dict[str, Any] = {
        "prediction_type": given["prediction_type"],
        "label_smoothing": float(given["label_smoothing"]),
        "epsilon": resolve_epsilon(given["epsilon"]),
        "unit": given["unit"],
    }
    extra: dict[str, Any] | None = None
    if binary:
        result = score_binary(
            targets,
            preds,
            pos_weight=given["pos_weight"],
            sample_weights=given["sample_weights"],
            options=BinaryOptions(**common),
        )
    else:
        result = score_multiclass(
            targets,
            preds,
            classes=given["classes"],
            class_weights=given["class_weights"],
            sample_weights=given["sample_weights"],
            options=MulticlassOptions(
                **common,
                normalization=given["normalization"],
                tolerance=float(given["tolerance"]),
                ignore_index=given["ignore_index"],
            ),
        )
        extra = {"classes": given["classes"]}  # multi-class answers echo the class names
    per_sample = bool(given["per_sample"])
    summary = result.to_summary(per_sample=per_sample, extra=extra)
    return Scores.from_arrays(summary, _answer_arrays(result) if per_sample else {})


def _answer_arrays(result: ScoreResult) -> dict[str, np.ndarray]:
    """The per-sample members of the service's NPZ answer (NaN on ignored rows, +inf kept)."""
    values = result.per_sample
    return {
        "cross_entropy": values.cross_entropy,
        "kl_divergence": values.kl_divergence,
        "entropy": values.entropy,
        "scored": result.scored,
    }
