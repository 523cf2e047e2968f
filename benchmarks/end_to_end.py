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
    configurations: list[tuple[Server, str]],
    workload: Workload,
    repetitions: int,
    idle: dict[str, int] | None,
) -> tuple[list[Measurement], float]:
    """Each (server, transport) on one workload, interleaved; then the in-process core on its own.

    One warm-up request each, then ``repetitions`` rounds in which every configuration sends
    one timed request: on a shared machine a slow spell then weighs on every server of the
    round alike, and the ratios between them stay fair. Every answer is checked against the
    core. The core is timed afterwards, call after call with nothing in between (its warm,
    best case, against which the transports are judged). Returns the measurements and the
    core's median seconds.
    """
    expected: ScoreResult = workload.expected
    checks: list[Callable[[bytes], None]] = []
    for server, transport in configurations:
        if transport == "NPZ":

            def check(content: bytes) -> None:
                check_npz_answer(content, expected)
        else:
            full = server.name == "xent"  # the baseline answers CE, KL and entropy only

            def check(content: bytes, full: bool = full) -> None:
                check_json_answer(content, expected, full=full)

        check(_post(client, server, transport, workload))
        checks.append(check)
    workload.score()
    latencies: list[list[float]] = [[] for _ in configurations]
    peaks: list[list[int]] = [[] for _ in configurations]
    core: list[float] = []
    for _ in range(repetitions):
        for index, (server, transport) in enumerate(configurations):
            if idle is not None:
                server.reset_peak()
            start = time.perf_counter()
            content = _post(client, server, transport, workload)
            latencies[index].append(time.perf_counter() - start)
            if idle is not None:
                peaks[index].append(server.peak_rss_bytes() - idle[server.name])
            checks[index](content)
    for _ in range(max(repetitions, 5)):
        start = time.perf_counter()
        workload.score()
        core.append(time.perf_counter() - start)
    measurements = [
        Measurement(
            workload,
            server.name,
            transport,
            len(workload.npz_body if transport == "NPZ" else workload.json_body),
            latencies[index],
            None if idle is None else peaks[index],
        )
        for index, (server, transport) in enumerate(configurations)
    ]
    return measurements, statistics.median(core)
