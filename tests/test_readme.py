"""The README's curl examples, run against the real app: the README cannot lie."""

import json
import re
import shlex
import subprocess
import sys
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from in_process import post

README = Path(__file__).resolve().parent.parent / "README.md"
EXAMPLE = re.compile(r"```sh\n((?:python3 -c |curl )[^`]*?)```\n```json\n(.*?)```", re.DOTALL)


def _examples() -> list[tuple[str, Any]]:
    found = [(command, json.loads(answer)) for command, answer in EXAMPLE.findall(README.read_text())]
    assert len(found) >= 5, "the README's curl examples were not found"
    return found


def _request(command: str, workdir: Path) -> tuple[str, bytes, dict[str, str]]:
    """Path, body and headers of a `curl -s URL -H ... -d '...'` command.

    A `python3 -c '...'` command before it (which writes the file `--data-binary @FILE` sends)
    is run first, in ``workdir``.
    """
    words = shlex.split(command.replace("\\\n", " "))
    if words[:2] == ["python3", "-c"]:
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


@pytest.mark.parametrize(("command", "answer"), _examples())
def test_readme_example_answers_as_shown(command: str, answer: Any, tmp_path: Path) -> None:
    path, body, headers = _request(command, tmp_path)

    response = post(path, body, headers)
    _matches(answer, response.json())
    assert response.status_code == answer.get("status", 200), response.text


def test_readme_names_the_two_commands() -> None:
    text = README.read_text()
    assert "make run" in text
    assert "make test" in text
