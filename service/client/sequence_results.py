"""What the sequence methods return: ``SequenceScores`` (``score_sequences``) and ``SequenceComparison``
(``compare_sequences``), read from the JSON (or NPZ) answers of ``/v1/sequence-cross-entropy`` and its ``/compare``.

Each block is read by its field names (``_read``), so that a field the service adds later is ignored, not an error.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar

import numpy as np
import orjson

from service.client.results import ComparisonWarning, Interval, ScoreWarning

BlockT = TypeVar("BlockT")


def _interval(value: Any) -> Interval | None:
    return None if value is None else (float(value[0]), float(value[1]))


def _read(cls: type[BlockT], values: Mapping[str, Any] | None) -> BlockT | None:
    """A block of the answer as ``cls`` (its intervals as tuples); None where the answer has null."""
    if values is None:
        return None
    given = {}
    for field in fields(cls):  # type: ignore[arg-type]
        value = values.get(field.name)
        given[field.name] = _interval(value) if field.name == "ci" or field.name.endswith("_ci") else value
    return cls(**given)


def _listed(value: Any) -> Any:
    """A block as the answer's JSON object (intervals as 2-lists)."""
    if value is None:
        return None
    return {name: list(v) if isinstance(v, tuple) else v for name, v in vars(value).items()}


@dataclass(frozen=True)
class PerToken:
    """Per token (or per word): Σnll/Σunits in the answer's unit, perplexity e^(nats), and their errors and intervals
    (``perplexity_ci`` is e^(the interval in nats)); None where undefined."""

    cross_entropy: float | None
    perplexity: float | None
    stderr: float | None
    ci: Interval | None
    perplexity_ci: Interval | None


@dataclass(frozen=True)
class PerByte:
    """Per byte: the cross-entropy in the answer's unit, ``bits_per_byte`` (always bits), the byte perplexity, and the
    cross-entropy's standard error and interval (in the unit)."""

    cross_entropy: float | None
    bits_per_byte: float | None
    perplexity: float | None
    stderr: float | None
    ci: Interval | None
    perplexity_ci: Interval | None


@dataclass(frozen=True)
class PerDocumentMean:
    """The macro view: the mean over documents of each document's per-token NLL, its standard error and interval."""

    cross_entropy: float | None
    stderr: float | None
    ci: Interval | None


@dataclass(frozen=True)
class PerDocument:
    """One entry per document, in order of first appearance: its id, scored tokens, total NLL (in the unit), per-token
    perplexity and bits per byte (NaN where the answer has null)."""

    document_id: list[Any]
    n_tokens: np.ndarray
    nll: np.ndarray
    perplexity: np.ndarray
    bits_per_byte: np.ndarray

    @classmethod
    def read(cls, values: Mapping[str, Any] | None) -> PerDocument | None:
        """From the answer's ``per_document`` object of arrays."""
        if values is None:
            return None

        def floats(name: str) -> np.ndarray:
            return np.array([np.nan if v is None else v for v in values[name]], dtype=np.float64)

        return cls(
            document_id=list(values["document_id"]),
            n_tokens=np.asarray(values["n_tokens"], dtype=np.int64),
            nll=floats("nll"),
            perplexity=floats("perplexity"),
            bits_per_byte=floats("bits_per_byte"),
        )


@dataclass(frozen=True)
class SequenceSummary:
    """The aggregates of one model's sequences: token, byte and word rates (byte and word None without their units)
    and the per-document mean."""

    n_tokens: int
    n_skipped: int
    token: PerToken
    byte: PerByte | None
    word: PerToken | None
    document: PerDocumentMean | None

    @classmethod
    def read(cls, values: Mapping[str, Any]) -> SequenceSummary:
        token = _read(PerToken, values["token"])
        assert token is not None
        return cls(
            n_tokens=int(values["n_tokens"]),
            n_skipped=int(values["n_skipped"]),
            token=token,
            byte=_read(PerByte, values.get("byte")),
            word=_read(PerToken, values.get("word")),
            document=_read(PerDocumentMean, values.get("document")),
        )

    def summary(self) -> dict[str, Any]:
        """As the answer's JSON fields."""
        return {
            "n_tokens": self.n_tokens,
            "n_skipped": self.n_skipped,
            **{name: _listed(getattr(self, name)) for name in ("token", "byte", "word", "document")},
        }


@dataclass(frozen=True)
class SequenceScores(SequenceSummary):
    """The answer of ``POST /v1/sequence-cross-entropy``: perplexity, bits per byte and word perplexity of S
    sequences (``n_documents`` documents), with their standard errors and intervals; ``state`` is mergeable
    through ``POST /v1/merge``."""

    n_sequences: int = 0
    n_documents: int = 0
    unit: str = "nats"
    per_document: PerDocument | None = None
    warnings: tuple[ScoreWarning, ...] = ()
    settings: Mapping[str, Any] | None = None
    state: Mapping[str, Any] | None = None

    @classmethod
    def from_summary(cls, answer: Mapping[str, Any]) -> SequenceScores:
        """From the JSON answer."""
        side = SequenceSummary.read(answer)
        return cls(
            **vars(side),
            n_sequences=int(answer["n_sequences"]),
            n_documents=int(answer["n_documents"]),
            unit=str(answer["unit"]),
            per_document=PerDocument.read(answer.get("per_document")),
            warnings=tuple(
                ScoreWarning(w["code"], w["message"], int(w.get("count", 0)), tuple(w.get("rows", ())))
                for w in answer.get("warnings", ())
            ),
            settings=dict(answer.get("settings") or {}),
            state=answer.get("state"),
        )

    @classmethod
    def from_json(cls, content: bytes) -> SequenceScores:
        return cls.from_summary(orjson.loads(content))

    def summary(self) -> dict[str, Any]:
        """The API's JSON answer."""
        per_document = None
        if self.per_document is not None:
            values = vars(self.per_document)
            per_document = {
                name: [None if x != x else x for x in value.tolist()] if isinstance(value, np.ndarray) else value
                for name, value in values.items()
            }
        return {
            "n_sequences": self.n_sequences,
            "n_documents": self.n_documents,
            **{name: value for name, value in super().summary().items() if name in ("n_tokens", "n_skipped")},
            "unit": self.unit,
            **{name: value for name, value in super().summary().items() if name not in ("n_tokens", "n_skipped")},
            "per_document": per_document,
            "warnings": [{**vars(w), "rows": list(w.rows)} for w in self.warnings],
            "settings": dict(self.settings or {}),
            "state": self.state,
        }

    @classmethod
    def from_npz(cls, content: bytes) -> SequenceScores:
        """From an NPZ answer: its JSON ``summary`` member (and the per-document arrays beside it, if any)."""
        with np.load(io.BytesIO(content), allow_pickle=False) as archive:
            answer = orjson.loads(str(archive["summary"]))
            if answer.get("per_document") is None and "nll" in archive.files:
                answer["per_document"] = {
                    name: archive[name].tolist()
                    for name in ("document_id", "n_tokens", "nll", "perplexity", "bits_per_byte")
                }
            return cls.from_summary(answer)


@dataclass(frozen=True)
class SequenceDifference:
    """model − baseline per unit over the documents (negative: the model is better), with the ratio standard error,
    interval, z = mean/stderr and the two-sided p-value."""

    mean: float | None
    stderr: float | None
    ci: Interval | None
    z: float | None
    p_value: float | None


@dataclass(frozen=True)
class SequenceDifferences:
    """The ``difference`` block: per byte (``bits_per_byte`` in bits, ``cross_entropy_per_byte`` in the unit), per
    word and per token; None where that unit is unknown (or, per token, the two sides' token counts differ)."""

    bits_per_byte: SequenceDifference | None
    cross_entropy_per_byte: SequenceDifference | None
    cross_entropy_per_word: SequenceDifference | None
    cross_entropy_per_token: SequenceDifference | None


@dataclass(frozen=True)
class SequenceComparison:
    """The answer of ``POST /v1/sequence-cross-entropy/compare``: both models' aggregates on the same documents
    and their differences; ``warnings`` carry their ``source`` (``"model"``, ``"baseline"`` or ``"difference"``)."""

    n_sequences: int
    n_documents: int
    unit: str
    model: SequenceSummary
    baseline: SequenceSummary
    difference: SequenceDifferences
    warnings: tuple[ComparisonWarning, ...]
    settings: Mapping[str, Any]

    @classmethod
    def from_summary(cls, answer: Mapping[str, Any]) -> SequenceComparison:
        """From the JSON answer."""
        difference = answer["difference"]
        return cls(
            n_sequences=int(answer["n_sequences"]),
            n_documents=int(answer["n_documents"]),
            unit=str(answer["unit"]),
            model=SequenceSummary.read(answer["model"]),
            baseline=SequenceSummary.read(answer["baseline"]),
            difference=SequenceDifferences(
                *(_read(SequenceDifference, difference.get(f.name)) for f in fields(SequenceDifferences))
            ),
            warnings=tuple(
                ComparisonWarning(
                    w["code"], w["message"], int(w.get("count", 0)), tuple(w.get("rows", ())), w["source"]
                )
                for w in answer.get("warnings", ())
            ),
            settings=dict(answer.get("settings") or {}),
        )

    @classmethod
    def from_json(cls, content: bytes) -> SequenceComparison:
        return cls.from_summary(orjson.loads(content))

    @classmethod
    def from_npz(cls, content: bytes) -> SequenceComparison:
        with np.load(io.BytesIO(content), allow_pickle=False) as archive:
            return cls.from_summary(orjson.loads(str(archive["summary"])))

    def summary(self) -> dict[str, Any]:
        """The answer as JSON fields."""
        return {
            "n_sequences": self.n_sequences,
            "n_documents": self.n_documents,
            "unit": self.unit,
            "model": self.model.summary(),
            "baseline": self.baseline.summary(),
            "difference": {name: _listed(value) for name, value in vars(self.difference).items()},
            "warnings": [{**vars(w), "rows": list(w.rows)} for w in self.warnings],
            "settings": dict(self.settings),
        }
