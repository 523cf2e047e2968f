"""``Client``: scoring over HTTP from synchronous code (threads for chunked scoring)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, Self, TypeVar

import httpx

from service.client.base import NO_BODY_LIMIT, BaseClient
from service.client.chunking import Batch, Chunk, Chunking, merge
from service.client.config import progress_bar
from service.client.errors import ProblemError
from service.client.merging import read_merged
from service.client.results import Comparison, Scores
from service.client.sequence_results import SequenceComparison, SequenceScores
from service.client.sequences import read_sequence_comparison, read_sequence_scores
from service.client.wire import Request, TransportChoice, read_comparison, read_response

#: What an answer is read as: ``Scores`` or ``Comparison``.
AnswerT = TypeVar("AnswerT")


class Client(
    BaseClient[Scores, Comparison, httpx.BaseTransport, SequenceScores, SequenceComparison, Scores | SequenceScores]
):
    """A client of a xent service.

    ``base_url`` and ``api_key`` default to ``XENT_URL`` (else http://127.0.0.1:8000) and ``XENT_API_KEY``;
    ``timeout`` is seconds per request; connection failures and 503s are retried ``retries`` times with
    jittered exponential backoff; ``npz_min_values`` is where ``transport="auto"`` switches from JSON to NPZ.
    """

    _http: httpx.Client

    def _connect(self, options: dict[str, Any], transport: httpx.BaseTransport | None) -> None:
        self._http = httpx.Client(**options, transport=transport)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def info(self) -> dict[str, Any]:
        """``GET /v1/info``: version, units, limits."""
        return self._info(self._http.get("/v1/info"))

    def _body_limit(self) -> int | None:
        if self._max_body_bytes is None:
            with contextlib.suppress(*NO_BODY_LIMIT):
                self._max_body_bytes = self._body_limit_in(self.info())
        return self._max_body_bytes

    def _score(self, batch: Callable[[], Batch], transport: TransportChoice) -> Scores:
        return self._send_batch(batch(), transport)

    def _send_batch(self, batch: Batch, transport: TransportChoice) -> Scores:
        return self._send(batch.request(transport, self.config.npz_min_values), read_response)

    def _compare(self, batch: Callable[[], Batch], transport: TransportChoice) -> Comparison:
        return self._send(batch().request(transport, self.config.npz_min_values), read_comparison)

    def _sequences(self, request: Request) -> SequenceScores:
        return self._send(request, read_sequence_scores)

    def _compare_sequences(self, request: Request) -> SequenceComparison:
        return self._send(request, read_sequence_comparison)

    def _merge(self, request: Request) -> Scores | SequenceScores:
        return self._send(request, read_merged)

    def _score_chunks(self, batch: Callable[[], Batch], how: Chunking) -> Scores:
        whole = batch()
        size = how.chunk_size if how.chunk_size is not None else whole.chunk_rows(self._body_limit())
        spans = whole.spans(size)

        def one(start: int, stop: int) -> Chunk:
            rows = whole.rows(start, stop)
            try:
                scores = self._send_batch(rows, how.transport)
            except ProblemError as error:
                raise error.shifted(start, stop, len(whole.predictions)) from None
            return rows.chunk(start, scores)

        chunks: list[Chunk | None] = [None] * len(spans)
        with (
            progress_bar(len(whole.predictions), how.progress) as bar,
            ThreadPoolExecutor(max(1, how.concurrency)) as pool,
        ):
            futures = {pool.submit(one, start, stop): i for i, (start, stop) in enumerate(spans)}
            try:
                for future in as_completed(futures):
                    chunk = chunks[futures[future]] = future.result()
                    bar.update(chunk.scores.n)
            except BaseException:
                for future in futures:  # the first error stops the chunks not started yet
                    future.cancel()
                raise
        return merge([chunk for chunk in chunks if chunk is not None])

    def _send(self, request: Request, read: Callable[[httpx.Response], AnswerT]) -> AnswerT:
        attempts = self._attempts()
        while True:
            try:
                content, headers = request.pieces()  # afresh for every attempt
                response = self._http.post(request.path, content=content, headers=headers, params=request.params)
            except httpx.TransportError as error:
                time.sleep(attempts.failed(error))
                continue
            wait = attempts.answered(response)
            if wait is None:
                return read(response)
            time.sleep(wait)
