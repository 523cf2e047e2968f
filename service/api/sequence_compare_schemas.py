"""Pydantic models of ``/v1/sequence-cross-entropy/compare``: two models' token log-probabilities of the same texts.

The shared fields (``document_ids``, ``num_bytes``, ``num_words``, ``unit``, ``confidence``) are at the top;
``model`` and ``baseline`` each hold one input form of ``/v1/sequence-cross-entropy`` and its own window
(``score_from``, ``score_until``): two tokenizers split the same text differently. An NPZ body holds each side's
flat ``token_logprobs`` with its ``sequence_lengths`` (and window) as members prefixed with the side:
``model_token_logprobs``, ``model_sequence_lengths``, ``baseline_token_logprobs``, …; ``unit`` and ``confidence``
come in the query.
"""

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from service.api.schemas import Interval, UnitName, option_field
from service.api.sequence_schemas import (
    _POSITION_KEYS,
    ByteBlock,
    Counts,
    DocumentBlock,
    DocumentIds,
    IntegerOrList,
    Objects,
    PromptLogprobs,
    SequenceWarning,
    TokenBlock,
    TokenIds,
    TokenLogprobs,
    WordBlock,
    _positions,
)
from service.core.contract import SEQUENCE_OPTIONS
from service.core.sequence_forms import FORMS, PROMPT_TOKEN_IDS, Sequences, flat_sequences, read_form

_OPTIONS = SEQUENCE_OPTIONS
#: The two sides of a comparison, and the NPZ members each has (prefixed with its name).
SIDES = ("model", "baseline")
NPZ_SIDE_MEMBERS = ("token_logprobs", "sequence_lengths", "score_from", "score_until")
_SAME_AS = "As in `/v1/sequence-cross-entropy`."


class SequenceSide(BaseModel):
    """One model's log-probabilities of the S texts, in exactly one input form, and its own scored window."""

    model_config = ConfigDict(extra="forbid", strict=True)

    token_logprobs: TokenLogprobs | None = Field(None, description=_SAME_AS)
    completions: Objects | None = Field(None, description=_SAME_AS)
    chat: Objects | None = Field(None, description=_SAME_AS)
    prompt_logprobs: PromptLogprobs | None = Field(None, description=_SAME_AS)
    prompt_token_ids: TokenIds | None = Field(None, description=_SAME_AS)
    tgi_details: Objects | None = Field(None, description=_SAME_AS)
    sequence_lengths: Counts | None = Field(
        None, description="NPZ only (`model_sequence_lengths`, …): the S lengths of the flat `token_logprobs`."
    )
    score_from: IntegerOrList = option_field(_OPTIONS["score_from"])
    score_until: IntegerOrList | None = option_field(_OPTIONS["score_until"])

    #: Its NPZ log-probabilities' least and greatest value, taken beside their CRC-32 (``seen_extremes``).
    _extremes: tuple[float, float] | None = PrivateAttr(default=None)

    def sequences(self) -> Sequences:
        """The sequences of this side's input form (the core reads and checks them)."""
        if self.sequence_lengths is not None:
            return flat_sequences(self.token_logprobs, self.sequence_lengths, extremes=self._extremes)
        return read_form({name: getattr(self, name) for name in (*FORMS, PROMPT_TOKEN_IDS)})

    def cells(self) -> int:
        """The positions this side holds (counted without reading them), as ``/v1/sequence-cross-entropy`` counts."""
        given = [(name, getattr(self, name)) for name in FORMS if getattr(self, name) is not None]
        return sum(_positions(value, _POSITION_KEYS[name]) for name, value in given[:1])


class SequenceCompareRequest(BaseModel):
    """Two language models' per-token log-probabilities of the same S texts, sequence i of each the same text."""

    model_config = ConfigDict(extra="forbid", strict=True)

    #: No top-level arrays of numbers for the fast JSON path: the sides are objects.
    array_kinds: ClassVar[dict[str, str]] = {}
    #: The NPZ members: each side's flat ``token_logprobs`` and its ``sequence_lengths``, ``score_from`` and
    #: ``score_until``, prefixed with the side (``model_token_logprobs``), and the shared per-sequence arrays.
    array_fields: ClassVar[frozenset[str]] = frozenset(
        {f"{side}_{name}" for side in SIDES for name in NPZ_SIDE_MEMBERS} | {"document_ids", "num_bytes", "num_words"}
    )
    #: The NPZ members whose least and greatest values the codec takes beside their CRC-32 (``seen_extremes``).
    extremes_fields: ClassVar[frozenset[str]] = frozenset(f"{side}_token_logprobs" for side in SIDES)
    #: JSON bodies are charged by their containers too: objects nest deeper than numbers do (``scoring``).
    charge_json_containers: ClassVar[bool] = True

    model: SequenceSide = Field(description="The model's sequences (one input form) and its window.")
    baseline: SequenceSide = Field(description="The baseline's sequences of the same texts and its window.")
    document_ids: DocumentIds | None = option_field(_OPTIONS["document_ids"])
    num_bytes: Counts | None = Field(
        None,
        description=(
            "S integers ≥ 0: each text's bytes, shared by both sides (the per-byte difference needs units both "
            "sides agree on). Without it, bytes from the token texts are used where both sides' counts agree "
            "in every document."
        ),
    )
    num_words: Counts | None = Field(
        None, description="S integers ≥ 0: each text's words, shared by both sides (the per-word difference)."
    )
    unit: UnitName = option_field(_OPTIONS["unit"])
    confidence: float = option_field(_OPTIONS["confidence"])

    def cells(self) -> int:
        """Both sides' positions: what the size limit and the memory budget count."""
        return self.model.cells() + self.baseline.cells()

    def seen_extremes(self, extremes: Mapping[str, tuple[float, float]]) -> None:
        """Each side's NPZ log-probabilities' extremes, taken beside their CRC-32 (``npz_codec.SeesExtremes``)."""
        self.model._extremes = extremes.get("model_token_logprobs")
        self.baseline._extremes = extremes.get("baseline_token_logprobs")

    @model_validator(mode="before")
    @classmethod
    def _sides_from_npz_members(cls, data: Any) -> Any:
        """An NPZ body's prefixed members (``model_token_logprobs``, …) as the ``model`` and ``baseline`` objects.

        Only arrays are moved (a JSON body holds none), so a JSON body keeps its one shape; a 0-d ``score_from``
        or ``score_until`` member is the one integer it holds.
        """
        if not isinstance(data, dict) or not any(isinstance(value, np.ndarray) for value in data.values()):
            return data
        data = dict(data)
        for side in SIDES:
            moved = {}
            for name in NPZ_SIDE_MEMBERS:
                value = data.pop(f"{side}_{name}", None)
                if value is not None:
                    moved[name] = int(value) if isinstance(value, np.ndarray) and value.ndim == 0 else value
            if moved:
                data.setdefault(side, moved)
        return data


# --- the answer ---------------------------------------------------------------------------------------


class SequenceSideSummary(BaseModel):
    """One model's answer of `/v1/sequence-cross-entropy` without `per_document` (its warnings are at the top)."""

    n_tokens: int = Field(description="Scored positions of this side.")
    n_skipped: int = Field(description="Positions of this side not scored.")
    token: TokenBlock
    byte: ByteBlock | None
    word: WordBlock | None
    document: DocumentBlock
    settings: dict[str, Any] = Field(description="This side's settings (`input_form`, `bytes_source`, …).")
    state: dict[str, Any] = Field(description="This side's mergeable state, as `/v1/sequence-cross-entropy` gives.")


class SequenceDifference(BaseModel):
    """model − baseline per unit over the documents: d = (ΣS_model − ΣS_baseline)/ΣT (negative: the model is
    better), SE² = n/(n−1)·Σ(D_d − d·T_d)²/(ΣT)² with D_d = S_model,d − S_baseline,d over the n documents with
    T_d > 0, the interval d ± z·SE, z = d/SE and p = erfc(|z|/√2)."""

    mean: float | None = Field(description="d, in the unit (`bits_per_byte`: in bits).")
    stderr: float | None = Field(description="SE of d; `null` with fewer than 2 documents.")
    ci: Interval = Field(description="d ± z·SE at `confidence`.")
    z: float | None = Field(description="d/SE; `null` when SE is 0 or null.")
    p_value: float | None = Field(description="Two-sided normal p-value of z.")


class SequenceDifferences(BaseModel):
    """The differences per unit; `null` where the two sides do not count the same units in every document."""

    bits_per_byte: SequenceDifference | None
    cross_entropy_per_byte: SequenceDifference | None
    cross_entropy_per_word: SequenceDifference | None
    cross_entropy_per_token: SequenceDifference | None = Field(
        description="Only when both sides score the same number of tokens in every document."
    )


class SequenceCompareWarning(SequenceWarning):
    """A warning of one side, or of the difference (`UNITS_DIFFER`: a unit the sides count differently)."""

    code: Literal["EMPTY", "STDERR_UNDEFINED", "APPROXIMATE_BYTES", "NO_UNITS", "UNITS_DIFFER"]  # type: ignore[assignment]
    source: Literal["model", "baseline", "difference"] = Field(description="Whose warning it is.")


class SequenceCompareSettings(BaseModel):
    """How the comparison was computed."""

    model_input_form: str = Field(description="The model's input form.")
    baseline_input_form: str = Field(description="The baseline's input form.")
    unit: UnitName = Field(description="Unit of the results.")
    confidence: float = Field(description="Confidence level of the intervals.")


class SequenceCompareResponse(BaseModel):
    """Two language models on the same texts: each one's figures and their differences per byte, word and token."""

    n_sequences: int = Field(description="S, the sequences of each side.")
    n_documents: int = Field(description="Distinct documents.")
    unit: UnitName = Field(description="Unit of every cross-entropy.")
    model: SequenceSideSummary
    baseline: SequenceSideSummary
    difference: SequenceDifferences
    warnings: list[SequenceCompareWarning]
    settings: SequenceCompareSettings
