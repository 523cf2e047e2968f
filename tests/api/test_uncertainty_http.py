"""Standard errors, intervals, clusters and the paired comparison over HTTP (issue 14): whole answers, JSON and NPZ."""

import io
import json
import math
import statistics
from typing import Any

import httpx
import numpy as np
import pytest
import statsmodels.api as sm
from npz_bodies import NPZ, npz
from whole_answers import CROSS_ENTROPY_DEFAULTS, NO_BREAKDOWNS, Z95, close, closes, without_state

from service.api.app import create_app
from service.api.schemas import (
    BinaryCrossEntropyCompareResponse,
    CrossEntropyCompareResponse,
    CrossEntropyResponse,
)
from service.settings import Settings

pytestmark = pytest.mark.anyio

PROBABILITIES = [[0.228, 0.619, 0.153], [0.5, 0.3, 0.2], [0.1, 0.2, 0.7]]
#: −ln of the true class's probability on each row: the cross-entropies of PROBABILITIES against [1, 0, 2].
CE = [-math.log(0.619), -math.log(0.5), -math.log(0.7)]


def _npz_summary(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    with np.load(io.BytesIO(response.content)) as archive:
        summary: dict[str, Any] = json.loads(str(archive["summary"]))
    return summary


async def test_three_rows_get_s_over_root_n_and_a_normal_interval(client: httpx.AsyncClient) -> None:
    body = {"labels": [1, 0, 2], "predictions": PROBABILITIES}
    mean = sum(CE) / 3
    se = statistics.stdev(CE) / math.sqrt(3)  # s/√n, Bessel's s

    response = await client.post("/v1/cross-entropy", json=body)

    assert response.status_code == 200, response.text
    CrossEntropyResponse.model_validate_json(response.content)
    low, high = mean - Z95 * se, mean + Z95 * se
    assert without_state(response.json()) == {
        "n": 3,
        "n_scored": 3,
        "n_clusters": None,
        "unit": "nats",
        "classes": None,
        "mean": {
            "cross_entropy": close(mean),
            "kl_divergence": close(mean),
            "entropy": 0.0,
            "perplexity": close(math.exp(mean)),
            "accuracy": 1.0,
        },
        "sum": {"cross_entropy": close(sum(CE)), "kl_divergence": close(sum(CE)), "entropy": 0.0},
        # Entropy and accuracy are constant (0 and 1): SE exactly 0.
        "stderr": {"cross_entropy": close(se), "kl_divergence": close(se), "entropy": 0.0, "accuracy": 0.0},
        "ci": {
            "cross_entropy": closes([low, high]),
            "kl_divergence": closes([low, high]),
            "entropy": [0.0, 0.0],
            "accuracy": [1.0, 1.0],
            "perplexity": closes([math.exp(low), math.exp(high)]),
        },
        **NO_BREAKDOWNS,
        "per_sample": {"cross_entropy": closes(CE), "kl_divergence": closes(CE), "entropy": [0.0, 0.0, 0.0]},
        "warnings": [],
        "settings": CROSS_ENTROPY_DEFAULTS,
    }
    assert round(se, 6) == 0.098296


async def test_bits_divide_the_error_and_perplexity_keeps_its_nats_interval(client: httpx.AsyncClient) -> None:
    body = {"labels": [1, 0, 2], "predictions": PROBABILITIES, "unit": "bits", "confidence": 0.9}
    mean, se = sum(CE) / 3, statistics.stdev(CE) / math.sqrt(3)
    z90 = 1.6448536269514722  # Φ⁻¹(0.95)

    answer = (await client.post("/v1/cross-entropy", json=body)).json()

    assert answer["stderr"]["cross_entropy"] == close(se / math.log(2))
    assert answer["ci"]["cross_entropy"] == closes([(mean - z90 * se) / math.log(2), (mean + z90 * se) / math.log(2)])
    assert answer["ci"]["perplexity"] == closes([math.exp(mean - z90 * se), math.exp(mean + z90 * se)])
    assert answer["settings"]["confidence"] == 0.9


@pytest.mark.parametrize("ids", [["d1", "d1", "d2", "d2", "d3"], [7, 7, 3, 3, 1]])
async def test_cluster_ids_give_the_cr1_error_of_statsmodels(client: httpx.AsyncClient, ids: list[Any]) -> None:
    predictions = [*PROBABILITIES, [0.2, 0.6, 0.2], [0.3, 0.3, 0.4]]
    labels, weights = [1, 0, 2, 1, 0], [1.0, 2.0, 1.0, 0.5, 3.0]
    ce = np.array([*CE, -math.log(0.6), -math.log(0.3)])
    groups = np.unique(np.array(ids), return_inverse=True)[1]
    fit = sm.WLS(ce, np.ones(5), weights=weights).fit(cov_type="cluster", cov_kwds={"groups": groups})

    body = {"labels": labels, "predictions": predictions, "sample_weights": weights, "cluster_ids": ids}
    answer = (await client.post("/v1/cross-entropy", json=body)).json()

    assert answer["n_clusters"] == 3
    assert answer["stderr"]["cross_entropy"] == pytest.approx(float(fit.bse[0]), rel=1e-10)
    assert answer["warnings"] == []


async def test_one_cluster_nulls_every_error_and_says_why(client: httpx.AsyncClient) -> None:
    body = {"labels": [1, 0, 2], "predictions": PROBABILITIES, "cluster_ids": ["a", "a", "a"], "per_sample": False}

    answer = (await client.post("/v1/cross-entropy", json=body)).json()

    assert answer["n_clusters"] == 1
    assert set(answer["stderr"].values()) == {None}
    assert set(answer["ci"].values()) == {None}
    assert answer["warnings"] == [
        {
            "code": "STDERR_UNDEFINED",
            "message": "standard errors and intervals are null: the scored rows of positive weight lie in 1 cluster; "
            "a clustered standard error needs at least 2",
            "count": 0,
            "rows": [],
        }
    ]


@pytest.mark.parametrize("ids", [np.array(["d1", "d1", "d2"]), np.array([4, 4, 9], dtype=np.int32)])
async def test_the_npz_answer_summary_is_the_json_answer(client: httpx.AsyncClient, ids: np.ndarray) -> None:
    labels, predictions = np.array([1, 0, 2]), np.array(PROBABILITIES)
    body = {"labels": [1, 0, 2], "predictions": PROBABILITIES, "cluster_ids": ids.tolist(), "confidence": 0.8}

    as_json = (await client.post("/v1/cross-entropy", json=body)).json()
    response = await client.post(
        "/v1/cross-entropy?confidence=0.8",
        content=npz(labels=labels, predictions=predictions, cluster_ids=ids),
        headers={**NPZ, "accept": "application/x-npz"},
    )

    assert {**_npz_summary(response), "per_sample": as_json["per_sample"]} == as_json
    assert as_json["n_clusters"] == 2


# --- the paired comparison ------------------------------------------------------------------------

BINARY_COMPARE = {
    "labels": [0, 1, 1, 0],
    "predictions": [0.1, 0.8, 0.6, 0.3],
    "baseline_predictions": [0.4, 0.6, 0.5, 0.5],
}


def _side(per_row: list[float], correct: list[float]) -> dict[str, Any]:
    mean, se = statistics.fmean(per_row), statistics.stdev(per_row) / 2
    accuracy, se_accuracy = statistics.fmean(correct), statistics.stdev(correct) / 2
    ce_ci = [mean - Z95 * se, mean + Z95 * se]
    accuracy_ci = [accuracy - Z95 * se_accuracy, accuracy + Z95 * se_accuracy]
    return {
        "mean": {
            "cross_entropy": close(mean),
            "kl_divergence": close(mean),
            "entropy": 0.0,
            "perplexity": close(math.exp(mean)),
            "accuracy": accuracy,
        },
        "sum": {"cross_entropy": close(sum(per_row)), "kl_divergence": close(sum(per_row)), "entropy": 0.0},
        "stderr": {"cross_entropy": close(se), "kl_divergence": close(se), "entropy": 0.0, "accuracy": se_accuracy},
        "ci": {
            "cross_entropy": closes(ce_ci),
            "kl_divergence": closes(ce_ci),
            "entropy": [0.0, 0.0],
            "accuracy": closes(accuracy_ci) if se_accuracy else [accuracy, accuracy],
            "perplexity": closes([math.exp(bound) for bound in ce_ci]),
        },
    }


async def test_binary_compare_whole_answer(client: httpx.AsyncClient) -> None:
    model = [-math.log(0.9), -math.log(0.8), -math.log(0.6), -math.log(0.7)]
    baseline = [-math.log(0.6), -math.log(0.6), -math.log(0.5), -math.log(0.5)]
    d = [m - b for m, b in zip(model, baseline, strict=True)]
    mean, se = statistics.fmean(d), statistics.stdev(d) / 2
    # The baseline's 0.5 on a positive label is on the wrong side: correctness [1, 1, 0, 1].
    accuracy_d = [0.0, 0.0, 1.0, 0.0]

    response = await client.post("/v1/binary-cross-entropy/compare", json=BINARY_COMPARE)

    assert response.status_code == 200, response.text
    BinaryCrossEntropyCompareResponse.model_validate_json(response.content)
    assert response.json() == {
        "n": 4,
        "n_scored": 4,
        "n_clusters": None,
        "unit": "nats",
        "model": _side(model, [1.0, 1.0, 1.0, 1.0]),
        "baseline": _side(baseline, [1.0, 1.0, 0.0, 1.0]),
        "difference": {
            name: {
                "mean": close(mean),
                "stderr": close(se),
                "ci": closes([mean - Z95 * se, mean + Z95 * se]),
                "z": close(mean / se),
                "p_value": close(math.erfc(abs(mean / se) / math.sqrt(2))),
                "correlation": close(float(np.corrcoef(model, baseline)[0, 1])),
            }
            for name in ("cross_entropy", "kl_divergence")
        }
        | {
            "accuracy": {
                "mean": 0.25,
                "stderr": close(statistics.stdev(accuracy_d) / 2),  # s = 0.5: SE 0.25, z = 1
                "ci": closes([0.25 - Z95 * 0.25, 0.25 + Z95 * 0.25]),
                "z": close(1.0),
                "p_value": close(math.erfc(1 / math.sqrt(2))),
                "correlation": None,  # the model is right on every row: constant
            }
        },
        "per_sample": {"difference": closes(d)},
        "warnings": [],
        "settings": {
            "compat": "xent",
            "prediction_type": "probabilities",
            "unit": "nats",
            "epsilon": 2.220446049250313e-16,
            "epsilon_applies": True,
            "label_smoothing": 0.0,
            "pos_weight": None,
            "sample_weights": False,
            "labels_per_sample": 1,
            "baseline_prediction_type": "probabilities",
            "per_sample": True,
            "gradient": False,
            "confidence": 0.95,
        },
    }


async def test_a_logit_baseline_of_the_same_distribution_differs_by_nothing(client: httpx.AsyncClient) -> None:
    logits = np.log(np.array(PROBABILITIES)).tolist()
    body = {
        "labels": [1, 0, 2],
        "predictions": PROBABILITIES,
        "baseline_predictions": logits,
        "baseline_prediction_type": "logits",
    }

    answer = (await client.post("/v1/cross-entropy/compare", json=body)).json()

    ce = answer["difference"]["cross_entropy"]
    assert ce["mean"] == pytest.approx(0.0, abs=1e-15)
    assert ce["stderr"] == pytest.approx(0.0, abs=1e-15)
    assert ce["correlation"] == close(1.0)
    assert answer["settings"]["baseline_prediction_type"] == "logits"
    model, baseline = answer["model"]["mean"], answer["baseline"]["mean"]
    assert model == {name: close(value) for name, value in baseline.items()}
    assert model["cross_entropy"] == close(sum(CE) / 3)


async def test_compare_warnings_name_their_source(client: httpx.AsyncClient) -> None:
    body = {"labels": [0, 1], "predictions": [[0.5, 0.6], [0.2, 0.8]], "baseline_predictions": [[0.5, 0.5], [0.2, 0.8]]}

    response = await client.post("/v1/cross-entropy/compare", json=body)

    assert response.status_code == 200, response.text
    CrossEntropyCompareResponse.model_validate_json(response.content)
    assert [(w["source"], w["code"], w["rows"]) for w in response.json()["warnings"]] == [
        ("model", "ROWS_NOT_NORMALIZED", [0])
    ]


@pytest.mark.parametrize("baseline_type", [None, "logits"])
async def test_compare_over_npz_answers_as_over_json(client: httpx.AsyncClient, baseline_type: str | None) -> None:
    baseline = [[0.3, 0.4, 0.3], [0.4, 0.3, 0.3], [0.3, 0.3, 0.4]]
    if baseline_type:
        baseline = np.log(baseline).tolist()
    body: dict[str, Any] = {
        "labels": [1, 0, 2],
        "predictions": PROBABILITIES,
        "baseline_predictions": baseline,
        "cluster_ids": ["a", "b", "b"],
    }
    query = "?baseline_prediction_type=logits" if baseline_type else ""
    if baseline_type:
        body["baseline_prediction_type"] = baseline_type

    as_json = (await client.post("/v1/cross-entropy/compare", json=body)).json()
    response = await client.post(
        "/v1/cross-entropy/compare" + query,
        content=npz(
            labels=np.array([1, 0, 2]),
            predictions=np.array(PROBABILITIES),
            baseline_predictions=np.array(baseline),
            cluster_ids=np.array(["a", "b", "b"]),
        ),
        headers={**NPZ, "accept": "application/x-npz"},
    )

    with np.load(io.BytesIO(response.content)) as archive:
        difference = archive["difference"].tolist()
        scored = archive["scored"].tolist()
    assert {**_npz_summary(response), "per_sample": {"difference": difference}} == as_json
    assert scored == [True, True, True]
    assert as_json["n_clusters"] == 2


# --- refusals ---------------------------------------------------------------------------------------


async def test_a_baseline_of_another_shape_is_a_422_naming_it(client: httpx.AsyncClient) -> None:
    body = {"labels": [1, 0], "predictions": PROBABILITIES[:2], "baseline_predictions": [[0.5, 0.5], [0.5, 0.5]]}

    response = await client.post("/v1/cross-entropy/compare", json=body)

    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [
        {
            "loc": ["body", "baseline_predictions"],
            "msg": "has shape 2×2 but predictions have shape 2×3",
            "type": "bad_shape",
        }
    ]


async def test_a_bad_baseline_value_is_named_as_the_baseline(client: httpx.AsyncClient) -> None:
    body = {"labels": [0, 1], "predictions": [0.1, 0.9], "baseline_predictions": [0.1, 1.5]}

    response = await client.post("/v1/binary-cross-entropy/compare", json=body)

    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"][:3] == ["body", "baseline_predictions", 1]


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"confidence": 1.0}, ["body", "confidence"]),
        ({"confidence": True}, ["body", "confidence"]),
        ({"cluster_ids": ["a", 1, "b"]}, ["body", "cluster_ids", 1]),
        ({"cluster_ids": ["a", "b"]}, ["body", "cluster_ids"]),
    ],
)
async def test_bad_uncertainty_options_are_422s(
    client: httpx.AsyncClient, change: dict[str, Any], loc: list[Any]
) -> None:
    response = await client.post(
        "/v1/cross-entropy", json={"labels": [1, 0, 2], "predictions": PROBABILITIES, **change}
    )

    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == loc


async def test_the_cell_limit_counts_both_prediction_arrays() -> None:
    app = create_app(Settings(max_cells=10))
    body = {"labels": [1, 0], "predictions": PROBABILITIES[:2], "baseline_predictions": PROBABILITIES[:2]}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        alone = await client.post("/v1/cross-entropy", json={"labels": [1, 0], "predictions": PROBABILITIES[:2]})
        both = await client.post("/v1/cross-entropy/compare", json=body)

    assert alone.status_code == 200, alone.text
    assert both.status_code == 413, both.text
    assert both.json()["detail"] == (
        "the batch has 12 rows × classes (both prediction arrays); the limit is 10 (XENT_MAX_CELLS)"
    )
