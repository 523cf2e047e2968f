"""``xent score --sequences FILE.jsonl``: perplexity, bits per byte and word perplexity of model-server responses.

The file holds one response per line (``sequence_files`` reads it); ``--num-bytes`` / ``--num-words`` /
``--document-ids`` give one value per sequence from a file (as ``--sample-weights`` does). Without ``--url`` (and
``XENT_URL``) the service's core scores them in this process; with one, ``Client.score_sequences`` sends them.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from service.cli.files import read_array
from service.cli.sequence_files import read_sequences
from service.client import Client
from service.client.results import Interval
from service.client.sequence_results import PerByte, PerToken, SequenceScores
from service.core.errors import counted
from service.core.intervals import DEFAULT_CONFIDENCE
from service.core.sequence_forms import read_form
from service.core.sequences import score_sequences, sequence_summary

#: The per-sequence fields read from files, by their flags (``num_bytes``: ``--num-bytes``).
SEQUENCE_FILE_FIELDS = ("document_ids", "num_bytes", "num_words")


def add_arguments(score: argparse.ArgumentParser) -> None:
    """The flags of ``xent score --sequences`` (the unit, confidence, service and output flags are shared)."""
    group = score.add_argument_group("sequences (instead of --predictions and --labels)")
    group.add_argument(
        "--sequences",
        metavar="FILE.jsonl",
        help="model-server responses with log-probabilities, one per line (OpenAI/vLLM completions, chat, TGI, "
        "vLLM prompt_logprobs, or a list of log-probabilities; one form per file): token perplexity, bits per "
        "byte and word perplexity with intervals",
    )
    group.add_argument("--score-from", type=int, metavar="N", help="positions before N are context (default 0)")
    group.add_argument(
        "--score-until", type=int, metavar="N", help="exclusive end; negative counts from the end (-1: drop the last)"
    )
    group.add_argument("--num-bytes", metavar="FILE", help="S byte counts, one per sequence (bits per byte)")
    group.add_argument("--num-words", metavar="FILE", help="S word counts, one per sequence (word perplexity)")
    group.add_argument("--document-ids", metavar="FILE", help="S document ids: sequences of one id are its windows")


def score_sequence_file(args: argparse.Namespace, url: str | None) -> SequenceScores:
    """Read ``--sequences`` and the per-sequence files, and score them: by the service at ``url``, or here."""
    fields: dict[str, Any] = read_sequences(args.sequences).request()
    for name in SEQUENCE_FILE_FIELDS:
        path = getattr(args, name)
        if path is not None:
            fields[name] = read_array(path, name).tolist()
    options = {"score_from": args.score_from, "score_until": args.score_until, "unit": args.unit}
    options = {name: value for name, value in options.items() if value is not None}
    if url:
        with Client(url, api_key=args.api_key, timeout=args.timeout, retries=args.retries) as client:
            return client.score_sequences(**fields, **options, confidence=args.confidence, per_document=False)
    scoring = {name: fields.pop(name) for name in SEQUENCE_FILE_FIELDS if name in fields}
    result = score_sequences(read_form(fields), **scoring, **options)
    confidence = DEFAULT_CONFIDENCE if args.confidence is None else args.confidence
    return SequenceScores.from_summary(sequence_summary(result, confidence, per_document=False))


def _number(value: float | None, digits: int = 6) -> str:
    return "null" if value is None else f"{value:.{digits}g}" if math.isfinite(value) else str(value)


def _interval(bounds: Interval | None) -> str:
    return "null" if bounds is None else f"[{_number(bounds[0], 4)}, {_number(bounds[1], 4)}]"


def sequence_table(scores: SequenceScores) -> str:
    """A readable answer: cross-entropy, perplexity and its interval per token, byte and word; bits per byte."""
    level = (scores.settings or {}).get("confidence", 0.95)
    ci = f"{level:.0%} CI" if round(level * 100, 9) == round(level * 100) else f"{level:g} CI"
    lines = [f"{'':<16}{'cross-entropy':>14}{'perplexity':>14}  {ci + ' of perplexity':<24}({scores.unit})"]
    rows: tuple[tuple[str, PerToken | PerByte | None], ...] = (
        ("per token", scores.token),
        ("per byte", scores.byte),
        ("per word", scores.word),
    )
    for label, block in rows:
        if block is None:
            lines.append(f"{label:<16}{'null':>14}   (no {label[4:]} counts: give --num-{label[4:]}s)")
            continue
        lines.append(
            f"{label:<16}{_number(block.cross_entropy):>14}{_number(block.perplexity):>14}  "
            f"{_interval(block.perplexity_ci):<24}"
        )
    if scores.byte is not None:
        lines.append(f"{'bits per byte':<16}{_number(scores.byte.bits_per_byte):>14}")
    if scores.document is not None:
        document = scores.document
        lines.append(
            f"{'document mean':<16}{_number(document.cross_entropy):>14}{'':>14}  "
            f"{_interval(document.ci):<24}(mean over documents of their per-token cross-entropy)"
        )
    lines.append(
        f"{'sequences':<16}{scores.n_sequences:>14}   ({counted(scores.n_documents, 'document')}, "
        f"{scores.n_tokens} tokens scored, {scores.n_skipped} skipped)"
    )
    if not scores.warnings:
        lines.append("warnings        none")
    for warning in scores.warnings:
        lines.append(f"warning         {warning.code}: {warning.message}")
    return "\n".join(line.rstrip() for line in lines) + "\n"
