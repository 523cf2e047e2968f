"""Predictions checked against their type and the normalization policy, and log q taken from them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from service.core.errors import OutOfRange, RowsNotNormalized, quoted, rows_off
from service.core.logspace import log_clipped, log_sum_exp_rows
from service.core.options import MulticlassOptions, Normalization, PredictionType
from service.core.result import ScoringWarning, WarningCode


@dataclass(frozen=True)
class LogPredictions:
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


def log_predictions(
    preds: np.ndarray, scored: np.ndarray, options: MulticlassOptions, warnings: list[ScoringWarning]
) -> LogPredictions:
    """Check the predictions against their type and the normalization policy."""
    kind = options.prediction_type
    eps = options.resolved_epsilon
    if kind is PredictionType.LOGITS:
        return LogPredictions(preds, kind, eps, *log_sum_exp_rows(preds))
    if kind is PredictionType.LOG_PROBABILITIES:
        if preds.max() > 0:
            _raise_first(preds, preds > 0, "log-probability {value} is positive; log-probabilities are <= 0")
        peak, log_sum = log_sum_exp_rows(preds)
        if apply_normalization(np.exp(peak + log_sum), scored, options, warnings):
            return LogPredictions(preds, kind, eps, peak, log_sum)
        return LogPredictions(preds, kind, eps)
    if preds.min() < 0 or preds.max() > 1:
        _raise_first(
            preds,
            (preds < 0) | (preds > 1),
            'probability {value} is outside [0, 1] (for scores, set prediction_type to "logits")',
        )
    sums = preds.sum(axis=1)
    if apply_normalization(sums, scored, options, warnings):
        # Ignored rows are not checked and may sum to 0: leave those as they are.
        return LogPredictions(preds, kind, eps, divisor=np.where(sums > 0, sums, 1.0))
    return LogPredictions(preds, kind, eps)


def _raise_first(preds: np.ndarray, bad: np.ndarray, message: str) -> None:
    """Raise OutOfRange at the first true entry of ``bad``."""
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        raise OutOfRange("predictions", message.format(value=quoted(float(preds[row, column]))), row=row, column=column)


def apply_normalization(
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
            f"row sums to {sums[row]:.6g}, not 1 within tolerance {tolerance} ({rows_off(count)}); "
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
