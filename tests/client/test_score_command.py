"""`xent score` on files of every format, in-process and against a real server: the same numbers either way."""

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from client_servers import serve_in_thread
from whole_answers import same_numbers

from service.api.app import create_app
from service.cli import main
from service.settings import Settings

N, C = 257, 4


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """The real app on a real uvicorn server, for this module's tests."""
    yield from serve_in_thread(create_app(Settings()))


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    return {"labels": rng.integers(0, C, N), "predictions": rng.dirichlet(np.ones(C), N), "weights": rng.random(N)}


def _write(folder: Path, fmt: str, data: dict[str, np.ndarray]) -> tuple[Path, Path]:
    """The labels and predictions in ``fmt``; .npz and .jsonl hold both in one file."""
    labels, predictions = data["labels"], data["predictions"]
    if fmt == "npy":
        np.save(folder / "labels.npy", labels)
        np.save(folder / "predictions.npy", predictions)
        return folder / "labels.npy", folder / "predictions.npy"
    if fmt == "npz":
        np.savez(folder / "both.npz", labels=labels, predictions=predictions)
        return folder / "both.npz", folder / "both.npz"
    if fmt == "csv":
        header = "label\n" + "".join(f"{y}\n" for y in labels)
        (folder / "labels.csv").write_text(header)
        np.savetxt(folder / "predictions.csv", predictions, delimiter=",", fmt="%.17g", header="a,b,c,d", comments="")
        return folder / "labels.csv", folder / "predictions.csv"
    if fmt == "jsonl":
        lines = [
            json.dumps({"labels": int(y), "predictions": p.tolist()}) for y, p in zip(labels, predictions, strict=True)
        ]
        (folder / "rows.jsonl").write_text("\n".join(lines) + "\n")
        return folder / "rows.jsonl", folder / "rows.jsonl"
    parquet = pytest.importorskip("pyarrow.parquet", reason="pyarrow is not installed: Parquet input is not tested")
    pyarrow = pytest.importorskip("pyarrow")
    table = pyarrow.table({"labels": labels, "predictions": [row.tolist() for row in predictions]})
    parquet.write_table(table, folder / "data.parquet")
    return folder / "data.parquet", folder / "data.parquet"


def _score(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["score", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("fmt", ["npy", "npz", "csv", "jsonl", "parquet"])
def test_every_format_scores_the_same_locally_and_remotely(
    fmt: str, data: dict[str, np.ndarray], tmp_path: Path, server_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    labels, predictions = _write(tmp_path, fmt, data)
    argv = ["--predictions", str(predictions), "--labels", str(labels), "--unit", "bits", "--json"]
    code, out, err = _score(capsys, *argv)
    assert code == 0, err
    local = json.loads(out)
    code, out, err = _score(capsys, *argv, "--url", server_url)
    assert code == 0, err
    assert json.loads(out) == local
    assert local["n"] == N
    assert local["unit"] == "bits"
    expected = -np.mean(np.log2(data["predictions"][np.arange(N), data["labels"]]))
    assert local["mean"]["cross_entropy"] == pytest.approx(expected, rel=1e-12)


def test_chunked_remote_scoring_matches_local_with_options(
    data: dict[str, np.ndarray], tmp_path: Path, server_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    labels, predictions = _write(tmp_path, "npy", data)
    np.save(tmp_path / "w.npy", data["weights"])
    argv = ["--predictions", str(predictions), "--labels", str(labels), "--sample-weights", str(tmp_path / "w.npy")]
    argv += ["--class-weights", "1,2,0.5,1", "--label-smoothing", "0.1", "--unit", "hartleys", "--json"]
    local = json.loads(_score(capsys, *argv)[1])
    code, out, err = _score(capsys, *argv, "--url", server_url, "--chunk-size", "50", "--no-progress")
    assert code == 0, err
    remote = json.loads(out)
    for group in ("mean", "sum"):
        assert remote[group] == pytest.approx(local[group], rel=1e-12)
    # Six chunks merged through their states (issue 15): the standard errors and intervals merge too.
    for group in ("stderr", "ci"):
        assert same_numbers(remote[group], local[group], 1e-9), group
    assert remote["warnings"] == local["warnings"] == []
    unmerged = ("mean", "sum", "stderr", "ci", "warnings", "state")
    assert {k: v for k, v in remote.items() if k not in unmerged} == {
        k: v for k, v in local.items() if k not in unmerged
    }


def test_xent_url_in_the_environment_means_remote(
    data: dict[str, np.ndarray], tmp_path: Path, server_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    labels, predictions = _write(tmp_path, "npy", data)
    monkeypatch.setenv("XENT_URL", "http://127.0.0.1:1")  # nothing listens: proves the client was used
    code, _, err = _score(capsys, "--predictions", str(predictions), "--labels", str(labels), "--retries", "0")
    assert code == 1
    assert "could not score at http://127.0.0.1:1" in err


def test_the_table_names_every_quantity(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.save(tmp_path / "y.npy", np.array([1, 1]))
    np.save(tmp_path / "p.npy", np.array([[0.228, 0.619, 0.153], [0.0, 1.0, 0.0]]))
    code, out, _ = _score(capsys, "--predictions", str(tmp_path / "p.npy"), "--labels", str(tmp_path / "y.npy"))
    assert code == 0
    assert out.splitlines()[0].split() == ["mean", "sum", "(nats)"]
    assert out.splitlines()[1].split() == ["cross-entropy", "0.239825", "0.47965"]
    for name in ("KL divergence", "entropy", "perplexity", "accuracy", "n "):
        assert name in out
    assert out.splitlines()[-1].startswith("warning         CLIPPED (1 row: 1): probabilities outside")


@pytest.mark.parametrize("suffix", [".csv", ".npy"])
def test_per_sample_values_are_written(
    suffix: str, tmp_path: Path, server_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "y.npy", np.array([1, -100, 0]))
    np.save(tmp_path / "p.npy", np.array([[0.228, 0.619, 0.153], [0.5, 0.25, 0.25], [0.5, 0.25, 0.25]]))
    out = tmp_path / f"per-sample{suffix}"
    argv = ["--predictions", str(tmp_path / "p.npy"), "--labels", str(tmp_path / "y.npy"), "--ignore-index", "-100"]
    for remote in ([], ["--url", server_url]):
        code, _, err = _score(capsys, *argv, "--per-sample", str(out), *remote)
        assert code == 0, err
        if suffix == ".npy":
            values = np.load(out)
            assert values.shape == (3, 3)
            assert values[0].tolist() == [0.47965000629754095, 0.47965000629754095, 0.0]
            assert np.isnan(values[1]).all()
        else:
            assert out.read_text().splitlines() == [
                "row,cross_entropy,kl_divergence,entropy",
                "0,0.47965000629754095,0.47965000629754095,0.0",
                "1,,,",
                "2,0.6931471805599453,0.6931471805599453,0.0",
            ]


def test_binary_files(tmp_path: Path, server_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "y.csv").write_text("0\n1\n1\n")
    (tmp_path / "p.csv").write_text("0.1\n0.8\n0.6\n")
    argv = ["--binary", "--predictions", str(tmp_path / "p.csv"), "--labels", str(tmp_path / "y.csv"), "--json"]
    for remote in ([], ["--url", server_url]):
        code, out, err = _score(capsys, *argv, *remote)
        assert code == 0, err
        assert json.loads(out)["mean"]["cross_entropy"] == pytest.approx(0.2797765635793423, rel=1e-15)


def test_class_names_from_a_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "y.csv").write_text("B\nB\n")
    (tmp_path / "p.csv").write_text("0.228,0.619,0.153\n0.228,0.619,0.153\n")
    argv = ["--predictions", str(tmp_path / "p.csv"), "--labels", str(tmp_path / "y.csv"), "--classes", "A,B,C"]
    code, out, _ = _score(capsys, *argv, "--json")
    assert code == 0
    assert json.loads(out)["classes"] == ["A", "B", "C"]
    assert json.loads(out)["mean"]["cross_entropy"] == 0.47965000629754095


@pytest.mark.parametrize("remote", [False, True])
def test_bad_input_exits_2_with_the_problem(
    remote: bool, tmp_path: Path, server_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "y.npy", np.array([1, 7]))
    np.save(tmp_path / "p.npy", np.array([[0.2, 0.5, 0.3], [0.2, 0.5, 0.3]]))
    argv = ["--predictions", str(tmp_path / "p.npy"), "--labels", str(tmp_path / "y.npy")]
    code, out, err = _score(capsys, *argv, *(["--url", server_url] if remote else []))
    assert (code, out) == (2, "")
    # One chunk: the service's message, located by the flag that gave the field, with no chunk to speak of.
    assert err == f"xent score: --labels {tmp_path / 'y.npy'} row 1: class index 7 is out of range [0, 3)\n"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("p.txt", "", "unknown format '.txt'"),
        ("missing.npy", None, "no such file"),
        ("p.csv", "0.5,0.5\n0.5\n", "rows have different numbers of values"),
        ("p.jsonl", '{"x": 1, "y": 2}\n', "has keys x, y but no 'predictions'"),
    ],
)
def test_unreadable_files_exit_2(
    name: str, content: str | None, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if content is not None:
        (tmp_path / name).write_text(content)
    np.save(tmp_path / "y.npy", np.array([0]))
    code, _, err = _score(capsys, "--predictions", str(tmp_path / name), "--labels", str(tmp_path / "y.npy"))
    assert code == 2
    assert message in err


def test_parquet_without_pyarrow_says_what_to_install(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:

    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import fails, as where pyarrow is absent
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    (tmp_path / "p.parquet").write_bytes(b"PAR1")
    np.save(tmp_path / "y.npy", np.array([0]))
    code, _, err = _score(capsys, "--predictions", str(tmp_path / "p.parquet"), "--labels", str(tmp_path / "y.npy"))
    assert code == 2
    assert "reading Parquet needs pyarrow, which is not installed (pip install pyarrow)" in err


@pytest.mark.parametrize("chunk_size", [None, "1"])
def test_a_chunked_error_names_the_row_of_the_file(
    chunk_size: str | None, tmp_path: Path, server_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "y.npy", np.array([1, 0, 7, 0]))
    np.save(tmp_path / "p.npy", np.full((4, 3), 1 / 3))
    argv = ["--predictions", str(tmp_path / "p.npy"), "--labels", str(tmp_path / "y.npy"), "--url", server_url]
    code, out, err = _score(capsys, *argv, "--no-progress", *(["--chunk-size", chunk_size] if chunk_size else []))
    assert (code, out) == (2, "")
    assert err == f"xent score: --labels {tmp_path / 'y.npy'} row 2: class index 7 is out of range [0, 3)\n"


@pytest.mark.parametrize("remote", [False, True])
@pytest.mark.parametrize(
    ("labels", "flags", "message"),
    [
        (
            np.array([1.0, 2.0, 0.0]),
            [],
            "--labels {labels}: expected 1-D integer class indices, 1-D class names or 2-D float target rows, "
            "got a 1-D array of dtype float64",
        ),
        (np.array([1, 2, 0]), ["--classes", "a,b"], "--classes: has 2 names but predictions have 3 columns"),
        (
            np.array(["a", "b", "a"]),
            ["--classes", "a,a,b"],
            "--classes position 1: duplicate class name 'a' (also at position 0)",
        ),
        (
            np.array([1, 2, 0]),
            ["--class-weights", "1,-1,1"],
            "--class-weights position 1: weight -1.0 is negative; weights must be >= 0",
        ),
        (np.array([1, 2]), [], "--labels {labels}: has 2 entries but predictions have 3 rows"),
        (
            np.array([1, 2, 0, 1]),
            ["--sample-weights", "{weights}"],
            "--sample-weights {weights}: has 1 value but there are 4 rows",
        ),
    ],
)
def test_messages_name_the_flag_that_gave_the_field(
    labels: np.ndarray,
    flags: list[str],
    message: str,
    remote: bool,
    tmp_path: Path,
    server_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    names = {"labels": tmp_path / "y.npy", "weights": tmp_path / "w.npy"}
    np.save(names["labels"], labels)
    np.save(names["weights"], np.array([1.0]))
    rows = 4 if "--sample-weights" in flags else 3
    np.save(tmp_path / "p.npy", np.full((rows, 3), 1 / 3))
    argv = ["--predictions", str(tmp_path / "p.npy"), "--labels", str(names["labels"])]
    argv += [flag.format(**names) for flag in flags]
    code, out, err = _score(capsys, *argv, *(["--url", server_url] if remote else []))
    assert (code, out) == (2, "")
    assert err == f"xent score: {message.format(**names)}\n"


def test_one_row_is_one_row(tmp_path: Path, server_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    np.save(tmp_path / "y.npy", np.array([1, 2]))
    np.save(tmp_path / "p.npy", np.full((1, 3), 1 / 3))
    argv = ["--predictions", str(tmp_path / "p.npy"), "--labels", str(tmp_path / "y.npy")]
    for remote in ([], ["--url", server_url]):
        code, _, err = _score(capsys, *argv, *remote)
        assert code == 2
        assert err == f"xent score: --labels {tmp_path / 'y.npy'}: has 2 entries but predictions have 1 row\n"


def test_a_csv_labels_column_of_whole_floats_holds_class_indices(
    tmp_path: Path, server_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CSV has no types: 1.0 (as pandas writes an integer column that had a missing value) is class 1."""
    (tmp_path / "y.csv").write_text("label\n1.0\n1.0\n")
    np.save(tmp_path / "y.npy", np.array([1, 1]))
    np.save(tmp_path / "p.npy", np.array([[0.228, 0.619, 0.153], [0.5, 0.25, 0.25]]))
    answers = []
    for labels, remote in [("y.npy", []), ("y.csv", []), ("y.csv", ["--url", server_url])]:
        argv = ["--predictions", str(tmp_path / "p.npy"), "--labels", str(tmp_path / labels), "--json"]
        code, out, err = _score(capsys, *argv, *remote)
        assert code == 0, err
        answers.append(json.loads(out))
    assert answers[0] == answers[1] == answers[2]
    assert answers[0]["settings"]["label_type"] == "class_indices"
    assert answers[0]["mean"]["cross_entropy"] == pytest.approx((0.47965000629754095 + np.log(4)) / 2, rel=1e-15)


@pytest.mark.parametrize(
    ("flag", "env", "expected"),
    [
        (
            ["--url", "localhost:8000"],
            None,
            '--url: "localhost:8000" has no scheme; did you mean http://localhost:8000?',
        ),
        ([], "127.0.0.1:8000", 'XENT_URL: "127.0.0.1:8000" has no scheme; did you mean http://127.0.0.1:8000?'),
        (["--url", "ftp://example.org"], None, '--url: "ftp://example.org" is not an http:// or https:// address'),
    ],
)
def test_a_url_without_a_scheme_is_bad_input_with_a_hint(
    flag: list[str],
    env: str | None,
    expected: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if env is None:
        monkeypatch.delenv("XENT_URL", raising=False)
    else:
        monkeypatch.setenv("XENT_URL", env)
    np.save(tmp_path / "y.npy", np.array([1]))
    np.save(tmp_path / "p.npy", np.array([[0.5, 0.5]]))
    code, out, err = _score(
        capsys, "--predictions", str(tmp_path / "p.npy"), "--labels", str(tmp_path / "y.npy"), *flag
    )
    assert (code, out, err) == (2, "", f"xent score: {expected}\n")


def test_the_service_counts_the_errors_after_the_first(
    tmp_path: Path, server_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "y.npy", np.array([1]))
    np.save(tmp_path / "p.npy", np.array([[0.5, 0.5]]))
    argv = ["--predictions", str(tmp_path / "p.npy"), "--labels", str(tmp_path / "y.npy"), "--url", server_url]
    code, out, err = _score(capsys, *argv, "--label-smoothing", "2", "--tolerance", "5")
    assert (code, out) == (2, "")
    assert err == "xent score: --label-smoothing: Input should be less than or equal to 1 (and 1 more)\n"


def test_groups_per_class_and_calibration_locally_remotely_and_in_chunks(
    data: dict[str, np.ndarray], tmp_path: Path, server_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    labels, predictions = _write(tmp_path, "npy", data)
    groups = np.array([f"set-{g}" for g in np.random.default_rng(2).integers(0, 3, N)])
    np.save(tmp_path / "g.npy", groups)
    argv = ["--predictions", str(predictions), "--labels", str(labels), "--groups", str(tmp_path / "g.npy")]
    argv += ["--per-class", "--calibration-bins", "4", "--json"]
    code, out, err = _score(capsys, *argv)
    assert code == 0, err
    local = json.loads(out)
    code, out, err = _score(capsys, *argv, "--url", server_url)
    assert code == 0, err
    remote = json.loads(out)
    code, out, err = _score(capsys, *argv, "--url", server_url, "--chunk-size", "60", "--no-progress")
    assert code == 0, err
    chunked = json.loads(out)
    assert local["by_group"].keys() == {"set-0", "set-1", "set-2"}
    assert sum(entry["n"] for entry in local["by_group"].values()) == N
    assert local["by_class"].keys() == {"0", "1", "2", "3"}
    assert sum(b["count"] for b in local["calibration"]["bins"]) == N
    for name in ("by_group", "by_class", "calibration"):
        assert same_numbers(remote[name], local[name], 1e-12), name
        assert same_numbers(chunked[name], local[name], 1e-9), name  # five chunks merged through their states
    mine = data["labels"] == 2
    expected = -np.mean(np.log(data["predictions"][mine, 2]))
    assert local["by_class"]["2"]["mean_cross_entropy"] == pytest.approx(expected, rel=1e-12)
    code, out, _ = _score(capsys, *argv[:-1])  # the table: a line per group and class, and the calibration
    assert code == 0
    assert "group set-0" in out
    assert "class 3" in out
    assert "calibration" in out
    assert "ece" in out
