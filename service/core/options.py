"""Scoring options: plain frozen dataclasses, checked on construction."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from service.core.contract import AUTO_EPSILON, BINARY, LOG_BASES, MULTICLASS, OPTIONS, Option
from service.core.errors import InvalidOption, quoted, quoted_list

#: float64 machine epsilon, the clip scikit-learn's ``log_loss`` uses for float64 input (``epsilon="auto"``).
MACHINE_EPSILON = AUTO_EPSILON

_MULTICLASS = OPTIONS[MULTICLASS]
_BINARY = OPTIONS[BINARY]


class Unit(StrEnum):
    """Unit of information: the base of the logarithm."""

    NATS = "nats"
    BITS = "bits"
    HARTLEYS = "hartleys"

    @property
    def log_base(self) -> float:
        """ln(base): divide a value in nats by this to express it in this unit."""
        return LOG_BASES[self.value]


class PredictionType(StrEnum):
    """What the prediction numbers are."""

    PROBABILITIES = "probabilities"
    LOGITS = "logits"
    LOG_PROBABILITIES = "log_probabilities"


class Normalization(StrEnum):
    """What to do with probability rows whose sum is off 1 by more than the tolerance."""

    WARN = "warn"
    RENORMALIZE = "renormalize"
    ERROR = "error"


#: The enum options' defaults, from the contract (computed once: a dataclass default is a constant).
_MULTICLASS_PREDICTION_TYPE = PredictionType(_MULTICLASS["prediction_type"].default)
_BINARY_PREDICTION_TYPE = PredictionType(_BINARY["prediction_type"].default)
_NORMALIZATION = Normalization(_MULTICLASS["normalization"].default)
_UNIT = Unit(_MULTICLASS["unit"].default)


def _coerce_enums(options: object) -> None:
    """Accept plain strings for the enum fields ("logits" for PredictionType.LOGITS)."""
    for name, kind in (("prediction_type", PredictionType), ("normalization", Normalization), ("unit", Unit)):
        value = getattr(options, name, None)
        if value is not None and not isinstance(value, kind):
            try:
                coerced = kind(value)
            except ValueError:
                allowed = quoted_list(member.value for member in kind)
                raise InvalidOption(name, f"must be one of {allowed}, got {quoted(value)}") from None
            object.__setattr__(options, name, coerced)  # frozen dataclass: set once, at construction


def _check_range(option: Option, value: float) -> None:
    """InvalidOption naming ``option`` unless ``value`` lies in its range."""
    if not option.contains(value):
        raise InvalidOption(option.name, f"must lie in {option.interval}, got {quoted(value)}")


def _check_common(options: Mapping[str, Option], label_smoothing: float, epsilon: float | None) -> None:
    _check_range(options["label_smoothing"], label_smoothing)
    if epsilon is not None and not options["epsilon"].contains(epsilon):
        interval = options["epsilon"].interval
        raise InvalidOption("epsilon", f'must be "auto" or a number in {interval}, got {quoted(epsilon)}')


class _Clip:
    """What both endpoints' options share: the ε clip, ``None`` standing for "auto"."""

    epsilon: float | None

    @property
    def resolved_epsilon(self) -> float:
        """The numeric clip applied to probabilities."""
        return MACHINE_EPSILON if self.epsilon is None else self.epsilon


@dataclass(frozen=True)
class MulticlassOptions(_Clip):
    """Options of multi-class cross-entropy; ``epsilon=None`` means "auto"."""

    prediction_type: PredictionType = _MULTICLASS_PREDICTION_TYPE
    label_smoothing: float = _MULTICLASS["label_smoothing"].default
    epsilon: float | None = None
    normalization: Normalization = _NORMALIZATION
    tolerance: float = _MULTICLASS["tolerance"].default
    unit: Unit = _UNIT
    ignore_index: int | None = _MULTICLASS["ignore_index"].default
    gradient: bool = _MULTICLASS["gradient"].default  # also return ∂ℓᵢ/∂xᵢ (service.core.gradient)

    def __post_init__(self) -> None:
        _coerce_enums(self)
        _check_common(_MULTICLASS, self.label_smoothing, self.epsilon)
        _check_range(_MULTICLASS["tolerance"], self.tolerance)


@dataclass(frozen=True)
class BinaryOptions(_Clip):
    """Options of binary / multi-label cross-entropy; ``epsilon=None`` means "auto"."""

    prediction_type: PredictionType = _BINARY_PREDICTION_TYPE
    label_smoothing: float = _BINARY["label_smoothing"].default
    epsilon: float | None = None
    unit: Unit = _UNIT
    gradient: bool = _BINARY["gradient"].default  # also return ∂ℓᵢ/∂xᵢ (service.core.gradient)

    def __post_init__(self) -> None:
        _coerce_enums(self)
        _check_common(_BINARY, self.label_smoothing, self.epsilon)
        if self.prediction_type is PredictionType.LOG_PROBABILITIES:
            raise InvalidOption("prediction_type", 'must be "probabilities" or "logits" for binary cross-entropy')
