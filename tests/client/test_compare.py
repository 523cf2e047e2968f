"""`Client.compare` / `AsyncClient.compare` and `xent score --baseline-predictions`: the paired comparison over JSON
and NPZ against a real server equals the in-process answer; the standard errors in `Scores`; `score_many` does not
merge standard errors; the comparison table and `--json`; errors."""

import io
import json
import math
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from client_servers import Flaky, serve_in_thread
from in_process import asgi_transport
from whole_answers import same_numbers

from service.api.app import create_app
from service.cli import main
from service.cli.local import compare_locally, score_locally
from service.client import AsyncClient, Client, Comparison, ProblemError
from service.client.wire import COMPARE_DEFAULTS, build_request
from service.settings import Settings

N = 120


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """The real app on a real uvicorn server, for this module's tests."""
    yield from serve_in_thread(create_app(Settings()))


@pytest.fixture
async def recorder() -> AsyncIterator[Flaky]:
    """The real app behind a recorder of request headers, its lifespan entered."""
    app = create_app(Settings())
    async with app.router.lifespan_context(app):
        yield Flaky(app, failures=0)


def _multiclass() -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Labels with ignored rows, a model's probabilities, a baseline's logits, weights and string clusters."""
    rng = np.random.default_rng(14)
    labels = rng.integers(0, 4, N)
    labels[[3, 50]] = -100
    model = rng.dirichlet(np.ones(4) * 2, N)
    baseline = rng.normal(size=(N, 4))
    options = {
        "ignore_index": -100,
        "sample_weights": rng.random(N),
        "cluster_ids": [f"doc-{i // 7}" for i in range(N)],
        "baseline_prediction_type": "logits",
        "unit": "bits",
        "confidence": 0.9,
    }
    return labels, model, baseline, options


def _binary() -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Multi-label rows (K = 3), a model's probabilities, a baseline's logits and integer clusters."""
    rng = np.random.default_rng(15)
    labels = rng.integers(0, 2, (N, 3)).astype(np.float64)
    model = rng.uniform(0.05, 0.95, (N, 3))
    baseline = rng.normal(size=(N, 3))
    options = {"cluster_ids": np.arange(N) // 10, "baseline_prediction_type": "logits", "pos_weight": [1.0, 2.0, 0.5]}
    return labels, model, baseline, options


def _same(actual: Comparison, expected: Comparison) -> None:
    """The whole answer, exactly, and the per-sample differences (NaN on the rows not scored)."""
    assert actual.summary() == expected.summary()
    assert actual.per_sample is not None
    assert expected.per_sample is not None
    np.testing.assert_array_equal(actual.per_sample, expected.per_sample)


@pytest.mark.parametrize("transport", ["json", "npz"])
@pytest.mark.parametrize("binary", [False, True], ids=["multiclass", "binary"])
def test_compare_over_json_and_npz_equals_the_in_process_answer(server_url: str, transport: Any, binary: bool) -> None:
    labels, model, baseline, options = _binary() if binary else _multiclass()
    with Client(server_url) as xent:
        comparison = xent.compare(labels, model, baseline, binary=binary, transport=transport, **options)
    local = compare_locally(labels, model, baseline, binary=binary, options=options)
    _same(comparison, local)
    assert comparison.n == N
    assert comparison.n_clusters == (12 if binary else 18)
    assert comparison.settings["baseline_prediction_type"] == "logits"
    ce = comparison.difference.cross_entropy
    assert ce.mean is not None
    assert ce.stderr is not None
    assert ce.z is not None
    assert ce.p_value is not None
    assert ce.mean == pytest.approx(
        comparison.model.mean.cross_entropy - comparison.baseline.mean.cross_entropy,  # type: ignore[operator]
        rel=1e-12,
    )
    assert ce.z == pytest.approx(ce.mean / ce.stderr, rel=1e-15)
    assert ce.p_value == pytest.approx(math.erfc(abs(ce.z) / math.sqrt(2)), rel=1e-15)
    z = 1.959963984540054 if binary else 1.6448536269514722  # Φ⁻¹(0.975), Φ⁻¹(0.95): confidence 0.95, 0.9
    assert ce.ci == pytest.approx((ce.mean - z * ce.stderr, ce.mean + z * ce.stderr), rel=1e-12)


@pytest.mark.anyio
async def test_async_compare_sends_the_baseline_as_an_npz_member_and_reads_the_same(recorder: Flaky) -> None:
    labels, model, baseline, options = _multiclass()
    async with AsyncClient("http://test", transport=asgi_transport(recorder)) as xent:
        as_npz = await xent.compare(labels, model, baseline, transport="npz", **options)
        as_json = await xent.compare(labels, model, baseline, transport="json", **options)
    assert [h["content-type"] for h in recorder.headers] == ["application/x-npz", "application/json"]
    local = compare_locally(labels, model, baseline, binary=False, options=options)
    _same(as_npz, local)
    _same(as_json, local)


def test_the_compare_request_carries_the_baseline_and_only_what_differs_from_the_defaults() -> None:
    labels, model, baseline = np.array([1, 0]), np.array([[0.2, 0.8], [0.6, 0.4]]), np.array([[0.5, 0.5]] * 2)
    full = {**COMPARE_DEFAULTS["cross-entropy"], "baseline_prediction_type": "probabilities", "cluster_ids": ["a", "b"]}
    npz = build_request("cross-entropy", labels, model, full, npz=True, baseline=baseline)
    assert npz.path == "/v1/cross-entropy/compare"
    assert npz.params == {"baseline_prediction_type": "probabilities"}
    with np.load(io.BytesIO(npz.content), allow_pickle=False) as archive:
        assert sorted(archive.files) == ["baseline_predictions", "cluster_ids", "labels", "predictions"]
        assert archive["baseline_predictions"].tolist() == baseline.tolist()
        assert archive["cluster_ids"].tolist() == ["a", "b"]
    as_json = build_request("cross-entropy", labels, model, full, npz=False, baseline=baseline)
    assert as_json.path == "/v1/cross-entropy/compare"
    assert orjson.loads(as_json.content) == {
        "labels": [1, 0],
        "predictions": model.tolist(),
        "baseline_predictions": baseline.tolist(),
        "baseline_prediction_type": "probabilities",
        "cluster_ids": ["a", "b"],
    }


def test_scores_carry_the_standard_errors_the_service_sends(server_url: str) -> None:
    labels, model, _, options = _multiclass()
    scoring = {k: v for k, v in options.items() if k != "baseline_prediction_type"}
    with Client(server_url) as xent:
        for transport in ("json", "npz"):
            scores = xent.cross_entropy(labels, model, transport=transport, **scoring)
            local = score_locally(labels, model, binary=False, options=scoring)
            assert scores.summary() == local.summary()
            assert scores.n_clusters == 18
            assert scores.stderr is not None
            assert scores.ci is not None
            assert scores.stderr.cross_entropy is not None
            assert scores.stderr.cross_entropy > 0
            assert scores.summary()["settings"]["confidence"] == 0.9


def test_score_many_merges_clustered_standard_errors_across_chunks(server_url: str) -> None:
    # Issue 15: chunks merge through their states, clusters spanning chunks included (CR1), so the merged
    # answer has the one request's standard errors and intervals (they were null with STDERR_UNDEFINED before).
    labels, model, _, options = _multiclass()
    scoring = {k: v for k, v in options.items() if k != "baseline_prediction_type"}
    local = score_locally(labels, model, binary=False, options=scoring)
    with Client(server_url) as xent:
        whole = xent.score_many(labels, model, chunk_size=N, progress=False, **scoring)
        chunked = xent.score_many(labels, model, chunk_size=50, progress=False, **scoring)
    assert whole.summary() == local.summary()
    expected, merged = local.summary(), chunked.summary()
    assert merged["n_clusters"] == expected["n_clusters"] == 18
    assert merged["stderr"]["cross_entropy"] > 0
    for block, rel in (("mean", 1e-12), ("sum", 1e-12), ("stderr", 1e-9), ("ci", 1e-9)):
        assert same_numbers(merged[block], expected[block], rel), block
    assert merged["warnings"] == expected["warnings"] == []


def test_compare_errors(server_url: str) -> None:
    labels, model, baseline, _ = _multiclass()
    with Client(server_url) as xent:
        with pytest.raises(TypeError, match=r"unknown option 'chunk_size' for /v1/cross-entropy/compare"):
            xent.compare(labels, model, baseline, chunk_size=10)
        with pytest.raises(ProblemError) as raised:
            xent.compare(labels, model, baseline[:, :3], ignore_index=-100)
    assert raised.value.status == 422
    assert raised.value.errors[0].field == "baseline_predictions"


# --- xent score --baseline-predictions ------------------------------------------------------------------------


def _score(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["score", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    """The reference example's four rows, a model, a uniform-ish baseline and three clusters, as .npy files."""
    arrays = {
        "y": np.array([1, 0, 2, 1]),
        "m": np.array([[0.228, 0.619, 0.153], [0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.2, 0.6, 0.2]]),
        "b": np.array([[0.3, 0.4, 0.3], [0.4, 0.3, 0.3], [0.3, 0.3, 0.4], [0.4, 0.3, 0.3]]),
        "g": np.array(["a", "a", "b", "c"]),
    }
    for name, array in arrays.items():
        np.save(tmp_path / f"{name}.npy", array)
    return {name: str(tmp_path / f"{name}.npy") for name in arrays}


COMPARISON_TABLE = """\
                       model    baseline   difference  90% CI of the difference         z         p   (bits)
cross-entropy       0.735882     1.42569    -0.689806  [-0.9624, -0.4172]           -4.16   3.2e-05
KL divergence       0.735882     1.42569    -0.689806  [-0.9624, -0.4172]           -4.16   3.2e-05
accuracy                   1        0.75         0.25  [-0.2211, 0.7211]             0.87      0.38
perplexity           1.66542     2.68642
n                          4   (4 scored, paired; correlation of the per-sample cross-entropies 0.0036)
clusters                   3   (cluster-robust standard errors)
warnings        none
"""


def test_the_comparison_table(files: dict[str, str], capsys: pytest.CaptureFixture[str], server_url: str) -> None:
    argv = ["--predictions", files["m"], "--labels", files["y"], "--baseline-predictions", files["b"]]
    argv += ["--unit", "bits", "--cluster-ids", files["g"], "--confidence", "0.9"]
    assert _score(capsys, *argv) == (0, COMPARISON_TABLE, "")
    assert _score(capsys, *argv, "--url", server_url) == (0, COMPARISON_TABLE, "")


def test_the_comparison_as_json_and_per_sample(
    files: dict[str, str], capsys: pytest.CaptureFixture[str], server_url: str, tmp_path: Path
) -> None:
    argv = ["--predictions", files["m"], "--labels", files["y"], "--baseline-predictions", files["b"], "--json"]
    code, out, err = _score(capsys, *argv, "--per-sample", str(tmp_path / "d.csv"))
    assert (code, err) == (0, "")
    labels, model, baseline = (np.load(files[name]) for name in "ymb")
    local = compare_locally(labels, model, baseline, binary=False, options={})
    assert out == orjson.dumps(local.summary(), option=orjson.OPT_INDENT_2).decode() + "\n"
    answer = json.loads(out)
    rows = np.arange(4)
    differences = np.log(baseline[rows, labels]) - np.log(model[rows, labels])  # CE(model) − CE(baseline)
    assert answer["difference"]["cross_entropy"]["mean"] == pytest.approx(differences.mean(), rel=1e-12)
    assert answer["difference"]["cross_entropy"]["stderr"] == pytest.approx(differences.std(ddof=1) / 2, rel=1e-12)
    lines = (tmp_path / "d.csv").read_text().splitlines()
    assert lines[0] == "row,cross_entropy_difference"
    assert [float(line.split(",")[1]) for line in lines[1:]] == pytest.approx(differences.tolist(), rel=1e-12)
    code, remote, err = _score(capsys, *argv, "--per-sample", str(tmp_path / "remote.csv"), "--url", server_url)
    assert (code, remote, err) == (0, out, "")
    assert (tmp_path / "remote.csv").read_text() == (tmp_path / "d.csv").read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--baseline-prediction-type", "logits"],
            "xent score: --baseline-prediction-type: it says how to read --baseline-predictions, which is not given\n",
        ),
        (
            ["--baseline-predictions", "B", "--chunk-size", "2"],
            "xent score: --chunk-size: a comparison is sent in one request (its paired standard errors need every "
            "row)\n",
        ),
    ],
)
def test_flags_that_do_not_go_together(
    files: dict[str, str], capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    extra = [files["b"] if part == "B" else part for part in extra]
    assert _score(capsys, "--predictions", files["m"], "--labels", files["y"], *extra) == (2, "", message)


def test_a_baseline_of_other_rows_names_its_flag(
    files: dict[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path, server_url: str
) -> None:
    np.save(tmp_path / "short.npy", np.load(files["b"])[:3])
    argv = ["--predictions", files["m"], "--labels", files["y"], "--baseline-predictions", str(tmp_path / "short.npy")]
    code, out, err = _score(capsys, *argv)
    assert (code, out) == (2, "")
    assert err.startswith(f"xent score: --baseline-predictions {tmp_path / 'short.npy'}"), err
    code, out, remote = _score(capsys, *argv, "--url", server_url)
    assert (code, out) == (2, "")
    assert remote.startswith(f"xent score: --baseline-predictions {tmp_path / 'short.npy'}"), remote
