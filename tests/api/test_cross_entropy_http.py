"""POST /v1/cross-entropy: whole answers, with numbers a person can check by hand."""

import math
from typing import Any

import httpx
import pytest
from whole_answers import (
    CROSS_ENTROPY_DEFAULTS,
    EMPTY_WARNING,
    MACHINE_EPSILON,
    NO_BREAKDOWNS,
    NO_SPREAD,
    NON_FINITE_MESSAGE,
    PERPLEXITY_OVERFLOW,
    REFERENCE_ANSWER,
    REFERENCE_BODY,
    Z95,
    close,
    closes,
    spread,
    stderr_undefined,
    without_state,
)

from service.api.schemas import CrossEntropyResponse

pytestmark = pytest.mark.anyio

URL = "/v1/cross-entropy"
LN2, LN10 = math.log(2.0), math.log(10.0)
REFERENCE = {"labels": [1], "predictions": [[0.228, 0.619, 0.153]]}
#: −ln 0.619: true class B of A/B/C predicted with probability 0.619.
REFERENCE_NATS = -math.log(0.619)

#: Every option as the response reports it when the request sets none.
DEFAULT_SETTINGS = CROSS_ENTROPY_DEFAULTS


def answer(
    per_sample_ce: list[float | None],
    *,
    entropy: list[float | None] | None = None,
    weights: list[float] | None = None,
    correct: list[float] | None = None,
    unit: str = "nats",
    classes: list[str] | None = None,
    warnings: list[dict[str, Any]] | None = None,
    per_sample: bool = True,
    **settings: Any,
) -> dict[str, Any]:
    """The whole expected answer for per-sample CE and H given in nats (None = ignored row).

    KL = CE − H; means and sums are weighted over the non-ignored rows; the unit divides everything
    but perplexity. Written out here so that each test states only its inputs and per-row facts.
    """
    n = len(per_sample_ce)
    entropy = entropy or [None if ce is None else 0.0 for ce in per_sample_ce]
    kl = [None if ce is None or h is None else ce - h for ce, h in zip(per_sample_ce, entropy, strict=True)]
    weights = weights or [1.0] * n
    scored = [i for i, ce in enumerate(per_sample_ce) if ce is not None]
    base = {"nats": 1.0, "bits": LN2, "hartleys": LN10}[unit]
    total = sum(weights[i] for i in scored)

    def weighted(values: list[float | None]) -> float:
        return sum(weights[i] * values[i] for i in scored)  # type: ignore[operator,misc]

    sums = [weighted(per_sample_ce), weighted(kl), weighted(entropy)]
    accuracy = sum(weights[i] * (correct or [1.0] * n)[i] for i in scored) / total
    in_unit = [None if v is None else v / base for v in per_sample_ce]
    row_weights = [weights[i] if i in scored else 0.0 for i in range(n)]
    means = {
        "cross_entropy": sums[0] / total if total else None,
        "kl_divergence": sums[1] / total if total else None,
        "entropy": sums[2] / total if total else None,
        "accuracy": accuracy,
    }
    rows = {"cross_entropy": per_sample_ce, "kl_divergence": kl, "entropy": entropy, "accuracy": correct or [1.0] * n}
    weighed = sum(1 for w in row_weights if w > 0)
    return {
        "n": n,
        "n_scored": len(scored),
        "n_clusters": None,
        "unit": unit,
        "classes": classes,
        "mean": {
            "cross_entropy": close(sums[0] / total / base),
            "kl_divergence": close(sums[1] / total / base),
            "entropy": close(sums[2] / total / base),
            # e^CE past ~709.78 nats overflows float64: JSON gets null.
            "perplexity": close(math.exp(sums[0] / total)) if sums[0] / total < 709.78 else None,
            "accuracy": close(accuracy),
        },
        "sum": {
            "cross_entropy": close(sums[0] / base),
            "kl_divergence": close(sums[1] / base),
            "entropy": close(sums[2] / base),
        },
        **NO_BREAKDOWNS,
        "per_sample": {
            "cross_entropy": closes(in_unit),
            "kl_divergence": closes([None if v is None else v / base for v in kl]),
            "entropy": closes([None if v is None else v / base for v in entropy]),
        }
        if per_sample
        else None,
        **spread(rows, row_weights, means, base),  # type: ignore[arg-type]
        "warnings": [*(warnings or []), *([stderr_undefined(weighed)] if weighed < 2 else [])],
        "settings": {**DEFAULT_SETTINGS, "unit": unit, "per_sample": per_sample, **settings},
    }


async def score(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(URL, json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return without_state(response.json())


async def test_reference_example_scores_minus_ln_0_619(client: httpx.AsyncClient) -> None:
    response = await client.post(URL, json=REFERENCE)

    assert response.status_code == 200, response.text
    assert response.json() == REFERENCE_ANSWER
    CrossEntropyResponse.model_validate_json(response.content)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param({"labels": [2], "predictions": [[0.001, 0.001, 0.998]]}, 0.002002, id="0.998 -> 0.002002 nats"),
        pytest.param({"labels": [0], "predictions": [[0.001, 0.001, 0.998]]}, 6.907755, id="0.001 -> 6.907755 nats"),
        pytest.param({"labels": [1], "predictions": [[0.333, 0.333, 0.334]]}, 1.099613, id="0.333 -> 1.099613 nats"),
        pytest.param({**REFERENCE, "unit": "bits"}, 0.691989, id="reference in bits -> 0.691989"),
    ],
)
async def test_reference_rows(client: httpx.AsyncClient, body: dict[str, Any], expected: float) -> None:
    result = await score(client, body)

    assert round(result["mean"]["cross_entropy"], 6) == expected
    assert round(result["per_sample"]["cross_entropy"][0], 6) == expected


async def test_class_name_labels_are_looked_up_in_classes_and_classes_are_echoed(client: httpx.AsyncClient) -> None:
    body = {
        "classes": ["A", "B", "C"],
        "labels": ["B", "C", "B"],
        "predictions": [[0.228, 0.619, 0.153], [0.001, 0.001, 0.998], [0.333, 0.333, 0.334]],
        "unit": "bits",
    }

    assert await score(client, body) == answer(
        [-math.log(0.619), -math.log(0.998), -math.log(0.333)],
        # Row 2's argmax is C (0.334), not B.
        correct=[1, 1, 0],
        unit="bits",
        classes=["A", "B", "C"],
        label_type="class_names",
    )


async def test_soft_targets_score_entropy_plus_kl(client: httpx.AsyncClient) -> None:
    body = {"labels": [[0.5, 0.5, 0.0], [0.1, 0.8, 0.1]], "predictions": [[0.4, 0.4, 0.2], [0.2, 0.7, 0.1]]}
    cross_entropy = [-math.log(0.4), -(0.1 * math.log(0.2) + 0.8 * math.log(0.7) + 0.1 * math.log(0.1))]
    entropy = [LN2, -(0.2 * math.log(0.1) + 0.8 * math.log(0.8))]

    result = await score(client, body)

    assert result == answer(cross_entropy, entropy=entropy, label_type="distributions")
    assert result["per_sample"]["kl_divergence"][0] == close(math.log(0.5 / 0.4))


@pytest.mark.parametrize(
    ("prediction_type", "row"),
    [
        ("probabilities", [0.25, 0.75]),
        ("logits", [0.0, math.log(3.0)]),  # softmax → [1/4, 3/4]
        ("log_probabilities", [math.log(0.25), math.log(0.75)]),
    ],
)
async def test_every_prediction_type_of_the_same_distribution_scores_the_same(
    client: httpx.AsyncClient, prediction_type: str, row: list[float]
) -> None:
    body = {"labels": [1], "predictions": [row], "prediction_type": prediction_type}

    assert await score(client, body) == answer(
        [-math.log(0.75)],
        prediction_type=prediction_type,
        epsilon_applies=prediction_type == "probabilities",
    )


async def test_logits_far_apart_score_exactly_2000_and_perplexity_overflows_to_null(
    client: httpx.AsyncClient,
) -> None:
    body = {"labels": [2], "predictions": [[1000, 0, -1000]], "prediction_type": "logits"}

    result = await score(client, body)

    assert result == answer(
        [2000.0],
        correct=[0],
        prediction_type="logits",
        epsilon_applies=False,
        # e^2000 overflows float64: no row is infinite, the perplexity is (AGGREGATE_OVERFLOW, not NON_FINITE).
        warnings=[{"code": "AGGREGATE_OVERFLOW", "message": PERPLEXITY_OVERFLOW, "count": 0, "rows": []}],
    )
    assert result["mean"]["cross_entropy"] == 2000.0
    assert result["mean"]["perplexity"] is None


async def test_label_smoothing_spreads_the_target_before_every_quantity(client: httpx.AsyncClient) -> None:
    # y' = 0.8·[1, 0] + 0.2/2 = [0.9, 0.1]; CE against [0.5, 0.5] is ln 2 whatever the target.
    body = {"labels": [0], "predictions": [[0.5, 0.5]], "label_smoothing": 0.2}

    assert await score(client, body) == answer(
        [LN2], entropy=[-(0.9 * math.log(0.9) + 0.1 * math.log(0.1))], label_smoothing=0.2
    )


async def test_class_weights_weigh_rows_by_their_true_class_in_the_aggregates_only(
    client: httpx.AsyncClient,
) -> None:
    body = {"labels": [0, 1], "predictions": [[0.5, 0.5], [0.2, 0.8]], "class_weights": [3, 1]}

    result = await score(client, body)

    assert result == answer([LN2, -math.log(0.8)], weights=[3, 1], class_weights=[3.0, 1.0])
    assert result["mean"]["cross_entropy"] == close((3 * LN2 - math.log(0.8)) / 4)


async def test_sample_weights_weigh_rows_in_the_aggregates_only(client: httpx.AsyncClient) -> None:
    body = {"labels": [0, 1], "predictions": [[0.5, 0.5], [0.2, 0.8]], "sample_weights": [1, 3]}

    result = await score(client, body)

    assert result == answer([LN2, -math.log(0.8)], weights=[1, 3], sample_weights=True)
    assert result["sum"]["cross_entropy"] == close(LN2 - 3 * math.log(0.8))


async def test_ignore_index_rows_get_null_per_sample_values_and_stay_out_of_the_aggregates(
    client: httpx.AsyncClient,
) -> None:
    # The ignored row's predictions sum to 0: they are not checked at all.
    body = {"labels": [0, -100, 1], "predictions": [[0.5, 0.5], [0, 0], [0.2, 0.8]], "ignore_index": -100}

    assert await score(client, body) == answer([LN2, None, -math.log(0.8)], ignore_index=-100)


@pytest.mark.parametrize(
    ("epsilon", "row_0", "resolved", "warning"),
    [
        pytest.param("auto", -math.log(MACHINE_EPSILON), MACHINE_EPSILON, "CLIPPED", id="auto"),
        pytest.param(0.01, -math.log(0.01), 0.01, "CLIPPED", id="0.01"),
    ],
)
async def test_epsilon_clips_a_zero_probability_on_the_true_class(
    client: httpx.AsyncClient, epsilon: object, row_0: float, resolved: float, warning: str
) -> None:
    body = {"labels": [0, 1], "predictions": [[0.0, 1.0], [0.2, 0.8]], "epsilon": epsilon}
    shown = f"{resolved:.6g}"

    assert await score(client, body) == answer(
        [row_0, -math.log(0.8)],
        correct=[0, 1],
        epsilon=resolved,
        warnings=[
            {
                "code": warning,
                "message": f"probabilities outside [epsilon, 1 - epsilon] (epsilon = {shown}) were clipped "
                "before the logarithm where the target is non-zero",
                "count": 1,
                "rows": [0],
            }
        ],
    )


async def test_epsilon_0_gives_infinity_reported_as_null_with_a_non_finite_warning(
    client: httpx.AsyncClient,
) -> None:
    body = {"labels": [0, 1], "predictions": [[0.0, 1.0], [0.2, 0.8]], "epsilon": 0}

    assert await score(client, body) == {
        "n": 2,
        "n_scored": 2,
        "n_clusters": None,
        "unit": "nats",
        "classes": None,
        "mean": {"cross_entropy": None, "kl_divergence": None, "entropy": 0.0, "perplexity": None, "accuracy": 0.5},
        "sum": {"cross_entropy": None, "kl_divergence": None, "entropy": 0.0},
        # An infinite CE leaves CE's (and KL's) error undefined, the others stay; correctness [0, 1] has
        # s = √½ and SE = s/√2 = 0.5, so the accuracy interval is 0.5 ± 1.96·0.5.
        "stderr": {"cross_entropy": None, "kl_divergence": None, "entropy": 0.0, "accuracy": close(0.5)},
        "ci": {
            "cross_entropy": None,
            "kl_divergence": None,
            "entropy": [0.0, 0.0],
            "accuracy": closes([0.5 - Z95 * 0.5, 0.5 + Z95 * 0.5]),
            "perplexity": None,
        },
        **NO_BREAKDOWNS,
        "per_sample": {
            "cross_entropy": [None, close(-math.log(0.8))],
            "kl_divergence": [None, close(-math.log(0.8))],
            "entropy": [0.0, 0.0],
        },
        "warnings": [{"code": "NON_FINITE", "message": NON_FINITE_MESSAGE, "count": 1, "rows": [0]}],
        "settings": {**DEFAULT_SETTINGS, "epsilon": 0.0},
    }


async def test_normalization_warn_scores_rows_as_given(client: httpx.AsyncClient) -> None:
    body = {"labels": [0, 1], "predictions": [[0.5, 0.6], [0.2, 0.8]]}

    assert await score(client, body) == answer(
        [LN2, -math.log(0.8)],
        correct=[0, 1],
        warnings=[
            {
                "code": "ROWS_NOT_NORMALIZED",
                "message": "prediction rows do not sum to 1 within tolerance 0.001; they were scored as given",
                "count": 1,
                "rows": [0],
            }
        ],
    )


async def test_normalization_renormalize_divides_rows_by_their_sums(client: httpx.AsyncClient) -> None:
    body = {"labels": [0, 1], "predictions": [[0.5, 0.6], [0.2, 0.8]], "normalization": "renormalize"}

    assert await score(client, body) == answer(
        [-math.log(0.5 / 1.1), -math.log(0.8)],
        correct=[0, 1],
        normalization="renormalize",
        warnings=[
            {
                "code": "RENORMALIZED",
                "message": "prediction rows did not sum to 1 within tolerance 0.001; they were divided by their sums",
                "count": 1,
                "rows": [0],
            }
        ],
    )


async def test_normalization_error_refuses_rows_off_1_naming_the_first(client: httpx.AsyncClient) -> None:
    body = {"labels": [0, 1, 0], "predictions": [[0.5, 0.5], [0.2, 0.7], [0.5, 0.6]], "normalization": "error"}
    msg = (
        "row sums to 0.9, not 1 within tolerance 0.001 (2 rows are off); "
        'set normalization to "warn" or "renormalize" to score such rows'
    )

    response = await client.post(URL, json=body)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": "urn:xent:problem:invalid-input",
        "title": "Invalid input",
        "status": 422,
        "detail": f"predictions row 1: {msg}",
        "errors": [{"loc": ["body", "predictions", 1], "msg": msg, "type": "rows_not_normalized"}],
    }


async def test_tolerance_decides_which_rows_count_as_normalized(client: httpx.AsyncClient) -> None:
    body = {"labels": [0, 1], "predictions": [[0.5, 0.6], [0.2, 0.8]], "tolerance": 0.2}

    assert await score(client, body) == answer([LN2, -math.log(0.8)], correct=[0, 1], tolerance=0.2)


@pytest.mark.parametrize(("unit", "base"), [("nats", 1.0), ("bits", LN2), ("hartleys", LN10)])
async def test_unit_divides_every_value_but_perplexity_by_ln_base(
    client: httpx.AsyncClient, unit: str, base: float
) -> None:
    result = await score(client, {**REFERENCE, "unit": unit})

    assert result == answer([REFERENCE_NATS], unit=unit)
    assert result["mean"]["cross_entropy"] == close(REFERENCE_NATS / base)
    assert result["mean"]["perplexity"] == close(1 / 0.619)


async def test_per_sample_false_leaves_the_arrays_out(client: httpx.AsyncClient) -> None:
    body = {"labels": [0, 1], "predictions": [[0.5, 0.5], [0.2, 0.8]], "per_sample": False}

    result = await score(client, body)

    assert result == answer([LN2, -math.log(0.8)], per_sample=False)
    assert result["per_sample"] is None


async def test_empty_batch_is_200_with_null_means_zero_sums_and_an_empty_warning(client: httpx.AsyncClient) -> None:
    assert await score(client, {"labels": [], "predictions": []}) == {
        "n": 0,
        "n_scored": 0,
        "n_clusters": None,
        "unit": "nats",
        "classes": None,
        "mean": {"cross_entropy": None, "kl_divergence": None, "entropy": None, "perplexity": None, "accuracy": None},
        "sum": {"cross_entropy": 0.0, "kl_divergence": 0.0, "entropy": 0.0},
        **NO_SPREAD,
        **NO_BREAKDOWNS,
        "per_sample": {"cross_entropy": [], "kl_divergence": [], "entropy": []},
        "warnings": [EMPTY_WARNING, stderr_undefined(0)],
        "settings": DEFAULT_SETTINGS,
    }


async def test_all_rows_ignored_is_200_with_null_means_and_an_empty_warning(client: httpx.AsyncClient) -> None:
    body = {"labels": [-100, -100], "predictions": [[0.5, 0.5], [0.2, 0.8]], "ignore_index": -100}

    assert await score(client, body) == {
        "n": 2,
        "n_scored": 0,
        "n_clusters": None,
        "unit": "nats",
        "classes": None,
        "mean": {"cross_entropy": None, "kl_divergence": None, "entropy": None, "perplexity": None, "accuracy": None},
        "sum": {"cross_entropy": 0.0, "kl_divergence": 0.0, "entropy": 0.0},
        **NO_SPREAD,
        **NO_BREAKDOWNS,
        "per_sample": {"cross_entropy": [None, None], "kl_divergence": [None, None], "entropy": [None, None]},
        "warnings": [
            {
                "code": "EMPTY",
                "message": "nothing was scored: every row is ignored; means are null",
                "count": 0,
                "rows": [],
            },
            stderr_undefined(0),
        ],
        "settings": {**DEFAULT_SETTINGS, "ignore_index": -100},
    }


async def test_zero_total_weight_gives_null_means_and_a_zero_weight_warning(client: httpx.AsyncClient) -> None:
    body = {"labels": [0, 1], "predictions": [[0.5, 0.5], [0.2, 0.8]], "sample_weights": [0, 0]}

    assert await score(client, body) == {
        "n": 2,
        "n_scored": 2,
        "n_clusters": None,
        "unit": "nats",
        "classes": None,
        "mean": {"cross_entropy": None, "kl_divergence": None, "entropy": None, "perplexity": None, "accuracy": None},
        "sum": {"cross_entropy": 0.0, "kl_divergence": 0.0, "entropy": 0.0},
        **NO_SPREAD,
        **NO_BREAKDOWNS,
        "per_sample": {
            "cross_entropy": closes([LN2, -math.log(0.8)]),
            "kl_divergence": closes([LN2, -math.log(0.8)]),
            "entropy": [0.0, 0.0],
        },
        "warnings": [
            {
                "code": "ZERO_WEIGHT",
                "message": "the weights of the scored rows sum to 0, so the weighted means are undefined (null)",
                "count": 2,
                "rows": [0, 1],
            },
            stderr_undefined(0),
        ],
        "settings": {**DEFAULT_SETTINGS, "sample_weights": True},
    }


async def test_a_response_with_nulls_still_fits_the_response_model(client: httpx.AsyncClient) -> None:
    body = {"labels": [0, -100], "predictions": [[0.0, 1.0], [0.5, 0.5]], "ignore_index": -100, "epsilon": 0}

    response = await client.post(URL, json=body)

    assert response.status_code == 200, response.text
    parsed = CrossEntropyResponse.model_validate_json(response.content)
    assert parsed.per_sample is not None
    assert parsed.per_sample.cross_entropy == [None, None]
    # One row scored: no standard error either.
    assert [w.code for w in parsed.warnings] == ["NON_FINITE", "STDERR_UNDEFINED"]


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "APPLICATION/JSON", "application/x+json"])
async def test_json_media_types_with_parameters_or_suffixes_are_accepted(post_raw: Any, content_type: str) -> None:
    # The media types refused with a 415 are in the bad-input catalogue (tests/hostile/test_bad_inputs_catalogue.py).
    response = await post_raw(URL, REFERENCE_BODY, content_type=content_type)

    assert response.status_code == 200, response.text
    assert response.json()["mean"]["cross_entropy"] == pytest.approx(0.47965000629754095, abs=1e-9)
