"""End to end over HTTP on loopback: latency, rows per second and peak server RSS per request."""

from __future__ import annotations

import http.client
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

from benchmarks.servers import HOST, Server
from benchmarks.workloads import Workload, check_json_answer, check_npz_answer
from service.core import ScoreResult

ROUTE = "/v1/cross-entropy"


@dataclass(frozen=True)
class Measurement:
    """Repeated requests of one workload to one server over one transport."""

    workload: Workload
    server: str  # "xent" | "baseline"
    transport: str  # "JSON" | "NPZ"
    body_bytes: int
    latencies: list[float]  # seconds, one per repetition
    peaks_above_idle: list[int] | None  # bytes, VmHWM during the request − the server's idle RSS

    @property
    def latency(self) -> float:
        return statistics.median(self.latencies)

    @property
    def rows_per_second(self) -> float:
        return self.workload.rows / self.latency

    @property
    def peak_above_idle(self) -> int | None:
        return None if self.peaks_above_idle is None else int(statistics.median(self.peaks_above_idle))


class LoopbackClient:
    """A keep-alive HTTP/1.1 connection per server, from the standard library.

    ``http.client`` sends a large body in one ``sendall`` and reads the answer with one
    ``read``: on an 80 MB NPZ body it costs a fraction of what httpx does, so the latency
    measured is the server's rather than the client's.
    """

    def __init__(self, timeout: float = 600.0) -> None:
        self.timeout = timeout
        self.connections: dict[int, http.client.HTTPConnection] = {}

    def post(self, port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        try:
            return self._post(port, path, body, headers)
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # uvicorn closes a keep-alive connection idle for 5 s (while the other server was
            # being measured); scoring has no side effects, so send the request again on a new one.
            self.connections.pop(port).close()
            return self._post(port, path, body, headers)

    def _post(self, port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        connection = self.connections.get(port)
        if connection is None:
            connection = self.connections[port] = http.client.HTTPConnection(HOST, port, timeout=self.timeout)
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        for connection in self.connections.values():
            connection.close()
        self.connections.clear()


def _post(client: LoopbackClient, server: Server, transport: str, workload: Workload) -> bytes:
    if transport == "NPZ":
        status, content = client.post(
            server.port,
            f"{ROUTE}?{urlencode(workload.npz_query)}",
            workload.npz_body,
            {"content-type": "application/x-npz", "accept": "application/x-npz"},
        )
    else:
        status, content = client.post(server.port, ROUTE, workload.json_body, {"content-type": "application/json"})
    if status != 200:
        raise RuntimeError(f"{server.name} {transport} {workload.label}: {status} {content[:500]!r}")
    return content


def measure(
    client: LoopbackClient,
    server: Server,
    transport: str,
    workload: Workload,
    repetitions: int,
    idle_rss: int | None,
) -> Measurement:
    """One warm-up request, then ``repetitions`` timed ones; every answer is checked against the core."""
    expected: ScoreResult = workload.expected
    check: Callable[[bytes], None]
    if transport == "NPZ":
        body_bytes = len(workload.npz_body)

        def check(content: bytes) -> None:
            check_npz_answer(content, expected)
    else:
        body_bytes = len(workload.json_body)

        def check(content: bytes) -> None:
            # The baseline answers CE, KL and entropy only; xent's accuracy is checked too.
            check_json_answer(content, expected, full=server.name == "xent")

    check(_post(client, server, transport, workload))
    latencies: list[float] = []
    peaks: list[int] | None = None if idle_rss is None else []
    for _ in range(repetitions):
        if peaks is not None:
            server.reset_peak()
        start = time.perf_counter()
        content = _post(client, server, transport, workload)
        latencies.append(time.perf_counter() - start)
        if peaks is not None and idle_rss is not None:
            peaks.append(server.peak_rss_bytes() - idle_rss)
        check(content)
    return Measurement(workload, server.name, transport, body_bytes, latencies, peaks)


def core_time(workload: Workload, repetitions: int) -> float:
    """Median seconds of the in-process core (decoded arrays in, ScoreResult out) on the same arrays."""
    workload.score()
    times = []
    for _ in range(repetitions):
        start = time.perf_counter()
        workload.score()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
