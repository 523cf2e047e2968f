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
    "compat": "xent",
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
    "gradient": False,
    "confidence": 0.95,
}
#: The warning of an empty batch (both endpoints).
EMPTY_WARNING = {
    "code": "EMPTY",
    "message": "nothing was scored: the batch is empty; means are null",
    "count": 0,
    "rows": [],
}

#: The breakdowns and calibration of an answer that asked for none (issue 15).
NO_BREAKDOWNS: dict[str, Any] = {"by_group": None, "by_class": None, "calibration": None}

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
    **NO_BREAKDOWNS,
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
    "state": {
        "version": 1,
        "settings": {
            "endpoint": "cross-entropy",
            "unit": "nats",
            "classes": None,
            "n_classes": 3,
            "label_smoothing": 0.0,
            "epsilon": MACHINE_EPSILON,
            "normalization": "warn",
            "class_weights": None,
            "calibration_bins": None,
            "groups": False,
            "per_class": False,
            "compat": "xent",
            "cluster_ids": None,
        },
        "n": 1,
        "n_scored": 1,
        "accumulators": {
            "n_weighted": 1,
            "weight": 1.0,
            "weight_exponent": 0,
            **{
                metric: {
                    "mean": value,
                    "sum": None if metric == "accuracy" else value,
                    "min": value,
                    "max": value,
                    "w2": 1.0,  # Σw²/W² of one row
                    "w2_dev": 0.0,
                    "w2_dev2": 0.0,
                    "finite": True,
                }
                for metric, value in (
                    ("cross_entropy", 0.47965000629754095),
                    ("kl_divergence", 0.47965000629754095),
                    ("entropy", 0.0),
                    ("accuracy", 1.0),
                )
            },
            "clusters": None,
            "warnings": {},  # STDERR_UNDEFINED is said of the whole batch: a merge finds it again
            "groups": None,
            "classes": None,
            "calibration": None,
        },
    },
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


#: The answer's blocks that merging its state alone must give back (``without_state``).
_MERGED_BLOCKS = ("n", "n_scored", "n_clusters", "unit", "classes", "mean", "sum", "stderr", "ci")


def same_numbers(got: Any, expected: Any, rel: float = 1e-12) -> bool:
    """Whether two JSON values are equal, numbers to ``rel`` (relative; 1e-300 absolute), nulls and keys exactly."""
    if isinstance(expected, dict):
        return (
            isinstance(got, dict)
            and got.keys() == expected.keys()
            and all(same_numbers(got[key], expected[key], rel) for key in expected)
        )
    if isinstance(expected, list):
        return (
            isinstance(got, list)
            and len(got) == len(expected)
            and all(same_numbers(a, b, rel) for a, b in zip(got, expected, strict=True))
        )
    if isinstance(expected, float) and not isinstance(got, bool) and isinstance(got, int | float):
        return math.isclose(got, expected, rel_tol=rel, abs_tol=1e-300)
    return bool(got == expected) and type(got) is type(expected)


def without_state(answer: dict[str, Any]) -> dict[str, Any]:
    """The answer without its ``state``, once that state is shown to hold what the answer reports.

    Merging the state alone (``service.core.state.merge_states``, what ``POST /v1/merge`` does) must give
    back every aggregate of the answer: counts and means exactly or to 1e-12, standard errors and intervals
    to 1e-9, the warnings with their counts (their rows dropped), and the breakdowns.
    """
    from service.core.state import merge_states

    rest = dict(answer)
    merged = merge_states([rest.pop("state")], rest["settings"]["confidence"])
    for key in (*_MERGED_BLOCKS, "by_group", "by_class", "calibration"):
        if key in rest or key in merged:
            rel = 1e-9 if key in ("stderr", "ci") else 1e-12
            assert same_numbers(merged.get(key), rest.get(key), rel), (key, merged.get(key), rest.get(key))
    without_rows = [{**warning, "rows": []} for warning in rest["warnings"]]
    assert merged["warnings"] == without_rows
    return rest


#: Φ⁻¹(0.975), the z of a 95 % interval.
Z95 = 1.959963984540054


def sequence_interval(mean: float, stderr: float, *, exp: bool = False) -> list[Any]:
    """mean ± z·SE at 95 % (of e^(…) with ``exp``), each bound to 1e-9."""
    low, high = mean - Z95 * stderr, mean + Z95 * stderr
    return [close(math.exp(low)), close(math.exp(high))] if exp else [close(low), close(high)]


#: Two documents as token_logprobs (the first token of each has no context), 11 and 14 bytes: the example of
#: /v1/sequence-cross-entropy, answered by hand. NLL 3 over 2 tokens and 3 over 3: per token L = 6/5 = 1.2,
#: residuals 3 − 2.4 = 0.6 and 3 − 3.6 = −0.6, SE² = 2/1 · 0.72/25, SE = 0.24; per byte L = 6/25 = 0.24,
#: residuals ±0.36, SE² = 2 · 0.2592/625, SE = 0.0288; per document 1.5 and 1.0 a token, mean 1.25, s = √0.125,
#: SE = s/√2 = 0.25.
SEQUENCE_BODY: dict[str, Any] = {
    "token_logprobs": [[None, -1.0, -2.0], [None, -0.5, -1.5, -1.0]],
    "num_bytes": [11, 14],
}
SEQUENCE_ANSWER: dict[str, Any] = {
    "n_sequences": 2,
    "n_documents": 2,
    "n_tokens": 5,
    "n_skipped": 2,
    "unit": "nats",
    "token": {
        "cross_entropy": close(1.2),
        "perplexity": close(math.exp(1.2)),
        "stderr": close(0.24),
        "ci": sequence_interval(1.2, 0.24),
        "perplexity_ci": sequence_interval(1.2, 0.24, exp=True),
    },
    "byte": {
        "cross_entropy": close(0.24),
        "bits_per_byte": close(0.24 / math.log(2.0)),
        "perplexity": close(math.exp(0.24)),
        "stderr": close(0.0288),
        "ci": sequence_interval(0.24, 0.0288),
        "perplexity_ci": sequence_interval(0.24, 0.0288, exp=True),
    },
    "word": None,
    "document": {"cross_entropy": close(1.25), "stderr": close(0.25), "ci": sequence_interval(1.25, 0.25)},
    "per_document": {
        "document_id": [0, 1],
        "n_tokens": [2, 3],
        "nll": [3.0, 3.0],
        "perplexity": [close(math.exp(1.5)), close(math.e)],
        "bits_per_byte": [close(3 / 11 / math.log(2.0)), close(3 / 14 / math.log(2.0))],
    },
    "warnings": [],
    "settings": {
        "input_form": "token_logprobs",
        "bytes_source": "given",
        "unit": "nats",
        "confidence": 0.95,
        "per_document": True,
    },
    "state": {
        "version": 1,
        "settings": {"endpoint": "sequence-cross-entropy", "unit": "nats", "bytes_source": "given", "words": False},
        "n": 7,
        "n_scored": 5,
        "accumulators": {
            "n_sequences": 2,
            "n_documents": 2,
            "n_skipped": 2,
            "approximate_bytes": 0,
            "no_bytes": 0,
            "no_words": 0,
            # S = (3, 3), T = (2, 3): L = 1.2, residuals S − L·T = (0.6, −0.6): R = 0.72, U = 2·0.6 − 3·0.6 = −0.6,
            # Q = 4 + 9; bytes T = (11, 14): L = 0.24, residuals (0.36, −0.36): R = 0.2592, U = −1.08, Q = 317.
            "token": {"n": 2, "s": 6.0, "t": 5.0, "r": 0.7199999999999996, "u": -0.5999999999999988, "q": 13.0},
            "byte": {"n": 2, "s": 6.0, "t": 25.0, "r": 0.25920000000000015, "u": -1.0799999999999947, "q": 317.0},
            "word": {"n": 0, "s": 0.0, "t": 0.0, "r": 0.0, "u": 0.0, "q": 0.0},
            "document": {"n": 2, "mean": 1.25, "m2": 0.125},
        },
    },
}
