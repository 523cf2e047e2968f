"""The per-sequence options of ``/v1/sequence-cross-entropy`` read and checked: ``score_from`` / ``score_until``
(one integer or S), ``num_bytes`` / ``num_words`` (S counts) and ``document_ids`` (S strings or integers, in
order of first appearance). Each refusal names the option and, where it can, the sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from service.core.arrays import describe
from service.core.errors import BadShape, NotANumber, OutOfRange, counted, quoted
from service.core.sequence_forms import sequence_error


def per_sequence(value: Any, field: str, count: int, default: int | None, *, negative: bool) -> Any:
    """An option given as one integer or S integers, as an int64 array of S (the default when None)."""
    if value is None:
        return None if default is None else np.full(count, default, dtype=np.int64)
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iu":
        value = int(value)  # an NPZ member holding one integer, for every sequence
    if isinstance(value, int) and not isinstance(value, bool):
        array = np.full(count, value, dtype=np.int64) if abs(value) < 2**62 else None
        if array is None:
            raise OutOfRange(field, f"{quoted(value)} is too large")
    else:
        array = integers(value, field, count)
    if not negative:
        bad = np.flatnonzero(array < 0)
        if bad.size:
            index = int(bad[0])
            message = f"{int(array[index])} is negative; positions start at 0"
            raise (
                sequence_error(OutOfRange, field, index, None, message)
                if array.ndim and not isinstance(value, int)
                else OutOfRange(field, message)
            )
    return array


#: Per-sequence integers (positions, byte and word counts) stay below 2^62 in size, in JSON and NPZ alike.
_LARGEST = 2**62


def _too_large(value: int) -> str:
    return f"{describe(value)} is too large: per-sequence integers must be below 2^62 in size"


def integers(value: Any, field: str, count: int) -> np.ndarray:
    """S integers from a JSON list or an integer NPZ array; BadShape for another length."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "iu" or value.ndim != 1:
            raise NotANumber(field, f"expected a 1-D integer array, got a {value.ndim}-D array of dtype {value.dtype}")
        # The same bound as JSON's, checked before the cast: a uint64 past 2^63 must not wrap to a negative.
        large = np.flatnonzero((value >= _LARGEST) | (value <= -_LARGEST))
        if large.size:
            at = int(large[0])
            raise sequence_error(NotANumber, field, at, None, _too_large(int(value[at])))
        array = value.astype(np.int64)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if type(item) is not int:
                message = f"expected an integer, got {describe(item)}"
                raise sequence_error(NotANumber, field, index, None, message)
            if abs(item) >= _LARGEST:
                raise sequence_error(NotANumber, field, index, None, _too_large(item))
        array = np.array(value, dtype=np.int64)
    else:
        raise BadShape(field, f"expected an integer or a list of S integers, got {describe(value)}")
    if array.shape[0] != count:
        raise BadShape(field, one_per_sequence(array.shape[0], count))
    return array


def one_per_sequence(values: int, count: int) -> str:
    """Why an array of ``values`` entries is not one per sequence: "has 2 values but there is 1 sequence"."""
    there = "there is" if count == 1 else "there are"
    return f"has {counted(values, 'value')} but {there} {counted(count, 'sequence')}; one per sequence"


def counts(value: Any, field: str, count: int) -> np.ndarray | None:
    """S non-negative integers (``num_bytes``, ``num_words``), or None."""
    if value is None:
        return None
    array = integers(value, field, count)
    bad = np.flatnonzero(array < 0)
    if bad.size:
        index = int(bad[0])
        raise sequence_error(OutOfRange, field, index, None, f"{int(array[index])} is negative; counts are >= 0")
    return array


def documents(document_ids: Any, count: int) -> tuple[list[Any], np.ndarray]:
    """The documents in order of first appearance, and each sequence's document; one per sequence without ids."""
    if document_ids is None:
        return list(range(count)), np.arange(count, dtype=np.int64)
    ids: Sequence[Any] = document_ids.tolist() if isinstance(document_ids, np.ndarray) else document_ids
    if isinstance(document_ids, np.ndarray) and (document_ids.dtype.kind not in "iuUS" or document_ids.ndim != 1):
        raise BadShape("document_ids", f"expected a 1-D array of integers or strings, got dtype {document_ids.dtype}")
    if not isinstance(ids, list):
        raise BadShape("document_ids", f"expected a list of S strings or integers, got {describe(ids)}")
    if len(ids) != count:
        raise BadShape("document_ids", one_per_sequence(len(ids), count))
    index_of: dict[Any, int] = {}
    documents = np.empty(count, dtype=np.int64)
    for sequence, key in enumerate(ids):
        if type(key) not in (str, int, bytes):
            message = f"expected a string or an integer, got {describe(key)}"
            raise sequence_error(NotANumber, "document_ids", sequence, None, message)
        if type(key) is int and not -(2**63) <= key < 2**63:  # echoed in per_document: JSON writes int64 at most
            raise sequence_error(OutOfRange, "document_ids", sequence, None, f"{quoted(key)} is outside int64")
        if type(key) is bytes:
            key = key.decode("utf-8", "replace")
        documents[sequence] = index_of.setdefault(key, len(index_of))
    return list(index_of), documents
