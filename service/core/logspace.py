"""Numerically stable logarithms of predictions, and entropy terms.

Everything here works in log space so that extreme inputs (logits of ±1e300,
probabilities of 1e-300) give exact finite answers instead of overflow or NaN.
"""

from __future__ import annotations

import numpy as np


def log_sum_exp_rows(log_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the peak m = max x and log Σ_c exp(x_c − m); log Σ exp x = m + that.

    The two parts are returned apart: adding them would round the second away when
    m is huge (logits of 1e300), and x − m − log Σ exp(x − m) needs them separately.
    """
    peak = log_values.max(axis=1)
    with np.errstate(over="ignore"):  # a spread past 1.8e308 gives −inf, and exp(−inf) = 0 is right
        shifted = log_values - peak[:, None]
    np.exp(shifted, out=shifted)
    return peak, np.log(shifted.sum(axis=1))


def log_sigmoid(logits: np.ndarray) -> np.ndarray:
    """log σ(x) = −log(1 + e^(−x)), via logaddexp so x = −1000 gives −1000 exactly."""
    return -np.logaddexp(0.0, -logits)


def log_clipped(probabilities: np.ndarray, epsilon: float) -> np.ndarray:
    """log clip(p, ε, 1 − ε); with ε = 0 a zero probability gives −inf, on purpose."""
    clipped = np.clip(probabilities, epsilon, 1.0 - epsilon) if epsilon > 0 else probabilities
    with np.errstate(divide="ignore"):
        return np.log(clipped)


def log_clipped_moved(probabilities: np.ndarray, epsilon: float) -> tuple[np.ndarray, np.ndarray | None]:
    """``log_clipped``, and where the clip moved p (p < ε or p > 1 − ε); None when ε = 0."""
    if epsilon <= 0:
        return log_clipped(probabilities, epsilon), None
    clipped = np.maximum(probabilities, epsilon)  # np.clip's min(max(p, ε), 1 − ε), as two plain ufunc calls
    np.minimum(clipped, 1.0 - epsilon, out=clipped)
    moved = clipped != probabilities
    return np.log(clipped, out=clipped), moved  # clipped >= ε > 0: no log 0


def log1m_clipped(probabilities: np.ndarray, epsilon: float) -> np.ndarray:
    """log(1 − clip(p, ε, 1 − ε)), through log1p so tiny p keeps its precision."""
    clipped = np.clip(probabilities, epsilon, 1.0 - epsilon) if epsilon > 0 else probabilities
    with np.errstate(divide="ignore"):
        return np.log1p(-clipped)


def xlogx(values: np.ndarray) -> np.ndarray:
    """x·log x elementwise, with the limit 0·log 0 = 0."""
    positive = values > 0
    logs = np.log(values, where=positive, out=np.zeros_like(values))
    return values * logs
