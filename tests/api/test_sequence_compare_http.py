"""`POST /v1/sequence-cross-entropy/compare` (issue 16 §2): two language models on the same texts, over JSON and NPZ.

The difference per unit is d = (ΣS_model − ΣS_baseline)/ΣT over documents with the ratio standard error of
D_d = S_model,d − S_baseline,d: checked by hand on two documents, against statsmodels' HC1 weighted mean (the
same estimator: WLS of D_d/T_d on a constant with weights T_d), and on the committed vLLM fixture.
"""

import io
import json
import math
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import statsmodels.api as sm
from whole_answers import Z95

from service.api import sequence_compare_schemas
from service.api.sequence_compare_schemas import SequenceCompareResponse
from service.core.sequence_forms import Sequences, flat_sequences

pytestmark = pytest.mark.anyio

ROUTE = "/v1/sequence-cross-entropy/compare"
DATA = Path(__file__).resolve().parent.parent / "data"
LN2 = math.log(2.0)


async def _compare(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(ROUTE, json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    SequenceCompareResponse.model_validate(answer)  # the answer is what the OpenAPI document says
    return answer


def _entry(mean: float, stderr: float) -> dict[str, Any]:
    """A difference entry at 95 %: mean, SE, mean ± z·SE, z and the two-sided p-value."""
    z = mean / stderr
    return {
        "mean": mean,
        "stderr": stderr,
        "ci": [mean - Z95 * stderr, mean + Z95 * stderr],
        "z": z,
        "p_value": math.erfc(abs(z) / math.sqrt(2.0)),
    }


def _close(got: Any, expected: Any) -> None:
    """Numbers to 1e-12 (relative), everything else exactly, at any depth."""
    if isinstance(expected, dict):
        assert isinstance(got, dict)
        assert got.keys() == expected.keys()
        for key in expected:
            _close(got[key], expected[key])
    elif isinstance(expected, list):
        assert isinstance(got, list)
        assert len(got) == len(expected)
        for ours, theirs in zip(got, expected, strict=True):
            _close(ours, theirs)
    elif isinstance(expected, float):
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)
    else:
        assert got == expected


#: Two texts, the same tokens on both sides; the model's last position is a generated token it leaves out.
#: NLL per document: model 3.0 and 2.0, baseline 4.0 and 2.0 → D = [−1, 0]; 11 and 12 bytes, 2 tokens each.
TWO_DOCUMENTS = {
    "model": {"token_logprobs": [[None, -1.0, -2.0, -0.1], [None, -0.5, -1.5, -0.2]], "score_until": -1},
    "baseline": {"token_logprobs": [[None, -1.5, -2.5], [None, -1.0, -1.0]]},
    "num_bytes": [11, 12],
}


async def test_two_documents_by_hand(client: httpx.AsyncClient) -> None:
    answer = await _compare(client, TWO_DOCUMENTS)
    # Per byte: d = (5 − 6)/23; residuals D_d − d·T_d = −1 + 11/23 = −12/23 and 0 + 12/23; SE² = 2·(288/529)/23².
    per_byte, se_byte = -1 / 23, math.sqrt(2 * 288 / 529) / 23
    # Per token: d = −1/4; residuals −1 + 1/2 and 0 + 1/2; SE² = 2·(1/2)/4².
    per_token, se_token = -0.25, 0.25
    _close(
        answer["difference"],
        {
            "bits_per_byte": _entry(per_byte / LN2, se_byte / LN2),
            "cross_entropy_per_byte": _entry(per_byte, se_byte),
            "cross_entropy_per_word": None,
            "cross_entropy_per_token": _entry(per_token, se_token),
        },
    )
    assert [answer[key] for key in ("n_sequences", "n_documents", "unit", "warnings")] == [2, 2, "nats", []]
    assert answer["settings"] == {
        "model_input_form": "token_logprobs",
        "baseline_input_form": "token_logprobs",
        "unit": "nats",
        "confidence": 0.95,
    }
    model, baseline = answer["model"], answer["baseline"]
    assert (model["n_tokens"], model["n_skipped"], baseline["n_tokens"], baseline["n_skipped"]) == (4, 4, 4, 2)
    assert (model["token"]["cross_entropy"], baseline["token"]["cross_entropy"]) == (1.25, 1.5)
    assert model["word"] is None
    assert "per_document" not in model
    assert model["byte"]["cross_entropy"] - baseline["byte"]["cross_entropy"] == pytest.approx(per_byte, rel=1e-12)


async def test_negative_means_the_model_is_better_and_swapping_the_sides_negates_it(client: httpx.AsyncClient) -> None:
    forward = (await _compare(client, TWO_DOCUMENTS))["difference"]
    swapped = {**TWO_DOCUMENTS, "model": TWO_DOCUMENTS["baseline"], "baseline": TWO_DOCUMENTS["model"]}
    backward = (await _compare(client, swapped))["difference"]
    for name in ("bits_per_byte", "cross_entropy_per_byte", "cross_entropy_per_token"):
        assert forward[name]["mean"] < 0
        assert backward[name]["mean"] == pytest.approx(-forward[name]["mean"], rel=1e-12)
        assert backward[name]["stderr"] == pytest.approx(forward[name]["stderr"], rel=1e-12)
        assert backward[name]["p_value"] == pytest.approx(forward[name]["p_value"], rel=1e-12)


async def test_the_ratio_standard_error_is_statsmodels_hc1_weighted_mean(client: httpx.AsyncClient) -> None:
    rng = np.random.default_rng(16)
    lengths = rng.integers(5, 40, 30)
    model = [(-rng.exponential(2.0, n)).tolist() for n in lengths]
    baseline = [(np.array(row) - rng.normal(0.2, 0.5, len(row))).clip(max=0.0).tolist() for row in model]
    words = rng.integers(1, 12, 30)
    body = {"model": {"token_logprobs": model}, "baseline": {"token_logprobs": baseline}, "num_words": words.tolist()}
    answer = await _compare(client, {**body, "unit": "bits", "confidence": 0.9})
    differences = -np.array([sum(row) for row in model]) + np.array([sum(row) for row in baseline])
    for units, name in ((words, "cross_entropy_per_word"), (lengths, "cross_entropy_per_token")):
        fit = sm.WLS(differences / units, np.ones(30), weights=units).fit(cov_type="HC1")
        entry = answer["difference"][name]
        assert entry["mean"] == pytest.approx(fit.params[0] / LN2, rel=1e-12)
        assert entry["stderr"] == pytest.approx(fit.bse[0] / LN2, rel=1e-10)
        assert entry["z"] == pytest.approx(fit.params[0] / fit.bse[0], rel=1e-10)
        low, high = fit.conf_int(alpha=0.1)[0]
        assert entry["ci"] == pytest.approx([low / LN2, high / LN2], rel=1e-10)
    assert answer["difference"]["bits_per_byte"] is None  # token_logprobs carry no bytes, and none were given


async def test_two_tokenizers_compare_per_byte_and_word_but_not_per_token(client: httpx.AsyncClient) -> None:
    completions = json.loads((DATA / "vllm_completions.json").read_text(encoding="utf-8"))
    documents = json.loads((DATA / "sequence_documents.json").read_text(encoding="utf-8"))
    model = [choice["logprobs"] for choice in completions["choices"]]
    # The baseline's tokenizer splits each text into one more token, its log-probabilities a little lower.
    baseline = [[None, *[value - 0.25 for value in item["token_logprobs"][1:-1]], -0.5] for item in model]
    num_bytes = [len(text.encode()) for text in documents]
    num_words = [len(text.split()) for text in documents]
    body = {
        "model": {"completions": model, "score_until": -1},
        "baseline": {"token_logprobs": baseline},
        "num_bytes": num_bytes,
        "num_words": num_words,
    }
    answer = await _compare(client, body)
    model_nll = np.array([-sum(item["token_logprobs"][1:-1]) for item in model])
    baseline_nll = np.array([-sum(row[1:]) for row in baseline])
    d = model_nll - baseline_nll
    for units, name in (
        (np.array(num_bytes), "cross_entropy_per_byte"),
        (np.array(num_words), "cross_entropy_per_word"),
    ):
        mean = d.sum() / units.sum()
        stderr = math.sqrt(4 / 3 * ((d - mean * units) ** 2).sum()) / units.sum()
        _close(answer["difference"][name], _entry(mean, stderr))
    assert answer["difference"]["bits_per_byte"]["mean"] == pytest.approx(d.sum() / sum(num_bytes) / LN2, rel=1e-12)
    assert answer["difference"]["cross_entropy_per_token"] is None
    assert answer["warnings"] == [
        {
            "code": "UNITS_DIFFER",
            "message": "the per-token difference is null: the two sides count different scored tokens "
            "(document 0: 17 vs 18); compare per byte or per word",
            "count": 0,
            "rows": [],
            "source": "difference",
        }
    ]
    assert answer["settings"]["model_input_form"] == "completions"


async def test_bytes_from_both_sides_token_texts_count_when_they_agree(client: httpx.AsyncClient) -> None:
    completions = json.loads((DATA / "vllm_completions.json").read_text(encoding="utf-8"))
    chats = [json.loads(line) for line in (DATA / "openai_chat.jsonl").read_text(encoding="utf-8").splitlines()]
    body = {
        "model": {"completions": [choice["logprobs"] for choice in completions["choices"]], "score_until": -1},
        "baseline": {"chat": [chat["choices"][0]["logprobs"] for chat in chats]},
    }
    answer = await _compare(client, body)
    # The same tokens and log-probabilities: every difference is 0, to the rounding of two orders of summation.
    for name in ("bits_per_byte", "cross_entropy_per_byte", "cross_entropy_per_token"):
        entry = answer["difference"][name]
        assert abs(entry["mean"]) < 1e-15
        assert entry["stderr"] < 1e-15
    assert answer["difference"]["cross_entropy_per_word"] is None
    assert (answer["model"]["settings"]["bytes_source"], answer["baseline"]["settings"]["bytes_source"]) == (
        "token_text",
        "chat_bytes",
    )


async def test_nothing_comparable_is_a_422_that_says_why(client: httpx.AsyncClient) -> None:
    body = {"model": {"token_logprobs": [[-1.0, -2.0], [-1.0]]}, "baseline": {"token_logprobs": [[-1.0], [-1.0]]}}
    response = await client.post(ROUTE, json=body)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["detail"] == (
        "body: no difference can be computed: per byte: no bytes are known; per word: no words are known; "
        "per token: the two sides count different scored tokens (document 0: 2 vs 1); compare per byte or per word"
    )
    assert problem["errors"][0]["loc"] == ["body", "body"]


async def test_sides_with_different_numbers_of_sequences_are_refused(client: httpx.AsyncClient) -> None:
    body = {
        "model": {"token_logprobs": [[-1.0], [-1.0]]},
        "baseline": {"token_logprobs": [[-1.0]]},
        "num_bytes": [1, 1],
    }
    response = await client.post(ROUTE, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == "baseline: has 1 sequence but model has 2; sequence i of each is the same text"


async def test_an_error_in_a_side_names_the_side_sequence_and_position(client: httpx.AsyncClient) -> None:
    model = {
        "completions": [
            {"tokens": ["a", "b"], "token_logprobs": [None, -1.0]},
            {"tokens": ["c"], "token_logprobs": [None]},
        ]
    }
    baseline = {"token_logprobs": [[None, -1.0], [None, 0.5]], "score_from": 1}
    response = await client.post(ROUTE, json={"model": model, "baseline": baseline, "num_bytes": [2, 1]})
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["detail"].startswith(
        "baseline.token_logprobs sequence 1, position 1: log-probability 0.5 is above 0"
    )
    assert problem["errors"][0]["loc"] == ["body", "baseline.token_logprobs", 1, 1]
    baseline = {"token_logprobs": [[None, -1.0], [None]], "score_from": [1, -1]}
    response = await client.post(ROUTE, json={"model": model, "baseline": baseline, "num_bytes": [2, 1]})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"][:3] == ["body", "baseline.score_from", 1]


async def test_npz_with_prefixed_members_gives_the_json_answer(client: httpx.AsyncClient) -> None:
    json_answer = await _compare(client, {**TWO_DOCUMENTS, "unit": "bits"})
    buffer = io.BytesIO()
    np.savez(
        buffer,
        model_token_logprobs=np.array([-1.0, -2.0, -0.1, -0.5, -1.5, -0.2]),
        model_sequence_lengths=np.array([3, 3]),
        model_score_until=np.array(-1),
        baseline_token_logprobs=np.array([-1.5, -2.5, -1.0, -1.0]),
        baseline_sequence_lengths=np.array([2, 2]),
        num_bytes=np.array([11, 12]),
    )
    response = await client.post(
        ROUTE + "?unit=bits",
        content=buffer.getvalue(),
        headers={"content-type": "application/x-npz", "accept": "application/x-npz"},
    )
    assert response.status_code == 200, response.text
    with np.load(io.BytesIO(response.content)) as archive:
        npz_answer = json.loads(str(archive["summary"]))
    # The NPZ sides leave out the null first positions, so they skip fewer; every figure is the same.
    assert npz_answer["difference"] == json_answer["difference"]
    assert npz_answer["model"]["token"] == json_answer["model"]["token"]
    assert npz_answer["baseline"]["byte"] == json_answer["baseline"]["byte"]


def _npz_sides(baseline: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(
        buffer,
        model_token_logprobs=np.array([-1.0, -2.0, -0.1, -0.5]),
        model_sequence_lengths=np.array([2, 2]),
        baseline_token_logprobs=baseline,
        baseline_sequence_lengths=np.array([2, 2]),
    )
    return buffer.getvalue()


async def test_npz_sides_are_scored_with_the_extremes_taken_beside_their_checksums(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    given: list[object] = []

    def spy(logprobs: object, sequence_lengths: object, *, extremes: object = None) -> Sequences:
        given.append(extremes)
        return flat_sequences(logprobs, sequence_lengths, extremes=extremes)

    monkeypatch.setattr(sequence_compare_schemas, "flat_sequences", spy)
    body = _npz_sides(np.array([-1.5, -2.5, -1.0, -0.25]))
    response = await client.post(ROUTE, content=body, headers={"content-type": "application/x-npz"})
    assert response.status_code == 200, response.text
    assert given == [(-2.0, -0.1), (-2.5, -0.25)]  # the model's, then the baseline's


@pytest.mark.parametrize(("value", "message"), [(0.5, "is above 0"), (math.nan, "NaN is not allowed")])
async def test_an_npz_side_refuses_a_bad_value_at_its_sequence_and_position(
    client: httpx.AsyncClient, value: float, message: str
) -> None:
    body = _npz_sides(np.array([-1.5, -2.5, value, -0.25]))
    response = await client.post(ROUTE, content=body, headers={"content-type": "application/x-npz"})
    assert response.status_code == 422, response.text
    (error,) = response.json()["errors"]
    assert error["loc"][-2:] == [1, 0]
    assert "baseline" in error["loc"][1]
    assert message in error["msg"]


async def test_windows_of_a_document_compare_as_the_whole_document(client: httpx.AsyncClient) -> None:
    model = [[-1.0, -2.0, -0.5, -0.25], [-0.5, -1.5, -3.0], [-0.1, -0.2, -0.3, -0.4, -0.5]]
    baseline = [[-1.5, -2.5, -0.5, -0.5], [-1.0, -1.0, -2.0], [-0.3, -0.2, -0.6, -0.4, -0.9]]
    whole = {"model": {"token_logprobs": model}, "baseline": {"token_logprobs": baseline}, "num_bytes": [20, 15, 30]}
    # Each document in two windows, its bytes on the first; the ids interleave.
    windows = {
        "model": {"token_logprobs": [row[:2] for row in model] + [row[2:] for row in model]},
        "baseline": {"token_logprobs": [row[:2] for row in baseline] + [row[2:] for row in baseline]},
        "num_bytes": [20, 15, 30, 0, 0, 0],
        "document_ids": ["a", "b", "c", "a", "b", "c"],
    }
    one, split = await _compare(client, whole), await _compare(client, windows)
    _close(split["difference"], one["difference"])
    assert (split["n_sequences"], split["n_documents"], one["n_documents"]) == (6, 3, 3)
