"""A comparison's baseline predictions, scored as the model's are: what the core says of ``predictions`` there is
said of ``baseline_predictions``. The service's ``/compare`` routes and ``xent score --baseline-predictions`` both
score the baseline inside ``scoring_baseline``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from service.core.errors import BadShape, InvalidInput


def array_shape(array: Any) -> tuple[int, ...]:
    """The shape of a decoded array, read from its first row when it is a list (the core checks the rest)."""
    if isinstance(array, np.ndarray):
        return array.shape
    if isinstance(array, list) and array and isinstance(array[0], list):
        return (len(array), len(array[0]))
    return (len(array),) if isinstance(array, list) else ()


@contextmanager
def scoring_baseline(baseline: Any, predictions: Any) -> Iterator[None]:
    """Check that ``baseline`` has the shape of the (already scored) ``predictions``, then let the caller score it:
    an error the core raises about ``predictions`` in the block is raised about ``baseline_predictions``.

    >>> with scoring_baseline([[0.5, 0.5]], [[0.2, 0.8], [0.6, 0.4]]):
    ...     pass
    Traceback (most recent call last):
    service.core.errors.BadShape: baseline_predictions: has shape 1×2 but predictions have shape 2×2
    """
    shapes = array_shape(baseline), array_shape(predictions)
    if shapes[0] != shapes[1]:
        shown = ["×".join(map(str, shape)) or "a scalar" for shape in shapes]
        raise BadShape("baseline_predictions", f"has shape {shown[0]} but predictions have shape {shown[1]}")
    try:
        yield
    except InvalidInput as error:
        if error.field == "predictions":
            raise type(error)("baseline_predictions", error.message, row=error.row, column=error.column) from None
        raise
