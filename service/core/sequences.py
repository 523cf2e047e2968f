"""Cross-entropy of token sequences (``/v1/sequence-cross-entropy``): per token, per byte, per word and per document.

A position is scored when it lies in its sequence's window [score_from, score_until) and has a
log-probability; its NLL is −min(log p, 0) (values in (0, 1e-9] are rounding, and count as 0). Sequences
with the same document id are windows of one document: a document's NLL S_d and its units T_d (scored
tokens, bytes, words) are sums over its sequences. Then, per unit, over the documents with T_d > 0::

    L = ΣS_d / ΣT_d,    SE² = n/(n − 1) · Σ(S_d − L·T_d)² / (ΣT_d)²

(``service.core.sequence_totals``; ``sequence_state`` keeps them mergeable), perplexity e^L with the interval
e^(interval of L in nats), and bits per byte L_bytes / ln 2 — lm-evaluation-harness's ``weighted_perplexity``
and ``bits_per_byte`` over the same (loglikelihood, units) documents.
"""

from __future__ import annotations

import math
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from service.core.arrays import first_rows
from service.core.errors import InvalidInput, OutOfRange, quoted
from service.core.intervals import check_confidence
from service.core.options import Unit
from service.core.result import DEFAULT_CONFIDENCE
from service.core.sequence_forms import Sequences, locate, sequence_error
from service.core.sequence_options import counts, documents, per_sequence
from service.core.sequence_state import to_state
from service.core.sequence_totals import (
    FLOOR,
    MeanTotals,
    RatioTotals,
    SequenceTotals,
    totals_summary,
    totals_warnings,
)

#: Log-probabilities above 0 by at most this much are rounding, and count as 0; above it they are refused.
ROUNDING: Final = 1e-9
_PLACEHOLDER = -9999.0
#: Sequences holding at least this many positions in all have their NLLs summed in two parts when ``score_sequences``
#: is given a ``helper``: the part after the sequence boundary nearest the middle on the helper, the first here.
SPLIT_MIN_POSITIONS: Final = 1 << 21


@dataclass(frozen=True)
class SequenceResult:
    """What scoring S sequences found: per document (in order of first appearance) and the mergeable totals.

    ``document_nll`` is in nats; ``document_bytes`` / ``document_words`` are None when those units are unknown.
    """

    document_ids: list[Any]
    document_nll: np.ndarray
    document_tokens: np.ndarray
    document_bytes: np.ndarray | None
    document_words: np.ndarray | None
    totals: SequenceTotals
    form: str
    #: Sequences whose byte count is approximate (a token text with U+FFFD), the first few.
    approximate_rows: tuple[int, ...] = ()

    @property
    def unit(self) -> Unit:
        return self.totals.unit


def score_sequences(
    sequences: Sequences,
    *,
    score_from: Any = None,
    score_until: Any = None,
    document_ids: Any = None,
    num_bytes: Any = None,
    num_words: Any = None,
    unit: Unit | str = Unit.NATS,
    helper: Executor | None = None,
) -> SequenceResult:
    """Score ``sequences`` (from ``sequence_forms.read_form`` or ``flat_sequences``): documents and totals.

    ``score_from``: an integer or S integers ≥ 0; ``score_until``: an integer or S integers, exclusive,
    negative counting from the end; ``document_ids``: S strings or integers (compared as given);
    ``num_bytes`` / ``num_words``: S integers ≥ 0 (without ``num_bytes``, bytes come from the form's texts).
    ``helper``: an executor that may sum the NLLs of the second half of a large batch's sequences while this thread
    sums the first (``SPLIT_MIN_POSITIONS``); every sequence lies whole in one half, so the sums are the same bit for
    bit. None (the default): all on this thread.

    Examples
    --------
    Two windows of one document and a second document; the first window's first token has no context:

    >>> from service.core.sequence_forms import read_form
    >>> sequences = read_form({"token_logprobs": [[None, -1.0, -2.0], [-0.5], [-3.0, -1.0]]})
    >>> result = score_sequences(sequences, document_ids=["a", "a", "b"], num_bytes=[10, 0, 6])
    >>> result.document_ids, result.document_nll.tolist(), result.document_tokens.tolist()
    (['a', 'b'], [3.5, 4.0], [3, 2])
    >>> answer = sequence_summary(result)
    >>> answer["token"]["cross_entropy"], round(answer["byte"]["bits_per_byte"], 6), answer["n_skipped"]
    (1.5, 0.676263, 1)
    """
    unit = Unit(unit)
    lengths = np.diff(sequences.offsets)
    count = int(lengths.shape[0])
    start = np.minimum(per_sequence(score_from, "score_from", count, 0, negative=False), lengths)
    until = per_sequence(score_until, "score_until", count, None, negative=True)
    end = lengths if until is None else np.clip(np.where(until < 0, lengths + until, until), 0, lengths)
    end = np.maximum(end, start)
    window = _window(sequences.offsets, start, end)
    values = sequences.logprobs
    missing = _missing(sequences)
    # The positions without a log-probability that a window holds: skipped, and in forms but token_logprobs refused.
    unscored = missing if window is None else missing[window[missing]]
    extremes = _extremes(sequences)
    _check_values(sequences, extremes, unscored, window)
    # Every position scored, none above 0: no clipping (see _sequence_nll).
    clip = window is not None or bool(missing.size) or (extremes is not None and extremes[1] > 0.0)
    seq_nll = _sequence_nll(values, sequences.offsets, window, clip, helper)
    # A sequence's scored tokens: its window, less the positions there without a log-probability (by index).
    seq_tokens = (end - start) - np.diff(np.searchsorted(unscored, sequences.offsets))
    # Which positions are scored, as a mask: only the token texts' bytes need one.
    scored = (
        _scored(values.shape[0], window, missing) if num_bytes is None and sequences.token_bytes is not None else None
    )
    seq_bytes, source = _bytes(sequences, scored, num_bytes, count)
    seq_words = counts(num_words, "num_words", count)
    ids, doc = documents(document_ids, count)
    n_docs = len(ids)
    doc_nll = np.bincount(doc, weights=seq_nll, minlength=n_docs)
    doc_tokens = np.bincount(doc, weights=seq_tokens, minlength=n_docs).astype(np.int64)
    doc_bytes = None if seq_bytes is None else np.bincount(doc, weights=seq_bytes, minlength=n_docs)
    doc_words = None if seq_words is None else np.bincount(doc, weights=seq_words, minlength=n_docs)
    approximate = np.zeros(count, dtype=bool)
    if source == "token_text" and sequences.replacement is not None:
        replaced = sequences.replacement if scored is None else sequences.replacement & scored
        approximate = _per_sequence_sum(replaced, sequences.offsets) > 0
        n_approximate = int(np.count_nonzero(replaced))
    else:
        n_approximate = 0
    has_tokens = doc_tokens > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        per_token = doc_nll[has_tokens] / doc_tokens[has_tokens]
    n_tokens = int(doc_tokens.sum())
    totals = SequenceTotals(
        unit=unit,
        bytes_source=source,
        words=doc_words is not None,
        n_sequences=count,
        n_documents=n_docs,
        n_tokens=n_tokens,
        n_skipped=int(values.shape[0]) - n_tokens,
        token=RatioTotals.from_documents(doc_nll, doc_tokens),
        byte=RatioTotals() if doc_bytes is None else RatioTotals.from_documents(doc_nll, doc_bytes),
        word=RatioTotals() if doc_words is None else RatioTotals.from_documents(doc_nll, doc_words),
        document=MeanTotals.from_values(per_token),
        approximate_bytes=n_approximate,
        no_bytes=0 if doc_bytes is None else int(np.count_nonzero(has_tokens & (doc_bytes == 0))),
        no_words=0 if doc_words is None else int(np.count_nonzero(has_tokens & (doc_words == 0))),
    )
    return SequenceResult(
        ids, doc_nll, doc_tokens, doc_bytes, doc_words, totals, sequences.form, tuple(first_rows(approximate))
    )


def sequence_summary(
    result: SequenceResult, confidence: Any = DEFAULT_CONFIDENCE, *, per_document: bool = True
) -> dict[str, Any]:
    """The answer of ``/v1/sequence-cross-entropy`` (its wire dict, ``state`` included).

    ``per_document`` (an object of arrays) holds each document's id, scored tokens, NLL (in the unit),
    perplexity per token and bits per byte; None when not asked for.
    """
    level = check_confidence(confidence)
    totals = result.totals
    warnings = totals_warnings(totals)
    for warning in warnings:
        if warning["code"] == "APPROXIMATE_BYTES":
            warning["rows"] = list(result.approximate_rows)
    return {
        **totals_summary(totals, level),
        "per_document": _per_document(result) if per_document else None,
        "warnings": warnings,
        "settings": {
            "input_form": result.form,
            "bytes_source": totals.bytes_source,
            "unit": totals.unit.value,
            "confidence": level,
            "per_document": per_document,
        },
        "state": to_state(totals),
    }


def _per_document(result: SequenceResult) -> dict[str, list[Any]]:
    """The per-document arrays: id, scored tokens, NLL in the unit, perplexity per token, bits per byte."""
    tokens = result.document_tokens
    nll = result.document_nll
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        perplexity = np.exp(nll / tokens)
        bits = None if result.document_bytes is None else nll / result.document_bytes / math.log(2.0)
    return {
        "document_id": result.document_ids,
        "n_tokens": tokens.tolist(),
        "nll": (nll / result.unit.log_base).tolist(),
        "perplexity": _floats_or_none(perplexity, tokens > 0),
        "bits_per_byte": [None] * len(tokens) if bits is None else _floats_or_none(bits),
    }


def _floats_or_none(values: np.ndarray, valid: np.ndarray | None = None) -> list[float | None]:
    """``values`` as a list of floats, None where one is not finite or not ``valid`` (the usual case, every one
    kept, without a Python test per value: 10,000 documents in 0.2 ms instead of 2 ms)."""
    kept = np.isfinite(values) if valid is None else np.isfinite(values) & valid
    listed: list[float | None] = values.tolist()
    if kept.all():
        return listed
    return [value if ok else None for value, ok in zip(listed, kept.tolist(), strict=True)]


def _window(offsets: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray | None:
    """Which flat positions lie in their sequence's [start, end); None when every position does."""
    lengths = np.diff(offsets)
    if not start.any() and np.array_equal(end, lengths):
        return None
    total = int(offsets[-1])
    # +1 where a window opens, −1 where it closes: the running sum is 1 inside a window, 0 outside.
    edges = np.bincount(offsets[:-1] + start, minlength=total + 1) - np.bincount(
        offsets[:-1] + end, minlength=total + 1
    )
    return np.cumsum(edges[:-1], dtype=np.int32) > 0


def _missing(sequences: Sequences) -> np.ndarray:
    """The positions without a log-probability (NaN), in order: the reader's list, or found (one sum says whether
    there is any: infinities were refused while reading, so the sum is NaN only for a NaN)."""
    if sequences.missing is not None:
        return sequences.missing
    values = sequences.logprobs
    if not math.isnan(float(np.add.reduce(values))):
        return np.empty(0, dtype=np.intp)
    return np.flatnonzero(np.isnan(values))


def _scored(size: int, window: np.ndarray | None, missing: np.ndarray) -> np.ndarray | None:
    """Which of ``size`` positions are scored (in the window, with a log-probability); None when every one is."""
    if not missing.size:
        return window
    scored = np.ones(size, dtype=bool) if window is None else window.copy()
    scored[missing] = False
    return scored


def _extremes(sequences: Sequences) -> tuple[float, float] | None:
    """The least and greatest log-probability (NaN ignored: a position without one), known or found; None for
    none (no value, or only NaN)."""
    if sequences.extremes is not None:
        return sequences.extremes
    values = sequences.logprobs
    if not values.size:
        return None
    low, high = float(np.fmin.reduce(values)), float(np.fmax.reduce(values))
    return None if math.isnan(high) else (low, high)


def _check_values(
    sequences: Sequences, extremes: tuple[float, float] | None, nulls: np.ndarray, window: np.ndarray | None
) -> None:
    """Refuse log-probabilities > 1e-9 anywhere, ≤ −1e4 (or −9999) at a scored position and, in forms other than
    ``token_logprobs``, a null at a scored position (but the prompt's first token's, which has no context); ``nulls``
    are the positions in a window without a log-probability."""
    offsets, form, values = sequences.offsets, sequences.form, sequences.logprobs
    # The extremes first: the masks are built only when a value may be refused, which spares two passes and their
    # buffers on a valid batch of 10⁷ log-probabilities.
    masks: list[tuple[np.ndarray, str]] = []
    with np.errstate(invalid="ignore"):
        if extremes is not None and extremes[1] > ROUNDING:
            masks.append((values > ROUNDING, "high"))
        if extremes is not None and extremes[0] <= max(FLOOR, _PLACEHOLDER):
            low = (values <= FLOOR) | (values == _PLACEHOLDER)
            masks.append((low if window is None else low & window, "low"))
    for mask, kind in masks:
        if mask.any():
            index = int(np.flatnonzero(mask)[0])
            sequence, position = locate(offsets, index)
            value = float(values[index])
            if kind == "high":
                message = f"log-probability {quoted(value)} is above 0 (values up to {ROUNDING:g} count as 0)"
            elif value == _PLACEHOLDER:
                message = (
                    "-9999 is OpenAI's placeholder for a log-probability it does not have, refused at a scored "
                    "position rather than scored as a huge perplexity"
                )
            else:
                message = f"log-probability {quoted(value)} is at or below {FLOOR:g}, refused at a scored position"
            raise sequence_error(OutOfRange, form, sequence, position, message)
    if sequences.nulls_allowed or not nulls.size:
        return
    if sequences.first_without_context:  # the prompt's first token has no context: no error
        nulls = nulls[~np.isin(nulls, offsets[:-1][np.diff(offsets) > 0])]
    if nulls.size:
        sequence, position = locate(offsets, int(nulls[0]))
        message = (
            "null log-probability at a scored position; in this form only a prompt's first token may lack one "
            "(set score_from past it, or send token_logprobs, whose nulls are skipped)"
        )
        raise sequence_error(InvalidInput, form, sequence, position, message)


def _sequence_nll(
    values: np.ndarray, offsets: np.ndarray, window: np.ndarray | None, clip: bool, helper: Executor | None
) -> np.ndarray:
    """Each sequence's NLL: −Σ of its scored log-probabilities, in two parts when ``helper`` can take one (see
    ``score_sequences``); ``clip``: some position is not scored, or above 0 (else the sum needs no NLL array)."""
    count = offsets.shape[0] - 1
    middle = int(np.searchsorted(offsets, offsets[-1] // 2)) if count > 1 else 0
    if helper is None or offsets[-1] < SPLIT_MIN_POSITIONS or not 0 < middle < count:
        return _nll_part(values, offsets, window, clip)
    cut = int(offsets[middle])
    later = window[cut:] if window is not None else None
    pending = helper.submit(_nll_part, values[cut:], offsets[middle:] - cut, later, clip)
    first = _nll_part(values[:cut], offsets[: middle + 1], None if window is None else window[:cut], clip)
    # (not started, the helper busy with other work: summed here)
    second = _nll_part(values[cut:], offsets[middle:] - cut, later, clip) if pending.cancel() else pending.result()
    return np.concatenate([first, second])


def _nll_part(values: np.ndarray, offsets: np.ndarray, window: np.ndarray | None, clip: bool) -> np.ndarray:
    """The NLLs of the sequences at ``offsets`` into ``values`` (``window``: which positions of them are in their
    sequence's window; ``clip``: see ``_sequence_nll``)."""
    if not clip:
        # Every position scored, none above 0: a sequence's NLL is its log-probabilities' sum, negated (bit for
        # bit −Σ of the negated values: negation is exact), and no NLL array is needed.
        return np.subtract(0.0, _per_sequence_sum(values, offsets))  # 0 − x: a zero stays +0.0
    # min(log p, 0) on the scored positions, 0 elsewhere, in one float64 array (10⁷ tokens: one 80 MB buffer,
    # where np.where over temporaries took three), summed and negated as above. fmin reads a NaN (a position
    # without a log-probability) as the 0 it is given: only a window needs a mask.
    kept = np.fmin(values, 0.0)
    if window is not None:
        kept[~window] = 0.0
    return np.subtract(0.0, _per_sequence_sum(kept, offsets))


def _per_sequence_sum(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Σ of ``values`` over each sequence's positions (empty sequences: 0), summed in order; a mask is counted
    (as int64, cast as it is summed: no int64 copy of it)."""
    lengths = np.diff(offsets)
    dtype = np.dtype(np.int64) if values.dtype == bool else values.dtype
    sums = np.zeros(lengths.shape[0], dtype=dtype)
    nonempty = lengths > 0
    if nonempty.any():
        sums[nonempty] = np.add.reduceat(values, offsets[:-1][nonempty], dtype=dtype)
    return sums


def _bytes(
    sequences: Sequences, scored: np.ndarray | None, num_bytes: Any, count: int
) -> tuple[np.ndarray | None, Any]:
    """Each sequence's bytes and where they come from: ``num_bytes`` ("given"), else the form's texts."""
    given = counts(num_bytes, "num_bytes", count)
    if given is not None:
        return given, "given"
    if sequences.token_bytes is None:
        return None, None
    scored_bytes = sequences.token_bytes if scored is None else np.where(scored, sequences.token_bytes, 0)
    return _per_sequence_sum(scored_bytes, sequences.offsets), sequences.bytes_source
