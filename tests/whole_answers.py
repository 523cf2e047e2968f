"""Pieces of the whole answers the HTTP tests expect: tolerances, shared messages, the reference example.

Importable from every test module (tests/conftest.py puts this folder on sys.path).
"""

import math
from typing import Any

import pytest

#: What ``"epsilon": "auto"`` resolves to for float64: np.finfo(np.float64).eps.
MACHINE_EPSILON = 2.220446049250313e-16
NON_FINITE_MESSAGE = (
    "some values are +infinity (a zero probability on a non-zero target with epsilon 0, "
    "or an overflow); JSON cannot hold them, so they are reported as null"
)

#: Every option as a /v1/cross-entropy answer reports it when the request sets none.
CROSS_ENTROPY_DEFAULTS: dict[str, Any] = {
    "prediction_type": "probabilities",
    "label_type": "class_indices",
    "unit": "nats",
    "epsilon": MACHINE_EPSILON,
    "epsilon_applies": True,
    "label_smoothing": 0.0,
    "normalization": "warn",
    "tolerance": 0.001,
    "ignore_index": None,
    "class_weights": None,
    "sample_weights": False,
    "per_sample": True,
    "confidence": 0.95,
}
#: The warning of an empty batch (both endpoints).
EMPTY_WARNING = {
    "code": "EMPTY",
    "message": "nothing was scored: the batch is empty; means are null",
    "count": 0,
    "rows": [],
}

#: The reference example as sent: true class B of A/B/C, predicted with probability 0.619.
REFERENCE_BODY = b'{"labels":[1],"predictions":[[0.228,0.619,0.153]]}'
#: Its whole answer, to the last bit: −ln 0.619 nats.
REFERENCE_ANSWER = {
    "n": 1,
    "n_scored": 1,
    "n_clusters": None,
    "unit": "nats",
    "classes": None,
    "mean": {
        "cross_entropy": 0.47965000629754095,  # −ln 0.619
        "kl_divergence": 0.47965000629754095,  # the target is one-hot: KL = CE
        "entropy": 0.0,
        "perplexity": 1.615508885298869,  # 1 / 0.619
        "accuracy": 1.0,
    },
    "sum": {"cross_entropy": 0.47965000629754095, "kl_divergence": 0.47965000629754095, "entropy": 0.0},
    # One row: no standard error (n < 2), and a warning saying so.
    "stderr": {"cross_entropy": None, "kl_divergence": None, "entropy": None, "accuracy": None},
    "ci": {"cross_entropy": None, "kl_divergence": None, "entropy": None, "accuracy": None, "perplexity": None},
    "per_sample": {
        "cross_entropy": [0.47965000629754095],
        "kl_divergence": [0.47965000629754095],
        "entropy": [0.0],
    },
    "warnings": [
        {
            "code": "STDERR_UNDEFINED",
            "message": "standard errors and intervals are null: only 1 scored row has a positive weight; "
            "a standard error needs at least 2",
            "count": 0,
            "rows": [],
        }
    ],
    "settings": CROSS_ENTROPY_DEFAULTS,
}


def close(value: float) -> Any:
    """A number to 1e-9 (relative), as pytest.approx for use inside a whole expected answer."""
    return pytest.approx(value, rel=1e-9, abs=1e-12)


def closes(values: list[float | None]) -> list[Any]:
    """``close`` for each value of a list; None (JSON's null for +infinity) stays None."""
    return [None if v is None else close(v) for v in values]


#: The AGGREGATE_OVERFLOW message of a perplexity past float64 (no row is at fault: count 0, rows []).
PERPLEXITY_OVERFLOW = (
    "mean.perplexity = e^(mean cross-entropy in nats) overflows float64 (past 709.78 nats) and is reported as null"
)


#: z of a 95 % normal interval, Φ⁻¹(0.975) (scipy.special.ndtri(0.975)).
Z95 = 1.959963984540054


def standard_error(values: list[float | None], weights: list[float]) -> float | None:
    """The issue's SE written out: n/(n−1) · Σ wᵢ²(ℓᵢ − m)² / (Σwᵢ)² over the rows with wᵢ > 0, square-rooted.

    None (the answer's null) when fewer than 2 such rows, or a value there is infinite (None).
    """
    rows = [(w, v) for w, v in zip(weights, values, strict=True) if w > 0]
    if len(rows) < 2 or any(v is None for _, v in rows):
        return None
    total = sum(w for w, _ in rows)
    mean = sum(w * v for w, v in rows) / total  # type: ignore[operator]
    n = len(rows)
    return math.sqrt(n / (n - 1) * sum(w * w * (v - mean) ** 2 for w, v in rows) / total**2)  # type: ignore[operator]


def spread(
    values: dict[str, list[float | None]], weights: list[float], means: dict[str, float | None], base: float = 1.0
) -> dict[str, Any]:
    """The answer's ``stderr`` and ``ci`` blocks (95 %) from per-row values in nats (accuracy: correctness).

    ``weights`` is 0 on rows that are not scored; ``means`` are the answer's means in nats (accuracy a fraction).
    """
    stderr: dict[str, Any] = {}
    ci: dict[str, Any] = {}
    for name in ("cross_entropy", "kl_divergence", "entropy", "accuracy"):
        scale = 1.0 if name == "accuracy" else base
        se = standard_error(values[name], weights)
        mean = means[name]
        stderr[name] = None if se is None else close(se / scale)
        ci[name] = (
            None if se is None or mean is None else closes([(mean - Z95 * se) / scale, (mean + Z95 * se) / scale])
        )
    ce = ci["cross_entropy"]
    se_ce = standard_error(values["cross_entropy"], weights)
    mean_ce = means["cross_entropy"]
    ci["perplexity"] = (
        None
        if ce is None or se_ce is None or mean_ce is None or mean_ce + Z95 * se_ce > 709.78
        else closes([math.exp(mean_ce - Z95 * se_ce), math.exp(mean_ce + Z95 * se_ce)])
    )
    return {"stderr": stderr, "ci": ci}


def stderr_undefined(rows: int) -> dict[str, Any]:
    """The STDERR_UNDEFINED warning of an answer whose scored rows of positive weight are fewer than 2."""
    reason = (
        "no scored row has a positive weight"
        if rows == 0
        else f"only {rows} scored row{'' if rows == 1 else 's'} {'has' if rows == 1 else 'have'} a positive weight; "
        "a standard error needs at least 2"
    )
    return {
        "code": "STDERR_UNDEFINED",
        "message": f"standard errors and intervals are null: {reason}",
        "count": 0,
        "rows": [],
    }


#: The ``stderr`` and ``ci`` blocks of an answer with no standard error (fewer than 2 rows of positive weight).
NO_SPREAD: dict[str, Any] = {
    "stderr": {"cross_entropy": None, "kl_divergence": None, "entropy": None, "accuracy": None},
    "ci": {"cross_entropy": None, "kl_divergence": None, "entropy": None, "accuracy": None, "perplexity": None},
}
