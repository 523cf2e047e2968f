"""Prometheus metrics: what the service counts, and ``GET /metrics`` that shows them.

One :class:`Metrics` per app (built in ``create_app``), so tests get fresh counters. With
several uvicorn workers ``xent serve`` turns on prometheus_client's multiprocess mode
(see ``service/metrics_dir.py``): every worker writes its values to files in one directory,
and ``/metrics`` adds up all of them, whichever worker answers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import values as prometheus_values
from prometheus_client.multiprocess import MultiProcessCollector

from service.api.problems import ProblemKind, problem_responses
from service.api.state import service_state

#: Seconds. Most answers take milliseconds; a 64 MiB batch can take several seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Bytes, 256 B to 64 MiB (the default body limit) in steps of 4.
BODY_BUCKETS = tuple(float(256 * 4**k) for k in range(10))

#: Refused requests, by why: a bounded set of labels, decided by the status code.
REFUSAL_REASONS = {
    400: "malformed_body",
    401: "unauthorized",
    408: "body_timeout",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    503: "unavailable",
}
#: Any other method is counted as "other", so a client cannot invent label values.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: The endpoint label of a request no route matched (404s): raw paths would be unbounded.
UNMATCHED = "unmatched"


class Metrics:
    """The service's Prometheus metrics, all prefixed ``xent_``.

    ``multiprocess_dir``: the directory shared by the workers (``XENT_METRICS_DIR``, set by
    ``xent serve``); prometheus_client must have been imported with ``PROMETHEUS_MULTIPROC_DIR``
    pointing there, which only the process environment can arrange, so a mismatch is refused.
    """

    def __init__(self, *, multiprocess_dir: Path | None = None) -> None:
        # Multiprocess mode is chosen by prometheus_client when it is first imported.
        multiprocess = prometheus_values.ValueClass is not prometheus_values.MutexValue
        if multiprocess_dir is not None and not multiprocess:
            raise RuntimeError(
                f"XENT_METRICS_DIR is {multiprocess_dir} but PROMETHEUS_MULTIPROC_DIR was not set when the process "
                "started; start the service with `xent serve` (which sets it) or export both"
            )
        self.multiprocess_dir = multiprocess_dir if multiprocess else None
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "xent_http_requests",
            "HTTP requests answered, by route template (endpoint), method and status code.",
            ["endpoint", "method", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "xent_http_request_duration_seconds",
            "Time from the request's arrival to the end of its answer, in seconds.",
            ["endpoint", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.body_bytes = Histogram(
            "xent_http_request_body_bytes",
            "Request body bytes read (as sent, before any decompression); a body refused unread counts what was read.",
            ["endpoint"],
            buckets=BODY_BUCKETS,
            registry=registry,
        )
        self.rows = Counter(
            "xent_scored_rows",
            "Rows (samples) in the batches the scoring endpoints answered (the answers' n).",
            ["endpoint"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "xent_http_requests_in_flight",
            "Requests being handled now (across all workers).",
            registry=registry,
            multiprocess_mode="livesum",  # a worker that has exited no longer counts
        )
        self.refusals = Counter(
            "xent_refusals",
            "Requests refused, by reason: " + ", ".join(f"{s} {r}" for s, r in REFUSAL_REASONS.items()) + ".",
            ["reason"],
            registry=registry,
        )
        # The labelled children, by label values: ``.labels(...)`` validates and joins its arguments on
        # every call, a dict lookup does not. Filled on first use, so a series still appears only once
        # it has been counted. The label values are bounded (route templates, METHODS, status codes).
        self._children: dict[tuple[Any, ...], Any] = {}
        for reason in REFUSAL_REASONS.values():  # a zero, rather than no series, until the first refusal
            self.refusals.labels(reason=reason)

    def _child(self, key: tuple[Any, ...]) -> Any:
        """The child of the metric named by ``key[0]`` for the label values ``key[1:]``, created on first use."""
        metric: Counter | Histogram = getattr(self, key[0])
        child = self._children[key] = metric.labels(*(str(value) for value in key[1:]))
        return child

    def observe(
        self, *, endpoint: str, method: str, status: int, seconds: float, bytes_in: int, rows: int | None
    ) -> None:
        """Count one finished request."""
        method = method if method in METHODS else "other"
        children = self._children
        key: tuple[Any, ...] = ("requests", endpoint, method, status)
        (children.get(key) or self._child(key)).inc()
        key = ("duration", endpoint, method)
        (children.get(key) or self._child(key)).observe(seconds)
        if bytes_in or method in ("POST", "PUT", "PATCH"):
            key = ("body_bytes", endpoint)
            (children.get(key) or self._child(key)).observe(bytes_in)
        if rows is not None:
            key = ("rows", endpoint)
            (children.get(key) or self._child(key)).inc(rows)
        reason = REFUSAL_REASONS.get(status)
        if reason is not None:
            key = ("refusals", reason)
            (children.get(key) or self._child(key)).inc()

    def exposition(self) -> bytes:
        """The Prometheus text format (0.0.4) of every metric, summed over the workers in multiprocess mode."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        forget_dead_workers(self.multiprocess_dir)
        # A fresh registry per scrape, as prometheus_client's multiprocess documentation prescribes.
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(self.multiprocess_dir))  # type: ignore[no-untyped-call]
        return generate_latest(registry)


def forget_dead_workers(directory: Path) -> None:
    """Delete the live-gauge files (``livesum``) of worker processes that no longer exist.

    prometheus_client adds up every worker's file. A worker that stops normally has brought its
    gauges back to 0 first, but one killed outright (SIGKILL, the OOM killer) leaves its last
    values behind, and ``xent_http_requests_in_flight`` would count its requests for ever.
    Counters are left alone: what a dead worker counted did happen.
    """
    for path in directory.glob("gauge_live*_*.db"):
        pid = path.stem.rpartition("_")[2]
        if pid.isdigit() and not _running(int(pid)):
            path.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    """Whether a process with this PID exists (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "description": "The metrics in the Prometheus text exposition format, version 0.0.4.",
            "content": {CONTENT_TYPE_PLAIN_0_0_4: {"schema": {"type": "string"}}},
        },
        **problem_responses(ProblemKind.UNAUTHORIZED),
    },
)
async def metrics(request: Request) -> Response:
    """Counters and histograms for a Prometheus scrape, added up over every worker process:
    `xent_http_requests_total{endpoint,method,status}`, `xent_http_request_duration_seconds`,
    `xent_http_request_body_bytes`, `xent_scored_rows_total{endpoint}`, `xent_http_requests_in_flight`
    and `xent_refusals_total{reason}`. `endpoint` is the route template (`unmatched` for a 404).
    With `XENT_METRICS_REQUIRE_KEY=true` it needs the same API key as the scoring endpoints."""
    return Response(service_state(request).metrics.exposition(), media_type=CONTENT_TYPE_PLAIN_0_0_4)
