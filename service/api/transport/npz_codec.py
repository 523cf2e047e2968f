"""The NPZ codec: an ``.npz`` request body into a request model, its arrays read by ``npz_archive``."""

from __future__ import annotations

import contextlib
import zipfile
from collections.abc import Mapping
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
from pydantic import BaseModel, ValidationError

from service.api.problems import HttpProblem, ProblemKind, query_parameter_error, validation_error
from service.api.transport.body import Body
from service.api.transport.limits import Limits
from service.api.transport.npy_header import MAGIC as NPY_MAGIC
from service.api.transport.npz_archive import (
    BadNpyHeader,
    NotNpy,
    NpzArchive,
    PickledNpy,
    StreamedMembers,
    UnreadableMember,
)
from service.core import InvalidInput
from service.core.contract import AUTO, JSON_MEDIA_TYPE
from service.core.errors import capped, quoted

RequestModel = TypeVar("RequestModel", bound=BaseModel)


@runtime_checkable
class SeesExtremes(Protocol):
    """A request model told the least and greatest values of its float members named in its ``extremes_fields``
    (taken while their CRC-32 is: ``NpzArchive.read``), so that its scoring need not look for them again."""

    def seen_extremes(self, extremes: Mapping[str, tuple[float, float]]) -> None:
        """``extremes``: member name → (least, greatest), NaN when the array holds a NaN."""


#: How a zip archive starts: a local file header, or the end record of an empty archive (np.savez()).
#: A single .npy array (its own magic) gets a message of its own.
_ARCHIVE_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06", NPY_MAGIC)


def _malformed_npz(reason: str) -> HttpProblem:
    return ProblemKind.MALFORMED_NPZ.error(f"the body is not a readable .npz archive: {reason}")


def inflated_size(body: Body) -> int:
    """How many bytes the archive's compressed members declare they inflate to (0: none, or not an archive).

    Read from the zip directory alone (capped, see ``NpzArchive``), so that the memory budget can be
    charged for the inflated members before any is decompressed; ``decode`` holds the same declared
    sizes to the body limit and refuses a member that inflates past its own.
    """
    try:
        with NpzArchive(body.data) as archive:
            return sum(
                int(entry.file_size) for entry in archive.infolist() if entry.compress_type != zipfile.ZIP_STORED
            )
    except (ValueError, OSError, EOFError, zipfile.BadZipFile):
        return 0  # decode says what is wrong with it


#: Array fields that also take one integer for every sequence (``/v1/sequence-cross-entropy``): a query parameter.
_ONE_INTEGER_FITS = frozenset({"score_from", "score_until"})


def decode(model: type[RequestModel], body: Body, query: Mapping[str, str], limits: Limits) -> RequestModel:
    """The request model from an NPZ body: arrays from the archive, options from the query.

    Pickled objects are refused, never loaded. The arrays may be views into the body, which
    therefore stays until they are gone.
    """
    data = body.data
    streamed = body.watcher if isinstance(body.watcher, StreamedMembers) else None
    copies, checked = (streamed.copies, streamed.checked) if streamed is not None else (None, None)
    wanted: frozenset[str] = getattr(model, "extremes_fields", frozenset())
    members: frozenset[str] = getattr(model, "array_fields", frozenset())
    if not members:  # a request of objects alone (POST /v1/merge's states) has nothing an archive could hold
        raise ProblemKind.UNSUPPORTED_MEDIA_TYPE.error(
            f"this endpoint reads JSON only: send the body with Content-Type: {JSON_MEDIA_TYPE}"
        )
    head = bytes(data[:64])
    if not head.startswith(_ARCHIVE_SIGNATURES):
        # np.load would try anything else as a pickle and say so ("contains pickled data"), which
        # misleads the usual sender: a JSON body sent with the NPZ content type.
        looks_like_json = head.lstrip()[:1] in (b"{", b"[")
        hint = "; it looks like JSON: send it with Content-Type: application/json" if looks_like_json else ""
        raise _malformed_npz(f"it does not start with a zip signature (PK\\x03\\x04), as np.savez writes{hint}")
    if head.startswith(NPY_MAGIC):
        raise _malformed_npz("it holds a single .npy array; send an .npz with named members (np.savez)")
    fields: dict[str, Any] = {}
    extremes: dict[str, tuple[float, float]] = {}
    try:
        archive = NpzArchive(data, copies, checked)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise _malformed_npz(str(error) or type(error).__name__) from None
    with archive:
        # A compressed member can inflate far past the body it came in: hold the archive's
        # uncompressed size to the body limit before reading any member.
        limits.check_archive(sum(int(entry.file_size) for entry in archive.infolist()))
        for name, entry in archive.members():
            if name not in members:
                allowed = ", ".join(sorted(members))
                raise InvalidInput(
                    capped(name), f"unexpected member {quoted(name)} in the archive; members are: {allowed}"
                )
            try:
                fields[name] = archive.read(entry, extremes=name in wanted)
                known = archive.extremes(entry)
                if known is not None:
                    extremes[name] = known
            except NotNpy:
                raise _malformed_npz(f"member {quoted(name)} is not a .npy array (np.save format)") from None
            except PickledNpy:
                raise InvalidInput(
                    name, "holds Python objects (pickled); only numeric and string arrays are accepted"
                ) from None
            except (UnreadableMember, BadNpyHeader) as error:
                raise _malformed_npz(f"member {quoted(name)}: {error}") from None
    for name in ("classes", "pos_weight"):
        if name in fields and isinstance(fields[name], np.ndarray) and fields[name].dtype.kind in "USf":
            # Names become a list of str; a 0-d pos_weight becomes a number.
            value = fields[name]
            fields[name] = value.tolist() if value.ndim else value.item()
    options: dict[str, Any] = dict(query)
    # Numbers in the query stay strings if they do not parse, and validation then names them.
    if options.get("epsilon", AUTO) != AUTO:
        with contextlib.suppress(ValueError):
            options["epsilon"] = float(options["epsilon"])
    if "pos_weight" in options and "pos_weight" not in fields:  # one number fits in the query
        with contextlib.suppress(ValueError):
            options["pos_weight"] = float(options["pos_weight"])
    for name in _ONE_INTEGER_FITS & members & (options.keys() - fields.keys()):  # one score_from, score_until too
        with contextlib.suppress(ValueError):
            options[name] = int(options[name])
    misplaced = sorted(name for name in members & options.keys() if isinstance(options[name], str))
    if misplaced:
        raise query_parameter_error(
            misplaced[0], "is an array: send it as a member of the .npz archive, not in the query"
        )
    try:
        request = model.model_validate({**options, **fields}, strict=False)
    except ValidationError as error:
        raise validation_error(error, model, from_query=True) from None
    if extremes and isinstance(request, SeesExtremes):
        request.seen_extremes(extremes)
    return request
