"""score_many splits a dataset into chunks and merges the answers into exactly the one-request answer."""

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from client_servers import (
    assert_same_scores,
    serve_in_thread,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from in_process import asgi_transport

from service.api.app import create_app
from service.cli.local import score_locally
from service.client import AsyncClient, Client
from service.settings import Settings

RELATIVE = 1e-12


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """The real app on a real uvicorn server, for this module's tests."""
    yield from serve_in_thread(create_app(Settings()))


@pytest.fixture(scope="module")
def million() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """10^6 rows × 10 classes of logits, their labels and sample weights."""
    rng = np.random.default_rng(2026)
    n, c = 1_000_000, 10
    return rng.integers(0, c, n), rng.normal(size=(n, c)), rng.uniform(0.0, 2.0, n)


@pytest.mark.anyio
async def test_a_million_rows_in_chunks_equal_one_in_process_scoring(
    million: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    labels, logits, weights = million
    options: dict[str, Any] = {"prediction_type": "logits", "sample_weights": weights, "unit": "bits"}
    app = create_app(Settings())
    started = time.perf_counter()
    async with app.router.lifespan_context(app), AsyncClient("http://test", transport=asgi_transport(app)) as xent:
        merged = await xent.score_many(labels, logits, chunk_size=131_072, concurrency=2, progress=False, **options)
    elapsed = time.perf_counter() - started
    whole = score_locally(labels, logits, binary=False, options=options)
    assert_same_scores(merged, whole, rel=RELATIVE)
    assert merged.n == 1_000_000
    print(f"10^6 x 10 through score_many (ASGI, 8 chunks): {elapsed:.2f} s")


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunk_size=st.integers(min_value=20_000, max_value=1_000_000))
def test_a_million_rows_merge_exactly_for_any_chunk_size(
    server_url: str, million: tuple[np.ndarray, np.ndarray, np.ndarray], chunk_size: int
) -> None:
    labels, logits, weights = million
    labels, logits, weights = labels, logits[:, :3], weights  # 3 classes keep each example quick
    options: dict[str, Any] = {"prediction_type": "logits", "sample_weights": weights, "per_sample": False}
    with Client(server_url) as xent:
        merged = xent.score_many(labels % 3, logits, chunk_size=chunk_size, progress=False, **options)
    whole = _whole(labels % 3, logits, weights)
    assert_same_scores(merged, whole, rel=RELATIVE)


_WHOLE: dict[int, Any] = {}


def _whole(labels: np.ndarray, logits: np.ndarray, weights: np.ndarray) -> Any:
    """One in-process scoring of the 3-class million (computed once)."""
    if not _WHOLE:
        options = {"prediction_type": "logits", "sample_weights": weights, "per_sample": False}
        _WHOLE[0] = score_locally(labels, logits, binary=False, options=options)
    return _WHOLE[0]


@st.composite
def multiclass_cases(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Small datasets with every option that changes how rows weigh or what they warn about."""
    n = draw(st.integers(1, 120))
    c = draw(st.integers(2, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    predictions = rng.dirichlet(np.ones(c), n)
    off = rng.random(n) < 0.2  # some rows off 1 (warned about or renormalized)
    predictions[off] *= 0.9
    zeros = rng.random(n) < 0.1  # some probabilities 0 (clipped, or +inf with epsilon 0)
    predictions[zeros, 0] = 0.0
    soft = draw(st.booleans())
    options: dict[str, Any] = {
        "unit": draw(st.sampled_from(["nats", "bits", "hartleys"])),
        "label_smoothing": draw(st.sampled_from([0.0, 0.1])),
        "normalization": draw(st.sampled_from(["warn", "renormalize"])),
        "epsilon": draw(st.sampled_from(["auto", 0.0])),
    }
    if draw(st.booleans()):
        options["class_weights"] = rng.choice([0.0, 0.5, 1.0, 3.0], c).tolist()
    if draw(st.booleans()):
        options["sample_weights"] = rng.choice([0.0, 1.0, 2.5], n)
    if soft:
        labels = rng.dirichlet(np.ones(c), n)
    else:
        labels = rng.integers(0, c, n)
        if draw(st.booleans()):
            options["ignore_index"] = -100
            labels[rng.random(n) < draw(st.sampled_from([0.2, 1.0]))] = -100
    return labels, predictions, options


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=multiclass_cases(), chunks=st.integers(1, 12), data=st.data())
def test_chunks_merge_exactly_with_weights_ignored_rows_and_warnings(
    server_url: str, case: tuple[np.ndarray, np.ndarray, dict[str, Any]], chunks: int, data: st.DataObject
) -> None:
    labels, predictions, options = case
    chunk_size = max(1, -(-len(labels) // chunks))
    with Client(server_url, npz_min_values=data.draw(st.sampled_from([1, 10**9]))) as xent:
        merged = xent.score_many(labels, predictions, chunk_size=chunk_size, progress=False, **options)
    whole = score_locally(labels, predictions, binary=False, options=options)
    assert_same_scores(merged, whole, rel=RELATIVE)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(1, 100),
    k=st.sampled_from([None, 1, 3]),
    chunks=st.integers(1, 8),
    seed=st.integers(0, 2**32 - 1),
    pos_weight=st.sampled_from([None, 2.0]),
    weighted=st.booleans(),
)
def test_binary_chunks_merge_exactly(
    server_url: str, n: int, k: int | None, chunks: int, seed: int, pos_weight: float | None, weighted: bool
) -> None:

    rng = np.random.default_rng(seed)
    shape = (n,) if k is None else (n, k)
    labels, predictions = rng.integers(0, 2, shape).astype(float), rng.random(shape)
    options: dict[str, Any] = {"pos_weight": pos_weight, "unit": "bits"}
    if weighted:
        options["sample_weights"] = rng.choice([0.0, 1.0, 4.0], n)
    with Client(server_url) as xent:
        merged = xent.score_many(
            labels, predictions, binary=True, chunk_size=max(1, -(-n // chunks)), progress=False, **options
        )
    assert_same_scores(merged, score_locally(labels, predictions, binary=True, options=options), rel=RELATIVE)


def test_a_dataset_with_every_row_ignored_says_empty_once(server_url: str) -> None:
    labels = np.full(50, -100)
    with Client(server_url) as xent:
        merged = xent.score_many(labels, np.full((50, 2), 0.5), ignore_index=-100, chunk_size=10, progress=False)
    assert [w.code for w in merged.warnings] == ["EMPTY", "STDERR_UNDEFINED"]  # as one request says them
    assert (merged.n, merged.n_scored, merged.mean.cross_entropy, merged.sum.cross_entropy) == (50, 0, None, 0.0)


def test_chunk_size_comes_from_the_body_limit(server_url: str) -> None:
    from service.client.chunking import chunk_rows

    labels, predictions = np.zeros(10, dtype=np.int64), np.zeros((10, 1000))
    # 8,014 bytes a row (8,000 of predictions, 8 of label, a share of the archive overhead): 16 MiB chunks.
    assert chunk_rows(labels, predictions, {}, 64 * 2**20) == 2093
    assert chunk_rows(labels, np.zeros((10, 2)), {}, 64 * 2**20) == 131_072  # capped
    assert chunk_rows(labels, predictions, {}, 8000) == 1  # never 0


def test_progress_bar_counts_rows_when_asked(server_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with Client(server_url) as xent:
        xent.score_many([1] * 30, [[0.5, 0.5]] * 30, chunk_size=7, progress=True)
    assert "100%" in capsys.readouterr().err
    with Client(server_url) as xent:
        xent.score_many([1] * 30, [[0.5, 0.5]] * 30, chunk_size=7)  # not a terminal: silent
    assert capsys.readouterr().err == ""
