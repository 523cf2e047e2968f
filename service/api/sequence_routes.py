"""The language-model route: ``POST /v1/sequence-cross-entropy`` (read → decode → score → encode).

Added to ``scoring.router`` by ``scoring.scoring_route``, so it shares the body limits, the memory charge, the
scoring slots and the worker threads of the other scoring routes.
"""

from fastapi import Response

from service.api.examples import SEQUENCE_EXAMPLES
from service.api.scoring import scoring_route
from service.api.sequence_schemas import SequenceCrossEntropyRequest, SequenceCrossEntropyResponse
from service.api.transport import HELPER_THREADS, Answer, encode
from service.core.sequences import score_sequences, sequence_summary

#: What an NPZ answer holds: the JSON answer alone, per-document arrays included.
SEQUENCE_ARRAYS = "no arrays of its own (the per-document arrays are in `summary`)"


@scoring_route("/sequence-cross-entropy", SequenceCrossEntropyResponse, SEQUENCE_EXAMPLES, SEQUENCE_ARRAYS)
def sequence_cross_entropy(request: SequenceCrossEntropyRequest, answer: Answer) -> Response:
    """Language-model cross-entropy: perplexity, bits per byte and their errors from per-token log-probabilities

    Score the log-probabilities of the actual tokens that model servers return (vLLM / OpenAI completions,
    OpenAI chat, vLLM `prompt_logprobs`, TGI `details`, or plain lists), as lm-evaluation-harness aggregates
    them: per token, per byte (`bits_per_byte`) and per word, summed over the windows of each document, with
    the standard errors it does not give (ratio estimators over documents) and a mergeable `state`."""
    result = score_sequences(
        request.sequences(),
        score_from=request.score_from,
        score_until=request.score_until,
        document_ids=request.document_ids,
        num_bytes=request.num_bytes,
        num_words=request.num_words,
        unit=request.unit,
        helper=HELPER_THREADS,  # half of a large batch's sums on a second core
    )
    summary = sequence_summary(result, request.confidence, per_document=request.per_document)
    return encode(summary, None, None, answer)
