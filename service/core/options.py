"""Scoring options: plain frozen dataclasses, checked on construction."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from service.core.errors import InvalidOption

#: float64 machine epsilon, the clip scikit-learn's ``log_loss`` uses for float64 input.
MACHINE_EPSILON = float(np.finfo(np.float64).eps)


class Unit(StrEnum):
    """Unit of information: the base of the logarithm."""

    NATS = "nats"
    BITS = "bits"
    HARTLEYS = "hartleys"

    @property
    def log_base(self) -> float:
        """ln(base): divide a value in nats by this to express it in this unit."""
        return {Unit.NATS: 1.0, Unit.BITS: math.log(2.0), Unit.HARTLEYS: math.log(10.0)}[self]


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


def _coerce_enums(options: object) -> None:
    """Accept plain strings for the enum fields ("logits" for PredictionType.LOGITS)."""
    for name, kind in (("prediction_type", PredictionType), ("normalization", Normalization), ("unit", Unit)):
        value = getattr(options, name, None)
        if value is not None and not isinstance(value, kind):
            try:
                coerced = kind(value)
            except ValueError:
                allowed = ", ".join(repr(member.value) for member in kind)
                raise InvalidOption(name, f"must be one of {allowed}, got {value!r}") from None
            object.__setattr__(options, name, coerced)  # frozen dataclass: set once, at construction


def _check_common(label_smoothing: float, epsilon: float | None) -> None:
    if not 0.0 <= label_smoothing <= 1.0:
        raise InvalidOption("label_smoothing", f"must lie in [0, 1], got {label_smoothing!r}")
    if epsilon is not None and not 0.0 <= epsilon < 0.5:
        raise InvalidOption("epsilon", f'must be "auto" or a number in [0, 0.5), got {epsilon!r}')


@dataclass(frozen=True)
class MulticlassOptions:
    """Options of multi-class cross-entropy; ``epsilon=None`` means "auto"."""

    prediction_type: PredictionType = PredictionType.PROBABILITIES
    label_smoothing: float = 0.0
    epsilon: float | None = None
    normalization: Normalization = Normalization.WARN
    tolerance: float = 1e-3
    unit: Unit = Unit.NATS
    ignore_index: int | None = None

    def __post_init__(self) -> None:
        _coerce_enums(self)
        _check_common(self.label_smoothing, self.epsilon)
        if not 0.0 < self.tolerance < 1.0:
            raise InvalidOption("tolerance", f"must lie in (0, 1), got {self.tolerance!r}")

    @property
    def resolved_epsilon(self) -> float:
        """The numeric clip applied to probabilities."""
        return MACHINE_EPSILON if self.epsilon is None else self.epsilon


@dataclass(frozen=True)
class BinaryOptions:
    """Options of binary / multi-label cross-entropy; ``epsilon=None`` means "auto"."""

    prediction_type: PredictionType = PredictionType.PROBABILITIES
    label_smoothing: float = 0.0
    epsilon: float | None = None
    unit: Unit = Unit.NATS

    def __post_init__(self) -> None:
        _coerce_enums(self)
        _check_common(self.label_smoothing, self.epsilon)
        if self.prediction_type is PredictionType.LOG_PROBABILITIES:
            raise InvalidOption("prediction_type", 'must be "probabilities" or "logits" for binary cross-entropy')

    @property
    def resolved_epsilon(self) -> float:
        """The numeric clip applied to probabilities."""
        return MACHINE_EPSILON if self.epsilon is None else self.epsilon
