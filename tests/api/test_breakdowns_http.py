"""``groups``, ``per_class`` and ``calibration_bins`` over HTTP (issue 15 §2-3): whole answers worked out by hand,
the NPZ transport (a ``groups`` member, the others in the query) giving the JSON answer, and the Python client."""

import io
import json
import math
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from in_process import asgi_transport
from npz_bodies import NPZ, npz
from whole_answers import CROSS_ENTROPY_DEFAULTS, close, spread

from service.api.schemas import BinaryCrossEntropyResponse, CrossEntropyResponse
from service.client import AsyncClient

pytestmark = pytest.mark.anyio

LABELS = [1, 0, 2, 1]
PROBABILITIES = [[0.228, 0.619, 0.153], [0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1]]
GROUPS = ["b", "a", "b", "a"]
#: −ln q_y of each row, its correctness and top probability.
CE = [-math.log(0.619), -math.log(0.5), -math.log(0.7), -math.log(0.3)]
CORRECT = [1.0, 1.0, 1.0, 0.0]
TOP = [0.619, 0.5, 0.7, 0.6]


def _group(rows: list[int]) -> dict[str, Any]:
    """A group's block, from the issue-14 formulas written out in ``whole_answers.spread``."""
    ce = [CE[i] for i in rows]
    correct = [CORRECT[i] for i in rows]
    means = {"cross_entropy": sum(ce) / 2, "kl_divergence": sum(ce) / 2, "entropy": 0.0, "accuracy": sum(correct) / 2}
    blocks = spread(
        {"cross_entropy": ce, "kl_divergence": ce, "entropy": [0.0, 0.0], "accuracy": correct}, [1.0, 1.0], means
    )
    blocks["ci"].pop("perplexity")
    return {"n": 2, "n_scored": 2, "mean": {k: close(v) for k, v in means.items()}, **blocks}


def _npz_answer(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    with np.load(io.BytesIO(response.content), allow_pickle=False) as archive:
        summary: dict[str, Any] = json.loads(str(archive["summary"]))
        return summary


async def test_a_whole_answer_with_groups_classes_and_calibration(client: httpx.AsyncClient) -> None:
    body = {
        "labels": LABELS,
        "predictions": PROBABILITIES,
        "groups": GROUPS,
        "per_class": True,
        "calibration_bins": 4,
        "per_sample": False,
    }
    response = await client.post("/v1/cross-entropy", json=body)
    assert response.status_code == 200, response.text
    CrossEntropyResponse.model_validate_json(response.content)
    answer = response.json()
    answer.pop("state")  # issue 15 §1, tested with the merge endpoint
    mean_ce = sum(CE) / 4
    se = spread(
        {"cross_entropy": CE, "kl_divergence": CE, "entropy": [0.0] * 4, "accuracy": CORRECT},
        [1.0] * 4,
        {"cross_entropy": mean_ce, "kl_divergence": mean_ce, "entropy": 0.0, "accuracy": 0.75},
    )
    # Classes: 0 holds row 1 (argmax 0), 1 rows 0 and 3 (argmax 1 and 0), 2 row 2; row 3 predicts class 0.
    ce_1 = [CE[0], CE[3]]
    se_1 = math.sqrt(2 * sum((v - sum(ce_1) / 2) ** 2 for v in ce_1)) / 2
    # Bins of 1/4: 0.5, 0.6, 0.619 in [0.5, 0.75), 0.7 too; none elsewhere.
    conf, acc = sum(TOP) / 4, 0.75
    brier = (
        (0.228**2 + 0.381**2 + 0.153**2)
        + (0.5**2 + 0.3**2 + 0.2**2)
        + (0.1**2 + 0.2**2 + 0.3**2)
        + (0.6**2 + 0.7**2 + 0.1**2)
    ) / 4
    empty = {"count": 0, "weight": 0.0, "mean_confidence": None, "accuracy": None}
    assert answer == {
        "n": 4,
        "n_scored": 4,
        "n_clusters": None,
        "unit": "nats",
        "classes": None,
        "mean": {
            "cross_entropy": close(mean_ce),
            "kl_divergence": close(mean_ce),
            "entropy": 0.0,
            "perplexity": close(math.exp(mean_ce)),
            "accuracy": 0.75,
        },
        "sum": {"cross_entropy": close(sum(CE)), "kl_divergence": close(sum(CE)), "entropy": 0.0},
        **se,
        "by_group": {"a": _group([1, 3]), "b": _group([0, 2])},
        "by_class": {
            "0": {
                "support": 1.0,
                "mean_cross_entropy": close(CE[1]),
                "stderr": None,
                "accuracy": 1.0,
                "predicted": 2.0,
            },
            "1": {
                "support": 2.0,
                "mean_cross_entropy": close(sum(ce_1) / 2),
                "stderr": close(se_1),
                "accuracy": 0.5,
                "predicted": 1.0,
            },
            "2": {
                "support": 1.0,
                "mean_cross_entropy": close(CE[2]),
                "stderr": None,
                "accuracy": 1.0,
                "predicted": 1.0,
            },
        },
        "calibration": {
            "n_bins": 4,
            "ece": close(abs(acc - conf)),
            "mce": close(abs(acc - conf)),
            "rmsce": close(abs(acc - conf)),
            "brier": close(brier),
            "bins": [
                {"lower": 0.0, "upper": 0.25, **empty},
                {"lower": 0.25, "upper": 0.5, **empty},
                {
                    "lower": 0.5,
                    "upper": 0.75,
                    "count": 4,
                    "weight": 4.0,
                    "mean_confidence": close(conf),
                    "accuracy": 0.75,
                },
                {"lower": 0.75, "upper": 1.0, **empty},
            ],
        },
        "per_sample": None,
        "warnings": [],
        "settings": {**CROSS_ENTROPY_DEFAULTS, "per_sample": False, "compat": "xent"},
    }


async def test_the_npz_transport_gives_the_json_answer(client: httpx.AsyncClient) -> None:
    body = {"labels": LABELS, "predictions": PROBABILITIES, "classes": ["A", "B", "C"], "groups": GROUPS}
    options = {"per_class": True, "calibration_bins": 3, "cluster_ids": [1, 2, 1, 2], "per_sample": False}
    from_json = await client.post("/v1/cross-entropy", json={**body, **options})
    archive = npz(
        labels=np.array(LABELS),
        predictions=np.array(PROBABILITIES),
        classes=np.array(["A", "B", "C"]),
        groups=np.array(GROUPS),
        cluster_ids=np.array([1, 2, 1, 2]),
    )
    from_npz = await client.post(
        "/v1/cross-entropy?per_class=true&calibration_bins=3&per_sample=false", content=archive, headers=NPZ
    )
    assert from_json.status_code == 200, from_json.text
    answer = from_json.json()
    assert from_npz.json() == answer
    assert list(answer["by_class"]) == ["A", "B", "C"]
    # Group a (rows 1 and 3) lies in one cluster (2): a clustered standard error needs two.
    assert answer["by_group"]["a"]["stderr"] == dict.fromkeys(("cross_entropy", "kl_divergence", "entropy", "accuracy"))


async def test_binary_multilabel_groups_and_calibration_over_both_transports(client: httpx.AsyncClient) -> None:
    labels = [[1, 0], [0, 0], [1, 1]]
    predictions = [[0.9, 0.2], [0.4, 0.1], [0.7, 0.55]]
    body = {"labels": labels, "predictions": predictions, "groups": ["x", "y", "x"], "calibration_bins": 2}
    response = await client.post("/v1/binary-cross-entropy", json={**body, "sample_weights": [1.0, 2.0, 1.0]})
    assert response.status_code == 200, response.text
    BinaryCrossEntropyResponse.model_validate_json(response.content)
    answer = response.json()
    archive = npz(
        labels=np.array(labels, dtype=float),
        predictions=np.array(predictions),
        groups=np.array(["x", "y", "x"]),
        sample_weights=np.array([1.0, 2.0, 1.0]),
    )
    as_npz = {**NPZ, "accept": NPZ["content-type"]}
    from_npz = await client.post("/v1/binary-cross-entropy?calibration_bins=2", content=archive, headers=as_npz)
    assert _npz_answer(from_npz) == {**answer, "per_sample": None}
    # Six elements: 0.2, 0.4, 0.1 below 1/2 (labels 0, 0, 0); 0.9, 0.7, 0.55 above (labels 1, 1, 1).
    low_weight = 1 + 2 + 2  # 0.2 (row 0), 0.4 and 0.1 (row 1, weight 2)
    calibration = answer["calibration"]
    assert [b["count"] for b in calibration["bins"]] == [3, 3]
    assert [b["weight"] for b in calibration["bins"]] == [low_weight, 3.0]
    assert calibration["bins"][0]["mean_confidence"] == pytest.approx((0.2 + 2 * 0.4 + 2 * 0.1) / 5)
    assert calibration["bins"][1]["accuracy"] == 1.0
    squares = [0.01, 0.04, 0.16 * 2, 0.01 * 2, 0.09, 0.45**2]
    assert calibration["brier"] == pytest.approx(sum(squares) / 8)
    assert answer["by_class"] is None
    assert list(answer["by_group"]) == ["x", "y"]


async def test_soft_targets_answer_null_breakdowns_with_a_warning(client: httpx.AsyncClient) -> None:
    body = {
        "labels": [[0.0, 1.0], [0.3, 0.7]],
        "predictions": [[0.4, 0.6], [0.5, 0.5]],
        "per_class": True,
        "groups": ["g", "g"],
    }
    response = await client.post("/v1/cross-entropy", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["by_class"] is None
    assert answer["calibration"] is None
    assert list(answer["by_group"]) == ["g"]
    assert answer["warnings"] == [
        {
            "code": "SOFT_TARGETS",
            "message": "by_class is null: it needs one true class per row, and these target rows are not one-hot",
            "count": 1,
            "rows": [1],
        }
    ]


async def test_the_client_sends_the_options_and_reads_the_blocks(app: FastAPI, client: httpx.AsyncClient) -> None:
    options = {"groups": GROUPS, "per_class": True, "calibration_bins": 2}
    expected = (
        await client.post("/v1/cross-entropy", json={"labels": LABELS, "predictions": PROBABILITIES, **options})
    ).json()
    async with app.router.lifespan_context(app), AsyncClient("http://test", transport=asgi_transport(app)) as xent:
        for transport in ("json", "npz"):
            scores = await xent.cross_entropy(
                LABELS, np.array(PROBABILITIES), transport=transport, groups=GROUPS, per_class=True, calibration_bins=2
            )
            assert (scores.by_group, scores.by_class, scores.calibration) == (
                expected["by_group"],
                expected["by_class"],
                expected["calibration"],
            )


async def test_a_comparison_takes_no_groups(client: httpx.AsyncClient) -> None:
    body = {
        "labels": [1],
        "predictions": [PROBABILITIES[0]],
        "baseline_predictions": [PROBABILITIES[1]],
        "groups": ["a"],
    }
    response = await client.post("/v1/cross-entropy/compare", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == ["body", "groups"]


@pytest.mark.parametrize("clustered", [False, True])
async def test_merged_states_of_shards_give_the_blocks_of_one_request(
    client: httpx.AsyncClient, clustered: bool
) -> None:
    rng = np.random.default_rng(5)
    n = 30
    logits = rng.normal(size=(n, 3))
    body: dict[str, Any] = {
        "labels": rng.integers(0, 3, n).tolist(),
        "predictions": logits.tolist(),
        "prediction_type": "logits",
        "classes": ["A", "B", "C"],
        "sample_weights": rng.uniform(0, 2, n).tolist(),
        "groups": rng.choice(["x", "y", "z"], n).tolist(),
        "per_class": True,
        "calibration_bins": 5,
        "per_sample": False,
    }
    if clustered:
        body["cluster_ids"] = rng.integers(0, 8, n).tolist()
    whole = (await client.post("/v1/cross-entropy", json=body)).json()
    states = []
    for a, b in ((0, 0), (0, 1), (1, 17), (17, 30)):  # an empty shard and a shard of one row among them
        shard = {key: value[a:b] if key in PER_ROW else value for key, value in body.items()}
        response = await client.post("/v1/cross-entropy", json=shard)
        assert response.status_code == 200, response.text
        states.append(response.json()["state"])
    merged = await client.post("/v1/merge", json={"states": states[::-1]})
    assert merged.status_code == 200, merged.text
    for key in ("by_group", "by_class", "calibration"):
        assert merged.json()[key] == _to_1e9(whole[key])


PER_ROW = ("labels", "predictions", "sample_weights", "groups", "cluster_ids")


def _to_1e9(value: Any) -> Any:
    """Every number to 1e-9 (relative; issue 15: standard errors and intervals to 1e-9), counts exactly."""
    if isinstance(value, dict):
        return {key: _to_1e9(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_to_1e9(item) for item in value]
    if value is None or isinstance(value, str | bool | int):
        return value
    return pytest.approx(value, rel=1e-9, abs=1e-12)


async def test_score_many_merges_the_blocks_of_its_chunks(app: FastAPI, client: httpx.AsyncClient) -> None:
    rng = np.random.default_rng(8)
    n = 41
    q = rng.dirichlet(np.ones(3), n)
    labels = rng.integers(0, 3, n)
    groups = rng.choice(["p", "q"], n).tolist()
    options = {"groups": groups, "per_class": True, "calibration_bins": 4, "per_sample": False}
    body = {"labels": labels.tolist(), "predictions": q.tolist(), **options}
    expected = (await client.post("/v1/cross-entropy", json=body)).json()
    async with app.router.lifespan_context(app), AsyncClient("http://test", transport=asgi_transport(app)) as xent:
        scores = await xent.score_many(
            labels, q, chunk_size=10, groups=groups, per_class=True, calibration_bins=4, per_sample=False
        )
    got = {"by_group": scores.by_group, "by_class": scores.by_class, "calibration": scores.calibration}
    assert got == _to_1e9({key: expected[key] for key in got})


async def test_a_forged_breakdown_in_a_merged_state_is_a_422_naming_it(client: httpx.AsyncClient) -> None:
    body = {"labels": LABELS, "predictions": PROBABILITIES, "groups": GROUPS, "calibration_bins": 2}
    state = (await client.post("/v1/cross-entropy", json=body)).json()["state"]
    forged = json.loads(json.dumps(state))
    forged["accumulators"]["groups"]["table"][0][-2] = -1  # a group's n: the last columns are n and n_scored
    response = await client.post("/v1/merge", json={"states": [state, forged]})
    assert response.status_code == 422, response.text
    message = "expected a count (a whole number ≥ 0)"
    assert response.json()["errors"] == [
        {
            "loc": ["body", "states", 1, "accumulators", "groups", "table", 0, 27],
            "msg": message,
            "type": "state_error",
        }
    ]
    forged = json.loads(json.dumps(state))
    forged["accumulators"]["calibration"]["table"] = [[1.0, 1.0, 0.5, 1.0]]
    response = await client.post("/v1/merge", json={"states": [forged]})
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == "states[0].accumulators.calibration.table: expected 2 entries, got 1"


async def test_a_shard_with_soft_targets_leaves_the_merged_by_class_and_calibration_null(
    client: httpx.AsyncClient,
) -> None:
    options = {"per_class": True, "calibration_bins": 3}
    hard = {"labels": [[0.0, 1.0], [1.0, 0.0]], "predictions": [[0.4, 0.6], [0.7, 0.3]], **options}
    soft = {"labels": [[0.3, 0.7]], "predictions": [[0.5, 0.5]], **options}
    states = [(await client.post("/v1/cross-entropy", json=body)).json()["state"] for body in (hard, soft)]
    assert states[1]["accumulators"]["classes"] == {"soft_targets": True}
    for order in (states, states[::-1]):
        merged = (await client.post("/v1/merge", json={"states": order})).json()
        assert (merged["by_class"], merged["calibration"]) == (None, None)
        assert [(w["code"], w["count"]) for w in merged["warnings"]] == [("SOFT_TARGETS", 1)]
    alone = (await client.post("/v1/merge", json={"states": states[:1]})).json()
    assert alone["by_class"] is not None
    assert alone["calibration"] is not None
