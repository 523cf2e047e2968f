"""Multi-class cross-entropy, KL divergence and target entropy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from service.core.arrays import check_finite, describe, float_matrix, nonnegative_weights
from service.core.errors import BadShape, InvalidInput, InvalidOption, OutOfRange, RowsNotNormalized, UnknownClass
from service.core.logspace import log_clipped, log_clipped_moved, log_sum_exp_rows, scan_rows, xlogx
from service.core.options import MulticlassOptions, Normalization, PredictionType
from service.core.result import ScoreResult, ScoringWarning, WarningCode, empty, finish

#: Below this a negative divergence is rounding noise, not a property of the input.
_ROUNDING = 1e-12
_DEFAULT_OPTIONS = MulticlassOptions()


class _Targets(NamedTuple):
    """Labels in one of two forms: hard class indices, or N×C target distributions."""

    form: str  # "class_indices" | "class_names" | "distributions"
    scored: np.ndarray  # bool (N,): False on rows equal to ignore_index
    indices: np.ndarray | None = None  # int (N,), 0 on ignored rows
    distributions: np.ndarray | None = None  # float (N, C)
    all_scored: bool = True  # scored.all()


def score_multiclass(
    labels: Any,
    predictions: Any,
    *,
    classes: list[str] | None = None,
    class_weights: Any = None,
    sample_weights: Any = None,
    options: MulticlassOptions | None = None,
) -> ScoreResult:
    """Cross-entropy H(y, q) = H(y) + KL(y ‖ q) of each row, and their weighted means.

    Parameters
    ----------
    labels
        N class indices, N class names (with ``classes``), or N×C target distributions.
    predictions
        N×C probabilities, logits or log-probabilities (``options.prediction_type``).
    classes
        C unique class names, in column order.
    class_weights, sample_weights
        Non-negative weights that change only the aggregates: row i weighs
        sᵢ·Σ_c w_c·y'ᵢ_c.
    options
        Prediction type, label smoothing, ε clip, normalization policy, unit, ignore_index.

    Examples
    --------
    True class B of A/B/C, predicted [0.228, 0.619, 0.153]: −ln 0.619 nats.

    >>> result = score_multiclass([1], [[0.228, 0.619, 0.153]])
    >>> round(result.mean.cross_entropy, 6), round(result.mean.kl_divergence, 6), result.mean.entropy
    (0.47965, 0.47965, 0.0)

    A soft target: CE = H + KL.

    >>> soft = score_multiclass([[0.5, 0.5]], [[0.25, 0.75]])
    >>> h, kl, ce = soft.mean.entropy, soft.mean.kl_divergence, soft.mean.cross_entropy
    >>> round(h, 6), round(kl, 6), round(ce, 6), abs(ce - (h + kl)) < 1e-12
    (0.693147, 0.143841, 0.836988, True)
    """
    options = options or _DEFAULT_OPTIONS
    # The finite check of the predictions runs inside the blocked pass below (or before any
    # other error is raised), so that a valid batch is read once, not once more for it.
    preds = float_matrix(predictions, "predictions", finite=False)
    try:
        n = preds.shape[0]
        names = _class_names(classes)
        n_classes = _number_of_classes(preds, names, class_weights)
        targets = _targets(labels, n, n_classes, names, options)
        weights_by_class = (
            None if class_weights is None else nonnegative_weights(class_weights, "class_weights", n_classes, "classes")
        )
        weights_by_sample = (
            None if sample_weights is None else nonnegative_weights(sample_weights, "sample_weights", n, "rows")
        )
    except Exception:
        check_finite(preds, "predictions")  # a NaN or infinity in the predictions is reported first
        raise
    kind = options.prediction_type
    settings = {
        "prediction_type": kind.value,
        "label_type": targets.form,
        "unit": options.unit.value,
        "epsilon": options.resolved_epsilon,
        "epsilon_applies": kind is PredictionType.PROBABILITIES,
        "label_smoothing": options.label_smoothing,
        "normalization": options.normalization.value,
        "tolerance": options.tolerance,
        "ignore_index": options.ignore_index,
        "class_weights": None if weights_by_class is None else weights_by_class.tolist(),
        "sample_weights": sample_weights is not None,
    }
    if n == 0:
        return empty(options.unit, settings)

    warnings: list[ScoringWarning] = []
    if targets.indices is not None and options.label_smoothing == 0:
        # A hard label needs only the true class's column: CE = KL = −log q_y, H = 0.
        true_class = targets.indices
        scores = _hard_label_scores(preds, targets, options, warnings)
        if scores is None:  # not finite, out of range or not C-contiguous: the exact path says which
            check_finite(preds, "predictions")
            log_q_true, clipped_rows = _log_predictions(preds, targets.scored, options, warnings).at(true_class)
            correct = (preds.argmax(axis=1) == true_class).astype(np.float64)
        else:
            log_q_true, clipped_rows, correct = scores
        cross_entropy = np.negative(log_q_true, out=log_q_true)  # a fresh array either way
        entropy = np.zeros(n)
        kl_divergence = cross_entropy
        class_mass = None if weights_by_class is None else weights_by_class[true_class]
    else:
        check_finite(preds, "predictions")
        log_predictions = _log_predictions(preds, targets.scored, options, warnings)
        target = _dense_target(targets, n, n_classes or preds.shape[1], options.label_smoothing)
        log_q, clipped = log_predictions.everywhere()
        entropy = -xlogx(target).sum(axis=1)
        kl_divergence = _kl_rows(target, log_q)
        cross_entropy = entropy + kl_divergence
        # Without class weights every row weighs exactly 1, even a target summing to 1 ± tolerance.
        class_mass = None if weights_by_class is None else target @ weights_by_class
        clipped_rows = None if clipped is None else np.asarray((clipped & (target > 0)).any(axis=1))
        correct = (preds.argmax(axis=1) == target.argmax(axis=1)).astype(np.float64)

    if clipped_rows is not None:
        if not targets.all_scored:
            clipped_rows &= targets.scored
        if clipped_rows.any():
            eps = options.resolved_epsilon
            message = (
                f"probabilities outside [epsilon, 1 - epsilon] (epsilon = {eps:.6g}) were clipped "
                "before the logarithm where the target is non-zero"
            )
            warnings.append(ScoringWarning.for_rows(WarningCode.CLIPPED, clipped_rows, message))
    # Weights multiply sᵢ·massᵢ; a missing factor is 1, and x·1 = x, so it is left out (None: all 1).
    if weights_by_sample is None:
        weights = class_mass
    else:
        weights = weights_by_sample if class_mass is None else weights_by_sample * class_mass
    return finish(
        cross_entropy=cross_entropy,
        kl_divergence=kl_divergence,
        entropy=entropy,
        correct=correct,
        scored=targets.scored,
        weights=weights,
        unit=options.unit,
        warnings=warnings,
        settings=settings,
        all_scored=targets.all_scored,
    )


def _hard_label_scores(
    preds: np.ndarray, targets: _Targets, options: MulticlassOptions, warnings: list[ScoringWarning]
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray] | None:
    """log q_y, the rows whose q_y was clipped, and whether argmax = y, from one blocked pass.

    The numbers are those of ``_LogPredictions.at`` and ``preds.argmax(axis=1) == y``, bit for
    bit, without an N×C temporary. None when a prediction is not finite or out of range (the
    exact path then raises the very error it always did) or when the array is not C-contiguous.
    """
    assert targets.indices is not None
    if not preds.flags.c_contiguous:
        return None
    kind = options.prediction_type
    scan = scan_rows(preds, targets.indices, exponentiate=kind is not PredictionType.PROBABILITIES)
    if scan is None:
        return None
    correct = scan.hit.astype(np.float64)
    if kind is PredictionType.PROBABILITIES:
        if scan.lowest < 0 or scan.highest > 1:
            return None
        values, sums = scan.picked, scan.total
        if _normalize(sums, targets.scored, options, warnings):
            # Ignored rows are not checked and may sum to 0: leave those as they are.
            values = values / np.where(sums > 0, sums, 1.0)
        log_q, clipped = log_clipped_moved(values, options.resolved_epsilon)
        return log_q, clipped, correct
    if kind is PredictionType.LOG_PROBABILITIES and scan.highest > 0:
        return None
    log_sum = np.log(scan.total)
    if kind is PredictionType.LOG_PROBABILITIES and not _normalize(
        np.exp(scan.peak + log_sum), targets.scored, options, warnings
    ):
        return scan.picked, None, correct
    # (x − peak) − log_sum, in that order: peak + log_sum would round log_sum away when peak is huge.
    if scan.spread_overflows:
        with np.errstate(over="ignore"):  # a spread past 1.8e308 gives −inf, the correctly rounded log q
            log_q = np.subtract(scan.picked, scan.peak, out=scan.picked)
    else:
        log_q = np.subtract(scan.picked, scan.peak, out=scan.picked)
    log_q -= log_sum
    return log_q, None, correct


def _kl_rows(target: np.ndarray, log_q: np.ndarray) -> np.ndarray:
    """KL(t ‖ q) per row: Σ_c t_c·(log t_c − log q_c), with 0·(…) = 0.

    Each term is a difference of logs before weighting, which keeps a tiny divergence
    accurate where CE − H would cancel. Rounding can leave −1e-17 on a perfect match;
    that is set to 0. A clearly negative value is kept: it only arises from a prediction
    row that does not sum to 1 and was scored as given (ROWS_NOT_NORMALIZED).
    """
    positive = target > 0
    log_t = np.log(target, where=positive, out=np.zeros_like(target))
    with np.errstate(invalid="ignore"):
        gaps = np.where(positive, log_t - log_q, 0.0)
    divergence = np.einsum("ij,ij->i", target, gaps)
    return np.where((divergence < 0) & (divergence > -_ROUNDING), 0.0, divergence)


def _dense_target(targets: _Targets, n: int, n_classes: int, smoothing: float) -> np.ndarray:
    """The N×C target y' = (1 − ε)·y + ε/C (one-hot y for hard labels)."""
    if targets.distributions is not None:
        target = targets.distributions
    else:
        assert targets.indices is not None
        target = np.zeros((n, n_classes))
        target[np.arange(n), targets.indices] = 1.0
    if smoothing:
        target = (1.0 - smoothing) * target + smoothing / n_classes
    return target


def _class_names(classes: list[str] | None) -> list[str] | None:
    """Check that class names are unique strings."""
    if classes is None:
        return None
    seen: dict[str, int] = {}
    for position, name in enumerate(classes):
        if not isinstance(name, str):
            raise InvalidInput("classes", f"expected a class name (string), got {describe(name)}", row=position)
        if name in seen:
            raise InvalidInput(
                "classes", f"duplicate class name {name!r} (also at position {seen[name]})", row=position
            )
        seen[name] = position
    return list(classes)


def _number_of_classes(preds: np.ndarray, names: list[str] | None, class_weights: Any) -> int | None:
    """C from the predictions' width; for an empty batch, from classes or class_weights."""
    if preds.shape[0] == 0:
        if names is not None:
            return len(names)
        return len(class_weights) if isinstance(class_weights, list | np.ndarray) else None
    n_classes = preds.shape[1]
    if n_classes < 2:
        raise BadShape(
            "predictions",
            f"each row needs at least 2 classes (columns), got {n_classes}; "
            "for one probability per sample use binary cross-entropy",
        )
    if names is not None and len(names) != n_classes:
        raise BadShape("classes", f"has {len(names)} names but predictions have {n_classes} columns")
    return n_classes


def _targets(
    labels: Any, n: int, n_classes: int | None, names: list[str] | None, options: MulticlassOptions
) -> _Targets:
    """Classify and check the labels: indices, names or distributions."""
    if isinstance(labels, np.ndarray):
        labels = _labels_from_array(labels)
    if not isinstance(labels, list | np.ndarray):
        raise BadShape(
            "labels", f"expected an array (class indices, class names or probability rows), got {describe(labels)}"
        )
    if len(labels) != n:
        raise BadShape("labels", f"has {len(labels)} entries but predictions have {n} rows")
    if n == 0:
        return _Targets("class_indices", np.zeros(0, dtype=bool), indices=np.zeros(0, dtype=np.int64))
    if isinstance(labels, np.ndarray):
        if labels.dtype.kind in "iu":
            return _index_targets(labels, n_classes, options)
        return _distribution_targets(labels, n_classes, options)
    first = labels[0]
    if isinstance(first, list):
        return _distribution_targets(labels, n_classes, options)
    if type(first) is str:
        return _name_targets(labels, names, options)
    if type(first) is int:
        return _index_targets(labels, n_classes, options)
    raise InvalidInput(
        "labels", f"expected a class index, a class name or a row of probabilities, got {describe(first)}", row=0
    )


def _labels_from_array(labels: np.ndarray) -> Any:
    """Labels from a NumPy array (binary transport): integer indices, names, or float rows."""
    kind = labels.dtype.kind
    if kind in "US":
        if labels.ndim != 1:
            raise BadShape("labels", f"class names must be a 1-D array, got {labels.ndim} dimensions")
        return labels.astype(str).tolist()
    if kind in "iu":
        if labels.ndim != 1:
            raise BadShape("labels", f"class indices must be a 1-D array, got {labels.ndim} dimensions")
        return labels
    if kind == "f" and labels.ndim == 2:
        return labels
    raise BadShape(
        "labels",
        "expected 1-D integer class indices, 1-D class names or 2-D float target rows, "
        f"got a {labels.ndim}-D array of dtype {labels.dtype}",
    )


def _require_one_kind(labels: list[Any], kind: type, what: str) -> None:
    if set(map(type, labels)) == {kind}:
        return
    for row, value in enumerate(labels):
        if type(value) is not kind:
            raise InvalidInput(
                "labels", f"expected {what} like row 0, got {describe(value)}; all labels must be of one kind", row=row
            )


def _index_targets(labels: list[Any] | np.ndarray, n_classes: int | None, options: MulticlassOptions) -> _Targets:
    if isinstance(labels, np.ndarray):
        if labels.dtype == np.uint64 and labels.size and labels.max() > np.iinfo(np.int64).max:
            row = int(np.argmax(labels > np.iinfo(np.int64).max))
            raise UnknownClass("labels", f"class index {labels[row]} is out of range", row=row)
        indices = labels.astype(np.int64, copy=False)  # read, never written
    else:
        _require_one_kind(labels, int, "a class index")
        try:
            indices = np.array(labels, dtype=np.int64)
        except OverflowError:
            row = next(i for i, v in enumerate(labels) if not -(2**63) <= v < 2**63)
            raise UnknownClass("labels", f"class index {labels[row]} is out of range", row=row) from None
    assert n_classes is not None
    if options.ignore_index is None:
        scored = np.ones(indices.shape[0], dtype=bool)
        # The usual case, in one reduction: a negative index is huge as an unsigned one.
        if indices.view(np.uint64).max() < n_classes:
            return _Targets("class_indices", scored, indices=indices)
    else:
        scored = indices != options.ignore_index
    bad = scored & ((indices < 0) | (indices >= n_classes))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        hint = "" if options.ignore_index is None else f" (ignore_index is {options.ignore_index})"
        raise UnknownClass("labels", f"class index {indices[row]} is out of range [0, {n_classes}){hint}", row=row)
    all_scored = bool(scored.all())
    return _Targets(
        "class_indices", scored, indices=indices if all_scored else np.where(scored, indices, 0), all_scored=all_scored
    )


def _name_targets(labels: list[Any], names: list[str] | None, options: MulticlassOptions) -> _Targets:
    if names is None:
        raise InvalidInput("classes", "is required when labels are class names (it gives the column of each name)")
    if options.ignore_index is not None:
        raise InvalidOption("ignore_index", "applies only to class-index labels, not to class names")
    _require_one_kind(labels, str, "a class name")
    column = {name: position for position, name in enumerate(names)}
    try:
        indices = np.fromiter((column[name] for name in labels), dtype=np.int64, count=len(labels))
    except KeyError:
        row = next(i for i, name in enumerate(labels) if name not in column)
        shown = ", ".join(repr(n) for n in names[:10]) + (", ..." if len(names) > 10 else "")
        raise UnknownClass("labels", f"unknown class {labels[row]!r:.60}; classes are [{shown}]", row=row) from None
    return _Targets("class_names", np.ones(len(labels), dtype=bool), indices=indices)


def _distribution_targets(labels: Any, n_classes: int | None, options: MulticlassOptions) -> _Targets:
    if options.ignore_index is not None:
        raise InvalidOption("ignore_index", "applies only to class-index labels, not to probability rows")
    target = float_matrix(labels, "labels")
    if target.shape[1] != n_classes:
        raise BadShape("labels", f"rows have {target.shape[1]} values but predictions have {n_classes} classes", row=0)
    negative = np.argwhere(target < 0)
    if negative.size:
        row, column = (int(i) for i in negative[0])
        raise OutOfRange(
            "labels", f"target probability {float(target[row, column])!r} is negative", row=row, column=column
        )
    sums = target.sum(axis=1)
    off = np.abs(sums - 1.0) > options.tolerance
    if off.any():
        row = int(np.flatnonzero(off)[0])
        if options.normalization is not Normalization.RENORMALIZE:
            raise RowsNotNormalized(
                "labels",
                f"target row sums to {sums[row]:.6g}, not 1 within tolerance {options.tolerance:g} "
                f'({np.count_nonzero(off)} rows are off); set normalization to "renormalize" to rescale targets',
                row=row,
            )
        zero = sums == 0
        if zero.any():
            row = int(np.flatnonzero(zero)[0])
            raise RowsNotNormalized("labels", "target row sums to 0 and cannot be renormalized", row=row)
    if options.normalization is Normalization.RENORMALIZE:
        target = target / sums[:, None]
    return _Targets("distributions", np.ones(target.shape[0], dtype=bool), distributions=target)


@dataclass(frozen=True)
class _LogPredictions:
    """Checked predictions and how to take log q from them, for one column per row or for all.

    Keeping the normaliser apart lets a hard label read only its own column: log q_y is
    x_y − peak − log Σ exp(x − peak) for logits, log(clip(p_y / s)) for probabilities.
    """

    values: np.ndarray
    kind: PredictionType
    epsilon: float
    peak: np.ndarray | None = None  # per row, subtracted first (logits, renormalized log-probabilities)
    log_sum: np.ndarray | None = None  # per row, subtracted second
    divisor: np.ndarray | None = None  # per row (renormalized probabilities)

    def at(self, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """log q at one column per row, and whether the ε clip moved it."""
        return self._log(self.values[np.arange(columns.shape[0]), columns], slice(None))

    def everywhere(self) -> tuple[np.ndarray, np.ndarray | None]:
        """log q for every entry, and which entries the ε clip moved."""
        return self._log(self.values, (slice(None), None))

    def _log(self, values: np.ndarray, rows: Any) -> tuple[np.ndarray, np.ndarray | None]:
        if self.kind is PredictionType.PROBABILITIES:
            if self.divisor is not None:
                values = values / self.divisor[rows]
            eps = self.epsilon
            clipped = ((values < eps) | (values > 1.0 - eps)) if eps > 0 else None
            return log_clipped(values, eps), clipped
        if self.peak is None or self.log_sum is None:
            return values, None
        # (x − peak) − log_sum, in that order: peak + log_sum would round log_sum away when peak is huge.
        with np.errstate(over="ignore"):  # a spread past 1.8e308 gives −inf, the correctly rounded log q
            return (values - self.peak[rows]) - self.log_sum[rows], None


def _log_predictions(
    preds: np.ndarray, scored: np.ndarray, options: MulticlassOptions, warnings: list[ScoringWarning]
) -> _LogPredictions:
    """Check the predictions against their type and the normalization policy."""
    kind = options.prediction_type
    eps = options.resolved_epsilon
    if kind is PredictionType.LOGITS:
        return _LogPredictions(preds, kind, eps, *log_sum_exp_rows(preds))
    if kind is PredictionType.LOG_PROBABILITIES:
        if preds.max() > 0:
            _raise_first(preds, preds > 0, "log-probability {value!r} is positive; log-probabilities are <= 0")
        peak, log_sum = log_sum_exp_rows(preds)
        if _normalize(np.exp(peak + log_sum), scored, options, warnings):
            return _LogPredictions(preds, kind, eps, peak, log_sum)
        return _LogPredictions(preds, kind, eps)
    if preds.min() < 0 or preds.max() > 1:
        _raise_first(
            preds,
            (preds < 0) | (preds > 1),
            'probability {value!r} is outside [0, 1] (for scores, set prediction_type to "logits")',
        )
    sums = preds.sum(axis=1)
    if _normalize(sums, scored, options, warnings):
        # Ignored rows are not checked and may sum to 0: leave those as they are.
        return _LogPredictions(preds, kind, eps, divisor=np.where(sums > 0, sums, 1.0))
    return _LogPredictions(preds, kind, eps)


def _raise_first(preds: np.ndarray, bad: np.ndarray, message: str) -> None:
    """Raise OutOfRange at the first true entry of ``bad``."""
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        raise OutOfRange("predictions", message.format(value=float(preds[row, column])), row=row, column=column)


def _normalize(
    sums: np.ndarray, scored: np.ndarray, options: MulticlassOptions, warnings: list[ScoringWarning]
) -> bool:
    """Apply the normalization policy to rows summing to ``sums``; True means "divide by them"."""
    deviation = np.abs(sums - 1.0)
    policy = options.normalization
    if policy is not Normalization.RENORMALIZE and deviation.max() <= options.tolerance:
        return False  # every row sums to 1 within the tolerance: the usual case, in one reduction
    off = scored & (deviation > options.tolerance)
    if policy is Normalization.RENORMALIZE:
        zero = scored & (sums == 0)
        if zero.any():
            row = int(np.flatnonzero(zero)[0])
            raise RowsNotNormalized("predictions", "row sums to 0 and cannot be renormalized", row=row)
    if not off.any():
        return policy is Normalization.RENORMALIZE
    count = int(np.count_nonzero(off))
    tolerance = f"{options.tolerance:g}"
    if policy is Normalization.ERROR:
        row = int(np.flatnonzero(off)[0])
        raise RowsNotNormalized(
            "predictions",
            f"row sums to {sums[row]:.6g}, not 1 within tolerance {tolerance} ({count} rows are off); "
            'set normalization to "warn" or "renormalize" to score such rows',
            row=row,
        )
    if policy is Normalization.WARN:
        message = f"prediction rows do not sum to 1 within tolerance {tolerance}; they were scored as given"
        warnings.append(ScoringWarning.for_rows(WarningCode.ROWS_NOT_NORMALIZED, off, message))
        return False
    message = f"prediction rows did not sum to 1 within tolerance {tolerance}; they were divided by their sums"
    warnings.append(ScoringWarning.for_rows(WarningCode.RENORMALIZED, off, message))
    return True
