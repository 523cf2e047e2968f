"""Create or update the project's virtual environment, safely when several `make`s run at once.

    python3 scripts/make_venv.py VENV run    # the service's dependencies (make run)
    python3 scripts/make_venv.py VENV test   # and the test tools (make test)

`make run &` and `make test` on a fresh clone both find `.venv` missing; without a lock both would
create it and both would upgrade pip into it at once, which breaks it. Here everything happens
under an exclusive lock on `VENV.lock`, and whoever gets the lock second finds the work done.
A stamp file per kind (`VENV/.installed-run`, `VENV/.installed-test`) newer than pyproject.toml
and constraints.txt means "up to date".
"""

from __future__ import annotations

import fcntl
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INPUTS = (ROOT / "pyproject.toml", ROOT / "constraints.txt")
REQUIREMENT = {"run": ".", "test": ".[test]"}
#: Test-only packages installed without their dependencies, at the versions constraints.txt pins: the parity tests
#: read lm-evaluation-harness's own aggregation functions (tests/core/test_sequence_parity.py), and its
#: dependencies (PyTorch, transformers, datasets, …) are gigabytes that those few lines never import.
NO_DEPS = {"test": ("lm_eval",)}


def _fresh(stamp: Path) -> bool:
    """Whether ``stamp`` exists and is newer than every input."""
    return stamp.exists() and all(stamp.stat().st_mtime >= path.stat().st_mtime for path in INPUTS)


def ensure(env: Path, kind: str) -> None:
    """``env`` with the ``kind`` dependencies installed, created if missing."""
    stamp = env / f".installed-{kind}"
    if _fresh(stamp):
        return
    env.parent.mkdir(parents=True, exist_ok=True)
    with open(env.with_name(env.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        if _fresh(stamp):
            return  # another make did it while this one waited
        python = str(env / "bin" / "python")
        if not Path(python).exists():
            sys.stderr.write(f"creating {env}\n")
            venv.EnvBuilder(with_pip=True, clear=env.exists()).create(env)
            subprocess.run([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
        install = [python, "-m", "pip", "install", "--quiet", "-c", str(ROOT / "constraints.txt")]
        subprocess.run([*install, "-e", REQUIREMENT[kind]], cwd=ROOT, check=True)
        if NO_DEPS.get(kind):
            subprocess.run([*install, "--no-deps", *NO_DEPS[kind]], cwd=ROOT, check=True)
        stamp.touch()
        if kind == "test":
            (env / ".installed-run").touch()  # the test dependencies include the service's


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 - this script is what tells an older python3 so
        sys.exit("xent needs Python 3.11 or newer: set PYTHON=/path/to/python3.11")
    if len(argv) != 2 or argv[1] not in REQUIREMENT:
        sys.stderr.write(__doc__ or "")
        return 2
    ensure(Path(argv[0]).absolute(), argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
