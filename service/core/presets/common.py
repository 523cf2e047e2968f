"""What every ``compat`` preset reads and returns: its inputs, checked once, and its rows.

A preset (``service.core.presets.pytorch`` and its siblings) is a function of ``MulticlassInputs`` (or
``BinaryInputs``) returning ``PresetRows``: the unweighted per-sample values, in nats, and how the
library reduces them. ``service.core.compat`` builds the inputs, resolves the options and turns the
rows into a ``ScoreResult``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.core.arrays import float_matrix
from service.core.errors import BadShape, InvalidOption, OutOfRange, counted, quoted
from service.core.labels import Targets, parse_labels
from service.core.options import BinaryOptions, MulticlassOptions
from service.core.result import ScoringWarning


def refuse(option: str, preset: str, reason: str) -> InvalidOption:
    """The 422 of an option ``preset`` cannot honour: it names the option, the preset and why."""
    return InvalidOption(option, f'cannot be honoured with compat "{preset}": {reason}')


@dataclass(frozen=True)
class MulticlassInputs:
    """A multi-class batch as every preset reads it; ``preds`` float64 and finite, ``dtype`` the input's."""

    preds: np.ndarray
    dtype: np.dtype[Any]  # float16, float32 or float64: what the library would compute in (NPZ keeps it; JSON: f64)
    targets: Targets  # indices (ignored rows 0, not scored) or distributions as given (each preset checks them)
    class_weights: np.ndarray | None
    sample_weights: np.ndarray | None
    options: MulticlassOptions


@dataclass(frozen=True)
class BinaryInputs:
    """A binary or multi-label batch as N×K arrays (K = 1 for N numbers); ``preds`` float64 and finite."""

    preds: np.ndarray
    dtype: np.dtype[Any]
    target: np.ndarray
    pos_weight: np.ndarray | None
    sample_weights: np.ndarray | None
    options: BinaryOptions
    vector: bool = False  # the predictions came as N numbers: an error names a row, not a column

    def as_sent(self, values: np.ndarray) -> np.ndarray:
        """``values`` (N×K) in the shape the request sent, so that an error names its row and column as sent."""
        return values[:, 0] if self.vector else values


@dataclass
class PresetRows:
    """A preset's per-sample values (nats, unweighted: the library's ``reduction="none"``) and its reduction.

    mean of a quantity = Σ numeratorᵢ / ``denominator``; the numerator of KL and H is ``weights``·value, that
    of CE is ``ce_numerator`` when the library weighs it otherwise (PyTorch's class weights), else
    ``weights``·CE. ``weights`` are also the rows' weights in the accuracy and the standard errors.
    """

    cross_entropy: np.ndarray
    kl_divergence: np.ndarray
    entropy: np.ndarray
    correct: np.ndarray
    scored: np.ndarray
    weights: np.ndarray
    denominator: float
    ce_numerator: np.ndarray | None = None
    warnings: list[ScoringWarning] = field(default_factory=list)


def ones_or(weights: np.ndarray | None, n: int) -> np.ndarray:
    """``weights``, or N ones."""
    return np.ones(n) if weights is None else weights


def xlogy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x·log y, 0 where x = 0 (``scipy.special.xlogy``, which the core does not import: SciPy is test-only)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x == 0, 0.0, x * np.log(y))


def rel_entr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x·log(x/y) for x, y > 0; 0 for x = 0, y ≥ 0; +inf otherwise (``scipy.special.rel_entr``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.where((x > 0) & (y > 0), x * np.log(x / y), np.inf)
    return np.where((x == 0) & (y >= 0), 0.0, value)


def entr(x: np.ndarray) -> np.ndarray:
    """−x·log x for x > 0, 0 at 0, −inf below (``scipy.special.entr``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.where(x > 0, -x * np.log(x), -np.inf)
    return np.where(x == 0, 0.0, value)


def entropy_rows(target: np.ndarray) -> np.ndarray:
    """H(y) = −Σ_c y_c·log y_c per row (0·log 0 = 0)."""
    return -xlogy(target, target).sum(axis=1)


def one_hot(targets: Targets, n: int, n_classes: int) -> np.ndarray:
    """The N×C target of class indices (rows of ignored labels are one-hot on class 0, and not scored)."""
    if targets.distributions is not None:
        return targets.distributions
    assert targets.indices is not None
    target = np.zeros((n, n_classes))
    target[np.arange(n), targets.indices] = 1.0
    return target


def true_class(targets: Targets) -> np.ndarray:
    """The class each row's accuracy is measured against: the label, or the argmax of the unsmoothed target."""
    if targets.indices is not None:
        return targets.indices
    assert targets.distributions is not None
    return targets.distributions.argmax(axis=1)


def targets_as_given(labels: Any, n: int, n_classes: int | None, names: Any, options: MulticlassOptions) -> Targets:
    """Labels as a library that checks no target row reads them: indices and names as xent checks them
    (in range, known), target rows only for their shape (PyTorch and Keras accept rows off 1, even negative)."""
    rows = isinstance(labels, np.ndarray) and labels.dtype.kind == "f" and labels.ndim == 2
    rows = rows or (isinstance(labels, list) and n > 0 and len(labels) == n and isinstance(labels[0], list))
    if not rows:
        return parse_labels(labels, n, n_classes, names, options)
    if options.ignore_index is not None:
        raise InvalidOption("ignore_index", "applies only to class-index labels, not to probability rows")
    target = float_matrix(labels, "labels")
    if target.shape[1] != n_classes:
        raise BadShape(
            "labels",
            f"rows have {counted(target.shape[1], 'value')} but predictions have {counted(n_classes or 0, 'class')}",
            row=0,
        )
    return Targets("distributions", np.ones(n, dtype=bool), distributions=target)


def first_out_of_range(values: np.ndarray, bad: np.ndarray, field_name: str, message: str) -> OutOfRange:
    """OutOfRange at the first true entry of ``bad`` (``message`` formats ``{value}``)."""
    where = tuple(int(i) for i in np.argwhere(bad)[0])
    column = where[1] if len(where) > 1 else None
    return OutOfRange(field_name, message.format(value=quoted(float(values[where]))), row=where[0], column=column)
