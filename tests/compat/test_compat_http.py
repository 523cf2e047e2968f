"""``compat`` over HTTP: both endpoints and both compare endpoints, JSON and NPZ (query parameter).

NPZ keeps the dtype of ``predictions``, so scikit-learn's float32 clip (1.1920928955078125e-07) shows
there; JSON numbers are float64 (2.220446049250313e-16). ``settings.compat`` echoes the preset and
every option shows as it resolved them.
"""

import io
import json
from typing import Any

import numpy as np
import pytest
from in_process import post
from npz_bodies import NPZ, npz

torch = pytest.importorskip("torch", reason="torch is a test dependency (torch==2.13.0, CPU)")

JSON = {"content-type": "application/json"}


def _json(path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = post(path, json.dumps(body).encode(), JSON)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _npz(path: str, query: str, **arrays: Any) -> dict[str, Any]:
    response = post(f"{path}?{query}", npz(**arrays), NPZ)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_sklearn_over_npz_float32_clips_at_float32_epsilon_and_json_at_float64() -> None:
    preds = np.array([[0.0, 0.5, 0.5], [0.2, 0.3, 0.5]], dtype=np.float32)
    over_npz = _npz("/v1/cross-entropy", "compat=sklearn", labels=np.array([0, 2]), predictions=preds)
    assert over_npz["per_sample"]["cross_entropy"][0] == 15.942384719848633
    assert over_npz["settings"] == {
        "compat": "sklearn",
        "prediction_type": "probabilities",
        "label_type": "class_indices",
        "unit": "nats",
        "epsilon": 1.1920928955078125e-07,
        "epsilon_applies": True,
        "label_smoothing": 0.0,
        "normalization": "warn",
        "tolerance": 1e-08 + float(np.sqrt(np.float64(np.finfo(np.float32).eps))),
        "ignore_index": None,
        "class_weights": None,
        "sample_weights": False,
        "per_sample": True,
        "gradient": False,
        "confidence": 0.95,
    }
    over_json = _json("/v1/cross-entropy", {"labels": [0, 2], "predictions": preds.tolist(), "compat": "sklearn"})
    assert over_json["per_sample"]["cross_entropy"][0] == pytest.approx(36.04365338911715, rel=1e-12)
    assert over_json["settings"]["epsilon"] == 2.220446049250313e-16


def test_binary_sklearn_over_npz_float32() -> None:
    answer = _npz(
        "/v1/binary-cross-entropy",
        "compat=sklearn",
        labels=np.array([1.0, 0.0]),
        predictions=np.array([0.0, 0.25], dtype=np.float32),
    )
    assert answer["per_sample"]["cross_entropy"][0] == 15.942384719848633
    assert answer["settings"]["epsilon"] == 1.1920928955078125e-07


def test_keras_reference_example_and_binary_over_json_and_npz() -> None:
    body = {"labels": [1], "predictions": [[0.228, 0.619, 0.153]], "compat": "keras"}
    answer = _json("/v1/cross-entropy", body)
    assert answer["mean"]["cross_entropy"] == pytest.approx(0.479650, abs=2e-6)
    assert answer["mean"]["kl_divergence"] == pytest.approx(0.479647, abs=2e-6)  # KLDivergence clips zero targets
    assert answer["settings"]["compat"] == "keras"
    assert answer["settings"]["epsilon"] == 1.0000000116860974e-07
    assert answer["settings"]["normalization"] == "renormalize"
    hard = {"labels": np.array([[1.0, 0.0], [1.0, 0.0]]), "predictions": np.array([[1.0, 1.0], [1.0, 0.0]])}
    binary = _npz("/v1/binary-cross-entropy", "compat=keras", **hard)
    assert binary["mean"]["cross_entropy"] == pytest.approx(3.98559, abs=1.5e-3)  # Keras' own test


def test_pytorch_over_json_and_npz_equals_torch() -> None:
    logits = np.array([[2.0, 1.0, 0.1], [0.5, -1.0, 3.0], [0.0, 0.0, 0.0]])
    labels = np.array([0, 2, -100])
    weights = np.array([1.0, 2.0, 3.0])
    expected = torch.nn.functional.cross_entropy(
        torch.from_numpy(logits), torch.from_numpy(labels), weight=torch.from_numpy(weights), label_smoothing=0.1
    ).item()
    body = {
        "labels": labels.tolist(),
        "predictions": logits.tolist(),
        "class_weights": weights.tolist(),
        "label_smoothing": 0.1,
        "prediction_type": "logits",
        "compat": "pytorch",
    }
    over_json = _json("/v1/cross-entropy", body)
    query = "compat=pytorch&prediction_type=logits&label_smoothing=0.1"
    over_npz = _npz("/v1/cross-entropy", query, labels=labels, predictions=logits, class_weights=weights)
    for answer in (over_json, over_npz):
        assert answer["mean"]["cross_entropy"] == pytest.approx(expected, rel=1e-12)
        assert answer["settings"]["ignore_index"] == -100
        assert answer["per_sample"]["cross_entropy"][2] is None
        assert answer["n_scored"] == 2


def test_both_compare_endpoints_take_compat() -> None:
    body = {
        "labels": [0, 1],
        "predictions": [[0.0, 1.0], [0.5, 0.5]],
        "baseline_predictions": [[0.5, 0.5], [0.5, 0.5]],
        "compat": "sklearn",
    }
    answer = _json("/v1/cross-entropy/compare", body)
    assert answer["settings"]["compat"] == "sklearn"
    assert answer["model"]["mean"]["cross_entropy"] == pytest.approx((36.04365338911715 + np.log(2)) / 2, rel=1e-12)
    binary = _json(
        "/v1/binary-cross-entropy/compare",
        {"labels": [1.0], "predictions": [0.0], "baseline_predictions": [0.5], "compat": "pytorch"},
    )
    assert binary["settings"]["compat"] == "pytorch"
    assert binary["model"]["mean"]["cross_entropy"] == 100.0  # BCE's −100 log clamp
    assert binary["difference"]["cross_entropy"]["mean"] == pytest.approx(100.0 - np.log(2), rel=1e-12)


def test_default_compat_is_xent_and_is_echoed() -> None:
    answer = _json("/v1/cross-entropy", {"labels": [1], "predictions": [[0.228, 0.619, 0.153]]})
    assert answer["settings"]["compat"] == "xent"
    explicit = _json("/v1/cross-entropy", {"labels": [1], "predictions": [[0.228, 0.619, 0.153]], "compat": "xent"})
    assert explicit == answer


def test_npz_answer_of_a_preset_carries_its_per_sample_arrays() -> None:
    response = post(
        "/v1/cross-entropy?compat=scipy",
        npz(labels=np.array([[0.0, 2.0, 0.0]]), predictions=np.array([[0.2, 0.3, 0.1]])),
        {**NPZ, "accept": "application/x-npz"},
    )
    assert response.status_code == 200, response.text
    arrays = np.load(io.BytesIO(response.content), allow_pickle=False)
    assert arrays["cross_entropy"].tolist() == pytest.approx([0.6931471805599452], rel=1e-12)  # both renormalised
    assert json.loads(str(arrays["summary"]))["settings"]["compat"] == "scipy"


def test_the_compat_examples_of_the_openapi_document_give_the_numbers_their_summaries_promise() -> None:
    from service.api.examples import BINARY_EXAMPLES, CROSS_ENTROPY_EXAMPLES

    sklearn = _json("/v1/cross-entropy", CROSS_ENTROPY_EXAMPLES["compat_sklearn"]["value"])
    assert sklearn["per_sample"]["cross_entropy"][0] == pytest.approx(36.04365338911715, rel=1e-12)
    keras = _json("/v1/binary-cross-entropy", BINARY_EXAMPLES["compat_keras"]["value"])
    assert keras["mean"]["cross_entropy"] == pytest.approx(3.98559, abs=1.5e-3)
    example = CROSS_ENTROPY_EXAMPLES["compat_pytorch"]["value"]
    pytorch = _json("/v1/cross-entropy", example)
    expected = torch.nn.functional.cross_entropy(
        torch.tensor(example["predictions"], dtype=torch.float64),
        torch.tensor(example["labels"]),
        weight=torch.tensor(example["class_weights"], dtype=torch.float64),
        label_smoothing=example["label_smoothing"],
    )
    assert pytorch["mean"]["cross_entropy"] == pytest.approx(expected.item(), rel=1e-12)


def test_xent_score_in_process_takes_compat_as_the_service_does() -> None:
    """``xent score --compat`` without a service: the core's presets, with the same numbers and settings."""
    from service.cli.local import score_locally

    preds = np.array([[0.0, 0.5, 0.5], [0.2, 0.3, 0.5]], dtype=np.float32)
    scores = score_locally(np.array([0, 2]), preds, binary=False, options={"compat": "sklearn"})
    assert scores.per_sample is not None
    assert scores.per_sample.cross_entropy[0] == 15.942384719848633
    assert scores.settings["compat"] == "sklearn"
    from service.core import InvalidOption

    with pytest.raises(InvalidOption, match=r'^epsilon: cannot be honoured with compat "keras"'):
        score_locally(np.array([0]), np.array([[0.5, 0.5]]), binary=False, options={"compat": "keras", "epsilon": 0.0})
