"""``BaseClient``: all that the sync and async clients share, which is everything but the I/O.

Configuration, the public methods with their typed options, option checking (``Batch``), chunk
planning and merging (``chunking``), retry decisions (``Attempts``) and answer reading (``wire``)
are here once; ``Client`` and ``AsyncClient`` only send, sleep and gather. The public methods are
written once too: on ``Client`` they return ``Scores``, on ``AsyncClient`` the coroutine that
computes them (``await xent.cross_entropy(...)``), which is what the type parameter ``ScoresT`` is.

Over 300 lines because it is the client's whole public surface, each method's keywords written out with their
contract defaults (``score_sequences`` / ``compare_sequences`` too); what they send is built elsewhere.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any, Generic, Literal, TypeVar, Unpack, overload

import httpx

from service.client.chunking import Batch, Chunking
from service.client.config import ClientConfig
from service.client.errors import ProblemError
from service.client.merging import merge_request
from service.client.retry import Attempts
from service.client.sequences import compare_sequences_request, sequences_request
from service.client.wire import (
    BinaryCrossEntropyOptions,
    CrossEntropyOptions,
    Request,
    TransportChoice,
    read_response,
)
from service.core.contract import BINARY, MULTICLASS, OPTIONS, SEQUENCE_OPTIONS, Endpoint

#: The options of each endpoint: the scoring methods' keyword defaults come from the contract.
_CE = OPTIONS[MULTICLASS]
_BCE = OPTIONS[BINARY]
_SEQ = SEQUENCE_OPTIONS

#: What a scoring method returns: ``Scores`` (``Client``), or a coroutine of ``Scores`` (``AsyncClient``).
ScoresT = TypeVar("ScoresT")
#: What ``compare`` returns: ``Comparison`` (``Client``), or a coroutine of ``Comparison`` (``AsyncClient``).
ComparisonT = TypeVar("ComparisonT")
#: The httpx transport the client can be given: ``httpx.BaseTransport`` or ``httpx.AsyncBaseTransport``.
TransportT = TypeVar("TransportT")
#: What ``score_sequences`` returns: ``SequenceScores``, or a coroutine of them (``AsyncClient``).
SequenceScoresT = TypeVar("SequenceScoresT")
#: What ``compare_sequences`` returns: ``SequenceComparison``, or a coroutine of one (``AsyncClient``).
SequenceComparisonT = TypeVar("SequenceComparisonT")
#: What ``merge`` returns: ``Scores`` or ``SequenceScores`` (by the states' endpoint), or a coroutine of one.
MergedT = TypeVar("MergedT")

#: Why ``/v1/info`` may not tell the body limit: then chunks are sized for the service's default.
NO_BODY_LIMIT = (httpx.HTTPError, ProblemError, KeyError, TypeError, ValueError)


class BaseClient(ABC, Generic[ScoresT, ComparisonT, TransportT, SequenceScoresT, SequenceComparisonT, MergedT]):
    """The configuration and the scoring methods of a xent client (the arguments: see ``Client``); a subclass
    opens the connections (``_connect``) and sends the requests (``_score``, ``_score_chunks``, ``_compare``,
    ``_sequences``, ``_compare_sequences``, ``_merge``)."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
        npz_min_values: int | None = None,
        transport: TransportT | None = None,
    ) -> None:
        self.config = ClientConfig.build(base_url, api_key, timeout, retries, backoff, npz_min_values)
        self._max_body_bytes: int | None = None  # from /v1/info, asked once, when chunk sizes need it
        self._connect({"base_url": self.config.base_url, "headers": self.config.headers, "timeout": timeout}, transport)

    @abstractmethod
    def _connect(self, options: dict[str, Any], transport: TransportT | None) -> None:
        """Open the httpx client (``options`` are its arguments but ``transport``)."""

    # ``batch`` builds the batch, which checks the options: the async client calls it in its coroutine,
    # so that a misspelt option raises where the call is awaited, as from any coroutine.

    @abstractmethod
    def _score(self, batch: Callable[[], Batch], transport: TransportChoice) -> ScoresT:
        """Send one batch and read the answer."""

    @abstractmethod
    def _score_chunks(self, batch: Callable[[], Batch], how: Chunking) -> ScoresT:
        """Send the batch in chunks, as ``how`` says, and merge the answers."""

    @abstractmethod
    def _compare(self, batch: Callable[[], Batch], transport: TransportChoice) -> ComparisonT:
        """Send one comparison batch and read the answer."""

    def cross_entropy(
        self,
        labels: Any,
        predictions: Any,
        *,
        compat: Literal["xent", "pytorch", "sklearn", "keras", "scipy"] = _CE["compat"].default,
        prediction_type: Literal["probabilities", "logits", "log_probabilities"] = _CE["prediction_type"].default,
        classes: list[str] | None = _CE["classes"].default,
        label_smoothing: float = _CE["label_smoothing"].default,
        class_weights: Any = _CE["class_weights"].default,
        sample_weights: Any = _CE["sample_weights"].default,
        ignore_index: int | None = _CE["ignore_index"].default,
        epsilon: float | Literal["auto"] = _CE["epsilon"].default,
        normalization: Literal["warn", "renormalize", "error"] = _CE["normalization"].default,
        tolerance: float = _CE["tolerance"].default,
        unit: Literal["nats", "bits", "hartleys"] = _CE["unit"].default,
        per_sample: bool = _CE["per_sample"].default,
        gradient: bool = _CE["gradient"].default,
        confidence: float = _CE["confidence"].default,
        cluster_ids: Any = _CE["cluster_ids"].default,
        groups: Any = _CE["groups"].default,
        per_class: bool = _CE["per_class"].default,
        calibration_bins: int | None = _CE["calibration_bins"].default,
        transport: TransportChoice = "auto",
    ) -> ScoresT:
        """Multi-class cross-entropy, KL divergence and target entropy of one batch (``POST /v1/cross-entropy``)."""
        options = {k: v for k, v in locals().items() if k not in ("self", "labels", "predictions", "transport")}
        return self._score(partial(Batch.of, "cross-entropy", labels, predictions, options), transport)

    def binary_cross_entropy(
        self,
        labels: Any,
        predictions: Any,
        *,
        compat: Literal["xent", "pytorch", "sklearn", "keras", "scipy"] = _BCE["compat"].default,
        prediction_type: Literal["probabilities", "logits"] = _BCE["prediction_type"].default,
        pos_weight: Any = _BCE["pos_weight"].default,
        label_smoothing: float = _BCE["label_smoothing"].default,
        sample_weights: Any = _BCE["sample_weights"].default,
        epsilon: float | Literal["auto"] = _BCE["epsilon"].default,
        unit: Literal["nats", "bits", "hartleys"] = _BCE["unit"].default,
        per_sample: bool = _BCE["per_sample"].default,
        gradient: bool = _BCE["gradient"].default,
        confidence: float = _BCE["confidence"].default,
        cluster_ids: Any = _BCE["cluster_ids"].default,
        groups: Any = _BCE["groups"].default,
        calibration_bins: int | None = _BCE["calibration_bins"].default,
        transport: TransportChoice = "auto",
    ) -> ScoresT:
        """Binary / multi-label cross-entropy of one batch (``POST /v1/binary-cross-entropy``)."""
        options = {k: v for k, v in locals().items() if k not in ("self", "labels", "predictions", "transport")}
        return self._score(partial(Batch.of, "binary-cross-entropy", labels, predictions, options), transport)

    @overload
    def score_many(
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
    ) -> ScoresT: ...
    @overload
    def score_many(
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
    ) -> ScoresT: ...
    def score_many(
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
    ) -> ScoresT:
        """Score a dataset of any size in chunks of ``chunk_size`` rows (default: sized from the service's body
        limit), ``concurrency`` requests at a time, and merge the answers exactly (Σ sums / Σ weights).

        ``progress``: a tqdm bar of rows done on stderr (None: only when stderr is a terminal).
        Errors name rows of the whole dataset, not of the chunk.
        """
        endpoint: Endpoint = "binary-cross-entropy" if binary else "cross-entropy"
        how = Chunking(chunk_size, concurrency, progress, transport)
        return self._score_chunks(partial(Batch.of, endpoint, labels, predictions, options), how)

    @overload
    def compare(
        self,
        labels: Any,
        predictions: Any,
        baseline_predictions: Any,
        *,
        binary: Literal[False] = False,
        baseline_prediction_type: Literal["probabilities", "logits", "log_probabilities"] | None = None,
        transport: TransportChoice = "auto",
        **options: Unpack[CrossEntropyOptions],
    ) -> ComparisonT: ...
    @overload
    def compare(
        self,
        labels: Any,
        predictions: Any,
        baseline_predictions: Any,
        *,
        binary: Literal[True],
        baseline_prediction_type: Literal["probabilities", "logits"] | None = None,
        transport: TransportChoice = "auto",
        **options: Unpack[BinaryCrossEntropyOptions],
    ) -> ComparisonT: ...
    def compare(
        self,
        labels: Any,
        predictions: Any,
        baseline_predictions: Any,
        *,
        binary: bool = False,
        baseline_prediction_type: str | None = None,
        transport: TransportChoice = "auto",
        **options: Any,
    ) -> ComparisonT:
        """Compare a model's ``predictions`` with a baseline's on the same labels, paired row by row
        (``POST /v1/cross-entropy/compare``; ``binary=True``: ``/v1/binary-cross-entropy/compare``).

        ``options`` are the base endpoint's (``cross_entropy`` / ``binary_cross_entropy``), with ``confidence``
        and ``cluster_ids``; ``baseline_prediction_type`` defaults to ``prediction_type``. The ``Comparison``'s
        ``difference`` is model − baseline per metric (negative cross-entropy: the model is better), with the
        paired standard error, interval, z, p-value and correlation. One request: the paired standard errors
        need every row at once (``score_many`` does not compare).
        """
        endpoint: Endpoint = "binary-cross-entropy" if binary else "cross-entropy"
        given = {**options, "baseline_prediction_type": baseline_prediction_type}
        return self._compare(
            partial(Batch.comparing, endpoint, labels, predictions, baseline_predictions, given), transport
        )

    @abstractmethod
    def _sequences(self, request: Request) -> SequenceScoresT:
        """Send a request to ``/v1/sequence-cross-entropy`` and read the answer."""

    @abstractmethod
    def _compare_sequences(self, request: Request) -> SequenceComparisonT:
        """Send a request to ``/v1/sequence-cross-entropy/compare`` and read the answer."""

    def score_sequences(
        self,
        token_logprobs: Any = None,
        *,
        completions: Any = None,
        chat: Any = None,
        prompt_logprobs: Any = None,
        prompt_token_ids: Any = None,
        tgi_details: Any = None,
        score_from: int | list[int] = _SEQ["score_from"].default,
        score_until: int | list[int] | None = _SEQ["score_until"].default,
        document_ids: Any = _SEQ["document_ids"].default,
        num_bytes: Any = _SEQ["num_bytes"].default,
        num_words: Any = _SEQ["num_words"].default,
        unit: Literal["nats", "bits", "hartleys"] = _SEQ["unit"].default,
        confidence: float = _SEQ["confidence"].default,
        per_document: bool = _SEQ["per_document"].default,
    ) -> SequenceScoresT:
        """Token perplexity, bits per byte and word perplexity of S sequences, with standard errors and intervals
        (``POST /v1/sequence-cross-entropy``).

        Give one input form: ``token_logprobs`` (S lists of natural-log probabilities, null/NaN where a position
        has none), ``completions`` (S OpenAI/vLLM completions ``logprobs`` objects), ``chat`` (S chat ``logprobs``
        objects), ``prompt_logprobs`` with ``prompt_token_ids`` (vLLM), or ``tgi_details`` (S TGI ``details``).
        The options are the API's, with its names and defaults; ``num_bytes`` / ``num_words`` give byte and word
        perplexity, ``document_ids`` sum windows of one document. One request, sent as JSON.
        """
        fields = {k: v for k, v in locals().items() if k != "self"}
        return self._sequences(sequences_request(fields))

    def compare_sequences(
        self,
        model: Mapping[str, Any],
        baseline: Mapping[str, Any],
        *,
        document_ids: Any = _SEQ["document_ids"].default,
        num_bytes: Any = _SEQ["num_bytes"].default,
        num_words: Any = _SEQ["num_words"].default,
        unit: Literal["nats", "bits", "hartleys"] = _SEQ["unit"].default,
        confidence: float = _SEQ["confidence"].default,
    ) -> SequenceComparisonT:
        """Compare two language models on the same texts (``POST /v1/sequence-cross-entropy/compare``).

        ``model`` and ``baseline`` are each a mapping of one input form (as ``score_sequences`` takes it) and
        optionally its own ``score_from`` / ``score_until``, e.g. ``{"completions": [...], "score_until": -1}``;
        sequence i of one pairs with sequence i of the other (the same text, maybe other tokens). The
        ``difference`` is model − baseline per byte and per word when ``num_bytes`` / ``num_words`` are known (per
        token only when both sides score the same number of tokens in every document), with its ratio standard
        error, interval, z and p-value: negative means the model is better.
        """
        shared = {"document_ids": document_ids, "num_bytes": num_bytes, "num_words": num_words}
        shared |= {"unit": unit, "confidence": confidence}
        return self._compare_sequences(compare_sequences_request(model, baseline, shared))

    @abstractmethod
    def _merge(self, request: Request) -> MergedT:
        """Send a request to ``/v1/merge`` and read the answer."""

    def merge(self, states: Iterable[Mapping[str, Any]], *, confidence: float = _CE["confidence"].default) -> MergedT:
        """The answer for all the rows of the answers whose ``state`` are ``states`` (``POST /v1/merge``): the
        shards of one evaluation scored by several workers, days or machines, merged exactly (means and sums to
        1e-12, standard errors and intervals to 1e-9 of the one request's), with intervals at ``confidence``.
        ``Scores`` for the states of the scoring endpoints, ``SequenceScores`` for those of
        ``/v1/sequence-cross-entropy``, without the per-row part; their ``state`` merges again."""
        return self._merge(merge_request(states, confidence))

    def _attempts(self) -> Attempts:
        """The tries of one request, as configured."""
        return Attempts(self.config.retry, self.config.base_url)

    @staticmethod
    def _info(response: httpx.Response) -> dict[str, Any]:
        """``/v1/info``'s document; a ``ProblemError`` for any answer but 200."""
        if response.status_code != 200:
            read_response(response)
        info: dict[str, Any] = response.json()
        return info

    @staticmethod
    def _body_limit_in(info: dict[str, Any]) -> int:
        """The service's body limit, as ``/v1/info`` states it."""
        return int(info["limits"]["max_body_bytes"])
