"""``AsyncClient``: scoring over HTTP from async code (anyio tasks for chunked scoring)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Self, Unpack, overload

import anyio
import anyio.abc
import anyio.to_thread
import httpx

from service.client.chunking import Chunk, chunk_options, merge, ranges, total_weight
from service.client.config import ClientConfig, Progress, progress_bar
from service.client.errors import ProblemError, XentError
from service.client.results import Scores
from service.client.retry import RETRY_ERRORS, RETRY_STATUSES, transport_error
from service.client.wire import (
    BinaryCrossEntropyOptions,
    CrossEntropyOptions,
    Endpoint,
    Request,
    TransportChoice,
    build_request,
    check_options,
    choose_npz,
    prepare,
    read_answer,
)


class AsyncClient:
    """An async client of a xent service (same arguments and methods as ``Client``, awaited).

    ``base_url`` and ``api_key`` default to ``XENT_URL`` (else http://127.0.0.1:8000) and ``XENT_API_KEY``;
    ``timeout`` is seconds per request; connection failures and 503s are retried ``retries`` times with
    jittered exponential backoff; ``npz_min_values`` is where ``transport="auto"`` switches from JSON to NPZ.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
        npz_min_values: int | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = ClientConfig.build(base_url, api_key, timeout, retries, backoff, npz_min_values)
        self._http = httpx.AsyncClient(
            base_url=self.config.base_url, headers=self.config.headers, timeout=timeout, transport=transport
        )
        self._max_body_bytes: int | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def info(self) -> dict[str, Any]:
        """``GET /v1/info``: version, units, limits."""
        response = await self._http.get("/v1/info")
        if response.status_code != 200:
            read_answer(response.status_code, response.headers.get("content-type", ""), response.content)
        info: dict[str, Any] = response.json()
        return info

    async def cross_entropy(
        self,
        labels: Any,
        predictions: Any,
        *,
        prediction_type: Literal["probabilities", "logits", "log_probabilities"] = "probabilities",
        classes: list[str] | None = None,
        label_smoothing: float = 0.0,
        class_weights: Any = None,
        sample_weights: Any = None,
        ignore_index: int | None = None,
        epsilon: float | Literal["auto"] = "auto",
        normalization: Literal["warn", "renormalize", "error"] = "warn",
        tolerance: float = 1e-3,
        unit: Literal["nats", "bits", "hartleys"] = "nats",
        per_sample: bool = True,
        transport: TransportChoice = "auto",
    ) -> Scores:
        """Multi-class cross-entropy, KL divergence and target entropy of one batch (``POST /v1/cross-entropy``)."""
        options = {k: v for k, v in locals().items() if k not in ("self", "labels", "predictions", "transport")}
        return await self._score("cross-entropy", labels, predictions, options, transport)

    async def binary_cross_entropy(
        self,
        labels: Any,
        predictions: Any,
        *,
        prediction_type: Literal["probabilities", "logits"] = "probabilities",
        pos_weight: Any = None,
        label_smoothing: float = 0.0,
        sample_weights: Any = None,
        epsilon: float | Literal["auto"] = "auto",
        unit: Literal["nats", "bits", "hartleys"] = "nats",
        per_sample: bool = True,
        transport: TransportChoice = "auto",
    ) -> Scores:
        """Binary / multi-label cross-entropy of one batch (``POST /v1/binary-cross-entropy``)."""
        options = {k: v for k, v in locals().items() if k not in ("self", "labels", "predictions", "transport")}
        return await self._score("binary-cross-entropy", labels, predictions, options, transport)

    @overload
    async def score_many(
        self,
        labels: Any,
        predictions: Any,
        *,
        binary: Literal[False] = False,
        chunk_size: int | None = None,
        concurrency: int = 4,
        progress: bool | None = None,
        transport: TransportChoice = "auto",
        **options: Unpack[CrossEntropyOptions],
    ) -> Scores: ...
    @overload
    async def score_many(
        self,
        labels: Any,
        predictions: Any,
        *,
        binary: Literal[True],
        chunk_size: int | None = None,
        concurrency: int = 4,
        progress: bool | None = None,
        transport: TransportChoice = "auto",
        **options: Unpack[BinaryCrossEntropyOptions],
    ) -> Scores: ...
    async def score_many(
        self,
        labels: Any,
        predictions: Any,
        *,
        binary: bool = False,
        chunk_size: int | None = None,
        concurrency: int = 4,
        progress: bool | None = None,
        transport: TransportChoice = "auto",
        **options: Any,
    ) -> Scores:
        """Score a dataset of any size in chunks of ``chunk_size`` rows (default: sized from the service's body
        limit), ``concurrency`` requests at a time, and merge the answers exactly (Σ sums / Σ weights).

        ``progress``: a tqdm bar of rows done on stderr (None: only when stderr is a terminal).
        Errors name rows of the whole dataset, not of the chunk.
        """
        endpoint: Endpoint = "binary-cross-entropy" if binary else "cross-entropy"
        resolved = check_options(endpoint, options)
        targets, preds = prepare(endpoint, labels, predictions)
        if chunk_size is None:
            chunk_size = self.config.chunk_rows(targets, preds, resolved, await self._body_limit())
        spans = ranges(len(preds), chunk_size)

        chunks: list[Chunk | None] = [None] * len(spans)
        failures: list[BaseException] = []
        limit = anyio.Semaphore(max(1, concurrency))

        async def one(index: int, start: int, stop: int, bar: Progress, group: anyio.abc.TaskGroup) -> None:
            part = chunk_options(resolved, start, stop)
            async with limit:
                try:
                    scores = await self._send_arrays(endpoint, targets[start:stop], preds[start:stop], part, transport)
                except ProblemError as error:
                    failures.append(error.shifted(start, stop))
                    group.cancel_scope.cancel()  # the first error stops the chunks not started yet
                    return
                except XentError as error:
                    failures.append(error)
                    group.cancel_scope.cancel()
                    return
            chunks[index] = Chunk(start, total_weight(endpoint, targets[start:stop], part), scores)
            bar.update(scores.n)

        with progress_bar(len(preds), progress) as bar:
            async with anyio.create_task_group() as group:
                for index, (start, stop) in enumerate(spans):
                    group.start_soon(one, index, start, stop, bar, group)
        if failures:
            raise failures[0]
        return merge([chunk for chunk in chunks if chunk is not None])

    async def _body_limit(self) -> int | None:
        """The service's body limit from ``/v1/info`` (asked once); None if it does not say."""
        if self._max_body_bytes is None:
            try:
                self._max_body_bytes = int((await self.info())["limits"]["max_body_bytes"])
            except (httpx.HTTPError, ProblemError, KeyError, TypeError, ValueError):
                return None
        return self._max_body_bytes

    async def _score(
        self, endpoint: Endpoint, labels: Any, predictions: Any, options: Mapping[str, Any], transport: TransportChoice
    ) -> Scores:
        targets, preds = prepare(endpoint, labels, predictions)
        return await self._send_arrays(endpoint, targets, preds, check_options(endpoint, options), transport)

    async def _send_arrays(
        self, endpoint: Endpoint, labels: Any, predictions: Any, options: Mapping[str, Any], transport: TransportChoice
    ) -> Scores:
        npz = choose_npz(transport, predictions, self.config.npz_min_values)
        if not npz:
            return await self._send(build_request(endpoint, labels, predictions, options, npz=False))
        # Packing and unpacking a large archive is CPU work: keep it off the event loop.
        request = await anyio.to_thread.run_sync(
            lambda: build_request(endpoint, labels, predictions, options, npz=True)
        )
        return await self._send(request)

    async def _send(self, request: Request) -> Scores:
        retry = self.config.retry
        for attempt in range(retry.attempts + 1):
            last = attempt == retry.attempts
            try:
                response = await self._http.post(
                    request.path, content=request.content, headers=request.headers, params=request.params
                )
            except RETRY_ERRORS as error:
                if last:
                    raise transport_error(error, self.config.base_url, attempt + 1) from error
                await anyio.sleep(retry.delay(attempt))
                continue
            except httpx.TransportError as error:
                raise transport_error(error, self.config.base_url, attempt + 1) from error
            if response.status_code in RETRY_STATUSES and not last:
                await anyio.sleep(retry.delay(attempt, response.headers.get("retry-after")))
                continue
            content_type = response.headers.get("content-type", "")
            return await anyio.to_thread.run_sync(read_answer, response.status_code, content_type, response.content)
        raise AssertionError("unreachable")  # pragma: no cover
