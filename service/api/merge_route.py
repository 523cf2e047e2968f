"""``POST /v1/merge``: the answer for the rows of several scoring answers, from their states (issue 15).

Added to ``scoring.router`` by ``scoring.scoring_route``, so it shares the body limit, the memory charge,
the scoring slots and the worker threads of the scoring routes; ``XENT_MAX_MERGE_STATES`` bounds the
states of one request (``Limits.check_states``). The merging is the core's (``service.core.state``).
"""

from typing import Any, ClassVar

import orjson
from fastapi import Response
from pydantic import BaseModel, ConfigDict, Field, SkipValidation, create_model

from service.api.schemas import BinaryCrossEntropyRequest, BinaryCrossEntropyResponse, CrossEntropyRequest
from service.api.scoring import binary_cross_entropy, cross_entropy, scoring_route
from service.api.sequence_routes import sequence_cross_entropy
from service.api.sequence_schemas import SequenceCrossEntropyRequest, SequenceCrossEntropyResponse
from service.api.state_schema import ScoringState
from service.api.transport import Answer, encode
from service.core.contract import MULTICLASS, OPTIONS
from service.core.state import merge_states
from service.core.state_batch import StateBatch

_CONFIDENCE = OPTIONS[MULTICLASS]["confidence"]


class MergeRequest(BaseModel):
    """States of scoring answers (of shards of one evaluation) to merge into the answer of all their rows."""

    model_config = ConfigDict(extra="forbid", strict=True)
    #: JSON bodies are charged by their containers too: states are nested objects (``scoring``).
    charge_json_containers: ClassVar[bool] = True
    #: No arrays of numbers to parse apart as the scoring requests' are (``json_codec``)...
    json_fast_path: ClassVar[bool] = False
    #: ... but a large body's states are read by simdjson, their tables as float64 arrays (``_json_states``).
    json_states: ClassVar[str] = "states"

    # Read as they came (not validated here): the core validates each, naming the state's index and the value.
    states: SkipValidation[list[ScoringState | dict[str, Any]]] = Field(
        description="The `state` of each answer, as it came (at most XENT_MAX_MERGE_STATES): of `/v1/cross-entropy`, "
        "`/v1/binary-cross-entropy` (the schema shown) or `/v1/sequence-cross-entropy`. All of one endpoint "
        "and, those of at least one row, of the same settings: else a 422 names the setting and the state's "
        "index. A state of no rows merges with anything of its endpoint. Any malformed or forged state (a "
        "missing key, a negative count, a NaN, a sum that contradicts its count, …) is a 422 naming it."
    )
    confidence: float = Field(
        _CONFIDENCE.default, description=_CONFIDENCE.description, gt=_CONFIDENCE.gt, lt=_CONFIDENCE.lt
    )

    def cells(self) -> int:
        """What the memory budget charges beyond the body: a cell a state (their arrays are in the body's charge)."""
        return len(self.states) if isinstance(self.states, list | StateBatch) else 0  # else refused by the core


def _merged_model(
    name: str, doc: str, answer: type[BaseModel] = BinaryCrossEntropyResponse, state: Any = ScoringState, **extra: Any
) -> type[BaseModel]:
    """The model of ``answer`` (a scoring answer's) without its per-row part, and with the merged ``settings``."""
    fields: dict[str, Any] = {
        key: (info.annotation, info)
        for key, info in answer.model_fields.items()
        if key not in ("per_sample", "per_document", "settings", "state")
    }
    fields["settings"] = (
        dict[str, Any],
        Field(description="The states' settings (`endpoint` first), and the `confidence` of the intervals."),
    )
    fields["state"] = (state, Field(description="The merged state: merge it again with others."))
    model: type[BaseModel] = create_model(name, __doc__=doc, **extra, **fields)
    return model


MergedScores = _merged_model(
    "MergedScores",
    "The answer for the rows of merged states: the scoring answer of their endpoint without `per_sample`.",
    classes=(
        list[str] | None,
        Field(None, description="`/v1/cross-entropy` states: the class names, when given (absent for others)."),
    ),
)

MergedSequences = _merged_model(
    "MergedSequences",
    "The answer for the rows of merged `/v1/sequence-cross-entropy` states: that endpoint's answer without "
    "`per_document`.",
    SequenceCrossEntropyResponse,
    dict[str, Any],
)


def _state(handler: Any, model: type[BaseModel], body: dict[str, Any]) -> dict[str, Any]:
    """The ``state`` of the scoring answer to ``body`` (the examples' states are real answers' states)."""
    response = handler(model.model_validate(body), Answer())
    state: dict[str, Any] = orjson.loads(bytes(response.body))["state"]
    return state


_LABELS = [1, 0, 2, 1]
_PREDICTIONS = [[0.228, 0.619, 0.153], [0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.2, 0.6, 0.2]]
MERGE_EXAMPLES: dict[str, dict[str, object]] = {
    "two-shards": {
        "summary": "Two shards of a multi-class batch: the answer of the 4 rows in one request",
        "value": {
            "states": [
                _state(cross_entropy, CrossEntropyRequest, {"labels": _LABELS[:2], "predictions": _PREDICTIONS[:2]}),
                _state(cross_entropy, CrossEntropyRequest, {"labels": _LABELS[2:], "predictions": _PREDICTIONS[2:]}),
            ],
            "confidence": 0.95,
        },
    },
    "binary-with-clusters": {
        "summary": "Binary shards with cluster ids: one cluster spans both, CR1 standard errors",
        "value": {
            "states": [
                _state(
                    binary_cross_entropy,
                    BinaryCrossEntropyRequest,
                    {"labels": [1, 0, 1], "predictions": [0.9, 0.2, 0.6], "cluster_ids": ["a", "a", "b"]},
                ),
                _state(
                    binary_cross_entropy,
                    BinaryCrossEntropyRequest,
                    {"labels": [0, 1], "predictions": [0.4, 0.7], "cluster_ids": ["b", "c"]},
                ),
            ],
            "confidence": 0.9,
        },
    },
    "sequence-shards": {
        "summary": "Two shards of a corpus scored by /v1/sequence-cross-entropy: its answer without per_document",
        "value": {
            "states": [
                _state(
                    sequence_cross_entropy,
                    SequenceCrossEntropyRequest,
                    {"token_logprobs": [[None, -1.0, -2.0]], "num_bytes": [11]},
                ),
                _state(
                    sequence_cross_entropy,
                    SequenceCrossEntropyRequest,
                    {"token_logprobs": [[None, -0.5, -1.5, -1.0]], "num_bytes": [14]},
                ),
            ],
            "confidence": 0.95,
        },
    },
}


@scoring_route("/merge", MergedScores | MergedSequences, MERGE_EXAMPLES, None)
def merge(request: MergeRequest, answer: Answer) -> Response:
    """Merge the states of scoring answers into the answer of all their rows

    Every answer of `/v1/cross-entropy` and `/v1/binary-cross-entropy` carries a `state`: its sufficient
    statistics. Send the states of the shards of an evaluation (workers, partitions, days) and get the
    answer the whole batch would have had in one request, without `per_sample`: means and sums exactly
    (to 1e-12), standard errors and intervals (to 1e-9, clustered ones too), counts, breakdowns and
    calibration bins, and warnings with their counts added (their row numbers are not kept). The answer's
    `state` merges again: merging is associative and order-independent, so states can be merged in a tree.
    States of `/v1/sequence-cross-entropy` merge too, into that endpoint's answer without `per_document`."""
    return encode(merge_states(request.states, request.confidence), None, None, answer)
