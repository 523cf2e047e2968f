"""The state of a ``/v1/cross-entropy`` or ``/v1/binary-cross-entropy`` answer, and the answer of merged states.

Over the rows with wᵢ > 0 (``statistics.Rows``) and each metric's per-sample values ℓᵢ in the answer's unit
(cross-entropy, KL divergence, entropy; correctness for accuracy), a state holds W = Σwᵢ (as W'·2^k), the
count n of those rows, and for each metric (``Moments``) the weighted mean m = Σwᵢℓᵢ/W, the sum Σwᵢℓᵢ, the
smallest and largest ℓᵢ, and three moments normalised by W²:

    v = Σwᵢ²/W²,   p = Σwᵢ²(ℓᵢ − m)/W²,   q = Σwᵢ²(ℓᵢ − m)²/W²,

so that the HC1 error of issue 14 is SE² = n/(n−1)·q. Two states merge by the parallel (Chan) update of
these centred moments: with a = W_A/W, b = W_B/W and δ_A = m_A − m = b·(m_A − m_B),

    m = a·m_A + b·m_B,  v = a²v_A + b²v_B,  p = a²(p_A + δ_A·v_A) + b²(p_B + δ_B·v_B),
    q = a²(q_A + 2δ_A·p_A + δ_A²·v_A) + b²(q_B + 2δ_B·p_B + δ_B²·v_B),

never through raw sums of squares (``merge_all`` applies the same update to k states at once, with their
shares f_s = W_s/W: m = Σ f_s·m_s, q = Σ f_s²·(q_s + 2δ_s·p_s + δ_s²·v_s), …). With clusters (CR1), each
cluster g keeps its share f_g = W_g/W of the weight and its mean m_g of every metric, keyed by its id:
SE² = G/(G−1)·Σ_g f_g²(m_g − m)², and a cluster that two states share merges its shares and means.
Warnings are kept as counts (their row numbers are dropped); those about the whole batch (EMPTY,
ZERO_WEIGHT, AGGREGATE_OVERFLOW, STDERR_UNDEFINED) are found again for the merged rows. The per-group,
per-class and calibration accumulators (``PIECES``) merge by their own classes; the answer for a merged
state is ``merged_answer``'s.

Over 300 lines because a state is written (``answer_state``, ``to_state``) and read back (``parse``, every value
checked as untrusted input) here together: each field's writing and its validation must agree, side by side.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from service.core.contract import BINARY, LOG_BASES, MULTICLASS, PRESETS
from service.core.errors import capped, quoted
from service.core.options import Normalization
from service.core.result import ScoreResult, ScoringWarning, finite_or_none
from service.core.score_states import add_weights_of, merge_plain
from service.core.state import StateError, count, field, fold, number, register_kind, state_envelope
from service.core.state_batch import part
from service.core.state_batch import present as present_in
from service.core.state_moments import (
    Clusters,
    Moments,
    Shares,
    merge_clusters,
    merge_moments,
    moments_of_all,
    read_clusters,
    read_moments,
)
from service.core.statistics import Rows, cluster_keys

#: The metrics with a mean and a standard error, in the answer's order; the first three have a sum too.
METRICS: Final = ("cross_entropy", "kl_divergence", "entropy", "accuracy")
#: The keys of a scoring state's accumulators, all required.
_ACCUMULATOR_KEYS: Final = frozenset(
    {"n_weighted", "weight", "weight_exponent", "cross_entropy", "kl_divergence", "entropy", "accuracy"}
    | {"clusters", "warnings", "groups", "classes", "calibration"}
)
#: The settings that make two states combinable, by endpoint, read from the result's settings or the options.
COMBINABLE: Final[Mapping[str, tuple[str, ...]]] = {
    MULTICLASS: ("unit", "classes", "n_classes", "label_smoothing", "epsilon", "normalization", "class_weights"),
    BINARY: ("unit", "labels_per_sample", "label_smoothing", "epsilon", "pos_weight"),
}
#: The optional accumulators: the state's key, the answer's key, and the option that turns each on.
PIECES: Final = {"groups": "by_group", "classes": "by_class", "calibration": "calibration"}
#: Warnings about the whole batch, found again for merged rows rather than added up.
_BATCH_WARNINGS: Final = ("EMPTY", "ZERO_WEIGHT", "AGGREGATE_OVERFLOW", "STDERR_UNDEFINED")
_LONGEST_MESSAGE: Final = 2000


@dataclass(frozen=True)
class ScoreState:
    """A parsed state: settings, counts, W = weight·2^weight_exponent, each metric's moments, clusters, pieces."""

    endpoint: str
    settings: dict[str, Any]
    n: int
    n_scored: int
    n_weighted: int
    weight: float
    weight_exponent: int
    metrics: dict[str, Moments]
    clusters: Clusters | None
    warnings: dict[str, tuple[int, str]]
    pieces: dict[str, Any]


@dataclass(frozen=True)
class StateOf:
    """What a scoring answer's state needs beyond the result: the endpoint, the request's options (``classes``,
    ``calibration_bins``, ``per_class``, ``compat``, … where they exist) and the number of classes C."""

    endpoint: str
    options: Mapping[str, Any]
    n_classes: int | None = None

    @classmethod
    def of_request(cls, request: Any, endpoint: str) -> StateOf:
        """From a decoded request (its ``predictions`` and the options in STATE_OPTIONS that it has)."""
        return cls.of_options(endpoint, vars(request), request.predictions)

    @classmethod
    def of_options(cls, endpoint: str, options: Mapping[str, Any], predictions: Any) -> StateOf:
        """From a request's options (those in STATE_OPTIONS that it has) and its predictions."""
        taken = {name: options[name] for name in STATE_OPTIONS if name in options}
        return cls(endpoint, taken, _columns(predictions) if endpoint == MULTICLASS else None)


#: The request options a state's settings read (besides the result's settings), where the endpoint has them.
STATE_OPTIONS: Final = ("classes", "calibration_bins", "per_class", "compat")


def _columns(predictions: Any) -> int | None:
    """C, the columns of a scored N×C matrix (an array or a list of rows); None for no rows."""
    if isinstance(predictions, np.ndarray):
        return int(predictions.shape[1]) if predictions.ndim == 2 and predictions.shape[0] else None
    return len(predictions[0]) if len(predictions) and isinstance(predictions[0], list | tuple | np.ndarray) else None


def answer_state(
    result: ScoreResult,
    of: StateOf,
    *,
    cluster_ids: Any = None,
    pieces: Mapping[str, Any] | None = None,
    warnings: Sequence[ScoringWarning] = (),
) -> dict[str, Any]:
    """The ``state`` of a scoring answer: its combinable settings and sufficient statistics (see the module).

    ``pieces`` are the accumulators of the breakdowns and calibration by state key (None where off), and
    ``warnings`` those they brought (the answer lists them after the result's).
    """
    endpoint, options, n_classes = of.endpoint, of.options, of.n_classes
    rows = Rows(result.row_weights, None if cluster_ids is None else cluster_keys(cluster_ids, result.n)[1])
    values = {
        metric: result.correct if metric == "accuracy" else getattr(result.per_sample, metric) for metric in METRICS
    }
    # One pass over the metrics' table; hard labels' KL divergence is their cross-entropy, taken once.
    distinct = [m for m in METRICS if not (m == "kl_divergence" and values[m] is values["cross_entropy"])]
    totals = [None if m == "accuracy" else finite_or_none(getattr(result.sum, m)) for m in distinct]
    found = moments_of_all(
        [values[m] for m in distinct], Shares(rows), [getattr(result.mean, m) for m in distinct], totals
    )
    metrics = dict(zip(distinct, found, strict=True))
    metrics.setdefault("kl_divergence", metrics["cross_entropy"])
    clusters = None if cluster_ids is None else Clusters.of(cluster_ids, result.n, rows, values)
    weight, weight_exponent = _total_weight(result, rows)
    parsed = ScoreState(
        endpoint=endpoint,
        settings=_settings(result, endpoint, options, n_classes, clusters, pieces or {}),
        n=result.n,
        n_scored=result.n_scored,
        n_weighted=rows.n,
        weight=weight,
        weight_exponent=weight_exponent,
        metrics=metrics,
        clusters=clusters,
        warnings={
            str(w.code): (w.count, w.message)
            for w in (*result.warnings, *warnings)
            if str(w.code) not in _BATCH_WARNINGS
        },
        pieces={key: (pieces or {}).get(key) for key in PIECES},
    )
    return KIND.to_state(parsed)


def _total_weight(result: ScoreResult, rows: Rows) -> tuple[float, int]:
    """W = Σwᵢ as (W', k) with W = W'·2^k: the plain sum when it is finite, else Σ wᵢ/2^a (``Rows.weights``),
    both from the sum ``Rows`` found (dividing by 2^a is exact)."""
    if not rows.n:
        return 0.0, 0
    plain = _ldexp(rows.total, rows.exponent)
    if math.isfinite(plain):
        return plain, result.weight_exponent
    return rows.total, result.weight_exponent + rows.exponent


def add_weights(states: Sequence[ScoreState]) -> tuple[float, int, np.ndarray]:
    """ΣW_s as (W', k) with W = W'·2^k, and each state's share W_s/W (all 0 when W is 0)."""
    weights = np.array([state.weight for state in states])
    return add_weights_of(weights, np.array([state.weight_exponent for state in states]))


def _settings(
    result: ScoreResult,
    endpoint: str,
    options: Mapping[str, Any],
    n_classes: int | None,
    clusters: Clusters | None,
    pieces: Mapping[str, Any],
) -> dict[str, Any]:
    """The settings that two states must share to merge."""
    known = {**result.settings, "n_classes": n_classes, "classes": options.get("classes")}
    settings = {name: known.get(name) for name in COMBINABLE[endpoint]}
    settings["calibration_bins"] = options.get("calibration_bins")
    settings["groups"] = pieces.get("groups") is not None
    settings["per_class"] = bool(options.get("per_class"))
    if "compat" in options:
        settings["compat"] = options["compat"] or "xent"
    settings["cluster_ids"] = None if clusters is None else clusters.id_type
    return settings


class ScoreStateKind:
    """The ``StateKind`` of both scoring endpoints."""

    #: The keys of the lists of numbers it reads as float64 arrays too (``state.array_keys``): the tables of the
    #: groups, the classes and the calibration bins.
    array_keys: Final = frozenset({"table"})

    def __init__(self) -> None:
        # The settings last found valid, by endpoint: equal ones are valid too. (Shared by threads: a race
        # only repeats a check.)
        self._checked: dict[str, dict[str, Any]] = {}

    def parse(self, state: Mapping[str, Any], index: int) -> ScoreState:
        """A validated state (the envelope is checked by ``merge_states``)."""
        parsed = self._parse(state, index)
        pieces = _read_pieces(state["accumulators"], parsed.settings, index)
        return dataclasses.replace(parsed, pieces=pieces)

    def parse_and_merge(self, states: Sequence[Mapping[str, Any]]) -> ScoreState:
        """``merge_all`` of the states validated by ``parse``, with the accumulators of the breakdowns and
        calibration read and merged all at once, in a few array passes over all the states (``read_merged`` of
        their classes), rather than state by state: the bulk of a merge's time. The same checks, the same answer."""
        plain = self._merge_plain(states)
        if plain is not None:
            return plain
        parsed = [self._parse(state, index) for index, state in enumerate(states)]
        merged = self.merge_all(parsed)
        with_rows = [bool(state.n) for state in parsed]
        if not any(with_rows):  # merge_all answers with the first state
            with_rows[0] = True
        pieces = {key: _merge_pieces(key, states, [state.settings for state in parsed], with_rows) for key in PIECES}
        return dataclasses.replace(merged, pieces=pieces)

    def _merge_plain(self, states: Sequence[Mapping[str, Any]]) -> ScoreState | None:
        """``parse_and_merge`` of states that are all plainly well-formed, their overall part read in array passes
        (``score_states.merge_plain``); None otherwise (then they are read one by one)."""
        settings = dict(states[0]["settings"])
        endpoint = settings.pop("endpoint")
        if settings != self._checked.get(endpoint):
            _check_settings(settings, endpoint, 0)
            self._checked[endpoint] = settings
        with np.errstate(over="ignore", invalid="ignore"):  # forged numbers near float64's end: +inf, then refused
            merged = merge_plain(states, METRICS, _ACCUMULATOR_KEYS, _PIECE_SETTINGS)
        if merged is None:
            return None
        every = [settings] * len(states)
        pieces = {key: _merge_pieces(key, states, every, [True] * len(states)) for key in PIECES}
        return ScoreState(endpoint=endpoint, settings=settings, clusters=None, warnings={}, pieces=pieces, **merged)

    def _parse(self, state: Mapping[str, Any], index: int) -> ScoreState:
        """A validated state without its optional accumulators (all None), whose presence is checked."""
        settings = dict(state["settings"])
        endpoint = settings.pop("endpoint")
        if settings != self._checked.get(endpoint):  # the states of one merge mostly share their settings
            _check_settings(settings, endpoint, index)
            self._checked[endpoint] = settings
        acc = state["accumulators"]
        if acc.keys() != _ACCUMULATOR_KEYS:
            missing = [key for key in _ACCUMULATOR_KEYS if key not in acc]
            if missing:
                raise StateError(("accumulators",), f"missing key {quoted(missing[0])}", index)
            extra = next(key for key in acc if key not in _ACCUMULATOR_KEYS)
            raise StateError(("accumulators",), f"unknown key {quoted(extra)}", index)
        n_weighted = count(acc["n_weighted"], ("accumulators", "n_weighted"), index)
        if n_weighted > state["n_scored"]:
            raise StateError(
                ("accumulators", "n_weighted"),
                f"{n_weighted} rows of positive weight is more than n_scored = {state['n_scored']}",
                index,
            )
        weight = number(acc["weight"], ("accumulators", "weight"), index, nonnegative=True)
        exponent = acc["weight_exponent"]
        if not isinstance(exponent, int) or isinstance(exponent, bool) or not 0 <= exponent <= 4096:
            raise StateError(
                ("accumulators", "weight_exponent"), f"expected an integer in [0, 4096], got {exponent!r}"[:200], index
            )
        assert weight is not None
        if (weight > 0) != (n_weighted > 0):
            raise StateError(
                ("accumulators", "weight"),
                f"a total weight of {weight!r} contradicts n_weighted = {n_weighted} rows of positive weight",
                index,
            )
        metrics = {
            metric: read_moments(
                acc[metric],
                ("accumulators", metric),
                index,
                n_weighted,
                _ldexp(weight, exponent),
            )
            for metric in METRICS
        }
        _check_accuracy(metrics["accuracy"], index)
        id_type = settings.get("cluster_ids")
        raw_clusters = acc["clusters"]
        if id_type not in (None, "string", "integer"):
            raise StateError(("settings", "cluster_ids"), "expected null, 'string' or 'integer'", index)
        clusters = None if raw_clusters is None else read_clusters(raw_clusters, index, n_weighted, metrics)
        if (id_type is None) != (clusters is None) or (clusters is not None and clusters.id_type != id_type):
            raise StateError(
                ("accumulators", "clusters"), "present exactly when settings.cluster_ids names the ids' type", index
            )
        return ScoreState(
            endpoint=endpoint,
            settings=settings,
            n=state["n"],
            n_scored=state["n_scored"],
            n_weighted=n_weighted,
            weight=weight,
            weight_exponent=exponent if weight else 0,
            metrics=metrics,
            clusters=clusters,
            warnings=_read_warnings(acc["warnings"], index),
            pieces=_pieces_present(acc, settings, index),
        )

    def merge(self, a: ScoreState, b: ScoreState) -> ScoreState:
        """The state of the rows of both (settings of whichever has rows; an empty state is the identity)."""
        return self.merge_all([a, b])

    def merge_all(self, states: Sequence[ScoreState]) -> ScoreState:
        """The state of the rows of all ``states`` at once: the k-way form of ``merge`` (``merge_states`` uses it).

        The moments and clusters merge in one vectorised step (``merge_moments``, ``merge_clusters``); the
        accumulators of the breakdowns, by their own ``merge``, in a balanced tree.
        """
        with_rows = [state for state in states if state.n]
        if len(with_rows) < 2:
            return with_rows[0] if with_rows else states[0]
        first = with_rows[0]
        total, exponent, shares = add_weights(with_rows)
        metrics = {name: merge_moments([state.metrics[name] for state in with_rows], shares) for name in METRICS}
        clusters = None
        if first.clusters is not None:
            clusters = merge_clusters([state.clusters for state in with_rows if state.clusters is not None], shares)
        warnings: dict[str, tuple[int, str]] = {}
        for state in with_rows:
            for code, (added, message) in state.warnings.items():
                seen, said = warnings.get(code, (0, message))
                warnings[code] = (seen + added, said)
        pieces: dict[str, Any] = {}
        for key in PIECES:
            present = [state.pieces[key] for state in with_rows if state.pieces[key] is not None]
            if len(present) < len(with_rows):
                # Off, or null in some state (by_class and calibration of soft targets): null for all the rows, as
                # one request over them would answer.
                pieces[key] = None
                continue
            many = getattr(type(present[0]), "merge_all", None)  # a k-way merge, if the accumulator has one
            pieces[key] = many(present) if many is not None else fold(present, _merge_piece)
        return ScoreState(
            endpoint=first.endpoint,
            settings=first.settings,
            n=sum(state.n for state in with_rows),
            n_scored=sum(state.n_scored for state in with_rows),
            n_weighted=sum(state.n_weighted for state in with_rows),
            weight=total,
            weight_exponent=exponent,
            metrics=metrics,
            clusters=clusters,
            warnings=warnings,
            pieces=pieces,
        )

    def to_state(self, parsed: ScoreState) -> dict[str, Any]:
        """The JSON state."""
        accumulators = {
            "n_weighted": parsed.n_weighted,
            "weight": parsed.weight,
            "weight_exponent": parsed.weight_exponent,
            **{name: parsed.metrics[name].to_state() for name in METRICS},
            "clusters": None if parsed.clusters is None else parsed.clusters.to_state(),
            "warnings": {code: {"count": c, "message": message} for code, (c, message) in parsed.warnings.items()},
            **{key: None if piece is None else piece.to_state() for key, piece in parsed.pieces.items()},
        }
        return state_envelope(parsed.endpoint, parsed.settings, parsed.n, parsed.n_scored, accumulators)

    def summary(self, parsed: ScoreState, confidence: float) -> dict[str, Any]:
        """The merged answer: the scoring answer's fields without ``per_sample`` (``merged_answer``)."""
        # Imported here: merged_answer reads the summary module, which imports this one.
        from service.core.merged_answer import merged_answer

        return merged_answer(parsed, confidence)


#: What each setting may hold (beyond COMBINABLE's, every state has these; ``compat`` where the service has it).
_SETTING_CHECKS: Final[Mapping[str, Any]] = {
    "unit": lambda v: v in LOG_BASES,
    "classes": lambda v: v is None or (isinstance(v, list) and all(isinstance(name, str) for name in v)),
    "n_classes": lambda v: v is None or (type(v) is int and v >= 1),
    "labels_per_sample": lambda v: v is None or (type(v) is int and v >= 1),
    "label_smoothing": lambda v: type(v) in (int, float) and 0 <= v <= 1,
    "epsilon": lambda v: type(v) in (int, float) and 0 <= v < 0.5,
    "normalization": lambda v: v in {policy.value for policy in Normalization},
    "class_weights": lambda v: v is None or (isinstance(v, list) and all(_nonnegative(w) for w in v)),
    "pos_weight": lambda v: v is None or (isinstance(v, list) and all(_nonnegative(w) for w in v)),
    "calibration_bins": lambda v: v is None or (type(v) is int and v >= 1),
    "groups": lambda v: isinstance(v, bool),
    "per_class": lambda v: isinstance(v, bool),
    "compat": lambda v: v in PRESETS,
    "cluster_ids": lambda v: v in (None, "string", "integer"),
}
_ALWAYS: Final = ("calibration_bins", "groups", "per_class", "cluster_ids")


def _nonnegative(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value) and value >= 0


def _check_settings(settings: Mapping[str, Any], endpoint: str, index: int) -> None:
    """StateError unless ``settings`` has exactly the endpoint's settings, each of its kind."""
    expected = [*COMBINABLE[endpoint], *_ALWAYS]
    for name in expected:
        if name not in settings:
            raise StateError(("settings",), f"missing setting {quoted(name)}", index)
    for name, value in settings.items():
        if name not in expected and name != "compat":
            raise StateError(("settings", capped(str(name))), "not a setting of this endpoint's states", index)
        if not _SETTING_CHECKS[name](value):
            raise StateError(("settings", name), f"not a valid {name}: {quoted(value)}", index)


def _ldexp(value: float, exponent: int) -> float:
    """value·2^exponent, +inf past float64."""
    try:
        return math.ldexp(value, exponent)
    except OverflowError:
        return math.inf


def _check_accuracy(moments: Moments, index: int) -> None:
    """Correctness lies in [0, 1], so its mean, smallest and largest value do."""
    for name, value in (("mean", moments.mean), ("low", moments.low), ("high", moments.high)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise StateError(("accumulators", "accuracy", name), f"accuracy lies in [0, 1], got {value!r}", index)


def _read_warnings(value: Any, index: int) -> dict[str, tuple[int, str]]:
    """``{code: {"count": c, "message": text}}``, codes in capitals, counts ≥ 0, messages of reasonable length."""
    path = ("accumulators", "warnings")
    if not isinstance(value, Mapping):
        raise StateError(path, "expected a JSON object of warnings by code", index)
    warnings = {}
    for code, entry in value.items():
        if not (isinstance(code, str) and 0 < len(code) <= 64 and code.replace("_", "").isalnum() and code.isupper()):
            raise StateError(path, f"a warning code is capitals and underscores, got {code!r}"[:200], index)
        if code in _BATCH_WARNINGS:
            raise StateError((*path, code), "said of the whole batch, so not kept in a state", index)
        message = field(entry, "message", (*path, code), index)
        if not isinstance(message, str) or len(message) > _LONGEST_MESSAGE:
            raise StateError(
                (*path, code, "message"), f"expected a text of at most {_LONGEST_MESSAGE} characters", index
            )
        warnings[code] = (count(field(entry, "count", (*path, code), index), (*path, code, "count"), index), message)
    return warnings


#: The setting that turns each optional accumulator on (``calibration_bins``: any number of bins).
_PIECE_SETTINGS: Final = {"groups": "groups", "classes": "per_class", "calibration": "calibration_bins"}


def _pieces_present(accumulators: Mapping[str, Any], settings: Mapping[str, Any], index: int) -> dict[str, None]:
    """Each optional accumulator is present exactly when its setting is on (a state whose settings ask for groups
    but carries none would merge into an answer without the rows' groups): checked, and all left unread (None)."""
    for key, setting in _PIECE_SETTINGS.items():
        on = settings[setting] not in (False, None)
        if (accumulators[key] is not None) != on:
            said = "on" if on else "off"
            expected = "an accumulator" if on else "null"
            raise StateError(("accumulators", key), f"expected {expected}: settings.{setting} is {said}", index)
    return dict.fromkeys(PIECES)


def _read_pieces(accumulators: Mapping[str, Any], settings: Mapping[str, Any], index: int) -> dict[str, Any]:
    """The optional accumulators of one state, each by its class (``_pieces_present`` checked their presence)."""
    pieces = {key: _read_piece(key, accumulators[key], index) for key in PIECES}
    _check_bins(pieces["calibration"], settings, index)
    return pieces


def _check_bins(calibration: Any, settings: Mapping[str, Any], index: int) -> None:
    """StateError unless the calibration piece has the bins of its state's settings."""
    if calibration is not None and not calibration.soft and calibration.n_bins != settings["calibration_bins"]:
        raise StateError(
            ("accumulators", "calibration", "n_bins"),
            f"{calibration.n_bins} bins, but settings.calibration_bins is {settings['calibration_bins']}",
            index,
        )


def _merge_pieces(
    key: str, states: Sequence[Mapping[str, Any]], settings: Sequence[Mapping[str, Any]], with_rows: Sequence[bool]
) -> Any:
    """The accumulator ``key`` of the states' merge: every state's checked, those of ``with_rows`` merged (null when
    one of them has none: off, as one request over them would answer). All at once by the class's ``read_merged``;
    when that declines (a state it would refuse, clusters, soft targets), state by state, naming the fault."""
    everywhere = present_in(states, ("accumulators", key))
    if everywhere is False:
        return None
    if everywhere:  # every state has it (read by column when the states came as a batch)
        present: list[int] = list(range(len(states)))
        raw: Sequence[Any] = part(states, ("accumulators", key))
    else:
        present = [i for i, state in enumerate(states) if state["accumulators"][key] is not None]
        if not present:
            return None
        raw = [states[i]["accumulators"][key] for i in present]
    used = [with_rows[i] for i in present]
    piece_class = _piece_class(key, present[0])
    fast = getattr(piece_class, "read_merged", None)
    with np.errstate(over="ignore", invalid="ignore"):  # forged sums near float64's end: +inf, then refused
        merged = None if fast is None else fast(raw, used)
    if merged is not None:
        for i in present if key == "calibration" else ():
            if i == 0 or settings[i] is not settings[i - 1]:  # states of one settings object: checked once
                _check_bins(merged, settings[i], i)
        return merged if sum(used) == sum(with_rows) else None
    pieces = [_read_piece(key, raw[position], i) for position, i in enumerate(present)]
    for i, piece in zip(present, pieces, strict=True) if key == "calibration" else ():
        _check_bins(piece, settings[i], i)
    chosen = [piece for piece, use in zip(pieces, used, strict=True) if use]
    if len(chosen) < sum(with_rows):
        return None
    many = getattr(piece_class, "merge_all", None)  # a k-way merge, if the accumulator has one
    return many(chosen) if many is not None else fold(chosen, _merge_piece)


def _read_piece(key: str, value: Any, index: int) -> Any:
    """The accumulator ``key`` (groups, classes, calibration) by its own class; None when it is off."""
    return None if value is None else _piece_class(key, index).from_state(value, index)


def _piece_class(key: str, index: int) -> Any:
    """The class of the accumulator ``key`` (importing PIECE_MODULES first); StateError when there is none."""
    if key not in PIECE_CLASSES:
        for module in PIECE_MODULES:
            importlib.import_module(module)
    piece_class = PIECE_CLASSES.get(key)
    if piece_class is None:
        raise StateError(("accumulators", key), "this service keeps no such accumulator: expected null", index)
    return piece_class


def _merge_piece(a: Any, b: Any) -> Any:
    return a.merge(b)


#: The classes of the optional accumulators, by state key ("groups", "classes", "calibration"). Each has
#: ``from_state(d, index) -> Self`` (validating, raising StateError), ``merge(other) -> Self``,
#: ``to_state() -> dict`` and ``summary(confidence) -> dict`` (the answer's ``by_group``, …), and may have a
#: classmethod ``merge_all(pieces) -> Self`` merging many at once (else they merge pairwise in a tree); its module
#: puts it here when imported (``PIECE_CLASSES["groups"] = Groups``) and is named in PIECE_MODULES, so
#: that merging imports it. The scoring answer passes built ones (``from_rows``) to ``answer_state``.
PIECE_CLASSES: dict[str, Any] = {}
#: The modules that register accumulator classes in PIECE_CLASSES.
PIECE_MODULES: tuple[str, ...] = ("service.core.slices",)

KIND = ScoreStateKind()
register_kind(MULTICLASS, KIND)
register_kind(BINARY, KIND)
