"""`Client.score_sequences` / `compare_sequences` (sync and async) and `xent score --sequences FILE.jsonl`, against a
real server and in process: the committed model-server responses of every form give one answer."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from client_servers import serve_in_thread

from service.api.app import create_app
from service.cli import main
from service.client import AsyncClient, Client, ProblemError
from service.client.sequence_results import SequenceComparison, SequenceScores
from service.core.sequence_forms import read_form
from service.core.sequences import score_sequences, sequence_summary
from service.settings import Settings

DATA = Path(__file__).resolve().parent.parent / "data"
COMPLETIONS = json.loads((DATA / "vllm_completions.json").read_text(encoding="utf-8"))
DOCUMENTS = json.loads((DATA / "sequence_documents.json").read_text(encoding="utf-8"))
LOGPROBS = [choice["logprobs"] for choice in COMPLETIONS["choices"]]
NUM_BYTES = [len(text.encode()) for text in DOCUMENTS]
NUM_WORDS = [len(text.split()) for text in DOCUMENTS]


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """The real app on a real uvicorn server, for this module's tests."""
    yield from serve_in_thread(create_app(Settings()))


def _in_process(**fields: Any) -> dict[str, Any]:
    """The answer the core gives (what the service sends), ``confidence`` and ``per_document`` at their defaults."""
    form = {name: fields.pop(name) for name in ("completions", "token_logprobs", "chat") if name in fields}
    return sequence_summary(score_sequences(read_form(form), **fields))


def test_score_sequences_reads_the_answer_the_service_sends(server_url: str) -> None:
    fields = {"completions": LOGPROBS, "score_until": -1, "num_bytes": NUM_BYTES, "num_words": NUM_WORDS}
    with Client(server_url) as xent:
        scores = xent.score_sequences(**fields)
    expected = _in_process(**fields)
    assert isinstance(scores, SequenceScores)
    assert (scores.n_sequences, scores.n_documents, scores.n_tokens, scores.n_skipped) == (4, 4, 62, 8)
    assert scores.token.perplexity == expected["token"]["perplexity"]
    assert scores.token.perplexity_ci == tuple(expected["token"]["perplexity_ci"])
    assert scores.byte is not None
    assert scores.byte.bits_per_byte == expected["byte"]["bits_per_byte"]
    assert scores.word is not None
    assert scores.word.perplexity == expected["word"]["perplexity"]
    assert scores.per_document is not None
    assert scores.per_document.nll.tolist() == expected["per_document"]["nll"]
    assert scores.state == expected["state"]
    assert scores.settings == expected["settings"]
    assert scores.summary() == expected


def test_token_logprobs_as_an_array_with_nan_for_the_missing(server_url: str) -> None:
    values = np.array([[np.nan, -1.0, -2.0], [np.nan, -0.5, -1.5]])
    with Client(server_url) as xent:
        scores = xent.score_sequences(values, unit="bits", per_document=False)
    assert (scores.n_tokens, scores.n_skipped, scores.unit, scores.per_document) == (4, 2, "bits", None)
    assert scores.token.cross_entropy == pytest.approx(5.0 / 4 / np.log(2), rel=1e-12)


def test_a_refused_request_raises_the_problem(server_url: str) -> None:
    with Client(server_url) as xent, pytest.raises(ProblemError) as caught:
        xent.score_sequences([[None, -1.0, 0.5]])
    assert caught.value.status == 422
    assert caught.value.errors[0].loc == ("body", "token_logprobs", 0, 2)


@pytest.mark.anyio
async def test_the_async_client_compares_as_the_service_does(server_url: str) -> None:
    baseline = [[None, *[value - 0.25 for value in item["token_logprobs"][1:-1]]] for item in LOGPROBS]
    model = {"completions": LOGPROBS, "score_until": -1}
    async with AsyncClient(server_url) as xent:
        comparison = await xent.compare_sequences(model, {"token_logprobs": baseline}, num_bytes=NUM_BYTES)
    with Client(server_url) as xent:
        again = xent.compare_sequences(model, {"token_logprobs": baseline}, num_bytes=NUM_BYTES, unit="bits")
    assert isinstance(comparison, SequenceComparison)
    # The baseline is 0.25 nats worse on each of the same 62 tokens: the model is 0.25 nats per token better.
    per_token = comparison.difference.cross_entropy_per_token
    assert per_token is not None
    assert per_token.mean == pytest.approx(-0.25, rel=1e-12)
    assert per_token.stderr == pytest.approx(0.0, abs=1e-12)
    per_byte = comparison.difference.cross_entropy_per_byte
    assert per_byte is not None
    assert per_byte.mean == pytest.approx(-0.25 * 62 / sum(NUM_BYTES), rel=1e-12)
    assert comparison.difference.cross_entropy_per_word is None
    assert again.unit == "bits"
    assert again.difference.bits_per_byte == comparison.difference.bits_per_byte
    assert comparison.summary()["difference"]["cross_entropy_per_word"] is None


# --- xent score --sequences -----------------------------------------------------------------------------------


def _score(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["score", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


#: Each committed form of the same tokens, and the flags that score the same positions (the document's tokens
#: after the first): completions and TGI list the generated token last, chat and vLLM's prompt_logprobs do not.
FORMS = [
    ("completions.jsonl", ["--score-until", "-1"]),
    ("openai_chat.jsonl", []),
    ("tgi_generate.jsonl", ["--score-until", "-1"]),
    ("vllm_prompt_logprobs.jsonl", []),
    ("lists.jsonl", []),
]


def _files(folder: Path) -> Path:
    """The committed files, the completions response as one line, bare lists, and the word counts."""
    for name in ("openai_chat.jsonl", "tgi_generate.jsonl", "vllm_prompt_logprobs.jsonl"):
        (folder / name).write_bytes((DATA / name).read_bytes())
    (folder / "completions.jsonl").write_text(json.dumps(COMPLETIONS) + "\n", encoding="utf-8")
    lists = "".join(json.dumps(item["token_logprobs"][:-1]) + "\n" for item in LOGPROBS)
    (folder / "lists.jsonl").write_text(lists, encoding="utf-8")
    (folder / "words.csv").write_text("".join(f"{n}\n" for n in NUM_WORDS), encoding="utf-8")
    return folder


@pytest.mark.parametrize(("name", "flags"), FORMS)
def test_every_form_scores_the_same_locally_and_remotely(
    name: str, flags: list[str], tmp_path: Path, server_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _files(tmp_path)
    argv = ["--sequences", str(folder / name), *flags, "--num-words", str(folder / "words.csv"), "--json"]
    code, out, err = _score(capsys, *argv)
    assert code == 0, err
    local = json.loads(out)
    code, out, err = _score(capsys, *argv, "--url", server_url)
    assert code == 0, err
    assert json.loads(out) == local
    # The same tokens in another form: the same figures, to the rounding of another order of summation.
    expected = _in_process(completions=LOGPROBS, score_until=-1, num_words=NUM_WORDS)
    for block in ("token", "word", "document"):
        for key, value in expected[block].items():
            assert local[block][key] == pytest.approx(value, rel=1e-12), (block, key)
    assert (local["n_sequences"], local["n_tokens"], local["per_document"]) == (4, 62, None)


def test_the_table_names_every_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _files(tmp_path)
    code, out, err = _score(capsys, "--sequences", str(folder / "completions.jsonl"), "--score-until", "-1")
    assert code == 0, err
    assert out.splitlines() == [
        "                 cross-entropy    perplexity  95% CI of perplexity    (nats)",
        "per token               2.8158       16.7066  [6.625, 42.13]",
        "per byte              0.701123       2.01602  [1.615, 2.517]",
        "per word                  null   (no word counts: give --num-words)",
        "bits per byte          1.01151",
        "document mean          3.28012                [1.759, 4.801]          "
        "(mean over documents of their per-token cross-entropy)",
        "sequences                    4   (4 documents, 62 tokens scored, 8 skipped)",
        "warnings        none",
    ]


def test_a_file_of_mixed_forms_is_refused_naming_the_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text((DATA / "openai_chat.jsonl").read_text() + "\n" + (DATA / "tgi_generate.jsonl").read_text())
    code, out, err = _score(capsys, "--sequences", str(mixed))
    assert (code, out) == (2, "")
    assert err == (
        f"xent score: {mixed}: line 6 is a TGI response but line 1 is an OpenAI chat response; "
        "a file holds one form (one request takes one input form)\n"
    )


def test_bad_lines_and_bad_values_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    no_logprobs = tmp_path / "plain.jsonl"
    no_logprobs.write_text(json.dumps({"choices": [{"text": "hi", "logprobs": None}]}) + "\n")
    code, _, err = _score(capsys, "--sequences", str(no_logprobs))
    assert code == 2
    assert err == (
        f"xent score: {no_logprobs}: line 1: choice 0 has no logprobs (ask the server for them: completions with "
        "echo: true and logprobs: 1, chat with logprobs: true)\n"
    )
    positive = tmp_path / "positive.jsonl"
    positive.write_text("[null, -1.0]\n[-0.5, 0.25]\n")
    code, _, err = _score(capsys, "--sequences", str(positive))
    assert code == 2
    assert err.startswith("xent score: token_logprobs sequence 1, position 1: log-probability 0.25 is above 0")
    code, _, err = _score(capsys, "--sequences", str(positive), "--labels", "y.csv")
    assert (code, err) == (2, "xent score: --sequences scores model-server responses: drop --labels\n")
    code, _, err = _score(capsys)
    assert (code, err) == (2, "xent score: --predictions and --labels are required (or --sequences FILE.jsonl)\n")
