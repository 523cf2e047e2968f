"""Numerically stable logarithms of predictions, and entropy terms.

Everything here works in log space so that extreme inputs (logits of ±1e300,
probabilities of 1e-300) give exact finite answers instead of overflow or NaN.
"""

from __future__ import annotations

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log softmax(x) row-wise: x − max − log Σ exp(x − max).

    Subtracting the row maximum keeps every exponent ≤ 0, so nothing overflows and
    the largest term contributes exactly exp(0) = 1 to the sum.
    """
    # A spread between logits past 1.8e308 overflows to -inf: exp(-inf) = 0 is then the
    # correctly rounded probability, so the overflow is harmless and silenced.
    with np.errstate(over="ignore"):
        shifted = logits - logits.max(axis=1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def log_sum_exp_rows(log_values: np.ndarray) -> np.ndarray:
    """log Σ_c exp(xᵢ_c) per row, stably (max-shifted)."""
    peak = log_values.max(axis=1)
    return peak + np.log(np.exp(log_values - peak[:, None]).sum(axis=1))


def log_sigmoid(logits: np.ndarray) -> np.ndarray:
    """log σ(x) = −log(1 + e^(−x)), via logaddexp so x = −1000 gives −1000 exactly."""
    return -np.logaddexp(0.0, -logits)


def log_clipped(probabilities: np.ndarray, epsilon: float) -> np.ndarray:
    """log clip(p, ε, 1 − ε); with ε = 0 a zero probability gives −inf, on purpose."""
    clipped = np.clip(probabilities, epsilon, 1.0 - epsilon) if epsilon > 0 else probabilities
    with np.errstate(divide="ignore"):
        return np.log(clipped)


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


def weighted_log_sum(targets: np.ndarray, log_values: np.ndarray) -> np.ndarray:
    """Σ_c t_c·log v_c per row, taking 0·log v = 0 even where log v = −inf."""
    terms = np.where(targets > 0, log_values, 0.0)
    return np.einsum("ij,ij->i", targets, terms)
