"""The client's errors: one small tree, mapped from HTTP answers and transport failures in one place."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: The array fields whose ``loc`` carries a row index (``["body", field, row, column]``).
ROW_FIELDS = frozenset({"predictions", "labels", "sample_weights"})


class XentError(Exception):
    """Base of every error the xent client raises."""


@dataclass(frozen=True)
class ProblemDetail:
    """One entry of a problem's ``errors``: where (``loc``), what (``msg``) and its kind (``type``)."""

    loc: tuple[str | int, ...]
    msg: str
    type: str

    @property
    def field(self) -> str | None:
        """The request field named by ``loc`` (``"predictions"``), if any."""
        return str(self.loc[1]) if len(self.loc) > 1 else None

    @property
    def row(self) -> int | None:
        """The row named by ``loc``, if any."""
        return self.loc[2] if len(self.loc) > 2 and isinstance(self.loc[2], int) else None

    @property
    def column(self) -> int | None:
        """The column named by ``loc``, if any."""
        return self.loc[3] if len(self.loc) > 3 and isinstance(self.loc[3], int) else None


class ProblemError(XentError):
    """The service answered with an error: an RFC 9457 problem (``status``, ``title``, ``detail``, ``errors``)."""

    def __init__(
        self, status: int, title: str, detail: str, type: str = "about:blank", errors: Sequence[ProblemDetail] = ()
    ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status, self.title, self.detail, self.type = status, title, detail, type
        self.errors = tuple(errors)

    @property
    def is_client_error(self) -> bool:
        """Whether the request itself was at fault (4xx): fix the input rather than retry."""
        return 400 <= self.status < 500

    @classmethod
    def from_document(cls, status: int, document: Mapping[str, Any] | None, fallback: str) -> ProblemError:
        """The error for a problem+json document (or for any other error body, described by ``fallback``)."""
        if not document:
            return cls(status, "HTTP error", fallback)
        errors = [
            ProblemDetail(tuple(item.get("loc", ())), str(item.get("msg", "")), str(item.get("type", "")))
            for item in document.get("errors") or ()
            if isinstance(item, Mapping)
        ]
        return cls(
            int(document.get("status", status)),
            str(document.get("title", "HTTP error")),
            str(document.get("detail", fallback)),
            str(document.get("type", "about:blank")),
            errors,
        )

    def shifted(self, start: int, stop: int, rows: int) -> ProblemError:
        """The same problem for a chunk holding rows [start, stop) of a dataset of ``rows`` rows: rows renumbered
        (itself when the chunk is the whole dataset: there is nothing to renumber, and no chunk to speak of)."""
        if start == 0 and stop >= rows:
            return self
        errors = [
            ProblemDetail((*e.loc[:2], e.row + start, *e.loc[3:]), e.msg, e.type)
            if e.row is not None and e.field in ROW_FIELDS
            else e
            for e in self.errors
        ]
        # ``errors`` now count rows of the whole dataset; the service's ``detail`` text still counts in the chunk.
        detail = f"in the chunk of rows {start}..{stop - 1}, counting from the chunk's first row: {self.detail}"
        return ProblemError(self.status, self.title, detail, self.type, errors)


#: The status, title and type of the service's answer to input it cannot score (its ``ProblemKind.INVALID_INPUT``).
INVALID_INPUT = (422, "Invalid input", "urn:xent:problem:invalid-input")


class InvalidInputError(ProblemError, ValueError):
    """Input the service refuses, refused by the client before sending: the service's 422 problem, word for word.

    A ``ProblemError`` (status 422), so that one ``except`` handles it wherever it was refused; a ``ValueError``,
    as a Python caller expects of an argument that cannot be used.
    """

    def __init__(self, field: str, message: str, kind: str) -> None:
        status, title, type_uri = INVALID_INPUT
        super().__init__(
            status, title, f"{field}: {message}", type_uri, [ProblemDetail(("body", field), message, kind)]
        )


class TransportError(XentError):
    """The service could not be reached, or did not answer in time, after the allowed retries."""
