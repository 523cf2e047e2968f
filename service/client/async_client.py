"""``AsyncClient``: scoring over HTTP from async code (anyio tasks for chunked scoring)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Coroutine
from typing import Any, Self, TypeVar

import anyio
import anyio.abc
import anyio.to_thread
import httpx

from service.client.base import NO_BODY_LIMIT, BaseClient
from service.client.chunking import Batch, Chunk, Chunking, merge
from service.client.config import Progress, progress_bar
from service.client.errors import ProblemError, XentError
from service.client.merging import read_merged
from service.client.results import Comparison, Scores
from service.client.sequence_results import SequenceComparison, SequenceScores
from service.client.sequences import read_sequence_comparison, read_sequence_scores
from service.client.wire import Request, TransportChoice, read_comparison, read_response

#: What an answer is read as: ``Scores`` or ``Comparison``.
AnswerT = TypeVar("AnswerT")


class AsyncClient(
    BaseClient[
        Coroutine[Any, Any, Scores],
        Coroutine[Any, Any, Comparison],
        httpx.AsyncBaseTransport,
        Coroutine[Any, Any, SequenceScores],
        Coroutine[Any, Any, SequenceComparison],
        Coroutine[Any, Any, Scores | SequenceScores],
    ]
):
    """An async client of a xent service: the same arguments and methods as ``Client``, awaited."""

    _http: httpx.AsyncClient

    def _connect(self, options: dict[str, Any], transport: httpx.AsyncBaseTransport | None) -> None:
        self._http = httpx.AsyncClient(**options, transport=transport)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def info(self) -> dict[str, Any]:
        """``GET /v1/info``: version, units, limits."""
        return self._info(await self._http.get("/v1/info"))

    async def _body_limit(self) -> int | None:
        if self._max_body_bytes is None:
            with contextlib.suppress(*NO_BODY_LIMIT):
                self._max_body_bytes = self._body_limit_in(await self.info())
        return self._max_body_bytes

    async def _score(self, batch: Callable[[], Batch], transport: TransportChoice) -> Scores:
        return await self._send_batch(batch(), transport)

    async def _send_batch(self, batch: Batch, transport: TransportChoice) -> Scores:
        return await self._send(await self._request(batch, transport), read_response)

    async def _compare(self, batch: Callable[[], Batch], transport: TransportChoice) -> Comparison:
        return await self._send(await self._request(batch(), transport), read_comparison)

    async def _sequences(self, request: Request) -> SequenceScores:
        return await self._send(request, read_sequence_scores)

    async def _compare_sequences(self, request: Request) -> SequenceComparison:
        return await self._send(request, read_sequence_comparison)

    async def _merge(self, request: Request) -> Scores | SequenceScores:
        return await self._send(request, read_merged)

    async def _request(self, batch: Batch, transport: TransportChoice) -> Request:
        npz_min_values = self.config.npz_min_values
        if not batch.is_npz(transport, npz_min_values):
            return batch.request(transport, npz_min_values)
        # Packing and unpacking a large archive is CPU work: keep it off the event loop.
        return await anyio.to_thread.run_sync(batch.request, transport, npz_min_values)

    async def _score_chunks(self, batch: Callable[[], Batch], how: Chunking) -> Scores:
        whole = batch()
        size = how.chunk_size if how.chunk_size is not None else whole.chunk_rows(await self._body_limit())
        spans = whole.spans(size)
        chunks: list[Chunk | None] = [None] * len(spans)
        failures: list[BaseException] = []
        limit = anyio.Semaphore(max(1, how.concurrency))

        async def one(index: int, start: int, stop: int, bar: Progress, group: anyio.abc.TaskGroup) -> None:
            rows = whole.rows(start, stop)
            async with limit:
                try:
                    scores = await self._send_batch(rows, how.transport)
                except XentError as error:
                    failures.append(
                        error.shifted(start, stop, len(whole.predictions)) if isinstance(error, ProblemError) else error
                    )
                    group.cancel_scope.cancel()  # the first error stops the chunks not started yet
                    return
            chunks[index] = rows.chunk(start, scores)
            bar.update(scores.n)

        with progress_bar(len(whole.predictions), how.progress) as bar:
            async with anyio.create_task_group() as group:
                for index, (start, stop) in enumerate(spans):
                    group.start_soon(one, index, start, stop, bar, group)
        if failures:
            raise failures[0]
        return merge([chunk for chunk in chunks if chunk is not None])

    async def _send(self, request: Request, read: Callable[[httpx.Response], AnswerT]) -> AnswerT:
        attempts = self._attempts()
        while True:
            try:
                content, headers = request.async_pieces()  # afresh for every attempt
                response = await self._http.post(request.path, content=content, headers=headers, params=request.params)
            except httpx.TransportError as error:
                await anyio.sleep(attempts.failed(error))
                continue
            wait = attempts.answered(response)
            if wait is None:
                return await anyio.to_thread.run_sync(read, response)
            await anyio.sleep(wait)
