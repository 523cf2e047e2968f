"""``xent score --sequences FILE.jsonl``: model-server responses, one per line, as the request of the sequence endpoint.

Each line is one JSON value, read as the form it is (the field of ``POST /v1/sequence-cross-entropy`` it fills):

- an OpenAI / vLLM completions answer (``choices[].logprobs`` with ``token_logprobs``): ``completions``, one
  sequence per choice (a bare ``logprobs`` object is read the same way);
- an OpenAI chat answer (``choices[].logprobs.content``): ``chat``, one sequence per choice (or a bare
  ``{"content": [...]}``);
- a TGI ``/generate`` answer (``details`` with ``prefill`` / ``tokens``): ``tgi_details``, one sequence;
- a vLLM answer with ``prompt_logprobs`` and ``prompt_token_ids`` (at the top, or on each choice):
  ``prompt_logprobs``, one sequence each;
- a bare list of log-probabilities (numbers or null): ``token_logprobs``, one sequence.

One file holds one form: the endpoint takes one input form per request, and the forms disagree on what a
position is (completions and TGI list the first token without a log-probability, chat does not), so the
same ``score_from`` would mean different tokens in different lines. A line of another form than the first
is refused with both line numbers (``UnreadableFile``); convert such lines to one form first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from service.cli.files import UnreadableFile

#: What each form is called in the messages.
FORM_NAMES = {
    "completions": "an OpenAI/vLLM completions response",
    "chat": "an OpenAI chat response",
    "tgi_details": "a TGI response",
    "prompt_logprobs": "a vLLM prompt_logprobs response",
    "token_logprobs": "a list of log-probabilities",
}


@dataclass
class Sequences:
    """The request fields read from a file: the input form, its S sequences, and (vLLM) the prompts' token ids."""

    form: str
    values: list[Any] = field(default_factory=list)
    prompt_token_ids: list[Any] = field(default_factory=list)

    def request(self) -> dict[str, Any]:
        """The input of the request body: ``{form: values}`` (and ``prompt_token_ids`` for vLLM's form)."""
        fields: dict[str, Any] = {self.form: self.values}
        if self.form == "prompt_logprobs":
            fields["prompt_token_ids"] = self.prompt_token_ids
        return fields


def _choices(value: dict[str, Any], number: int) -> list[dict[str, Any]]:
    choices = value["choices"]
    if not isinstance(choices, list) or not all(isinstance(choice, dict) for choice in choices):
        raise UnreadableFile(f"line {number}: choices is not a list of objects")
    return choices


def _prompt_pairs(holder: dict[str, Any]) -> tuple[Any, Any] | None:
    if holder.get("prompt_logprobs") is not None and holder.get("prompt_token_ids") is not None:
        return holder["prompt_logprobs"], holder["prompt_token_ids"]
    return None


def _read_line(value: Any, number: int) -> tuple[str, list[Any], list[Any]]:
    """The form of one line, its sequences, and (vLLM prompt_logprobs) their token ids."""
    if isinstance(value, list):
        return "token_logprobs", [value], []
    if not isinstance(value, dict):
        raise UnreadableFile(f"line {number}: expected a model-server response (an object) or a list, got {value!r}")
    if isinstance(value.get("details"), dict):
        return "tgi_details", [value["details"]], []
    pair = _prompt_pairs(value)
    if pair is not None:
        return "prompt_logprobs", [pair[0]], [pair[1]]
    if "choices" in value:
        choices = _choices(value, number)
        pairs = [_prompt_pairs(choice) for choice in choices]
        if choices and all(pair is not None for pair in pairs):
            return "prompt_logprobs", [p[0] for p in pairs if p], [p[1] for p in pairs if p]
        forms, sequences = set(), []
        for index, choice in enumerate(choices):
            logprobs = choice.get("logprobs")
            if not isinstance(logprobs, dict):
                raise UnreadableFile(
                    f"line {number}: choice {index} has no logprobs (ask the server for them: completions with "
                    "echo: true and logprobs: 1, chat with logprobs: true)"
                )
            forms.add("chat" if "content" in logprobs else "completions")
            sequences.append(logprobs)
        if len(forms) == 1:
            return forms.pop(), sequences, []
        if not forms:
            raise UnreadableFile(f"line {number}: the response has no choices")
        raise UnreadableFile(f"line {number}: its choices mix chat and completions log-probabilities")
    if "token_logprobs" in value:
        return "completions", [value], []
    if "content" in value:
        return "chat", [value], []
    keys = ", ".join(list(value)[:8])
    raise UnreadableFile(
        f"line {number}: not a model-server response with log-probabilities (keys: {keys}); expected choices, "
        "details, prompt_logprobs with prompt_token_ids, or a list of log-probabilities"
    )


def read_sequences(path: str | Path) -> Sequences:
    """The sequences of a JSON-lines file of model-server responses (blank lines skipped), in file order.

    One form per file: a line of another form than the first raises ``UnreadableFile`` naming both lines.
    """
    path = Path(path)
    if not path.is_file():
        raise UnreadableFile(f"{path}: no such file")
    read: Sequences | None = None
    first = 0
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as error:
            raise UnreadableFile(f"{path}: line {number} is not JSON ({error})") from None
        try:
            form, values, ids = _read_line(value, number)
        except UnreadableFile as error:
            raise UnreadableFile(f"{path}: {error}") from None
        if read is None:
            read, first = Sequences(form), number
        elif form != read.form:
            raise UnreadableFile(
                f"{path}: line {number} is {FORM_NAMES[form]} but line {first} is {FORM_NAMES[read.form]}; "
                "a file holds one form (one request takes one input form)"
            )
        read.values.extend(values)
        read.prompt_token_ids.extend(ids)
    if read is None:
        raise UnreadableFile(f"{path}: no responses (the file is empty)")
    return read
