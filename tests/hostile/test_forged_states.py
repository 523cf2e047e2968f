"""Forged states (issue 15 §1): whatever value of a real state is replaced, removed or added, merging it is
either refused with a StateError naming the state's index and the path (a 422), or gives an answer that JSON
can carry — never another exception (a 500). The catalogue (test_bad_inputs_catalogue.py) has the exact
problem of the named cases; this tries every place of clustered multi-class and binary states."""

import copy
import math
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.core.binary import score_binary
from service.core.contract import BINARY, MULTICLASS
from service.core.errors import InvalidInput
from service.core.multiclass import score_multiclass
from service.core.score_state import StateOf, answer_state
from service.core.state import StateError, merge_states


def _multiclass_state() -> dict[str, Any]:
    labels, predictions = [1, 0, 2, 1], [[0.228, 0.619, 0.153], [0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.2, 0.6, 0.2]]
    result = score_multiclass(labels, predictions, sample_weights=[1.0, 2.0, 0.5, 1.0])
    return answer_state(result, StateOf(MULTICLASS, {}, 3), cluster_ids=["a", "b", "a", "c"])


def _binary_state() -> dict[str, Any]:
    result = score_binary([[1, 0], [0, 0], [1, 1]], [[0.9, 0.2], [0.4, 0.1], [0.6, 0.7]])
    return answer_state(result, StateOf(BINARY, {}), cluster_ids=[7, 8, 7])


STATES = {"multiclass": _multiclass_state(), "binary": _binary_state()}


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``value`` (the value itself first)."""
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _paths(item, (*path, i))
    return found


HOSTILE_VALUES = st.one_of(
    st.sampled_from([None, True, False, -1, 0, 1, 2, -1.0, 0.0, 1e308, -1e308, 2**64, 10**400, "", "x", [], {}]),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(),
    st.text(max_size=5),
)


def _forge(state: dict[str, Any], path: tuple[Any, ...], action: str, value: Any) -> Any:
    forged = copy.deepcopy(state)
    if not path:
        return value
    parent = forged
    for key in path[:-1]:
        parent = parent[key]
    if action == "delete" and isinstance(parent, dict):
        del parent[path[-1]]
    elif action == "add" and isinstance(parent, dict):
        parent["extra"] = value
    else:
        parent[path[-1]] = value
    return forged


def _all_finite(value: Any) -> bool:
    if isinstance(value, dict):
        return all(_all_finite(item) for item in value.values())
    if isinstance(value, list):
        return all(_all_finite(item) for item in value)
    return not isinstance(value, float) or math.isfinite(value)


@settings(max_examples=600, deadline=None)
@given(
    kind=st.sampled_from(sorted(STATES)),
    data=st.data(),
    action=st.sampled_from(["replace", "delete", "add"]),
    value=HOSTILE_VALUES,
    position=st.integers(0, 2),
)
def test_a_forged_state_is_refused_by_name_or_merges_into_a_json_answer(
    kind: str, data: st.DataObject, action: str, value: Any, position: int
) -> None:
    state = STATES[kind]
    path = data.draw(st.sampled_from(_paths(state)))
    forged = _forge(state, path, action, value)
    states = [copy.deepcopy(state), copy.deepcopy(state)]
    states.insert(position, forged)
    refused: StateError | None = None
    try:
        answer = merge_states(states, 0.95)
    except StateError as error:
        refused = error
    except InvalidInput as error:  # any other refusal would not name the state
        pytest.fail(f"not a StateError: {error}")
    if refused is not None:
        # The forged state is named, or (a forged setting) the state found incompatible with it.
        assert refused.index in (None, position) or refused.path[:1] == ("settings",), (refused, position)
        assert str(refused).startswith("states")
        return
    assert _all_finite(answer)
    orjson.dumps(answer)


def test_the_unforged_states_merge() -> None:
    for state in STATES.values():
        answer = merge_states([state, state], 0.95)
        assert answer["n"] == 2 * state["n"]
        assert np.isfinite(answer["stderr"]["cross_entropy"])
