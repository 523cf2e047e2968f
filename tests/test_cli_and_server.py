"""`xent openapi` and `xent serve`, the latter as a real uvicorn server on loopback."""

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from live_server import REPO, XENT, running_xent

from service.cli import main, openapi_document

REFERENCE = {"labels": [1], "predictions": [[0.228, 0.619, 0.153]]}


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[str]:
    """A real `xent serve` on a free loopback port; the port comes from a flag, overriding XENT_PORT."""
    workers = getattr(request, "param", 1)
    with running_xent("--workers", str(workers), env={"XENT_PORT": "1"}, port_flag=True) as live:
        yield live.url


@pytest.mark.parametrize("server", [1, 2], indirect=True, ids=["one-worker", "two-workers"])
def test_real_server_scores_the_reference_example(server: str) -> None:
    for _ in range(4):  # with two workers, more than one answers
        response = httpx.post(f"{server}/v1/cross-entropy", json=REFERENCE, timeout=10)
        assert response.status_code == 200, response.text
        assert response.json()["mean"]["cross_entropy"] == pytest.approx(0.479650, abs=1e-6)
        assert response.json()["mean"]["kl_divergence"] == pytest.approx(0.479650, abs=1e-6)
        assert response.json()["mean"]["entropy"] == 0.0


def test_real_server_refuses_bad_input_and_keeps_answering(server: str) -> None:
    bad = httpx.post(
        f"{server}/v1/cross-entropy",
        content=b'{"labels":[1],"predictions":[[0.2,NaN,0.3]]}',
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert bad.status_code == 422, bad.text
    assert bad.headers["content-type"] == "application/problem+json"
    assert bad.json()["errors"][0]["loc"] == ["body", "predictions", 0, 1]
    good = httpx.post(f"{server}/v1/cross-entropy", json=REFERENCE, timeout=10)
    assert good.json()["per_sample"]["cross_entropy"] == [pytest.approx(0.4796500062975)]


def test_serve_rejects_an_invalid_setting_with_exit_code_2() -> None:
    process = subprocess.Popen(
        [*XENT, "serve"], env={**os.environ, "XENT_WORKERS": "0"}, cwd=REPO, stderr=subprocess.PIPE
    )
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 2
    assert b"XENT_WORKERS" in stderr


def test_openapi_command_writes_the_document(tmp_path: Path) -> None:
    target = tmp_path / "openapi.json"
    assert main(["openapi", str(target)]) == 0
    document = json.loads(target.read_text())
    assert document["info"]["title"] == "xent"
    assert set(document["paths"]) >= {"/v1/cross-entropy", "/v1/binary-cross-entropy", "/healthz", "/readyz"}
    assert target.read_text() == openapi_document()


def test_openapi_command_prints_to_stdout_without_a_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["openapi"]) == 0
    assert json.loads(capsys.readouterr().out)["openapi"].startswith("3.1")


def test_python_m_service_cli_is_the_xent_command() -> None:
    """The container runs `python -m service.cli serve`."""
    command = [sys.executable, "-m", "service.cli", "openapi"]
    result = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO, timeout=60)
    assert result.stdout == openapi_document()


def test_a_large_request_in_flight_does_not_stall_health_checks(server: str) -> None:
    """Scoring runs in a worker thread: /healthz keeps answering while a big batch is being scored."""
    import threading

    import numpy as np

    rng = np.random.default_rng(3)
    rows = 300_000  # about 27 MB of JSON, under the 64 MiB body limit
    predictions = rng.normal(size=(rows, 10)).round(6)
    labels = rng.integers(0, 10, rows)
    body = json.dumps({"labels": labels.tolist(), "predictions": predictions.tolist(), "prediction_type": "logits"})
    big: dict[str, object] = {}

    def post_big() -> None:
        started = time.monotonic()
        response = httpx.post(
            f"{server}/v1/cross-entropy", content=body, headers={"content-type": "application/json"}, timeout=120
        )
        big.update(status=response.status_code, text=response.text[:300], seconds=time.monotonic() - started)
        if response.status_code == 200:
            big["n"] = response.json()["n"]

    worker = threading.Thread(target=post_big)
    worker.start()
    latencies = []
    while worker.is_alive():
        started = time.monotonic()
        health = httpx.get(f"{server}/healthz", timeout=30)
        latencies.append(time.monotonic() - started)
        assert health.status_code == 200
        time.sleep(0.02)
    worker.join()
    assert big["status"] == 200, big
    assert big["n"] == rows
    # The event loop is only held while simdjson parses (it keeps the GIL: ~50-120 ms for this body);
    # the rest of the work runs in a thread, so most health checks answer at once.
    assert len(latencies) >= 3, f"/healthz answered {len(latencies)} times during a {big['seconds']:.2f} s request"
    assert sorted(latencies)[len(latencies) // 2] < 0.25, latencies


def _glibc_tunables_of(pid: int) -> str:
    """GLIBC_TUNABLES as the process ``pid`` started with it.

    glibc parses the variable in place at start-up, writing a NUL over each ':', so in
    /proc/PID/environ the tunables after the first look like entries of their own.
    """
    entries = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
    start = next(i for i, entry in enumerate(entries) if entry.startswith("GLIBC_TUNABLES="))
    tunables = [entries[start].removeprefix("GLIBC_TUNABLES=")]
    tunables += [entry for entry in entries[start + 1 :] if entry.startswith("glibc.")]
    return ":".join(tunables)


glibc_linux = pytest.mark.skipif(
    not Path("/proc/self/environ").exists() or os.confstr("CS_GNU_LIBC_VERSION") is None,
    reason="GLIBC_TUNABLES matters only on Linux with glibc",
)


@glibc_linux
def test_serve_runs_with_glibc_huge_pages_in_the_same_process() -> None:
    environment = {"GLIBC_TUNABLES": ""}
    with running_xent(env=environment) as live:
        # The exec keeps the PID: the process we started is the server, now with the tunable.
        assert _glibc_tunables_of(live.process.pid) == "glibc.malloc.hugetlb=1"
        response = httpx.post(f"{live.url}/v1/cross-entropy", json=REFERENCE, timeout=10)
        assert response.json()["mean"]["cross_entropy"] == 0.47965000629754095


def _environment_of(pid: int) -> dict[str, str]:
    """The environment the process ``pid`` was started (or exec'd) with."""
    entries = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
    return dict(entry.split("=", 1) for entry in entries if "=" in entry)


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc/PID/environ")
def test_serve_holds_the_blas_libraries_to_one_thread_unless_the_operator_says_otherwise() -> None:
    with running_xent(env={"OMP_NUM_THREADS": "3"}, unset=("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")) as live:
        environment = _environment_of(live.process.pid)
        response = httpx.post(f"{live.url}/v1/cross-entropy", json=REFERENCE, timeout=10)
    assert (environment["OPENBLAS_NUM_THREADS"], environment["MKL_NUM_THREADS"]) == ("1", "1")
    assert environment["OMP_NUM_THREADS"] == "3"  # the operator's own value stays
    assert response.json()["mean"]["cross_entropy"] == 0.47965000629754095


@glibc_linux
@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("glibc.malloc.hugetlb=0", "glibc.malloc.hugetlb=0"),
        ("glibc.malloc.arena_max=4", "glibc.malloc.arena_max=4:glibc.malloc.hugetlb=1"),
    ],
)
def test_serve_keeps_the_operators_glibc_tunables(given: str, kept: str) -> None:
    with running_xent(env={"GLIBC_TUNABLES": given}) as live:
        assert _glibc_tunables_of(live.process.pid) == kept
