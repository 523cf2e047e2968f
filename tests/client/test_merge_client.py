"""`Client.merge` / `AsyncClient.merge` (issue 15): the states of answers the client got, merged by the service into
the answer of all their rows, read as that endpoint's answer; a forged state is the service's 422."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from client_servers import serve_in_thread

from service.api.app import create_app
from service.client import AsyncClient, Client, ProblemError
from service.client.results import Scores
from service.client.sequence_results import SequenceScores
from service.settings import Settings

pytestmark = pytest.mark.anyio

DATA = Path(__file__).resolve().parent.parent / "data"
COMPLETIONS = json.loads((DATA / "vllm_completions.json").read_text(encoding="utf-8"))
LOGPROBS = [choice["logprobs"] for choice in COMPLETIONS["choices"]]


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """The real app on a real uvicorn server, for this module's tests."""
    yield from serve_in_thread(create_app(Settings()))


def _shards(seed: int = 3) -> tuple[list[Any], list[Any], dict[str, Any]]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, 60)
    predictions = rng.dirichlet(np.ones(4), 60)
    options = {"groups": [f"g{g}" for g in rng.integers(0, 3, 60)], "calibration_bins": 5, "per_class": True}
    return labels.tolist(), predictions.tolist(), options


def test_the_states_of_shards_merge_into_the_answer_of_the_whole_batch(server_url: str) -> None:
    labels, predictions, options = _shards()
    with Client(server_url) as xent:
        whole = xent.cross_entropy(labels, predictions, per_sample=False, **options)
        parts = [
            xent.cross_entropy(
                labels[start:stop],
                predictions[start:stop],
                per_sample=False,
                groups=options["groups"][start:stop],
                calibration_bins=5,
                per_class=True,
            )
            for start, stop in ((0, 1), (1, 25), (25, 25), (25, 60))
        ]
        merged = xent.merge([part.state for part in parts], confidence=0.9)
        again = xent.merge([merged.state])
    assert isinstance(merged, Scores)
    assert merged.per_sample is None
    assert merged.n == whole.n == 60
    assert merged.mean.cross_entropy == pytest.approx(whole.mean.cross_entropy, rel=1e-12)
    assert merged.sum.cross_entropy == pytest.approx(whole.sum.cross_entropy, rel=1e-12)
    assert merged.stderr is not None
    assert whole.stderr is not None
    assert merged.stderr.cross_entropy == pytest.approx(whole.stderr.cross_entropy, rel=1e-9)
    assert merged.settings["confidence"] == 0.9  # the merge's own confidence sets the intervals
    assert merged.by_group is not None
    assert whole.by_group is not None
    assert merged.by_group.keys() == whole.by_group.keys() == {"g0", "g1", "g2"}
    assert merged.calibration is not None
    assert whole.calibration is not None
    counts = [b["count"] for b in merged.calibration["bins"]]
    assert counts == [b["count"] for b in whole.calibration["bins"]]
    assert sum(counts) == 60
    assert again.mean.cross_entropy == pytest.approx(merged.mean.cross_entropy, rel=1e-12)


def test_sequence_states_merge_into_sequence_scores(server_url: str) -> None:
    with Client(server_url) as xent:
        whole = xent.score_sequences(completions=LOGPROBS, score_until=-1)
        parts = [xent.score_sequences(completions=[logprobs], score_until=-1) for logprobs in LOGPROBS]
        merged = xent.merge([part.state for part in parts])
    assert isinstance(merged, SequenceScores)
    assert merged.per_document is None
    assert (merged.n_sequences, merged.n_tokens) == (whole.n_sequences, whole.n_tokens)
    assert merged.token.perplexity == pytest.approx(whole.token.perplexity, rel=1e-12)


def test_a_forged_state_is_the_services_422_naming_it(server_url: str) -> None:
    labels, predictions, _ = _shards()
    with Client(server_url) as xent:
        state = dict(xent.cross_entropy(labels, predictions, per_sample=False).state or {})
        with pytest.raises(ProblemError) as raised:
            xent.merge([state, {**state, "n": -1}])
        with pytest.raises(TypeError, match="the `state` of answers"):
            xent.merge([state, "not a state"])  # type: ignore[list-item]
    assert raised.value.status == 422
    assert "states[1].n" in str(raised.value)


async def test_the_async_client_merges_alike(server_url: str) -> None:
    labels, predictions, _ = _shards(5)
    async with AsyncClient(server_url) as xent:
        halves = [
            await xent.cross_entropy(labels[:30], predictions[:30]),
            await xent.cross_entropy(labels[30:], predictions[30:]),
        ]
        merged = await xent.merge([half.state for half in halves])
        whole = await xent.cross_entropy(labels, predictions)
    assert isinstance(merged, Scores)
    assert merged.mean.cross_entropy == pytest.approx(whole.mean.cross_entropy, rel=1e-12)
