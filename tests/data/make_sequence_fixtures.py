"""Write the model-server responses of tests/data/ for the sequence endpoints: the same tokens in every form.

    .venv/bin/python tests/data/make_sequence_fixtures.py

Four short documents (two with multi-byte UTF-8: accented Latin and Japanese), tokenized by hand the way a
byte-level BPE splits them, each with log-probabilities a small model could give (from a seeded generator:
common continuations near 0, names and numbers lower). The request each response answers is the one
lm-evaluation-harness sends for a rolling log-likelihood: the document as the prompt, ``echo: true``,
``max_tokens: 1``, so every form ends with one generated token that is not part of the document.

- ``vllm_completions.json``: a vLLM ``/v1/completions`` answer, one choice per document, ``logprobs`` =
  ``{tokens, token_logprobs, text_offset, top_logprobs}`` with the first entry null;
- ``openai_chat.jsonl``: one OpenAI chat answer per document, whose ``logprobs.content`` holds the document's
  scored tokens (positions 1 … n − 1: what completions scores with ``score_until = -1``), with ``bytes``;
- ``tgi_generate.jsonl``: one TGI ``/generate`` answer per document with ``details.prefill`` (first logprob
  null) and ``details.tokens`` (the generated token);
- ``vllm_prompt_logprobs.jsonl``: one vLLM answer per document with ``prompt_logprobs`` (null, then
  ``{token_id: {logprob, rank, decoded_token}}``) beside ``prompt_token_ids``, the prompt only.

The documents' texts are in ``sequence_documents.json`` (for byte and word counts). A test checks that the
committed files are what this script writes.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: The documents, as a byte-level BPE tokenizer would split them (leading spaces belong to the token).
DOCUMENTS: list[list[str]] = [
    ["The", " tower", " is", " 324", " metres", " tall", ",", " about", " the", " same", " height", " as", " an",
     " 81", "-", "storey", " building", "."],
    ["Caf", "é", " culture", " in", " Z", "ür", "ich", " grew", " after", " 1900", ";", " the", " na", "ïve",
     " fa", "ç", "ade", " of", " the", " Ode", "on", " still", " stands", "."],
    ["東京", "は", "日本", "の", "首", "都", "です", "。"],
    ["Cross", "-", "ent", "ropy", " measures", " how", " surprised", " a", " model", " is", " by", " the",
     " text", " it", " reads", "."],
]  # fmt: skip
#: The token each request generated after its document (``max_tokens: 1``).
GENERATED = ["\n", " It", "\n", " It"]
#: Tokens a model would rank first where it did not predict the actual one (the ``top_logprobs`` entries).
ALTERNATIVES = [" the", ",", " of", " and", ".", " a", " in", "\n", " is", " to"]
MODEL = "meta-llama/Llama-3.2-1B"


def _vocabulary() -> dict[str, int]:
    """A token id for every token text used, in order of first use (ids as a 128k vocabulary spreads them)."""
    ids: dict[str, int] = {}
    for token in [t for document in DOCUMENTS for t in document] + GENERATED + ALTERNATIVES:
        ids.setdefault(token, 128 + (len(ids) * 7919) % 127_000)
    return ids


def _log_probabilities(rng: random.Random, tokens: list[str]) -> list[float]:
    """A plausible natural-log probability per token: short common words likely, numbers and rare pieces not."""
    values = []
    for token in tokens:
        word = token.strip()
        if word.isdigit() or not word.isascii():
            scale = 4.0
        elif len(word) <= 3:
            scale = 1.2
        else:
            scale = 2.5
        values.append(-rng.expovariate(1.0 / scale) - 1e-6)
    return values


def build() -> dict[str, str]:
    """Every fixture file's name and text."""
    rng = random.Random(20260516)
    ids = _vocabulary()
    choices, chats, tgis, prompts, texts = [], [], [], [], []
    for index, (document, generated) in enumerate(zip(DOCUMENTS, GENERATED, strict=True)):
        tokens = [*document, generated]
        logprobs: list[float | None] = [None, *_log_probabilities(rng, tokens[1:])]
        top: list[dict[str, float] | None] = [None]
        ranks = [1]
        for token, value in zip(tokens[1:], logprobs[1:], strict=True):
            assert value is not None
            if value > -0.7:  # the model's first choice
                top.append({token: value})
                ranks.append(1)
            else:
                alternative = rng.choice([a for a in ALTERNATIVES if a != token])
                # more likely than the actual token, and the two together below 1
                chance = math.exp(value)
                top.append({token: value, alternative: math.log(rng.uniform(chance, 0.98 - chance))})
                ranks.append(rng.randint(2, 40))
        offsets, at = [], 0
        for token in tokens:
            offsets.append(at)
            at += len(token)
        text = "".join(tokens)
        texts.append("".join(document))
        choices.append(
            {
                "index": index,
                "text": text,
                "logprobs": {"text_offset": offsets, "token_logprobs": logprobs, "tokens": tokens, "top_logprobs": top},
                "finish_reason": "length",
                "stop_reason": None,
                "prompt_logprobs": None,
            }
        )
        content = [
            {"token": token, "logprob": value, "bytes": list(token.encode()), "top_logprobs": []}
            for token, value in zip(tokens[1:-1], logprobs[1:-1], strict=True)
        ]
        chats.append(
            {
                "id": f"chatcmpl-{index:04d}",
                "object": "chat.completion",
                "created": 1780000000 + index,
                "model": MODEL,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "".join(document[1:])},
                        "logprobs": {"content": content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 12, "completion_tokens": len(content), "total_tokens": 12 + len(content)},
            }
        )
        prefill = [
            {"id": ids[token], "text": token, "logprob": value}
            for token, value in zip(document, logprobs[:-1], strict=True)
        ]
        tgis.append(
            {
                "generated_text": generated,
                "details": {
                    "finish_reason": "length",
                    "generated_tokens": 1,
                    "seed": None,
                    "prefill": prefill,
                    "tokens": [{"id": ids[generated], "text": generated, "logprob": logprobs[-1], "special": False}],
                    "top_tokens": None,
                    "best_of_sequences": None,
                },
            }
        )
        prompt_logprobs: list[dict[str, dict[str, object]] | None] = [None]
        for token, value, entry, rank in zip(document[1:], logprobs[1:-1], top[1:-1], ranks[1:-1], strict=True):
            assert entry is not None
            position = {str(ids[token]): {"logprob": value, "rank": rank, "decoded_token": token}}
            for other, other_value in entry.items():
                if other != token:
                    position[str(ids[other])] = {"logprob": other_value, "rank": 1, "decoded_token": other}
            prompt_logprobs.append(position)
        prompts.append(
            {
                "id": f"cmpl-prompt-{index:04d}",
                "object": "text_completion",
                "model": MODEL,
                "choices": [{"index": 0, "text": generated, "logprobs": None, "finish_reason": "length"}],
                "prompt_logprobs": prompt_logprobs,
                "prompt_token_ids": [ids[token] for token in document],
            }
        )
    total = sum(len(document) for document in DOCUMENTS)
    completions = {
        "id": "cmpl-8f1c2d3e4b5a69788796a5b4c3d2e1f0",
        "object": "text_completion",
        "created": 1780000000,
        "model": MODEL,
        "choices": choices,
        "usage": {"prompt_tokens": total, "completion_tokens": len(DOCUMENTS), "total_tokens": total + len(DOCUMENTS)},
    }

    def lines(values: list[dict[str, object]]) -> str:
        return "".join(json.dumps(value, ensure_ascii=False) + "\n" for value in values)

    return {
        "vllm_completions.json": json.dumps(completions, ensure_ascii=False, indent=1) + "\n",
        "openai_chat.jsonl": lines(chats),
        "tgi_generate.jsonl": lines(tgis),
        "vllm_prompt_logprobs.jsonl": lines(prompts),
        "sequence_documents.json": json.dumps(texts, ensure_ascii=False, indent=1) + "\n",
    }


def main() -> None:
    for name, text in build().items():
        (HERE / name).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
