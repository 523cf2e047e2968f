"""``POST /v1/sequence-cross-entropy`` over HTTP (issue 16 §1): JSON and NPZ, every input form, limits and docs.

The hand-computed answer is the core's test's (tests/core/test_sequences.py): two documents of NLL 3 over 2 and
3 tokens, 11 and 14 bytes. The bad inputs are rows of the catalogue (tests/hostile/test_bad_inputs_catalogue.py).
"""

import gzip
import io
import json
import math
from concurrent.futures import Executor, Future
from typing import Any

import httpx
import numpy as np
import pytest
from in_process import started_client
from npz_bodies import npz
from whole_answers import SEQUENCE_ANSWER, SEQUENCE_BODY, close

from service.api import sequence_routes, sequence_schemas
from service.api.app import create_app
from service.api.examples import SEQUENCE_EXAMPLES
from service.api.sequence_schemas import SequenceCrossEntropyRequest
from service.api.transport.body import MAPPED_MIN_BYTES
from service.api.transport.helper_threads import HELPER_THREADS
from service.api.transport.limits import json_containers
from service.core import sequences as core_sequences
from service.core.contract import SEQUENCE_OPTIONS
from service.core.sequence_forms import Sequences, flat_sequences
from service.core.sequences import score_sequences, sequence_summary
from service.settings import Settings

pytestmark = pytest.mark.anyio

PATH = "/v1/sequence-cross-entropy"
NPZ = "application/x-npz"
LN2 = math.log(2.0)
TWO_DOCUMENTS = SEQUENCE_EXAMPLES["token_logprobs"]["value"]
TWO_DOCUMENTS_ANSWER = SEQUENCE_ANSWER


async def test_the_whole_json_answer_by_hand(client: httpx.AsyncClient) -> None:
    assert TWO_DOCUMENTS == SEQUENCE_BODY  # the documented example is the hand-computed one
    response = await client.post(PATH, json=TWO_DOCUMENTS)
    assert response.status_code == 200, response.text
    assert response.json() == TWO_DOCUMENTS_ANSWER


@pytest.mark.parametrize("form", [name for name in SEQUENCE_EXAMPLES if name != "token_logprobs"])
async def test_each_form_example_scores_the_same_two_tokens(client: httpx.AsyncClient, form: str) -> None:
    # Every example holds the tokens " cat" (log p = −1) and " sat" (−2), 4 bytes each: 1.5 nats a token,
    # 3/8 a byte; one document, so no standard error.
    response = await client.post(PATH, json=SEQUENCE_EXAMPLES[form]["value"])
    assert response.status_code == 200, response.text
    got = response.json()
    assert got["token"] == {
        "cross_entropy": 1.5,
        "perplexity": close(math.exp(1.5)),
        "stderr": None,
        "ci": None,
        "perplexity_ci": None,
    }
    assert got["byte"] == {
        "cross_entropy": 0.375,
        "bits_per_byte": close(0.375 / LN2),
        "perplexity": close(math.exp(0.375)),
        "stderr": None,
        "ci": None,
        "perplexity_ci": None,
    }
    assert got["settings"]["input_form"] == form
    assert got["settings"]["bytes_source"] == ("chat_bytes" if form == "chat" else "token_text")
    assert [w["code"] for w in got["warnings"]] == ["STDERR_UNDEFINED"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
async def test_npz_flat_arrays_answer_as_the_json_lists(client: httpx.AsyncClient, dtype: type) -> None:
    # The same two documents, their context positions left out of the flat array (an NPZ has no null).
    body = npz(
        token_logprobs=np.array([-1.0, -2.0, -0.5, -1.5, -1.0], dtype=dtype),
        sequence_lengths=np.array([2, 3]),
        num_bytes=np.array([11, 14]),
        document_ids=np.array(["a", "b"]),
    )
    response = await client.post(PATH + "?unit=bits&confidence=0.9", content=body, headers={"content-type": NPZ})
    assert response.status_code == 200, response.text
    json_body = {
        "token_logprobs": [[-1.0, -2.0], [-0.5, -1.5, -1.0]],
        "num_bytes": [11, 14],
        "document_ids": ["a", "b"],
    }
    expected = await client.post(PATH, json={**json_body, "unit": "bits", "confidence": 0.9})
    assert response.json() == expected.json()
    assert response.json()["per_document"]["document_id"] == ["a", "b"]


def _large_flat(dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """300 sequences of 1,000 log-probabilities: an archive past MAPPED_MIN_BYTES, read into its own memory map, its
    log-probabilities' extremes taken beside their CRC-32 (``NpzArchive.read``)."""
    values = -np.random.default_rng(16).exponential(2.0, 300_000).astype(dtype)
    return values, np.full(300, 1_000)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
async def test_a_large_npz_is_scored_with_the_extremes_taken_beside_its_checksum(
    client: httpx.AsyncClient, dtype: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    values, lengths = _large_flat(dtype)
    body = npz(token_logprobs=values, sequence_lengths=lengths)
    assert len(body) >= MAPPED_MIN_BYTES
    given: list[object] = []

    def spy(logprobs: object, sequence_lengths: object, *, extremes: object = None) -> Sequences:
        given.append(extremes)
        return flat_sequences(logprobs, sequence_lengths, extremes=extremes)

    monkeypatch.setattr(sequence_schemas, "flat_sequences", spy)
    # Half of the per-sequence sums on a helper thread (past a threshold lowered for 300,000 positions).
    shares: list[int] = []

    class Helper(Executor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
            shares.append(len(args[0]))
            return HELPER_THREADS.submit(fn, *args, **kwargs)

    monkeypatch.setattr(sequence_routes, "HELPER_THREADS", Helper())
    monkeypatch.setattr(core_sequences, "SPLIT_MIN_POSITIONS", 100_000)
    response = await client.post(PATH, content=body, headers={"content-type": NPZ, "accept": NPZ})
    assert response.status_code == 200, response.text[:300]
    assert given == [(float(values.min()), float(values.max()))]
    assert shares == [150_000]  # sequences 150 to 299
    with np.load(io.BytesIO(response.content)) as archive:
        got = json.loads(str(archive["summary"]))
    expected = sequence_summary(score_sequences(flat_sequences(values, lengths)))  # the core finding them itself
    assert got == json.loads(json.dumps(expected))


#: A bad value at sequence 123, position 45 of a large archive, and the problem that names it there.
LARGE_REFUSALS = {
    "NaN": (math.nan, "NaN is not allowed"),
    "Infinity": (math.inf, "Infinity is not allowed"),
    "-Infinity": (-math.inf, "-Infinity is not allowed"),
    "above 0": (0.5, "log-probability 0.5 is above 0"),
    "placeholder": (-9999.0, "-9999 is OpenAI's placeholder"),
    "below the floor": (-2e4, "is at or below -10000"),
}


@pytest.mark.parametrize("name", LARGE_REFUSALS)
async def test_a_large_npz_refuses_a_bad_value_naming_its_sequence_and_position(
    client: httpx.AsyncClient, name: str
) -> None:
    values, lengths = _large_flat(np.float64)
    value, message = LARGE_REFUSALS[name]
    values[123 * 1_000 + 45] = value
    response = await client.post(
        PATH, content=npz(token_logprobs=values, sequence_lengths=lengths), headers={"content-type": NPZ}
    )
    assert response.status_code == 422, response.text[:300]
    (error,) = response.json()["errors"]
    assert error["loc"] == ["body", "token_logprobs", 123, 45]
    assert message in error["msg"]


async def test_a_large_npz_scores_the_placeholder_left_out_of_the_window(client: httpx.AsyncClient) -> None:
    values, lengths = _large_flat(np.float64)
    values[123 * 1_000] = -9999.0  # a context position: not scored
    body = npz(token_logprobs=values, sequence_lengths=lengths)
    response = await client.post(PATH + "?score_from=1", content=body, headers={"content-type": NPZ})
    assert response.status_code == 200, response.text[:300]
    assert response.json()["n_skipped"] == 300


async def test_npz_per_sequence_members_and_query_options(client: httpx.AsyncClient) -> None:
    body = npz(
        token_logprobs=np.array([-9.0, -1.0, -2.0, -7.0, -0.5]),
        sequence_lengths=np.array([3, 2]),
        score_from=np.array([1, 0]),
        score_until=np.array([3, -1]),
        document_ids=np.array([4, 4]),
        num_words=np.array([3, 0]),
    )
    response = await client.post(PATH + "?per_document=false", content=body, headers={"content-type": NPZ})
    assert response.status_code == 200, response.text
    got = response.json()
    # Scored: −1, −2 of the first and −7 of the second (the last left out): one document, NLL 10 over 3 words.
    assert (got["n_tokens"], got["n_skipped"], got["n_documents"], got["per_document"]) == (3, 2, 1, None)
    assert got["word"]["cross_entropy"] == close(10 / 3)


async def test_an_npz_member_of_one_integer_applies_to_every_sequence(client: httpx.AsyncClient) -> None:
    body = npz(
        token_logprobs=np.array([-9.0, -1.0, -8.0, -2.0]), sequence_lengths=np.array([2, 2]), score_from=np.array(1)
    )
    response = await client.post(PATH, content=body, headers={"content-type": NPZ})
    assert response.status_code == 200, response.text
    assert response.json()["per_document"]["nll"] == [1.0, 2.0]


async def test_one_integer_score_from_and_score_until_fit_in_the_npz_query(client: httpx.AsyncClient) -> None:
    # lm-evaluation-harness' rolling requests: score_until=-1 leaves out each sequence's generated last token.
    body = npz(token_logprobs=np.array([-9.0, -1.0, -4.0, -8.0, -2.0, -4.0]), sequence_lengths=np.array([3, 3]))
    response = await client.post(PATH + "?score_from=1&score_until=-1", content=body, headers={"content-type": NPZ})
    assert response.status_code == 200, response.text
    assert response.json()["per_document"]["nll"] == [1.0, 2.0]


async def test_an_npz_answer_carries_the_summary(client: httpx.AsyncClient) -> None:
    response = await client.post(PATH, json=TWO_DOCUMENTS, headers={"accept": NPZ})
    assert response.status_code == 200, response.text
    with np.load(io.BytesIO(response.content)) as archive:
        assert list(archive) == ["summary"]
        assert json.loads(str(archive["summary"])) == TWO_DOCUMENTS_ANSWER


async def test_a_gzip_body_is_read_like_a_plain_one(client: httpx.AsyncClient) -> None:
    body = gzip.compress(json.dumps(TWO_DOCUMENTS).encode())
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    response = await client.post(PATH, content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == TWO_DOCUMENTS_ANSWER


async def test_token_positions_count_as_cells_against_the_limit() -> None:
    async with started_client(create_app(Settings(max_cells=6))) as client:
        fits = await client.post(PATH, json={"token_logprobs": [[-1.0] * 3, [-1.0] * 3]})
        assert fits.status_code == 200, fits.text
        response = await client.post(PATH, json={"completions": [{"token_logprobs": [None] + [-1.0] * 6}]})
    assert response.status_code == 413, response.text
    assert response.json()["detail"] == "the batch has 7 token positions; the limit is 6 (XENT_MAX_CELLS)"


def test_json_containers_counts_objects_and_arrays() -> None:
    assert json_containers(b'{"a":[{},[1,2],{"b":[]}]}') == 6
    assert json_containers(b"") == 0


async def test_nested_objects_are_charged_before_pydantic_builds_them() -> None:
    # 40,000 empty objects: 120 kB of JSON, charged 12 × 120 kB by its bytes, but a dict each once parsed;
    # with a budget of 4 MB, the charge by containers (40,001 × 256 bytes) refuses it before it is parsed.
    objects = b"[" + b",".join([b"{}"] * 40_000) + b"]"
    body = b'{"completions":' + objects + b"}"
    async with started_client(create_app(Settings(memory_budget_bytes=4_000_000))) as client:
        response = await client.post(PATH, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413, response.text
    assert "more than this worker's whole budget of 4,000,000" in response.json()["detail"]


async def test_the_openapi_document_has_an_example_per_input_form(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    operation = document["paths"][PATH]["post"]
    examples = operation["requestBody"]["content"]["application/json"]["examples"]
    assert list(examples) == ["token_logprobs", "completions", "chat", "prompt_logprobs", "tgi_details"]
    answers = operation["responses"]["200"]["content"]["application/json"]["examples"]
    assert answers["token_logprobs"]["value"]["token"]["stderr"] == pytest.approx(0.24)
    schema = document["components"]["schemas"]["SequenceCrossEntropyRequest"]
    assert {"token_logprobs", "completions", "chat", "prompt_logprobs", "prompt_token_ids", "tgi_details"} <= set(
        schema["properties"]
    )


def test_every_option_field_carries_its_contract_definition() -> None:
    fields = SequenceCrossEntropyRequest.model_fields
    data = ["token_logprobs", "completions", "chat", "prompt_logprobs", "prompt_token_ids", "tgi_details"]
    assert list(fields) == [*data, "sequence_lengths", *SEQUENCE_OPTIONS]
    for name, option in SEQUENCE_OPTIONS.items():
        assert (fields[name].default, fields[name].description) == (option.default, option.description), name
