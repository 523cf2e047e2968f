"""The sufficient statistics of ``/v1/sequence-cross-entropy``: per unit (tokens, bytes, words) and over documents,
how they merge, and the answer they give (``sequence_state`` writes and reads them as a mergeable state).

A document d has a total NLL S_d (nats) and T_d units. Over the n documents with T_d > 0 a unit keeps n, ΣS,
ΣT, its own ratio's residual sums R = Σ(S_d − L·T_d)² and U = Σ T_d·(S_d − L·T_d), and Q = ΣT_d², so that::

    L = ΣS / ΣT                                  (cross-entropy per unit, nats)
    SE² = n/(n − 1) · R / (ΣT)²                  (the ratio estimator's, over documents)

R is summed from the residuals themselves (never from co-moments C_SS − 2L·C_ST + L²·C_TT, which cancel to
rounding when every document has nearly the same ratio). Sets of documents s, each with its own L_s, R_s, U_s,
Q_s, merge at the merged L = ΣS/ΣT by the exact shift (Chan's update for a ratio): with S − L·T =
(S − L_s·T) + (L_s − L)·T summed over the documents of s,

    Σ(S − L·T)²   = R_s + 2(L_s − L)·U_s + (L_s − L)²·Q_s
    Σ T·(S − L·T) = U_s + (L_s − L)·Q_s

so R = Σ_s [R_s + 2(L_s − L)·U_s + (L_s − L)²·Q_s], U = Σ_s [U_s + (L_s − L)·Q_s], Q = Σ_s Q_s, with no
approximation; documents of the same ratio c give L_s = L = c up to rounding and R = Σ R_s ≈ 0. The macro view
(the mean over documents of S_d/T_d) keeps n, the mean and M2 = Σ(x − x̄)², merged by Chan's update. A state holds
no per-document detail: a document split across requests counts once in each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Final

import numpy as np

from service.core.contract import MAX_EXP_NATS
from service.core.intervals import interval, perplexity_interval
from service.core.options import Unit
from service.core.result import WarningCode, finite_or_none

#: The units a document is measured in, by their answer block.
UNITS: Final = {"token": "tokens", "byte": "bytes", "word": "words"}
#: Log-probabilities at or below this, at a scored position, are refused, as is OpenAI's −9999 placeholder:
#: no scored token has an NLL of −FLOOR nats or more.
FLOOR: Final = -1e4
#: The warning of byte counts taken from texts holding U+FFFD.
APPROXIMATE_BYTES: Final = "APPROXIMATE_BYTES"
#: The warning of documents with scored tokens but no bytes or words: their NLL is not in that unit's figures.
NO_UNITS: Final = "NO_UNITS"
_LN2 = math.log(2.0)


@dataclass(frozen=True)
class RatioTotals:
    """One unit's sums over the documents with T_d > 0: n, ΣS (nats), ΣT and, at L = ΣS/ΣT, R, U and Q."""

    n: int = 0
    s: float = 0.0
    t: float = 0.0
    #: R = Σ(S_d − L·T_d)², U = Σ T_d·(S_d − L·T_d), Q = ΣT_d² (module docstring).
    r: float = 0.0
    u: float = 0.0
    q: float = 0.0

    @classmethod
    def from_documents(cls, nll: np.ndarray, units: np.ndarray) -> RatioTotals:
        """The totals of the documents with ``units`` > 0, R and U from the residuals S_d − L·T_d themselves.

        >>> totals = RatioTotals.from_documents(np.array([0.5, 1.0, 1.5, 7.0]), np.array([1, 2, 3, 0]))
        >>> totals.n, totals.ratio, totals.r, totals.u, totals.q, totals.stderr
        (3, 0.5, 0.0, 0.0, 14.0, 0.0)
        """
        keep = units > 0
        s, t = nll[keep], units[keep].astype(np.float64)
        if not s.size:
            return cls()
        s_sum, t_sum = float(s.sum()), float(t.sum())
        residuals = s - (s_sum / t_sum) * t
        return cls(int(s.size), s_sum, t_sum, float(residuals @ residuals), float(t @ residuals), float(t @ t))

    def merge(self, other: RatioTotals) -> RatioTotals:
        """The totals of both sets of documents: each one's R and U shifted exactly to the merged L."""
        if not other.n:
            return self
        if not self.n:
            return other
        s, t = self.s + other.s, self.t + other.t
        ratio = s / t
        r = u = 0.0
        for part in (self, other):
            shift = part.s / part.t - ratio
            r += part.r + 2.0 * shift * part.u + shift * shift * part.q
            u += part.u + shift * part.q
        return RatioTotals(self.n + other.n, s, t, max(r, 0.0), u, self.q + other.q)

    @property
    def ratio(self) -> float | None:
        """L = ΣS/ΣT in nats, None without units."""
        return self.s / self.t if self.t > 0 else None

    @property
    def stderr(self) -> float | None:
        """SE of L (nats): √(n/(n − 1) · R) / ΣT; None with fewer than 2 documents."""
        if self.ratio is None or self.n < 2:
            return None
        return math.sqrt(self.n / (self.n - 1) * self.r) / self.t

    def to_state(self) -> dict[str, Any]:
        return {"n": self.n, "s": self.s, "t": self.t, "r": self.r, "u": self.u, "q": self.q}


@dataclass(frozen=True)
class MeanTotals:
    """The macro view's n, mean and M2 = Σ(x − x̄)² of the per-document NLL per token (nats)."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    @classmethod
    def from_values(cls, values: np.ndarray) -> MeanTotals:
        if not values.size:
            return cls()
        mean = float(values.mean())
        centred = values - mean
        return cls(int(values.size), mean, float(centred @ centred))

    def merge(self, other: MeanTotals) -> MeanTotals:
        if not other.n:
            return self
        if not self.n:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        return MeanTotals(n, self.mean + delta * other.n / n, self.m2 + other.m2 + delta * delta * self.n * other.n / n)

    @property
    def stderr(self) -> float | None:
        """s/√n with s² = M2/(n − 1); None with fewer than 2 documents."""
        return math.sqrt(self.m2 / (self.n - 1) / self.n) if self.n >= 2 else None


@dataclass(frozen=True)
class SequenceTotals:
    """Everything a sequence answer (without ``per_document``) is computed from, and what a state holds."""

    unit: Unit
    bytes_source: str | None
    words: bool
    n_sequences: int
    n_documents: int
    n_tokens: int
    n_skipped: int
    token: RatioTotals
    byte: RatioTotals
    word: RatioTotals
    document: MeanTotals
    #: Positions whose byte count came from a text holding U+FFFD; documents with tokens but no bytes / words.
    approximate_bytes: int = 0
    no_bytes: int = 0
    no_words: int = 0

    def merge(self, other: SequenceTotals) -> SequenceTotals:
        """The totals of both (compatible) sets of documents."""
        return replace(
            self,
            n_sequences=self.n_sequences + other.n_sequences,
            n_documents=self.n_documents + other.n_documents,
            n_tokens=self.n_tokens + other.n_tokens,
            n_skipped=self.n_skipped + other.n_skipped,
            token=self.token.merge(other.token),
            byte=self.byte.merge(other.byte),
            word=self.word.merge(other.word),
            document=self.document.merge(other.document),
            approximate_bytes=self.approximate_bytes + other.approximate_bytes,
            no_bytes=self.no_bytes + other.no_bytes,
            no_words=self.no_words + other.no_words,
        )

    @property
    def settings(self) -> dict[str, Any]:
        """The settings two states must share to merge."""
        return {"unit": self.unit.value, "bytes_source": self.bytes_source, "words": self.words}


def _ratio_block(totals: RatioTotals, base: float, confidence: float) -> dict[str, Any]:
    """cross_entropy = L in the unit, perplexity = e^L, stderr, ci and perplexity_ci = e^(ci in nats)."""
    ratio = totals.ratio
    mean = None if ratio is None else ratio / base
    stderr = totals.stderr
    se = None if stderr is None else stderr / base
    bounds = interval(mean, se, confidence)
    low_high = perplexity_interval(bounds, base)
    return {
        "cross_entropy": mean,
        "perplexity": None if ratio is None else finite_or_none(_exp(ratio)),
        "stderr": se,
        "ci": None if bounds is None else [bounds[0], bounds[1]],
        "perplexity_ci": None if low_high is None or not all(map(math.isfinite, low_high)) else list(low_high),
    }


def _exp(nats: float) -> float:
    return math.exp(nats) if nats < MAX_EXP_NATS else math.inf


def _warning(code: str, message: str, count_: int = 0, rows: tuple[int, ...] = ()) -> dict[str, Any]:
    return {"code": code, "message": message, "count": count_, "rows": list(rows)}


def totals_warnings(totals: SequenceTotals) -> list[dict[str, Any]]:
    """EMPTY, STDERR_UNDEFINED, AGGREGATE_OVERFLOW, NO_UNITS and APPROXIMATE_BYTES, as the totals call for them."""
    warnings = []
    if totals.n_tokens == 0:
        reason = "the batch is empty" if totals.n_sequences == 0 else "no position has a scored log-probability"
        warnings.append(_warning(WarningCode.EMPTY, f"nothing was scored: {reason}; means are null"))
    elif totals.token.n < 2:
        message = (
            "standard errors and intervals are null: only 1 document has scored tokens; "
            "a standard error needs at least 2"
        )
        warnings.append(_warning(WarningCode.STDERR_UNDEFINED, message))
    overflowing = [
        f"{block}.perplexity"
        for block in UNITS
        if (ratio := getattr(totals, block).ratio) is not None and ratio >= MAX_EXP_NATS
    ]
    if overflowing:
        names = " and ".join(overflowing)
        message = f"{names} = e^(cross-entropy in nats) overflows float64 (past {MAX_EXP_NATS} nats): null"
        warnings.append(_warning(WarningCode.AGGREGATE_OVERFLOW, message))
    for what, missing in (("bytes", totals.no_bytes), ("words", totals.no_words)):
        if missing:
            message = (
                f"{missing} of the documents with scored tokens have 0 {what}: "
                f"their NLL is not in the per-{what[:-1]} figures"
            )
            warnings.append(_warning(NO_UNITS, message, missing))
    if totals.approximate_bytes:
        message = (
            f"{totals.approximate_bytes} token texts hold U+FFFD (a UTF-8 character split between tokens): "
            "their byte counts, and so the per-byte figures, are approximate; send num_bytes for exact ones"
        )
        warnings.append(_warning(APPROXIMATE_BYTES, message, totals.approximate_bytes))
    return warnings


def totals_summary(totals: SequenceTotals, confidence: float) -> dict[str, Any]:
    """The answer's fields computed from ``totals`` (all but ``per_document``, ``warnings`` and ``settings``)."""
    base = totals.unit.log_base
    byte = word = None
    if totals.bytes_source is not None:
        byte = _ratio_block(totals.byte, base, confidence)
        ratio = totals.byte.ratio
        byte = {
            "cross_entropy": byte["cross_entropy"],
            "bits_per_byte": None if ratio is None else ratio / _LN2,
            **{key: byte[key] for key in ("perplexity", "stderr", "ci", "perplexity_ci")},
        }
    if totals.words:
        word = _ratio_block(totals.word, base, confidence)
    macro = totals.document
    mean = macro.mean / base if macro.n else None
    se = None if macro.stderr is None else macro.stderr / base
    bounds = interval(mean, se, confidence)
    return {
        "n_sequences": totals.n_sequences,
        "n_documents": totals.n_documents,
        "n_tokens": totals.n_tokens,
        "n_skipped": totals.n_skipped,
        "unit": totals.unit.value,
        "token": _ratio_block(totals.token, base, confidence),
        "byte": byte,
        "word": word,
        "document": {"cross_entropy": mean, "stderr": se, "ci": None if bounds is None else list(bounds)},
    }
