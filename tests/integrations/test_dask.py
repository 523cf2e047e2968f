"""The Dask integration (issue 15 §4): a dataset scored partition by partition on a LocalCluster of 2 worker
processes, each partition through a live ``xent serve`` (or in the worker's process), its states merged in a
tree, gives the answer of one request over every row."""

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from live_server import running_xent
from whole_answers import same_numbers

dask_array = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
dask_dataframe = pytest.importorskip("dask.dataframe")
pandas = pytest.importorskip("pandas")

from service.client import Client  # noqa: E402 - after the skips: without Dask there is nothing to test
from service.integrations.dask import score_array, score_frame  # noqa: E402

N, C = 3000, 5
TOLERANCES = {"mean": 1e-12, "sum": 1e-12, "stderr": 1e-9, "ci": 1e-9}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A LocalCluster of 2 worker processes, and a client of it (the current scheduler while the tests run)."""
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as local,
        distributed.Client(local) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """One real ``xent serve``."""
    with running_xent() as live:
        yield live.url


def _data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(15)
    return {
        "labels": rng.integers(0, C, N),
        "predictions": rng.dirichlet(np.ones(C), N),
        "sample_weights": rng.choice([0.0, 1.0, 2.0], N),
        "cluster_ids": rng.integers(0, 40, N),
    }


def assert_same_answer(merged: Any, whole: Any) -> None:
    got, expected = merged.summary(), whole.summary()
    for key in ("n", "n_scored", "n_clusters", "unit"):
        assert got[key] == expected[key], key
    for block, rel in TOLERANCES.items():
        assert same_numbers(got[block], expected[block], rel), (block, got[block], expected[block])
    assert [(w["code"], w["count"]) for w in got["warnings"]] == [(w["code"], w["count"]) for w in expected["warnings"]]


def test_a_dask_array_scored_through_a_live_server_merges_to_one_request(cluster: Any, server: str) -> None:
    data = _data()
    chunks = (700, 700, 1, 0, 1599)  # uneven partitions, a partition of one row and an empty one
    arrays = {name: dask_array.from_array(value, chunks=(chunks, *value.shape[1:])) for name, value in data.items()}
    with Client(server) as xent:
        whole = xent.cross_entropy(
            data["labels"],
            data["predictions"],
            per_sample=False,
            sample_weights=data["sample_weights"],
            cluster_ids=data["cluster_ids"],
        )

    merged = score_array(
        arrays["labels"],
        arrays["predictions"],
        url=server,
        sample_weights=arrays["sample_weights"],
        cluster_ids=arrays["cluster_ids"],
        split_every=2,
    )

    assert merged.n_clusters == 40
    assert merged.stderr is not None
    assert merged.stderr.cross_entropy is not None
    assert_same_answer(merged, whole)


def test_a_dask_dataframe_scored_in_the_workers_processes_merges_to_one_request(cluster: Any, server: str) -> None:
    data = _data()
    columns = [f"q{c}" for c in range(C)]
    frame = pandas.DataFrame(data["predictions"], columns=columns)
    frame["label"] = data["labels"]
    frame["weight"] = data["sample_weights"]
    partitioned = dask_dataframe.from_pandas(frame, npartitions=6)
    with Client(server) as xent:
        whole = xent.cross_entropy(
            data["labels"], data["predictions"], per_sample=False, sample_weights=data["sample_weights"], unit="bits"
        )

    merged = score_frame(partitioned, label="label", predictions=columns, sample_weights="weight", unit="bits")

    assert_same_answer(merged, whole)
