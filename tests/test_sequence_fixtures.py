"""The committed model-server responses of tests/data/ are what tests/data/make_sequence_fixtures.py writes, and
every form holds the same tokens and log-probabilities."""

import importlib.util
import json
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"


def _fixtures_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("make_sequence_fixtures", DATA / "make_sequence_fixtures.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _lines(name: str) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines()]


def test_the_committed_files_are_what_the_script_writes() -> None:
    for name, text in _fixtures_module().build().items():
        assert (DATA / name).read_text(encoding="utf-8") == text, name


def test_every_form_holds_the_same_tokens_and_log_probabilities() -> None:
    completions = json.loads((DATA / "vllm_completions.json").read_text(encoding="utf-8"))
    documents = json.loads((DATA / "sequence_documents.json").read_text(encoding="utf-8"))
    chats, tgis, prompts = (
        _lines("openai_chat.jsonl"),
        _lines("tgi_generate.jsonl"),
        _lines("vllm_prompt_logprobs.jsonl"),
    )
    for choice, document, chat, tgi, prompt in zip(
        completions["choices"], documents, chats, tgis, prompts, strict=True
    ):
        logprobs = choice["logprobs"]
        tokens, values = logprobs["tokens"], logprobs["token_logprobs"]
        # echo: true, max_tokens: 1 — the document, then one generated token; the first position has no log-probability
        assert "".join(tokens[:-1]) == document
        assert choice["text"] == document + tokens[-1]
        assert [
            choice["text"][offset:].startswith(token)
            for offset, token in zip(logprobs["text_offset"], tokens, strict=True)
        ] == [True] * len(tokens)
        assert values[0] is None
        assert logprobs["top_logprobs"][0] is None
        assert all(value < 0 for value in values[1:])
        content = chat["choices"][0]["logprobs"]["content"]
        assert [entry["token"] for entry in content] == tokens[1:-1]
        assert [entry["logprob"] for entry in content] == values[1:-1]
        assert [bytes(entry["bytes"]).decode() for entry in content] == tokens[1:-1]
        details = tgi["details"]
        assert [entry["text"] for entry in details["prefill"] + details["tokens"]] == tokens
        assert [entry["logprob"] for entry in details["prefill"] + details["tokens"]] == values
        ids, positions = prompt["prompt_token_ids"], prompt["prompt_logprobs"]
        assert positions[0] is None
        assert len(ids) == len(positions) == len(tokens) - 1
        picked = [position[str(token_id)] for position, token_id in zip(positions[1:], ids[1:], strict=True)]
        assert [entry["decoded_token"] for entry in picked] == tokens[1:-1]
        assert [entry["logprob"] for entry in picked] == values[1:-1]
        assert [entry["id"] for entry in details["prefill"]] == ids


def test_two_documents_hold_multi_byte_utf8() -> None:
    documents = json.loads((DATA / "sequence_documents.json").read_text(encoding="utf-8"))
    assert [len(text.encode()) - len(text) for text in documents] == [0, 4, 22, 0]
