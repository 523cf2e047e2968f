"""``gradient: true`` over HTTP (issue 17 section 2): ``per_sample.gradient`` in JSON, a ``gradient`` member in NPZ.

The numbers are torch.autograd's of the same per-sample loss (float64), on both scoring endpoints and both
comparison endpoints (where the gradient is the model's), and the NPZ member is the JSON array to the bit.
"""

import io
import json
import math
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from in_process import asgi_transport
from npz_bodies import NPZ, npz

from service.api.schemas import (
    BinaryCrossEntropyCompareResponse,
    BinaryCrossEntropyResponse,
    CrossEntropyCompareResponse,
    CrossEntropyResponse,
)
from service.cli.local import compare_locally, score_locally
from service.client import AsyncClient
from service.core import MulticlassOptions, score_multiclass

torch = pytest.importorskip("torch")
functional = torch.nn.functional

pytestmark = pytest.mark.anyio

NPZ_TYPE = NPZ["content-type"]

LOGITS = [[2.0, -1.0, 0.5], [-3.0, 4.0, 0.0], [0.1, 0.2, 0.3]]
LABELS = [1, 0, 2]
PROBABILITIES = [[0.228, 0.619, 0.153], [0.7, 0.2, 0.1], [0.05, 0.05, 0.9]]
BINARY_LABELS = [[0.0, 1.0], [1.0, 1.0], [0.0, 0.0]]
BINARY_LOGITS = [[-1.0, 2.0], [0.5, -3.0], [4.0, 0.0]]


def _torch_gradient(predictions: Any, loss: Any) -> list[Any]:
    x = torch.tensor(predictions, dtype=torch.float64, requires_grad=True)
    (gradient,) = torch.autograd.grad(loss(x).sum(), x)
    listed: list[Any] = gradient.tolist()
    return listed


def _cross_entropy_gradient(logits: Any, labels: Any, smoothing: float = 0.0) -> list[Any]:
    index = torch.tensor(labels)
    return _torch_gradient(
        logits, lambda x: functional.cross_entropy(x, index, reduction="none", label_smoothing=smoothing)
    )


def _close(ours: Any, reference: Any) -> None:
    np.testing.assert_allclose(np.array(ours, dtype=np.float64), np.array(reference), rtol=1e-12, atol=1e-12)


def _npz_answer(response: httpx.Response) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    assert response.status_code == 200, response.text
    with np.load(io.BytesIO(response.content), allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files if name != "summary"}
        return json.loads(str(archive["summary"])), arrays


async def test_json_answer_carries_the_logit_gradient_softmax_minus_one_hot(client: httpx.AsyncClient) -> None:
    body = {"labels": LABELS, "predictions": LOGITS, "prediction_type": "logits", "gradient": True}

    response = await client.post("/v1/cross-entropy", json=body)

    assert response.status_code == 200, response.text
    CrossEntropyResponse.model_validate_json(response.content)
    answer = response.json()
    assert list(answer["per_sample"]) == ["cross_entropy", "kl_divergence", "entropy", "gradient"]
    _close(answer["per_sample"]["gradient"], _cross_entropy_gradient(LOGITS, LABELS))
    assert answer["settings"]["gradient"] is True


async def test_without_gradient_the_answer_has_no_gradient(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/cross-entropy", json={"labels": LABELS, "predictions": PROBABILITIES})

    assert response.status_code == 200, response.text
    assert list(response.json()["per_sample"]) == ["cross_entropy", "kl_divergence", "entropy"]
    assert response.json()["settings"]["gradient"] is False


async def test_reference_example_probability_gradient_is_minus_one_over_q(client: httpx.AsyncClient) -> None:
    body = {"labels": [1], "predictions": [[0.228, 0.619, 0.153]], "gradient": True, "unit": "bits"}

    response = await client.post("/v1/cross-entropy", json=body)

    assert response.status_code == 200, response.text
    assert response.json()["per_sample"]["gradient"] == [[0.0, -1 / 0.619 / math.log(2), 0.0]]


async def test_npz_answer_has_a_gradient_member_equal_to_the_json_array(client: httpx.AsyncClient) -> None:
    logits = np.array(LOGITS)
    content = npz(predictions=logits, labels=np.array(LABELS))
    query = {"prediction_type": "logits", "label_smoothing": "0.1", "gradient": "true"}

    as_npz = await client.post("/v1/cross-entropy", content=content, params=query, headers={**NPZ, "accept": NPZ_TYPE})
    as_json = await client.post(
        "/v1/cross-entropy",
        json={"labels": LABELS, "predictions": LOGITS, **query, "label_smoothing": 0.1, "gradient": True},
    )

    summary, arrays = _npz_answer(as_npz)
    assert int(as_npz.headers["content-length"]) == len(as_npz.content)  # sent in parts, announced whole
    assert set(arrays) == {"cross_entropy", "kl_divergence", "entropy", "scored", "gradient"}
    assert arrays["gradient"].dtype == np.float64
    assert arrays["gradient"].shape == (3, 3)
    _close(arrays["gradient"], _cross_entropy_gradient(LOGITS, LABELS, smoothing=0.1))
    assert arrays["gradient"].tolist() == as_json.json()["per_sample"]["gradient"]
    assert summary["settings"]["gradient"] is True


async def test_ignored_rows_get_zeros_and_an_infinite_gradient_is_null(client: httpx.AsyncClient) -> None:
    body = {
        "labels": [1, -100, 0],
        "predictions": [[0.5, 0.5], [0.3, 0.7], [0.0, 1.0]],  # row 2: zero probability on the label, ε = 0
        "ignore_index": -100,
        "epsilon": 0,
        "gradient": True,
    }

    response = await client.post("/v1/cross-entropy", json=body)

    assert response.status_code == 200, response.text
    assert response.json()["per_sample"]["gradient"] == [[0.0, -2.0], [0.0, 0.0], [None, 0.0]]
    assert [w["code"] for w in response.json()["warnings"]] == ["NON_FINITE"]


@pytest.mark.parametrize("transport", ["json", "npz"])
async def test_binary_gradient_is_torchs_over_json_and_npz(client: httpx.AsyncClient, transport: str) -> None:
    pos_weight = [2.0, 0.5]
    reference = _torch_gradient(
        BINARY_LOGITS,
        lambda x: functional.binary_cross_entropy_with_logits(
            x, torch.tensor(BINARY_LABELS, dtype=torch.float64), pos_weight=torch.tensor(pos_weight), reduction="none"
        ).mean(dim=1),
    )
    if transport == "json":
        body = {
            "labels": BINARY_LABELS,
            "predictions": BINARY_LOGITS,
            "prediction_type": "logits",
            "pos_weight": pos_weight,
            "gradient": True,
        }
        response = await client.post("/v1/binary-cross-entropy", json=body)
        assert response.status_code == 200, response.text
        BinaryCrossEntropyResponse.model_validate_json(response.content)
        gradient = response.json()["per_sample"]["gradient"]
    else:
        content = npz(
            predictions=np.array(BINARY_LOGITS), labels=np.array(BINARY_LABELS), pos_weight=np.array(pos_weight)
        )
        response = await client.post(
            "/v1/binary-cross-entropy",
            content=content,
            params={"prediction_type": "logits", "gradient": "true"},
            headers={**NPZ, "accept": NPZ_TYPE},
        )
        gradient = _npz_answer(response)[1]["gradient"]
    _close(gradient, reference)


async def test_binary_gradient_of_n_predictions_is_n_numbers(client: httpx.AsyncClient) -> None:
    body = {"labels": [0, 1, 1], "predictions": [0.1, 0.8, 0.5], "gradient": True}

    response = await client.post("/v1/binary-cross-entropy", json=body)

    assert response.status_code == 200, response.text
    # (q − y)/(q(1 − q))
    assert response.json()["per_sample"]["gradient"] == pytest.approx([1 / 0.9, -1 / 0.8, -2.0], rel=1e-15)


@pytest.mark.parametrize("transport", ["json", "npz"])
async def test_comparison_gradient_is_the_models(client: httpx.AsyncClient, transport: str) -> None:
    options = {"prediction_type": "logits", "baseline_prediction_type": "probabilities", "gradient": True}
    if transport == "json":
        body = {"labels": LABELS, "predictions": LOGITS, "baseline_predictions": PROBABILITIES, **options}
        response = await client.post("/v1/cross-entropy/compare", json=body)
        assert response.status_code == 200, response.text
        CrossEntropyCompareResponse.model_validate_json(response.content)
        per_sample, settings = response.json()["per_sample"], response.json()["settings"]
        assert list(per_sample) == ["difference", "gradient"]
        gradient = per_sample["gradient"]
    else:
        content = npz(
            predictions=np.array(LOGITS), labels=np.array(LABELS), baseline_predictions=np.array(PROBABILITIES)
        )
        response = await client.post(
            "/v1/cross-entropy/compare",
            content=content,
            params={**options, "gradient": "true"},
            headers={**NPZ, "accept": NPZ_TYPE},
        )
        summary, arrays = _npz_answer(response)
        assert set(arrays) == {"difference", "scored", "gradient"}
        gradient, settings = arrays["gradient"], summary["settings"]
    # d = ℓ(model) − ℓ(baseline): the baseline is a constant, so ∂d/∂x is the model's gradient.
    _close(gradient, _cross_entropy_gradient(LOGITS, LABELS))
    assert settings["gradient"] is True


async def test_binary_comparison_gradient_is_the_models(client: httpx.AsyncClient) -> None:
    body = {
        "labels": [0, 1],
        "predictions": [0.2, 0.6],
        "baseline_predictions": [0.5, 0.5],
        "gradient": True,
    }

    response = await client.post("/v1/binary-cross-entropy/compare", json=body)

    assert response.status_code == 200, response.text
    BinaryCrossEntropyCompareResponse.model_validate_json(response.content)
    assert response.json()["per_sample"]["gradient"] == pytest.approx([1 / 0.8, -1 / 0.6], rel=1e-15)


@pytest.mark.parametrize("transport", ["json", "npz"])
async def test_the_python_client_returns_the_gradient(app: FastAPI, transport: Any) -> None:
    reference = _cross_entropy_gradient(LOGITS, LABELS)
    async with app.router.lifespan_context(app), AsyncClient("http://test", transport=asgi_transport(app)) as xent:
        scores = await xent.cross_entropy(LABELS, LOGITS, prediction_type="logits", gradient=True, transport=transport)
        plain = await xent.cross_entropy(LABELS, LOGITS, prediction_type="logits", transport=transport)
        chunked = await xent.score_many(
            LABELS, LOGITS, prediction_type="logits", gradient=True, chunk_size=2, progress=False, transport=transport
        )
        comparison = await xent.compare(
            LABELS,
            LOGITS,
            PROBABILITIES,
            baseline_prediction_type="probabilities",
            prediction_type="logits",
            gradient=True,
            transport=transport,
        )
    assert scores.per_sample is not None
    assert scores.per_sample.gradient is not None
    _close(scores.per_sample.gradient, reference)
    assert plain.per_sample is not None
    assert plain.per_sample.gradient is None
    assert chunked.per_sample is not None
    assert chunked.per_sample.gradient is not None
    assert chunked.per_sample.gradient.tolist() == scores.per_sample.gradient.tolist()  # two chunks, joined
    assert comparison.gradient is not None
    _close(comparison.gradient, reference)
    # In process (``xent score`` without --url), the same arrays.
    local = score_locally(LABELS, LOGITS, binary=False, options={"prediction_type": "logits", "gradient": True})
    assert local.per_sample is not None
    assert local.per_sample.gradient is not None
    assert local.per_sample.gradient.tolist() == scores.per_sample.gradient.tolist()
    options = {"prediction_type": "logits", "baseline_prediction_type": "probabilities", "gradient": True}
    compared = compare_locally(LABELS, LOGITS, PROBABILITIES, binary=False, options=options)
    assert compared.gradient is not None
    assert compared.gradient.tolist() == comparison.gradient.tolist()


@pytest.mark.parametrize("transport", ["json", "npz"])
async def test_under_compat_the_presets_loss_is_differentiated(client: httpx.AsyncClient, transport: str) -> None:
    # PyTorch's binary_cross_entropy: its backward (q − y)/max(q(1 − q), 1e-12) also where the −100 clamp bites.
    labels, predictions = [1.0, 0.0, 1.0], [0.0, 0.3, 0.8]
    reference = _torch_gradient(
        predictions,
        lambda x: functional.binary_cross_entropy(x, torch.tensor(labels, dtype=torch.float64), reduction="none"),
    )
    if transport == "json":
        body = {"labels": labels, "predictions": predictions, "compat": "pytorch", "gradient": True}
        response = await client.post("/v1/binary-cross-entropy", json=body)
        assert response.status_code == 200, response.text
        gradient = response.json()["per_sample"]["gradient"]
    else:
        response = await client.post(
            "/v1/binary-cross-entropy",
            content=npz(labels=np.array(labels), predictions=np.array(predictions)),
            params={"compat": "pytorch", "gradient": "true"},
            headers={**NPZ, "accept": NPZ_TYPE},
        )
        gradient = _npz_answer(response)[1]["gradient"]
    _close(gradient, reference)
    assert gradient[0] == pytest.approx(-1 / float(np.float32(1e-12)), rel=1e-15)


async def test_a_large_json_body_through_the_fast_path_gets_the_cores_gradient_to_the_bit(
    client: httpx.AsyncClient,
) -> None:
    rng = np.random.default_rng(17)
    logits, labels = rng.normal(size=(5000, 4)), rng.integers(0, 4, 5000)
    body = {"labels": labels.tolist(), "predictions": logits.tolist(), "prediction_type": "logits", "gradient": True}
    content = json.dumps(body).encode()
    assert len(content) > 64 * 1024  # over the fast JSON path's threshold

    response = await client.post("/v1/cross-entropy", content=content, headers={"content-type": "application/json"})

    assert response.status_code == 200, response.text
    expected = score_multiclass(labels, logits, options=MulticlassOptions(prediction_type="logits", gradient=True))
    assert expected.gradient is not None
    assert response.json()["per_sample"]["gradient"] == expected.gradient.tolist()
