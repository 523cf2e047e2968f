"""The README's "From Python" and "From the shell" examples, run against a real server: the README cannot lie."""

import doctest
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from client_servers import serve_in_thread

from service.api.app import create_app
from service.client import Client
from service.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """The real app on a real uvicorn server, for this module's tests."""
    yield from serve_in_thread(create_app(Settings()))


README_URL = "http://127.0.0.1:8000"


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _python_examples() -> list[str]:
    found = re.findall(r"```pycon\n(.*?)```", _section("From Python"), re.DOTALL)
    assert len(found) >= 3, "the README's Python examples were not found"
    return found


def _shell_examples() -> list[tuple[str, str]]:
    found = re.findall(r"```sh\n(.*?)```\n```text\n(.*?)```", _section("From the shell"), re.DOTALL)
    assert len(found) >= 2, "the README's shell examples were not found"
    return found


def test_the_python_examples_answer_as_shown(server_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    globs: dict[str, object] = {}  # the examples build on one another, as in a session
    try:
        for number, example in enumerate(_python_examples()):
            test = doctest.DocTestParser().get_doctest(
                example.replace(README_URL, server_url), globs, f"README From Python #{number}", str(README), 0
            )
            runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
            runner.run(test, out=sys.stdout.write, clear_globs=False)
            assert runner.failures == 0, capsys.readouterr().out
            globs = test.globs
    finally:
        client = globs.get("xent")
        if isinstance(client, Client):
            client.close()  # a failed example must not leak the connection into later tests


@pytest.mark.parametrize("number", range(2))
def test_the_shell_examples_print_what_is_shown(number: int, server_url: str, tmp_path: Path) -> None:
    command, expected = _shell_examples()[number]
    if number:  # the second example scores the first one's files
        test_the_shell_examples_print_what_is_shown(0, server_url, tmp_path)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("XENT_URL", None)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command.replace(README_URL, server_url)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected
