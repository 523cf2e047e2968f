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

from service.api.merge_route import MERGE_EXAMPLES, MergedScores, MergedSequences

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


async def test_the_documented_sequence_example_merges_to_the_answer_of_its_corpus(client: httpx.AsyncClient) -> None:
    example = MERGE_EXAMPLES["sequence-shards"]["value"]
    corpus = {"token_logprobs": [[None, -1.0, -2.0], [None, -0.5, -1.5, -1.0]], "num_bytes": [11, 14]}
    whole = (await client.post("/v1/sequence-cross-entropy", json=corpus)).json()

    merged = (await client.post(MERGE, json=example)).json()

    MergedSequences.model_validate(merged)
    expected = {key: value for key, value in whole.items() if key not in ("per_document", "settings", "state")}
    assert same_numbers({k: merged[k] for k in expected}, expected, 1e-12)


async def test_the_merge_answer_is_documented_as_either_shape(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    answer = document["paths"][MERGE]["post"]["responses"]["200"]["content"]["application/json"]

    assert answer["schema"]["anyOf"] == [
        {"$ref": "#/components/schemas/MergedScores"},
        {"$ref": "#/components/schemas/MergedSequences"},
    ]
    examples = answer["examples"]
    MergedScores.model_validate(examples["two-shards"]["value"])
    MergedSequences.model_validate(examples["sequence-shards"]["value"])
    assert "per_document" not in document["components"]["schemas"]["MergedSequences"]["properties"]


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


_ROWS = {
    "labels": [1, 0, 2, 1, 0],
    "predictions": [[0.2, 0.7, 0.1], [0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.3, 0.4, 0.3], [0.6, 0.3, 0.1]],
}
_LOGITS = [[1.0, 2.0, 0.5], [0.0, 1.0, 2.0], [2.0, 1.0, 0.0], [0.3, 0.2, 0.1], [1.5, 0.5, 0.0]]


@pytest.mark.parametrize(
    ("preset", "options"),
    [
        ("keras", {"sample_weights": [1.0, 2.0, 0.5, 1.0, 3.0]}),
        ("pytorch", {"prediction_type": "logits", "class_weights": [1.0, 2.0, 3.0], "label_smoothing": 0.1}),
        (
            "pytorch",
            {
                "prediction_type": "logits",
                "class_weights": [1.0, 2.0, 3.0],
                "labels": np.eye(3)[[1, 0, 2, 1, 0]].tolist(),
            },
        ),
    ],
)
async def test_a_preset_whose_mean_is_not_row_weighted_answers_a_null_state_and_says_why(
    client: httpx.AsyncClient, preset: str, options: dict[str, Any]
) -> None:
    body = {**_ROWS, **({"predictions": _LOGITS} if preset == "pytorch" else {}), "compat": preset, **options}

    answer = (await client.post(CE, json=body)).json()

    assert answer["state"] is None
    warning = answer["warnings"][-1]
    assert warning["code"] == "STATE_NOT_MERGEABLE"
    assert warning["message"].startswith("state is null: the means are not row-weighted means of the per-sample values")
    assert (warning["count"], warning["rows"]) == (1, [])


@pytest.mark.parametrize(
    ("preset", "options"),
    [
        ("keras", {}),
        ("sklearn", {"sample_weights": [1.0, 2.0, 0.5, 1.0, 3.0]}),
        ("pytorch", {"prediction_type": "logits", "class_weights": [1.0, 2.0, 3.0]}),
    ],
)
async def test_a_presets_states_merge_to_its_one_request_answer(
    client: httpx.AsyncClient, preset: str, options: dict[str, Any]
) -> None:
    body = {**_ROWS, **({"predictions": _LOGITS} if preset == "pytorch" else {}), "compat": preset, **options}
    whole = (await client.post(CE, json=body)).json()
    shards = []
    for rows in (slice(0, 2), slice(2, 5)):
        shard = {
            key: value[rows] if key in ("labels", "predictions", "sample_weights") else value
            for key, value in body.items()
        }
        shards.append((await client.post(CE, json=shard)).json()["state"])

    merged = (await client.post(MERGE, json={"states": shards})).json()

    assert merged["settings"]["compat"] == preset
    assert same_numbers(merged["mean"], whole["mean"], 1e-12)
    assert same_numbers(merged["sum"], whole["sum"], 1e-12)


async def test_states_of_different_presets_never_merge(client: httpx.AsyncClient) -> None:
    keras = (await client.post(CE, json={**_ROWS, "compat": "keras"})).json()["state"]
    sklearn = (await client.post(CE, json={**_ROWS, "compat": "sklearn"})).json()["state"]
    relabelled = {**keras, "settings": {**keras["settings"], "compat": "sklearn"}}  # keras's settings but its name
    forged = {**keras, "settings": {**keras["settings"], "compat": "theano"}}

    refused = (await client.post(MERGE, json={"states": [keras, sklearn]})).json()
    named = (await client.post(MERGE, json={"states": [keras, relabelled]})).json()
    unknown = (await client.post(MERGE, json={"states": [forged]})).json()

    assert refused["status"] == 422
    assert refused["errors"][0]["loc"][:4] == ["body", "states", 1, "settings"]
    assert named["errors"][0]["loc"] == ["body", "states", 1, "settings", "compat"]
    assert named["errors"][0]["msg"].startswith("incompatible with states[0]: compat is 'sklearn' here, 'keras' there")
    assert unknown["errors"][0]["loc"] == ["body", "states", 0, "settings", "compat"]
    assert unknown["errors"][0]["msg"] == "not a valid compat: 'theano'"


async def test_weights_whose_squares_pass_float64_keep_breakdown_errors_and_merge(client: httpx.AsyncClient) -> None:
    """Σw² of weights near 1e160 is past float64: the group and class tables hold their weights over 2^e, so the
    errors (which do not depend on the weights' scale) and the merge are those of the same weights near 1."""
    rows = {
        "labels": [1, 0, 2, 1, 0, 2],
        "predictions": [
            [0.2, 0.7, 0.1],
            [0.5, 0.3, 0.2],
            [0.1, 0.2, 0.7],
            [0.3, 0.4, 0.3],
            [0.6, 0.3, 0.1],
            [0.2, 0.2, 0.6],
        ],
        "groups": ["a", "a", "b", "b", "a", "b"],
        "per_class": True,
        "per_sample": False,
    }
    weights = [1.0, 2.0, 1.0, 3.0, 0.5, 2.0]
    small = (await client.post(CE, json={**rows, "sample_weights": weights})).json()
    large = (await client.post(CE, json={**rows, "sample_weights": [w * 1e160 for w in weights]})).json()
    shards = []
    for part in (slice(0, 3), slice(3, 6)):
        shard = {**rows, "sample_weights": [w * 1e160 for w in weights[part]]}
        shard |= {key: rows[key][part] for key in ("labels", "predictions", "groups")}
        shards.append((await client.post(CE, json=shard)).json()["state"])

    merged = (await client.post(MERGE, json={"states": shards})).json()

    assert same_numbers(large["by_group"], small["by_group"], 1e-12)
    assert large["by_group"]["a"]["stderr"]["cross_entropy"] is not None
    for key, scores in large["by_class"].items():
        assert scores["support"] == pytest.approx(small["by_class"][key]["support"] * 1e160, rel=1e-12)
        assert same_numbers(scores["stderr"], small["by_class"][key]["stderr"], 1e-12)
    assert same_numbers(merged["by_group"], large["by_group"], 1e-9)
    assert same_numbers(merged["by_class"], large["by_class"], 1e-9)


async def test_a_forged_value_among_many_states_is_named_as_one_state_alone_is(client: httpx.AsyncClient) -> None:
    """Many states' breakdowns are read at once; a forged one still gets the 422 that names its index and path."""
    rng = np.random.default_rng(15)
    states = []
    for _ in range(12):
        body = {
            "labels": rng.integers(0, 3, 20).tolist(),
            "predictions": rng.dirichlet(np.ones(3), 20).tolist(),
            "groups": [f"g{g}" for g in rng.integers(0, 4, 20)],
            "per_class": True,
            "calibration_bins": 5,
            "per_sample": False,
        }
        states.append((await client.post(CE, json=body)).json()["state"])
    whole = (await client.post(MERGE, json={"states": states})).json()
    pairwise = (await client.post(MERGE, json={"states": [whole["state"]]})).json()
    forged = json.loads(json.dumps(states))
    forged[7]["accumulators"]["groups"]["table"][1][11] = -1.0  # Q of the cross-entropy
    forged[9]["accumulators"]["calibration"]["table"][2][0] = True  # a bin's count

    refused = (await client.post(MERGE, json={"states": forged})).json()

    assert same_numbers(pairwise["by_group"], whole["by_group"], 1e-12)
    assert refused["errors"] == [
        {
            "loc": ["body", "states", 7, "accumulators", "groups", "table", 1, 11],
            "msg": "a centred second moment is negative",
            "type": "state_error",
        }
    ]
    del forged[7]
    refused = (await client.post(MERGE, json={"states": forged})).json()
    assert refused["errors"][0]["loc"] == ["body", "states", 8, "accumulators", "calibration", "table", 2, 0]
