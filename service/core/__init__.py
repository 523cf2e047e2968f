"""The scoring core: pure NumPy, no web imports.

``score_multiclass`` and ``score_binary`` take decoded values (lists or arrays) and
options, check them, and return a ``ScoreResult``; bad input raises a subclass of
``ScoringError`` that names the field, row and column.

Inside: ``labels`` and ``predictions`` check the inputs, ``multiclass`` and ``binary`` hold the
reference path of each formula, ``kernels`` the blocked fast path that must equal it, and
``logspace`` the stable logarithms both use.
"""

from service.core.binary import score_binary
from service.core.errors import (
    BadShape,
    InvalidInput,
    InvalidOption,
    NotANumber,
    NotFinite,
    OutOfRange,
    RowsNotNormalized,
    ScoringError,
    UnknownClass,
)
from service.core.multiclass import score_multiclass
from service.core.options import MACHINE_EPSILON, BinaryOptions, MulticlassOptions, Normalization, PredictionType, Unit
from service.core.result import Means, PerSample, Quantities, ScoreResult, ScoringWarning, WarningCode

__all__ = [
    "MACHINE_EPSILON",
    "BadShape",
    "BinaryOptions",
    "InvalidInput",
    "InvalidOption",
    "Means",
    "MulticlassOptions",
    "Normalization",
    "NotANumber",
    "NotFinite",
    "OutOfRange",
    "PerSample",
    "PredictionType",
    "Quantities",
    "RowsNotNormalized",
    "ScoreResult",
    "ScoringError",
    "ScoringWarning",
    "Unit",
    "UnknownClass",
    "WarningCode",
    "score_binary",
    "score_multiclass",
]
