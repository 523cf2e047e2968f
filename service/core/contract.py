"""The options of each scoring endpoint, each defined once: name, default, range and documentation.

Everything else is derived from this table or checked against it by ``tests/test_contract.py``:
the core's option dataclasses (defaults and range checks), the Pydantic request models (and so
the OpenAPI document and the NPZ query parameters), the Python client's defaults and keyword
arguments, and the flags of ``xent score``. Pure Python: the client imports it without the math.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from service.core.errors import capped

#: The scoring endpoints, by their path below ``/v1/``.
Endpoint = Literal["cross-entropy", "binary-cross-entropy"]
MULTICLASS: Endpoint = "cross-entropy"
BINARY: Endpoint = "binary-cross-entropy"

#: The media types of request and answer bodies.
JSON_MEDIA_TYPE = "application/json"
NPZ_MEDIA_TYPE = "application/x-npz"

#: What ``epsilon`` takes to mean the float64 machine epsilon, the clip scikit-learn's ``log_loss`` uses.
AUTO = "auto"
AUTO_EPSILON = sys.float_info.epsilon

#: Each unit of information and ln(its base): a value in nats divided by this is in that unit.
LOG_BASES: Mapping[str, float] = {"nats": 1.0, "bits": math.log(2.0), "hartleys": math.log(10.0)}
UNITS = tuple(LOG_BASES)

#: e^x overflows float64 past this many nats: a perplexity beyond it is reported as null.
MAX_EXP_NATS = 709.78
#: The code of the warning that an aggregate of finite values is too large for float64 (reported as null).
AGGREGATE_OVERFLOW = "AGGREGATE_OVERFLOW"


def aggregate_overflow_message(names: Sequence[str]) -> str:
    """The message of an AGGREGATE_OVERFLOW warning about the aggregates ``names`` (``sum.entropy``, …).

    The service and the client's merging of chunked answers both write it, so it is defined once.

    >>> print(aggregate_overflow_message(["sum.entropy"]))
    sum.entropy overflows float64 and is reported as null
    >>> print(aggregate_overflow_message(["sum.cross_entropy", "sum.kl_divergence", "mean.perplexity"]))
    ... # doctest: +NORMALIZE_WHITESPACE
    sum.cross_entropy and sum.kl_divergence overflow float64 and are reported as null;
    mean.perplexity = e^(mean cross-entropy in nats) overflows float64 (past 709.78 nats) and is reported as null
    """
    totals = [name for name in names if name != "mean.perplexity"]
    parts = []
    if len(totals) == 1:
        parts.append(f"{totals[0]} overflows float64 and is reported as null")
    elif totals:
        parts.append(f"{', '.join(totals[:-1])} and {totals[-1]} overflow float64 and are reported as null")
    if "mean.perplexity" in names:
        parts.append(
            "mean.perplexity = e^(mean cross-entropy in nats) overflows float64 "
            f"(past {MAX_EXP_NATS} nats) and is reported as null"
        )
    return "; ".join(parts)


@dataclass(frozen=True)
class Option:
    """One request option: its name, default, allowed values and documentation.

    ``ge``/``gt``/``le``/``lt`` bound a number (kept as written, so the JSON Schema says ``0``, not
    ``0.0``); ``choices`` lists the values of a string option; ``array`` marks a field that travels
    as an NPZ member rather than a query parameter.
    """

    name: str
    default: Any
    description: str
    choices: tuple[str, ...] = ()
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    array: bool = False

    @property
    def bounds(self) -> dict[str, float]:
        """The range as keyword arguments (``ge=0, le=1``), only those that are set."""
        given = {"ge": self.ge, "gt": self.gt, "le": self.le, "lt": self.lt}
        return {key: value for key, value in given.items() if value is not None}

    @property
    def interval(self) -> str:
        """The range in interval notation: ``[0, 1]``, ``(0, 1)``, ``[0, 0.5)``."""
        low = f"[{self.ge:g}" if self.ge is not None else f"({self.gt:g}"
        high = f"{self.le:g}]" if self.le is not None else f"{self.lt:g})"
        return f"{low}, {high}"

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies in the range (every bound that is set)."""
        return (
            (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )


def resolve_epsilon(value: float | str | None) -> float | None:
    """The core's ``epsilon`` for a request's: ``None`` (the automatic clip) for ``"auto"`` or ``None``."""
    if value is None or (isinstance(value, str) and value == AUTO):
        return None
    return float(value)


_LABEL_SMOOTHING = "Label smoothing ε_ls in [0, 1], applied to the target before every quantity"
_SAMPLE_WEIGHTS = (
    "N non-negative weights, one per row. They change only the aggregates (mean, sum), never the per-sample values."
)

_COMMON = {
    "sample_weights": Option("sample_weights", None, _SAMPLE_WEIGHTS, array=True),
    "epsilon": Option(
        "epsilon",
        AUTO,
        'Clip for probabilities: each is clipped to [ε, 1 − ε] before the log. `"auto"` (default) is float64 '
        "machine epsilon, 2.220446049250313e-16, as scikit-learn's `log_loss` does; `0` is exact math, where a zero "
        "probability on a non-zero target gives +infinity, reported as `null` with a `NON_FINITE` warning. "
        "Applies to `probabilities` only; logits and log-probabilities are never clipped.",
        ge=0,
        lt=0.5,
    ),
    "unit": Option(
        "unit",
        "nats",
        "Unit of the results: `nats` (natural log, default), `bits` (log2) or `hartleys` (log10).",
        choices=UNITS,
    ),
    "per_sample": Option(
        "per_sample", True, "Return the per-sample arrays (default). `false` leaves them out, for very large batches."
    ),
    "gradient": Option(
        "gradient",
        False,
        "`true` adds `per_sample.gradient` (NPZ: a `gradient` member): ∂ℓᵢ/∂xᵢ, the gradient of each row's reported "
        "loss with respect to its predictions, shaped like `predictions`. Logits: softmax(x)·Σy′ − y′ (y′ the "
        "smoothed target); log-probabilities: −y′; probabilities: −y′/q, 0 where the ε clip is active; binary logits: "
        "σ(x) − y′ (with `pos_weight` w: (1 − y′)·σ(x) − w·y′·σ(−x)); binary probabilities: (q − y′)/(q(1 − q)). "
        "Unweighted like the per-sample values, in `unit`, through the renormalisation of "
        '`normalization: "renormalize"`, ÷ K for a multi-label row, 0 on ignored rows. Needs `per_sample`. '
        "On `/compare`, the model's: the gradient of dᵢ = ℓᵢ(model) − ℓᵢ(baseline) with respect to `predictions`.",
    ),
    "confidence": Option(
        "confidence",
        0.95,
        "Confidence level of the intervals in `ci`, in (0, 1). Default 0.95: m ± z·SE with z = Φ⁻¹((1 + 0.95)/2) "
        "≈ 1.96, the normal quantile.",
        gt=0,
        lt=1,
    ),
    "cluster_ids": Option(
        "cluster_ids",
        None,
        "N strings or integers, one per row: rows that share a cluster are not independent (several questions "
        "from one passage, several windows of one document), and the standard errors become cluster-robust (CR1). "
        'Compared as given: `1` and `"1"` are not the same cluster, and one request uses strings or integers, '
        "not both.",
        array=True,
    ),
    "groups": Option(
        "groups",
        None,
        "N strings, one per row: the slice each row belongs to (dataset, language, difficulty…). The answer's "
        "`by_group` then gives each group's `n`, `n_scored`, means, standard errors (clustered within the group "
        "with `cluster_ids`) and intervals. At most `XENT_MAX_GROUPS` distinct groups (default 10,000); past "
        "it, 413.",
        array=True,
    ),
    "calibration_bins": Option(
        "calibration_bins",
        None,
        "B equal-width confidence bins [k/B, (k+1)/B), the last closed at 1, for the answer's `calibration`: "
        "ECE, MCE, RMSCE, the Brier score and every bin's count, weight, mean confidence and accuracy. "
        "null (default): no calibration. Multi-class: the top probability against argmax = true class (hard "
        "labels only: with soft targets, null and a `SOFT_TARGETS` warning); binary and multi-label: each "
        "element's probability against its label.",
        ge=1,
        le=10_000,
    ),
}


#: The ``compat`` presets: xent's own rules, then each library whose numbers a preset reproduces.
PRESETS = ("xent", "pytorch", "sklearn", "keras", "scipy")

_COMPAT = Option(
    "compat",
    "xent",
    'Whose rules to score by: `"xent"` (default, the rules described here), or a library\'s, to reproduce the '
    'number it prints: `"pytorch"` (`cross_entropy` on logits, `nll_loss` on log-probabilities, '
    '`binary_cross_entropy[_with_logits]`, `kl_div`), `"sklearn"` (`log_loss`, clipped at the machine epsilon of '
    'the input\'s dtype), `"keras"` (`CategoricalCrossentropy`, `SparseCategoricalCrossentropy`, '
    '`BinaryCrossentropy`, `KLDivergence`, in float32) or `"scipy"` (`scipy.stats.entropy`). A preset changes '
    "only what that library does differently (validation, clipping, renormalisation, label smoothing, "
    "weighted-mean denominators); `settings` shows every option as it resolved them, and an option the library "
    "cannot honour is a 422 naming both. The README has the table.",
    choices=PRESETS,
)


def _in_order(*options: Option) -> dict[str, Option]:
    return {option.name: option for option in options}


#: Every option of each endpoint (all but ``labels`` and ``predictions``), in the order the request lists them.
OPTIONS: Mapping[Endpoint, Mapping[str, Option]] = {
    MULTICLASS: _in_order(
        _COMPAT,
        Option(
            "prediction_type",
            "probabilities",
            "`probabilities` (default, each in [0, 1]), `logits` (normalised with a stable log-softmax, "
            "x − logsumexp x) or `log_probabilities` (each ≤ 0).",
            choices=("probabilities", "logits", "log_probabilities"),
        ),
        Option(
            "classes",
            None,
            "C unique class names in column order. Required with class-name labels; echoed in the response.",
            array=True,
        ),
        Option(
            "label_smoothing",
            0.0,
            f"{_LABEL_SMOOTHING}: y' = (1 − ε_ls)·y + ε_ls/C. Default 0.",
            ge=0,
            le=1,
        ),
        Option(
            "class_weights",
            None,
            "C non-negative class weights. Row i then weighs sᵢ·Σ_c w_c·y'ᵢ_c in the aggregates "
            "(for a hard label, sᵢ·w_yᵢ); per-sample values are unchanged.",
            array=True,
        ),
        _COMMON["sample_weights"],
        Option(
            "ignore_index",
            None,
            "A class index whose rows are left out of every aggregate and get `null` per-sample values "
            "(e.g. -100, as in PyTorch). Only with class-index labels.",
            # An int64, as the labels it is compared with: a larger one could match no row, and could not
            # be echoed in `settings` either (orjson writes at most 64-bit integers).
            ge=-(2**63),
            le=2**63 - 1,
        ),
        _COMMON["epsilon"],
        Option(
            "normalization",
            "warn",
            "Prediction rows whose sum is off 1 by more than `tolerance`: `warn` (default: score as given and add a "
            "`ROWS_NOT_NORMALIZED` warning), `renormalize` (divide every row by its sum, soft targets too) or "
            "`error` (422 naming the rows). Soft targets off 1 are a 422 unless `renormalize`.",
            choices=("warn", "renormalize", "error"),
        ),
        Option(
            "tolerance",
            1e-3,
            "How far a row sum may be from 1 and still count as normalised. Default 1e-3.",
            gt=0,
            lt=1,
        ),
        _COMMON["unit"],
        _COMMON["per_sample"],
        _COMMON["gradient"],
        _COMMON["confidence"],
        _COMMON["cluster_ids"],
        _COMMON["groups"],
        Option(
            "per_class",
            False,
            "`true`: the answer's `by_class` gives each class's support (Σ of the weights of the rows of that "
            "true class), mean cross-entropy and its standard error over those rows, accuracy (the weighted "
            "recall) and `predicted` (Σ of the weights of the rows predicting it). Hard labels only: with target "
            "distributions that are not one-hot, `by_class` is null with a `SOFT_TARGETS` warning.",
        ),
        _COMMON["calibration_bins"],
    ),
    BINARY: _in_order(
        _COMPAT,
        Option(
            "prediction_type",
            "probabilities",
            "`probabilities` (default, each in [0, 1]) or `logits` (through a stable log-sigmoid).",
            choices=("probabilities", "logits"),
        ),
        Option(
            "pos_weight",
            None,
            "A number, or K numbers, ≥ 0 multiplying the positive term: ℓ = −[pw·y·log q + (1 − y)·log(1 − q)]. "
            "With it, CE no longer equals H + KL (those stay unweighted).",
            array=True,
        ),
        Option(
            "label_smoothing",
            0.0,
            f"{_LABEL_SMOOTHING}: y' = y·(1 − ε_ls) + ε_ls/2. Default 0.",
            ge=0,
            le=1,
        ),
        _COMMON["sample_weights"],
        _COMMON["epsilon"],
        _COMMON["unit"],
        _COMMON["per_sample"],
        _COMMON["gradient"],
        _COMMON["confidence"],
        _COMMON["cluster_ids"],
        _COMMON["groups"],
        _COMMON["calibration_bins"],
    ),
}

#: The options of the standard errors and intervals (issue 14), the same on both endpoints.
UNCERTAINTY_OPTIONS: Mapping[str, Option] = {name: OPTIONS[MULTICLASS][name] for name in ("confidence", "cluster_ids")}

#: The breakdown and calibration options (issue 15), last on both endpoints: the scoring requests take them,
#: the comparisons (``/compare``) do not.
BREAKDOWN_OPTIONS = ("groups", "per_class", "calibration_bins")

#: Options that are arrays: NPZ members rather than query parameters.
ARRAY_OPTIONS = frozenset(name for options in OPTIONS.values() for name, option in options.items() if option.array)


def defaults(endpoint: Endpoint) -> dict[str, Any]:
    """Every option of ``endpoint`` with its default."""
    return {name: option.default for name, option in OPTIONS[endpoint].items()}


def label_array_refusal(kind: str, ndim: int, dtype: str) -> str | None:
    """Why ``/v1/cross-entropy`` refuses a labels array of this dtype kind, number of dimensions and dtype (None:
    it reads it): the labels it reads as an array are 1-D integer class indices, 1-D class names or 2-D float
    target rows.

    The service (reading an NPZ member) and the client (before sending anything) both ask, so that float class
    indices such as ``[1.0, 2.0]`` are refused by both, in the same words.

    >>> label_array_refusal("i", 1, "int64") is None, label_array_refusal("f", 2, "float64") is None
    (True, True)
    >>> print(label_array_refusal("f", 1, "float64"))
    expected 1-D integer class indices, 1-D class names or 2-D float target rows, got a 1-D array of dtype float64
    """
    if kind in "US":
        return None if ndim == 1 else f"class names must be a 1-D array, got {ndim} dimensions"
    if kind in "iu":
        return None if ndim == 1 else f"class indices must be a 1-D array, got {ndim} dimensions"
    if kind == "f" and ndim == 2:
        return None
    return (
        "expected 1-D integer class indices, 1-D class names or 2-D float target rows, "
        f"got a {ndim}-D array of dtype {capped(dtype)}"
    )


#: The path of the language-model endpoint below ``/v1/`` (issue 16); not an ``Endpoint``: its data are token
#: sequences, not predictions and labels.
SEQUENCES = "sequence-cross-entropy"

#: The options of ``/v1/sequence-cross-entropy`` (all but the input forms), in the order the request lists them.
SEQUENCE_OPTIONS: Mapping[str, Option] = _in_order(
    Option(
        "score_from",
        0,
        "An integer or S integers ≥ 0: positions before it are context, not scored (default 0: every position "
        "that has a log-probability). Positions are 0-based, in the order the input form lists them (TGI: "
        "`prefill`, then `tokens`). In forms other than `token_logprobs`, only the first position may lack a "
        "log-probability (it has no context); a null at another scored position is a 422.",
        array=True,
    ),
    Option(
        "score_until",
        None,
        "An integer or S integers: the exclusive end of the scored positions; negative counts from the end "
        "(−1 leaves out the last position, as lm-evaluation-harness does with `echo: true, max_tokens: 1`). "
        "Default (null): to the end.",
        array=True,
    ),
    Option(
        "document_ids",
        None,
        'S strings or integers, compared as given (`"1"` and `1` differ): sequences with the same id are windows '
        "of one document, whose NLL and units are summed. Documents are reported in order of first appearance; "
        "ids may interleave. Default: each sequence is its own document.",
        array=True,
    ),
    Option(
        "num_bytes",
        None,
        "S integers ≥ 0: each sequence's bytes, for per-byte figures (a document's bytes are the sum over its "
        "sequences, so a document in windows may carry its count on the first and 0 on the rest). Without it, "
        "bytes come from the input where it carries them (chat `bytes`; the UTF-8 length of the scored tokens' "
        "texts), and `settings.bytes_source` says which.",
        array=True,
    ),
    Option(
        "num_words",
        None,
        "S integers ≥ 0: each sequence's words, for word perplexity (summed per document like `num_bytes`).",
        array=True,
    ),
    _COMMON["unit"],
    _COMMON["confidence"],
    Option(
        "per_document",
        True,
        "Return the per-document arrays (default). `false` leaves them out, for very large corpora.",
    ),
)
