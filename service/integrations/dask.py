"""Score a Dask array or dataframe partition by partition, and merge the partitions' states in a tree.

Each partition is scored where it lives: through an xent service (``url``: any replica, e.g. a Kubernetes
Service in front of several) or in the worker's own process (``url=None``, the service's core). Its answer's
``state`` (issue 15) goes back to the scheduler, not its rows; the states are merged ``split_every`` at a time
(``merge`` is associative and order-independent) into the state of the whole dataset, whose answer is exactly
that of one request over every row: means and sums to 1e-12, standard errors and intervals to 1e-9.

Needs the ``dask`` extra (``pip install 'xent[dask]'``). Runs on whatever scheduler is current: a
``distributed.Client`` when one is open, else Dask's default.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dask.array as da
from dask.delayed import delayed

from service.client import Client, Scores
from service.client.chunking import PER_ROW_OPTIONS
from service.core.contract import BINARY, MULTICLASS, UNCERTAINTY_OPTIONS
from service.core.state import merge_states

#: How many states one task of the tree merges.
SPLIT_EVERY = 8


def score_array(
    labels: da.Array,
    predictions: da.Array,
    *,
    url: str | None = None,
    binary: bool = False,
    api_key: str | None = None,
    split_every: int = SPLIT_EVERY,
    **options: Any,
) -> Scores:
    """The answer for every row of Dask arrays, scored partition by partition (row blocks of ``predictions``).

    ``labels`` (N, or N×C targets, N×K binary labels) and the per-row options (``sample_weights``,
    ``cluster_ids``, ``groups``; Dask arrays or None) are cut into the row blocks of ``predictions`` (N×C, or
    N / N×K binary); the other options are those of ``Client.cross_entropy`` (``binary_cross_entropy`` with
    ``binary=True``), the same for every partition. ``per_sample`` is always false: the answer is the merged
    one, without per-sample values.
    """
    rows = predictions.chunks[0]
    blocks: dict[str, list[Any]] = {"predictions": _row_blocks(predictions, rows), "labels": _row_blocks(labels, rows)}
    for name in PER_ROW_OPTIONS:
        value = options.pop(name, None)
        if value is not None:
            blocks[name] = _row_blocks(da.asarray(value), rows)
    confidence = options.get("confidence", UNCERTAINTY_OPTIONS["confidence"].default)
    endpoint = BINARY if binary else MULTICLASS
    states = [
        delayed(_partition_state, pure=True)(
            endpoint, url, api_key, {name: parts[i] for name, parts in blocks.items()}, options
        )
        for i in range(len(rows))
    ]
    state = _tree(states, split_every).compute()
    return Scores.from_summary(merge_states([state], confidence), None)


def score_frame(
    frame: Any,
    *,
    label: str,
    predictions: Sequence[str] | str,
    sample_weights: str | None = None,
    cluster_ids: str | None = None,
    groups: str | None = None,
    **options: Any,
) -> Scores:
    """``score_array`` over the columns of a Dask dataframe: ``label``, the ``predictions`` columns (C of them,
    or one for binary), and optional columns of per-row weights, cluster ids and groups."""
    columns = [predictions] if isinstance(predictions, str) else list(predictions)
    matrix = frame[columns].to_dask_array(lengths=True)
    per_row = {"sample_weights": sample_weights, "cluster_ids": cluster_ids, "groups": groups}
    for name, column in per_row.items():
        if column is not None:
            options[name] = frame[column].to_dask_array(lengths=True)
    labels = frame[label].to_dask_array(lengths=True)
    return score_array(labels, matrix[:, 0] if isinstance(predictions, str) else matrix, **options)


def _row_blocks(array: da.Array, rows: tuple[int, ...]) -> list[Any]:
    """The blocks of ``array`` cut at the row boundaries ``rows``, whole along every other axis, as Delayed."""
    whole = dict.fromkeys(range(1, array.ndim), -1)
    return list(array.rechunk({0: rows, **whole}).to_delayed().ravel())


def _partition_state(
    endpoint: str, url: str | None, api_key: str | None, parts: Mapping[str, Any], options: Mapping[str, Any]
) -> dict[str, Any]:
    """One partition's state: scored by the service at ``url``, or in this process by the core."""
    given = {**options, **{name: parts[name] for name in parts if name not in ("labels", "predictions")}}
    given["per_sample"] = False
    if url is None:
        from service.cli.local import score_locally  # the core, only in the workers that score in process

        scores = score_locally(parts["labels"], parts["predictions"], binary=endpoint == BINARY, options=given)
    else:
        with Client(url, api_key=api_key) as xent:
            score = xent.binary_cross_entropy if endpoint == BINARY else xent.cross_entropy
            scores = score(parts["labels"], parts["predictions"], **given)
    assert scores.state is not None
    return dict(scores.state)


def _merged_state(states: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The state of the rows of ``states``."""
    state: dict[str, Any] = merge_states(list(states))["state"]
    return state


def _tree(states: list[Any], split_every: int) -> Any:
    """The Delayed merge of ``states``, ``split_every`` at a time, level by level."""
    if split_every < 2:
        raise ValueError(f"split_every must be at least 2, got {split_every}")
    level = states
    while len(level) > 1:
        level = [
            delayed(_merged_state, pure=True)(level[i : i + split_every]) for i in range(0, len(level), split_every)
        ]
    return level[0]
