"""Issue 16's NPZ verdicts in ``benchmarks/sequences.py`` (met, out of reach, within reach) and the judged client's
trace (``benchmarks.real_clients.HttpxClient(trace=True)``), on which "out of reach" rests."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from benchmarks import sequences
from benchmarks.real_clients import HttpxClient

CORE = 0.040  # seconds, timed in the judged rounds: a budget of 120 ms


def _figures(xent: float, echo: float, sent: float, cpu: float) -> dict[str, Any]:
    """One run's figures as ``measure`` keeps them: the judged client's NPZ medians, its requests to xent split where
    it sent the last byte (``sent``, with its own ``cpu`` until then), and the core timed in the same rounds."""
    e2e = {
        ("npz", "httpx", "xent"): xent,
        ("npz", "httpx", "echo"): echo,
        ("npz", "httpx", f"xent {sequences.SENT}"): sent,
        ("npz", "httpx", f"xent {sequences.SENDING_CPU}"): cpu,
        ("npz", "httpx", f"xent {sequences.AFTER}"): xent - sent,
        ("npz", "httpx", sequences.CORE): CORE,
    }
    return {"e2e": e2e, "in process": {"core npz": 0.030}, "clients": ["httpx"]}


def test_a_run_within_three_times_the_core_is_met_whatever_the_client_took() -> None:
    figures = _figures(0.119, echo=0.150, sent=0.125, cpu=0.124)  # (a client's medians need not add up)
    assert sequences.target_ratio(figures, "npz") == (pytest.approx(2.975), True)
    assert not sequences._npz_out_of_reach(figures)
    assert sequences._npz_floor(figures).endswith(": met")


def test_the_other_clients_npz_figures_are_each_over_the_core_timed_beside_them() -> None:
    figures = _figures(0.200, echo=0.150, sent=0.190, cpu=0.180)
    figures["clients"] += ["httpx2", "requests", "curl"]  # curl sends no NPZ here: no figure
    figures["e2e"] |= {
        ("npz", "httpx2", "xent"): 0.060,
        ("npz", "httpx2", sequences.CORE): 0.025,
        ("npz", "requests", "xent"): 0.070,
        ("npz", "requests", sequences.CORE): 0.020,
        # the JSON targets of the run, for its row: 5× and 3×
        **{(form, "httpx", "baseline"): 1.0 for form in ("token_logprobs", "completions")},
        **{(form, "httpx", "xent"): 0.2 for form in ("token_logprobs", "completions")},
    }
    assert sequences._npz_others(figures) == [
        ("httpx2", pytest.approx(2.4), True),
        ("requests", pytest.approx(3.5), False),
    ]
    rows = sequences._run_rows([figures, figures])
    assert "| httpx2 2.40×; requests 3.50× |" in rows[0]
    assert rows[-1].endswith("| httpx2 2 of 2; requests 0 of 2 | |")


def test_the_divisor_is_the_core_timed_in_the_judged_rounds_not_the_one_after_them() -> None:
    figures = _figures(0.119, echo=0.150, sent=0.100, cpu=0.100)
    assert sequences.npz_core(figures) == CORE  # not the 30 ms of the runs after the rounds
    assert sequences._npz_budget(figures) == pytest.approx(0.120)


def test_a_miss_is_out_of_reach_when_the_clients_own_cpu_before_its_last_byte_is_over_the_budget() -> None:
    figures = _figures(0.160, echo=0.100, sent=0.135, cpu=0.121)
    assert sequences._npz_least(figures) == 0.121  # the client's CPU, not the echo of other rounds
    assert sequences._npz_out_of_reach(figures)
    assert sequences._npz_floor(figures) == (
        "client 135 ms (its CPU 121 ms) + xent 25 ms; echo 100 ms; budget 120 ms: **out of reach**"
    )


def test_a_miss_is_within_reach_when_the_client_waited_rather_than_worked() -> None:
    # Sent after 135 ms, but on the CPU for 110 of them: a faster reader might have let it send sooner.
    figures = _figures(0.160, echo=0.130, sent=0.135, cpu=0.110)
    assert not sequences._npz_out_of_reach(figures)
    assert sequences._npz_floor(figures).endswith("budget 120 ms: within reach")


class _SlowAnswer(http.server.BaseHTTPRequestHandler):
    """Reads the body, then waits 50 ms before it answers: the time after the client's last byte."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(0.05)
        answer = str(len(body)).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def slow_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowAnswer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_the_traced_client_splits_its_latency_where_it_sent_the_last_byte(slow_server: str) -> None:
    client = HttpxClient(trace=True)
    try:
        reply = client.post(slow_server, b"x" * 1_000_000, {"content-type": "application/octet-stream"})
    finally:
        client.close()
    assert (reply.status, reply.content) == (200, b"1000000")
    assert reply.sent_seconds is not None
    assert reply.sending_cpu_seconds is not None
    assert reply.seconds - reply.sent_seconds >= 0.05  # the server's wait comes after the last byte
    assert 0 <= reply.sending_cpu_seconds <= reply.sent_seconds + 1e-3  # (thread_time ticks coarser than perf_counter)


def test_an_untraced_client_says_nothing_of_its_send(slow_server: str) -> None:
    client = HttpxClient()
    try:
        reply = client.post(slow_server, b"x", {})
    finally:
        client.close()
    assert reply.content == b"1"
    assert (reply.sent_seconds, reply.sending_cpu_seconds) == (None, None)
