"""Bytes in, bytes out: a request is read (``body``), decoded by the codec of its media type
(``json_codec``, ``npz_codec``), scored elsewhere, and answered (``answer``); ``limits`` checks every size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from pydantic import BaseModel

from service.api.transport import json_codec, npz_archive, npz_codec
from service.api.transport._json_streamed import StreamedRows, watches_rows
from service.api.transport.answer import Answer, encode
from service.api.transport.body import Body, Watchers, read_body
from service.api.transport.helper_threads import HELPER_THREADS
from service.api.transport.limits import Limits, predictions_of
from service.core.contract import JSON_MEDIA_TYPE, NPZ_MEDIA_TYPE

RequestModel = TypeVar("RequestModel", bound=BaseModel)

#: What watches a large body of each kind as it arrives: an archive's unaligned large members are copied aligned.
WATCHERS: Watchers = {"npz": npz_archive.StreamedMembers}
#: The same for the routes whose JSON may be ``token_logprobs`` rows: they are parsed during the upload.
_ROWS_WATCHERS: Watchers = {**WATCHERS, "json": StreamedRows}


def watchers_for(model: type[BaseModel]) -> Watchers:
    """What watches a large body of each kind sent to the route of ``model`` as it arrives (``read_body``)."""
    return _ROWS_WATCHERS if watches_rows(model) else WATCHERS


def decode_without_containers(
    model: type[RequestModel], body: Body, query: Mapping[str, str], limits: Limits
) -> RequestModel | None:
    """``decode``, when a path that builds no Python object per JSON container reads the body (a large plain JSON
    ``token_logprobs`` one); None otherwise, the body untouched: the caller charges its containers, then
    ``decode``s it."""
    if body.kind != "json" or body.encoding != "identity" or query:
        return None
    request = json_codec.decode_without_containers(model, body, limits)
    return None if request is None else _checked(request, limits)


def decode(
    model: type[RequestModel], body: Body, query: Mapping[str, str], limits: Limits, *, fast_json_min_bytes: int
) -> RequestModel:
    """The request model from a body (and, for NPZ, the query's options), refused with 413 past the batch limits.

    Runs in a worker thread for every body that needs CPU to decode, so a gzip body is inflated here, not
    while it is read on the event loop.
    """
    body.inflate(limits)
    if body.kind == "npz":
        request = npz_codec.decode(model, body, query, limits)
    else:
        request = json_codec.decode(model, body, query, limits, fast_json_min_bytes=fast_json_min_bytes)
    return _checked(request, limits)


def _checked(request: RequestModel, limits: Limits) -> RequestModel:
    """``request``, once its batch, groups, states and cells are within ``limits`` (413 otherwise)."""
    limits.check_batch(*predictions_of(request))
    limits.check_groups(getattr(request, "groups", None))
    limits.check_states(getattr(request, "states", None))
    cells = getattr(request, "cells", None)
    if cells is not None:
        limits.check_cells(cells())
    return request


__all__ = [
    "HELPER_THREADS",
    "JSON_MEDIA_TYPE",
    "NPZ_MEDIA_TYPE",
    "WATCHERS",
    "Answer",
    "Body",
    "Limits",
    "decode",
    "decode_without_containers",
    "encode",
    "read_body",
    "watchers_for",
]
