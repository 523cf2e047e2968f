"""What a scoring request asks beyond the overall means: ``by_group``, ``by_class`` and ``calibration`` (issue 15).

``multiclass_breakdowns`` and ``binary_breakdowns`` take a scored batch (its ``ScoreResult``) and the request's
labels and predictions, and build the accumulators that were asked for (``service.core.breakdowns``,
``service.core.calibration``): the answer shows their summaries, and the answer's ``state`` keeps them. The
probabilities are those the scoring read: the softmax of logits, e^x of log-probabilities, and the rows divided
by their sums under ``normalization: "renormalize"``; binary logits through the sigmoid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from service.core.arrays import float_matrix
from service.core.breakdowns import ClassBreakdown, GroupBreakdown, group_codes
from service.core.calibration import Calibration, binary_calibration, check_calibration_bins, multiclass_calibration
from service.core.errors import InvalidOption
from service.core.labels import class_names, parse_labels
from service.core.logspace import log_sigmoid, log_sum_exp_rows
from service.core.options import BinaryOptions, MulticlassOptions, Normalization, PredictionType
from service.core.result import ScoreResult, ScoringWarning, WarningCode
from service.core.score_state import PIECE_CLASSES
from service.core.statistics import cluster_keys

#: The answer's fields, by the state key of their accumulator.
ANSWER_FIELDS: Final = {"groups": "by_group", "classes": "by_class", "calibration": "calibration"}


@dataclass(frozen=True)
class Breakdowns:
    """The accumulators a request asked for (None where it did not, or where they are undefined) and the warnings
    they bring."""

    groups: GroupBreakdown | None = None
    classes: ClassBreakdown | None = None
    calibration: Calibration | None = None
    warnings: tuple[ScoringWarning, ...] = ()

    def pieces(self) -> dict[str, Any]:
        """The accumulators by state key (``groups``, ``classes``, ``calibration``), for the answer's ``state``."""
        return {key: getattr(self, key) for key in ANSWER_FIELDS}

    def fields(self, confidence: float) -> dict[str, Any]:
        """The answer's ``by_group``, ``by_class`` and ``calibration`` (null where off)."""
        return {
            name: None if piece is None else piece.summary(confidence)
            for name, piece in zip(ANSWER_FIELDS.values(), self.pieces().values(), strict=True)
        }


def _groups(result: ScoreResult, groups: Any, clusters: tuple[np.ndarray, list[Any]] | None) -> GroupBreakdown | None:
    """The per-group accumulator of the result's rows (None without ``groups``)."""
    if groups is None:
        return None
    names, codes = group_codes(groups, result.n)
    per_sample = result.per_sample
    values = np.column_stack([per_sample.cross_entropy, per_sample.kl_divergence, per_sample.entropy, result.correct])
    return GroupBreakdown.from_rows(
        names, codes, values.reshape(result.n, 4), result.row_weights, result.scored, clusters
    )


def _clusters(cluster_ids: Any, n: int) -> tuple[np.ndarray, list[Any]] | None:
    """Each row's index into the distinct cluster ids, and the ids (None without ``cluster_ids``)."""
    if cluster_ids is None:
        return None
    ids, codes = cluster_keys(cluster_ids, n)
    return codes, ids


def _soft_targets(rows: np.ndarray, asked: list[str]) -> ScoringWarning:
    """The SOFT_TARGETS warning about the target ``rows`` that are not one-hot, naming the fields left null."""
    verb, pronoun = ("are", "they need") if len(asked) > 1 else ("is", "it needs")
    message = (
        f"{' and '.join(asked)} {verb} null: {pronoun} one true class per row, and these target rows are not one-hot"
    )
    return ScoringWarning.for_rows(WarningCode.SOFT_TARGETS, rows, message)


def multiclass_breakdowns(
    result: ScoreResult,
    labels: Any,
    predictions: Any,
    *,
    classes: list[str] | None = None,
    options: MulticlassOptions | None = None,
    groups: Any = None,
    per_class: bool = False,
    calibration_bins: Any = None,
    cluster_ids: Any = None,
) -> Breakdowns:
    """``by_group``, ``by_class`` and ``calibration`` of a multi-class batch, as asked (see the module).

    ``result`` is ``score_multiclass(labels, predictions, classes=classes, options=options, …)``: the inputs
    have been checked. Class-wise and calibration need one true class per row: class indices or names, or
    target rows that are all one-hot; otherwise they are undefined (null in the answer, and in any merge of states
    that holds them), with a SOFT_TARGETS warning.

    Examples
    --------
    >>> from service.core.multiclass import score_multiclass
    >>> labels, predictions = [1, 0, 2], [[0.228, 0.619, 0.153], [0.5, 0.3, 0.2], [0.1, 0.2, 0.7]]
    >>> breakdowns = multiclass_breakdowns(score_multiclass(labels, predictions), labels, predictions, per_class=True)
    >>> {key: round(entry["mean_cross_entropy"], 6) for key, entry in breakdowns.fields(0.95)["by_class"].items()}
    {'0': 0.693147, '1': 0.47965, '2': 0.356675}
    """
    options = options or MulticlassOptions()
    bins = check_calibration_bins(calibration_bins)
    _check_weight_range(result.row_weights, groups is not None, per_class, bins is not None)
    clusters = _clusters(cluster_ids, result.n) if groups is not None or per_class else None
    found = Breakdowns(groups=_groups(result, groups, clusters))
    if not per_class and bins is None:
        return found
    preds = float_matrix(predictions, "predictions", finite=False)
    names = class_names(classes)
    n_classes = len(names) if names is not None else (int(preds.shape[1]) if preds.ndim == 2 else 0)
    keys = names if names is not None else [str(c) for c in range(n_classes)]
    if result.n == 0:
        nothing = np.zeros(0, dtype=np.intp)
        empty_classes = ClassBreakdown.from_rows(keys, nothing, nothing, np.zeros((0, 2)), np.zeros(0), clusters)
        return Breakdowns(
            found.groups,
            empty_classes if per_class else None,
            Calibration.empty(bins) if bins is not None else None,
        )
    targets = parse_labels(labels, result.n, n_classes, names, options)
    true_class = targets.indices
    if true_class is None:
        assert targets.distributions is not None
        one_hot = ((targets.distributions == 0) | (targets.distributions == 1)).all(axis=1)
        if not one_hot.all():
            asked = [name for name, on in (("by_class", per_class), ("calibration", bins is not None)) if on]
            return Breakdowns(
                found.groups,
                ClassBreakdown.undefined() if per_class else None,
                Calibration.undefined() if bins is not None else None,
                (_soft_targets(~one_hot, asked),),
            )
        true_class = targets.distributions.argmax(axis=1)
    _check_summable(result.row_weights)
    by_class = None
    if per_class:
        values = np.column_stack([result.per_sample.cross_entropy, result.correct])
        by_class = ClassBreakdown.from_rows(
            keys, true_class, preds.argmax(axis=1), values, result.row_weights, clusters
        )
    calibration = None
    if bins is not None:
        rows = slice(None) if result.n_scored == result.n else result.scored  # no copies when every row counts
        calibration = multiclass_calibration(
            _probabilities(preds[rows], options),
            true_class[rows],
            result.correct[rows],
            result.row_weights[rows],
            bins,
        )
    return Breakdowns(found.groups, by_class, calibration)


def _check_summable(weights: np.ndarray) -> None:
    """422 when the row weights sum past float64's largest number: ``by_class`` and ``calibration`` report
    weight sums and divide by them (the overall means rescale the weights instead, and stay exact)."""
    with np.errstate(over="ignore"):
        total = float(weights.sum())
    if not np.isfinite(total):
        raise InvalidOption(
            "sample_weights",
            "their sum passes float64's largest number (1.8e308), which per_class and calibration_bins add up; "
            "only the weights' ratios matter, so divide them all by a common factor",
        )


#: How far apart the positive weights may be when slices are asked for: the smallest at least this times the
#: largest (a group's, class's or bin's sums of only the smallest then keep 2^−75 of their value: the tables
#: scale by the largest weight), and for calibration, whose bins add the weights up as they are, at least this.
WEIGHT_RANGE: Final = 2.0**-1000


def _check_weight_range(weights: np.ndarray, groups: bool, per_class: bool, calibration: bool) -> None:
    """422 naming ``sample_weights`` when slices are asked for (``groups``, ``per_class``, ``calibration``) and the
    positive weights span more than 2^1000, or (calibration) the smallest is below 2^−1000: the weighted sums of a
    slice of only the smallest would fall short of float64's precision (weights 1 and 5e-324: a group of the
    latter had a mean of 0 for 0.78; all 5e-324, a Brier score of 0 for 0.101)."""
    asked = [
        name for name, on in (("groups", groups), ("per_class", per_class), ("calibration_bins", calibration)) if on
    ]
    positive = weights[weights > 0] if asked else weights[:0]
    if not positive.size:
        return
    smallest, largest = float(positive.min()), float(positive.max())
    if smallest < largest * WEIGHT_RANGE:
        options = f"{', '.join(asked[:-1])} and {asked[-1]}" if len(asked) > 1 else asked[0]
        raise InvalidOption(
            "sample_weights",
            f"the smallest positive weight is below 2^-1000 times the largest: {options} add up weighted sums "
            "per slice, and one of only the smallest weights would fall short of float64's precision; give such "
            "rows weight 0, or bring the weights closer",
        )
    if calibration and smallest < WEIGHT_RANGE:
        raise InvalidOption(
            "sample_weights",
            "the smallest positive weight is below 2^-1000 (9.3e-302), too small for the weighted sums "
            "calibration_bins adds up to keep float64's precision; only the weights' ratios matter, so multiply "
            "them all by a common factor",
        )


def _probabilities(preds: np.ndarray, options: MulticlassOptions) -> np.ndarray:
    """q as the scoring read it: softmax of logits, e^x of log-probabilities, rows over their sums to renormalise."""
    kind = options.prediction_type
    renormalize = options.normalization is Normalization.RENORMALIZE
    if kind is PredictionType.LOGITS or (kind is PredictionType.LOG_PROBABILITIES and renormalize):
        peak, log_sum = log_sum_exp_rows(preds)
        with np.errstate(over="ignore"):  # a spread past 1.8e308 gives −inf, and e^−inf = 0 is right
            return np.exp((preds - peak[:, None]) - log_sum[:, None])
    if kind is PredictionType.LOG_PROBABILITIES:
        return np.exp(preds)
    if renormalize:
        return preds / preds.sum(axis=1, keepdims=True)
    return preds


def binary_breakdowns(
    result: ScoreResult,
    labels: Any,
    predictions: Any,
    *,
    options: BinaryOptions | None = None,
    groups: Any = None,
    calibration_bins: Any = None,
    cluster_ids: Any = None,
) -> Breakdowns:
    """``by_group`` and ``calibration`` of a binary or multi-label batch, as asked (see the module).

    ``result`` is ``score_binary(labels, predictions, options=options, …)``. Calibration reads every element:
    its probability (the sigmoid of a logit) against its label, unsmoothed (a soft label's value).

    >>> from service.core.binary import score_binary
    >>> labels, predictions = [1, 0, 0], [0.9, 0.8, 0.2]
    >>> block = binary_breakdowns(score_binary(labels, predictions), labels, predictions, calibration_bins=2)
    >>> round(block.fields(0.95)["calibration"]["ece"], 6)
    0.3
    """
    options = options or BinaryOptions()
    bins = check_calibration_bins(calibration_bins)
    _check_weight_range(result.row_weights, groups is not None, False, bins is not None)
    clusters = _clusters(cluster_ids, result.n) if groups is not None else None
    found = Breakdowns(groups=_groups(result, groups, clusters))
    if bins is None:
        return found
    if result.n == 0:
        return Breakdowns(found.groups, calibration=Calibration.empty(bins))
    preds = float_matrix(predictions, "predictions", allow_vector=True)
    target = float_matrix(labels, "labels", allow_vector=True)
    preds, target = preds.reshape(result.n, -1), target.reshape(result.n, -1)
    probabilities = np.exp(log_sigmoid(preds)) if options.prediction_type is PredictionType.LOGITS else preds
    _check_summable(result.row_weights)
    return Breakdowns(found.groups, calibration=binary_calibration(probabilities, target, result.row_weights, bins))


# The state's accumulators, by state key: a merge reads them back with these classes (``score_state``).
PIECE_CLASSES.update({"groups": GroupBreakdown, "classes": ClassBreakdown, "calibration": Calibration})
