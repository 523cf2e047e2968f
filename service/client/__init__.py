"""The xent client: score from Python over HTTP, one batch or a dataset of any size.

>>> from service.client import Client
>>> with Client("http://127.0.0.1:8000") as xent:  # doctest: +SKIP
...     scores = xent.cross_entropy([1], [[0.228, 0.619, 0.153]])
...     round(scores.mean.cross_entropy, 6)
0.47965

``Client`` and ``AsyncClient`` send JSON for small batches and NPZ for large ones, retry
connection failures and 503s, raise ``ProblemError`` (the service's problem+json answer; its
subclass ``InvalidInputError`` when the client refuses, before sending, input the service
would refuse) or ``TransportError``, and return ``Scores`` (``compare``: a ``Comparison``). ``score_many``
scores any number of rows in chunks and merges the answers exactly. This package imports neither FastAPI nor Pydantic.
"""

from service.client.async_client import AsyncClient
from service.client.errors import InvalidInputError, ProblemDetail, ProblemError, TransportError, XentError
from service.client.results import (
    Comparison,
    ComparisonWarning,
    Differences,
    Intervals,
    Means,
    PairedDifference,
    PerSample,
    Scores,
    ScoreWarning,
    Side,
    Stderrs,
    Sums,
)
from service.client.retry import Retry
from service.client.sync_client import Client
from service.client.wire import NPZ_MIN_VALUES, BinaryCrossEntropyOptions, CrossEntropyOptions

__all__ = [
    "NPZ_MIN_VALUES",
    "AsyncClient",
    "BinaryCrossEntropyOptions",
    "Client",
    "Comparison",
    "ComparisonWarning",
    "CrossEntropyOptions",
    "Differences",
    "Intervals",
    "InvalidInputError",
    "Means",
    "PairedDifference",
    "PerSample",
    "ProblemDetail",
    "ProblemError",
    "Retry",
    "ScoreWarning",
    "Scores",
    "Side",
    "Stderrs",
    "Sums",
    "TransportError",
    "XentError",
]
