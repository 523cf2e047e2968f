"""The JSON fast paths of `/v1/sequence-cross-entropy` (`_json_sequences`: `token_logprobs` read from its own text
with nulls as a sentinel, `completions` read down to two lists an object) give what the reference path gives.

Two apps differ only in ``fast_json_min_bytes`` (0: every body tries the fast paths; huge: none does); every
body, valid or broken, must get the same status and the very same JSON from both, and the valid ones must
really have taken the fast path.
"""

import asyncio
import json
from typing import Any

import httpx
import pytest
from in_process import in_process_client

from service.api import create_app
from service.api.sequence_schemas import SequenceCrossEntropyRequest
from service.api.transport._json_outline import JsonOutline
from service.api.transport._json_sequences import decode_completions, decode_logprob_sequences
from service.core.sequence_forms import Sequences
from service.settings import Settings

FAST = create_app(Settings(fast_json_min_bytes=0))
REFERENCE = create_app(Settings(fast_json_min_bytes=10**12))
ROUTE = "/v1/sequence-cross-entropy"


async def _post_both(body: bytes) -> tuple[httpx.Response, httpx.Response]:
    answers = []
    for app in (FAST, REFERENCE):
        async with in_process_client(app) as client:
            answers.append(await client.post(ROUTE, content=body, headers={"content-type": "application/json"}))
    return answers[0], answers[1]


def _same(body: bytes) -> tuple[int, dict[str, Any]]:
    fast, reference = asyncio.run(_post_both(body))
    assert (fast.status_code, fast.json()) == (reference.status_code, reference.json())
    return fast.status_code, fast.json()


def _rows(text: str = "[null, -1.5, -0.25, -3]") -> str:
    return ", ".join([text, "[]", "[-0.5]", "[null, null, -2e-3, 0]"] * 50)


VALID = [
    pytest.param(f'{{"token_logprobs": [{_rows()}], "num_bytes": [{", ".join(["3"] * 200)}]}}', id="nulls"),
    pytest.param('{"unit": "bits", "token_logprobs": [[-1, -2.5], [], [-0.125]], "score_from": 1}', id="no-nulls"),
    pytest.param('{"token_logprobs": []}', id="empty"),
    pytest.param('{"token_logprobs": [[null], [null, null]], "per_document": false}', id="only-nulls"),
]


@pytest.mark.parametrize("body", VALID)
def test_valid_token_logprobs_take_the_fast_path_and_answer_the_same(body: str) -> None:
    data = body.encode()
    request = decode_logprob_sequences(SequenceCrossEntropyRequest, data, JsonOutline.of(data))
    assert request is not None
    assert isinstance(request.token_logprobs, Sequences)
    status, _ = _same(data)
    assert status == 200


#: Bodies the fast path must not vouch for (or whose values the core refuses): the same answer either way.
ODD = [
    "[-1, 8e88]",  # the sentinel sent as a number: refused as above 0, not read as null
    "[-1, 8.0e88, null]",
    '[-1, "x"]',
    "[-1, [2]]",
    "[true, -1]",
    "[-1, 1e999]",
    "[-1, NaN]",
    "[-1, 0.5]",
    "[-1, -9999]",
    "null",
    "{}",
    "[-1, nul]",
    "[-1, nullnull]",
]


@pytest.mark.parametrize("row", ODD)
def test_odd_rows_get_the_reference_answer(row: str) -> None:
    body = f'{{"token_logprobs": [[null, -1.0], {row}]}}'.encode()
    status, _ = _same(body)
    assert status in (400, 422)


def _completions(count: int = 40) -> list[dict[str, Any]]:
    return [
        {
            "tokens": ["The", " null", " é", '"'],
            "token_logprobs": [None, -1.0, -2.5, -0.25],
            "text_offset": [0, 3, 8, 10],
            "top_logprobs": [None, {" null": -1.0, " a": -0.5}, {" é": -2.5}, {'"': -0.25}],
        }
        for _ in range(count)
    ]


def test_completions_take_the_fast_path_and_answer_the_same() -> None:
    body = json.dumps({"completions": _completions(), "score_until": -1, "unit": "hartleys"}).encode()
    request = decode_completions(SequenceCrossEntropyRequest, body)
    assert request is not None
    assert request.completions[0] == {
        "token_logprobs": [None, -1.0, -2.5, -0.25],
        "tokens": ["The", " null", " é", '"'],
    }
    status, answer = _same(body)
    assert status == 200
    assert answer["settings"]["bytes_source"] == "token_text"
    assert answer["n_tokens"] == 80  # positions 1 and 2 of each: 5 + 3 bytes


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda items: items[3].update(tokens="The null é"), id="tokens-a-string"),
        pytest.param(lambda items: items[3].update(token_logprobs={"0": -1}), id="logprobs-an-object"),
        pytest.param(lambda items: items[3].pop("token_logprobs"), id="no-logprobs"),
        pytest.param(lambda items: items[3].update(token_logprobs=[None, -1.0, 2.0, -1.0]), id="positive"),
        pytest.param(lambda items: items[3].update(tokens=["a", "b"]), id="tokens-too-short"),
        pytest.param(lambda items: items.__setitem__(3, [1, 2]), id="not-an-object"),
    ],
)
def test_odd_completions_get_the_reference_answer(change: Any) -> None:
    items = _completions()
    change(items)
    status, _ = _same(json.dumps({"completions": items}).encode())
    assert status == 422


def test_a_duplicate_key_or_an_unknown_field_gives_way() -> None:
    item = '{"tokens": ["a", "b"], "token_logprobs": [null, -1.0], "token_logprobs": [null, -2.0]}'
    body = ('{"completions": [' + ", ".join([item] * 20) + "]}").encode()
    assert decode_completions(SequenceCrossEntropyRequest, body) is None
    assert _same(body)[0] == 200
    body = json.dumps({"completions": _completions(), "per_sample": True}).encode()
    assert decode_completions(SequenceCrossEntropyRequest, body) is None
    assert _same(body)[0] == 422


def test_completions_past_the_batch_limits_get_the_reference_413() -> None:
    # The completions path reads the body before any outline: the outline's limits then apply to what it read,
    # and the 413 names `completions` (its 40 objects), not the 160 token positions counted after decoding.
    body = json.dumps({"completions": _completions(), "score_until": [-1] * 40}).encode()
    answers = []
    for threshold in (0, 10**12):
        app = create_app(Settings(fast_json_min_bytes=threshold, max_cells=30))
        answers.append(asyncio.run(_post_to(app, body)))
    fast, reference = answers
    assert (fast.status_code, fast.json()) == (reference.status_code, reference.json())
    assert reference.status_code == 413
    assert reference.json()["detail"] == "completions has 40 values; the limit is 30 (XENT_MAX_CELLS)"


async def _post_to(app: Any, body: bytes) -> httpx.Response:
    async with in_process_client(app) as client:
        return await client.post(ROUTE, content=body, headers={"content-type": "application/json"})
