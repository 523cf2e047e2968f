"""Schema-driven fuzzing: schemathesis against the committed openapi/openapi.json and a real server.

Every operation of the document is fuzzed (its examples, schemathesis's coverage cases, then
random positive and negative inputs) against a real ``xent serve`` on loopback, once with the
default settings and once with every JSON body on the fast path (``XENT_FAST_JSON_MIN_BYTES=0``),
so both decoders meet the same inputs. A case fails on a 5xx, an answer that does not match its
documented schema, an undocumented status code or content type, headers that break the document,
or a schema-invalid request that was accepted.

``make test`` runs a short, reproducible fuzz (fixed seed, 50 examples per operation and phase);
``make fuzz`` a long one with a random seed (see the README, Development). Knobs:
``XENT_FUZZ_EXAMPLES`` (per operation), ``XENT_FUZZ_SEED`` (a number, or ``random``) and
``XENT_FUZZ_SECONDS`` (time budget of each of the two runs).
"""

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hostile_server import running_server
from live_server import REPO

DOCUMENT = REPO / "openapi" / "openapi.json"
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "negative_data_rejection",
)
EXAMPLES = int(os.environ.get("XENT_FUZZ_EXAMPLES", "50"))
SEED = os.environ.get("XENT_FUZZ_SEED", "20261125")
BUDGET_SECONDS = float(os.environ.get("XENT_FUZZ_SECONDS", "90"))


def _seed() -> int:
    return random.randrange(2**32) if SEED == "random" else int(SEED)


def _fuzz(url: str, workdir: Path, seed: int) -> tuple[dict[str, object], str]:
    """Run ``schemathesis run`` against ``url``; its JSON report and its console output."""
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        str(DOCUMENT),
        f"--url={url}",
        f"--checks={','.join(CHECKS)}",
        f"--max-examples={EXAMPLES}",
        f"--seed={seed}",
        # No example database: a run depends on its seed alone, not on what an earlier run found.
        "--generation-database=none",
        # One worker: hypothesis's lambda introspection is not thread-safe on Python 3.11.7 (a
        # "SystemError: AST constructor recursion depth mismatch" inside schemathesis, not a finding).
        "--workers=1",
        "--request-timeout=20",
        "--no-color",
        "--report=json",
        f"--report-json-path={workdir / 'report.json'}",
        *(["--no-shrink"] if EXAMPLES <= 100 else []),
    ]
    # cwd: schemathesis keeps a crash cache in ./.schemathesis, which must not land in the repository.
    done = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=BUDGET_SECONDS, check=False)
    report = json.loads((workdir / "report.json").read_text()) if (workdir / "report.json").exists() else {}
    return report, done.stdout + done.stderr


@pytest.mark.parametrize(
    "settings",
    [pytest.param({}, id="reference-json-path"), pytest.param({"XENT_FAST_JSON_MIN_BYTES": "0"}, id="fast-json-path")],
)
def test_schemathesis_finds_nothing_on_a_real_server(settings: dict[str, str], tmp_path: Path) -> None:
    seed = _seed()
    started = time.monotonic()
    with running_server(settings, log=tmp_path / "server.log") as url:
        report, output = _fuzz(url, tmp_path, seed)
    seconds = time.monotonic() - started

    tail = output[-6000:]
    assert report, f"schemathesis wrote no report (seed {seed}):\n{tail}"
    cases = report["test_cases"]
    operations = report["operations"]
    assert isinstance(cases, dict)
    assert isinstance(operations, dict)
    print(
        f"\nfuzzed {cases['generated']} cases over {operations['tested']} operations "
        f"(max {EXAMPLES} examples per operation and phase, seed {seed}) in {seconds:.0f} s"
    )
    # The /compare endpoints are two of them; /v1/sequence-cross-entropy and its /compare two more; /v1/merge one.
    assert operations["tested"] == operations["total"] == 11, tail
    assert report["failures"] == [], f"seed {seed}:\n{tail}"
    assert report["errors"] == [], f"seed {seed}:\n{tail}"
    assert report["exit_code"] == 0, f"seed {seed}:\n{tail}"
    # A 500 would also be logged with its stack trace: the fuzz must leave none behind.
    assert "unexpected error" not in (tmp_path / "server.log").read_text()
