"""Token sequences from what model servers return: each input form of ``/v1/sequence-cross-entropy`` read into one
flat array of log-probabilities with sequence offsets, and the UTF-8 byte count of each position when the form
carries its text.

The forms (issue 16 §1), each a list of S per-sequence values:

- ``token_logprobs``: lists of natural-log probabilities, ``null`` for a position without one;
- ``completions``: OpenAI / vLLM completions ``logprobs`` objects (``token_logprobs``, ``tokens``, …);
- ``chat``: OpenAI chat ``logprobs`` objects (``{"content": [{"token", "logprob", "bytes"}, …]}``);
- ``prompt_logprobs`` with ``prompt_token_ids``: vLLM's per-position dictionaries, the actual token picked by id;
- ``tgi_details``: TGI ``details`` objects, their ``prefill`` then their ``tokens``.

Only the log-probabilities, the token ids and the token texts are read (never ``top_logprobs``). A null
log-probability is NaN here: the caller's NaN and infinities are refused while reading, so NaN means null.

Over 300 lines because it is one reader per input form, and they share the checks that name a sequence and a
position.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import chain
from typing import Any, Final

import numpy as np

from service.core.arrays import describe
from service.core.errors import BadShape, InvalidInput, NotANumber, NotFinite, counted, quoted

#: The input forms, in the order the request lists them.
FORMS: Final = ("token_logprobs", "completions", "chat", "prompt_logprobs", "tgi_details")
#: The field that must come with ``prompt_logprobs``.
PROMPT_TOKEN_IDS: Final = "prompt_token_ids"
#: How a sequence error names where it is: sequence i, position j.
AT_POSITION: Final = ("sequence", "position")
#: U+FFFD, what a tokenizer's text shows for a UTF-8 character split between tokens.
REPLACEMENT_CHARACTER: Final = "\ufffd"

_STRINGS = frozenset({str})
_NUMBERS = frozenset({int, float})
_NUMBERS_OR_NULL = frozenset({int, float, type(None)})


@dataclass(frozen=True)
class Sequences:
    """S token sequences, flat: sequence i holds positions ``offsets[i]:offsets[i + 1]`` of ``logprobs``.

    ``logprobs`` is float64, NaN where a position has no log-probability (null). ``token_bytes`` is the
    UTF-8 length of each position's token text (chat: its ``bytes``), None when the form carries no text;
    ``replacement`` marks the texts holding U+FFFD (their byte count is approximate). ``missing`` lists the
    positions that are NaN, in order, when the reader knows them already (None: the core looks).
    """

    form: str
    logprobs: np.ndarray
    offsets: np.ndarray
    token_bytes: np.ndarray | None = None
    bytes_source: str | None = None
    replacement: np.ndarray | None = None
    missing: np.ndarray | None = None
    #: The least and greatest log-probability, when known already (none is NaN or infinite): the core then does
    #: not look for them (an archive's are taken beside its CRC-32: ``npz_archive.NpzArchive.read``).
    extremes: tuple[float, float] | None = None

    @property
    def n_sequences(self) -> int:
        """S, the number of sequences."""
        return int(self.offsets.shape[0]) - 1

    @property
    def first_without_context(self) -> bool:
        """Whether the form's first position is the prompt's first token, whose log-probability is null (no context):
        completions with ``echo``, ``prompt_logprobs`` and TGI's ``prefill``; not chat, whose tokens are generated."""
        return self.form in ("completions", "prompt_logprobs", "tgi_details")

    @property
    def nulls_allowed(self) -> bool:
        """Whether a null may stand at a scored position (it is then skipped): only in ``token_logprobs``."""
        return self.form == "token_logprobs"


def sequence_error(kind: type[InvalidInput], field: str, sequence: int, position: int | None, message: str) -> Any:
    """``kind`` naming ``field``, the sequence and the 0-based position (``token_logprobs sequence 2, position 5``)."""
    return kind(field, message, row=sequence, column=position, names=AT_POSITION)


def read_form(fields: Mapping[str, Any]) -> Sequences:
    """The sequences of the one input form among ``fields`` (each form's name → its value, None when absent).

    Raises InvalidInput when no form or several are given, or ``prompt_token_ids`` without ``prompt_logprobs``
    (or the reverse), and the errors of each form's reader.

    >>> read_form({"token_logprobs": [[-1.0, None], []]}).offsets.tolist()
    [0, 2, 2]
    """
    given = [name for name in FORMS if fields.get(name) is not None]
    ids = fields.get(PROMPT_TOKEN_IDS)
    if len(given) != 1:
        found = "none was given" if not given else f"got {', '.join(given)}"
        # Named by the second form given (the one too many), or by the first form when none is.
        where = given[1] if given else FORMS[0]
        raise InvalidInput(where, f"exactly one input form is needed ({', '.join(FORMS)}); {found}")
    form = given[0]
    if (form == "prompt_logprobs") != (ids is not None):
        message = "prompt_logprobs needs prompt_token_ids (the S token-id lists) beside it"
        if ids is not None:
            message = "prompt_token_ids go only with prompt_logprobs"
        raise InvalidInput(PROMPT_TOKEN_IDS, message)
    value = fields[form]
    if isinstance(value, Sequences):  # read already (the JSON fast paths' token_logprobs and completions)
        return value
    if isinstance(value, np.ndarray):
        raise BadShape(form, "a flat array of log-probabilities comes with sequence_lengths (NPZ)")
    if form == "token_logprobs":
        return token_logprob_lists(value)
    if form == "prompt_logprobs":
        return _prompt_logprobs(value, ids)
    return _READERS[form](value)


def flat_sequences(logprobs: Any, sequence_lengths: Any, *, extremes: tuple[float, float] | None = None) -> Sequences:
    """The ``token_logprobs`` form from NPZ members: a flat float array and the S sequence lengths.

    NaN and infinities are refused (naming the sequence and position, not the flat index); an NPZ has no null.
    ``extremes``: the least and greatest of ``logprobs``, if known (``np.minimum`` / ``np.maximum``: NaN if one is
    NaN), else found here; when both are finite, so is every value, and the core looks neither for NaN nor for
    the extremes again.
    """
    if not isinstance(sequence_lengths, np.ndarray) and not isinstance(logprobs, np.ndarray):
        message = "goes with an NPZ body's flat token_logprobs array; a JSON body sends S lists, without it"
        raise BadShape("sequence_lengths", message)
    if not isinstance(logprobs, np.ndarray) or logprobs.dtype.kind not in "fiu" or logprobs.ndim != 1:
        raise BadShape(
            "token_logprobs", f"expected a 1-D float array of log-probabilities, got {_array_text(logprobs)}"
        )
    if not isinstance(sequence_lengths, np.ndarray) or sequence_lengths.dtype.kind not in "iu":
        raise BadShape("sequence_lengths", f"expected a 1-D integer array, got {_array_text(sequence_lengths)}")
    if sequence_lengths.ndim != 1:
        raise BadShape("sequence_lengths", f"expected a 1-D integer array, got {sequence_lengths.ndim} dimensions")
    lengths = sequence_lengths.astype(np.int64)
    negative = np.flatnonzero(lengths < 0)
    if negative.size:
        index = int(negative[0])
        raise sequence_error(BadShape, "sequence_lengths", index, None, f"length {lengths[index]} is negative")
    total = int(lengths.sum())
    if total != logprobs.shape[0]:
        raise BadShape(
            "sequence_lengths",
            f"the lengths sum to {total:,} but token_logprobs holds {counted(logprobs.shape[0], 'value')}",
        )
    offsets = np.zeros(lengths.shape[0] + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    values = np.asarray(logprobs, dtype=np.float64)
    if extremes is None and values.size:
        # Found here, two passes: the core then looks neither for NaN nor for them (three passes it would make).
        extremes = float(np.minimum.reduce(values)), float(np.maximum.reduce(values))
    if extremes is None or (math.isfinite(extremes[0]) and math.isfinite(extremes[1])):
        return Sequences("token_logprobs", values, offsets, missing=np.empty(0, dtype=np.intp), extremes=extremes)
    # NaN or an infinity: the first, named by its sequence and position.
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        _raise_not_finite("token_logprobs", offsets, values, int(bad[0]))
    return Sequences("token_logprobs", values, offsets)  # (extremes given wrong: the core looks itself)


def token_logprob_lists(value: Any) -> Sequences:
    """The ``token_logprobs`` form: S lists of numbers or nulls."""
    rows = _list_of("token_logprobs", value, "lists of log-probabilities")
    for index, row in enumerate(rows):
        if not isinstance(row, list):
            raise sequence_error(BadShape, "token_logprobs", index, None, f"expected a list, got {describe(row)}")
    return _from_lists("token_logprobs", rows)


def _from_lists(field: str, rows: list[list[Any]]) -> Sequences:
    """Lists of numbers or nulls (null → NaN), their NaN and infinities refused at their sequence and position."""
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(row) for row in rows], out=offsets[1:])
    flat = list(chain.from_iterable(rows))
    if not _NUMBERS_OR_NULL.issuperset(map(type, flat)):
        for index, item in enumerate(flat):
            if type(item) not in _NUMBERS_OR_NULL:
                sequence, position = locate(offsets, index)
                message = f"expected a log-probability (a number) or null, got {describe(item)}"
                raise sequence_error(NotANumber, field, sequence, position, message)
    try:
        values = np.array(flat, dtype=np.float64)
    except OverflowError:  # an integer past float64
        values = np.array([_float_or_inf(item) for item in flat], dtype=np.float64)
    # A NaN is a null unless the caller sent NaN itself: only the NaN positions are looked at, as list.count(None)
    # would compare every number with None.
    missing = np.flatnonzero(np.isnan(values)).tolist()
    if np.isinf(values).any() or any(flat[index] is not None for index in missing):
        bad = np.flatnonzero(~np.isfinite(values))
        for index in bad.tolist():
            if flat[index] is not None:
                _raise_not_finite(field, offsets, values, index)
    return Sequences(field, values, offsets)


def _float_or_inf(item: Any) -> float:
    """``float(item)``, ±inf for an integer past float64 (refused next, as JSON's 1e999 is), NaN for null."""
    if item is None:
        return float("nan")
    try:
        return float(item)
    except OverflowError:
        return float("inf") if item > 0 else float("-inf")


def _raise_not_finite(field: str, offsets: np.ndarray, values: np.ndarray, index: int) -> None:
    value = float(values[index])
    what = "NaN" if value != value else ("-Infinity" if value < 0 else "Infinity")
    sequence, position = locate(offsets, index)
    message = f"{what} is not allowed; every log-probability must be finite"
    raise sequence_error(NotFinite, field, sequence, position, message)


def locate(offsets: np.ndarray, index: int) -> tuple[int, int]:
    """The sequence and position of flat ``index`` (sequence i holds ``offsets[i]:offsets[i + 1]``)."""
    sequence = int(np.searchsorted(offsets, index, side="right")) - 1
    return sequence, index - int(offsets[sequence])


def _list_of(field: str, value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise BadShape(field, f"expected a list of S {what}, one per sequence, got {describe(value)}")
    return value


def _entry(field: str, sequence: int, value: Any, key: str, kind: type | tuple[type, ...], what: str) -> Any:
    """``value[key]`` of sequence ``sequence``'s object, checked to be a ``kind``."""
    if not isinstance(value, dict):
        raise sequence_error(BadShape, field, sequence, None, f"expected an object, got {describe(value)}")
    item = value.get(key)
    if not isinstance(item, kind):
        raise sequence_error(BadShape, field, sequence, None, f"expected {what} in {quoted(key)}, got {describe(item)}")
    return item


def _text_bytes(field: str, texts: list[list[Any]], offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The UTF-8 length of each token text, and which hold U+FFFD; a text that is not a string is refused."""
    flat = list(chain.from_iterable(texts))
    if not _STRINGS.issuperset(map(type, flat)):
        for index, text in enumerate(flat):
            if type(text) is not str:
                sequence, position = locate(offsets, index)
                message = f"expected the token's text (a string), got {describe(text)}"
                raise sequence_error(BadShape, field, sequence, position, message)
    joined = "".join(flat)
    if joined.isascii():  # one byte a character: the lengths are the texts' lengths
        return np.fromiter(map(len, flat), dtype=np.int64, count=len(flat)), np.zeros(len(flat), dtype=bool)
    encoded = np.frombuffer(joined.encode("utf-8", "surrogatepass"), dtype=np.uint8)
    # Each character starts at a byte that is no UTF-8 continuation byte (10xxxxxx): the byte offset of every
    # character boundary, and so of every token's, without encoding the texts one by one.
    starts = np.append(np.flatnonzero((encoded & 0xC0) != 0x80), encoded.shape[0])
    characters = np.zeros(len(flat) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, flat), dtype=np.int64, count=len(flat)), out=characters[1:])
    sizes = np.diff(starts[characters])
    replacement = np.zeros(len(flat), dtype=bool)
    if REPLACEMENT_CHARACTER in joined:  # rare: a character split between tokens
        replacement = np.fromiter((REPLACEMENT_CHARACTER in text for text in flat), dtype=bool, count=len(flat))
    return sizes, replacement


def _with_texts(sequences: Sequences, texts: list[list[Any]]) -> Sequences:
    """``sequences`` with the UTF-8 byte count of each position's text, when every position has one (a string)."""
    if not _STRINGS.issuperset(map(type, chain.from_iterable(texts))):  # map(type): no Python loop per token
        return sequences
    return with_token_bytes(sequences, *_text_bytes(sequences.form, texts, sequences.offsets))


def with_token_bytes(sequences: Sequences, sizes: np.ndarray, replacement: np.ndarray) -> Sequences:
    """``sequences`` with the UTF-8 byte count of each position's token text, and which texts hold U+FFFD."""
    return Sequences(sequences.form, sequences.logprobs, sequences.offsets, sizes, "token_text", replacement)


def _completions(value: Any) -> Sequences:
    """OpenAI / vLLM completions ``logprobs`` objects: ``token_logprobs`` (first entry null with ``echo``) and
    ``tokens`` (their texts, for the byte count)."""
    objects = _list_of("completions", value, "completions logprobs objects")
    rows = [_entry("completions", i, item, "token_logprobs", list, "a list") for i, item in enumerate(objects)]
    sequences = _from_lists("completions", rows)
    texts = []
    for index, item in enumerate(objects):
        tokens = item.get("tokens")
        if tokens is None:
            return sequences  # without texts, no byte count
        if not isinstance(tokens, list) or len(tokens) != len(rows[index]):
            message = f"tokens must be a list as long as token_logprobs ({len(rows[index])}), got {describe(tokens)}"
            raise sequence_error(BadShape, "completions", index, None, message)
        texts.append(tokens)
    return _with_texts(sequences, texts)


def _chat(value: Any) -> Sequences:
    """OpenAI chat ``logprobs`` objects: ``content`` entries ``{token, logprob, bytes}``; bytes from ``bytes``."""
    objects = _list_of("chat", value, "chat logprobs objects")
    contents = [_entry("chat", i, item, "content", list, "a list") for i, item in enumerate(objects)]
    rows, texts, byte_lists = [], [], []
    for index, content in enumerate(contents):
        for position, entry in enumerate(content):
            if not isinstance(entry, dict):
                message = f"expected a content entry (an object), got {describe(entry)}"
                raise sequence_error(BadShape, "chat", index, position, message)
        rows.append([entry.get("logprob") for entry in content])
        texts.append([entry.get("token") for entry in content])
        byte_lists.append([entry.get("bytes") for entry in content])
    sequences = _from_lists("chat", rows)
    flat_bytes = list(chain.from_iterable(byte_lists))
    if all(isinstance(item, list) for item in flat_bytes):
        sizes = np.fromiter(map(len, flat_bytes), dtype=np.int64, count=len(flat_bytes))
        return Sequences("chat", sequences.logprobs, sequences.offsets, sizes, "chat_bytes")
    return _with_texts(sequences, texts)


def _prompt_logprobs(value: Any, ids: Any) -> Sequences:
    """vLLM ``prompt_logprobs``: per position null or ``{token_id: {logprob, rank, decoded_token}}``; the actual
    token's entry is picked by its id in ``prompt_token_ids``."""
    positions = _list_of("prompt_logprobs", value, "prompt_logprobs lists")
    id_lists = _list_of(PROMPT_TOKEN_IDS, ids, "token-id lists")
    if len(id_lists) != len(positions):
        raise BadShape(
            PROMPT_TOKEN_IDS, f"has {counted(len(id_lists), 'list')} but prompt_logprobs has {len(positions)}"
        )
    rows: list[list[Any]] = []
    texts: list[list[Any]] = []
    for index, (entries, token_ids) in enumerate(zip(positions, id_lists, strict=True)):
        if not isinstance(entries, list):
            raise sequence_error(BadShape, "prompt_logprobs", index, None, f"expected a list, got {describe(entries)}")
        if not isinstance(token_ids, list) or len(token_ids) != len(entries):
            message = f"expected a list of {len(entries)} token ids (one per position), got {describe(token_ids)}"
            if isinstance(token_ids, list):
                message = f"has {counted(len(token_ids), 'token id')} but prompt_logprobs has {len(entries)} positions"
            raise sequence_error(BadShape, PROMPT_TOKEN_IDS, index, None, message)
        row: list[Any] = []
        text: list[Any] = []
        for position, (entry, token_id) in enumerate(zip(entries, token_ids, strict=True)):
            if type(token_id) is not int:
                message = f"expected a token id (an integer), got {describe(token_id)}"
                raise sequence_error(NotANumber, PROMPT_TOKEN_IDS, index, position, message)
            if entry is None:
                row.append(None)
                text.append("")
                continue
            if not isinstance(entry, dict):
                message = f"expected null or an object of token ids, got {describe(entry)}"
                raise sequence_error(BadShape, "prompt_logprobs", index, position, message)
            chosen = entry.get(str(token_id))
            if chosen is None:
                message = f"token id {token_id} (from prompt_token_ids) is absent from this position's dictionary"
                raise sequence_error(InvalidInput, "prompt_logprobs", index, position, message)
            if not isinstance(chosen, dict):
                message = f"expected {{logprob, rank, decoded_token}} for token id {token_id}, got {describe(chosen)}"
                raise sequence_error(BadShape, "prompt_logprobs", index, position, message)
            row.append(chosen.get("logprob"))
            text.append(chosen.get("decoded_token"))
        rows.append(row)
        texts.append(text)
    return _with_texts(_from_lists("prompt_logprobs", rows), texts)


def _tgi_details(value: Any) -> Sequences:
    """TGI ``details`` objects: ``prefill`` (with ``decoder_input_details``) then ``tokens``, each ``{id, text,
    logprob}``."""
    objects = _list_of("tgi_details", value, "TGI details objects")
    rows, texts = [], []
    for index, item in enumerate(objects):
        if not isinstance(item, dict):
            raise sequence_error(BadShape, "tgi_details", index, None, f"expected an object, got {describe(item)}")
        entries = []
        for key in ("prefill", "tokens"):
            part = item.get(key) or []
            if not isinstance(part, list):
                message = f"expected a list in {quoted(key)}, got {describe(part)}"
                raise sequence_error(BadShape, "tgi_details", index, None, message)
            entries.extend(part)
        for position, entry in enumerate(entries):
            if not isinstance(entry, dict):
                message = f"expected a token (an object with id, text, logprob), got {describe(entry)}"
                raise sequence_error(BadShape, "tgi_details", index, position, message)
        rows.append([entry.get("logprob") for entry in entries])
        texts.append([entry.get("text") for entry in entries])
    return _with_texts(_from_lists("tgi_details", rows), texts)


def _array_text(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"a {value.ndim}-D array of dtype {value.dtype}"
    return describe(value)


_READERS = {"completions": _completions, "chat": _chat, "tgi_details": _tgi_details}
