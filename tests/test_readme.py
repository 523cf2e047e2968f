"""Every block of the README, run: the README cannot lie.

`RUNS` below is the one list of the README's fenced blocks: each block's first line, by its start,
names the test that runs it (a ```json or ```text block right under a ```sh block is that command's
answer and is compared by the same test). A block that matches no entry fails
`test_every_readme_block_is_run_somewhere`, so a new example cannot go untested.

- curl commands are sent to the app in process, and their ```json answers compared;
- the ```pycon sessions run as one doctest against a real ``xent serve`` on a free port: the README's
  ``http://127.0.0.1:8000`` is replaced by that server's URL;
- shell commands (``xent score``, ``python -c``) run in bash in one temporary folder with the test
  interpreter's venv ``bin`` first on PATH, which is what ``. .venv/bin/activate`` does; their stdout
  must be the ```text shown (the same URL replacement);
- the 10⁶-row timing example runs as written, in full (about 9 s on 2 cores), on a free port instead of 8765;
- `make run` / `make test` cannot run inside the suite: their targets and what the README says of them
  are checked against the Makefile;
- the container commands are run by scripts/container-test.sh, which reads them from this README.
"""

import doctest
import enum
import json
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from in_process import post
from live_server import REPO, free_port, running_xent

from service import __version__
from service.logs import REQUEST_LOGGER, JsonFormatter

README = REPO / "README.md"
MAKEFILE = REPO / "Makefile"
#: Where the README's examples expect the service.
README_URL = "http://127.0.0.1:8000"


class Runner(enum.Enum):
    """Who runs a README block."""

    IN_PROCESS = "test_curl_examples_answer_as_shown"
    DOCTEST = "test_python_sessions_answer_as_shown"
    SHELL = "test_shell_examples_print_what_is_shown"
    TIMING = "test_the_timing_example_runs_as_written"
    MAKEFILE = "test_the_make_commands_do_what_the_readme_says"
    CONTAINER = "scripts/container-test.sh (readme_container_commands), with the additions the README names"
    LOG_LINE = "test_the_log_line_has_the_fields_of_a_real_one"
    NOT_RUN = "a picture, not a command or its output"


#: Every README block that is not an answer, by the start of its first line: the one place that says
#: who runs it.
RUNS: dict[str, Runner] = {
    "make run ": Runner.MAKEFILE,
    "curl ": Runner.IN_PROCESS,
    "python -c 'import numpy as np; np.savez(": Runner.IN_PROCESS,  # writes the batch.npz that curl sends
    ">>> ": Runner.DOCTEST,
    'python -c \'import numpy as np; np.save("labels.npy"': Runner.SHELL,
    "xent score ": Runner.SHELL,
    "python -c 'import numpy as np; from sklearn.datasets import": Runner.SHELL,  # the two models compared
    "XENT_MAX_BODY_BYTES=": Runner.TIMING,
    "docker build ": Runner.CONTAINER,
    '{"time":': Runner.LOG_LINE,
    "  xent score ─┐": Runner.NOT_RUN,  # the architecture diagram
}


@dataclass(frozen=True)
class Block:
    """A fenced block of the README: its language, its text, its first line number, and its answer block."""

    language: str
    text: str
    line: int
    answer: "Block | None" = None


def _fenced() -> list[Block]:
    text = README.read_text()
    return [
        Block(match["language"], match["text"], text.count("\n", 0, match.start()) + 1)
        for match in re.finditer(r"^```(?P<language>\w*)\n(?P<text>.*?)^```[ \t]*$", text, re.MULTILINE | re.DOTALL)
    ]


def _blocks() -> list[Block]:
    """The README's blocks, each with its answer: a ```json or ```text block right under a ```sh block."""
    found: list[Block] = []
    for block in _fenced():
        previous = found[-1] if found else None
        is_answer = (
            previous is not None
            and previous.answer is None
            and previous.language == "sh"
            and block.language in ("json", "text")
            and block.line == previous.line + previous.text.count("\n") + 2
        )
        if is_answer and previous is not None:
            found[-1] = Block(previous.language, previous.text, previous.line, block)
        else:
            found.append(block)
    return found


def _runner(block: Block) -> Runner | None:
    matches = {runner for start, runner in RUNS.items() if block.text.startswith(start)}
    return matches.pop() if len(matches) == 1 else None


def _run_by(runner: Runner) -> list[Block]:
    found = [block for block in _blocks() if _runner(block) is runner]
    assert found, f"the README has no block for {runner.value}"
    return found


def test_every_readme_block_is_run_somewhere() -> None:
    unclaimed = [f"line {block.line}: {block.text.splitlines()[0]}" for block in _blocks() if _runner(block) is None]
    assert not unclaimed, "README blocks that no test runs (add them to RUNS in tests/test_readme.py):\n" + "\n".join(
        unclaimed
    )
    languages = {block.language for block in _fenced()}
    assert languages <= {"sh", "json", "text", "pycon"}, languages


# --- curl, in process ----------------------------------------------------------------------------


def _request(command: str, workdir: Path) -> tuple[str, bytes, dict[str, str]]:
    """Path, body and headers of a `curl -s URL -H ... -d '...'` command.

    A `python -c '...'` command before it (which writes the file `--data-binary @FILE` sends)
    is run first, in ``workdir``.
    """
    words = shlex.split(command.replace("\\\n", " "))
    if words[:2] == ["python", "-c"]:
        subprocess.run([sys.executable, "-c", words[2]], cwd=workdir, check=True)
        words = words[3:]
    url = next(w for w in words if w.startswith(("localhost:", "http://localhost:")))
    headers, body = {}, b""
    for flag, value in pairwise(words):
        if flag == "-H":
            name, _, content = value.partition(":")
            headers[name.strip()] = content.strip()
        elif flag in ("-d", "--json"):
            body = value.encode()
        elif flag == "--data-binary":
            body = (workdir / value.removeprefix("@")).read_bytes()
    return url.split("localhost:8000", 1)[1], body, headers


def _matches(expected: Any, actual: Any, where: str = "") -> None:
    """Every key shown in the README is in the answer with that value (floats to 1e-12 relative)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), where
        for key, value in expected.items():
            assert key in actual, f"{where}.{key} missing"
            _matches(value, actual[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), where
        assert len(expected) == len(actual), where
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            _matches(e, a, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert actual == pytest.approx(expected, rel=1e-12, abs=1e-15), where
    else:
        assert actual == expected, where


@pytest.mark.parametrize("block", _run_by(Runner.IN_PROCESS), ids=lambda block: f"line {block.line}")
def test_curl_examples_answer_as_shown(block: Block, tmp_path: Path) -> None:
    assert block.answer is not None, "a curl example shows its answer"
    answer = json.loads(block.answer.text)
    path, body, headers = _request(block.text, tmp_path)

    response = post(path, body, headers)
    _matches(answer, response.json())
    assert response.status_code == answer.get("status", 200), response.text


# --- a real server: the Python sessions and the shell ---------------------------------------------


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """A real ``xent serve`` on a free port, for this module's tests."""
    with running_xent() as server:
        yield server.url


def _venv_environment() -> dict[str, str]:
    """The environment with the test interpreter's venv ``bin`` first on PATH (``. .venv/bin/activate``), no XENT_*."""
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "xent").exists(), f"no xent beside {sys.executable}: is the project installed in this venv?"
    environment = {key: value for key, value in os.environ.items() if not key.startswith("XENT_")}
    return environment | {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "VIRTUAL_ENV": str(bin_dir.parent)}


def test_python_sessions_answer_as_shown(server_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    globs: dict[str, Any] = {}  # the sessions build on one another, as in one interpreter
    try:
        for block in _run_by(Runner.DOCTEST):
            test = doctest.DocTestParser().get_doctest(
                block.text.replace(README_URL, server_url), globs, f"README line {block.line}", str(README), block.line
            )
            runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
            runner.run(test, out=sys.stdout.write, clear_globs=False)
            assert runner.failures == 0, capsys.readouterr().out
            globs = test.globs
    finally:
        client = globs.get("xent")
        if client is not None:
            client.close()  # a failed example must not leak its connections into later tests


def test_shell_examples_print_what_is_shown(server_url: str, tmp_path: Path) -> None:
    for block in _run_by(Runner.SHELL):  # in README order, in one folder: the later ones read the files made before
        assert block.answer is not None, f"line {block.line}: a shell example shows its output"
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block.text.replace(README_URL, server_url)],
            cwd=tmp_path,
            env=_venv_environment(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"line {block.line}: exit {done.returncode}\n{done.stderr}"
        assert done.stdout == block.answer.text, f"line {block.line}"


def _session_still_runs(session: int, seconds: float) -> bool:
    """Whether a process of ``session`` (a process group too) still runs after waiting up to ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(session, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.1)
    return True


def test_the_timing_example_runs_as_written(tmp_path: Path) -> None:
    [block] = _run_by(Runner.TIMING)
    port = free_port()  # not the README's 8765, which may be taken here
    script = block.text.replace(":8765", f":{port}").replace("--port 8765", f"--port {port}")
    assert str(port) in script
    # A session of its own, so the server it starts in the background ends with it even if a command fails;
    # output to files, since that server holds them open.
    out_path, err_path = tmp_path / "stdout", tmp_path / "stderr"
    with out_path.open("w") as out_file, err_path.open("w") as err_file:
        process = subprocess.Popen(
            ["bash", "-eo", "pipefail", "-c", script],
            cwd=tmp_path,
            env=_venv_environment(),
            stdout=out_file,
            stderr=err_file,
            start_new_session=True,
        )
    try:
        process.wait(timeout=180)
    finally:
        process.kill()
        left_running = _session_still_runs(process.pid, seconds=15)
        if left_running:
            os.killpg(process.pid, signal.SIGKILL)
    out, err = out_path.read_text(), err_path.read_text()
    assert process.returncode == 0, err
    assert not left_running, "the timing example leaves its server running"
    # Both runs print the same table: score_many's 8 chunks merge through their states into the one request's
    # answer (issue 15), standard errors included.
    printed = "".join(line for line in out.splitlines(keepends=True) if not line.startswith("{"))  # the server's log
    tables = printed.split("warnings        none\n")
    assert len(tables) == 3, out
    assert tables[0] == tables[1], out
    assert "n                      1000000   (1000000 scored)" in tables[0], out
    assert err.count("real\t") == 2, err


# --- what cannot run inside the suite -------------------------------------------------------------


def test_the_make_commands_do_what_the_readme_says() -> None:
    makefile, readme = MAKEFILE.read_text(), README.read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.MULTILINE))
    for block in _run_by(Runner.MAKEFILE):
        for line in block.text.splitlines():
            assert line.split()[1] in targets, line
    # "`make test` = `make lint typecheck manifests pytest`": the Makefile's own prerequisites, in order.
    said = re.search(r"`make test` = `make ([a-z ]+)`", readme)
    prerequisites = re.search(r"^test: (.*)$", makefile, re.MULTILINE)
    assert said is not None
    assert prerequisites is not None
    assert said[1].split() == prerequisites[1].split()
    # The long fuzz: the README and the Makefile's comment on it give the same duration.
    readme_fuzz = re.search(r"`make fuzz` is the long run:.*?about (\d+) minutes", readme, re.DOTALL)
    makefile_fuzz = re.search(r"About (\d+) minutes for 1000 examples", makefile)
    assert readme_fuzz is not None
    assert makefile_fuzz is not None
    assert readme_fuzz[1] == makefile_fuzz[1]


def test_the_port_is_chosen_as_the_readme_says() -> None:
    said = re.search(r"`XENT_PORT=(\d+) make run`", README.read_text())
    assert said is not None
    environment = {key: value for key, value in os.environ.items() if not key.startswith("XENT_")}
    done = subprocess.run(
        ["make", "-n", "run"],
        cwd=REPO,
        env=environment | {"XENT_PORT": said[1]},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert f"serve --host 127.0.0.1 --port {said[1]}" in done.stdout, done.stdout


def test_the_image_tag_is_the_version_everywhere() -> None:
    """The README builds and runs the tag the Kubernetes Deployment and docker-compose.yml use: xent:<version>."""
    tag = f"xent:{__version__}"
    [block] = _run_by(Runner.CONTAINER)
    build, run, _compose = block.text.splitlines()
    assert build.split()[:4] == ["docker", "build", "-t", tag], build
    assert run.split()[-1] == tag, run
    deployment = (REPO / "deploy" / "kubernetes" / "deployment.yaml").read_text()
    assert re.findall(r"^\s+image: (\S+)", deployment, re.MULTILINE) == [tag]
    compose = (REPO / "docker-compose.yml").read_text()
    assert re.findall(r"^\s+image: (\S+)", compose, re.MULTILINE) == [f"${{XENT_IMAGE:-{tag}}}"]


class _Records(logging.Handler):
    """Keeps the formatted lines."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_the_log_line_has_the_fields_of_a_real_one() -> None:
    [block] = _run_by(Runner.LOG_LINE)
    shown = json.loads(block.text)
    records = _Records()
    records.setFormatter(JsonFormatter())
    logger = logging.getLogger(REQUEST_LOGGER)
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(records)
    try:
        response = post(
            shown["path"],
            b'{"labels":[1,2],"predictions":[[0.2,0.5,0.3],[0.1,0.2,0.7]]}',
            {"content-type": "application/json", "x-request-id": shown["request_id"]},
        )
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)
    assert response.status_code == 200, response.text
    [line] = [json.loads(record) for record in records.lines]
    assert set(line) == set(shown)
    varying = {"time", "duration_ms", "bytes_in", "bytes_out", "client"}
    assert {key: line[key] for key in set(line) - varying} == {key: shown[key] for key in set(shown) - varying}
