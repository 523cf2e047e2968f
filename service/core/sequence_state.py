"""The mergeable state of ``/v1/sequence-cross-entropy``: ``sequence_totals`` written as JSON and read back, validated
as untrusted input, registered as the ``"sequence-cross-entropy"`` kind of ``service.core.state``.

``n`` is the positions sent and ``n_scored`` the tokens scored; ``settings`` hold what two states must share
to merge (the unit, where the bytes came from, whether words were counted); ``accumulators`` the counts and,
per unit the sums and residual sums (R, U, Q) of ``sequence_totals``, and the macro view's n, mean and M2.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from service.core.options import Unit
from service.core.sequence_totals import (
    FLOOR,
    UNITS,
    MeanTotals,
    RatioTotals,
    SequenceTotals,
    totals_summary,
    totals_warnings,
)
from service.core.state import StateError, count, field, number, register_kind, state_envelope

#: The endpoint whose states these are (its path below ``/v1/``).
ENDPOINT: Final = "sequence-cross-entropy"


def to_state(totals: SequenceTotals) -> dict[str, Any]:
    """The JSON state of ``totals``: n = positions, n_scored = scored tokens (the positions not scored: n_skipped)."""
    accumulators = {
        "n_sequences": totals.n_sequences,
        "n_documents": totals.n_documents,
        "n_skipped": totals.n_skipped,
        "approximate_bytes": totals.approximate_bytes,
        "no_bytes": totals.no_bytes,
        "no_words": totals.no_words,
        **{name: getattr(totals, name).to_state() for name in UNITS},
        "document": {"n": totals.document.n, "mean": totals.document.mean, "m2": totals.document.m2},
    }
    positions = totals.n_tokens + totals.n_skipped
    return state_envelope(ENDPOINT, totals.settings, positions, totals.n_tokens, accumulators)


class SequenceKind:
    """The ``"sequence-cross-entropy"`` states: parse, merge, write, answer (``service.core.state.StateKind``)."""

    def parse(self, state: Mapping[str, Any], index: int) -> SequenceTotals:
        settings = state["settings"]
        unit = field(settings, "unit", ("settings",), index)
        if unit not in {u.value for u in Unit}:
            raise StateError(("settings", "unit"), f"expected nats, bits or hartleys, got {unit!r:.64}", index)
        source = field(settings, "bytes_source", ("settings",), index)
        if source not in (None, "given", "chat_bytes", "token_text"):
            raise StateError(("settings", "bytes_source"), f"unknown bytes_source {source!r:.64}", index)
        words = field(settings, "words", ("settings",), index)
        if not isinstance(words, bool):
            raise StateError(("settings", "words"), "expected true or false", index)
        extra = set(settings) - {"endpoint", "unit", "bytes_source", "words"}
        if extra:
            raise StateError(("settings", sorted(extra)[0]), "unknown setting", index)
        accumulators = state["accumulators"]
        path: tuple[str | int, ...] = ("accumulators",)
        counts = {
            key: count(field(accumulators, key, path, index), (*path, key), index)
            for key in ("n_sequences", "n_documents", "n_skipped", "approximate_bytes", "no_bytes", "no_words")
        }
        ratios = {name: _ratio_totals(field(accumulators, name, path, index), (*path, name), index) for name in UNITS}
        macro_value = field(accumulators, "document", path, index)
        macro_path = (*path, "document")
        macro = MeanTotals(
            count(field(macro_value, "n", macro_path, index), (*macro_path, "n"), index),
            number(field(macro_value, "mean", macro_path, index), (*macro_path, "mean"), index, nonnegative=True)
            or 0.0,
            number(field(macro_value, "m2", macro_path, index), (*macro_path, "m2"), index, nonnegative=True) or 0.0,
        )
        n_tokens = int(state["n_scored"])
        token = ratios["token"]
        if token.t != n_tokens or macro.n != token.n or token.n > counts["n_documents"]:
            raise StateError(path, "the token totals disagree with n_scored or the document counts", index)
        # No scored token has an NLL of 1e4 nats or more (such log-probabilities are refused): a larger sum is forged.
        if token.s >= -FLOOR * max(token.t, 1):
            raise StateError((*path, "token", "s"), f"s = {token.s:g} nats for {token.t:g} tokens is impossible", index)
        if counts["n_documents"] > counts["n_sequences"]:
            raise StateError(("accumulators", "n_documents"), "more documents than sequences", index)
        if n_tokens + counts["n_skipped"] != state["n"]:
            raise StateError(
                ("accumulators", "n_skipped"), "n_scored + n_skipped is not the state's n positions", index
            )
        return SequenceTotals(
            Unit(unit),
            source,
            words,
            counts["n_sequences"],
            counts["n_documents"],
            n_tokens,
            counts["n_skipped"],
            ratios["token"],
            ratios["byte"],
            ratios["word"],
            macro,
            counts["approximate_bytes"],
            counts["no_bytes"],
            counts["no_words"],
        )

    def merge(self, a: SequenceTotals, b: SequenceTotals) -> SequenceTotals:
        return a.merge(b) if a.n_sequences else b.merge(a)  # an empty state is the identity, whatever its settings

    def to_state(self, parsed: SequenceTotals) -> dict[str, Any]:
        return to_state(parsed)

    def summary(self, parsed: SequenceTotals, confidence: float) -> dict[str, Any]:
        return {
            **totals_summary(parsed, confidence),
            "warnings": totals_warnings(parsed),
            "settings": {**parsed.settings, "confidence": confidence},
        }


def _ratio_totals(value: Any, path: tuple[str | int, ...], index: int) -> RatioTotals:
    """Validated totals; StateError naming the path when a value is missing, negative where it cannot be, …"""
    n = count(field(value, "n", path, index), (*path, "n"), index)
    numbers = {}
    for key in ("s", "t", "r", "u", "q"):
        numbers[key] = number(field(value, key, path, index), (*path, key), index, nonnegative=key != "u")
    totals = RatioTotals(n, **numbers)  # type: ignore[arg-type]
    # Each of the n documents has at least one unit; |U| = |Σ T·e| ≤ √(ΣT²·Σe²) = √(Q·R) (Cauchy–Schwarz).
    if totals.t < n or (n == 0 and (totals.t or totals.s)):
        raise StateError(path, f"n = {n} documents with t = {totals.t:g} units is impossible", index)
    if totals.u * totals.u > totals.r * totals.q * (1 + 1e-9) + 1e-300:
        raise StateError((*path, "u"), "u² exceeds r·q, which no documents give", index)
    return totals


register_kind(ENDPOINT, SequenceKind())
