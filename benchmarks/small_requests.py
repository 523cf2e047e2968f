"""Small requests: throughput of the reference example at concurrency 1 and 32, against a constant endpoint.

The load generator is wrk (C, one thread, keep-alive connections) when it is on the PATH, and
otherwise an asyncio HTTP/1.1 client in this process. Either way it runs on the same machine as
the server and shares its cores: on 2 cores, one is roughly the server's and one the client's.
Every run is bounded in time, and targets 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.servers import HOST

CONCURRENCIES = (1, 32)


@dataclass(frozen=True)
class Target:
    """An endpoint under load: which server, which path."""

    name: str
    port: int
    path: str


@dataclass
class Throughput:
    """Requests per second of one target at one concurrency, one figure per repetition."""

    target: str
    concurrency: int
    requests_per_second: list[float] = field(default_factory=list)
    p50_latency: list[float] = field(default_factory=list)  # seconds
    p99_latency: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.requests_per_second)


class LoadGeneratorError(RuntimeError):
    """The load generator saw errors or non-2xx answers: the figure would not be of successful requests."""


def load_generator() -> str:
    """A description of the load generator this run will use."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return "asyncio HTTP/1.1 client in the benchmark process (wrk not found: `apt-get install wrk` to use it)"
    version = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False).stdout.splitlines()
    return f"wrk ({version[0].strip() if version else 'unknown version'}), 1 thread, keep-alive connections"


def run_load(target: Target, body: bytes, concurrency: int, seconds: float) -> tuple[float, float, float]:
    """(requests per second, p50 latency, p99 latency) of successful requests over ``seconds``."""
    if shutil.which("wrk") is not None:
        return _wrk(target, body, concurrency, seconds)
    return asyncio.run(_asyncio_load(target, body, concurrency, seconds))


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _seconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise LoadGeneratorError(f"cannot read wrk's latency {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def _wrk(target: Target, body: bytes, concurrency: int, seconds: float) -> tuple[float, float, float]:
    if b"]==]" in body:
        raise ValueError("the body cannot go in a level-2 Lua long string")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            'wrk.method = "POST"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = [==[{body.decode()}]==]\n"  # a level-2 long string: the body holds "]]"
        )
    try:
        command = [
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            script.name,
            f"http://{HOST}:{target.port}{target.path}",
        ]
        output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
    finally:
        Path(script.name).unlink()
    for problem in ("Non-2xx or 3xx responses", "Socket errors"):
        if problem in output:
            raise LoadGeneratorError(f"wrk against {target.name}: {problem}\n{output}")
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    if rate is None or p50 is None or p99 is None:
        raise LoadGeneratorError(f"cannot read wrk's output:\n{output}")
    return float(rate[1]), _seconds(p50[1]), _seconds(p99[1])


async def _asyncio_load(target: Target, body: bytes, concurrency: int, seconds: float) -> tuple[float, float, float]:
    request = (
        f"POST {target.path} HTTP/1.1\r\nHost: {HOST}:{target.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(HOST, target.port)
        try:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = re.search(rb"(?i)content-length:\s*(\d+)", head)
                if status != 200 or length is None:
                    raise LoadGeneratorError(f"{target.name} answered {status} (or without Content-Length)")
                await reader.readexactly(int(length[1]))
                latencies.append(time.perf_counter() - start)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return (
        len(latencies) / elapsed,
        latencies[len(latencies) // 2],
        latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    )


def measure(targets: list[Target], body: bytes, repetitions: int, seconds: float) -> list[Throughput]:
    """Every target at every concurrency, ``repetitions`` times, interleaved so drift hits all alike."""
    results = {(t.name, c): Throughput(t.name, c) for t in targets for c in CONCURRENCIES}
    for target in targets:  # warm-up
        run_load(target, body, max(CONCURRENCIES), 1.0)
    for _ in range(repetitions):
        for concurrency in CONCURRENCIES:
            for target in targets:
                rate, p50, p99 = run_load(target, body, concurrency, seconds)
                result = results[target.name, concurrency]
                result.requests_per_second.append(rate)
                result.p50_latency.append(p50)
                result.p99_latency.append(p99)
    return list(results.values())
