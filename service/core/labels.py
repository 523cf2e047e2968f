"""Labels: class indices, class names or target distributions, checked against the predictions' shape.

``parse_labels`` classifies the labels and checks them (an index in range, a known name, a
target row that is a distribution), so that the scoring paths read only clean targets.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from service.core.arrays import describe, float_matrix
from service.core.contract import label_array_refusal
from service.core.errors import (
    BadShape,
    InvalidInput,
    InvalidOption,
    OutOfRange,
    RowsNotNormalized,
    UnknownClass,
    counted,
    quoted,
    quoted_list,
    rows_off,
)
from service.core.options import MulticlassOptions, Normalization


class Targets(NamedTuple):
    """Labels in one of two forms: hard class indices, or N×C target distributions."""

    form: str  # "class_indices" | "class_names" | "distributions"
    scored: np.ndarray  # bool (N,): False on rows equal to ignore_index
    indices: np.ndarray | None = None  # int (N,), 0 on ignored rows
    distributions: np.ndarray | None = None  # float (N, C)
    all_scored: bool = True  # scored.all()


def class_names(classes: list[str] | None) -> list[str] | None:
    """Check that class names are unique strings."""
    if classes is None:
        return None
    seen: dict[str, int] = {}
    for position, name in enumerate(classes):
        if not isinstance(name, str):
            raise InvalidInput("classes", f"expected a class name (string), got {describe(name)}", row=position)
        if name in seen:
            raise InvalidInput(
                "classes", f"duplicate class name {quoted(name)} (also at position {seen[name]})", row=position
            )
        seen[name] = position
    return list(classes)


def number_of_classes(preds: np.ndarray, names: list[str] | None, class_weights: Any) -> int | None:
    """C from the predictions' width; for an empty batch, from classes or class_weights."""
    if preds.shape[0] == 0:
        if names is not None:
            return len(names)
        return len(class_weights) if isinstance(class_weights, list | np.ndarray) else None
    n_classes = preds.shape[1]
    if n_classes < 2:
        raise BadShape(
            "predictions",
            f"each row needs at least 2 classes (columns), got {n_classes}; "
            "for one probability per sample use binary cross-entropy",
        )
    if names is not None and len(names) != n_classes:
        raise BadShape(
            "classes", f"has {counted(len(names), 'name')} but predictions have {counted(n_classes, 'column')}"
        )
    return n_classes


def parse_labels(
    labels: Any, n: int, n_classes: int | None, names: list[str] | None, options: MulticlassOptions
) -> Targets:
    """Classify and check the labels: indices, names or distributions."""
    if isinstance(labels, np.ndarray):
        labels = _labels_from_array(labels)
    if not isinstance(labels, list | np.ndarray):
        raise BadShape(
            "labels", f"expected an array (class indices, class names or probability rows), got {describe(labels)}"
        )
    if len(labels) != n:
        raise BadShape("labels", f"has {counted(len(labels), 'entry')} but predictions have {counted(n, 'row')}")
    if n == 0:
        return Targets("class_indices", np.zeros(0, dtype=bool), indices=np.zeros(0, dtype=np.int64))
    if isinstance(labels, np.ndarray):
        if labels.dtype.kind in "iu":
            return _index_targets(labels, n_classes, options)
        return _distribution_targets(labels, n_classes, options)
    first = labels[0]
    if isinstance(first, list):
        return _distribution_targets(labels, n_classes, options)
    if type(first) is str:
        return _name_targets(labels, names, options)
    if type(first) is int:
        return _index_targets(labels, n_classes, options)
    raise InvalidInput(
        "labels", f"expected a class index, a class name or a row of probabilities, got {describe(first)}", row=0
    )


def _labels_from_array(labels: np.ndarray) -> Any:
    """Labels from a NumPy array (binary transport): integer indices, names, or float rows."""
    refusal = label_array_refusal(labels.dtype.kind, labels.ndim, str(labels.dtype))
    if refusal is not None:
        raise BadShape("labels", refusal)
    return labels.astype(str).tolist() if labels.dtype.kind in "US" else labels


def _require_one_kind(labels: list[Any], kind: type, what: str) -> None:
    """Raise at the first label whose type differs from ``kind`` (the type of row 0)."""
    if set(map(type, labels)) == {kind}:
        return
    for row, value in enumerate(labels):
        if type(value) is not kind:
            raise InvalidInput(
                "labels", f"expected {what} like row 0, got {describe(value)}; all labels must be of one kind", row=row
            )


def _index_targets(labels: list[Any] | np.ndarray, n_classes: int | None, options: MulticlassOptions) -> Targets:
    """Class indices: each in [0, C), or equal to ``ignore_index`` (that row is not scored)."""
    if isinstance(labels, np.ndarray):
        if labels.dtype == np.uint64 and labels.size and labels.max() > np.iinfo(np.int64).max:
            row = int(np.argmax(labels > np.iinfo(np.int64).max))
            raise UnknownClass("labels", f"class index {quoted(int(labels[row]))} is out of range", row=row)
        indices = labels.astype(np.int64, copy=False)  # read, never written
    else:
        _require_one_kind(labels, int, "a class index")
        try:
            indices = np.array(labels, dtype=np.int64)
        except OverflowError:
            row = next(i for i, v in enumerate(labels) if not -(2**63) <= v < 2**63)
            raise UnknownClass("labels", f"class index {quoted(labels[row])} is out of range", row=row) from None
    assert n_classes is not None
    if options.ignore_index is None:
        scored = np.ones(indices.shape[0], dtype=bool)
        # The usual case, in one reduction: a negative index is huge as an unsigned one.
        if indices.view(np.uint64).max() < n_classes:
            return Targets("class_indices", scored, indices=indices)
    else:
        scored = indices != options.ignore_index
    bad = scored & ((indices < 0) | (indices >= n_classes))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        hint = "" if options.ignore_index is None else f" (ignore_index is {options.ignore_index})"
        raise UnknownClass("labels", f"class index {indices[row]} is out of range [0, {n_classes}){hint}", row=row)
    all_scored = bool(scored.all())
    return Targets(
        "class_indices", scored, indices=indices if all_scored else np.where(scored, indices, 0), all_scored=all_scored
    )


def _name_targets(labels: list[Any], names: list[str] | None, options: MulticlassOptions) -> Targets:
    """Class names, turned into the column index each has in ``classes``."""
    if names is None:
        raise InvalidInput("classes", "is required when labels are class names (it gives the column of each name)")
    if options.ignore_index is not None:
        raise InvalidOption("ignore_index", "applies only to class-index labels, not to class names")
    _require_one_kind(labels, str, "a class name")
    column = {name: position for position, name in enumerate(names)}
    try:
        indices = np.fromiter((column[name] for name in labels), dtype=np.int64, count=len(labels))
    except KeyError:
        row = next(i for i, name in enumerate(labels) if name not in column)
        message = f"unknown class {quoted(labels[row])}; classes are [{quoted_list(names)}]"
        raise UnknownClass("labels", message, row=row) from None
    return Targets("class_names", np.ones(len(labels), dtype=bool), indices=indices)


def _distribution_targets(labels: Any, n_classes: int | None, options: MulticlassOptions) -> Targets:
    """Target rows: C non-negative numbers summing to 1 (within the tolerance, or renormalized)."""
    if options.ignore_index is not None:
        raise InvalidOption("ignore_index", "applies only to class-index labels, not to probability rows")
    target = float_matrix(labels, "labels")
    assert n_classes is not None  # target rows come with at least one row, so predictions have a width
    if target.shape[1] != n_classes:
        raise BadShape(
            "labels",
            f"rows have {counted(target.shape[1], 'value')} but predictions have {counted(n_classes, 'class')}",
            row=0,
        )
    negative = np.argwhere(target < 0)
    if negative.size:
        row, column = (int(i) for i in negative[0])
        raise OutOfRange(
            "labels", f"target probability {quoted(float(target[row, column]))} is negative", row=row, column=column
        )
    sums = target.sum(axis=1)
    off = np.abs(sums - 1.0) > options.tolerance
    if off.any():
        row = int(np.flatnonzero(off)[0])
        if options.normalization is not Normalization.RENORMALIZE:
            raise RowsNotNormalized(
                "labels",
                f"target row sums to {sums[row]:.6g}, not 1 within tolerance {options.tolerance:g} "
                f'({rows_off(int(np.count_nonzero(off)))}); set normalization to "renormalize" to rescale targets',
                row=row,
            )
        zero = sums == 0
        if zero.any():
            row = int(np.flatnonzero(zero)[0])
            raise RowsNotNormalized("labels", "target row sums to 0 and cannot be renormalized", row=row)
    if options.normalization is Normalization.RENORMALIZE:
        target = target / sums[:, None]
    return Targets("distributions", np.ones(target.shape[0], dtype=bool), distributions=target)


def dense_target(targets: Targets, n: int, n_classes: int, smoothing: float) -> np.ndarray:
    """The N×C target y' = (1 − ε)·y + ε/C (one-hot y for hard labels)."""
    if targets.distributions is not None:
        target = targets.distributions
    else:
        assert targets.indices is not None
        target = np.zeros((n, n_classes))
        target[np.arange(n), targets.indices] = 1.0
    if smoothing:
        target = (1.0 - smoothing) * target + smoothing / n_classes
    return target
