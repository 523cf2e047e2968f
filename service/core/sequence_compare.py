"""Two language models on one corpus (``/v1/sequence-cross-entropy/compare``): the difference per byte, word, token.

Sequence i of the model and sequence i of the baseline are the same text (maybe other tokens); both are scored
by ``sequences.score_sequences`` with the same document ids and units, each with its own window. Per document
D_d = S_model,d − S_baseline,d (NLL in nats); per unit, over the n documents with T_d > 0::

    d = ΣD_d / ΣT_d = (ΣS_model − ΣS_baseline) / ΣT,    SE² = n/(n − 1) · Σ(D_d − d·T_d)² / (ΣT_d)²

the ratio standard error of ``sequence_totals`` on D_d (its residuals taken directly); z = d/SE and
p = erfc(|z|/√2). Negative d: the model is better. A unit is compared only where both sides count the same units
in every document: bytes and words when given (``num_bytes``, ``num_words``, shared by both) or, for bytes, when
both sides' token texts give the same count per document; tokens only when both sides score the same number in
every document.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import numpy as np

from service.core.errors import BadShape, InvalidInput, counted
from service.core.intervals import check_confidence, interval, two_sided_p_value
from service.core.result import finite_or_none
from service.core.sequence_forms import FORMS, PROMPT_TOKEN_IDS, Sequences
from service.core.sequence_totals import RatioTotals
from service.core.sequences import SequenceResult, sequence_summary

#: The ``difference`` entries, each with the unit it is per and whether it is in bits (else in the answer's unit).
DIFFERENCES: Final = (
    ("bits_per_byte", "byte", True),
    ("cross_entropy_per_byte", "byte", False),
    ("cross_entropy_per_word", "word", False),
    ("cross_entropy_per_token", "token", False),
)
#: The warning of a unit the two sides count differently, whose difference is therefore null.
UNITS_DIFFER: Final = "UNITS_DIFFER"
_LN2 = math.log(2.0)


#: The fields of one side of a comparison: an error about one of them names the side (``model.completions``).
SIDE_FIELDS: Final = frozenset({*FORMS, PROMPT_TOKEN_IDS, "score_from", "score_until", "body"})


@contextmanager
def scoring_side(side: str) -> Iterator[None]:
    """Score one side of a comparison: an error the core raises about a field of the side names the side.

    >>> from service.core.sequence_forms import read_form
    >>> try:
    ...     with scoring_side("baseline"):
    ...         read_form({"token_logprobs": [[-1.0, "x"]]})
    ... except InvalidInput as error:
    ...     error.where, error.loc
    ('baseline.token_logprobs sequence 0, position 1', ('baseline.token_logprobs', 0, 1))
    """
    try:
        yield
    except InvalidInput as error:
        if error.field not in SIDE_FIELDS:
            raise
        field = side if error.field == "body" else f"{side}.{error.field}"
        raise type(error)(field, error.message, row=error.row, column=error.column, names=error.names) from None


def check_paired(model: Sequences, baseline: Sequences) -> None:
    """Refuse two sides with different numbers of sequences: sequence i of each is the same text.

    >>> from service.core.sequence_forms import read_form
    >>> check_paired(read_form({"token_logprobs": [[-1.0], []]}), read_form({"chat": [{"content": []}]}))
    Traceback (most recent call last):
    service.core.errors.BadShape: baseline: has 1 sequence but model has 2; sequence i of each is the same text
    """
    if baseline.n_sequences != model.n_sequences:
        raise BadShape(
            "baseline",
            f"has {counted(baseline.n_sequences, 'sequence')} but model has {model.n_sequences}; "
            "sequence i of each is the same text",
        )


def _ratio(differences: np.ndarray, units: np.ndarray) -> tuple[float | None, float | None]:
    """d = ΣD/ΣT and its SE over the documents with T > 0 (None: undefined), by ``RatioTotals`` on D.

    Its residuals are taken directly, not from co-moments: when the two models differ by nearly the same
    amount per unit, Σ(D − d·T)² is tiny, and C_DD − 2d·C_DT + d²·C_TT would be rounding.
    """
    totals = RatioTotals.from_documents(differences, units)
    return totals.ratio, totals.stderr


def _entry(ratio: float | None, stderr: float | None, scale: float, confidence: float) -> dict[str, Any]:
    """d and its SE in nats ÷ ``scale`` (the unit's ln base, or ln 2 for bits), interval, z = d/SE, p."""
    mean = None if ratio is None else ratio / scale
    se = None if stderr is None else stderr / scale
    z = p_value = None
    if ratio is not None and stderr is not None and stderr > 0:
        z = ratio / stderr
        p_value = two_sided_p_value(z)
    bounds = interval(mean, se, confidence)
    return {
        "mean": finite_or_none(mean),
        "stderr": finite_or_none(se),
        "ci": None if bounds is None else [bounds[0], bounds[1]],
        "z": finite_or_none(z),
        "p_value": p_value,
    }


def _first_difference(a: np.ndarray, b: np.ndarray) -> str:
    """Where two per-document counts first differ, for a message: ``document 3: 18 vs 21``."""
    index = int(np.flatnonzero(a != b)[0])
    return f"document {index}: {a[index]:g} vs {b[index]:g}"


def _shared_units(model: SequenceResult, baseline: SequenceResult) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The per-document units both sides agree on, by answer block, and why each other one is left out."""
    units: dict[str, np.ndarray] = {}
    why: dict[str, str] = {}
    pairs = (
        ("byte", model.document_bytes, baseline.document_bytes, "bytes", "give num_bytes"),
        ("word", model.document_words, baseline.document_words, "words", "give num_words"),
        ("token", model.document_tokens, baseline.document_tokens, "scored tokens", "compare per byte or per word"),
    )
    for block, ours, theirs, what, remedy in pairs:
        if ours is None or theirs is None:
            why[block] = f"no {what} are known" if ours is None and theirs is None else f"only one side has {what}"
        elif not np.array_equal(ours, theirs):
            why[block] = f"the two sides count different {what} ({_first_difference(ours, theirs)}); {remedy}"
        else:
            units[block] = ours
    return units, why


def sequence_comparison(model: SequenceResult, baseline: SequenceResult, confidence: Any) -> dict[str, Any]:
    """The answer of ``/v1/sequence-cross-entropy/compare`` (its wire dict).

    ``model`` and ``baseline`` each get the answer of ``/v1/sequence-cross-entropy`` without ``per_document``
    and ``warnings`` (which the top lists, each with its ``source``). ``difference`` holds model − baseline per
    byte (in bits and in the unit), per word and per token, each ``{mean, stderr, ci, z, p_value}``, or null
    where the two sides do not count the same units (a UNITS_DIFFER warning says why when both had them).
    Raises InvalidInput when the sides hold different numbers of sequences or no difference can be taken.

    Examples
    --------
    Two documents of 10 and 20 bytes, the model 0.1 nats per token better on each of its 3 + 4 tokens:

    >>> from service.core.sequence_forms import read_form
    >>> from service.core.sequences import score_sequences
    >>> texts = [[-1.0, -2.0, -0.5], [-0.7, -0.2, -3.0, -1.1]]
    >>> better = [[value + 0.1 for value in row] for row in texts]
    >>> model = score_sequences(read_form({"token_logprobs": better}), num_bytes=[10, 20])
    >>> baseline = score_sequences(read_form({"token_logprobs": texts}), num_bytes=[10, 20])
    >>> difference = sequence_comparison(model, baseline, 0.95)["difference"]
    >>> per_token, per_byte = difference["cross_entropy_per_token"], difference["cross_entropy_per_byte"]
    >>> round(per_token["mean"], 12), round(per_byte["mean"], 12), round(per_byte["stderr"], 6)
    (-0.1, -0.023333333333, 0.004444)
    >>> difference["cross_entropy_per_word"] is None
    True
    """
    level = check_confidence(confidence)
    if baseline.totals.n_sequences != model.totals.n_sequences:
        raise BadShape(
            "baseline", f"has {baseline.totals.n_sequences} sequences but model has {model.totals.n_sequences}"
        )
    units, why = _shared_units(model, baseline)
    if not units:
        reasons = "; ".join(f"per {block}: {reason}" for block, reason in why.items())
        raise InvalidInput("body", f"no difference can be computed: {reasons}")
    with np.errstate(invalid="ignore"):
        differences = model.document_nll - baseline.document_nll
    ratios = {block: _ratio(differences, counts) for block, counts in units.items()}
    base = model.unit.log_base
    difference = {
        name: None if block not in ratios else _entry(*ratios[block], _LN2 if in_bits else base, level)
        for name, block, in_bits in DIFFERENCES
    }
    warnings: list[dict[str, Any]] = []
    sides: dict[str, Any] = {}
    for source, result in (("model", model), ("baseline", baseline)):
        summary = sequence_summary(result, level, per_document=False)
        warnings += [{**warning, "source": source} for warning in summary.pop("warnings")]
        for name in ("per_document", "n_sequences", "n_documents", "unit"):
            summary.pop(name)
        sides[source] = summary
    for block, reason in why.items():
        if not reason.startswith(("no ", "only one")):
            message = f"the per-{block} difference is null: {reason}"
            warnings.append({"code": UNITS_DIFFER, "message": message, "count": 0, "rows": [], "source": "difference"})
    return {
        "n_sequences": model.totals.n_sequences,
        "n_documents": model.totals.n_documents,
        "unit": model.unit.value,
        **sides,
        "difference": difference,
        "warnings": warnings,
        "settings": {
            "model_input_form": model.form,
            "baseline_input_form": baseline.form,
            "unit": model.unit.value,
            "confidence": level,
        },
    }
