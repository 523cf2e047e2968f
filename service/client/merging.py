"""Sans-I/O request and answer of ``POST /v1/merge``: the states of answers merged into the answer of all their rows.

The states are the ``state`` of answers the client got (``Scores.state``, ``SequenceScores.state``) or any
that were stored; the service checks and merges them (the same code as ``score_many``'s). The answer is read
as its endpoint's: ``Scores`` for scoring states, ``SequenceScores`` for ``/v1/sequence-cross-entropy`` ones,
without the per-row part.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import httpx
import orjson

from service.client.results import Scores
from service.client.sequence_results import SequenceScores
from service.client.wire import Request, _is_npz_answer
from service.core.contract import JSON_MEDIA_TYPE

MERGE_PATH = "/v1/merge"


def merge_request(states: Iterable[Mapping[str, Any]], confidence: float) -> Request:
    """``POST /v1/merge`` of ``states`` (each a state as an answer carries it) with the intervals at ``confidence``."""
    listed = list(states)
    if not all(isinstance(state, Mapping) for state in listed):
        raise TypeError("states: expected the `state` of answers (mappings), e.g. [a.state, b.state]")
    content = orjson.dumps({"states": listed, "confidence": confidence}, option=orjson.OPT_SERIALIZE_NUMPY)
    return Request(MERGE_PATH, content, {"Content-Type": JSON_MEDIA_TYPE, "Accept": JSON_MEDIA_TYPE}, {})


def read_merged(response: httpx.Response) -> Scores | SequenceScores:
    """The merged answer of a 200, read as its endpoint's answer; a ``ProblemError`` for any other."""
    _is_npz_answer(response.status_code, response.headers.get("content-type", ""), response.content)
    summary = orjson.loads(response.content)
    if "n_sequences" in summary:  # the answer of /v1/sequence-cross-entropy's states (n_sequences, token, byte, …)
        return SequenceScores.from_summary(summary)
    return Scores.from_summary(summary, None)
