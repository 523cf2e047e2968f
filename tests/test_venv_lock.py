"""`make run &` and `make test` at once: scripts/make_venv.py serialises the venv work under a lock."""

import fcntl
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "make_venv.py"


def test_second_caller_waits_for_the_lock_then_finds_the_work_done(tmp_path: Path) -> None:
    env = tmp_path / ".venv"
    env.mkdir()
    with open(tmp_path / ".venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another make is creating the venv
        with subprocess.Popen([sys.executable, str(SCRIPT), str(env), "test"], stderr=subprocess.PIPE) as waiting:
            time.sleep(1.0)
            assert waiting.poll() is None, "the second caller did not wait for the lock"
            (env / ".installed-test").touch()  # the first one finishes
            fcntl.flock(lock, fcntl.LOCK_UN)
            _, stderr = waiting.communicate(timeout=30)
    assert waiting.returncode == 0, stderr
    assert not (env / "bin").exists(), "the second caller redid the work the first had done"


def test_up_to_date_venv_needs_no_lock(tmp_path: Path) -> None:
    env = tmp_path / ".venv"
    env.mkdir()
    (env / ".installed-run").touch()
    with open(tmp_path / ".venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = subprocess.run([sys.executable, str(SCRIPT), str(env), "run"], timeout=30, check=False)
    assert done.returncode == 0


def test_unknown_kind_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / ".venv"), "docs"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "scripts/make_venv.py VENV run" in done.stderr
