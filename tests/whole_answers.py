"""Pieces of the whole answers the HTTP tests expect: tolerances, shared messages, the reference example.

Importable from every test module (tests/conftest.py puts this folder on sys.path).
"""

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
    "per_sample": {
        "cross_entropy": [0.47965000629754095],
        "kl_divergence": [0.47965000629754095],
        "entropy": [0.0],
    },
    "warnings": [],
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
