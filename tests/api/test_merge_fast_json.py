"""A merge body read by simdjson (``_json_states``: the states by column, their tables as float64 arrays) answers
exactly like the same body read by Pydantic: same status, same JSON, valid states and forged ones alike.

Two apps differ only in ``fast_json_min_bytes`` (as in test_fast_json_equivalence.py): 0 sends every merge body
down the simdjson reader, a huge value down the reference path. The forgeries are those of
tests/hostile/test_forged_states.py, on states with groups, classes and calibration, and some only text can
make (a row nested in a row, rows of compensating lengths, a duplicate key, NaN).
"""

import asyncio
import copy
import json
import math
from typing import Any

import httpx
import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from in_process import in_process_client

from service.api import create_app
from service.api.merge_route import MergeRequest
from service.api.schemas import CrossEntropyRequest
from service.api.scoring import cross_entropy
from service.api.transport import Answer
from service.api.transport._json_states import decode_states
from service.core.state import merge_states
from service.core.state_batch import Rows, StateBatch
from service.settings import Settings

FAST = create_app(Settings(fast_json_min_bytes=0))
REFERENCE = create_app(Settings(fast_json_min_bytes=10**12))
MERGE = "/v1/merge"


def _state(seed: int, rows: int = 30, **options: Any) -> dict[str, Any]:
    """The state of a real answer with groups, per-class and calibration (and ``options``)."""
    rng = np.random.default_rng(seed)
    body = {
        "labels": rng.integers(0, 3, rows).tolist(),
        "predictions": rng.dirichlet(np.ones(3), rows).tolist(),
        "groups": [f"g{g}" for g in rng.integers(0, 4, rows)],
        "per_class": True,
        "calibration_bins": 5,
        "per_sample": False,
        **options,
    }
    answer = cross_entropy(CrossEntropyRequest.model_validate(body), Answer())
    state: dict[str, Any] = orjson.loads(bytes(answer.body))["state"]
    return state


STATES = [_state(seed) for seed in range(4)]


async def _post_both(body: bytes) -> tuple[httpx.Response, httpx.Response]:
    answers = []
    for app in (FAST, REFERENCE):
        async with in_process_client(app) as client:
            answers.append(await client.post(MERGE, content=body, headers={"content-type": "application/json"}))
    return answers[0], answers[1]


def _assert_same(body: bytes) -> httpx.Response:
    fast, reference = asyncio.run(_post_both(body))
    assert fast.status_code == reference.status_code, (fast.text[:400], reference.text[:400])
    assert fast.status_code < 500, fast.text
    assert fast.json() == reference.json()
    return fast


def test_states_of_one_shape_are_read_by_column_and_merge_as_the_reference_path_merges() -> None:
    body = json.dumps({"states": STATES, "confidence": 0.9}).encode()
    decoded = decode_states(MergeRequest, body)
    assert decoded is not None
    states, rest = decoded
    assert isinstance(states, StateBatch)
    assert isinstance(states.columns[("accumulators", "groups", "table")], Rows)
    assert json.loads(rest) == {"states": [], "confidence": 0.9}
    for index, state in enumerate(STATES):  # a state rebuilt from the columns is the state sent
        rebuilt = json.loads(orjson.dumps(states[index], option=orjson.OPT_SERIALIZE_NUMPY))
        assert rebuilt == json.loads(json.dumps(state))
    answer = _assert_same(body).json()
    assert answer == json.loads(orjson.dumps(merge_states(STATES, 0.9)))
    assert answer["n"] == 4 * 30


def test_states_of_other_shapes_are_read_one_by_one_and_merge_the_same() -> None:
    clustered = _state(9, cluster_ids=[f"c{i % 5}" for i in range(30)])
    unweighted = _state(10)
    body = json.dumps({"states": [unweighted, clustered]}).encode()
    decoded = decode_states(MergeRequest, body)
    assert decoded is not None
    assert isinstance(decoded[0], list)  # the second state has another shape: read one by one
    assert _assert_same(body).status_code == 422  # clustered with unclustered: incompatible settings
    body = json.dumps({"states": [clustered, _state(11, cluster_ids=[f"c{i % 3}" for i in range(30)])]}).encode()
    assert _assert_same(body).status_code == 200


#: Values a forger puts in place of another (those of test_forged_states.py that JSON can carry).
HOSTILE_VALUES = st.one_of(
    st.sampled_from([None, True, False, -1, 0, 1, 2, -1.0, 0.0, 1.5, 1e308, -1e308, 2**64, "", "x", [], {}, [1.0]]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**70), 2**70),
)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _paths(item, (*path, i))
    return found


PATHS = _paths(STATES[0])[1:]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    path=st.sampled_from(PATHS),
    action=st.sampled_from(["replace", "delete", "add"]),
    value=HOSTILE_VALUES,
    position=st.integers(0, 3),
)
def test_a_forged_state_among_many_gets_the_answer_of_the_reference_path(
    path: tuple[Any, ...], action: str, value: Any, position: int
) -> None:
    states = copy.deepcopy(STATES)
    parent: Any = states[position]
    for key in path[:-1]:
        parent = parent[key]
    if action == "delete" and isinstance(parent, dict):
        del parent[path[-1]]
    elif action == "add" and isinstance(parent, dict):
        parent["extra"] = value
    else:
        parent[path[-1]] = value
    _assert_same(json.dumps({"states": states}).encode())


def _text(states: list[dict[str, Any]]) -> str:
    return json.dumps({"states": states})


def test_forgeries_only_text_can_make_get_the_answer_of_the_reference_path() -> None:
    text = _text(STATES)
    table = json.dumps(STATES[1]["accumulators"]["groups"]["table"])
    rows = json.loads(table)
    first, second = json.dumps(rows[0]), json.dumps(rows[1])
    shorter, longer = json.dumps(rows[0][:-1]), json.dumps([*rows[1], 1.0])
    forgeries = {
        "a number nested in a row": text.replace(first, first[:-1] + ", [2.0]]", 1),
        "a row nested one deeper": text.replace(first, "[" + first + "]", 1),
        "rows of compensating lengths": text.replace(first + ", " + second, shorter + ", " + longer, 1),
        "NaN in a table": text.replace(first, first.replace("0.0", "NaN", 1), 1),
        "a duplicate key": text.replace('"version": 1', '"version": 1, "version": 1', 1),
        "a bracket inside a group name": text.replace('"g0"', '"g[0"'),
        "a float for a count": text.replace('"n_bins": 5', '"n_bins": 5.0', 1),
        # simdjson lists such a key but cannot look it up (found by schemathesis: a 500 before the fix)
        "a NUL in a key": text.replace('"clusters": null', '"clus\\u0000ters": null', 1),
        "an empty key": text.replace('"warnings": {}', '"warnings": {}, "": 1', 1),
    }
    for name, body in forgeries.items():
        assert body != text, name
        answer = _assert_same(body.encode())
        assert answer.status_code in (200, 400, 422), (name, answer.text)
    assert _assert_same(forgeries["a number nested in a row"].encode()).status_code == 422
    assert _assert_same(forgeries["rows of compensating lengths"].encode()).status_code == 422


def test_an_empty_list_of_states_and_a_list_of_nulls_are_refused_alike() -> None:
    for body in ({"states": []}, {"states": [None, None]}, {"states": [[], {}]}, {"states": [STATES[0], 7]}):
        assert _assert_same(json.dumps(body).encode()).status_code == 422


def test_weights_of_many_scales_and_empty_shards_merge_alike() -> None:
    rng = np.random.default_rng(3)
    states = []
    # 1e-290 · U(0.1, 1): tiny, and every weight above calibration's least, 2^−1000 (9.3e-302).
    for scale, rows in ((1e-290, 5), (1.0, 0), (1e300, 7), (2.0, 1)):
        body = {
            "labels": rng.integers(0, 3, rows).tolist(),
            "predictions": rng.dirichlet(np.ones(3), rows).tolist(),
            "sample_weights": (rng.uniform(0.1, 1.0, rows) * scale).tolist(),
            "groups": [f"g{g}" for g in rng.integers(0, 2, rows)],
            "calibration_bins": 3,
            "per_sample": False,
        }
        states.append(
            orjson.loads(bytes(cross_entropy(CrossEntropyRequest.model_validate(body), Answer()).body))["state"]
        )
    answer = _assert_same(json.dumps({"states": states}).encode()).json()
    assert answer["n"] == 13
    assert all(math.isfinite(value) for value in answer["mean"].values() if value is not None)


def test_binary_and_sequence_states_merge_alike_on_both_paths() -> None:
    rng = np.random.default_rng(5)
    binary = []
    for rows in (6, 1, 9):
        body = {
            "labels": rng.integers(0, 2, (rows, 3)).tolist(),
            "predictions": rng.random((rows, 3)).tolist(),
            "calibration_bins": 4,
            "groups": [f"g{g}" for g in rng.integers(0, 2, rows)],
            "per_sample": False,
        }
        binary.append(asyncio.run(_post_one("/v1/binary-cross-entropy", body))["state"])
    answer = _assert_same(json.dumps({"states": binary}).encode()).json()
    assert answer["n"] == 16
    sequences = [
        asyncio.run(_post_one("/v1/sequence-cross-entropy", {"token_logprobs": [[None, -1.0, -2.5], [None, -0.5]]})),
        asyncio.run(_post_one("/v1/sequence-cross-entropy", {"token_logprobs": [[None, -0.25, -1.0, -3.0]]})),
    ]
    answer = _assert_same(json.dumps({"states": [s["state"] for s in sequences]}).encode()).json()
    assert answer["n_sequences"] == 3


async def _post_one(path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with in_process_client(REFERENCE) as client:
        response = await client.post(path, json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_the_limits_on_states_and_groups_hold_on_both_paths() -> None:
    body = json.dumps({"states": STATES}).encode()
    for limits, named in (({"max_merge_states": 3}, "XENT_MAX_MERGE_STATES"), ({"max_groups": 3}, "XENT_MAX_GROUPS")):
        answers = []
        for threshold in (0, 10**12):
            app = create_app(Settings(fast_json_min_bytes=threshold, **limits))

            async def post(app: Any = app) -> httpx.Response:
                async with in_process_client(app) as client:
                    return await client.post(MERGE, content=body, headers={"content-type": "application/json"})

            answers.append(asyncio.run(post()))
        assert [answer.status_code for answer in answers] == [413, 413]
        assert answers[0].json() == answers[1].json()
        assert named in answers[0].json()["detail"]


def test_a_body_in_a_memory_map_is_read_where_it_lies_as_bytes_are() -> None:
    import mmap

    body = json.dumps({"states": STATES, "confidence": 0.9}).encode()
    mapped = mmap.mmap(-1, len(body) + 4096)  # a large body's map: longer than the body, its view cut to it
    mapped[: len(body)] = body
    view = memoryview(mapped)[: len(body)]

    from_map, from_bytes = decode_states(MergeRequest, view), decode_states(MergeRequest, body)

    assert from_map is not None
    assert from_bytes is not None
    assert from_map[1] == from_bytes[1]
    as_json = [
        orjson.dumps(read[0][i], option=orjson.OPT_SERIALIZE_NUMPY) for read in (from_map, from_bytes) for i in (0, 3)
    ]
    assert as_json[:2] == as_json[2:]
    assert bytes(view) == body  # read, not written
    view.release()
