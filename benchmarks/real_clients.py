"""End to end as users run it: real HTTP clients with their default headers, answer bytes on the wire beside the times.

httpx (``httpx.Client().post``), requests (when installed) and curl without and with
``--compressed`` each send the same bodies to the plain baseline and to xent, one request at a
time over the client's own connection handling. The clients keep their default headers, so
``Accept-Encoding`` is what they send by default (httpx: ``gzip, deflate, zstd`` when zstandard is
installed; requests: ``gzip, deflate``; curl: nothing, or ``deflate, gzip, br, zstd`` with
``--compressed``); only ``Content-Type`` (and ``Accept`` for an NPZ answer) is set, as a user must.
Every answer is decoded by the client, as it would be, and checked against the in-process core.
"""

from __future__ import annotations

import contextlib
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlencode

import httpx

from benchmarks.servers import Server
from benchmarks.workloads import Workload, check_json_answer, check_npz_answer

ROUTE = "/v1/cross-entropy"
JSON_TYPE = "application/json"
NPZ_TYPE = "application/x-npz"


@dataclass(frozen=True)
class Reply:
    """One answer as a client saw it: decoded content, bytes on the wire, and the time it took."""

    status: int
    content: bytes  # decoded, as the client hands it to its user
    wire_bytes: int  # the answer's body as sent (compressed, if it was)
    content_encoding: str
    seconds: float
    #: Seconds from the call until the client had sent the request's last byte, and its thread's CPU seconds (user and
    #: system, ``time.thread_time``) until then; None when the client was not asked to trace (``HttpxClient(trace=)``).
    sent_seconds: float | None = None
    sending_cpu_seconds: float | None = None


class Client(Protocol):
    """An HTTP client as a user runs it: ``post`` sends a body with its default headers plus ``headers``."""

    name: str
    accept_encoding: str  # what it sends by default, for the report

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Reply: ...

    def close(self) -> None: ...


class HttpxClient:
    """``httpx.Client()``: default headers, keep-alive; time from the call to the decoded content.

    ``trace``: also note when httpx has sent the request's last byte (its ``trace`` extension, whose callback reads
    two clocks; the request on the wire and httpx's way of sending it are the same), and how much CPU the calling
    thread had used by then: the client's own share of the latency, which no server takes back.
    """

    name = "httpx"

    def __init__(self, trace: bool = False) -> None:
        self.client = httpx.Client(timeout=600.0)
        self.accept_encoding = self.client.headers["accept-encoding"]
        self.trace = trace

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Reply:
        sent: list[float] = []

        def note(event: str, info: object) -> None:
            if event == "http11.send_request_body.complete":
                sent[:] = [time.perf_counter(), time.thread_time()]

        extensions = {"trace": note} if self.trace else None
        start, cpu = time.perf_counter(), time.thread_time()
        response = self.client.post(url, content=body, headers=headers, extensions=extensions)
        content = response.content
        seconds = time.perf_counter() - start
        return Reply(
            response.status_code,
            content,
            response.num_bytes_downloaded,
            response.headers.get("content-encoding", ""),
            seconds,
            sent[0] - start if sent else None,
            sent[1] - cpu if sent else None,
        )

    def close(self) -> None:
        self.client.close()


class RequestsClient:
    """``requests.Session()``: default headers, keep-alive; time from the call to the decoded content."""

    name = "requests"

    def __init__(self) -> None:
        import requests

        self.session = requests.Session()
        self.accept_encoding = str(self.session.headers["Accept-Encoding"])

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Reply:
        start = time.perf_counter()
        response = self.session.post(url, data=body, headers=headers, timeout=600)
        content = response.content
        seconds = time.perf_counter() - start
        wire = int(response.headers.get("content-length", len(content)))
        return Reply(response.status_code, content, wire, response.headers.get("content-encoding", ""), seconds)

    def close(self) -> None:
        self.session.close()


class CurlClient:
    """``curl`` as a subprocess, with or without ``--compressed``; the time is curl's own ``time_total``.

    A new process (and connection) per request, as in a shell script; curl's ``time_total`` runs from
    the start of the connection to the last byte written out, so it leaves out the process start,
    which is not the server's doing. The body goes through a file (``--data-binary @file``).
    """

    def __init__(self, compressed: bool) -> None:
        self.compressed = compressed
        self.name = "curl --compressed" if compressed else "curl"
        self.accept_encoding = "deflate, gzip, br, zstd" if compressed else "(none)"
        self.directory = Path(tempfile.mkdtemp(prefix="xent-bench-curl-"))
        self.body: tuple[bytes, Path] | None = None  # the body last written, kept so its id is not reused

    def _body_file(self, body: bytes) -> Path:
        if self.body is None or self.body[0] is not body:
            path = self.directory / "body"  # one body at a time: they are tens of MB
            path.write_bytes(body)
            self.body = (body, path)
        return self.body[1]

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Reply:
        out = self.directory / "answer"
        command = ["curl", "-sS", "-o", str(out), "-D", str(self.directory / "head")]
        command += ["-w", "%{http_code} %{size_download} %{time_total}", "--data-binary", f"@{self._body_file(body)}"]
        for name, value in headers.items():
            command += ["-H", f"{name}: {value}"]
        if self.compressed:
            command.append("--compressed")
        done = subprocess.run([*command, url], capture_output=True, text=True, check=True, timeout=600)
        status, size, seconds = done.stdout.split()
        head = (self.directory / "head").read_text(errors="replace").lower().splitlines()
        encoding = next((line.split(":", 1)[1].strip() for line in head if line.startswith("content-encoding:")), "")
        return Reply(int(status), out.read_bytes(), int(size), encoding, float(seconds))

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def clients() -> list[Client]:
    """httpx, requests (when installed), curl and curl --compressed (when curl is on the PATH)."""
    found: list[Client] = [HttpxClient()]
    with contextlib.suppress(ImportError):  # requests is a benchmark extra (benchmarks/requirements.txt)
        found.append(RequestsClient())
    if shutil.which("curl") is not None:
        found += [CurlClient(compressed=False), CurlClient(compressed=True)]
    return found


@dataclass(frozen=True)
class Configuration:
    """What is sent and how the answer is asked for: ``body`` is "JSON" or "NPZ", ``answer`` likewise."""

    server: Server
    body: str
    answer: str
    workload: Workload
    #: Send to the floor's ``/echo`` instead, which answers this many bytes (benchmarks/floor_app.py).
    echo_bytes: int | None = None

    @property
    def server_name(self) -> str:
        return "echo" if self.echo_bytes is not None else self.server.name

    @property
    def label(self) -> str:
        return f"{self.server_name}, {self.body} → {self.answer}"


@dataclass
class ClientMeasurement:
    """Repeated requests of one configuration from one client."""

    client: str
    accept_encoding: str
    configuration: Configuration
    body_bytes: int
    latencies: list[float] = field(default_factory=list)
    wire_bytes: int = 0
    content_encoding: str = ""
    answer_bytes: int = 0  # decoded

    @property
    def latency(self) -> float:
        return statistics.median(self.latencies)


def request_of(configuration: Configuration) -> tuple[str, bytes, dict[str, str]]:
    workload = configuration.workload
    if configuration.body == "NPZ":
        path, body, headers = f"{ROUTE}?{urlencode(workload.npz_query)}", workload.npz_body, {"content-type": NPZ_TYPE}
    else:
        path, body, headers = ROUTE, workload.json_body, {"content-type": JSON_TYPE}
    if configuration.answer == "NPZ":
        headers["accept"] = NPZ_TYPE
    if configuration.echo_bytes is not None:
        path = f"/echo?answer_bytes={configuration.echo_bytes}"
    return configuration.server.url + path, body, headers


def _check(configuration: Configuration) -> Callable[[bytes], None]:
    if configuration.echo_bytes is not None:
        size = configuration.echo_bytes
        return lambda content: None if len(content) == size else _wrong_echo(len(content), size)
    expected = configuration.workload.expected
    if configuration.answer == "NPZ":
        return lambda content: check_npz_answer(content, expected)
    full = configuration.server.name != "baseline"  # the baseline answers CE, KL and entropy only
    return lambda content: check_json_answer(content, expected, full=full)


def _wrong_echo(got: int, want: int) -> None:
    raise RuntimeError(f"the echo answered {got} bytes, not {want}")


def measure(client: Client, configurations: list[Configuration], repetitions: int) -> list[ClientMeasurement]:
    """Each configuration from ``client``: a warm-up request, then ``repetitions`` rounds taking turns."""
    requests = [request_of(c) for c in configurations]
    checks = [_check(c) for c in configurations]
    measurements = [
        ClientMeasurement(client.name, client.accept_encoding, c, len(body))
        for c, (_, body, _) in zip(configurations, requests, strict=True)
    ]
    for round_ in range(repetitions + 1):
        for (url, body, headers), check, m in zip(requests, checks, measurements, strict=True):
            reply = client.post(url, body, headers)
            if reply.status != 200:
                raise RuntimeError(f"{client.name} → {m.configuration.label}: {reply.status} {reply.content[:300]!r}")
            check(reply.content)
            m.wire_bytes, m.content_encoding = reply.wire_bytes, reply.content_encoding
            m.answer_bytes = len(reply.content)
            if round_:  # round 0 is the warm-up
                m.latencies.append(reply.seconds)
    return measurements
