"""A real ``xent serve`` on a free loopback port, for the tests that need a real socket.

Importable from every test module (tests/conftest.py puts this folder on sys.path).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
#: `xent serve` run by the interpreter of the test session (whatever venv that is).
XENT = [sys.executable, "-c", "from service.cli import main; raise SystemExit(main())"]


def free_port() -> int:
    """A TCP port nobody listens on right now, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class LiveServer:
    """A running server: where to reach it, and its process (to signal it)."""

    url: str
    process: subprocess.Popen[bytes]


def wait_ready(url: str, process: subprocess.Popen[bytes], seconds: float = 30.0) -> None:
    """Wait until ``url``/readyz answers 200; fail if the process exits or time runs out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, f"xent serve exited with {process.returncode}"
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"xent serve at {url} was not ready within {seconds} s")


@contextlib.contextmanager
def running_xent(
    *flags: str,
    env: dict[str, str] | None = None,
    log: Path | None = None,
    port_flag: bool = False,
    unset: tuple[str, ...] = (),
) -> Iterator[LiveServer]:
    """``xent serve FLAGS`` with the environment's ``XENT_*`` settings replaced by ``env``, until the block ends.

    ``unset``: variables of this process's environment the server must not inherit.

    The port goes in XENT_PORT, or with ``port_flag`` in ``--port`` (flags win over the environment).
    Output goes to ``log`` (or nowhere). The server is terminated at the end if it still runs.
    """
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("XENT_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    environment |= {"XENT_HOST": "127.0.0.1", "XENT_LOG_LEVEL": "warning"}
    environment |= {} if port_flag else {"XENT_PORT": str(port)}
    environment |= env or {}
    for name in unset:
        environment.pop(name, None)
    command = [*XENT, "serve", *flags, *(["--port", str(port)] if port_flag else [])]
    with contextlib.ExitStack() as stack:
        output = stack.enter_context(log.open("wb")) if log is not None else subprocess.DEVNULL
        process = subprocess.Popen(command, env=environment, cwd=REPO, stdout=output, stderr=subprocess.STDOUT)
        server = LiveServer(f"http://127.0.0.1:{port}", process)
        try:
            wait_ready(server.url, process)
            yield server
        finally:
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:  # pragma: no cover - only on a hung server
                process.kill()
                process.wait()
