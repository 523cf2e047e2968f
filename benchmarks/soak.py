"""Load, soak and faults: a mixed workload against ``xent serve --workers 2`` on loopback, every answer checked.

From the repository root, with the project installed in .venv::

    .venv/bin/python -m benchmarks.soak             # 60 s soak, overload, then the three faults (~4 min);
                                                    # rewrites its own section of benchmarks/RESULTS.md
    .venv/bin/python -m benchmarks.soak --quick     # a ~1-minute smoke run, written to a temporary file

Phases, each bounded in time and count, against servers on free 127.0.0.1 ports only:

1. warm-up, then the soak: 80 % small requests, 15 % 10,000-row and 5 % 100,000-row, half JSON and
   half NPZ, at concurrency 64. Every answer's ``n`` and mean cross-entropy are compared with the
   in-process core (to 1e-12 relative; per-sample arrays too where the answer is an NPZ). Server RSS
   (supervisor + workers) is sampled every 0.5 s.
2. faults (c): clients that hang up halfway through an upload or after a few bytes of a large answer.
3. faults (a): SIGKILL one worker during load; (b): SIGTERM the server during load.
4. overload: a second server with XENT_MAX_CONCURRENT_SCORING=4 per worker at the same concurrency,
   so most requests first get 503 + Retry-After; the client waits as told and retries.

The servers are stopped at the end whatever happens; the exit status is 1 if any criterion failed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import io
import json
import math
import os
import re
import shlex
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks import machine, report
from benchmarks.servers import HOST, Server, xent_command
from benchmarks.workloads import Workload

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
MB = 1e6

#: Answers must equal the in-process core's to this relative tolerance (they are usually bit-identical).
RTOL = 1e-12
#: Per request; a request that takes longer is a failure ("timeout"), never a silent wait.
REQUEST_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
#: After a worker dies, how long the client may still write to one of its kept-alive connections unawares.
STALE_CONNECTION_SECONDS = 1.0
#: How often one request may be answered 503 before the client gives up on it (counted as a failure).
MAX_503_RETRIES = 60

NPZ = "application/x-npz"


@dataclass(frozen=True)
class Plan:
    """How long each phase lasts and how many of each thing it does."""

    concurrency: int
    warm_up_seconds: float
    soak_seconds: float
    settle_seconds: float
    disconnects: int  # of each kind: mid-upload and mid-response
    kill_phase_seconds: float
    term_after_seconds: float
    overload_seconds: float
    bodies_per_kind: int


FULL = Plan(64, 10, 60, 2, 200, 20, 6, 15, 3)
QUICK = Plan(64, 3, 10, 2, 30, 8, 3, 5, 2)

#: (size name, share of requests, rows, classes); the 5 % share is what makes the soak heavy.
SIZES = (("small", 0.80, 100, 10), ("10,000 rows", 0.15, 10_000, 10), ("100,000 rows", 0.05, 100_000, 10))


def say(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


# --- the requests and their expected answers -------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One request body and the answer the in-process core gives for it."""

    size: str
    transport: str  # "JSON" or "NPZ"
    content: bytes
    headers: dict[str, str]
    params: dict[str, str]
    n: int
    mean_cross_entropy: float
    per_sample: np.ndarray | None  # compared when the answer carries per-sample values


def build_cases(bodies_per_kind: int) -> dict[str, list[Case]]:
    """For each size, ``bodies_per_kind`` JSON and as many NPZ bodies (alternating prediction types).

    Small JSON bodies ask for per-sample values; large JSON bodies do not (the client would spend its
    core parsing them). NPZ bodies ask for an NPZ answer with the per-sample arrays, cheap to check whole.
    """
    cases: dict[str, list[Case]] = {}
    for size, _, rows, classes in SIZES:
        found: list[Case] = []
        for i in range(bodies_per_kind):
            kind = ("probabilities", "logits")[i % 2]
            workload = Workload(rows - 7 * i if rows <= 100 else rows, classes, kind, seed=1000 + 17 * i)
            labels, predictions = workload.arrays
            expected = workload.expected
            per_sample_json = rows <= 100
            body = {
                "labels": labels.tolist(),
                "predictions": predictions.tolist(),
                "prediction_type": kind,
                "per_sample": per_sample_json,
            }
            found.append(
                Case(
                    size,
                    "JSON",
                    json.dumps(body, separators=(",", ":")).encode(),
                    {"content-type": "application/json"},
                    {},
                    expected.n,
                    float(expected.mean.cross_entropy),  # type: ignore[arg-type]
                    expected.per_sample.cross_entropy if per_sample_json else None,
                )
            )
            buffer = io.BytesIO()
            np.savez(buffer, labels=labels, predictions=predictions)
            found.append(
                Case(
                    size,
                    "NPZ",
                    buffer.getvalue(),
                    {"content-type": NPZ, "accept": NPZ},
                    {"prediction_type": kind},
                    expected.n,
                    float(expected.mean.cross_entropy),  # type: ignore[arg-type]
                    expected.per_sample.cross_entropy,
                )
            )
            workload.drop()
        cases[size] = found
    return cases


class WrongAnswer(AssertionError):
    """An answer whose numbers differ from the in-process core's."""


def check(case: Case, response: httpx.Response) -> None:
    """``n``, the mean cross-entropy and (where sent) the per-sample values against the core."""
    per_sample: np.ndarray | None = None
    if response.headers.get("content-type", "").startswith(NPZ):
        with np.load(io.BytesIO(response.content), allow_pickle=False) as archive:
            summary = json.loads(str(archive["summary"]))
            per_sample = archive["cross_entropy"]
    else:
        summary = response.json()
        if case.per_sample is not None:
            per_sample = np.asarray(summary["per_sample"]["cross_entropy"], dtype=np.float64)
    if summary["n"] != case.n:
        raise WrongAnswer(f"n = {summary['n']}, expected {case.n}")
    mean = summary["mean"]["cross_entropy"]
    if not math.isclose(mean, case.mean_cross_entropy, rel_tol=RTOL, abs_tol=0.0):
        raise WrongAnswer(f"mean cross-entropy {mean!r}, expected {case.mean_cross_entropy!r}")
    if case.per_sample is not None:
        if per_sample is None or per_sample.shape != case.per_sample.shape:
            raise WrongAnswer("per-sample cross-entropy missing or of the wrong shape")
        if not np.allclose(per_sample, case.per_sample, rtol=RTOL, atol=0.0):
            raise WrongAnswer("per-sample cross-entropy differs from the core")


# --- the load generator -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """One HTTP exchange: what was sent, when, and how it ended."""

    size: str
    transport: str
    start: float  # time.monotonic()
    end: float
    kind: str  # ok, 503, 4xx, 5xx, wrong, refused, connection, timeout
    retry: bool  # a retry of an earlier attempt of the same request
    request_id: str
    detail: str = ""

    @property
    def latency(self) -> float:
        return self.end - self.start


#: Failure kinds, in the order the report lists them.
KINDS = ("503", "4xx", "5xx", "wrong", "refused", "connection", "timeout")


class Load:
    """``concurrency`` tasks sending the mixed workload over one pooled httpx client until told to stop."""

    def __init__(self, url: str, cases: dict[str, list[Case]], concurrency: int, seed: int) -> None:
        self.url = url
        self.cases = cases
        self.concurrency = concurrency
        self.rng = np.random.default_rng(seed)
        self.attempts: list[Attempt] = []
        self.stop = asyncio.Event()
        self.retry_connection_errors = True
        self.pause_after_refusal = 0.0  # > 0: keep going after a refused connection (SIGTERM phase)
        self.prefix = f"soak{seed}-"
        self.sent = 0

    def pick(self) -> Case:
        shares = np.array([share for _, share, _, _ in SIZES])
        size = SIZES[int(self.rng.choice(len(SIZES), p=shares / shares.sum()))][0]
        choices = self.cases[size]
        return choices[int(self.rng.integers(len(choices)))]

    async def _send(self, client: httpx.AsyncClient, case: Case, retry: bool) -> tuple[Attempt, float | None]:
        """One attempt; the second value is the delay a 503 asked for."""
        self.sent += 1
        rid = f"{self.prefix}{self.sent}"  # in the server's log line too, so each attempt can be traced there

        def attempt(kind: str, detail: str = "") -> Attempt:
            return Attempt(case.size, case.transport, start, time.monotonic(), kind, retry, rid, detail)

        start = time.monotonic()
        try:
            response = await client.post(
                self.url + "/v1/cross-entropy",
                content=case.content,
                headers={**case.headers, "x-request-id": rid},
                params=case.params,
            )
        except httpx.TimeoutException as error:
            return attempt("timeout", repr(error)), None
        except httpx.ConnectError as error:
            return attempt("refused", repr(error)), None
        except httpx.TransportError as error:
            return attempt("connection", repr(error)), None
        status = response.status_code
        if status == 503 and "retry-after" in response.headers:
            return attempt("503"), float(response.headers["retry-after"])
        if status != 200:
            return attempt("5xx" if status >= 500 else "4xx", f"{status} {response.text[:200]}"), None
        try:
            check(case, response)
        except (WrongAnswer, ValueError, KeyError, TypeError) as error:
            return attempt("wrong", str(error)), None
        return attempt("ok"), None

    async def _request(self, client: httpx.AsyncClient, case: Case) -> None:
        """Send one request to completion: wait and retry on 503, retry a connection error once."""
        retry = False
        for _ in range(MAX_503_RETRIES):
            attempt, wait = await self._send(client, case, retry)
            self.attempts.append(attempt)
            if attempt.kind == "503" and wait is not None:
                await asyncio.sleep(wait)  # as the server asked: the designed answer to overload
            elif attempt.kind in ("refused", "connection") and self.retry_connection_errors and not retry:
                await asyncio.sleep(0.1)  # what the project's client does: a connection error is retried
            else:
                if attempt.kind in ("refused", "connection") and self.pause_after_refusal:
                    await asyncio.sleep(self.pause_after_refusal)
                return
            retry = True

    async def _worker(self, client: httpx.AsyncClient, until: float) -> None:
        while not self.stop.is_set() and time.monotonic() < until:
            await self._request(client, self.pick())

    async def run(self, seconds: float, *, during: Callable[[], Coroutine[Any, Any, None]] | None = None) -> None:
        """Run for ``seconds`` (and ``during()`` beside it); in-flight requests then finish, bounded by timeouts."""
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT, limits=limits) as client:
            until = time.monotonic() + seconds
            workers = [asyncio.create_task(self._worker(client, until)) for _ in range(self.concurrency)]
            extra = asyncio.create_task(during()) if during is not None else None
            # Every request has a 60 s timeout and a bounded number of retries; this bound is a backstop.
            done, pending = await asyncio.wait([*workers, *([extra] if extra else [])], timeout=seconds + 300)
            for task in pending:
                task.cancel()
            for task in done:
                task.result()  # a bug in the load generator itself should not pass silently
            if pending:
                raise RuntimeError(f"{len(pending)} load tasks did not finish in time")


# --- server processes and their memory ----------------------------------------------------------------


def children(pid: int) -> list[int]:
    """The PIDs whose parent is ``pid`` (from /proc/*/stat)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: the ppid is the 2nd field after it.
        if int(text.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def workers(pid: int) -> list[int]:
    """The uvicorn worker processes of supervisor ``pid`` (not multiprocessing's resource tracker)."""
    found = []
    for child in children(pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"resource_tracker" not in command:
            found.append(child)
    return sorted(found)


def established_connections(pid: int, port: int) -> int:
    """How many established TCP connections to ``port`` process ``pid`` holds (its socket fds in /proc/net/tcp)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port, state, inode = int(fields[1].rsplit(":", 1)[1], 16), fields[3], fields[9]
            count += local_port == port and state == "01" and inode in inodes
    return count


def rss(pid: int) -> int:
    """VmRSS of ``pid`` in bytes (0 if it has gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_rss(pid: int) -> int:
    """RSS of the supervisor and all its children, in bytes."""
    return rss(pid) + sum(rss(child) for child in children(pid))


class RssSampler:
    """Samples ``tree_rss`` every ``interval`` seconds in a thread; ``peak`` is the largest sample."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            value = tree_rss(self.pid)
            self.samples.append((time.monotonic(), value))
            self.peak = max(self.peak, value)
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def soak_server(log_dir: Path, name: str, env: dict[str, str]) -> Server:
    """``xent serve --workers 2`` as shipped (defaults but for ``env``)."""
    return Server(
        name=name,
        command=xent_command(workers=2),
        ready_path="/readyz",
        log_path=log_dir / f"{name}.log",
        env={"XENT_LOG_LEVEL": "info", **env},
    )


def wait_for_workers(server: Server, count: int, timeout: float = 60) -> list[int]:
    """The worker PIDs once ``count`` of them run and the server answers ``/readyz``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = workers(server.pid)
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise RuntimeError(f"{server.name}: {count} workers did not start within {timeout:.0f} s")


def in_flight(url: str) -> float:
    """``xent_http_requests_in_flight`` from /metrics (summed over the workers), minus the scrape itself."""
    text = httpx.get(url + "/metrics", timeout=10).text
    match = re.search(r"^xent_http_requests_in_flight(?:\{[^}]*\})? (\S+)$", text, re.MULTILINE)
    if match is None:
        raise RuntimeError("no xent_http_requests_in_flight in /metrics")
    return float(match[1]) - 1  # the scrape is in flight while it is answered


def settle_in_flight(url: str, timeout: float = 15) -> float:
    """Poll until nothing is in flight (or ``timeout``); the last value read."""
    deadline = time.monotonic() + timeout
    value = in_flight(url)
    while value > 0 and time.monotonic() < deadline:
        time.sleep(0.25)
        value = in_flight(url)
    return value


def server_errors(log_path: Path) -> list[str]:
    """Log lines at level error or worse, and tracebacks (an unexpected error in the service)."""
    found = []
    for line in log_path.read_text(errors="replace").splitlines():
        if '"level": "error"' in line or '"level": "critical"' in line or "Traceback" in line:
            found.append(line[:300])
    return found


def quick_check(url: str, cases: dict[str, list[Case]]) -> bool:
    """One request of each size and transport, answered correctly."""
    with httpx.Client(timeout=REQUEST_TIMEOUT) as client:
        for found in cases.values():
            for case in found[:2]:
                response = client.post(
                    url + "/v1/cross-entropy", content=case.content, headers=case.headers, params=case.params
                )
                if response.status_code != 200:
                    return False
                try:
                    check(case, response)
                except WrongAnswer:
                    return False
    return True


# --- figures -----------------------------------------------------------------------------------------


@dataclass
class Criterion:
    what: str
    measured: str
    met: bool


@dataclass
class Figures:
    """Everything the report shows; filled phase by phase."""

    criteria: list[Criterion] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)

    def judge(self, what: str, measured: str, met: bool) -> None:
        self.criteria.append(Criterion(what, measured, met))
        say(f"  {'PASS' if met else 'FAIL'}  {what}: {measured}")

    @property
    def passed(self) -> bool:
        return all(c.met for c in self.criteria)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f} ms" if seconds >= 0.01 else f"{seconds * 1e3:,.2f} ms"


def _mb(value: float) -> str:
    return f"{value / MB:,.1f} MB"


def _kinds(attempts: Sequence[Attempt]) -> Counter[str]:
    return Counter(a.kind for a in attempts)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def latency_table(attempts: Sequence[Attempt]) -> list[str]:
    rows = []
    for size, _, rows_, classes in SIZES:
        for transport in ("both", "JSON", "NPZ"):
            ok = [
                a.latency for a in attempts if a.kind == "ok" and a.size == size and transport in (a.transport, "both")
            ]
            if not ok:
                continue
            p50, p95, p99 = np.percentile(ok, [50, 95, 99])
            rows.append(
                [
                    f"{size} ({f'{rows_:,}' if size != 'small' else '≤ 100'} × {classes})"
                    if transport == "both"
                    else "",
                    transport if transport != "both" else "**all**",
                    f"{len(ok):,}",
                    _ms(p50),
                    _ms(p95),
                    _ms(p99),
                    _ms(max(ok)),
                ]
            )
    return _table(["Size", "Transport", "Answered 200, checked", "p50", "p95", "p99", "max"], rows)


def error_table(attempts: Sequence[Attempt]) -> list[str]:
    counts = _kinds(attempts)
    names = {
        "503": "503 + Retry-After (overload; waited and retried)",
        "4xx": "other 4xx",
        "5xx": "5xx other than 503",
        "wrong": "wrong number (answer differs from the core)",
        "refused": "connection refused",
        "connection": "connection error (reset, closed mid-answer)",
        "timeout": "timeout (60 s)",
    }
    return _table(["Kind", "Count"], [[names[k], f"{counts.get(k, 0):,}"] for k in KINDS])


# --- the phases --------------------------------------------------------------------------------------


def phase_soak(server: Server, cases: dict[str, list[Case]], plan: Plan, figures: Figures) -> int:
    """Warm-up, then the soak; returns the RSS at its end (the baseline of the disconnect phase)."""
    say(f"Warm-up: {plan.warm_up_seconds:g} s of the mixed load at concurrency {plan.concurrency}…")
    asyncio.run(Load(server.url, cases, plan.concurrency, seed=1).run(plan.warm_up_seconds))
    time.sleep(plan.settle_seconds)
    start_rss = tree_rss(server.pid)
    say(f"Soak: {plan.soak_seconds:g} s at concurrency {plan.concurrency} (RSS after warm-up {_mb(start_rss)})…")
    load = Load(server.url, cases, plan.concurrency, seed=2)
    began = time.monotonic()
    with RssSampler(server.pid) as sampler:
        asyncio.run(load.run(plan.soak_seconds))
        elapsed = time.monotonic() - began
        time.sleep(plan.settle_seconds)
    end_rss = tree_rss(server.pid)
    peak = max(sampler.peak, end_rss)
    growth = end_rss / start_rss - 1
    attempts = load.attempts
    counts = _kinds(attempts)
    ok = counts["ok"]
    failures = {k: counts.get(k, 0) for k in KINDS if k != "503"}
    say(f"  {ok:,} answered and checked in {elapsed:.1f} s; {dict(counts)}")
    # A leak grows steadily; an allocator keeping freed memory for reuse levels off at its high-water mark.
    marks = [began + plan.soak_seconds * f for f in (0.25, 0.5, 0.75, 1.0)]
    trajectory = [max((v for t, v in sampler.samples if t <= mark), default=start_rss) for mark in marks]
    say(f"  RSS after warm-up {_mb(start_rss)}, peak {_mb(peak)}, end {_mb(end_rss)} ({growth:+.1%})")
    say(f"  highest RSS by 25/50/75/100 % of the soak: {', '.join(_mb(v) for v in trajectory)}")

    figures.judge("Soak: 5xx answers", str(failures["5xx"]), failures["5xx"] == 0)
    figures.judge(
        "Soak: connection errors (refused, reset) and timeouts",
        str(failures["refused"] + failures["connection"] + failures["timeout"]),
        failures["refused"] + failures["connection"] + failures["timeout"] == 0,
    )
    figures.judge(
        "Soak: every answer checked against the core (wrong numbers, other 4xx)",
        f"{ok:,} correct, {failures['wrong']} wrong, {failures['4xx']} other 4xx",
        failures["wrong"] == 0 and failures["4xx"] == 0 and ok > 0,
    )
    figures.judge(
        "Soak: RSS at the end at most 10 % above RSS after warm-up (no leak)",
        f"{_mb(start_rss)} → {_mb(end_rss)} ({growth:+.1%}; peak {_mb(peak)})",
        # A leak shows as growth; memory handed back to the system (a fall) is the opposite of one.
        growth <= 0.10,
    )
    by_size = Counter(a.size for a in attempts if a.kind == "ok")
    mix = ", ".join(f"{size} {by_size[size] / max(ok, 1):.0%}" for size, *_ in SIZES)
    figures.sections += [
        "### Soak",
        "",
        f"{plan.soak_seconds:g} s at concurrency {plan.concurrency} against `xent serve --workers 2` (defaults), "
        f"after a {plan.warm_up_seconds:g} s warm-up with the same load: **{ok:,} requests answered and checked** "
        f"({ok / elapsed:,.1f} per second; mix served: {mix}). Latency is from the first byte sent to the last "
        "byte received, on the client, which shares the 2 cores with the server.",
        "",
        *latency_table(attempts),
        "Errors by kind (attempts):",
        "",
        *error_table(attempts),
        "Server RSS (supervisor + 2 workers, VmRSS from /proc, sampled every 0.5 s):",
        "",
        *_table(
            [
                "After warm-up",
                "Highest by 25 / 50 / 75 / 100 % of the soak",
                "Peak",
                f"End (after {plan.settle_seconds:g} s settle)",
                "Growth",
            ],
            [[_mb(start_rss), " / ".join(_mb(v) for v in trajectory), _mb(peak), _mb(end_rss), f"{growth:+.1%}"]],
        ),
    ]
    return end_rss


async def _cut_upload(port: int, case: Case) -> None:
    """Send the headers and half the body, then hang up."""
    _, writer = await asyncio.open_connection(HOST, port)
    try:
        query = "&".join(f"{k}={v}" for k, v in case.params.items())
        head = (
            f"POST /v1/cross-entropy{'?' + query if query else ''} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            f"Content-Type: {case.headers['content-type']}\r\nContent-Length: {len(case.content)}\r\n\r\n"
        )
        writer.write(head.encode() + case.content[: len(case.content) // 2])
        await writer.drain()
    finally:
        writer.close()


async def _cut_response(port: int, case: Case) -> int:
    """Send the whole request, read the first 1,000 bytes of the (several-MB) answer, then hang up."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        query = "&".join(f"{k}={v}" for k, v in case.params.items())
        head = (
            f"POST /v1/cross-entropy{'?' + query if query else ''} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            f"Content-Type: {case.headers['content-type']}\r\nContent-Length: {len(case.content)}\r\n\r\n"
        )
        writer.write(head.encode() + case.content)
        await writer.drain()
        return len(await reader.read(1000))
    finally:
        writer.close()


async def _disconnects(port: int, upload: Case, answer: Case, count: int) -> tuple[int, int, int]:
    """``count`` cut uploads and ``count`` cut answers, 8 at a time; (uploads, answers, not completed)."""
    gate = asyncio.Semaphore(8)
    done = Counter[str]()

    async def one(kind: str) -> None:
        async with gate:
            try:
                async with asyncio.timeout(30):
                    if kind == "upload":
                        await _cut_upload(port, upload)
                    elif await _cut_response(port, answer) == 0:
                        raise ConnectionError("no answer bytes")
                done[kind] += 1
            except (OSError, TimeoutError):
                done["failed"] += 1

    await asyncio.gather(*(one(kind) for _ in range(count) for kind in ("upload", "answer")))
    return done["upload"], done["answer"], done["failed"]


def phase_disconnects(
    server: Server, cases: dict[str, list[Case]], plan: Plan, baseline_rss: int, figures: Figures
) -> None:
    """(c): clients that hang up mid-upload and mid-response leave no memory or task behind."""
    big = cases["100,000 rows"]
    upload = next(c for c in big if c.transport == "JSON")
    # An NPZ body answered as JSON with per-sample values: about 7 MB, far more than the socket buffers.
    npz = next(c for c in big if c.transport == "NPZ")
    answer = Case(npz.size, "NPZ", npz.content, {"content-type": NPZ}, npz.params, npz.n, npz.mean_cross_entropy, None)
    say(f"Faults (c): {plan.disconnects} clients hang up mid-upload and {plan.disconnects} mid-response…")
    began = time.monotonic()
    with RssSampler(server.pid) as sampler:
        uploads, answers, failed = asyncio.run(_disconnects(server.port, upload, answer, plan.disconnects))
    elapsed = time.monotonic() - began
    left = settle_in_flight(server.url)
    time.sleep(plan.settle_seconds)
    after = tree_rss(server.pid)
    growth = after / baseline_rss - 1
    correct = quick_check(server.url, cases)
    say(f"  {uploads} cut uploads, {answers} cut answers ({failed} could not be made) in {elapsed:.1f} s")
    figures.judge(
        "Faults (c): disconnects leave no stuck task (xent_http_requests_in_flight back to 0)",
        f"{uploads} cut uploads + {answers} cut answers; in flight afterwards: {left:g}",
        left == 0 and failed == 0 and uploads == answers == plan.disconnects,
    )
    figures.judge(
        "Faults (c): RSS after the disconnects at most 10 % above before (no leak)",
        f"{_mb(baseline_rss)} → {_mb(after)} ({growth:+.1%}; peak {_mb(sampler.peak)})",
        growth <= 0.10,
    )
    figures.judge("Faults (c): the server still answers every size correctly", "yes" if correct else "no", correct)
    figures.sections += [
        "### Faults (c): clients that hang up",
        "",
        f"{uploads} clients sent the headers and half of a {_mb(len(upload.content))} JSON body (100,000 × 10) "
        f"and closed the socket; {answers} sent a whole 100,000-row NPZ body asking for a JSON answer with "
        f"per-sample values (~7 MB) and closed after reading 1,000 bytes of it; 8 at a time, {elapsed:.1f} s in all. "
        f"Afterwards `xent_http_requests_in_flight` read **{left:g}**, the server RSS went from "
        f"{_mb(baseline_rss)} (end of the soak) to **{_mb(after)} ({growth:+.1%})** (peak {_mb(sampler.peak)}), "
        f"and one request of each size and transport was answered {'correctly' if correct else 'WRONGLY'}.",
        "",
    ]


def phase_kill(server: Server, cases: dict[str, list[Case]], plan: Plan, figures: Figures) -> None:
    """(a): SIGKILL one worker during load; only requests in flight at that moment may fail, and once."""
    before = wait_for_workers(server, 2)
    state: dict[str, float] = {}
    replaced: list[int] = []
    held: dict[int, int] = {}

    async def kill_then_watch() -> None:
        await asyncio.sleep(plan.kill_phase_seconds / 3)
        # The worker holding more of the clients' connections (the kernel does not share them out evenly).
        held.update({pid: established_connections(pid, server.port) for pid in before})
        state["victim"] = victim = max(before, key=lambda pid: held[pid])
        state["kill"] = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = [pid for pid in workers(server.pid) if pid not in before]
            if now:
                replaced.extend(now)
                state["replaced"] = time.monotonic()
                return
            await asyncio.sleep(0.1)

    say(f"Faults (a): load for {plan.kill_phase_seconds:g} s; SIGKILL a worker a third of the way in…")
    load = Load(server.url, cases, plan.concurrency, seed=3)
    asyncio.run(load.run(plan.kill_phase_seconds, during=kill_then_watch))
    kill = state["kill"]
    victim = int(state["victim"])
    connections = (
        f"worker {victim}, which held {held[victim]} of the clients' connections ({sum(held.values())} in all)"
    )
    logged = logged_requests(server.log_path)

    def on_killed_worker(a: Attempt) -> bool:
        """A connection error on the killed worker's connections: a request in flight when it died, or one
        written to one of its kept-alive connections before the client could see that it had closed."""
        return (
            not a.retry
            and a.kind in ("refused", "connection")
            and a.start < kill + STALE_CONNECTION_SECONDS
            and a.end >= kill
            and a.request_id not in logged  # a request the server finished and logged must not be lost
        )

    in_window = [a for a in load.attempts if not a.retry and a.start < kill <= a.end]
    cut = [a for a in load.attempts if on_killed_worker(a)]
    cut_in_flight = [a for a in cut if a.start < kill]
    retries = [a for a in load.attempts if a.retry and a.kind != "503"]
    outside = [a for a in load.attempts if a.kind not in ("ok", "503") and not on_killed_worker(a)]
    ok = sum(1 for a in load.attempts if a.kind == "ok")
    delay = state.get("replaced", math.nan) - kill
    left = settle_in_flight(server.url, timeout=5)
    say(
        f"  {len(in_window)} in flight at the kill, {len(cut)} cut with a connection error; "
        f"{sum(1 for a in retries if a.kind == 'ok')}/{len(retries)} retries ok; other failures {len(outside)}; "
        f"replacement {replaced} after {delay:.1f} s; {ok} answered; in flight afterwards {left:g}"
    )
    figures.judge(
        "Faults (a): after SIGKILL of a worker the supervisor starts a replacement",
        f"{connections} killed; new worker {replaced[0] if replaced else 'none'} after {delay:.1f} s",
        bool(replaced),
    )
    figures.judge(
        "Faults (a): only requests on the killed worker fail (connection error), and their retry succeeds",
        f"{len(cut_in_flight)} of {len(in_window)} in flight cut, {len(cut) - len(cut_in_flight)} on its stale "
        f"connections; retries ok {sum(1 for a in retries if a.kind == 'ok')}"
        f"/{len(retries)}; any other failure: {len(outside)}",
        not outside and all(a.kind == "ok" for a in retries),
    )
    figures.judge("Faults (a): /metrics in flight back to 0 after the kill", f"{left:g}", left == 0)
    details = Counter(f"{a.kind}: {a.detail[:80]}" for a in outside)
    figures.sections += [
        "### Faults (a): SIGKILL of one worker during load",
        "",
        f"{plan.kill_phase_seconds:g} s of the mixed load at concurrency {plan.concurrency}; "
        f"{plan.kill_phase_seconds / 3:.1f} s in, {connections}, got SIGKILL. uvicorn's supervisor started "
        f"worker {replaced[0] if replaced else '(none)'} {delay:.1f} s later. Of the {len(in_window)} requests in "
        f"flight at that moment (on both workers), **{len(cut_in_flight)} were cut with a connection error**, and "
        f"**{len(cut) - len(cut_in_flight)}** more were written to one of the dead worker's kept-alive connections "
        f"in the next {STALE_CONNECTION_SECONDS:g} s, before the client saw it close; the server had begun none of "
        f"them. The client retried each once: **{sum(1 for a in retries if a.kind == 'ok')} of {len(retries)} retries "
        "succeeded**. Every other request "
        f"was answered and correct: {ok:,} in all, **{len(outside)} other failures**"
        + (f" ({', '.join(f'{n} × {d}' for d, n in details.items())})" if details else "")
        + f". `xent_http_requests_in_flight` afterwards: {left:g}.",
        "",
    ]


def logged_requests(log_path: Path) -> dict[str, int]:
    """request_id → status of every request the server wrote a log line for (it writes one per request)."""
    found = {}
    for line in log_path.read_text(errors="replace").splitlines():
        if '"request_id"' not in line or '"status"' not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record.get("status"), int):
            found[str(record["request_id"])] = record["status"]
    return found


def phase_term(server: Server, cases: dict[str, list[Case]], plan: Plan, figures: Figures) -> None:
    """(b): SIGTERM during load: requests in flight complete, new ones are refused, exit 0."""
    state: dict[str, float] = {}
    load = Load(server.url, cases, plan.concurrency, seed=4)
    load.retry_connection_errors = False
    load.pause_after_refusal = 0.05

    async def terminate() -> None:
        await asyncio.sleep(plan.term_after_seconds)
        state["term"] = time.monotonic()
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        # Keep the clients knocking until the server is gone (bounded by the graceful-shutdown time).
        deadline = time.monotonic() + 40
        while server.process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        state["exit"] = time.monotonic()
        await asyncio.sleep(1.0)  # a last second of knocking at a closed port
        load.stop.set()

    say(f"Faults (b): load, then SIGTERM to the server {plan.term_after_seconds:g} s in…")
    asyncio.run(load.run(plan.term_after_seconds + 45, during=terminate))
    assert server.process is not None
    code = server.process.wait(timeout=30)
    term = state["term"]
    drain = state["exit"] - term
    logged = logged_requests(server.log_path)
    done_before = [a for a in load.attempts if a.end < term]
    in_flight_then = [a for a in load.attempts if a.start < term <= a.end]
    # The server's view: a request it began has a log line (written when its answer ends).
    begun = [a for a in in_flight_then if a.request_id in logged]
    unread = [a for a in in_flight_then if a.request_id not in logged]
    after = [a for a in load.attempts if a.start >= term]
    lost = [a for a in [*done_before, *begun] if a.kind != "ok"]
    after_kinds = _kinds(after)
    unread_kinds = _kinds(unread)
    say(
        f"  {len(in_flight_then)} in flight at SIGTERM: {len(begun)} begun by the server "
        f"({dict(_kinds(begun))}), {len(unread)} not yet read ({dict(unread_kinds)}); "
        f"after it: {dict(after_kinds)}; exit {code} after {drain:.1f} s"
    )
    figures.judge(
        "Faults (b): requests the server had begun at SIGTERM complete, correctly",
        f"{sum(1 for a in begun if a.kind == 'ok')} of {len(begun)} completed; failures {dict(_kinds(lost)) or 0}",
        not lost,
    )
    # A request written to a keep-alive connection just as its worker closed it ends without an answer;
    # if the server never logged it, it was never begun (safe to retry), not lost.
    after_lost = [
        a for a in after if a.kind not in ("ok", "refused") and (a.kind != "connection" or a.request_id in logged)
    ]
    after_cut = [a for a in after if a.kind == "connection" and a.request_id not in logged]
    figures.judge(
        "Faults (b): new requests after SIGTERM are refused, none hangs or is lost",
        ", ".join(f"{v} {k}" for k, v in sorted(after_kinds.items())) or "none sent",
        not after_lost and after_kinds.get("refused", 0) > 0,
    )
    figures.judge("Faults (b): the server exits 0", f"exit {code} {drain:.1f} s after SIGTERM", code == 0)
    names = {
        "ok": "answered (reached a worker before it stopped listening)",
        "refused": "connection refused",
        "connection": "connection closed or reset without an answer",
        "timeout": "timed out",
    }
    figures.sections += [
        "### Faults (b): SIGTERM during load",
        "",
        f"The mixed load at concurrency {plan.concurrency}; {plan.term_after_seconds:g} s in, the server got SIGTERM "
        f"and **exited {code}** {drain:.1f} s later. {len(in_flight_then)} requests were in flight on the client side "
        f"at that moment. **The {len(begun)} the server had begun (it logged them) all completed: "
        f"{sum(1 for a in begun if a.kind == 'ok')} correct answers.** The other {len(unread)} were still unread in "
        "the socket buffers of idle keep-alive connections (on 2 busy cores the client writes faster than the workers "
        "read); uvicorn closes idle connections when it starts draining, so they ended "
        f"{', '.join(f'{v} × {names.get(k, k)}' for k, v in sorted(unread_kinds.items())) or '—'}: never begun, "
        "safe to retry (the project's client retries such errors). Requests sent after the signal:",
        "",
        *_table(["Outcome", "Count"], [[names.get(k, k), f"{v:,}"] for k, v in sorted(after_kinds.items())]),
    ]
    if after_cut:
        errors = Counter(a.detail.split("(")[0] for a in after_cut)
        figures.sections += [
            f"The {len(after_cut)} closed without an answer were written to a keep-alive connection as its worker "
            f"closed it ({', '.join(f'{n} × {e}' for e, n in errors.items())}); the server never began them.",
            "",
        ]


def phase_overload(
    log_dir: Path, cases: dict[str, list[Case]], plan: Plan, env: dict[str, str], figures: Figures
) -> None:
    """Overload: 64 clients against 2 × 4 scoring slots get 503 + Retry-After at once, never a timeout."""
    server = soak_server(log_dir, "xent-overload", {**env, "XENT_MAX_CONCURRENT_SCORING": "4"})
    say(f"Overload: {plan.overload_seconds:g} s at concurrency {plan.concurrency} with XENT_MAX_CONCURRENT_SCORING=4…")
    try:
        server.start()
        wait_for_workers(server, 2)
        load = Load(server.url, cases, plan.concurrency, seed=5)
        asyncio.run(load.run(plan.overload_seconds))
        errors = server_errors(server.log_path)
    finally:
        server.stop()
    counts = _kinds(load.attempts)
    refusals = [a.latency for a in load.attempts if a.kind == "503"]
    failures = {k: counts.get(k, 0) for k in KINDS if k != "503" and counts.get(k, 0)}
    say(f"  {dict(counts)}; 503 answered in p99 {_ms(float(np.percentile(refusals, 99))) if refusals else '—'}")
    figures.judge(
        "Overload: answered with 503 + Retry-After, then served on retry; no timeouts",
        f"{counts['503']:,} × 503, {counts['ok']:,} correct answers; failures {failures or 0}",
        counts["503"] > 0 and not failures,
    )
    figures.judge("Overload: no error in the server log", f"{len(errors)} lines", not errors)
    figures.sections += [
        "### Overload",
        "",
        f"A second server with `XENT_MAX_CONCURRENT_SCORING=4` (per worker; the default is 64, which concurrency 64 "
        f"cannot exceed), under the same mixed load at concurrency {plan.concurrency} for {plan.overload_seconds:g} s. "
        f"**{counts['503']:,} answers were 503 with `Retry-After: 1`** (p50 {_ms(float(np.percentile(refusals, 50)))}, "
        f"p99 {_ms(float(np.percentile(refusals, 99)))}: refused at once, not queued); the clients waited the hinted "
        f"second and retried, and **{counts['ok']:,} requests were answered and correct**. Timeouts: "
        f"**{counts.get('timeout', 0)}**; other failures: {failures or 0}."
        if refusals
        else f"No 503 in {plan.overload_seconds:g} s: the overload did not happen (counts {dict(counts)}).",
        "",
        *latency_table(load.attempts),
    ]


# --- the run -----------------------------------------------------------------------------------------


def render(
    figures: Figures, *, command: str, date: str, duration: float, quick: bool, env: dict[str, str], bodies: int
) -> str:
    """The RESULTS.md section (between ``report``'s markers)."""
    described = dict(machine.describe())
    lines = [
        report.SOAK_BEGIN,
        "## Load, soak and faults",
        "",
        "Written by `benchmarks/soak.py` (`make soak`); it replaces only this section, and `benchmarks/run.py`",
        "keeps it when it rewrites the rest. Servers on free 127.0.0.1 ports; every answer's `n` and mean",
        "cross-entropy (and per-sample values where the answer is an NPZ) compared with the in-process core",
        f"to {RTOL:g} relative; a wrong number is a failure.",
        "",
    ]
    if quick:
        lines += ["**A `--quick` smoke run: shorter phases; not the reference figures.**", ""]
    lines += [
        f"- Command: `{command}`",
        f"- Date: {date} (took {duration / 60:.1f} min); {described['Cores']}; xent tree {described['xent tree']}",
        f"- Server: `xent serve --workers 2`, defaults{''.join(f', {k}={v}' for k, v in env.items())}"
        " (64 scoring slots per worker, 25 s graceful shutdown, log level info)",
        f"- Workload: 80 % small ({SIZES[0][2] - 7 * (bodies - 1)}–{SIZES[0][2]} rows × 10), 15 % 10,000 × 10, "
        "5 % 100,000 × 10; half JSON, half NPZ "
        "(answered as NPZ with per-sample arrays); probabilities and logits; httpx.AsyncClient, 64 pooled "
        "connections, 60 s timeout; 503 → wait Retry-After and retry; a connection error is retried once",
        "",
        "| Criterion | Measured | Verdict |",
        "| --- | --- | --- |",
        *[f"| {c.what} | {c.measured} | {'**met**' if c.met else '**not met**'} |" for c in figures.criteria],
        "",
        *figures.sections,
        report.SOAK_END,
    ]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a ~1-minute smoke run with shorter phases")
    parser.add_argument("--duration", type=float, help="seconds of soak (default 60; 10 with --quick)")
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for the servers, e.g. MALLOC_ARENA_MAX=2 (repeatable)",
    )
    parser.add_argument("--output", type=Path, help="the RESULTS.md to update (default: benchmarks/RESULTS.md)")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.duration is not None:
        if not 1 <= args.duration <= 3600:
            parser.error("--duration must be between 1 and 3600 seconds")
        plan = Plan(**{**plan.__dict__, "soak_seconds": args.duration})
    output: Path = args.output or (Path(tempfile.gettempdir()) / "xent-soak-quick.md" if args.quick else RESULTS)
    env = dict(item.split("=", 1) for item in args.server_env if "=" in item)
    started = time.monotonic()
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = shlex.join([".venv/bin/python", "-m", "benchmarks.soak", *(sys.argv[1:] if argv is None else argv)])

    say("Building the request bodies and their expected answers (in-process core)…")
    cases = build_cases(plan.bodies_per_kind)
    log_dir = Path(tempfile.mkdtemp(prefix="xent-soak-"))
    figures = Figures()
    server = soak_server(log_dir, "xent", env)
    try:
        say(f"Starting xent serve --workers 2 (logs in {log_dir})…")
        server.start()
        wait_for_workers(server, 2)
        end_rss = phase_soak(server, cases, plan, figures)
        phase_disconnects(server, cases, plan, end_rss, figures)
        phase_kill(server, cases, plan, figures)
        errors = server_errors(server.log_path)
        phase_term(server, cases, plan, figures)
    finally:
        supervisor = server.process
        leftover = workers(server.pid) if supervisor is not None and supervisor.poll() is None else []
        server.stop()
        for pid in leftover:  # only if the supervisor did not take its workers with it
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGKILL)
    figures.judge("Soak and faults: no error or traceback in the server log", f"{len(errors)} lines", not errors)
    for line in errors[:5]:
        say(f"    {line}")
    phase_overload(log_dir, cases, plan, env, figures)

    section = render(
        figures,
        command=command,
        date=date,
        duration=time.monotonic() - started,
        quick=args.quick,
        env=env,
        bodies=plan.bodies_per_kind,
    )
    existing = output.read_text(encoding="utf-8") if output.exists() else ""
    output.write_text(report.replace_soak_section(existing, section), encoding="utf-8")
    say(f"\nWrote {output}. {'All criteria met.' if figures.passed else 'SOME CRITERIA NOT MET.'}")
    return 0 if figures.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
