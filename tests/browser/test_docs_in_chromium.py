"""/docs and /redoc in headless Chromium, air-gapped: every request outside 127.0.0.1 is blocked.

A real `xent serve` on a free loopback port; `docs_in_chromium.mjs` (playwright-core driving
Debian's /usr/bin/chromium) opens the pages, runs "Try it out" → "Execute" on POST
/v1/cross-entropy with its default (reference) example, and saves screenshots to
test-artifacts/. Needs node, `npm ci` in tests/browser and `apt-get install chromium`; .ci/run
does both. Locally the tests skip when something is missing; under CI=true they fail instead.
"""

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live_server import running_xent

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ARTIFACTS = ROOT / "test-artifacts"
SCRIPT = HERE / "docs_in_chromium.mjs"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
REFERENCE_CROSS_ENTROPY = 0.47965000629754095


def _missing() -> list[str]:
    """What the browser test needs and this machine lacks."""
    missing = []
    if shutil.which("node") is None:
        missing.append("node (Node.js 20)")
    if not (HERE / "node_modules" / "playwright-core").is_dir():
        missing.append("tests/browser/node_modules (run `npm ci` in tests/browser)")
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    return missing


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """`xent serve` on a free loopback port, with default settings (no XENT_* from the caller).

    Its log goes to test-artifacts/docs-server.log (a file, so a chatty server never fills a pipe).
    """
    ARTIFACTS.mkdir(exist_ok=True)
    with running_xent(env={"XENT_LOG_LEVEL": "info"}, log=ARTIFACTS / "docs-server.log") as live:
        yield live.url


@pytest.fixture(scope="module")
def browser_tools() -> None:
    """Skip (locally) or fail (under CI) before starting anything when node, playwright-core or Chromium is missing."""
    missing = _missing()
    if missing:
        message = "browser test needs " + ", ".join(missing)
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"{message}; CI must run it (.ci/run installs them)")
        pytest.skip(f"{message}; .ci/run installs them")


@pytest.fixture(scope="module")
def browser_run(browser_tools: None, server: str) -> dict[str, Any]:
    """One Chromium session over both pages; what it saw, as the script reports it."""
    started = time.monotonic()
    result = subprocess.run(
        ["node", str(SCRIPT), server, str(ARTIFACTS)],
        cwd=HERE,
        env={**os.environ, "CHROMIUM": CHROMIUM},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    print(f"browser session: {time.monotonic() - started:.1f} s; screenshots in {ARTIFACTS}")
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_docs_need_nothing_outside_loopback(browser_run: dict[str, Any]) -> None:
    assert browser_run["blocked"] == [], "requests the pages made outside 127.0.0.1 (aborted by the test)"
    assert browser_run["failed_requests"] == []
    assert browser_run["page_errors"] == []
    assert browser_run["loopback_requests"] >= 8  # both pages, their scripts, styles, favicon and documents


def test_swagger_ui_renders_both_scoring_operations(browser_run: dict[str, Any]) -> None:
    assert browser_run["title"] == "xent - Swagger UI"
    assert {"POST /v1/cross-entropy", "POST /v1/binary-cross-entropy"} <= set(browser_run["operations"])
    assert Path(browser_run["screenshot"]).stat().st_size > 10_000


def test_redoc_renders_both_scoring_operations(browser_run: dict[str, Any]) -> None:
    assert {
        "Multi-class cross-entropy, KL divergence and target entropy",
        "Binary and multi-label cross-entropy",
    } <= set(browser_run["redoc_headings"])


def test_try_it_out_offers_the_reference_example(browser_run: dict[str, Any]) -> None:
    assert json.loads(browser_run["request_body"]) == {"labels": [1], "predictions": [[0.228, 0.619, 0.153]]}


def test_try_it_out_scores_the_reference_example_once_the_npz_query_options_are_emptied(
    browser_run: dict[str, Any],
) -> None:
    answer = browser_run["query_cleared"]

    assert answer["url"].endswith("/v1/cross-entropy"), answer["url"]
    assert answer["status"] == "200", answer["body"]
    assert "0.47965" in answer["body"]
    assert json.loads(answer["body"])["mean"]["cross_entropy"] == REFERENCE_CROSS_ENTROPY


def test_try_it_out_scores_the_reference_example_as_is(browser_run: dict[str, Any]) -> None:
    answer = browser_run["as_is"]

    assert answer["status"] == "200", f"{answer['url']}\n{answer['body']}"
    assert json.loads(answer["body"])["mean"]["cross_entropy"] == REFERENCE_CROSS_ENTROPY
