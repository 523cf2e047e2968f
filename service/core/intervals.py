"""Normal intervals: Φ⁻¹ without SciPy, two-sided p-values, m ± z·SE, and perplexity's interval.

- interval m ± z·SE with z = Φ⁻¹((1 + confidence)/2); perplexity's is e^(the cross-entropy interval in nats);
- p = erfc(|z|/√2), two-sided.

Φ⁻¹ is Wichura's algorithm AS 241 (checked against ``scipy.special.ndtri`` to 1e-12 in the tests).
"""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np

from service.core.arrays import describe
from service.core.contract import MAX_EXP_NATS, UNCERTAINTY_OPTIONS
from service.core.errors import InvalidOption, quoted

#: The default confidence level of the intervals, from the contract.
DEFAULT_CONFIDENCE: Final[float] = UNCERTAINTY_OPTIONS["confidence"].default

#: A confidence interval (low, high).
Interval = tuple[float, float]

# Wichura (1988), algorithm AS 241 PPND16: rational approximations of Φ⁻¹ good to about 1e-16, as
# coefficients of r⁰ … r⁷ (numerator, then denominator) on each of its three ranges.
_CENTRAL = (
    (
        3.387132872796366608,
        133.14166789178437745,
        1971.5909503065514427,
        13731.693765509461125,
        45921.953931549871457,
        67265.770927008700853,
        33430.575583588128105,
        2509.0809287301226727,
    ),
    (
        1.0,
        42.313330701600911252,
        687.1870074920579083,
        5394.1960214247511077,
        21213.794301586595867,
        39307.89580009271061,
        28729.085735721942674,
        5226.495278852545925,
    ),
)
_INTERMEDIATE = (
    (
        1.42343711074968357734,
        4.6303378461565452959,
        5.7694972214606914055,
        3.64784832476320460504,
        1.27045825245236838258,
        0.24178072517745061177,
        0.0227238449892691845833,
        7.7454501427834140764e-4,
    ),
    (
        1.0,
        2.05319162663775882187,
        1.6763848301838038494,
        0.68976733498510000455,
        0.14810397642748007459,
        0.0151986665636164571966,
        5.475938084995344946e-4,
        1.05075007164441684324e-9,
    ),
)
_TAIL = (
    (
        6.6579046435011037772,
        5.4637849111641143699,
        1.7848265399172913358,
        0.29656057182850489123,
        0.026532189526576123093,
        0.0012426609473880784386,
        2.71155556874348757815e-5,
        2.01033439929228813265e-7,
    ),
    (
        1.0,
        0.59983220655588793769,
        0.13692988092273580531,
        0.014875361290850615025,
        7.868691311456132591e-4,
        1.8463183175100546818e-5,
        1.4215117583164458887e-7,
        2.04426310338993978564e-15,
    ),
)


def _rational(coefficients: tuple[tuple[float, ...], tuple[float, ...]], r: float) -> float:
    """Σ aₖrᵏ / Σ bₖrᵏ by Horner's rule."""
    numerator, denominator = 0.0, 0.0
    for a, b in zip(reversed(coefficients[0]), reversed(coefficients[1]), strict=True):
        numerator = numerator * r + a
        denominator = denominator * r + b
    return numerator / denominator


def normal_quantile(p: float) -> float:
    """Φ⁻¹(p), the standard normal quantile, by Wichura's AS 241 (relative error about 1e-16).

    Near the centre (|p − ½| ≤ 0.425) Φ⁻¹(p) = q·A(r)/B(r) with q = p − ½ and r = 0.180625 − q²; in the
    tails, with r = √(−ln min(p, 1 − p)), a rational function of r − 1.6 (r ≤ 5) or r − 5, signed like q.
    Φ⁻¹(0) = −∞ and Φ⁻¹(1) = +∞, as ``scipy.special.ndtri``.

    Parameters
    ----------
    p
        A probability in [0, 1].

    Examples
    --------
    >>> f"{normal_quantile(0.975):.15f}", normal_quantile(0.5), f"{normal_quantile(1e-300):.6f}"
    ('1.959963984540054', 0.0, '-37.047096')
    """
    if not 0.0 <= p <= 1.0:  # NaN fails this too
        raise ValueError(f"normal_quantile: p must be a probability in [0, 1], got {p!r}")
    q = p - 0.5
    if abs(q) <= 0.425:
        return q * _rational(_CENTRAL, 0.180625 - q * q)
    tail = p if q < 0 else 1.0 - p  # exact: p > 0.925 here, so 1 − p loses nothing (Sterbenz)
    if tail == 0.0:
        return math.copysign(math.inf, q)
    r = math.sqrt(-math.log(tail))
    value = _rational(_INTERMEDIATE, r - 1.6) if r <= 5.0 else _rational(_TAIL, r - 5.0)
    return -value if q < 0 else value


def two_sided_p_value(z: float) -> float:
    """P(|Z| ≥ |z|) for a standard normal Z: erfc(|z|/√2).

    >>> round(two_sided_p_value(1.959963984540054), 12), two_sided_p_value(0.0)
    (0.05, 1.0)
    """
    return math.erfc(abs(z) / math.sqrt(2.0))


def check_confidence(confidence: Any) -> float:
    """``confidence`` as a float in (0, 1), or InvalidOption naming ``confidence``.

    >>> check_confidence(0.9)
    0.9
    """
    option = UNCERTAINTY_OPTIONS["confidence"]
    if isinstance(confidence, bool) or not isinstance(confidence, int | float):
        raise InvalidOption("confidence", f"expected a number in {option.interval}, got {describe(confidence)}")
    value = float(confidence)
    if not (math.isfinite(value) and option.contains(value)):
        raise InvalidOption("confidence", f"{quoted(confidence)} is outside {option.interval}")
    return value


def interval(mean: float | None, stderr: float | None, confidence: float) -> Interval | None:
    """The normal interval m ± z·SE with z = Φ⁻¹((1 + confidence)/2); None without a mean or a standard error.

    >>> interval(0.5, 0.1, 0.95)
    (0.3040036015459946, 0.6959963984540054)
    """
    if mean is None or stderr is None or not math.isfinite(mean):
        return None
    z = normal_quantile((1.0 + confidence) / 2.0)
    with np.errstate(over="ignore"):
        half = float(np.float64(z) * np.float64(stderr))  # a standard error near 1e308 gives ±inf, not an error
    return mean - half, mean + half


def perplexity_interval(cross_entropy: Interval | None, log_base: float) -> Interval | None:
    """Perplexity's interval: e^(the cross-entropy interval in nats), the interval in its unit times ln(base).

    >>> perplexity_interval((0.4, 0.6), 1.0) == (math.exp(0.4), math.exp(0.6))
    True
    """
    if cross_entropy is None:
        return None
    low, high = (value * log_base for value in cross_entropy)
    return _exp(low), _exp(high)


def _exp(nats: float) -> float:
    """e^x, +inf past MAX_EXP_NATS (where ``math.exp`` raises)."""
    return math.exp(nats) if nats < MAX_EXP_NATS else math.inf
