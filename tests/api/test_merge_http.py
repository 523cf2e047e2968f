"""``POST /v1/merge`` (issue 15 §1): the states of shards scored over HTTP (JSON and NPZ answers) merge into the
answer of the whole batch in one request, for random splits, empty and one-row shards among them; the merged
state merges again; the merge request's confidence sets the intervals. Refusals are in the bad-input catalogue
(tests/hostile/test_bad_inputs_catalogue.py) and tests/hostile/test_forged_states.py."""

import io
import itertools
import json
from typing import Any

import httpx
import numpy as np
import pytest
from npz_bodies import npz
from whole_answers import same_numbers

from service.api.merge_route import MERGE_EXAMPLES, MergedScores

pytestmark = pytest.mark.anyio

CE, BCE, MERGE = "/v1/cross-entropy", "/v1/binary-cross-entropy", "/v1/merge"
#: The issue's tolerances: means and sums to 1e-12, standard errors and intervals to 1e-9 (relative).
TOLERANCES = {"mean": 1e-12, "sum": 1e-12, "stderr": 1e-9, "ci": 1e-9}


def _batch(seed: int, binary: bool = False) -> dict[str, Any]:
    """A batch of 40 rows with weights (some 0) and clusters, as a JSON body."""
    rng = np.random.default_rng(seed)
    n = 40
    body: dict[str, Any] = {
        "sample_weights": rng.choice([0.0, 0.5, 1.0, 3.0], n).tolist(),
        "cluster_ids": [f"doc-{i}" for i in rng.integers(0, 9, n)],
        "per_sample": False,
    }
    if binary:
        body |= {"labels": rng.integers(0, 2, (n, 3)).tolist(), "predictions": rng.random((n, 3)).tolist()}
    else:
        body |= {"labels": rng.integers(0, 4, n).tolist(), "predictions": rng.dirichlet(np.ones(4), n).tolist()}
    return body


def _rows(body: dict[str, Any], start: int, stop: int) -> dict[str, Any]:
    return {key: value[start:stop] if isinstance(value, list) else value for key, value in body.items()}


async def _state(client: httpx.AsyncClient, path: str, body: dict[str, Any], as_npz: bool) -> dict[str, Any]:
    """A shard's state from its JSON answer, or from its NPZ answer's summary."""
    headers = {"Accept": "application/x-npz"} if as_npz else {}
    response = await client.post(path, json=body, headers=headers)
    assert response.status_code == 200, response.text
    if as_npz:
        with np.load(io.BytesIO(response.content)) as archive:
            state: dict[str, Any] = json.loads(str(archive["summary"]))["state"]
            return state
    return response.json()["state"]  # type: ignore[no-any-return]


def assert_same_answer(merged: dict[str, Any], whole: dict[str, Any]) -> None:
    """The merged answer is the one request's, without ``per_sample``, warnings without their rows."""
    assert "per_sample" not in merged
    for key in ("n", "n_scored", "n_clusters", "unit", "by_group", "by_class", "calibration"):
        assert merged[key] == whole[key], key
    for block, rel in TOLERANCES.items():
        assert same_numbers(merged[block], whole[block], rel), (block, merged[block], whole[block])
    assert merged["warnings"] == [{**warning, "rows": []} for warning in whole["warnings"]]


@pytest.mark.parametrize("binary", [False, True], ids=["multiclass", "binary"])
@pytest.mark.parametrize("seed", range(8))
async def test_random_splits_scored_over_http_merge_to_the_one_request_answer(
    client: httpx.AsyncClient, seed: int, binary: bool
) -> None:
    path = BCE if binary else CE
    body = _batch(seed, binary)
    rng = np.random.default_rng(1000 + seed)
    cuts = sorted(rng.integers(0, 41, rng.integers(1, 6)).tolist())  # repeated cuts: empty shards
    edges = sorted([0, 1, *cuts, 40])  # a shard of one row first; repeated edges: empty shards
    states = [
        await _state(client, path, _rows(body, start, stop), as_npz=i % 2 == 1)
        for i, (start, stop) in enumerate(itertools.pairwise(edges))
    ]
    whole = (await client.post(path, json=body)).json()

    response = await client.post(MERGE, json={"states": states})

    assert response.status_code == 200, response.text
    merged = response.json()
    assert_same_answer(merged, whole)
    MergedScores.model_validate(merged)
    # Merged again, in another order and grouping: the same answer.
    halves = [states[len(states) // 2 :], states[: len(states) // 2]]
    parts = [(await client.post(MERGE, json={"states": half})).json()["state"] for half in halves if half]
    again = (await client.post(MERGE, json={"states": parts[::-1]})).json()
    assert_same_answer(again, whole)


async def test_the_merge_requests_confidence_sets_the_intervals(client: httpx.AsyncClient) -> None:
    body = _batch(3)
    states = [await _state(client, CE, _rows(body, a, b), as_npz=False) for a, b in ((0, 25), (25, 40))]
    whole = (await client.post(CE, json={**body, "confidence": 0.8})).json()

    merged = (await client.post(MERGE, json={"states": states, "confidence": 0.8})).json()

    assert merged["settings"]["confidence"] == 0.8
    assert_same_answer(merged, whole)


async def test_the_documented_example_merges_to_the_answer_of_its_four_rows(client: httpx.AsyncClient) -> None:
    example = MERGE_EXAMPLES["two-shards"]["value"]
    rows = {
        "labels": [1, 0, 2, 1],
        "predictions": [[0.228, 0.619, 0.153], [0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.2, 0.6, 0.2]],
        "per_sample": False,
    }
    whole = (await client.post(CE, json=rows)).json()

    merged = (await client.post(MERGE, json=example)).json()

    assert_same_answer(merged, whole)
    assert merged["settings"] == {**whole["state"]["settings"], "confidence": 0.95}


async def test_a_state_in_an_npz_answer_is_the_json_answers(client: httpx.AsyncClient) -> None:
    body = _batch(5)
    arrays = {
        "labels": np.array(body["labels"]),
        "predictions": np.array(body["predictions"]),
        "sample_weights": np.array(body["sample_weights"]),
        "cluster_ids": np.array(body["cluster_ids"]),
    }
    response = await client.post(
        CE + "?per_sample=false",
        content=npz(**arrays),
        headers={"Content-Type": "application/x-npz", "Accept": "application/x-npz"},
    )
    assert response.status_code == 200, response.text
    with np.load(io.BytesIO(response.content)) as archive:
        from_npz = json.loads(str(archive["summary"]))["state"]

    assert from_npz == (await client.post(CE, json=body)).json()["state"]


async def test_the_state_size_does_not_grow_with_the_rows(client: httpx.AsyncClient) -> None:
    sizes = []
    for n in (10, 1000):
        rng = np.random.default_rng(n)
        body = {"labels": rng.integers(0, 10, n).tolist(), "predictions": rng.dirichlet(np.ones(10), n).tolist()}
        state = (await client.post(CE, json={**body, "per_sample": False})).json()["state"]
        sizes.append(len(json.dumps(state)))
    assert abs(sizes[1] - sizes[0]) < 80  # only the digits of the numbers differ


async def test_breakdowns_null_in_one_state_are_null_in_the_merge_as_in_one_request(client: httpx.AsyncClient) -> None:
    # Soft targets leave by_class and calibration null (SOFT_TARGETS): merged with a hard-label shard's, they stay
    # null, as the one request over both shards' rows answers.
    options = {"per_class": True, "calibration_bins": 3, "per_sample": False}
    predictions = [[0.2, 0.8], [0.6, 0.4], [0.2, 0.8], [0.6, 0.4]]
    hard = {"labels": [[0.0, 1.0], [1.0, 0.0]], "predictions": predictions[:2], **options}
    soft = {"labels": [[0.5, 0.5], [1.0, 0.0]], "predictions": predictions[2:], **options}
    whole = (
        await client.post(CE, json={**options, "labels": hard["labels"] + soft["labels"], "predictions": predictions})
    ).json()
    states = [(await client.post(CE, json=body)).json()["state"] for body in (hard, soft)]

    merged = (await client.post(MERGE, json={"states": states})).json()

    assert (merged["by_class"], merged["calibration"]) == (whole["by_class"], whole["calibration"]) == (None, None)
    assert_same_answer(merged, whole)
