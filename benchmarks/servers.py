"""Start the servers under test as subprocesses on free loopback ports, and read their memory from /proc."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Server:
    """One uvicorn server process: its command, port, log file and ``Popen`` handle."""

    name: str
    command: list[str]
    ready_path: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 60.0) -> None:
        """Start the process and wait until ``ready_path`` answers 200."""
        command = [part.replace("{port}", str(self.port)) for part in self.command]
        env = {**os.environ, **self.env}
        # The log goes to a file, not a pipe: a full pipe nobody reads would stall the server.
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; log: {self.log_path}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} was not ready within {timeout:.0f} s; log: {self.log_path}")

    def stop(self) -> None:
        """SIGTERM (uvicorn's graceful shutdown), then SIGKILL if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def cpu_seconds(self) -> float:
        """CPU time the process has used so far (user + system, all its threads)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def settle(self, quiet: float = 0.05, timeout: float = 3.0) -> None:
        """Wait until the process has used no CPU for ``quiet`` seconds (at most ``timeout``): what it does after
        an answer is sent (freeing a large request's objects) must not run into the next measurement."""
        if not Path(f"/proc/{self.pid}/stat").exists():
            time.sleep(quiet)
            return
        deadline = time.monotonic() + timeout
        used = self.cpu_seconds()
        while time.monotonic() < deadline:
            time.sleep(quiet)
            now = self.cpu_seconds()
            if now == used:
                return
            used = now

    def rss_bytes(self) -> int:
        """Resident set size now (VmRSS)."""
        return _status_bytes(self.pid, "VmRSS")

    def reset_peak(self) -> None:
        """Reset the peak RSS (VmHWM) to the current RSS: writing 5 to clear_refs does that (Linux ≥ 4.0)."""
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")

    def peak_rss_bytes(self) -> int:
        """Peak resident set size since the last ``reset_peak`` (VmHWM)."""
        return _status_bytes(self.pid, "VmHWM")


def _status_bytes(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            value, unit = line.split()[1:3]
            assert unit == "kB", line
            return int(value) * 1024
    raise RuntimeError(f"no {key} in /proc/{pid}/status")


def memory_measurable() -> bool:
    """Whether this system exposes VmHWM and lets us reset it (Linux)."""
    return sys.platform.startswith("linux") and Path("/proc/self/clear_refs").exists()


def xent_command(workers: int) -> list[str]:
    """``xent serve`` from this venv on HOST, with ``{port}`` to fill in."""
    xent = str(Path(sys.executable).parent / "xent")
    return [xent, "serve", "--host", HOST, "--port", "{port}", "--workers", str(workers)]


def xent_server(log_dir: Path, max_body_bytes: int, compression: str | None = None) -> Server:
    """``xent serve`` as shipped: one worker, uvicorn defaults (uvloop, httptools), log level info.

    ``compression``: XENT_COMPRESSION for this server (None: the default, off); the server is then
    named ``xent-<compression>``.
    """
    env = {
        # The 10,000 × 1,000 JSON body (~220 MB) is over the default 64 MiB limit.
        "XENT_MAX_BODY_BYTES": str(max_body_bytes),
        # 10,000 × 1,000 is 10 M cells, over the default 8 M (XENT_MAX_CELLS).
        "XENT_MAX_CELLS": "10000000",
        "XENT_LOG_LEVEL": "info",
    }
    name = "xent"
    if compression is not None:
        env["XENT_COMPRESSION"] = compression
        name = f"xent-{compression}"
    return Server(
        name=name,
        command=xent_command(workers=1),
        ready_path="/readyz",
        log_path=log_dir / f"{name}.log",
        env=env,
    )


def baseline_server(log_dir: Path) -> Server:
    """The plain baseline (and the constant endpoint) under the same uvicorn configuration as xent."""
    return Server(
        name="baseline",
        command=[
            sys.executable,
            "-m",
            "uvicorn",
            "benchmarks.baseline_app:app",
            "--host",
            HOST,
            "--port",
            "{port}",
            "--workers",
            "1",
            "--log-level",
            "info",
            "--timeout-graceful-shutdown",
            "25",
        ],
        ready_path="/healthz",
        log_path=log_dir / "baseline.log",
    )


def floor_server(log_dir: Path) -> Server:
    """benchmarks/floor_app.py (xent's core, no HTTP layer; a bare echo) under the same uvicorn configuration."""
    return Server(
        name="floor",
        command=[
            sys.executable,
            "-m",
            "uvicorn",
            "benchmarks.floor_app:app",
            # xent's protocol, whose direct body reads the echo uses as xent does (service/server/direct_body.py).
            "--http",
            "service.server.protocol:HeaderLimitedProtocol",
            "--host",
            HOST,
            "--port",
            "{port}",
            "--workers",
            "1",
            "--log-level",
            "info",
        ],
        ready_path="/healthz",
        log_path=log_dir / "floor.log",
    )
