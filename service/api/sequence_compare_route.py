"""``POST /v1/sequence-cross-entropy/compare``: two language models on the same texts (read → decode → score →
encode, as every scoring route; added to ``scoring.router`` by ``scoring.scoring_route``)."""

from fastapi import Response

from service.api.examples import SEQUENCE_COMPARE_EXAMPLES
from service.api.scoring import scoring_route
from service.api.sequence_compare_schemas import SequenceCompareRequest, SequenceCompareResponse, SequenceSide
from service.api.transport import HELPER_THREADS, Answer, encode
from service.core.sequence_compare import check_paired, scoring_side, sequence_comparison
from service.core.sequence_forms import Sequences
from service.core.sequences import SequenceResult, score_sequences

#: What an NPZ answer holds: the JSON answer alone.
COMPARE_ARRAYS = "no arrays of its own (the JSON answer is its `summary`)"


#: The fields both sides share (at the top of the request), and those each side has of its own.
SHARED = ("document_ids", "num_bytes", "num_words", "unit")
WINDOW = ("score_from", "score_until")


def _score_side(request: SequenceCompareRequest, side: SequenceSide, name: str, sequences: Sequences) -> SequenceResult:
    """One side's result, with its window and the shared document ids and units; errors name the side."""
    options = {field: getattr(request, field) for field in SHARED} | {field: getattr(side, field) for field in WINDOW}
    with scoring_side(name):
        return score_sequences(sequences, **options, helper=HELPER_THREADS)


def _read_side(side: SequenceSide, name: str) -> Sequences:
    with scoring_side(name):
        return side.sequences()


@scoring_route("/sequence-cross-entropy/compare", SequenceCompareResponse, SEQUENCE_COMPARE_EXAMPLES, COMPARE_ARRAYS)
def sequence_cross_entropy_compare(request: SequenceCompareRequest, answer: Answer) -> Response:
    """Paired comparison of two language models on the same texts

    `model` and `baseline` each hold one input form of `/v1/sequence-cross-entropy` (and their own
    `score_from` / `score_until`: two tokenizers split one text differently); sequence i of each is the same
    text, with the shared `document_ids`, `num_bytes` and `num_words`. The difference model − baseline is per
    byte and per word when those units are known, d = (ΣS_model − ΣS_baseline)/ΣT over documents (negative:
    the model is better), with the ratio standard error of D_d = S_model,d − S_baseline,d, its interval, z and
    p-value; per token only when both sides score the same number of tokens in every document."""
    sequences = _read_side(request.model, "model"), _read_side(request.baseline, "baseline")
    check_paired(*sequences)
    model = _score_side(request, request.model, "model", sequences[0])
    baseline = _score_side(request, request.baseline, "baseline", sequences[1])
    return encode(sequence_comparison(model, baseline, request.confidence), None, None, answer)
