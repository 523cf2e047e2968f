"""Pydantic models of ``/v1/sequence-cross-entropy``: its request (one input form, the options of
``service.core.contract.SEQUENCE_OPTIONS``) and its answer.

The input forms are typed ``Any`` with hand-written JSON schemas, as the arrays of ``schemas``: the core reads
them (``service.core.sequence_forms``), naming the sequence and position of the first bad value, so that a
million log-probabilities are not validated one by one in Python.
"""

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, WithJsonSchema

from service.api.schemas import Interval, UnitName, option_field
from service.core.contract import SEQUENCE_OPTIONS
from service.core.sequence_forms import FORMS, PROMPT_TOKEN_IDS, Sequences, flat_sequences, read_form

_NUMBER_OR_NULL = {"anyOf": [{"type": "number", "maximum": 1e-9}, {"type": "null"}]}
_INTEGERS = {"type": "array", "items": {"type": "integer"}}
_INTEGER_OR_LIST = {"anyOf": [{"type": "integer"}, _INTEGERS]}
_OBJECTS = {"type": "array", "items": {"type": "object"}}

TokenLogprobs = Annotated[Any, WithJsonSchema({"type": "array", "items": {"type": "array", "items": _NUMBER_OR_NULL}})]
Objects = Annotated[Any, WithJsonSchema(_OBJECTS)]
PromptLogprobs = Annotated[
    Any,
    WithJsonSchema(
        {
            "type": "array",
            "items": {"type": "array", "items": {"anyOf": [{"type": "object"}, {"type": "null"}]}},
        }
    ),
]
TokenIds = Annotated[Any, WithJsonSchema({"type": "array", "items": _INTEGERS})]
IntegerOrList = Annotated[Any, WithJsonSchema(_INTEGER_OR_LIST)]
Counts = Annotated[Any, WithJsonSchema({"type": "array", "items": {"type": "integer", "minimum": 0}})]
DocumentIds = Annotated[
    Any, WithJsonSchema({"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}})
]

_OPTIONS = SEQUENCE_OPTIONS


class SequenceCrossEntropyRequest(BaseModel):
    """Per-token log-probabilities of S sequences, in exactly one input form, and the options."""

    # extra="forbid": a misspelt option must fail loudly; strict: true is not 1.
    model_config = ConfigDict(extra="forbid", strict=True)

    #: Array fields: the NPZ members of the binary transport (every other field is a query parameter there), and
    #: what they hold for the JSON fast paths ("sequences": ``_json_sequences`` reads them; the generic fast path
    #: converts "ids" and leaves "integers" and "objects" to the reference path).
    array_kinds: ClassVar[dict[str, str]] = {
        "token_logprobs": "sequences",
        "completions": "objects",
        "chat": "objects",
        "prompt_logprobs": "objects",
        PROMPT_TOKEN_IDS: "objects",
        "tgi_details": "objects",
        "sequence_lengths": "integers",
        "score_from": "integers",
        "score_until": "integers",
        "document_ids": "ids",
        "num_bytes": "integers",
        "num_words": "integers",
    }
    array_fields: ClassVar[frozenset[str]] = frozenset(array_kinds) - {
        "completions",
        "chat",
        "prompt_logprobs",
        PROMPT_TOKEN_IDS,
        "tgi_details",
    }
    #: The NPZ members whose least and greatest values the codec takes beside their CRC-32 (``seen_extremes``).
    extremes_fields: ClassVar[frozenset[str]] = frozenset({"token_logprobs"})
    #: JSON bodies are charged by their containers too: objects nest deeper than numbers do (``scoring``).
    charge_json_containers: ClassVar[bool] = True

    token_logprobs: TokenLogprobs | None = Field(
        None,
        description=(
            "S sequences, each a list of the natural-log probabilities of the actual tokens (numbers ≤ 0, or "
            "`null` for a position without one: skipped, and counted in `n_skipped`). NPZ: one flat float32 or "
            "float64 array (no nulls: leave such positions out) with `sequence_lengths`."
        ),
    )
    completions: Objects | None = Field(
        None,
        description=(
            "S OpenAI / vLLM completions `logprobs` objects, verbatim (`choices[i].logprobs` of a request with "
            "`echo: true, logprobs: k`): `token_logprobs` (its first entry `null`) and `tokens`, whose UTF-8 "
            "lengths give the bytes. `top_logprobs` and `text_offset` are not read."
        ),
    )
    chat: Objects | None = Field(
        None,
        description=(
            "S OpenAI chat `logprobs` objects, verbatim: `{content: [{token, logprob, bytes, top_logprobs}]}`; "
            "bytes from `bytes`."
        ),
    )
    prompt_logprobs: PromptLogprobs | None = Field(
        None,
        description=(
            "vLLM's `prompt_logprobs` of S prompts: per position `null` or `{token_id: {logprob, rank, "
            "decoded_token}}`; the actual token's entry is picked by its id in `prompt_token_ids`."
        ),
    )
    prompt_token_ids: TokenIds | None = Field(
        None, description="The S prompts' token ids, one per position of `prompt_logprobs` (required with it)."
    )
    tgi_details: Objects | None = Field(
        None,
        description=(
            "S TGI `/generate` `details` objects (with `decoder_input_details: true` for the prompt): the "
            "positions of `prefill`, then of `tokens` (special tokens are scored like any other)."
        ),
    )
    sequence_lengths: Counts | None = Field(
        None,
        description="NPZ only: the S sequence lengths of the flat `token_logprobs` array (they sum to its length).",
    )
    score_from: IntegerOrList = option_field(_OPTIONS["score_from"])
    score_until: IntegerOrList | None = option_field(_OPTIONS["score_until"])
    document_ids: DocumentIds | None = option_field(_OPTIONS["document_ids"])
    num_bytes: Counts | None = option_field(_OPTIONS["num_bytes"])
    num_words: Counts | None = option_field(_OPTIONS["num_words"])
    unit: UnitName = option_field(_OPTIONS["unit"])
    confidence: float = option_field(_OPTIONS["confidence"])
    per_document: bool = option_field(_OPTIONS["per_document"])

    #: Its NPZ log-probabilities' least and greatest value, taken beside their CRC-32 (``seen_extremes``).
    _extremes: tuple[float, float] | None = PrivateAttr(default=None)

    def seen_extremes(self, extremes: Mapping[str, tuple[float, float]]) -> None:
        """The NPZ log-probabilities' extremes, taken beside their CRC-32 (``npz_codec.SeesExtremes``)."""
        self._extremes = extremes.get("token_logprobs")

    def sequences(self) -> Sequences:
        """The sequences of the request's input form (the core reads and checks them)."""
        if self.sequence_lengths is not None:
            return flat_sequences(self.token_logprobs, self.sequence_lengths, extremes=self._extremes)
        return read_form({name: getattr(self, name) for name in (*FORMS, PROMPT_TOKEN_IDS)})

    def cells(self) -> int:
        """How many positions the request holds: its "cells" for the size limit and the memory budget."""
        for name in FORMS:
            value = getattr(self, name)
            if value is not None:
                return _positions(value, _POSITION_KEYS[name])
        return 0


#: Where each input form keeps a sequence's positions: the sequence itself, or these keys of its object.
_POSITION_KEYS: dict[str, tuple[str, ...]] = {
    "token_logprobs": (),
    "prompt_logprobs": (),
    "completions": ("token_logprobs",),
    "chat": ("content",),
    "tgi_details": ("prefill", "tokens"),
}


def _positions(value: Any, keys: tuple[str, ...]) -> int:
    """The positions of an input form's value, counted without reading them (the core checks them)."""
    if isinstance(value, Sequences):  # token_logprobs from the JSON fast path
        return int(value.logprobs.shape[0])
    if hasattr(value, "shape"):
        return int(value.shape[0]) if value.ndim else 1
    if not isinstance(value, list):
        return 0
    if not keys:
        return sum(len(item) for item in value if isinstance(item, list))
    return sum(
        len(part)
        for item in value
        if isinstance(item, dict)
        for part in (item.get(key) for key in keys)
        if isinstance(part, list)
    )


# --- the answer ---------------------------------------------------------------------------------------

_RATIO = (
    "Over the n documents with T_d > 0 units: L = ΣS_d/ΣT_d (S_d a document's NLL) and "
    "SE² = n/(n−1)·Σ(S_d − L·T_d)²/(ΣT_d)², `null` (with a `STDERR_UNDEFINED` warning) when n < 2."
)
_CE_CI = "m ± z·SE with z = Φ⁻¹((1 + confidence)/2), in the unit; `null` with the standard error."
_PPL_CI = "e^(the interval of L in nats): perplexity's interval."


class _RatioBlock(BaseModel):
    """Figures per unit. """ + _RATIO

    cross_entropy: float | None = Field(description="Σnll/Σunits, in the unit; `null` when nothing was scored.")
    perplexity: float | None = Field(description="e^(cross-entropy per unit in nats).")
    stderr: float | None = Field(description="SE of `cross_entropy`, in the unit.")
    ci: Interval = Field(description=_CE_CI)
    perplexity_ci: Interval = Field(description=_PPL_CI)


class TokenBlock(_RatioBlock):
    """Per-token figures: the perplexity most papers report (it depends on the tokenizer). """ + _RATIO


class ByteBlock(_RatioBlock):
    """Per-byte figures (lm-evaluation-harness's `byte_perplexity` and `bits_per_byte`). """ + _RATIO

    bits_per_byte: float | None = Field(description="Σnll/Σbytes/ln 2, in bits whatever the unit.")


class WordBlock(_RatioBlock):
    """Per-word figures (lm-evaluation-harness's `word_perplexity`). """ + _RATIO


class DocumentBlock(BaseModel):
    """The macro view: the mean over documents of each document's NLL per token."""

    cross_entropy: float | None = Field(description="Mean of S_d/T_d over the documents with tokens, in the unit.")
    stderr: float | None = Field(description="s/√n over those documents, in the unit.")
    ci: Interval = Field(description=_CE_CI)


class PerDocument(BaseModel):
    """One entry per document, in order of first appearance."""

    document_id: list[str | int] = Field(description="The given id, or the sequence's index without `document_ids`.")
    n_tokens: list[int] = Field(description="Scored tokens of the document.")
    nll: list[float] = Field(description="The document's total NLL, in the unit.")
    perplexity: list[float | None] = Field(description="Per-token perplexity; `null` without scored tokens.")
    bits_per_byte: list[float | None] = Field(description="`null` without bytes.")


class SequenceWarning(BaseModel):
    """Something the caller should know about the numbers."""

    code: Literal["EMPTY", "STDERR_UNDEFINED", "AGGREGATE_OVERFLOW", "APPROXIMATE_BYTES", "NO_UNITS"] = Field(
        description=(
            "`EMPTY`: nothing was scored (aggregates null). `STDERR_UNDEFINED`: fewer than 2 documents have "
            "scored tokens. `AGGREGATE_OVERFLOW`: a perplexity e^L past 709.78 nats is too large for float64 and "
            "reported as null (the message names it). `APPROXIMATE_BYTES`: token texts hold U+FFFD (a UTF-8 "
            "character split between tokens), so byte counts from them are approximate (`rows`: those sequences). "
            "`NO_UNITS`: documents with scored tokens have 0 bytes or words; their NLL is left out of that unit's "
            "figures."
        )
    )
    message: str = Field(description="What happened, in words.")
    count: int = Field(description="How many positions or documents it concerns (0: none in particular).")
    rows: list[int] = Field(description="The first 20 sequences it concerns (0-based), if any.")


class SequenceSettings(BaseModel):
    """How the numbers were computed."""

    input_form: Literal["token_logprobs", "completions", "chat", "prompt_logprobs", "tgi_details"] = Field(
        description="The input form read."
    )
    bytes_source: Literal["given", "chat_bytes", "token_text"] | None = Field(
        description="Where the bytes came from: `num_bytes`, chat `bytes`, the token texts' UTF-8 length, or none."
    )
    unit: UnitName = Field(description="Unit of the results.")
    confidence: float = Field(description="Confidence level of the intervals.")
    per_document: bool = Field(description="Whether the per-document arrays were returned.")


class SequenceCrossEntropyResponse(BaseModel):
    """Token, byte and word cross-entropy and perplexity of a corpus of token sequences, with their errors."""

    n_sequences: int = Field(description="S, the sequences sent.")
    n_documents: int = Field(description="Distinct documents (sequences with one `document_ids` value are one).")
    n_tokens: int = Field(description="Scored positions.")
    n_skipped: int = Field(
        description="Positions not scored: null, context (before `score_from`) or after `score_until`."
    )
    unit: UnitName = Field(description="Unit of every cross-entropy (perplexities are unit-free).")
    token: TokenBlock
    byte: ByteBlock | None = Field(description="`null` when the bytes are unknown.")
    word: WordBlock | None = Field(description="`null` without `num_words`.")
    document: DocumentBlock
    per_document: PerDocument | None = Field(description="`null` with `per_document: false`.")
    warnings: list[SequenceWarning]
    settings: SequenceSettings
    state: dict[str, Any] = Field(
        description=(
            "The answer's sufficient statistics, mergeable with other shards' through `POST /v1/merge`; a state "
            "holds no per-document detail, so shard by whole documents (a document split between requests counts "
            "as two)."
        )
    )
