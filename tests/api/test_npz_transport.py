"""The binary transport: NPZ bodies with query options, and NPZ answers on request."""

import io
import json
import pickle
from typing import Any

import httpx
import numpy as np
import pytest
from in_process import post
from npz_bodies import NPZ, npz

REFERENCE_PREDICTIONS = np.array([[0.228, 0.619, 0.153]])


@pytest.mark.parametrize("compressed", [False, True], ids=["savez", "savez_compressed"])
@pytest.mark.parametrize("label_dtype", [np.int8, np.uint16, np.int32, np.int64])
@pytest.mark.parametrize("prediction_dtype", [np.float32, np.float64])
def test_npz_reference_example_matches_json(compressed: bool, label_dtype: type, prediction_dtype: type) -> None:
    body = npz(
        compressed, labels=np.array([1], dtype=label_dtype), predictions=REFERENCE_PREDICTIONS.astype(prediction_dtype)
    )
    response = post("/v1/cross-entropy", body, NPZ)
    assert response.status_code == 200, response.text
    # float32 rounds 0.619 to 0.61900001764: the answer is exact for the number sent.
    expected = -np.log(np.float64(prediction_dtype(0.619)))
    assert response.json()["mean"]["cross_entropy"] == pytest.approx(expected, rel=1e-12)
    assert response.json()["per_sample"]["kl_divergence"] == [pytest.approx(expected, rel=1e-12)]


def test_npz_options_come_from_the_query_and_give_the_json_answer() -> None:
    options = {"unit": "bits", "label_smoothing": 0.1, "epsilon": 1e-9, "normalization": "renormalize"}
    arrays = {
        "labels": np.array(["B", "C"]),
        "classes": np.array(["A", "B", "C"]),
        "predictions": np.array([[0.2, 0.5, 0.3], [0.1, 0.1, 0.7]]),
        "sample_weights": np.array([1.0, 3.0]),
        "class_weights": np.array([1.0, 2.0, 0.5]),
    }
    query = "&".join(f"{k}={v}" for k, v in options.items())
    binary = post(f"/v1/cross-entropy?{query}", npz(**arrays), NPZ)
    as_json = {k: v.tolist() for k, v in arrays.items()} | options
    text = post("/v1/cross-entropy", json.dumps(as_json).encode(), {"content-type": "application/json"})
    assert binary.status_code == 200, binary.text
    assert binary.json() == text.json()
    assert binary.json()["settings"]["unit"] == "bits"
    assert binary.json()["warnings"][0]["code"] == "RENORMALIZED"


def test_npz_binary_endpoint_with_pos_weight_in_query_or_archive() -> None:
    arrays = {"labels": np.array([0, 1, 1]), "predictions": np.array([0.1, 0.8, 0.6])}
    in_query = post("/v1/binary-cross-entropy?pos_weight=3", npz(**arrays), NPZ)
    in_archive = post("/v1/binary-cross-entropy", npz(**arrays, pos_weight=np.array([3.0])), NPZ)
    assert in_query.status_code == 200, in_query.text
    expected = [0.105361, 0.669431, 1.532477]
    assert in_query.json()["per_sample"]["cross_entropy"] == pytest.approx(expected, abs=1e-6)
    assert in_archive.json()["per_sample"] == in_query.json()["per_sample"]


def test_accept_npz_returns_arrays_and_the_summary() -> None:
    body = npz(labels=np.array([0, -100, 2]), predictions=np.array([[0.7, 0.2, 0.1], [0.3, 0.3, 0.4], [0.2, 0.2, 0.6]]))
    response = post("/v1/cross-entropy?ignore_index=-100", body, {**NPZ, "accept": "application/x-npz"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-npz"
    archive = np.load(io.BytesIO(response.content), allow_pickle=False)
    assert sorted(archive.files) == ["cross_entropy", "entropy", "kl_divergence", "scored", "summary"]
    np.testing.assert_allclose(archive["cross_entropy"], [-np.log(0.7), np.nan, -np.log(0.6)], rtol=1e-15)
    np.testing.assert_array_equal(archive["scored"], [True, False, True])
    summary = json.loads(str(archive["summary"]))
    assert summary["n"] == 3
    assert summary["n_scored"] == 2
    assert summary["per_sample"] is None
    assert summary["mean"]["cross_entropy"] == pytest.approx((-np.log(0.7) - np.log(0.6)) / 2, rel=1e-15)


def test_json_request_can_ask_for_an_npz_answer() -> None:
    body = json.dumps({"labels": [1], "predictions": REFERENCE_PREDICTIONS.tolist()}).encode()
    response = post("/v1/cross-entropy", body, {"content-type": "application/json", "accept": "application/x-npz"})
    archive = np.load(io.BytesIO(response.content), allow_pickle=False)
    assert archive["cross_entropy"].tolist() == [pytest.approx(0.4796500062975, rel=1e-12)]


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    return problem


def test_pickled_object_array_is_refused_not_loaded() -> None:
    body = npz(labels=np.array([1, "B"], dtype=object), predictions=REFERENCE_PREDICTIONS)
    problem = _problem(post("/v1/cross-entropy", body, NPZ), 422)
    assert problem["errors"][0]["loc"] == ["body", "labels"]
    assert "pickled" in problem["detail"]


def test_raw_pickle_body_is_malformed_npz() -> None:
    problem = _problem(post("/v1/cross-entropy", pickle.dumps({"labels": [1]}), NPZ), 400)
    assert problem["type"] == "urn:xent:problem:malformed-npz"


@pytest.mark.parametrize(
    "body",
    [b"", b"PK\x03\x04 truncated", npz(labels=np.array([1]), predictions=REFERENCE_PREDICTIONS)[:-30]],
    ids=["empty", "garbage", "truncated"],
)
def test_unreadable_archives_are_400(body: bytes) -> None:
    _problem(post("/v1/cross-entropy", body, NPZ), 400)


def test_single_npy_array_is_400_with_a_hint() -> None:
    buffer = io.BytesIO()
    np.save(buffer, REFERENCE_PREDICTIONS)
    problem = _problem(post("/v1/cross-entropy", buffer.getvalue(), NPZ), 400)
    assert "np.savez" in problem["detail"]


def test_unknown_and_missing_members_are_named() -> None:
    extra = npz(labels=np.array([1]), predictions=REFERENCE_PREDICTIONS, weights=np.ones(1))
    assert _problem(post("/v1/cross-entropy", extra, NPZ), 422)["errors"][0]["loc"] == ["body", "weights"]
    missing = npz(predictions=REFERENCE_PREDICTIONS)
    assert _problem(post("/v1/cross-entropy", missing, NPZ), 422)["errors"][0]["loc"] == ["body", "labels"]


def test_bad_values_in_npz_arrays_name_row_and_column() -> None:
    predictions = REFERENCE_PREDICTIONS.copy()
    predictions[0, 2] = np.nan
    problem = _problem(post("/v1/cross-entropy", npz(labels=np.array([1]), predictions=predictions), NPZ), 422)
    assert problem["errors"][0]["loc"] == ["body", "predictions", 0, 2]
    out_of_range = npz(labels=np.array([3]), predictions=REFERENCE_PREDICTIONS)
    problem = _problem(post("/v1/cross-entropy", out_of_range, NPZ), 422)
    assert problem["errors"][0]["loc"] == ["body", "labels", 0]


def test_float_class_indices_are_refused() -> None:
    body = npz(labels=np.array([1.0]), predictions=REFERENCE_PREDICTIONS)
    problem = _problem(post("/v1/cross-entropy", body, NPZ), 422)
    assert "integer" in problem["detail"]


def test_query_options_are_validated_where_they_are() -> None:
    body = npz(labels=np.array([1]), predictions=REFERENCE_PREDICTIONS)
    problem = _problem(post("/v1/cross-entropy?label_smoothing=2", body, NPZ), 422)
    assert problem["errors"][0]["loc"] == ["query", "label_smoothing"]
    problem = _problem(post("/v1/cross-entropy?lable_smoothing=0.1", body, NPZ), 422)
    assert problem["errors"][0]["loc"] == ["query", "lable_smoothing"]
    assert "label_smoothing" in problem["errors"][0]["msg"]
    problem = _problem(post("/v1/cross-entropy?sample_weights=1", body, NPZ), 422)
    assert problem["errors"][0]["loc"] == ["query", "sample_weights"]


def test_query_options_with_a_json_body_are_refused() -> None:
    body = json.dumps({"labels": [1], "predictions": REFERENCE_PREDICTIONS.tolist()}).encode()
    response = post("/v1/cross-entropy?unit=bits", body, {"content-type": "application/json"})
    assert _problem(response, 422)["errors"][0]["loc"] == ["query", "unit"]
