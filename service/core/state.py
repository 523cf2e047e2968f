"""Mergeable state: the sufficient statistics of an answer, and how states of shards merge into one (issue 15).

Every scoring answer carries a ``state``, a JSON object::

    {"version": 1, "settings": {"endpoint": ..., ...}, "n": N, "n_scored": n, "accumulators": {...}}

``settings`` are the settings that make two states combinable (the endpoint, the unit, the classes, the
options that change a per-sample value or a weight); ``accumulators`` the endpoint's sufficient statistics.
Each endpoint's state is a ``StateKind`` registered here under its path (``register_kind``): it validates a
state (``parse``), merges two parsed states (``merge``, associative and commutative), writes one back
(``to_state``) and answers for one (``summary``). ``merge_states`` checks the envelope, dispatches on
``settings.endpoint``, checks that the states are compatible (the same settings, key by key; a state of no
rows is the identity and merges with any state of its endpoint) and merges them: all at once when the kind
has ``merge_all`` (the same result, in one vectorised step), else pairwise in a balanced tree.

A state comes from a caller: it is validated as untrusted input, and every refusal is a ``StateError``
naming the state's index and the path of the offending value (a 422, never a 500 or a wrong number).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Protocol, TypeVar

import numpy as np

from service.core.arrays import describe
from service.core.errors import InvalidInput, Location, quoted, quoted_list
from service.core.intervals import check_confidence
from service.core.result import DEFAULT_CONFIDENCE
from service.core.state_batch import column, shared_keys

#: The version of the state format this code writes and reads.
STATE_VERSION: Final = 1
#: The keys of every state, all required.
STATE_KEYS: Final = ("version", "settings", "n", "n_scored", "accumulators")
#: The modules that register a kind, imported the first time a state is merged (they import this module).
KIND_MODULES: Final = ("service.core.score_state", "service.core.sequence_state")

Parsed = TypeVar("Parsed")


class StateError(InvalidInput, ValueError):
    """A state that cannot be merged: malformed, forged or incompatible; names the state's index and the path."""

    def __init__(self, path: Sequence[str | int], message: str, index: int | None = None) -> None:
        self.path = tuple(path)
        self.index = index
        super().__init__("states", message)

    @property
    def loc(self) -> Location:
        """``("states", index, *path)``: where the value is in the merge request."""
        return ("states", *(() if self.index is None else (self.index,)), *self.path)

    @property
    def where(self) -> str:
        """``states[3].accumulators.cross_entropy.weight`` and the like."""
        text = "states" if self.index is None else f"states[{self.index}]"
        for part in self.path:
            text += f"[{part}]" if isinstance(part, int) else f".{part}"
        return text


class StateKind(Protocol[Parsed]):
    """How one endpoint's states are read, merged, written and answered for."""

    def parse(self, state: Mapping[str, Any], index: int) -> Parsed:
        """The state at ``index`` of a merge, validated (envelope already checked); StateError when it is not valid."""
        ...

    def merge(self, a: Parsed, b: Parsed) -> Parsed:
        """The state of the union of the rows of ``a`` and ``b`` (compatible, checked by ``merge_states``)."""
        ...

    def to_state(self, parsed: Parsed) -> dict[str, Any]:
        """The JSON state of ``parsed``."""
        ...

    def summary(self, parsed: Parsed, confidence: float) -> dict[str, Any]:
        """The answer for ``parsed``'s rows, in the shape of the endpoint's answer without per-sample values."""
        ...


_KINDS: dict[str, StateKind[Any]] = {}


def register_kind(endpoint: str, kind: StateKind[Any]) -> None:
    """Make ``kind`` read and merge the states whose ``settings.endpoint`` is ``endpoint``."""
    _KINDS[endpoint] = kind


def kind_for(endpoint: str) -> StateKind[Any] | None:
    """The kind registered for ``endpoint`` (importing the kind modules first); None when there is none."""
    if not all(module in _IMPORTED for module in KIND_MODULES):
        for module in KIND_MODULES:
            importlib.import_module(module)
            _IMPORTED.add(module)
    return _KINDS.get(endpoint)


_IMPORTED: set[str] = set()


def array_keys(endpoint: Any) -> frozenset[str]:
    """The keys under which the states of ``endpoint`` hold lists of numbers that its kind also reads as float64
    arrays (a merge body's parser hands them over so, without a Python float per number: ``array_keys`` of the
    kind); none for an unknown endpoint, whose first state is refused anyway."""
    kind = kind_for(endpoint) if isinstance(endpoint, str) else None
    keys: frozenset[str] = getattr(kind, "array_keys", frozenset())
    return keys


def state_envelope(
    endpoint: str, settings: Mapping[str, Any], n: int, n_scored: int, accumulators: Any
) -> dict[str, Any]:
    """A state as every kind writes it: version, settings (the endpoint first), n, n_scored, accumulators."""
    return {
        "version": STATE_VERSION,
        "settings": {"endpoint": endpoint, **settings},
        "n": n,
        "n_scored": n_scored,
        "accumulators": accumulators,
    }


def merge_states(states: Sequence[Any], confidence: Any = DEFAULT_CONFIDENCE) -> dict[str, Any]:
    """Merge ``states`` into the answer for all their rows, with the merged ``state`` last.

    The envelope of each state is checked (a mapping with exactly ``version`` 1, ``settings`` naming a
    registered ``endpoint``, counts ``n`` ≥ ``n_scored`` ≥ 0, ``accumulators``), then its kind's own
    validation; every state must have the first one's endpoint, and every state of at least one row the
    settings of the first such state. ``confidence`` sets the intervals of the answer (it is not part of a
    state). A kind with ``parse_and_merge`` reads and merges all the states at once (the scoring kind: its
    accumulators are read in a few array passes over all of them); else the states are parsed one by one and
    merged by the kind's ``merge_all`` when it has one, else pairwise in a balanced tree (log₂ of their number).

    Raises StateError (a 422) naming the state's index and the offending value or setting.
    """
    level = check_confidence(confidence)
    if not isinstance(states, Sequence) or isinstance(states, str | bytes):
        raise StateError((), f"expected a list of states, got {describe(states)}")
    if not states:
        raise StateError((), "expected at least one state to merge, got an empty list")
    plain = _plain_envelopes(states)
    kind = None if plain is None else kind_for(plain)
    if kind is not None and hasattr(kind, "parse_and_merge"):
        # Envelopes all well-formed, of one endpoint and of the same settings (the usual merge): checked at once.
        merged = kind.parse_and_merge(states)
        return {**kind.summary(merged, level), "state": kind.to_state(merged)}
    endpoint = None
    kind = None
    parsed = []
    reference: tuple[int, Mapping[str, Any]] | None = None
    for index, state in enumerate(states):
        envelope = check_envelope(state, index)
        if endpoint is None:
            endpoint = envelope["endpoint"]
            kind = kind_for(endpoint)
            if kind is None:
                known = quoted_list(sorted(_KINDS))
                raise StateError(
                    ("settings", "endpoint"), f"no endpoint {quoted(endpoint)} has states; known: {known}", index
                )
        elif envelope["endpoint"] != endpoint:
            raise StateError(
                ("settings", "endpoint"),
                f"incompatible with states[0]: endpoint {quoted(envelope['endpoint'])}, not {quoted(endpoint)}",
                index,
            )
        assert kind is not None
        if state["n"] > 0:
            if reference is None:
                reference = (index, state["settings"])
            elif state["settings"] != reference[1]:  # equal dicts (the usual case) need no walk
                check_compatible(reference, state["settings"], index)
        if not hasattr(kind, "parse_and_merge"):
            parsed.append(kind.parse(state, index))
    assert kind is not None
    if hasattr(kind, "parse_and_merge"):  # a kind may read and merge all the states at once (the same result)
        merged = kind.parse_and_merge(states)
    else:
        merge_all = getattr(kind, "merge_all", None)  # a kind may merge many states at once (the same result)
        merged = merge_all(parsed) if merge_all is not None else fold(parsed, kind.merge)
    return {**kind.summary(merged, level), "state": kind.to_state(merged)}


def _plain_envelopes(states: Sequence[Any]) -> str | None:
    """The endpoint of ``states`` when every envelope passes ``check_envelope`` and every state has the first one's
    settings, checked in a few passes over all of them (by column: ``state_batch``); None otherwise (then they are
    checked one by one)."""
    if shared_keys(states) != _KEY_SET or shared_keys(states, ("accumulators",)) is None:
        return None
    settings = column(states, ("settings",))
    first = settings[0]
    endpoint = first.get("endpoint") if type(first) is dict else None
    if type(endpoint) is not str or not all(value is first or value == first for value in settings):
        return None
    versions = column(states, ("version",))
    if set(map(type, versions)) != {int} or set(versions) != {STATE_VERSION}:
        return None
    n, n_scored = column(states, ("n",)), column(states, ("n_scored",))
    if set(map(type, n)) | set(map(type, n_scored)) != {int} or min(n_scored) < 0 or max(n) >= 2**63:
        return None
    if any(scored > rows for scored, rows in zip(n_scored, n, strict=True)):
        return None
    return endpoint


_KEY_SET: Final = frozenset(STATE_KEYS)


def check_envelope(state: Any, index: int) -> dict[str, Any]:
    """The parts of a state every kind shares, checked: returns ``{"endpoint": ...}``; StateError otherwise."""
    if not isinstance(state, Mapping):
        raise StateError((), f"a state is a JSON object, got {describe(state)}", index)
    missing = [key for key in STATE_KEYS if key not in state]
    if missing:
        raise StateError((), f"missing key {quoted(missing[0])} (a state has {', '.join(STATE_KEYS)})", index)
    extra = [key for key in state if key not in STATE_KEYS]
    if extra:
        raise StateError((), f"unknown key {quoted(extra[0])} (a state has {', '.join(STATE_KEYS)})", index)
    version = state["version"]
    if not _is_int(version) or version != STATE_VERSION:
        raise StateError(
            ("version",), f"this service reads states of version {STATE_VERSION}, got {quoted(version)}", index
        )
    settings = state["settings"]
    if not isinstance(settings, Mapping):
        raise StateError(("settings",), f"expected a JSON object, got {describe(settings)}", index)
    endpoint = settings.get("endpoint")
    if not isinstance(endpoint, str):
        raise StateError(("settings", "endpoint"), f"expected the endpoint's name, got {describe(endpoint)}", index)
    n = count(state["n"], ("n",), index)
    n_scored = count(state["n_scored"], ("n_scored",), index)
    if n_scored > n:
        raise StateError(("n_scored",), f"{n_scored} scored rows is more than the state's n = {n} rows", index)
    if not isinstance(state["accumulators"], Mapping):
        raise StateError(("accumulators",), f"expected a JSON object, got {describe(state['accumulators'])}", index)
    return {"endpoint": endpoint}


def check_compatible(reference: tuple[int, Mapping[str, Any]], settings: Mapping[str, Any], index: int) -> None:
    """StateError naming the first setting in which ``settings`` differ from the reference state's."""
    first, expected = reference
    for name in dict.fromkeys([*expected, *settings]):
        if name not in settings or name not in expected or not _same(settings[name], expected[name]):
            theirs = quoted(settings.get(name)) if name in settings else "none"
            ours = quoted(expected.get(name)) if name in expected else "none"
            raise StateError(
                ("settings", name),
                f"incompatible with states[{first}]: {name} is {theirs} here, {ours} there; "
                "states merge only when they were scored with the same settings",
                index,
            )


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON values: 1 and 1.0 are equal numbers, but true is not 1, and a list is not a tuple's text."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[key], b[key]) for key in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, str) or isinstance(b, str):
        return type(a) is type(b) and a == b
    return bool(a == b)


T = TypeVar("T")


def fold(items: Sequence[T], merge: Callable[[T, T], T]) -> T:
    """``merge`` over ``items`` in a balanced binary tree (pairs, then pairs of pairs, …), left to right."""
    level = list(items)
    while len(level) > 1:
        level = [merge(level[i], level[i + 1]) if i + 1 < len(level) else level[i] for i in range(0, len(level), 2)]
    return level[0]


# --- validating a state's values: each names its path and the state's index ---


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def field(mapping: Any, key: str, path: Sequence[str | int], index: int) -> Any:
    """``mapping[key]``; StateError when ``mapping`` is not an object or lacks the key."""
    if not isinstance(mapping, Mapping):
        raise StateError(tuple(path), f"expected a JSON object, got {describe(mapping)}", index)
    if key not in mapping:
        raise StateError(tuple(path), f"missing key {quoted(key)}", index)
    return mapping[key]


def count(value: Any, path: Sequence[str | int], index: int) -> int:
    """A count: an integer ≥ 0 (within int64)."""
    if not _is_int(value) or not 0 <= value < 2**63:
        raise StateError(tuple(path), f"expected a count (an integer ≥ 0), got {quoted(value)}", index)
    return int(value)


def number(
    value: Any, path: Sequence[str | int], index: int, *, nullable: bool = False, nonnegative: bool = False
) -> float | None:
    """A finite number (≥ 0 when ``nonnegative``), or None when ``nullable``."""
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = "a number or null" if nullable else "a number"
        raise StateError(tuple(path), f"expected {kind}, got {describe(value)}", index)
    result = float(value) if isinstance(value, float) or abs(value) < 2**1024 else math.inf
    if not math.isfinite(result) or (nonnegative and result < 0):
        bound = "a finite number ≥ 0" if nonnegative else "a finite number"
        raise StateError(tuple(path), f"expected {bound}, got {quoted(value)}", index)
    return result


def number_list(value: Any, length: int | None, path: Sequence[str | int], index: int, **kinds: bool) -> list[Any]:
    """A list of ``length`` numbers (any length when None), each checked by ``number``."""
    if not isinstance(value, list):
        raise StateError(tuple(path), f"expected a list of numbers, got {describe(value)}", index)
    if length is not None and len(value) != length:
        raise StateError(tuple(path), f"expected {length} entries, got {len(value)}", index)
    if not kinds.get("nullable") and set(map(type, value)) <= _NUMBER_TYPES:
        # The common case, at C speed: every entry an int or float (no bool, no null); checked all at once.
        try:
            array = np.array(value, dtype=np.float64)
        except OverflowError:  # an integer beyond float64: the loop below says which
            array = None
        if array is not None and bool(np.isfinite(array).all()):
            allowed = not kinds.get("nonnegative") or not array.size or float(array.min()) >= 0
            if allowed:
                listed: list[Any] = array.tolist()
                return listed
    return [number(item, (*path, i), index, **kinds) for i, item in enumerate(value)]


_NUMBER_TYPES: Final = frozenset({int, float})
