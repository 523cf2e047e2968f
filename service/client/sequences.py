"""Sans-I/O requests and answers of the sequence endpoints (``/v1/sequence-cross-entropy`` and its ``/compare``).

The bodies are JSON: the model servers' responses are JSON already, and the input forms (completions, chat, TGI,
vLLM) are nested objects no array format holds. ``token_logprobs`` may be a float64 NumPy array (S × T, NaN where a
position has no log-probability) or lists; an option at the API's default is not sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import orjson

from service.client.sequence_results import SequenceComparison, SequenceScores
from service.client.wire import Request, _is_npz_answer
from service.core.contract import JSON_MEDIA_TYPE, SEQUENCE_OPTIONS

SEQUENCES_PATH = "/v1/sequence-cross-entropy"
COMPARE_SEQUENCES_PATH = "/v1/sequence-cross-entropy/compare"

#: The API's option defaults (``None`` ones are left out by ``_given`` anyway).
_DEFAULTS = {name: option.default for name, option in SEQUENCE_OPTIONS.items() if option.default is not None}

#: The input forms, one of which a request (or each side of a comparison) carries.
INPUT_FORMS = ("token_logprobs", "completions", "chat", "prompt_logprobs", "tgi_details")


def _given(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The fields that are not None, nor an option at the API's default (shorter requests, the same answer).
    NumPy arrays go as they are: orjson writes them natively, and NaN as null (in ``token_logprobs``, a position
    without a log-probability)."""
    return {
        name: value
        for name, value in fields.items()
        if value is not None and not (name in _DEFAULTS and _same(value, _DEFAULTS[name]))
    }


def _same(value: Any, default: Any) -> bool:
    return type(value) is type(default) and bool(value == default)


def _json_request(path: str, body: Mapping[str, Any]) -> Request:
    content = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    return Request(path, content, {"Content-Type": JSON_MEDIA_TYPE, "Accept": JSON_MEDIA_TYPE}, {})


def sequences_request(fields: Mapping[str, Any]) -> Request:
    """``POST /v1/sequence-cross-entropy`` with the given fields (an input form and options; None ones left out)."""
    return _json_request(SEQUENCES_PATH, _given(fields))


def compare_sequences_request(
    model: Mapping[str, Any], baseline: Mapping[str, Any], shared: Mapping[str, Any]
) -> Request:
    """``POST /v1/sequence-cross-entropy/compare``: ``model`` and ``baseline`` each an input form with its own
    ``score_from`` / ``score_until``; ``shared`` the fields of both (document ids, units, unit, confidence)."""
    for side, fields in (("model", model), ("baseline", baseline)):
        if not isinstance(fields, Mapping):
            raise TypeError(f"{side}: expected a mapping of an input form ({', '.join(INPUT_FORMS)}) to its values")
    body = {**_given(shared), "model": _given(model), "baseline": _given(baseline)}
    return _json_request(COMPARE_SEQUENCES_PATH, body)


def read_sequence_scores(response: httpx.Response) -> SequenceScores:
    """The answer of a 200; a ``ProblemError`` for any other."""
    if _is_npz_answer(response.status_code, response.headers.get("content-type", ""), response.content):
        return SequenceScores.from_npz(response.content)
    return SequenceScores.from_json(response.content)


def read_sequence_comparison(response: httpx.Response) -> SequenceComparison:
    """The comparison of a 200; a ``ProblemError`` for any other."""
    if _is_npz_answer(response.status_code, response.headers.get("content-type", ""), response.content):
        return SequenceComparison.from_npz(response.content)
    return SequenceComparison.from_json(response.content)
