"""Merging chunks whose sums or weights overflow float64 gives the one-request answer: the same means,
the same nulls, the same AGGREGATE_OVERFLOW warning (issue 12, item 8). The chunks are scored in process,
as the service would score them."""

from typing import Any

import numpy as np
import pytest
from client_servers import assert_same_scores

from service.cli.local import score_locally
from service.client.chunking import Batch, merge
from service.core.contract import BINARY, MULTICLASS

RELATIVE = 1e-14
THREE = np.array([[0.2, 0.3, 0.5]] * 6)


def _chunked(endpoint: Any, labels: Any, predictions: Any, size: int, **options: Any):
    """The merged answer of ``size``-row chunks, and the answer of one request over every row."""
    batch = Batch.of(endpoint, labels, predictions, options)
    binary = endpoint == BINARY
    chunks = []
    for start, stop in batch.spans(size):
        part = batch.rows(start, stop)
        chunks.append(
            part.chunk(start, score_locally(part.labels, part.predictions, binary=binary, options=part.options))
        )
    return merge(chunks), score_locally(labels, predictions, binary=binary, options=options)


@pytest.mark.parametrize("size", [1, 2, 4])
def test_chunks_weighing_1e308_per_row_merge_to_the_exact_mean(size):
    # Chunks of 1 row: finite chunk sums and weights whose totals overflow; of 2 or more: null chunk sums.
    merged, whole = _chunked(MULTICLASS, [0, 1] * 3, THREE, size, sample_weights=[1e308] * 6)

    assert merged.mean.cross_entropy == pytest.approx(1.4067053583800182, rel=1e-15)
    assert merged.sum.cross_entropy is None
    assert [w.code for w in merged.warnings] == ["AGGREGATE_OVERFLOW"]  # standard errors merge (issue 15)
    assert_same_scores(merged, whole, rel=RELATIVE)


@pytest.mark.parametrize("size", [1, 3])
def test_chunks_with_class_weights_times_sample_weights_past_float64_merge_exactly(size):
    options = {"sample_weights": [1e308] * 6, "class_weights": [10.0, 10.0, 1.0], "unit": "bits"}

    merged, whole = _chunked(MULTICLASS, [0, 1, 2, 0, 1, 2], THREE, size, **options)

    assert_same_scores(merged, whole, rel=RELATIVE)


@pytest.mark.parametrize("size", [1, 2])
def test_binary_chunks_weighing_1e308_merge_exactly(size):
    merged, whole = _chunked(BINARY, [1.0, 0.0, 1.0, 0.0], [0.2, 0.3, 0.6, 0.9], size, sample_weights=[1e308] * 4)

    assert_same_scores(merged, whole, rel=RELATIVE)


def test_a_perplexity_that_overflows_only_for_the_whole_dataset_is_named_once():
    # Chunk 0 has a mean of 800 nats, chunk 1 of 0.69: only the first chunk's perplexity overflows,
    # and the dataset's mean (400 nats) does not.
    merged, whole = _chunked(MULTICLASS, [1, 0], [[800.0, 0.0, 0.0], [0.0, 0.0, 0.0]], 1, prediction_type="logits")

    assert merged.mean.perplexity is not None
    assert merged.warnings == ()  # the standard errors of the 2 rows merge from the chunks' states (issue 15)
    assert_same_scores(merged, whole, rel=RELATIVE)


def test_a_perplexity_overflow_in_every_chunk_is_named_once():
    merged, whole = _chunked(MULTICLASS, [1, 1, 1], [[800.0, 0.0, 0.0]] * 3, 1, prediction_type="logits")

    assert [(w.code, w.count, w.rows) for w in merged.warnings] == [("AGGREGATE_OVERFLOW", 0, ())]
    assert_same_scores(merged, whole, rel=RELATIVE)


def test_an_infinite_row_among_chunks_weighing_1e308_is_non_finite_not_an_overflow():
    predictions = np.array([[0.2, 0.3, 0.5], [0.0, 1.0, 0.0], [0.2, 0.3, 0.5], [0.2, 0.3, 0.5]])
    options = {"sample_weights": [1e308] * 4, "epsilon": 0.0}

    merged, whole = _chunked(MULTICLASS, [0, 0, 1, 2], predictions, 2, **options)

    assert merged.mean.cross_entropy is None
    assert [(w.code, w.count, w.rows) for w in merged.warnings] == [("NON_FINITE", 1, (1,))]  # rows renumbered
    assert_same_scores(merged, whole, rel=RELATIVE)
