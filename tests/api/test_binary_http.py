"""POST /v1/binary-cross-entropy: binary (N) and multi-label (N×K) answers, whole."""

import math
from typing import Any

import httpx
import pytest
from whole_answers import (
    EMPTY_WARNING,
    MACHINE_EPSILON,
    NO_BREAKDOWNS,
    NO_SPREAD,
    NON_FINITE_MESSAGE,
    PERPLEXITY_OVERFLOW,
    close,
    spread,
    stderr_undefined,
    without_state,
)

from service.api.schemas import BinaryCrossEntropyResponse

pytestmark = pytest.mark.anyio

URL = "/v1/binary-cross-entropy"
LN2 = math.log(2.0)

DEFAULT_SETTINGS: dict[str, Any] = {
    "compat": "xent",
    "prediction_type": "probabilities",
    "unit": "nats",
    "epsilon": MACHINE_EPSILON,
    "epsilon_applies": True,
    "label_smoothing": 0.0,
    "pos_weight": None,
    "sample_weights": False,
    "labels_per_sample": 1,
    "per_sample": True,
    "gradient": False,
    "confidence": 0.95,
}


def bernoulli_entropy(p: float) -> float:
    """H(p) = −p·ln p − (1 − p)·ln(1 − p), in nats."""
    return -sum(x * math.log(x) for x in (p, 1 - p) if x > 0)


def answer(
    cross_entropy: list[float | None],
    kl_divergence: list[float | None],
    entropy: list[float],
    *,
    accuracy: float,
    correct: list[float] | None = None,
    weights: list[float] | None = None,
    base: float = 1.0,
    warnings: list[dict[str, Any]] | None = None,
    per_sample: bool = True,
    **settings: Any,
) -> dict[str, Any]:
    """The whole expected answer from per-sample values in nats (None = +infinity)."""
    weights = weights or [1.0] * len(cross_entropy)
    total = sum(weights)

    def weighted(values: list[float | None]) -> float | None:
        if any(v is None for v in values):
            return None
        return sum(w * v for w, v in zip(weights, values, strict=True))  # type: ignore[operator,misc]

    sums = [weighted(cross_entropy), weighted(kl_divergence), weighted(entropy)]  # type: ignore[arg-type]
    means = [None if s is None else s / total for s in sums]

    def shown(value: float | None) -> Any:
        return None if value is None else close(value / base)

    n = len(cross_entropy)
    means_nats = {
        "cross_entropy": means[0],
        "kl_divergence": means[1],
        "entropy": means[2],
        "accuracy": accuracy if total else None,
    }
    rows = {
        "cross_entropy": cross_entropy,
        "kl_divergence": kl_divergence,
        "entropy": entropy,
        "accuracy": correct or [accuracy] * n,  # every row alike unless the test says otherwise
    }
    weighed = sum(1 for w in weights if w > 0)
    return {
        "n": n,
        "n_scored": n,
        "n_clusters": None,
        "unit": settings.get("unit", "nats"),
        "mean": {
            "cross_entropy": shown(means[0]),
            "kl_divergence": shown(means[1]),
            "entropy": shown(means[2]),
            "perplexity": None if means[0] is None or means[0] > 709.78 else close(math.exp(means[0])),
            "accuracy": close(accuracy),
        },
        "sum": {"cross_entropy": shown(sums[0]), "kl_divergence": shown(sums[1]), "entropy": shown(sums[2])},
        **NO_BREAKDOWNS,
        "per_sample": {
            "cross_entropy": [shown(v) for v in cross_entropy],
            "kl_divergence": [shown(v) for v in kl_divergence],
            "entropy": [shown(v) for v in entropy],
        }
        if per_sample
        else None,
        **spread(rows, weights, means_nats, base),  # type: ignore[arg-type]
        "warnings": [*(warnings or []), *([stderr_undefined(weighed)] if weighed < 2 else [])],
        "settings": {**DEFAULT_SETTINGS, "per_sample": per_sample, **settings},
    }


async def score(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(URL, json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    BinaryCrossEntropyResponse.model_validate_json(response.content)
    return without_state(response.json())


async def test_binary_example_scores_mean_0_279777(client: httpx.AsyncClient) -> None:
    ce = [-math.log(0.9), -math.log(0.8), -math.log(0.6)]

    result = await score(client, {"labels": [0, 1, 1], "predictions": [0.1, 0.8, 0.6]})

    assert result == answer(ce, ce, [0.0, 0.0, 0.0], accuracy=1.0)
    assert round(result["mean"]["cross_entropy"], 6) == 0.279777


async def test_multi_label_rows_score_the_mean_over_their_labels(client: httpx.AsyncClient) -> None:
    body = {"labels": [[1, 0], [0, 1]], "predictions": [[0.8, 0.1], [0.5, 0.5]]}
    ce = [(-math.log(0.8) - math.log(0.9)) / 2, LN2]

    # Row 1's second label sits at 0.5, which is not on the positive side: 3 of 4 labels are right.
    assert await score(client, body) == answer(
        ce, ce, [0.0, 0.0], accuracy=0.75, correct=[1.0, 0.5], labels_per_sample=2
    )


async def test_logit_minus_1000_on_a_positive_label_costs_exactly_1000_nats(client: httpx.AsyncClient) -> None:
    body = {"labels": [1], "predictions": [-1000], "prediction_type": "logits"}

    result = await score(client, body)

    assert result == answer(
        [1000.0],
        [1000.0],
        [0.0],
        accuracy=0.0,
        prediction_type="logits",
        epsilon_applies=False,
        warnings=[{"code": "AGGREGATE_OVERFLOW", "message": PERPLEXITY_OVERFLOW, "count": 0, "rows": []}],
    )
    assert result["mean"]["cross_entropy"] == 1000.0


async def test_logits_go_through_the_sigmoid(client: httpx.AsyncClient) -> None:
    # σ(ln 3) = 3/4, σ(0) = 1/2.
    body = {"labels": [1, 0], "predictions": [math.log(3.0), 0.0], "prediction_type": "logits"}
    ce = [-math.log(0.75), LN2]

    assert await score(client, body) == answer(
        ce, ce, [0.0, 0.0], accuracy=1.0, prediction_type="logits", epsilon_applies=False
    )


async def test_soft_labels_score_bernoulli_entropy_plus_kl(client: httpx.AsyncClient) -> None:
    body = {"labels": [0.3, 0.5], "predictions": [0.3, 0.25]}
    kl_row_1 = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)

    assert await score(client, body) == answer(
        [bernoulli_entropy(0.3), LN2 + kl_row_1],
        [0.0, kl_row_1],
        [bernoulli_entropy(0.3), LN2],
        # 0.3 and 0.3 both sit on the negative side; 0.5 is not above 0.5 and neither is 0.25.
        accuracy=1.0,
    )


async def test_a_single_pos_weight_multiplies_the_positive_term_of_every_label(client: httpx.AsyncClient) -> None:
    body = {"labels": [1], "predictions": [0.5], "pos_weight": 2}

    # CE = −2·ln 0.5 = 2 ln 2; KL stays unweighted.
    assert await score(client, body) == answer([2 * LN2], [LN2], [0.0], accuracy=0.0, pos_weight=[2.0])


async def test_a_pos_weight_per_label(client: httpx.AsyncClient) -> None:
    body = {"labels": [[1, 0], [0, 1]], "predictions": [[0.8, 0.1], [0.5, 0.5]], "pos_weight": [2, 0.5]}
    ce = [(-2 * math.log(0.8) - math.log(0.9)) / 2, (LN2 + 0.5 * LN2) / 2]
    kl = [(-math.log(0.8) - math.log(0.9)) / 2, LN2]

    assert await score(client, body) == answer(
        ce, kl, [0.0, 0.0], accuracy=0.75, correct=[1.0, 0.5], pos_weight=[2.0, 0.5], labels_per_sample=2
    )


async def test_label_smoothing_pulls_labels_towards_one_half(client: httpx.AsyncClient) -> None:
    # y' = 1·0.8 + 0.1 = 0.9; against q = 0.5 CE is ln 2 = 1 bit.
    body = {"labels": [1], "predictions": [0.5], "label_smoothing": 0.2, "unit": "bits"}
    entropy = bernoulli_entropy(0.9)

    result = await score(client, body)

    assert result == answer([LN2], [LN2 - entropy], [entropy], accuracy=0.0, base=LN2, label_smoothing=0.2, unit="bits")
    assert result["mean"]["cross_entropy"] == close(1.0)


async def test_sample_weights_weigh_rows_in_the_aggregates_only(client: httpx.AsyncClient) -> None:
    body = {"labels": [1, 1], "predictions": [0.5, 0.25], "sample_weights": [1, 3]}
    ce = [LN2, math.log(4.0)]

    result = await score(client, body)

    assert result == answer(ce, ce, [0.0, 0.0], accuracy=0.0, weights=[1, 3], sample_weights=True)
    assert result["mean"]["cross_entropy"] == close((LN2 + 3 * math.log(4.0)) / 4)


@pytest.mark.parametrize(("unit", "base"), [("nats", 1.0), ("bits", LN2), ("hartleys", math.log(10.0))])
async def test_unit_divides_every_value_but_perplexity(client: httpx.AsyncClient, unit: str, base: float) -> None:
    body = {"labels": [1], "predictions": [0.25], "unit": unit}
    ce = [math.log(4.0)]

    result = await score(client, body)

    assert result == answer(ce, ce, [0.0], accuracy=0.0, base=base, unit=unit)
    assert result["mean"]["perplexity"] == close(4.0)


async def test_default_epsilon_clips_a_zero_probability_on_a_positive_label(client: httpx.AsyncClient) -> None:
    body = {"labels": [1, 0], "predictions": [0.0, 0.25]}
    ce = [-math.log(MACHINE_EPSILON), -math.log(0.75)]

    assert await score(client, body) == answer(
        ce,
        ce,
        [0.0, 0.0],
        accuracy=0.5,
        correct=[0.0, 1.0],
        warnings=[
            {
                "code": "CLIPPED",
                "message": "probabilities outside [epsilon, 1 - epsilon] (epsilon = 2.22045e-16) were clipped "
                "before the logarithm where the label gives them weight",
                "count": 1,
                "rows": [0],
            }
        ],
    )


async def test_a_numeric_epsilon_is_the_clip(client: httpx.AsyncClient) -> None:
    body = {"labels": [1, 0], "predictions": [0.0, 0.25], "epsilon": 0.01}
    ce = [-math.log(0.01), -math.log(0.75)]

    assert await score(client, body) == answer(
        ce,
        ce,
        [0.0, 0.0],
        accuracy=0.5,
        correct=[0.0, 1.0],
        epsilon=0.01,
        warnings=[
            {
                "code": "CLIPPED",
                "message": "probabilities outside [epsilon, 1 - epsilon] (epsilon = 0.01) were clipped "
                "before the logarithm where the label gives them weight",
                "count": 1,
                "rows": [0],
            }
        ],
    )


async def test_epsilon_0_gives_infinity_reported_as_null(client: httpx.AsyncClient) -> None:
    body = {"labels": [1, 0], "predictions": [0.0, 0.25], "epsilon": 0}

    assert await score(client, body) == answer(
        [None, -math.log(0.75)],
        [None, -math.log(0.75)],
        [0.0, 0.0],
        accuracy=0.5,
        correct=[0.0, 1.0],
        epsilon=0.0,
        warnings=[{"code": "NON_FINITE", "message": NON_FINITE_MESSAGE, "count": 1, "rows": [0]}],
    )


async def test_per_sample_false_leaves_the_arrays_out(client: httpx.AsyncClient) -> None:
    body = {"labels": [1, 0], "predictions": [0.5, 0.25], "per_sample": False}
    ce = [LN2, -math.log(0.75)]

    result = await score(client, body)

    assert result == answer(ce, ce, [0.0, 0.0], accuracy=0.5, correct=[0.0, 1.0], per_sample=False)
    assert result["per_sample"] is None


async def test_empty_batch_is_200_with_null_means_and_an_empty_warning(client: httpx.AsyncClient) -> None:
    response = await client.post(URL, json={"labels": [], "predictions": []})

    assert response.status_code == 200, response.text
    assert without_state(response.json()) == {
        "n": 0,
        "n_scored": 0,
        "n_clusters": None,
        "unit": "nats",
        "mean": {"cross_entropy": None, "kl_divergence": None, "entropy": None, "perplexity": None, "accuracy": None},
        "sum": {"cross_entropy": 0.0, "kl_divergence": 0.0, "entropy": 0.0},
        **NO_SPREAD,
        **NO_BREAKDOWNS,
        "per_sample": {"cross_entropy": [], "kl_divergence": [], "entropy": []},
        "warnings": [EMPTY_WARNING, stderr_undefined(0)],
        "settings": {**DEFAULT_SETTINGS, "labels_per_sample": None},
    }


async def test_zero_total_weight_gives_null_means_and_a_zero_weight_warning(client: httpx.AsyncClient) -> None:
    body = {"labels": [1], "predictions": [0.5], "sample_weights": [0]}

    assert await score(client, body) == {
        "n": 1,
        "n_scored": 1,
        "n_clusters": None,
        "unit": "nats",
        "mean": {"cross_entropy": None, "kl_divergence": None, "entropy": None, "perplexity": None, "accuracy": None},
        "sum": {"cross_entropy": 0.0, "kl_divergence": 0.0, "entropy": 0.0},
        **NO_SPREAD,
        **NO_BREAKDOWNS,
        "per_sample": {"cross_entropy": [close(LN2)], "kl_divergence": [close(LN2)], "entropy": [0.0]},
        "warnings": [
            {
                "code": "ZERO_WEIGHT",
                "message": "the weights of the scored rows sum to 0, so the weighted means are undefined (null)",
                "count": 1,
                "rows": [0],
            },
            stderr_undefined(0),
        ],
        "settings": {**DEFAULT_SETTINGS, "sample_weights": True},
    }
